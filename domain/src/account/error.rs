//! Why a command on a producer account is refused.

use chrono::NaiveDate;

use crate::config::PlanKind;
use crate::ids::{ProductId, UserId};

use super::{MAX_NAME_CHARS, MAX_UNIT_CHARS};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("this producer account has not been opened")]
    NotOpened,
    #[error("this producer account is already open")]
    AlreadyOpened,
    #[error("this producer account is closed: it can only be read")]
    Closed,
    #[error("only the producer themself can do this on their account (not a collaborator, administrator or the platform)")]
    NotTheOwner,
    #[error("a payout account is a Stripe Connect account id: \"acct_\" then letters and digits, at most 64 characters")]
    InvalidPayoutAccount,
    #[error("this producer has no bank details to confirm")]
    NoBankDetails,
    #[error("the billing mandate in force is version {current}, not {accepted}")]
    MandateNotCurrent { current: String, accepted: String },
    #[error("a variable-weight product needs an estimated weight per unit (over 0 and up to 1000 kg, to the gram); other products none")]
    InvalidEstimatedWeight,
    #[error("you must accept the current producer charter ({current}); you accepted '{accepted}'")]
    CharterNotAccepted { current: String, accepted: String },
    #[error("the terms given are those of plan {terms_plan}, not of plan {plan}")]
    TermsMismatch {
        plan: PlanKind,
        terms_plan: PlanKind,
    },
    #[error("you have no access to this producer account; ask its owner to grant it")]
    NoAccess,
    #[error("this access was given for another producer account")]
    WrongAccount,
    #[error("the owner already has full access and cannot be a collaborator")]
    OwnerCannotBeCollaborator,
    #[error("this person is already a collaborator")]
    AlreadyCollaborator { user: UserId },
    #[error("this person is not a collaborator")]
    NotACollaborator { user: UserId },
    #[error("the account is already on plan {plan}")]
    AlreadyOnPlan { plan: PlanKind },
    #[error("plan {plan} is granted by completing the training; complete it first")]
    TrainingRequired { plan: PlanKind },
    #[error("only the platform can record a training")]
    PlatformOnly,
    #[error("plan {plan} has no training due, so it cannot lapse")]
    NoTrainingDue { plan: PlanKind },
    #[error("the training is not overdue: it is due by {due}")]
    NotLapsed { due: NaiveDate },
    #[error("the lapse moves the account to Flexible terms, but terms of plan {given} were given")]
    NotFlexibleTerms { given: PlanKind },
    #[error("a product with this id already exists")]
    ProductExists { product: ProductId },
    #[error("no such product in this account")]
    UnknownProduct { product: ProductId },
    #[error("this product is already archived")]
    AlreadyArchived { product: ProductId },
    #[error("this product is not archived")]
    NotArchived { product: ProductId },
    #[error("a product name must have 1 to {max} characters", max = MAX_NAME_CHARS)]
    InvalidName,
    #[error("a unit must have 1 to {max} characters (e.g. kg, piece, bottle)", max = MAX_UNIT_CHARS)]
    InvalidUnit,
    #[error("a price must be above zero")]
    NonPositivePrice,
    #[error("a packaging multiple must be at least 2 (leave it empty for none), not {given}")]
    InvalidPackagingMultiple { given: u32 },
}

impl AccountError {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            AccountError::NotOpened => "ACCOUNT_NOT_OPENED",
            AccountError::AlreadyOpened => "ACCOUNT_ALREADY_OPENED",
            AccountError::Closed => "ACCOUNT_CLOSED",
            AccountError::NotTheOwner => "NOT_THE_OWNER",
            AccountError::InvalidPayoutAccount => "INVALID_PAYOUT_ACCOUNT",
            AccountError::NoBankDetails => "NO_BANK_DETAILS",
            AccountError::MandateNotCurrent { .. } => "BILLING_MANDATE_NOT_CURRENT",
            AccountError::InvalidEstimatedWeight => "INVALID_ESTIMATED_WEIGHT",
            AccountError::CharterNotAccepted { .. } => "CHARTER_NOT_ACCEPTED",
            AccountError::TermsMismatch { .. } => "TERMS_MISMATCH",
            AccountError::NoAccess => "NO_ACCESS",
            AccountError::WrongAccount => "WRONG_ACCOUNT",
            AccountError::OwnerCannotBeCollaborator => "OWNER_CANNOT_BE_COLLABORATOR",
            AccountError::AlreadyCollaborator { .. } => "ALREADY_COLLABORATOR",
            AccountError::NotACollaborator { .. } => "NOT_A_COLLABORATOR",
            AccountError::AlreadyOnPlan { .. } => "ALREADY_ON_PLAN",
            AccountError::TrainingRequired { .. } => "TRAINING_REQUIRED",
            AccountError::PlatformOnly => "PLATFORM_ONLY",
            AccountError::NoTrainingDue { .. } => "NO_TRAINING_DUE",
            AccountError::NotLapsed { .. } => "NOT_LAPSED",
            AccountError::NotFlexibleTerms { .. } => "NOT_FLEXIBLE_TERMS",
            AccountError::ProductExists { .. } => "PRODUCT_EXISTS",
            AccountError::UnknownProduct { .. } => "UNKNOWN_PRODUCT",
            AccountError::AlreadyArchived { .. } => "ALREADY_ARCHIVED",
            AccountError::NotArchived { .. } => "NOT_ARCHIVED",
            AccountError::InvalidName => "INVALID_NAME",
            AccountError::InvalidUnit => "INVALID_UNIT",
            AccountError::NonPositivePrice => "NON_POSITIVE_PRICE",
            AccountError::InvalidPackagingMultiple { .. } => "INVALID_PACKAGING_MULTIPLE",
        }
    }
}
