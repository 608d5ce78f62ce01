//! The numbers of one run, printed as they come and written to docs/benchmarks.md.

use std::fmt::Write as _;
use std::path::Path;

/// A goal of docs/benchmarks.md: met, not met, or not measured in this run.
#[derive(Debug, Clone)]
pub struct Goal {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub command: String,
    pub scale: f64,
    pub seed: u64,
    pub sections: Vec<(String, String)>,
    pub goals: Vec<Goal>,
}

impl Report {
    /// Adds a section (markdown body) and prints it.
    pub fn section(&mut self, title: &str, body: String) {
        println!("\n== {title}\n{body}");
        self.sections.push((title.to_string(), body));
    }

    pub fn goal(&mut self, name: &str, target: &str, measured: String, met: Option<bool>) {
        self.goals.push(Goal {
            name: name.into(),
            target: target.into(),
            measured,
            met,
        });
    }

    pub fn markdown(&self, machine: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Benchmarks\n");
        let _ = writeln!(
            s,
            "Written by `make bench` (tests/src/bin/etal-bench.rs); do not edit by hand: the next run \
             rewrites this file.\n"
        );
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(s, "- scale: {} (1.0 = Cagette: 1,000 producers, 1,200 markets, ~200k orders a year), seed {}", self.scale, self.seed);
        let _ = writeln!(s, "{machine}");
        let _ = writeln!(
            s,
            "\nThe year of history is written as events through the event store (real aggregates \
             deciding every command in memory, events inserted in batches of 5,000 per transaction, \
             so `transaction_id` and `global_position` are assigned by PostgreSQL as for commands), \
             not through the application's flows: at the rates of section 1 (one transaction an \
             order), the year's ~200k orders alone would take longer than the whole generation. \
             The command path is measured on its own below.\n"
        );
        let _ = writeln!(s, "## Goals\n");
        let _ = writeln!(
            s,
            "| goal | target | measured | status |\n|---|---|---|---|"
        );
        for g in &self.goals {
            let status = match g.met {
                Some(true) => "met",
                Some(false) => "**not met**",
                None => "not measured",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                g.name, g.target, g.measured, status
            );
        }
        for (title, body) in &self.sections {
            let _ = writeln!(s, "\n## {title}\n\n{body}");
        }
        s
    }

    pub fn write(&self, path: &Path, machine: &str) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.markdown(machine))
    }
}

/// Cores, memory and PostgreSQL version, as a markdown list.
pub async fn machine(pool: &sqlx::PgPool) -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let pg: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(pool)
        .await
        .unwrap_or_else(|_| "unknown".into());
    format!("- machine: {cores} cores ({cpu}), {mem} memory\n- PostgreSQL: {pg}")
}
