//! Measurement 5: Projection lag while commands run at half the measured throughput: for each order, the
//! time from its commit (place_order returned) until every projection's checkpoint passed its
//! last position, sampled by polling the checkpoints every millisecond.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etal_store::log::Position;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::watch;

use super::fixture;
use crate::bench::p50_p99;
use crate::bench::report::Report;

pub async fn run(report: &mut Report, rate: f64, secs: f64, seed: u64) -> anyhow::Result<()> {
    let fx = Arc::new(fixture(16, 3, 8).await);
    let pool = fx.world.db.pool.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    // ETAL_BENCH_LAG_ONLY=<projection>: that projection alone (profiling which one lags).
    let only = std::env::var("ETAL_BENCH_LAG_ONLY").ok();
    let projections: Vec<_> = etal_projections::all()
        .into_iter()
        .filter(|p| only.as_deref().is_none_or(|o| o == p.name()))
        .collect();
    let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    // As `etal serve` runs them: one shared read of the log.
    let runners = etal_projections::run_projectors(&pool, projections, &stop_rx);
    let pending: Arc<Mutex<Vec<(Position, Instant)>>> = Arc::default();
    let lags: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let poller = {
        let pending = pending.clone();
        let lags = lags.clone();
        let pool = pool.clone();
        let names = names.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                // Every checkpoint in one read (a read per projection per millisecond would
                // load the machine the projectors run on).
                let rows: Result<Vec<(i64, i64)>, _> = sqlx::query_as(
                    "SELECT last_txid, last_position FROM projector_checkpoints \
                     WHERE projection = ANY($1)",
                )
                .bind(&names)
                .fetch_all(&pool)
                .await;
                let min: Option<Position> = match rows {
                    Ok(rows) if rows.len() == names.len() => rows
                        .into_iter()
                        .map(|(txid, position)| Position { txid, position })
                        .min(),
                    Ok(_) => Some(Position::START),
                    Err(_) => None,
                };
                let now = Instant::now();
                if let Some(min) = min {
                    let mut p = pending.lock().expect("lock");
                    let mut l = lags.lock().expect("lock");
                    p.retain(|(pos, at)| {
                        if *pos <= min {
                            l.push(now - *at);
                            false
                        } else {
                            true
                        }
                    });
                }
                let empty = pending.lock().expect("lock").is_empty();
                if *stop.borrow() && empty {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    };
    let clients = 8usize;
    let per_client = Duration::from_secs_f64(clients as f64 / rate.max(1.0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let fx = fx.clone();
        let pending = pending.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (c as u64 + 17));
            let mut tick = tokio::time::interval(per_client);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                if let Ok(done) = fx.random_order(&mut rng).await {
                    if let Some(pos) = done.position {
                        pending.lock().expect("lock").push((pos, Instant::now()));
                    }
                    n += 1;
                }
            }
            n
        }));
    }
    let mut placed = 0;
    for t in tasks {
        placed += t.await?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while !pending.lock().expect("lock").is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let _ = stop_tx.send(true);
    let _ = poller.await;
    for r in runners {
        let _ = r.await;
    }
    crate::bench::drop_db(&fx.world.db).await;
    let mut lags = std::mem::take(&mut *lags.lock().expect("lock"));
    let (p50, p99) = p50_p99(&mut lags);
    report.section(
        "5. Projection lag",
        format!(
            "Orders at {rate:.0}/s (half the best in-process rate of section 1), 8 clients, \
             {secs:.0} s, projectors ({}) running in the process; lag = checkpoint past the \
             order's last position (its commit's, or on an online market its charge's) minus the \
             time place_order returned, polled every 1 ms.\n\n\
             | orders | samples | lag p50 | lag p99 |\n|---|---|---|---|\n| {placed} | {} | {p50:.1} ms | {p99:.1} ms |\n",
            names.join(", "),
            lags.len()
        ),
    );
    report.goal(
        "projection lag p99",
        "< 100 ms",
        format!("{p99:.1} ms"),
        Some(p99 < 100.0),
    );
    Ok(())
}
