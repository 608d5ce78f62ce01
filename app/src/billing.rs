//! Billing per period (R-ACC-3, R-FEE-5): the monthly billing run bills each producer's plan
//! subscription (in advance, for the month starting) and the per-period fees of the markets'
//! schedules (in arrears, on the turnover of the sales validated in the month before), once per
//! period, as debits of the producer's balance that the next payouts deduct (or that wait for
//! later credits when the balance is short). A subscription is billed from the first whole month
//! of the plan (see `etal_domain::fees::subscription_due`).
//!
//! The run is scheduled for the first day of each month at 05:00 Europe/Paris (`etal serve`
//! schedules the current month's at start; each run schedules the next); one commit per
//! producer, each bill refused by the balance if its key was billed already, so a re-run or a
//! crash in the middle bills nothing twice.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime};
use etal_domain::account::ProducerAccount;
use etal_domain::calendar::{paris_date, paris_instant};
use etal_domain::fees::{
    month_of, monthly_period_fees, next_month, period_key, previous_month, subscription_due,
    subscription_key, subscription_line, FeeLine,
};
use etal_domain::ids::{MarketId, ProducerId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::payout::{
    ProducerBalance, ProducerBalanceCommand, ProducerBalanceError, ProducerBalanceEvent,
};
use etal_domain::sale::Sale;
use etal_domain::{Actor, Money};
use etal_store::log::EventLog;
use etal_store::{Changes, CommandContext};
use serde::{Deserialize, Serialize};

use super::flow::Decided;
use super::outbox::rejected;
use super::schedule::kinds;
use super::{App, AppError};

/// When the monthly billing run starts (Europe/Paris), on the first day of the month.
pub const BILLING_RUN_TIME: NaiveTime = match NaiveTime::from_hms_opt(5, 0, 0) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

/// What a billing run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingReport {
    pub producers: u32,
    /// Bills recorded (subscriptions and period fees).
    pub bills: u32,
    /// Their total incl. VAT.
    pub amount: Money,
    /// The platform's invoices of the month before's fees issued (R-INV-3).
    #[serde(default)]
    pub fee_invoices: u32,
}

impl App {
    /// Schedules the billing run of the month starting `month` (a no-op when it is scheduled
    /// already).
    pub async fn schedule_billing_run(&self, month: NaiveDate) -> Result<(), AppError> {
        let month = month_of(month);
        self.schedule(
            kinds::BILLING_RUN,
            &format!("billing:{}", month.format("%Y-%m")),
            serde_json::json!({ "month": month }),
            paris_instant(month, BILLING_RUN_TIME),
        )
        .await
    }

    /// The billing run of the month starting `month` (see the module documentation), then the
    /// next month's run is scheduled.
    pub async fn run_billing(
        &self,
        month: NaiveDate,
        key: &str,
    ) -> Result<BillingReport, AppError> {
        let month = month_of(month);
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1 ORDER BY 1",
        )
        .bind(<ProducerAccount as cqrs_es::Aggregate>::TYPE)
        .fetch_all(&self.pool)
        .await?;
        let mut report = BillingReport::default();
        for id in ids {
            let producer: ProducerId = id
                .parse()
                .map_err(|_| AppError::Internal(format!("bad producer id {id}")))?;
            report.producers += 1;
            let (bills, amount) = self.bill_producer(producer, month, key).await?;
            report.bills += bills;
            report.amount += amount;
            // R-INV-3: the invoice of the month before's fees (once per producer and month; a
            // failure leaves it to a re-run, the bills stand).
            match self.invoice_fees(producer, previous_month(month)).await {
                Ok(Some(_)) => report.fee_invoices += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(producer = %producer, error = %e, "fee invoice not issued")
                }
            }
        }
        self.schedule_billing_run(next_month(month)).await?;
        Ok(report)
    }

    /// One producer's bills of the month starting `month`, in one commit of their balance:
    /// the subscription of the month (if their plan has one and it is due) and, per market, the
    /// monthly period fees on the turnover of the month before. Returns (bills, amount).
    async fn bill_producer(
        &self,
        producer: ProducerId,
        month: NaiveDate,
        key: &str,
    ) -> Result<(u32, Money), AppError> {
        let (account, version) = self.load::<ProducerAccount>(producer).await?;
        if version == 0 || !account.is_open() {
            return Ok((0, Money::ZERO));
        }
        let mut bills: Vec<(String, Option<MarketId>, NaiveDate, Vec<FeeLine>)> = Vec::new();
        if let Some(line) = self.subscription_due(&account, month) {
            bills.push((subscription_key(month), None, month, vec![line]));
        }
        let before = previous_month(month);
        for (market, lines) in self.period_fees_of(producer, before).await? {
            bills.push((period_key(market, before), Some(market), before, lines));
        }
        if bills.is_empty() {
            return Ok((0, Money::ZERO));
        }
        let step = format!("{key}:bill:{producer}");
        let cc = CommandContext::new(Actor::system())
            .with_idempotency(step, format!("bill:{producer}:{month}"));
        let bills = &bills;
        let flowed = self
            .run_flow(&cc, vec![], || async move {
                let mut balance = self
                    .bus
                    .load_stream::<ProducerBalance>(&producer.to_string())
                    .await?;
                let mut billed = (0u32, Money::ZERO);
                for (key, market, start, lines) in bills {
                    let decided = balance.decide(|b| {
                        b.decide(ProducerBalanceCommand::BillPeriod {
                            key: key.clone(),
                            market: *market,
                            period_start: *start,
                            lines: lines.clone(),
                            at: self.now(),
                        })
                    });
                    match decided {
                        Ok(_) => {
                            billed.0 += 1;
                            billed.1 += lines.iter().map(|l| l.amount_incl_vat).sum::<Money>();
                        }
                        Err(ProducerBalanceError::AlreadyBilled { .. }) => {}
                        Err(e) => return Err(rejected(e)),
                    }
                }
                let mut changes = Changes::new();
                changes.stream(&balance)?;
                Ok(Decided::new(changes, billed))
            })
            .await?;
        Ok(flowed.value)
    }

    /// The subscription line of `account` for the month starting `month`, when its plan has a
    /// subscription due that month (R-ACC-3).
    pub(crate) fn subscription_due(
        &self,
        account: &ProducerAccount,
        month: NaiveDate,
    ) -> Option<FeeLine> {
        let terms = account.plan_terms()?;
        let since = account.plan_since()?;
        let billing = account.subscription_billing();
        if !subscription_due(since, billing, month) {
            return None;
        }
        subscription_line(terms, billing)
    }

    /// The monthly period fees of `producer` for the month starting `month`, per market: the
    /// rules billed monthly of the market's schedule on the month's first day, on the
    /// producer's turnover (their lines now, incl. and excl. VAT) in the sales of that market
    /// validated during the month.
    async fn period_fees_of(
        &self,
        producer: ProducerId,
        month: NaiveDate,
    ) -> Result<BTreeMap<MarketId, Vec<FeeLine>>, AppError> {
        let end = next_month(month);
        let mut sales: BTreeMap<MarketId, Vec<SaleId>> = BTreeMap::new();
        for e in EventLog::stream(&self.pool, "producer_balance", &producer.to_string()).await? {
            let (sale, market, at) = match e.decode::<ProducerBalanceEvent>()? {
                ProducerBalanceEvent::SaleCredited {
                    sale, market, at, ..
                }
                | ProducerBalanceEvent::SaleSettledOnSite {
                    sale, market, at, ..
                } => (sale, market, at),
                _ => continue,
            };
            let day = paris_date(at);
            if day >= month && day < end {
                sales.entry(market).or_default().push(sale);
            }
        }
        let mut out = BTreeMap::new();
        for (market, sales) in sales {
            let schedule = self.fee_schedule_for(market, Some(month)).await?;
            if !schedule
                .rules
                .iter()
                .any(|r| r.period == Some(etal_domain::fees::FeePeriod::Monthly))
            {
                continue;
            }
            let (mut incl, mut excl, mut online) = (Money::ZERO, Money::ZERO, false);
            for sale in sales {
                let (state, _) = self.load::<Sale>(sale).await?;
                online |= state.payment_mode() == PaymentMode::Online;
                for order in self.sale_orders(sale).await? {
                    if let Some(part) = order.parts().get(&producer) {
                        incl += part.amount_incl_vat;
                        excl += part.amount_excl_vat;
                    }
                }
            }
            let lines = monthly_period_fees(schedule, month, online, incl, excl)?;
            if !lines.is_empty() {
                out.insert(market, lines);
            }
        }
        Ok(out)
    }
}
