//! The `etal` command: the server and the operators' tools.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use etal_api::config::Config;
use indicatif::{ProgressBar, ProgressStyle};

/// mimalloc instead of the system allocator: a recap page allocates thousands of small values
/// (rows, GraphQL values), where glibc's malloc cost a fifth of the server's time (ADR 0007).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "etal",
    version,
    about = "etal: an event-sourced back-end for direct-sale food markets"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the GraphQL API, GraphiQL and the back office (and run projectors, scheduler and
    /// senders, as configured). The default. Every setting is a flag or an environment variable.
    Serve(Box<etal_api::config::ServeArgs>),
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Inspect, run, rebuild and verify projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Mint a bearer token (HS256, signed with ETAL_JWT_SECRET) for a user in a role.
    Token {
        /// The user's UUID (a new one when omitted).
        #[arg(long)]
        user: Option<uuid::Uuid>,
        /// producer, market_admin, customer, auditor or platform_admin.
        #[arg(long, value_parser = etal_api::auth::parse_role)]
        role: etal_domain::Role,
        /// Hours until the token expires (1 to 8784, a year).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8784))]
        ttl_hours: u64,
    },
    /// The auditor's tools: replay the money history, check it, export the journal (R-PAY-3).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Payouts paid from the platform's bank account (ETAL_PAYOUTS=sepa, R-PAY-5).
    Payouts {
        #[command(subcommand)]
        command: PayoutsCommand,
    },
    /// The books: the entries of the issued invoices and credit notes.
    Books {
        #[command(subcommand)]
        command: BooksCommand,
    },
    /// The back office's log-in: links for operators, revocation of sessions.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print a one-time log-in link to the back office for a person in a role (auditors and
    /// platform administrators, who cannot ask for one by e-mail).
    Link {
        /// The person's UUID.
        #[arg(long)]
        user: uuid::Uuid,
        /// producer, market_admin, auditor or platform_admin.
        #[arg(long, value_parser = etal_api::auth::parse_role)]
        role: etal_domain::Role,
        /// Minutes the link may be used (1 to 1440).
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(i64).range(1..=1440))]
        ttl_minutes: i64,
    },
    /// End every open session of a person.
    Revoke {
        /// The person's UUID.
        #[arg(long)]
        user: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum BooksCommand {
    /// Write the FEC (Fichier des Écritures Comptables) of a year: the platform's books or a
    /// producer's (what passed through the platform); ISO 8859-15, tab separated.
    Fec {
        /// `platform`, or a producer's id.
        #[arg(long)]
        issuer: String,
        /// The calendar year (the fiscal year closing on 31 December).
        #[arg(long)]
        year: i32,
        /// Output file, or a directory to write `<SIREN>FEC<AAAAMMJJ>.txt` into (default: the
        /// current directory).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum PayoutsCommand {
    /// Write the SEPA credit transfer file (pain.001.001.09) of the payouts made on a date.
    Export {
        /// The payout run's date (Europe/Paris, YYYY-MM-DD), a Monday.
        #[arg(long)]
        monday: chrono::NaiveDate,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Rebuild the ledger in memory from the events alone and print every account's balance and
    /// the conservation of money as of a date.
    Replay {
        /// Business date (Europe/Paris, YYYY-MM-DD): entries dated after it are left out.
        #[arg(long)]
        until: chrono::NaiveDate,
    },
    /// Check the whole history: debits = credits, money conserved overall and per sale, every
    /// fee line recomputed from its inputs, credits equal to what the orders received, no sale
    /// paid twice. Exits 3 naming every difference (event position, aggregate, field).
    Check,
    /// Write the journal (one row per posting) as CSV.
    Export {
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// R-AUD-2, R-AUD-3: recompute every sealed leaf from the events and the tree's root, and
    /// check a signed checkpoint (the latest stored, or a published copy); with --older, that
    /// the newer extends it (consistency proof); with --event, that event's inclusion proof.
    /// Exits 3 naming the first leaf that differs.
    Verify {
        /// The verifier key (`<name>+<id>+<key>`), or a file holding it.
        #[arg(long, env = "ETAL_SEAL_VERIFIER_KEY")]
        key: String,
        /// A signed checkpoint file (default: the latest in the database).
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// An older signed checkpoint file the newer must extend.
        #[arg(long)]
        older: Option<std::path::PathBuf>,
        /// The global position of an event whose inclusion proof to print and check.
        #[arg(long)]
        event: Option<i64>,
        /// Print the report (and the proofs) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign a checkpoint of the sealed tree now (ETAL_SEAL_KEY or ETAL_SEAL_KEY_FILE), store and
    /// publish it (ETAL_CHECKPOINT_DIR), and print it.
    Checkpoint,
    /// Make a checkpoint signing key: the signer key goes to FILE (mode 600), the verifier key
    /// to FILE.pub and standard output.
    Keygen {
        /// The key's name (in every signature line).
        #[arg(long, default_value = "etal")]
        name: String,
        /// Where the signer key goes.
        #[arg(long, short)]
        output: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// List projections with their checkpoint and the log's head.
    List,
    /// Run only the projectors and the sealer (no HTTP server) until stopped.
    Run {
        /// Run only these (names as `etal projections list` shows them; repeatable).
        #[arg(long)]
        only: Vec<String>,
    },
    /// Rebuild a projection from the events into fresh tables, then swap them in.
    Rebuild {
        /// Projection name (see `etal projections list`).
        name: String,
    },
    /// Rebuild aside and compare with the live tables; exit 3 on any difference.
    Verify {
        /// Projection name.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Verify every projection.
        #[arg(long)]
        all: bool,
    },
}

/// Exit code when verify finds differences.
const EXIT_DIFFERENCES: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    // `etal` alone is `etal serve`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 1 {
        args.push("serve".into());
    }
    let cli = Cli::parse_from(args);
    match &cli.command {
        Some(Command::Serve(a)) => {
            etal_api::init_tracing_with(a.log_format.as_deref(), a.rust_log.as_deref())
        }
        _ => etal_api::init_tracing(),
    }
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // Said once, on stderr (not also as a log line).
            eprintln!("error: {e:#}");
            match e.downcast_ref::<etal_api::config::ConfigError>() {
                Some(etal_api::config::ConfigError::Arguments(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn progress_bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>20} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Token {
        user,
        role,
        ttl_hours,
    }) = &cli.command
    {
        let key = etal_api::auth::JwtKey::from_env()?
            .context("ETAL_JWT_SECRET is not set: tokens need the server's signing key")?;
        let user = etal_domain::ids::UserId(user.unwrap_or_else(uuid::Uuid::new_v4));
        let ttl = std::time::Duration::from_secs(ttl_hours.saturating_mul(3600));
        println!("{}", etal_api::auth::mint(&key, user, *role, ttl)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (config, http) = match &cli.command {
        Some(Command::Serve(args)) => (
            Config::from_args(args)?,
            Some(etal_api::http::HttpSettings::from_args(&args.http)?),
        ),
        _ => (Config::from_env()?, None),
    };
    if let (Some(Command::Serve(_)), Some(role)) = (&cli.command, &config.db_role) {
        // Migrated with the login's rights, then served with the role's (R-AUD-1).
        let owner = etal_store::db::connect_with_timeout(
            config.database_url.expose(),
            1,
            config.db_acquire_timeout,
        )
        .await
        .context("connecting to PostgreSQL")?;
        etal_store::db::migrate(&owner).await.context("migrating")?;
        owner.close().await;
        let pool = etal_store::db::connect_as(
            config.database_url.expose(),
            config.db_pool,
            config.db_acquire_timeout,
            role,
        )
        .await
        .with_context(|| {
            format!(
                "connecting to PostgreSQL as role {role} (ETAL_DB_ROLE; the login must be a \
                 member of it: GRANT {role} TO <login>, or ETAL_DB_ROLE= to work as the login)"
            )
        })?;
        let http = http.context("the HTTP settings")?;
        etal_api::serve(config, http, pool, etal_api::shutdown_signal()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let pool = etal_store::db::connect_with_timeout(
        config.database_url.expose(),
        config.db_pool,
        config.db_acquire_timeout,
    )
    .await
    .context("connecting to PostgreSQL")?;
    let Some(command) = cli.command else {
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::Serve(_) => {
            etal_store::db::migrate(&pool).await.context("migrating")?;
            let http = http.context("the HTTP settings")?;
            etal_api::serve(config, http, pool, etal_api::shutdown_signal()).await?;
        }
        Command::Migrate => {
            etal_store::db::migrate(&pool).await.context("migrating")?;
            eprintln!("migrations applied");
        }
        Command::Projections { command } => return projections(command, &pool).await,
        Command::Token { .. } => {}
        Command::Admin { command } => {
            let mut app = etal_api::application(&pool)?;
            if let Some(url) = std::env::var("ETAL_PUBLIC_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
            {
                app.settings.mail.public_url = url;
            }
            match command {
                AdminCommand::Link {
                    user,
                    role,
                    ttl_minutes,
                } => {
                    let link = app
                        .login_link(
                            etal_domain::ids::UserId(user),
                            role,
                            chrono::Duration::minutes(ttl_minutes),
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("{link}");
                }
                AdminCommand::Revoke { user } => {
                    let n = app
                        .revoke_sessions(etal_domain::ids::UserId(user))
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    eprintln!("{n} session(s) ended");
                }
            }
        }
        Command::Audit {
            command:
                command @ (AuditCommand::Verify { .. }
                | AuditCommand::Checkpoint
                | AuditCommand::Keygen { .. }),
        } => return seal_command(command, &pool, config.seal.clone()).await,
        Command::Audit { command } => return audit(command, &pool).await,
        Command::Books {
            command:
                BooksCommand::Fec {
                    issuer,
                    year,
                    output,
                },
        } => {
            let Some(books) = etal_app::books::Books::parse(&issuer) else {
                eprintln!(
                    "etal books fec: --issuer is `platform` or a producer's id, not {issuer:?}"
                );
                return Ok(ExitCode::from(2));
            };
            let mut app = etal_api::application_with(&pool, &[])?;
            app.settings.platform_identity = config.platform_identity.clone();
            let file = match app.fec(books, year).await {
                Ok(f) => f,
                Err(
                    e @ (etal_app::AppError::Rejected { .. } | etal_app::AppError::BadInput { .. }),
                ) => {
                    eprintln!("etal books fec: {e}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            let path = match output {
                Some(p) if p.is_dir() => p.join(&file.file_name),
                Some(p) => p,
                None => std::path::PathBuf::from(&file.file_name),
            };
            std::fs::write(&path, &file.bytes)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{}: {} entries, {} lines, {} EUR of debits = credits",
                path.display(),
                file.entries,
                file.lines,
                file.total_debit
            );
        }
        Command::Payouts {
            command: PayoutsCommand::Export { monday, output },
        } => {
            let mut app = etal_api::application_with(&pool, &[])?;
            app.settings.payouts = config.payouts.clone();
            let file = match app.sepa_file(monday).await {
                Ok(f) => f,
                Err(e @ etal_app::AppError::Rejected { .. }) => {
                    eprintln!("etal payouts export: {e}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            match &output {
                Some(path) => std::fs::write(path, &file.xml)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{}", file.xml),
            }
            eprintln!(
                "{}: {} transfers, {} EUR{}",
                file.message_id,
                file.transfers,
                file.control_sum,
                if file.sent_at.is_some() {
                    " (sent)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn projections(command: ProjectionsCommand, pool: &sqlx::PgPool) -> anyhow::Result<ExitCode> {
    match command {
        ProjectionsCommand::List => {
            println!(
                "{:<24} {:>14} {:>14} {:>14}",
                "projection", "applied", "position", "head"
            );
            for p in etal_projections::readers() {
                let (head, cp) = etal_projections::runtime::lag(pool, p.name()).await?;
                println!(
                    "{:<24} {:>14} {:>14} {:>14}",
                    p.name(),
                    cp.events_applied,
                    cp.position.position,
                    head.position
                );
            }
        }
        ProjectionsCommand::Run { only } => {
            let readers: Vec<_> = etal_projections::readers()
                .into_iter()
                .filter(|p| only.is_empty() || only.iter().any(|o| o == p.name()))
                .collect();
            for name in &only {
                if !readers.iter().any(|p| p.name() == name) {
                    anyhow::bail!("unknown projection '{name}' (see etal projections list)");
                }
            }
            let shutdown = etal_api::shutdown_signal();
            let tasks = etal_projections::run_projectors(pool, readers, &shutdown);
            for t in tasks {
                t.await?;
            }
        }
        ProjectionsCommand::Rebuild { name } => {
            let projection = etal_projections::by_name(&name)?;
            let total = event_total(pool).await?;
            let bar = progress_bar(&name, total);
            let started = std::time::Instant::now();
            let applied =
                etal_projections::rebuild(pool, projection.as_ref(), &|n| bar.inc(n)).await?;
            bar.finish_and_clear();
            println!(
                "rebuilt {name}: {applied} events in {:.1} s, swapped in",
                started.elapsed().as_secs_f64()
            );
        }
        ProjectionsCommand::Verify { name, all } => {
            let targets = if all {
                etal_projections::all()
            } else {
                vec![etal_projections::by_name(
                    name.as_deref().unwrap_or_default(),
                )?]
            };
            let total = event_total(pool).await?;
            let mut differences = 0usize;
            for p in &targets {
                let bar = progress_bar(p.name(), total);
                let report = etal_projections::verify(pool, p.as_ref(), &|n| bar.inc(n)).await?;
                bar.finish_and_clear();
                for d in &report.diffs {
                    println!("DIFF {}: {d}", report.projection);
                }
                differences += report.diffs.len();
                println!(
                    "{}: {} rows compared at position {}, {} differences",
                    report.projection,
                    report.rows_compared,
                    report.position.position,
                    report.diffs.len()
                );
            }
            println!(
                "verified {} projections: {differences} differences",
                targets.len()
            );
            if differences > 0 {
                return Ok(ExitCode::from(EXIT_DIFFERENCES));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn event_total(pool: &sqlx::PgPool) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(n.max(0) as u64)
}

/// `etal audit verify`, `checkpoint` and `keygen` (the sealed history).
async fn seal_command(
    command: AuditCommand,
    pool: &sqlx::PgPool,
    settings: etal_app::seal::SealSettings,
) -> anyhow::Result<ExitCode> {
    use etal_store::seal::note::{CheckpointSigner, CheckpointVerifier};
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let mut app = etal_api::application(pool)?;
    app.settings.seal = settings;
    match command {
        AuditCommand::Keygen { name, output } => {
            let signer = CheckpointSigner::generate(&name)?;
            let public = format!("{output}.pub", output = output.display());
            {
                use std::io::Write;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options.open(&output).with_context(|| {
                    format!("creating {} (it must not exist)", output.display())
                })?;
                writeln!(f, "{}", signer.to_text())?;
            }
            std::fs::write(&public, format!("{}\n", signer.verifier().to_text()))
                .with_context(|| format!("writing {public}"))?;
            println!("{}", signer.verifier().to_text());
            eprintln!(
                "signer key written to {} (keep it secret: ETAL_SEAL_KEY_FILE), verifier key to {public} (give it to auditors)",
                output.display()
            );
        }
        AuditCommand::Checkpoint => {
            if app.settings.seal.signer.is_none() {
                anyhow::bail!("no signing key: set ETAL_SEAL_KEY or ETAL_SEAL_KEY_FILE");
            }
            match app.sign_checkpoint().await? {
                Some(c) => {
                    print!("{}", c.note);
                    eprintln!("signed the checkpoint of {} leaves", c.tree_size);
                }
                None => {
                    let latest = app.latest_checkpoint().await?;
                    if let Some(c) = &latest {
                        print!("{}", c.note);
                    }
                    eprintln!(
                        "nothing new to sign: the latest checkpoint covers {} leaves",
                        latest.map_or(0, |c| c.tree_size)
                    );
                }
            }
        }
        AuditCommand::Verify {
            key,
            checkpoint,
            older,
            event,
            json,
        } => {
            let key_path = std::path::Path::new(&key);
            let key_text = if key_path.is_file() {
                read(key_path)?
            } else {
                key.clone()
            };
            let verifier = CheckpointVerifier::parse(&key_text).context("--key")?;
            let started = std::time::Instant::now();
            let request = etal_app::seal::VerifyRequest {
                verifier,
                checkpoint: checkpoint.as_deref().map(read).transpose()?,
                older: older.as_deref().map(read).transpose()?,
                event,
            };
            let report = match app.verify_history(request).await {
                Ok(r) => r,
                Err(etal_app::seal::VerifyError::App(e)) => return Err(e.into()),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_DIFFERENCES));
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                if let Some(p) = &report.inclusion {
                    println!(
                        "event at position {} is leaf {} of {}: leaf hash {}, path {}",
                        p.global_position,
                        p.leaf_index,
                        p.tree_size,
                        hex::encode(p.leaf_hash),
                        p.path.iter().map(hex::encode).collect::<Vec<_>>().join(" ")
                    );
                }
                if let Some(c) = &report.consistency {
                    println!(
                        "consistency {} -> {}: {}",
                        c.old_size,
                        c.new_size,
                        c.proof
                            .iter()
                            .map(hex::encode)
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                }
                if let Some(problem) = &report.problem {
                    println!("BAD {problem}");
                }
            }
            eprintln!(
                "verified {} leaves of {} ({} events after it) in {:.1} s: {}",
                report.leaves_checked,
                report.origin,
                report.events_after,
                started.elapsed().as_secs_f64(),
                if report.problem.is_none() {
                    "the history checks out"
                } else {
                    "TAMPERED"
                }
            );
            if report.problem.is_some() {
                return Ok(ExitCode::from(EXIT_DIFFERENCES));
            }
        }
        _ => unreachable!("not a sealing command"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(command: AuditCommand, pool: &sqlx::PgPool) -> anyhow::Result<ExitCode> {
    use etal_app::audit;
    let total = event_total(pool).await?;
    let bar = progress_bar("replaying", total);
    let started = std::time::Instant::now();
    match command {
        AuditCommand::Replay { until } => {
            let r = audit::replay(pool, &|n| bar.inc(n)).await?;
            bar.finish_and_clear();
            let tb = r.ledger.trial_balance(until);
            println!(
                "{:<60} {:>14} {:>14} {:>14}",
                "account", "debits", "credits", "balance"
            );
            for (account, (d, c)) in &tb.accounts {
                println!(
                    "{:<60} {:>14} {:>14} {:>14}",
                    audit::account_name(account),
                    d.to_string(),
                    c.to_string(),
                    (*d - *c).to_string()
                );
            }
            let c = r.ledger.conservation(until);
            println!(
                "as of {until}: payments {} = refunds {} + fees {} + payouts {} + held {} ({})",
                c.payments,
                c.refunds,
                c.fees,
                c.payouts,
                c.held,
                if c.holds() {
                    "conserved"
                } else {
                    "NOT CONSERVED"
                }
            );
            println!(
                "replayed {} events into {} entries in {:.1} s: debits {} credits {} as of {until}",
                r.events,
                r.ledger.entries().count(),
                started.elapsed().as_secs_f64(),
                tb.total_debits,
                tb.total_credits
            );
        }
        AuditCommand::Check => {
            let report = audit::check(pool, &|n| bar.inc(n)).await?;
            bar.finish_and_clear();
            // Kept for the auditors' page (the latest check and what it found).
            audit::record_check(pool, &report, chrono::Utc::now())
                .await
                .context("recording the check")?;
            for d in &report.differences {
                println!("DIFF {d}");
            }
            println!(
                "checked {} events, {} entries, {} fee lines, {} sales: {} differences",
                report.events,
                report.entries,
                report.fee_lines_checked,
                report.sales.len(),
                report.differences.len()
            );
            if !report.differences.is_empty() {
                return Ok(ExitCode::from(EXIT_DIFFERENCES));
            }
        }
        AuditCommand::Export { output } => {
            let r = audit::replay(pool, &|n| bar.inc(n)).await?;
            bar.finish_and_clear();
            let rows = match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    let rows = audit::write_journal_csv(&r.ledger, &mut w)?;
                    std::io::Write::flush(&mut w)?;
                    rows
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    audit::write_journal_csv(&r.ledger, &mut lock)?
                }
            };
            eprintln!(
                "exported {} entries ({rows} postings) from {} events to {}",
                r.ledger.entries().count(),
                r.events,
                output
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "stdout".into())
            );
        }
        AuditCommand::Verify { .. } | AuditCommand::Checkpoint | AuditCommand::Keygen { .. } => {
            unreachable!("the sealing commands are seal_command's")
        }
    }
    Ok(ExitCode::SUCCESS)
}
