//! Orders (R-ORD-1..6): one order per customer per sale, with lines from any number of producers
//! and catalogs, frozen terms and computed amounts, adjustments after the close, payments,
//! refunds and cancellation.
//!
//! Money invariant, at every point of an order's life:
//! `paid - refunded - total == refund_owed - balance_due`, with `refund_owed >= 0`,
//! `balance_due >= 0` and at most one of them non-zero (a cancelled order's total is zero).

mod aggregate;
mod commands;
mod error;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{AwaitedPayment, Line, Order, PaymentRecord};
pub use commands::{Canceller, Deliverer, Delivery, LineInput, OrderCommand, PaymentMethod};
pub use error::OrderError;
pub use events::OrderEvent;
