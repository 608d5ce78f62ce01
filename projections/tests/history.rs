//! Event history for auditors: by aggregate, by global position, by time, with who, when and the
//! idempotency key, paginated with keyset cursors that never skip nor repeat an event.

mod common;

use common::*;
use etal_domain::account::{AccountEvent, ProducerAccount};
use etal_domain::ids::{ProducerId, UserId};
use etal_domain::Actor;
use etal_projections::history;
use etal_store::log::Position;

fn granted() -> AccountEvent {
    AccountEvent::AccessGranted {
        user: UserId::new(),
    }
}

#[tokio::test]
async fn history_pages_by_aggregate_position_and_time_without_gaps_or_repeats() {
    let db = TestDb::new(4).await;
    let (a, b) = (ProducerId::new().to_string(), ProducerId::new().to_string());
    // a: 5 events on 1 March; b: 3 events on 2 March; a: 2 more on 3 March.
    append_events::<ProducerAccount>(&db.pool, &a, &vec![granted(); 5], at(2026, 3, 1, 9)).await;
    append_events::<ProducerAccount>(&db.pool, &b, &vec![granted(); 3], at(2026, 3, 2, 9)).await;
    append_events::<ProducerAccount>(&db.pool, &a, &vec![granted(); 2], at(2026, 3, 3, 9)).await;
    // One written through a command with an idempotency key.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at) \
         VALUES ('producer_account', $1, 4, 'AccessGranted', '1', $2, $3, $4)",
    )
    .bind(&b)
    .bind(serde_json::to_value(granted()).unwrap())
    .bind(serde_json::json!({"actor": Actor::system(), "at": at(2026, 3, 4, 9), "idempotency_key": "k-42"}))
    .bind(at(2026, 3, 4, 9))
    .execute(&db.pool)
    .await
    .unwrap();

    // By aggregate, 3 per page: sequences 1-3, 4-6, 7.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = history::by_aggregate(&db.pool, "producer_account", &a, after, 3)
            .await
            .unwrap();
        seen.extend(page.entries.iter().map(|e| e.sequence));
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (1..=7).collect::<Vec<i64>>());

    // By position, 4 per page: every event once, in global order.
    let mut all = Vec::new();
    let mut cursor = Position::START;
    for _ in 0..100 {
        let page = history::by_position(&db.pool, cursor, None, 4)
            .await
            .unwrap();
        all.extend(
            page.entries
                .iter()
                .map(|e| (e.position, e.aggregate_id.clone())),
        );
        match page.next {
            Some(next) => cursor = next,
            None if all.len() == 11 => break,
            // Events can stay below the cluster-wide watermark for a moment: ask again.
            None => {
                if let Some(last) = page.entries.last() {
                    cursor = last.position;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
        }
    }
    assert_eq!(all.len(), 11);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let first = &all[..5];
    assert!(first.iter().all(|(_, id)| id == &a));

    // By time: 2 and 3 March only, 2 per page.
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = history::by_time(&db.pool, at(2026, 3, 2, 0), at(2026, 3, 4, 0), after, 2)
            .await
            .unwrap();
        entries.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.aggregate_id.as_str(), e.sequence))
        .collect();
    assert_eq!(
        got,
        vec![
            (b.as_str(), 1),
            (b.as_str(), 2),
            (b.as_str(), 3),
            (a.as_str(), 6),
            (a.as_str(), 7)
        ]
    );
    assert_eq!(entries[0].at, Some(at(2026, 3, 2, 9)));
    assert_eq!(
        entries[0].actor,
        Some(serde_json::to_value(Actor::system()).unwrap())
    );
    assert_eq!(entries[0].idempotency_key, None);

    // Who, when and the idempotency key.
    let last = history::by_aggregate(&db.pool, "producer_account", &b, 3, 10)
        .await
        .unwrap();
    assert_eq!(last.entries.len(), 1);
    assert_eq!(last.entries[0].idempotency_key.as_deref(), Some("k-42"));
    assert_eq!(last.entries[0].at, Some(at(2026, 3, 4, 9)));
    assert_eq!(last.next, None);
}
