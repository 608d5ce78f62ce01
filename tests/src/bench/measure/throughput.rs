//! Measurement 1: Command throughput: orders per second through `App::place_order` (the real command path)
//! with 1, 8 and 32 concurrent clients, against the ceiling of the same cluster: pgbench
//! inserting single rows into a scratch table shaped like `events`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{fixture, retryable, Fixture};
use crate::bench::report::Report;

pub const CLIENTS: [usize; 3] = [1, 8, 32];

/// Orders/s with `clients` concurrent clients for `secs`; also the commands (transactions)/s.
pub async fn orders_per_second(
    fx: &Arc<Fixture>,
    clients: usize,
    secs: f64,
    seed: u64,
) -> (f64, f64, u64) {
    let placed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let before: i64 = count_tx(fx).await;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let fx = fx.clone();
        let placed = placed.clone();
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (c as u64 * 7919));
            while Instant::now() < deadline {
                match fx.random_order(&mut rng).await {
                    Ok(_) => {
                        placed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if retryable(&e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "order refused");
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after: i64 = count_tx(fx).await;
    let n = placed.load(Ordering::Relaxed);
    (
        n as f64 / elapsed,
        (after - before) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

/// Committed transactions that wrote events (one per command).
async fn count_tx(fx: &Fixture) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT transaction_id)::bigint FROM events")
        .fetch_one(&fx.world.db.pool)
        .await
        .unwrap_or(0)
}

/// The scratch table: the columns and indexes of `events`, a sequence of its own.
pub const SCRATCH_TABLE: &str = "
DROP TABLE IF EXISTS bench_events;
CREATE TABLE bench_events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         jsonb                        NOT NULL,
    metadata        jsonb                        NOT NULL,
    global_position bigserial                    NOT NULL,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX bench_events_global_order ON bench_events (transaction_id, global_position);
CREATE UNIQUE INDEX bench_events_global_position ON bench_events (global_position);
CREATE INDEX bench_events_recorded_at ON bench_events (recorded_at);
";

const SCRIPT: &str = "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at) \
VALUES ('stock', gen_random_uuid()::text, 1, 'StockReserved', '1', \
'{\"StockReserved\": {\"product\": \"0195f1a2-0000-7000-8000-000000000000\", \"quantity\": 1, \"available\": null}}', \
'{\"actor\": {\"user\": \"00000000-0000-0000-0000-000000000000\", \"role\": \"customer\"}}', now());\n";

/// The pgbench binary: $PGBENCH, else `scripts/pg.sh bindir`/pgbench, else `pgbench`.
pub fn pgbench_bin() -> String {
    if let Ok(p) = std::env::var("PGBENCH") {
        return p;
    }
    let out = std::process::Command::new(crate::project_root().join("scripts/pg.sh"))
        .arg("bindir")
        .output();
    match out {
        Ok(o) if o.status.success() => {
            format!("{}/pgbench", String::from_utf8_lossy(&o.stdout).trim())
        }
        _ => "pgbench".into(),
    }
}

/// Single-row inserts per second with `clients` pgbench clients for `secs` seconds.
pub async fn pgbench_tps(url: &str, clients: usize, secs: u64) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("etal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("insert.sql");
    std::fs::write(&script, SCRIPT)?;
    let out = tokio::process::Command::new(pgbench_bin())
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            &clients.to_string(),
            "-T",
            &secs.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output: {text}"))
}

/// HTTP: orders per second through the GraphQL `placeOrder` mutation.
///
/// TODO(graphql-api): fill in once the `placeOrder` mutation lands on main (branch
/// `graphql-api`): start `etal serve` with `crate::spawn_server`, POST the mutation with
/// `clients` concurrent reqwest clients for `secs`, and return (orders/s, server VmHWM MiB via
/// `crate::bench::peak_rss_mib(proc.0.id())`). Returns None until then; the report says so.
pub async fn graphql_orders_per_second(
    _fx: &Arc<Fixture>,
    _clients: usize,
    _secs: f64,
) -> Option<(f64, f64)> {
    None
}

/// Runs the measurement; returns the best orders/s (the rate measurement 5 halves).
pub async fn run(report: &mut Report, secs: f64, seed: u64) -> anyhow::Result<f64> {
    let fx = Arc::new(fixture(16, 3, 8).await);
    sqlx::raw_sql(SCRATCH_TABLE)
        .execute(&fx.world.db.pool)
        .await?;
    let mut body = String::from(
        "16 markets with one open sale each (3 producers x 8 unlimited products per sale); each \
         order is placed by a new customer on a random sale, 3-5 lines of one unit, through \
         `App::place_order` (stock reservations, annual sales, sale numbering, order, confirmation, \
         online payment on half the markets: about 10 commands, one transaction each). Ceiling: \
         `pgbench -n -c N -j N -T S -f insert.sql`, single-row inserts into `bench_events` (the \
         columns and indexes of `events`) on the same cluster.\n\n\
         | clients | orders/s | commands/s | refused or conflicts | pgbench rows/s | orders / ceiling | commands / ceiling |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut best = 0.0f64;
    let mut best_ratio = 0.0f64;
    for clients in CLIENTS {
        let (ops, cps, failed) = orders_per_second(&fx, clients, secs, seed).await;
        let tps = pgbench_tps(&fx.world.db.url, clients, secs.ceil() as u64)
            .await
            .unwrap_or_else(|e| {
                eprintln!("pgbench: {e}");
                f64::NAN
            });
        best = best.max(ops);
        best_ratio = best_ratio.max(ops / tps);
        body.push_str(&format!(
            "| {clients} | {ops:.0} | {cps:.0} | {failed} | {tps:.0} | {:.1} % | {:.1} % |\n",
            100.0 * ops / tps,
            100.0 * cps / tps
        ));
    }
    match graphql_orders_per_second(&fx, 32, secs).await {
        Some((ops, rss)) => body.push_str(&format!(
            "\nThrough GraphQL over HTTP (32 clients): {ops:.0} orders/s, server peak RSS {rss:.0} MiB.\n"
        )),
        None => body.push_str(
            "\nThrough GraphQL over HTTP: not measured yet: the `placeOrder` mutation is not on \
             main (see `graphql_orders_per_second` in tests/src/bench/measure/throughput.rs).\n",
        ),
    }
    crate::bench::drop_db(&fx.world.db).await;
    report.section("1. Command throughput", body);
    report.goal(
        "orders placed vs pgbench ceiling",
        ">= 50 %",
        format!("{:.1} %", 100.0 * best_ratio),
        Some(best_ratio >= 0.5),
    );
    Ok(best)
}
