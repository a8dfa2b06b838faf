//! A tiny HTTP/1.1 client over tokio's `TcpStream`: enough for the widget store's routes, so
//! the tests and the load generator need no HTTP client crate. Requests carry no body; answers
//! are framed by `Content-Length`, `Transfer-Encoding: chunked` or the end of the connection.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long [`request`] waits for a whole answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, as text (invalid UTF-8 replaced).
    pub body: String,
}

impl Response {
    /// The body parsed as JSON; panics with the body when it is not JSON.
    #[allow(dead_code)]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("expected JSON, got {} {:?}: {e}", self.status, self.body))
    }
}

/// One request on a fresh connection (`Connection: close`), with [`REQUEST_TIMEOUT`].
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> io::Result<Response> {
    let exchange = async {
        let mut conn = Conn::connect(addr).await?;
        conn.send(method, path, false).await
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{method} {path}: no answer"),
        )),
    }
}

/// One request with a JSON body on a fresh connection, with [`REQUEST_TIMEOUT`].
#[allow(dead_code)]
pub async fn request_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> io::Result<Response> {
    let exchange = async {
        let mut conn = Conn::connect(addr).await?;
        conn.send_json(method, path, Some(body), false).await
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{method} {path}: no answer"),
        )),
    }
}

/// One connection, reused for several requests when the server keeps it open.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    /// Bytes read past the previous answer.
    buf: Vec<u8>,
    /// The server said it closes the connection after its last answer.
    closed: bool,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            addr,
            buf: Vec::new(),
            closed: false,
        })
    }

    /// Whether the connection can carry another request.
    #[allow(dead_code)]
    pub fn is_open(&self) -> bool {
        !self.closed
    }

    /// Sends one request and reads its answer. With `keep_alive`, the connection stays open for
    /// the next request unless the server closes it (see [`Conn::is_open`]).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        keep_alive: bool,
    ) -> io::Result<Response> {
        self.send_json(method, path, None, keep_alive).await
    }

    /// Like [`Conn::send`], with an optional JSON body.
    pub async fn send_json(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        keep_alive: bool,
    ) -> io::Result<Response> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the server closed the connection",
            ));
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let content_type = if body.is_some() {
            "Content-Type: application/json\r\n"
        } else {
            ""
        };
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{content_type}Content-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await?;
        let response = self.read_response().await;
        if response.is_err() || !keep_alive {
            self.closed = true;
        }
        response
    }

    /// Reads more bytes into `buf`; an error at the end of the stream.
    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-answer",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line in {head:?}")))?;
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    length = Some(value.parse::<usize>().map_err(|e| bad(e.to_string()))?)
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => self.closed |= value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let body = if chunked {
            self.read_chunked().await?
        } else if let Some(length) = length {
            while self.buf.len() < length {
                self.fill().await?;
            }
            self.buf.drain(..length).collect()
        } else {
            // Framed by the end of the connection.
            self.closed = true;
            loop {
                let mut chunk = [0u8; 8192];
                match self.stream.read(&mut chunk).await? {
                    0 => break std::mem::take(&mut self.buf),
                    n => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // No trailers are expected: the empty line that ends the body.
                while self.buf.len() < 2 {
                    self.fill().await?;
                }
                self.buf.drain(..2);
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
