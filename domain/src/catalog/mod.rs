//! Catalogs (R-CAT-1..3): a producer's selections of offers (a product at a price), with price
//! modulation, fee options, and prices frozen per sale.
//!
//! Linking a catalog to a market (R-CAT-4) lives in the market aggregate.

mod aggregate;
mod commands;
mod error;
mod events;

#[cfg(test)]
mod tests;

pub use aggregate::{Catalog, Offer};
pub use commands::{CatalogCommand, Modulation};
pub use error::CatalogError;
pub use events::{
    CatalogEvent, DeliveryOffer, FeeOptions, FrozenOffer, OfferPrice, OfferProduct, OfferTerms,
    OrderTerms,
};
