//! OpenTelemetry: the trace context a workflow is started under is stored with it, so the
//! execution that runs it (here, after a dispatcher claims it, or in another process after a
//! crash) continues the caller's trace; and, behind the `otel` feature, [`Otel`], an OTLP
//! exporter for the `tracing` spans the runtime emits.
//!
//! The context is stored the way DBOS Python stores it: W3C trace context
//! (`{"traceparent": …}`) under the key `dbos.otelContext` of `workflow_status.attributes`, so a
//! workflow enqueued by a Python client under a trace joins that trace here, and the other way
//! round. Without the `otel` feature nothing is written and stored contexts are ignored.

/// The attribute key under which the trace context is stored (DBOS Python's name).
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) const CARRIER_KEY: &str = "dbos.otelContext";

#[cfg(feature = "otel")]
mod enabled {
    use super::CARRIER_KEY;
    use crate::error::Error;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use std::collections::HashMap;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// `workflow_status.attributes` for a workflow started now: the current span's trace
    /// context, or `None` outside any OpenTelemetry trace.
    pub(crate) fn current_attributes() -> Option<String> {
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        serde_json::to_string(&serde_json::json!({ CARRIER_KEY: carrier })).ok()
    }

    /// Makes `span` a child of the trace context stored in `attributes`, if there is a valid
    /// one; a malformed one is logged and ignored (it never fails the workflow).
    pub(crate) fn continue_trace(span: &tracing::Span, attributes: Option<&str>) {
        let Some(text) = attributes else { return };
        let carrier: Option<HashMap<String, String>> =
            serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|doc| doc.get(CARRIER_KEY).cloned())
                .and_then(|c| serde_json::from_value(c).ok());
        let Some(carrier) = carrier else { return };
        let cx = TraceContextPropagator::new().extract(&carrier);
        if !cx.span().span_context().is_valid() {
            tracing::warn!("ignoring a stored trace context that is not valid: {carrier:?}");
            return;
        }
        if let Err(e) = span.set_parent(cx) {
            tracing::debug!("cannot continue the stored trace: {e}");
        }
    }

    /// An OTLP exporter (HTTP, protobuf) for the spans the runtime emits: add its
    /// [`layer`](Otel::layer) to your `tracing` subscriber, and [`shutdown`](Otel::shutdown)
    /// it before the process exits so the last spans are sent.
    ///
    /// Configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (default
    /// `http://localhost:4318`; traces go to `<endpoint>/v1/traces`),
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), `OTEL_EXPORTER_OTLP_HEADERS`,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, and `OTEL_SERVICE_NAME` (else the name given here).
    ///
    /// ```no_run
    /// use tracing_subscriber::prelude::*;
    /// # fn main() -> Result<(), dbos_runtime::Error> {
    /// let otel = dbos_runtime::otel::Otel::from_env("widget-store")?;
    /// tracing_subscriber::registry().with(otel.layer()).init();
    /// // … run the application …
    /// otel.shutdown()?;
    /// # Ok(()) }
    /// ```
    #[derive(Debug, Clone)]
    pub struct Otel {
        provider: SdkTracerProvider,
    }

    impl Otel {
        /// An exporter configured from the environment, batching spans in the background.
        ///
        /// # Errors
        /// [`Error::Config`] when the exporter cannot be built from the variables.
        pub fn from_env(service_name: &str) -> Result<Otel, Error> {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .map_err(|e| Error::Config(format!("OpenTelemetry OTLP exporter: {e}")))?;
            let service = std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| service_name.to_owned());
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            Ok(Otel { provider })
        }

        /// Wraps a tracer provider you built yourself (another exporter, a sampler, a test
        /// exporter).
        pub fn with_provider(provider: SdkTracerProvider) -> Otel {
            Otel { provider }
        }

        /// A `tracing` layer that turns spans (the runtime's `dbos.*` spans and your own) into
        /// OpenTelemetry spans sent to this exporter.
        pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
        where
            S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
        {
            tracing_opentelemetry::layer().with_tracer(self.provider.tracer("dbos-rs"))
        }

        /// Sends the spans not yet sent and stops the exporter.
        ///
        /// # Errors
        /// [`Error::Config`] when the last export failed.
        pub fn shutdown(&self) -> Result<(), Error> {
            self.provider
                .shutdown()
                .map_err(|e| Error::Config(format!("OpenTelemetry shutdown: {e}")))
        }
    }
}

#[cfg(feature = "otel")]
pub use enabled::Otel;
#[cfg(feature = "otel")]
pub(crate) use enabled::{continue_trace, current_attributes};

/// Without the `otel` feature: no context is stored.
#[cfg(not(feature = "otel"))]
pub(crate) fn current_attributes() -> Option<String> {
    None
}

/// Without the `otel` feature: stored contexts are ignored.
#[cfg(not(feature = "otel"))]
pub(crate) fn continue_trace(_span: &tracing::Span, _attributes: Option<&str>) {}
