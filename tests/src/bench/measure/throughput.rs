//! Measurement 1: Command throughput: orders per second through `App::place_order` (the real command path)
//! with 1, 8 and 32 concurrent clients, against the ceiling of the same cluster: pgbench
//! inserting single rows into a scratch table shaped like `events`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

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
pub const GRAPHQL_CLIENTS: usize = 8;

const PLACE_ORDER: &str = "mutation($s: UUID!, $lines: [LineInput!]!) { placeOrder(saleId: $s, lines: $lines) { orderId position } }";

/// `clients` concurrent HTTP clients POST `placeOrder` (3-5 lines of one unit, a new customer
/// and token each time) to `etal serve` for `secs`, on a fixture of 4 markets whose sales are 3
/// days after today (the server runs on the real clock). Returns (orders/s, refused or failed,
/// server VmHWM MiB).
pub async fn graphql_orders_per_second(
    clients: usize,
    secs: f64,
    seed: u64,
) -> anyhow::Result<(f64, u64, Option<f64>)> {
    let now = Utc::now();
    let day = (now + chrono::Duration::days(3))
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let fx = Arc::new(super::fixture_at(now, day, 4, 3, 8).await);
    let (server, base) = crate::spawn_server(&fx.world.db.url, &super::server_env()).await;
    let pid = server.0.id();
    let http = reqwest::Client::new();
    let url = format!("{base}/graphql");
    let placed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (fx, http, url) = (fx.clone(), http.clone(), url.clone());
        let (placed, failed) = (placed.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (c as u64 * 104_729));
            while Instant::now() < deadline {
                let (sale, catalogs) = fx.sales.choose(&mut rng).expect("sales");
                let n = rng.gen_range(3..=5);
                let mut lines: Vec<serde_json::Value> = Vec::new();
                while lines.len() < n {
                    let (catalog, products) = catalogs.choose(&mut rng).expect("catalogs");
                    let product = products.choose(&mut rng).expect("products");
                    let line = serde_json::json!({"catalogId": catalog.0, "productId": product.0, "quantity": 1});
                    if !lines.contains(&line) {
                        lines.push(line);
                    }
                }
                let body = serde_json::json!({"query": PLACE_ORDER, "variables": {"s": sale.0, "lines": lines}});
                let res = http
                    .post(&url)
                    .bearer_auth(super::token(etal_domain::Role::Customer))
                    .json(&body)
                    .send()
                    .await;
                let ok = match res {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .map(|v| v.get("errors").is_none())
                        .unwrap_or(false),
                    _ => false,
                };
                if ok {
                    placed.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss = crate::bench::peak_rss_mib(pid);
    drop(server);
    crate::bench::drop_db(&fx.world.db).await;
    Ok((
        placed.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
        rss,
    ))
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
    match graphql_orders_per_second(GRAPHQL_CLIENTS, secs, seed).await {
        Ok((ops, failed, rss)) => body.push_str(&format!(
            "\nThrough GraphQL over HTTP (`placeOrder` POSTed to `etal serve`, {GRAPHQL_CLIENTS} clients, \
             a new customer token per order, read-your-writes included): {ops:.0} orders/s, \
             {failed} refused or failed, server peak RSS {}.\n",
            rss.map(|r| format!("{r:.0} MiB")).unwrap_or_else(|| "?".into())
        )),
        Err(e) => body.push_str(&format!("\nThrough GraphQL over HTTP: failed: {e}\n")),
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
