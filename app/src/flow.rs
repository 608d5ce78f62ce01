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
use std::time::Instant;

use std::any::Any;

use etal_store::{
    Changes, CommandContext, CommitError, EsAggregate, Loaded, RecordedError, Stream, StreamRef,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::{App, AppError, Ctx};
use etal_store::log::Position;

/// A stream's state as a commit left it, kept for the next flow in the queue, with when its
/// version was last known to be the stored one.
type Cached = (Arc<dyn Any + Send + Sync>, i64, Instant);

/// How long a kept state's version counts as checked: a refusal decided on it within this time
/// is not checked again (a writer in another process may be seen this much later).
const CHECKED_FOR: std::time::Duration = std::time::Duration::from_millis(50);

/// What a flow decided: the changes to commit and the answer to give.
pub struct Decided<T> {
    pub changes: Changes,
    pub value: T,
    /// States of hot streams to keep for the next turn once the commit succeeds.
    remember: Vec<(String, Cached)>,
}

impl<T> Decided<T> {
    pub fn new(changes: Changes, value: T) -> Self {
        Self {
            changes,
            value,
            remember: Vec::new(),
        }
    }

    /// Keeps `stream`'s state after this decision for the next flow that takes the turn `key`
    /// (the stream must be added to the changes; its version moves past its pending events).
    /// Only streams whose turn the flow holds are kept.
    pub fn remember<A>(&mut self, stream: &Stream<A>)
    where
        A: EsAggregate + Clone + Send + Sync + 'static,
    {
        let version = stream.version + stream.pending().len() as i64;
        self.remember.push((
            turn_key::<A>(&stream.id),
            (Arc::new(stream.state.clone()), version, Instant::now()),
        ));
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
/// While a queue exists, the state the last commit left is kept, so the next flow in the queue
/// decides without reading the stream again; the commit still checks the stream's version (a
/// writer elsewhere makes it conflict, which forgets the kept state).
#[derive(Default)]
pub struct StreamLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    cache: Mutex<HashMap<String, Cached>>,
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
        let mut cache = self.locks.cache.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.keys {
            if map.get(k).is_some_and(|m| Arc::strong_count(m) == 1) {
                map.remove(k);
                cache.remove(k);
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

    fn cached<A: Clone + 'static>(&self, key: &str) -> Option<(A, i64)> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (state, version, _) = cache.get(key)?;
        state.downcast_ref::<A>().map(|a| (a.clone(), *version))
    }

    fn keep(&self, held: &[String], entries: Vec<(String, Cached)>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in entries {
            // Only for a queue this flow holds: nobody else of this process writes it meanwhile.
            if held.contains(&k) {
                cache.insert(k, v);
            }
        }
    }

    /// Forgets the states kept for these keys (a writer outside the queue changed them).
    pub fn forget(&self, keys: &[String]) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            cache.remove(k);
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

/// The turn (and kept-state) key of a stream: `<aggregate type>:<id>`.
pub fn turn_key<A: EsAggregate>(id: &str) -> String {
    format!("{}:{id}", A::TYPE)
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
            let mut decided = decide().await;
            if decided.as_ref().is_err_and(is_refusal) && !self.kept_states_current(&turns).await? {
                // A refusal decided on kept states that a writer outside the queue changed (the
                // producer's new stock) is decided again on what is stored.
                self.locks.forget(&turns);
                decided = decide().await;
            }
            let mut decided = match decided {
                Ok(d) => d,
                Err(e) if is_refusal(&e) => {
                    drop(held);
                    // A concurrent copy of this request may have won: its outcome is the answer.
                    if let Some(recorded) = self.replay::<T>(cc).await? {
                        return Ok(recorded);
                    }
                    return Err(e);
                }
                Err(e) => {
                    self.locks.forget(&turns);
                    return Err(e);
                }
            };
            if decided.changes.is_empty() && cc.idempotency.is_none() {
                // Nothing to write, nothing to record.
                return Ok(Flowed {
                    value: decided.value,
                    position: None,
                    outbox: Vec::new(),
                    replayed: false,
                });
            }
            if self.settings.deliver_inline {
                decided.changes.hold_outbox(super::outbox::LEASE);
            }
            let result = serde_json::to_value(&decided.value)
                .map_err(|e| AppError::Internal(format!("answer of a flow: {e}")))?;
            let committed = self.bus.commit(&decided.changes, cc, &result).await;
            match &committed {
                Ok(_) => self
                    .locks
                    .keep(&turns, std::mem::take(&mut decided.remember)),
                Err(_) => self.locks.forget(&turns),
            }
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

    /// A stream a flow decides on while it holds its turn (`turn_key::<A>(id)`): the state the
    /// queue kept, else the stored one.
    pub async fn load_turned<A>(&self, id: &str) -> Result<Stream<A>, AppError>
    where
        A: EsAggregate + Clone + Send + Sync + 'static,
    {
        if let Some((state, version)) = self.locks.cached::<A>(&turn_key::<A>(id)) {
            return Ok(Stream::new(id, state, version));
        }
        Ok(self.bus.load_stream::<A>(id).await?)
    }

    /// The streams of `refs` whose turn keeps no state, read in one round trip; take each with
    /// [`App::take_turned`].
    pub async fn load_turned_many(&self, refs: Vec<StreamRef>) -> Result<Loaded, AppError> {
        let missing: Vec<StreamRef> = {
            let cache = self.locks.cache.lock().unwrap_or_else(|p| p.into_inner());
            refs.into_iter()
                .filter(|r| !cache.contains_key(&format!("{}:{}", r.aggregate_type, r.id)))
                .collect()
        };
        Ok(self.bus.load_many(&missing).await?)
    }

    /// A stream of [`App::load_turned_many`]: the state its queue kept, else the one read.
    pub async fn take_turned<A>(&self, loaded: &mut Loaded, id: &str) -> Result<Stream<A>, AppError>
    where
        A: EsAggregate + Clone + Send + Sync + 'static,
    {
        if let Some((state, version)) = self.locks.cached::<A>(&turn_key::<A>(id)) {
            return Ok(Stream::new(id, state, version));
        }
        if loaded.has::<A>(id) {
            return Ok(loaded.take::<A>(id).await?);
        }
        Ok(self.bus.load_stream::<A>(id).await?)
    }

    /// True when every state kept for these turns is still the stored version (one query).
    async fn kept_states_current(&self, turns: &[String]) -> Result<bool, AppError> {
        let kept: Vec<(String, String, i64)> = {
            let cache = self.locks.cache.lock().unwrap_or_else(|p| p.into_inner());
            let kept: Vec<_> = turns.iter().filter_map(|k| cache.get(k)).collect();
            if kept
                .iter()
                .all(|(_, _, checked)| checked.elapsed() < CHECKED_FOR)
            {
                return Ok(true);
            }
            turns
                .iter()
                .filter_map(|k| {
                    let (_, version, _) = cache.get(k)?;
                    let (t, id) = k.split_once(':')?;
                    Some((t.to_string(), id.to_string(), *version))
                })
                .collect()
        };
        let types: Vec<&str> = kept.iter().map(|k| k.0.as_str()).collect();
        let ids: Vec<&str> = kept.iter().map(|k| k.1.as_str()).collect();
        let versions: Vec<i64> = kept.iter().map(|k| k.2).collect();
        let stale: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS k(t, i, v) \
             WHERE EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = k.t \
                           AND e.aggregate_id = k.i AND e.sequence > k.v)",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&versions)
        .fetch_one(&self.pool)
        .await?;
        if stale == 0 {
            let now = Instant::now();
            let mut cache = self.locks.cache.lock().unwrap_or_else(|p| p.into_inner());
            for k in turns {
                if let Some(entry) = cache.get_mut(k) {
                    entry.2 = now;
                }
            }
        }
        Ok(stale == 0)
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
            Ok(Some(r)) => {
                // The first answer's position included the deliveries made right after it.
                let delivered: Option<serde_json::Value> = if r.outbox.is_empty() {
                    None
                } else {
                    sqlx::query_scalar(
                        "SELECT result->'position' FROM outbox \
                         WHERE id = ANY($1) AND status <> 'pending' \
                           AND jsonb_typeof(result->'position') = 'object' \
                         ORDER BY (result->'position'->>'txid')::bigint DESC, \
                                  (result->'position'->>'position')::bigint DESC LIMIT 1",
                    )
                    .bind(&r.outbox)
                    .fetch_optional(&self.pool)
                    .await?
                };
                let delivered: Option<Position> = delivered
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| AppError::Internal(format!("recorded position: {e}")))?;
                Ok(Some(Flowed {
                    value: serde_json::from_value(r.result)
                        .map_err(|e| AppError::Internal(format!("recorded answer: {e}")))?,
                    position: r.position.max(delivered),
                    outbox: r.outbox,
                    replayed: true,
                }))
            }
            Err(RecordedError::Reused) => Err(AppError::IdempotencyKeyReused(idem.key.clone())),
            Err(RecordedError::Store(e)) => Err(e.into()),
        }
    }
}
