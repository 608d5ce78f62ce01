//! The scheduled commands of the business: order periods opening and closing, distribution
//! ends (R-STK-4), money. (`expire_reservations` only serves rows scheduled before orders were
//! placed in one commit: an order's reservation is now confirmed in the commit that places it.) Each runs exactly once (see etal_store::scheduler).

use std::collections::BTreeSet;
use std::sync::Arc;

use etal_domain::catalog::{Catalog, CatalogCommand};
use etal_domain::ids::{CatalogId, ProductId, SaleId};
use etal_domain::order::Order;
use etal_domain::sale::{Sale, SaleCommand, SaleEvent};
use etal_domain::stock::{Stock, StockCommand};
use etal_store::scheduler::HandlerError;
use etal_store::{Changes, CommandContext, ScheduledCommand, ScheduledHandler, Scheduler};
use serde::Deserialize;

use super::flow::{turn_key, Decided};
use super::{App, AppError};

/// The kinds of scheduled commands.
pub mod kinds {
    pub const OPEN_PERIOD: &str = "open_order_period";
    pub const CLOSE_PERIOD: &str = "close_order_period";
    pub const END_DISTRIBUTION: &str = "end_distribution";
    pub const EXPIRE_RESERVATIONS: &str = "expire_reservations";
    /// Credit the producers of a validated sale (see `money`).
    pub const CREDIT_SALE: &str = "credit_sale";
    /// The Monday payout run (see `money`).
    pub const PAYOUT_RUN: &str = "payout_run";
    /// Debit refunds recorded after a sale was credited (see `money`).
    pub const DEBIT_REFUNDS: &str = "debit_refunds";
    /// The daily check of overdue trainings (R-ACC-3, see `producer`).
    pub const TRAINING_LAPSES: &str = "training_lapses";
    /// The monthly billing of subscriptions and period fees (R-ACC-3, R-FEE-5, see `billing`).
    pub const BILLING_RUN: &str = "billing_run";
    /// The daily generation of every market's sales ahead (R-SAL-1, see `market`).
    pub const SALES_HORIZON: &str = "sales_horizon";
    /// An online order whose payment the customer did not confirm in time (R-PAY-1, see
    /// `outbox`).
    pub const EXPIRE_PAYMENT: &str = "expire_payment";
}

/// When the daily training check runs (Europe/Paris).
pub const TRAINING_CHECK_TIME: chrono::NaiveTime = match chrono::NaiveTime::from_hms_opt(0, 10, 0) {
    Some(t) => t,
    None => chrono::NaiveTime::MIN,
};

impl App {
    /// Schedules the daily training check of `date` (a no-op when it is scheduled already):
    /// `etal serve` schedules today's at start, and each run schedules the next day's.
    pub async fn schedule_training_check(&self, date: chrono::NaiveDate) -> Result<(), AppError> {
        self.schedule(
            kinds::TRAINING_LAPSES,
            &format!("trainings:{date}"),
            serde_json::json!({ "date": date }),
            etal_domain::calendar::paris_instant(date, TRAINING_CHECK_TIME),
        )
        .await
    }
}

/// The scheduler with every handler of the service.
pub fn scheduler(app: &App) -> Scheduler {
    let mut s = Scheduler::new(app.pool.clone(), app.clock.clone());
    for kind in [
        kinds::OPEN_PERIOD,
        kinds::CLOSE_PERIOD,
        kinds::END_DISTRIBUTION,
        kinds::EXPIRE_RESERVATIONS,
        kinds::CREDIT_SALE,
        kinds::PAYOUT_RUN,
        kinds::DEBIT_REFUNDS,
        kinds::TRAINING_LAPSES,
        kinds::BILLING_RUN,
        kinds::SALES_HORIZON,
        kinds::EXPIRE_PAYMENT,
    ] {
        s = s.with_handler(Arc::new(Handler {
            app: app.clone(),
            kind,
        }));
    }
    s
}

struct Handler {
    app: App,
    kind: &'static str,
}

#[derive(Deserialize)]
struct PeriodPayload {
    sale: SaleId,
    catalog: CatalogId,
}

#[derive(Deserialize)]
struct SalePayload {
    sale: SaleId,
}

#[derive(Deserialize)]
struct MondayPayload {
    monday: chrono::NaiveDate,
}

#[derive(Deserialize)]
struct ProductPayload {
    product: ProductId,
}

fn payload<T: serde::de::DeserializeOwned>(cmd: &ScheduledCommand) -> Result<T, HandlerError> {
    serde_json::from_value(cmd.payload.clone())
        .map_err(|e| HandlerError::Fail(format!("bad payload: {e}")))
}

fn handler_error(e: AppError) -> HandlerError {
    match e {
        AppError::Retryable(m) => HandlerError::Retry(m),
        AppError::Internal(m) => HandlerError::Retry(m),
        other => HandlerError::Fail(format!("{}: {other}", other.code())),
    }
}

/// The context of a scheduled command's flow: idempotent by the schedule's id.
fn scheduled(cmd: &ScheduledCommand) -> CommandContext {
    CommandContext::new(etal_domain::Actor::system())
        .caused_by(cmd.id.to_string())
        .with_idempotency(cmd.idempotency_key(), cmd.idempotency_key())
}

/// The context of one command of a scheduled command (`<key>:<step>`).
fn step(cmd: &ScheduledCommand, step: &str) -> CommandContext {
    let key = format!("{}:{step}", cmd.idempotency_key());
    CommandContext::new(etal_domain::Actor::system())
        .caused_by(cmd.id.to_string())
        .with_idempotency(key.clone(), key)
}

#[async_trait::async_trait]
impl ScheduledHandler for Handler {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn run(&self, cmd: &ScheduledCommand) -> Result<serde_json::Value, HandlerError> {
        let app = &self.app;
        let now = app.now();
        match self.kind {
            kinds::OPEN_PERIOD => {
                let p: PeriodPayload = payload(cmd)?;
                let (sale, _) = app.load::<Sale>(p.sale).await.map_err(handler_error)?;
                match sale.participations().get(&p.catalog) {
                    // Withdrawn, or the period was moved: a newer schedule does the work.
                    None => return Ok(serde_json::json!("withdrawn")),
                    // PostgreSQL keeps microseconds: compare at that precision.
                    Some(part)
                        if part.opens_at.timestamp_micros() != cmd.due_at.timestamp_micros() =>
                    {
                        return Ok(serde_json::json!("superseded"))
                    }
                    Some(_) => {}
                }
                // R-CAT-3: prices are frozen for this sale before anyone can order, in the
                // commit that opens the period.
                let cc = scheduled(cmd);
                app.run_flow(
                    &cc,
                    vec![turn_key::<Sale>(&p.sale.to_string())],
                    || async move {
                        let mut catalog = app
                            .bus
                            .load_stream::<Catalog>(&p.catalog.to_string())
                            .await?;
                        catalog
                            .decide(|c| {
                                c.decide(CatalogCommand::FreezePricesForSale {
                                    sale: p.sale,
                                    at: now,
                                })
                            })
                            .map_err(super::outbox::rejected)?;
                        let mut sale = app.load_turned::<Sale>(&p.sale.to_string()).await?;
                        sale.decide(|s| {
                            s.decide(SaleCommand::OpenOrderPeriod {
                                catalog: p.catalog,
                                at: now,
                            })
                        })
                        .map_err(super::outbox::rejected)?;
                        let mut changes = Changes::new();
                        changes.stream(&catalog)?;
                        changes.stream(&sale)?;
                        let mut decided = Decided::new(changes, ());
                        decided.remember(&sale);
                        Ok(decided)
                    },
                )
                .await
                .map_err(handler_error)?;
                Ok(serde_json::json!("opened"))
            }
            kinds::CLOSE_PERIOD => {
                let p: PeriodPayload = payload(cmd)?;
                let (sale, _) = app.load::<Sale>(p.sale).await.map_err(handler_error)?;
                match sale.participations().get(&p.catalog) {
                    None => return Ok(serde_json::json!("withdrawn")),
                    Some(part)
                        if part.closes_at.timestamp_micros() != cmd.due_at.timestamp_micros() =>
                    {
                        return Ok(serde_json::json!("superseded"))
                    }
                    Some(_) => {}
                }
                let out = app
                    .exec::<Sale>(
                        p.sale,
                        SaleCommand::CloseOrderPeriod {
                            catalog: p.catalog,
                            at: now,
                        },
                        &step(cmd, "close"),
                    )
                    .await
                    .map_err(handler_error)?;
                // R-SAL-5: the recap is ready; the notification outbox is the RecapReady event.
                for e in etal_store::log::EventLog::stream(&app.pool, "sale", &p.sale.to_string())
                    .await
                    .map_err(|e| handler_error(e.into()))?
                    .iter()
                    .filter(|e| out.events.iter().any(|w| w.sequence == e.sequence))
                {
                    if let Ok(SaleEvent::RecapReady {
                        catalog,
                        producer,
                        orders,
                        ..
                    }) = e.decode::<SaleEvent>()
                    {
                        tracing::info!(sale = %p.sale, %catalog, %producer, orders, "order recap ready: notify the producer");
                    }
                }
                Ok(serde_json::json!("closed"))
            }
            kinds::END_DISTRIBUTION => {
                let p: SalePayload = payload(cmd)?;
                let cc = scheduled(cmd);
                // One commit: the sale's end and, product by product, its units delivered
                // (R-STK-4).
                let flowed = app
                    .run_flow(
                        &cc,
                        vec![turn_key::<Sale>(&p.sale.to_string())],
                        || async move {
                            let mut sale = app.bus.load_stream::<Sale>(&p.sale.to_string()).await?;
                            if !sale.exists() {
                                return Err(AppError::not_found("sale", p.sale));
                            }
                            sale.decide(|s| s.decide(SaleCommand::EndDistribution { at: now }))
                                .map_err(super::outbox::rejected)?;
                            let mut changes = Changes::new();
                            changes.stream(&sale)?;
                            let mut products = BTreeSet::new();
                            for order in sale.state.orders().keys() {
                                let (o, _) = app.load::<Order>(*order).await?;
                                products.extend(o.lines().iter().map(|l| l.product));
                            }
                            for product in &products {
                                let mut stock =
                                    app.bus.load_stream::<Stock>(&product.to_string()).await?;
                                stock
                                    .decide(|s| {
                                        s.decide(StockCommand::Deliver {
                                            sale: p.sale,
                                            at: now,
                                        })
                                    })
                                    .map_err(super::outbox::rejected)?;
                                changes.stream(&stock)?;
                            }
                            Ok(Decided::new(changes, products.len()))
                        },
                    )
                    .await
                    .map_err(handler_error)?;
                Ok(serde_json::json!({ "delivered_products": flowed.value }))
            }
            kinds::EXPIRE_RESERVATIONS => {
                let p: ProductPayload = payload(cmd)?;
                app.exec::<Stock>(
                    p.product,
                    StockCommand::ExpireReservations { at: now },
                    &step(cmd, "expire"),
                )
                .await
                .map_err(handler_error)?;
                Ok(serde_json::json!("expired"))
            }
            kinds::CREDIT_SALE => {
                let p: SalePayload = payload(cmd)?;
                let report = app
                    .credit_sale(p.sale, &cmd.idempotency_key())
                    .await
                    .map_err(handler_error)?;
                // R-ORD-8: professional customers' orders are invoiced once validated.
                let invoices = app
                    .invoice_professional_orders(p.sale)
                    .await
                    .map_err(handler_error)?;
                Ok(serde_json::json!({ "credit": report, "professional_invoices": invoices }))
            }
            kinds::PAYOUT_RUN => {
                let p: MondayPayload = payload(cmd)?;
                let report = app
                    .run_payouts(p.monday, &cmd.idempotency_key())
                    .await
                    .map_err(handler_error)?;
                Ok(serde_json::json!(report))
            }
            kinds::EXPIRE_PAYMENT => {
                #[derive(serde::Deserialize)]
                struct P {
                    order: etal_domain::ids::OrderId,
                    payment: etal_domain::ids::PaymentId,
                }
                let p: P = payload(cmd)?;
                let expired = app
                    .expire_payment(p.order, p.payment)
                    .await
                    .map_err(handler_error)?;
                Ok(serde_json::json!({ "expired": expired }))
            }
            kinds::DEBIT_REFUNDS => {
                #[derive(serde::Deserialize)]
                struct P {
                    sale: etal_domain::ids::SaleId,
                    order: etal_domain::ids::OrderId,
                }
                let p: P = payload(cmd)?;
                let n = app
                    .debit_late_refunds(p.sale, p.order, &cmd.idempotency_key())
                    .await
                    .map_err(handler_error)?;
                Ok(serde_json::json!({ "debited": n }))
            }
            kinds::TRAINING_LAPSES => {
                #[derive(serde::Deserialize)]
                struct P {
                    date: chrono::NaiveDate,
                }
                let p: P = payload(cmd)?;
                // A late run (the service was down) checks on the day it runs.
                let today = etal_domain::calendar::paris_date(now).max(p.date);
                let moved = app
                    .apply_training_lapses(today, &cmd.idempotency_key())
                    .await
                    .map_err(handler_error)?;
                app.schedule_training_check(today + chrono::Duration::days(1))
                    .await
                    .map_err(handler_error)?;
                Ok(serde_json::json!({ "moved_to_flexible": moved }))
            }
            kinds::SALES_HORIZON => {
                #[derive(serde::Deserialize)]
                struct P {
                    date: chrono::NaiveDate,
                }
                let p: P = payload(cmd)?;
                // A late run (the service was down) generates from the day it runs.
                let today = etal_domain::calendar::paris_date(now).max(p.date);
                let generated = app
                    .generate_sales_ahead(today, &cmd.idempotency_key())
                    .await
                    .map_err(handler_error)?;
                app.schedule_sales_horizon(today + chrono::Duration::days(1))
                    .await
                    .map_err(handler_error)?;
                Ok(serde_json::json!({ "sales": generated }))
            }
            kinds::BILLING_RUN => {
                #[derive(serde::Deserialize)]
                struct P {
                    month: chrono::NaiveDate,
                }
                let p: P = payload(cmd)?;
                let report = app
                    .run_billing(p.month, &cmd.idempotency_key())
                    .await
                    .map_err(handler_error)?;
                Ok(serde_json::json!(report))
            }
            other => Err(HandlerError::Fail(format!("unknown kind {other}"))),
        }
    }
}
