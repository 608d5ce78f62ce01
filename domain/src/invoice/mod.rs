//! Invoice series (R-INV-1, R-INV-2): one aggregate per (issuer, series), so the numbers of a
//! series are decided by its stream's version: issued in an unbroken chronological sequence,
//! assigned only when an invoice is issued (a refused issue takes no number), never reused or
//! renumbered. An issued invoice never changes: a correction is a credit note of the same series
//! that references the invoice's number and date and never credits more than it has left.
//!
//! The document itself (parties, lines, the CII XML) is written by the service beside the event,
//! which keeps its totals and the SHA-256 of the document.

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

use crate::money::Money;

#[cfg(test)]
mod tests;

/// One issued document (an invoice or a credit note).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InvoiceId(pub Uuid);

impl std::fmt::Display for InvoiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// UNTDID 1001: 380 invoice, 381 credit note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Invoice,
    CreditNote,
}

impl DocumentKind {
    pub fn type_code(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "380",
            DocumentKind::CreditNote => "381",
        }
    }
}

/// Totals of a document (positive for a credit note too: its type says it credits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub excl_vat: Money,
    pub vat: Money,
    pub incl_vat: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedInvoice {
    pub number: String,
    pub sequence: u64,
    pub date: NaiveDate,
    pub kind: DocumentKind,
    pub totals: Totals,
    /// What credit notes took back of it (invoices only).
    pub credited: Totals,
    /// The invoice a credit note corrects.
    pub corrects: Option<InvoiceId>,
    pub source: String,
}

/// The series' state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InvoiceSeries {
    prefix: String,
    last: u64,
    last_date: Option<NaiveDate>,
    invoices: BTreeMap<InvoiceId, IssuedInvoice>,
    /// What was invoiced (e.g. `order:<id>:producer:<id>`) -> its invoice.
    sources: BTreeMap<String, InvoiceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InvoiceCommand {
    /// Issues an invoice, or a credit note of `corrects`, numbered next in the series.
    Issue {
        invoice: InvoiceId,
        /// The series' prefix (e.g. `F-` ), fixed by its first document.
        prefix: String,
        kind: DocumentKind,
        corrects: Option<InvoiceId>,
        date: NaiveDate,
        /// What is invoiced: an invoice per source at most.
        source: String,
        totals: Totals,
        digest: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InvoiceEvent {
    InvoiceIssued {
        invoice: InvoiceId,
        sequence: u64,
        number: String,
        kind: DocumentKind,
        date: NaiveDate,
        source: String,
        totals: Totals,
        /// A credit note: the invoice it corrects, its number and date (R-INV-2).
        corrects: Option<(InvoiceId, String, NaiveDate)>,
        /// SHA-256 (hex) of the document as written.
        digest: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for InvoiceEvent {
    fn event_type(&self) -> String {
        match self {
            InvoiceEvent::InvoiceIssued { .. } => "InvoiceIssued".to_string(),
        }
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("an invoice is dated {date}, before the series' last one ({last}): numbers follow the dates")]
    DateBeforeLast { date: NaiveDate, last: NaiveDate },
    #[error("{what} is invoiced already, by {number}")]
    AlreadyInvoiced { what: String, number: String },
    #[error("no invoice {invoice} in this series")]
    UnknownInvoice { invoice: InvoiceId },
    #[error("a credit note corrects an invoice, not a credit note")]
    NotAnInvoice,
    #[error("a credit note of {asked} exceeds what is left of its invoice ({left})")]
    CreditNoteExceedsInvoice { asked: Money, left: Money },
    #[error("a document's amounts are zero or more, with excl. VAT + VAT = incl. VAT")]
    InvalidTotals,
    #[error("a credit note names the invoice it corrects; an invoice names none")]
    CorrectsMismatch,
    #[error("a series' prefix is 1 to 10 letters, digits or '-', and never changes")]
    InvalidPrefix,
}

impl InvoiceError {
    pub fn code(&self) -> &'static str {
        match self {
            InvoiceError::DateBeforeLast { .. } => "INVOICE_DATE_BEFORE_LAST",
            InvoiceError::AlreadyInvoiced { .. } => "ALREADY_INVOICED",
            InvoiceError::UnknownInvoice { .. } => "INVOICE_NOT_FOUND",
            InvoiceError::NotAnInvoice => "NOT_AN_INVOICE",
            InvoiceError::CreditNoteExceedsInvoice { .. } => "CREDIT_NOTE_EXCEEDS_INVOICE",
            InvoiceError::InvalidTotals => "INVALID_INVOICE_TOTALS",
            InvoiceError::CorrectsMismatch => "INVALID_CREDIT_NOTE",
            InvoiceError::InvalidPrefix => "INVALID_INVOICE_SERIES",
        }
    }
}

impl InvoiceSeries {
    /// The number the next document will take.
    pub fn next_number(&self, prefix: &str) -> String {
        format!("{prefix}{:06}", self.last + 1)
    }
    pub fn invoice(&self, id: InvoiceId) -> Option<&IssuedInvoice> {
        self.invoices.get(&id)
    }
    pub fn invoiced(&self, source: &str) -> Option<InvoiceId> {
        self.sources.get(source).copied()
    }
    pub fn issued(&self) -> u64 {
        self.last
    }

    pub fn decide(&self, command: InvoiceCommand) -> Result<Vec<InvoiceEvent>, InvoiceError> {
        let InvoiceCommand::Issue {
            invoice,
            prefix,
            kind,
            corrects,
            date,
            source,
            totals,
            digest,
            at,
        } = command;
        if let Some(existing) = self.invoices.get(&invoice) {
            // The same document again (a retried request): nothing new.
            if existing.source == source && existing.totals == totals && existing.kind == kind {
                return Ok(vec![]);
            }
        }
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 10
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !prefix_ok || (self.last > 0 && prefix != self.prefix) {
            return Err(InvoiceError::InvalidPrefix);
        }
        if totals.excl_vat.is_negative()
            || totals.vat.is_negative()
            || totals.excl_vat + totals.vat != totals.incl_vat
        {
            return Err(InvoiceError::InvalidTotals);
        }
        if let Some(last) = self.last_date {
            if date < last {
                return Err(InvoiceError::DateBeforeLast { date, last });
            }
        }
        let corrected = match (kind, corrects) {
            (DocumentKind::Invoice, None) => {
                if let Some(id) = self.sources.get(&source) {
                    return Err(InvoiceError::AlreadyInvoiced {
                        what: source,
                        number: self.invoices[id].number.clone(),
                    });
                }
                None
            }
            (DocumentKind::CreditNote, Some(of)) => {
                let original = self
                    .invoices
                    .get(&of)
                    .ok_or(InvoiceError::UnknownInvoice { invoice: of })?;
                if original.kind != DocumentKind::Invoice {
                    return Err(InvoiceError::NotAnInvoice);
                }
                let left = original.totals.incl_vat - original.credited.incl_vat;
                if totals.incl_vat > left
                    || totals.excl_vat > original.totals.excl_vat - original.credited.excl_vat
                {
                    return Err(InvoiceError::CreditNoteExceedsInvoice {
                        asked: totals.incl_vat,
                        left,
                    });
                }
                Some((of, original.number.clone(), original.date))
            }
            _ => return Err(InvoiceError::CorrectsMismatch),
        };
        let sequence = self.last + 1;
        Ok(vec![InvoiceEvent::InvoiceIssued {
            invoice,
            sequence,
            number: format!("{prefix}{sequence:06}"),
            kind,
            date,
            source,
            totals,
            corrects: corrected,
            digest,
            at,
        }])
    }
}

impl Aggregate for InvoiceSeries {
    const TYPE: &'static str = "invoice_series";
    type Command = InvoiceCommand;
    type Event = InvoiceEvent;
    type Error = InvoiceError;
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
        let InvoiceEvent::InvoiceIssued {
            invoice,
            sequence,
            number,
            kind,
            date,
            source,
            totals,
            corrects,
            ..
        } = event;
        if self.last == 0 {
            self.prefix = number
                .strip_suffix(&format!("{sequence:06}"))
                .unwrap_or_default()
                .to_string();
        }
        self.last = sequence;
        self.last_date = Some(date);
        if let Some((of, _, _)) = &corrects {
            if let Some(original) = self.invoices.get_mut(of) {
                original.credited.excl_vat += totals.excl_vat;
                original.credited.vat += totals.vat;
                original.credited.incl_vat += totals.incl_vat;
            }
        }
        if kind == DocumentKind::Invoice {
            self.sources.insert(source.clone(), invoice);
        }
        self.invoices.insert(
            invoice,
            IssuedInvoice {
                number,
                sequence,
                date,
                kind,
                totals,
                credited: Totals::default(),
                corrects: corrects.map(|(of, _, _)| of),
                source,
            },
        );
    }
}
