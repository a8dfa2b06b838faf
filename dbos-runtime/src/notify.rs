//! In-process wake-ups: a writer notifies a key, every task waiting on that key wakes.
//!
//! Waiting is event-driven. A local write wakes the waiters of its key at once; the backend's
//! change feed (Postgres `LISTEN`, or the SQLite `data_version` watcher) wakes them for writes
//! made elsewhere. Each waiter also re-checks the database every [`SAFETY_NET`], the slow net
//! under a lost notification; nothing polls while nothing waits.

use crate::error::{Error, Result};
use crate::sysdb::Change;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How often a waiter re-checks the database when nothing wakes it (SYSDB rule 15: at least
/// every 60 s while a change feed runs).
pub(crate) const SAFETY_NET: Duration = Duration::from_secs(60);

/// Keys are `m:<workflow>::<topic>` (messages), `e:<workflow>::<key>` (events) and
/// `d:<workflow>` (completion).
pub(crate) struct Notifier {
    keys: Mutex<Keys>,
    /// Wakes every waiter: the database changed in a way no key names.
    everyone: Notify,
    /// How many [`Waiter`]s exist; the SQLite watcher runs only while this is non-zero.
    waiting: watch::Sender<usize>,
    /// Set at shutdown: every wait ends with [`Error::ShuttingDown`].
    closed: AtomicBool,
    /// Waits woken by a notification (not by their deadline or safety net).
    wakeups: std::sync::atomic::AtomicU64,
    /// Counts [`Notifier::notify_value`] calls: a delivered value is newer than a waiter's
    /// last check when its number is above the one the waiter read before that check.
    delivered: std::sync::atomic::AtomicU64,
    /// Wakes the keeper of unloaded workflows (`unload.rs`): one was woken, one was parked
    /// with an earlier wake-up, or the database changed in a way no key names.
    parked_changed: Notify,
}

/// A value written in this process and handed to the waiters of its key with the wake-up, so
/// that they need not read it back.
pub(crate) type Delivered = Arc<Value>;

/// What [`Delivered`] holds. Keys can collide (`e:a::b::c` is workflow `a`, key `b::c` and
/// workflow `a::b`, key `c`), so a value names its owner and a waiter checks it.
#[derive(Debug)]
pub(crate) struct Value {
    pub(crate) workflow: String,
    pub(crate) key: String,
    pub(crate) text: String,
    pub(crate) serialization: Option<String>,
}

#[derive(Default)]
struct Keys {
    map: HashMap<String, Weak<Notify>>,
    /// (workflow, topic) of each waiting `recv`: one receiver per workflow and topic.
    claimed: HashSet<(String, String)>,
    /// The last value delivered to each key that has waiters, with its delivery number;
    /// dropped with the key's last waiter.
    values: HashMap<String, (u64, Delivered)>,
    /// Workflows unloaded while they wait (see `unload.rs`).
    parked: Parked,
}

/// What an unloaded workflow waits on, besides its wake-up time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitsOn {
    /// Only the time (a sleep).
    Time,
    /// A message on this topic (a `recv`).
    Message(String),
    /// The end of this workflow (a child's `get_result`).
    Done(String),
}

/// Workflows unloaded from memory while they wait: what brings each back.
#[derive(Default)]
struct Parked {
    /// By workflow ID: what it waits on and its wake-up time.
    by_id: HashMap<String, (WaitsOn, Instant)>,
    /// The keys that wake parked workflows (`m:<workflow>::<topic>` for a `recv`,
    /// `d:<child>` for a child's result), to their workflows (keys can collide: see [`Value`]).
    by_key: HashMap<String, Vec<String>>,
    /// Those that wait for another workflow's end, to that workflow: the keeper looks at their
    /// rows every second (an end in another process notifies nobody here).
    on_done: HashMap<String, String>,
    /// Wake-up times, soonest first.
    timers: std::collections::BTreeSet<(Instant, String)>,
    /// Woken, not yet taken by the keeper.
    woken: Vec<String>,
    /// The database changed in a way no key names: the keeper looks for their messages.
    probe: bool,
}

impl Parked {
    /// Removes workflow `id`; whether it was parked.
    fn remove(&mut self, id: &str) -> bool {
        let Some((on, at)) = self.by_id.remove(id) else {
            return false;
        };
        if matches!(on, WaitsOn::Done(_)) {
            self.on_done.remove(id);
        }
        if let Some(key) = wake_key(id, &on) {
            if let Some(ids) = self.by_key.get_mut(&key) {
                ids.retain(|other| other != id);
                if ids.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
        self.timers.remove(&(at, id.to_owned()));
        true
    }
}

/// What the keeper of unloaded workflows has to do now (see [`Notifier::take_parked`]).
#[derive(Debug, Default)]
pub(crate) struct ParkedWork {
    /// Workflows to load again: their message came, or their wake-up time passed.
    pub woken: Vec<String>,
    /// When the next one is due, if any is parked with a later wake-up.
    pub next: Option<Instant>,
    /// When a probe is due: every parked workflow (or, for the poll of ends, those that wait
    /// for one), with what it waits on (its row may have changed unnoticed: a message, a
    /// cancel, an end).
    pub probe: Vec<(String, WaitsOn)>,
    /// Some parked workflow waits for another's end.
    pub on_done: bool,
    /// `probe` holds every parked workflow (not only those waiting for an end).
    pub full_probe: bool,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            keys: Mutex::new(Keys::default()),
            everyone: Notify::new(),
            waiting: watch::Sender::new(0),
            closed: AtomicBool::new(false),
            wakeups: std::sync::atomic::AtomicU64::new(0),
            delivered: std::sync::atomic::AtomicU64::new(0),
            parked_changed: Notify::new(),
        }
    }
}

impl Notifier {
    fn keys(&self) -> MutexGuard<'_, Keys> {
        match self.keys.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The wake-up for `key`; hold it (and enable a `notified()` future) before checking the
    /// database, so a write in between is never missed.
    pub(crate) fn subscribe(&self, key: &str) -> Arc<Notify> {
        let mut keys = self.keys();
        if let Some(n) = keys.map.get(key).and_then(Weak::upgrade) {
            return n;
        }
        let map = &mut keys.map;
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        map.insert(key.to_owned(), Arc::downgrade(&n));
        n
    }

    /// A waiter on `key`, counted while it lives.
    pub(crate) fn waiter(&self, key: String) -> Waiter<'_> {
        let notify = self.subscribe(&key);
        self.waiting.send_modify(|n| *n += 1);
        Waiter {
            notifier: self,
            key,
            notify: Some(notify),
            claimed: None,
        }
    }

    /// A waiter on the messages of `workflow` on `topic`, the only one: `None` while another
    /// claim holds them.
    pub(crate) fn claim(&self, workflow: &str, topic: &str) -> Option<Waiter<'_>> {
        let claim = (workflow.to_owned(), topic.to_owned());
        if !self.keys().claimed.insert(claim.clone()) {
            return None;
        }
        let mut w = self.waiter(message_key(workflow, topic));
        w.claimed = Some(claim);
        Some(w)
    }

    /// Wakes every task waiting on `key`, and the workflow parked on it.
    pub(crate) fn notify(&self, key: &str) {
        let n = {
            let mut keys = self.keys();
            self.wake_parked_key(&mut keys, key);
            match keys.map.get(key).map(Weak::upgrade) {
                Some(Some(n)) => Some(n),
                Some(None) => {
                    keys.map.remove(key);
                    None
                }
                None => None,
            }
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    /// Wakes every task waiting on `key` and hands them `value`, just committed by this
    /// process: a waiter whose last check found nothing takes it instead of reading the
    /// database again. Nothing is kept when nobody waits.
    pub(crate) fn notify_value(&self, key: &str, value: impl FnOnce() -> Delivered) {
        let n = {
            let mut keys = self.keys();
            self.wake_parked_key(&mut keys, key);
            match keys.map.get(key).map(Weak::upgrade) {
                Some(Some(n)) => {
                    let number = self.delivered.fetch_add(1, Ordering::SeqCst) + 1;
                    keys.values.insert(key.to_owned(), (number, value()));
                    Some(n)
                }
                Some(None) => {
                    keys.map.remove(key);
                    keys.values.remove(key);
                    None
                }
                None => None,
            }
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    /// The value delivered to `key` after delivery number `since`, if any.
    fn delivered_since(&self, key: &str, since: u64) -> Option<Delivered> {
        match self.keys().values.get(key) {
            Some((number, v)) if *number > since => Some(v.clone()),
            _ => None,
        }
    }

    /// Wakes every [`Waiter`], whatever its key, to re-check the database (and has the
    /// messages of parked workflows looked for).
    pub(crate) fn notify_all(&self) {
        self.everyone.notify_waiters();
        let mut keys = self.keys();
        if !keys.parked.by_id.is_empty() {
            keys.parked.probe = true;
            drop(keys);
            self.parked_changed.notify_one();
        }
    }

    fn wake_parked_key(&self, keys: &mut Keys, key: &str) {
        let Some(ids) = keys.parked.by_key.get(key).cloned() else {
            return;
        };
        for id in ids {
            if keys.parked.remove(&id) {
                keys.parked.woken.push(id);
                self.waiting.send_modify(|n| *n = n.saturating_sub(1));
            }
        }
        self.parked_changed.notify_one();
    }

    /// Parks workflow `id`, unloaded from memory: what it waits on (see [`WaitsOn`]), or the
    /// time `at`, brings it back through [`Notifier::take_parked`]. Parked workflows count as
    /// waiters (the SQLite watcher runs for them). `false` once the notifier is closed.
    pub(crate) fn park(&self, id: &str, on: WaitsOn, at: Instant) -> bool {
        let mut keys = self.keys();
        if self.check_open().is_err() {
            return false;
        }
        let parked = &mut keys.parked;
        if parked.remove(id) {
            self.waiting.send_modify(|n| *n = n.saturating_sub(1));
        }
        if let Some(key) = wake_key(id, &on) {
            parked.by_key.entry(key).or_default().push(id.to_owned());
        }
        if let WaitsOn::Done(child) = &on {
            parked.on_done.insert(id.to_owned(), child.clone());
        }
        parked.timers.insert((at, id.to_owned()));
        parked.by_id.insert(id.to_owned(), (on, at));
        // Counted under the lock: a wake-up that removes it right after uncounts it.
        self.waiting.send_modify(|n| *n += 1);
        drop(keys);
        self.parked_changed.notify_one();
        true
    }

    /// Unparks workflow `id` (it runs again); whether it was parked.
    pub(crate) fn unpark(&self, id: &str) -> bool {
        let mut keys = self.keys();
        let removed = keys.parked.remove(id);
        if removed {
            self.waiting.send_modify(|n| *n = n.saturating_sub(1));
        }
        removed
    }

    /// Wakes workflow `id` if it is parked, as its message would.
    pub(crate) fn wake_parked(&self, id: &str) {
        let mut keys = self.keys();
        if keys.parked.remove(id) {
            keys.parked.woken.push(id.to_owned());
            self.waiting.send_modify(|n| *n = n.saturating_sub(1));
            drop(keys);
            self.parked_changed.notify_one();
        }
    }

    /// Whether workflow `id` is parked.
    pub(crate) fn is_parked(&self, id: &str) -> bool {
        self.keys().parked.by_id.contains_key(id)
    }

    /// How many workflows are parked.
    pub(crate) fn parked(&self) -> usize {
        self.keys().parked.by_id.len()
    }

    /// Takes the parked workflows to load again (woken, or due by `now`), the next wake-up
    /// time, and, when a probe was asked for (or `probe`), every parked workflow; else, with
    /// `poll_done`, those that wait for another's end. With `probes` false (one still runs),
    /// a probe asked for stays asked for.
    pub(crate) fn take_parked(
        &self,
        now: Instant,
        probe: bool,
        poll_done: bool,
        probes: bool,
    ) -> ParkedWork {
        let mut keys = self.keys();
        let parked = &mut keys.parked;
        let mut woken = std::mem::take(&mut parked.woken);
        while let Some((at, id)) = parked.timers.first().cloned() {
            if at > now {
                break;
            }
            parked.remove(&id);
            self.waiting.send_modify(|n| *n = n.saturating_sub(1));
            woken.push(id);
        }
        let probe = probes && (std::mem::take(&mut parked.probe) || probe);
        let list = if probe {
            parked
                .by_id
                .iter()
                .map(|(id, (on, _))| (id.clone(), on.clone()))
                .collect()
        } else if probes && poll_done {
            parked
                .on_done
                .iter()
                .map(|(id, child)| (id.clone(), WaitsOn::Done(child.clone())))
                .collect()
        } else {
            Vec::new()
        };
        ParkedWork {
            woken,
            next: parked.timers.first().map(|(at, _)| *at),
            full_probe: probe && !list.is_empty(),
            probe: list,
            on_done: !parked.on_done.is_empty(),
        }
    }

    /// Wakes the keeper of parked workflows (a probe ended: one asked for meanwhile may run).
    pub(crate) fn nudge_parked(&self) {
        self.parked_changed.notify_one();
    }

    /// Resolves when the parked workflows changed (see [`Notifier::take_parked`]).
    pub(crate) async fn parked_changed(&self) {
        self.parked_changed.notified().await
    }

    /// Ends every wait, now and later, with [`Error::ShuttingDown`] (at shutdown).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.everyone.notify_waiters();
    }

    /// [`Error::ShuttingDown`] once [`Notifier::close`] ran.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    /// Waits for `notified` (armed by the caller before its check), a shutdown, or `timeout`;
    /// [`Error::ShuttingDown`] when the notifier is closed.
    pub(crate) async fn wait(
        &self,
        notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
        timeout: Duration,
    ) -> Result<()> {
        let all = self.everyone.notified();
        tokio::pin!(all);
        all.as_mut().enable();
        self.check_open()?;
        tokio::select! {
            _ = notified => {}
            _ = all => {}
            _ = tokio::time::sleep(timeout) => {}
        }
        self.check_open()
    }

    /// Applies what the database's change feed reported.
    pub(crate) fn on_change(&self, change: Change<'_>) {
        match change {
            Change::Message(payload) => self.notify(&format!("m:{payload}")),
            Change::Event(payload) => self.notify(&format!("e:{payload}")),
            Change::Stream(payload) => self.notify(&format!("s:{payload}")),
            Change::Cancelled(id) => self.notify(&done_key(id)),
            Change::Queue(_) => {}
            Change::Unknown => self.notify_all(),
        }
    }

    /// How many waits a notification has woken so far.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// The number of live [`Waiter`]s, watched by the SQLite change watcher.
    pub(crate) fn waiting(&self) -> watch::Receiver<usize> {
        self.waiting.subscribe()
    }
}

/// A task waiting for `key`; it is counted (and holds its claim) until dropped.
pub(crate) struct Waiter<'a> {
    notifier: &'a Notifier,
    key: String,
    notify: Option<Arc<Notify>>,
    /// The (workflow, topic) this waiter claimed, if any.
    claimed: Option<(String, String)>,
}

impl Waiter<'_> {
    /// Runs `check` until it yields a value, or returns `None` once `deadline` has passed.
    ///
    /// `check` runs first at once, then after each wake-up of this key, after each wake-up of
    /// every waiter, and at least every [`SAFETY_NET`]; the wake-ups are armed before each
    /// check, so a write that lands during the check is never missed.
    pub(crate) async fn until<T, F, Fut>(
        &self,
        deadline: Instant,
        mut check: F,
    ) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        self.until_lazy(
            || async { Ok(deadline) },
            |_| check(),
            std::future::pending::<Error>,
        )
        .await
    }

    /// Like [`Waiter::until`], with the deadline computed only when the first check found
    /// nothing (an operation records its deadline only when it has to wait), each check after a
    /// wake-up given the value this process delivered with it ([`Notifier::notify_value`]),
    /// if one came since the previous check, and `interrupt` ending the wait with its error.
    ///
    /// `interrupt` is awaited only while nothing runs: a check or the deadline (database
    /// writes, for an operation) always finishes, so a write never outlives a shutdown that
    /// returned.
    pub(crate) async fn until_lazy<T, F, Fut, D, DFut, I, IFut>(
        &self,
        deadline: D,
        mut check: F,
        interrupt: I,
    ) -> Result<Option<T>>
    where
        F: FnMut(Option<Delivered>) -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
        D: FnOnce() -> DFut,
        DFut: Future<Output = Result<Instant>>,
        I: Fn() -> IFut,
        IFut: Future<Output = Error>,
    {
        let Some(notify) = &self.notify else {
            return Ok(None);
        };
        let mut deadline = Some(deadline);
        let mut until = None;
        let mut delivered = None;
        loop {
            let mine = notify.notified();
            let all = self.notifier.everyone.notified();
            tokio::pin!(mine, all);
            mine.as_mut().enable();
            all.as_mut().enable();
            // Read after arming: a value delivered from now on is newer than this check.
            let since = self.notifier.delivered.load(Ordering::SeqCst);
            self.notifier.check_open()?;
            if let Some(v) = check(delivered.take()).await? {
                return Ok(Some(v));
            }
            let end = match (until, deadline.take()) {
                (Some(end), _) => end,
                (None, Some(d)) => *until.insert(d().await?),
                (None, None) => return Ok(None),
            };
            let now = Instant::now();
            if now >= end {
                return Ok(None);
            }
            let nap = tokio::time::sleep_until(end.min(now + SAFETY_NET));
            let (woken, by_key) = tokio::select! {
                _ = mine => (true, true),
                _ = all => (true, false),
                _ = nap => (false, false),
                e = interrupt() => return Err(e),
            };
            if woken {
                self.notifier.wakeups.fetch_add(1, Ordering::Relaxed);
            }
            // Only a wake-up of this key can bring a value, and only when one was delivered
            // (to any key) since the check.
            if by_key && self.notifier.delivered.load(Ordering::SeqCst) > since {
                delivered = self.notifier.delivered_since(&self.key, since);
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut keys = self.notifier.keys();
        if let Some(claim) = self.claimed.take() {
            keys.claimed.remove(&claim);
        }
        drop(self.notify.take());
        if keys
            .map
            .get(&self.key)
            .is_some_and(|w| w.strong_count() == 0)
        {
            keys.map.remove(&self.key);
            keys.values.remove(&self.key);
        }
        drop(keys);
        self.notifier
            .waiting
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The key whose notification wakes workflow `id` parked on `on`, if any.
fn wake_key(id: &str, on: &WaitsOn) -> Option<String> {
    match on {
        WaitsOn::Time => None,
        WaitsOn::Message(topic) => Some(message_key(id, topic)),
        WaitsOn::Done(child) => Some(done_key(child)),
    }
}

pub(crate) fn message_key(workflow: &str, topic: &str) -> String {
    format!("m:{workflow}::{topic}")
}

pub(crate) fn event_key(workflow: &str, key: &str) -> String {
    format!("e:{workflow}::{key}")
}

pub(crate) fn stream_key(workflow: &str, key: &str) -> String {
    format!("s:{workflow}::{key}")
}

pub(crate) fn done_key(workflow: &str) -> String {
    format!("d:{workflow}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notify_during_the_check_is_not_missed() {
        let n = Notifier::default();
        let w = n.waiter("m:wf::t".into());
        let mut calls = 0;
        let got = w
            .until(Instant::now() + Duration::from_secs(5), || {
                calls += 1;
                if calls == 1 {
                    // The write lands after the waiter armed itself but before it sleeps.
                    n.notify("m:wf::t");
                }
                let found = (calls == 2).then_some(calls);
                async move { Ok(found) }
            })
            .await
            .unwrap();
        assert_eq!(got, Some(2));
    }

    #[tokio::test]
    async fn notify_all_wakes_every_key_and_the_deadline_ends_the_wait() {
        let n = Arc::new(Notifier::default());
        let n2 = n.clone();
        let start = Instant::now();
        let waiter = tokio::spawn(async move {
            let w = n2.waiter("e:wf::k".into());
            let mut checks = 0;
            let got: Option<()> = w
                .until(Instant::now() + Duration::from_millis(300), || {
                    checks += 1;
                    async { Ok(None) }
                })
                .await
                .unwrap();
            (got, checks)
        });
        let mut waiting = n.waiting();
        waiting.wait_for(|c| *c == 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        n.notify_all();
        let (got, checks) = waiter.await.unwrap();
        assert_eq!(got, None);
        assert_eq!(
            checks, 3,
            "one check at first, one after notify_all, a last one at the deadline"
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            *n.waiting().borrow(),
            0,
            "the waiter is uncounted once dropped"
        );
        assert!(n.keys().map.is_empty(), "no key is left behind");
    }

    #[tokio::test]
    async fn a_value_delivered_after_a_miss_reaches_the_check_but_an_older_one_does_not() {
        let n = Arc::new(Notifier::default());
        let value = |v: &str| -> Delivered {
            Arc::new(Value {
                workflow: "wf".into(),
                key: "k".into(),
                text: v.to_owned(),
                serialization: None,
            })
        };
        // Nobody waits: nothing is kept.
        n.notify_value("e:wf::k", || value("unseen"));
        assert!(n.keys().values.is_empty());
        let w = n.waiter("e:wf::k".into());
        // Delivered before the waiter's first check: that check reads the database instead.
        n.notify_value("e:wf::k", || value("old"));
        let mut seen = Vec::new();
        let n2 = n.clone();
        let got = w
            .until_lazy(
                || async { Ok(Instant::now() + Duration::from_secs(5)) },
                |delivered: Option<Delivered>| {
                    seen.push(delivered.as_ref().map(|d| d.text.clone()));
                    if seen.len() == 1 {
                        n2.notify_value("e:wf::k", || value("new"));
                    }
                    let found = delivered.map(|d| d.text.clone());
                    async move { Ok(found) }
                },
                std::future::pending::<Error>,
            )
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some("new"));
        assert_eq!(seen, vec![None, Some("new".to_owned())]);
        drop(w);
        assert!(
            n.keys().values.is_empty(),
            "the value left with the last waiter"
        );
    }

    #[test]
    fn a_claimed_key_refuses_a_second_claim_until_released() {
        let n = Notifier::default();
        let first = n.claim("wf", "t");
        assert!(first.is_some());
        assert!(n.claim("wf", "t").is_none());
        assert!(n.claim("wf", "other").is_some());
        // The same message key, another workflow and topic: another claim.
        let ab = n.claim("a::b", "c");
        assert!(ab.is_some());
        assert!(n.claim("a", "b::c").is_some());
        drop(first);
        assert!(n.claim("wf", "t").is_some());
    }
}
