//! Why a fee configuration or a fee computation was refused.

use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("the fee configuration is not valid JSON of the expected shape: {0}")]
    InvalidJson(String),
    #[error("the fee configuration defines no schedule")]
    NoSchedules,
    #[error("schedule '{0}' appears twice")]
    DuplicateSchedule(String),
    #[error("a schedule or rule name needs 1 to 80 characters")]
    InvalidName,
    #[error("schedule '{0}' defines no rule")]
    EmptySchedule(String),
    #[error("rule {id} version {version} appears twice")]
    DuplicateRuleVersion { id: String, version: u32 },
    #[error("rule {id}: version {version} must start after the earlier versions")]
    VersionsOutOfOrder { id: String, version: u32 },
    #[error("rule {id} version {version}: {reason}")]
    InvalidRule {
        id: String,
        version: u32,
        reason: &'static str,
    },
    #[error("amounts must not be negative")]
    NegativeAmount,
    #[error("the amount excl. VAT ({excl_vat}) is above the amount incl. VAT ({incl_vat})")]
    ExclVatAboveInclVat { excl_vat: Money, incl_vat: Money },
    #[error("there is nothing to split a fixed part across")]
    NothingToSplit,
    #[error("a refund of {refunded} is above the amount paid {paid}")]
    RefundAbovePaid { refunded: Money, paid: Money },
}

impl FeeError {
    pub fn code(&self) -> &'static str {
        match self {
            FeeError::InvalidJson(_) => "FEE_CONFIG_INVALID_JSON",
            FeeError::NoSchedules => "FEE_CONFIG_NO_SCHEDULES",
            FeeError::DuplicateSchedule(_) => "FEE_CONFIG_DUPLICATE_SCHEDULE",
            FeeError::InvalidName => "FEE_CONFIG_INVALID_NAME",
            FeeError::EmptySchedule(_) => "FEE_CONFIG_EMPTY_SCHEDULE",
            FeeError::DuplicateRuleVersion { .. } => "FEE_CONFIG_DUPLICATE_RULE_VERSION",
            FeeError::VersionsOutOfOrder { .. } => "FEE_CONFIG_VERSIONS_OUT_OF_ORDER",
            FeeError::InvalidRule { .. } => "FEE_CONFIG_INVALID_RULE",
            FeeError::NegativeAmount => "FEE_NEGATIVE_AMOUNT",
            FeeError::ExclVatAboveInclVat { .. } => "FEE_EXCL_VAT_ABOVE_INCL_VAT",
            FeeError::NothingToSplit => "FEE_NOTHING_TO_SPLIT",
            FeeError::RefundAbovePaid { .. } => "FEE_REFUND_ABOVE_PAID",
        }
    }
}
