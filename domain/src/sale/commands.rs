//! What can be asked of a sale.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::{MarketAccess, ProducerAccess};
use crate::ids::{CatalogId, MarketId, OrderId, SaleId, UserId};
use crate::market::PaymentMode;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SaleCommand {
    /// Plans a sale of a market; `number` comes from the market's `SaleRegistered`.
    PlanSale {
        sale: SaleId,
        market: MarketId,
        number: u32,
        date: NaiveDate,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        amap: bool,
        payment_mode: PaymentMode,
    },
    /// A producer takes part with one linked catalog (R-SAL-2, R-CAT-4); the default order
    /// period comes from the caller (R-SAL-3). Call once per catalog.
    Participate {
        access: ProducerAccess,
        catalog: CatalogId,
        /// Fact from the market: the catalog is linked to it.
        catalog_linked: bool,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    },
    /// The producer overrides the order period of one catalog for this sale (R-SAL-3).
    OverrideOrderPeriod {
        access: ProducerAccess,
        catalog: CatalogId,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    },
    /// Withdraws a participation, also used to opt out of one date of a recurring
    /// participation (R-SAL-2); refused while orders have lines for the catalog (R-SAL-4).
    Withdraw {
        access: ProducerAccess,
        catalog: CatalogId,
    },
    /// Scheduled at the catalog's `opens_at`.
    OpenOrderPeriod {
        catalog: CatalogId,
        at: DateTime<Utc>,
    },
    /// Scheduled at the catalog's `closes_at`; emits the recap (R-SAL-5).
    CloseOrderPeriod {
        catalog: CatalogId,
        at: DateTime<Utc>,
    },
    /// Attaches an order (or more catalogs of it) and gives it its number on first attachment.
    /// One order per customer per sale (R-ORD-1); each catalog's period must be open (R-ORD-3).
    AttachOrder {
        order: OrderId,
        customer: UserId,
        catalogs: Vec<CatalogId>,
        at: DateTime<Utc>,
    },
    /// The order's lines for these catalogs dropped to zero, or the order was cancelled.
    DetachCatalogs {
        order: OrderId,
        catalogs: Vec<CatalogId>,
    },
    /// Scheduled after `ends_at`; all order periods must be closed.
    EndDistribution { at: DateTime<Utc> },
    /// The referent (or an administrator) validates the distributed sale (R-SAL-6).
    Validate {
        access: MarketAccess,
        at: DateTime<Utc>,
    },
}
