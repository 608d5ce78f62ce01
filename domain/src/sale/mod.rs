//! Sales (R-SAL-2..6): one dated pick-up of a market, the producers' participations with their
//! order periods, the orders attached to it and their numbers (R-ORD-2), distribution and
//! validation.

mod aggregate;
mod commands;
mod error;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{AttachedOrder, Participation, PeriodState, Sale, SaleStatus};
pub use commands::SaleCommand;
pub use error::SaleError;
pub use events::SaleEvent;
