//! Headless Chromium for tests, driven through chromedriver's W3C WebDriver HTTP API.
//!
//! Needs Debian's `chromium` and `chromium-driver`; [`chromedriver`] is `None` without them.

use crate::http::request;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, if Chromium and its driver are installed.
pub fn chromedriver() -> Option<PathBuf> {
    let driver = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("chromedriver"))
        .find(|p| p.is_file())?;
    Path::new(CHROMIUM).is_file().then_some(driver)
}

/// chromedriver in its own process group (with the Chromium it starts); killed on drop.
pub struct Driver {
    addr: SocketAddr,
    child: Child,
    profile: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it is ready.
    pub async fn start(chromedriver: &Path) -> Driver {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let profile = std::env::temp_dir().join(format!(
            "dbos-chromium-profile-{}-{}",
            std::process::id(),
            addr.port()
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
            if let Ok(r) = request(addr, "GET", "/status", None, &[]).await {
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
    pub async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.try_cmd(method, path, body).await;
        r.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// A WebDriver command; its `value`, or the error it answered.
    pub async fn try_cmd(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let body = match method {
            "GET" | "DELETE" => None,
            _ => Some(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let r = request(self.addr, method, path, body.as_deref(), &[])
            .await
            .map_err(|e| e.to_string())?;
        let value = r.json()["value"].clone();
        if r.status == 200 {
            Ok(value)
        } else {
            Err(format!("{} {}", r.status, value))
        }
    }

    /// A headless Chromium session with a window of `width` x `height`.
    pub async fn session(&self, width: u32, height: u32) -> Session<'_> {
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
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", self.profile.display()),
        ])
        .collect::<Vec<_>>();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        } } });
        let created = self.cmd("POST", "/session", Some(capabilities)).await;
        Session {
            driver: self,
            id: created["sessionId"]
                .as_str()
                .expect("a session ID")
                .to_owned(),
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
pub struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    fn path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.id)
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.driver
            .cmd("POST", &self.path("/url"), Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` in the page and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.driver
            .cmd("POST", &self.path("/execute/sync"), Some(body))
            .await
    }

    /// The visible text of the first element matching CSS `selector` ("" while there is none).
    pub async fn text(&self, selector: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            json!(selector)
        );
        self.eval(&script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until `selector`'s text satisfies `cond`; returns that text.
    pub async fn wait_text(
        &self,
        selector: &str,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(selector).await;
            if cond(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {what}; {selector} shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching CSS `selector` as a user would, waiting up to 10 s
    /// for it to appear. A page that redraws the element between finding and clicking it (a
    /// live list) is retried, as a user would click again.
    pub async fn click(&self, selector: &str) {
        let find = json!({ "using": "css selector", "value": selector });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let clicked = match self
                .driver
                .try_cmd("POST", &self.path("/element"), Some(find.clone()))
                .await
            {
                Ok(v) => {
                    let element = v[ELEMENT]
                        .as_str()
                        .expect("an element reference")
                        .to_owned();
                    self.driver
                        .try_cmd(
                            "POST",
                            &self.path(&format!("/element/{element}/click")),
                            Some(json!({})),
                        )
                        .await
                }
                Err(e) => Err(e),
            };
            match clicked {
                Ok(_) => return,
                Err(e) => assert!(Instant::now() < deadline, "cannot click {selector}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        let png = self
            .driver
            .cmd("GET", &self.path("/screenshot"), None)
            .await;
        base64_decode(png.as_str().expect("a base64 screenshot"))
    }

    /// Ends the session.
    pub async fn close(self) {
        self.driver.cmd("DELETE", &self.path(""), None).await;
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
