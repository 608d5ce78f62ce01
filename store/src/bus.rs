//! The command bus: runs a command against an aggregate and appends its events.
//!
//! One command is one transaction: the events, the idempotency record and (every
//! [`EsAggregate::SNAPSHOT_EVERY`] events) a snapshot of the state commit together or not at all.
//! Optimistic concurrency comes from the primary key (aggregate_type, aggregate_id, sequence): two
//! commands that loaded the same version cannot both append. The loser reloads and decides again,
//! a bounded number of times with jittered backoff, then gets a retryable [`BusError::Conflict`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use etal_domain::{Actor, Clock};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::db::is_unique_violation;
use crate::error::{BusError, StoreError};
use crate::log::Position;
use crate::unit::{Changes, CommitError, Committed, CommittedEvent, Recorded, Stream};

/// What the bus needs to know about an aggregate beyond cqrs-es's trait.
pub trait EsAggregate: Aggregate {
    /// Bump when the state's serialized shape or meaning changes: older snapshots are then
    /// ignored and the state is rebuilt from the events.
    const STATE_VERSION: i32 = 1;
    /// Take a snapshot each time the stream crosses a multiple of this many events (0: never).
    const SNAPSHOT_EVERY: i64 = 50;
}

/// An idempotency key and a fingerprint of the request it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    /// Identifies the request (e.g. the operation and its arguments). The same key with another
    /// fingerprint is refused.
    pub fingerprint: String,
}

/// Who sends a command, and why: stored as the events' metadata.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub correlation_id: Uuid,
    /// What caused this command (a scheduled command id, a flow step...).
    pub causation: Option<String>,
    pub idempotency: Option<Idempotency>,
}

impl CommandContext {
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            correlation_id: Uuid::now_v7(),
            causation: None,
            idempotency: None,
        }
    }

    pub fn with_idempotency(
        mut self,
        key: impl Into<String>,
        fingerprint: impl Into<String>,
    ) -> Self {
        self.idempotency = Some(Idempotency {
            key: key.into(),
            fingerprint: fingerprint.into(),
        });
        self
    }

    pub fn caused_by(mut self, causation: impl Into<String>) -> Self {
        self.causation = Some(causation.into());
        self
    }

    pub fn correlated(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }
}

/// One event a command wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenEvent {
    pub sequence: i64,
    pub position: Position,
    pub event_type: String,
}

/// What a committed command wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub events: Vec<WrittenEvent>,
    /// True when this is the recorded outcome of an earlier call with the same idempotency key.
    #[serde(skip)]
    pub replayed: bool,
}

impl CommandOutcome {
    /// The last position written, for read-your-writes waits.
    pub fn last_position(&self) -> Option<Position> {
        self.events.iter().map(|e| e.position).max()
    }
}

/// Runs commands. Cheap to clone; holds nothing a second process would need.
#[derive(Clone)]
pub struct CommandBus {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    max_attempts: u32,
}

fn fingerprint_hash(fingerprint: &str) -> String {
    hex::encode(Sha256::digest(fingerprint.as_bytes()))
}

/// The scope of an idempotency key: the caller (design property 5). Two callers may use the
/// same key string for unrelated requests.
pub fn idempotency_scope(actor: &Actor) -> String {
    actor.user.to_string()
}

impl CommandBus {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        Self {
            pool,
            clock,
            max_attempts: 12,
        }
    }

    /// How many times a command is decided again after losing a race (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs `command` on the aggregate `id` of type `A`: a flow of one stream.
    pub async fn execute<A>(
        &self,
        id: &str,
        command: A::Command,
        services: &A::Services,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, BusError<A::Error>>
    where
        A: EsAggregate,
        A::Command: Clone,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(idem) = &ctx.idempotency {
                if let Some(outcome) = self.recorded_outcome::<A::Error>(ctx, idem).await? {
                    return Ok(outcome);
                }
            }
            let mut stream = self.load_stream::<A>(id).await?;
            let sink = EventSink::default();
            let handled = stream.state.handle(command.clone(), services, &sink).await;
            if let Err(e) = handled {
                // A concurrent copy of this request may have won: its outcome is the answer.
                if let Some(idem) = &ctx.idempotency {
                    if let Some(outcome) = self.recorded_outcome::<A::Error>(ctx, idem).await? {
                        return Ok(outcome);
                    }
                }
                return Err(BusError::Rejected(e));
            }
            // The sink applied each event to the state as it was written.
            let events = sink.collect().await;
            let mut changes = Changes::new();
            changes.events::<A>(id, stream.version, &events, &stream.state)?;
            let outcome_of = |committed: &Committed| CommandOutcome {
                aggregate_type: A::TYPE.to_string(),
                aggregate_id: id.to_string(),
                events: committed
                    .events
                    .iter()
                    .map(|e| WrittenEvent {
                        sequence: e.sequence,
                        position: e.position,
                        event_type: e.event_type.clone(),
                    })
                    .collect(),
                replayed: false,
            };
            // The recorded outcome names the positions: `commit_with` builds it once they are known.
            let template = serde_json::to_value(CommandOutcome {
                aggregate_type: A::TYPE.to_string(),
                aggregate_id: id.to_string(),
                events: Vec::new(),
                replayed: false,
            })
            .map_err(StoreError::from)?;
            match self.commit_with(&changes, ctx, &template, true).await {
                Ok(committed) => return Ok(outcome_of(&committed)),
                Err(CommitError::KeyTaken) => continue,
                Err(CommitError::Conflict) if attempt < self.max_attempts => {
                    backoff(attempt).await;
                }
                Err(CommitError::Conflict) => {
                    tracing::warn!(
                        aggregate = A::TYPE,
                        id,
                        attempts = attempt,
                        "conflict retries exhausted"
                    );
                    return Err(BusError::Conflict {
                        aggregate: format!("{} {}", A::TYPE, id),
                        attempts: attempt,
                    });
                }
                Err(CommitError::Store(e)) => return Err(BusError::Store(e)),
            }
        }
    }

    /// The current state of an aggregate and its last sequence (0 when it has no events).
    pub async fn load<A: EsAggregate>(&self, id: &str) -> Result<(A, i64), StoreError> {
        let mut conn = self.pool.acquire().await?;
        load::<A>(&mut conn, id).await
    }

    /// Several streams, of any types, read in one round trip; take each with [`Loaded::take`].
    pub async fn load_many(&self, streams: &[StreamRef]) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded {
            rows: HashMap::new(),
            pool: self.pool.clone(),
        };
        if streams.is_empty() {
            return Ok(loaded);
        }
        let types: Vec<&str> = streams.iter().map(|s| s.aggregate_type).collect();
        let ids: Vec<&str> = streams.iter().map(|s| s.id.as_str()).collect();
        let versions: Vec<i32> = streams.iter().map(|s| s.state_version).collect();
        let known: Vec<Option<i64>> = streams.iter().map(|s| s.known).collect();
        // A stream whose caller holds a version is read from after it (no snapshot); the
        // others from their latest snapshot of the current state version.
        let rows = sqlx::query(
            "WITH k AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[], $4::bigint[]) AS k(t, i, v, n)), \
                  s AS (SELECT sn.aggregate_type, sn.aggregate_id, sn.last_sequence, sn.payload \
                        FROM snapshots sn JOIN k ON sn.aggregate_type = k.t AND sn.aggregate_id = k.i \
                         AND sn.state_version = k.v AND k.n IS NULL) \
             SELECT * FROM ( \
               SELECT aggregate_type, aggregate_id, true AS snapshot, last_sequence AS sequence, payload FROM s \
               UNION ALL \
               SELECT e.aggregate_type, e.aggregate_id, false, e.sequence, e.payload \
               FROM k JOIN events e ON e.aggregate_type = k.t AND e.aggregate_id = k.i \
                AND e.sequence > coalesce(k.n, (SELECT last_sequence FROM s \
                                           WHERE s.aggregate_type = k.t AND s.aggregate_id = k.i), 0)) u \
             ORDER BY aggregate_type, aggregate_id, snapshot DESC, sequence",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&versions)
        .bind(&known)
        .fetch_all(&self.pool)
        .await?;
        for s in streams {
            loaded
                .rows
                .entry((s.aggregate_type.to_string(), s.id.clone()))
                .or_default();
        }
        for row in rows {
            let key = (
                row.try_get::<String, _>("aggregate_type")?,
                row.try_get::<String, _>("aggregate_id")?,
            );
            let entry = loaded.rows.entry(key).or_default();
            let sequence: i64 = row.try_get("sequence")?;
            let payload: serde_json::Value = row.try_get("payload")?;
            if row.try_get::<bool, _>("snapshot")? {
                entry.snapshot = Some((sequence, payload));
            } else {
                entry.events.push((sequence, payload));
            }
        }
        Ok(loaded)
    }

    /// A stream loaded for a decision.
    pub async fn load_stream<A: EsAggregate>(&self, id: &str) -> Result<Stream<A>, StoreError> {
        let (state, version) = self.load::<A>(id).await?;
        Ok(Stream::new(id, state, version))
    }

    /// The recorded outcome of a single-command request, if any; a different fingerprint is
    /// refused.
    async fn recorded_outcome<E: std::error::Error>(
        &self,
        ctx: &CommandContext,
        idem: &Idempotency,
    ) -> Result<Option<CommandOutcome>, BusError<E>> {
        match self.recorded(&ctx.actor, idem).await {
            Ok(None) => Ok(None),
            Ok(Some(r)) => {
                let mut outcome: CommandOutcome =
                    serde_json::from_value(r.result).map_err(StoreError::from)?;
                outcome.replayed = true;
                Ok(Some(outcome))
            }
            Err(RecordedError::Reused) => Err(BusError::IdempotencyKeyReused {
                key: idem.key.clone(),
            }),
            Err(RecordedError::Store(e)) => Err(BusError::Store(e)),
        }
    }

    /// The recorded outcome of `actor`'s request with this key, if any. The same key with
    /// another fingerprint is [`RecordedError::Reused`].
    pub async fn recorded(
        &self,
        actor: &Actor,
        idem: &Idempotency,
    ) -> Result<Option<Recorded>, RecordedError> {
        let row = sqlx::query(
            "SELECT command_hash, outcome FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(idempotency_scope(actor))
        .bind(&idem.key)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from)?;
        let Some(row) = row else { return Ok(None) };
        let hash: String = row.try_get("command_hash").map_err(StoreError::from)?;
        if hash != fingerprint_hash(&idem.fingerprint) {
            return Err(RecordedError::Reused);
        }
        let outcome: serde_json::Value = row.try_get("outcome").map_err(StoreError::from)?;
        Ok(Some(
            serde_json::from_value(outcome).map_err(StoreError::from)?,
        ))
    }

    /// Commits one flow's changes: every stream's events at its expected version, the request's
    /// idempotency record (`result` is its answer), the outbox messages and the schedules, in
    /// one transaction.
    pub async fn commit(
        &self,
        changes: &Changes,
        ctx: &CommandContext,
        result: &serde_json::Value,
    ) -> Result<Committed, CommitError> {
        self.commit_with(changes, ctx, result, false).await
    }

    /// Commits `changes`; with `with_events`, the recorded result is `result` with its `events`
    /// field set to the events written (the outcome of [`CommandBus::execute`]).
    async fn commit_with(
        &self,
        changes: &Changes,
        ctx: &CommandContext,
        result: &serde_json::Value,
        with_events: bool,
    ) -> Result<Committed, CommitError> {
        let outcome = self
            .commit_unmeasured(changes, ctx, result, with_events)
            .await;
        count_commit(changes, &outcome);
        outcome
    }

    async fn commit_unmeasured(
        &self,
        changes: &Changes,
        ctx: &CommandContext,
        result: &serde_json::Value,
        with_events: bool,
    ) -> Result<Committed, CommitError> {
        if changes.settles.len() <= 1 && changes.schedules.is_empty() {
            return self
                .commit_one_statement(&self.pool, changes, ctx, result, with_events)
                .await;
        }
        let mut tx = self.pool.begin().await?;
        let committed = self
            .write_changes(&mut tx, changes, ctx, result, with_events)
            .await?;
        match tx.commit().await {
            Ok(()) => Ok(committed),
            Err(e) if is_unique_violation(&e, "events_pkey") => Err(CommitError::Conflict),
            Err(e) if is_unique_violation(&e, "idempotency_keys_pkey") => {
                Err(CommitError::KeyTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `changes` on `conn`, inside a transaction the caller commits (the outbox settles
    /// a message in the transaction that holds its row). A savepoint lets the caller decide
    /// again after a conflict.
    pub async fn commit_on(
        &self,
        conn: &mut PgConnection,
        changes: &Changes,
        ctx: &CommandContext,
        result: &serde_json::Value,
    ) -> Result<Committed, CommitError> {
        let outcome = if changes.settles.len() <= 1 && changes.schedules.is_empty() {
            self.commit_one_statement(conn, changes, ctx, result, false)
                .await
        } else {
            self.write_changes(conn, changes, ctx, result, false).await
        };
        count_commit(changes, &outcome);
        outcome
    }

    async fn write_changes(
        &self,
        tx: &mut PgConnection,
        changes: &Changes,
        ctx: &CommandContext,
        result: &serde_json::Value,
        with_events: bool,
    ) -> Result<Committed, CommitError> {
        let now = self.clock.now();
        let metadata = metadata(ctx, now);
        let EventRows {
            n,
            types,
            ids,
            sequences,
            event_types,
            versions,
            payloads,
        } = EventRows::of(changes);

        let mut committed = Committed::default();
        if n > 0 {
            let inserted = sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                                     payload, metadata, recorded_at) \
                 SELECT a, i, s, t, v, p, $7, $8 \
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[]) \
                      WITH ORDINALITY AS x(a, i, s, t, v, p, o) ORDER BY o \
                 RETURNING aggregate_type, aggregate_id, sequence, global_position, \
                           transaction_id::text::bigint AS txid, event_type",
            )
            .bind(&types)
            .bind(&ids)
            .bind(&sequences)
            .bind(&event_types)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadata)
            .bind(now)
            .fetch_all(&mut *tx)
            .await;
            let rows = match inserted {
                Ok(rows) => rows,
                Err(e) if is_unique_violation(&e, "events_pkey") => {
                    return Err(CommitError::Conflict)
                }
                Err(e) => return Err(e.into()),
            };
            for r in rows {
                committed.events.push(committed_event(&r)?);
            }
            committed.events.sort_by_key(|e| e.position);
        }
        for w in &changes.writes {
            let Some((state_version, payload)) = &w.snapshot else {
                continue;
            };
            sqlx::query(
                "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, state_version, payload, taken_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                 SET last_sequence = EXCLUDED.last_sequence, state_version = EXCLUDED.state_version, \
                     payload = EXCLUDED.payload, taken_at = EXCLUDED.taken_at \
                 WHERE snapshots.last_sequence < EXCLUDED.last_sequence",
            )
            .bind(w.aggregate_type)
            .bind(&w.aggregate_id)
            .bind(w.expected + w.payloads.len() as i64)
            .bind(state_version)
            .bind(payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for s in &changes.settles {
            // The settlement's position is kept with its result: a retried request answers the
            // position its first answer gave, delivery included.
            let done = sqlx::query(
                "UPDATE outbox SET status = $2, result = $3 || jsonb_build_object('position', $6::jsonb), \
                                   delivered_at = $4, attempts = greatest(attempts, $5) \
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(s.id)
            .bind(if s.delivered { "delivered" } else { "failed" })
            .bind(&s.result)
            .bind(now)
            .bind(s.attempt)
            .bind(serde_json::to_value(committed.last_position()).map_err(StoreError::from)?)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(CommitError::Conflict);
            }
            // The attempt that settled it (a claimed attempt's row says "in flight" until now).
            sqlx::query(
                "INSERT INTO outbox_attempts (outbox_id, attempt, at, ok, detail) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (outbox_id, attempt) DO UPDATE SET ok = $4, detail = $5, at = $3",
            )
            .bind(s.id)
            .bind(s.attempt)
            .bind(now)
            .bind(s.delivered)
            .bind(if s.delivered {
                "delivered"
            } else {
                "settled as failed"
            })
            .execute(&mut *tx)
            .await?;
        }
        if !changes.outbox.is_empty() {
            let ids: Vec<Uuid> = changes.outbox.iter().map(|m| m.id).collect();
            let kinds: Vec<&str> = changes.outbox.iter().map(|m| m.kind.as_str()).collect();
            let payloads: Vec<&serde_json::Value> =
                changes.outbox.iter().map(|m| &m.payload).collect();
            sqlx::query(
                "INSERT INTO outbox (id, kind, payload, next_attempt_at, created_at, correlation_id) \
                 SELECT i, k, p, $6, $4, $5 FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[]) AS x(i, k, p) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&ids)
            .bind(&kinds)
            .bind(&payloads)
            .bind(now)
            .bind(ctx.correlation_id)
            .bind(now + changes.hold.unwrap_or_default())
            .execute(&mut *tx)
            .await?;
            committed.outbox = ids;
        }
        for s in &changes.schedules {
            crate::scheduler::Scheduler::schedule(
                &mut *tx,
                &s.kind,
                &s.dedupe_key,
                &s.payload,
                s.due_at,
                now,
            )
            .await?;
        }
        if let Some(idem) = &ctx.idempotency {
            let mut result = result.clone();
            if with_events {
                result["events"] = serde_json::to_value(
                    committed
                        .events
                        .iter()
                        .map(|e| WrittenEvent {
                            sequence: e.sequence,
                            position: e.position,
                            event_type: e.event_type.clone(),
                        })
                        .collect::<Vec<_>>(),
                )
                .map_err(StoreError::from)?;
            }
            let recorded = Recorded {
                result,
                position: committed.last_position(),
                outbox: committed.outbox.clone(),
            };
            let main = changes.writes.first();
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (scope, key, aggregate_type, aggregate_id, command_hash, outcome, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(idempotency_scope(&ctx.actor))
            .bind(&idem.key)
            .bind(main.map(|w| w.aggregate_type))
            .bind(main.map(|w| w.aggregate_id.as_str()))
            .bind(fingerprint_hash(&idem.fingerprint))
            .bind(serde_json::to_value(&recorded).map_err(StoreError::from)?)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e, "idempotency_keys_pkey") => {
                    return Err(CommitError::KeyTaken)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(committed)
    }

    /// The common commit (events, snapshots due, outbox rows, the idempotency record; no
    /// schedule or settlement) as one statement: one round trip, atomic like any statement.
    async fn commit_one_statement<'e, E>(
        &self,
        exec: E,
        changes: &Changes,
        ctx: &CommandContext,
        result: &serde_json::Value,
        with_events: bool,
    ) -> Result<Committed, CommitError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Postgres>,
    {
        let now = self.clock.now();
        let metadata = metadata(ctx, now);
        let EventRows {
            n: _,
            types,
            ids,
            sequences,
            event_types,
            versions,
            payloads,
        } = EventRows::of(changes);
        let outbox_ids: Vec<Uuid> = changes.outbox.iter().map(|m| m.id).collect();
        let outbox_kinds: Vec<&str> = changes.outbox.iter().map(|m| m.kind.as_str()).collect();
        let outbox_payloads: Vec<&serde_json::Value> =
            changes.outbox.iter().map(|m| &m.payload).collect();
        let main = changes.writes.first();
        // The snapshots due, one per stream (the last write of a stream has its state).
        let mut due: BTreeMap<(&str, &str), (i64, i32, &serde_json::Value)> = BTreeMap::new();
        for w in &changes.writes {
            if let Some((state_version, payload)) = &w.snapshot {
                due.insert(
                    (w.aggregate_type, w.aggregate_id.as_str()),
                    (
                        w.expected + w.payloads.len() as i64,
                        *state_version,
                        payload,
                    ),
                );
            }
        }
        let sn_types: Vec<&str> = due.keys().map(|k| k.0).collect();
        let sn_ids: Vec<&str> = due.keys().map(|k| k.1).collect();
        let sn_last: Vec<i64> = due.values().map(|v| v.0).collect();
        let sn_versions: Vec<i32> = due.values().map(|v| v.1).collect();
        let sn_payloads: Vec<&serde_json::Value> = due.values().map(|v| v.2).collect();
        // At most one outbox message settled (its row must still be pending).
        let settle = changes.settles.first();
        let rows = sqlx::query(
            "WITH lk AS (SELECT id FROM outbox WHERE id = $26 AND status = 'pending' FOR UPDATE), \
             go AS (SELECT $26::uuid IS NULL OR EXISTS (SELECT 1 FROM lk) AS ok), \
             ev AS ( \
               INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                                   payload, metadata, recorded_at) \
               SELECT a, i, s, t, v, p, $7, $8 \
               FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[]) \
                    WITH ORDINALITY AS x(a, i, s, t, v, p, o) WHERE (SELECT ok FROM go) ORDER BY o \
               RETURNING aggregate_type, aggregate_id, sequence, global_position, \
                         transaction_id::text::bigint AS txid, event_type), \
             ob AS ( \
               INSERT INTO outbox (id, kind, payload, next_attempt_at, created_at, correlation_id) \
               SELECT i, k, p, $20, $8, $12 FROM UNNEST($9::uuid[], $10::text[], $11::jsonb[]) AS x(i, k, p) \
               WHERE (SELECT ok FROM go) ON CONFLICT (id) DO NOTHING RETURNING id), \
             sn AS ( \
               INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, state_version, payload, taken_at) \
               SELECT a, i, l, v, p, $8 \
               FROM UNNEST($21::text[], $22::text[], $23::bigint[], $24::int[], $25::jsonb[]) AS x(a, i, l, v, p) \
               WHERE (SELECT ok FROM go) ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
               SET last_sequence = EXCLUDED.last_sequence, state_version = EXCLUDED.state_version, \
                   payload = EXCLUDED.payload, taken_at = EXCLUDED.taken_at \
               WHERE snapshots.last_sequence < EXCLUDED.last_sequence RETURNING 1), \
             st AS ( \
               UPDATE outbox SET status = CASE WHEN $28 THEN 'delivered' ELSE 'failed' END, \
                                 result = $29::jsonb || jsonb_build_object('position', \
                                   (SELECT jsonb_build_object('txid', max(txid), 'position', max(global_position)) \
                                    FROM ev HAVING count(*) > 0)), \
                                 delivered_at = $8, attempts = greatest(attempts, $27) \
               WHERE id = (SELECT id FROM lk) RETURNING id), \
             sa AS ( \
               INSERT INTO outbox_attempts (outbox_id, attempt, at, ok, detail) \
               SELECT id, $27, $8, $28, CASE WHEN $28 THEN 'delivered' ELSE 'settled as failed' END FROM st \
               ON CONFLICT (outbox_id, attempt) DO UPDATE SET ok = EXCLUDED.ok, detail = EXCLUDED.detail, at = EXCLUDED.at \
               RETURNING 1), \
             idem AS ( \
               INSERT INTO idempotency_keys (scope, key, aggregate_type, aggregate_id, command_hash, outcome, created_at) \
               SELECT $13, $14, $15, $16, $17, jsonb_build_object( \
                   'result', CASE WHEN $19 THEN jsonb_set($18::jsonb, '{events}', coalesce( \
                       (SELECT jsonb_agg(jsonb_build_object('sequence', sequence, 'position', \
                          jsonb_build_object('txid', txid, 'position', global_position), \
                          'event_type', event_type) ORDER BY sequence) FROM ev), '[]'::jsonb)) \
                     ELSE $18::jsonb END, \
                   'position', (SELECT jsonb_build_object('txid', max(txid), 'position', max(global_position)) \
                                FROM ev HAVING count(*) > 0), \
                   'outbox', to_jsonb($9::uuid[])), $8 \
               WHERE $14::text IS NOT NULL AND (SELECT ok FROM go) RETURNING 1) \
             SELECT false AS settled, aggregate_type, aggregate_id, sequence, global_position, txid, event_type FROM ev \
             UNION ALL \
             SELECT true, NULL, NULL, NULL, NULL, NULL, NULL FROM st",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .bind(&event_types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(now)
        .bind(&outbox_ids)
        .bind(&outbox_kinds)
        .bind(&outbox_payloads)
        .bind(ctx.correlation_id)
        .bind(idempotency_scope(&ctx.actor))
        .bind(ctx.idempotency.as_ref().map(|i| i.key.as_str()))
        .bind(main.map(|w| w.aggregate_type))
        .bind(main.map(|w| w.aggregate_id.as_str()))
        .bind(
            ctx.idempotency
                .as_ref()
                .map(|i| fingerprint_hash(&i.fingerprint)),
        )
        .bind(result)
        .bind(with_events)
        .bind(now + changes.hold.unwrap_or_default())
        .bind(&sn_types)
        .bind(&sn_ids)
        .bind(&sn_last)
        .bind(&sn_versions)
        .bind(&sn_payloads)
        .bind(settle.map(|s| s.id))
        .bind(settle.map(|s| s.attempt))
        .bind(settle.map(|s| s.delivered))
        .bind(settle.map(|s| &s.result))
        .fetch_all(exec)
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) if is_unique_violation(&e, "events_pkey") => return Err(CommitError::Conflict),
            Err(e) if is_unique_violation(&e, "idempotency_keys_pkey") => {
                return Err(CommitError::KeyTaken)
            }
            Err(e) => return Err(e.into()),
        };
        let mut committed = Committed {
            events: Vec::with_capacity(rows.len()),
            outbox: outbox_ids,
        };
        let mut settled = false;
        for r in rows {
            if r.try_get::<bool, _>("settled")? {
                settled = true;
            } else {
                committed.events.push(committed_event(&r)?);
            }
        }
        if settle.is_some() && !settled {
            // Settled meanwhile by another deliverer: the statement wrote nothing (every part
            // waits on the message's row lock and is skipped once it is settled).
            return Err(CommitError::Conflict);
        }
        committed.events.sort_by_key(|e| e.position);
        Ok(committed)
    }
}

/// The metadata stored with every event of a commit.
fn metadata(ctx: &CommandContext, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    serde_json::json!({
        "actor": ctx.actor,
        "correlation_id": ctx.correlation_id,
        "causation": ctx.causation,
        "idempotency_key": ctx.idempotency.as_ref().map(|i| &i.key),
        "at": now,
    })
}

/// The events of a commit as the columns of one `UNNEST` insert.
struct EventRows<'a> {
    n: usize,
    types: Vec<&'static str>,
    ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    versions: Vec<&'a str>,
    payloads: Vec<&'a serde_json::Value>,
}

impl<'a> EventRows<'a> {
    fn of(changes: &'a Changes) -> Self {
        let n: usize = changes.writes.iter().map(|w| w.payloads.len()).sum();
        let mut rows = EventRows {
            n,
            types: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            sequences: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
        };
        for w in &changes.writes {
            for (i, p) in w.payloads.iter().enumerate() {
                rows.types.push(w.aggregate_type);
                rows.ids.push(w.aggregate_id.as_str());
                rows.sequences.push(w.expected + 1 + i as i64);
                rows.event_types.push(w.event_types[i].as_str());
                rows.versions.push(w.event_versions[i].as_str());
                rows.payloads.push(p);
            }
        }
        rows
    }
}

/// An event row as the insert returned it.
fn committed_event(r: &sqlx::postgres::PgRow) -> Result<CommittedEvent, sqlx::Error> {
    Ok(CommittedEvent {
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        position: Position {
            txid: r.try_get("txid")?,
            position: r.try_get("global_position")?,
        },
        event_type: r.try_get("event_type")?,
    })
}

/// A stream to read with [`CommandBus::load_many`].
#[derive(Debug, Clone)]
pub struct StreamRef {
    pub aggregate_type: &'static str,
    pub id: String,
    pub state_version: i32,
    /// A version of the stream the caller already holds: only the events after it are read
    /// (take them onto that state with [`Loaded::take_onto`]).
    pub known: Option<i64>,
}

impl StreamRef {
    pub fn of<A: EsAggregate>(id: impl Into<String>) -> Self {
        Self {
            aggregate_type: A::TYPE,
            id: id.into(),
            state_version: A::STATE_VERSION,
            known: None,
        }
    }

    /// The same stream, read from after `version` (a state the caller holds).
    pub fn after(mut self, version: i64) -> Self {
        self.known = Some(version);
        self
    }
}

#[derive(Debug, Default)]
struct RawStream {
    snapshot: Option<(i64, serde_json::Value)>,
    events: Vec<(i64, serde_json::Value)>,
}

/// Streams read at once by [`CommandBus::load_many`].
pub struct Loaded {
    rows: HashMap<(String, String), RawStream>,
    pool: PgPool,
}

impl Loaded {
    /// True when the stream `id` of type `A` was read and not taken yet.
    pub fn has<A: EsAggregate>(&self, id: &str) -> bool {
        self.rows
            .contains_key(&(A::TYPE.to_string(), id.to_string()))
    }

    /// The stream `id` of type `A`, folded (one of those asked for).
    pub async fn take<A: EsAggregate>(&mut self, id: &str) -> Result<Stream<A>, StoreError> {
        let Some(raw) = self.rows.remove(&(A::TYPE.to_string(), id.to_string())) else {
            return Err(StoreError::Corrupt(format!(
                "{} {id} was not asked of load_many",
                A::TYPE
            )));
        };
        let mut state = A::default();
        let mut version = 0;
        if let Some((sequence, payload)) = raw.snapshot {
            match serde_json::from_value::<A>(payload) {
                Ok(s) => {
                    state = s;
                    version = sequence;
                }
                Err(e) => {
                    tracing::warn!(aggregate = A::TYPE, id, error = %e, "unreadable snapshot ignored");
                    let mut conn = self.pool.acquire().await?;
                    let (state, version, _) = load_all::<A>(&mut conn, id).await?;
                    return Ok(Stream::new(id, state, version));
                }
            }
        }
        apply_raw(id, &mut state, &mut version, raw.events)?;
        Ok(Stream::new(id, state, version))
    }

    /// The stream `id` asked for after a version the caller holds ([`StreamRef::after`]):
    /// `state` at `version` with the events read after it.
    pub async fn take_onto<A: EsAggregate>(
        &mut self,
        id: &str,
        mut state: A,
        mut version: i64,
    ) -> Result<Stream<A>, StoreError> {
        let Some(raw) = self.rows.remove(&(A::TYPE.to_string(), id.to_string())) else {
            return Err(StoreError::Corrupt(format!(
                "{} {id} was not asked of load_many",
                A::TYPE
            )));
        };
        if raw.snapshot.is_some() {
            return Err(StoreError::Corrupt(format!(
                "{} {id} was asked of load_many without a known version",
                A::TYPE
            )));
        }
        apply_raw(id, &mut state, &mut version, raw.events)?;
        Ok(Stream::new(id, state, version))
    }
}

/// Folds raw events (in sequence order) onto a state.
fn apply_raw<A: EsAggregate>(
    id: &str,
    state: &mut A,
    version: &mut i64,
    events: Vec<(i64, serde_json::Value)>,
) -> Result<(), StoreError> {
    for (sequence, payload) in events {
        let event: A::Event = serde_json::from_value(payload)
            .map_err(|e| StoreError::Corrupt(format!("{} {id} event #{sequence}: {e}", A::TYPE)))?;
        state.apply(event);
        *version = sequence;
    }
    Ok(())
}

/// Why a recorded outcome could not be returned.
#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    /// The caller used the key before for another request.
    #[error("the idempotency key was already used for a different request")]
    Reused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads an aggregate: its latest snapshot (when of the current state version) and the events
/// after it. Cost depends on the events since the last snapshot, not on the whole history.
pub async fn load<A: EsAggregate>(
    conn: &mut PgConnection,
    id: &str,
) -> Result<(A, i64), StoreError> {
    load_counting::<A>(conn, id)
        .await
        .map(|(a, last, _)| (a, last))
}

/// [`load`], also telling how many events were replayed on top of the snapshot. One round trip:
/// the snapshot of the current state version (if any) and the events after it.
pub async fn load_counting<A: EsAggregate>(
    conn: &mut PgConnection,
    id: &str,
) -> Result<(A, i64, usize), StoreError> {
    let rows = sqlx::query(
        "WITH s AS (SELECT last_sequence, payload FROM snapshots \
                    WHERE aggregate_type = $1 AND aggregate_id = $2 AND state_version = $3) \
         SELECT * FROM ( \
           SELECT true AS snapshot, last_sequence AS sequence, payload FROM s \
           UNION ALL \
           SELECT false, e.sequence, e.payload FROM events e \
           WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 \
             AND e.sequence > coalesce((SELECT last_sequence FROM s), 0)) u \
         ORDER BY snapshot DESC, sequence",
    )
    .bind(A::TYPE)
    .bind(id)
    .bind(A::STATE_VERSION)
    .fetch_all(&mut *conn)
    .await?;
    let mut aggregate = A::default();
    let mut last_sequence = 0;
    let mut replayed = 0;
    for row in rows {
        let sequence: i64 = row.try_get("sequence")?;
        let payload: serde_json::Value = row.try_get("payload")?;
        if row.try_get::<bool, _>("snapshot")? {
            match serde_json::from_value::<A>(payload) {
                Ok(state) => {
                    aggregate = state;
                    last_sequence = sequence;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(aggregate = A::TYPE, id, error = %e, "unreadable snapshot ignored");
                    return load_all::<A>(conn, id).await;
                }
            }
        }
        let event: A::Event = serde_json::from_value(payload)
            .map_err(|e| StoreError::Corrupt(format!("{} {id} event #{sequence}: {e}", A::TYPE)))?;
        aggregate.apply(event);
        last_sequence = sequence;
        replayed += 1;
    }
    Ok((aggregate, last_sequence, replayed))
}

/// Every event of the stream, without the snapshot.
async fn load_all<A: EsAggregate>(
    conn: &mut PgConnection,
    id: &str,
) -> Result<(A, i64, usize), StoreError> {
    let rows = sqlx::query(
        "SELECT sequence, payload FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(A::TYPE)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut aggregate = A::default();
    let mut last_sequence = 0;
    let replayed = rows.len();
    for row in rows {
        let sequence: i64 = row.try_get("sequence")?;
        let payload: serde_json::Value = row.try_get("payload")?;
        let event: A::Event = serde_json::from_value(payload)
            .map_err(|e| StoreError::Corrupt(format!("{} {id} event #{sequence}: {e}", A::TYPE)))?;
        aggregate.apply(event);
        last_sequence = sequence;
    }
    Ok((aggregate, last_sequence, replayed))
}

/// A jittered pause before deciding again after a conflict.
pub async fn backoff(attempt: u32) {
    let cap_ms = (2u64 << attempt.min(6)).min(100);
    let ms = rand::thread_rng().gen_range(1..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// `etal_commands_total{aggregate, outcome}`: one per aggregate type a commit writes (`none`
/// for a commit of an idempotency record or outbox settlement alone).
fn count_commit(changes: &Changes, outcome: &Result<Committed, CommitError>) {
    let outcome = match outcome {
        Ok(_) => "committed",
        Err(CommitError::Conflict) => "conflict",
        Err(CommitError::KeyTaken) => "duplicate",
        Err(CommitError::Store(_)) => "error",
    };
    let mut types: Vec<&'static str> = changes.writes.iter().map(|w| w.aggregate_type).collect();
    types.sort_unstable();
    types.dedup();
    if types.is_empty() {
        types.push("none");
    }
    for t in types {
        metrics::counter!("etal_commands_total", "aggregate" => t, "outcome" => outcome)
            .increment(1);
    }
}
