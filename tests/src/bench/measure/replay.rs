//! Measurement 3: Replay: every projection rebuilt from the generated events (`etal projections rebuild`,
//! a child process whose peak RSS is measured), against a comparable view built the cqrs-es way
//! (`GenericQuery` + `QueryReplay` over `PostgresEventRepository`/`PostgresViewRepository`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::persist::{GenericQuery, QueryReplay};
use cqrs_es::{EventEnvelope, View};
use etal_domain::stock::Stock;
use postgres_es::{PostgresEventRepository, PostgresViewRepository};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::bench::peak_rss_mib;
use crate::bench::report::Report;

/// The cqrs-es view: events per product stock.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StockEventCount {
    pub events: u64,
    pub last_event: String,
}

impl View<Stock> for StockEventCount {
    fn update(&mut self, event: &EventEnvelope<Stock>) {
        self.events += 1;
        self.last_event = cqrs_es::DomainEvent::event_type(&event.payload);
    }
}

/// Runs `etal projections rebuild name`; returns (events, seconds, peak RSS MiB).
async fn rebuild_child(url: &str, name: &str) -> anyhow::Result<(u64, f64, f64)> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(crate::etal_bin())
        .args(["projections", "rebuild", name])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    let mut rss = 0.0f64;
    let status = loop {
        if let Some(r) = peak_rss_mib(pid) {
            rss = rss.max(r);
        }
        tokio::select! {
            s = child.wait() => break s?,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use tokio::io::AsyncReadExt;
        stdout.read_to_string(&mut out).await?;
    }
    if !status.success() {
        anyhow::bail!("etal projections rebuild {name} failed: {out}");
    }
    // "rebuilt NAME: N events in T s, swapped in"
    let events = out
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok((events, secs, rss))
}

/// R-AUD-2: seals the whole log from scratch with `etal projections run --only sealer` (a child
/// process, the live runtime, batches of 2,000); returns (seconds, peak RSS MiB).
async fn seal_child(url: &str, pool: &PgPool, total: i64) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(crate::etal_bin())
        .args([
            "projections",
            "run",
            "--only",
            etal_projections::sealer::NAME,
        ])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    let mut rss = 0.0f64;
    loop {
        if let Some(r) = peak_rss_mib(pid) {
            rss = rss.max(r);
        }
        let sealed: Option<i64> = sqlx::query_scalar(
            "SELECT events_applied FROM projector_checkpoints WHERE projection = $1",
        )
        .bind(etal_projections::sealer::NAME)
        .fetch_optional(pool)
        .await?;
        if sealed.unwrap_or(0) >= total {
            break;
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the sealer exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    child.kill().await?;
    Ok((secs, rss))
}

/// Copies up to `budget` stock events (whole streams) into `cqrs_es_events`, the metadata as the
/// string map postgres-es reads; returns (streams, events).
async fn cqrs_table(pool: &PgPool, budget: i64) -> anyhow::Result<(i64, i64)> {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS cqrs_es_events, cqrs_es_snapshots, cqrs_stock_event_counts;
         CREATE TABLE cqrs_es_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
           sequence bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL,
           payload json NOT NULL, metadata json NOT NULL,
           PRIMARY KEY (aggregate_type, aggregate_id, sequence));
         CREATE TABLE cqrs_es_snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
           last_sequence bigint NOT NULL, current_snapshot bigint NOT NULL, payload json NOT NULL,
           PRIMARY KEY (aggregate_type, aggregate_id));
         CREATE TABLE cqrs_stock_event_counts (view_id text PRIMARY KEY, version bigint NOT NULL,
           payload json NOT NULL);",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "WITH streams AS (
           SELECT aggregate_id, count(*) AS n,
                  sum(count(*)) OVER (ORDER BY aggregate_id) AS running
           FROM events WHERE aggregate_type = 'stock' GROUP BY aggregate_id)
         INSERT INTO cqrs_es_events
         SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version,
                e.payload::json,
                (SELECT coalesce(json_object_agg(key, value #>> '{}'), '{}'::json) FROM jsonb_each(e.metadata))
         FROM events e JOIN streams s USING (aggregate_id)
         WHERE e.aggregate_type = 'stock' AND s.running - s.n < $1",
    )
    .bind(budget)
    .execute(pool)
    .await?;
    let row: (i64, i64) =
        sqlx::query_as("SELECT count(DISTINCT aggregate_id), count(*) FROM cqrs_es_events")
            .fetch_one(pool)
            .await?;
    Ok(row)
}

pub async fn run(report: &mut Report, pool: &PgPool, url: &str, budget: i64) -> anyhow::Result<()> {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    // The year was written minutes ago; a year's log in service was vacuumed long since.
    // Settle it first, so that the first rebuild does not race autovacuum (and the setting of
    // hint bits) over millions of fresh rows.
    let settling = Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(pool).await?;
    sqlx::raw_sql("CHECKPOINT").execute(pool).await?;
    let settled = settling.elapsed().as_secs_f64();
    let mut body = format!(
        "{total} generated events, vacuumed and checkpointed first ({settled:.1} s) as \
         autovacuum leaves a log in service. Each projection is rebuilt by `etal projections \
         rebuild NAME` (a child process: events into fresh tables, batches of 2,000 per \
         transaction, then swapped in). A projection reads only the aggregate types it needs \
         (`applied`) but its checkpoint traverses the whole log: the rate is log events per \
         second of the process's wall time.\n\n\
         | projection | applied | seconds | log events/s | peak RSS |\n|---|---|---|---|---|\n"
    );
    let mut worst = f64::INFINITY;
    let mut slowest = String::new();
    for p in etal_projections::all() {
        let (events, secs, rss) = rebuild_child(url, p.name()).await?;
        let rate = total as f64 / secs;
        if rate < worst {
            worst = rate;
            slowest = p.name().to_string();
        }
        body.push_str(&format!(
            "| {} | {events} | {secs:.1} | {rate:.0} | {rss:.0} MiB |\n",
            p.name()
        ));
    }
    // The sealer, from scratch on the same log (its tables are history: sealed once per log).
    let already: i64 = sqlx::query_scalar("SELECT count(*) FROM seal_leaves")
        .fetch_one(pool)
        .await?;
    let sealing = if already == 0 {
        let (secs, rss) = seal_child(url, pool, total).await?;
        let rate = total as f64 / secs;
        body.push_str(&format!(
            "| sealer (R-AUD-2: leaf hashes, RFC 6962 tree) | {total} | {secs:.1} | {rate:.0} | {rss:.0} MiB |\n"
        ));
        Some(rate)
    } else {
        body.push_str(&format!(
            "| sealer | already sealed ({already} leaves): not measured | | | |\n"
        ));
        None
    };

    let (streams, events) = cqrs_table(pool, budget).await?;
    let repo = PostgresEventRepository::new(pool.clone())
        .with_tables("cqrs_es_events", "cqrs_es_snapshots");
    let views: Arc<PostgresViewRepository<StockEventCount, Stock>> = Arc::new(
        PostgresViewRepository::new("cqrs_stock_event_counts", pool.clone()),
    );
    let query = GenericQuery::new(views);
    let replay = QueryReplay::new(repo, query);
    let started = Instant::now();
    replay
        .replay_all()
        .await
        .map_err(|e| anyhow::anyhow!("cqrs-es replay: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    let viewed: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum((payload->>'events')::bigint), 0)::bigint FROM cqrs_stock_event_counts",
    )
    .fetch_one(pool)
    .await?;
    let base = events as f64 / secs;
    let ratio = worst / base;
    body.push_str(&format!(
        "\ncqrs-es baseline: `QueryReplay::replay_all` with `GenericQuery<PostgresViewRepository>` \
         (a view of event counts per product stock, table `view_id text primary key, version \
         bigint, payload json`) over {events} stock events of {streams} streams (whole streams, up \
         to {budget} events; copied into `cqrs_es_events` with the metadata as the string map \
         postgres-es reads, because our metadata holds nested JSON). {secs:.1} s, **{base:.0} \
         events/s** ({viewed} events counted in the view). Ratio, slowest etal projection / \
         cqrs-es: **{ratio:.1}x**.\n"
    ));
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS cqrs_es_events, cqrs_es_snapshots, cqrs_stock_event_counts",
    )
    .execute(pool)
    .await?;
    // The rebuilds and the sealing leave millions of fresh rows that autovacuum would otherwise
    // visit (and the checkpointer flush) during the sections measured next: settle them here.
    let settling = Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(pool).await?;
    sqlx::raw_sql("CHECKPOINT").execute(pool).await?;
    body.push_str(&format!(
        "\nAfterwards the database is vacuumed and checkpointed ({:.1} s), so that autovacuum \
         and the checkpointer do not visit the rebuilt tables during the next sections.\n",
        settling.elapsed().as_secs_f64()
    ));
    report.section("3. Replay", body);
    report.goal(
        "replay rate (slowest projection)",
        ">= 100,000 log events/s",
        format!("{worst:.0} log events/s ({slowest})"),
        Some(worst >= 100_000.0),
    );
    report.goal(
        "sealing rate vs slowest projection replay",
        ">= 1x (sealing never lags the projections)",
        match sealing {
            Some(rate) => format!(
                "{:.2}x ({rate:.0} vs {worst:.0} log events/s)",
                rate / worst
            ),
            None => "not measured (log already sealed)".into(),
        },
        sealing.map(|rate| rate >= worst),
    );
    report.goal(
        "replay vs cqrs-es",
        ">= 20x",
        format!("{ratio:.1}x"),
        Some(ratio >= 20.0),
    );
    Ok(())
}
