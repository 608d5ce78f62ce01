//! Durable scheduled commands: due at a time, executed exactly once, driven by the injected clock.
//!
//! A scheduled command is a row. A runner locks due rows one at a time (`FOR UPDATE SKIP LOCKED`,
//! so several processes can run schedulers), runs the handler for its kind and marks it done in the
//! transaction that holds the lock. The handler sends its commands through the bus with the
//! idempotency key [`ScheduledCommand::idempotency_key`]: if the process dies after the command
//! committed but before the row was marked, the row is picked again, the bus returns the recorded
//! outcome and writes nothing. Exactly once in effect, even across crashes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etal_domain::Clock;
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool, Row};
use uuid::Uuid;

use crate::error::StoreError;

/// A command due at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledCommand {
    pub id: Uuid,
    pub kind: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
}

impl ScheduledCommand {
    /// The idempotency key the handler must give the commands it sends.
    pub fn idempotency_key(&self) -> String {
        format!("scheduled:{}", self.id)
    }
}

/// Why a scheduled command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try again later (database down, conflict).
    #[error("retry later: {0}")]
    Retry(String),
    /// Give up: the command can never succeed (recorded as failed, with the reason).
    #[error("failed: {0}")]
    Fail(String),
}

/// Runs the scheduled commands of one kind.
#[async_trait::async_trait]
pub trait ScheduledHandler: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Runs the command; returns what to record as its outcome.
    async fn run(&self, command: &ScheduledCommand) -> Result<serde_json::Value, HandlerError>;
}

/// What one pass over the due commands did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    pub done: u32,
    pub retried: u32,
    pub failed: u32,
}

/// Stores and runs scheduled commands.
#[derive(Clone)]
pub struct Scheduler {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    handlers: HashMap<&'static str, Arc<dyn ScheduledHandler>>,
}

impl Scheduler {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        Self {
            pool,
            clock,
            handlers: HashMap::new(),
        }
    }

    pub fn with_handler(mut self, handler: Arc<dyn ScheduledHandler>) -> Self {
        self.handlers.insert(handler.kind(), handler);
        self
    }

    /// Schedules `kind` with `payload` at `due_at`. Scheduling the same `dedupe_key` twice is a
    /// no-op that returns the first id.
    pub async fn schedule<'e>(
        executor: impl PgExecutor<'e>,
        kind: &str,
        dedupe_key: &str,
        payload: &serde_json::Value,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        let row = sqlx::query(
            "WITH ins AS ( \
               INSERT INTO scheduled_commands (id, kind, dedupe_key, payload, due_at, created_at) \
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id) \
             SELECT id FROM ins UNION ALL SELECT id FROM scheduled_commands WHERE dedupe_key = $3 LIMIT 1",
        )
        .bind(id)
        .bind(kind)
        .bind(dedupe_key)
        .bind(payload)
        .bind(due_at)
        .bind(now)
        .fetch_one(executor)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Schedules through this scheduler's pool and clock.
    pub async fn add(
        &self,
        kind: &str,
        dedupe_key: &str,
        payload: &serde_json::Value,
        due_at: DateTime<Utc>,
    ) -> Result<Uuid, StoreError> {
        Self::schedule(
            &self.pool,
            kind,
            dedupe_key,
            payload,
            due_at,
            self.clock.now(),
        )
        .await
    }

    /// Runs every command due now (by the injected clock), one transaction each.
    pub async fn run_due(&self) -> Result<RunReport, StoreError> {
        let mut report = RunReport::default();
        loop {
            let now = self.clock.now();
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(
                "SELECT id, kind, dedupe_key, payload, due_at, attempts FROM scheduled_commands \
                 WHERE status = 'pending' AND due_at <= $1 \
                 ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Ok(report);
            };
            let command = ScheduledCommand {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                dedupe_key: row.try_get("dedupe_key")?,
                payload: row.try_get("payload")?,
                due_at: row.try_get("due_at")?,
                attempts: row.try_get("attempts")?,
            };
            let result = match self.handlers.get(command.kind.as_str()) {
                Some(handler) => handler.run(&command).await,
                None => Err(HandlerError::Fail(format!(
                    "no handler for kind '{}'",
                    command.kind
                ))),
            };
            let executed_at = self.clock.now();
            match result {
                Ok(outcome) => {
                    sqlx::query(
                        "UPDATE scheduled_commands SET status = 'done', attempts = attempts + 1, \
                         executed_at = $2, outcome = $3, last_error = NULL WHERE id = $1",
                    )
                    .bind(command.id)
                    .bind(executed_at)
                    .bind(outcome)
                    .execute(&mut *tx)
                    .await?;
                    report.done += 1;
                }
                Err(HandlerError::Retry(reason)) => {
                    let delay =
                        chrono::Duration::seconds(5 * i64::from(command.attempts.clamp(0, 60) + 1));
                    tracing::warn!(id = %command.id, kind = command.kind, reason, "scheduled command will be retried");
                    sqlx::query(
                        "UPDATE scheduled_commands SET attempts = attempts + 1, last_error = $2, \
                         due_at = $3 WHERE id = $1",
                    )
                    .bind(command.id)
                    .bind(&reason)
                    .bind(executed_at + delay)
                    .execute(&mut *tx)
                    .await?;
                    report.retried += 1;
                }
                Err(HandlerError::Fail(reason)) => {
                    tracing::error!(id = %command.id, kind = command.kind, reason, "scheduled command failed");
                    sqlx::query(
                        "UPDATE scheduled_commands SET status = 'failed', attempts = attempts + 1, \
                         last_error = $2, executed_at = $3 WHERE id = $1",
                    )
                    .bind(command.id)
                    .bind(&reason)
                    .bind(executed_at)
                    .execute(&mut *tx)
                    .await?;
                    report.failed += 1;
                }
            }
            tx.commit().await?;
        }
    }

    /// Runs due commands until `shutdown` resolves, checking every `interval`.
    pub async fn run(&self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.run_due().await {
                Ok(r) if r.done + r.failed + r.retried > 0 => {
                    tracing::info!(
                        done = r.done,
                        retried = r.retried,
                        failed = r.failed,
                        "scheduler pass"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler pass failed; will retry"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
