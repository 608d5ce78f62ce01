//! The auditor's tools (R-PAY-3, R-FEE-3): replay the history into the domain's in-memory
//! [`Ledger`], check it, export the journal. Nothing here reads a projection: the events alone
//! are the evidence, read in their global order with the same posting code as the ledger
//! projection.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use chrono::NaiveDate;
use etal_domain::calendar::paris_date;
use etal_domain::fees::{recompute, recompute_refund, FeeLine, FeeRefund};
use etal_domain::ids::{ProducerId, SaleId};
use etal_domain::ledger::{
    balance_entries, order_entries, Account, Conservation, JournalEntry, Ledger, OrderMoney,
    TrialBalance,
};
use etal_domain::order::OrderEvent;
use etal_domain::payout::{PayoutId, ProducerBalanceEvent};
use etal_domain::Money;
use etal_projections::ledger::account_parts;
use etal_store::log::{EventLog, Position};
use etal_store::{StoreError, StoredEvent};
use serde::Serialize;
use sqlx::PgPool;

/// One thing that does not add up, named by the event that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Global position of the event (0 when the difference is about a total).
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event {} ({} {} #{}) {}: {}",
            self.position,
            self.aggregate_type,
            self.aggregate_id,
            self.sequence,
            self.field,
            self.message
        )
    }
}

fn difference(e: &StoredEvent, field: impl Into<String>, message: impl Into<String>) -> Difference {
    Difference {
        position: e.position.position,
        aggregate_type: e.aggregate_type.clone(),
        aggregate_id: e.aggregate_id.clone(),
        sequence: e.sequence,
        field: field.into(),
        message: message.into(),
    }
}

fn total_difference(what: &str, id: impl ToString, field: &str, message: String) -> Difference {
    Difference {
        position: 0,
        aggregate_type: what.to_string(),
        aggregate_id: id.to_string(),
        sequence: 0,
        field: field.to_string(),
        message,
    }
}

/// Where the event of a credit is, and what it said.
#[derive(Debug, Clone)]
struct CreditSeen {
    event: StoredEvent,
    gross: Money,
    refunds: Money,
    fees: Money,
    net: Money,
    /// Refunds debited after the crediting (`RefundDebited`).
    late_refunds: Money,
    /// The fee lines in force (recomputed by each `RefundDebited`).
    fee_lines: Vec<FeeLine>,
    /// Debits of late refunds: (debit id, amount).
    debits: Vec<(String, Money)>,
}

/// The history folded: the ledger and what the checks need.
#[derive(Default)]
pub struct Replay {
    pub ledger: Ledger,
    pub events: u64,
    pub fee_lines_checked: u64,
    pub differences: Vec<Difference>,
    orders: HashMap<String, OrderMoney>,
    /// (sale, producer) -> (payments, refunds) attributed from the order events.
    received: BTreeMap<(SaleId, ProducerId), (Money, Money)>,
    credits: BTreeMap<(SaleId, ProducerId), CreditSeen>,
    payouts: HashMap<PayoutId, PayoutSeen>,
    /// (producer, debit id) recovered by a confirmed payout.
    recovered: std::collections::BTreeSet<(ProducerId, String)>,
    /// (sale, producer) -> position of the confirmed transfer that paid it.
    paid: BTreeMap<(SaleId, ProducerId), i64>,
    last_date: Option<NaiveDate>,
    /// Nothing left half-done (see [`crate::completeness`]).
    completeness: crate::completeness::Completeness,
}

/// A fee given back (R-FEE-4) recomputes from its inputs, and gives back a line that was
/// charged (its rule, beneficiary and amounts).
fn check_fee_refund(
    e: &StoredEvent,
    field: &str,
    r: &FeeRefund,
    charged: &[FeeLine],
    out: &mut Vec<Difference>,
) {
    let again = recompute_refund(r);
    if again != *r {
        out.push(difference(
            e,
            field,
            format!(
                "fee {} given back {} incl. VAT, recomputed {} (proportional to {} of {} refunded after {}, fixed part {})",
                r.rule_id,
                r.amount_incl_vat,
                again.amount_incl_vat,
                r.refunded_now,
                r.paid,
                r.refunded_before,
                r.fixed_back_now
            ),
        ));
    }
    let matches = charged.iter().any(|l| {
        l.rule_id == r.rule_id
            && l.rule_version == r.rule_version
            && l.beneficiary == r.beneficiary
            && l.amount_excl_vat == r.charged_excl_vat
            && l.vat == r.charged_vat
            && l.fixed_part == r.charged_fixed_part
    });
    if !matches {
        out.push(difference(
            e,
            field,
            format!(
                "fee {} given back is not a fee line charged for the sale",
                r.rule_id
            ),
        ));
    }
}

fn check_fee_line(e: &StoredEvent, field: &str, line: &FeeLine, out: &mut Vec<Difference>) {
    let again = recompute(line);
    for (name, recorded, computed) in [
        (
            "amount_excl_vat",
            line.amount_excl_vat,
            again.amount_excl_vat,
        ),
        ("vat", line.vat, again.vat),
        (
            "amount_incl_vat",
            line.amount_incl_vat,
            again.amount_incl_vat,
        ),
    ] {
        if recorded != computed {
            out.push(difference(
                e,
                format!("{field}.{name}"),
                format!(
                    "fee line of rule {} v{} records {recorded} but its inputs give {computed}",
                    line.rule_id, line.rule_version
                ),
            ));
        }
    }
}

impl Replay {
    fn post(&mut self, e: &StoredEvent, entries: Vec<JournalEntry>) {
        for entry in entries {
            self.last_date = Some(self.last_date.map_or(entry.date, |d| d.max(entry.date)));
            let id = entry.entry_id.clone();
            if let Err(err) = self.ledger.post(entry) {
                self.differences
                    .push(difference(e, "entry", format!("{id}: {err}")));
            }
        }
    }

    /// Folds one event (in global order).
    pub fn apply(&mut self, e: &StoredEvent) {
        self.events += 1;
        self.completeness.apply(e);
        let Ok(sequence) = u64::try_from(e.sequence) else {
            return;
        };
        match e.aggregate_type.as_str() {
            "order" => {
                let event: OrderEvent = match e.decode() {
                    Ok(ev) => ev,
                    Err(err) => {
                        self.differences
                            .push(difference(e, "payload", err.to_string()));
                        return;
                    }
                };
                let state = self.orders.entry(e.aggregate_id.clone()).or_default();
                let entries = order_entries(state, &e.aggregate_id, sequence, &event);
                if let Some(sale) = state.sale {
                    for entry in &entries {
                        for p in &entry.postings {
                            if let Account::ProducerPayable(producer) = p.account {
                                let r = self.received.entry((sale, producer)).or_default();
                                r.0 += p.credit;
                                r.1 += p.debit;
                            }
                        }
                    }
                }
                self.post(e, entries);
            }
            "producer_balance" => {
                let event: ProducerBalanceEvent = match e.decode() {
                    Ok(ev) => ev,
                    Err(err) => {
                        self.differences
                            .push(difference(e, "payload", err.to_string()));
                        return;
                    }
                };
                let Ok(producer) = e.aggregate_id.parse::<ProducerId>() else {
                    self.differences
                        .push(difference(e, "aggregate_id", "not a producer id"));
                    return;
                };
                self.check_balance_event(e, producer, &event);
                let entries = balance_entries(producer, sequence, &event);
                self.post(e, entries);
            }
            _ => {}
        }
    }

    fn check_balance_event(
        &mut self,
        e: &StoredEvent,
        producer: ProducerId,
        event: &ProducerBalanceEvent,
    ) {
        match event {
            ProducerBalanceEvent::SaleCredited {
                sale,
                gross_incl_vat,
                refunds,
                fees,
                fee_refunds,
                net,
                ..
            } => {
                for (i, line) in fees.iter().enumerate() {
                    self.fee_lines_checked += 1;
                    check_fee_line(
                        e,
                        &format!("SaleCredited.fees[{i}]"),
                        line,
                        &mut self.differences,
                    );
                }
                for (i, r) in fee_refunds.iter().enumerate() {
                    self.fee_lines_checked += 1;
                    check_fee_refund(
                        e,
                        &format!("SaleCredited.fee_refunds[{i}]"),
                        r,
                        fees,
                        &mut self.differences,
                    );
                }
                let fees_total: Money = fees.iter().map(|l| l.amount_incl_vat).sum::<Money>()
                    - fee_refunds.iter().map(|r| r.amount_incl_vat).sum::<Money>();
                let expected = *gross_incl_vat - *refunds - fees_total;
                if *net != expected {
                    self.differences.push(difference(
                        e,
                        "SaleCredited.net",
                        format!("net {net} but gross - refunds - fees = {expected}"),
                    ));
                }
                self.credits.insert(
                    (*sale, producer),
                    CreditSeen {
                        event: e.clone(),
                        gross: *gross_incl_vat,
                        refunds: *refunds,
                        fees: fees_total,
                        net: *net,
                        late_refunds: Money::ZERO,
                        fee_lines: fees.clone(),
                        debits: Vec::new(),
                    },
                );
            }
            ProducerBalanceEvent::PeriodBilled { lines, amount, .. } => {
                for (i, line) in lines.iter().enumerate() {
                    self.fee_lines_checked += 1;
                    check_fee_line(
                        e,
                        &format!("PeriodBilled.lines[{i}]"),
                        line,
                        &mut self.differences,
                    );
                }
                let total: Money = lines.iter().map(|l| l.amount_incl_vat).sum();
                if total != *amount {
                    self.differences.push(difference(
                        e,
                        "PeriodBilled.amount",
                        format!("billed {amount} but the fee lines add up to {total}"),
                    ));
                }
            }
            ProducerBalanceEvent::SaleSettledOnSite { fees, owed, .. } => {
                for (i, line) in fees.iter().enumerate() {
                    self.fee_lines_checked += 1;
                    check_fee_line(
                        e,
                        &format!("SaleSettledOnSite.fees[{i}]"),
                        line,
                        &mut self.differences,
                    );
                }
                let total: Money = fees.iter().map(|l| l.amount_incl_vat).sum();
                if total != *owed {
                    self.differences.push(difference(
                        e,
                        "SaleSettledOnSite.owed",
                        format!("owed {owed} but the fee lines add up to {total}"),
                    ));
                }
            }
            ProducerBalanceEvent::RefundDebited {
                sale,
                refunds_total,
                amount,
                fees_before,
                fees_after,
                fee_refunds,
                debit,
                ..
            } => {
                let in_force = self
                    .credits
                    .get(&(*sale, producer))
                    .map(|c| c.fee_lines.clone())
                    .unwrap_or_default();
                let mut given_back = Money::ZERO;
                for (i, r) in fee_refunds.iter().enumerate() {
                    self.fee_lines_checked += 1;
                    given_back += r.amount_incl_vat;
                    check_fee_refund(
                        e,
                        &format!("RefundDebited.fee_refunds[{i}]"),
                        r,
                        &in_force,
                        &mut self.differences,
                    );
                }
                for (name, lines) in [("fees_before", fees_before), ("fees_after", fees_after)] {
                    for (i, line) in lines.iter().enumerate() {
                        self.fee_lines_checked += 1;
                        check_fee_line(
                            e,
                            &format!("RefundDebited.{name}[{i}]"),
                            line,
                            &mut self.differences,
                        );
                    }
                }
                let before: Money = fees_before.iter().map(|l| l.amount_incl_vat).sum();
                let after: Money = fees_after.iter().map(|l| l.amount_incl_vat).sum();
                let back = before - after + given_back;
                if *debit != *amount - back {
                    self.differences.push(difference(
                        e,
                        "RefundDebited.debit",
                        format!(
                            "debit {debit} but amount - fees given back = {}",
                            *amount - back
                        ),
                    ));
                }
                let Some(c) = self.credits.get_mut(&(*sale, producer)) else {
                    self.differences.push(difference(
                        e,
                        "RefundDebited.sale",
                        "sale was not credited",
                    ));
                    return;
                };
                let legacy =
                    fee_refunds.is_empty() && !(fees_before.is_empty() && fees_after.is_empty());
                if legacy && &c.fee_lines != fees_before {
                    self.differences.push(difference(
                        e,
                        "RefundDebited.fees_before",
                        "not the fee lines in force for the sale",
                    ));
                }
                if c.late_refunds + *amount != *refunds_total {
                    self.differences.push(difference(
                        e,
                        "RefundDebited.refunds_total",
                        format!(
                            "{} debited before + {amount} != {refunds_total}",
                            c.late_refunds
                        ),
                    ));
                }
                c.late_refunds = *refunds_total;
                if legacy {
                    c.fees = after;
                    c.fee_lines = fees_after.clone();
                } else {
                    c.fees -= given_back;
                }
                if !debit.is_zero() {
                    c.debits
                        .push((format!("refund:{sale}:{refunds_total}"), *debit));
                }
            }
            ProducerBalanceEvent::PayoutStarted { statement, .. } => {
                let mut lines = Vec::new();
                for (i, l) in statement.lines.iter().enumerate() {
                    for (j, f) in l.fees.iter().enumerate() {
                        self.fee_lines_checked += 1;
                        check_fee_line(
                            e,
                            &format!("PayoutStarted.statement.lines[{i}].fees[{j}]"),
                            f,
                            &mut self.differences,
                        );
                    }
                    if let Some(c) = self.credits.get(&(l.sale, producer)) {
                        if c.net != l.net {
                            self.differences.push(difference(
                                e,
                                format!("PayoutStarted.statement.lines[{i}].net"),
                                format!(
                                    "statement pays {} for sale {} credited {}",
                                    l.net, l.sale, c.net
                                ),
                            ));
                        }
                    }
                    lines.push((l.sale, l.net));
                }
                let deducted: Money = statement.deductions.iter().map(|d| d.amount).sum();
                let sum: Money = statement.lines.iter().map(|l| l.net).sum::<Money>() - deducted;
                if sum != statement.total {
                    self.differences.push(difference(
                        e,
                        "PayoutStarted.statement.total",
                        format!(
                            "total {} but its lines minus deductions add up to {sum}",
                            statement.total
                        ),
                    ));
                }
                let deductions = statement
                    .deductions
                    .iter()
                    .map(|d| (d.id.clone(), d.amount))
                    .collect();
                self.payouts
                    .insert(statement.payout, PayoutSeen { lines, deductions });
            }
            ProducerBalanceEvent::TransferSucceeded { payout, amount, .. } => {
                let Some(PayoutSeen { lines, deductions }) = self.payouts.get(payout).cloned()
                else {
                    self.differences
                        .push(difference(e, "payout", "unknown payout confirmed"));
                    return;
                };
                let total: Money = lines.iter().map(|(_, m)| *m).sum::<Money>()
                    - deductions.iter().map(|(_, m)| *m).sum::<Money>();
                for (id, _) in deductions {
                    if !self.recovered.insert((producer, id.clone())) {
                        self.differences.push(difference(
                            e,
                            "TransferSucceeded",
                            format!("debit {id} of {producer} was already recovered"),
                        ));
                    }
                }
                if total != *amount {
                    self.differences.push(difference(
                        e,
                        "TransferSucceeded.amount",
                        format!("transferred {amount} for a statement of {total}"),
                    ));
                }
                for (sale, _) in lines {
                    if let Some(first) = self.paid.insert((sale, producer), e.position.position) {
                        self.differences.push(difference(
                            e,
                            "TransferSucceeded",
                            format!("sale {sale} was already paid to {producer} by event {first}"),
                        ));
                    }
                }
            }
            // R-PAY-5: a transfer the bank returned was not paid after all: its sales and the
            // debits it recovered may be paid again, once, by a later payout.
            ProducerBalanceEvent::PayoutReturnedByBank { payout, amount, .. } => {
                let Some(PayoutSeen { lines, deductions }) = self.payouts.get(payout).cloned()
                else {
                    self.differences.push(difference(
                        e,
                        "payout",
                        "unknown payout returned by the bank",
                    ));
                    return;
                };
                let total: Money = lines.iter().map(|(_, m)| *m).sum::<Money>()
                    - deductions.iter().map(|(_, m)| *m).sum::<Money>();
                if total != *amount {
                    self.differences.push(difference(
                        e,
                        "PayoutReturnedByBank.amount",
                        format!("returned {amount} for a statement of {total}"),
                    ));
                }
                for (sale, _) in &lines {
                    if self.paid.remove(&(*sale, producer)).is_none() {
                        self.differences.push(difference(
                            e,
                            "PayoutReturnedByBank",
                            format!("sale {sale} of {producer} returned but never paid"),
                        ));
                    }
                }
                for (id, _) in deductions {
                    self.recovered.remove(&(producer, id));
                }
            }
            _ => {}
        }
    }

    /// The last business date of the history.
    pub fn last_date(&self) -> NaiveDate {
        self.last_date.unwrap_or(NaiveDate::MIN)
    }

    /// The checks after the fold: balanced ledger, conservation overall and per sale, credits
    /// equal to what the orders received.
    pub fn finish_checks(&mut self) -> Vec<SaleConservation> {
        let as_of = self.last_date();
        let tb = self.ledger.trial_balance(as_of);
        if !tb.is_balanced() {
            self.differences.push(total_difference(
                "ledger",
                "all",
                "trial_balance",
                format!("debits {} != credits {}", tb.total_debits, tb.total_credits),
            ));
        }
        let c = self.ledger.conservation(as_of);
        if !c.holds() {
            self.differences.push(total_difference(
                "ledger",
                "all",
                "conservation",
                format!(
                    "payments {} + fees receivable {} != refunds {} + fees {} + payouts {} + held {}",
                    c.payments, c.receivables, c.refunds, c.fees, c.payouts, c.held
                ),
            ));
        }
        // Credits against what the orders received.
        for ((sale, producer), credit) in &self.credits {
            let (payments, refunds) = self
                .received
                .get(&(*sale, *producer))
                .copied()
                .unwrap_or_default();
            if credit.gross != payments {
                self.differences.push(difference(
                    &credit.event,
                    "SaleCredited.gross_incl_vat",
                    format!(
                        "credited {} but the orders of sale {sale} paid {payments}",
                        credit.gross
                    ),
                ));
            }
            if credit.refunds + credit.late_refunds != refunds {
                self.differences.push(difference(
                    &credit.event,
                    "SaleCredited.refunds",
                    format!(
                        "credited {} refunds (+ {} debited later) but the orders refunded \
                         {refunds}",
                        credit.refunds, credit.late_refunds
                    ),
                ));
            }
        }
        // Conservation per sale: payments = refunds + fees + payouts + held.
        let mut sales: BTreeMap<SaleId, SaleConservation> = BTreeMap::new();
        for ((sale, producer), (payments, refunds)) in &self.received {
            let s = sales
                .entry(*sale)
                .or_insert_with(|| SaleConservation::new(*sale));
            s.payments += *payments;
            s.refunds += *refunds;
            match self.credits.get(&(*sale, *producer)) {
                Some(c) => {
                    s.fees += c.fees;
                    if self.paid.contains_key(&(*sale, *producer)) {
                        s.payouts += c.net;
                    } else {
                        s.held += c.net;
                    }
                    // Late refunds: the debit is paid back by a payout or still owed.
                    for (id, amount) in &c.debits {
                        if self.recovered.contains(&(*producer, id.clone())) {
                            s.payouts -= *amount;
                        } else {
                            s.held -= *amount;
                        }
                    }
                }
                None => s.held += *payments - *refunds,
            }
        }
        for s in sales.values() {
            if !s.holds() {
                self.differences.push(total_difference(
                    "sale",
                    s.sale,
                    "conservation",
                    format!(
                        "payments {} != refunds {} + fees {} + payouts {} + held {}",
                        s.payments, s.refunds, s.fees, s.payouts, s.held
                    ),
                ));
            }
        }
        sales.into_values().collect()
    }
}

/// R-PAY-3 for one sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaleConservation {
    pub sale: SaleId,
    pub payments: Money,
    pub refunds: Money,
    pub fees: Money,
    pub payouts: Money,
    pub held: Money,
}

impl SaleConservation {
    fn new(sale: SaleId) -> Self {
        Self {
            sale,
            payments: Money::ZERO,
            refunds: Money::ZERO,
            fees: Money::ZERO,
            payouts: Money::ZERO,
            held: Money::ZERO,
        }
    }

    pub fn holds(&self) -> bool {
        self.payments == self.refunds + self.fees + self.payouts + self.held
    }
}

/// Reads every event in global order into a [`Replay`]; `progress` gets the count of each batch.
pub async fn replay(pool: &PgPool, progress: &(dyn Fn(u64) + Sync)) -> Result<Replay, StoreError> {
    let mut r = Replay::default();
    let mut after = Position::START;
    // Every event committed before the audit started, however long another transaction holds
    // the watermark below some of them (bounded: an audit never reports on a partial log).
    let until = EventLog::last_committed(pool).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let batch = EventLog::read_after(pool, after, None, 1000).await?;
        let Some(last) = batch.last() else {
            if after >= until {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Stalled(format!(
                    "events up to position {} are committed but not readable after 120 s \
                     (a long transaction holds the watermark); audit not run",
                    until.position
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        after = last.position;
        for e in &batch {
            r.apply(e);
        }
        progress(batch.len() as u64);
    }
    Ok(r)
}

/// A payout as its `PayoutStarted` event announced it.
#[derive(Debug, Clone)]
struct PayoutSeen {
    /// (sale, net) paid by the payout.
    lines: Vec<(SaleId, Money)>,
    /// (debit id, amount) deducted from it.
    deductions: Vec<(String, Money)>,
}

/// What `etal audit check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub events: u64,
    pub entries: usize,
    pub fee_lines_checked: u64,
    pub sales: Vec<SaleConservation>,
    pub trial_balance: TrialBalance,
    pub conservation: Conservation,
    pub differences: Vec<Difference>,
}

/// A recorded `etal audit check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedCheck {
    pub check_id: uuid::Uuid,
    pub ran_at: chrono::DateTime<chrono::Utc>,
    pub head_position: i64,
    pub events: i64,
    pub entries: i64,
    pub fee_lines: i64,
    pub sales: i64,
    pub differences: i32,
    pub first_differences: Vec<String>,
}

/// Keeps the outcome of a check (the auditors' page shows the latest).
pub async fn record_check(
    pool: &PgPool,
    report: &CheckReport,
    ran_at: chrono::DateTime<chrono::Utc>,
) -> Result<uuid::Uuid, sqlx::Error> {
    let id = uuid::Uuid::new_v4();
    let first: Vec<String> = report
        .differences
        .iter()
        .take(50)
        .map(|d| d.to_string())
        .collect();
    sqlx::query(
        "INSERT INTO audit_checks (check_id, ran_at, head_position, events, entries, fee_lines, sales, \
         differences, first_differences) \
         VALUES ($1, $2, (SELECT coalesce(max(global_position), 0) FROM events), $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(ran_at)
    .bind(i64::try_from(report.events).unwrap_or(i64::MAX))
    .bind(i64::try_from(report.entries).unwrap_or(i64::MAX))
    .bind(i64::try_from(report.fee_lines_checked).unwrap_or(i64::MAX))
    .bind(i64::try_from(report.sales.len()).unwrap_or(i64::MAX))
    .bind(i32::try_from(report.differences.len()).unwrap_or(i32::MAX))
    .bind(serde_json::json!(first))
    .execute(pool)
    .await?;
    Ok(id)
}

/// The latest recorded checks, newest first.
pub async fn recorded_checks(pool: &PgPool, limit: i64) -> Result<Vec<RecordedCheck>, sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT check_id, ran_at, head_position, events, entries, fee_lines, sales, differences, \
         first_differences FROM audit_checks ORDER BY ran_at DESC, check_id LIMIT $1",
    )
    .bind(limit.clamp(1, 100))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let first: serde_json::Value = r.try_get("first_differences")?;
            Ok(RecordedCheck {
                check_id: r.try_get("check_id")?,
                ran_at: r.try_get("ran_at")?,
                head_position: r.try_get("head_position")?,
                events: r.try_get("events")?,
                entries: r.try_get("entries")?,
                fee_lines: r.try_get("fee_lines")?,
                sales: r.try_get("sales")?,
                differences: r.try_get("differences")?,
                first_differences: serde_json::from_value(first).unwrap_or_default(),
            })
        })
        .collect()
}

/// Replays and checks everything (see [`Replay::finish_checks`] and [`crate::completeness`]),
/// as of the machine's time.
pub async fn check(
    pool: &PgPool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<CheckReport, StoreError> {
    check_at(pool, chrono::Utc::now(), progress).await
}

/// [`check`] as of `now` (orders awaiting their charge are judged against it).
pub async fn check_at(
    pool: &PgPool,
    now: chrono::DateTime<chrono::Utc>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<CheckReport, StoreError> {
    let mut r = replay(pool, progress).await?;
    let sales = r.finish_checks();
    let incomplete = r.completeness.finish(now);
    r.differences.extend(incomplete);
    let as_of = r.last_date();
    Ok(CheckReport {
        events: r.events,
        entries: r.ledger.entries().count(),
        fee_lines_checked: r.fee_lines_checked,
        sales,
        trial_balance: r.ledger.trial_balance(as_of),
        conservation: r.ledger.conservation(as_of),
        differences: r.differences,
    })
}

/// An account's printable name: `ProducerPayable:<producer id>`.
pub fn account_name(account: &Account) -> String {
    match account_parts(account) {
        (kind, Some(party)) => format!("{kind}:{party}"),
        (kind, None) => kind.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes the journal as CSV (one row per posting), ordered by date then entry id.
pub fn write_journal_csv(ledger: &Ledger, out: &mut dyn Write) -> std::io::Result<usize> {
    writeln!(
        out,
        "entry_id,date,available_on,description,line,account,debit,credit"
    )?;
    let mut entries: Vec<&JournalEntry> = ledger.entries().collect();
    entries.sort_by(|a, b| (a.date, &a.entry_id).cmp(&(b.date, &b.entry_id)));
    let mut rows = 0;
    for e in entries {
        for (i, p) in e.postings.iter().enumerate() {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{}",
                csv_field(&e.entry_id),
                e.date,
                e.available_on.map(|d| d.to_string()).unwrap_or_default(),
                csv_field(&e.description),
                i,
                csv_field(&account_name(&p.account)),
                p.debit,
                p.credit
            )?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// The business date of an instant (for `--until` defaults).
pub fn today(clock: &dyn etal_domain::Clock) -> NaiveDate {
    paris_date(clock.now())
}
