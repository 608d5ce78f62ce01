//! The projector runtime: catch up from the checkpoint, batch by batch, exactly once in effect.

use std::sync::Arc;
use std::time::Duration;

use etal_store::log::{EventLog, Position, Waker};
use etal_store::StoredEvent;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::watch;

use crate::feed::{LogFeed, View};
use crate::{Projection, ProjectionError};

/// Events applied per transaction.
pub const BATCH: i64 = 2000;

/// How a batch is applied: to tables others read, or to a copy being rebuilt from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// [`Projection::apply`].
    Live,
    /// [`Projection::apply_rebuilding`]: the copy is completed by `finish_rebuild` before
    /// anyone reads it.
    Rebuilding,
}

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
    mode: Mode,
) -> Result<Applied, ProjectionError> {
    let from = lock_checkpoint(conn, projection.name()).await?;
    let (next, behind) = read_next(conn, projection, from, until, batch).await?;
    let Some(next) = next else {
        return Ok(Applied {
            behind,
            ..Applied::default()
        });
    };
    apply_read(conn, projection, &next, mode).await?;
    Ok(Applied {
        events: next.events.len(),
        moved: true,
        to: Some(next.to),
        full: next.events.len() as i64 >= batch,
        behind,
    })
}

/// Locks the checkpoint row of `projection` (made if missing) and returns where it stands.
async fn lock_checkpoint(conn: &mut PgConnection, name: &str) -> Result<Position, ProjectionError> {
    const LOCK: &str =
        "SELECT last_txid, last_position FROM projector_checkpoints WHERE projection = $1 FOR UPDATE";
    // One round trip a batch: the row is made only the first time.
    let row = match sqlx::query(LOCK)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(row) => row,
        None => {
            sqlx::query(
                "INSERT INTO projector_checkpoints (projection) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .execute(&mut *conn)
            .await?;
            sqlx::query(LOCK).bind(name).fetch_one(&mut *conn).await?
        }
    };
    Ok(Position {
        txid: row.try_get("last_txid")?,
        position: row.try_get("last_position")?,
    })
}

/// The events of a batch, and where the checkpoint moves once they are applied.
struct Read {
    /// The checkpoint they follow.
    from: Position,
    /// The checkpoint after them.
    to: Position,
    events: Vec<StoredEvent>,
}

/// The next batch after `from` (None: nothing left up to the head, or `until`), and whether
/// events are committed past where it ends that no reader can see yet (an older transaction
/// holds the watermark).
async fn read_next(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    from: Position,
    until: Option<Position>,
    batch: i64,
) -> Result<(Option<Read>, bool), ProjectionError> {
    // Read up to the head as of now (or `until`): every event at or before it has committed,
    // so when fewer than `batch` events of the projection's types come back, none is left up to
    // there and the checkpoint can move to it, past the events of other types.
    let (head, last) = EventLog::head_and_last(&mut *conn).await?;
    let until = until.map_or(head, |u| u.min(head));
    if until <= from {
        return Ok((None, last > from));
    }
    let events = read_events(&mut *conn, projection, from, until, batch).await?;
    let to = match events.last() {
        Some(last) if events.len() as i64 >= batch => last.position,
        _ => until,
    };
    Ok((Some(Read { from, to, events }), last > to))
}

/// Applies `read` and moves the checkpoint (locked by the caller at `read.from`) past it.
async fn apply_read(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    read: &Read,
    mode: Mode,
) -> Result<(), ProjectionError> {
    if !read.events.is_empty() {
        match mode {
            Mode::Live => projection.apply(conn, &read.events).await?,
            Mode::Rebuilding => projection.apply_rebuilding(conn, &read.events).await?,
        }
    }
    sqlx::query(
        "UPDATE projector_checkpoints SET last_txid = $2, last_position = $3, \
         events_applied = events_applied + $4, updated_at = now() WHERE projection = $1",
    )
    .bind(projection.name())
    .bind(read.to.txid)
    .bind(read.to.position)
    .bind(read.events.len() as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What `projection`'s own read of the log returns after `from` up to `until`: the batch a
/// [`LogFeed`] must give it too.
pub async fn read_as(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    from: Position,
    until: Position,
    batch: i64,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    read_events(conn, projection, from, until, batch).await
}

/// Up to `batch` events after `from` up to `until` (below the watermark), of the aggregate types
/// `projection` reads, with the payloads and metadata it reads
/// ([`Projection::payloads_read`], [`Projection::reads_metadata`]); the others `null`.
async fn read_events(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    from: Position,
    until: Position,
    batch: i64,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let some_payloads = projection.payloads_read();
    if !projection.needs_payload() || (some_payloads.is_empty() && projection.reads_metadata()) {
        return Ok(EventLog::read_filtered(
            &mut *conn,
            from,
            until,
            batch,
            projection.aggregate_types(),
            projection.needs_payload(),
        )
        .await?);
    }
    // The same rows, order and watermark as `EventLog::read_filtered`.
    let payload = if some_payloads.is_empty() {
        "payload"
    } else {
        "CASE WHEN aggregate_type = ANY($7) AND aggregate_type || '/' || event_type <> ALL($8) \
         THEN 'null'::jsonb ELSE payload END AS payload"
    };
    let metadata = if projection.reads_metadata() {
        "metadata"
    } else {
        "'null'::jsonb AS metadata"
    };
    let filter = if projection.aggregate_types().is_some() {
        "AND aggregate_type = ANY($5)"
    } else {
        ""
    };
    let sql = format!(
        "SELECT transaction_id::text::bigint AS txid, global_position, aggregate_type, aggregate_id, \
         sequence, event_type, event_version, {payload}, {metadata}, recorded_at FROM {} \
         {filter} ORDER BY transaction_id, global_position LIMIT $6",
        etal_store::log::range_where(projection.aggregate_types().is_some())
    );
    let types: Vec<&str> = projection.aggregate_types().unwrap_or(&[]).to_vec();
    let limited: Vec<&str> = some_payloads.iter().map(|(t, _)| *t).collect();
    let wanted: Vec<String> = some_payloads
        .iter()
        .flat_map(|(t, kinds)| kinds.iter().map(move |k| format!("{t}/{k}")))
        .collect();
    let mut query = sqlx::query(&sql)
        .bind(from.txid.to_string())
        .bind(from.position)
        .bind(until.txid.to_string())
        .bind(until.position)
        .bind(&types)
        .bind(batch);
    if !some_payloads.is_empty() {
        query = query.bind(&limited).bind(&wanted);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            Ok(StoredEvent {
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
                metadata: r.try_get("metadata")?,
                recorded_at: r.try_get("recorded_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(ProjectionError::from)
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Applied {
    /// Events applied.
    pub events: usize,
    /// Whether the checkpoint moved (false: nothing left up to the head).
    pub moved: bool,
    /// Where the checkpoint moved to.
    pub to: Option<Position>,
    /// Whether the batch was full (more may follow at once).
    pub full: bool,
    /// Whether events were committed past it that no reader could see yet.
    pub behind: bool,
}

/// The live checkpoints this process committed, per projection: a batch commit publishes its
/// new checkpoint, so [`wait_until`] in the same process (read-your-writes in `etal serve`,
/// whose projectors run in it) learns it at once instead of polling the table. A checkpoint
/// moved by another process is still found by reading the table, at most [`LOCAL_RECHECK`]
/// later.
static LOCAL: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, watch::Sender<Position>>>,
> = std::sync::LazyLock::new(Default::default);

/// How long [`wait_until`] waits on the in-process checkpoints before it reads the table.
const LOCAL_RECHECK: Duration = Duration::from_millis(20);

fn publish(projection: &str, to: Position) {
    let mut local = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
    match local.get(projection) {
        Some(tx) => {
            tx.send_if_modified(|p| {
                let newer = to > *p;
                if newer {
                    *p = to;
                }
                newer
            });
        }
        None => {
            local.insert(projection.to_string(), watch::channel(to).0);
        }
    }
}

fn local_checkpoint(projection: &str) -> Option<watch::Receiver<Position>> {
    LOCAL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(projection)
        .map(|tx| tx.subscribe())
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
    catch_up_with(pool, projection, schema, until, batch, Mode::Live, progress)
        .await
        .map(|(total, _)| total)
}

/// Builds the copy in `schema` from its checkpoint to the head, in [`Mode::Rebuilding`].
/// The copy is private to the rebuild and is built again from scratch after a crash, so its
/// commits need not wait for the WAL to reach the disk. The next batch is read on a second
/// connection while one is applied (when the pool has one to spare): the events do not depend
/// on what the copy holds, and each batch still moves the copy's locked checkpoint from where
/// it was read.
pub(crate) async fn catch_up_rebuilding(
    pool: &PgPool,
    projection: &dyn Projection,
    schema: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, ProjectionError> {
    let batch = BATCH;
    let mut conn = pool.acquire().await?;
    let spare = if pool.options().get_max_connections() < 2 {
        None
    } else {
        tokio::time::timeout(Duration::from_secs(1), pool.acquire())
            .await
            .ok()
            .and_then(Result::ok)
    };
    let Some(mut reader) = spare else {
        return catch_up_with(
            pool,
            projection,
            Some(schema),
            None,
            batch,
            Mode::Rebuilding,
            progress,
        )
        .await
        .map(|(total, _)| total);
    };
    let mut total = 0u64;
    let mut from = {
        let mut tx = begin_copy(&mut conn, schema).await?;
        let cp = checkpoint(&mut tx, projection.name()).await?;
        tx.commit().await?;
        cp.position
    };
    let mut next = read_next(&mut reader, projection, from, None, batch)
        .await?
        .0;
    while let Some(read) = next {
        let mut tx = begin_copy(&mut conn, schema).await?;
        from = lock_checkpoint(&mut tx, projection.name()).await?;
        if from != read.from {
            // Another runner moved the copy: read again from where it stands.
            tx.rollback().await?;
            next = read_next(&mut reader, projection, from, None, batch)
                .await?
                .0;
            continue;
        }
        let (applied, ahead) = tokio::join!(
            apply_read(&mut tx, projection, &read, Mode::Rebuilding),
            read_next(&mut reader, projection, read.to, None, batch),
        );
        applied?;
        tx.commit().await?;
        total += read.events.len() as u64;
        progress(read.events.len() as u64);
        next = ahead?.0;
    }
    Ok(total)
}

/// A transaction on the copy in `schema`, whose commit does not wait for the WAL.
async fn begin_copy<'c>(
    conn: &'c mut PgConnection,
    schema: &str,
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, ProjectionError> {
    let mut tx = conn.begin().await?;
    use_schema(&mut tx, Some(schema)).await?;
    sqlx::query("SET LOCAL synchronous_commit TO off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

async fn catch_up_with(
    pool: &PgPool,
    projection: &dyn Projection,
    schema: Option<&str>,
    until: Option<Position>,
    batch: i64,
    mode: Mode,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, bool), ProjectionError> {
    let mut total = 0u64;
    let mut conn = pool.acquire().await?;
    loop {
        let mut tx = conn.begin().await?;
        use_schema(&mut tx, schema).await?;
        if mode == Mode::Rebuilding {
            sqlx::query("SET LOCAL synchronous_commit TO off")
                .execute(&mut *tx)
                .await?;
        }
        let done = apply_batch(&mut tx, projection, until, batch.max(1), mode).await?;
        if !done.moved {
            tx.rollback().await?;
            return Ok((total, done.behind));
        }
        tx.commit().await?;
        if mode == Mode::Live && schema.is_none() {
            if let Some(to) = done.to {
                publish(projection.name(), to);
            }
        }
        total += done.events as u64;
        progress(done.events as u64);
        if !done.full {
            // The batch read up to the head: nothing more is readable than what committed
            // since, and its notification wakes the projector again.
            return Ok((total, done.behind));
        }
    }
}

/// [`catch_up_with`] for a live projector served by the process's [`LogFeed`]: the events after
/// the checkpoint are taken from the feed (read once for every projector) when it holds them,
/// else read from the log as before. `hint` is where this projector left its checkpoint: when
/// the feed has nothing after it, no transaction is begun at all.
async fn catch_up_fed(
    pool: &PgPool,
    projection: &dyn Projection,
    feed: &LogFeed,
    woke: std::time::Instant,
    hint: &mut Option<Position>,
) -> Result<(u64, bool), ProjectionError> {
    let mut total = 0u64;
    let mut conn = pool.acquire().await?;
    loop {
        if let Some(from) = *hint {
            if let View::Nothing { behind } = feed.view(&mut conn, from, woke).await? {
                return Ok((total, behind));
            }
        }
        let mut tx = conn.begin().await?;
        let from = lock_checkpoint(&mut tx, projection.name()).await?;
        *hint = Some(from);
        let taken = match feed.view(&mut tx, from, woke).await? {
            View::Nothing { behind } => {
                tx.rollback().await?;
                return Ok((total, behind));
            }
            View::Ahead => feed.take(projection, from, BATCH as usize),
            View::Outside => None,
        };
        let read = match taken {
            Some(t) => Read {
                from,
                to: t.to,
                events: t.events,
            },
            None => match read_next(&mut tx, projection, from, None, BATCH).await? {
                (Some(read), _) => read,
                (None, behind) => {
                    tx.rollback().await?;
                    return Ok((total, behind));
                }
            },
        };
        apply_read(&mut tx, projection, &read, Mode::Live).await?;
        tx.commit().await?;
        publish(projection.name(), read.to);
        *hint = Some(read.to);
        total += read.events.len() as u64;
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
    shutdown: watch::Receiver<bool>,
) {
    run_fed(pool, projection, shutdown, None).await
}

/// Runs `projections` as [`run_projector`] does, each as a task of its own, sharing one read
/// of the log ([`LogFeed`]): what `etal serve` and `etal projections run` start.
pub fn run_projectors(
    pool: &PgPool,
    projections: Vec<Arc<dyn Projection>>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    run_fed_projectors(pool, projections, shutdown, Arc::new(LogFeed::new()))
}

/// [`run_projectors`] on a given feed (tests look at what it read and served).
pub fn run_fed_projectors(
    pool: &PgPool,
    projections: Vec<Arc<dyn Projection>>,
    shutdown: &watch::Receiver<bool>,
    feed: Arc<LogFeed>,
) -> Vec<tokio::task::JoinHandle<()>> {
    projections
        .into_iter()
        .map(|p| {
            tokio::spawn(run_fed(
                pool.clone(),
                p,
                shutdown.clone(),
                Some(feed.clone()),
            ))
        })
        .collect()
}

async fn run_fed(
    pool: PgPool,
    projection: Arc<dyn Projection>,
    mut shutdown: watch::Receiver<bool>,
    feed: Option<Arc<LogFeed>>,
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
        let mut lock_checked = std::time::Instant::now();
        let mut last_run: Option<tokio::time::Instant> = None;
        // When this projector last learnt of new commits (a notification, a poll, a look
        // again), and where its checkpoint was left: a shared read must have begun after it.
        let mut woke = std::time::Instant::now();
        let mut hint: Option<Position> = None;
        loop {
            // Under a stream of commits, gather a few before reading: a batch costs about the
            // same for one event as for fifty, so waking at most once per LINGER keeps the
            // projectors' share of the machine small. The first commit after a quiet spell is
            // read at once.
            if let Some(at) = last_run {
                let since = at.elapsed();
                if since < LINGER {
                    tokio::select! {
                        _ = tokio::time::sleep(LINGER - since) => {}
                        _ = shutdown.changed() => {
                            let _ = lock_conn.close().await;
                            return;
                        }
                    }
                }
            }
            last_run = Some(tokio::time::Instant::now());
            let caught = match &feed {
                Some(feed) => catch_up_fed(&pool, projection.as_ref(), feed, woke, &mut hint).await,
                None => {
                    catch_up_with(
                        &pool,
                        projection.as_ref(),
                        None,
                        None,
                        BATCH,
                        Mode::Live,
                        &|_| {},
                    )
                    .await
                }
            };
            let behind = match caught {
                Ok((_, behind)) => behind,
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "projector batch failed; retrying");
                    hint = None;
                    pause(Duration::from_millis(500), &mut shutdown).await;
                    false
                }
            };
            // Events committed but not readable yet: an older transaction (any writer, another
            // projector's batch) holds the watermark, and its end sends no notification when it
            // wrote no events. Look again soon, backing off up to the poll interval, rather
            // than waiting a whole poll for the next notification.
            let wait = if behind {
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
            woke = std::time::Instant::now();
            // The lock's connection is looked at once a second (the checkpoint row's lock keeps
            // two runners from applying the same batch meanwhile).
            if lock_checked.elapsed() < LOCK_CHECK {
                continue;
            }
            lock_checked = std::time::Instant::now();
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

/// The shortest time between two reads of the log by one projector (see `run_projector`).
const LINGER: Duration = Duration::from_millis(10);
/// How long a projector waits for a notification before it reads the log anyway.
const POLL: Duration = Duration::from_millis(200);
/// How often a leading projector checks that its lock's connection is alive.
const LOCK_CHECK: Duration = Duration::from_secs(1);
/// The first look again when committed events are held below the watermark, and the longest
/// wait between looks while they stay held (short: the holder is usually another projector's
/// batch or a command of a few milliseconds; one indexed read per look).
const HELD_FIRST: Duration = Duration::from_millis(2);
const HELD_MAX: Duration = Duration::from_millis(16);

/// Waits until `projection` has applied `position` (read-your-writes). False on timeout.
pub async fn wait_until(
    pool: &PgPool,
    projection: &str,
    position: Position,
    timeout: Duration,
) -> Result<bool, ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    if let Some(mut local) = local_checkpoint(projection) {
        // This process projects it: wait for its commits, reading the table only when they
        // have not moved for a while, in case another process leads.
        loop {
            if *local.borrow_and_update() >= position {
                return Ok(true);
            }
            loop {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(false);
                }
                let wait = LOCAL_RECHECK.min(deadline - now);
                match tokio::time::timeout(wait, local.changed()).await {
                    Ok(Ok(())) if *local.borrow_and_update() >= position => return Ok(true),
                    Ok(Ok(())) => continue,
                    // Timed out (or the channel closed): read the table.
                    _ => break,
                }
            }
            let mut conn = pool.acquire().await?;
            let cp = checkpoint(&mut conn, projection).await?;
            drop(conn);
            if cp.position >= position {
                return Ok(true);
            }
        }
    }
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

/// Waits (bounded by `timeout` in all) until every projection has applied `position`. False
/// if one has not in time (the caller then reads what is there).
async fn wait_all(
    pool: &PgPool,
    position: Position,
    timeout: Duration,
) -> Result<bool, ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    for p in crate::all() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !wait_until(pool, p.name(), position, left).await? {
            tracing::debug!(projection = p.name(), %position, "read-your-writes timed out");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Read-your-writes on the read side: waits (bounded) until every projection has applied
/// every event committed before the call, whoever wrote it, so a read sees at least what its
/// caller's earlier requests wrote. One query when the projectors of this process have passed
/// the newest committed event (their checkpoints are compared in memory); otherwise as
/// [`wait_until`]. False on timeout.
pub async fn wait_for_committed(pool: &PgPool, timeout: Duration) -> Result<bool, ProjectionError> {
    let last = EventLog::last_committed(pool).await?;
    wait_all(pool, last, timeout).await
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
