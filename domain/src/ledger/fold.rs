//! The in-memory ledger: a fold of journal entries, with balances as of any date.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Money;

use super::entries::{Account, JournalEntry};
use super::error::LedgerError;

const MAX_ENTRY_ID_CHARS: usize = 200;

/// Every entry posted, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    entries: BTreeMap<String, JournalEntry>,
}

/// Debits and credits of every account as of a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialBalance {
    pub as_of: NaiveDate,
    /// (debits, credits) per account.
    pub accounts: BTreeMap<Account, (Money, Money)>,
    pub total_debits: Money,
    pub total_credits: Money,
}

impl TrialBalance {
    pub fn is_balanced(&self) -> bool {
        self.total_debits == self.total_credits
    }
}

/// Both sides of R-PAY-3 as of a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conservation {
    pub payments: Money,
    pub refunds: Money,
    /// Platform and host fees excl. VAT, plus VAT on fees.
    pub fees: Money,
    pub payouts: Money,
    /// Producer payables plus payouts in flight (negative for a producer who owes).
    pub held: Money,
    /// Fees owed for sales paid on site, not recovered yet (`FeesReceivable`).
    #[serde(default)]
    pub receivables: Money,
}

impl Conservation {
    /// payments + receivables = refunds + fees + payouts + balances held: fees of on-site
    /// sales are earned without a payment, against a receivable until a payout recovers them.
    pub fn holds(&self) -> bool {
        self.payments + self.receivables == self.refunds + self.fees + self.payouts + self.held
    }
}

impl Ledger {
    /// Posts an entry. The same entry twice is a no-op; another entry under a used id, an
    /// unbalanced entry or a negative amount is refused.
    pub fn post(&mut self, entry: JournalEntry) -> Result<(), LedgerError> {
        let n = entry.entry_id.chars().count();
        if n == 0 || n > MAX_ENTRY_ID_CHARS {
            return Err(LedgerError::InvalidEntryId);
        }
        if entry
            .postings
            .iter()
            .any(|p| p.debit.is_negative() || p.credit.is_negative())
        {
            return Err(LedgerError::NegativeAmount {
                entry_id: entry.entry_id,
            });
        }
        if !entry.is_balanced() {
            return Err(LedgerError::Unbalanced {
                entry_id: entry.entry_id,
            });
        }
        match self.entries.get(&entry.entry_id) {
            Some(existing) if existing == &entry => Ok(()),
            Some(_) => Err(LedgerError::ConflictingEntry {
                entry_id: entry.entry_id,
            }),
            None => {
                self.entries.insert(entry.entry_id.clone(), entry);
                Ok(())
            }
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &JournalEntry> {
        self.entries.values()
    }

    fn postings_until(
        &self,
        as_of: NaiveDate,
    ) -> impl Iterator<Item = &super::entries::Posting> + '_ {
        self.entries
            .values()
            .filter(move |e| e.date <= as_of)
            .flat_map(|e| e.postings.iter())
    }

    /// Debits minus credits of an account, for entries dated on or before `as_of`.
    pub fn balance(&self, account: &Account, as_of: NaiveDate) -> Money {
        self.postings_until(as_of)
            .filter(|p| &p.account == account)
            .map(|p| p.debit - p.credit)
            .sum()
    }

    /// Credits minus debits (the positive balance of a credit-normal account).
    pub fn credit_balance(&self, account: &Account, as_of: NaiveDate) -> Money {
        -self.balance(account, as_of)
    }

    pub fn trial_balance(&self, as_of: NaiveDate) -> TrialBalance {
        let mut accounts: BTreeMap<Account, (Money, Money)> = BTreeMap::new();
        for p in self.postings_until(as_of) {
            let entry = accounts.entry(p.account).or_default();
            entry.0 += p.debit;
            entry.1 += p.credit;
        }
        let total_debits = accounts.values().map(|(d, _)| *d).sum();
        let total_credits = accounts.values().map(|(_, c)| *c).sum();
        TrialBalance {
            as_of,
            accounts,
            total_debits,
            total_credits,
        }
    }

    /// R-PAY-3 as of a date: payments received, and where they went.
    pub fn conservation(&self, as_of: NaiveDate) -> Conservation {
        let mut c = Conservation {
            payments: Money::ZERO,
            refunds: Money::ZERO,
            fees: Money::ZERO,
            payouts: Money::ZERO,
            held: Money::ZERO,
            receivables: Money::ZERO,
        };
        for (account, (debits, credits)) in self.trial_balance(as_of).accounts {
            let credit_balance = credits - debits;
            match account {
                Account::CustomerPayments => c.payments += debits - credits,
                Account::Refunds => c.refunds += credit_balance,
                Account::PayoutsSent => c.payouts += credit_balance,
                Account::PlatformFeeRevenue
                | Account::HostFeeRevenue(_)
                | Account::VatCollectedOnFees => c.fees += credit_balance,
                Account::ProducerPayable(_)
                | Account::PayoutsInFlight(_)
                | Account::MarketPayable(_) => c.held += credit_balance,
                Account::FeesReceivable(_) => c.receivables += debits - credits,
            }
        }
        c
    }
}
