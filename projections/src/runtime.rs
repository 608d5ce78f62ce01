//! The projector runtime: catch up from the checkpoint, batch by batch, exactly once in effect.

use std::sync::Arc;
use std::time::Duration;

use etal_store::log::{EventLog, Position, Waker};
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::watch;

use crate::{Projection, ProjectionError};

/// Events applied per transaction.
pub const BATCH: i64 = 2000;

/// Where a projection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub events_applied: i64,
}

/// Reads the checkpoint of `projection` (as seen through the connection's search_path).
pub async fn checkpoint(
    conn: &mut PgConnection,
    projection: &str,
) -> Result<Checkpoint, ProjectionError> {
    let row = sqlx::query(
        "SELECT last_txid, last_position, events_applied FROM projector_checkpoints WHERE projection = $1",
    )
    .bind(projection)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => Checkpoint {
            position: Position {
                txid: r.try_get("last_txid")?,
                position: r.try_get("last_position")?,
            },
            events_applied: r.try_get("events_applied")?,
        },
        None => Checkpoint {
            position: Position::START,
            events_applied: 0,
        },
    })
}

/// Applies the next batch after the checkpoint, in the caller's transaction, and advances the
/// checkpoint in that same transaction. The checkpoint row is locked first, so two runners can
/// never apply the same events, whatever happens to advisory locks.
pub(crate) async fn apply_batch(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    until: Option<Position>,
    batch: i64,
) -> Result<Applied, ProjectionError> {
    let name = projection.name();
    sqlx::query(
        "INSERT INTO projector_checkpoints (projection) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT last_txid, last_position FROM projector_checkpoints WHERE projection = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    let from = Position {
        txid: row.try_get("last_txid")?,
        position: row.try_get("last_position")?,
    };
    // Read up to the head as of now (or `until`): every event at or before it has committed,
    // so when fewer than `batch` events of the projection's types come back, none is left up to
    // there and the checkpoint can move to it, past the events of other types.
    let head = EventLog::head(&mut *conn).await?;
    let until = until.map_or(head, |u| u.min(head));
    if until <= from {
        return Ok(Applied::default());
    }
    let events = EventLog::read_filtered(
        &mut *conn,
        from,
        until,
        batch,
        projection.aggregate_types(),
        projection.needs_payload(),
    )
    .await?;
    let to = match events.last() {
        Some(last) if events.len() as i64 >= batch => last.position,
        _ => until,
    };
    if !events.is_empty() {
        projection.apply(conn, &events).await?;
    }
    sqlx::query(
        "UPDATE projector_checkpoints SET last_txid = $2, last_position = $3, \
         events_applied = events_applied + $4, updated_at = now() WHERE projection = $1",
    )
    .bind(name)
    .bind(to.txid)
    .bind(to.position)
    .bind(events.len() as i64)
    .execute(&mut *conn)
    .await?;
    Ok(Applied {
        events: events.len(),
        moved: true,
    })
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Applied {
    /// Events applied.
    pub events: usize,
    /// Whether the checkpoint moved (false: nothing left up to the head).
    pub moved: bool,
}

/// Sets the transaction's search_path to `schema` (then public), when building aside.
pub(crate) async fn use_schema(
    conn: &mut PgConnection,
    schema: Option<&str>,
) -> Result<(), sqlx::Error> {
    if let Some(schema) = schema {
        sqlx::query(&format!("SET LOCAL search_path TO \"{schema}\", public"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Applies every visible event after the checkpoint (up to `until`), one transaction per batch.
/// `schema` names where to build (None: the live tables). `progress` gets each batch's size.
pub async fn catch_up(
    pool: &PgPool,
    projection: &dyn Projection,
    schema: Option<&str>,
    until: Option<Position>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, ProjectionError> {
    catch_up_in_batches(pool, projection, schema, until, BATCH, progress).await
}

/// [`catch_up`] with a given batch size (tests check that any batching gives the same tables).
pub async fn catch_up_in_batches(
    pool: &PgPool,
    projection: &dyn Projection,
    schema: Option<&str>,
    until: Option<Position>,
    batch: i64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, ProjectionError> {
    let mut total = 0u64;
    let mut conn = pool.acquire().await?;
    loop {
        let mut tx = conn.begin().await?;
        use_schema(&mut tx, schema).await?;
        let done = apply_batch(&mut tx, projection, until, batch.max(1)).await?;
        if !done.moved {
            tx.rollback().await?;
            return Ok(total);
        }
        tx.commit().await?;
        total += done.events as u64;
        progress(done.events as u64);
    }
}

fn lock_key(projection: &str) -> String {
    format!("etal.projector.{projection}")
}

/// Runs a projection until `shutdown` turns true: becomes its leader (one per database, by an
/// advisory lock held on a connection of its own), catches up, then waits for new events.
/// Survives database restarts: on any error it backs off and starts over.
pub async fn run_projector(
    pool: PgPool,
    projection: Arc<dyn Projection>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = projection.name();
    let pause = |d: Duration, shutdown: &mut watch::Receiver<bool>| {
        let mut s = shutdown.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = s.changed() => {}
            }
        }
    };
    'leadership: loop {
        if *shutdown.borrow() {
            return;
        }
        let mut lock_conn = match PgConnection::connect_with(&pool.connect_options()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "projector cannot connect; retrying");
                pause(Duration::from_secs(1), &mut shutdown).await;
                continue;
            }
        };
        let leader: Result<bool, _> =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(lock_key(name))
                .fetch_one(&mut lock_conn)
                .await;
        match leader {
            Ok(true) => tracing::info!(projection = name, "projector leads"),
            Ok(false) => {
                tracing::debug!(projection = name, "another process leads this projection");
                pause(Duration::from_secs(1), &mut shutdown).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "projector lock failed; retrying");
                pause(Duration::from_secs(1), &mut shutdown).await;
                continue;
            }
        }
        let mut waker = Waker::new(&pool, POLL).await;
        let mut held = HELD_FIRST;
        loop {
            if let Err(e) = catch_up(&pool, projection.as_ref(), None, None, &|_| {}).await {
                tracing::warn!(projection = name, error = %e, "projector batch failed; retrying");
                pause(Duration::from_millis(500), &mut shutdown).await;
            }
            // Events committed but not readable yet: an older transaction (any writer, another
            // projector's batch) holds the watermark, and its end sends no notification when it
            // wrote no events. Look again soon, backing off up to the poll interval, rather
            // than waiting a whole poll for the next notification.
            let wait = if behind_the_log(&pool, name).await {
                let d = held;
                held = (held * 2).min(HELD_MAX);
                Some(d)
            } else {
                held = HELD_FIRST;
                None
            };
            tokio::select! {
                _ = async {
                    match wait {
                        Some(d) => tokio::time::sleep(d).await,
                        None => waker.wait().await,
                    }
                } => {}
                _ = shutdown.changed() => {
                    let _ = lock_conn.close().await;
                    return;
                }
            }
            if sqlx::query("SELECT 1")
                .execute(&mut lock_conn)
                .await
                .is_err()
            {
                tracing::warn!(projection = name, "projector lost its lock connection");
                continue 'leadership;
            }
        }
    }
}

/// How long a projector waits for a notification before it reads the log anyway.
const POLL: Duration = Duration::from_millis(200);
/// The first look again when committed events are held below the watermark, and the longest
/// wait between looks while they stay held (short: the holder is usually another projector's
/// batch or a command of a few milliseconds; one indexed read per look).
const HELD_FIRST: Duration = Duration::from_millis(2);
const HELD_MAX: Duration = Duration::from_millis(16);

/// True when events are committed past `projection`'s checkpoint (not readable yet, or just
/// committed). False on error: the caller then waits as usual.
async fn behind_the_log(pool: &PgPool, projection: &str) -> bool {
    let Ok(mut conn) = pool.acquire().await else {
        return false;
    };
    let Ok(last) = EventLog::last_committed(&mut *conn).await else {
        return false;
    };
    matches!(checkpoint(&mut conn, projection).await, Ok(cp) if cp.position < last)
}

/// Waits until `projection` has applied `position` (read-your-writes). False on timeout.
pub async fn wait_until(
    pool: &PgPool,
    projection: &str,
    position: Position,
    timeout: Duration,
) -> Result<bool, ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(1);
    loop {
        let mut conn = pool.acquire().await?;
        let cp = checkpoint(&mut conn, projection).await?;
        drop(conn);
        if cp.position >= position {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

/// Where the log's head is, and where each projection is (for status pages and the CLI).
pub async fn lag(
    pool: &PgPool,
    projection: &str,
) -> Result<(Position, Checkpoint), ProjectionError> {
    let head = EventLog::head(pool).await?;
    let mut conn = pool.acquire().await?;
    Ok((head, checkpoint(&mut conn, projection).await?))
}
