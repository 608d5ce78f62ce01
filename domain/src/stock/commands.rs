//! What can be asked of a product's stock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::ProducerAccess;
use crate::ids::{OrderId, ProductId, SaleId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StockCommand {
    /// Sets the real stock (`None`: unlimited). Applies at once to open sales (R-STK-5).
    SetStock {
        product: ProductId,
        access: ProducerAccess,
        real: Option<i64>,
    },
    /// Holds `quantity` units for an order until it is confirmed, released or expires.
    Reserve {
        product: ProductId,
        reservation: OrderId,
        sale: SaleId,
        quantity: i64,
        expires_at: DateTime<Utc>,
    },
    /// The order was placed: the reservation no longer expires.
    Confirm { reservation: OrderId },
    /// The order failed or was cancelled. Releasing an unknown reservation does nothing.
    Release { reservation: OrderId },
    /// Releases every unconfirmed reservation whose `expires_at` is at or before `at`.
    ExpireReservations { at: DateTime<Utc> },
    /// Lowers a reservation (shortage, R-ORD-4); 0 releases it.
    AdjustReservation { reservation: OrderId, quantity: i64 },
    /// The sale's distribution is over: its confirmed units count as delivered (R-STK-4).
    Deliver { sale: SaleId, at: DateTime<Utc> },
}
