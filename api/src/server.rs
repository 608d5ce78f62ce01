//! The HTTP server: GraphiQL at `/`, GraphQL at `/graphql` (graphql-ws subscriptions on a
//! websocket upgrade of `GET /graphql` or `/ws`), `/health`, `/metrics`.

use async_graphql::http::GraphiQLSource;
use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;

use crate::graphql::subscriptions::graphql_get_or_ws;
use crate::graphql::{schema, ApiSettings};
use crate::http::{graphql_post, GraphqlState, HttpSettings};
use etal_app::App;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub graphql: GraphqlState,
    pub app: App,
    /// The Stripe endpoint's signing secrets (None: Stripe is not the provider).
    pub stripe_webhook_secrets: Option<std::sync::Arc<Vec<String>>>,
}

impl FromRef<AppState> for GraphqlState {
    fn from_ref(s: &AppState) -> GraphqlState {
        s.graphql.clone()
    }
}

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The router over the application: GraphiQL, GraphQL over HTTP (see [`crate::http`]),
/// health and metrics.
pub fn router(
    app: App,
    api: ApiSettings,
    http: &HttpSettings,
    stripe_webhook_secrets: Option<Vec<String>>,
) -> Router {
    let state = AppState {
        pool: app.pool.clone(),
        graphql: GraphqlState::new(schema(app.clone(), api), http),
        app,
        stripe_webhook_secrets: stripe_webhook_secrets.map(std::sync::Arc::new),
    };
    Router::new()
        .route("/", get(graphiql).post(graphql_post))
        .route("/graphql", get(graphql_get_or_ws).post(graphql_post))
        .route("/ws", get(graphql_get_or_ws))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/webhooks/stripe", axum::routing::post(stripe_webhook))
        .route("/invoices/{id}/{file}", get(crate::http::invoice_file))
        .route("/books/fec/{books}/{year}", get(crate::http::fec_file))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::map_response(coded_too_large))
        .with_state(state)
}

/// A body over [`MAX_BODY_BYTES`] gets a coded GraphQL-shaped error (413,
/// `PAYLOAD_TOO_LARGE`), not the limit layer's plain text.
async fn coded_too_large(r: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    if r.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return r;
    }
    (
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"errors": [{
            "message": format!("the request is larger than {} bytes", MAX_BODY_BYTES),
            "extensions": {"code": "PAYLOAD_TOO_LARGE"}
        }]})
        .to_string(),
    )
        .into_response()
}

/// R-PAY-1: Stripe's webhooks. The `Stripe-Signature` is verified before anything is read
/// (400 and nothing written if it fails); each event id is applied once; unknown types are
/// acknowledged; a database that cannot answer gets 503, which Stripe retries.
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use etal_app::stripe::{verify_signature, StripeEvent, WEBHOOK_TOLERANCE};
    let Some(secrets) = &state.stripe_webhook_secrets else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({ "error": "Stripe is not this service's payment provider" }),
            ),
        )
            .into_response();
    };
    let started = std::time::Instant::now();
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(
        signature,
        &body,
        secrets,
        state.app.now(),
        WEBHOOK_TOLERANCE,
    ) {
        tracing::info!(webhook = "stripe", outcome = "refused", reason = %e, "webhook");
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response();
    }
    let event: StripeEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::info!(webhook = "stripe", outcome = "unreadable", error = %e, "webhook");
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({ "error": format!("not a Stripe event: {e}") })),
            )
                .into_response();
        }
    };
    let outcome = state.app.apply_stripe_event(&event).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(outcome) => {
            tracing::info!(webhook = "stripe", event = %event.id, kind = %event.kind, latency_ms, outcome = ?outcome, "webhook");
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "received": true, "outcome": outcome })),
            )
                .into_response()
        }
        Err(e @ (etal_app::AppError::Retryable(_) | etal_app::AppError::Internal(_))) => {
            tracing::warn!(webhook = "stripe", event = %event.id, kind = %event.kind, latency_ms, error = %e, "webhook not applied: Stripe will retry");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "error": "try again later" })),
            )
                .into_response()
        }
        Err(e) => {
            // A refusal by the domain (e.g. a payment that conflicts with the one recorded):
            // retrying would not change it; acknowledged and logged for an operator.
            tracing::warn!(webhook = "stripe", event = %event.id, kind = %event.kind, latency_ms, error = %e, "webhook refused by the domain");
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "received": true, "refused": e.to_string() })),
            )
                .into_response()
        }
    }
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

async fn health(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let rows = match etal_projections::event_counts::list(&state.pool).await {
        Ok(rows) => rows,
        Err(_) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    };
    let mut out = String::from(
        "# HELP etal_events_total Events stored, by aggregate type and event type.\n# TYPE etal_events_total counter\n",
    );
    for r in rows {
        out.push_str(&format!(
            "etal_events_total{{aggregate_type=\"{}\",event_type=\"{}\"}} {}\n",
            escape(&r.aggregate_type),
            escape(&r.event_type),
            r.events
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
