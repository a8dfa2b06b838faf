//! End to end over HTTP against the real `widget-store` binary, on SQLite and on Postgres:
//! a paid checkout is dispatched, a failed one cancelled, one key makes one order, selling out
//! is a clean 4xx, and bad input is a 4xx that changes nothing.

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};
use support::{Db, Store, CANCELLED, DISPATCHED, PAID, PENDING};

/// Checks out `key` and returns the payment ID.
async fn checkout(store: &Store, key: &str) -> String {
    let r = store.req("POST", &format!("/checkout/{key}")).await;
    assert_eq!(r.status, 200, "checkout {key}: {r:?}");
    r.body
}

/// Settles `payment_id` with `status` and returns the order ID.
async fn pay(store: &Store, payment_id: &str, status: &str) -> String {
    let r = store
        .req("POST", &format!("/payment_webhook/{payment_id}/{status}"))
        .await;
    assert_eq!(r.status, 200, "payment {payment_id} {status}: {r:?}");
    assert!(
        r.body.parse::<i32>().is_ok(),
        "the order ID is a number: {r:?}"
    );
    r.body
}

/// Asserts a 4xx with a JSON `detail` message.
fn assert_refused(r: &Response, expected: u16, what: &str) {
    assert_eq!(r.status, expected, "{what}: {r:?}");
    let detail = r.json()["detail"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(!detail.is_empty(), "{what}: a 4xx carries a message: {r:?}");
}

use support::Response;

both_backends!(
    90,
    async fn paid_checkout_is_dispatched(store: Store) {
        assert_eq!(store.inventory().await, 100);
        let payment_id = checkout(&store, "paid-1").await;
        assert_eq!(
            payment_id, "paid-1",
            "the payment ID is the checkout's workflow ID"
        );
        assert_eq!(store.inventory().await, 99, "checkout reserves a widget");
        let db = store.db().await;
        assert_eq!(db.orders_with(PENDING).await, 1);

        let paid_at = Instant::now();
        let order_id = pay(&store, &payment_id, "paid").await;
        let (status, progress) = store.order(&order_id).await;
        assert!(
            status == PAID || status == DISPATCHED,
            "paid at once: {status}"
        );
        assert!(progress <= 10);

        // Progress ticks down once a second until the order is dispatched, about 10 s later.
        let mut seen = vec![progress];
        loop {
            let (status, progress) = store.order(&order_id).await;
            assert!(
                progress <= *seen.last().unwrap(),
                "progress never goes back up: {seen:?} then {progress}"
            );
            if progress != *seen.last().unwrap() {
                seen.push(progress);
            }
            if status == DISPATCHED {
                assert_eq!(progress, 0);
                break;
            }
            assert_eq!(status, PAID, "a paid order stays PAID until dispatched");
            assert!(
                paid_at.elapsed() < Duration::from_secs(30),
                "not dispatched after 30 s: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let took = paid_at.elapsed();
        assert!(
            took >= Duration::from_secs(7) && took <= Duration::from_secs(20),
            "dispatched after {took:?}"
        );
        assert!(seen.len() >= 6, "saw the progress tick down: {seen:?}");

        // Repeating the webhook answers the same order and changes nothing.
        assert_eq!(pay(&store, &payment_id, "paid").await, order_id);
        assert_eq!(pay(&store, &payment_id, "failed").await, order_id);
        assert_eq!(store.order(&order_id).await, (DISPATCHED, 0));
        assert_eq!(
            store.inventory().await,
            99,
            "a dispatched widget stays sold"
        );
        assert_eq!(db.orders().await, 1);

        let orders = store.req("GET", "/orders").await.json();
        let listed = orders.as_array().expect("a list of orders");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["order_id"].to_string(), order_id);
        assert_eq!(listed[0]["order_status"], DISPATCHED);
        for field in [
            "order_id",
            "order_status",
            "last_update_time",
            "progress_remaining",
        ] {
            assert!(listed[0].get(field).is_some(), "orders carry {field}");
        }
        let product = store.req("GET", "/product").await.json();
        assert_eq!(product["product_id"], 1);
        assert_eq!(product["product"], "Premium Quality Widget");
        assert_eq!(
            product["description"],
            "Enhance your productivity with our top-rated widgets!"
        );
        assert_eq!(
            product["price"].as_f64(),
            Some(99.99),
            "price is a JSON number"
        );
    }
);

both_backends!(
    60,
    async fn failed_payment_is_cancelled(store: Store) {
        let payment_id = checkout(&store, "fail-1").await;
        assert_eq!(store.inventory().await, 99);
        let order_id = pay(&store, &payment_id, "failed").await;
        assert_eq!(store.order(&order_id).await.0, CANCELLED);
        assert_eq!(
            store.inventory().await,
            100,
            "the reserved widget went back to stock"
        );

        // A later `paid` for the same payment changes nothing.
        assert_eq!(pay(&store, &payment_id, "paid").await, order_id);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(store.order(&order_id).await.0, CANCELLED);
        assert_eq!(store.inventory().await, 100);
        // Checking out the same key again answers the same payment ID and makes no new order.
        assert_eq!(checkout(&store, "fail-1").await, payment_id);
        let db = store.db().await;
        assert_eq!((db.orders().await, db.orders_with(CANCELLED).await), (1, 1));
    }
);

both_backends!(
    60,
    async fn one_key_one_order(store: Store) {
        // A double-click: two requests with one key at once.
        let (a, b) = tokio::join!(checkout(&store, "dbl"), checkout(&store, "dbl"));
        assert_eq!((a.as_str(), b.as_str()), ("dbl", "dbl"));

        // Eight at once.
        let store = std::sync::Arc::new(store);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.spawn(async move { checkout(&store, "eight").await });
        }
        let mut ids = Vec::new();
        while let Some(id) = tasks.join_next().await {
            ids.push(id.expect("a checkout task"));
        }
        assert_eq!(
            ids,
            vec!["eight".to_owned(); 8],
            "one payment ID for one key"
        );

        let db = store.db().await;
        assert_eq!(db.orders().await, 2, "one order per key");
        assert_eq!(db.checkouts().await, 2, "one workflow per key");
        assert_eq!(store.inventory().await, 98, "one widget reserved per key");

        // A double-click on Pay: one order ID, one settlement.
        let (x, y) = tokio::join!(pay(&store, "eight", "paid"), pay(&store, "eight", "paid"));
        assert_eq!(x, y);
        assert_eq!(store.order(&x).await.0, PAID);
        assert_eq!(store.inventory().await, 98);
        assert_eq!(db.orders().await, 2);
    }
);

both_backends!(
    120,
    async fn sold_out_is_a_clean_refusal(store: Store) {
        // Sell the 100 widgets, eight customers at a time.
        let store = std::sync::Arc::new(store);
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..8 {
            let store = store.clone();
            tasks.spawn(async move {
                for n in (c..100).step_by(8) {
                    let payment_id = checkout(&store, &format!("sell-{n}")).await;
                    pay(&store, &payment_id, "paid").await;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a customer task");
        }
        assert_eq!(store.inventory().await, 0);
        let db = store.db().await;
        assert_eq!(db.orders().await, 100);

        // One more: a 4xx at once; its order is cancelled and the inventory untouched.
        let started = Instant::now();
        let r = store.req("POST", "/checkout/one-too-many").await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "sold out is answered at once"
        );
        assert!((400..500).contains(&r.status), "sold out is a 4xx: {r:?}");
        assert_refused(&r, r.status, "sold out");
        assert_eq!(
            db.orders().await,
            101,
            "the refused checkout made one order"
        );
        let last = db
            .scalar(
                "SELECT CAST(order_status AS BIGINT) FROM orders ORDER BY order_id DESC LIMIT 1",
            )
            .await;
        assert_eq!(last, CANCELLED, "the refused checkout's order is cancelled");
        assert_eq!(db.inventory().await, 0, "inventory untouched");

        // The same key again: the same answer, nothing new.
        let again = store.req("POST", "/checkout/one-too-many").await;
        assert_eq!(again, r, "a retried sold-out key gets the same answer");
        assert_eq!(db.orders().await, 101);
        assert_eq!(db.inventory().await, 0);
        // It has no payment to settle.
        let r = store
            .req("POST", "/payment_webhook/one-too-many/paid")
            .await;
        assert_refused(&r, 404, "webhook for a sold-out checkout");
        assert_eq!(db.orders_with(CANCELLED).await, 1);

        // Restock: the store sells again.
        assert_eq!(store.req("POST", "/restock").await.status, 200);
        assert_eq!(store.inventory().await, 100);
        let payment_id = checkout(&store, "after-restock").await;
        pay(&store, &payment_id, "failed").await;
        assert_eq!(store.inventory().await, 100);
    }
);

/// Everything a caller can see change.
async fn snapshot(store: &Store, db: &Db) -> (String, String, i64, i64) {
    let product = store.req("GET", "/product").await.body;
    let orders = store.req("GET", "/orders").await.body;
    (product, orders, db.orders().await, db.checkouts().await)
}

both_backends!(
    90,
    async fn bad_input_is_refused_and_changes_nothing(store: Store) {
        // A checkout waiting for its payment, which bad webhooks must leave alone.
        let waiting = checkout(&store, "waiting").await;
        let db = store.db().await;
        let before = snapshot(&store, &db).await;

        let refused: &[(&str, &str, u16)] = &[
            ("GET", "/order/999999", 404),
            ("GET", "/order/abc", 400),
            ("GET", "/order/1.5", 400),
            ("GET", "/order/-1", 400),
            ("GET", "/order/0", 400),
            ("GET", "/order/2147483648", 400),
            ("GET", "/order/99999999999999999999999", 400),
            ("GET", "/order/%00", 400),
            ("POST", "/payment_webhook/no-such-payment/paid", 404),
            ("POST", "/payment_webhook/no-such-payment/failed", 404),
            ("POST", "/payment_webhook/%00/paid", 404),
            ("POST", "/payment_webhook/waiting/maybe", 400),
            ("POST", "/payment_webhook/waiting/PAID", 400),
            ("POST", "/payment_webhook/waiting/paid%00", 400),
            ("POST", "/payment_webhook/no-such-payment/maybe", 400),
            ("DELETE", "/product", 405),
            ("POST", "/product", 405),
            ("POST", "/orders", 405),
            ("PUT", "/order/1", 405),
            ("GET", "/restock", 405),
            ("GET", "/checkout/waiting", 405),
            ("PUT", "/checkout/waiting", 405),
            ("GET", "/payment_webhook/waiting/paid", 405),
            ("GET", "/crash_application", 405),
            ("GET", "/no/such/page", 404),
            ("POST", "/checkout/", 404),
            ("POST", "/checkout/%20%20", 400),
            ("POST", "/checkout/%00", 400),
            ("POST", "/checkout/a%0Ab", 400),
        ];
        for &(method, path, expected) in refused {
            let started = Instant::now();
            let r = store.req(method, path).await;
            assert_refused(&r, expected, &format!("{method} {path}"));
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{method} {path} answered at once"
            );
        }
        // Very long keys: refused with a message while the server takes the URI, a 4xx beyond.
        for len in [257, 5_000, 60_000] {
            let r = store
                .req("POST", &format!("/checkout/{}", "k".repeat(len)))
                .await;
            assert_refused(&r, 400, &format!("a {len}-byte key"));
        }
        let r = store
            .req("POST", &format!("/checkout/{}", "k".repeat(100_000)))
            .await;
        assert!(
            (400..500).contains(&r.status),
            "a 100,000-byte key is a 4xx: {}",
            r.status
        );

        assert_eq!(
            snapshot(&store, &db).await,
            before,
            "bad input changed nothing"
        );
        assert_eq!(
            store.order("1").await.0,
            PENDING,
            "the waiting checkout is untouched"
        );

        // Odd but acceptable keys: a normal answer (or a 4xx), never a 5xx, and stable on retry.
        let odd = [
            "%E2%9C%93-unicode",
            "a%2Fb",
            "..",
            "%27%3B%20DROP%20TABLE%20orders%3B%20--",
            "%FF%FE",
            "k?query=1",
            "%25",
            &"k".repeat(256),
        ];
        for key in odd {
            let first = store.req("POST", &format!("/checkout/{key}")).await;
            assert!(
                first.status == 200 || (400..500).contains(&first.status),
                "key {key:?}: {first:?}"
            );
            let again = store.req("POST", &format!("/checkout/{key}")).await;
            assert_eq!(again, first, "key {key:?} answers the same on retry");
            if first.status == 200 {
                assert!(!first.body.is_empty());
                let order_id = pay(&store, &support::encode(&first.body), "failed").await;
                assert_eq!(store.order(&order_id).await.0, CANCELLED);
            }
        }

        // The waiting checkout still takes its payment.
        let order_id = pay(&store, &waiting, "paid").await;
        assert_eq!(order_id, "1");
        assert_eq!(store.order("1").await.0, PAID);
        assert_eq!(store.inventory().await, 99);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM products").await, 1);
    }
);
