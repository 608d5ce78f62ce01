use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;

use super::*;
use crate::actor::{Actor, ProducerAccess, Role};
use crate::config::{Config, PlanKind, PlanTerms};
use crate::ids::{ProducerId, ProductId, UserId};
use crate::money::Money;
use crate::vat::VatRate;

type Test = TestFramework<ProducerAccount>;

const PLANS_JSON: &str = include_str!("../../../config/plans.json");

fn config() -> Config {
    Config::from_json(PLANS_JSON).expect("shipped config")
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 10, 0, 0)
        .single()
        .expect("valid instant")
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn terms(plan: PlanKind, on: DateTime<Utc>) -> PlanTerms {
    config()
        .plan_terms(plan, crate::calendar::paris_date(on))
        .expect("plan in force")
        .clone()
}

fn producer() -> ProducerId {
    ProducerId(uuid::Uuid::from_u128(1))
}
fn owner() -> UserId {
    UserId(uuid::Uuid::from_u128(10))
}
fn colleague() -> UserId {
    UserId(uuid::Uuid::from_u128(11))
}
fn stranger() -> UserId {
    UserId(uuid::Uuid::from_u128(12))
}
fn apples() -> ProductId {
    ProductId(uuid::Uuid::from_u128(100))
}

fn owner_access() -> ProducerAccess {
    ProducerAccess {
        producer: producer(),
        actor: Actor::new(owner(), Role::Producer),
        owner: true,
    }
}

fn colleague_access() -> ProducerAccess {
    ProducerAccess {
        producer: producer(),
        actor: Actor::new(colleague(), Role::Producer),
        owner: false,
    }
}

fn open_command(plan: PlanKind, when: DateTime<Utc>) -> AccountCommand {
    AccountCommand::OpenAccount {
        producer: producer(),
        owner: owner(),
        actor: Actor::new(owner(), Role::Producer),
        accepted_charter: "v2".into(),
        current_charter: "v2".into(),
        plan,
        terms: terms(plan, when),
        at: when,
    }
}

fn opened_on(plan: PlanKind, when: DateTime<Utc>) -> AccountEvent {
    AccountEvent::AccountOpened {
        producer: producer(),
        owner: owner(),
        charter_version: "v2".into(),
        terms: terms(plan, when),
        at: when,
    }
}

fn opened() -> AccountEvent {
    opened_on(PlanKind::Discovery, at(2024, 3, 1))
}

fn granted() -> AccountEvent {
    AccountEvent::AccessGranted { user: colleague() }
}

fn details() -> ProductDetails {
    ProductDetails {
        name: "Apples (Reinette)".into(),
        unit: "kg".into(),
        price_incl_vat: "3.20".parse().expect("amount"),
        vat: VatRate::Reduced5_5,
        variable_weight: true,
        estimated_weight_kg: Some(rust_decimal::Decimal::new(5, 1)),
        packaging_multiple: None,
    }
}

fn added() -> AccountEvent {
    AccountEvent::ProductAdded {
        product: apples(),
        details: details(),
    }
}

fn state(events: Vec<AccountEvent>) -> ProducerAccount {
    let mut account = ProducerAccount::default();
    for e in events {
        account.apply(e);
    }
    account
}

// ---- R-ACC-1: opening -------------------------------------------------------------------------

/// R-ACC-1
#[test]
fn a_producer_opens_their_account_accepting_the_current_charter_which_is_recorded() {
    Test::with(())
        .given_no_previous_events()
        .when(open_command(PlanKind::Discovery, at(2024, 3, 1)))
        .then_expect_events(vec![opened()]);
    let account = state(vec![opened()]);
    let charter = account.charter().expect("recorded");
    assert_eq!(charter.version, "v2");
    assert_eq!(charter.at, at(2024, 3, 1));
}

/// R-ACC-1
#[test]
fn an_account_cannot_be_opened_without_accepting_the_current_charter() {
    let mut cmd = open_command(PlanKind::Discovery, at(2024, 3, 1));
    if let AccountCommand::OpenAccount {
        accepted_charter, ..
    } = &mut cmd
    {
        *accepted_charter = "v1".into();
    }
    Test::with(())
        .given_no_previous_events()
        .when(cmd)
        .then_expect_error(AccountError::CharterNotAccepted {
            current: "v2".into(),
            accepted: "v1".into(),
        });
}

/// R-ACC-1
#[test]
fn a_market_administrator_cannot_open_an_account_for_a_producer() {
    for actor in [
        Actor::new(stranger(), Role::MarketAdmin),
        Actor::new(owner(), Role::MarketAdmin),
        Actor::new(stranger(), Role::Producer),
        Actor::new(stranger(), Role::PlatformAdmin),
        Actor::system(),
    ] {
        let mut cmd = open_command(PlanKind::Discovery, at(2024, 3, 1));
        if let AccountCommand::OpenAccount { actor: a, .. } = &mut cmd {
            *a = actor;
        }
        Test::with(())
            .given_no_previous_events()
            .when(cmd)
            .then_expect_error(AccountError::NotTheOwner);
    }
}

/// R-ACC-1
#[test]
fn an_account_is_opened_only_once() {
    Test::with(())
        .given(vec![opened()])
        .when(open_command(PlanKind::Discovery, at(2024, 3, 2)))
        .then_expect_error(AccountError::AlreadyOpened);
}

/// R-ACC-1: nobody but the owner and collaborators (no market or platform administrator) gets an
/// access proof, so nobody else can manage products or catalogs.
#[test]
fn only_the_owner_and_collaborators_get_access_to_the_account() {
    let account = state(vec![opened(), granted()]);
    let owner_proof = account
        .access(Actor::new(owner(), Role::Producer))
        .expect("owner");
    assert!(owner_proof.owner);
    assert_eq!(owner_proof.producer, producer());
    let colleague_proof = account
        .access(Actor::new(colleague(), Role::Producer))
        .expect("collaborator");
    assert!(!colleague_proof.owner);
    for actor in [
        Actor::new(stranger(), Role::Producer),
        Actor::new(stranger(), Role::MarketAdmin),
        Actor::new(owner(), Role::MarketAdmin),
        Actor::new(stranger(), Role::PlatformAdmin),
        Actor::system(),
    ] {
        assert_eq!(account.access(actor), Err(AccountError::NoAccess));
    }
}

/// R-ACC-1: a forged proof from a market administrator is refused by the account.
#[test]
fn a_market_administrator_cannot_add_a_product_even_with_a_forged_access() {
    let forged = ProducerAccess {
        producer: producer(),
        actor: Actor::new(stranger(), Role::MarketAdmin),
        owner: true,
    };
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::AddProduct {
            access: forged,
            product: apples(),
            details: details(),
        })
        .then_expect_error(AccountError::NoAccess);
}

#[test]
fn an_access_for_another_account_is_refused() {
    let other = ProducerAccess {
        producer: ProducerId(uuid::Uuid::from_u128(2)),
        ..owner_access()
    };
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::ArchiveProduct {
            access: other,
            product: apples(),
        })
        .then_expect_error(AccountError::WrongAccount);
}

// ---- R-ACC-2: collaborators ---------------------------------------------------------------------

/// R-ACC-2
#[test]
fn the_owner_grants_a_collaborator_who_then_acts_on_the_account() {
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::GrantAccess {
            access: owner_access(),
            user: colleague(),
        })
        .then_expect_events(vec![granted()]);
    Test::with(())
        .given(vec![opened(), granted()])
        .when(AccountCommand::AddProduct {
            access: colleague_access(),
            product: apples(),
            details: details(),
        })
        .then_expect_events(vec![added()]);
}

/// R-ACC-2
#[test]
fn a_collaborator_cannot_grant_access_nor_close_the_account_the_owner_stays_the_owner() {
    Test::with(())
        .given(vec![opened(), granted()])
        .when(AccountCommand::GrantAccess {
            access: colleague_access(),
            user: stranger(),
        })
        .then_expect_error(AccountError::NotTheOwner);
    // A proof claiming ownership is re-checked against the state.
    let claims_owner = ProducerAccess {
        owner: true,
        ..colleague_access()
    };
    Test::with(())
        .given(vec![opened(), granted()])
        .when(AccountCommand::CloseAccount {
            access: claims_owner,
            at: at(2024, 5, 1),
        })
        .then_expect_error(AccountError::NotTheOwner);
    Test::with(())
        .given(vec![opened(), granted()])
        .when(AccountCommand::RevokeAccess {
            access: colleague_access(),
            user: owner(),
        })
        .then_expect_error(AccountError::NotTheOwner);
}

/// R-ACC-2
#[test]
fn a_revoked_collaborator_loses_access_at_once() {
    Test::with(())
        .given(vec![opened(), granted()])
        .when(AccountCommand::RevokeAccess {
            access: owner_access(),
            user: colleague(),
        })
        .then_expect_events(vec![AccountEvent::AccessRevoked { user: colleague() }]);
    let revoked = vec![
        opened(),
        granted(),
        AccountEvent::AccessRevoked { user: colleague() },
    ];
    assert_eq!(
        state(revoked.clone()).access(Actor::new(colleague(), Role::Producer)),
        Err(AccountError::NoAccess)
    );
    // A proof obtained before the revocation no longer works.
    Test::with(())
        .given(revoked)
        .when(AccountCommand::AddProduct {
            access: colleague_access(),
            product: apples(),
            details: details(),
        })
        .then_expect_error(AccountError::NoAccess);
}

/// R-ACC-2
#[test]
fn granting_twice_revoking_a_stranger_or_granting_the_owner_is_refused() {
    Test::with(())
        .given(vec![opened(), granted()])
        .when(AccountCommand::GrantAccess {
            access: owner_access(),
            user: colleague(),
        })
        .then_expect_error(AccountError::AlreadyCollaborator { user: colleague() });
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::RevokeAccess {
            access: owner_access(),
            user: stranger(),
        })
        .then_expect_error(AccountError::NotACollaborator { user: stranger() });
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::GrantAccess {
            access: owner_access(),
            user: owner(),
        })
        .then_expect_error(AccountError::OwnerCannotBeCollaborator);
}

// ---- R-ACC-3: plans and training ------------------------------------------------------------------

/// R-ACC-3
#[test]
fn the_owner_changes_plan_and_the_event_freezes_the_terms_in_force() {
    let when = at(2024, 6, 1);
    let pro = terms(PlanKind::Pro, when);
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::ChangePlan {
            access: owner_access(),
            billing: crate::config::SubscriptionBilling::Monthly,
            plan: PlanKind::Pro,
            terms: pro.clone(),
            at: when,
        })
        .then_expect_events(vec![AccountEvent::PlanChanged {
            terms: pro.clone(),
            billing: crate::config::SubscriptionBilling::Monthly,
            reason: PlanChangeReason::Requested,
            at: when,
        }]);
    let account = state(vec![
        opened(),
        AccountEvent::PlanChanged {
            terms: pro,
            billing: crate::config::SubscriptionBilling::Monthly,
            reason: PlanChangeReason::Requested,
            at: when,
        },
    ]);
    assert_eq!(account.plan(), PlanKind::Pro);
    let sub = account
        .plan_terms()
        .and_then(|t| t.subscription.clone())
        .expect("subscription");
    assert_eq!(sub.monthly_excl_vat_billed_monthly, Money::from_cents(3900));
}

/// R-ACC-3
#[test]
fn plan_terms_that_do_not_match_the_plan_are_refused() {
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::ChangePlan {
            access: owner_access(),
            billing: crate::config::SubscriptionBilling::Monthly,
            plan: PlanKind::Pro,
            terms: terms(PlanKind::Discovery, at(2024, 6, 1)),
            at: at(2024, 6, 1),
        })
        .then_expect_error(AccountError::TermsMismatch {
            plan: PlanKind::Pro,
            terms_plan: PlanKind::Discovery,
        });
}

/// R-ACC-3: Member is granted by completing the training.
#[test]
fn the_member_plan_needs_a_completed_training() {
    let when = at(2023, 6, 1);
    let member = terms(PlanKind::Member, when);
    Test::with(())
        .given(vec![opened_on(PlanKind::Discovery, at(2023, 1, 10))])
        .when(AccountCommand::ChangePlan {
            access: owner_access(),
            billing: crate::config::SubscriptionBilling::Monthly,
            plan: PlanKind::Member,
            terms: member.clone(),
            at: when,
        })
        .then_expect_error(AccountError::TrainingRequired {
            plan: PlanKind::Member,
        });
    let trained = AccountEvent::TrainingCompleted {
        on: day(2023, 5, 20),
        at: at(2023, 5, 20),
    };
    Test::with(())
        .given(vec![
            opened_on(PlanKind::Discovery, at(2023, 1, 10)),
            trained,
        ])
        .when(AccountCommand::ChangePlan {
            access: owner_access(),
            billing: crate::config::SubscriptionBilling::Monthly,
            plan: PlanKind::Member,
            terms: member.clone(),
            at: when,
        })
        .then_expect_events(vec![AccountEvent::PlanChanged {
            terms: member,
            billing: crate::config::SubscriptionBilling::Monthly,
            reason: PlanChangeReason::Requested,
            at: when,
        }]);
}

/// R-ACC-3
#[test]
fn only_the_platform_records_a_training() {
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::CompleteTraining {
            actor: Actor::new(owner(), Role::Producer),
            at: at(2024, 4, 1),
        })
        .then_expect_error(AccountError::PlatformOnly);
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::CompleteTraining {
            actor: Actor::new(stranger(), Role::PlatformAdmin),
            // 23:30 UTC on 31 March is 1 April in Paris.
            at: Utc
                .with_ymd_and_hms(2024, 3, 31, 23, 30, 0)
                .single()
                .expect("instant"),
        })
        .then_expect_events(vec![AccountEvent::TrainingCompleted {
            on: day(2024, 4, 1),
            at: Utc
                .with_ymd_and_hms(2024, 3, 31, 23, 30, 0)
                .single()
                .expect("instant"),
        }]);
}

fn engaged_trained_on(d: NaiveDate) -> Vec<AccountEvent> {
    vec![
        opened_on(PlanKind::Engaged, at(2024, 2, 1)),
        AccountEvent::TrainingCompleted {
            on: d,
            at: at(2024, 2, 1),
        },
    ]
}

/// R-ACC-3: Engaged needs an update training every 2 years; a lapsed update moves the account
/// to the Flexible terms.
#[test]
fn an_engaged_account_whose_update_training_lapsed_moves_to_flexible() {
    let history = engaged_trained_on(day(2024, 2, 15));
    assert_eq!(
        state(history.clone()).training_due(),
        Some(day(2026, 2, 15))
    );
    let when = at(2026, 2, 16);
    let flexible = terms(PlanKind::Flexible, when);
    Test::with(())
        .given(history.clone())
        .when(AccountCommand::ApplyTrainingLapse {
            flexible_terms: flexible.clone(),
            at: when,
        })
        .then_expect_events(vec![AccountEvent::PlanChanged {
            terms: flexible.clone(),
            billing: crate::config::SubscriptionBilling::Monthly,
            reason: PlanChangeReason::TrainingLapsed,
            at: when,
        }]);
    let mut after = history;
    after.push(AccountEvent::PlanChanged {
        terms: flexible,
        billing: crate::config::SubscriptionBilling::Monthly,
        reason: PlanChangeReason::TrainingLapsed,
        at: when,
    });
    assert_eq!(state(after).plan(), PlanKind::Flexible);
}

/// R-ACC-3
#[test]
fn an_engaged_account_with_a_training_in_time_does_not_lapse() {
    Test::with(())
        .given(engaged_trained_on(day(2024, 2, 15)))
        .when(AccountCommand::ApplyTrainingLapse {
            flexible_terms: terms(PlanKind::Flexible, at(2026, 2, 15)),
            at: at(2026, 2, 15),
        })
        .then_expect_error(AccountError::NotLapsed {
            due: day(2026, 2, 15),
        });
}

/// R-ACC-3: without any training, the integration training is due within the first year.
#[test]
fn an_engaged_account_without_integration_training_lapses_after_a_year() {
    let history = vec![opened_on(PlanKind::Engaged, at(2024, 2, 1))];
    assert_eq!(state(history.clone()).training_due(), Some(day(2025, 2, 1)));
    Test::with(())
        .given(history.clone())
        .when(AccountCommand::ApplyTrainingLapse {
            flexible_terms: terms(PlanKind::Flexible, at(2025, 1, 31)),
            at: at(2025, 1, 31),
        })
        .then_expect_error(AccountError::NotLapsed {
            due: day(2025, 2, 1),
        });
    let result = Test::with(())
        .given(history)
        .when(AccountCommand::ApplyTrainingLapse {
            flexible_terms: terms(PlanKind::Flexible, at(2025, 2, 2)),
            at: at(2025, 2, 2),
        })
        .inspect_result();
    assert!(matches!(
        result.as_deref(),
        Ok([AccountEvent::PlanChanged {
            reason: PlanChangeReason::TrainingLapsed,
            ..
        }])
    ));
}

/// R-ACC-3
#[test]
fn a_plan_without_training_never_lapses() {
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::ApplyTrainingLapse {
            flexible_terms: terms(PlanKind::Flexible, at(2030, 1, 1)),
            at: at(2030, 1, 1),
        })
        .then_expect_error(AccountError::NoTrainingDue {
            plan: PlanKind::Discovery,
        });
    Test::with(())
        .given(engaged_trained_on(day(2024, 2, 15)))
        .when(AccountCommand::ApplyTrainingLapse {
            flexible_terms: terms(PlanKind::Discovery, at(2030, 1, 1)),
            at: at(2030, 1, 1),
        })
        .then_expect_error(AccountError::NotFlexibleTerms {
            given: PlanKind::Discovery,
        });
}

// ---- R-ACC-5: products ------------------------------------------------------------------------------

/// R-ACC-5
#[test]
fn a_product_is_added_with_name_unit_price_vat_weight_and_packaging() {
    let wine = ProductDetails {
        name: "  Red wine  ".into(),
        unit: "bottle".into(),
        price_incl_vat: "9.50".parse().expect("amount"),
        vat: VatRate::Standard20,
        variable_weight: false,
        estimated_weight_kg: None,
        packaging_multiple: Some(6),
    };
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::AddProduct {
            access: owner_access(),
            product: apples(),
            details: wine.clone(),
        })
        .then_expect_events(vec![AccountEvent::ProductAdded {
            product: apples(),
            details: ProductDetails {
                name: "Red wine".into(),
                ..wine
            },
        }]);
}

/// R-ACC-5
#[test]
fn invalid_product_details_are_refused() {
    let cases: Vec<(ProductDetails, AccountError)> = vec![
        (
            ProductDetails {
                name: " ".into(),
                ..details()
            },
            AccountError::InvalidName,
        ),
        (
            ProductDetails {
                name: "x".repeat(MAX_NAME_CHARS + 1),
                ..details()
            },
            AccountError::InvalidName,
        ),
        (
            ProductDetails {
                unit: "".into(),
                ..details()
            },
            AccountError::InvalidUnit,
        ),
        (
            ProductDetails {
                unit: "u".repeat(MAX_UNIT_CHARS + 1),
                ..details()
            },
            AccountError::InvalidUnit,
        ),
        (
            ProductDetails {
                price_incl_vat: Money::ZERO,
                ..details()
            },
            AccountError::NonPositivePrice,
        ),
        (
            ProductDetails {
                price_incl_vat: Money::from_cents(-100),
                ..details()
            },
            AccountError::NonPositivePrice,
        ),
        (
            ProductDetails {
                packaging_multiple: Some(1),
                ..details()
            },
            AccountError::InvalidPackagingMultiple { given: 1 },
        ),
    ];
    for (bad, error) in cases {
        Test::with(())
            .given(vec![opened()])
            .when(AccountCommand::AddProduct {
                access: owner_access(),
                product: apples(),
                details: bad,
            })
            .then_expect_error(error);
    }
}

/// R-ACC-5
#[test]
fn a_product_id_is_added_once_and_only_known_products_are_updated() {
    Test::with(())
        .given(vec![opened(), added()])
        .when(AccountCommand::AddProduct {
            access: owner_access(),
            product: apples(),
            details: details(),
        })
        .then_expect_error(AccountError::ProductExists { product: apples() });
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::UpdateProduct {
            access: owner_access(),
            product: apples(),
            details: details(),
        })
        .then_expect_error(AccountError::UnknownProduct { product: apples() });
    let cheaper = ProductDetails {
        price_incl_vat: "2.90".parse().expect("amount"),
        ..details()
    };
    Test::with(())
        .given(vec![opened(), added()])
        .when(AccountCommand::UpdateProduct {
            access: colleague_access(),
            product: apples(),
            details: cheaper.clone(),
        })
        .then_expect_error(AccountError::NoAccess);
    Test::with(())
        .given(vec![opened(), added()])
        .when(AccountCommand::UpdateProduct {
            access: owner_access(),
            product: apples(),
            details: cheaper.clone(),
        })
        .then_expect_events(vec![AccountEvent::ProductUpdated {
            product: apples(),
            details: cheaper,
        }]);
}

/// R-ACC-5: archiving removes the product from every catalog at once (the order flow checks
/// `is_orderable` at order time); unarchiving restores it.
#[test]
fn archiving_a_product_makes_it_unorderable_everywhere_and_unarchiving_restores_it() {
    Test::with(())
        .given(vec![opened(), added()])
        .when(AccountCommand::ArchiveProduct {
            access: owner_access(),
            product: apples(),
        })
        .then_expect_events(vec![AccountEvent::ProductArchived { product: apples() }]);
    let archived = vec![
        opened(),
        added(),
        AccountEvent::ProductArchived { product: apples() },
    ];
    assert!(state(vec![opened(), added()]).is_orderable(apples()));
    assert!(!state(archived.clone()).is_orderable(apples()));
    assert!(state(archived.clone())
        .product(apples())
        .is_some_and(|p| p.archived));
    Test::with(())
        .given(archived.clone())
        .when(AccountCommand::ArchiveProduct {
            access: owner_access(),
            product: apples(),
        })
        .then_expect_error(AccountError::AlreadyArchived { product: apples() });
    Test::with(())
        .given(archived.clone())
        .when(AccountCommand::UnarchiveProduct {
            access: owner_access(),
            product: apples(),
        })
        .then_expect_events(vec![AccountEvent::ProductUnarchived { product: apples() }]);
    let mut restored = archived;
    restored.push(AccountEvent::ProductUnarchived { product: apples() });
    assert!(state(restored).is_orderable(apples()));
    Test::with(())
        .given(vec![opened(), added()])
        .when(AccountCommand::UnarchiveProduct {
            access: owner_access(),
            product: apples(),
        })
        .then_expect_error(AccountError::NotArchived { product: apples() });
    assert!(!state(vec![opened()]).is_orderable(apples()));
}

// ---- R-ACC-6: closing -------------------------------------------------------------------------------

fn closed() -> Vec<AccountEvent> {
    vec![
        opened(),
        granted(),
        added(),
        AccountEvent::AccountClosed { at: at(2025, 1, 1) },
    ]
}

/// R-ACC-6
#[test]
fn the_owner_closes_the_account() {
    Test::with(())
        .given(vec![opened(), added()])
        .when(AccountCommand::CloseAccount {
            access: owner_access(),
            at: at(2025, 1, 1),
        })
        .then_expect_events(vec![AccountEvent::AccountClosed { at: at(2025, 1, 1) }]);
}

/// R-ACC-6: a closed account refuses everything but reading.
#[test]
fn a_closed_account_refuses_every_command() {
    let commands = vec![
        open_command(PlanKind::Discovery, at(2025, 2, 1)),
        AccountCommand::GrantAccess {
            access: owner_access(),
            user: stranger(),
        },
        AccountCommand::RevokeAccess {
            access: owner_access(),
            user: colleague(),
        },
        AccountCommand::ChangePlan {
            access: owner_access(),
            billing: crate::config::SubscriptionBilling::Monthly,
            plan: PlanKind::Pro,
            terms: terms(PlanKind::Pro, at(2025, 2, 1)),
            at: at(2025, 2, 1),
        },
        AccountCommand::CompleteTraining {
            actor: Actor::system(),
            at: at(2025, 2, 1),
        },
        AccountCommand::ApplyTrainingLapse {
            flexible_terms: terms(PlanKind::Flexible, at(2025, 2, 1)),
            at: at(2025, 2, 1),
        },
        AccountCommand::AddProduct {
            access: owner_access(),
            product: ProductId(uuid::Uuid::from_u128(101)),
            details: details(),
        },
        AccountCommand::UpdateProduct {
            access: owner_access(),
            product: apples(),
            details: details(),
        },
        AccountCommand::ArchiveProduct {
            access: owner_access(),
            product: apples(),
        },
        AccountCommand::UnarchiveProduct {
            access: owner_access(),
            product: apples(),
        },
        AccountCommand::CloseAccount {
            access: owner_access(),
            at: at(2025, 2, 1),
        },
    ];
    for command in commands {
        let expected = if matches!(command, AccountCommand::OpenAccount { .. }) {
            AccountError::AlreadyOpened
        } else {
            AccountError::Closed
        };
        Test::with(())
            .given(closed())
            .when(command)
            .then_expect_error(expected);
    }
    let account = state(closed());
    assert!(!account.is_orderable(apples()));
    assert_eq!(
        account.access(Actor::new(owner(), Role::Producer)),
        Err(AccountError::Closed)
    );
    // Reading still works.
    assert!(account.product(apples()).is_some());
    assert_eq!(account.owner(), Some(owner()));
}

/// R-ACC-6: events and state hold ids only, so erasing a person's data outside the event store
/// leaves the history whole.
#[test]
fn account_events_and_state_carry_no_personal_data() {
    let opened_json = serde_json::to_value(opened()).expect("json");
    let fields: Vec<&str> = opened_json["AccountOpened"]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        vec!["at", "charter_version", "owner", "producer", "terms"]
    );
    assert_eq!(
        opened_json["AccountOpened"]["owner"],
        serde_json::json!(owner().to_string())
    );
    let granted_json = serde_json::to_value(granted()).expect("json");
    assert_eq!(
        granted_json,
        serde_json::json!({"AccessGranted": {"user": colleague().to_string()}})
    );
}

#[test]
fn the_account_state_round_trips_through_json_for_snapshots() {
    let account = state(vec![opened(), granted(), added()]);
    let json = serde_json::to_string(&account).expect("serialize");
    let back: ProducerAccount = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, account);
}

#[test]
fn every_error_has_a_stable_code() {
    assert_eq!(AccountError::NoAccess.code(), "NO_ACCESS");
    assert_eq!(AccountError::Closed.code(), "ACCOUNT_CLOSED");
    assert_eq!(
        AccountError::NotLapsed {
            due: day(2026, 1, 1)
        }
        .to_string(),
        "the training is not overdue: it is due by 2026-01-01"
    );
}

#[test]
fn events_are_named_after_their_variant() {
    use cqrs_es::DomainEvent;
    assert_eq!(opened().event_type(), "AccountOpened");
    assert_eq!(opened().event_version(), "1");
}

/// R-ACC-5: a variable-weight product needs an estimated weight per unit (the price is per kg);
/// a unit product has none.
#[test]
fn a_variable_weight_product_needs_an_estimated_weight_and_a_unit_product_none() {
    let mut without = details();
    without.variable_weight = true;
    without.estimated_weight_kg = None;
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::AddProduct {
            access: owner_access(),
            product: apples(),
            details: without,
        })
        .then_expect_error(AccountError::InvalidEstimatedWeight);
    let mut unit = details();
    unit.variable_weight = false;
    unit.estimated_weight_kg = Some(rust_decimal::Decimal::new(5, 1));
    Test::with(())
        .given(vec![opened()])
        .when(AccountCommand::AddProduct {
            access: owner_access(),
            product: apples(),
            details: unit,
        })
        .then_expect_error(AccountError::InvalidEstimatedWeight);
}
