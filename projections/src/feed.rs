//! One read of the log for every projector of a process (docs/decisions/0019-one-log-read.md).
//!
//! Each live projector used to read the log on its own after each commit: eight readers asked
//! PostgreSQL for the same range, and each parsed the same payloads. A [`LogFeed`] reads the
//! range once (every column, every type) and keeps the latest events in memory; each projector
//! takes from it the events after its checkpoint, shaped as its own read would have returned
//! them (its aggregate types, and `null` for the payloads and metadata it does not read).
//!
//! What the feed holds is final: it is read up to the log's head (below the watermark), and no
//! event can appear later at or before the head. A projector whose checkpoint is before what the
//! feed holds (it starts far behind, or fell behind by more than [`HELD`] events) reads the log
//! itself, as before. A projector woken by a notification at time `t` is served only by a read
//! that started after `t`, so the commit notified is in it (or the watermark still hides it: then
//! the projector is told it is behind, as with its own read).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use etal_store::log::{EventLog, Position};
use etal_store::StoredEvent;
use sqlx::PgConnection;

use crate::{Projection, ProjectionError};

/// Events kept in memory (the newest): at a few hundred bytes parsed each, a few tens of MB.
pub const HELD: usize = 8192;

/// Events read per refresh at most (a backlog is read in several).
const READ: i64 = 4096;

/// The latest events of the log, shared by the projectors of one process.
pub struct LogFeed {
    state: std::sync::Mutex<State>,
    /// One refresh at a time: the others wait for it and use what it read.
    refreshing: tokio::sync::Mutex<()>,
    /// Reads of the log made, and batches served from memory (for tests and logs).
    reads: AtomicU64,
    served: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The events after `start` up to `end`, in log order.
    events: VecDeque<StoredEvent>,
    start: Position,
    end: Position,
    /// The newest event committed when the feed was last read (it may be above the head).
    last: Position,
    /// When the last read that reached the head began (None: never read).
    refreshed: Option<Instant>,
    /// Whether the last read reached the head (false: a backlog is left to read).
    complete: bool,
}

/// What the feed can tell a projector standing at a checkpoint.
pub enum View {
    /// Events (of any type) follow the checkpoint in the feed.
    Ahead,
    /// Nothing is readable after the checkpoint; `behind`: events committed after it are still
    /// hidden by the watermark.
    Nothing { behind: bool },
    /// The checkpoint is before what the feed holds: the projector reads the log itself.
    Outside,
}

/// A batch taken from the feed.
pub struct Taken {
    pub events: Vec<StoredEvent>,
    /// The checkpoint after them.
    pub to: Position,
    /// Events committed past `to` are still hidden by the watermark.
    pub behind: bool,
}

impl LogFeed {
    pub fn new() -> Self {
        Self {
            state: Default::default(),
            refreshing: Default::default(),
            reads: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    /// How many times the feed read the log.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// How many batches it gave projectors from memory.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `from` stands in the feed, reading the log first (on `conn`, the projector's own
    /// connection: a projector never waits for a second one) when the feed has nothing after
    /// `from` and was not read since `woke` (when the projector learnt of new commits).
    pub async fn view(
        &self,
        conn: &mut PgConnection,
        from: Position,
        woke: Instant,
    ) -> Result<View, ProjectionError> {
        loop {
            {
                let s = self.state();
                if let Some(view) = s.view(from, woke) {
                    return Ok(view);
                }
            }
            self.refresh(conn, from, woke).await?;
        }
    }

    /// Up to `batch` events after `from` (which [`LogFeed::view`] found [`View::Ahead`]), as
    /// `projection` reads them. None if the feed moved past `from` meanwhile.
    pub fn take(&self, projection: &dyn Projection, from: Position, batch: usize) -> Option<Taken> {
        let s = self.state();
        if from < s.start || from >= s.end {
            return None;
        }
        let first = s.events.partition_point(|e| e.position <= from);
        let types = projection.aggregate_types();
        let payload = projection.needs_payload();
        let some = projection.payloads_read();
        let metadata = projection.reads_metadata();
        let mut events = Vec::new();
        let mut to = s.end;
        for e in s.events.range(first..) {
            if types.is_some_and(|t| !t.contains(&e.aggregate_type.as_str())) {
                continue;
            }
            if events.len() == batch {
                to = events.last().map_or(to, |l: &StoredEvent| l.position);
                break;
            }
            let wanted = payload
                && some.iter().all(|(t, kinds)| {
                    *t != e.aggregate_type || kinds.contains(&e.event_type.as_str())
                });
            events.push(StoredEvent {
                position: e.position,
                aggregate_type: e.aggregate_type.clone(),
                aggregate_id: e.aggregate_id.clone(),
                sequence: e.sequence,
                event_type: e.event_type.clone(),
                event_version: e.event_version.clone(),
                payload: if wanted {
                    e.payload.clone()
                } else {
                    serde_json::Value::Null
                },
                metadata: if payload && metadata {
                    e.metadata.clone()
                } else {
                    serde_json::Value::Null
                },
                recorded_at: e.recorded_at,
            });
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(Taken {
            events,
            to,
            behind: s.last > to,
        })
    }

    /// Reads the log after what the feed holds, unless another refresh already served a
    /// projector at `from` woken at `woke`.
    async fn refresh(
        &self,
        conn: &mut PgConnection,
        from: Position,
        woke: Instant,
    ) -> Result<(), ProjectionError> {
        let _turn = self.refreshing.lock().await;
        let end = {
            let s = self.state();
            if s.view(from, woke).is_some() {
                return Ok(());
            }
            s.refreshed.map(|_| s.end)
        };
        let began = Instant::now();
        self.reads.fetch_add(1, Ordering::Relaxed);
        let (head, last) = EventLog::head_and_last(&mut *conn).await?;
        let Some(end) = end else {
            // The first read: the feed starts at the head; the projectors behind it read the
            // log themselves until they reach it.
            let mut s = self.state();
            *s = State {
                events: VecDeque::new(),
                start: head,
                end: head,
                last,
                refreshed: Some(began),
                complete: true,
            };
            return Ok(());
        };
        let read = if head > end {
            EventLog::read_filtered(&mut *conn, end, head, READ, None, true).await?
        } else {
            Vec::new()
        };
        let complete = (read.len() as i64) < READ;
        let mut s = self.state();
        s.end = if complete {
            head.max(s.end)
        } else {
            read.last().map_or(s.end, |e| e.position)
        };
        s.events.extend(read);
        while s.events.len() > HELD {
            if let Some(e) = s.events.pop_front() {
                s.start = e.position;
            }
        }
        s.last = s.last.max(last);
        s.complete = complete;
        if complete {
            s.refreshed = Some(began);
        }
        Ok(())
    }
}

impl Default for LogFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// What the feed says about `from` without reading (None: it must be read first).
    fn view(&self, from: Position, woke: Instant) -> Option<View> {
        let refreshed = self.refreshed?;
        if from < self.start {
            return Some(View::Outside);
        }
        if from < self.end {
            return Some(View::Ahead);
        }
        if self.complete && refreshed >= woke {
            return Some(View::Nothing {
                behind: self.last > from,
            });
        }
        None
    }
}
