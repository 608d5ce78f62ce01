//! Stock of one product, shared by every catalog and market that sells it (R-STK-1..5).
//!
//! The order flow reserves units here before an order is confirmed; this aggregate alone decides
//! whether the last unit is still free, and optimistic concurrency on its stream makes sure two
//! concurrent reservations cannot both take it (R-STK-3).

mod aggregate;
mod commands;
mod error;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Reservation, Stock};
pub use commands::StockCommand;
pub use error::StockError;
pub use events::StockEvent;
