//! The OpenTelemetry SIGKILL test's worker: under a `request` span of an OpenTelemetry trace,
//! starts the `otel_crash` workflow (ID `WORKFLOW_ID`) on `DB_URL` as executor `otel-crash`,
//! prints `TRACE <trace id> <span id>` of the request, and blocks in the workflow's second step
//! until the test kills it.

use dbos_runtime::prelude::*;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[path = "../otel_crash.rs"]
mod otel_crash;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Spans get real trace and span IDs; none is exported.
    let otel = dbos_runtime::otel::Otel::with_provider(
        opentelemetry_sdk::trace::SdkTracerProvider::builder().build(),
    );
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otel.layer()))?;
    let url = std::env::var("DB_URL")?;
    let id = std::env::var("WORKFLOW_ID")?;
    let config = DbosConfig::new("otel-crash")
        .with_database_url(url)
        .with_version("otel-crash-1")
        .with_executor_id("otel-crash");
    let rt = dbos_runtime::Runtime::launch(config).await?;
    let request = tracing::info_span!("request");
    let sc = request.context().span().span_context().clone();
    rt.scope(
        async {
            DBOS::start_workflow(otel_crash::otel_crash().with_id(&id))
                .await
                .map(drop)
        }
        .instrument(request.clone()),
    )
    .await?;
    println!("TRACE {} {}", sc.trace_id(), sc.span_id());
    std::future::pending::<()>().await;
    Ok(())
}
