//! `#[step]`: a checkpointed call, retried with exponential backoff.

use crate::error::{Error, WorkflowError};
use crate::operation::{self, Begun, Site};
use crate::serialization::Format;
use crate::workflow::replay_step;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::time::Duration;

/// Retry policy of a step: `max_attempts` tries, waiting `interval_secs`, then that times
/// `backoff` after each failure.
#[derive(Debug, Clone, Copy)]
pub struct StepOptions {
    /// Attempts in all (≥ 1).
    pub max_attempts: u32,
    /// The first wait between attempts, in seconds.
    pub interval_secs: f64,
    /// The factor applied to the wait after each failed attempt (≥ 1).
    pub backoff: f64,
    /// How the step's output is stored.
    pub format: Format,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            max_attempts: 1,
            interval_secs: 1.0,
            backoff: 2.0,
            format: Format::Json,
        }
    }
}

/// Runs a step without retries. Inside a workflow its outcome is recorded at the next position
/// and replayed on recovery; elsewhere (or inside another step) it is a plain call.
pub async fn run_step_once<T, E, F>(name: &'static str, format: Format, body: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>> + Send,
    T: Serialize + DeserializeOwned + Send,
    E: WorkflowError,
{
    let mut body = Some(body);
    let opts = StepOptions {
        format,
        ..StepOptions::default()
    };
    run_step(name, opts, move || {
        let b = body.take();
        async move {
            match b {
                Some(b) => b.await,
                None => Err(E::from(Error::BadInputs(
                    "a step without retries ran twice".into(),
                ))),
            }
        }
    })
    .await
}

/// Runs a step, retrying failures per `opts`; the final outcome (value or last error) is recorded.
pub async fn run_step<T, E, F, Fut>(
    name: &'static str,
    opts: StepOptions,
    mut body: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<T, E>> + Send,
    T: Serialize + DeserializeOwned + Send,
    E: WorkflowError,
{
    let op = match operation::begin(name) {
        Ok(Site::Workflow(Begun::Recorded(row))) => return replay_step(&row),
        Ok(Site::Workflow(Begun::Run(op))) => op.step(),
        // Outside a workflow (even with no runtime launched) or inside a step: a plain call.
        Ok(Site::Outside(_) | Site::InStep(..)) | Err(Error::NotLaunched) => {
            return with_retries(name, opts, &mut body).await
        }
        Err(e) => return Err(E::from(e)),
    };
    let started = std::time::Instant::now();
    let result = op
        .run_body("step", with_retries(name, opts, &mut body))
        .await;
    op.rt().metrics().step_ran(name, started.elapsed());
    op.before_record();
    op.record_outcome(&result, opts.format)
        .await
        .map_err(E::from)?;
    result
}

async fn with_retries<T, E, F, Fut>(name: &str, opts: StepOptions, body: &mut F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: WorkflowError,
{
    let attempts = opts.max_attempts.max(1);
    let mut wait = opts.interval_secs.max(0.0);
    let mut attempt = 1;
    loop {
        match body().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < attempts => {
                tracing::warn!(
                    step = name,
                    attempt,
                    "step failed, retrying in {wait:.3}s: {}",
                    e.to_portable()
                );
                backoff(Duration::from_secs_f64(wait.min(3600.0)))
                    .await
                    .map_err(E::from)?;
                wait *= opts.backoff.max(1.0);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The wait between attempts; a shutdown ends it with [`Error::ShuttingDown`] (the step stops
/// and resumes at the next launch). Boxed: nested steps nest their futures, and this one is
/// only needed on a retry.
fn backoff(wait: Duration) -> std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> {
    Box::pin(async move {
        let nap = tokio::time::sleep(wait);
        match crate::context::runtime() {
            Ok(rt) => rt.unless_stopping(nap).await,
            Err(_) => {
                nap.await;
                Ok(())
            }
        }
    })
}
