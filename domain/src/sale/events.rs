//! What happened to a sale.

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{CatalogId, MarketId, OrderId, ProducerId, SaleId, UserId};
use crate::market::PaymentMode;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SaleEvent {
    SalePlanned {
        sale: SaleId,
        market: MarketId,
        number: u32,
        date: NaiveDate,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        amap: bool,
        payment_mode: PaymentMode,
    },
    ProducerParticipated {
        producer: ProducerId,
        catalog: CatalogId,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
        by: UserId,
    },
    OrderPeriodOverridden {
        catalog: CatalogId,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
        by: UserId,
    },
    ParticipationWithdrawn {
        producer: ProducerId,
        catalog: CatalogId,
        by: UserId,
    },
    OrderPeriodOpened {
        catalog: CatalogId,
        at: DateTime<Utc>,
    },
    OrderPeriodClosed {
        catalog: CatalogId,
        at: DateTime<Utc>,
    },
    /// R-SAL-5: the producer's order recap for the catalog is ready.
    RecapReady {
        catalog: CatalogId,
        producer: ProducerId,
        orders: u32,
    },
    OrderAttached {
        order: OrderId,
        customer: UserId,
        /// `{sale number}-{order sequence:03}`, unique within the market (R-ORD-2).
        number: String,
        /// The catalogs attached by this event.
        catalogs: Vec<CatalogId>,
        at: DateTime<Utc>,
    },
    CatalogsDetached {
        order: OrderId,
        catalogs: Vec<CatalogId>,
        /// True when the order has no catalog left in this sale.
        order_detached: bool,
    },
    DistributionEnded {
        at: DateTime<Utc>,
    },
    SaleValidated {
        by: UserId,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for SaleEvent {
    fn event_type(&self) -> String {
        match self {
            SaleEvent::SalePlanned { .. } => "SalePlanned",
            SaleEvent::ProducerParticipated { .. } => "ProducerParticipated",
            SaleEvent::OrderPeriodOverridden { .. } => "OrderPeriodOverridden",
            SaleEvent::ParticipationWithdrawn { .. } => "ParticipationWithdrawn",
            SaleEvent::OrderPeriodOpened { .. } => "OrderPeriodOpened",
            SaleEvent::OrderPeriodClosed { .. } => "OrderPeriodClosed",
            SaleEvent::RecapReady { .. } => "RecapReady",
            SaleEvent::OrderAttached { .. } => "OrderAttached",
            SaleEvent::CatalogsDetached { .. } => "CatalogsDetached",
            SaleEvent::DistributionEnded { .. } => "DistributionEnded",
            SaleEvent::SaleValidated { .. } => "SaleValidated",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
