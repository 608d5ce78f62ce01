//! Markets (R-SAL-1): a place, recurring slots, administrators, referents, a payment mode, a
//! visibility, an AMAP flag, the catalogs linked to it (R-CAT-4) and the numbering of its sales.

mod aggregate;
mod commands;
mod error;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Market, Recurring, SlotOccurrence};
pub use commands::{Location, MarketCommand, PaymentMode, Slot, Visibility};
pub use error::MarketError;
pub use events::MarketEvent;
