//! No stranded work (Postgres): each launched process renews a liveness record; the live
//! processes of the application take over the unfinished workflows of one that died.
//!
//! - A process that misses its deadline ([`DbosConfig::liveness_timeout`]) is dead: one live
//!   process (the one whose takeover deletes its record) moves its PENDING workflows back to
//!   their queues, where any dispatcher claims them; they resume from their last checkpoint.
//! - A process on this host whose pid no longer runs is dead at once (a restart takes over its
//!   predecessor's work without waiting), and so is one that shut down cleanly.
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
        return Ok(());
    }
    rt.db().create_liveness_table().await?;
    let me = Me {
        host: hostname(),
        pid: i64::from(std::process::id()),
        started_at: crate::sysdb::now_ms(),
    };
    rt.db().beat(&me.host, me.pid, me.started_at).await?;
    take_over_dead(rt, &me).await?;
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
            let pass = async {
                rt2.db().beat(&me.host, me.pid, me.started_at).await?;
                take_over_dead(&rt2, &me).await
            };
            match pass.await {
                Ok(()) => {}
                Err(Error::ShuttingDown) => return,
                Err(e) => tracing::warn!("liveness: {e}"),
            }
        }
    }));
    Ok(())
}

struct Me {
    host: String,
    pid: i64,
    started_at: i64,
}

async fn take_over_dead(rt: &Runtime, me: &Me) -> Result<()> {
    let timeout_ms = rt.config().liveness_timeout.as_millis() as i64;
    for peer in rt.db().takeover_candidates(timeout_ms, &me.host).await? {
        let dead_pid = peer.hostname.as_deref() == Some(me.host.as_str())
            && peer.pid.is_some_and(|p| p != me.pid && !pid_alive(p));
        if !peer.expired && !dead_pid {
            continue;
        }
        if let Some(moved) = rt.db().take_over(&peer, timeout_ms, dead_pid).await? {
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
