//! What happened to a producer account. Ids only: no personal data (R-ACC-6).

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::config::{PlanTerms, SubscriptionBilling};
use crate::ids::{ProducerId, ProductId, UserId};

use super::ProductDetails;

/// Why a plan changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanChangeReason {
    /// The owner asked.
    Requested,
    /// The update training was overdue (R-ACC-3).
    TrainingLapsed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// R-ACC-1: records the charter version accepted and when; `terms` are the plan's frozen terms.
    AccountOpened {
        producer: ProducerId,
        owner: UserId,
        charter_version: String,
        terms: PlanTerms,
        at: DateTime<Utc>,
    },
    AccessGranted {
        user: UserId,
    },
    AccessRevoked {
        user: UserId,
    },
    /// R-PAY-4: new bank details (the full IBAN and the holder's name are kept outside the log).
    BankDetailsChanged {
        masked_iban: String,
        bic: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// R-INV-4: the producer's legal identity for invoices.
    BillingIdentitySet {
        siren: String,
        vat_number: Option<String>,
        vat_franchise: bool,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// R-INV-3: the billing mandate accepted (its version).
    BillingMandateAccepted {
        version: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// R-PAY-4: the owner confirmed the latest bank details.
    BankDetailsConfirmed {
        by: UserId,
        at: DateTime<Utc>,
    },
    /// R-PAY-4: where payouts go at the payment provider.
    PayoutAccountSet {
        account: Option<String>,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// The new plan is `terms.plan`; the terms are frozen as they were in force.
    PlanChanged {
        terms: PlanTerms,
        /// How its subscription is billed (monthly in events older than billing).
        #[serde(default)]
        billing: SubscriptionBilling,
        reason: PlanChangeReason,
        at: DateTime<Utc>,
    },
    TrainingCompleted {
        /// Paris date of completion.
        on: NaiveDate,
        at: DateTime<Utc>,
    },
    ProductAdded {
        product: ProductId,
        details: ProductDetails,
    },
    ProductUpdated {
        product: ProductId,
        details: ProductDetails,
    },
    ProductArchived {
        product: ProductId,
    },
    ProductUnarchived {
        product: ProductId,
    },
    AccountClosed {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            AccountEvent::AccountOpened { .. } => "AccountOpened",
            AccountEvent::AccessGranted { .. } => "AccessGranted",
            AccountEvent::PayoutAccountSet { .. } => "PayoutAccountSet",
            AccountEvent::BankDetailsChanged { .. } => "BankDetailsChanged",
            AccountEvent::BillingIdentitySet { .. } => "BillingIdentitySet",
            AccountEvent::BillingMandateAccepted { .. } => "BillingMandateAccepted",
            AccountEvent::BankDetailsConfirmed { .. } => "BankDetailsConfirmed",
            AccountEvent::AccessRevoked { .. } => "AccessRevoked",
            AccountEvent::PlanChanged { .. } => "PlanChanged",
            AccountEvent::TrainingCompleted { .. } => "TrainingCompleted",
            AccountEvent::ProductAdded { .. } => "ProductAdded",
            AccountEvent::ProductUpdated { .. } => "ProductUpdated",
            AccountEvent::ProductArchived { .. } => "ProductArchived",
            AccountEvent::ProductUnarchived { .. } => "ProductUnarchived",
            AccountEvent::AccountClosed { .. } => "AccountClosed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
