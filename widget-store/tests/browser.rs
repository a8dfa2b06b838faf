//! A real browser buys a widget: headless Chromium, driven through chromedriver's WebDriver
//! HTTP API, opens the page, clicks Buy then Pay, and watches the order reach Dispatched. It
//! saves a screenshot for the README (`docs/screenshot.png`), then presses the crash button and
//! sees the page report that the store went down and came back.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test says so and passes, unless `DBOS_REQUIRE_BROWSER=1` (as in CI) makes it fail.

#[allow(dead_code)]
mod support;

use dbos_tests::webdriver::{chromedriver, Driver, CHROMIUM};
use std::path::Path;
use std::time::Duration;
use support::{Backend, Store, DISPATCHED};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_buys_pays_and_sees_the_order_dispatched() {
    let Some(chromedriver) = chromedriver() else {
        let required = std::env::var("DBOS_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{CHROMIUM} and chromedriver are missing: apt-get install chromium chromium-driver"
        );
        eprintln!("skipped: {CHROMIUM} or chromedriver is missing (apt-get install chromium chromium-driver)");
        return;
    };
    tokio::time::timeout(Duration::from_secs(120), run(&chromedriver))
        .await
        .expect("test timed out");
}

async fn run(chromedriver: &Path) {
    let store = Store::start(Backend::Sqlite, "browser").await;
    // An earlier customer whose payment failed, so the list of orders has some history.
    assert_eq!(store.req("POST", "/checkout/earlier").await.status, 200);
    assert_eq!(
        store
            .req("POST", "/payment_webhook/earlier/failed")
            .await
            .status,
        200
    );

    let driver = Driver::start(chromedriver).await;
    let session = driver.session(1200, 820).await;

    session.goto(&format!("http://{}/", store.addr)).await;
    session
        .wait_text(
            "#inventory",
            "the live inventory",
            Duration::from_secs(10),
            |t| t == "100",
        )
        .await;
    assert_eq!(session.text("#name").await, "Premium Quality Widget");
    assert_eq!(session.text("#price").await, "$99.99");

    session.click("#buy").await;
    session
        .wait_text("#flow", "the payment step", Duration::from_secs(10), |t| {
            t.contains("awaits")
        })
        .await;
    session
        .wait_text(
            "#inventory",
            "the reservation",
            Duration::from_secs(5),
            |t| t == "99",
        )
        .await;
    session.click("#pay").await;
    let paying = session
        .wait_text("#flow", "the paid order", Duration::from_secs(10), |t| {
            t.contains("Paid")
        })
        .await;
    assert!(
        paying.contains("Preparing for dispatch"),
        "a paid order shows its progress: {paying:?}"
    );
    let done = session
        .wait_text(
            "#flow",
            "the order dispatched",
            Duration::from_secs(30),
            |t| t.contains("Dispatched"),
        )
        .await;
    assert!(done.contains("Thank you"), "{done:?}");
    session
        .wait_text(
            "#orders",
            "the list of orders",
            Duration::from_secs(5),
            |t| t.contains("Dispatched"),
        )
        .await;
    assert!(
        session.text("#orders").await.contains("Cancelled"),
        "the earlier order is listed"
    );
    assert_eq!(store.order("2").await, (DISPATCHED, 0), "the store agrees");
    assert_eq!(session.text("#inventory").await, "99");

    let png = session.screenshot().await;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a PNG screenshot"
    );
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&docs).expect("create docs/");
    std::fs::write(docs.join("screenshot.png"), &png).expect("save docs/screenshot.png");

    // The crash button: the page notices the store went down and came back.
    session.click("#crash").await;
    session
        .wait_text(
            "#banner",
            "the came-back banner",
            Duration::from_secs(20),
            |t| t.contains("came back"),
        )
        .await;
    session
        .wait_text(
            "#health",
            "the store online again",
            Duration::from_secs(10),
            |t| t == "online",
        )
        .await;
    session.close().await;
    drop(driver);
    let dir = store.dir.clone();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
