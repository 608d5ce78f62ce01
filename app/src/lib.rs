//! The application layer (`etal-app`): the flows between aggregates, the scheduled handlers, the
//! outbox and its deliverer, the payment-provider port, personal data and the audit. GraphQL
//! resolvers, the CLI and tests call these methods; nothing here decides a business rule (the
//! aggregates do): a flow looks up facts, decides on every stream it touches with the domain's
//! pure functions and commits once ([`flow`]). No HTTP, no GraphQL.

pub mod audit;
pub mod backoffice;
pub mod bank_details;
pub mod billing;
pub mod books;
pub mod cii;
pub mod completeness;
pub mod directory;
pub mod error;
pub mod facturx_pdf;
pub mod fec;
pub mod flow;
pub mod invoices;
pub mod legal_ids;
pub mod market;
pub mod money;
pub mod notify;
pub mod order;
pub mod outbox;
pub mod payments;
pub mod payouts;
pub mod people;
pub mod producer;
pub mod professional;
pub mod reporting;
pub mod schedule;
pub mod seal;
pub mod sepa;
pub mod stripe;
pub mod webhooks;

use std::sync::Arc;

use etal_domain::config::Config as DomainConfig;
use etal_domain::{Actor, Clock};
use etal_store::log::Position;
use etal_store::{CommandBus, CommandContext, CommandOutcome, EsAggregate, Scheduler};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

pub use error::{AppError, Coded, LineRefusal};
pub use payments::{
    ChargeRequest, Charged, PaymentFailure, PaymentProvider, Simulator, TransferRequest,
};

/// Tunables of the flows.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long after a sale's end its units count as delivered (R-STK-4: a few minutes,
    /// 10 by default).
    pub delivery_delay: chrono::Duration,
    /// Deliver a flow's outbox messages right after its commit (else only the worker does).
    pub deliver_inline: bool,
    /// The fee schedule every market uses (a name in `config/fees/`; see [`money`]).
    pub fee_schedule: String,
    /// Bank transfer attempts of a payout before its money goes back to the balance (R-PAY-2).
    pub max_transfer_attempts: u32,
    /// How far ahead the scheduler generates every market's sales (R-SAL-1), in weeks.
    pub sales_horizon_weeks: u32,
    /// How long an online order waits for its customer to confirm a payment the provider holds
    /// (a Stripe PaymentIntent) before it is cancelled and its stock released (R-PAY-1).
    pub payment_timeout: chrono::Duration,
    /// How payouts reach producers: the payment provider, or SEPA files (R-PAY-5).
    pub payouts: payouts::PayoutRail,
    /// The platform's legal identity, for the invoices of its fees (R-INV-3; none: not issued).
    pub platform_identity: Option<invoices::BillingIdentity>,
    /// Where messages go (R-NOT): SMTP, a folder, or nowhere.
    pub mail: notify::MailSettings,
    /// Webhook endpoints may be http:// and on private addresses (tests, local development).
    pub webhooks_allow_insecure: bool,
    /// Signed checkpoints of the sealed history (R-AUD-3).
    pub seal: seal::SealSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            delivery_delay: chrono::Duration::minutes(10),
            deliver_inline: true,
            fee_schedule: money::DEFAULT_FEE_SCHEDULE.to_string(),
            max_transfer_attempts: 3,
            sales_horizon_weeks: 8,
            payment_timeout: chrono::Duration::minutes(15),
            payouts: payouts::PayoutRail::default(),
            platform_identity: None,
            mail: notify::MailSettings::default(),
            webhooks_allow_insecure: false,
            seal: seal::SealSettings::default(),
        }
    }
}

/// The service: everything a flow needs. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub bus: CommandBus,
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<DomainConfig>,
    pub payments: Arc<dyn PaymentProvider>,
    pub settings: Settings,
    /// Fee schedules (R-FEE-3), from `config/fees/` (see [`money::load_fee_schedules`]).
    pub fees: Arc<etal_domain::fees::FeeSchedules>,
    /// Turns of this process's flows on hot streams (see [`flow::StreamLocks`]).
    pub locks: Arc<flow::StreamLocks>,
    /// What orders know before they decide (who sells on each catalog, the sale's year and
    /// market), and the reads of it in flight (see `App::order_hint`).
    pub(crate) hints: Arc<order::OrderHints>,
}

/// Who calls, and the idempotency key of the request, if any.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub actor: Actor,
    pub key: Option<String>,
    pub correlation_id: Uuid,
}

impl Ctx {
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            key: None,
            correlation_id: Uuid::now_v7(),
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The service acting on its own behalf (scheduler, flows).
    pub fn system() -> Self {
        Self::new(Actor::system())
    }

    /// A command context without idempotency (steps that are idempotent by nature).
    pub fn plain(&self) -> CommandContext {
        CommandContext::new(self.actor).correlated(self.correlation_id)
    }

    /// The command context of a flow of one command: the request's key (scoped to the caller by
    /// the store), with a fingerprint of the operation and its arguments (see [`Ctx::flow`]).
    pub fn step(&self, step: &str, fingerprint: &str) -> CommandContext {
        self.flow(step, fingerprint)
    }

    /// An id for something the request creates: derived from the key, so a retry creates the
    /// same thing; random without a key.
    pub fn new_id(&self, kind: &str) -> Uuid {
        match &self.key {
            Some(k) => derived_id(&format!("{}:{kind}:{k}", self.actor.user)),
            None => Uuid::now_v7(),
        }
    }
}

/// A stable id from a name.
pub fn derived_id(name: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// A fingerprint of a request's arguments.
pub fn fingerprint<T: Serialize>(operation: &str, args: &T) -> String {
    let json = serde_json::to_string(args).unwrap_or_default();
    hex::encode(Sha256::digest(format!("{operation}:{json}").as_bytes()))
}

/// What a mutation did: its result and the last global position it wrote (for read-your-writes).
#[derive(Debug, Clone, PartialEq)]
pub struct Done<T> {
    pub value: T,
    pub position: Option<Position>,
}

impl<T> Done<T> {
    pub fn new(value: T, position: Option<Position>) -> Self {
        Self { value, position }
    }
}

/// Tracks the last position written by a flow of several commits (market set-up flows).
#[derive(Debug, Default, Clone, Copy)]
pub struct Written(pub Option<Position>);

impl Written {
    pub fn add(&mut self, outcome: &CommandOutcome) {
        if let Some(p) = outcome.last_position() {
            self.0 = Some(self.0.map_or(p, |q| q.max(p)));
        }
    }
}

impl App {
    pub fn new(
        pool: PgPool,
        clock: Arc<dyn Clock>,
        config: DomainConfig,
        payments: Arc<dyn PaymentProvider>,
    ) -> Self {
        Self {
            // Hot streams (a product's stock during a busy sale) see many conflicts: each retry is
            // a fresh decision, bounded, with jittered backoff.
            bus: CommandBus::new(pool.clone(), clock.clone()).with_max_attempts(30),
            pool,
            clock,
            config: Arc::new(config),
            payments,
            settings: Settings::default(),
            fees: Arc::new(money::embedded_fee_schedules()),
            locks: Arc::new(flow::StreamLocks::default()),
            hints: Arc::default(),
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The scheduler with every handler of the service.
    pub fn scheduler(&self) -> Scheduler {
        schedule::scheduler(self)
    }

    /// Runs one command.
    pub async fn exec<A>(
        &self,
        id: impl ToString,
        command: A::Command,
        cc: &CommandContext,
    ) -> Result<CommandOutcome, AppError>
    where
        A: EsAggregate<Services = ()>,
        A::Command: Clone,
        A::Error: Coded,
    {
        let id = id.to_string();
        let out = self.bus.execute::<A>(&id, command, &(), cc).await;
        // A state this process kept is not trusted any more (see `flow::FRESH`).
        self.locks.forget(&[flow::turn_key::<A>(&id)]);
        Ok(out?)
    }

    /// The state of an aggregate and its version (0: it does not exist).
    pub async fn load<A: EsAggregate>(&self, id: impl ToString) -> Result<(A, i64), AppError> {
        Ok(self.bus.load::<A>(&id.to_string()).await?)
    }

    /// Schedules a command of `kind` at `due` (a no-op when `dedupe_key` was scheduled before).
    pub(crate) async fn schedule(
        &self,
        kind: &str,
        dedupe_key: &str,
        payload: serde_json::Value,
        due: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), AppError> {
        Scheduler::schedule(&self.pool, kind, dedupe_key, &payload, due, self.now()).await?;
        Ok(())
    }
}

/// Loads the plans configuration: `ETAL_PLANS` (a path), else `config/plans.json` of the
/// working directory, else the copy built into the binary from the same file.
pub fn load_plans() -> Result<DomainConfig, AppError> {
    let text = match std::env::var("ETAL_PLANS") {
        Ok(path) => std::fs::read_to_string(&path)
            .map_err(|e| AppError::Internal(format!("ETAL_PLANS: cannot read {path}: {e}")))?,
        Err(_) => std::fs::read_to_string("config/plans.json")
            .unwrap_or_else(|_| include_str!("../../config/plans.json").to_string()),
    };
    DomainConfig::from_json(&text)
        .map_err(|e| AppError::Internal(format!("plans configuration: {e}")))
}

impl App {
    /// Schedules a command (tests that simulate a crash between steps).
    #[doc(hidden)]
    pub async fn schedule_for_test(
        &self,
        kind: &str,
        dedupe_key: &str,
        payload: serde_json::Value,
        due: chrono::DateTime<chrono::Utc>,
    ) {
        self.schedule(kind, dedupe_key, payload, due)
            .await
            .expect("schedule");
    }
}
