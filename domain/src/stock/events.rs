//! What happened to a product's stock. Events carry the resulting figures.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, ProducerId, ProductId, SaleId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StockEvent {
    StockSet {
        product: ProductId,
        producer: ProducerId,
        /// `None`: unlimited.
        real: Option<i64>,
        /// Units ordered and not delivered when the stock was set.
        ordered: i64,
    },
    StockReserved {
        product: ProductId,
        reservation: OrderId,
        sale: SaleId,
        quantity: i64,
        expires_at: DateTime<Utc>,
        /// Available after this reservation (`None`: unlimited).
        available: Option<i64>,
    },
    ReservationConfirmed {
        reservation: OrderId,
    },
    ReservationReleased {
        reservation: OrderId,
        quantity: i64,
    },
    ReservationExpired {
        reservation: OrderId,
        quantity: i64,
    },
    ReservationAdjusted {
        reservation: OrderId,
        old_quantity: i64,
        new_quantity: i64,
    },
    StockDelivered {
        sale: SaleId,
        reservations: Vec<OrderId>,
        quantity: i64,
        /// Real stock after delivery (`None`: unlimited).
        real: Option<i64>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for StockEvent {
    fn event_type(&self) -> String {
        match self {
            StockEvent::StockSet { .. } => "StockSet",
            StockEvent::StockReserved { .. } => "StockReserved",
            StockEvent::ReservationConfirmed { .. } => "ReservationConfirmed",
            StockEvent::ReservationReleased { .. } => "ReservationReleased",
            StockEvent::ReservationExpired { .. } => "ReservationExpired",
            StockEvent::ReservationAdjusted { .. } => "ReservationAdjusted",
            StockEvent::StockDelivered { .. } => "StockDelivered",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
