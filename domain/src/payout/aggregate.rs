//! The producer balance aggregate (TYPE "producer_balance", id = the producer's id).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::calendar::paris_date;
use crate::fees::{recompute, recompute_refund, FeeLine, FeeRefund};
use crate::ids::{MarketId, SaleId};
use crate::money::Money;

use super::commands::ProducerBalanceCommand;
use super::error::ProducerBalanceError;
use super::events::{
    DebitKind, Deduction, PayoutId, PayoutStatement, ProducerBalanceEvent, StatementLine,
};

/// Settled payouts whose statements stay in the state (older ones live in the events and the
/// projections only), so the state does not grow with the years.
pub const RECENT_SETTLED_PAYOUTS: usize = 52;

const MAX_TEXT_CHARS: usize = 500;

/// A sale's net credited and not paid yet (held, or in flight in `payout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub market: MarketId,
    pub gross_incl_vat: Money,
    pub refunds: Money,
    pub fees: Vec<FeeLine>,
    /// The fees given back for the refunds counted at crediting (R-FEE-4).
    #[serde(default)]
    pub fee_refunds: Vec<FeeRefund>,
    pub net: Money,
    pub available_on: NaiveDate,
    pub credited_at: DateTime<Utc>,
    /// The open payout that holds this credit, if any.
    pub payout: Option<PayoutId>,
}

/// Money the producer owes back (a fee of an on-site sale, a late refund), not recovered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debit {
    pub kind: DebitKind,
    pub sale: Option<SaleId>,
    pub amount: Money,
    /// The fee lines of a period fee.
    #[serde(default)]
    pub fees: Vec<FeeLine>,
    /// The open payout that deducts it, if any.
    pub payout: Option<PayoutId>,
}

/// Where a payout's transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Sent, not confirmed yet.
    InFlight,
    /// The transfer failed; the money is still held by the payout (retry or return).
    Failed,
    /// Paid.
    Succeeded,
    /// Given up; the credits went back to the balance.
    Returned,
}

/// A payout and its transfer's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRecord {
    pub statement: PayoutStatement,
    pub status: PayoutStatus,
    pub attempts: u32,
    pub provider_ref: Option<String>,
    pub last_failure: Option<String>,
    /// When the payout run started it (the transfer was sent).
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When the bank confirmed the transfer.
    #[serde(default)]
    pub paid_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProducerBalance {
    /// Open credits: held or in flight. Paid credits leave this map.
    credits: BTreeMap<SaleId, Credit>,
    /// Sales whose credit was paid (kept so a sale is never credited twice; 16 bytes a sale).
    paid_sales: BTreeSet<SaleId>,
    /// Open payouts and the most recent settled ones.
    payouts: BTreeMap<PayoutId, PayoutRecord>,
    /// Settled payouts still in `payouts`, oldest first.
    recent_settled: VecDeque<PayoutId>,
    /// Every payout id ever used (16 bytes a payout), so an id is never reused.
    used_payouts: BTreeSet<PayoutId>,
    credited_total: Money,
    paid_total: Money,
    /// Open debits (owed back, not recovered by a confirmed payout), by id.
    #[serde(default)]
    debits: BTreeMap<String, Debit>,
    /// Sales of markets paid on site already recorded (never twice).
    #[serde(default)]
    on_site_sales: BTreeSet<SaleId>,
    /// Cumulative late refunds debited, per sale (only sales with late refunds).
    #[serde(default)]
    refunds_debited: BTreeMap<SaleId, Money>,
    /// Keys of the periods billed (subscriptions, period fees; never twice).
    #[serde(default)]
    billed: BTreeSet<String>,
}

fn valid_text(s: &str) -> bool {
    let n = s.trim().chars().count();
    n > 0 && n <= MAX_TEXT_CHARS
}

impl ProducerBalance {
    /// Credited and not in any open payout, minus the debits not in a payout: the producer's
    /// money still held by the platform (negative when the producer owes more than is held;
    /// recovered from later credits).
    pub fn balance_held(&self) -> Money {
        self.credits
            .values()
            .filter(|c| c.payout.is_none())
            .map(|c| c.net)
            .sum::<Money>()
            - self.owed()
    }

    /// Debits not in any open payout (what the producer owes back now).
    pub fn owed(&self) -> Money {
        self.debits
            .values()
            .filter(|d| d.payout.is_none())
            .map(|d| d.amount)
            .sum()
    }

    /// Open debits, by id.
    pub fn debits(&self) -> &BTreeMap<String, Debit> {
        &self.debits
    }

    /// What a payout on `on` would pay: credits available minus every open debit (may be
    /// zero or negative: then nothing is paid).
    pub fn available(&self, on: NaiveDate) -> Money {
        self.payable_on(on).map(|(_, c)| c.net).sum::<Money>() - self.owed()
    }

    /// Money in payouts whose transfer is pending or failed.
    pub fn in_flight(&self) -> Money {
        self.payouts
            .values()
            .filter(|p| matches!(p.status, PayoutStatus::InFlight | PayoutStatus::Failed))
            .map(|p| p.statement.total)
            .sum()
    }

    /// Everything ever transferred successfully.
    pub fn paid_total(&self) -> Money {
        self.paid_total
    }

    /// Everything ever credited. Always `paid_total + balance_held + in_flight` (R-PAY-2).
    pub fn credited_total(&self) -> Money {
        self.credited_total
    }

    /// The statement of a payout (open, or among the recent settled ones).
    pub fn statement(&self, payout: PayoutId) -> Option<&PayoutStatement> {
        self.payouts.get(&payout).map(|p| &p.statement)
    }

    pub fn payout(&self, payout: PayoutId) -> Option<&PayoutRecord> {
        self.payouts.get(&payout)
    }

    /// Open payouts and the most recent settled ones, by id (time-ordered).
    pub fn payouts(&self) -> impl DoubleEndedIterator<Item = &PayoutRecord> {
        self.payouts.values()
    }

    /// Open credits (held or in flight), by sale.
    pub fn credits(&self) -> &BTreeMap<SaleId, Credit> {
        &self.credits
    }

    /// Whether the sale was ever credited.
    pub fn is_credited(&self, sale: SaleId) -> bool {
        self.credits.contains_key(&sale) || self.paid_sales.contains(&sale)
    }

    fn payable_on(&self, on: NaiveDate) -> impl Iterator<Item = (&SaleId, &Credit)> {
        self.credits
            .iter()
            .filter(move |(_, c)| c.payout.is_none() && c.available_on <= on)
    }

    fn open_payout(&self, payout: PayoutId) -> Result<&PayoutRecord, ProducerBalanceError> {
        self.payouts
            .get(&payout)
            .ok_or(ProducerBalanceError::UnknownPayout { payout })
    }

    fn settle(&mut self, payout: PayoutId) {
        self.recent_settled.push_back(payout);
        while self.recent_settled.len() > RECENT_SETTLED_PAYOUTS {
            if let Some(old) = self.recent_settled.pop_front() {
                self.payouts.remove(&old);
            }
        }
    }

    /// Decides the events of a command, without changing anything.
    pub fn decide(
        &self,
        command: ProducerBalanceCommand,
    ) -> Result<Vec<ProducerBalanceEvent>, ProducerBalanceError> {
        use ProducerBalanceCommand as C;
        use ProducerBalanceError as Err;
        use ProducerBalanceEvent as E;
        match command {
            C::CreditSale {
                sale,
                market,
                gross_incl_vat,
                refunds,
                fees,
                fee_refunds,
                net,
                available_on,
                at,
            } => {
                if self.is_credited(sale) {
                    return Err(Err::SaleAlreadyCredited { sale });
                }
                if gross_incl_vat.is_negative() || refunds.is_negative() {
                    return Err(Err::NegativeAmount);
                }
                if refunds > gross_incl_vat {
                    return Err(Err::RefundsAboveGross {
                        gross: gross_incl_vat,
                        refunds,
                    });
                }
                for line in &fees {
                    if &recompute(line) != line || line.amount_incl_vat.is_negative() {
                        return Err(Err::FeeLineDoesNotRecompute {
                            rule_id: line.rule_id.clone(),
                        });
                    }
                }
                check_fee_refunds(&fee_refunds)?;
                let fees_total: Money = fees.iter().map(|l| l.amount_incl_vat).sum();
                let given_back: Money = fee_refunds.iter().map(|r| r.amount_incl_vat).sum();
                let expected = gross_incl_vat - refunds - fees_total + given_back;
                if expected.is_negative() {
                    return Err(Err::NegativeAmount);
                }
                if net != expected {
                    return Err(Err::NetMismatch {
                        expected,
                        given: net,
                    });
                }
                Ok(vec![E::SaleCredited {
                    sale,
                    market,
                    gross_incl_vat,
                    refunds,
                    fees,
                    fee_refunds,
                    net,
                    available_on,
                    at,
                }])
            }
            C::RecordOnSiteSale {
                sale,
                market,
                sales_incl_vat,
                fees,
                at,
            } => {
                if self.on_site_sales.contains(&sale) || self.is_credited(sale) {
                    return Err(Err::OnSiteSaleAlreadyRecorded { sale });
                }
                if sales_incl_vat.is_negative() {
                    return Err(Err::NegativeAmount);
                }
                check_lines(&fees)?;
                let owed = fees.iter().map(|l| l.amount_incl_vat).sum();
                Ok(vec![E::SaleSettledOnSite {
                    sale,
                    market,
                    sales_incl_vat,
                    fees,
                    owed,
                    at,
                }])
            }
            C::DebitRefunds {
                sale,
                market,
                order,
                refunds_total,
                fee_refunds,
                at,
            } => {
                if !self.is_credited(sale) {
                    return Err(Err::SaleNotCredited { sale });
                }
                let already = self
                    .refunds_debited
                    .get(&sale)
                    .copied()
                    .unwrap_or(Money::ZERO);
                if refunds_total <= already {
                    return Err(Err::RefundsAlreadyDebited { sale });
                }
                check_fee_refunds(&fee_refunds)?;
                let amount = refunds_total - already;
                let given_back: Money = fee_refunds.iter().map(|r| r.amount_incl_vat).sum();
                let debit = amount - given_back;
                if debit.is_negative() {
                    return Err(Err::NegativeAmount);
                }
                Ok(vec![E::RefundDebited {
                    sale,
                    market,
                    order,
                    refunds_total,
                    amount,
                    fees_before: Vec::new(),
                    fees_after: Vec::new(),
                    fee_refunds,
                    debit,
                    at,
                }])
            }
            C::BillPeriod {
                key,
                market,
                period_start,
                lines,
                at,
            } => {
                if self.billed.contains(&key) {
                    return Err(Err::AlreadyBilled { key });
                }
                check_lines(&lines)?;
                let amount: Money = lines.iter().map(|l| l.amount_incl_vat).sum();
                if amount <= Money::ZERO {
                    return Err(Err::NothingToBill);
                }
                Ok(vec![E::PeriodBilled {
                    key,
                    market,
                    period_start,
                    lines,
                    amount,
                    at,
                }])
            }
            C::StartPayout { payout, on, at } => {
                if self.used_payouts.contains(&payout) {
                    return Err(Err::PayoutAlreadyExists { payout });
                }
                let lines: Vec<StatementLine> = self
                    .payable_on(on)
                    .map(|(sale, c)| StatementLine {
                        sale: *sale,
                        market: c.market,
                        gross_incl_vat: c.gross_incl_vat,
                        refunds: c.refunds,
                        fees: c.fees.clone(),
                        fee_refunds: c.fee_refunds.clone(),
                        fees_incl_vat: c.fees.iter().map(|l| l.amount_incl_vat).sum::<Money>()
                            - c.fee_refunds
                                .iter()
                                .map(|r| r.amount_incl_vat)
                                .sum::<Money>(),
                        net: c.net,
                        available_on: c.available_on,
                    })
                    .collect();
                // Every open debit is recovered by the payout; when they exceed what is
                // available, nothing is paid and they wait for later credits.
                let deductions: Vec<Deduction> = self
                    .debits
                    .iter()
                    .filter(|(_, d)| d.payout.is_none())
                    .map(|(id, d)| Deduction {
                        id: id.clone(),
                        kind: d.kind,
                        sale: d.sale,
                        amount: d.amount,
                        fees: d.fees.clone(),
                    })
                    .collect();
                let total: Money = lines.iter().map(|l| l.net).sum::<Money>()
                    - deductions.iter().map(|d| d.amount).sum::<Money>();
                if lines.is_empty() || total <= Money::ZERO {
                    return Err(Err::NothingToPay { on });
                }
                Ok(vec![E::PayoutStarted {
                    statement: PayoutStatement {
                        payout,
                        on,
                        lines,
                        deductions,
                        total,
                    },
                    at,
                }])
            }
            C::RecordTransferSucceeded {
                payout,
                provider_ref,
                at,
            } => {
                if !valid_text(&provider_ref) {
                    return Err(Err::InvalidText);
                }
                let record = self.open_payout(payout)?;
                match record.status {
                    PayoutStatus::InFlight => Ok(vec![E::TransferSucceeded {
                        payout,
                        amount: record.statement.total,
                        provider_ref,
                        at,
                    }]),
                    // The same confirmation twice: nothing new (never paid twice).
                    PayoutStatus::Succeeded
                        if record.provider_ref.as_deref() == Some(provider_ref.as_str()) =>
                    {
                        Ok(vec![])
                    }
                    status => Err(Err::WrongPayoutStatus { payout, status }),
                }
            }
            C::RecordTransferFailed { payout, reason, at } => {
                if !valid_text(&reason) {
                    return Err(Err::InvalidText);
                }
                let record = self.open_payout(payout)?;
                match record.status {
                    PayoutStatus::InFlight => Ok(vec![E::TransferFailed {
                        payout,
                        amount: record.statement.total,
                        reason,
                        at,
                    }]),
                    status => Err(Err::WrongPayoutStatus { payout, status }),
                }
            }
            C::RetryTransfer { payout, at } => {
                let record = self.open_payout(payout)?;
                match record.status {
                    PayoutStatus::Failed => Ok(vec![E::TransferRetried {
                        payout,
                        amount: record.statement.total,
                        attempt: record.attempts.saturating_add(1),
                        at,
                    }]),
                    status => Err(Err::WrongPayoutStatus { payout, status }),
                }
            }
            C::ReturnToBalance { payout, at } => {
                let record = self.open_payout(payout)?;
                match record.status {
                    PayoutStatus::Failed => Ok(vec![E::PayoutReturnedToBalance {
                        payout,
                        amount: record.statement.total,
                        sales: record.statement.lines.iter().map(|l| l.sale).collect(),
                        deductions: record.statement.deductions.clone(),
                        at,
                    }]),
                    status => Err(Err::WrongPayoutStatus { payout, status }),
                }
            }
            C::RecordBankReturn { payout, reason, at } => {
                let record = self
                    .payouts
                    .get(&payout)
                    .ok_or(Err::UnknownPayout { payout })?;
                match record.status {
                    PayoutStatus::Succeeded => Ok(vec![E::PayoutReturnedByBank {
                        payout,
                        amount: record.statement.total,
                        sales: record.statement.lines.iter().map(|l| l.sale).collect(),
                        deductions: record.statement.deductions.clone(),
                        reason,
                        at,
                    }]),
                    // Recorded already.
                    PayoutStatus::Returned => Ok(vec![]),
                    status => Err(Err::WrongPayoutStatus { payout, status }),
                }
            }
        }
    }
}

/// Each fee given back recomputes from its inputs and is not negative (R-FEE-4).
fn check_fee_refunds(refunds: &[FeeRefund]) -> Result<(), ProducerBalanceError> {
    for r in refunds {
        if &recompute_refund(r) != r || r.amount_incl_vat.is_negative() || r.vat.is_negative() {
            return Err(ProducerBalanceError::FeeLineDoesNotRecompute {
                rule_id: r.rule_id.clone(),
            });
        }
    }
    Ok(())
}

fn check_lines(fees: &[FeeLine]) -> Result<(), ProducerBalanceError> {
    for line in fees {
        if &recompute(line) != line || line.amount_incl_vat.is_negative() {
            return Err(ProducerBalanceError::FeeLineDoesNotRecompute {
                rule_id: line.rule_id.clone(),
            });
        }
    }
    Ok(())
}

impl Aggregate for ProducerBalance {
    const TYPE: &'static str = "producer_balance";
    type Command = ProducerBalanceCommand;
    type Event = ProducerBalanceEvent;
    type Error = ProducerBalanceError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use ProducerBalanceEvent as E;
        match event {
            E::SaleCredited {
                sale,
                market,
                gross_incl_vat,
                refunds,
                fees,
                fee_refunds,
                net,
                available_on,
                at,
            } => {
                self.credited_total += net;
                self.credits.insert(
                    sale,
                    Credit {
                        market,
                        gross_incl_vat,
                        refunds,
                        fees,
                        fee_refunds,
                        net,
                        available_on,
                        credited_at: at,
                        payout: None,
                    },
                );
            }
            E::SaleSettledOnSite { sale, owed, .. } => {
                self.on_site_sales.insert(sale);
                if owed > Money::ZERO {
                    self.credited_total -= owed;
                    self.debits.insert(
                        format!("fee:{sale}"),
                        Debit {
                            kind: DebitKind::FeeOwed,
                            sale: Some(sale),
                            amount: owed,
                            fees: Vec::new(),
                            payout: None,
                        },
                    );
                }
            }
            E::RefundDebited {
                sale,
                refunds_total,
                debit,
                ..
            } => {
                self.refunds_debited.insert(sale, refunds_total);
                if debit > Money::ZERO {
                    self.credited_total -= debit;
                    self.debits.insert(
                        format!("refund:{sale}:{refunds_total}"),
                        Debit {
                            kind: DebitKind::Refund,
                            sale: Some(sale),
                            amount: debit,
                            fees: Vec::new(),
                            payout: None,
                        },
                    );
                }
            }
            E::PeriodBilled {
                key, lines, amount, ..
            } => {
                self.credited_total -= amount;
                self.debits.insert(
                    format!("period:{key}"),
                    Debit {
                        kind: DebitKind::PeriodFee,
                        sale: None,
                        amount,
                        fees: lines,
                        payout: None,
                    },
                );
                self.billed.insert(key);
            }
            E::PayoutStarted { statement, at } => {
                let payout = statement.payout;
                for d in &statement.deductions {
                    if let Some(debit) = self.debits.get_mut(&d.id) {
                        debit.payout = Some(payout);
                    }
                }
                for line in &statement.lines {
                    if let Some(credit) = self.credits.get_mut(&line.sale) {
                        credit.payout = Some(payout);
                    }
                }
                self.used_payouts.insert(payout);
                self.payouts.insert(
                    payout,
                    PayoutRecord {
                        statement,
                        status: PayoutStatus::InFlight,
                        attempts: 1,
                        provider_ref: None,
                        last_failure: None,
                        started_at: Some(at),
                        paid_at: None,
                    },
                );
            }
            E::TransferSucceeded {
                payout,
                amount,
                provider_ref,
                at,
            } => {
                if let Some(record) = self.payouts.get_mut(&payout) {
                    record.status = PayoutStatus::Succeeded;
                    record.provider_ref = Some(provider_ref);
                    record.paid_at = Some(at);
                    for line in &record.statement.lines {
                        self.credits.remove(&line.sale);
                        self.paid_sales.insert(line.sale);
                    }
                    for d in &record.statement.deductions {
                        self.debits.remove(&d.id);
                    }
                }
                self.paid_total += amount;
                self.settle(payout);
            }
            E::TransferFailed { payout, reason, .. } => {
                if let Some(record) = self.payouts.get_mut(&payout) {
                    record.status = PayoutStatus::Failed;
                    record.last_failure = Some(reason);
                }
            }
            E::TransferRetried {
                payout, attempt, ..
            } => {
                if let Some(record) = self.payouts.get_mut(&payout) {
                    record.status = PayoutStatus::InFlight;
                    record.attempts = attempt;
                }
            }
            E::PayoutReturnedToBalance {
                payout,
                sales,
                deductions,
                ..
            } => {
                for d in deductions {
                    if let Some(debit) = self.debits.get_mut(&d.id) {
                        debit.payout = None;
                    }
                }
                if let Some(record) = self.payouts.get_mut(&payout) {
                    record.status = PayoutStatus::Returned;
                }
                for sale in sales {
                    if let Some(credit) = self.credits.get_mut(&sale) {
                        credit.payout = None;
                    }
                }
                self.settle(payout);
            }
            E::PayoutReturnedByBank {
                payout,
                amount,
                deductions,
                at,
                ..
            } => {
                // The paid credits and the debits the payout recovered are open again, as they
                // were in its statement, available at once.
                self.paid_total -= amount;
                for d in deductions {
                    self.debits.insert(
                        d.id.clone(),
                        Debit {
                            kind: d.kind,
                            sale: d.sale,
                            amount: d.amount,
                            fees: d.fees.clone(),
                            payout: None,
                        },
                    );
                }
                if let Some(record) = self.payouts.get_mut(&payout) {
                    record.status = PayoutStatus::Returned;
                    for line in &record.statement.lines {
                        self.paid_sales.remove(&line.sale);
                        self.credits.insert(
                            line.sale,
                            Credit {
                                market: line.market,
                                gross_incl_vat: line.gross_incl_vat,
                                refunds: line.refunds,
                                fees: line.fees.clone(),
                                fee_refunds: line.fee_refunds.clone(),
                                net: line.net,
                                available_on: paris_date(at),
                                credited_at: at,
                                payout: None,
                            },
                        );
                    }
                }
            }
        }
    }
}
