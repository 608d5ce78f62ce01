//! What can be asked of a producer's balance. Times and facts come in the commands.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::fees::{FeeLine, FeeRefund};
use crate::ids::{MarketId, OrderId, SaleId};
use crate::money::Money;

use super::events::PayoutId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProducerBalanceCommand {
    /// Credits the producer's net from a validated sale (R-SAL-6), once per sale. The caller
    /// computes the fee lines (fees engine) and `available_on` ([`super::available_on`]);
    /// `net` must equal `gross_incl_vat - refunds - fees + fee_refunds` incl. VAT (R-PAY-2).
    CreditSale {
        sale: SaleId,
        market: MarketId,
        gross_incl_vat: Money,
        refunds: Money,
        fees: Vec<FeeLine>,
        fee_refunds: Vec<FeeRefund>,
        net: Money,
        available_on: NaiveDate,
        at: DateTime<Utc>,
    },
    /// Records the validated sale of a market paid on site: its service fee lines are owed.
    RecordOnSiteSale {
        sale: SaleId,
        market: MarketId,
        sales_incl_vat: Money,
        fees: Vec<FeeLine>,
        at: DateTime<Utc>,
    },
    /// Debits refunds recorded after the sale was credited; `refunds_total` is the cumulative
    /// late refunds of the sale for this producer (so a second identical command is refused).
    DebitRefunds {
        sale: SaleId,
        market: MarketId,
        order: OrderId,
        refunds_total: Money,
        fee_refunds: Vec<FeeRefund>,
        at: DateTime<Utc>,
    },
    /// Bills a subscription or the per-period fees of a market for one period (R-ACC-3,
    /// R-FEE-5), once per `key`: owed, deducted from the next payouts.
    BillPeriod {
        key: String,
        market: Option<MarketId>,
        period_start: NaiveDate,
        lines: Vec<FeeLine>,
        at: DateTime<Utc>,
    },
    /// Pays every credit available on or before `on` and not yet paid or in flight.
    StartPayout {
        payout: PayoutId,
        on: NaiveDate,
        at: DateTime<Utc>,
    },
    RecordTransferSucceeded {
        payout: PayoutId,
        provider_ref: String,
        at: DateTime<Utc>,
    },
    RecordTransferFailed {
        payout: PayoutId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Sends a failed transfer again.
    RetryTransfer { payout: PayoutId, at: DateTime<Utc> },
    /// Gives up a failed transfer: its credits go back to the balance, to be paid later.
    ReturnToBalance { payout: PayoutId, at: DateTime<Utc> },
    /// R-PAY-5: the bank returned a transfer that had succeeded.
    RecordBankReturn {
        payout: PayoutId,
        reason: String,
        at: DateTime<Utc>,
    },
}
