//! Event history for auditors: query functions over the `events` table itself (not a
//! projection), with who, when and the idempotency key from the metadata, paginated with keyset
//! cursors (a page never skips nor repeats an event, however deep, and costs the same at any depth).

use chrono::{DateTime, Utc};
use etal_store::log::Position;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

/// Most events per page.
pub const MAX_PAGE: i64 = 1000;

/// One event with its metadata spelled out.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub recorded_at: DateTime<Utc>,
    /// Who: the metadata's `actor` (user and role).
    pub actor: Option<Value>,
    /// When the command ran, by the service's clock (metadata `at`).
    pub at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    /// The metadata as stored.
    pub metadata: Value,
}

/// A page and the cursor of the next one (`None`: this was the last page).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page<C> {
    pub entries: Vec<HistoryEntry>,
    pub next: Option<C>,
}

/// Where a page by time starts: after this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeCursor {
    pub recorded_at: DateTime<Utc>,
    pub global_position: i64,
}

const COLUMNS: &str = "transaction_id::text::bigint AS txid, global_position, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// Only events the global order has settled (every older transaction finished).
const SETTLED: &str = "transaction_id < (SELECT pg_snapshot_xmin(pg_current_snapshot()))";

fn entry(r: &PgRow) -> Result<HistoryEntry, sqlx::Error> {
    let metadata: Value = r.try_get("metadata")?;
    let text = |k: &str| metadata.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(HistoryEntry {
        position: Position {
            txid: r.try_get("txid")?,
            position: r.try_get("global_position")?,
        },
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        payload: r.try_get("payload")?,
        recorded_at: r.try_get("recorded_at")?,
        actor: metadata.get("actor").filter(|v| !v.is_null()).cloned(),
        at: metadata
            .get("at")
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        idempotency_key: text("idempotency_key"),
        correlation_id: text("correlation_id"),
        metadata,
    })
}

fn page<C>(
    rows: Vec<PgRow>,
    limit: i64,
    cursor: impl Fn(&HistoryEntry) -> C,
) -> Result<Page<C>, sqlx::Error> {
    let mut entries = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next = if more {
        entries.last().map(cursor)
    } else {
        None
    };
    Ok(Page { entries, next })
}

fn clamp(limit: i64) -> i64 {
    limit.clamp(1, MAX_PAGE)
}

/// The events of one aggregate, in sequence order, after sequence `after` (0: from the start).
/// The cursor is the last sequence of the page.
pub async fn by_aggregate(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    after: i64,
    limit: i64,
) -> Result<Page<i64>, sqlx::Error> {
    let limit = clamp(limit);
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
         ORDER BY sequence LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    page(rows, limit, |e| e.sequence)
}

/// The events of the global log after `after` up to `until` (inclusive; `None`: the head), in
/// global order: the order the projections apply them in. The cursor is the last position.
pub async fn by_position(
    pool: &PgPool,
    after: Position,
    until: Option<Position>,
    limit: i64,
) -> Result<Page<Position>, sqlx::Error> {
    let limit = clamp(limit);
    let until = until.unwrap_or(Position {
        txid: i64::MAX,
        position: i64::MAX,
    });
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($3::text::xid8, $4) AND {SETTLED} \
         ORDER BY transaction_id, global_position LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(after.txid.to_string())
        .bind(after.position)
        .bind(until.txid.to_string())
        .bind(until.position)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    page(rows, limit, |e| e.position)
}

/// The events recorded in `[from, to)`, by time then global position, after `after`.
pub async fn by_time(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<TimeCursor>,
    limit: i64,
) -> Result<Page<TimeCursor>, sqlx::Error> {
    let limit = clamp(limit);
    let (at, pos) = after
        .map(|c| (c.recorded_at, c.global_position))
        .unwrap_or((from, i64::MIN));
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE recorded_at >= $1 AND recorded_at < $2 AND (recorded_at, global_position) > ($3, $4) \
           AND {SETTLED} \
         ORDER BY recorded_at, global_position LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(from)
        .bind(to)
        .bind(at)
        .bind(pos)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    page(rows, limit, |e| TimeCursor {
        recorded_at: e.recorded_at,
        global_position: e.position.position,
    })
}
