//! One flow, one commit: the streams a flow decided on, the idempotency record of the request,
//! the outbox messages the change makes owed and the commands it schedules, written in **one**
//! transaction, each stream at the version it was loaded at.
//!
//! A flow loads each stream it decides on as a [`Stream`] (state and version), decides in memory
//! with the domain's pure functions ([`Stream::decide`] applies the events to the state at once,
//! so later steps see them), gathers the streams into [`Changes`] and calls
//! [`crate::CommandBus::commit`]. Optimistic concurrency comes from the events' primary key: if
//! any stream moved since it was loaded, nothing is written and the whole flow decides again.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bus::EsAggregate;
use crate::error::StoreError;
use crate::log::Position;

/// A stream loaded for a decision: its state, the version it was loaded at, and the events
/// decided on it since (already applied to `state`).
#[derive(Debug, Clone)]
pub struct Stream<A: Aggregate> {
    pub id: String,
    pub state: A,
    /// The last sequence stored when the stream was loaded (0: the stream has no events).
    pub version: i64,
    pending: Vec<A::Event>,
}

impl<A: EsAggregate> Stream<A> {
    pub fn new(id: impl Into<String>, state: A, version: i64) -> Self {
        Self {
            id: id.into(),
            state,
            version,
            pending: Vec::new(),
        }
    }

    /// True when the stream has events, stored or decided.
    pub fn exists(&self) -> bool {
        self.version > 0 || !self.pending.is_empty()
    }

    /// Decides with a pure function of the current state; the events are applied to the state
    /// and kept for the commit. A refusal changes nothing.
    pub fn decide<E>(
        &mut self,
        decide: impl FnOnce(&A) -> Result<Vec<A::Event>, E>,
    ) -> Result<&[A::Event], E> {
        let events = decide(&self.state)?;
        let from = self.pending.len();
        for e in &events {
            self.state.apply(e.clone());
        }
        self.pending.extend(events);
        Ok(&self.pending[from..])
    }

    /// Runs `command` through the aggregate's `handle` (every aggregate of the domain decides in
    /// full before it writes, so a refusal leaves the state as it was).
    pub async fn handle(
        &mut self,
        command: A::Command,
        services: &A::Services,
    ) -> Result<usize, A::Error> {
        let sink = EventSink::default();
        self.state.handle(command, services, &sink).await?;
        let events = sink.collect().await;
        let n = events.len();
        self.pending.extend(events);
        Ok(n)
    }

    /// The events decided and not yet committed.
    pub fn pending(&self) -> &[A::Event] {
        &self.pending
    }

    /// After a commit: the decided events are stored, the version moves past them.
    pub fn committed(&mut self) {
        self.version += self.pending.len() as i64;
        self.pending.clear();
    }
}

/// One stream's part of a commit.
#[derive(Debug, Clone)]
pub(crate) struct StreamWrite {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub expected: i64,
    pub event_types: Vec<String>,
    pub event_versions: Vec<String>,
    pub payloads: Vec<serde_json::Value>,
    /// (state version, state) when the stream crosses a snapshot boundary.
    pub snapshot: Option<(i32, serde_json::Value)>,
}

/// A call to the outside world that the change makes owed: delivered after commit, with the
/// provider idempotency key [`OutboxMessage::provider_key`], until acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Derived from what makes the call owed, so that deciding twice owes it once.
    pub id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
}

impl OutboxMessage {
    pub fn new(id: Uuid, kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            id,
            kind: kind.into(),
            payload,
        }
    }

    /// The idempotency key given to the provider: the same for every attempt of this message.
    pub fn provider_key(id: Uuid) -> String {
        format!("etal-{id}")
    }
}

/// A scheduled command a change makes due (deduplicated by its key).
#[derive(Debug, Clone)]
pub(crate) struct ScheduleWrite {
    pub kind: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub due_at: chrono::DateTime<chrono::Utc>,
}

/// How an outbox message ends in this commit.
#[derive(Debug, Clone)]
pub(crate) struct OutboxSettle {
    pub id: Uuid,
    /// The attempt that settles it (recorded in `outbox_attempts`).
    pub attempt: i32,
    pub delivered: bool,
    pub result: serde_json::Value,
}

/// Everything one flow writes, committed at once by [`crate::CommandBus::commit`].
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub(crate) writes: Vec<StreamWrite>,
    pub(crate) outbox: Vec<OutboxMessage>,
    pub(crate) schedules: Vec<ScheduleWrite>,
    pub(crate) settles: Vec<OutboxSettle>,
    pub(crate) hold: Option<chrono::Duration>,
}

impl Changes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the events decided on `stream` (nothing when it has none).
    pub fn stream<A: EsAggregate>(&mut self, stream: &Stream<A>) -> Result<(), StoreError> {
        self.events::<A>(&stream.id, stream.version, stream.pending(), &stream.state)
    }

    /// Adds `events` to append after `expected` on the stream `id`; `state` is the state after
    /// them (for the snapshot).
    pub fn events<A: EsAggregate>(
        &mut self,
        id: &str,
        expected: i64,
        events: &[A::Event],
        state: &A,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        if self
            .writes
            .iter()
            .any(|w| w.aggregate_type == A::TYPE && w.aggregate_id == id)
        {
            return Err(StoreError::Corrupt(format!(
                "{} {id} added twice to one commit",
                A::TYPE
            )));
        }
        let new_last = expected + events.len() as i64;
        let snapshot = if A::SNAPSHOT_EVERY > 0
            && new_last / A::SNAPSHOT_EVERY > expected / A::SNAPSHOT_EVERY
        {
            Some((A::STATE_VERSION, serde_json::to_value(state)?))
        } else {
            None
        };
        let mut w = StreamWrite {
            aggregate_type: A::TYPE,
            aggregate_id: id.to_string(),
            expected,
            event_types: Vec::with_capacity(events.len()),
            event_versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            snapshot,
        };
        for e in events {
            w.event_types.push(e.event_type());
            w.event_versions.push(e.event_version());
            w.payloads.push(serde_json::to_value(e)?);
        }
        self.writes.push(w);
        Ok(())
    }

    /// Owes a call to the outside world, delivered after commit.
    pub fn send(&mut self, message: OutboxMessage) {
        self.outbox.push(message);
    }

    /// Makes a scheduled command due (a no-op when `dedupe_key` was scheduled before).
    pub fn schedule(
        &mut self,
        kind: &str,
        dedupe_key: &str,
        payload: serde_json::Value,
        due_at: chrono::DateTime<chrono::Utc>,
    ) {
        self.schedules.push(ScheduleWrite {
            kind: kind.to_string(),
            dedupe_key: dedupe_key.to_string(),
            payload,
            due_at,
        });
    }

    /// Records the outcome of an outbox message in this commit: it commits only if the message
    /// is still pending (another deliverer did not settle it first).
    /// `attempt` is the number of the attempt that settles it.
    pub fn settle_outbox(
        &mut self,
        id: Uuid,
        attempt: i32,
        delivered: bool,
        result: serde_json::Value,
    ) {
        self.settles.push(OutboxSettle {
            id,
            attempt,
            delivered,
            result,
        });
    }

    /// Holds this commit's outbox messages from the worker for `hold` (the flow delivers them
    /// itself right after the commit; the worker takes them if it could not).
    pub fn hold_outbox(&mut self, hold: chrono::Duration) {
        self.hold = Some(hold);
    }

    /// True when the commit would write no event, message, schedule or settlement.
    /// The streams written, as (aggregate type, id).
    pub fn streams(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.writes
            .iter()
            .map(|w| (w.aggregate_type, w.aggregate_id.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.outbox.is_empty()
            && self.schedules.is_empty()
            && self.settles.is_empty()
    }

    /// The outbox messages this commit owes.
    pub fn messages(&self) -> &[OutboxMessage] {
        &self.outbox
    }
}

/// One event a commit wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: Position,
    pub event_type: String,
}

/// What a commit wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub events: Vec<CommittedEvent>,
    /// The outbox messages it owes (their ids), for delivery right after commit.
    pub outbox: Vec<Uuid>,
}

impl Committed {
    pub fn last_position(&self) -> Option<Position> {
        self.events.iter().map(|e| e.position).max()
    }
}

/// The recorded outcome of an idempotent request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The flow's answer, as it first gave it.
    pub result: serde_json::Value,
    pub position: Option<Position>,
    /// The outbox messages the first call owed (a retry helps deliver them).
    #[serde(default)]
    pub outbox: Vec<Uuid>,
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A stream moved since it was loaded, or an outbox message was settled meanwhile: decide
    /// again.
    #[error("a stream changed concurrently")]
    Conflict,
    /// Another copy of the request committed under the same idempotency key: read its outcome.
    #[error("the idempotency key was recorded concurrently")]
    KeyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        CommitError::Store(StoreError::Database(e))
    }
}
