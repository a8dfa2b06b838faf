//! The store survives crashes: 16 customers check out and pay (some payments fail) while the
//! supervisor and its worker are SIGKILLed together at random, over and over, and the worker is
//! also crashed through `POST /crash_application`. Customers retry the same key after any
//! connection error, as a browser would. At the end every order is DISPATCHED or CANCELLED,
//! the stock adds up, each key made one order, and a key's payment ID never changed.

#[allow(dead_code)]
mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{request, Response, CANCELLED, DISPATCHED, PAID, PENDING};

const CUSTOMERS: usize = 16;
/// Widgets in stock when the customers start: the store's own stock, so that it sells out
/// while crashes go on and both the paid and the sold-out paths are crashed through.
const STOCK: i64 = 100;
const SIGKILLS: usize = 10;
const CRASH_BUTTON: usize = 3;

/// What one customer saw for one idempotency key.
#[derive(Debug)]
struct Flow {
    key: String,
    /// `paid` or `failed`.
    decision: &'static str,
    /// The checkout's answer: the payment ID, or `None` when sold out.
    payment_id: Option<String>,
    /// The payment webhook's answer.
    order_id: Option<i64>,
}

/// Sends a request until the store answers it (anything but a 5xx), retrying after connection
/// errors: the store may be down or restarting.
async fn until_answered(
    addr: SocketAddr,
    method: &str,
    path: &str,
    server_errors: &AtomicUsize,
) -> Response {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match request(addr, method, path).await {
            Ok(r) if r.status < 500 => return r,
            Ok(r) => {
                server_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("{method} {path}: {r:?} (retrying)");
            }
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "{method} {path}: no answer for 120 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn customer(
    c: usize,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server_errors: Arc<AtomicUsize>,
) -> Vec<Flow> {
    let mut rng = fastrand::Rng::new();
    let mut flows = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let key = format!("c{c}-{}", flows.len());
        let decision = if rng.u8(..10) < 4 { "failed" } else { "paid" };
        let checkout = format!("/checkout/{key}");
        let answer = until_answered(addr, "POST", &checkout, &server_errors).await;
        let payment_id = match answer.status {
            200 => Some(answer.body.clone()),
            409 => None,
            _ => panic!("checkout {key}: {answer:?}"),
        };
        // A double-click, or a retry after a lost answer: the same answer.
        if rng.bool() {
            let again = until_answered(addr, "POST", &checkout, &server_errors).await;
            assert_eq!(
                again, answer,
                "key {key}: a retried checkout answers the same"
            );
        }
        let mut order_id = None;
        if let Some(payment_id) = &payment_id {
            assert_eq!(payment_id, &key, "the payment ID is the key");
            tokio::time::sleep(Duration::from_millis(rng.u64(..50))).await;
            let webhook = format!("/payment_webhook/{payment_id}/{decision}");
            let paid = until_answered(addr, "POST", &webhook, &server_errors).await;
            assert_eq!(paid.status, 200, "payment {key}: {paid:?}");
            order_id = Some(
                paid.body
                    .parse::<i64>()
                    .unwrap_or_else(|_| panic!("order ID for {key}: {paid:?}")),
            );
            if rng.u8(..4) == 0 {
                let again = until_answered(addr, "POST", &webhook, &server_errors).await;
                assert_eq!(
                    again, paid,
                    "key {key}: a repeated webhook answers the same"
                );
            }
            // The payment ID for a key never changes, even after crashes.
            let late = until_answered(addr, "POST", &checkout, &server_errors).await;
            assert_eq!(late, answer, "key {key}: the payment ID never changes");
        }
        if payment_id.is_none() {
            // Sold out: a customer comes back later rather than at once.
            tokio::time::sleep(Duration::from_millis(rng.u64(100..300))).await;
        }
        flows.push(Flow {
            key,
            decision,
            payment_id,
            order_id,
        });
        tokio::time::sleep(Duration::from_millis(rng.u64(..100))).await;
    }
    flows
}

both_backends!(
    300,
    async fn survives_sigkills_and_crashes(store: Store) {
        let db = store.db().await;
        assert_eq!(db.inventory().await, STOCK);

        let stop = Arc::new(AtomicBool::new(false));
        let server_errors = Arc::new(AtomicUsize::new(0));
        let customers: Vec<_> = (0..CUSTOMERS)
            .map(|c| tokio::spawn(customer(c, store.addr, stop.clone(), server_errors.clone())))
            .collect();

        // Crash it at random: the whole process group with SIGKILL, sometimes the crash button.
        let mut rng = fastrand::Rng::new();
        let mut plan: Vec<bool> = (0..SIGKILLS)
            .map(|_| true)
            .chain((0..CRASH_BUTTON).map(|_| false))
            .collect();
        rng.shuffle(&mut plan);
        for sigkill in plan {
            tokio::time::sleep(Duration::from_millis(rng.u64(50..1500))).await;
            if sigkill {
                store.kill();
                store.launch().await;
            } else {
                let r = request(store.addr, "POST", "/crash_application").await;
                assert!(r.is_err(), "the crash button answers nothing: {r:?}");
                store.wait_serving(Duration::from_secs(30)).await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut flows = Vec::new();
        for c in customers {
            flows.extend(c.await.expect("a customer task"));
        }

        // Paid orders are dispatched about 10 s after payment; nothing stays PENDING or PAID.
        let unfinished =
            format!("SELECT COUNT(*) FROM orders WHERE order_status IN ({PENDING}, {PAID})");
        let deadline = Instant::now() + Duration::from_secs(60);
        while db.scalar(&unfinished).await > 0 {
            assert!(
                Instant::now() < deadline,
                "orders still PENDING or PAID after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        let keys: HashSet<&str> = flows.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys.len(), flows.len());
        let sold_out = flows.iter().filter(|f| f.payment_id.is_none()).count() as i64;
        let paid: Vec<i64> = flows
            .iter()
            .filter(|f| f.decision == "paid")
            .filter_map(|f| f.order_id)
            .collect();
        let failed: Vec<i64> = flows
            .iter()
            .filter(|f| f.decision == "failed")
            .filter_map(|f| f.order_id)
            .collect();
        eprintln!(
            "{} flows: {} paid, {} failed, {sold_out} sold out; {} retried 5xx answers",
            flows.len(),
            paid.len(),
            failed.len(),
            server_errors.load(Ordering::Relaxed)
        );
        assert!(
            paid.len() > CUSTOMERS && !failed.is_empty(),
            "the customers got through"
        );

        // One order per key, one checkout workflow per key, each finished.
        assert_eq!(
            db.orders().await,
            flows.len() as i64,
            "one order per idempotency key"
        );
        assert_eq!(
            db.checkouts().await,
            flows.len() as i64,
            "one checkout workflow per key"
        );
        let workflows = db.sys("workflow_status");
        let unfinished_workflows = db
        .scalar(&format!("SELECT COUNT(*) FROM {workflows} WHERE name = 'checkout_workflow' AND status <> 'SUCCESS'"))
        .await;
        assert_eq!(unfinished_workflows, 0, "every checkout workflow finished");

        // Each order ended as its customer decided.
        let statuses: HashMap<i64, i64> = db
            .pairs("SELECT CAST(order_id AS BIGINT), CAST(order_status AS BIGINT) FROM orders")
            .await
            .into_iter()
            .collect();
        let distinct: HashSet<i64> = paid.iter().chain(&failed).copied().collect();
        assert_eq!(
            distinct.len(),
            paid.len() + failed.len(),
            "each payment settled its own order"
        );
        for id in &paid {
            assert_eq!(
                statuses.get(id),
                Some(&DISPATCHED),
                "paid order {id} is dispatched"
            );
        }
        for id in &failed {
            assert_eq!(
                statuses.get(id),
                Some(&CANCELLED),
                "failed order {id} is cancelled"
            );
        }
        assert_eq!(
            db.orders_with(CANCELLED).await,
            failed.len() as i64 + sold_out,
            "only failed and sold-out orders are cancelled"
        );
        assert_eq!(db.orders_with(DISPATCHED).await, paid.len() as i64);

        // The stock adds up: nothing reserved twice, nothing returned twice.
        let kept = db
            .scalar(&format!(
                "SELECT COUNT(*) FROM orders WHERE order_status <> {CANCELLED}"
            ))
            .await;
        assert_eq!(
            db.inventory().await + kept,
            STOCK,
            "inventory + orders not cancelled = stock"
        );
        assert_eq!(store.inventory().await + kept, STOCK);
    }
);
