//! Cron schedules with seconds: each tick of a `#[scheduled]` function runs once, as a workflow
//! with the deterministic ID `sched-<function name>-<tick>`, across restarts and processes.
//!
//! # How a tick starts
//! At tick `t` the scheduler of every running process upserts the row `sched-<name>-<t>` as
//! `ENQUEUED` on `_dbos_internal_queue` (SYSDB rule 21) and wakes its own dispatcher, which
//! claims the row and runs the function (recovery.rs). The upsert makes the tick one row however
//! many processes fire it; the claim (`FOR UPDATE SKIP LOCKED` and `status = 'ENQUEUED'` on
//! Postgres, `BEGIN IMMEDIATE` on SQLite) makes one process run it; once claimed, the row is
//! `PENDING` under the claimer's executor and a crash is recovered like any workflow's. Every
//! process that fired the tick wakes its dispatcher, not only the one whose insert made the row:
//! that one's claim skips the row while another process's upsert holds its lock.
//!
//! Why enqueue rather than insert the row `PENDING` and run it in the inserting process, as other
//! starts do: a `PENDING` row waits for its executor's next launch, so a tick recorded by a process
//! that stopped or died before running it would wait for that process, while an `ENQUEUED` tick is
//! run by the next dispatcher pass of any live process (at most a second later) or by this
//! process's next launch. That is what makes a shutdown at any instant clean (below), and DBOS
//! tools see the rows DBOS writes. The cost is one more commit on the way to the body (the claim):
//! 1-3 ms at p50, about 20 ms at p99 on a loaded machine. The scheduler's own lateness (the
//! `actual_time` it passes, what the 50 ms goal is about) does not include it; the benchmark
//! (`tests/src/bin/bench_schedule.rs`) reports both.
//!
//! # Timing
//! Each tick is the cron's next occurrence after the previous tick, never the previous tick
//! plus a duration, and the wait is recomputed from the wall clock before every tick, so ticks
//! stay on their second boundaries without drift; a wake-up before the tick (the monotonic
//! and the wall clock disagree) sleeps again for the rest. Enqueueing runs beside the timer
//! and the body runs in its own task, so a slow tick never delays the next. When the process
//! stalls past more than one tick (suspended, starved), only the latest due tick fires and the
//! stale ones are skipped with a warning, as ticks missed while no process ran are.
//!
//! # Missed ticks
//! Ticks that fell while no process ran are skipped, as in DBOS. With
//! [`DbosConfig::scheduler_catch_up`](crate::DbosConfig::scheduler_catch_up) set to `Some(n)`,
//! each schedule starts at launch the ticks after its last recorded one, oldest first, at most
//! `n` of them, with the launch time as their actual time.
//!
//! # Shutdown
//! A schedule is one task: the timer, the catch-up backlog and every start in flight live in
//! it, and it spawns nothing of its own. When `Runtime::shutdown` begins, the task stops
//! starting ticks and waits for the starts under way; the runtime waits for the task. A start
//! is one statement: either it was sent before shutdown began and has committed when shutdown
//! returns (the tick is `ENQUEUED` and runs in the next dispatcher pass of any process, this
//! one's next launch included), or it was refused (the tick is missed, as if the process had
//! stopped a moment earlier). There is no half-started tick, and no statement of ours
//! arrives at the database after shutdown returned.

use crate::context::{self, Current};
use crate::error::{Error, Result};
use crate::registry::ResumeFn;
use crate::runtime::Runtime;
use crate::serialization::{ArgsEncoder, Inputs};
use crate::workflow::start_erased;
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::VecDeque;
use std::time::Duration;

/// Attempts to enqueue one tick when the database fails, 50 ms apart and doubling.
const START_ATTEMPTS: u32 = 4;
/// Caught-up ticks being enqueued at once.
const CATCH_UP_IN_FLIGHT: usize = 4;
/// Stale ticks stepped over one by one after a stall before jumping to the present.
const MAX_STALE_STEPS: u32 = 100_000;
/// The prefix of the workflow a scheduled `#[transaction]` runs as (SYSDB rule 19).
const TEMP_PREFIX: &str = "<temp>.";

/// Parses a six-field cron expression (seconds first).
pub(crate) fn parse_cron(expr: &str) -> Result<croner::Cron> {
    croner::Cron::new(expr)
        .with_seconds_required()
        .parse()
        .map_err(|e| Error::Config(format!("invalid cron expression {expr:?}: {e}")))
}

/// The workflow ID of tick `t` of the scheduled function `name`, as every DBOS SDK writes it:
/// the time as Python's `isoformat()` prints it (`+00:00`, no fraction on whole seconds).
///
/// `name` is the function's registered name; for a scheduled `#[transaction]`, which runs as
/// the workflow `<temp>.<name>`, the ID still carries `<name>`.
pub fn tick_workflow_id(name: &str, t: DateTime<Utc>) -> String {
    let name = name.strip_prefix(TEMP_PREFIX).unwrap_or(name);
    format!(
        "sched-{name}-{}",
        t.to_rfc3339_opts(SecondsFormat::Secs, false)
    )
}

/// A timestamp argument (SYSDB §5: three fractional digits and `Z`).
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// One registered schedule.
struct Schedule {
    rt: Runtime,
    /// The registered workflow (`<temp>.<fn>` for a scheduled transaction).
    workflow: &'static str,
    cron: croner::Cron,
    resume: ResumeFn,
}

impl Schedule {
    /// The first occurrence strictly after `t`.
    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.cron.find_next_occurrence(&whole_second(t), false) {
            Ok(next) => Some(whole_second(next)),
            Err(e) => {
                tracing::error!(
                    workflow = self.workflow,
                    "schedule has no tick after {t}: {e}"
                );
                None
            }
        }
    }

    /// Enqueues tick `tick`, retrying database failures a few times; a start that still fails
    /// is logged and the tick is missed. Returns `caught_up`, to tell the two kinds apart.
    async fn start(&self, tick: DateTime<Utc>, actual: DateTime<Utc>, caught_up: bool) -> bool {
        let id = tick_workflow_id(self.workflow, tick);
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=START_ATTEMPTS {
            match self.enqueue(&id, tick, actual).await {
                Ok(()) => break,
                // Refused, not cut short: the tick is missed, as if the process had stopped.
                Err(Error::ShuttingDown) => break,
                Err(e @ Error::Database { .. }) if attempt < START_ATTEMPTS => {
                    tracing::warn!(workflow_id = %id, attempt, "enqueueing a scheduled tick failed, retrying: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    tracing::error!(workflow_id = %id, "scheduled tick not started: {e}");
                    break;
                }
            }
        }
        caught_up
    }

    /// One upsert of the tick's `ENQUEUED` row (an existing row is left as it is).
    async fn enqueue(&self, id: &str, tick: DateTime<Utc>, actual: DateTime<Utc>) -> Result<()> {
        let inputs =
            ArgsEncoder::from_values(vec![stamp(tick).into(), stamp(actual).into()]).finish()?;
        let mut call = (self.resume)(Inputs::parse(Some(&inputs), None)?)?;
        call.id = Some(id.to_owned());
        call.inputs = Ok(inputs);
        let current = Current::outside(self.rt.clone());
        context::scope(
            current,
            start_erased(call, Some(crate::queue::INTERNAL_QUEUE)),
        )
        .await?;
        // The start wakes our dispatcher only when our insert made the row. Wake it when
        // another process's did too: that process's claim skips the row while our upsert
        // holds its lock (`SKIP LOCKED`), and would otherwise wait for a polling pass.
        self.rt.wake_dispatcher();
        Ok(())
    }

    /// The ticks after the last recorded one up to `now`, oldest first, at most `max`.
    async fn missed_ticks(&self, now: DateTime<Utc>, max: u32) -> Result<VecDeque<DateTime<Utc>>> {
        let mut missed = VecDeque::new();
        if max == 0 {
            return Ok(missed);
        }
        let sample = tick_workflow_id(self.workflow, now);
        let prefix = &sample[..sample.len() - "2026-01-01T00:00:00+00:00".len()];
        let Some(last_id) = self
            .rt
            .db()
            .last_id_with_prefix(prefix, sample.chars().count())
            .await?
        else {
            return Ok(missed);
        };
        let last = match DateTime::parse_from_rfc3339(&last_id[prefix.len()..]) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                tracing::warn!(
                    workflow = self.workflow,
                    "no catch-up: cannot read the tick of `{last_id}`: {e}"
                );
                return Ok(missed);
            }
        };
        let mut next = self.next_after(last);
        while let Some(t) = next.filter(|t| *t <= now) {
            if missed.len() >= max as usize {
                tracing::warn!(
                    workflow = self.workflow,
                    "catching up {max} missed ticks from {last}; the ticks from {t} to {now} are skipped"
                );
                break;
            }
            missed.push_back(t);
            next = self.next_after(t);
        }
        if let (Some(first), Some(end)) = (missed.front(), missed.back()) {
            tracing::info!(
                workflow = self.workflow,
                "catching up {} missed ticks, {first} to {end}",
                missed.len()
            );
        }
        Ok(missed)
    }
}

/// Runs one schedule until the task is aborted at shutdown (see the module docs).
pub(crate) async fn run_schedule(rt: Runtime, name: &'static str, expr: &'static str) {
    let cron = match parse_cron(expr) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(workflow = name, "schedule disabled: {e}");
            return;
        }
    };
    let Some(entry) = rt.registry().get(name) else {
        tracing::error!(
            workflow = name,
            "schedule disabled: {}",
            Error::NotRegistered {
                name: name.to_owned()
            }
        );
        return;
    };
    let schedule = Schedule {
        rt,
        workflow: name,
        cron,
        resume: entry.resume,
    };
    let launched = Utc::now();
    let mut backlog = match schedule.rt.config().scheduler_catch_up {
        Some(max) => schedule
            .missed_ticks(whole_second(launched), max)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(workflow = name, "no catch-up: {e}");
                VecDeque::new()
            }),
        None => VecDeque::new(),
    };
    let mut in_flight = FuturesUnordered::new();
    let mut catching_up = 0;
    let mut next = schedule.next_after(launched);
    loop {
        while catching_up < CATCH_UP_IN_FLIGHT {
            let Some(tick) = backlog.pop_front() else {
                break;
            };
            catching_up += 1;
            in_flight.push(schedule.start(tick, Utc::now(), true));
        }
        let Some(tick) = next else {
            // The cron has no further tick: finish what is in flight, then end.
            while in_flight.next().await.is_some() {}
            return;
        };
        let wait = (tick - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            biased;
            () = tokio::time::sleep(wait) => {
                let now = Utc::now();
                if now < tick {
                    continue;
                }
                let (fire, following, skipped) = latest_due(&schedule, tick, now);
                if skipped > 0 {
                    tracing::warn!(workflow = name, "the scheduler fell {skipped} tick(s) behind; they are skipped");
                }
                // A deactivated process (the admin server's `/deactivate`) starts no new tick.
                if let Some(t) = fire.filter(|_| !schedule.rt.is_deactivated()) {
                    in_flight.push(schedule.start(t, now, false));
                }
                next = following;
            }
            Some(caught_up) = in_flight.next(), if !in_flight.is_empty() => {
                if caught_up {
                    catching_up -= 1;
                }
            }
            () = schedule.rt.stopping() => {
                // Starts under way finish (their statement commits or is refused); none begins.
                while in_flight.next().await.is_some() {}
                return;
            }
        }
    }
}

/// At the due tick `tick`: the tick to fire (the latest one at or before `now`), the next tick
/// to wait for, and how many stale ticks were stepped over (a stall, or the wall clock jumping).
fn latest_due(
    schedule: &Schedule,
    tick: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>, u32) {
    let mut due = tick;
    let mut skipped = 0;
    loop {
        match schedule.next_after(due) {
            Some(following) if following <= now => {
                skipped += 1;
                due = following;
                if skipped >= MAX_STALE_STEPS {
                    return (None, schedule.next_after(now), skipped);
                }
            }
            following => return (Some(due), following, skipped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn tick_ids_follow_python_isoformat() {
        let t = Utc.with_ymd_and_hms(2026, 10, 5, 12, 0, 0).unwrap();
        assert_eq!(
            tick_workflow_id("dispatch_paid", t),
            "sched-dispatch_paid-2026-10-05T12:00:00+00:00"
        );
    }

    #[test]
    fn a_scheduled_transaction_keeps_its_own_name_in_the_id() {
        let t = Utc.with_ymd_and_hms(2026, 10, 5, 12, 0, 0).unwrap();
        assert_eq!(
            tick_workflow_id("<temp>.shop::update_progress", t),
            "sched-shop::update_progress-2026-10-05T12:00:00+00:00"
        );
    }

    #[test]
    fn next_ticks_come_from_the_cron_not_from_durations() {
        let cron = parse_cron("*/2 * * * * *").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap();
        let a = cron.find_next_occurrence(&start, false).unwrap();
        let b = cron.find_next_occurrence(&a, false).unwrap();
        assert_eq!((a.timestamp() % 60, b.timestamp() % 60), (2, 4));
        assert!(parse_cron("* * * * *").is_err());
        assert!(parse_cron("61 * * * * *").is_err());
    }

    #[test]
    fn ticks_fall_on_whole_seconds_after_a_fractional_start() {
        let cron = parse_cron("* * * * * *").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap()
            + chrono::Duration::milliseconds(999);
        let next = whole_second(
            cron.find_next_occurrence(&whole_second(start), false)
                .unwrap(),
        );
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 2).unwrap());
        // A day of ticks computed one from the other: still on the boundary, none lost.
        let mut t = next;
        for _ in 0..86_400 {
            t = cron.find_next_occurrence(&t, false).unwrap();
        }
        assert_eq!(t, next + chrono::Duration::days(1));
        assert_eq!(t.nanosecond(), 0);
    }
}
