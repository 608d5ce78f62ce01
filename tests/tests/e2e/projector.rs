//! Design properties 2 and 3: projections are exactly-once in effect and rebuildable.

use std::sync::Arc;
use std::time::Duration;

use etal_domain::{Actor, SystemClock};
use etal_projections::event_counts::{self, EventCount};
use etal_store::{CommandBus, CommandContext};
use etal_tests::tally::{Tally, TallyCommand};
use etal_tests::{run_etal, spawn_etal, TestDb};
use tokio::sync::watch;

async fn write_events(bus: &CommandBus, aggregates: usize, per_command: u32, commands: usize) {
    let ctx = CommandContext::new(Actor::system());
    for c in 0..commands {
        bus.execute::<Tally>(
            &format!("a{}", c % aggregates),
            TallyCommand::AddMany {
                tag: format!("c{c}"),
                count: per_command,
            },
            &(),
            &ctx,
        )
        .await
        .unwrap();
    }
}

async fn total_counted(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(events), 0)::bigint FROM event_counts")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn total_events(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn verify_names_every_altered_row_and_rebuild_repairs_it() {
    let db = TestDb::new(10).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    write_events(&bus, 3, 4, 30).await;
    let projection = etal_projections::by_name("event_counts").unwrap();
    etal_tests::catch_up_all(&db.pool, projection.as_ref(), 500).await;
    assert_eq!(
        event_counts::list(&db.pool).await.unwrap(),
        vec![EventCount {
            aggregate_type: "tally".into(),
            event_type: "Added".into(),
            events: 120
        }]
    );
    let clean = etal_projections::verify(&db.pool, projection.as_ref(), &|_| {})
        .await
        .unwrap();
    assert!(clean.diffs.is_empty(), "{:?}", clean.diffs);
    assert_eq!(clean.rows_compared, 1);

    // Tamper: change one row, add one the events do not justify.
    sqlx::query("UPDATE event_counts SET events = 119")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO event_counts VALUES ('ghost', 'Spooked', 1)")
        .execute(&db.pool)
        .await
        .unwrap();
    let report = etal_projections::verify(&db.pool, projection.as_ref(), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.diffs.len(), 2, "{:?}", report.diffs);
    let changed = report
        .diffs
        .iter()
        .find(|d| d.key["aggregate_type"] == "tally")
        .unwrap();
    assert_eq!(changed.live.as_ref().unwrap()["events"], 119);
    assert_eq!(changed.rebuilt.as_ref().unwrap()["events"], 120);
    let ghost = report
        .diffs
        .iter()
        .find(|d| d.key["aggregate_type"] == "ghost")
        .unwrap();
    assert!(ghost.rebuilt.is_none());

    // The CLI says the same and exits 3; a rebuild repairs; verify then passes.
    let (code, out, _) = run_etal(&db.url, &["projections", "verify", "--all"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("ghost") && out.contains("119"), "{out}");
    let (code, out, err) = run_etal(&db.url, &["projections", "rebuild", "event_counts"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rebuilt event_counts: 120 events"), "{out}");
    let (code, out, _) = run_etal(&db.url, &["projections", "verify", "event_counts"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 differences"), "{out}");
    let (code, _, err) = run_etal(&db.url, &["projections", "verify", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown projection 'nope'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_projector_instances_never_apply_an_event_twice() {
    let db = TestDb::new(30).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    let (stop, shutdown) = watch::channel(false);
    let mut runners = Vec::new();
    for _ in 0..3 {
        runners.push(tokio::spawn(etal_projections::run_projector(
            db.pool.clone(),
            etal_projections::by_name("event_counts").unwrap(),
            shutdown.clone(),
        )));
    }
    // Also a catch-up outside the advisory lock, racing the leader: the checkpoint row lock
    // alone must keep them from applying the same batch.
    let racer = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            let p = etal_projections::by_name("event_counts").unwrap();
            for _ in 0..50 {
                etal_projections::catch_up(&pool, p.as_ref(), None, None, &|_| {})
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let ctx = CommandContext::new(Actor::system());
                for c in 0..40 {
                    bus.execute::<Tally>(
                        &format!("w{w}"),
                        TallyCommand::AddMany {
                            tag: format!("{c}"),
                            count: 3,
                        },
                        &(),
                        &ctx,
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    racer.await.unwrap();
    assert!(etal_tests::wait_all_applied(&db.pool, "event_counts", Duration::from_secs(60)).await);
    stop.send(true).unwrap();
    for r in runners {
        r.await.unwrap();
    }
    assert_eq!(total_events(&db.pool).await, 480);
    assert_eq!(total_counted(&db.pool).await, 480);
}

#[tokio::test]
async fn a_reader_can_wait_until_a_projection_has_passed_its_write() {
    let db = TestDb::new(10).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    let (stop, shutdown) = watch::channel(false);
    let runner = tokio::spawn(etal_projections::run_projector(
        db.pool.clone(),
        etal_projections::by_name("event_counts").unwrap(),
        shutdown,
    ));
    let outcome = bus
        .execute::<Tally>(
            "rw",
            TallyCommand::Add {
                tag: "x".into(),
                amount: 1,
            },
            &(),
            &CommandContext::new(Actor::system()),
        )
        .await
        .unwrap();
    let reached = etal_projections::wait_until(
        &db.pool,
        "event_counts",
        outcome.last_position().unwrap(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(reached);
    assert_eq!(
        total_counted(&db.pool).await,
        1,
        "the write is visible right after the wait"
    );
    // A position nobody will reach times out, false.
    let mut beyond = outcome.last_position().unwrap();
    beyond.txid += 1_000_000;
    assert!(!etal_projections::wait_until(
        &db.pool,
        "event_counts",
        beyond,
        Duration::from_millis(50)
    )
    .await
    .unwrap());
    stop.send(true).unwrap();
    runner.await.unwrap();
}

/// The projector process is killed with SIGKILL again and again while it catches up with a
/// backlog and while new events arrive; afterwards the projection equals a rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_killed_mid_batch_again_and_again_ends_equal_to_a_rebuild() {
    let db = TestDb::new(20).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    // A backlog, so that most of the projector's time is spent inside batches, and a writer that
    // keeps appending while the projector is killed.
    write_events(&bus, 20, 100, 600).await;
    let (stop_writing, mut stopped) = watch::channel(false);
    let writer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut commands = 0u64;
            while !*stopped.borrow_and_update() {
                write_events(&bus, 7, 50, 10).await;
                commands += 10;
            }
            commands
        })
    };
    let mut kills = 0;
    let mut progress_at_kills = Vec::new();
    let mut last = total_counted(&db.pool).await;
    for round in 0..15u64 {
        let mut proc = spawn_etal(&db.url, &["projections", "run"], &[]);
        // Kill it while it works: once it has committed something, a little later, mid-batch.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while total_counted(&db.pool).await == last {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the projector never progressed"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis((round * 7) % 25)).await;
        proc.0.kill().expect("SIGKILL the projector");
        proc.0.wait().unwrap();
        kills += 1;
        last = total_counted(&db.pool).await;
        progress_at_kills.push(last);
    }
    stop_writing.send(true).unwrap();
    let extra_commands = writer.await.unwrap();
    println!("counted at each kill: {progress_at_kills:?}");
    // Let a last projector finish the work, then compare with a rebuild.
    let proc = spawn_etal(&db.url, &["projections", "run"], &[]);
    assert!(
        etal_tests::wait_all_applied(&db.pool, "event_counts", Duration::from_secs(120)).await,
        "the projector caught up after {kills} kills"
    );
    drop(proc);
    assert!(
        progress_at_kills.windows(2).all(|w| w[0] < w[1]),
        "the projector made progress between kills: {progress_at_kills:?}"
    );
    assert_eq!(total_counted(&db.pool).await, total_events(&db.pool).await);
    assert_eq!(
        total_events(&db.pool).await,
        600 * 100 + extra_commands as i64 * 50
    );
    let report = etal_projections::verify(
        &db.pool,
        etal_projections::by_name("event_counts").unwrap().as_ref(),
        &|_| {},
    )
    .await
    .unwrap();
    assert!(report.diffs.is_empty(), "{:?}", report.diffs);
}

/// The shared read of the log (ADR 0019): what the feed gives each reader of `etal serve`,
/// batch after batch, is exactly what that reader's own read of the log returns (its aggregate
/// types, its payloads and metadata or `null`), on a generated network of every event type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_read_gives_each_projection_what_its_own_read_gives() {
    use etal_projections::feed::{LogFeed, View};
    use etal_tests::bench::generator::{generate, Shape};
    let db = TestDb::new(8).await;
    let plans = etal_tests::world::plans();
    let shape = |seed| Shape {
        producers: 3,
        markets: 3,
        weeks: 3,
        orders: 100,
        seed,
    };
    generate(&db.pool, shape(1), &plans, |_| {}, &|_| {})
        .await
        .unwrap();
    // The feed's first read starts it at the head; what is written next, it reads.
    let feed = LogFeed::new();
    let mut conn = db.pool.acquire().await.unwrap();
    let start = etal_store::log::EventLog::head(&db.pool).await.unwrap();
    assert!(matches!(
        feed.view(&mut conn, start, std::time::Instant::now())
            .await
            .unwrap(),
        View::Nothing { .. }
    ));
    assert!(matches!(
        feed.view(
            &mut conn,
            etal_store::log::Position::START,
            std::time::Instant::now()
        )
        .await
        .unwrap(),
        View::Outside
    ));
    generate(&db.pool, shape(2), &plans, |_| {}, &|_| {})
        .await
        .unwrap();
    let head = etal_store::log::EventLog::head(&db.pool).await.unwrap();
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2)",
    )
    .bind(start.txid.to_string())
    .bind(start.position)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        written as usize <= etal_projections::feed::HELD && written > 500,
        "{written} events written"
    );
    let woke = std::time::Instant::now();
    for projection in etal_projections::readers() {
        let name = projection.name();
        let (mut from, mut via_feed, mut batches) = (start, Vec::new(), 0);
        loop {
            match feed.view(&mut conn, from, woke).await.unwrap() {
                View::Ahead => {}
                View::Nothing { behind } => {
                    assert!(!behind, "{name}");
                    break;
                }
                View::Outside => panic!("{name}: {from} is before the feed"),
            }
            let taken = feed.take(projection.as_ref(), from, 97).unwrap();
            assert!(taken.to > from, "{name}");
            via_feed.extend(taken.events);
            from = taken.to;
            batches += 1;
        }
        assert_eq!(from, head, "{name}: the feed ends at the head");
        let own = etal_projections::runtime::read_as(
            &mut conn,
            projection.as_ref(),
            start,
            head,
            100_000,
        )
        .await
        .unwrap();
        assert!(!own.is_empty(), "{name} reads some of these events");
        assert_eq!(via_feed.len(), own.len(), "{name}");
        assert!(
            via_feed == own,
            "{name}: the feed's events differ from its own read"
        );
        assert!(batches > 1 || own.len() < 97, "{name}");
    }
    assert!(feed.served() > 8, "{}", feed.served());
}

/// Projectors sharing one read while writers commit: every event counted once, the sealer seals
/// every event, the live table equals a rebuild, and the batches came from the shared read
/// (one projector started while the log was already long reads it itself until it reaches it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projectors_sharing_one_read_apply_every_event_once() {
    use etal_projections::feed::LogFeed;
    let db = TestDb::new(30).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    // A log already written before they start: read by each projector itself.
    write_events(&bus, 5, 3, 300).await;
    let (stop, shutdown) = watch::channel(false);
    let feed = Arc::new(LogFeed::new());
    let readers: Vec<_> = ["event_counts", "sealer", "stock_levels"]
        .iter()
        .map(|n| {
            etal_projections::readers()
                .into_iter()
                .find(|p| p.name() == *n)
                .unwrap()
        })
        .collect();
    let runners = etal_projections::run_fed_projectors(&db.pool, readers, &shutdown, feed.clone());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let ctx = CommandContext::new(Actor::system());
                for c in 0..60 {
                    bus.execute::<Tally>(
                        &format!("w{w}"),
                        TallyCommand::AddMany {
                            tag: format!("{c}"),
                            count: 2,
                        },
                        &(),
                        &ctx,
                    )
                    .await
                    .unwrap();
                    if c % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(15)).await;
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for name in ["event_counts", "sealer", "stock_levels"] {
        assert!(
            etal_tests::wait_all_applied(&db.pool, name, Duration::from_secs(60)).await,
            "{name}"
        );
    }
    stop.send(true).unwrap();
    for r in runners {
        r.await.unwrap();
    }
    assert_eq!(total_events(&db.pool).await, 900 + 480);
    assert_eq!(total_counted(&db.pool).await, 900 + 480);
    let sealed: i64 = sqlx::query_scalar("SELECT count(*) FROM seal_leaves")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(sealed, 900 + 480);
    let projection = etal_projections::by_name("event_counts").unwrap();
    let report = etal_projections::verify(&db.pool, projection.as_ref(), &|_| {})
        .await
        .unwrap();
    assert!(report.diffs.is_empty(), "{:?}", report.diffs);
    assert!(
        feed.served() > 0 && feed.reads() > 0,
        "the shared read was used"
    );
    // The leaves follow the log's order, gap-free.
    let misplaced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT global_position, row_number() OVER \
           (ORDER BY transaction_id, global_position) - 1 AS i FROM events) e \
         LEFT JOIN seal_leaves l ON l.global_position = e.global_position \
         WHERE l.leaf_index IS DISTINCT FROM e.i",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(misplaced, 0);
}
