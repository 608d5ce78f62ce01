//! The event store of etal, over PostgreSQL.
//!
//! - [`log`]: the gap-free global order of events and a reader that follows it.
//! - [`bus`]: the command bus: loads an aggregate (snapshot + tail), runs a command, appends its
//!   events and the idempotency record in one transaction, retries conflicts, returns positions.
//! - [`scheduler`]: durable commands due at a time, executed exactly once.
//! - [`seal`]: the sealed history: leaves, the RFC 6962 tree, signed checkpoints.
//!
//! cqrs-es gives the `Aggregate` trait; this crate replaces its framework and postgres-es's stores,
//! which lack a global order, return nothing from `execute` and lose query updates (see
//! docs/architecture.md).

pub mod aggregates;
pub mod bus;
pub mod db;
pub mod error;
pub mod log;
pub mod scheduler;
pub mod seal;
pub mod unit;

pub use bus::{
    CommandBus, CommandContext, CommandOutcome, EsAggregate, Idempotency, Loaded, RecordedError,
    StreamRef, WrittenEvent,
};
pub use error::{BusError, StoreError};
pub use log::{EventLog, Position, StoredEvent};
pub use scheduler::{HandlerError, RunReport, ScheduledCommand, ScheduledHandler, Scheduler};
pub use unit::{Changes, CommitError, Committed, OutboxMessage, Recorded, Stream};

pub mod testkit;
