//! `etal-bench`: generates a national network of direct-sale markets (deterministic, seeded) and
//! measures etal against the machine's ceiling and the cqrs-es baseline; rewrites
//! docs/benchmarks.md. `make bench` runs it in release mode.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use etal_tests::bench::generator::{generate, Shape};
use etal_tests::bench::measure::{history, hot_sale, lag, queries, replay, throughput};
use etal_tests::bench::report::{machine, Report};
use etal_tests::TestDb;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::{Connection, Executor};

const ALL: &[&str] = &[
    "throughput",
    "hot-sale",
    "replay",
    "queries",
    "lag",
    "history",
];

#[derive(Parser)]
#[command(
    name = "etal-bench",
    about = "Generate a national network and measure etal (see docs/benchmarks.md)",
    // `make bench BENCH_ARGS="--output x.md"`: the last --output wins over the Makefile's.
    args_override_self = true
)]
struct Cli {
    /// Size of the network relative to Cagette (1.0: 1,000 producers, 1,200 markets, ~200k
    /// orders); also shortens timed runs below 1.0.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Seed of the generator and of the clients.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Run only these measurements (throughput, hot-sale, replay, queries, lag, history).
    #[arg(long, num_args = 1.., value_parser = clap::builder::PossibleValuesParser::new(ALL))]
    only: Vec<String>,
    /// Where to write the report (markdown).
    #[arg(long, default_value = "docs/benchmarks.md")]
    output: PathBuf,
    /// Keep the bench databases afterwards (they are dropped by default); prints the recapped
    /// sale's database, ids and token.
    #[arg(long)]
    keep: bool,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

async fn drop_database(name: &str) {
    let url = etal_store::testkit::url_for("postgres");
    if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
        let _ = c
            .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await;
        let _ = c.close().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if std::env::var("DATABASE_URL").is_err() {
        anyhow::bail!("DATABASE_URL is not set: run `make bench`, which starts PostgreSQL");
    }
    if std::env::var("ETAL_BIN").is_err() {
        // The `etal` binary built beside this one.
        let exe = std::env::current_exe()?;
        if let Some(dir) = exe.parent() {
            std::env::set_var("ETAL_BIN", dir.join("etal"));
        }
    }
    let started = Instant::now();
    let run = |name: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == name);
    let full = cli.scale >= 1.0;
    let secs = (10.0 * cli.scale.min(1.0)).max(2.0);
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        scale: cli.scale,
        seed: cli.seed,
        ..Report::default()
    };
    let mut databases = Vec::new();
    let mut machine_info = String::new();

    // The generated network, for replay and queries.
    if run("replay") || run("queries") {
        let db = TestDb::new(8).await;
        databases.push(db.name.clone());
        machine_info = machine(&db.pool).await;
        let shape = Shape::at_scale(cli.scale, cli.seed);
        eprintln!(
            "generating {} producers, {} markets, {} weeks, ~{} orders into {}",
            shape.producers, shape.markets, shape.weeks, shape.orders, db.name
        );
        let events_bar = bar(0, "events");
        events_bar.set_length(shape.orders as u64 * 25);
        let eb = events_bar.clone();
        let orders_bar = bar(shape.orders as u64, "orders");
        let ob = orders_bar.clone();
        let g = generate(
            &db.pool,
            shape,
            &etal_tests::world::plans(),
            move |n| eb.inc(n),
            &move |n| ob.set_position(n),
        )
        .await?;
        events_bar.finish_and_clear();
        orders_bar.finish_and_clear();
        sqlx::query("ANALYZE events").execute(&db.pool).await?;
        report.section(
            "The generated network",
            format!(
                "| producers | products | catalogs | markets | sales | orders | order lines | turnover | refused | events | seconds | events/s written |\n\
                 |---|---|---|---|---|---|---|---|---|---|---|---|\n\
                 | {} | {} | {} | {} | {} | {} | {} | {} EUR | {} | {} | {:.1} | {:.0} |\n",
                g.producers, g.products, g.catalogs, g.markets, g.sales, g.orders, g.lines,
                g.turnover, g.refused, g.events, g.seconds, g.events as f64 / g.seconds
            ),
        );
        if run("replay") {
            let budget = if full { 200_000 } else { 20_000 };
            replay::run(&mut report, &db.pool, &db.url, budget).await?;
        }
        if run("queries") {
            let rss = queries::run(
                &mut report,
                &db.url,
                if full { 200 } else { 20 },
                cli.seed,
                cli.keep,
            )
            .await?;
            report.goal(
                "server peak RSS",
                "< 500 MB",
                rss.map(|r| format!("{r:.0} MiB (query harness)"))
                    .unwrap_or_else(|| "?".into()),
                rss.map(|r| r * 1.048_576 < 500.0),
            );
        }
        db.pool.close().await;
    }
    let mut best = 0.0;
    if run("throughput") {
        best = throughput::run(&mut report, secs, cli.seed).await?;
    }
    if run("hot-sale") {
        hot_sale::run(&mut report, if full { 500 } else { 100 }, 50).await?;
    }
    if run("lag") {
        // ETAL_BENCH_LAG_RATE=<orders/s>: the rate without measuring throughput first.
        let rate = match std::env::var("ETAL_BENCH_LAG_RATE")
            .ok()
            .and_then(|r| r.parse::<f64>().ok())
        {
            Some(r) => r,
            None if best > 0.0 => best / 2.0,
            None => 20.0,
        };
        lag::run(&mut report, rate, secs, cli.seed).await?;
    }
    if run("history") {
        let events = if full {
            100_000
        } else {
            (100_000.0 * cli.scale).max(5_000.0) as usize
        };
        history::run(&mut report, events, 300).await?;
    }
    if machine_info.is_empty() {
        let db = TestDb::new(1).await;
        databases.push(db.name.clone());
        machine_info = machine(&db.pool).await;
        db.pool.close().await;
    }
    report.write(&cli.output, &machine_info)?;
    if !cli.keep {
        for name in &databases {
            drop_database(name).await;
        }
    }
    let met = report.goals.iter().filter(|g| g.met == Some(true)).count();
    let missed = report.goals.iter().filter(|g| g.met == Some(false)).count();
    let unmeasured = report.goals.iter().filter(|g| g.met.is_none()).count();
    println!(
        "etal-bench: scale {}, {} sections, goals {met} met / {missed} not met / {unmeasured} not measured, {:.0} s; wrote {}",
        cli.scale,
        report.sections.len(),
        started.elapsed().as_secs_f64(),
        cli.output.display()
    );
    Ok(())
}
