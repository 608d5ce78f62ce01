//! A producer's sales of one calendar year, enforcing the Discovery cap (R-ACC-4) with optimistic
//! concurrency: the order flow reserves an amount here before confirming an order, so two orders
//! racing for the last euros of the cap conflict on this stream and one of them is refused.

mod aggregate;
mod commands;
mod error;
mod events;

#[cfg(test)]
mod tests;

pub use aggregate::{annual_sales_id, sales_year, AnnualSales, Reservation};
pub use commands::AnnualSalesCommand;
pub use error::AnnualSalesError;
pub use events::AnnualSalesEvent;
