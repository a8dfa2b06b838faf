//! Checkpoint cuts: where [`crate::testing`] stops a workflow to emulate a crash.
//!
//! A plan names one workflow and one of its checkpoints. The runtime reports each checkpoint
//! of that workflow as it commits (and each step's just before its record is written); at the
//! planned one it closes the database to all further writes, as a process killed at that
//! instant would leave it, and signals the test. Nothing else changes behaviour.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;

/// Where to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// Right after checkpoint `n` (from 1) committed.
    After(u32),
    /// Right before step `n`'s record is written: its body has run.
    Before(u32),
    /// Nowhere: only count the checkpoints.
    Nowhere,
}

/// One planned cut of one workflow.
#[derive(Debug)]
pub(crate) struct Plan {
    pub workflow_id: String,
    pub at: At,
    committed: AtomicU32,
    /// The checkpoints seen: name, and whether it was a step (cut before as well as after).
    seen: Mutex<Vec<(String, bool)>>,
    fired: watch::Sender<bool>,
    /// The step cut before its record.
    pending: Mutex<Option<String>>,
}

impl Plan {
    pub(crate) fn new(workflow_id: String, at: At) -> Plan {
        Plan {
            workflow_id,
            at,
            committed: AtomicU32::new(0),
            seen: Mutex::new(Vec::new()),
            fired: watch::channel(false).0,
            pending: Mutex::new(None),
        }
    }

    /// The checkpoints seen so far.
    pub(crate) fn seen(&self) -> Vec<(String, bool)> {
        lock(&self.seen).clone()
    }

    /// The step cut before its record, if the cut was one.
    pub(crate) fn pending_step(&self) -> Option<String> {
        lock(&self.pending).clone()
    }

    /// Resolves once the cut happened.
    pub(crate) async fn fired(&self) {
        let mut rx = self.fired.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Whether the cut happened.
    pub(crate) fn has_fired(&self) -> bool {
        *self.fired.borrow()
    }

    /// A step of `workflow_id` is about to write its record: `true` when the cut is here (the
    /// caller closes the database first).
    pub(crate) fn before_step(&self, workflow_id: &str, name: &str) -> bool {
        if workflow_id != self.workflow_id || self.has_fired() {
            return false;
        }
        let n = self.committed.load(Ordering::SeqCst) + 1;
        if self.at == At::Before(n) {
            *lock(&self.pending) = Some(name.to_owned());
            self.fired.send_replace(true);
            return true;
        }
        false
    }

    /// Checkpoint `name` of `workflow_id` committed: `true` when the cut is here.
    pub(crate) fn committed(&self, workflow_id: &str, name: &str, step: bool) -> bool {
        if workflow_id != self.workflow_id || self.has_fired() {
            return false;
        }
        let n = self.committed.fetch_add(1, Ordering::SeqCst) + 1;
        lock(&self.seen).push((name.to_owned(), step));
        if self.at == At::After(n) {
            self.fired.send_replace(true);
            return true;
        }
        false
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
