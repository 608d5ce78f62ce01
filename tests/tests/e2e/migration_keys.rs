//! Design property 5: the migration to caller-scoped idempotency keys moves the existing records:
//! each takes the caller recorded with the events it wrote, keeps its first outcome for that
//! caller, and means nothing to another caller.

use std::sync::Arc;

use etal_domain::ids::UserId;
use etal_domain::{Actor, Role, SystemClock};
use etal_store::bus::CommandBus;
use etal_store::db::MIGRATOR;
use etal_store::Idempotency;
use sha2::{Digest, Sha256};
use sqlx::Executor;

const ONE_COMMIT: i64 = 20261201000001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_keys_are_scoped_to_the_caller_that_wrote_them() {
    let base = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests with `make test`");
    let admin = etal_store::db::connect(&base, 1).await.unwrap();
    let name = format!("etal_test_{}", uuid::Uuid::now_v7().simple());
    admin
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap();
    let url = etal_store::testkit::url_for(&name);
    let pool = etal_store::db::connect(&url, 4).await.unwrap();

    // The schema as it was before the migration.
    for m in MIGRATOR.iter().filter(|m| m.version < ONE_COMMIT) {
        pool.execute(&*m.sql).await.unwrap();
    }
    let customer = Actor::new(UserId::new(), Role::Customer);
    let order = uuid::Uuid::now_v7().to_string();
    let metadata = serde_json::json!({
        "actor": customer, "correlation_id": uuid::Uuid::now_v7(), "causation": null,
        "idempotency_key": "o-1:place", "at": chrono::Utc::now(),
    });
    let written: (i64, i64) = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata, recorded_at) \
         VALUES ('order', $1, 1, 'OrderPlaced', '1', '{}', $2, now()) \
         RETURNING transaction_id::text::bigint, global_position",
    )
    .bind(&order)
    .bind(&metadata)
    .fetch_one(&pool)
    .await
    .unwrap();
    let outcome = serde_json::json!({
        "aggregate_type": "order", "aggregate_id": order,
        "events": [{ "sequence": 1, "position": { "txid": written.0, "position": written.1 },
                     "event_type": "OrderPlaced" }],
    });
    let fingerprint = "fp:place";
    sqlx::query(
        "INSERT INTO idempotency_keys (key, aggregate_type, aggregate_id, command_hash, outcome, created_at) \
         VALUES ('o-1:place', 'order', $1, $2, $3, now())",
    )
    .bind(&order)
    .bind(hex::encode(Sha256::digest(fingerprint.as_bytes())))
    .bind(&outcome)
    .execute(&pool)
    .await
    .unwrap();
    // A record whose events are gone from the metadata (written by the service itself).
    sqlx::query(
        "INSERT INTO idempotency_keys (key, aggregate_type, aggregate_id, command_hash, outcome, created_at) \
         VALUES ('orphan', 'order', 'x', 'h', '{\"aggregate_type\":\"order\",\"aggregate_id\":\"x\",\"events\":[]}', now())",
    )
    .execute(&pool)
    .await
    .unwrap();

    // The migration, then every later one, as `etal migrate` runs them.
    for m in MIGRATOR.iter().filter(|m| m.version >= ONE_COMMIT) {
        pool.execute(&*m.sql).await.unwrap();
    }
    let scopes: Vec<(String, String)> =
        sqlx::query_as("SELECT key, scope FROM idempotency_keys ORDER BY key")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        scopes,
        vec![
            ("o-1:place".to_string(), customer.user.to_string()),
            ("orphan".to_string(), "unknown".to_string()),
        ]
    );

    let bus = CommandBus::new(pool.clone(), Arc::new(SystemClock));
    let idem = Idempotency {
        key: "o-1:place".into(),
        fingerprint: fingerprint.into(),
    };
    let recorded = bus
        .recorded(&customer, &idem)
        .await
        .unwrap()
        .expect("the caller's record");
    assert_eq!(recorded.result, outcome, "the first outcome, as it was");
    assert_eq!(
        recorded.position,
        Some(etal_store::Position {
            txid: written.0,
            position: written.1
        })
    );
    assert!(recorded.outbox.is_empty());
    let stranger = Actor::new(UserId::new(), Role::Customer);
    assert!(
        bus.recorded(&stranger, &idem).await.unwrap().is_none(),
        "another caller's identical key is unrelated"
    );
    // The old outcome still reads as the command's outcome.
    let again: etal_store::CommandOutcome = serde_json::from_value(recorded.result).unwrap();
    assert_eq!(again.events.len(), 1);
    pool.close().await;
    let _ = admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\"").as_str())
        .await;
}
