//! Producer payouts (R-PAY-1, R-PAY-2): when a producer's money becomes available and is paid,
//! and the `ProducerBalance` aggregate (one stream per producer) that credits validated sales,
//! pays them out with a statement and follows each bank transfer until it succeeds or the money
//! goes back to the balance.
//!
//! Money flow of one credit: held (credited, not in a payout) -> in flight (in a payout whose
//! transfer is pending or failed) -> paid (transfer succeeded), or back to held when a failed
//! transfer is returned to the balance. At every point
//! `credited = paid + held + in flight`, and a credit belongs to at most one open payout, so it
//! is never paid twice.

mod aggregate;
mod commands;
mod dates;
mod error;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Credit, Debit, PayoutRecord, PayoutStatus, ProducerBalance};
pub use commands::ProducerBalanceCommand;
pub use dates::{available_on, payout_on, AVAILABILITY_DELAY_DAYS};
pub use error::ProducerBalanceError;
pub use events::{
    DebitKind, Deduction, PayoutId, PayoutStatement, ProducerBalanceEvent, StatementLine,
};
