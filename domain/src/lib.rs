//! etal's domain: the business rules of direct-sale food markets, as cqrs-es aggregates.
//!
//! Pure: no database, no network, no runtime. Anything from outside (the current time, a price
//! table, another aggregate's answer) is looked up by the caller and put into the command.

pub mod actor;
pub mod calendar;
pub mod clock;
pub mod ids;
pub mod money;
pub mod vat;

pub use actor::{Actor, Role};
pub use clock::{Clock, FakeClock, SystemClock};
pub use money::{Money, MoneyError};
pub use vat::VatRate;

pub mod account;
pub mod annual;
pub mod catalog;
pub mod config;
pub mod fees;
pub mod invoice;
pub mod ledger;
pub mod market;
pub mod order;
pub mod payout;
pub mod proposal;
pub mod sale;
pub mod stock;
