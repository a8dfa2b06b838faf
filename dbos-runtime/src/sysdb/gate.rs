//! The gate every database operation passes: it counts the operations in flight, refuses new
//! ones once closed, and lets shutdown wait until the last one has ended.
//!
//! Why not rely on the pool: sqlx's `Pool::close` is documented to wait for connections in use,
//! but closing idle connections releases semaphore permits that were never taken, so it can
//! return while a statement is still on its way (seen: an insert committing 15 ms after
//! shutdown returned). Counting our own operations does not depend on the driver's internals.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Gate {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    /// Notified when the last operation leaves a closed gate.
    drained: Notify,
}

/// One operation in flight; it leaves the gate when dropped.
#[derive(Debug)]
pub(crate) struct Pass {
    gate: Arc<Gate>,
}

impl Gate {
    /// Lets one operation in, or refuses it with [`Error::ShuttingDown`] once closed.
    pub(crate) fn enter(self: &Arc<Self>) -> Result<Pass> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let pass = Pass { gate: self.clone() };
        if self.closed.load(Ordering::SeqCst) {
            // Dropping the pass leaves the gate (and wakes a waiting `drained`).
            drop(pass);
            return Err(Error::ShuttingDown);
        }
        Ok(pass)
    }

    /// Refuses every operation from now on; those already in go on.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Returns once no operation is in flight (call after [`Gate::close`]).
    pub(crate) async fn drained(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            drained.await;
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.gate.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.gate.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_closed_gate_refuses_new_operations_and_waits_for_those_in_flight() {
        let gate = Arc::new(Gate::default());
        let first = gate.enter().expect("open gate");
        gate.close();
        assert!(matches!(gate.enter(), Err(Error::ShuttingDown)));
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.drained().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "drained while an operation was in flight"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("drained once the last operation left")
            .expect("no panic");
    }
}
