//! Counters of one runtime: database work (for benchmarks and tests), and what the admin
//! server's `/metrics` reports in Prometheus text format (workflows started and finished,
//! step durations, recoveries; the notifier counts wake-ups itself).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the step-duration histogram's buckets.
pub(crate) const STEP_BUCKETS: [f64; 10] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Live counters of one runtime.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    commits: AtomicU64,
    retries: AtomicU64,
    recoveries: AtomicU64,
    takeovers: AtomicU64,
    started: Mutex<BTreeMap<String, u64>>,
    finished: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    steps: Mutex<BTreeMap<String, Histogram>>,
}

/// A histogram of durations: counts per bucket (not cumulative), the sum and the count.
#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    pub buckets: [u64; STEP_BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Metrics {
    pub(crate) fn add_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A workflow execution began here (started, or resumed from its records).
    pub(crate) fn workflow_started(&self, name: &str) {
        let mut started = lock(&self.started);
        // The name is copied only the first time it is seen (this runs for every workflow).
        match started.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                started.insert(name.to_owned(), 1);
            }
        }
    }

    /// A workflow attempted before (crashed, cut off, or resumed) runs again here.
    pub(crate) fn workflow_recovered(&self) {
        self.recoveries.fetch_add(1, Ordering::Relaxed);
    }

    /// This process took over a dead executor's unfinished workflows.
    pub(crate) fn executor_taken_over(&self) {
        self.takeovers.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// A workflow execution here ended with `status` (SUCCESS, ERROR, CANCELLED, or
    /// STOPPED for one cut short by a shutdown or handed to another execution).
    pub(crate) fn workflow_finished(&self, name: &str, status: &'static str) {
        let mut finished = lock(&self.finished);
        let by_status = match finished.get_mut(name) {
            Some(m) => m,
            None => finished.entry(name.to_owned()).or_default(),
        };
        *by_status.entry(status).or_default() += 1;
    }

    /// A step or transaction body ran for `took`.
    pub(crate) fn step_ran(&self, name: &str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut steps = lock(&self.steps);
        // The name is copied only the first time it is seen (this runs for every step).
        let h = match steps.get_mut(name) {
            Some(h) => h,
            None => steps.entry(name.to_owned()).or_default(),
        };
        if let Some(i) = STEP_BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += secs;
        h.count += 1;
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            transaction_retries: self.retries.load(Ordering::Relaxed),
            sqlite_batch_commits: 0,
        }
    }

    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn started(&self) -> BTreeMap<String, u64> {
        lock(&self.started).clone()
    }

    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn finished(&self) -> BTreeMap<(String, &'static str), u64> {
        lock(&self.finished)
            .iter()
            .flat_map(|(name, m)| m.iter().map(move |(s, n)| ((name.clone(), *s), *n)))
            .collect()
    }

    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn steps(&self) -> BTreeMap<String, Histogram> {
        lock(&self.steps).clone()
    }

    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }
}
