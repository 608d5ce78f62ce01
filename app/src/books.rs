//! The books (FEC, LPF art. L47 A): the entries of the invoices and credit notes issued in a
//! year, for the platform's own books or for a producer's (what passed through the platform),
//! written by [`crate::fec`]. Every entry's PieceRef is an issued number; entries come in the
//! order the documents were issued, numbered per journal.
//!
//! - Platform: each fee invoice (journal VT) debits the producer's customer account 411 (its
//!   SIREN as auxiliary account) and credits 706 (services) and 44571 (VAT collected); the
//!   fees being deducted from the producer's payouts, an OD entry settles the 411 from 467
//!   (producers' current accounts).
//! - Producer: each sales invoice (VT) debits 411 (the customer: a professional's SIREN, a
//!   consumer's reference) and credits 707 per VAT rate and 44571; a credit note the reverse;
//!   paid or refunded through the platform, an OD entry against 467 (the platform's current
//!   account). The platform's fee invoices to the producer are purchases (AC): 622
//!   (commissions) and 44566 (deductible VAT; none under the VAT franchise) against 467.
//!
//! Payouts to the bank (512) and consumers' sales not invoiced (e-reported, R-INV-6) carry no
//! issued number and are not written here.

use chrono::NaiveDate;
use etal_domain::ids::ProducerId;
use rust_decimal::Decimal;
use sqlx::Row;

use crate::cii::{self, DocumentKind};
use crate::fec::{Entry, EntryLine};
use crate::{App, AppError};

/// Whose books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Books {
    Platform,
    Producer(ProducerId),
}

/// A FEC file.
#[derive(Debug, Clone)]
pub struct FecFile {
    /// `<SIREN>FEC<AAAAMMJJ>.txt`, the closing date of the year.
    pub file_name: String,
    /// ISO 8859-15 bytes.
    pub bytes: Vec<u8>,
    pub entries: usize,
    pub lines: usize,
    pub total_debit: Decimal,
}

/// The payment terms of a document paid when ordered, and of a credit note refunded the same
/// way (as [`crate::invoices`] writes them).
pub(crate) const PAID_TERMS: &str = "Payée à la commande";
pub(crate) const REFUNDED_TERMS: &str = "Remboursé sur le moyen de paiement de la commande";
pub(crate) const DEDUCTED_TERMS: &str = "Prélevé sur les versements du mois (déjà payé)";
/// A credit note of fees: given back on the producer's balance.
pub(crate) const GIVEN_BACK_TERMS: &str = "Rendu sur le solde du producteur (versements suivants)";

fn line(
    account: &str,
    label: &str,
    aux: Option<&(String, String)>,
    debit: Decimal,
    credit: Decimal,
) -> EntryLine {
    EntryLine {
        account: account.into(),
        account_label: label.into(),
        aux: aux.cloned(),
        debit,
        credit,
    }
}

/// `707055` for 5.5 %, `707200` for 20 %, `707000` for none.
fn sales_account(rate: Decimal) -> (String, String) {
    let code = (rate * Decimal::TEN).round().mantissa();
    let pct = rate.normalize().to_string().replace('.', ",");
    if rate.is_zero() {
        ("707000".into(), "Ventes de marchandises".into())
    } else {
        (
            format!("707{code:03}"),
            format!("Ventes de marchandises TVA {pct} %"),
        )
    }
}

struct Doc {
    number: String,
    kind: DocumentKind,
    customer: Option<uuid::Uuid>,
    issuer: uuid::Uuid,
    date: NaiveDate,
    doc: cii::Document,
}

impl App {
    /// R-INV (FEC): the entries of `books` for a calendar year, as a FEC file.
    pub async fn fec(&self, books: Books, year: i32) -> Result<FecFile, AppError> {
        let coded = |code: &'static str, message: String| AppError::Rejected { code, message };
        if !(2000..=9999).contains(&year) {
            return Err(AppError::bad_input("year", "a year from 2000 to 9999"));
        }
        let siren = match books {
            Books::Platform => self
                .settings
                .platform_identity
                .as_ref()
                .map(|p| p.siren.clone())
                .ok_or_else(|| {
                    coded(
                        "PLATFORM_IDENTITY_MISSING",
                        "the platform's legal identity is not configured (ETAL_PLATFORM_*)".into(),
                    )
                })?,
            Books::Producer(p) => self
                .billing_identity(p)
                .await?
                .map(|i| i.siren)
                .ok_or_else(|| {
                    coded(
                        "BILLING_IDENTITY_MISSING",
                        "the producer has no legal identity (setBillingIdentity)".into(),
                    )
                })?,
        };
        let (from, to) = (
            NaiveDate::from_ymd_opt(year, 1, 1).expect("a year"),
            NaiveDate::from_ymd_opt(year, 12, 31).expect("a year"),
        );
        let (issuer, fees_of) = match books {
            Books::Platform => (uuid::Uuid::nil(), None),
            Books::Producer(p) => (p.0, Some(format!("fees:{p}:"))),
        };
        let rows = sqlx::query(
            "SELECT number, kind, customer, issuer, issue_date, document FROM invoice_documents \
             WHERE (issuer = $1 OR ($2::text IS NOT NULL AND issuer = $5 AND starts_with(source, $2))) \
             AND issue_date BETWEEN $3 AND $4 ORDER BY issued_at, number",
        )
        .bind(issuer)
        .bind(&fees_of)
        .bind(from)
        .bind(to)
        .bind(uuid::Uuid::nil())
        .fetch_all(&self.pool)
        .await?;
        let mut docs = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            docs.push(Doc {
                number: r.try_get("number")?,
                kind: if kind == "credit_note" {
                    DocumentKind::CreditNote
                } else {
                    DocumentKind::Invoice
                },
                customer: r.try_get("customer")?,
                issuer: r.try_get("issuer")?,
                date: r.try_get("issue_date")?,
                doc: serde_json::from_value(r.try_get("document")?)
                    .map_err(|e| AppError::Internal(format!("invoice document: {e}")))?,
            });
        }
        let mut entries = Vec::new();
        for d in &docs {
            entries.extend(entries_of(books, d)?);
        }
        let bytes = crate::fec::write(&entries)
            .map_err(|e| AppError::Internal(format!("FEC of {books:?} {year}: {e}")))?;
        let total_debit = entries.iter().flat_map(|e| &e.lines).map(|l| l.debit).sum();
        Ok(FecFile {
            file_name: crate::fec::file_name(&siren, to),
            lines: entries.iter().map(|e| e.lines.len()).sum(),
            entries: entries.len(),
            bytes,
            total_debit,
        })
    }
}

/// The entries one issued document gives `books`.
fn entries_of(books: Books, d: &Doc) -> Result<Vec<Entry>, AppError> {
    let totals =
        cii::totals(&d.doc).map_err(|e| AppError::Internal(format!("{}: {e}", d.number)))?;
    let credit_note = d.kind == DocumentKind::CreditNote;
    let entry = |journal: &str, journal_label: &str, label: String, lines: Vec<EntryLine>| Entry {
        journal: journal.into(),
        journal_label: journal_label.into(),
        date: d.date,
        piece_ref: d.number.clone(),
        piece_date: d.date,
        label,
        valid_date: d.date,
        lines,
    };
    // (debit, credit) of an amount on a document's usual side: a credit note swaps them.
    let side = |amount: Decimal, debit_side: bool| {
        if debit_side != credit_note {
            (amount, Decimal::ZERO)
        } else {
            (Decimal::ZERO, amount)
        }
    };
    let buyer = &d.doc.buyer;
    let kind_label = if credit_note { "Avoir" } else { "Facture" };
    let platform_fees = d.issuer.is_nil();
    let mut out = Vec::new();
    match (books, platform_fees) {
        // The platform's fee invoice, in its books.
        (Books::Platform, _) => {
            let aux = (
                buyer.siren.clone().unwrap_or_else(|| "PRODUCTEUR".into()),
                buyer.name.clone(),
            );
            let (dr, cr) = side(totals.grand_total, true);
            let mut lines = vec![line("411000", "Clients", Some(&aux), dr, cr)];
            for r in &totals.per_rate {
                let (dr, cr) = side(r.base, false);
                lines.push(line("706000", "Prestations de services", None, dr, cr));
                let (dr, cr) = side(r.vat, false);
                lines.push(line("445710", "TVA collectée", None, dr, cr));
            }
            out.push(entry(
                "VT",
                "Ventes",
                format!("{kind_label} {} {}", d.number, aux.1),
                lines,
            ));
            if d.doc.payment_terms == DEDUCTED_TERMS || d.doc.payment_terms == GIVEN_BACK_TERMS {
                let (dr, cr) = side(totals.grand_total, true);
                out.push(entry(
                    "OD",
                    "Opérations diverses",
                    format!("Frais {} prélevés sur les versements", d.number),
                    vec![
                        line(
                            "467000",
                            "Producteurs - comptes courants",
                            Some(&aux),
                            dr,
                            cr,
                        ),
                        line("411000", "Clients", Some(&aux), cr, dr),
                    ],
                ));
            }
        }
        // The platform's fees, bought by the producer.
        (Books::Producer(_), true) => {
            let etal = ("ETAL".to_string(), d.doc.seller.name.clone());
            let franchise = buyer.vat_number.is_none();
            let mut lines = Vec::new();
            for r in &totals.per_rate {
                let charge = if franchise { r.base + r.vat } else { r.base };
                let (dr, cr) = side(charge, true);
                lines.push(line("622000", "Commissions et courtages", None, dr, cr));
                if !franchise {
                    let (dr, cr) = side(r.vat, true);
                    lines.push(line(
                        "445660",
                        "TVA déductible sur autres biens et services",
                        None,
                        dr,
                        cr,
                    ));
                }
            }
            let (dr, cr) = side(totals.grand_total, false);
            lines.push(line("467000", "etal - compte courant", Some(&etal), dr, cr));
            out.push(entry(
                "AC",
                "Achats",
                format!("{kind_label} {} {}", d.number, etal.1),
                lines,
            ));
        }
        // The producer's sales invoice or credit note.
        (Books::Producer(_), false) => {
            let aux = match (&buyer.siren, d.customer) {
                (Some(siren), _) => (siren.clone(), buyer.name.clone()),
                (None, Some(c)) => (
                    format!("C{}", &c.simple().to_string()[..8].to_ascii_uppercase()),
                    buyer.name.clone(),
                ),
                (None, None) => ("CLIENT".into(), buyer.name.clone()),
            };
            let (dr, cr) = side(totals.grand_total, true);
            let mut lines = vec![line("411000", "Clients", Some(&aux), dr, cr)];
            for r in &totals.per_rate {
                let (account, label) = sales_account(r.rate);
                let (dr, cr) = side(r.base, false);
                lines.push(line(&account, &label, None, dr, cr));
                let (dr, cr) = side(r.vat, false);
                lines.push(line("445710", "TVA collectée", None, dr, cr));
            }
            out.push(entry(
                "VT",
                "Ventes",
                format!("{kind_label} {} {}", d.number, aux.1),
                lines,
            ));
            if d.doc.payment_terms == PAID_TERMS || d.doc.payment_terms == REFUNDED_TERMS {
                let (dr, cr) = side(totals.grand_total, true);
                let what = if credit_note {
                    "remboursé"
                } else {
                    "encaissé"
                };
                out.push(entry(
                    "OD",
                    "Opérations diverses",
                    format!("{kind_label} {} {what} par etal", d.number),
                    vec![
                        line("467000", "etal - compte courant", None, dr, cr),
                        line("411000", "Clients", Some(&aux), cr, dr),
                    ],
                ));
            }
        }
    }
    Ok(out)
}

impl App {
    /// Who reads a FEC: the platform's, auditors and platform administrators; a producer's,
    /// its people and auditors.
    pub async fn may_read_books(&self, actor: etal_domain::Actor, books: Books) -> bool {
        use etal_domain::Role;
        match (books, actor.role) {
            (_, Role::Auditor) => true,
            (Books::Platform, Role::PlatformAdmin) => true,
            (Books::Producer(p), Role::Producer) => self.producer_access(actor, p).await.is_ok(),
            _ => false,
        }
    }
}

impl Books {
    /// `platform` or the producer's id, as in the download's path.
    pub fn path_segment(&self) -> String {
        match self {
            Books::Platform => "platform".into(),
            Books::Producer(p) => p.to_string(),
        }
    }

    /// Reads [`Self::path_segment`].
    pub fn parse(s: &str) -> Option<Books> {
        match s {
            "platform" => Some(Books::Platform),
            id => id.parse().ok().map(|u| Books::Producer(ProducerId(u))),
        }
    }
}
