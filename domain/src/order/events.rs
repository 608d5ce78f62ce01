//! What happened to an order. Events carry frozen terms and computed amounts.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{MarketId, OrderId, PaymentId, SaleId, UserId};
use crate::market::PaymentMode;
use crate::money::Money;

use super::aggregate::Line;
use super::commands::{Delivery, PaymentMethod};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    OrderPlaced {
        order: OrderId,
        sale: SaleId,
        market: MarketId,
        customer: UserId,
        number: String,
        lines: Vec<Line>,
        payment_mode: PaymentMode,
        delivery: Delivery,
        /// Lines incl. VAT plus the delivery fee.
        total: Money,
        at: DateTime<Utc>,
    },
    /// R-ORD-4. `refund_owed` and `extra_due` are the order's figures after the change
    /// (`extra_due` only once something was paid; before that the whole total is simply due).
    QuantityAdjusted {
        line: u32,
        old_quantity: i64,
        new_quantity: i64,
        old_amount: Money,
        new_amount: Money,
        amount_excl_vat: Money,
        vat_amount: Money,
        delta: Money,
        total: Money,
        refund_owed: Money,
        extra_due: Money,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// R-ORD-4, same figures as `QuantityAdjusted`.
    WeightRecorded {
        line: u32,
        weight_kg: Decimal,
        old_amount: Money,
        new_amount: Money,
        amount_excl_vat: Money,
        vat_amount: Money,
        delta: Money,
        total: Money,
        refund_owed: Money,
        extra_due: Money,
        by: UserId,
        at: DateTime<Utc>,
    },
    PaymentRecorded {
        payment: PaymentId,
        method: PaymentMethod,
        amount: Money,
        by: UserId,
        at: DateTime<Utc>,
        paid: Money,
        balance_due: Money,
    },
    /// R-PAY-1: an online payment asked of the provider that the customer has to confirm
    /// (a PaymentIntent); `request` is the outbox message that asked for it. The order waits
    /// for the provider's confirmation (`PaymentRecorded` with the same `payment`) until
    /// `expires_at`, then is cancelled.
    PaymentAwaited {
        payment: PaymentId,
        amount: Money,
        provider_ref: String,
        request: Uuid,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The provider said an attempt to pay failed (a declined card): the order still waits,
    /// the customer may try again until it expires.
    PaymentFailed {
        payment: PaymentId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// R-ORD-4: a refund owed, decided with the change that made it owed; the provider call
    /// is an outbox message, acknowledged by `RefundRecorded` with the same `refund`.
    RefundRequested {
        refund: Uuid,
        payment: PaymentId,
        amount: Money,
        at: DateTime<Utc>,
    },
    RefundRecorded {
        payment: PaymentId,
        amount: Money,
        provider_ref: String,
        at: DateTime<Utc>,
        refunded: Money,
        refund_owed: Money,
        /// The request it acknowledges (absent in events older than the outbox).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refund: Option<Uuid>,
    },
    /// R-ORD-5: the total drops to zero; what was paid and not refunded is owed back.
    OrderCancelled {
        by: UserId,
        at: DateTime<Utc>,
        previous_total: Money,
        refund_owed: Money,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::QuantityAdjusted { .. } => "QuantityAdjusted",
            OrderEvent::WeightRecorded { .. } => "WeightRecorded",
            OrderEvent::PaymentRecorded { .. } => "PaymentRecorded",
            OrderEvent::PaymentAwaited { .. } => "PaymentAwaited",
            OrderEvent::PaymentFailed { .. } => "PaymentFailed",
            OrderEvent::RefundRequested { .. } => "RefundRequested",
            OrderEvent::RefundRecorded { .. } => "RefundRecorded",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
