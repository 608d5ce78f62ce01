//! Failures of the store, typed by layer: a refused command is not a system failure.

/// A failure of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    /// The watermark did not pass the events a reader waited for (a long transaction).
    #[error("{0}")]
    Stalled(String),
}

impl StoreError {
    /// True when retrying later may succeed (database restarting, connection lost).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => crate::db::is_transient(e),
            StoreError::Corrupt(_) => false,
            StoreError::Stalled(_) => true,
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The outcome of a command that did not commit.
#[derive(Debug, thiserror::Error)]
pub enum BusError<E: std::error::Error> {
    /// The aggregate refused the command: nothing was written.
    #[error(transparent)]
    Rejected(E),
    /// Other commands kept winning the race on this aggregate; retrying is safe.
    #[error("the {aggregate} was changed concurrently {attempts} times; retry")]
    Conflict { aggregate: String, attempts: u32 },
    /// The idempotency key was already used for a different command.
    #[error("idempotency key '{key}' was already used for a different command")]
    IdempotencyKeyReused { key: String },
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E: std::error::Error> BusError<E> {
    /// True when the same command may succeed if sent again (conflict, database restarting).
    pub fn is_retryable(&self) -> bool {
        match self {
            BusError::Conflict { .. } => true,
            BusError::Store(s) => s.is_transient(),
            _ => false,
        }
    }

    /// The refusal, when the aggregate refused.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            BusError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: std::error::Error> From<sqlx::Error> for BusError<E> {
    fn from(e: sqlx::Error) -> Self {
        BusError::Store(StoreError::Database(e))
    }
}
