//! What can be asked of a producer account.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, ProducerAccess};
use crate::config::{PlanKind, PlanTerms, SubscriptionBilling};
use crate::ids::{ProducerId, ProductId, UserId};

use super::ProductDetails;

/// Commands on a [`super::ProducerAccount`]. Facts from configuration (the current charter, the
/// plan terms in force) are looked up by the caller and carried here; time is an input (`at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountCommand {
    /// R-ACC-1: the producer opens their own account, accepting the current charter.
    OpenAccount {
        producer: ProducerId,
        owner: UserId,
        /// Who asks: must be `owner`, in the Producer role.
        actor: Actor,
        /// The charter version the producer accepted.
        accepted_charter: String,
        /// The charter version in force (from `Config::current_charter`).
        current_charter: String,
        plan: PlanKind,
        /// The terms of `plan` in force at `at` (from `Config::plan_terms`).
        terms: PlanTerms,
        at: DateTime<Utc>,
    },
    /// R-ACC-2: the owner gives a collaborator access to the account.
    GrantAccess {
        access: ProducerAccess,
        user: UserId,
    },
    /// R-PAY-4: the owner names the producer's account at the payment provider that payouts
    /// are transferred to (a Stripe Connect account id, `acct_...`; none: forget it).
    SetPayoutAccount {
        access: ProducerAccess,
        account: Option<String>,
        at: DateTime<Utc>,
    },
    /// R-PAY-4: the owner changed the producer's bank details (kept outside the log; the event
    /// keeps the masked IBAN and the BIC).
    ChangeBankDetails {
        access: ProducerAccess,
        masked_iban: String,
        bic: String,
        at: DateTime<Utc>,
    },
    /// R-INV-4: the owner records the producer's legal identity for invoices (the names and
    /// address are kept outside the log; the event keeps the SIREN, VAT number and regime).
    SetBillingIdentity {
        access: ProducerAccess,
        siren: String,
        vat_number: Option<String>,
        vat_franchise: bool,
        at: DateTime<Utc>,
    },
    /// R-INV-3: the owner accepts, once per version, the mandate under which the platform
    /// issues invoices on the producer's behalf.
    AcceptBillingMandate {
        access: ProducerAccess,
        version: String,
        current: String,
        at: DateTime<Utc>,
    },
    /// R-PAY-4: the owner confirms the latest change, releasing a payout it held.
    ConfirmBankDetails {
        access: ProducerAccess,
        at: DateTime<Utc>,
    },
    /// R-ACC-2: the owner takes a collaborator's access back.
    RevokeAccess {
        access: ProducerAccess,
        user: UserId,
    },
    /// R-ACC-3: the owner moves the account to another plan.
    ChangePlan {
        access: ProducerAccess,
        plan: PlanKind,
        /// How a subscription of the plan is billed (ignored by plans without one).
        billing: SubscriptionBilling,
        /// The terms of `plan` in force at `at` (from `Config::plan_terms`).
        terms: PlanTerms,
        at: DateTime<Utc>,
    },
    /// R-ACC-3: the platform records a training the producer completed on the Paris date of `at`.
    CompleteTraining { actor: Actor, at: DateTime<Utc> },
    /// R-ACC-3: the scheduler moves an account whose training is overdue to the Flexible terms.
    ApplyTrainingLapse {
        /// The Flexible terms in force at `at`.
        flexible_terms: PlanTerms,
        at: DateTime<Utc>,
    },
    /// R-ACC-5
    AddProduct {
        access: ProducerAccess,
        product: ProductId,
        details: ProductDetails,
    },
    /// R-ACC-5: replaces a product's details (archived or not).
    UpdateProduct {
        access: ProducerAccess,
        product: ProductId,
        details: ProductDetails,
    },
    /// R-ACC-5: takes a product out of every catalog at once.
    ArchiveProduct {
        access: ProducerAccess,
        product: ProductId,
    },
    /// R-ACC-5: puts an archived product back into the catalogs that offer it.
    UnarchiveProduct {
        access: ProducerAccess,
        product: ProductId,
    },
    /// R-ACC-6: the owner closes the account; everything is refused afterwards.
    CloseAccount {
        access: ProducerAccess,
        at: DateTime<Utc>,
    },
}
