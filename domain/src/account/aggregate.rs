//! The producer account aggregate: decides on commands from its own state only.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Months, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, ProducerAccess, Role};
use crate::calendar::paris_date;
use crate::config::{PlanKind, PlanTerms, SubscriptionBilling};
use crate::ids::{ProducerId, ProductId, UserId};
use crate::money::Money;

use super::{
    check_name, check_packaging_multiple, check_unit, AccountCommand, AccountError, AccountEvent,
    PlanChangeReason, ProductDetails,
};

/// A product of the account (R-ACC-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub details: ProductDetails,
    pub archived: bool,
}

/// Which charter version the owner accepted, and when (R-ACC-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharterAcceptance {
    pub version: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Opened {
    producer: ProducerId,
    owner: UserId,
    charter: CharterAcceptance,
    terms: PlanTerms,
    /// Paris date the current plan started.
    plan_since: NaiveDate,
    /// Paris date of the last completed training.
    last_training: Option<NaiveDate>,
    /// How the plan's subscription is billed.
    #[serde(default)]
    billing: SubscriptionBilling,
}

/// A producer account, id = its [`ProducerId`].
///
/// Access (R-ACC-2): only the owner and the collaborators, acting in the Producer role, get a
/// [`ProducerAccess`]. Market administrators, platform administrators and the System get none:
/// nobody acts on a producer's catalogs or products on their behalf (R-ACC-1). Service flows that
/// need no producer decision (freezing prices, cap reservations) use commands that take no access.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProducerAccount {
    opened: Option<Opened>,
    collaborators: BTreeSet<UserId>,
    products: BTreeMap<ProductId, Product>,
    closed: bool,
    /// R-PAY-4: the producer's account at the payment provider (Stripe Connect).
    #[serde(default)]
    payout_account: Option<String>,
    /// R-PAY-4: what the log says of the bank details.
    #[serde(default)]
    bank_details: Option<BankDetailsSummary>,
    /// R-INV-4: the SIREN, VAT number and VAT franchise of the producer's invoices.
    #[serde(default)]
    billing: Option<BillingSummary>,
    /// R-INV-3: the billing mandate version the owner accepted.
    #[serde(default)]
    billing_mandate: Option<String>,
}

/// R-INV-4: what the log says of a producer's legal identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingSummary {
    pub siren: String,
    pub vat_number: Option<String>,
    /// Under the VAT franchise ("TVA non applicable, art. 293 B du CGI").
    pub vat_franchise: bool,
}

/// R-PAY-4: the bank details as the log knows them (masked), when they last changed, and
/// whether the owner confirmed that change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankDetailsSummary {
    pub masked_iban: String,
    pub bic: String,
    pub changed_at: DateTime<Utc>,
    pub confirmed: bool,
}

/// R-PAY-4: a change of bank details this close before a payout holds it for the owner's
/// confirmation.
pub const BANK_DETAILS_HOLD: chrono::Duration = chrono::Duration::days(7);

impl BankDetailsSummary {
    /// Whether a payout at `at` waits for the owner to confirm the latest change.
    pub fn holds_payout_at(&self, at: DateTime<Utc>) -> bool {
        !self.confirmed && at - self.changed_at < BANK_DETAILS_HOLD
    }
}

impl ProducerAccount {
    /// A proof that `actor` may act on this account: the owner (`owner: true`) or a collaborator
    /// (`owner: false`), in the Producer role, on an open account (R-ACC-2).
    pub fn access(&self, actor: Actor) -> Result<ProducerAccess, AccountError> {
        // Who may act is checked before the account's state, so a stranger learns nothing of
        // it (not even that it is closed).
        let opened = self.opened.as_ref().ok_or(AccountError::NotOpened)?;
        if actor.role != Role::Producer {
            return Err(AccountError::NoAccess);
        }
        let owner = actor.user == opened.owner;
        if !owner && !self.collaborators.contains(&actor.user) {
            return Err(AccountError::NoAccess);
        }
        self.open_state()?;
        Ok(ProducerAccess {
            producer: opened.producer,
            actor,
            owner,
        })
    }

    /// R-INV-4: the producer's legal identity for invoices, if recorded.
    pub fn billing(&self) -> Option<&BillingSummary> {
        self.billing.as_ref()
    }

    /// R-INV-3: the billing mandate version the owner accepted.
    pub fn billing_mandate(&self) -> Option<&str> {
        self.billing_mandate.as_deref()
    }

    /// R-PAY-4: the bank details as the log knows them.
    pub fn bank_details(&self) -> Option<&BankDetailsSummary> {
        self.bank_details.as_ref()
    }

    /// R-PAY-4: the producer's account at the payment provider, where payouts are transferred.
    pub fn payout_account(&self) -> Option<&str> {
        self.payout_account.as_deref()
    }

    /// A product of the account, archived or not.
    pub fn product(&self, id: ProductId) -> Option<&Product> {
        self.products.get(&id)
    }

    /// Every product of the account, archived or not, by id.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    /// Whether customers may order `product` now: it exists, is not archived, and the account is
    /// open. The order flow checks this at order time, so archiving a product removes it from
    /// every catalog at once, and unarchiving restores it, without touching any catalog (R-ACC-5).
    pub fn is_orderable(&self, product: ProductId) -> bool {
        self.open_state().is_ok() && self.products.get(&product).is_some_and(|p| !p.archived)
    }

    /// The current plan; [`PlanKind::Discovery`] (the default) before the account is opened.
    pub fn plan(&self) -> PlanKind {
        self.opened
            .as_ref()
            .map(|o| o.terms.plan)
            .unwrap_or_default()
    }

    /// How the current plan's subscription is billed (R-ACC-3).
    pub fn subscription_billing(&self) -> SubscriptionBilling {
        self.opened.as_ref().map(|o| o.billing).unwrap_or_default()
    }

    /// The Paris date the current plan started.
    pub fn plan_since(&self) -> Option<NaiveDate> {
        self.opened.as_ref().map(|o| o.plan_since)
    }

    /// The terms of the current plan, frozen when the plan started.
    pub fn plan_terms(&self) -> Option<&PlanTerms> {
        self.opened.as_ref().map(|o| &o.terms)
    }

    /// The date by which a training must be completed to keep the current plan (R-ACC-3):
    /// for a plan with a renewal period, the last training plus that period, or, with no training
    /// yet, one year after the plan started (the integration training of the first year).
    /// `None` when the plan needs no training or never lapses.
    pub fn training_due(&self) -> Option<NaiveDate> {
        let opened = self.opened.as_ref()?;
        let years = opened.terms.training_renewal_years?;
        if !opened.terms.requires_training {
            return None;
        }
        match opened.last_training {
            Some(last) => last.checked_add_months(Months::new(years.checked_mul(12)?)),
            None => opened.plan_since.checked_add_months(Months::new(12)),
        }
    }

    /// The Paris date of the last completed training.
    pub fn last_training(&self) -> Option<NaiveDate> {
        self.opened.as_ref().and_then(|o| o.last_training)
    }

    /// The charter version accepted at opening, and when.
    pub fn charter(&self) -> Option<&CharterAcceptance> {
        self.opened.as_ref().map(|o| &o.charter)
    }

    pub fn owner(&self) -> Option<UserId> {
        self.opened.as_ref().map(|o| o.owner)
    }

    pub fn producer(&self) -> Option<ProducerId> {
        self.opened.as_ref().map(|o| o.producer)
    }

    pub fn is_collaborator(&self, user: UserId) -> bool {
        self.collaborators.contains(&user)
    }

    pub fn is_open(&self) -> bool {
        self.open_state().is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn open_state(&self) -> Result<&Opened, AccountError> {
        let opened = self.opened.as_ref().ok_or(AccountError::NotOpened)?;
        if self.closed {
            return Err(AccountError::Closed);
        }
        Ok(opened)
    }

    /// Re-derives the access from this state: a proof for another account, or from a collaborator
    /// since revoked, is refused.
    fn check_access(&self, access: &ProducerAccess) -> Result<ProducerAccess, AccountError> {
        let opened = self.open_state()?;
        if access.producer != opened.producer {
            return Err(AccountError::WrongAccount);
        }
        self.access(access.actor)
    }

    fn check_owner(&self, access: &ProducerAccess) -> Result<(), AccountError> {
        if self.check_access(access)?.owner {
            Ok(())
        } else {
            Err(AccountError::NotTheOwner)
        }
    }

    fn known_product(&self, product: ProductId) -> Result<&Product, AccountError> {
        self.products
            .get(&product)
            .ok_or(AccountError::UnknownProduct { product })
    }

    pub fn decide(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        use AccountCommand as C;
        use AccountEvent as E;
        match command {
            C::OpenAccount {
                producer,
                owner,
                actor,
                accepted_charter,
                current_charter,
                plan,
                terms,
                at,
            } => {
                if self.opened.is_some() {
                    return Err(AccountError::AlreadyOpened);
                }
                if actor.role != Role::Producer || actor.user != owner {
                    return Err(AccountError::NotTheOwner);
                }
                if accepted_charter != current_charter {
                    return Err(AccountError::CharterNotAccepted {
                        current: current_charter,
                        accepted: accepted_charter,
                    });
                }
                check_terms(plan, &terms)?;
                if granted_by_training(&terms) {
                    return Err(AccountError::TrainingRequired { plan });
                }
                Ok(vec![E::AccountOpened {
                    producer,
                    owner,
                    charter_version: current_charter,
                    terms,
                    at,
                }])
            }
            C::GrantAccess { access, user } => {
                self.check_owner(&access)?;
                if self.owner() == Some(user) {
                    return Err(AccountError::OwnerCannotBeCollaborator);
                }
                if self.collaborators.contains(&user) {
                    return Err(AccountError::AlreadyCollaborator { user });
                }
                Ok(vec![E::AccessGranted { user }])
            }
            C::SetPayoutAccount {
                access,
                account,
                at,
            } => {
                self.check_owner(&access)?;
                let valid = account.as_deref().is_none_or(|a| {
                    a.len() <= 64
                        && a.strip_prefix("acct_").is_some_and(|rest| {
                            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric())
                        })
                });
                if !valid {
                    return Err(AccountError::InvalidPayoutAccount);
                }
                if self.payout_account == account {
                    return Ok(vec![]);
                }
                Ok(vec![E::PayoutAccountSet {
                    account,
                    by: access.actor.user,
                    at,
                }])
            }
            C::ChangeBankDetails {
                access,
                masked_iban,
                bic,
                at,
            } => {
                self.check_owner(&access)?;
                Ok(vec![E::BankDetailsChanged {
                    masked_iban,
                    bic,
                    by: access.actor.user,
                    at,
                }])
            }
            C::SetBillingIdentity {
                access,
                siren,
                vat_number,
                vat_franchise,
                at,
            } => {
                self.check_owner(&access)?;
                let same = self.billing.as_ref().is_some_and(|b| {
                    b.siren == siren
                        && b.vat_number == vat_number
                        && b.vat_franchise == vat_franchise
                });
                if same {
                    return Ok(vec![]);
                }
                Ok(vec![E::BillingIdentitySet {
                    siren,
                    vat_number,
                    vat_franchise,
                    by: access.actor.user,
                    at,
                }])
            }
            C::AcceptBillingMandate {
                access,
                version,
                current,
                at,
            } => {
                self.check_owner(&access)?;
                if version != current {
                    return Err(AccountError::MandateNotCurrent {
                        current,
                        accepted: version,
                    });
                }
                if self.billing_mandate.as_deref() == Some(current.as_str()) {
                    return Ok(vec![]);
                }
                Ok(vec![E::BillingMandateAccepted {
                    version,
                    by: access.actor.user,
                    at,
                }])
            }
            C::ConfirmBankDetails { access, at } => {
                self.check_owner(&access)?;
                match &self.bank_details {
                    None => Err(AccountError::NoBankDetails),
                    Some(b) if b.confirmed => Ok(vec![]),
                    Some(_) => Ok(vec![E::BankDetailsConfirmed {
                        by: access.actor.user,
                        at,
                    }]),
                }
            }
            C::RevokeAccess { access, user } => {
                self.check_owner(&access)?;
                if !self.collaborators.contains(&user) {
                    return Err(AccountError::NotACollaborator { user });
                }
                Ok(vec![E::AccessRevoked { user }])
            }
            C::ChangePlan {
                access,
                plan,
                billing,
                terms,
                at,
            } => {
                self.check_owner(&access)?;
                check_terms(plan, &terms)?;
                let billing = if terms.subscription.is_some() {
                    billing
                } else {
                    SubscriptionBilling::Monthly
                };
                if self.plan() == plan && self.subscription_billing() == billing {
                    return Err(AccountError::AlreadyOnPlan { plan });
                }
                if granted_by_training(&terms) && self.last_training().is_none() {
                    return Err(AccountError::TrainingRequired { plan });
                }
                Ok(vec![E::PlanChanged {
                    terms,
                    billing,
                    reason: PlanChangeReason::Requested,
                    at,
                }])
            }
            C::CompleteTraining { actor, at } => {
                self.open_state()?;
                if !matches!(actor.role, Role::PlatformAdmin | Role::System) {
                    return Err(AccountError::PlatformOnly);
                }
                Ok(vec![E::TrainingCompleted {
                    on: paris_date(at),
                    at,
                }])
            }
            C::ApplyTrainingLapse { flexible_terms, at } => {
                self.open_state()?;
                if flexible_terms.plan != PlanKind::Flexible {
                    return Err(AccountError::NotFlexibleTerms {
                        given: flexible_terms.plan,
                    });
                }
                let due = self
                    .training_due()
                    .ok_or(AccountError::NoTrainingDue { plan: self.plan() })?;
                if paris_date(at) <= due {
                    return Err(AccountError::NotLapsed { due });
                }
                Ok(vec![E::PlanChanged {
                    terms: flexible_terms,
                    billing: SubscriptionBilling::Monthly,
                    reason: PlanChangeReason::TrainingLapsed,
                    at,
                }])
            }
            C::AddProduct {
                access,
                product,
                details,
            } => {
                self.check_access(&access)?;
                if self.products.contains_key(&product) {
                    return Err(AccountError::ProductExists { product });
                }
                let details = checked_details(details)?;
                Ok(vec![E::ProductAdded { product, details }])
            }
            C::UpdateProduct {
                access,
                product,
                details,
            } => {
                self.check_access(&access)?;
                self.known_product(product)?;
                let details = checked_details(details)?;
                Ok(vec![E::ProductUpdated { product, details }])
            }
            C::ArchiveProduct { access, product } => {
                self.check_access(&access)?;
                if self.known_product(product)?.archived {
                    return Err(AccountError::AlreadyArchived { product });
                }
                Ok(vec![E::ProductArchived { product }])
            }
            C::UnarchiveProduct { access, product } => {
                self.check_access(&access)?;
                if !self.known_product(product)?.archived {
                    return Err(AccountError::NotArchived { product });
                }
                Ok(vec![E::ProductUnarchived { product }])
            }
            C::CloseAccount { access, at } => {
                self.check_owner(&access)?;
                Ok(vec![E::AccountClosed { at }])
            }
        }
    }
}

/// The terms must be those of the plan asked for.
fn check_terms(plan: PlanKind, terms: &PlanTerms) -> Result<(), AccountError> {
    if terms.plan != plan {
        return Err(AccountError::TermsMismatch {
            plan,
            terms_plan: terms.plan,
        });
    }
    Ok(())
}

/// A plan granted by a completed training (Member): it needs a training and has no renewal
/// period. A plan with a renewal period (Engaged) allows the integration training during the
/// first year instead.
fn granted_by_training(terms: &PlanTerms) -> bool {
    terms.requires_training && terms.training_renewal_years.is_none()
}

fn checked_details(details: ProductDetails) -> Result<ProductDetails, AccountError> {
    let name = check_name(&details.name).ok_or(AccountError::InvalidName)?;
    let unit = check_unit(&details.unit).ok_or(AccountError::InvalidUnit)?;
    if details.price_incl_vat <= Money::ZERO {
        return Err(AccountError::NonPositivePrice);
    }
    if !check_packaging_multiple(details.packaging_multiple) {
        return Err(AccountError::InvalidPackagingMultiple {
            given: details.packaging_multiple.unwrap_or_default(),
        });
    }
    let weight_ok = match (details.variable_weight, details.estimated_weight_kg) {
        (true, Some(w)) => {
            w > rust_decimal::Decimal::ZERO
                && w <= rust_decimal::Decimal::from(1000)
                && w.normalize().scale() <= 3
        }
        (true, None) => false,
        (false, w) => w.is_none(),
    };
    if !weight_ok {
        return Err(AccountError::InvalidEstimatedWeight);
    }
    Ok(ProductDetails {
        name,
        unit,
        ..details
    })
}

impl Aggregate for ProducerAccount {
    const TYPE: &'static str = "producer_account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        // Decide everything first: a refused command writes nothing.
        let events = self.decide(command)?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use AccountEvent as E;
        match event {
            E::AccountOpened {
                producer,
                owner,
                charter_version,
                terms,
                at,
            } => {
                self.opened = Some(Opened {
                    producer,
                    owner,
                    charter: CharterAcceptance {
                        version: charter_version,
                        at,
                    },
                    terms,
                    plan_since: paris_date(at),
                    last_training: None,
                    billing: SubscriptionBilling::Monthly,
                });
            }
            E::AccessGranted { user } => {
                self.collaborators.insert(user);
            }
            E::AccessRevoked { user } => {
                self.collaborators.remove(&user);
            }
            E::PayoutAccountSet { account, .. } => self.payout_account = account,
            E::BankDetailsChanged {
                masked_iban,
                bic,
                at,
                ..
            } => {
                self.bank_details = Some(BankDetailsSummary {
                    masked_iban,
                    bic,
                    changed_at: at,
                    confirmed: false,
                })
            }
            E::BillingIdentitySet {
                siren,
                vat_number,
                vat_franchise,
                ..
            } => {
                self.billing = Some(BillingSummary {
                    siren,
                    vat_number,
                    vat_franchise,
                })
            }
            E::BillingMandateAccepted { version, .. } => self.billing_mandate = Some(version),
            E::BankDetailsConfirmed { .. } => {
                if let Some(b) = &mut self.bank_details {
                    b.confirmed = true;
                }
            }
            E::PlanChanged {
                terms, billing, at, ..
            } => {
                if let Some(opened) = self.opened.as_mut() {
                    opened.terms = terms;
                    opened.plan_since = paris_date(at);
                    opened.billing = billing;
                }
            }
            E::TrainingCompleted { on, .. } => {
                if let Some(opened) = self.opened.as_mut() {
                    opened.last_training = Some(on);
                }
            }
            E::ProductAdded { product, details } => {
                self.products.insert(
                    product,
                    Product {
                        id: product,
                        details,
                        archived: false,
                    },
                );
            }
            E::ProductUpdated { product, details } => {
                if let Some(p) = self.products.get_mut(&product) {
                    p.details = details;
                }
            }
            E::ProductArchived { product } => {
                if let Some(p) = self.products.get_mut(&product) {
                    p.archived = true;
                }
            }
            E::ProductUnarchived { product } => {
                if let Some(p) = self.products.get_mut(&product) {
                    p.archived = false;
                }
            }
            E::AccountClosed { .. } => {
                self.closed = true;
                self.collaborators.clear();
            }
        }
    }
}
