//! Why a command on a catalog is refused.

use crate::account::{MAX_NAME_CHARS, MAX_UNIT_CHARS};
use crate::ids::ProductId;
use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("this catalog does not exist")]
    NotCreated,
    #[error("this catalog already exists")]
    AlreadyCreated,
    #[error("only the producer and their collaborators manage their catalogs")]
    NotTheProducer,
    #[error("a name must have 1 to {max} characters", max = MAX_NAME_CHARS)]
    InvalidName,
    #[error("a unit must have 1 to {max} characters (e.g. kg, piece, bottle)", max = MAX_UNIT_CHARS)]
    InvalidUnit,
    #[error("a packaging multiple must be at least 2 (leave it empty for none), not {given}")]
    InvalidPackagingMultiple { given: u32 },
    #[error("a price must be above zero")]
    NonPositivePrice,
    #[error("a price must be at most 1,000,000,000.00 EUR")]
    PriceOutOfRange,
    #[error("this product is already offered in this catalog; change its price instead")]
    OfferExists { product: ProductId },
    #[error("this product is not offered in this catalog")]
    UnknownOffer { product: ProductId },
    #[error("the catalog has no offers to modulate")]
    NoOffers,
    #[error("a percentage must be above -100 and at most 1000")]
    InvalidPercent,
    #[error("this change would bring a price to {result} EUR; prices must stay above zero")]
    ModulatedPriceNotPositive { product: ProductId, result: Money },
    #[error(
        "a delivery fee is zero or more, and a minimum or a free-delivery amount more than zero"
    )]
    InvalidOrderTerms,
    #[error("only a professional customer gets a price list (setProfessionalProfile)")]
    CustomerNotProfessional,
    #[error("a price list names each product once")]
    DuplicatePrice { product: ProductId },
}

impl CatalogError {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            CatalogError::NotCreated => "CATALOG_NOT_CREATED",
            CatalogError::InvalidOrderTerms => "INVALID_ORDER_TERMS",
            CatalogError::CustomerNotProfessional => "CUSTOMER_NOT_PROFESSIONAL",
            CatalogError::DuplicatePrice { .. } => "DUPLICATE_PRICE",
            CatalogError::AlreadyCreated => "CATALOG_ALREADY_CREATED",
            CatalogError::NotTheProducer => "NOT_THE_PRODUCER",
            CatalogError::InvalidName => "INVALID_NAME",
            CatalogError::InvalidUnit => "INVALID_UNIT",
            CatalogError::InvalidPackagingMultiple { .. } => "INVALID_PACKAGING_MULTIPLE",
            CatalogError::NonPositivePrice => "NON_POSITIVE_PRICE",
            CatalogError::PriceOutOfRange => "PRICE_OUT_OF_RANGE",
            CatalogError::OfferExists { .. } => "OFFER_EXISTS",
            CatalogError::UnknownOffer { .. } => "UNKNOWN_OFFER",
            CatalogError::NoOffers => "NO_OFFERS",
            CatalogError::InvalidPercent => "INVALID_PERCENT",
            CatalogError::ModulatedPriceNotPositive { .. } => "MODULATED_PRICE_NOT_POSITIVE",
        }
    }
}
