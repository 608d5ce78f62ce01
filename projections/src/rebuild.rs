//! Rebuilding a projection from the events alone, aside, then swapping it in or comparing it.
//!
//! A rebuild creates a schema `rebuild_<name>` with empty copies of the projection's tables and
//! of the checkpoint table, and runs the projection there (its SQL names tables without a schema
//! and the transaction's search_path points at the copy). Then:
//! - `rebuild` locks the live checkpoint (pausing the live projector), brings the copy up to the
//!   head, replaces the live rows with the copy's and moves the live checkpoint, in one transaction;
//! - `verify` locks the live checkpoint, brings both live and copy to the same position, and
//!   compares them row by row, naming every difference by primary key.
//!
//! The copy is built for speed, with the same result: its tables are unlogged (a crash loses
//! only a copy that is made again from scratch) and its commits do not wait for the WAL; the
//! next batch is read on a second connection while one is applied; the projection applies it
//! with [`Projection::apply_rebuilding`] and completes it once with
//! [`Projection::finish_rebuild`] (in the copy for `verify`, on the live tables once swapped in
//! for `rebuild`); a projection may build it without plain indexes
//! ([`Projection::rebuilds_without_plain_indexes`]). The swap drops each live table's plain
//! indexes and creates them again, from their own definitions, once the table is filled.

use std::collections::BTreeMap;

use etal_store::log::{EventLog, Position};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::runtime::{apply_batch, catch_up_rebuilding, checkpoint, use_schema, Mode, BATCH};
use crate::{Projection, ProjectionError};

/// One row that differs between the live projection and its rebuild.
#[derive(Debug, Clone, PartialEq)]
pub struct RowDiff {
    pub table: String,
    /// The primary key of the row, as JSON.
    pub key: Value,
    /// The live row (None: missing from the live table).
    pub live: Option<Value>,
    /// The rebuilt row (None: the live table has a row the events do not justify).
    pub rebuilt: Option<Value>,
}

impl std::fmt::Display for RowDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.live, &self.rebuilt) {
            (Some(l), Some(r)) => write!(
                f,
                "{} {}: live {} but rebuilt {}",
                self.table, self.key, l, r
            ),
            (Some(l), None) => write!(
                f,
                "{} {}: live row {} is not in the rebuild",
                self.table, self.key, l
            ),
            (None, Some(r)) => write!(
                f,
                "{} {}: rebuilt row {} is missing from live",
                self.table, self.key, r
            ),
            (None, None) => write!(f, "{} {}", self.table, self.key),
        }
    }
}

/// The result of comparing a projection with its rebuild.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub projection: String,
    pub position: Position,
    pub rows_compared: i64,
    pub diffs: Vec<RowDiff>,
}

fn shadow_schema(projection: &str) -> String {
    format!("rebuild_{projection}")
}

async fn prepare_shadow(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<String, ProjectionError> {
    let schema = shadow_schema(projection.name());
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut *tx)
        .await?;
    // Unlogged: the copy is private to this rebuild and made again from scratch if the server
    // crashes meanwhile, so its rows need no WAL (the swap writes the live tables, logged).
    for table in projection
        .tables()
        .iter()
        .chain(std::iter::once(&"projector_checkpoints"))
    {
        sqlx::query(&format!(
            "CREATE UNLOGGED TABLE \"{schema}\".\"{table}\" (LIKE public.\"{table}\" INCLUDING ALL)"
        ))
        .execute(&mut *tx)
        .await?;
        if projection.rebuilds_without_plain_indexes() && *table != "projector_checkpoints" {
            for (index, _) in plain_indexes(&mut tx, &schema, table).await? {
                sqlx::query(&format!("DROP INDEX \"{schema}\".\"{index}\""))
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(schema)
}

/// The plain indexes of `schema.table` (neither unique nor backing a constraint: they only
/// speed reads up), with their definitions, by name.
async fn plain_indexes(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass \
           AND NOT i.indisunique AND NOT i.indisclustered \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
         ORDER BY c.relname",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("def")?)))
        .collect()
}

async fn drop_shadow(pool: &PgPool, schema: &str) -> Result<(), ProjectionError> {
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(pool)
        .await?;
    Ok(())
}

/// Applies everything visible to the projection in `schema` within the caller's transaction.
async fn finish_in_tx(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: Option<&str>,
    until: Option<Position>,
    mode: Mode,
) -> Result<(), ProjectionError> {
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *conn)
        .await?;
    use_schema(conn, schema).await?;
    while apply_batch(conn, projection, until, BATCH, mode)
        .await?
        .moved
    {}
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn lock_live(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO public.projector_checkpoints (projection) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(projection.name())
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT 1 FROM public.projector_checkpoints WHERE projection = $1 FOR UPDATE")
        .bind(projection.name())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Rebuilds `projection` from the events into fresh tables, then swaps them in. Returns the number
/// of events applied by the rebuild. `progress` gets each batch's size.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, ProjectionError> {
    let schema = prepare_shadow(pool, projection).await?;
    let applied = catch_up_rebuilding(pool, projection, &schema, progress).await?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    lock_live(&mut tx, projection).await?;
    finish_in_tx(&mut tx, projection, Some(&schema), None, Mode::Rebuilding).await?;
    // Each live table emptied and filled in this transaction (readers wait for its commit,
    // TRUNCATE locks the table): its plain indexes are dropped and built again once filled,
    // with their own definitions, rather than maintained row by row.
    sqlx::query("SET LOCAL maintenance_work_mem TO '256MB'")
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        sqlx::query(&format!("TRUNCATE public.\"{table}\""))
            .execute(&mut *tx)
            .await?;
        let indexes = plain_indexes(&mut tx, "public", table).await?;
        for (index, _) in &indexes {
            sqlx::query(&format!("DROP INDEX public.\"{index}\""))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(&format!(
            "INSERT INTO public.\"{table}\" SELECT * FROM \"{schema}\".\"{table}\""
        ))
        .execute(&mut *tx)
        .await?;
        for (_, definition) in &indexes {
            sqlx::query(definition).execute(&mut *tx).await?;
        }
    }
    // What the copy left to compute at its end, computed on the live tables now holding its
    // rows (rather than in the copy, then copied).
    projection.finish_rebuild(&mut tx).await?;
    sqlx::query(&format!(
        "UPDATE public.projector_checkpoints p SET last_txid = s.last_txid, last_position = s.last_position, \
         events_applied = s.events_applied, updated_at = now() \
         FROM \"{schema}\".projector_checkpoints s WHERE p.projection = $1 AND s.projection = $1"
    ))
    .bind(projection.name())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    drop(conn);
    drop_shadow(pool, &schema).await?;
    Ok(applied)
}

async fn primary_key(conn: &mut PgConnection, table: &str) -> Result<Vec<String>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT a.attname::text AS col FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = ('public.' || quote_ident($1))::regclass AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("col").map_err(ProjectionError::from))
        .collect()
}

fn key_of(row: &Value, pk: &[String]) -> Value {
    if pk.is_empty() {
        return row.clone();
    }
    let mut key = serde_json::Map::new();
    for col in pk {
        key.insert(col.clone(), row.get(col).cloned().unwrap_or(Value::Null));
    }
    Value::Object(key)
}

/// Rebuilds `projection` aside and compares it with the live tables at the same position.
pub async fn verify(
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, ProjectionError> {
    let schema = prepare_shadow(pool, projection).await?;
    catch_up_rebuilding(pool, projection, &schema, progress).await?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    lock_live(&mut tx, projection).await?;
    // Both to the same position: the head as this transaction sees it.
    let until = EventLog::head(&mut *tx).await?;
    finish_in_tx(&mut tx, projection, None, Some(until), Mode::Live).await?;
    finish_in_tx(
        &mut tx,
        projection,
        Some(&schema),
        Some(until),
        Mode::Rebuilding,
    )
    .await?;
    use_schema(&mut tx, Some(&schema)).await?;
    projection.finish_rebuild(&mut tx).await?;
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *tx)
        .await?;
    let live_cp = checkpoint(&mut tx, projection.name()).await?;

    let mut diffs = Vec::new();
    let mut rows_compared = 0i64;
    for table in projection.tables() {
        let pk = primary_key(&mut tx, table).await?;
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM public.\"{table}\""))
            .fetch_one(&mut *tx)
            .await?;
        rows_compared += count;
        let only = |a: &str, b: &str| {
            format!(
                "SELECT to_jsonb(x) AS row FROM (SELECT * FROM {a}.\"{table}\" EXCEPT ALL SELECT * FROM {b}.\"{table}\") x"
            )
        };
        let quoted = format!("\"{schema}\"");
        let live_only: Vec<Value> = sqlx::query_scalar(&only("public", &quoted))
            .fetch_all(&mut *tx)
            .await?;
        let rebuilt_only: Vec<Value> = sqlx::query_scalar(&only(&quoted, "public"))
            .fetch_all(&mut *tx)
            .await?;
        let mut by_key: BTreeMap<String, RowDiff> = BTreeMap::new();
        for (row, live) in live_only
            .into_iter()
            .map(|r| (r, true))
            .chain(rebuilt_only.into_iter().map(|r| (r, false)))
        {
            let key = key_of(&row, &pk);
            let entry = by_key.entry(key.to_string()).or_insert_with(|| RowDiff {
                table: table.to_string(),
                key,
                live: None,
                rebuilt: None,
            });
            if live {
                entry.live = Some(row);
            } else {
                entry.rebuilt = Some(row);
            }
        }
        diffs.extend(by_key.into_values());
    }
    tx.commit().await?;
    drop(conn);
    drop_shadow(pool, &schema).await?;
    Ok(VerifyReport {
        projection: projection.name().to_string(),
        position: live_cp.position,
        rows_compared,
        diffs,
    })
}
