//! Errors of the application layer, typed by what the caller can do about them.

use etal_store::{BusError, StoreError};

/// One refused line of an order, with why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LineRefusal {
    /// Index of the line in the request.
    pub line: u32,
    pub product: String,
    pub code: &'static str,
    /// e.g. "Miel 500 g: 2 left".
    pub message: String,
}

/// Why an application command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The domain refused the command; nothing was written.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
    /// Some lines of an order were refused; nothing was kept.
    #[error("order refused: {}", .lines.iter().map(|l| l.message.clone()).collect::<Vec<_>>().join("; "))]
    OrderRefused { lines: Vec<LineRefusal> },
    /// Input that can never be valid (field and reason).
    #[error("{field}: {reason}")]
    BadInput { field: String, reason: String },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Lost a race too many times or the database is restarting: retry.
    #[error("{0}; retry")]
    Retryable(String),
    #[error("idempotency key '{0}' was already used for a different request")]
    IdempotencyKeyReused(String),
    #[error("payment failed: {0}")]
    PaymentFailed(String),
    /// R-ORD-7: an order below a minimum (what the minimum is and what is missing).
    #[error("{message}")]
    MinimumNotReached {
        message: String,
        minimum: etal_domain::Money,
        missing: etal_domain::Money,
    },
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Rejected { code, .. } => code,
            AppError::OrderRefused { .. } => "ORDER_REFUSED",
            AppError::BadInput { .. } => "BAD_USER_INPUT",
            AppError::NotFound { .. } => "NOT_FOUND",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::Retryable(_) => "RETRYABLE",
            AppError::IdempotencyKeyReused(_) => "IDEMPOTENCY_KEY_REUSED",
            AppError::PaymentFailed(_) => "PAYMENT_FAILED",
            AppError::MinimumNotReached { .. } => "MINIMUM_ORDER_NOT_REACHED",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    pub fn bad_input(field: &str, reason: impl Into<String>) -> AppError {
        AppError::BadInput {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> AppError {
        AppError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

/// A domain error's stable code.
pub trait Coded: std::error::Error {
    fn error_code(&self) -> &'static str;
}

macro_rules! coded {
    ($($t:ty),*) => {
        $(impl Coded for $t {
            fn error_code(&self) -> &'static str {
                self.code()
            }
        })*
    };
}

coded!(
    etal_domain::account::AccountError,
    etal_domain::catalog::CatalogError,
    etal_domain::market::MarketError,
    etal_domain::sale::SaleError,
    etal_domain::stock::StockError,
    etal_domain::order::OrderError,
    etal_domain::annual::AnnualSalesError,
    etal_domain::payout::ProducerBalanceError,
    etal_domain::proposal::ProposalError,
    etal_domain::invoice::InvoiceError
);

impl<E: Coded> From<BusError<E>> for AppError {
    fn from(e: BusError<E>) -> Self {
        match e {
            BusError::Rejected(e) => AppError::Rejected {
                code: e.error_code(),
                message: e.to_string(),
            },
            BusError::Conflict { .. } => AppError::Retryable(e.to_string()),
            BusError::IdempotencyKeyReused { key } => AppError::IdempotencyKeyReused(key),
            BusError::Store(s) => s.into(),
        }
    }
}

impl From<etal_domain::fees::FeeError> for AppError {
    /// A fee schedule that cannot price a payment (no rule in force, a bad configuration).
    fn from(e: etal_domain::fees::FeeError) -> Self {
        AppError::Rejected {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            AppError::Retryable("the database is unavailable".into())
        } else {
            tracing::error!(error = %e, "store failure");
            AppError::Internal(e.to_string())
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl Coded for std::convert::Infallible {
    fn error_code(&self) -> &'static str {
        match *self {}
    }
}
