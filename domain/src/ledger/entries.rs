//! Accounts, journal entries and the posting rule of each money movement.

use std::fmt::Display;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::calendar::paris_date;
use crate::fees::{Beneficiary, FeeLine, FeeRefund};
use crate::ids::{MarketId, ProducerId};
use crate::money::Money;
use crate::payout::{DebitKind, Deduction, ProducerBalanceEvent};

/// The chart of accounts (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Account {
    CustomerPayments,
    ProducerPayable(ProducerId),
    PayoutsInFlight(ProducerId),
    PlatformFeeRevenue,
    HostFeeRevenue(MarketId),
    VatCollectedOnFees,
    Refunds,
    PayoutsSent,
    /// Debit-normal: fees owed by producer `p` for sales paid on site, not recovered yet.
    FeesReceivable(ProducerId),
    /// What the platform holds for market `m`: the delivery fees it set (R-ORD-6).
    MarketPayable(MarketId),
}

/// One line of an entry: a debit or a credit (the other side zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    pub debit: Money,
    pub credit: Money,
}

impl Posting {
    pub fn debit(account: Account, amount: Money) -> Posting {
        Posting {
            account,
            debit: amount,
            credit: Money::ZERO,
        }
    }

    pub fn credit(account: Account, amount: Money) -> Posting {
        Posting {
            account,
            debit: Money::ZERO,
            credit: amount,
        }
    }
}

/// A balanced set of postings for one money movement, identified from its source event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub entry_id: String,
    /// Business date (Europe/Paris) of the movement.
    pub date: NaiveDate,
    /// When the producer's money concerned becomes available (R-PAY-1), if it applies.
    pub available_on: Option<NaiveDate>,
    pub description: String,
    pub postings: Vec<Posting>,
}

impl JournalEntry {
    fn new(entry_id: String, date: NaiveDate, description: String) -> JournalEntry {
        JournalEntry {
            entry_id,
            date,
            available_on: None,
            description,
            postings: Vec::new(),
        }
    }

    fn push(&mut self, posting: Posting) {
        if !(posting.debit.is_zero() && posting.credit.is_zero()) {
            self.postings.push(posting);
        }
    }

    pub fn total_debits(&self) -> Money {
        self.postings.iter().map(|p| p.debit).sum()
    }

    pub fn total_credits(&self) -> Money {
        self.postings.iter().map(|p| p.credit).sum()
    }

    /// Sum of debits = sum of credits. An entry without postings is balanced.
    pub fn is_balanced(&self) -> bool {
        self.total_debits() == self.total_credits()
    }
}

/// A deterministic entry id from the source event: `"{stream}:{aggregate id}:{sequence}"`,
/// plus `":{part}"` when one event gives several entries (e.g. one per producer).
pub fn entry_id(stream: &str, aggregate_id: impl Display, sequence: u64, part: &str) -> String {
    if part.is_empty() {
        format!("{stream}:{aggregate_id}:{sequence}")
    } else {
        format!("{stream}:{aggregate_id}:{sequence}:{part}")
    }
}

/// A customer payment received (online), owed to the producers by their shares and to the
/// market for a delivery fee it set (R-ORD-6):
/// Dr CustomerPayments / Cr ProducerPayable(p), Cr MarketPayable(m).
pub fn payment_received(
    entry_id: String,
    date: NaiveDate,
    shares: &super::Shares,
    market: MarketId,
) -> JournalEntry {
    let mut e = JournalEntry::new(entry_id, date, "payment received".into());
    e.push(Posting::debit(Account::CustomerPayments, shares.total()));
    for (producer, amount) in &shares.producers {
        e.push(Posting::credit(
            Account::ProducerPayable(*producer),
            *amount,
        ));
    }
    e.push(Posting::credit(
        Account::MarketPayable(market),
        shares.market,
    ));
    e
}

fn revenue_account(beneficiary: Beneficiary, market: MarketId) -> Account {
    match beneficiary {
        Beneficiary::Platform => Account::PlatformFeeRevenue,
        Beneficiary::MarketHost => Account::HostFeeRevenue(market),
    }
}

/// Fees charged to a producer, taken from what the platform owes them (R-FEE-1, R-FEE-2):
/// Dr ProducerPayable(p) incl. VAT / Cr revenue by beneficiary excl. VAT / Cr VAT on fees.
pub fn fees_charged(
    entry_id: String,
    date: NaiveDate,
    available_on: Option<NaiveDate>,
    producer: ProducerId,
    market: MarketId,
    fees: &[FeeLine],
) -> JournalEntry {
    let mut e = fees_posted(
        entry_id,
        date,
        "fees charged",
        Account::ProducerPayable(producer),
        market,
        fees,
    );
    e.available_on = available_on;
    e
}

/// Fees owed for a sale paid on site (R-FEE-2, R-SAL-6): no money passed through the platform,
/// so they are a receivable: Dr FeesReceivable(p) incl. VAT / Cr revenue excl. VAT / Cr VAT.
pub fn fees_owed(
    entry_id: String,
    date: NaiveDate,
    producer: ProducerId,
    market: MarketId,
    fees: &[FeeLine],
) -> JournalEntry {
    let receivable = Account::FeesReceivable(producer);
    let description = "fees owed (sale paid on site)";
    fees_posted(entry_id, date, description, receivable, market, fees)
}

/// A subscription or a per-period fee billed (R-ACC-3, R-FEE-5): a receivable, recovered from
/// the next payouts like the fees of a sale paid on site.
pub fn period_billed(
    entry_id: String,
    date: NaiveDate,
    producer: ProducerId,
    market: MarketId,
    fees: &[FeeLine],
) -> JournalEntry {
    let receivable = Account::FeesReceivable(producer);
    let description = "subscription or period fee billed";
    fees_posted(entry_id, date, description, receivable, market, fees)
}

/// Fee lines cancelled when they are recomputed after a late refund (R-FEE-4): the reverse of
/// [`fees_charged`] for the lines charged before.
pub fn fees_given_back(
    entry_id: String,
    date: NaiveDate,
    producer: ProducerId,
    market: MarketId,
    fees: &[FeeLine],
) -> JournalEntry {
    let charged = fees_posted(
        entry_id,
        date,
        "fees given back",
        Account::ProducerPayable(producer),
        market,
        fees,
    );
    let mut e = JournalEntry::new(charged.entry_id, date, charged.description);
    for p in charged.postings {
        e.push(Posting {
            account: p.account,
            debit: p.credit,
            credit: p.debit,
        });
    }
    e
}

fn fees_posted(
    entry_id: String,
    date: NaiveDate,
    description: &str,
    charged: Account,
    market: MarketId,
    fees: &[FeeLine],
) -> JournalEntry {
    let mut e = JournalEntry::new(entry_id, date, description.into());
    e.push(Posting::debit(
        charged,
        fees.iter().map(|l| l.amount_incl_vat).sum(),
    ));
    for beneficiary in [Beneficiary::Platform, Beneficiary::MarketHost] {
        let amount: Money = fees
            .iter()
            .filter(|l| l.beneficiary == beneficiary)
            .map(|l| l.amount_excl_vat)
            .sum();
        e.push(Posting::credit(
            revenue_account(beneficiary, market),
            amount,
        ));
    }
    e.push(Posting::credit(
        Account::VatCollectedOnFees,
        fees.iter().map(|l| l.vat).sum(),
    ));
    e
}

/// Fees given back with a refund (R-FEE-4): the reverse of [`fees_charged`].
pub fn fees_refunded(
    entry_id: String,
    date: NaiveDate,
    producer: ProducerId,
    market: MarketId,
    refunds: &[FeeRefund],
) -> JournalEntry {
    let mut e = JournalEntry::new(entry_id, date, "fees refunded".into());
    for beneficiary in [Beneficiary::Platform, Beneficiary::MarketHost] {
        let amount: Money = refunds
            .iter()
            .filter(|r| r.beneficiary == beneficiary)
            .map(|r| r.amount_excl_vat)
            .sum();
        e.push(Posting::debit(revenue_account(beneficiary, market), amount));
    }
    e.push(Posting::debit(
        Account::VatCollectedOnFees,
        refunds.iter().map(|r| r.vat).sum(),
    ));
    e.push(Posting::credit(
        Account::ProducerPayable(producer),
        refunds.iter().map(|r| r.amount_incl_vat).sum(),
    ));
    e
}

fn transfer(
    entry_id: String,
    date: NaiveDate,
    description: &str,
    from: Account,
    to: Account,
    amount: Money,
) -> JournalEntry {
    let mut e = JournalEntry::new(entry_id, date, description.into());
    e.push(Posting::debit(from, amount));
    e.push(Posting::credit(to, amount));
    e
}

/// A refund sent back to a customer from a producer's share (R-ORD-4, R-ORD-5):
/// Dr ProducerPayable(p) (or MarketPayable(m) for its delivery fee) / Cr Refunds.
pub fn refund_paid(
    entry_id: String,
    date: NaiveDate,
    from: Account,
    amount: Money,
) -> JournalEntry {
    transfer(
        entry_id,
        date,
        "refund paid",
        from,
        Account::Refunds,
        amount,
    )
}

/// A payout transfer sent (R-PAY-2): Dr ProducerPayable(p) / Cr PayoutsInFlight(p).
pub fn payout_sent(
    entry_id: String,
    date: NaiveDate,
    producer: ProducerId,
    amount: Money,
) -> JournalEntry {
    transfer(
        entry_id,
        date,
        "payout sent",
        Account::ProducerPayable(producer),
        Account::PayoutsInFlight(producer),
        amount,
    )
}

/// A payout transfer confirmed by the bank: Dr PayoutsInFlight(p) / Cr PayoutsSent.
pub fn payout_succeeded(
    entry_id: String,
    date: NaiveDate,
    producer: ProducerId,
    amount: Money,
) -> JournalEntry {
    transfer(
        entry_id,
        date,
        "payout confirmed",
        Account::PayoutsInFlight(producer),
        Account::PayoutsSent,
        amount,
    )
}

/// A failed payout returned to the producer's balance: Dr PayoutsInFlight(p) /
/// Cr ProducerPayable(p).
pub fn payout_returned(
    entry_id: String,
    date: NaiveDate,
    producer: ProducerId,
    amount: Money,
) -> JournalEntry {
    transfer(
        entry_id,
        date,
        "payout returned to balance",
        Account::PayoutsInFlight(producer),
        Account::ProducerPayable(producer),
        amount,
    )
}

/// The entries of a producer balance event (stream "producer_balance", id = producer,
/// `sequence` = the event's sequence): payouts sent, confirmed and returned. A credited sale
/// and a failed or retried transfer move no money (the sale's payment, fees and refunds are
/// posted from the order's events).
pub fn payout_entries(
    producer: ProducerId,
    sequence: u64,
    event: &ProducerBalanceEvent,
) -> Vec<JournalEntry> {
    use ProducerBalanceEvent as E;
    let id = entry_id("producer_balance", producer, sequence, "");
    let recovered_id = entry_id("producer_balance", producer, sequence, "recovered");
    let fees_recovered = |deductions: &[Deduction]| -> Money {
        deductions
            .iter()
            .filter(|d| matches!(d.kind, DebitKind::FeeOwed | DebitKind::PeriodFee))
            .map(|d| d.amount)
            .sum()
    };
    match event {
        E::PayoutStarted { statement, at } => {
            let date = paris_date(*at);
            let mut entries = Vec::new();
            // Fees owed for on-site sales, recovered from the producer's payable.
            let recovered = fees_recovered(&statement.deductions);
            if !recovered.is_zero() {
                entries.push(transfer(
                    recovered_id,
                    date,
                    "fees owed recovered from a payout",
                    Account::ProducerPayable(producer),
                    Account::FeesReceivable(producer),
                    recovered,
                ));
            }
            let mut e = payout_sent(id, date, producer, statement.total);
            e.available_on = Some(statement.on);
            entries.push(e);
            entries
        }
        E::TransferSucceeded { amount, at, .. } => {
            vec![payout_succeeded(id, paris_date(*at), producer, *amount)]
        }
        // A payout's money back in the balance: from in flight (a failed transfer given up)
        // or from sent (the bank returned it, R-PAY-5); the debits it recovered owed again.
        E::PayoutReturnedToBalance {
            amount,
            at,
            deductions,
            ..
        }
        | E::PayoutReturnedByBank {
            amount,
            at,
            deductions,
            ..
        } => {
            let date = paris_date(*at);
            let by_bank = matches!(event, E::PayoutReturnedByBank { .. });
            let mut entries = vec![if by_bank {
                transfer(
                    id,
                    date,
                    "payout returned by the bank",
                    Account::PayoutsSent,
                    Account::ProducerPayable(producer),
                    *amount,
                )
            } else {
                payout_returned(id, date, producer, *amount)
            }];
            let recovered = fees_recovered(deductions);
            if !recovered.is_zero() {
                entries.push(transfer(
                    recovered_id,
                    date,
                    if by_bank {
                        "fees owed again (payout returned by the bank)"
                    } else {
                        "fees owed again (payout returned)"
                    },
                    Account::FeesReceivable(producer),
                    Account::ProducerPayable(producer),
                    recovered,
                ));
            }
            entries
        }
        E::SaleCredited { .. }
        | E::SaleSettledOnSite { .. }
        | E::RefundDebited { .. }
        | E::PeriodBilled { .. }
        | E::TransferFailed { .. }
        | E::TransferRetried { .. } => vec![],
    }
}
