//! The command bus: runs a command against an aggregate and appends its events.
//!
//! One command is one transaction: the events, the idempotency record and (every
//! [`EsAggregate::SNAPSHOT_EVERY`] events) a snapshot of the state commit together or not at all.
//! Optimistic concurrency comes from the primary key (aggregate_type, aggregate_id, sequence): two
//! commands that loaded the same version cannot both append. The loser reloads and decides again,
//! a bounded number of times with jittered backoff, then gets a retryable [`BusError::Conflict`].

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use etal_domain::{Actor, Clock};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::db::is_unique_violation;
use crate::error::{BusError, StoreError};
use crate::log::Position;

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

enum AppendError {
    Conflict,
    KeyTaken,
    Store(StoreError),
}

impl From<sqlx::Error> for AppendError {
    fn from(e: sqlx::Error) -> Self {
        AppendError::Store(StoreError::Database(e))
    }
}

fn fingerprint_hash(fingerprint: &str) -> String {
    hex::encode(Sha256::digest(fingerprint.as_bytes()))
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

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs `command` on the aggregate `id` of type `A`.
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
                if let Some(outcome) = self.recorded_outcome::<A::Error>(idem).await? {
                    return Ok(outcome);
                }
            }
            let mut conn = self.pool.acquire().await?;
            let (mut aggregate, last_sequence) = load::<A>(&mut conn, id).await?;
            drop(conn);
            let sink = EventSink::default();
            aggregate
                .handle(command.clone(), services, &sink)
                .await
                .map_err(BusError::Rejected)?;
            let events = sink.collect().await;
            match self
                .append::<A>(id, &aggregate, last_sequence, events, ctx)
                .await
            {
                Ok(outcome) => return Ok(outcome),
                Err(AppendError::KeyTaken) => continue,
                Err(AppendError::Conflict) if attempt < self.max_attempts => {
                    backoff(attempt).await;
                }
                Err(AppendError::Conflict) => {
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
                Err(AppendError::Store(e)) => return Err(BusError::Store(e)),
            }
        }
    }

    /// The current state of an aggregate and its last sequence (0 when it has no events).
    pub async fn load<A: EsAggregate>(&self, id: &str) -> Result<(A, i64), StoreError> {
        let mut conn = self.pool.acquire().await?;
        load::<A>(&mut conn, id).await
    }

    /// The recorded outcome of an idempotency key, if any; a different fingerprint is refused.
    pub async fn recorded(
        &self,
        idem: &Idempotency,
    ) -> Result<Option<CommandOutcome>, BusError<std::convert::Infallible>> {
        self.recorded_outcome::<std::convert::Infallible>(idem)
            .await
    }

    async fn recorded_outcome<E: std::error::Error>(
        &self,
        idem: &Idempotency,
    ) -> Result<Option<CommandOutcome>, BusError<E>> {
        let row = sqlx::query("SELECT command_hash, outcome FROM idempotency_keys WHERE key = $1")
            .bind(&idem.key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let hash: String = row.try_get("command_hash")?;
        if hash != fingerprint_hash(&idem.fingerprint) {
            return Err(BusError::IdempotencyKeyReused {
                key: idem.key.clone(),
            });
        }
        let mut outcome: CommandOutcome =
            serde_json::from_value(row.try_get("outcome")?).map_err(StoreError::from)?;
        outcome.replayed = true;
        Ok(Some(outcome))
    }

    async fn append<A: EsAggregate>(
        &self,
        id: &str,
        state: &A,
        last_sequence: i64,
        events: Vec<A::Event>,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, AppendError> {
        let now = self.clock.now();
        let metadata = serde_json::json!({
            "actor": ctx.actor,
            "correlation_id": ctx.correlation_id,
            "causation": ctx.causation,
            "idempotency_key": ctx.idempotency.as_ref().map(|i| &i.key),
            "at": now,
        });
        let mut sequences = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            sequences.push(last_sequence + 1 + i as i64);
            types.push(event.event_type());
            versions.push(event.event_version());
            payloads.push(serde_json::to_value(event).map_err(|e| AppendError::Store(e.into()))?);
        }

        let mut tx = self.pool.begin().await?;
        let rows = if events.is_empty() {
            Vec::new()
        } else {
            let inserted = sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                                     payload, metadata, recorded_at) \
                 SELECT $1, $2, s, t, v, p, $7, $8 \
                 FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[]) AS x(s, t, v, p) \
                 RETURNING sequence, global_position, transaction_id::text::bigint AS txid, event_type",
            )
            .bind(A::TYPE)
            .bind(id)
            .bind(&sequences)
            .bind(&types)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadata)
            .bind(now)
            .fetch_all(&mut *tx)
            .await;
            match inserted {
                Ok(rows) => rows,
                Err(e) if is_unique_violation(&e, "events_pkey") => {
                    return Err(AppendError::Conflict)
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut written = rows
            .iter()
            .map(|r| -> Result<WrittenEvent, sqlx::Error> {
                Ok(WrittenEvent {
                    sequence: r.try_get("sequence")?,
                    position: Position {
                        txid: r.try_get("txid")?,
                        position: r.try_get("global_position")?,
                    },
                    event_type: r.try_get("event_type")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        written.sort_by_key(|w| w.sequence);
        let outcome = CommandOutcome {
            aggregate_type: A::TYPE.to_string(),
            aggregate_id: id.to_string(),
            events: written,
            replayed: false,
        };

        if let Some(idem) = &ctx.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, aggregate_type, aggregate_id, command_hash, outcome, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&idem.key)
            .bind(A::TYPE)
            .bind(id)
            .bind(fingerprint_hash(&idem.fingerprint))
            .bind(serde_json::to_value(&outcome).map_err(|e| AppendError::Store(e.into()))?)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e, "idempotency_keys_pkey") => {
                    return Err(AppendError::KeyTaken)
                }
                Err(e) => return Err(e.into()),
            }
        }

        let new_last = last_sequence + events.len() as i64;
        if A::SNAPSHOT_EVERY > 0 && new_last / A::SNAPSHOT_EVERY > last_sequence / A::SNAPSHOT_EVERY
        {
            let payload = serde_json::to_value(state).map_err(|e| AppendError::Store(e.into()))?;
            sqlx::query(
                "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, state_version, payload, taken_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                 SET last_sequence = EXCLUDED.last_sequence, state_version = EXCLUDED.state_version, \
                     payload = EXCLUDED.payload, taken_at = EXCLUDED.taken_at \
                 WHERE snapshots.last_sequence < EXCLUDED.last_sequence",
            )
            .bind(A::TYPE)
            .bind(id)
            .bind(new_last)
            .bind(A::STATE_VERSION)
            .bind(payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }

        match tx.commit().await {
            Ok(()) => Ok(outcome),
            Err(e) if is_unique_violation(&e, "events_pkey") => Err(AppendError::Conflict),
            Err(e) => Err(e.into()),
        }
    }
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

/// [`load`], also telling how many events were replayed on top of the snapshot.
pub async fn load_counting<A: EsAggregate>(
    conn: &mut PgConnection,
    id: &str,
) -> Result<(A, i64, usize), StoreError> {
    let snapshot = sqlx::query(
        "SELECT last_sequence, state_version, payload FROM snapshots \
         WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(A::TYPE)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (mut aggregate, mut last_sequence) = match snapshot {
        Some(row) if row.try_get::<i32, _>("state_version")? == A::STATE_VERSION => {
            let payload: serde_json::Value = row.try_get("payload")?;
            match serde_json::from_value::<A>(payload) {
                Ok(state) => (state, row.try_get::<i64, _>("last_sequence")?),
                Err(e) => {
                    tracing::warn!(aggregate = A::TYPE, id, error = %e, "unreadable snapshot ignored");
                    (A::default(), 0)
                }
            }
        }
        _ => (A::default(), 0),
    };
    let rows = sqlx::query(
        "SELECT sequence, payload FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
    )
    .bind(A::TYPE)
    .bind(id)
    .bind(last_sequence)
    .fetch_all(&mut *conn)
    .await?;
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

async fn backoff(attempt: u32) {
    let cap_ms = (2u64 << attempt.min(6)).min(100);
    let ms = rand::thread_rng().gen_range(1..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
