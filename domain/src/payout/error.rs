//! Why a producer balance command was refused.

use chrono::NaiveDate;

use crate::ids::SaleId;
use crate::money::Money;

use super::aggregate::PayoutStatus;
use super::events::PayoutId;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProducerBalanceError {
    #[error("sale {sale} is already credited to this balance")]
    SaleAlreadyCredited { sale: SaleId },
    #[error("sale {sale} is already recorded as settled on site")]
    OnSiteSaleAlreadyRecorded { sale: SaleId },
    #[error("sale {sale} was not credited to this balance")]
    SaleNotCredited { sale: SaleId },
    #[error("these refunds of sale {sale} are already debited")]
    RefundsAlreadyDebited { sale: SaleId },
    #[error("amounts must not be negative")]
    NegativeAmount,
    #[error("refunds ({refunds}) are above the sale's gross amount ({gross})")]
    RefundsAboveGross { gross: Money, refunds: Money },
    #[error("fee line of rule {rule_id} does not recompute from its inputs")]
    FeeLineDoesNotRecompute { rule_id: String },
    #[error("the net should be {expected} (gross - refunds - fees incl. VAT), not {given}")]
    NetMismatch { expected: Money, given: Money },
    #[error("payout {payout} already exists")]
    PayoutAlreadyExists { payout: PayoutId },
    #[error("nothing is available to pay on {on}")]
    NothingToPay { on: NaiveDate },
    #[error("payout {payout} does not exist")]
    UnknownPayout { payout: PayoutId },
    #[error("payout {payout} is {status:?}: this cannot be done now")]
    WrongPayoutStatus {
        payout: PayoutId,
        status: PayoutStatus,
    },
    #[error("a provider reference or a reason needs 1 to 500 characters")]
    InvalidText,
    #[error("{key} is already billed")]
    AlreadyBilled { key: String },
    #[error("a bill needs at least one fee line above zero")]
    NothingToBill,
}

impl ProducerBalanceError {
    pub fn code(&self) -> &'static str {
        match self {
            ProducerBalanceError::SaleAlreadyCredited { .. } => "SALE_ALREADY_CREDITED",
            ProducerBalanceError::OnSiteSaleAlreadyRecorded { .. } => {
                "ON_SITE_SALE_ALREADY_RECORDED"
            }
            ProducerBalanceError::SaleNotCredited { .. } => "SALE_NOT_CREDITED",
            ProducerBalanceError::RefundsAlreadyDebited { .. } => "REFUNDS_ALREADY_DEBITED",
            ProducerBalanceError::NegativeAmount => "BALANCE_NEGATIVE_AMOUNT",
            ProducerBalanceError::RefundsAboveGross { .. } => "BALANCE_REFUNDS_ABOVE_GROSS",
            ProducerBalanceError::FeeLineDoesNotRecompute { .. } => "FEE_LINE_DOES_NOT_RECOMPUTE",
            ProducerBalanceError::NetMismatch { .. } => "BALANCE_NET_MISMATCH",
            ProducerBalanceError::PayoutAlreadyExists { .. } => "PAYOUT_ALREADY_EXISTS",
            ProducerBalanceError::NothingToPay { .. } => "PAYOUT_NOTHING_TO_PAY",
            ProducerBalanceError::UnknownPayout { .. } => "PAYOUT_NOT_FOUND",
            ProducerBalanceError::WrongPayoutStatus { .. } => "PAYOUT_WRONG_STATUS",
            ProducerBalanceError::InvalidText => "PAYOUT_INVALID_TEXT",
            ProducerBalanceError::AlreadyBilled { .. } => "ALREADY_BILLED",
            ProducerBalanceError::NothingToBill => "NOTHING_TO_BILL",
        }
    }
}
