//! The domain's aggregates run in memory, as the command bus runs them (`handle` with an
//! `EventSink`), and their events written in bulk into `events`.
//!
//! Writing years of history through the command path would take hours (each command loads its
//! aggregate and commits its own transaction); here each aggregate's state stays in a map, each
//! command is decided by the real domain code, and the events go to PostgreSQL in batches of
//! `BATCH` rows, one transaction and one `INSERT ... SELECT FROM UNNEST` per batch, so that
//! `transaction_id` and `global_position` are assigned by the database exactly as for commands.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use etal_domain::Actor;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Rows per insert transaction.
pub const BATCH: usize = 5_000;

/// Column-wise rows for one UNNEST insert.
#[derive(Default)]
pub struct Rows {
    types: Vec<&'static str>,
    ids: Vec<String>,
    sequences: Vec<i64>,
    event_types: Vec<String>,
    versions: Vec<String>,
    payloads: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
    at: Vec<DateTime<Utc>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Inserts batches of rows on a task of its own, so that deciding and writing overlap.
pub struct Writer {
    rows: Rows,
    tx: Option<mpsc::Sender<Rows>>,
    task: Option<JoinHandle<anyhow::Result<u64>>>,
    pub written: u64,
}

/// Appends one batch in one transaction, as the store would.
pub async fn insert_rows(pool: &PgPool, rows: &Rows) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata, recorded_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                              $6::jsonb[], $7::jsonb[], $8::timestamptz[])",
    )
    .bind(&rows.types)
    .bind(&rows.ids)
    .bind(&rows.sequences)
    .bind(&rows.event_types)
    .bind(&rows.versions)
    .bind(&rows.payloads)
    .bind(&rows.metadata)
    .bind(&rows.at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

impl Writer {
    pub fn new(pool: PgPool, on_batch: impl Fn(u64) + Send + 'static) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Rows>(4);
        let task = tokio::spawn(async move {
            let mut total = 0u64;
            while let Some(rows) = rx.recv().await {
                insert_rows(&pool, &rows).await?;
                total += rows.len() as u64;
                on_batch(rows.len() as u64);
            }
            Ok(total)
        });
        Writer {
            rows: Rows::default(),
            tx: Some(tx),
            task: Some(task),
            written: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        aggregate_type: &'static str,
        id: &str,
        sequence: i64,
        event_type: String,
        version: String,
        payload: serde_json::Value,
        actor: Actor,
        at: DateTime<Utc>,
    ) {
        let r = &mut self.rows;
        r.types.push(aggregate_type);
        r.ids.push(id.to_string());
        r.sequences.push(sequence);
        r.event_types.push(event_type);
        r.versions.push(version);
        r.payloads.push(payload);
        r.metadata
            .push(serde_json::json!({ "actor": actor, "at": at, "generated": true }));
        r.at.push(at);
        self.written += 1;
    }

    /// Sends the pending rows when a batch is full.
    pub async fn maybe_flush(&mut self) -> anyhow::Result<()> {
        if self.rows.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        if let Some(tx) = &self.tx {
            if tx.send(rows).await.is_err() {
                // The writer task stopped: its error comes out of `finish`.
                anyhow::bail!("the event writer stopped");
            }
        }
        Ok(())
    }

    /// Writes what is left and waits for the writer task; returns the rows written.
    pub async fn finish(&mut self) -> anyhow::Result<u64> {
        let flushed = self.flush().await;
        self.tx.take();
        let written = match self.task.take() {
            Some(t) => t.await??,
            None => 0,
        };
        flushed?;
        Ok(written)
    }
}

/// The states of every aggregate of one type, by id, with their last sequence.
pub struct Streams<A> {
    pub map: HashMap<String, (A, i64)>,
}

impl<A> Default for Streams<A> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<A: Aggregate<Services = ()>> Streams<A> {
    /// Runs `command` on aggregate `id`, as the bus would: the domain decides, the events are
    /// applied to the state and queued for insertion at the next sequences.
    pub async fn exec(
        &mut self,
        w: &mut Writer,
        id: &str,
        command: A::Command,
        actor: Actor,
        at: DateTime<Utc>,
    ) -> Result<Vec<A::Event>, A::Error> {
        let (state, last) = self.map.entry(id.to_string()).or_default();
        let sink = EventSink::default();
        state.handle(command, &(), &sink).await?;
        let events = sink.collect().await;
        for e in &events {
            *last += 1;
            let payload = serde_json::to_value(e).expect("events serialize");
            w.push(
                A::TYPE,
                id,
                *last,
                e.event_type(),
                e.event_version(),
                payload,
                actor,
                at,
            );
        }
        Ok(events)
    }

    pub fn get(&self, id: &str) -> Option<&A> {
        self.map.get(id).map(|(a, _)| a)
    }

    pub fn remove(&mut self, id: &str) {
        self.map.remove(id);
    }
}
