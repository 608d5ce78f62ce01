//! How a flow runs: it decides once on every stream it touches and commits once
//! (docs/decisions/0008-one-flow-one-commit.md).
//!
//! [`App::run_flow`] runs the flow's `decide` step (loads, pure decisions, no writes), commits
//! the [`Changes`] with the request's idempotency record (scoped to the caller) in one
//! transaction, and on a conflict on any stream decides the whole flow again (bounded, jittered),
//! then answers `RETRYABLE`. A retried request is answered from its record, read only when its
//! decision is refused or its commit is not made: a copy that committed before cannot commit
//! again (its key's record, or the stream its derived id names, is taken). Inside one process,
//! flows on the same hot stream (a sale during a busy opening) take turns on a [`StreamLocks`] queue
//! instead of all deciding, conflicting and sleeping; across processes the streams' versions
//! still decide.
//!
//! The states flows decide on are kept in memory with their versions (bounded, oldest dropped
//! first): the next flow reads only the events written after the version it holds, in the
//! same single read as the streams it does not hold, and not at all when that version was
//! verified in the last [`FRESH`] (50 ms: a busy sale's queue decides with no read). A write of
//! this process outside the queues forgets what was kept of its streams; a writer in another
//! process is seen at most 50 ms later, and a commit on a stream it moved conflicts and decides
//! again on what is stored.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::any::Any;

use etal_store::{
    Changes, CommandContext, CommitError, EsAggregate, Loaded, OutboxMessage, RecordedError,
    Stream, StreamRef,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::{App, AppError, Ctx};
use etal_store::log::Position;

/// A stream's state at a version (as a commit left it, or as read), with when that version was
/// last known to be the stored one.
type Cached = (Arc<dyn Any + Send + Sync>, i64, Instant);

/// How many stream states a process keeps; past it, the quarter verified longest ago goes.
const KEPT_STATES: usize = 20_000;

/// A state verified this recently is decided on without reading the stream again: a busy
/// sale's queue of orders then decides one after the other with no read at all. A writer in
/// another process is seen at most this much later (its write makes a commit that also writes
/// the stream conflict and decide again on what is stored).
const FRESH: std::time::Duration = std::time::Duration::from_millis(50);

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
    /// The messages themselves when this call committed them (empty for a replay): the flow
    /// delivers them within their lease, without claiming them.
    pub owed: Vec<OutboxMessage>,
    /// True when this is the recorded outcome of an earlier copy of the request.
    pub replayed: bool,
}

/// Streams read by [`App::load_turned_many`]: what was read, and the kept states it was read
/// after.
pub struct TurnedLoad {
    loaded: Loaded,
    base: HashMap<String, (Arc<dyn Any + Send + Sync>, i64)>,
    /// States verified within [`FRESH`], not read.
    fresh: HashMap<String, (Arc<dyn Any + Send + Sync>, i64)>,
}

/// A queue per hot stream inside this process: flows that write the same stream take turns.
/// The states flows read and the states their commits left are kept with their versions, so
/// the next flow reads only what was written after (a writer elsewhere is caught up at each
/// read; the commit still checks every stream's version).
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

    /// The state kept for `key`, its version, and whether that version was verified within
    /// [`FRESH`].
    fn cached(&self, key: &str) -> Option<(Arc<dyn Any + Send + Sync>, i64, bool)> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (state, version, verified) = cache.get(key)?;
        Some((state.clone(), *version, verified.elapsed() < FRESH))
    }

    /// The kept version of `key` was just read again unchanged.
    fn verified(&self, key: &str, version: i64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, kept, at)) = cache.get_mut(key) {
            if *kept == version {
                *at = Instant::now();
            }
        }
    }

    /// Keeps the states a commit left for the queues the flow holds (nobody else of this
    /// process writes them meanwhile).
    fn keep(&self, held: &[String], entries: Vec<(String, Cached)>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in entries {
            if held.contains(&k) {
                cache.insert(k, v);
            }
        }
        Self::bound(&mut cache);
    }

    /// Keeps a state read at `version`, unless a later one is kept.
    fn keep_read(&self, key: String, state: Arc<dyn Any + Send + Sync>, version: i64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(&key) {
            Some((_, kept, _)) if *kept >= version => {}
            _ => {
                cache.insert(key, (state, version, Instant::now()));
                Self::bound(&mut cache);
            }
        }
    }

    fn bound(cache: &mut HashMap<String, Cached>) {
        if cache.len() <= KEPT_STATES {
            return;
        }
        let mut used: Vec<Instant> = cache.values().map(|(_, _, u)| *u).collect();
        used.sort_unstable();
        let cut = used[used.len() / 4];
        cache.retain(|_, (_, _, u)| *u > cut);
    }

    /// Forgets the states kept for these keys (a writer outside the queue changed them).
    pub fn forget(&self, keys: &[String]) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            cache.remove(k);
        }
    }

    /// Stream states kept (for tests).
    pub fn kept(&self) -> usize {
        self.cache.lock().map(|m| m.len()).unwrap_or(0)
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
            | AppError::MinimumNotReached { .. }
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
            // No read of the key's record first: a copy of a request that committed before
            // cannot commit again (its key's record, or the new stream its id names, is taken),
            // so the record is read only when the decision is refused or the commit is not
            // made, and its outcome is then the answer.
            let t0 = Instant::now();
            let held = if turns.is_empty() {
                None
            } else {
                Some(self.locks.turns(turns.clone()).await)
            };
            let t1 = Instant::now();
            let decided = decide().await;
            let t2 = Instant::now();
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
                    owed: Vec::new(),
                    replayed: false,
                });
            }
            if self.settings.deliver_inline {
                decided.changes.hold_outbox(super::outbox::LEASE);
            }
            let result = serde_json::to_value(&decided.value)
                .map_err(|e| AppError::Internal(format!("answer of a flow: {e}")))?;
            let committed = self.bus.commit(&decided.changes, cc, &result).await;
            tracing::trace!(
                turn_us = (t1 - t0).as_micros() as u64,
                decide_us = (t2 - t1).as_micros() as u64,
                commit_us = t2.elapsed().as_micros() as u64,
                committed = committed.is_ok(),
                "flow"
            );
            match &committed {
                Ok(_) => {
                    // Streams written without their state kept for the next turn: what this
                    // process kept of them is not trusted any more.
                    let remembered: Vec<&String> =
                        decided.remember.iter().map(|(k, _)| k).collect();
                    let stale: Vec<String> = decided
                        .changes
                        .streams()
                        .map(|(t, i)| format!("{t}:{i}"))
                        .filter(|k| !remembered.contains(&k) || !turns.contains(k))
                        .collect();
                    self.locks.forget(&stale);
                    self.locks
                        .keep(&turns, std::mem::take(&mut decided.remember));
                }
                Err(_) => self.locks.forget(&turns),
            }
            drop(held);
            match committed {
                Ok(c) => {
                    return Ok(Flowed {
                        value: decided.value,
                        position: c.last_position(),
                        outbox: c.outbox,
                        owed: decided.changes.messages().to_vec(),
                        replayed: false,
                    })
                }
                Err(CommitError::KeyTaken | CommitError::Conflict) if attempt < max => {
                    if let Some(recorded) = self.replay::<T>(cc).await? {
                        return Ok(recorded);
                    }
                    etal_store::bus::backoff(attempt).await;
                }
                Err(CommitError::KeyTaken | CommitError::Conflict) => {
                    if let Some(recorded) = self.replay::<T>(cc).await? {
                        return Ok(recorded);
                    }
                    tracing::warn!(attempts = attempt, "flow conflict retries exhausted");
                    return Err(AppError::Retryable(format!(
                        "the flow lost {attempt} races on its streams"
                    )));
                }
                Err(CommitError::Store(e)) => return Err(e.into()),
            }
        }
    }

    /// A stream a flow decides on while it holds its turn (`turn_key::<A>(id)`): the state kept
    /// with the events written since, else the stored one.
    pub async fn load_turned<A>(&self, id: &str) -> Result<Stream<A>, AppError>
    where
        A: EsAggregate + Clone + Send + Sync + 'static,
    {
        let mut loaded = self.load_turned_many(vec![StreamRef::of::<A>(id)]).await?;
        self.take_turned::<A>(&mut loaded, id).await
    }

    /// Reads `refs` in one round trip: a stream whose state is kept from after its version,
    /// the others from their snapshot; a state verified within [`FRESH`] is not read at all.
    /// Take each with [`App::take_turned`].
    pub async fn load_turned_many(&self, refs: Vec<StreamRef>) -> Result<TurnedLoad, AppError> {
        let mut base = HashMap::new();
        let mut fresh = HashMap::new();
        let refs: Vec<StreamRef> = refs
            .into_iter()
            .filter_map(|r| {
                let key = format!("{}:{}", r.aggregate_type, r.id);
                match self.locks.cached(&key) {
                    Some((state, version, true)) => {
                        fresh.insert(key, (state, version));
                        None
                    }
                    Some((state, version, false)) => {
                        base.insert(key, (state, version));
                        Some(r.after(version))
                    }
                    None => Some(r),
                }
            })
            .collect();
        Ok(TurnedLoad {
            loaded: self.bus.load_many(&refs).await?,
            base,
            fresh,
        })
    }

    /// A stream of [`App::load_turned_many`], current as of that read; its state is kept.
    pub async fn take_turned<A>(
        &self,
        load: &mut TurnedLoad,
        id: &str,
    ) -> Result<Stream<A>, AppError>
    where
        A: EsAggregate + Clone + Send + Sync + 'static,
    {
        let key = turn_key::<A>(id);
        let fresh = load
            .fresh
            .remove(&key)
            .and_then(|(state, version)| state.downcast_ref::<A>().map(|a| (a.clone(), version)));
        if let Some((state, version)) = fresh {
            return Ok(Stream::new(id, state, version));
        }
        if !load.loaded.has::<A>(id) {
            // Not asked of the read: read it alone.
            let stream = self.bus.load_stream::<A>(id).await?;
            self.locks
                .keep_read(key, Arc::new(stream.state.clone()), stream.version);
            return Ok(stream);
        }
        let base = load
            .base
            .remove(&key)
            .and_then(|(state, version)| state.downcast_ref::<A>().map(|a| (a.clone(), version)));
        let stream = match base {
            Some((state, version)) => {
                let stream = load.loaded.take_onto::<A>(id, state, version).await?;
                if stream.version == version {
                    self.locks.verified(&key, version);
                    return Ok(stream);
                }
                stream
            }
            None => load.loaded.take::<A>(id).await?,
        };
        self.locks
            .keep_read(key, Arc::new(stream.state.clone()), stream.version);
        Ok(stream)
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
                    owed: Vec::new(),
                    replayed: true,
                }))
            }
            Err(RecordedError::Reused) => Err(AppError::IdempotencyKeyReused(idem.key.clone())),
            Err(RecordedError::Store(e)) => Err(e.into()),
        }
    }
}
