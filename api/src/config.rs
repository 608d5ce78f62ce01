//! Typed configuration from the environment (documented in README.md).

use std::net::SocketAddr;
use std::time::Duration;

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// DATABASE_URL: the PostgreSQL database (the Makefile provisions one when unset).
    pub database_url: Secret,
    /// ETAL_LISTEN: address and port of the HTTP server (default 127.0.0.1:8080).
    pub listen: SocketAddr,
    /// ETAL_DB_POOL: connections in the pool (default 16).
    pub db_pool: u32,
    /// ETAL_DB_ACQUIRE_TIMEOUT_MS: how long a request waits for a connection (default 3000).
    pub db_acquire_timeout: Duration,
    /// ETAL_DB_ROLE: the role the service works as (None: the login's own).
    pub db_role: Option<String>,
    /// ETAL_SEAL_KEY(_FILE), ETAL_CHECKPOINT_*: signed checkpoints (R-AUD-3).
    pub seal: etal_app::seal::SealSettings,
    /// ETAL_PROJECTORS: run the projectors in this process (default true).
    pub projectors: bool,
    /// ETAL_SCHEDULER: run the scheduler in this process (default true).
    pub scheduler: bool,
    /// ETAL_SCHEDULER_INTERVAL_MS: how often the scheduler looks for due commands (default 1000).
    pub scheduler_interval: Duration,
    /// ETAL_READ_YOUR_WRITES_MS: how long a query waits for the projections to pass what was
    /// committed before it (default 2000).
    pub read_your_writes: Duration,
    /// ETAL_OUTBOX: run the outbox deliverer in this process (default true).
    pub outbox: bool,
    /// ETAL_OUTBOX_INTERVAL_MS: how often the deliverer looks for due messages (default 500).
    pub outbox_interval: Duration,
    /// ETAL_OUTBOX_INLINE: a flow delivers its messages right after its commit (default true).
    pub outbox_inline: bool,
    /// ETAL_DELIVERY_DELAY_MINUTES: how long after a sale's end its units count as delivered
    /// (R-STK-4, default 10).
    pub delivery_delay: chrono::Duration,
    /// ETAL_SALES_HORIZON_WEEKS: how far ahead the scheduler generates sales (default 8).
    pub sales_horizon_weeks: u32,
    /// ETAL_SIM_FAIL: failures the payment simulator injects, e.g. `refund:3,charge:1` (the next
    /// 3 refunds and the next charge fail). For tests and demonstrations.
    pub sim_fail: Vec<(String, u32)>,
    /// ETAL_PAYMENTS: `simulator` (default) or `stripe`.
    pub payments: Payments,
    /// ETAL_PAYOUTS: `provider` (default: transfers through the payment provider) or `sepa`
    /// (SEPA credit transfer files from the platform's account: ETAL_SEPA_DEBTOR_NAME,
    /// ETAL_SEPA_DEBTOR_IBAN, ETAL_SEPA_DEBTOR_BIC).
    pub payouts: etal_app::payouts::PayoutRail,
    /// ETAL_PLATFORM_LEGAL_NAME, _SIREN, _VAT_NUMBER, _ADDRESS, _POSTCODE, _CITY: the platform's
    /// legal identity, for the monthly invoices of its fees (R-INV-3; unset: none issued).
    pub platform_identity: Option<etal_app::invoices::BillingIdentity>,
    /// ETAL_PAYMENT_TIMEOUT_SECONDS: how long an online order waits for its customer to confirm
    /// a payment (Stripe), before it is cancelled and its stock released (default 900).
    pub payment_timeout: chrono::Duration,
    /// R-NOT: ETAL_SMTP_URL (an SMTP server) or ETAL_MAIL_DIR (`.eml` files in a folder; `make
    /// run` uses `var/mail`), ETAL_MAIL_FROM, ETAL_PUBLIC_URL. Neither set: messages wait.
    pub mail: etal_app::notify::MailSettings,
    /// ETAL_NOTIFY_INTERVAL_MS: how often the sender looks for due messages (default 1000).
    pub notify_interval: Duration,
    /// ETAL_WEBHOOKS_ALLOW_INSECURE: webhook endpoints may be http:// and on private or
    /// loopback addresses (tests, local development; default false).
    pub webhooks_allow_insecure: bool,
}

/// Everything `etal serve` reads, each as a flag or its environment variable (`etal serve
/// --help` lists them; README.md, "Configuration"). Bad values are refused by the parser (exit 2).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The PostgreSQL database (the Makefile provisions one when unset).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Address and port of the HTTP server.
    #[arg(long, env = "ETAL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Connections in the database pool (1 to 1000).
    #[arg(long, env = "ETAL_DB_POOL", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool: u32,
    /// How long a request waits for a database connection before it is answered RETRYABLE
    /// (and `/health` 503), in milliseconds.
    #[arg(long, env = "ETAL_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub db_acquire_timeout_ms: u64,
    /// The database role the service works as (R-AUD-1: it may only read and append the
    /// history); the login must be a member. Empty: work as the login.
    #[arg(long, env = "ETAL_DB_ROLE", default_value = etal_store::db::SERVICE_ROLE)]
    pub db_role: String,
    /// The Ed25519 key that signs checkpoints of the sealed history (R-AUD-3), as
    /// `etal audit keygen` writes it (`PRIVATE+KEY+...`; never logged, never stored).
    #[arg(
        long,
        env = "ETAL_SEAL_KEY",
        hide_env_values = true,
        conflicts_with = "seal_key_file"
    )]
    pub seal_key: Option<String>,
    /// A file holding that key.
    #[arg(long, env = "ETAL_SEAL_KEY_FILE")]
    pub seal_key_file: Option<std::path::PathBuf>,
    /// The origin line of the checkpoints (a name unique to this log, e.g. its host name).
    #[arg(long, env = "ETAL_CHECKPOINT_ORIGIN", default_value = "etal")]
    pub checkpoint_origin: String,
    /// How often a checkpoint is signed when the history grew (seconds).
    #[arg(long, env = "ETAL_CHECKPOINT_INTERVAL_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub checkpoint_interval_secs: u64,
    /// A folder (outside the database) each signed checkpoint is written to.
    #[arg(long, env = "ETAL_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// Addresses each signed checkpoint is e-mailed to (the auditors'), comma separated.
    #[arg(long, env = "ETAL_AUDITORS_EMAIL")]
    pub auditors_email: Option<String>,
    /// Run the projectors in this process.
    #[arg(long, env = "ETAL_PROJECTORS", default_value_t = true, action = clap::ArgAction::Set)]
    pub projectors: bool,
    /// Run the scheduler in this process.
    #[arg(long, env = "ETAL_SCHEDULER", default_value_t = true, action = clap::ArgAction::Set)]
    pub scheduler: bool,
    /// How often the scheduler looks for due commands (ms).
    #[arg(long, env = "ETAL_SCHEDULER_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub scheduler_interval_ms: u64,
    /// How long a query waits for the projections to pass what was committed before it (ms).
    #[arg(long, env = "ETAL_READ_YOUR_WRITES_MS", default_value_t = 2000)]
    pub read_your_writes_ms: u64,
    /// How long after a sale's end its units count as delivered (R-STK-4, minutes).
    #[arg(long, env = "ETAL_DELIVERY_DELAY_MINUTES", default_value_t = 10,
          value_parser = clap::value_parser!(i64).range(0..=10_080))]
    pub delivery_delay_minutes: i64,
    /// How far ahead the scheduler generates sales (weeks).
    #[arg(long, env = "ETAL_SALES_HORIZON_WEEKS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=104))]
    pub sales_horizon_weeks: u32,
    /// Run the outbox deliverer and the message sender in this process.
    #[arg(long, env = "ETAL_OUTBOX", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox: bool,
    /// How often the deliverer looks for due outbox messages (ms).
    #[arg(long, env = "ETAL_OUTBOX_INTERVAL_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_interval_ms: u64,
    /// A flow delivers its outbox messages right after its commit.
    #[arg(long, env = "ETAL_OUTBOX_INLINE", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_inline: bool,
    /// Failures the payment simulator injects, e.g. `refund:3,charge:1` (tests, demonstrations).
    #[arg(long, env = "ETAL_SIM_FAIL")]
    pub sim_fail: Option<String>,
    /// The payment provider: `simulator` (default) or `stripe`.
    #[arg(long, env = "ETAL_PAYMENTS")]
    pub payments: Option<String>,
    /// Stripe's secret key (with ETAL_PAYMENTS=stripe; never logged).
    #[arg(long, env = "ETAL_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Stripe's API address.
    #[arg(
        long,
        env = "ETAL_STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// The `Stripe-Version` to send (optional).
    #[arg(long, env = "ETAL_STRIPE_API_VERSION")]
    pub stripe_api_version: Option<String>,
    /// Stripe's webhook signing secrets (`whsec_...`), comma separated while one is rolled over.
    #[arg(long, env = "ETAL_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// How long an online order waits for its payment before it is cancelled (seconds).
    #[arg(long, env = "ETAL_PAYMENT_TIMEOUT_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub payment_timeout_seconds: i64,
    /// `provider` (transfers through the payment provider, default) or `sepa` (credit transfer
    /// files from the platform's account, with the three ETAL_SEPA_DEBTOR_* settings).
    #[arg(long, env = "ETAL_PAYOUTS")]
    pub payouts: Option<String>,
    /// The platform's account holder, for SEPA files.
    #[arg(long, env = "ETAL_SEPA_DEBTOR_NAME")]
    pub sepa_debtor_name: Option<String>,
    /// The platform's IBAN, for SEPA files.
    #[arg(long, env = "ETAL_SEPA_DEBTOR_IBAN", hide_env_values = true)]
    pub sepa_debtor_iban: Option<String>,
    /// The platform's BIC, for SEPA files.
    #[arg(long, env = "ETAL_SEPA_DEBTOR_BIC")]
    pub sepa_debtor_bic: Option<String>,
    /// The platform's legal name, for the invoices of its fees (R-INV-3; unset: none issued).
    #[arg(long, env = "ETAL_PLATFORM_LEGAL_NAME")]
    pub platform_legal_name: Option<String>,
    /// The platform's SIREN.
    #[arg(long, env = "ETAL_PLATFORM_SIREN")]
    pub platform_siren: Option<String>,
    /// The platform's VAT number.
    #[arg(long, env = "ETAL_PLATFORM_VAT_NUMBER")]
    pub platform_vat_number: Option<String>,
    /// The platform's address line.
    #[arg(long, env = "ETAL_PLATFORM_ADDRESS")]
    pub platform_address: Option<String>,
    /// The platform's postcode.
    #[arg(long, env = "ETAL_PLATFORM_POSTCODE")]
    pub platform_postcode: Option<String>,
    /// The platform's city.
    #[arg(long, env = "ETAL_PLATFORM_CITY")]
    pub platform_city: Option<String>,
    /// An SMTP server for the messages (`smtp://host:port`, `smtps://user:password@host`).
    #[arg(long, env = "ETAL_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Without SMTP: a folder the messages are written to as `.eml` files (`make run`: var/mail).
    #[arg(long, env = "ETAL_MAIL_DIR")]
    pub mail_dir: Option<String>,
    /// The sender of the messages (`Name <address>`).
    #[arg(long, env = "ETAL_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Where links in messages and the back office's log-in links point.
    #[arg(long, env = "ETAL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How often the message sender looks for due messages (ms).
    #[arg(long, env = "ETAL_NOTIFY_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub notify_interval_ms: u64,
    /// Webhook endpoints may be http:// and on private or loopback addresses (tests only).
    #[arg(long, env = "ETAL_WEBHOOKS_ALLOW_INSECURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhooks_allow_insecure: bool,
    /// The plans configuration file (default config/plans.json, else the built-in copy).
    #[arg(long, env = "ETAL_PLANS", value_parser = readable_file)]
    pub plans: Option<std::path::PathBuf>,
    /// A folder of fee schedules (`*.json`; default config/fees, else the built-in copies).
    #[arg(long, env = "ETAL_FEES")]
    pub fees: Option<std::path::PathBuf>,
    /// The fee schedule of markets that were not given one.
    #[arg(long, env = "ETAL_FEE_SCHEDULE")]
    pub fee_schedule: Option<String>,
    /// `1`: seed the demonstration data into an empty event store.
    #[arg(long, env = "DEMO")]
    pub demo: Option<String>,
    /// Log format: `json` (the default when stderr is not a terminal) or `text`.
    #[arg(long, env = "ETAL_LOG_FORMAT", value_parser = ["json", "text"])]
    pub log_format: Option<String>,
    /// Which logs to write, in tracing's filter syntax (default `warn`; `info` logs every request).
    #[arg(long = "log", env = "RUST_LOG")]
    pub rust_log: Option<String>,
    #[command(flatten)]
    pub http: crate::http::HttpArgs,
}

fn readable_file(s: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(s);
    std::fs::File::open(&path)
        .map(|_| path)
        .map_err(|e| format!("cannot read {s}: {e}"))
}

/// Which payment provider serves the online markets.
#[derive(Debug, Clone)]
pub enum Payments {
    /// The in-process simulator: charges succeed at once (tests, `make run`).
    Simulator,
    /// Stripe, over its API.
    Stripe {
        /// ETAL_STRIPE_SECRET_KEY (required; never logged).
        secret_key: Secret,
        /// ETAL_STRIPE_API_BASE (default https://api.stripe.com).
        api_base: String,
        /// ETAL_STRIPE_API_VERSION (optional `Stripe-Version`).
        api_version: Option<String>,
        /// ETAL_STRIPE_WEBHOOK_SECRET: the endpoint's signing secrets (`whsec_...`), comma
        /// separated while one is rolled over (required).
        webhook_secrets: Vec<Secret>,
    },
}

fn payouts(a: &ServeArgs) -> Result<etal_app::payouts::PayoutRail, ConfigError> {
    match a.payouts.as_deref().map(str::trim) {
        None | Some("provider") => Ok(etal_app::payouts::PayoutRail::Provider),
        Some("sepa") => {
            let get =
                |v: &Option<String>, name: &'static str| given(v).ok_or(ConfigError::Missing(name));
            let (name, iban, bic) = (
                get(&a.sepa_debtor_name, "ETAL_SEPA_DEBTOR_NAME")?,
                get(&a.sepa_debtor_iban, "ETAL_SEPA_DEBTOR_IBAN")?,
                get(&a.sepa_debtor_bic, "ETAL_SEPA_DEBTOR_BIC")?,
            );
            let checked = etal_app::bank_details::validate(&name, &iban, &bic).map_err(|e| {
                ConfigError::Invalid {
                    name: "ETAL_SEPA_DEBTOR_IBAN",
                    reason: e.to_string(),
                }
            })?;
            Ok(etal_app::payouts::PayoutRail::Sepa(
                etal_app::sepa::Debtor {
                    name: checked.holder,
                    iban: checked.iban,
                    bic: checked.bic,
                },
            ))
        }
        Some(other) => Err(ConfigError::Invalid {
            name: "ETAL_PAYOUTS",
            reason: format!("'{other}': expected provider or sepa"),
        }),
    }
}

fn platform_identity(
    a: &ServeArgs,
) -> Result<Option<etal_app::invoices::BillingIdentity>, ConfigError> {
    let Some(legal_name) = given(&a.platform_legal_name) else {
        return Ok(None);
    };
    let get = |v: &Option<String>, name: &'static str| given(v).ok_or(ConfigError::Missing(name));
    let siren = etal_app::legal_ids::check_siren(&get(&a.platform_siren, "ETAL_PLATFORM_SIREN")?)
        .map_err(|e| ConfigError::Invalid {
        name: "ETAL_PLATFORM_SIREN",
        reason: e.to_string(),
    })?;
    let vat = etal_app::legal_ids::check_vat_number(
        &get(&a.platform_vat_number, "ETAL_PLATFORM_VAT_NUMBER")?,
        Some(&siren),
    )
    .map_err(|e| ConfigError::Invalid {
        name: "ETAL_PLATFORM_VAT_NUMBER",
        reason: e.to_string(),
    })?;
    Ok(Some(etal_app::invoices::BillingIdentity {
        legal_name,
        siren,
        vat_number: Some(vat),
        vat_franchise: false,
        address_line: get(&a.platform_address, "ETAL_PLATFORM_ADDRESS")?,
        postcode: get(&a.platform_postcode, "ETAL_PLATFORM_POSTCODE")?,
        city: get(&a.platform_city, "ETAL_PLATFORM_CITY")?,
        country: "FR".into(),
    }))
}

fn payments(a: &ServeArgs) -> Result<Payments, ConfigError> {
    match a.payments.as_deref().map(str::trim) {
        None | Some("simulator") => Ok(Payments::Simulator),
        Some("stripe") => Ok(Payments::Stripe {
            secret_key: Secret(
                given(&a.stripe_secret_key)
                    .ok_or(ConfigError::Missing("ETAL_STRIPE_SECRET_KEY"))?,
            ),
            api_base: a.stripe_api_base.clone(),
            api_version: given(&a.stripe_api_version),
            webhook_secrets: given(&a.stripe_webhook_secret)
                .ok_or(ConfigError::Missing("ETAL_STRIPE_WEBHOOK_SECRET"))?
                .split(',')
                .map(|s| Secret(s.trim().to_string()))
                .filter(|s| !s.0.is_empty())
                .collect(),
        }),
        Some(other) => Err(ConfigError::Invalid {
            name: "ETAL_PAYMENTS",
            reason: format!("'{other}': expected simulator or stripe"),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// A value the command line's parser refused (exit code 2, as clap's).
    #[error("{0}")]
    Arguments(String),
}

/// A value that is set and not blank.
fn given(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|v| !v.trim().is_empty()).cloned()
}

impl Config {
    /// The configuration from the environment alone (the commands other than `serve`); a bad
    /// value is refused as `etal serve` refuses it.
    pub fn from_env() -> Result<Config, ConfigError> {
        #[derive(clap::Parser)]
        struct EnvOnly {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let parsed = <EnvOnly as clap::Parser>::try_parse_from(["etal"])
            .map_err(|e| ConfigError::Arguments(e.to_string()))?;
        Config::from_args(&parsed.serve)
    }

    /// The configuration `etal serve` was given (flags or environment variables).
    pub fn from_args(a: &ServeArgs) -> Result<Config, ConfigError> {
        Ok(Config {
            database_url: Secret(
                given(&a.database_url).ok_or(ConfigError::Missing("DATABASE_URL"))?,
            ),
            listen: a.listen,
            db_pool: a.db_pool,
            db_acquire_timeout: Duration::from_millis(a.db_acquire_timeout_ms),
            projectors: a.projectors,
            scheduler: a.scheduler,
            scheduler_interval: Duration::from_millis(a.scheduler_interval_ms),
            read_your_writes: Duration::from_millis(a.read_your_writes_ms),
            delivery_delay: chrono::Duration::minutes(a.delivery_delay_minutes),
            sales_horizon_weeks: a.sales_horizon_weeks,
            outbox: a.outbox,
            outbox_interval: Duration::from_millis(a.outbox_interval_ms),
            outbox_inline: a.outbox_inline,
            sim_fail: sim_failures(a.sim_fail.as_deref().unwrap_or_default())?,
            payments: payments(a)?,
            payouts: payouts(a)?,
            platform_identity: platform_identity(a)?,
            payment_timeout: chrono::Duration::seconds(a.payment_timeout_seconds),
            mail: mail(a)?,
            notify_interval: Duration::from_millis(a.notify_interval_ms),
            webhooks_allow_insecure: a.webhooks_allow_insecure,
            db_role: Some(a.db_role.trim().to_string()).filter(|r| !r.is_empty()),
            seal: seal(a)?,
        })
    }
}

/// R-AUD-3: the signing key and where checkpoints go.
fn seal(a: &ServeArgs) -> Result<etal_app::seal::SealSettings, ConfigError> {
    use etal_store::seal::note::CheckpointSigner;
    let (name, text) = match (given(&a.seal_key), &a.seal_key_file) {
        (Some(k), _) => ("ETAL_SEAL_KEY", Some(k)),
        (None, Some(path)) => (
            "ETAL_SEAL_KEY_FILE",
            Some(
                std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    name: "ETAL_SEAL_KEY_FILE",
                    reason: format!("cannot read {}: {e}", path.display()),
                })?,
            ),
        ),
        (None, None) => ("", None),
    };
    let signer = text
        .map(|t| {
            CheckpointSigner::parse(&t).map_err(|e| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let origin = a.checkpoint_origin.trim().to_string();
    if origin.is_empty() || origin.contains(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            name: "ETAL_CHECKPOINT_ORIGIN",
            reason: "one word without spaces, e.g. the log's host name".into(),
        });
    }
    let mut auditors = Vec::new();
    for a in given(&a.auditors_email).unwrap_or_default().split(',') {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        if a.parse::<lettre::Address>().is_err() {
            return Err(ConfigError::Invalid {
                name: "ETAL_AUDITORS_EMAIL",
                reason: format!("{a:?} is not an e-mail address"),
            });
        }
        auditors.push(a.to_lowercase());
    }
    Ok(etal_app::seal::SealSettings {
        auditors,
        signer,
        origin,
        interval: Duration::from_secs(a.checkpoint_interval_secs),
        publish_dir: a.checkpoint_dir.clone(),
    })
}

/// R-NOT: where messages go.
fn mail(a: &ServeArgs) -> Result<etal_app::notify::MailSettings, ConfigError> {
    use etal_app::notify::{MailSettings, MailTransport};
    let defaults = MailSettings::default();
    let transport = match (given(&a.smtp_url), given(&a.mail_dir)) {
        (Some(url), _) if !url.trim().is_empty() => {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(ConfigError::Invalid {
                    name: "ETAL_SMTP_URL",
                    reason: "smtp://host:port or smtps://user:password@host".into(),
                });
            }
            MailTransport::Smtp(url)
        }
        (_, Some(dir)) if !dir.trim().is_empty() => MailTransport::Folder(dir.into()),
        _ => MailTransport::Off,
    };
    let from = given(&a.mail_from).unwrap_or(defaults.from);
    if from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(ConfigError::Invalid {
            name: "ETAL_MAIL_FROM",
            reason: format!("{from:?} is not an address (\"Name <address>\")"),
        });
    }
    Ok(MailSettings {
        transport,
        from,
        public_url: given(&a.public_url).unwrap_or(defaults.public_url),
    })
}

/// Parses `kind:n,kind:n`.
fn sim_failures(text: &str) -> Result<Vec<(String, u32)>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (kind, n) = p.split_once(':').ok_or_else(|| ConfigError::Invalid {
                name: "ETAL_SIM_FAIL",
                reason: format!("'{p}' is not kind:count"),
            })?;
            let n = n
                .parse()
                .map_err(|e: std::num::ParseIntError| ConfigError::Invalid {
                    name: "ETAL_SIM_FAIL",
                    reason: e.to_string(),
                })?;
            Ok((kind.to_string(), n))
        })
        .collect()
}
