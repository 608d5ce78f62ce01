//! Why a market command was refused.

use chrono::NaiveDate;

use crate::ids::{CatalogId, UserId};

use super::commands::Slot;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MarketError {
    #[error("this market already exists")]
    AlreadyCreated,
    #[error("{user} is already a member of this market")]
    AlreadyMember { user: UserId },
    #[error("{user} has asked already; an administrator answers")]
    AlreadyRequested { user: UserId },
    #[error("{user} has no pending request")]
    NoRequest { user: UserId },
    #[error("{user} is not a member of this market")]
    NotAMember { user: UserId },
    #[error("only customers ask to join a market")]
    CustomersOnly,
    #[error("catalog {catalog} does not take part in this market's recurring sales")]
    NotRecurring { catalog: CatalogId },
    #[error("catalog {catalog} is not the caller's")]
    NotYourCatalog { catalog: CatalogId },
    #[error("an order period opens before it closes, at most a year before the sale")]
    InvalidRecurringPeriod,
    #[error("this market does not exist yet")]
    NotCreated,
    #[error("the market needs a name")]
    NameMissing,
    #[error("the market needs a place (at most 200 characters)")]
    InvalidPlace,
    #[error("the market needs at least one time slot")]
    NoSlot,
    #[error("invalid slot: {reason}")]
    InvalidSlot { reason: &'static str },
    #[error("this slot already exists")]
    DuplicateSlot,
    #[error("no such slot: {slot:?}")]
    UnknownSlot { slot: Slot },
    #[error("the last slot cannot be removed: add another first")]
    LastSlot,
    #[error("the market needs at least one administrator")]
    NoAdministrator,
    #[error("only an administrator of this market can do this")]
    NotAnAdministrator,
    #[error("the last administrator cannot be removed: add another first")]
    LastAdministrator,
    #[error("{user} is not an administrator of this market")]
    UnknownAdministrator { user: UserId },
    #[error("{user} is not a referent of this market")]
    UnknownReferent { user: UserId },
    #[error("this access was issued for another market")]
    WrongMarket,
    #[error("catalog {catalog} is already linked to this market")]
    AlreadyLinked { catalog: CatalogId },
    #[error("catalog {catalog} is not linked to this market")]
    NotLinked { catalog: CatalogId },
    #[error("only a platform administrator chooses a market's fee schedule")]
    NotPlatformAdministrator,
    #[error("a fee schedule applies from today or later, not from {from}")]
    FeeScheduleDatePast { from: NaiveDate },
    #[error("a fee schedule name is 1 to 64 letters, digits, '_' or '-'")]
    InvalidFeeSchedule,
    #[error("a location is a latitude in [-90, 90], a longitude in [-180, 180] and a commune of 1 to 100 characters")]
    InvalidLocation,
    #[error("a minimum order is more than zero")]
    InvalidMinimumOrder,
    #[error(
        "a delivery fee is zero or more; a free-delivery amount and a minimum, more than zero"
    )]
    InvalidDeliveryOffer,
}

impl MarketError {
    pub fn code(&self) -> &'static str {
        match self {
            MarketError::AlreadyCreated => "MARKET_ALREADY_CREATED",
            MarketError::NotRecurring { .. } => "NOT_RECURRING",
            MarketError::AlreadyMember { .. } => "ALREADY_MEMBER",
            MarketError::AlreadyRequested { .. } => "MEMBERSHIP_ALREADY_REQUESTED",
            MarketError::NoRequest { .. } => "NO_MEMBERSHIP_REQUEST",
            MarketError::NotAMember { .. } => "NOT_A_MEMBER",
            MarketError::CustomersOnly => "FORBIDDEN",
            MarketError::NotYourCatalog { .. } => "FORBIDDEN",
            MarketError::InvalidRecurringPeriod => "INVALID_ORDER_PERIOD",
            MarketError::NotCreated => "MARKET_NOT_FOUND",
            MarketError::NameMissing => "MARKET_NAME_MISSING",
            MarketError::InvalidPlace => "MARKET_INVALID_PLACE",
            MarketError::NoSlot => "MARKET_NO_SLOT",
            MarketError::InvalidSlot { .. } => "MARKET_INVALID_SLOT",
            MarketError::DuplicateSlot => "MARKET_DUPLICATE_SLOT",
            MarketError::UnknownSlot { .. } => "MARKET_UNKNOWN_SLOT",
            MarketError::LastSlot => "MARKET_LAST_SLOT",
            MarketError::NoAdministrator => "MARKET_NO_ADMINISTRATOR",
            MarketError::NotAnAdministrator => "NOT_A_MARKET_ADMINISTRATOR",
            MarketError::LastAdministrator => "MARKET_LAST_ADMINISTRATOR",
            MarketError::UnknownAdministrator { .. } => "MARKET_UNKNOWN_ADMINISTRATOR",
            MarketError::UnknownReferent { .. } => "MARKET_UNKNOWN_REFERENT",
            MarketError::WrongMarket => "MARKET_WRONG_MARKET",
            MarketError::AlreadyLinked { .. } => "CATALOG_ALREADY_LINKED",
            MarketError::NotLinked { .. } => "CATALOG_NOT_LINKED",
            MarketError::NotPlatformAdministrator => "FORBIDDEN",
            MarketError::FeeScheduleDatePast { .. } => "FEE_SCHEDULE_DATE_PAST",
            MarketError::InvalidFeeSchedule => "FEE_SCHEDULE_INVALID",
            MarketError::InvalidLocation => "MARKET_INVALID_LOCATION",
            MarketError::InvalidMinimumOrder => "INVALID_ORDER_TERMS",
            MarketError::InvalidDeliveryOffer => "INVALID_ORDER_TERMS",
        }
    }
}
