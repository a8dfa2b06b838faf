//! The widget store: `cargo run -p widget-store`, then open http://localhost:8000.
//!
//! The binary is a small supervisor around a worker process. The supervisor binds the listening
//! socket once and hands it to each worker, so while a crashed worker restarts, connections wait
//! in the socket's backlog instead of being refused. After the crash button (or any crash) the
//! supervisor starts a new worker at once, and recovery resumes the interrupted checkouts.
//! Ctrl-C / SIGTERM stops both.
//!
//! Environment: `DBOS_DATABASE_URL` (default: SQLite file `widget_store.sqlite` in the working
//! directory; `postgres://…` for Postgres), `HOST` (default 0.0.0.0), `PORT` (default 8000),
//! `RUST_LOG` (default `info`).

mod http;
use widget_store::store;

use dbos_runtime::prelude::*;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

/// The file descriptor the worker finds the listening socket on.
const LISTEN_FD: i32 = 3;
const WORKER_ENV: &str = "WIDGET_STORE_WORKER";

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// The worker's exit code when it fails on its own (it cannot start: bad configuration, the
/// database is unreachable), unlike a crash (the crash button exits with 1, a kill by a signal).
const WORKER_FAILED: u8 = 2;

fn main() -> std::process::ExitCode {
    init_logging();
    let is_worker = std::env::var_os(WORKER_ENV).is_some();
    let result = if is_worker { worker() } else { supervisor() };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::from(if is_worker { WORKER_FAILED } else { 1 })
        }
    }
}

/// Binds the port, then runs workers until asked to stop.
fn supervisor() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let port: u16 = std::env::var("PORT")
        .unwrap_or_else(|_| "8000".into())
        .parse()
        .map_err(|e| format!("PORT must be a port number: {e}"))?;
    let listener = bind(&host, port)?;
    let display_host = if host == "0.0.0.0" {
        "localhost"
    } else {
        host.as_str()
    };
    tracing::info!("widget store on http://{display_host}:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(supervise(listener))
}

/// Binds `host:port`. A store SIGKILLed a moment ago may still hold the port while its worker
/// exits, so a restart by a supervisor (systemd, a container runtime) retries for up to 5 s
/// before it gives up.
fn bind(host: &str, port: u16) -> Result<TcpListener, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut waited = false;
    loop {
        match TcpListener::bind((host, port)) {
            Ok(listener) => {
                if waited {
                    tracing::info!("port {port} is free again");
                }
                return Ok(listener);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !waited {
                    tracing::warn!("port {port} is still in use (a store that just died?); retrying for up to 5 s");
                    waited = true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("cannot listen on {host}:{port}: {e}")),
        }
    }
}

async fn supervise(listener: TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let exe = std::env::current_exe()?;
    let fd = listener.as_raw_fd();
    loop {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.env(WORKER_ENV, "1");
        let supervisor_pid = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls: dup2 clears
        // close-on-exec on the copy, so the worker inherits the socket as fd 3; prctl makes the
        // worker die with the supervisor, so a killed supervisor leaves no orphan on the port.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::getppid() != supervisor_pid
                {
                    return Err(std::io::Error::other("the supervisor is gone"));
                }
                let ok = if fd == LISTEN_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0) >= 0
                } else {
                    libc::dup2(fd, LISTEN_FD) >= 0
                };
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = cmd.spawn()?;
        let started = std::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                tracing::warn!("worker exited ({status}); restarting it");
                // A worker that cannot even start (bad configuration) must not spin the CPU; a
                // crashed or killed one is replaced at once.
                if started.elapsed() < Duration::from_secs(1) && status.code() == Some(WORKER_FAILED.into()) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            _ = term.recv() => return stop(child).await,
            _ = int.recv() => return stop(child).await,
        }
    }
}

async fn stop(mut child: tokio::process::Child) -> Result<(), Box<dyn std::error::Error>> {
    tracing::info!("stopping");
    if let Some(pid) = child.id() {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        child.kill().await?;
    }
    Ok(())
}

/// Serves the store on the socket inherited from the supervisor.
fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let listener = inherited_listener()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(listener))
}

/// The listening socket the supervisor left on `LISTEN_FD`, checked before it is used.
fn inherited_listener() -> Result<TcpListener, Box<dyn std::error::Error>> {
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `listening`.
    let rc = unsafe {
        libc::getsockopt(
            LISTEN_FD,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || listening == 0 {
        return Err(format!(
            "no listening socket on fd {LISTEN_FD}: run `widget-store` without {WORKER_ENV}"
        )
        .into());
    }
    // SAFETY: fd 3 is a listening socket (checked above) that nothing else in this process owns.
    Ok(unsafe { TcpListener::from_raw_fd(LISTEN_FD) })
}

async fn serve(listener: TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = DbosConfig::from_env("widget_store").with_version(env!("CARGO_PKG_VERSION"));
    if std::env::var_os("DBOS_ADMIN_PORT").is_none() {
        // The admin server on DBOS's port, on localhost (DBOS_ADMIN_PORT=off turns it off).
        config = config.with_admin_server(3001);
    }
    DBOS::launch(config).await?;
    store::migrate().await?;
    listener.set_nonblocking(true)?;
    let server = actix_web::HttpServer::new(|| actix_web::App::new().configure(http::routes))
        .workers(2)
        .listen(listener)?
        .run();
    server.await?;
    DBOS::shutdown().await;
    Ok(())
}
