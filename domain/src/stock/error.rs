//! Why a stock command was refused.

use crate::ids::{OrderId, ProducerId, ProductId};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StockError {
    #[error("only {available} left")]
    StockExhausted { product: ProductId, available: i64 },
    #[error("the quantity must be a positive whole number, got {quantity}")]
    QuantityNotPositive { quantity: i64 },
    #[error("a stock cannot be negative, got {real}")]
    NegativeStock { real: i64 },
    #[error("{ordered} units are already ordered: lower the orders (shortage) before setting the stock to {real}")]
    BelowOrdered { real: i64, ordered: i64 },
    #[error("this stock belongs to product {expected}, not {got}")]
    WrongProduct { expected: ProductId, got: ProductId },
    #[error("this product belongs to producer {owner}")]
    NotYourProduct { owner: ProducerId },
    #[error("no reservation {reservation} on this stock")]
    UnknownReservation { reservation: OrderId },
    #[error("reservation {reservation} already exists with other terms")]
    ReservationConflict { reservation: OrderId },
    #[error("a reservation can only be lowered: it holds {current}, asked {requested}")]
    CannotRaise {
        reservation: OrderId,
        current: i64,
        requested: i64,
    },
}

impl StockError {
    pub fn code(&self) -> &'static str {
        match self {
            StockError::StockExhausted { .. } => "STOCK_EXHAUSTED",
            StockError::QuantityNotPositive { .. } => "QUANTITY_NOT_POSITIVE",
            StockError::NegativeStock { .. } => "STOCK_NEGATIVE",
            StockError::BelowOrdered { .. } => "STOCK_BELOW_ORDERED",
            StockError::WrongProduct { .. } => "STOCK_WRONG_PRODUCT",
            StockError::NotYourProduct { .. } => "STOCK_NOT_YOUR_PRODUCT",
            StockError::UnknownReservation { .. } => "RESERVATION_UNKNOWN",
            StockError::ReservationConflict { .. } => "RESERVATION_CONFLICT",
            StockError::CannotRaise { .. } => "RESERVATION_CANNOT_RAISE",
        }
    }
}
