//! The system area: health, event counts, projection status (public, as /metrics is).

use async_graphql::{Context, Object, Result, SimpleObject};
use etal_domain::Role;

use super::common::{app, RoleGuard};

/// Events per type, from the `event_counts` projection.
#[derive(SimpleObject)]
pub struct EventCount {
    pub aggregate_type: String,
    pub event_type: String,
    /// A count; a string because it may exceed 2^53.
    pub events: String,
}

/// Where a projection stands against the log.
#[derive(SimpleObject)]
pub struct ProjectionStatus {
    pub name: String,
    pub events_applied: String,
    /// Global position of the last applied event.
    pub position: String,
    /// Global position of the newest readable event.
    pub head: String,
}

#[derive(Default)]
pub struct SystemQuery;

#[Object]
impl SystemQuery {
    /// "ok" when the service and its database answer.
    async fn health(&self, ctx: &Context<'_>) -> Result<String> {
        let pool = &app(ctx).pool;
        sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map_err(|_| super::common::coded("RETRYABLE", "database unavailable"))?;
        Ok("ok".into())
    }

    /// Events stored, per aggregate type and event type.
    async fn event_counts(&self, ctx: &Context<'_>) -> Result<Vec<EventCount>> {
        let pool = &app(ctx).pool;
        let rows = etal_projections::event_counts::list(pool)
            .await
            .map_err(|_| super::common::coded("RETRYABLE", "database unavailable"))?;
        Ok(rows
            .into_iter()
            .map(|r| EventCount {
                aggregate_type: r.aggregate_type,
                event_type: r.event_type,
                events: r.events.to_string(),
            })
            .collect())
    }

    /// Every projection, with its checkpoint and the log's head.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionStatus>> {
        let pool = &app(ctx).pool;
        let mut out = Vec::new();
        for p in etal_projections::all() {
            let (head, cp) = etal_projections::runtime::lag(pool, p.name())
                .await
                .map_err(|_| super::common::coded("RETRYABLE", "database unavailable"))?;
            out.push(ProjectionStatus {
                name: p.name().to_string(),
                events_applied: cp.events_applied.to_string(),
                position: cp.position.position.to_string(),
                head: head.position.to_string(),
            });
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct SystemMutation;

#[Object]
impl SystemMutation {
    /// Does nothing; answers true to a platform administrator (a token check).
    #[graphql(guard = "RoleGuard(&[Role::PlatformAdmin])")]
    async fn noop(&self) -> bool {
        true
    }
    // EXTENSION POINT (money branch): platform configuration mutations (fee rules, plans) go
    // here, guarded by `RoleGuard(&[Role::PlatformAdmin])`.
}
