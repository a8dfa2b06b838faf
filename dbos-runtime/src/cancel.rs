//! The cancel flag of one workflow execution, shared by its context (which checks it at every
//! operation and wait) and the runtime (which sets it when the workflow is cancelled).

use tokio::sync::watch;

/// Set once, when the workflow is cancelled; never cleared.
#[derive(Debug, Clone)]
pub(crate) struct CancelFlag(std::sync::Arc<watch::Sender<bool>>);

impl Default for CancelFlag {
    fn default() -> Self {
        CancelFlag(std::sync::Arc::new(watch::Sender::new(false)))
    }
}

impl CancelFlag {
    /// Sets the flag and wakes whoever waits for it.
    pub(crate) fn set(&self) {
        self.0.send_replace(true);
    }

    /// Whether it is set.
    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once it is set.
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}
