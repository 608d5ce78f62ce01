//! The back office under `/admin/` (ADR 0016).

use std::sync::Arc;

use axum::Router;

use crate::auth::RateLimiter;
use crate::http::{GraphqlState, HttpSettings};
use crate::server::AppState;

/// What the back office's handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub graphql: GraphqlState,
    /// Log-in attempts per address.
    pub login_limiter: Arc<RateLimiter>,
}

impl AdminState {
    pub fn new(graphql: GraphqlState, http: &HttpSettings) -> Self {
        let per_minute = http.login_per_minute.max(1);
        Self {
            graphql,
            login_limiter: Arc::new(RateLimiter::per_minute(per_minute)),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
}
