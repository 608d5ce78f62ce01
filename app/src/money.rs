//! The money issue, end to end: fee schedules as configuration, crediting producers when a sale
//! is validated, and the Monday payouts.
//!
//! * **Fee schedules** (R-FEE-3, R-FEE-5) are read at start from `ETAL_FEES` (a folder), else
//!   `config/fees/*.json` ([`load_fee_schedules`]); a copy of the same files is built into the
//!   binary. A platform administrator chooses a market's schedule from a date
//!   ([`App::assign_fee_schedule`], a `FeeScheduleAssigned` event on the market); a sale uses
//!   the choice in force on its date, else the setting [`super::Settings::fee_schedule`]
//!   (`ETAL_FEE_SCHEDULE`, default `cagette`). Each fee line names its schedule, rule and
//!   version; lines are frozen into the events, so a later choice never changes history.
//! * **Crediting** (R-SAL-6, R-PAY-1, R-FEE-1..4): validating a sale schedules a `credit_sale`
//!   command, due at once. It folds the events of every order of the sale
//!   ([`etal_domain::ledger::OrderMoney`]), computes each producer's gross, refunds and fee lines
//!   ([`etal_domain::ledger::sale_credits`]) and sends `CreditSale` with
//!   `available_on(validated_at)`, every producer's balance and the Monday's payout run in one
//!   commit recorded under the scheduled command's key; a balance refuses a second credit of a
//!   sale (treated as done). Markets paid on site record the service fee each producer owes.
//! * **Payouts** (R-PAY-1, R-PAY-2): crediting schedules the payout run of the Monday its money
//!   is due (`payout_on(available_on)`, 06:00 Europe/Paris); each run schedules the next
//!   Monday's. A run, for each producer balance: retries a transfer that failed on an earlier
//!   run, or, after [`super::Settings::max_transfer_attempts`] attempts, returns its money to
//!   the balance (paid with the next payout); starts a payout of everything available before
//!   the Monday (payout id derived from producer and Monday, so a re-run never starts a second
//!   one), all in one commit of the producer's balance; every transfer in flight is an outbox
//!   message with the provider key `payout:<payout id>:<attempt>` (a re-run owes the same
//!   message: the provider answers the first result, never pays twice), delivered at once, its
//!   success or failure recorded on the balance with the message settled.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc, Weekday};
use etal_domain::calendar::{next_weekday_after, paris_date, paris_instant};
use std::collections::BTreeMap;

use etal_domain::fees::{refund_fee_line, FeeLine, FeeRefund};
use etal_domain::fees::{AppliesTo, FeeSchedule, FeeSchedules};
use etal_domain::ids::{MarketId, OrderId, ProducerId, SaleId};
use etal_domain::ledger::{fee_key, on_site_fees, sale_credits, OrderMoney};
use etal_domain::market::PaymentMode;
use etal_domain::market::{Market, MarketCommand};
use etal_domain::order::OrderEvent;
use etal_domain::payout::{
    available_on, payout_on, PayoutId, PayoutStatus, ProducerBalance, ProducerBalanceCommand,
    ProducerBalanceError, ProducerBalanceEvent,
};
use etal_domain::sale::{Sale, SaleEvent};
use etal_domain::{Actor, Money, Role};
use etal_store::log::EventLog;
use etal_store::{Changes, CommandContext};
use serde::Serialize;

use super::flow::Decided;
use super::outbox::rejected;
use super::schedule::kinds;
use super::{derived_id, fingerprint, App, AppError, Ctx, Done};

/// The schedule markets use unless configured otherwise.
pub const DEFAULT_FEE_SCHEDULE: &str = "cagette";

/// When the Monday payout run starts (Europe/Paris).
pub const PAYOUT_RUN_TIME: NaiveTime = match NaiveTime::from_hms_opt(6, 0, 0) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

/// The fee configuration files built into the binary (the same files as `config/fees/`).
const EMBEDDED: [(&str, &str); 6] = [
    (
        "cagette.json",
        include_str!("../../config/fees/cagette.json"),
    ),
    (
        "coopcircuits.json",
        include_str!("../../config/fees/coopcircuits.json"),
    ),
    (
        "locavor.json",
        include_str!("../../config/fees/locavor.json"),
    ),
    ("ofn.json", include_str!("../../config/fees/ofn.json")),
    ("ruche.json", include_str!("../../config/fees/ruche.json")),
    (
        "subscription.json",
        include_str!("../../config/fees/subscription.json"),
    ),
];

fn merge(files: Vec<(String, String)>) -> Result<FeeSchedules, AppError> {
    let mut parsed = Vec::new();
    for (name, text) in files {
        parsed.push(
            FeeSchedules::from_json(&text)
                .map_err(|e| AppError::Internal(format!("fee configuration {name}: {e}")))?,
        );
    }
    FeeSchedules::merge(parsed).map_err(|e| AppError::Internal(format!("fee configuration: {e}")))
}

/// The fee schedules built into the binary.
pub fn embedded_fee_schedules() -> FeeSchedules {
    let files = EMBEDDED
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    match merge(files) {
        Ok(f) => f,
        // The embedded files are checked by a test; this keeps the service up regardless.
        Err(e) => {
            tracing::error!(error = %e, "embedded fee configuration is invalid");
            FeeSchedules {
                schedules: Vec::new(),
            }
        }
    }
}

/// Loads the fee schedules: every `*.json` of `ETAL_FEES` (a folder, which must exist), else
/// of `config/fees/` in the working directory, else the copy built into the binary. A folder's
/// files replace the built-in schedules (copy the presets into it to keep them). An invalid
/// file is refused with its path and what is wrong (the field, or the rule and version).
pub fn load_fee_schedules() -> Result<FeeSchedules, AppError> {
    let (dir, explicit) = match std::env::var("ETAL_FEES") {
        Ok(d) => (d, true),
        Err(_) => ("config/fees".to_string(), false),
    };
    let dir = Path::new(&dir);
    if !dir.is_dir() {
        if explicit {
            return Err(AppError::Internal(format!(
                "ETAL_FEES: {} is not a folder",
                dir.display()
            )));
        }
        return Ok(embedded_fee_schedules());
    }
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| AppError::Internal(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| AppError::Internal(format!("{}: {e}", p.display())))?;
        files.push((p.display().to_string(), text));
    }
    merge(files)
}

/// The payout of a producer started by the run of `monday` (stable across re-runs).
pub fn payout_id_for(producer: ProducerId, monday: NaiveDate) -> PayoutId {
    PayoutId(derived_id(&format!("payout:{producer}:{monday}")))
}

/// The idempotency key of a payout's bank transfer, attempt by attempt.
pub fn transfer_key(payout: PayoutId, attempt: u32) -> String {
    format!("payout:{payout}:{attempt}")
}

/// When the payout run of `monday` is due.
pub fn payout_run_at(monday: NaiveDate) -> DateTime<Utc> {
    paris_instant(monday, PAYOUT_RUN_TIME)
}

/// What crediting a sale did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CreditReport {
    pub credited: u32,
    pub already_credited: u32,
    pub total_net: Money,
    pub available_on: Option<NaiveDate>,
    pub payout_on: Option<NaiveDate>,
}

/// What a payout run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PayoutRunReport {
    pub producers: u32,
    /// Payouts held for the owner's confirmation of new bank details (R-PAY-4).
    pub held: u32,
    pub started: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub retried: u32,
    pub returned: u32,
    pub paid: Money,
}

/// What a producer's balance recorded for one credited sale.
struct CreditRecord {
    /// Refunds counted at crediting, and debited since.
    at_credit: Money,
    debited: Money,
    /// The fee lines in force, the amount they were charged on, and how much of it was
    /// refunded since they were charged (R-FEE-4).
    fees: Vec<FeeLine>,
    base: Money,
    refunded_in_base: Money,
    /// Per fee line ([`fee_key`]), the fixed parts given back so far.
    fixed_back: BTreeMap<String, Money>,
}

impl CreditRecord {
    fn add_fee_refunds(&mut self, refunds: &[FeeRefund]) {
        for r in refunds {
            *self
                .fixed_back
                .entry(fee_key(&r.rule_id, r.rule_version, r.beneficiary))
                .or_default() += r.fixed_back_now;
        }
    }
}

impl App {
    /// Replaces the fee schedules (e.g. those of [`load_fee_schedules`]).
    pub fn with_fee_schedules(mut self, fees: FeeSchedules) -> Self {
        self.fees = std::sync::Arc::new(fees);
        self
    }

    /// The fee schedules the service knows (R-FEE-5).
    pub fn fee_schedules(&self) -> &FeeSchedules {
        &self.fees
    }

    /// R-FEE-5: the fee schedule of a market's sale on `date`: the one the platform chose for
    /// the market from that date or before, else the service's default (the setting).
    pub async fn fee_schedule_for(
        &self,
        market: MarketId,
        date: Option<NaiveDate>,
    ) -> Result<&FeeSchedule, AppError> {
        let (state, _) = self.load::<Market>(market).await?;
        self.schedule_of(&state, date)
    }

    /// [`App::fee_schedule_for`] on a market's state already read.
    pub fn schedule_of(
        &self,
        market: &Market,
        date: Option<NaiveDate>,
    ) -> Result<&FeeSchedule, AppError> {
        let name = date
            .and_then(|d| market.fee_schedule_on(d))
            .unwrap_or(&self.settings.fee_schedule)
            .to_string();
        self.fees
            .get(&name)
            .ok_or_else(|| AppError::Internal(format!("fee schedule '{name}' is not configured")))
    }

    /// R-CAT-2: the unit price a customer pays for an offer in a sale: the producer's price,
    /// grossed up when the catalog adds the online payment fee (online markets only) and/or the
    /// service fee into its prices, so that the customer bears the chosen fees of the market's
    /// schedule: with both, the producer keeps their price (within a cent per unit); with one,
    /// what they would keep if that fee did not exist. Fixed parts are not carried by prices. See [`etal_domain::fees::FeeSchedule::share_of_price`] and
    /// [`etal_domain::catalog::OfferTerms::customer_price`].
    pub fn customer_unit_price(
        &self,
        sale: &Sale,
        market: &Market,
        terms: &etal_domain::catalog::OfferTerms,
    ) -> Result<Money, AppError> {
        if !terms.fees.include_payment_fee && !terms.fees.include_service_fee {
            return Ok(terms.price_incl_vat);
        }
        let on = sale.date().unwrap_or_else(|| paris_date(self.now()));
        let schedule = self.schedule_of(market, sale.date())?;
        let online = sale.payment_mode() == PaymentMode::Online;
        let payment = if online {
            schedule.share_of_price(on, true, AppliesTo::OnlinePayment, terms.vat)
        } else {
            rust_decimal::Decimal::ZERO
        };
        let service = schedule.share_of_price(on, online, AppliesTo::AllSales, terms.vat);
        terms.customer_price(payment, service).ok_or_else(|| {
            AppError::Internal(format!(
                "the fees of schedule '{}' leave nothing of the price of {}",
                schedule.name, terms.name
            ))
        })
    }

    /// R-FEE-5: a platform administrator chooses a market's fee schedule from a date (today
    /// or later, Europe/Paris); fees already computed never change. The schedule must be one
    /// the service loaded, and no sale on or after `from` may have opened its orders
    /// (`FEE_SCHEDULE_SALE_OPEN`: its prices and fees are set, R-CAT-3).
    pub async fn assign_fee_schedule(
        &self,
        ctx: &Ctx,
        market: MarketId,
        schedule: &str,
        from: NaiveDate,
    ) -> Result<Done<()>, AppError> {
        if ctx.actor.role != Role::PlatformAdmin {
            return Err(AppError::Forbidden(
                "only a platform administrator chooses a market's fee schedule".into(),
            ));
        }
        if self.fees.get(schedule).is_none() {
            return Err(AppError::not_found("fee schedule", schedule));
        }
        let (state, version) = self.load::<Market>(market).await?;
        if version == 0 || state.id().is_none() {
            return Err(AppError::not_found("market", market));
        }
        let fp = fingerprint("assignFeeSchedule", &(market, schedule, from));
        let cc = ctx.flow("assignFeeSchedule", &fp);
        let today = paris_date(self.now());
        let flowed = self
            .run_flow(&cc, vec![], || async move {
                let mut m = self.bus.load_stream::<Market>(&market.to_string()).await?;
                m.decide(|s| {
                    s.decide(MarketCommand::AssignFeeSchedule {
                        schedule: schedule.to_string(),
                        from,
                        today,
                        actor: ctx.actor,
                    })
                })
                .map_err(rejected)?;
                if !m.pending().is_empty() {
                    self.no_open_sale_from(market, from).await?;
                }
                let mut changes = Changes::new();
                changes.stream(&m)?;
                Ok(Decided::new(changes, ()))
            })
            .await?;
        Ok(Done::new((), flowed.position))
    }

    /// R-CAT-3: everyone in one sale pays the same price, and prices may carry fees (R-CAT-2):
    /// a new fee schedule never reaches a sale of `market` on or after `from` whose order
    /// period has opened (`FEE_SCHEDULE_SALE_OPEN`).
    async fn no_open_sale_from(&self, market: MarketId, from: NaiveDate) -> Result<(), AppError> {
        let now = self.now();
        let horizon = paris_date(now) + chrono::Duration::days(366);
        if from <= horizon {
            for sale in self.market_sales(market, from, horizon).await? {
                let (s, _) = self.load::<Sale>(sale).await?;
                if s.participations().values().any(|p| p.opens_at <= now) {
                    return Err(AppError::Rejected {
                        code: "FEE_SCHEDULE_SALE_OPEN",
                        message: format!(
                            "the sale of {} has opened its orders at the current fees; choose a \
                             date after it",
                            s.date().map(|d| d.to_string()).unwrap_or_default()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The money of every order placed for a sale, folded from the order events.
    pub async fn sale_orders(&self, sale: SaleId) -> Result<Vec<OrderMoney>, AppError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT aggregate_id FROM events WHERE aggregate_type = 'order' \
             AND event_type = 'OrderPlaced' AND payload->'OrderPlaced'->>'sale' = $1 \
             ORDER BY aggregate_id",
        )
        .bind(sale.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut orders = Vec::with_capacity(ids.len());
        for id in ids {
            let mut money = OrderMoney::default();
            for e in EventLog::stream(&self.pool, "order", &id).await? {
                money.apply(&e.decode::<OrderEvent>()?);
            }
            orders.push(money);
        }
        Ok(orders)
    }

    /// When `sale` was last validated (None: never), from its events.
    async fn validated_at(&self, sale: SaleId) -> Result<Option<DateTime<Utc>>, AppError> {
        Ok(EventLog::stream(&self.pool, "sale", &sale.to_string())
            .await?
            .iter()
            .rev()
            .find_map(|e| match e.decode::<SaleEvent>() {
                Ok(SaleEvent::SaleValidated { at, .. }) => Some(at),
                _ => None,
            }))
    }

    /// R-SAL-6, R-PAY-1, R-FEE-1..4: credits every producer of a validated sale with their net
    /// and schedules the payout run that pays it, in one commit (every producer's balance, the
    /// schedule, the idempotency record of `key`, a scheduled command's key).
    pub async fn credit_sale(&self, sale: SaleId, key: &str) -> Result<CreditReport, AppError> {
        let cc =
            CommandContext::new(Actor::system()).with_idempotency(key, format!("credit:{sale}"));
        let flowed = self
            .run_flow(&cc, vec![], || async move {
                let (state, version) = self.load::<Sale>(sale).await?;
                if version == 0 {
                    return Err(AppError::not_found("sale", sale));
                }
                let validated_at =
                    self.validated_at(sale)
                        .await?
                        .ok_or_else(|| AppError::Rejected {
                            code: "SALE_NOT_VALIDATED",
                            message: format!("sale {sale} is not validated"),
                        })?;
                let mut report = CreditReport::default();
                let mut changes = Changes::new();
                let orders = self.sale_orders(sale).await?;
                let on = paris_date(validated_at);
                if state.payment_mode() != PaymentMode::Online {
                    // R-FEE-2, R-SAL-6: settled on site; each producer owes the service fee.
                    let schedule = self.fee_schedule_for(state.market(), state.date()).await?;
                    let owed = on_site_fees(schedule, on, &orders)?;
                    for (producer, (sold, fees)) in owed {
                        let mut balance = self
                            .bus
                            .load_stream::<ProducerBalance>(&producer.to_string())
                            .await?;
                        let decided = balance.decide(|b| {
                            b.decide(ProducerBalanceCommand::RecordOnSiteSale {
                                sale,
                                market: state.market(),
                                sales_incl_vat: sold,
                                fees,
                                at: validated_at,
                            })
                        });
                        match decided {
                            Ok(_) => report.credited += 1,
                            Err(ProducerBalanceError::OnSiteSaleAlreadyRecorded { .. }) => {
                                report.already_credited += 1
                            }
                            Err(e) => return Err(rejected(e)),
                        }
                        changes.stream(&balance)?;
                    }
                    return Ok(Decided::new(changes, report));
                }
                let schedule = self.fee_schedule_for(state.market(), state.date()).await?;
                let credits = sale_credits(schedule, on, &orders)?;
                let available = available_on(validated_at);
                report.available_on = Some(available);
                report.payout_on = Some(payout_on(available));
                for (producer, credit) in credits {
                    let mut balance = self
                        .bus
                        .load_stream::<ProducerBalance>(&producer.to_string())
                        .await?;
                    let decided = balance.decide(|b| {
                        b.decide(ProducerBalanceCommand::CreditSale {
                            sale,
                            market: state.market(),
                            gross_incl_vat: credit.gross_incl_vat,
                            refunds: credit.refunds,
                            fees: credit.fees.clone(),
                            fee_refunds: credit.fee_refunds.clone(),
                            net: credit.net,
                            available_on: available,
                            at: validated_at,
                        })
                    });
                    match decided {
                        Ok(_) => {
                            report.credited += 1;
                            report.total_net += credit.net;
                        }
                        Err(ProducerBalanceError::SaleAlreadyCredited { .. }) => {
                            report.already_credited += 1;
                        }
                        Err(e) => return Err(rejected(e)),
                    }
                    changes.stream(&balance)?;
                }
                let monday = payout_on(available);
                changes.schedule(
                    kinds::PAYOUT_RUN,
                    &format!("payouts:{monday}"),
                    serde_json::json!({ "monday": monday }),
                    payout_run_at(monday),
                );
                Ok(Decided::new(changes, report))
            })
            .await?;
        Ok(flowed.value)
    }

    /// R-ORD-5, R-FEE-4, R-PAY-2: refunds recorded after a sale was credited reduce each
    /// credited producer's balance by the refund minus the fees given back: each charged line
    /// gives back its variable part in proportion to the refund, and the fixed part of an order
    /// whose share is now wholly refunded, once. Compares what the orders say now with
    /// what the balance recorded for the sale (`SaleCredited` + earlier `RefundDebited`), so a
    /// re-run debits nothing twice; a producer not credited yet is left to the crediting.
    pub async fn debit_late_refunds(
        &self,
        sale: SaleId,
        order: OrderId,
        key: &str,
    ) -> Result<u32, AppError> {
        let (state, _) = self.load::<Sale>(sale).await?;
        if state.payment_mode() != PaymentMode::Online {
            return Ok(0);
        }
        // Before validation the crediting counts the refund itself.
        let Some(validated_at) = self.validated_at(sale).await? else {
            return Ok(0);
        };
        let cc = CommandContext::new(Actor::system())
            .with_idempotency(key, format!("debit:{sale}:{order}"));
        let state = &state;
        let flowed = self
            .run_flow(&cc, vec![], || async move {
                let orders = self.sale_orders(sale).await?;
                let schedule = self.fee_schedule_for(state.market(), state.date()).await?;
                let now = sale_credits(schedule, paris_date(validated_at), &orders)?;
                let mut changes = Changes::new();
                let mut debited = 0u32;
                for (producer, credit) in now {
                    let mut balance = self
                        .bus
                        .load_stream::<ProducerBalance>(&producer.to_string())
                        .await?;
                    let Some(recorded) = self.credit_record(producer, sale).await? else {
                        if credit.refunds.is_zero() {
                            continue;
                        }
                        // Validated, not credited yet: the crediting may have read the orders
                        // before this refund. Wait for it, then compare.
                        return Err(AppError::Retryable(format!(
                            "sale {sale} is validated but producer {producer} is not credited yet"
                        )));
                    };
                    let refunds_total = credit.refunds - recorded.at_credit;
                    if refunds_total <= recorded.debited {
                        continue;
                    }
                    let amount = refunds_total - recorded.debited;
                    let refund = format!("order:{order}:{refunds_total}");
                    let mut fee_refunds = Vec::new();
                    for line in &recorded.fees {
                        let key = fee_key(&line.rule_id, line.rule_version, line.beneficiary);
                        let before = recorded.fixed_back.get(&key).copied().unwrap_or_default();
                        let now = credit.fixed_back.get(&key).copied().unwrap_or_default();
                        let fixed_now = (now - before)
                            .min(line.fixed_part - before)
                            .max(Money::ZERO);
                        let refunded_before = recorded.refunded_in_base;
                        let refunding =
                            amount.min((recorded.base - refunded_before).max(Money::ZERO));
                        fee_refunds.push(refund_fee_line(
                            line,
                            &refund,
                            recorded.base,
                            refunded_before,
                            refunding,
                            before,
                            fixed_now,
                        )?);
                    }
                    let decided = balance.decide(|b| {
                        b.decide(ProducerBalanceCommand::DebitRefunds {
                            sale,
                            market: state.market(),
                            order,
                            refunds_total,
                            fee_refunds,
                            at: self.now(),
                        })
                    });
                    match decided {
                        Ok(_) => debited += 1,
                        Err(ProducerBalanceError::RefundsAlreadyDebited { .. }) => {}
                        Err(e) => return Err(rejected(e)),
                    }
                    changes.stream(&balance)?;
                }
                Ok(Decided::new(changes, debited))
            })
            .await?;
        Ok(flowed.value)
    }

    /// What `producer`'s balance recorded for `sale`: the refunds counted at crediting, the late
    /// refunds debited since, and the fee lines after the last of them (from its events: a paid
    /// credit leaves the state).
    async fn credit_record(
        &self,
        producer: ProducerId,
        sale: SaleId,
    ) -> Result<Option<CreditRecord>, AppError> {
        let mut recorded: Option<CreditRecord> = None;
        for e in EventLog::stream(&self.pool, "producer_balance", &producer.to_string()).await? {
            match e.decode::<ProducerBalanceEvent>()? {
                ProducerBalanceEvent::SaleCredited {
                    sale: s,
                    gross_incl_vat,
                    refunds,
                    fees,
                    fee_refunds,
                    ..
                } if s == sale => {
                    // Older credits charged the fees on what was kept after refunds.
                    let legacy = fee_refunds.is_empty() && !refunds.is_zero();
                    let mut r = CreditRecord {
                        at_credit: refunds,
                        debited: Money::ZERO,
                        fees,
                        base: if legacy {
                            gross_incl_vat - refunds
                        } else {
                            gross_incl_vat
                        },
                        refunded_in_base: if legacy { Money::ZERO } else { refunds },
                        fixed_back: BTreeMap::new(),
                    };
                    r.add_fee_refunds(&fee_refunds);
                    recorded = Some(r);
                }
                ProducerBalanceEvent::RefundDebited {
                    sale: s,
                    refunds_total,
                    amount,
                    fees_after,
                    fee_refunds,
                    ..
                } if s == sale => {
                    if let Some(r) = recorded.as_mut() {
                        r.debited = refunds_total;
                        if fee_refunds.is_empty() && !fees_after.is_empty() {
                            // An older event: the fee lines were recomputed on what was kept.
                            r.base = r.base - r.refunded_in_base - amount;
                            r.refunded_in_base = Money::ZERO;
                            r.fees = fees_after;
                            r.fixed_back.clear();
                        } else {
                            r.refunded_in_base += amount;
                            r.add_fee_refunds(&fee_refunds);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(recorded)
    }

    /// Schedules the payout run of a Monday (a no-op when it is scheduled already).
    pub async fn schedule_payout_run(&self, monday: NaiveDate) -> Result<(), AppError> {
        self.schedule(
            kinds::PAYOUT_RUN,
            &format!("payouts:{monday}"),
            serde_json::json!({ "monday": monday }),
            payout_run_at(monday),
        )
        .await
    }

    /// Producers with a balance stream.
    async fn balance_producers(&self) -> Result<Vec<ProducerId>, AppError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'producer_balance' \
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        ids.iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| AppError::Internal(format!("bad producer id {s}")))
            })
            .collect()
    }

    /// R-PAY-1, R-PAY-2: the payout run of `monday` (see the module documentation), then the
    /// next Monday's run is scheduled.
    pub async fn run_payouts(
        &self,
        monday: NaiveDate,
        key: &str,
    ) -> Result<PayoutRunReport, AppError> {
        let mut report = PayoutRunReport::default();
        for producer in self.balance_producers().await? {
            report.producers += 1;
            self.pay_producer(producer, monday, key, &mut report)
                .await?;
        }
        self.schedule_payout_run(next_weekday_after(monday, Weekday::Mon))
            .await?;
        Ok(report)
    }

    /// One producer's part of a payout run, in one commit of their balance: failed transfers
    /// of earlier runs retried (or given back after `max_transfer_attempts`), this Monday's
    /// payout of what is available started, and each transfer owed as an outbox message,
    /// delivered right after (R-PAY-1, R-PAY-2).
    async fn pay_producer(
        &self,
        producer: ProducerId,
        monday: NaiveDate,
        key: &str,
        report: &mut PayoutRunReport,
    ) -> Result<(), AppError> {
        // Credits available before the Monday are paid on it (payout_on: strictly after).
        let cutoff = monday - Duration::days(1);
        let cc = CommandContext::new(Actor::system()).with_idempotency(
            format!("{key}:pay:{producer}"),
            format!("pay:{producer}:{monday}"),
        );
        let max_attempts = self.settings.max_transfer_attempts;
        let flowed = self
            .run_flow(&cc, vec![], || async move {
                let now = self.now();
                let mut balance = self
                    .bus
                    .load_stream::<ProducerBalance>(&producer.to_string())
                    .await?;
                let mut step = PayoutStep::default();
                let open: BTreeSet<PayoutId> = balance
                    .state
                    .credits()
                    .values()
                    .filter_map(|c| c.payout)
                    .collect();
                // 1. Transfers that failed on an earlier run: retry, or give the money back.
                for id in open {
                    let Some(record) = balance.state.payout(id) else {
                        continue;
                    };
                    if record.status != PayoutStatus::Failed || record.statement.on >= cutoff {
                        continue;
                    }
                    let command = if record.attempts >= max_attempts {
                        step.returned += 1;
                        ProducerBalanceCommand::ReturnToBalance {
                            payout: id,
                            at: now,
                        }
                    } else {
                        step.retried += 1;
                        ProducerBalanceCommand::RetryTransfer {
                            payout: id,
                            at: now,
                        }
                    };
                    balance.decide(|b| b.decide(command)).map_err(rejected)?;
                }
                // 2. This Monday's payout of what is available, unless bank details changed
                //    within the week before and the owner has not confirmed them (R-PAY-4).
                let id = payout_id_for(producer, monday);
                let (account, _) = self
                    .load::<etal_domain::account::ProducerAccount>(producer)
                    .await?;
                let held = account
                    .bank_details()
                    .is_some_and(|b| b.holds_payout_at(now));
                let due = balance.state.payout(id).is_none()
                    && balance.state.available(cutoff) > Money::ZERO;
                if due && held {
                    step.held += 1;
                    tracing::info!(producer = %producer, %monday, "payout held: new bank details wait for the owner's confirmation");
                } else if due {
                    let started = balance.decide(|b| {
                        b.decide(ProducerBalanceCommand::StartPayout {
                            payout: id,
                            on: cutoff,
                            at: now,
                        })
                    });
                    match started {
                        Ok(_) => step.started += 1,
                        Err(ProducerBalanceError::PayoutAlreadyExists { .. })
                        | Err(ProducerBalanceError::NothingToPay { .. }) => {}
                        Err(e) => return Err(rejected(e)),
                    }
                }
                // 3. Every transfer in flight is owed to the bank (the same key on a re-run).
                let mut changes = Changes::new();
                let payouts: Vec<(PayoutId, u32, Money)> = balance
                    .state
                    .credits()
                    .values()
                    .filter_map(|c| c.payout)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter_map(|id| {
                        let r = balance.state.payout(id)?;
                        (r.status == PayoutStatus::InFlight).then_some((
                            id,
                            r.attempts,
                            r.statement.total,
                        ))
                    })
                    .collect();
                for (id, attempt, amount) in payouts {
                    changes.send(Self::transfer_message(producer, id, attempt, amount));
                    step.in_flight.push(id);
                }
                changes.stream(&balance)?;
                Ok(Decided::new(changes, step))
            })
            .await?;
        self.deliver_now(&flowed.outbox, &flowed.owed).await;
        let step = flowed.value;
        report.started += step.started;
        report.held += step.held;
        report.retried += step.retried;
        report.returned += step.returned;
        // What the bank answered (inline; a transfer still owed is delivered by the worker).
        let (balance, _) = self.load::<ProducerBalance>(producer).await?;
        for id in step.in_flight {
            let Some(record) = balance.payout(id) else {
                continue;
            };
            match record.status {
                PayoutStatus::Succeeded => {
                    report.succeeded += 1;
                    report.paid += record.statement.total;
                }
                PayoutStatus::Failed => {
                    tracing::warn!(%producer, payout = %id, amount = %record.statement.total, "payout transfer failed");
                    report.failed += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What one producer's part of a payout run decided.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct PayoutStep {
    /// R-PAY-4: this Monday's payout waits for the owner to confirm new bank details.
    held: u32,
    started: u32,
    retried: u32,
    returned: u32,
    in_flight: Vec<PayoutId>,
}
