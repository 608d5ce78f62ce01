//! What operators watch: structured logs, one line per HTTP request with its span, and the
//! Prometheus metrics at `/metrics`.
//!
//! - Logs go to stderr: JSON lines when stderr is not a terminal (files, journald, containers),
//!   text with colours on a terminal; `ETAL_LOG_FORMAT=json|text` forces one. `RUST_LOG` filters
//!   (default `warn`: quiet); at `info` every request is logged once, by [`track`].
//! - Each request gets an id (a sane `X-Request-Id` from the caller, else a new UUID), returned
//!   in `X-Request-Id`, carried by the span every log line of the request is written in.
//! - Metrics use the `metrics` facade with `metrics-exporter-prometheus`: the recorder is
//!   installed once per process by [`prometheus`]; without it (library tests) the macros cost
//!   nothing.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

/// The request id header, read and returned.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets up logging from the environment (`ETAL_LOG_FORMAT`, `RUST_LOG`).
pub fn init_tracing() {
    let format = std::env::var("ETAL_LOG_FORMAT").ok();
    let filter = std::env::var("RUST_LOG").ok();
    init_tracing_with(format.as_deref(), filter.as_deref());
}

/// Sets up logging: `format` `json` or `text` (default: JSON when stderr is not a terminal),
/// `filter` in tracing's EnvFilter syntax (default `warn`).
pub fn init_tracing_with(format: Option<&str>, filter: Option<&str>) {
    use std::io::IsTerminal;
    let filter = filter
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let terminal = std::io::stderr().is_terminal();
    let json = match format.map(str::trim) {
        Some("json") => true,
        Some("text") => false,
        _ => !terminal,
    };
    JSON.store(json, std::sync::atomic::Ordering::Relaxed);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
}

/// A line for whoever runs the service (where GraphiQL is, where e-mails go), whatever the log
/// filter: plain text, or a JSON object like the log lines when the logs are JSON.
pub fn announce(message: &str) {
    if JSON.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "{}",
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "INFO",
                "message": message,
                "target": "etal",
            })
        );
    } else {
        eprintln!("{message}");
    }
}

/// What a handler tells the request's log line and metrics: the GraphQL operation and the
/// caller's role (put in the response's extensions).
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// `query:orderRecap`, `mutation:placeOrder+cancelOrder`: the operation type and its root
    /// fields (names from the schema, so the metric's labels stay few).
    pub operation: Option<String>,
    /// The client's own name for the operation (logged, never a label).
    pub operation_name: Option<String>,
    /// `anonymous`, or the token's role.
    pub role: Option<String>,
    /// The first error code of a GraphQL answer, if any.
    pub error_code: Option<String>,
}

fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The middleware around every route: the request's span and id, one log line at the end
/// (`etal::http`, info; 5xx at warn), the latency histogram.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id_of(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = next.run(req).instrument(span.clone()).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    let facts = response
        .extensions()
        .get::<RequestFacts>()
        .cloned()
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let operation = facts.operation.clone().unwrap_or_else(|| route.clone());
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let _entered = span.enter();
    if status >= 500 {
        tracing::warn!(target: "etal::http", %method, path, route, operation, operation_name = facts.operation_name, role = facts.role, error_code = facts.error_code, status, latency_ms, "request");
    } else {
        tracing::info!(target: "etal::http", %method, path, route, operation, operation_name = facts.operation_name, role = facts.role, error_code = facts.error_code, status, latency_ms, "request");
    }
    metrics::histogram!(
        "etal_http_request_duration_seconds",
        "operation" => operation,
        "status" => status_class(status),
    )
    .record(latency.as_secs_f64());
    response
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The process's Prometheus recorder, installed on first use (None if another recorder was
/// installed first).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("etal_http_request_duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_histogram!(
        "etal_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency, by GraphQL operation (or route) and status class."
    );
    metrics::describe_counter!(
        "etal_commands_total",
        "Commits of flows, by aggregate type written and outcome (committed, conflict, duplicate, error)."
    );
    metrics::describe_counter!(
        "etal_events_total",
        "Events stored, by aggregate type and event type."
    );
    metrics::describe_gauge!(
        "etal_projection_lag_events",
        "Events committed that a projector has not applied yet."
    );
    metrics::describe_gauge!(
        "etal_projection_lag_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest event a projector has not applied yet (0 when caught up)."
    );
    metrics::describe_gauge!(
        "etal_outbox_backlog",
        "Messages waiting to be delivered, by queue (outbox, email, webhook)."
    );
    metrics::describe_gauge!(
        "etal_db_pool_connections",
        "Database pool connections, by state (open, idle, max)."
    );
    metrics::describe_gauge!("etal_websockets_open", "Open websockets (subscriptions).");
    metrics::describe_gauge!(
        "etal_database_up",
        "1 when the database answered the last scrape's queries."
    );
    metrics::describe_counter!(
        "etal_graphql_errors_total",
        "GraphQL answers with an error, by operation and error code."
    );
}
