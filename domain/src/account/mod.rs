//! The producer account (R-ACC-1..6): owner, collaborators, plan, training, products, closing.
//!
//! Personal data (names, emails, phones, addresses) never enters this aggregate: it holds ids
//! only, so that closing an account and erasing the person outside the event store leaves the
//! history whole (R-ACC-6).

mod aggregate;
mod commands;
mod error;
mod events;
mod product;

#[cfg(test)]
mod tests;

pub use aggregate::{
    BankDetailsSummary, BillingSummary, CharterAcceptance, ProducerAccount, Product,
    BANK_DETAILS_HOLD,
};
pub use commands::AccountCommand;
pub use error::AccountError;
pub use events::{AccountEvent, PlanChangeReason};
pub use product::{ProductDetails, MAX_NAME_CHARS, MAX_UNIT_CHARS};

pub(crate) use product::{check_name, check_packaging_multiple, check_unit};
