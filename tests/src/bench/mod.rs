//! `etal-bench`: a deterministic national network and measurements against the machine's
//! ceiling (pgbench) and the cqrs-es baseline. See docs/benchmarks.md.

pub mod generator;
pub mod measure;
pub mod memstore;
pub mod peer;
pub mod report;

use std::time::Duration;

/// p-th percentile (0..=100) of durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// p50 and p99 in milliseconds (sorts the samples).
pub fn p50_p99(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    (percentile_ms(samples, 50.0), percentile_ms(samples, 99.0))
}

/// Peak resident set size (VmHWM) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Drops a bench database (after closing its pool), so runs leave nothing on the cluster.
pub async fn drop_db(db: &crate::TestDb) {
    use sqlx::{Connection, Executor};
    db.pool.close().await;
    let url = etal_store::testkit::url_for("postgres");
    if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
        let _ = c
            .execute(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.name).as_str())
            .await;
        let _ = c.close().await;
    }
}
