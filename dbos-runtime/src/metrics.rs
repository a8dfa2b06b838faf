//! Counters for benchmarks and tests: how much database work the runtime did.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one runtime.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    commits: AtomicU64,
    retries: AtomicU64,
}

/// A snapshot of the runtime's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Database transactions committed by the runtime (system and application databases),
    /// including the launch-time and dispatcher work.
    pub commits: u64,
    /// Transaction attempts retried after a serialization failure, deadlock or busy database.
    pub transaction_retries: u64,
    /// SQLite only: the `COMMIT`s the writer actually ran. Operations that arrive together
    /// share one (group commit), so this is at most `commits`.
    pub sqlite_batch_commits: u64,
}

impl Metrics {
    pub(crate) fn add_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            transaction_retries: self.retries.load(Ordering::Relaxed),
            sqlite_batch_commits: 0,
        }
    }
}
