//! Why a sale command was refused.

use chrono::{DateTime, Utc};

use crate::ids::{CatalogId, OrderId, ProducerId};

use super::aggregate::SaleStatus;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SaleError {
    #[error("this sale is already planned")]
    AlreadyPlanned,
    #[error("this sale is not planned yet")]
    NotPlanned,
    #[error("a sale must end after it starts")]
    InvalidTimes,
    #[error("the sale number must be at least 1")]
    InvalidNumber,
    #[error("catalog {catalog} is not linked to this sale's market: ask the market's administrator to link it")]
    CatalogNotLinked { catalog: CatalogId },
    #[error("catalog {catalog} already takes part in this sale")]
    AlreadyParticipating { catalog: CatalogId },
    #[error("catalog {catalog} does not take part in this sale")]
    NotParticipating { catalog: CatalogId },
    #[error("catalog {catalog} belongs to producer {producer}")]
    NotYourCatalog {
        catalog: CatalogId,
        producer: ProducerId,
    },
    #[error("the order period must open before it closes, and close before the sale starts at {starts_at}")]
    InvalidOrderPeriod { starts_at: DateTime<Utc> },
    #[error("the order period of catalog {catalog} is already {state}")]
    PeriodAlreadyStarted {
        catalog: CatalogId,
        state: &'static str,
    },
    #[error("orders for catalog {catalog} open at {opens_at}")]
    OrderPeriodNotOpen {
        catalog: CatalogId,
        opens_at: DateTime<Utc>,
    },
    #[error("orders for catalog {catalog} closed at {closes_at}")]
    OrderPeriodClosed {
        catalog: CatalogId,
        closes_at: DateTime<Utc>,
    },
    #[error("the order period of catalog {catalog} ends at {closes_at}")]
    PeriodNotOver {
        catalog: CatalogId,
        closes_at: DateTime<Utc>,
    },
    #[error(
        "{orders} orders have lines for catalog {catalog}: cancel them (quantities to zero) first"
    )]
    HasOrders { catalog: CatalogId, orders: u32 },
    #[error("an order needs at least one catalog")]
    NoCatalog,
    #[error("this customer already has order {existing} in this sale: add lines to it")]
    CustomerAlreadyOrdered { existing: OrderId },
    #[error("the order {order} belongs to another customer")]
    OrderOfAnotherCustomer { order: OrderId },
    #[error("the sale's distribution ends at {ends_at}")]
    DistributionNotOver { ends_at: DateTime<Utc> },
    #[error("the order period of catalog {catalog} is still open: close it first")]
    PeriodsStillOpen { catalog: CatalogId },
    #[error("this cannot be done while the sale is {status:?}")]
    WrongStatus { status: SaleStatus },
    #[error("only the market's referent or an administrator validates a sale")]
    NotAReferent,
    #[error("this access was issued for another market")]
    WrongMarket,
}

impl SaleError {
    pub fn code(&self) -> &'static str {
        match self {
            SaleError::AlreadyPlanned => "SALE_ALREADY_PLANNED",
            SaleError::NotPlanned => "SALE_NOT_FOUND",
            SaleError::InvalidTimes => "SALE_INVALID_TIMES",
            SaleError::InvalidNumber => "SALE_INVALID_NUMBER",
            SaleError::CatalogNotLinked { .. } => "CATALOG_NOT_LINKED",
            SaleError::AlreadyParticipating { .. } => "ALREADY_PARTICIPATING",
            SaleError::NotParticipating { .. } => "NOT_PARTICIPATING",
            SaleError::NotYourCatalog { .. } => "NOT_YOUR_CATALOG",
            SaleError::InvalidOrderPeriod { .. } => "INVALID_ORDER_PERIOD",
            SaleError::PeriodAlreadyStarted { .. } => "ORDER_PERIOD_ALREADY_STARTED",
            SaleError::OrderPeriodNotOpen { .. } => "ORDER_PERIOD_NOT_OPEN",
            SaleError::OrderPeriodClosed { .. } => "ORDER_PERIOD_CLOSED",
            SaleError::PeriodNotOver { .. } => "ORDER_PERIOD_NOT_OVER",
            SaleError::HasOrders { .. } => "SALE_HAS_ORDERS",
            SaleError::NoCatalog => "ORDER_NO_CATALOG",
            SaleError::CustomerAlreadyOrdered { .. } => "CUSTOMER_ALREADY_ORDERED",
            SaleError::OrderOfAnotherCustomer { .. } => "ORDER_OF_ANOTHER_CUSTOMER",
            SaleError::DistributionNotOver { .. } => "DISTRIBUTION_NOT_OVER",
            SaleError::PeriodsStillOpen { .. } => "ORDER_PERIODS_STILL_OPEN",
            SaleError::WrongStatus { .. } => "SALE_WRONG_STATUS",
            SaleError::NotAReferent => "NOT_A_REFERENT",
            SaleError::WrongMarket => "SALE_WRONG_MARKET",
        }
    }
}
