//! How a flow runs: it decides once on every stream it touches and commits once
//! (docs/decisions/0008-one-flow-one-commit.md).
//!
//! [`App::run_flow`] answers a retried request from its idempotency record (scoped to the caller),
//! else runs the flow's `decide` step (loads, pure decisions, no writes), commits the
//! [`Changes`] with the record in one transaction, and on a conflict on any stream decides the
//! whole flow again (bounded, jittered), then answers `RETRYABLE`. Inside one process, flows on
//! the same hot stream (a sale during a busy opening) take turns on a [`StreamLocks`] queue
//! instead of all deciding, conflicting and sleeping; across processes the streams' versions
//! still decide.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use etal_store::{Changes, CommandContext, CommitError, Idempotency, RecordedError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::{App, AppError, Ctx};
use etal_store::log::Position;

/// What a flow decided: the changes to commit and the answer to give.
pub struct Decided<T> {
    pub changes: Changes,
    pub value: T,
}

impl<T> Decided<T> {
    pub fn new(changes: Changes, value: T) -> Self {
        Self { changes, value }
    }
}

/// What a committed (or replayed) flow gives back.
#[derive(Debug, Clone)]
pub struct Flowed<T> {
    pub value: T,
    pub position: Option<Position>,
    /// Outbox messages the commit owes (delivered right after, and by the outbox worker).
    pub outbox: Vec<Uuid>,
    /// True when this is the recorded outcome of an earlier copy of the request.
    pub replayed: bool,
}

/// A queue per hot stream inside this process: flows that write the same stream take turns.
#[derive(Default)]
pub struct StreamLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The turns a flow holds; released when dropped.
pub struct Turns {
    _guards: Vec<OwnedMutexGuard<()>>,
    keys: Vec<String>,
    locks: Arc<StreamLocks>,
}

impl Drop for Turns {
    fn drop(&mut self) {
        // Drop the guards first, then forget the queues nobody waits on.
        self._guards.clear();
        let mut map = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.keys {
            if map.get(k).is_some_and(|m| Arc::strong_count(m) == 1) {
                map.remove(k);
            }
        }
    }
}

impl StreamLocks {
    /// Waits for the turn on every key (taken in sorted order, so two flows never wait on
    /// each other).
    pub async fn turns(self: &Arc<Self>, mut keys: Vec<String>) -> Turns {
        keys.sort();
        keys.dedup();
        let mutexes: Vec<_> = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter()
                .map(|k| map.entry(k.clone()).or_default().clone())
                .collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for m in mutexes {
            guards.push(m.lock_owned().await);
        }
        Turns {
            _guards: guards,
            keys,
            locks: self.clone(),
        }
    }

    /// Queues currently known (for tests).
    pub fn len(&self) -> usize {
        self.locks.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// True for answers that mean "the request was refused", as opposed to a system failure.
fn is_refusal(e: &AppError) -> bool {
    matches!(
        e,
        AppError::Rejected { .. }
            | AppError::OrderRefused { .. }
            | AppError::NotFound { .. }
            | AppError::Forbidden(_)
            | AppError::BadInput { .. }
    )
}

impl Ctx {
    /// The command context of a whole flow: the request's key, scoped to the caller by the
    /// store, with a fingerprint of the operation and its arguments.
    pub fn flow(&self, operation: &str, fingerprint: &str) -> CommandContext {
        let cc = self.plain();
        match &self.key {
            Some(k) => cc.with_idempotency(k.clone(), format!("{operation}:{fingerprint}")),
            None => cc,
        }
    }
}

impl App {
    /// Runs a flow (see the module's documentation). `turns` names the hot streams whose queue
    /// the flow waits on before each decision.
    pub async fn run_flow<T, F, Fut>(
        &self,
        cc: &CommandContext,
        turns: Vec<String>,
        mut decide: F,
    ) -> Result<Flowed<T>, AppError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Decided<T>, AppError>>,
    {
        let max = self.bus.max_attempts();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(recorded) = self.replay::<T>(cc).await? {
                return Ok(recorded);
            }
            let held = if turns.is_empty() {
                None
            } else {
                Some(self.locks.turns(turns.clone()).await)
            };
            let decided = match decide().await {
                Ok(d) => d,
                Err(e) if is_refusal(&e) => {
                    drop(held);
                    // A concurrent copy of this request may have won: its outcome is the answer.
                    if let Some(recorded) = self.replay::<T>(cc).await? {
                        return Ok(recorded);
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let result = serde_json::to_value(&decided.value)
                .map_err(|e| AppError::Internal(format!("answer of a flow: {e}")))?;
            let committed = self.bus.commit(&decided.changes, cc, &result).await;
            drop(held);
            match committed {
                Ok(c) => {
                    return Ok(Flowed {
                        value: decided.value,
                        position: c.last_position(),
                        outbox: c.outbox,
                        replayed: false,
                    })
                }
                Err(CommitError::KeyTaken) => continue,
                Err(CommitError::Conflict) if attempt < max => {
                    etal_store::bus::backoff(attempt).await;
                }
                Err(CommitError::Conflict) => {
                    tracing::warn!(attempts = attempt, "flow conflict retries exhausted");
                    return Err(AppError::Retryable(format!(
                        "the flow lost {attempt} races on its streams"
                    )));
                }
                Err(CommitError::Store(e)) => return Err(e.into()),
            }
        }
    }

    /// The recorded outcome of the request, if it was committed before.
    async fn replay<T: DeserializeOwned>(
        &self,
        cc: &CommandContext,
    ) -> Result<Option<Flowed<T>>, AppError> {
        let Some(idem) = &cc.idempotency else {
            return Ok(None);
        };
        match self.bus.recorded(&cc.actor, idem).await {
            Ok(None) => Ok(None),
            Ok(Some(r)) => Ok(Some(Flowed {
                value: serde_json::from_value(r.result)
                    .map_err(|e| AppError::Internal(format!("recorded answer: {e}")))?,
                position: r.position,
                outbox: r.outbox,
                replayed: true,
            })),
            Err(RecordedError::Reused) => Err(AppError::IdempotencyKeyReused(idem.key.clone())),
            Err(RecordedError::Store(e)) => Err(e.into()),
        }
    }
}

/// An idempotency record's key and fingerprint, for flows that check it themselves.
pub fn idempotency(key: &str, operation: &str, fingerprint: &str) -> Idempotency {
    Idempotency {
        key: key.to_string(),
        fingerprint: format!("{operation}:{fingerprint}"),
    }
}
