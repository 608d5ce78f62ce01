//! The HTTP server: GraphiQL at `/`, GraphQL at `/graphql` (graphql-ws subscriptions on a
//! websocket upgrade of `GET /graphql` or `/ws`), the back office at `/admin/`, `/health`,
//! `/metrics`, and the accept loop with its timeouts ([`serve_http`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;

use crate::graphql::subscriptions::graphql_get_or_ws;
use crate::graphql::{introspection_schema, schema, ApiSettings};
use crate::http::{graphql_post, GraphqlState, HttpSettings};
use etal_app::App;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub graphql: GraphqlState,
    pub app: App,
    /// The Stripe endpoint's signing secrets (None: Stripe is not the provider).
    pub stripe_webhook_secrets: Option<Arc<Vec<String>>>,
    /// The bearer token `/metrics` asks for.
    pub metrics_token: Option<Arc<String>>,
    /// The back office's sessions and log-in limits.
    pub admin: crate::admin::AdminState,
    /// What the schema's resolvers read too (the back office's log-in waits as a query does).
    pub api: ApiSettings,
}

impl FromRef<AppState> for GraphqlState {
    fn from_ref(s: &AppState) -> GraphqlState {
        s.graphql.clone()
    }
}

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The router over the application: GraphiQL, GraphQL over HTTP (see [`crate::http`]), the
/// back office, health and metrics; every request logged and measured ([`crate::observe`]).
pub fn router(
    app: App,
    api: ApiSettings,
    http: &HttpSettings,
    stripe_webhook_secrets: Option<Vec<String>>,
) -> Router {
    let graphql = GraphqlState::new(schema(app.clone(), api), introspection_schema(), http);
    let state = AppState {
        pool: app.pool.clone(),
        admin: crate::admin::AdminState::new(http),
        graphql,
        app,
        stripe_webhook_secrets: stripe_webhook_secrets.map(Arc::new),
        metrics_token: http.metrics_token.clone().map(Arc::new),
        api,
    };
    let router = Router::new()
        .route("/", get(graphiql).post(graphql_post))
        .route("/graphql", get(graphql_get_or_ws).post(graphql_post))
        .route("/ws", get(graphql_get_or_ws))
        .route("/assets/{file}", get(crate::assets::serve_asset))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/webhooks/stripe", axum::routing::post(stripe_webhook))
        .route("/invoices/{id}/{file}", get(crate::http::invoice_file))
        .route("/books/fec/{books}/{year}", get(crate::http::fec_file))
        .merge(crate::admin::routes())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            http.body_timeout,
        ))
        .layer(axum::middleware::map_response(coded_too_large));
    // CORS headers only for the configured origins (none: same-origin clients only).
    let router = if http.cors_origins.is_empty() {
        router
    } else {
        router.layer(cors(&http.cors_origins))
    };
    router
        .layer(axum::middleware::from_fn(crate::observe::track))
        .with_state(state)
}

/// CORS for browser clients on the configured origins (none by default: same-origin only).
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            crate::observe::REQUEST_ID.clone(),
        ])
        .expose_headers([crate::observe::REQUEST_ID.clone(), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(list))
}

/// Serves `router` on `listener` until `shutdown`: HTTP/1.1 (websocket upgrades included) with a
/// header-read timeout that runs from the connection's first moment (a client that sends nothing,
/// or no complete request head in time, the next one on a kept-alive connection included, is
/// disconnected), at most `max_connections` open at once, accept errors (e.g. out of file
/// descriptors) waited out rather than fatal, and a graceful shutdown of 10 s at most.
///
/// HTTP/1.1 only: the automatic HTTP/1-or-2 detection reads the first bytes with no timeout, so
/// connections that send nothing would hold their slots forever; behind a TLS proxy HTTP/2 is
/// the proxy's.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    http: &HttpSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::Service;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout)
        .keep_alive(true);
    // Connections end gracefully when this says so (requests in flight finish).
    let (closing, _) = tokio::sync::watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(http.max_connections));
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = match make.call(peer).await {
            Ok(s) => s,
            Err(never) => match never {},
        };
        let service = hyper_util::service::TowerToHyperService::new(service);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut told = closing.subscribe();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let outcome = tokio::select! {
                r = connection.as_mut() => r,
                _ = async { let _ = told.wait_for(|c| *c).await; } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(error = %e, peer = %peer, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection gave its slot back, or 10 s passed.
    let all = u32::try_from(http.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s of shutdown; closing them");
    }
    Ok(())
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

async fn graphiql() -> Response {
    crate::assets::graphiql_page().into_response()
}

/// 200 when PostgreSQL answers within a second, 503 otherwise, within that second (a load
/// balancer takes the instance out; a request's own wait for a connection is longer).
async fn health(State(state): State<AppState>) -> Response {
    let probe = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query("SELECT 1").execute(&state.pool),
    )
    .await;
    match probe {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
        Err(_) => {
            tracing::warn!("health check: the database did not answer within 1 s");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// The Prometheus exposition: the recorder's histograms and counters, and gauges read now from
/// the database (projection lag, outbox backlog, events by type) and the pool. With
/// ETAL_METRICS_TOKEN, only `Authorization: Bearer <token>` gets it.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| {
            use sha2::{Digest, Sha256};
            // Compared by digest: the time taken does not tell how much of it matched.
            Sha256::digest(g.as_bytes()) == Sha256::digest(token.as_bytes())
        });
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the token\n",
            )
                .into_response();
        }
    }
    let Some(handle) = crate::observe::prometheus() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder\n").into_response();
    };
    let pool = &state.pool;
    metrics::gauge!("etal_db_pool_connections", "state" => "open").set(pool.size() as f64);
    metrics::gauge!("etal_db_pool_connections", "state" => "idle").set(pool.num_idle() as f64);
    metrics::gauge!("etal_db_pool_connections", "state" => "max")
        .set(pool.options().get_max_connections() as f64);
    let websockets_open = state
        .graphql
        .max_websockets
        .saturating_sub(state.graphql.websockets.available_permits());
    metrics::gauge!("etal_websockets_open").set(websockets_open as f64);
    let read = tokio::time::timeout(Duration::from_secs(5), database_gauges(pool)).await;
    match read {
        Ok(Ok(())) => metrics::gauge!("etal_database_up").set(1.0),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: the database gauges could not be read");
            metrics::gauge!("etal_database_up").set(0.0);
        }
        Err(_) => metrics::gauge!("etal_database_up").set(0.0),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Reads the gauges that live in the database.
async fn database_gauges(pool: &PgPool) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    for p in etal_projections::readers() {
        let row = sqlx::query(
            "SELECT count(e.global_position) AS behind, \
             coalesce(extract(epoch FROM now() - min(e.recorded_at)), 0)::float8 AS seconds \
             FROM events e WHERE e.global_position > \
             coalesce((SELECT last_position FROM projector_checkpoints WHERE projection = $1), 0)",
        )
        .bind(p.name())
        .fetch_one(pool)
        .await?;
        let behind: i64 = row.try_get("behind")?;
        let seconds: f64 = row.try_get("seconds")?;
        metrics::gauge!("etal_projection_lag_events", "projection" => p.name().to_string())
            .set(behind as f64);
        metrics::gauge!("etal_projection_lag_seconds", "projection" => p.name().to_string())
            .set(seconds);
    }
    let backlog = sqlx::query(
        "SELECT 'outbox' AS queue, count(*) AS n FROM outbox WHERE status = 'pending' \
         UNION ALL SELECT 'email', count(*) FROM notification_deliveries WHERE status = 'pending' \
         UNION ALL SELECT 'webhook', count(*) FROM webhook_deliveries WHERE status = 'pending'",
    )
    .fetch_all(pool)
    .await?;
    for r in backlog {
        let queue: String = r.try_get("queue")?;
        let n: i64 = r.try_get("n")?;
        metrics::gauge!("etal_outbox_backlog", "queue" => queue).set(n as f64);
    }
    for r in etal_projections::event_counts::list(pool)
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?
    {
        metrics::counter!(
            "etal_events_total",
            "aggregate_type" => r.aggregate_type.clone(),
            "event_type" => r.event_type.clone(),
        )
        .absolute(r.events.max(0) as u64);
    }
    Ok(())
}
