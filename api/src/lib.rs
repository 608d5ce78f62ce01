//! The `etal` service: GraphQL API, command wiring, and the processes it runs (projectors,
//! scheduler). `main.rs` is the CLI over this library.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod config;
pub mod demo;
pub mod graphql;
pub mod http;
pub mod observe;
pub mod server;

use std::sync::Arc;

use etal_domain::{Clock, SystemClock};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::Config;

/// Sets up structured logs: quiet by default (warnings), verbose with RUST_LOG.
pub use observe::{announce, init_tracing, init_tracing_with};

/// A watch that turns true on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// Starts every projector of the service, and the sealer, as background tasks.
pub fn spawn_projectors(
    pool: &PgPool,
    shutdown: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    etal_projections::run_projectors(pool, etal_projections::readers(), shutdown)
}

/// The application over `pool`: the machine's clock, the plans configuration
/// (`ETAL_PLANS` or `config/plans.json`), and the payment-provider simulator (no real provider is
/// reachable from here; a real one implements `etal_app::PaymentProvider`).
pub fn application(pool: &PgPool) -> anyhow::Result<etal_app::App> {
    application_with(pool, &[])
}

/// A configuration error at start, with its detail (an `AppError::Internal` shows clients only
/// "internal error"; an operator starting the service needs the file and the field).
fn startup_error(e: etal_app::AppError) -> anyhow::Error {
    match e {
        etal_app::AppError::Internal(detail) => anyhow::anyhow!(detail),
        other => anyhow::anyhow!("{other}"),
    }
}

/// [`application`] with failures injected into the payment simulator (`ETAL_SIM_FAIL`), the fee
/// schedules (`ETAL_FEES`) and the default schedule (`ETAL_FEE_SCHEDULE`).
pub fn application_with(
    pool: &PgPool,
    sim_fail: &[(String, u32)],
) -> anyhow::Result<etal_app::App> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let plans = etal_app::load_plans().map_err(startup_error)?;
    let sim = etal_app::Simulator::new();
    for (kind, n) in sim_fail {
        sim.fail_next_of(kind, *n);
    }
    // R-FEE-3, R-FEE-5: the fee schedules (ETAL_FEES, else config/fees/, else the built-in
    // copy) and the schedule of markets the platform chose none for (ETAL_FEE_SCHEDULE).
    let fees = etal_app::money::load_fee_schedules().map_err(startup_error)?;
    let default = std::env::var("ETAL_FEE_SCHEDULE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| etal_app::money::DEFAULT_FEE_SCHEDULE.to_string());
    if fees.get(&default).is_none() {
        let known: Vec<&str> = fees.schedules.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "ETAL_FEE_SCHEDULE: no fee schedule named '{default}' (known: {})",
            known.join(", ")
        );
    }
    let mut app =
        etal_app::App::new(pool.clone(), clock, plans, Arc::new(sim)).with_fee_schedules(fees);
    app.settings.fee_schedule = default;
    Ok(app)
}

/// Runs the HTTP server (and, as configured, projectors and scheduler) until shutdown.
pub async fn serve(
    config: Config,
    http: http::HttpSettings,
    pool: PgPool,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The recorder before anything records.
    let _ = observe::prometheus();
    let mut tasks = Vec::new();
    if config.projectors {
        tasks.extend(spawn_projectors(&pool, &shutdown));
    }
    let mut app = application_with(&pool, &config.sim_fail)?;
    app.settings.payment_timeout = config.payment_timeout;
    app.settings.payouts = config.payouts.clone();
    app.settings.platform_identity = config.platform_identity.clone();
    app.settings.mail = config.mail.clone();
    app.settings.webhooks_allow_insecure = config.webhooks_allow_insecure;
    let mut webhook_secrets = None;
    if let config::Payments::Stripe {
        secret_key,
        api_base,
        api_version,
        webhook_secrets: secrets,
    } = &config.payments
    {
        let provider = etal_app::stripe::StripeProvider::new(etal_app::stripe::StripeConfig {
            api_base: api_base.clone(),
            secret_key: secret_key.expose().to_string(),
            api_version: api_version.clone(),
        })?;
        app.payments = Arc::new(provider);
        webhook_secrets = Some(secrets.iter().map(|s| s.expose().to_string()).collect());
        tracing::info!(api_base = %api_base, "payments: stripe");
    }
    app.settings.seal = config.seal.clone();
    app.settings.deliver_inline = config.outbox_inline;
    app.settings.delivery_delay = config.delivery_delay;
    app.settings.sales_horizon_weeks = config.sales_horizon_weeks;
    if std::env::var("DEMO").is_ok_and(|v| v == "1" || v == "true") {
        match demo::seed(&app)
            .await
            .map_err(|e| anyhow::anyhow!("seeding the demo: {e}"))?
        {
            Some(d) => {
                announce(&format!(
                    "demo: {} markets, {} producers, {} customers, {} sales, {} orders placed",
                    d.market_admins.len(),
                    d.producers.len(),
                    d.customers.len(),
                    d.sales.len(),
                    d.orders
                ));
                // A working token for each user named (24 hours, the server's key).
                let key = auth::JwtKey::from_env().ok().flatten();
                for (label, actor) in d
                    .market_admins
                    .iter()
                    .chain(&d.producers)
                    .chain(d.customers.iter().take(3))
                {
                    let token = key.as_ref().and_then(|k| {
                        auth::mint(
                            k,
                            actor.user,
                            actor.role,
                            std::time::Duration::from_secs(24 * 3600),
                        )
                        .ok()
                    });
                    match token {
                        Some(t) => announce(&format!(
                            "demo user {:?} {} ({label}) token {t}",
                            actor.role, actor.user
                        )),
                        None => announce(&format!(
                            "demo user {:?} {} ({label}); set ETAL_JWT_SECRET for a token",
                            actor.role, actor.user
                        )),
                    }
                }
            }
            None => announce("demo: the event store is not empty, nothing seeded"),
        }
    }
    if config.scheduler {
        // R-ACC-3: the daily training check (each run schedules the next day's).
        let today = etal_domain::calendar::paris_date(app.now());
        if let Err(e) = app.schedule_training_check(today).await {
            tracing::warn!(error = %e, "the daily training check could not be scheduled");
        }
        // R-ACC-3, R-FEE-5: this month's billing run (due at once if its time has passed and it
        // never ran; each run schedules the next month's).
        if let Err(e) = app.schedule_billing_run(today).await {
            tracing::warn!(error = %e, "the monthly billing run could not be scheduled");
        }
        // R-SAL-1: the daily generation of every market's sales ahead.
        if let Err(e) = app.schedule_sales_horizon(today).await {
            tracing::warn!(error = %e, "the daily sales generation could not be scheduled");
        }
        let scheduler = app.scheduler();
        let mut s = shutdown.clone();
        let interval = config.scheduler_interval;
        tasks.push(tokio::spawn(async move {
            scheduler
                .run(interval, async move {
                    let _ = s.wait_for(|v| *v).await;
                })
                .await
        }));
    }
    if config.projectors {
        // R-AUD-3: signed checkpoints of what the sealer sealed (with a key only).
        if config.seal.signer.is_none() {
            tracing::info!("no ETAL_SEAL_KEY: the history is sealed, no checkpoint is signed");
        }
        let signer = app.clone();
        let mut s = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            signer
                .run_checkpoints(async move {
                    let _ = s.wait_for(|v| *v).await;
                })
                .await
        }));
    }
    if config.outbox {
        let deliverer = app.clone();
        let mut s = shutdown.clone();
        let interval = config.outbox_interval;
        tasks.push(tokio::spawn(async move {
            deliverer
                .run_outbox(interval, async move {
                    let _ = s.wait_for(|v| *v).await;
                })
                .await
        }));
    }
    if config.outbox {
        // R-NOT-1: the sender of the messages the log calls for.
        match &config.mail.transport {
            etal_app::notify::MailTransport::Folder(dir) => {
                announce(&format!("etal writes its e-mails to {}", dir.display()))
            }
            etal_app::notify::MailTransport::Smtp(_) => {}
            etal_app::notify::MailTransport::Off => {
                tracing::info!("no ETAL_SMTP_URL nor ETAL_MAIL_DIR: messages wait")
            }
        }
        let sender = app.clone();
        let mut s = shutdown.clone();
        let interval = config.notify_interval;
        tasks.push(tokio::spawn(async move {
            sender
                .run_notifications(interval, async move {
                    let _ = s.wait_for(|v| *v).await;
                })
                .await
        }));
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(address = %config.listen, "serving GraphQL");
    let address = listener.local_addr()?;
    announce(&format!(
        "etal serves GraphiQL at http://{address}/ and the back office at http://{address}/admin/"
    ));
    let mut s = shutdown.clone();
    let api = graphql::ApiSettings {
        read_your_writes: config.read_your_writes,
    };
    let router = server::router(app, api, &http, webhook_secrets);
    server::serve_http(listener, router, &http, async move {
        let _ = s.wait_for(|v| *v).await;
    })
    .await?;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
