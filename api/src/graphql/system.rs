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
        for p in etal_projections::readers() {
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

/// R-PAY-5: a SEPA credit transfer file (pain.001.001.09).
#[derive(SimpleObject)]
pub struct SepaFileView {
    pub message_id: String,
    pub execution_date: super::scalars::Date,
    pub transfers: i32,
    pub control_sum: super::scalars::Money,
    /// The file itself (UTF-8 XML), to upload to the bank.
    pub xml: String,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Default)]
pub struct PayoutFileQuery;

#[Object]
impl PayoutFileQuery {
    /// R-PAY-5: the SEPA credit transfer file of the payouts made on `executionDate` (the
    /// Monday run), with `ETAL_PAYOUTS=sepa` (platform administrators and auditors).
    #[graphql(guard = "RoleGuard(&[Role::PlatformAdmin, Role::Auditor])")]
    async fn sepa_file(
        &self,
        ctx: &Context<'_>,
        execution_date: super::scalars::Date,
    ) -> Result<SepaFileView> {
        let f = app(ctx)
            .sepa_file(execution_date.0)
            .await
            .map_err(super::common::app_error)?;
        Ok(SepaFileView {
            message_id: f.message_id,
            execution_date: super::scalars::Date(f.execution_date),
            transfers: f.transfers,
            control_sum: super::scalars::Money(etal_domain::Money::round(f.control_sum)),
            xml: f.xml,
            sent_at: f.sent_at,
        })
    }
}

#[derive(Default)]
pub struct PayoutFileMutation;

#[Object]
impl PayoutFileMutation {
    /// R-PAY-5: the file was sent to the bank; it never changes after.
    #[graphql(guard = "RoleGuard(&[Role::PlatformAdmin])")]
    async fn mark_sepa_file_sent(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_length = 35))] message_id: String,
    ) -> Result<chrono::DateTime<chrono::Utc>> {
        let c = etal_app::Ctx::new(super::common::actor(ctx)?);
        app(ctx)
            .mark_sepa_file_sent(&c, &message_id)
            .await
            .map_err(super::common::app_error)
    }

    /// R-PAY-5: the bank returned a payout's transfer after the fact (its `EndToEndId` is the
    /// payout id): the money is the producer's balance again, paid by a later payout.
    #[graphql(guard = "RoleGuard(&[Role::PlatformAdmin])")]
    async fn record_bank_return(
        &self,
        ctx: &Context<'_>,
        producer_id: uuid::Uuid,
        payout_id: uuid::Uuid,
        #[graphql(validator(max_length = 500))] reason: String,
        idempotency_key: Option<String>,
    ) -> Result<Option<String>> {
        let c = super::common::app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .record_bank_return(
                &c,
                etal_domain::ids::ProducerId(producer_id),
                etal_domain::payout::PayoutId(payout_id),
                &reason,
            )
            .await
            .map_err(super::common::app_error)?;
        Ok(super::common::read_your_writes(ctx, done.position).await)
    }
}

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
