//! Scale-out: two API processes (projectors off) and two projector processes share one database
//! under load; one projector is killed with SIGKILL mid-way. Afterwards every projection equals a
//! rebuild (`etal projections verify --all` exits 0) and the event counts match the log (nothing
//! applied twice, nothing lost).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etal_store::EventLog;
use etal_tests::bench::measure::fixture;
use etal_tests::{run_etal, spawn_etal, spawn_server};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_and_two_projectors_share_one_database() {
    let fx = Arc::new(fixture(4, 2, 5).await);
    let url = fx.world.db.url.clone();
    let api_env = [("ETAL_PROJECTORS", "false"), ("ETAL_SCHEDULER", "false")];
    let (_api1, base1) = spawn_server(&url, &api_env).await;
    let (_api2, base2) = spawn_server(&url, &api_env).await;
    let mut projector1 = spawn_etal(&url, &["projections", "run"], &[]);
    let _projector2 = spawn_etal(&url, &["projections", "run"], &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..4u64 {
        let fx = fx.clone();
        let stop = stop.clone();
        let placed = placed.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c);
            while !stop.load(Ordering::Relaxed) {
                if fx.random_order(&mut rng).await.is_ok() {
                    placed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut killed = false;
    let mut health_checks = 0;
    while started.elapsed() < Duration::from_secs(8) {
        for base in [&base1, &base2] {
            let r = http
                .get(format!("{base}/health"))
                .send()
                .await
                .expect("health");
            assert!(
                r.status().is_success(),
                "{base}/health answered {}",
                r.status()
            );
            health_checks += 1;
        }
        if !killed && started.elapsed() > Duration::from_secs(3) {
            projector1.0.kill().expect("kill -9 a projector"); // SIGKILL
            let _ = projector1.0.wait();
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    assert!(killed);
    assert!(health_checks > 20);
    let placed = placed.load(Ordering::Relaxed);
    assert!(placed > 0, "no order was placed");

    // The surviving projector catches up with the log.
    let pool = &fx.world.db.pool;
    let head = EventLog::head(pool).await.expect("head");
    for p in etal_projections::all() {
        assert!(
            etal_projections::wait_until(pool, p.name(), head, Duration::from_secs(60))
                .await
                .expect("wait"),
            "{} did not catch up",
            p.name()
        );
    }
    let (code, out, err) = run_etal(&url, &["projections", "verify", "--all"]);
    assert_eq!(code, 0, "verify --all: {out}\n{err}");
    let counted: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(events), 0)::bigint FROM event_counts")
            .fetch_one(pool)
            .await
            .expect("sum");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(counted, logged, "event_counts must match the log exactly");
    eprintln!("{placed} orders, {logged} events, {health_checks} health checks");
}
