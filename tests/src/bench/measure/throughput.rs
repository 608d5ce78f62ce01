//! Measurement 1: Command throughput: orders per second through `App::place_order` (the real
//! command path: one transaction per order, then the outbox's delivery of an online order's
//! charge) with 1, 8 and 32 concurrent clients, each beside its baselines measured in the same
//! run at the same client count: pgbench running an order-shaped transaction (the event rows,
//! of the size measured, and the idempotency record an average order wrote), pgbench inserting
//! single rows, and the peer a user of this stack would pick instead (cqrs-es's
//! `CqrsFramework::execute` on postgres-es, bench/peer.rs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use etal_domain::annual::AnnualSales;
use etal_domain::order::Order;
use etal_domain::sale::Sale;
use etal_domain::stock::Stock;
use etal_store::bus::EsAggregate;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{fixture, retryable, Fixture};
use crate::bench::peer::{Peer, PeerRun};
use crate::bench::report::Report;

pub const CLIENTS: [usize; 3] = [1, 8, 32];

/// Orders/s with `clients` concurrent clients for `secs` (each order with an idempotency key, as
/// a client that retries safely sends); also the transactions that wrote events per second (the
/// order's, and the charge's on online markets).
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
                let key = format!("{KEY_PREFIX}{}", uuid::Uuid::now_v7());
                match fx.random_order_keyed(&mut rng, key).await {
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

/// The idempotency keys of the throughput orders.
const KEY_PREFIX: &str = "bench-order-";

/// Committed transactions that wrote events.
async fn count_tx(fx: &Fixture) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT transaction_id)::bigint FROM events")
        .fetch_one(&fx.world.db.pool)
        .await
        .unwrap_or(0)
}

/// The scratch tables: the columns and indexes of `events` (a sequence of its own) and of
/// `idempotency_keys`.
pub const SCRATCH_TABLE: &str = "
DROP TABLE IF EXISTS bench_events, bench_keys;
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
CREATE TABLE bench_keys
(
    scope          text        NOT NULL,
    key            text        NOT NULL CHECK (length(key) BETWEEN 1 AND 1000),
    aggregate_type text,
    aggregate_id   text,
    command_hash   text        NOT NULL,
    outcome        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
";

const SCRIPT: &str = "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at) \
VALUES ('stock', gen_random_uuid()::text, 1, 'StockReserved', '1', \
'{\"StockReserved\": {\"product\": \"0195f1a2-0000-7000-8000-000000000000\", \"quantity\": 1, \"available\": null}}', \
'{\"actor\": {\"user\": \"00000000-0000-0000-0000-000000000000\", \"role\": \"customer\"}}', now());\n";

/// What the throughput orders wrote, measured in the bench world's tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderShape {
    /// Transactions that placed an order (one `OrderPlaced` each).
    pub orders: i64,
    /// Events in those transactions.
    pub events: i64,
    /// Streams written by those transactions.
    pub streams: i64,
    /// Snapshots due in those transactions (a stream crossing a multiple of its aggregate's
    /// `SNAPSHOT_EVERY`).
    pub snapshots: i64,
    /// Mean `length(payload::text)` and `length(metadata::text)` of their events.
    pub payload: f64,
    pub metadata: f64,
    /// The orders' idempotency records, and the mean lengths of their columns.
    pub keys: i64,
    pub scope_len: f64,
    pub key_len: f64,
    pub id_len: f64,
    pub hash_len: f64,
    pub outcome_len: f64,
    /// Outbox rows (the online orders' charges).
    pub outbox: i64,
    /// The other transactions that wrote events after the first order (the charges settled),
    /// and their events.
    pub other_tx: i64,
    pub other_events: i64,
}

impl OrderShape {
    pub fn events_per_order(&self) -> f64 {
        self.events as f64 / self.orders.max(1) as f64
    }
    pub fn streams_per_order(&self) -> f64 {
        self.streams as f64 / self.orders.max(1) as f64
    }
    pub fn per_order(&self, n: i64) -> f64 {
        n as f64 / self.orders.max(1) as f64
    }

    /// The pgbench script of one order-shaped transaction: the events of an average order
    /// (the fractional part by chance, so the mean is the measured one), each of the measured
    /// mean payload and metadata size, a new stream id each (no key conflicts), then one
    /// idempotency record of the measured size.
    pub fn script(&self) -> String {
        let per = self.events_per_order();
        let base = per.floor() as i64;
        let frac = ((per - per.floor()) * 1000.0).round() as i64;
        // length('{"p": "' || x || '"}') = length(x) + 9
        let pad = |len: f64| ((len - 9.0).round() as i64).max(1);
        let text = |len: f64| (len.round() as i64).max(1);
        format!(
            "\\set rows {base} + case when random(0, 999) < {frac} then 1 else 0 end\n\
             BEGIN;\n\
             INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at) \
             SELECT 'stock', gen_random_uuid()::text, g, 'StockReserved', '1', \
             jsonb_build_object('p', repeat('x', {})), jsonb_build_object('m', repeat('x', {})), now() \
             FROM generate_series(1, :rows) AS g;\n\
             INSERT INTO bench_keys (scope, key, aggregate_type, aggregate_id, command_hash, outcome, created_at) \
             VALUES (left(gen_random_uuid()::text || gen_random_uuid()::text, {}), left(gen_random_uuid()::text || gen_random_uuid()::text, {}), 'stock', \
             left(gen_random_uuid()::text || gen_random_uuid()::text, {}), left(md5(random()::text) || md5(random()::text), {}), \
             jsonb_build_object('o', repeat('x', {})), now());\n\
             COMMIT;\n",
            pad(self.payload),
            pad(self.metadata),
            text(self.scope_len),
            text(self.key_len),
            text(self.id_len),
            text(self.hash_len),
            pad(self.outcome_len),
        )
    }
}

/// The shape of the orders placed after `since` (a global position) in the fixture.
pub async fn order_shape(pool: &sqlx::PgPool, since: i64) -> anyhow::Result<OrderShape> {
    let mut shape = OrderShape::default();
    let row: (i64, i64, i64, i64, f64, f64) = sqlx::query_as(
        "WITH placed AS (
           SELECT DISTINCT transaction_id FROM events
           WHERE global_position > $1 AND event_type = 'OrderPlaced'),
         written AS (
           SELECT e.transaction_id, e.aggregate_type, e.aggregate_id, count(*) AS n,
                  min(e.sequence) AS first, max(e.sequence) AS last,
                  sum(length(e.payload::text)) AS payload, sum(length(e.metadata::text)) AS metadata,
                  CASE e.aggregate_type WHEN 'stock' THEN $2 WHEN 'annual_sales' THEN $3
                                        WHEN 'sale' THEN $4 WHEN 'order' THEN $5 ELSE 0 END AS every
           FROM events e JOIN placed USING (transaction_id)
           WHERE e.global_position > $1
           GROUP BY 1, 2, 3)
         SELECT count(DISTINCT transaction_id)::bigint, coalesce(sum(n), 0)::bigint,
                count(*)::bigint,
                count(*) FILTER (WHERE every > 0 AND last / every > (first - 1) / every)::bigint,
                coalesce(sum(payload)::float8 / nullif(sum(n), 0), 0)::float8,
                coalesce(sum(metadata)::float8 / nullif(sum(n), 0), 0)::float8
         FROM written",
    )
    .bind(since)
    .bind(<Stock as EsAggregate>::SNAPSHOT_EVERY)
    .bind(<AnnualSales as EsAggregate>::SNAPSHOT_EVERY)
    .bind(<Sale as EsAggregate>::SNAPSHOT_EVERY)
    .bind(<Order as EsAggregate>::SNAPSHOT_EVERY)
    .fetch_one(pool)
    .await?;
    (
        shape.orders,
        shape.events,
        shape.streams,
        shape.snapshots,
        shape.payload,
        shape.metadata,
    ) = row;
    let row: (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT transaction_id)::bigint, count(*)::bigint FROM events e
         WHERE global_position > $1
           AND NOT EXISTS (SELECT 1 FROM events p
                           WHERE p.transaction_id = e.transaction_id AND p.event_type = 'OrderPlaced')",
    )
    .bind(since)
    .fetch_one(pool)
    .await?;
    (shape.other_tx, shape.other_events) = row;
    let row: (i64, f64, f64, f64, f64, f64) = sqlx::query_as(
        "SELECT count(*)::bigint,
                coalesce(avg(length(scope)), 0)::float8, coalesce(avg(length(key)), 0)::float8,
                coalesce(avg(length(aggregate_id)), 0)::float8,
                coalesce(avg(length(command_hash)), 0)::float8,
                coalesce(avg(length(outcome::text)), 0)::float8
         FROM idempotency_keys WHERE key LIKE $1",
    )
    .bind(format!("{KEY_PREFIX}%"))
    .fetch_one(pool)
    .await?;
    (
        shape.keys,
        shape.scope_len,
        shape.key_len,
        shape.id_len,
        shape.hash_len,
        shape.outcome_len,
    ) = row;
    shape.outbox = sqlx::query_scalar("SELECT count(*)::bigint FROM outbox WHERE kind = 'charge'")
        .fetch_one(pool)
        .await?;
    Ok(shape)
}

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
    pgbench_script(url, "insert.sql", SCRIPT, clients, secs).await
}

/// Transactions per second of pgbench running `script` (written to `name` in a scratch folder)
/// with `clients` clients for `secs` seconds.
pub async fn pgbench_script(
    url: &str,
    name: &str,
    script: &str,
    clients: usize,
    secs: u64,
) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("etal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, script)?;
    let script = path;
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

const PLACE_ORDER: &str = "mutation($s: UUID!, $lines: [LineInput!]!, $k: String) { placeOrder(saleId: $s, lines: $lines, idempotencyKey: $k) { orderId position } }";

/// `clients` concurrent HTTP clients POST `placeOrder` (3-5 lines of one unit, a new customer,
/// token and idempotency key each time) to `etal serve` for `secs`, on a fixture of the
/// in-process runs' shape (16 markets, 3 producers x 8 products a sale) whose sales are 3 days
/// after today (the server runs on the real clock), once the server's projectors have caught up
/// with the fixture.
pub async fn graphql_orders_per_second(
    clients: usize,
    secs: f64,
    seed: u64,
) -> anyhow::Result<HttpRun> {
    let now = Utc::now();
    let day = (now + chrono::Duration::days(3))
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let fx = Arc::new(super::fixture_at(now, day, MARKETS, 3, 8).await);
    let (server, base) = crate::spawn_server(&fx.world.db.url, &super::server_env()).await;
    let pid = server.0.id();
    // Read-your-writes waits for the projectors: let them catch up with the fixture first.
    for p in etal_projections::all() {
        if !crate::wait_all_applied(&fx.world.db.pool, p.name(), Duration::from_secs(120)).await {
            eprintln!("HTTP orders: projection {} did not catch up", p.name());
        }
    }
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
            let mut latencies = Vec::new();
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
                let key = format!("{KEY_PREFIX}{}", uuid::Uuid::now_v7());
                let body = serde_json::json!({"query": PLACE_ORDER, "variables": {"s": sale.0, "lines": lines, "k": key}});
                let t = Instant::now();
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
                latencies.push(t.elapsed());
                if ok {
                    placed.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    // A reader beside the load: every 50 ms an auditor's `eventCounts` query, which first waits
    // for the projectors to pass every committed order (read-your-writes, paid by the reads).
    let probe = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0usize);
            let body = serde_json::json!({"query": "{ eventCounts { aggregateType events } }"});
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match http
                    .post(&url)
                    .bearer_auth(super::token(etal_domain::Role::Auditor))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) => r
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|v| v.get("errors").is_none()),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    failed += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (latencies, failed)
        })
    };
    let mut latencies = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies.extend(l);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (mut reads, reads_failed) = probe.await.unwrap_or_default();
    let read_count = reads.len();
    let (read_p50, read_p99) = crate::bench::p50_p99(&mut reads);
    let rss = crate::bench::peak_rss_mib(pid);
    drop(server);
    crate::bench::drop_db(&fx.world.db).await;
    let (p50, p99) = crate::bench::p50_p99(&mut latencies);
    Ok(HttpRun {
        orders_per_second: placed.load(Ordering::Relaxed) as f64 / elapsed,
        failed: failed.load(Ordering::Relaxed),
        rss,
        p50,
        p99,
        reads: read_count,
        reads_failed,
        read_p50,
        read_p99,
    })
}

/// The server's default read-your-writes wait (ETAL_READ_YOUR_WRITES_MS).
const READ_YOUR_WRITES: Duration = Duration::from_millis(2000);

/// One run of [`graphql_orders_per_second`].
#[derive(Debug, Clone, Copy)]
pub struct HttpRun {
    pub orders_per_second: f64,
    /// Refused or failed requests.
    pub failed: u64,
    /// The server's VmHWM, MiB.
    pub rss: Option<f64>,
    /// Latency of a `placeOrder` request, ms.
    pub p50: f64,
    pub p99: f64,
    /// The reader beside the load: its answered queries and their latency, ms (each waited
    /// for the projectors to pass every committed order first).
    pub reads: usize,
    pub reads_failed: usize,
    pub read_p50: f64,
    pub read_p99: f64,
}

/// Markets (one open sale each) of the throughput fixtures.
pub const MARKETS: usize = 16;

/// One client count's row.
struct Row {
    clients: usize,
    orders: f64,
    tx: f64,
    failed: u64,
    shaped: f64,
    single: f64,
    peer: Option<PeerRun>,
}

fn nan_on_error(what: &str, r: anyhow::Result<f64>) -> f64 {
    r.unwrap_or_else(|e| {
        eprintln!("{what}: {e}");
        f64::NAN
    })
}

fn clients(n: usize) -> String {
    if n == 1 {
        "1 client".into()
    } else {
        format!("{n} clients")
    }
}

fn pct(a: f64, b: f64) -> String {
    if b.is_finite() && b > 0.0 {
        format!("{:.1} %", 100.0 * a / b)
    } else {
        "?".into()
    }
}

fn times(a: f64, b: f64) -> String {
    if b.is_finite() && b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "?".into()
    }
}

/// Runs the measurement; returns the best orders/s (the rate measurement 5 halves).
pub async fn run(report: &mut Report, secs: f64, seed: u64) -> anyhow::Result<f64> {
    let fx = Arc::new(fixture(MARKETS, 3, 8).await);
    sqlx::raw_sql(SCRATCH_TABLE)
        .execute(&fx.world.db.pool)
        .await?;
    // Before any order: the peer starts from the fixture's states.
    let peer = match Peer::setup(&fx).await {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            eprintln!("cqrs-es peer: setup failed: {e}");
            None
        }
    };
    let since: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(&fx.world.db.pool)
        .await?;
    // ETAL_BENCH_ORDERS=<clients>:<seconds>: only orders at that client count (for profiling).
    if let Some((c, t)) = std::env::var("ETAL_BENCH_ORDERS")
        .ok()
        .and_then(|v| {
            v.split_once(':')
                .map(|(c, t)| (c.parse().ok(), t.parse().ok()))
        })
        .and_then(|(c, t)| Some((c?, t?)))
    {
        eprintln!("orders only: {c} clients for {t} s (ETAL_BENCH_ORDERS)");
        let (orders, _, failed) = orders_per_second(&fx, c, t, seed).await;
        eprintln!("{orders:.0} orders/s, {failed} failed");
        return Ok(orders);
    }
    // ETAL_BENCH_HTTP=<seconds>: only the HTTP orders at 8 clients (for profiling the server).
    if let Some(t) = std::env::var("ETAL_BENCH_HTTP")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        let run = graphql_orders_per_second(GRAPHQL_CLIENTS, t, seed).await?;
        eprintln!("HTTP orders only: {run:?} (ETAL_BENCH_HTTP)");
        return Ok(run.orders_per_second);
    }
    let url = fx.world.db.url.clone();
    let pg_secs = secs.ceil() as u64;
    let mut rows = Vec::new();
    let mut script: Option<(OrderShape, String)> = None;
    for clients in CLIENTS {
        let (orders, tx, failed) = orders_per_second(&fx, clients, secs, seed).await;
        // The order-shaped transaction, from the orders of the first run.
        if script.is_none() {
            let shape = order_shape(&fx.world.db.pool, since).await?;
            let text = shape.script();
            script = Some((shape, text));
        }
        let (_, text) = script.as_ref().expect("the script");
        let shaped = nan_on_error(
            "pgbench (order-shaped)",
            pgbench_script(&url, "order.sql", text, clients, pg_secs).await,
        );
        let single = nan_on_error(
            "pgbench (single-row)",
            pgbench_tps(&url, clients, pg_secs).await,
        );
        let peer = match &peer {
            Some(p) => Some(p.run(clients, secs, seed).await),
            None => None,
        };
        rows.push(Row {
            clients,
            orders,
            tx,
            failed,
            shaped,
            single,
            peer,
        });
    }
    let all = order_shape(&fx.world.db.pool, since).await?;
    let (first, text) = script.expect("the script");
    let peer_events = match &peer {
        Some(p) => {
            let n = p.events().await;
            p.close().await;
            Some(n)
        }
        None => None,
    };

    let mut body = format!(
        "{MARKETS} markets with one open sale each (3 producers x 8 unlimited products per sale); \
         each order is placed by a new customer on a random sale, 3-5 lines of one unit, with an \
         idempotency key, through `App::place_order`: one transaction decides and commits the \
         whole order (per line, the stock's reservation and confirmation; per producer, the \
         annual sales' reservation and confirmation; the sale's `OrderAttached`; the \
         `OrderPlaced`; the idempotency record; on the online half of the markets, the outbox \
         row of the charge), then the outbox delivers an online order's charge at once (a \
         second, small transaction records the payment and settles the message). The {} orders of all runs wrote {:.2} events each \
         in their transaction ({:.2} streams, {:.2} snapshots due, {:.2} idempotency records, \
         {:.2} outbox rows; mean `length(payload::text)` {:.0}, `length(metadata::text)` {:.0}); \
         the charges, {} more transactions with {:.2} events an order.\n\n\
         Baselines, at each client count, in the same run on the same cluster: \
         `pgbench -n -c N -j N -T S -f order.sql`, an order-shaped transaction scripted from \
         the first run's {} orders ({:.2} events of {:.0} + {:.0} characters into \
         `bench_events`, the columns and indexes of `events`, each on a new stream, and one \
         idempotency record into `bench_keys`, the columns and key of `idempotency_keys`; no \
         outbox row, snapshot, charge or read: a ceiling); `pgbench -f insert.sql`, single-row \
         inserts into `bench_events`; and the cqrs-es peer: the same domain aggregates and \
         decisions through `CqrsFramework::execute` on postgres-es (`postgres_cqrs`, no \
         snapshots; tables in a schema of their own), one `execute` per stream an etal order \
         writes (stocks, annual sales, sale, order) plus one for the online payment, each \
         loading its aggregate's events and appending in its own transaction, conflicts \
         retried (tests/src/bench/peer.rs). The peer is an optimistic one: its order's terms \
         and producers are looked up once before the runs, the order number comes from an \
         in-memory query, and it writes no idempotency record and calls no payment provider; \
         nor is an order atomic (a failure between two `execute`s leaves the others \
         written).\n\n\
         | clients | orders/s | event transactions/s | refused or conflicts | pgbench order-shaped tx/s | orders / order-shaped | cqrs-es peer orders/s | orders / peer | pgbench rows/s (single-row) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        all.orders,
        all.events_per_order(),
        all.streams_per_order(),
        all.per_order(all.snapshots),
        all.per_order(all.keys),
        all.per_order(all.outbox),
        all.payload,
        all.metadata,
        all.other_tx,
        all.per_order(all.other_events),
        first.orders,
        first.events_per_order(),
        first.payload,
        first.metadata,
    );
    for r in &rows {
        let peer = r.peer.map(|p| p.orders_per_second).unwrap_or(f64::NAN);
        body.push_str(&format!(
            "| {} | {:.0} | {:.0} | {} | {:.0} | {} | {} | {} | {:.0} |\n",
            r.clients,
            r.orders,
            r.tx,
            r.failed,
            r.shaped,
            pct(r.orders, r.shaped),
            if peer.is_finite() {
                format!("{peer:.0}")
            } else {
                "?".into()
            },
            times(r.orders, peer),
            r.single,
        ));
    }
    if rows.iter().any(|r| r.peer.is_some()) {
        body.push_str(
            "\nThe peer's runs: `execute` calls per second, conflicts retried, orders given up \
             (a refusal, an error, or 40 conflicts on one `execute`).\n\n\
             | clients | peer orders/s | executes/s | executes / order | conflicts retried | orders given up |\n\
             |---|---|---|---|---|---|\n",
        );
        for r in &rows {
            if let Some(p) = r.peer {
                body.push_str(&format!(
                    "| {} | {:.0} | {:.0} | {:.2} | {} | {} |\n",
                    r.clients,
                    p.orders_per_second,
                    p.executes_per_second,
                    if p.orders_per_second > 0.0 {
                        p.executes_per_second / p.orders_per_second
                    } else {
                        f64::NAN
                    },
                    p.conflicts,
                    p.failed
                ));
            }
        }
        if let Some(n) = peer_events {
            body.push_str(&format!(
                "\nThe peer's `events` table holds {n} events after the runs.\n"
            ));
        }
    }
    body.push_str(&format!(
        "\nThe order-shaped script:\n\n```sql\n{}```\n",
        text
    ));
    let best = rows.iter().map(|r| r.orders).fold(0.0f64, f64::max);
    let at_http = rows
        .iter()
        .find(|r| r.clients == GRAPHQL_CLIENTS)
        .map(|r| r.orders);
    let http = graphql_orders_per_second(GRAPHQL_CLIENTS, secs, seed).await;
    match &http {
        Ok(h) => body.push_str(&format!(
            "\nThrough GraphQL over HTTP (`placeOrder` POSTed to `etal serve`, {GRAPHQL_CLIENTS} clients, \
             a fixture of the same shape, a new customer token and idempotency key per order, \
             the answer once committed): {:.0} orders/s ({} of the in-process rate at \
             {GRAPHQL_CLIENTS} clients), p50 {:.1} ms, p99 {:.1} ms, {} refused or failed, server \
             peak RSS {}. Read-your-writes is paid by the reads (ADR 0018): a reader beside the \
             load, one `eventCounts` query every 50 ms, waited for the projectors to pass every \
             committed order before each answer: {} queries ({} failed), p50 {:.1} ms, p99 {:.1} ms (at most \
             {} ms, `ETAL_READ_YOUR_WRITES_MS`).\n",
            h.orders_per_second,
            at_http.map(|r| pct(h.orders_per_second, r)).unwrap_or_else(|| "?".into()),
            h.p50,
            h.p99,
            h.failed,
            h.rss.map(|r| format!("{r:.0} MiB")).unwrap_or_else(|| "?".into()),
            h.reads,
            h.reads_failed,
            h.read_p50,
            h.read_p99,
            READ_YOUR_WRITES.as_millis(),
        )),
        Err(e) => body.push_str(&format!("\nThrough GraphQL over HTTP: failed: {e}\n")),
    }
    crate::bench::drop_db(&fx.world.db).await;
    report.section("1. Command throughput", body);
    for r in &rows {
        let ratio = r.orders / r.shaped;
        report.goal(
            &format!("orders vs order-shaped pgbench ({})", clients(r.clients)),
            ">= 50 %",
            format!(
                "{} ({:.0} orders/s, {:.0} tx/s)",
                pct(r.orders, r.shaped),
                r.orders,
                r.shaped
            ),
            ratio.is_finite().then_some(ratio >= 0.5),
        );
    }
    for r in &rows {
        let peer = r.peer.map(|p| p.orders_per_second).unwrap_or(f64::NAN);
        let ratio = r.orders / peer;
        report.goal(
            &format!("orders vs cqrs-es peer ({})", clients(r.clients)),
            ">= 1x",
            format!(
                "{} ({:.0} vs {:.0} orders/s)",
                times(r.orders, peer),
                r.orders,
                peer
            ),
            ratio.is_finite().then_some(ratio >= 1.0),
        );
    }
    let http_ratio = match (&http, at_http) {
        (Ok(h), Some(r)) if r > 0.0 => Some(h.orders_per_second / r),
        _ => None,
    };
    report.goal(
        &format!("HTTP vs in-process orders ({GRAPHQL_CLIENTS} clients)"),
        ">= 50 %",
        match (&http, at_http) {
            (Ok(h), Some(r)) => format!(
                "{} ({:.0} vs {r:.0} orders/s)",
                pct(h.orders_per_second, r),
                h.orders_per_second
            ),
            _ => "not measured".into(),
        },
        http_ratio.map(|r| r >= 0.5),
    );
    Ok(best)
}
