//! Why a journal entry was refused.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("entry {entry_id} is not balanced")]
    Unbalanced { entry_id: String },
    #[error("entry {entry_id}: debits and credits must not be negative")]
    NegativeAmount { entry_id: String },
    #[error("entry {entry_id} was already posted with different content")]
    ConflictingEntry { entry_id: String },
    #[error("an entry id needs 1 to 200 characters")]
    InvalidEntryId,
}

impl LedgerError {
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Unbalanced { .. } => "LEDGER_UNBALANCED",
            LedgerError::NegativeAmount { .. } => "LEDGER_NEGATIVE_AMOUNT",
            LedgerError::ConflictingEntry { .. } => "LEDGER_CONFLICTING_ENTRY",
            LedgerError::InvalidEntryId => "LEDGER_INVALID_ENTRY_ID",
        }
    }
}
