//! No stranded work (Postgres): each launched process renews a liveness record; the live
//! processes of the application take over the unfinished workflows of one that died.
//!
//! - A process that misses its deadline ([`DbosConfig::liveness_timeout`]) is dead: one live
//!   process (the one whose takeover deletes its record) moves its PENDING workflows back to
//!   their queues, where any dispatcher claims them; they resume from their last checkpoint.
//! - A process on this host whose pid no longer runs is dead at once (a restart takes over its
//!   predecessor's work without waiting), and so is one that shut down cleanly.
//! - On a SQLite file (all its processes share one host), executors hold slot locks instead
//!   (`config::resolve_executor_id`): at launch, a free slot other than ours belonged to a
//!   process that is gone, and its unfinished workflows go back to their queues.
//! - A process that was only paused and comes back is fenced: every checkpoint write requires
//!   the workflow to be PENDING under the writer's executor ID (`sysdb::queries::cancel_guard`),
//!   so its executions stop at their next operation and never record a step twice.
//!
//! [`DbosConfig::liveness_timeout`]: crate::DbosConfig::liveness_timeout

use crate::config::hostname;
use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// Whether process `pid` of this host still runs (a zombie does not); `true` when that cannot
/// be told on this platform.
fn pid_alive(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.trim().chars().next()),
                Some('Z' | 'X')
            ),
            Err(_) => false,
        }
    } else {
        true
    }
}

/// Records this executor as alive, takes over the dead ones' work, and keeps doing both every
/// fifth of the liveness timeout until shutdown. A no-op on SQLite.
pub(crate) async fn start(rt: &Runtime) -> Result<()> {
    if !rt.db().is_postgres() {
        return recover_free_sqlite_slots(rt).await;
    }
    rt.db().create_liveness_table().await?;
    let me = Me {
        host: hostname(),
        pid: i64::from(std::process::id()),
        started_at: crate::sysdb::now_ms(),
        timeout_ms: rt.config().liveness_timeout.as_millis() as i64,
        pid_ns: pid_namespace(),
    };
    renew(rt, &me).await?;
    let rt2 = rt.clone();
    rt.keep(tokio::spawn(async move {
        let every = rt2.config().liveness_timeout / 5;
        loop {
            if rt2
                .unless_stopping(tokio::time::sleep(every))
                .await
                .is_err()
            {
                return;
            }
            match renew(&rt2, &me).await {
                Ok(()) => {}
                Err(Error::ShuttingDown) => return,
                Err(e) => tracing::warn!("liveness: {e}"),
            }
        }
    }));
    Ok(())
}

/// On a SQLite file: takes each free executor slot other than ours for a moment and moves its
/// PENDING workflows back to their queues (a process that held it is gone; holding the lock
/// keeps a process that starts meanwhile from taking the slot while we move its work).
async fn recover_free_sqlite_slots(rt: &Runtime) -> Result<()> {
    let cfg = rt.config();
    let sys = cfg
        .system_database_url
        .as_deref()
        .unwrap_or(&cfg.database_url);
    let Some(dir) = crate::config::sqlite_slot_dir(sys) else {
        return Ok(());
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut slots: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("slot-")?
                .strip_suffix(".lock")?
                .parse()
                .ok()
        })
        .collect();
    slots.sort_unstable();
    for n in slots {
        let id = crate::config::sqlite_slot_id(n);
        if id == cfg.executor_id {
            continue;
        }
        let Some(lock) = crate::config::lock_slot(&dir, n) else {
            continue; // A live process holds it.
        };
        let moved = rt
            .db()
            .recover_executor(&id, crate::queue::INTERNAL_QUEUE)
            .await;
        drop(lock);
        let moved = moved?;
        if !moved.is_empty() {
            tracing::info!(executor = %id, moved = moved.len(), "took over the unfinished workflows of a process that is gone");
            rt.metrics().executor_taken_over();
            rt.wake_dispatcher();
        }
    }
    Ok(())
}

struct Me {
    host: String,
    pid: i64,
    started_at: i64,
    /// Our deadline, recorded with each renewal: peers judge us by it.
    timeout_ms: i64,
    /// Our PID namespace: peers check our pid only from the same one.
    pid_ns: Option<String>,
}

/// This process's PID namespace (`pid:[4026531836]`), where the platform tells it.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Renews our record, then takes over whoever is dead.
async fn renew(rt: &Runtime, me: &Me) -> Result<()> {
    rt.db()
        .beat(
            &me.host,
            me.pid,
            me.started_at,
            me.timeout_ms,
            me.pid_ns.as_deref(),
        )
        .await?;
    take_over_dead(rt, me).await
}

async fn take_over_dead(rt: &Runtime, me: &Me) -> Result<()> {
    for peer in rt.db().takeover_candidates(&me.host).await? {
        // Its pid means something here only on this host and in this PID namespace (containers
        // may share a hostname but not their pids).
        let dead_pid = peer.hostname.as_deref() == Some(me.host.as_str())
            && me.pid_ns.is_some()
            && peer.pid_ns == me.pid_ns
            && peer.pid.is_some_and(|p| p != me.pid && !pid_alive(p));
        if !peer.expired && !dead_pid {
            continue;
        }
        if let Some(moved) = rt.db().take_over(&peer, dead_pid).await? {
            let why = if dead_pid {
                "its process is gone"
            } else {
                "it missed its liveness deadline"
            };
            tracing::info!(executor = %peer.executor_id, moved, "took over a dead executor's unfinished workflows ({why})");
            rt.metrics().executor_taken_over();
            rt.wake_dispatcher();
        }
    }
    Ok(())
}
