//! Design property 7: durable scheduled commands, exactly once, driven by an injected clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use etal_domain::calendar::paris_instant;
use etal_domain::{Actor, Clock, FakeClock};
use etal_store::log::EventLog;
use etal_store::scheduler::HandlerError;
use etal_store::{CommandBus, CommandContext, ScheduledCommand, ScheduledHandler, Scheduler};
use etal_tests::tally::{Tally, TallyCommand};
use etal_tests::TestDb;

/// Adds one to the tally named in the payload, recording the clock's local Paris time in the tag.
struct AddOne {
    bus: CommandBus,
    /// When set, the handler "crashes" after its command committed: it never returns.
    hang_after_commit: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl ScheduledHandler for AddOne {
    fn kind(&self) -> &'static str {
        "add_one"
    }

    async fn run(&self, cmd: &ScheduledCommand) -> Result<serde_json::Value, HandlerError> {
        let tally = cmd.payload["tally"]
            .as_str()
            .ok_or(HandlerError::Fail("no tally".into()))?;
        let local = self
            .bus
            .clock()
            .now()
            .with_timezone(&Paris)
            .format("%Y-%m-%d %H:%M")
            .to_string();
        let ctx = CommandContext::new(Actor::system())
            .with_idempotency(cmd.idempotency_key(), cmd.id.to_string())
            .caused_by(cmd.id.to_string());
        let outcome = self
            .bus
            .execute::<Tally>(
                tally,
                TallyCommand::Add {
                    tag: local,
                    amount: 1,
                },
                &(),
                &ctx,
            )
            .await
            .map_err(|e| HandlerError::Retry(e.to_string()))?;
        if self.hang_after_commit.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(serde_json::to_value(outcome).unwrap())
    }
}

fn setup(db: &TestDb, clock: &FakeClock) -> (Scheduler, Arc<AtomicBool>) {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let bus = CommandBus::new(db.pool.clone(), clock.clone());
    let hang = Arc::new(AtomicBool::new(false));
    let scheduler = Scheduler::new(db.pool.clone(), clock).with_handler(Arc::new(AddOne {
        bus,
        hang_after_commit: hang.clone(),
    }));
    (scheduler, hang)
}

async fn tags(db: &TestDb, tally: &str) -> Vec<String> {
    EventLog::stream(&db.pool, "tally", tally)
        .await
        .unwrap()
        .iter()
        .map(|e| e.payload["Added"]["tag"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_due_before_a_crash_runs_exactly_once_after_restart() {
    let db = TestDb::new(10).await;
    let clock = FakeClock::at(Utc.with_ymd_and_hms(2026, 5, 4, 8, 0, 0).unwrap());
    let (scheduler, hang) = setup(&db, &clock);
    let due = clock.now() + chrono::Duration::minutes(30);
    scheduler
        .add(
            "add_one",
            "payout:1",
            &serde_json::json!({"tally": "t"}),
            due,
        )
        .await
        .unwrap();
    // Scheduling the same thing twice is a no-op.
    scheduler
        .add(
            "add_one",
            "payout:1",
            &serde_json::json!({"tally": "t"}),
            due,
        )
        .await
        .unwrap();

    // Not due yet.
    assert_eq!(scheduler.run_due().await.unwrap().done, 0);
    clock.advance(chrono::Duration::minutes(31));

    // The process "dies" after the command committed but before the schedule was marked done.
    hang.store(true, Ordering::SeqCst);
    let crashed = {
        let s = scheduler.clone();
        tokio::spawn(async move { s.run_due().await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tags(&db, "t").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    crashed.abort();
    let _ = crashed.await;
    let status: String = sqlx::query_scalar("SELECT status FROM scheduled_commands")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending", "the crash left the schedule unmarked");

    // After the restart the command runs again, which writes nothing new, and is marked done.
    hang.store(false, Ordering::SeqCst);
    // The dead transaction's row lock goes when its connection rolls back; until then the row is
    // skipped (SKIP LOCKED), never run twice at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut done = 0;
    while done == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the schedule never ran after the crash"
        );
        done = scheduler.run_due().await.unwrap().done;
        if done == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(done, 1);
    assert_eq!(tags(&db, "t").await.len(), 1, "exactly one effect");
    assert_eq!(
        scheduler.run_due().await.unwrap().done,
        0,
        "done once, never again"
    );
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM scheduled_commands")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("done", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_running_at_once_execute_each_command_once() {
    let db = TestDb::new(20).await;
    let clock = FakeClock::at(Utc.with_ymd_and_hms(2026, 5, 4, 8, 0, 0).unwrap());
    let (scheduler, _) = setup(&db, &clock);
    for i in 0..60 {
        scheduler
            .add(
                "add_one",
                &format!("k{i}"),
                &serde_json::json!({"tally": format!("t{}", i % 4)}),
                clock.now(),
            )
            .await
            .unwrap();
    }
    let a = tokio::spawn({
        let s = scheduler.clone();
        async move { s.run_due().await.unwrap() }
    });
    let b = tokio::spawn({
        let s = scheduler.clone();
        async move { s.run_due().await.unwrap() }
    });
    let (ra, rb) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(ra.done + rb.done, 60);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(events, 60);
}

/// Weekly sales at 18:00 Paris time land at 18:00 local on both sides of both DST changes.
#[tokio::test]
async fn schedules_across_the_paris_dst_changes_run_at_the_right_local_time() {
    let db = TestDb::new(10).await;
    let start = Utc.with_ymd_and_hms(2026, 3, 20, 12, 0, 0).unwrap();
    let clock = FakeClock::at(start);
    let (scheduler, _) = setup(&db, &clock);
    // Wednesdays around the spring change (29 March) and the autumn change (25 October).
    let dates = [(2026, 3, 25), (2026, 4, 1), (2026, 10, 21), (2026, 10, 28)];
    let mut dues = Vec::new();
    for (y, m, d) in dates {
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let due = paris_instant(date, NaiveTime::from_hms_opt(18, 0, 0).unwrap());
        scheduler
            .add(
                "add_one",
                &format!("sale:{date}"),
                &serde_json::json!({"tally": "dst"}),
                due,
            )
            .await
            .unwrap();
        dues.push(due);
    }
    // UTC hours differ (17:00 in winter, 16:00 in summer) but local time is 18:00 every time.
    assert_eq!(dues[0].format("%H:%M").to_string(), "17:00");
    assert_eq!(dues[1].format("%H:%M").to_string(), "16:00");
    assert_eq!(dues[2].format("%H:%M").to_string(), "16:00");
    assert_eq!(dues[3].format("%H:%M").to_string(), "17:00");
    for (i, due) in dues.iter().enumerate() {
        clock.set(*due - chrono::Duration::minutes(1));
        assert_eq!(
            scheduler.run_due().await.unwrap().done,
            0,
            "not before its time"
        );
        clock.set(*due);
        assert_eq!(scheduler.run_due().await.unwrap().done, 1, "on time");
        assert_eq!(tags(&db, "dst").await.len(), i + 1);
    }
    assert_eq!(
        tags(&db, "dst").await,
        vec![
            "2026-03-25 18:00",
            "2026-04-01 18:00",
            "2026-10-21 18:00",
            "2026-10-28 18:00"
        ]
    );
}

#[tokio::test]
async fn a_command_with_no_handler_is_marked_failed_with_its_reason() {
    let db = TestDb::new(5).await;
    let clock = FakeClock::at(Utc.with_ymd_and_hms(2026, 5, 4, 8, 0, 0).unwrap());
    let (scheduler, _) = setup(&db, &clock);
    scheduler
        .add("unknown_kind", "x", &serde_json::json!({}), clock.now())
        .await
        .unwrap();
    let report = scheduler.run_due().await.unwrap();
    assert_eq!(report.failed, 1);
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, last_error FROM scheduled_commands")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(error.contains("unknown_kind"));
}
