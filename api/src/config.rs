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
    /// ETAL_PROJECTORS: run the projectors in this process (default true).
    pub projectors: bool,
    /// ETAL_SCHEDULER: run the scheduler in this process (default true).
    pub scheduler: bool,
    /// ETAL_SCHEDULER_INTERVAL_MS: how often the scheduler looks for due commands (default 1000).
    pub scheduler_interval: Duration,
    /// ETAL_READ_YOUR_WRITES_MS: how long a mutation waits for the projections (default 2000).
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

fn payouts() -> Result<etal_app::payouts::PayoutRail, ConfigError> {
    match var("ETAL_PAYOUTS").as_deref().map(str::trim) {
        None | Some("provider") => Ok(etal_app::payouts::PayoutRail::Provider),
        Some("sepa") => {
            let get = |name: &'static str| var(name).ok_or(ConfigError::Missing(name));
            let (name, iban, bic) = (
                get("ETAL_SEPA_DEBTOR_NAME")?,
                get("ETAL_SEPA_DEBTOR_IBAN")?,
                get("ETAL_SEPA_DEBTOR_BIC")?,
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

fn platform_identity() -> Result<Option<etal_app::invoices::BillingIdentity>, ConfigError> {
    let Some(legal_name) = var("ETAL_PLATFORM_LEGAL_NAME") else {
        return Ok(None);
    };
    let get = |name: &'static str| var(name).ok_or(ConfigError::Missing(name));
    let siren = etal_app::legal_ids::check_siren(&get("ETAL_PLATFORM_SIREN")?).map_err(|e| {
        ConfigError::Invalid {
            name: "ETAL_PLATFORM_SIREN",
            reason: e.to_string(),
        }
    })?;
    let vat =
        etal_app::legal_ids::check_vat_number(&get("ETAL_PLATFORM_VAT_NUMBER")?, Some(&siren))
            .map_err(|e| ConfigError::Invalid {
                name: "ETAL_PLATFORM_VAT_NUMBER",
                reason: e.to_string(),
            })?;
    Ok(Some(etal_app::invoices::BillingIdentity {
        legal_name,
        siren,
        vat_number: Some(vat),
        vat_franchise: false,
        address_line: get("ETAL_PLATFORM_ADDRESS")?,
        postcode: get("ETAL_PLATFORM_POSTCODE")?,
        city: get("ETAL_PLATFORM_CITY")?,
        country: "FR".into(),
    }))
}

fn payments() -> Result<Payments, ConfigError> {
    match var("ETAL_PAYMENTS").as_deref().map(str::trim) {
        None | Some("simulator") => Ok(Payments::Simulator),
        Some("stripe") => Ok(Payments::Stripe {
            secret_key: Secret(
                var("ETAL_STRIPE_SECRET_KEY")
                    .ok_or(ConfigError::Missing("ETAL_STRIPE_SECRET_KEY"))?,
            ),
            api_base: var("ETAL_STRIPE_API_BASE")
                .unwrap_or_else(|| "https://api.stripe.com".to_string()),
            api_version: var("ETAL_STRIPE_API_VERSION"),
            webhook_secrets: var("ETAL_STRIPE_WEBHOOK_SECRET")
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
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        }),
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            database_url: Secret(var("DATABASE_URL").ok_or(ConfigError::Missing("DATABASE_URL"))?),
            listen: parse("ETAL_LISTEN", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            db_pool: parse("ETAL_DB_POOL", 16u32)?,
            projectors: parse("ETAL_PROJECTORS", true)?,
            scheduler: parse("ETAL_SCHEDULER", true)?,
            scheduler_interval: Duration::from_millis(parse(
                "ETAL_SCHEDULER_INTERVAL_MS",
                1000u64,
            )?),
            read_your_writes: Duration::from_millis(parse("ETAL_READ_YOUR_WRITES_MS", 2000u64)?),
            delivery_delay: chrono::Duration::minutes(parse("ETAL_DELIVERY_DELAY_MINUTES", 10i64)?),
            sales_horizon_weeks: parse("ETAL_SALES_HORIZON_WEEKS", 8u32)?,
            outbox: parse("ETAL_OUTBOX", true)?,
            outbox_interval: Duration::from_millis(parse("ETAL_OUTBOX_INTERVAL_MS", 500u64)?),
            outbox_inline: parse("ETAL_OUTBOX_INLINE", true)?,
            sim_fail: sim_failures(&var("ETAL_SIM_FAIL").unwrap_or_default())?,
            payments: payments()?,
            payouts: payouts()?,
            platform_identity: platform_identity()?,
            payment_timeout: chrono::Duration::seconds(parse(
                "ETAL_PAYMENT_TIMEOUT_SECONDS",
                900i64,
            )?),
            mail: mail()?,
            notify_interval: Duration::from_millis(parse("ETAL_NOTIFY_INTERVAL_MS", 1000u64)?),
            webhooks_allow_insecure: parse("ETAL_WEBHOOKS_ALLOW_INSECURE", false)?,
        })
    }
}

/// R-NOT: where messages go.
fn mail() -> Result<etal_app::notify::MailSettings, ConfigError> {
    use etal_app::notify::{MailSettings, MailTransport};
    let defaults = MailSettings::default();
    let transport = match (var("ETAL_SMTP_URL"), var("ETAL_MAIL_DIR")) {
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
    let from = var("ETAL_MAIL_FROM").unwrap_or(defaults.from);
    if from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(ConfigError::Invalid {
            name: "ETAL_MAIL_FROM",
            reason: format!("{from:?} is not an address (\"Name <address>\")"),
        });
    }
    Ok(MailSettings {
        transport,
        from,
        public_url: var("ETAL_PUBLIC_URL").unwrap_or(defaults.public_url),
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
