//! The read side of etal: projections built from the global event log.
//!
//! A [`Projection`] owns tables (created by migrations) and applies batches of events to them.
//! The [`runtime`] applies each batch and advances the projection's checkpoint in one transaction,
//! so a crash at any point loses nothing and applies nothing twice; [`rebuild`] builds any
//! projection again from the events alone, aside, to swap it in or to compare it with the live one.

pub mod annual_sales;
pub mod dashboard;
pub mod directory;
pub mod event_counts;
pub mod feed;
pub mod history;
pub mod ledger;
pub mod notifications;
pub mod order_recaps;
pub mod rebuild;
pub mod runtime;
pub mod sealer;
pub mod stock_levels;
mod support;

pub use support::ERASED_CUSTOMER;

use std::sync::Arc;

use etal_store::{StoreError, StoredEvent};
use sqlx::PgConnection;

pub use rebuild::{rebuild, verify, RowDiff, VerifyReport};
pub use runtime::{
    catch_up, catch_up_in_batches, run_fed_projectors, run_projector, run_projectors, wait_until,
    Checkpoint,
};

/// Why a projection could not apply a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("projection {projection} cannot apply event {position}: {reason}")]
    Event {
        projection: &'static str,
        position: i64,
        reason: String,
    },
    #[error("unknown projection '{0}'")]
    Unknown(String),
}

/// A read model built from events.
///
/// `apply` runs inside the transaction that also advances the checkpoint, with `search_path`
/// pointing at the schema being built (live: `public`; rebuild: a schema of its own), so its SQL
/// names its tables without a schema.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint's key.
    fn name(&self) -> &'static str;
    /// The tables it owns (created by migrations in `public`).
    fn tables(&self) -> &'static [&'static str];
    /// The aggregate types whose events it needs (`None`: all). The others are skipped without
    /// being read; the checkpoint still moves past them.
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Whether it reads payloads (false: events arrive with `null` payload and metadata).
    fn needs_payload(&self) -> bool {
        true
    }
    /// The events whose payload it reads, for the aggregate types of which it reads only some
    /// kinds: (aggregate type, event types). The other events of those aggregate types arrive
    /// with a `null` payload, to be skipped by `event_type` before decoding (less to send and
    /// to parse). Default: every payload.
    fn payloads_read(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[]
    }
    /// Whether it reads the events' metadata (false: it arrives `null`).
    fn reads_metadata(&self) -> bool {
        true
    }
    /// Applies events, in global order, to the tables.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError>;
    /// Applies events to the copy a rebuild (or verify) builds from the start of the log,
    /// which nobody reads before [`Projection::finish_rebuild`] ran on it: a projection may
    /// leave the tables it derives from its other tables for `finish_rebuild` to compute once,
    /// instead of recomputing their rows batch after batch. Default: [`Projection::apply`].
    async fn apply_rebuilding(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        self.apply(conn, events).await
    }
    /// Completes a rebuilt copy once it holds every event: the tables `apply_rebuilding` left,
    /// computed from the others where `search_path` points (verify: the copy, before comparing
    /// it; rebuild: the live tables, once the copy's rows are swapped in, in the same
    /// transaction). Default: nothing.
    async fn finish_rebuild(&self, _conn: &mut PgConnection) -> Result<(), ProjectionError> {
        Ok(())
    }
    /// Whether the copy a rebuild builds may lack the tables' plain indexes (not unique, backing
    /// no constraint): true when `apply_rebuilding` and `finish_rebuild` never need them to
    /// find rows. A rebuild then builds them once, when it swaps the rows in.
    fn rebuilds_without_plain_indexes(&self) -> bool {
        false
    }
}

/// Every projection of the service.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(event_counts::EventCounts),
        Arc::new(order_recaps::OrderRecaps),
        Arc::new(stock_levels::StockLevels),
        Arc::new(annual_sales::AnnualSalesProjection),
        Arc::new(ledger::LedgerProjection),
        Arc::new(directory::Directory),
        Arc::new(notifications::Notifications),
    ]
}

/// Every reader of the log `etal serve` runs: the projections and the sealer (R-AUD-2).
pub fn readers() -> Vec<Arc<dyn Projection>> {
    let mut out = all();
    out.push(Arc::new(sealer::Sealer::default()));
    out
}

/// The projection called `name`.
pub fn by_name(name: &str) -> Result<Arc<dyn Projection>, ProjectionError> {
    all()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectionError::Unknown(name.to_string()))
}
