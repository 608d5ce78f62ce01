//! What happened to a producer's balance. Events carry the computed amounts and the statement.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fees::{FeeLine, FeeRefund};
use crate::ids::{MarketId, OrderId, SaleId};
use crate::money::Money;

/// A payout (one bank transfer to a producer, with its statement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PayoutId(pub Uuid);

impl PayoutId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for PayoutId {
    fn default() -> Self {
        Self(Uuid::nil())
    }
}

impl fmt::Display for PayoutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for PayoutId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl From<Uuid> for PayoutId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

/// One sale on a payout statement (R-PAY-2): gross, refunds, each fee line, net.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub sale: SaleId,
    pub market: MarketId,
    pub gross_incl_vat: Money,
    pub refunds: Money,
    pub fees: Vec<FeeLine>,
    /// The fees given back for refunds counted at crediting (R-FEE-4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fee_refunds: Vec<FeeRefund>,
    /// The fee lines minus the fees given back, incl. VAT.
    pub fees_incl_vat: Money,
    /// `gross_incl_vat - refunds - fees_incl_vat`.
    pub net: Money,
    pub available_on: NaiveDate,
}

/// Why a producer owes money back to the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DebitKind {
    /// The service fee of a sale paid on site (R-FEE-2, R-SAL-6): a receivable of the platform.
    FeeOwed,
    /// A refund recorded after the sale was credited, net of the fees given back (R-FEE-4).
    Refund,
    /// A subscription or a per-period fee billed (R-ACC-3, R-FEE-5): a receivable of the
    /// platform, like `FeeOwed`.
    PeriodFee,
}

/// A debit deducted from a payout (listed on its statement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deduction {
    /// `fee:<sale>`, `refund:<sale>:<cumulative refunds>` or `period:<bill key>`.
    pub id: String,
    pub kind: DebitKind,
    /// The sale it comes from (none for a subscription or a period fee).
    pub sale: Option<SaleId>,
    pub amount: Money,
    /// The fee lines of a period fee (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fees: Vec<FeeLine>,
}

/// What a payout pays: every sale in it, and the total transferred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutStatement {
    pub payout: PayoutId,
    /// The payout date (Europe/Paris): credits available on or before it are paid.
    pub on: NaiveDate,
    pub lines: Vec<StatementLine>,
    /// Debits recovered by this payout (fees owed for on-site sales, late refunds).
    #[serde(default)]
    pub deductions: Vec<Deduction>,
    /// `sum(lines.net) - sum(deductions.amount)`, always positive.
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProducerBalanceEvent {
    /// A validated sale's net is credited to the producer's balance.
    SaleCredited {
        sale: SaleId,
        market: MarketId,
        gross_incl_vat: Money,
        refunds: Money,
        /// The fees charged on what was paid (R-FEE-1, R-FEE-2; before the R-FEE-4 change,
        /// on what was kept after refunds).
        fees: Vec<FeeLine>,
        /// The fees given back for `refunds` (R-FEE-4); absent in older events.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fee_refunds: Vec<FeeRefund>,
        /// `gross - refunds - fees + fee_refunds` (incl. VAT).
        net: Money,
        available_on: NaiveDate,
        at: DateTime<Utc>,
    },
    /// A sale of a market paid on site is validated (R-SAL-6, R-FEE-2): the money was settled
    /// outside the platform; the service fee on what the producer's customers were charged is
    /// owed (`owed` = fees incl. VAT), deducted from the next payouts.
    SaleSettledOnSite {
        sale: SaleId,
        market: MarketId,
        sales_incl_vat: Money,
        fees: Vec<FeeLine>,
        owed: Money,
        at: DateTime<Utc>,
    },
    /// Refunds recorded after the sale was credited (R-ORD-5, R-FEE-4). `refunds_total` is the
    /// sale's cumulative late refunds for this producer after this event, `amount` the new part;
    /// `fee_refunds` give back the fees in proportion to `amount` (one per charged line) and
    /// `debit = amount - fee_refunds incl. VAT` is deducted from the next payouts. Older events
    /// recomputed the fee lines on what was kept instead (`fees_before` -> `fees_after`,
    /// `debit = amount - (fees_before - fees_after)`); both forms are read.
    RefundDebited {
        sale: SaleId,
        market: MarketId,
        order: OrderId,
        refunds_total: Money,
        amount: Money,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fees_before: Vec<FeeLine>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fees_after: Vec<FeeLine>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fee_refunds: Vec<FeeRefund>,
        debit: Money,
        at: DateTime<Utc>,
    },
    /// A subscription or the per-period fees of a market are billed for the period starting
    /// `period_start` (R-ACC-3, R-FEE-5): `amount` (the lines incl. VAT) is owed, deducted
    /// from the next payouts. Once per `key`.
    PeriodBilled {
        key: String,
        market: Option<MarketId>,
        period_start: NaiveDate,
        lines: Vec<FeeLine>,
        amount: Money,
        at: DateTime<Utc>,
    },
    /// A transfer of the statement's total is sent; its credits are in flight.
    PayoutStarted {
        statement: PayoutStatement,
        at: DateTime<Utc>,
    },
    /// The bank confirmed the transfer: the credits are paid.
    TransferSucceeded {
        payout: PayoutId,
        amount: Money,
        provider_ref: String,
        at: DateTime<Utc>,
    },
    /// The transfer failed; the money stays in flight until retried or returned.
    TransferFailed {
        payout: PayoutId,
        amount: Money,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The failed transfer is sent again (`attempt` counts from 2).
    TransferRetried {
        payout: PayoutId,
        amount: Money,
        attempt: u32,
        at: DateTime<Utc>,
    },
    /// The failed transfer is abandoned; its credits are back in the balance.
    PayoutReturnedToBalance {
        payout: PayoutId,
        amount: Money,
        sales: Vec<SaleId>,
        /// The debits the payout recovered, owed again.
        #[serde(default)]
        deductions: Vec<Deduction>,
        at: DateTime<Utc>,
    },
    /// R-PAY-5: the bank returned a transfer it had taken (a closed account, a wrong name):
    /// its money is the producer's balance again, paid by a later payout.
    PayoutReturnedByBank {
        payout: PayoutId,
        amount: Money,
        sales: Vec<SaleId>,
        deductions: Vec<Deduction>,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ProducerBalanceEvent {
    fn event_type(&self) -> String {
        match self {
            ProducerBalanceEvent::SaleCredited { .. } => "SaleCredited",
            ProducerBalanceEvent::SaleSettledOnSite { .. } => "SaleSettledOnSite",
            ProducerBalanceEvent::RefundDebited { .. } => "RefundDebited",
            ProducerBalanceEvent::PeriodBilled { .. } => "PeriodBilled",
            ProducerBalanceEvent::PayoutStarted { .. } => "PayoutStarted",
            ProducerBalanceEvent::TransferSucceeded { .. } => "TransferSucceeded",
            ProducerBalanceEvent::TransferFailed { .. } => "TransferFailed",
            ProducerBalanceEvent::TransferRetried { .. } => "TransferRetried",
            ProducerBalanceEvent::PayoutReturnedToBalance { .. } => "PayoutReturnedToBalance",
            ProducerBalanceEvent::PayoutReturnedByBank { .. } => "PayoutReturnedByBank",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
