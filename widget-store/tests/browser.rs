//! A real browser buys a widget: headless Chromium, driven through chromedriver's WebDriver
//! HTTP API, opens the page, clicks Buy then Pay, and watches the order reach Dispatched. It
//! saves a screenshot for the README (`docs/screenshot.png`), then presses the crash button and
//! sees the page report that the store went down and came back.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test says so and passes, unless `DBOS_REQUIRE_BROWSER=1` (as in CI) makes it fail.

#[allow(dead_code)]
mod support;

use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::http::request_json;
use support::{request, Backend, Store, DISPATCHED};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver in its own process group (with the Chromium it starts); killed on drop.
struct Driver {
    addr: SocketAddr,
    child: Child,
    profile: PathBuf,
}

impl Driver {
    async fn start(chromedriver: &Path) -> Driver {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let profile = std::env::temp_dir().join(format!(
            "widget-store-chromium-profile-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("create the browser profile directory");
        let child = Command::new(chromedriver)
            .arg(format!("--port={}", addr.port()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            addr,
            child,
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = request(addr, "GET", "/status").await {
                if r.status == 200 && r.json()["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A WebDriver command; panics unless it succeeds. Returns its `value`.
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.try_cmd(method, path, body).await;
        r.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    async fn try_cmd(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_else(|| "{}".into());
        let body = if method == "GET" || method == "DELETE" {
            None
        } else {
            Some(body)
        };
        let r = match body {
            Some(body) => request_json(self.addr, method, path, &body).await,
            None => request(self.addr, method, path).await,
        }
        .map_err(|e| e.to_string())?;
        let value = r.json()["value"].clone();
        if r.status == 200 {
            Ok(value)
        } else {
            Err(format!("{} {}", r.status, value))
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: signals the process group chromedriver leads (it and its Chromium).
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One browser session.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    fn path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.id)
    }

    async fn goto(&self, url: &str) {
        self.driver
            .cmd("POST", &self.path("/url"), Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` in the page and returns its result.
    async fn eval(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.driver
            .cmd("POST", &self.path("/execute/sync"), Some(body))
            .await
    }

    /// The visible text of the element with `id` ("" while it does not exist).
    async fn text(&self, id: &str) -> String {
        let script =
            format!("const e = document.getElementById('{id}'); return e ? e.innerText : '';");
        self.eval(&script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the element with `id`'s text satisfies `cond`; returns that text.
    async fn wait_text(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(id).await;
            if cond(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {what}; #{id} shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element with `id` as a user would, waiting up to 10 s for it to appear.
    async fn click(&self, id: &str) {
        let find = json!({ "using": "css selector", "value": format!("#{id}") });
        let deadline = Instant::now() + Duration::from_secs(10);
        let element = loop {
            match self
                .driver
                .try_cmd("POST", &self.path("/element"), Some(find.clone()))
                .await
            {
                Ok(v) => {
                    break v[ELEMENT]
                        .as_str()
                        .expect("an element reference")
                        .to_owned()
                }
                Err(e) => assert!(Instant::now() < deadline, "no #{id} to click: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.driver
            .cmd(
                "POST",
                &self.path(&format!("/element/{element}/click")),
                Some(json!({})),
            )
            .await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let png = self
            .driver
            .cmd("GET", &self.path("/screenshot"), None)
            .await;
        base64_decode(png.as_str().expect("a base64 screenshot"))
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    }
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | sextet(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..group.len()]);
    }
    out
}

/// chromedriver, if Chromium and its driver are installed.
fn chromedriver() -> Option<PathBuf> {
    let driver = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("chromedriver"))
        .find(|p| p.is_file())?;
    Path::new(CHROMIUM).is_file().then_some(driver)
}

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
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1200,820",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--user-data-dir={}", driver.profile.display())])
    .collect::<Vec<_>>();
    let capabilities = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    } } });
    let created = driver.cmd("POST", "/session", Some(capabilities)).await;
    let session = Session {
        driver: &driver,
        id: created["sessionId"]
            .as_str()
            .expect("a session ID")
            .to_owned(),
    };

    session.goto(&format!("http://{}/", store.addr)).await;
    session
        .wait_text(
            "inventory",
            "the live inventory",
            Duration::from_secs(10),
            |t| t == "100",
        )
        .await;
    assert_eq!(session.text("name").await, "Premium Quality Widget");
    assert_eq!(session.text("price").await, "$99.99");

    session.click("buy").await;
    session
        .wait_text("flow", "the payment step", Duration::from_secs(10), |t| {
            t.contains("awaits")
        })
        .await;
    session
        .wait_text(
            "inventory",
            "the reservation",
            Duration::from_secs(5),
            |t| t == "99",
        )
        .await;
    session.click("pay").await;
    let paying = session
        .wait_text("flow", "the paid order", Duration::from_secs(10), |t| {
            t.contains("Paid")
        })
        .await;
    assert!(
        paying.contains("Preparing for dispatch"),
        "a paid order shows its progress: {paying:?}"
    );
    let done = session
        .wait_text(
            "flow",
            "the order dispatched",
            Duration::from_secs(30),
            |t| t.contains("Dispatched"),
        )
        .await;
    assert!(done.contains("Thank you"), "{done:?}");
    session
        .wait_text(
            "orders",
            "the list of orders",
            Duration::from_secs(5),
            |t| t.contains("Dispatched"),
        )
        .await;
    assert!(
        session.text("orders").await.contains("Cancelled"),
        "the earlier order is listed"
    );
    assert_eq!(store.order("2").await, (DISPATCHED, 0), "the store agrees");
    assert_eq!(session.text("inventory").await, "99");

    let png = session.screenshot().await;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a PNG screenshot"
    );
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&docs).expect("create docs/");
    std::fs::write(docs.join("screenshot.png"), &png).expect("save docs/screenshot.png");

    // The crash button: the page notices the store went down and came back.
    session.click("crash").await;
    session
        .wait_text(
            "banner",
            "the came-back banner",
            Duration::from_secs(20),
            |t| t.contains("came back"),
        )
        .await;
    session
        .wait_text(
            "health",
            "the store online again",
            Duration::from_secs(10),
            |t| t == "online",
        )
        .await;
    driver.cmd("DELETE", &session.path(""), None).await;
    drop(driver);
    let dir = store.dir.clone();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
