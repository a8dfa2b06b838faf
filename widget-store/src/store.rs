//! The widget store's durable code: the checkout workflow and its transactions, nearly line for
//! line the DBOS Python original.

use dbos_runtime::prelude::*;
use serde::{Deserialize, Serialize};

pub const WIDGET_ID: i32 = 1;
pub const PAYMENT_STATUS: &str = "payment_status";
pub const PAYMENT_ID: &str = "payment_id";
pub const ORDER_ID: &str = "order_id";

/// An order's status, stored as an integer as in the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum OrderStatus {
    Cancelled = -1,
    Pending = 0,
    Dispatched = 1,
    Paid = 2,
}

/// `GET /product`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Product {
    pub product_id: i32,
    pub product: String,
    pub description: String,
    pub inventory: i32,
    pub price: f64,
}

/// `GET /order/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Order {
    pub order_id: i32,
    pub order_status: i32,
    pub last_update_time: chrono::NaiveDateTime,
    pub progress_remaining: i32,
}

#[workflow(name = "checkout_workflow")]
pub async fn checkout_workflow() -> Result<(), Error> {
    let order_id = create_order().await?;
    let inventory_reserved = reserve_inventory().await?;
    if !inventory_reserved {
        tracing::error!("Failed to reserve inventory for order {order_id}");
        update_order_status(order_id, OrderStatus::Cancelled as i32).await?;
        DBOS::set_event(PAYMENT_ID, &None::<String>).await?;
        return Ok(());
    }
    DBOS::set_event(PAYMENT_ID, &Some(DBOS::workflow_id()?)).await?;
    let payment_status: Option<String> =
        DBOS::recv(PAYMENT_STATUS, Duration::from_secs(60)).await?;
    if payment_status.as_deref() == Some("paid") {
        update_order_status(order_id, OrderStatus::Paid as i32).await?;
    } else {
        undo_reserve_inventory().await?;
        update_order_status(order_id, OrderStatus::Cancelled as i32).await?;
    }
    DBOS::set_event(ORDER_ID, &order_id.to_string()).await?;
    Ok(())
}

#[transaction(name = "reserve_inventory")]
pub async fn reserve_inventory(tx: &mut Tx) -> Result<bool, Error> {
    let rows_affected = tx
        .query(
            "UPDATE products SET inventory = inventory - 1 WHERE product_id = $1 AND inventory > 0",
        )
        .bind(WIDGET_ID)
        .execute()
        .await?;
    Ok(rows_affected > 0)
}

#[transaction(name = "undo_reserve_inventory")]
pub async fn undo_reserve_inventory(tx: &mut Tx) -> Result<(), Error> {
    tx.query("UPDATE products SET inventory = inventory + 1 WHERE product_id = $1")
        .bind(WIDGET_ID)
        .execute()
        .await?;
    Ok(())
}

#[transaction(name = "create_order")]
pub async fn create_order(tx: &mut Tx) -> Result<i32, Error> {
    let (order_id,): (i32,) = tx
        .query("INSERT INTO orders (order_status) VALUES ($1) RETURNING order_id")
        .bind(OrderStatus::Pending as i32)
        .fetch_one()
        .await?;
    Ok(order_id)
}

#[transaction(name = "update_order_status")]
pub async fn update_order_status(tx: &mut Tx, order_id: i32, status: i32) -> Result<(), Error> {
    tx.query("UPDATE orders SET order_status = $1, last_update_time = CURRENT_TIMESTAMP WHERE order_id = $2")
        .bind(status)
        .bind(order_id)
        .execute()
        .await?;
    Ok(())
}

#[transaction(name = "get_order", read_only)]
pub async fn get_order(tx: &mut Tx, order_id: i32) -> Result<Option<Order>, Error> {
    tx.query(
        "SELECT order_id, order_status, last_update_time, progress_remaining FROM orders WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional()
    .await
}

#[transaction(name = "get_orders", read_only)]
pub async fn get_orders(tx: &mut Tx) -> Result<Vec<Order>, Error> {
    tx.query(
        "SELECT order_id, order_status, last_update_time, progress_remaining FROM orders ORDER BY order_id DESC",
    )
    .fetch_all()
    .await
}

#[transaction(name = "get_product", read_only)]
pub async fn get_product(tx: &mut Tx) -> Result<Option<Product>, Error> {
    tx.query(
        "SELECT product_id, product, description, inventory, CAST(price AS DOUBLE PRECISION) AS price \
         FROM products WHERE product_id = $1",
    )
    .bind(WIDGET_ID)
    .fetch_optional()
    .await
}

#[transaction(name = "restock")]
pub async fn restock(tx: &mut Tx) -> Result<(), Error> {
    tx.query("UPDATE products SET inventory = 100 WHERE product_id = $1")
        .bind(WIDGET_ID)
        .execute()
        .await?;
    Ok(())
}

#[scheduled("* * * * * *")]
#[transaction(name = "update_order_progress")]
pub async fn update_order_progress(
    tx: &mut Tx,
    _scheduled_time: DateTime<Utc>,
    _actual_time: DateTime<Utc>,
) -> Result<(), Error> {
    tx.query(
        "UPDATE orders SET progress_remaining = progress_remaining - 1, last_update_time = CURRENT_TIMESTAMP \
         WHERE order_status = $1 AND progress_remaining > 0",
    )
    .bind(OrderStatus::Paid as i32)
    .execute()
    .await?;
    tx.query(
        "UPDATE orders SET order_status = $1, last_update_time = CURRENT_TIMESTAMP \
         WHERE order_status = $2 AND progress_remaining <= 0",
    )
    .bind(OrderStatus::Dispatched as i32)
    .bind(OrderStatus::Paid as i32)
    .execute()
    .await?;
    Ok(())
}

/// Applies the store's schema (`migrations/`) and seed row; idempotent.
#[transaction(name = "migrate_store")]
pub async fn migrate(tx: &mut Tx) -> Result<(), Error> {
    let script = if tx.backend_name() == "postgres" {
        tx.query("SELECT pg_advisory_xact_lock(4242)")
            .execute()
            .await?;
        include_str!("../migrations/postgres/001_widget_store.sql")
    } else {
        include_str!("../migrations/sqlite/001_widget_store.sql")
    };
    for statement in script.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        tx.query(statement).execute().await?;
    }
    Ok(())
}
