//! Events per aggregate type and event type: the smallest real projection, also on `/metrics`.

use std::collections::BTreeMap;

use etal_store::StoredEvent;
use sqlx::PgConnection;

use crate::{Projection, ProjectionError};

pub struct EventCounts;

#[async_trait::async_trait]
impl Projection for EventCounts {
    fn name(&self) -> &'static str {
        "event_counts"
    }

    /// Counts need only the types.
    fn needs_payload(&self) -> bool {
        false
    }

    fn tables(&self) -> &'static [&'static str] {
        &["event_counts"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for e in events {
            *counts
                .entry((&e.aggregate_type, &e.event_type))
                .or_default() += 1;
        }
        let (types, rest): (Vec<_>, Vec<_>) =
            counts.into_iter().map(|((a, t), n)| (a, (t, n))).unzip();
        let (names, ns): (Vec<_>, Vec<_>) = rest.into_iter().unzip();
        sqlx::query(
            "INSERT INTO event_counts (aggregate_type, event_type, events) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
             ON CONFLICT (aggregate_type, event_type) DO UPDATE SET events = event_counts.events + EXCLUDED.events",
        )
        .bind(&types)
        .bind(&names)
        .bind(&ns)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// One row of the projection.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct EventCount {
    pub aggregate_type: String,
    pub event_type: String,
    pub events: i64,
}

/// All rows, ordered.
pub async fn list(pool: &sqlx::PgPool) -> Result<Vec<EventCount>, sqlx::Error> {
    sqlx::query_as("SELECT aggregate_type, event_type, events FROM event_counts ORDER BY 1, 2")
        .fetch_all(pool)
        .await
}
