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
pub fn router(app: App, api: ApiSettings, http: &HttpSettings) -> Router {
    let state = AppState {
        pool: app.pool.clone(),
        graphql: GraphqlState::new(schema(app, api), http),
    };
    Router::new()
        .route("/", get(graphiql).post(graphql_post))
        .route("/graphql", get(graphql_get_or_ws).post(graphql_post))
        .route("/ws", get(graphql_get_or_ws))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .with_state(state)
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
