//! Double-entry posting rules for every money movement (design property 9, R-PAY-3).
//!
//! # Chart of accounts
//! The ledger follows customer money from the moment it is paid to the moment it leaves the
//! platform. Balances are `debits - credits`; "credit-normal" accounts have negative balances,
//! reported positive by [`Ledger::credit_balance`].
//!
//! | account | side | meaning |
//! |---|---|---|
//! | `CustomerPayments` | debit | every payment received from customers (cumulative inflow) |
//! | `ProducerPayable(p)` | credit | owed to producer `p`, held by the platform |
//! | `PayoutsInFlight(p)` | credit | owed to `p`, in a transfer not confirmed yet (or failed) |
//! | `PlatformFeeRevenue` | credit | fees excl. VAT earned by the platform |
//! | `HostFeeRevenue(m)` | credit | fees excl. VAT owed to the host of market `m` |
//! | `VatCollectedOnFees` | credit | VAT on fees, owed to the tax office |
//! | `Refunds` | credit | every refund sent back to customers (cumulative outflow) |
//! | `PayoutsSent` | credit | every transfer to producers confirmed by the bank (outflow) |
//!
//! Cash at the payment provider is `CustomerPayments - Refunds - PayoutsSent`. Because every
//! entry is balanced, at any date
//! `payments = refunds + fees (platform + hosts + VAT) + payouts + balances held (payable +
//! in flight)` (R-PAY-3): [`Ledger::conservation`] computes both sides.
//!
//! # Movements
//! * payment received: Dr CustomerPayments / Cr ProducerPayable(p) for each producer's share;
//! * fee charged: Dr ProducerPayable(p) (fees incl. VAT) / Cr PlatformFeeRevenue,
//!   HostFeeRevenue(m) (excl. VAT, by beneficiary) and VatCollectedOnFees;
//! * fee refunded (R-FEE-4): the reverse of a fee charged;
//! * refund paid to a customer: Dr ProducerPayable(p) / Cr Refunds;
//! * payout sent: Dr ProducerPayable(p) / Cr PayoutsInFlight(p);
//! * transfer confirmed: Dr PayoutsInFlight(p) / Cr PayoutsSent;
//! * transfer failed: no movement (the money stays in flight until retried or returned);
//! * payout returned to the balance: Dr PayoutsInFlight(p) / Cr ProducerPayable(p);
//! * fees owed for a sale paid on site: Dr FeesReceivable(p) / Cr revenue, VAT on fees;
//!   recovered by a payout that deducts them: Dr ProducerPayable(p) / Cr FeesReceivable(p)
//!   (reversed if that payout is returned);
//! * refund after the sale was credited: the refund paid (above) and the fee lines recomputed
//!   on what is kept: the reverse of the lines before, then the lines after.
//!
//! With receivables, R-PAY-3 reads `payments + fees receivable = refunds + fees + payouts +
//! held`.
//!
//! Entry ids are deterministic from the source event ([`entry_id`]): posting the same event
//! twice is a no-op, posting a different entry under a used id is refused.

mod entries;
mod error;
mod fold;
mod settlement;
#[cfg(test)]
mod tests;

pub use entries::{
    entry_id, fees_charged, fees_given_back, fees_owed, fees_refunded, payment_received,
    payout_entries, payout_returned, payout_sent, payout_succeeded, refund_paid, Account,
    JournalEntry, Posting,
};
pub use error::LedgerError;
pub use fold::{Conservation, Ledger, TrialBalance};
pub use settlement::{
    balance_entries, fee_key, on_site_fees, order_entries, sale_credits, OrderMoney, OrderMovement,
    ProducerPart, SaleCredit, Shares,
};
