//! R-ACC-3, plans that move, against PostgreSQL with the service's scheduler on a fake clock:
//! a platform administrator records trainings (the Member plan is granted by one; an Engaged
//! account's update is due 2 years after its last), and the daily training check moves an
//! Engaged account whose training is overdue to the Flexible terms, once, and nothing else.
//! Over HTTP against `etal serve`: `recordTraining` and its refusals, `lastTraining`,
//! `trainingDue`, and the Member plan reachable through `changePlan`.

use crate::graphql_common;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use etal_app::{AppError, Ctx};
use etal_domain::account::ProducerAccount;
use etal_domain::calendar::paris_date;
use etal_domain::config::{PlanKind, SubscriptionBilling};
use etal_domain::{Actor, Role};
use etal_tests::world::{actor, World};
use graphql_common::{code, Api};
use serde_json::json;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

async fn account(w: &World, id: etal_domain::ids::ProducerId) -> ProducerAccount {
    w.app.load::<ProducerAccount>(id).await.unwrap().0
}

/// R-ACC-3: Engaged needs the integration training within its first year, then an update every
/// 2 years; the daily check moves an overdue account to Flexible the day after it was due, and
/// leaves a trained one and a Pro one alone. A second run moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_acc_3_an_engaged_account_whose_training_lapsed_moves_to_flexible_terms() {
    let w = World::at(Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()).await;
    let platform = Ctx::new(actor(Role::PlatformAdmin));
    let untrained = w.producer(PlanKind::Engaged).await;
    let trained = w.producer(PlanKind::Engaged).await;
    let pro = w.producer(PlanKind::Pro).await;
    assert_eq!(
        account(&w, untrained.id).await.training_due(),
        Some(d(2027, 3, 2)),
        "the integration training within the first year"
    );
    assert_eq!(account(&w, pro.id).await.training_due(), None);

    // Refusals: not a platform administrator, a future date, an unknown account.
    let err = w
        .app
        .record_training(&trained.ctx(), trained.id, d(2026, 3, 2))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)), "{err:?}");
    let err = w
        .app
        .record_training(&platform, trained.id, d(2026, 3, 3))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let err = w
        .app
        .record_training(
            &platform,
            etal_domain::ids::ProducerId::new(),
            d(2026, 3, 2),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");

    // The trained one completed its integration on 1 March 2026: its update is due 2 years
    // later.
    w.app
        .record_training(&platform, trained.id, d(2026, 3, 1))
        .await
        .unwrap();
    let a = account(&w, trained.id).await;
    assert_eq!(a.last_training(), Some(d(2026, 3, 1)));
    assert_eq!(a.training_due(), Some(d(2028, 3, 1)));

    // The daily check of the due date itself moves nothing; the next day's moves the
    // untrained account (and schedules the day after).
    w.app.schedule_training_check(d(2027, 3, 2)).await.unwrap();
    w.advance_to(Utc.with_ymd_and_hms(2027, 3, 2, 12, 0, 0).unwrap())
        .await;
    assert_eq!(account(&w, untrained.id).await.plan(), PlanKind::Engaged);
    w.advance_to(Utc.with_ymd_and_hms(2027, 3, 3, 12, 0, 0).unwrap())
        .await;
    let lapsed = account(&w, untrained.id).await;
    assert_eq!(lapsed.plan(), PlanKind::Flexible);
    assert_eq!(lapsed.training_due(), None);
    assert_eq!(account(&w, trained.id).await.plan(), PlanKind::Engaged);
    assert_eq!(account(&w, pro.id).await.plan(), PlanKind::Pro);
    let lapses: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'producer_account' \
         AND event_type = 'PlanChanged' AND payload::text ILIKE '%lapsed%'",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(lapses, 1);
    // The chain goes on: tomorrow's check is scheduled, and it moves nothing more.
    let next: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM scheduled_commands WHERE kind = 'training_lapses' \
         AND status = 'pending' AND dedupe_key = 'trainings:2027-03-04'",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(next, 1);
    w.advance_to(Utc.with_ymd_and_hms(2027, 3, 4, 12, 0, 0).unwrap())
        .await;
    let lapses_after: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'producer_account' \
         AND event_type = 'PlanChanged'",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(lapses_after, 1, "nothing else changed plan");
}

/// R-ACC-3: the Member plan is granted by a training: refused before one is recorded,
/// accepted after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_acc_3_the_member_plan_is_reachable_once_a_training_is_recorded() {
    let w = World::at(Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()).await;
    let p = w.producer(PlanKind::Pro).await;
    let err = w
        .app
        .change_plan(
            &p.ctx(),
            p.id,
            PlanKind::Member,
            SubscriptionBilling::Monthly,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "TRAINING_REQUIRED");
    let platform = Ctx::new(Actor::new(
        etal_domain::ids::UserId::new(),
        Role::PlatformAdmin,
    ));
    w.app
        .record_training(&platform, p.id, paris_date(w.now()))
        .await
        .unwrap();
    w.app
        .change_plan(
            &p.ctx(),
            p.id,
            PlanKind::Member,
            SubscriptionBilling::Monthly,
        )
        .await
        .unwrap();
    assert_eq!(account(&w, p.id).await.plan(), PlanKind::Member);
    // A Member plan never lapses.
    assert_eq!(account(&w, p.id).await.training_due(), None);
}

const PRODUCER_Q: &str = "query($p: UUID!) { producer(id: $p) { plan lastTraining trainingDue } }";
const RECORD: &str = "mutation($p: UUID!, $on: Date, $k: String) { recordTraining(producerId: $p, completedOn: $on, idempotencyKey: $k) { producerId position } }";
const CHANGE_PLAN: &str =
    "mutation($p: UUID!, $plan: Plan!) { changePlan(producerId: $p, plan: $plan) { producerId } }";

/// R-ACC-3 over HTTP: a platform administrator records a training (a retry with the same key
/// answers the same); the producer then moves to MEMBER; the producer cannot record one, nor
/// can anyone for a future date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_acc_3_record_training_over_http_makes_member_reachable() {
    let api = Api::start(&[]).await;
    let producer = api.who(Role::Producer);
    let platform = api.who(Role::PlatformAdmin);
    let opened = api
        .ok(
            &producer,
            "mutation { openAccount(acceptedCharter: \"v2\", plan: ENGAGED) { producerId } }",
            json!({}),
        )
        .await;
    let p = opened["openAccount"]["producerId"]
        .as_str()
        .unwrap()
        .to_string();
    let today = paris_date(Utc::now());
    let before = api.ok(&producer, PRODUCER_Q, json!({"p": p})).await;
    assert_eq!(before["producer"]["plan"], "ENGAGED");
    assert_eq!(before["producer"]["lastTraining"], serde_json::Value::Null);
    let first_due = before["producer"]["trainingDue"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        first_due > today.to_string(),
        "due within the first year: {first_due}"
    );

    let refused = api
        .call(&producer, RECORD, json!({"p": p, "on": today.to_string()}))
        .await;
    assert_eq!(code(&refused).as_deref(), Some("FORBIDDEN"), "{refused}");
    let future = (today + Duration::days(1)).to_string();
    let refused = api
        .call(&platform, RECORD, json!({"p": p, "on": future}))
        .await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("BAD_USER_INPUT"),
        "{refused}"
    );

    let first = api
        .ok(
            &platform,
            RECORD,
            json!({"p": p, "on": today.to_string(), "k": "t-1"}),
        )
        .await;
    let again = api
        .ok(
            &platform,
            RECORD,
            json!({"p": p, "on": today.to_string(), "k": "t-1"}),
        )
        .await;
    assert_eq!(first, again, "a retry answers the same");
    let after = api.ok(&producer, PRODUCER_Q, json!({"p": p})).await;
    assert_eq!(after["producer"]["lastTraining"], today.to_string());
    let due = after["producer"]["trainingDue"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(due > first_due, "the update is due 2 years after: {due}");
    let trained: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'TrainingCompleted'",
    )
    .bind(&p)
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(trained, 1, "the retry wrote nothing");

    api.ok(&producer, CHANGE_PLAN, json!({"p": p, "plan": "MEMBER"}))
        .await;
    let member = api.ok(&producer, PRODUCER_Q, json!({"p": p})).await;
    assert_eq!(member["producer"]["plan"], "MEMBER");
    assert_eq!(member["producer"]["trainingDue"], serde_json::Value::Null);
}

/// R-ACC-3 over HTTP: a producer chooses how the Pro subscription is billed (`changePlan`
/// with `billing`), reads it back (`subscriptionBilling`), switches from yearly to monthly (the
/// same plan with another billing is a change), and the same choice again is refused
/// (ALREADY_ON_PLAN). Nothing is billed for the month the plan starts in (`payouts.debits` is
/// empty); the monthly runs are tested on the fake clock in `money.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_acc_3_a_producer_chooses_how_the_pro_subscription_is_billed() {
    let api = Api::start(&[]).await;
    let producer = api.who(Role::Producer);
    let d = api
        .ok(
            &producer,
            graphql_common::OPEN_ACCOUNT,
            json!({"k": "open-1"}),
        )
        .await;
    let p = d["openAccount"]["producerId"].as_str().unwrap().to_string();
    let change = "mutation($p: UUID!, $plan: Plan!, $b: SubscriptionBilling!, $k: String) { changePlan(producerId: $p, plan: $plan, billing: $b, idempotencyKey: $k) { producerId } }";
    let read = "query($p: UUID!) { producer(id: $p) { plan subscriptionBilling } payouts(producerId: $p) { debits { id kind amount } } }";
    api.ok(
        &producer,
        change,
        json!({"p": p, "plan": "PRO", "b": "YEARLY", "k": "pro-yearly"}),
    )
    .await;
    let got = api.ok(&producer, read, json!({"p": p})).await;
    assert_eq!(
        got,
        json!({"producer": {"plan": "PRO", "subscriptionBilling": "YEARLY"}, "payouts": {"debits": []}})
    );
    api.ok(
        &producer,
        change,
        json!({"p": p, "plan": "PRO", "b": "MONTHLY", "k": "pro-monthly"}),
    )
    .await;
    let got = api.ok(&producer, read, json!({"p": p})).await;
    assert_eq!(got["producer"]["subscriptionBilling"], "MONTHLY", "{got}");
    let refused = api
        .call(
            &producer,
            change,
            json!({"p": p, "plan": "PRO", "b": "MONTHLY", "k": "pro-monthly-again"}),
        )
        .await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("ALREADY_ON_PLAN"),
        "{refused}"
    );
}
