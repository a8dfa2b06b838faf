//! In-process wake-ups: a writer notifies a key, every task waiting on that key wakes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// Keys are `m:<workflow>::<topic>` (messages), `e:<workflow>::<key>` (events) and
/// `d:<workflow>` (completion).
#[derive(Default)]
pub(crate) struct Notifier {
    map: Mutex<HashMap<String, Weak<Notify>>>,
}

impl Notifier {
    /// The wake-up for `key`; hold it (and enable a `notified()` future) before checking the
    /// database, so a write in between is never missed.
    pub(crate) fn subscribe(&self, key: &str) -> Arc<Notify> {
        let mut map = match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = map.get(key).and_then(Weak::upgrade) {
            return n;
        }
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        map.insert(key.to_owned(), Arc::downgrade(&n));
        n
    }

    /// Wakes every task waiting on `key`.
    pub(crate) fn notify(&self, key: &str) {
        let n = {
            let mut map = match self.map.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match map.get(key).map(Weak::upgrade) {
                Some(Some(n)) => Some(n),
                Some(None) => {
                    map.remove(key);
                    None
                }
                None => None,
            }
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
    }
}

pub(crate) fn message_key(workflow: &str, topic: &str) -> String {
    format!("m:{workflow}::{topic}")
}

pub(crate) fn event_key(workflow: &str, key: &str) -> String {
    format!("e:{workflow}::{key}")
}

pub(crate) fn done_key(workflow: &str) -> String {
    format!("d:{workflow}")
}

/// Waits until `notify` fires (with `enabled` armed before the caller's check) or `timeout` passes.
pub(crate) async fn wait(
    notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    timeout: std::time::Duration,
) {
    let _ = tokio::time::timeout(timeout, notified).await;
}
