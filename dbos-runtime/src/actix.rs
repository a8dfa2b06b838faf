//! actix-web glue (feature `actix`): an [`IdempotencyKey`] extractor for handlers that start
//! workflows, and [`HttpError`], the runtime's [`Error`] as an HTTP answer.
//!
//! ```no_run
//! use actix_web::{web, HttpResponse};
//! use dbos_runtime::actix::{HttpError, IdempotencyKey};
//! use dbos_runtime::prelude::*;
//!
//! #[workflow]
//! async fn checkout() -> Result<String, Error> { Ok("order-1".into()) }
//!
//! // POST /checkout/{key}; on a route without `{key}`, the `Idempotency-Key` header.
//! async fn handler(key: IdempotencyKey) -> Result<HttpResponse, HttpError> {
//!     let order = checkout().with_id(key.as_str()).await?;
//!     Ok(HttpResponse::Ok().body(order))
//! }
//! ```
//!
//! Both answer bad input with a 4xx and a JSON body `{"detail": "<message>"}` (the shape
//! FastAPI, and so DBOS's Python apps, answer with).

use crate::error::Error;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use std::future::{ready, Ready};

/// The longest key accepted: it becomes a workflow ID.
pub const MAX_KEY_LEN: usize = 256;

/// The header a key is read from (on routes without a `{key}` segment).
pub const HEADER: &str = "Idempotency-Key";

/// A validated idempotency key, to use as a workflow ID: from the route's path segment named
/// `key` when it has one, else from the `Idempotency-Key` header. 1 to [`MAX_KEY_LEN`] bytes, not blank, without
/// control characters (Postgres text refuses NUL), so it is a workflow ID on every backend.
/// A request without a valid key is refused with 400 before the handler runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks `key`.
    ///
    /// # Errors
    /// [`HttpError`] (400) naming the rule the key breaks.
    pub fn parse(key: &str) -> Result<IdempotencyKey, HttpError> {
        if key.len() > MAX_KEY_LEN || key.trim().is_empty() || key.chars().any(char::is_control) {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "Idempotency key must be 1 to {MAX_KEY_LEN} bytes, not blank, without control characters"
                ),
            ));
        }
        Ok(IdempotencyKey(key.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key, owned.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromRequest for IdempotencyKey {
    type Error = HttpError;
    type Future = Ready<Result<IdempotencyKey, HttpError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let key = match req.match_info().get("key") {
            Some(segment) => IdempotencyKey::parse(segment),
            None => match req.headers().get(HEADER) {
                // A header that is not visible ASCII is refused like any bad key.
                Some(value) => IdempotencyKey::parse(value.to_str().unwrap_or("\u{0}")),
                None => Err(HttpError::new(
                    StatusCode::BAD_REQUEST,
                    format!("An {HEADER} header is required"),
                )),
            },
        };
        ready(key)
    }
}

/// An HTTP answer for a failed request: a status and a message for the client, with no
/// internals (a server error is logged and answered with a generic message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<Error> for HttpError {
    /// Unknown workflow 404; an ID taken by another workflow 409; a cancelled workflow 409; a
    /// timed-out one 504; a deduplicated enqueue 409; a bad argument 400; shutting down 503; anything else 500 without
    /// internals (logged).
    fn from(e: Error) -> HttpError {
        let (status, message) = match &e {
            Error::NonExistentWorkflow(_) => (StatusCode::NOT_FOUND, e.to_string()),
            Error::WorkflowConflict { .. } => (
                StatusCode::CONFLICT,
                "This key belongs to another kind of request".to_owned(),
            ),
            Error::WorkflowCancelled(_) | Error::QueueDeduplicated { .. } => {
                (StatusCode::CONFLICT, e.to_string())
            }
            Error::WorkflowTimedOut(_) => (StatusCode::GATEWAY_TIMEOUT, e.to_string()),
            Error::InvalidArgument(_) | Error::InvalidWorkflowId { .. } => {
                (StatusCode::BAD_REQUEST, e.to_string())
            }
            Error::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Shutting down; retry the request".to_owned(),
            ),
            _ => {
                tracing::error!("request failed: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error; the request may be retried".to_owned(),
                )
            }
        };
        HttpError::new(status, message)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(serde_json::json!({ "detail": self.message }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn keys_follow_the_rules_of_a_workflow_id() {
        assert_eq!(
            IdempotencyKey::parse("order-7").map(IdempotencyKey::into_inner),
            Ok("order-7".to_owned())
        );
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
        for bad in [
            "",
            "   ",
            "a\u{0}b",
            "tab\there",
            &"k".repeat(MAX_KEY_LEN + 1),
        ] {
            let e = IdempotencyKey::parse(bad).expect_err(bad);
            assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
            assert!(e.message().contains("Idempotency key must be"), "{e}");
        }
    }

    #[tokio::test]
    async fn the_key_segment_comes_first_then_the_header() {
        let req = TestRequest::default()
            .insert_header((HEADER, "from-header"))
            .to_http_request();
        let key = IdempotencyKey::extract(&req).await.expect("a key");
        assert_eq!(key.as_str(), "from-header");
        let req = TestRequest::default()
            .param("key", "from-path")
            .to_http_request();
        assert_eq!(
            IdempotencyKey::extract(&req).await.expect("a key").as_str(),
            "from-path"
        );
        let both = TestRequest::default()
            .insert_header((HEADER, "h"))
            .param("key", "p")
            .to_http_request();
        assert_eq!(
            IdempotencyKey::extract(&both)
                .await
                .expect("a key")
                .as_str(),
            "p"
        );
        let req = TestRequest::default()
            .insert_header((HEADER, " "))
            .to_http_request();
        assert!(
            IdempotencyKey::extract(&req).await.is_err(),
            "a blank header is refused"
        );
        let missing = IdempotencyKey::extract(&TestRequest::default().to_http_request()).await;
        assert_eq!(
            missing.map_err(|e| e.status_code()),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn runtime_errors_map_to_statuses_without_internals() {
        let status = |e: Error| HttpError::from(e).status_code();
        assert_eq!(
            status(Error::NonExistentWorkflow("w".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(Error::WorkflowConflict {
                id: "w".into(),
                existing: "a".into(),
                requested: "b".into()
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(Error::WorkflowCancelled("w".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(Error::InvalidArgument("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(Error::ShuttingDown), StatusCode::SERVICE_UNAVAILABLE);
        let internal = HttpError::from(Error::Config("postgres://user:secret@db".into()));
        assert_eq!(internal.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !internal.message().contains("secret"),
            "no internals: {internal}"
        );
        let body = internal.error_response();
        assert_eq!(
            body.headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("")),
            Some("application/json")
        );
    }
}
