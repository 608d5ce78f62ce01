//! Why a command on a producer's annual sales is refused.

use crate::ids::OrderId;
use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnualSalesError {
    #[error("an amount must be above zero")]
    NonPositiveAmount,
    #[error("this order would take the producer's non-AMAP sales of the year over the plan's cap of {cap} EUR: {left} EUR left this year")]
    CapExceeded { cap: Money, left: Money },
    #[error("this order already has a reservation; release or reduce it instead")]
    AlreadyReserved { order: OrderId },
    #[error("this order has no reservation")]
    UnknownOrder { order: OrderId },
    #[error("this order is already confirmed")]
    AlreadyConfirmed { order: OrderId },
    #[error("the new amount must be below the current {current} EUR and not negative (release the order to drop it)")]
    NotAReduction { order: OrderId, current: Money },
    #[error("order {order} holds {current} EUR; a raise must be above it")]
    NotARaise { order: OrderId, current: Money },
}

impl AnnualSalesError {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            AnnualSalesError::NonPositiveAmount => "NON_POSITIVE_AMOUNT",
            AnnualSalesError::CapExceeded { .. } => "CAP_EXCEEDED",
            AnnualSalesError::AlreadyReserved { .. } => "ALREADY_RESERVED",
            AnnualSalesError::UnknownOrder { .. } => "UNKNOWN_ORDER",
            AnnualSalesError::AlreadyConfirmed { .. } => "ALREADY_CONFIRMED",
            AnnualSalesError::NotAReduction { .. } => "NOT_A_REDUCTION",
            AnnualSalesError::NotARaise { .. } => "NOT_A_RAISE",
        }
    }
}
