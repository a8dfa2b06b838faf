//! Routes, as the original: JSON shapes, texts and status codes. Bad input is a 4xx with a
//! short message and changes nothing.

use crate::store::{self, ORDER_ID, PAYMENT_ID, PAYMENT_STATUS};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use dbos_runtime::actix::IdempotencyKey;
use dbos_runtime::prelude::*;

/// How long a request waits for the checkout workflow to publish an event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP error with a short message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    status: StatusCode,
    message: String,
}

impl AppError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AppError {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        tracing::error!("request failed: {e}");
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error; the request may be retried",
        )
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .content_type("application/json")
            .body(serde_json::json!({ "detail": self.message }).to_string())
    }
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../html/app.html"))
}

async fn product() -> Result<HttpResponse, AppError> {
    match store::get_product().await? {
        Some(p) => Ok(HttpResponse::Ok().json(p)),
        None => Err(AppError::not_found("Product not found")),
    }
}

async fn orders() -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(store::get_orders().await?))
}

async fn order(order_id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id: i64 = order_id
        .parse()
        .map_err(|_| AppError::bad_request("Order ID must be an integer"))?;
    let id = i32::try_from(id)
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::bad_request("Order ID out of range"))?;
    match store::get_order(id).await? {
        Some(o) => Ok(HttpResponse::Ok().json(o)),
        None => Err(AppError::not_found("Order not found")),
    }
}

async fn restock() -> Result<HttpResponse, AppError> {
    store::restock().await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /checkout/{key}`: the key (checked by the extractor: a bad one is a 400 before this
/// runs) is the checkout workflow's ID, so a repeated request joins the same checkout.
async fn checkout(key: IdempotencyKey) -> Result<HttpResponse, AppError> {
    let handle = match DBOS::start_workflow(store::checkout_workflow().with_id(key.as_str())).await
    {
        Ok(h) => h,
        Err(Error::WorkflowConflict { .. }) => {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "This key belongs to another kind of request",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    match DBOS::get_event::<Option<String>>(handle.workflow_id(), PAYMENT_ID, EVENT_TIMEOUT).await?
    {
        Some(Some(payment_id)) => Ok(HttpResponse::Ok()
            .content_type("text/plain")
            .body(payment_id)),
        Some(None) => Err(AppError::new(
            StatusCode::CONFLICT,
            "Sold out: the order was cancelled",
        )),
        None => Err(AppError::not_found("Checkout failed to start")),
    }
}

async fn payment_webhook(path: web::Path<(String, String)>) -> Result<HttpResponse, AppError> {
    let (payment_id, payment_status) = path.into_inner();
    if payment_status != "paid" && payment_status != "failed" {
        return Err(AppError::bad_request(
            "Payment status must be `paid` or `failed`",
        ));
    }
    // A payment ID is a checkout's key; one that could not be a key belongs to no checkout.
    if IdempotencyKey::parse(&payment_id).is_err() {
        return Err(AppError::not_found("Unknown payment ID"));
    }
    let is_checkout = DBOS::get_status(&payment_id)
        .await?
        .is_some_and(|s| s.name.as_deref() == Some("checkout_workflow"));
    if !is_checkout {
        return Err(AppError::not_found("Unknown payment ID"));
    }
    // A checkout that never asked for payment (sold out) has no payment to settle.
    let awaiting =
        DBOS::get_event::<Option<String>>(&payment_id, PAYMENT_ID, Duration::ZERO).await?;
    if !matches!(awaiting, Some(Some(_))) {
        return Err(AppError::not_found("No payment is pending for this ID"));
    }
    // One webhook per payment counts: a repeated (or contradicting) one delivers nothing new.
    let key = format!("webhook-{payment_id}");
    DBOS::send_with_key(&payment_id, &payment_status, PAYMENT_STATUS, &key).await?;
    match DBOS::get_event::<String>(&payment_id, ORDER_ID, EVENT_TIMEOUT).await? {
        Some(order_id) => Ok(HttpResponse::Ok().content_type("text/plain").body(order_id)),
        None => Err(AppError::not_found("Payment failed to process")),
    }
}

async fn crash_application() -> HttpResponse {
    tracing::warn!("crash requested: exiting at once");
    std::process::exit(1);
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .content_type("application/json")
        .body(r#"{"detail":"Method Not Allowed"}"#)
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("application/json")
        .body(r#"{"detail":"Not Found"}"#)
}

/// One path, one method; any other method on that path is a 405.
macro_rules! route {
    ($cfg:expr, $path:expr, $method:ident, $handler:expr) => {
        $cfg.service(
            web::resource($path)
                .route(web::$method().to($handler))
                .default_service(web::to(method_not_allowed)),
        )
    };
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    route!(cfg, "/", get, index);
    route!(cfg, "/product", get, product);
    route!(cfg, "/orders", get, orders);
    route!(cfg, "/order/{order_id}", get, order);
    route!(cfg, "/restock", post, restock);
    route!(cfg, "/checkout/{key}", post, checkout);
    route!(
        cfg,
        "/payment_webhook/{payment_id}/{payment_status}",
        post,
        payment_webhook
    );
    route!(cfg, "/crash_application", post, crash_application);
    cfg.default_service(web::to(not_found));
}
