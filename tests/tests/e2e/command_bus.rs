//! The command bus: idempotency keys, conflicts under concurrency, positions, metadata.

use std::collections::HashMap;
use std::sync::Arc;

use etal_domain::{Actor, Role, SystemClock};
use etal_store::log::EventLog;
use etal_store::{BusError, CommandBus, CommandContext};
use etal_tests::tally::{Tally, TallyCommand, TallyError};
use etal_tests::TestDb;

fn actor() -> Actor {
    Actor::new(etal_domain::ids::UserId::new(), Role::Producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_with_one_key_write_one_set_of_events() {
    let db = TestDb::new(40).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    let ctx = CommandContext::new(actor()).with_idempotency("key-1", "add 5 to t1");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let bus = bus.clone();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            bus.execute::<Tally>(
                "t1",
                TallyCommand::AddMany {
                    tag: "once".into(),
                    count: 3,
                },
                &(),
                &ctx,
            )
            .await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(
            t.await
                .unwrap()
                .expect("every call succeeds with the first outcome"),
        );
    }
    let first = outcomes[0].clone();
    assert_eq!(first.events.len(), 3);
    for o in &outcomes {
        assert_eq!(
            o.events, first.events,
            "every caller sees the same events and positions"
        );
    }
    assert_eq!(
        outcomes.iter().filter(|o| !o.replayed).count(),
        1,
        "exactly one call wrote; the others got the recorded outcome"
    );
    let stream = EventLog::stream(&db.pool, "tally", "t1").await.unwrap();
    assert_eq!(stream.len(), 3, "one set of events");
    assert_eq!(stream[0].metadata["idempotency_key"], "key-1");
}

#[tokio::test]
async fn the_same_key_with_another_command_is_refused_and_writes_nothing() {
    let db = TestDb::new(5).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    // Design property 5: the same caller.
    let caller = actor();
    let first = CommandContext::new(caller).with_idempotency("k", "add 1");
    bus.execute::<Tally>(
        "t",
        TallyCommand::Add {
            tag: "a".into(),
            amount: 1,
        },
        &(),
        &first,
    )
    .await
    .unwrap();
    let other = CommandContext::new(caller).with_idempotency("k", "add 2");
    let err = bus
        .execute::<Tally>(
            "t",
            TallyCommand::Add {
                tag: "b".into(),
                amount: 2,
            },
            &(),
            &other,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, BusError::IdempotencyKeyReused { ref key } if key == "k"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        EventLog::stream(&db.pool, "tally", "t")
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Design property 5: an idempotency key is scoped to its caller; another caller's identical
/// key is an unrelated request that writes its own events and never sees the first outcome.
#[tokio::test]
async fn another_callers_identical_key_is_an_unrelated_request() {
    let db = TestDb::new(5).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    let add = |tag: &str| TallyCommand::Add {
        tag: tag.into(),
        amount: 1,
    };
    let one = CommandContext::new(actor()).with_idempotency("o-1", "add");
    let two = CommandContext::new(actor()).with_idempotency("o-1", "add");
    let a = bus
        .execute::<Tally>("t", add("a"), &(), &one)
        .await
        .unwrap();
    let b = bus
        .execute::<Tally>("t", add("b"), &(), &two)
        .await
        .unwrap();
    assert!(!a.replayed && !b.replayed, "both wrote");
    assert_ne!(a.events, b.events);
    let again = bus
        .execute::<Tally>("t", add("a"), &(), &one)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        again.events, a.events,
        "the first caller's retry gets its own outcome"
    );
    assert_eq!(
        EventLog::stream(&db.pool, "tally", "t")
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_refused_command_writes_nothing() {
    let db = TestDb::new(5).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    let err = bus
        .execute::<Tally>(
            "t",
            TallyCommand::Add {
                tag: "x".into(),
                amount: -3,
            },
            &(),
            &CommandContext::new(actor()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.rejection(), Some(&TallyError::NotPositive(-3)));
    assert!(EventLog::stream(&db.pool, "tally", "t")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_commands_on_one_aggregate_are_each_committed_once_or_told_to_retry() {
    let db = TestDb::new(60).await;
    // Few attempts, so that some commands do exhaust them and report the retryable error.
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock)).with_max_attempts(3);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let r = bus
                .execute::<Tally>(
                    "hot",
                    TallyCommand::Add {
                        tag: format!("c{i}"),
                        amount: 1,
                    },
                    &(),
                    &CommandContext::new(actor()),
                )
                .await;
            (format!("c{i}"), r)
        }));
    }
    let mut committed = Vec::new();
    let mut retryable = 0;
    for t in tasks {
        let (tag, r) = t.await.unwrap();
        match r {
            Ok(o) => {
                assert_eq!(o.events.len(), 1);
                committed.push(tag)
            }
            Err(e) => {
                assert!(
                    matches!(e, BusError::Conflict { .. }),
                    "only conflicts may fail: {e:?}"
                );
                assert!(e.is_retryable());
                retryable += 1;
            }
        }
    }
    assert_eq!(committed.len() + retryable, 50);
    let stream = EventLog::stream(&db.pool, "tally", "hot").await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, e) in stream.iter().enumerate() {
        assert_eq!(e.sequence, i as i64 + 1, "sequences are dense");
        *seen
            .entry(e.payload["Added"]["tag"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        committed.len(),
        "no committed command lost, no failed one written"
    );
    for tag in &committed {
        assert_eq!(seen.get(tag), Some(&1), "{tag} written exactly once");
    }
    let (state, last) = bus.load::<Tally>("hot").await.unwrap();
    assert_eq!(state.total as usize, committed.len());
    assert_eq!(last as usize, committed.len());
}

#[tokio::test]
async fn a_command_returns_the_global_positions_it_wrote_and_stores_its_metadata() {
    let db = TestDb::new(5).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    let who = actor();
    let ctx = CommandContext::new(who).caused_by("test");
    let a = bus
        .execute::<Tally>(
            "p",
            TallyCommand::AddMany {
                tag: "x".into(),
                count: 2,
            },
            &(),
            &ctx,
        )
        .await
        .unwrap();
    let b = bus
        .execute::<Tally>(
            "p",
            TallyCommand::Add {
                tag: "y".into(),
                amount: 1,
            },
            &(),
            &ctx,
        )
        .await
        .unwrap();
    assert!(a.last_position().unwrap() < b.last_position().unwrap());
    let stream = EventLog::stream(&db.pool, "tally", "p").await.unwrap();
    let positions: Vec<_> = stream.iter().map(|e| e.position).collect();
    let written: Vec<_> = a
        .events
        .iter()
        .chain(&b.events)
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, written);
    assert_eq!(stream[0].metadata["actor"]["user"], who.user.to_string());
    assert_eq!(
        stream[0].metadata["correlation_id"],
        ctx.correlation_id.to_string()
    );
    assert_eq!(stream[0].metadata["causation"], "test");
}

/// Design property 6: loading cost depends on the events since the last snapshot, not history.
#[tokio::test]
async fn loading_an_aggregate_replays_only_the_events_after_its_snapshot() {
    let db = TestDb::new(5).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    let ctx = CommandContext::new(actor());
    for _ in 0..10 {
        bus.execute::<Tally>(
            "long",
            TallyCommand::AddMany {
                tag: "h".into(),
                count: 101,
            },
            &(),
            &ctx,
        )
        .await
        .unwrap();
    }
    let (state, last) = bus.load::<Tally>("long").await.unwrap();
    assert_eq!((state.total, last), (1010, 1010));
    let snap: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM snapshots WHERE aggregate_id = 'long'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(snap, 1010, "the snapshot follows the stream");
    // A corrupted or outdated snapshot is ignored: the state is rebuilt from the events.
    sqlx::query("UPDATE snapshots SET state_version = 99 WHERE aggregate_id = 'long'")
        .execute(&db.pool)
        .await
        .unwrap();
    let (state, _) = bus.load::<Tally>("long").await.unwrap();
    assert_eq!(state.total, 1010);
}

/// Design property 6 at scale: an aggregate with 100,000 past events loads by replaying only the
/// events since its last snapshot, like a fresh one. (Timings are measured in `make bench`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_with_a_hundred_thousand_events_replays_no_more_than_a_fresh_one() {
    let db = TestDb::new(5).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    let ctx = CommandContext::new(actor());
    for _ in 0..100 {
        bus.execute::<Tally>(
            "old",
            TallyCommand::AddMany {
                tag: "y".into(),
                count: 1000,
            },
            &(),
            &ctx,
        )
        .await
        .unwrap();
    }
    bus.execute::<Tally>(
        "old",
        TallyCommand::Add {
            tag: "z".into(),
            amount: 1,
        },
        &(),
        &ctx,
    )
    .await
    .unwrap();
    bus.execute::<Tally>(
        "fresh",
        TallyCommand::Add {
            tag: "z".into(),
            amount: 1,
        },
        &(),
        &ctx,
    )
    .await
    .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let started = std::time::Instant::now();
    let (old, last, replayed_old) = etal_store::bus::load_counting::<Tally>(&mut conn, "old")
        .await
        .unwrap();
    let old_time = started.elapsed();
    let started = std::time::Instant::now();
    let (_, _, replayed_fresh) = etal_store::bus::load_counting::<Tally>(&mut conn, "fresh")
        .await
        .unwrap();
    let fresh_time = started.elapsed();
    assert_eq!((old.total, last), (100_001, 100_001));
    assert!(
        replayed_old <= 1,
        "replayed {replayed_old} events of 100,001"
    );
    assert_eq!(replayed_fresh, 1);
    println!("load with 100,001 events of history: {old_time:?}; fresh: {fresh_time:?}");
}

/// The outbox's settlement (design property 5b): a deliverer's record of the provider's answer
/// commits only while the message is owed. Two deliverers settling one message at once, each
/// with an event on a stream of its own (no stream conflict to save them): one commits, the
/// other writes nothing at all, neither its event nor a second attempt record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_settlements_of_one_outbox_message_commit_once_and_the_other_writes_nothing() {
    use etal_store::{Changes, CommitError, OutboxMessage, Stream};
    let db = TestDb::new(5).await;
    let bus = Arc::new(CommandBus::new(db.pool.clone(), Arc::new(SystemClock)));
    let ctx = CommandContext::new(actor());
    for round in 0..20 {
        let id = uuid::Uuid::new_v4();
        let mut owe = Changes::new();
        owe.send(OutboxMessage::new(id, "charge", serde_json::json!({})));
        bus.commit(&owe, &ctx, &serde_json::Value::Null)
            .await
            .unwrap();
        let settle = |who: &'static str| {
            let bus = bus.clone();
            let ctx = ctx.clone();
            async move {
                let mut s = Stream::<Tally>::new(format!("{who}-{round}"), Tally::default(), 0);
                s.decide(|_| {
                    Ok::<_, TallyError>(vec![etal_tests::tally::TallyEvent::Added {
                        tag: who.into(),
                        amount: 1,
                    }])
                })
                .unwrap();
                let mut c = Changes::new();
                c.stream(&s).unwrap();
                c.settle_outbox(id, 1, true, serde_json::json!({ "by": who }));
                bus.commit(&c, &ctx, &serde_json::Value::Null).await
            }
        };
        let (a, b) = tokio::join!(settle("a"), settle("b"));
        let won: Vec<bool> = [&a, &b].iter().map(|r| r.is_ok()).collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {a:?} {b:?}"
        );
        for r in [&a, &b] {
            if let Err(e) = r {
                assert!(matches!(e, CommitError::Conflict), "round {round}: {e:?}");
            }
        }
        let streams: Vec<String> = sqlx::query_scalar(
            "SELECT aggregate_id FROM events WHERE aggregate_type = 'tally' AND aggregate_id LIKE $1",
        )
        .bind(format!("%-{round}"))
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            streams.len(),
            1,
            "round {round}: only the winner's event: {streams:?}"
        );
        let (status, by, attempts): (String, String, i64) = sqlx::query_as(
            "SELECT status, result->>'by', (SELECT count(*) FROM outbox_attempts WHERE outbox_id = $1) \
             FROM outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(status, "delivered");
        assert_eq!(
            format!("{by}-{round}"),
            streams[0],
            "the result is the winner's"
        );
        assert_eq!(attempts, 1);
    }
}
