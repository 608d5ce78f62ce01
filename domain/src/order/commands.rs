//! What can be asked of an order.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::actor::{Actor, MarketAccess, ProducerAccess};
use crate::ids::{CatalogId, MarketId, OrderId, PaymentId, ProducerId, ProductId, SaleId, UserId};
use crate::market::PaymentMode;
use crate::money::Money;
use crate::vat::VatRate;

/// One line as ordered, with the terms the flow looked up and froze (price, VAT, unit...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineInput {
    pub line: u32,
    pub producer: ProducerId,
    pub catalog: CatalogId,
    pub product: ProductId,
    pub name: String,
    pub unit: String,
    /// Per unit, or per kg for a variable-weight product: what the customer pays.
    pub unit_price_incl_vat: Money,
    /// R-CAT-2: the producer's own price when the catalog adds fees into the customer's
    /// (`unit_price_incl_vat` is then grossed up from it); `None`: the same price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_unit_price_incl_vat: Option<Money>,
    pub vat: VatRate,
    pub variable_weight: bool,
    /// Estimated weight of one unit, in kg, for variable-weight products.
    pub estimated_weight_kg: Option<Decimal>,
    pub packaging_multiple: Option<u32>,
    pub quantity: i64,
}

/// R-ORD-6: pick-up by default, or home delivery with a fee and an opaque address reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    PickUp,
    Home {
        fee: Money,
        address_ref: Uuid,
        /// Who delivers, and so whom the fee belongs to (orders before this field: the
        /// producer).
        #[serde(default)]
        by: Deliverer,
    },
}

/// R-ORD-6: who delivers an order: the producer of its one catalog (the fee is theirs, with
/// their lines) or the market (the fee is the market's, held for it in the ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deliverer {
    #[default]
    Producer,
    Market,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Online { provider_ref: String },
    Cash,
    Cheque,
    CardTerminal,
}

impl PaymentMethod {
    pub fn is_online(&self) -> bool {
        matches!(self, PaymentMethod::Online { .. })
    }
}

/// Who cancels an order (R-ORD-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Canceller {
    Customer(Actor),
    Producer(ProducerAccess),
    MarketAdministrator(MarketAccess),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// R-ORD-1: `number` comes from the sale's `OrderAttached` (R-ORD-2).
    PlaceOrder {
        order: OrderId,
        sale: SaleId,
        market: MarketId,
        customer: UserId,
        number: String,
        lines: Vec<LineInput>,
        payment_mode: PaymentMode,
        delivery: Delivery,
        at: DateTime<Utc>,
        actor: Actor,
    },
    /// R-ORD-4: lowers a line's quantity (shortage); 0 empties the line.
    AdjustQuantity {
        line: u32,
        quantity: i64,
        access: ProducerAccess,
        at: DateTime<Utc>,
    },
    /// R-ORD-4: the actual total weight of a variable-weight line.
    RecordWeight {
        line: u32,
        weight_kg: Decimal,
        access: ProducerAccess,
        at: DateTime<Utc>,
    },
    /// On-site methods need the access of an administrator of the order's market.
    RecordPayment {
        payment: PaymentId,
        method: PaymentMethod,
        amount: Money,
        actor: Actor,
        market_access: Option<MarketAccess>,
        at: DateTime<Utc>,
    },
    /// R-PAY-1: the provider holds a payment the customer has to confirm.
    AwaitPayment {
        payment: PaymentId,
        amount: Money,
        provider_ref: String,
        request: Uuid,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The provider reports a failed attempt to pay an awaited payment.
    RecordPaymentFailure {
        payment: PaymentId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Never above what is owed (R-ORD-4: nothing is refunded twice). `refund` names the
    /// requested refund the provider acknowledged (`None`: a refund made outside a request).
    RecordRefund {
        payment: PaymentId,
        amount: Money,
        provider_ref: String,
        at: DateTime<Utc>,
        refund: Option<Uuid>,
    },
    /// Owes back, on the online payments, what was received beyond the total and not yet
    /// requested: one `RefundRequested` per payment drawn on, delivered through the outbox.
    RequestRefunds { at: DateTime<Utc> },
    /// R-ORD-5: `period_open` is the sale's answer for the order's catalogs.
    Cancel {
        by: Canceller,
        at: DateTime<Utc>,
        period_open: bool,
    },
}
