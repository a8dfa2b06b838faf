//! Cron schedules (with seconds): each tick starts the workflow under the deterministic ID
//! `sched-<name>-<tick>`, so a tick runs once across restarts and processes.

use crate::dbos::Runtime;
use crate::error::{Error, Result};
use crate::serialization::{ArgsEncoder, Inputs};
use crate::workflow::start_erased;
use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

/// Parses a six-field cron expression (seconds first).
pub(crate) fn parse_cron(expr: &str) -> Result<croner::Cron> {
    croner::Cron::new(expr)
        .with_seconds_required()
        .parse()
        .map_err(|e| Error::Config(format!("invalid cron expression {expr:?}: {e}")))
}

/// The workflow ID of tick `t` of `name` (SYSDB rule 21: Python's isoformat).
pub fn tick_workflow_id(name: &str, t: DateTime<Utc>) -> String {
    format!("sched-{name}-{}", t.to_rfc3339_opts(SecondsFormat::Secs, false))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Runs one schedule until the task is aborted at shutdown. Each next tick is computed from the
/// cron and the previous tick, never by adding durations, so there is no drift; a slow workflow
/// does not delay the next tick (ticks start in the background).
pub(crate) async fn run_schedule(rt: Runtime, name: &'static str, expr: &'static str) {
    let cron = match parse_cron(expr) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(workflow = name, "schedule disabled: {e}");
            return;
        }
    };
    let Some(entry) = rt.registry().get(name) else {
        tracing::error!(workflow = name, "schedule disabled: {}", Error::NotRegistered { name: name.to_owned() });
        return;
    };
    let mut after = Utc::now();
    loop {
        let tick = match cron.find_next_occurrence(&after, false) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(workflow = name, "schedule has no next tick: {e}");
                return;
            }
        };
        let wait = (tick - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(wait).await;
        let actual = Utc::now();
        let args = ArgsEncoder::from_values(vec![stamp(tick).into(), stamp(actual).into()]);
        let started = args
            .finish()
            .and_then(|text| Inputs::parse(Some(&text), None))
            .and_then(entry.resume);
        match started {
            Ok(mut call) => {
                call.id = Some(tick_workflow_id(name, tick));
                let rt2 = rt.clone();
                // Start in the background so a slow insert never delays the next tick.
                rt.spawn(async move {
                    let started = crate::context::scope(
                        crate::context::Current { rt: rt2, wf: None, in_step: false },
                        start_erased(call, false),
                    )
                    .await;
                    if let Err(e) = started {
                        tracing::warn!(workflow = name, "scheduled tick did not start: {e}");
                    }
                });
            }
            Err(e) => tracing::error!(workflow = name, "cannot build the scheduled call: {e}"),
        }
        after = tick;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn tick_ids_follow_python_isoformat() {
        let t = Utc.with_ymd_and_hms(2026, 10, 5, 12, 0, 0).unwrap();
        assert_eq!(tick_workflow_id("dispatch_paid", t), "sched-dispatch_paid-2026-10-05T12:00:00+00:00");
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
}
