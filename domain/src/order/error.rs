//! Why an order command was refused.

use rust_decimal::Decimal;

use crate::ids::{PaymentId, ProductId};
use crate::money::Money;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error("this order is already placed")]
    AlreadyPlaced,
    #[error("this order does not exist")]
    NotPlaced,
    #[error("an order needs at least one line")]
    NoLine,
    #[error("the order needs its number")]
    NumberMissing,
    #[error("only the customer places their order")]
    NotTheCustomer,
    #[error("line {line}: the quantity must be a positive whole number, got {quantity}")]
    QuantityNotPositive { line: u32, quantity: i64 },
    #[error("line {line}: at most {max} units per line")]
    QuantityTooLarge { line: u32, max: i64 },
    #[error("line {line}: sold by {multiple}, order a multiple of {multiple}")]
    NotAPackagingMultiple { line: u32, multiple: u32 },
    #[error("line {line}: product {product} is already in the order")]
    DuplicateProduct { line: u32, product: ProductId },
    #[error("line {line} appears twice")]
    DuplicateLine { line: u32 },
    #[error("line {line}: the price cannot be negative")]
    NegativePrice { line: u32 },
    #[error("line {line}: a weight must be above 0 kg with at most 3 decimals, got {weight_kg}")]
    InvalidWeight { line: u32, weight_kg: Decimal },
    #[error("line {line}: a variable-weight product needs an estimated weight per unit")]
    EstimatedWeightMissing { line: u32 },
    #[error("line {line} is not a variable-weight product")]
    NotVariableWeight { line: u32 },
    #[error("the delivery fee cannot be negative")]
    NegativeDeliveryFee,
    #[error("no line {line} in this order")]
    UnknownLine { line: u32 },
    #[error("line {line} belongs to another producer")]
    NotYourLine { line: u32 },
    #[error("a quantity can only be lowered after the close: line {line} has {current}")]
    CannotRaise { line: u32, current: i64 },
    #[error("this order is cancelled")]
    Cancelled,
    #[error("the amount must be above zero")]
    AmountNotPositive,
    #[error("only {due} is due")]
    PaymentExceedsDue { due: Money },
    #[error("payment {payment} was already recorded with other terms")]
    PaymentConflict { payment: PaymentId },
    #[error("payments on site are recorded by an administrator of the market")]
    NotAMarketAdministrator,
    #[error("no payment {payment} on this order")]
    UnknownPayment { payment: PaymentId },
    #[error("at most {owed} can be refunded")]
    RefundExceedsOwed { owed: Money },
    #[error("no refund {refund} was requested on this order")]
    UnknownRefund { refund: uuid::Uuid },
    #[error(
        "the order period is closed: ask the producer or the market's administrator to cancel"
    )]
    CancellationClosed,
    #[error("only the customer, a producer of the order or the market's administrator cancels it")]
    NotAllowedToCancel,
}

impl OrderError {
    pub fn code(&self) -> &'static str {
        match self {
            OrderError::AlreadyPlaced => "ORDER_ALREADY_PLACED",
            OrderError::NotPlaced => "ORDER_NOT_FOUND",
            OrderError::NoLine => "ORDER_NO_LINE",
            OrderError::NumberMissing => "ORDER_NUMBER_MISSING",
            OrderError::NotTheCustomer => "ORDER_NOT_THE_CUSTOMER",
            OrderError::QuantityNotPositive { .. } => "QUANTITY_NOT_POSITIVE",
            OrderError::QuantityTooLarge { .. } => "QUANTITY_TOO_LARGE",
            OrderError::NotAPackagingMultiple { .. } => "NOT_A_PACKAGING_MULTIPLE",
            OrderError::DuplicateProduct { .. } => "ORDER_DUPLICATE_PRODUCT",
            OrderError::DuplicateLine { .. } => "ORDER_DUPLICATE_LINE",
            OrderError::NegativePrice { .. } => "ORDER_NEGATIVE_PRICE",
            OrderError::InvalidWeight { .. } => "INVALID_WEIGHT",
            OrderError::EstimatedWeightMissing { .. } => "ESTIMATED_WEIGHT_MISSING",
            OrderError::NotVariableWeight { .. } => "NOT_VARIABLE_WEIGHT",
            OrderError::NegativeDeliveryFee => "NEGATIVE_DELIVERY_FEE",
            OrderError::UnknownLine { .. } => "ORDER_UNKNOWN_LINE",
            OrderError::NotYourLine { .. } => "ORDER_NOT_YOUR_LINE",
            OrderError::CannotRaise { .. } => "ORDER_CANNOT_RAISE",
            OrderError::Cancelled => "ORDER_CANCELLED",
            OrderError::AmountNotPositive => "AMOUNT_NOT_POSITIVE",
            OrderError::PaymentExceedsDue { .. } => "PAYMENT_EXCEEDS_DUE",
            OrderError::PaymentConflict { .. } => "PAYMENT_CONFLICT",
            OrderError::NotAMarketAdministrator => "NOT_A_MARKET_ADMINISTRATOR",
            OrderError::UnknownPayment { .. } => "PAYMENT_UNKNOWN",
            OrderError::RefundExceedsOwed { .. } => "REFUND_EXCEEDS_OWED",
            OrderError::UnknownRefund { .. } => "REFUND_UNKNOWN",
            OrderError::CancellationClosed => "CANCELLATION_CLOSED",
            OrderError::NotAllowedToCancel => "NOT_ALLOWED_TO_CANCEL",
        }
    }
}
