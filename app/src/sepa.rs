//! SEPA credit transfer files, ISO 20022 `pain.001.001.09` (rule R-PAY-5): the payouts of a
//! run, written as one file for the platform's bank.
//!
//! [`pain_001`] checks everything first (identifiers, amounts, accounts) and refuses the whole
//! batch on the first problem; only then does it write the XML with quick-xml's writer, so
//! every text is escaped by the writer. Names and remittance texts are transliterated to the
//! SEPA restricted Latin set and cut to their field's length ([`to_restricted_latin`]).
//! Addresses, optional in SEPA, are not written.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use quick_xml::escape::partial_escape;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use rust_decimal::Decimal;

use crate::bank_details::{validate_account, BankDetailsError, HolderProblem};

/// The XML namespace of the files written (R-PAY-5).
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";
/// The longest name (`Nm`), in characters: the EPC's SEPA limit (the ISO schema allows 140).
pub const NAME_MAX_CHARS: usize = 70;
/// The longest unstructured remittance text (`Ustrd`, Max140Text), in characters.
pub const REMITTANCE_MAX_CHARS: usize = 140;
/// The longest identifier (`MsgId`, `PmtInfId`, `EndToEndId`: Max35Text), in characters.
pub const ID_MAX_CHARS: usize = 35;

/// The platform's own account, which the transfers are paid from (R-PAY-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debtor {
    /// The account holder's name.
    pub name: String,
    /// Its IBAN, spaces and lower case accepted.
    pub iban: String,
    /// Its bank's BIC, of the IBAN's country.
    pub bic: String,
}

/// One payout to a producer (R-PAY-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The payout's id, given back by the bank: at most 35 characters, or a UUID with dashes
    /// (they are then removed, see [`normalize_end_to_end_id`]).
    pub end_to_end_id: String,
    /// In euros: more than 0, at most 2 decimals, at most 999 999 999.99.
    pub amount: Decimal,
    /// The payee's name, transliterated and cut to 70 characters.
    pub creditor_name: String,
    /// The payee's IBAN.
    pub creditor_iban: String,
    /// The payee's bank's BIC, of the IBAN's country.
    pub creditor_bic: String,
    /// Unstructured remittance text, transliterated and cut to 140 characters; not written if
    /// nothing of it is left.
    pub remittance: String,
}

/// What is wrong with an identifier (R-PAY-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdProblem {
    /// Empty.
    Empty,
    /// Longer than 35 characters.
    TooLong,
    /// Has a character outside `a-z A-Z 0-9 / - ? : ( ) . , ' +` (spaces are refused too).
    ForbiddenCharacter,
    /// Starts or ends with `/`, or contains `//`.
    Slash,
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "it is empty",
            Self::TooLong => "it is longer than 35 characters",
            Self::ForbiddenCharacter => {
                "it may only contain a-z A-Z 0-9 / - ? : ( ) . , ' + (no space)"
            }
            Self::Slash => "it must not start or end with '/' nor contain '//'",
        })
    }
}

/// What is wrong with an amount (R-PAY-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmountProblem {
    /// Zero or negative.
    NotPositive,
    /// More than 2 decimals (cents).
    TooManyDecimals,
    /// More than 999 999 999.99, the largest SEPA transfer.
    TooLarge,
}

impl fmt::Display for AmountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotPositive => "it must be more than 0",
            Self::TooManyDecimals => "it must have at most 2 decimals",
            Self::TooLarge => "it must be at most 999999999.99",
        })
    }
}

/// A refusal to write a transfer file (R-PAY-5); [`SepaError::code`] gives its stable code.
/// A transfer's `index` is its position in the list given, from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SepaError {
    /// There is no transfer to write.
    #[error("a transfer file needs at least one transfer")]
    EmptyBatch,
    /// The message id cannot be written.
    #[error("the message id is invalid: {0}")]
    InvalidMessageId(IdProblem),
    /// The creation time's year is not between 1 and 9999.
    #[error("the creation time must be in the years 1 to 9999")]
    InvalidCreationTime,
    /// The execution date is before the creation date, or after the year 9999.
    #[error("the execution date must be between the creation date and the year 9999")]
    InvalidExecutionDate,
    /// The debtor's (the platform's) bank details are invalid.
    #[error("the debtor's bank details are invalid: {0}")]
    InvalidDebtor(BankDetailsError),
    /// A transfer's end-to-end id cannot be written.
    #[error("the end-to-end id of transfer {index} is invalid: {problem}")]
    InvalidEndToEndId {
        /// The transfer's position.
        index: usize,
        /// What is wrong.
        problem: IdProblem,
    },
    /// Two transfers have the same end-to-end id (once normalised).
    #[error("transfer {index} has the same end-to-end id as an earlier one: {end_to_end_id}")]
    DuplicateEndToEndId {
        /// The position of the second transfer with that id.
        index: usize,
        /// The id, as it would be written.
        end_to_end_id: String,
    },
    /// A transfer's amount cannot be paid.
    #[error("the amount of transfer {index} ({amount}) is invalid: {problem}")]
    InvalidAmount {
        /// The transfer's position.
        index: usize,
        /// The amount given.
        amount: Decimal,
        /// What is wrong.
        problem: AmountProblem,
    },
    /// A transfer's creditor has invalid bank details.
    #[error("the creditor of transfer {index} is invalid: {source}")]
    InvalidCreditor {
        /// The transfer's position.
        index: usize,
        /// What is wrong.
        source: BankDetailsError,
    },
    /// The sum of the amounts does not fit the control sum (18 digits).
    #[error("the sum of the amounts is too large for one file")]
    ControlSumTooLarge,
    /// The XML writer failed (not expected: it writes to memory).
    #[error("the XML could not be written: {0}")]
    Xml(String),
}

impl SepaError {
    /// The stable code of the refusal (R-PAY-5).
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyBatch => "EMPTY_BATCH",
            Self::InvalidMessageId(_) => "INVALID_MESSAGE_ID",
            Self::InvalidCreationTime => "INVALID_CREATION_TIME",
            Self::InvalidExecutionDate => "INVALID_EXECUTION_DATE",
            Self::InvalidDebtor(_) => "INVALID_DEBTOR",
            Self::InvalidEndToEndId { .. } => "INVALID_END_TO_END_ID",
            Self::DuplicateEndToEndId { .. } => "DUPLICATE_END_TO_END_ID",
            Self::InvalidAmount { .. } => "INVALID_AMOUNT",
            Self::InvalidCreditor { .. } => "INVALID_CREDITOR",
            Self::ControlSumTooLarge => "CONTROL_SUM_TOO_LARGE",
            Self::Xml(_) => "XML_WRITE",
        }
    }
}

/// Whether SEPA's restricted Latin set has `c`: `a-z A-Z 0-9 / - ? : ( ) . , ' +` and space
/// (R-PAY-5).
pub fn is_restricted_latin(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/-?:().,'+ ".contains(c)
}

/// Writes `text` in SEPA's restricted Latin set, in at most `max_chars` characters (R-PAY-5).
///
/// Letters are transliterated (`é` → `e`, `œ` → `oe`, `ß` → `ss`, `’` → `'`...) by `deunicode`;
/// every other character left outside the set becomes a space; runs of spaces become one and
/// the result is trimmed, then cut to `max_chars` (and trimmed again). The result may be empty.
pub fn to_restricted_latin(text: &str, max_chars: usize) -> String {
    let ascii = deunicode::deunicode_with_tofu(text, " ");
    let mut out = String::with_capacity(ascii.len());
    let mut space_pending = false;
    for c in ascii.chars() {
        if c == ' ' || !is_restricted_latin(c) {
            space_pending = true;
            continue;
        }
        if space_pending && !out.is_empty() {
            out.push(' ');
        }
        space_pending = false;
        out.push(c);
    }
    // `out` is ASCII: one byte per character.
    out.truncate(max_chars);
    out.truncate(out.trim_end().len());
    out
}

/// The end-to-end id written for a payout id (R-PAY-5): the id itself if it has at most 35
/// characters, else the id without its dashes (a UUID's 36 characters become 32). It must
/// then be an identifier: see [`IdProblem`].
pub fn normalize_end_to_end_id(raw: &str) -> Result<String, IdProblem> {
    let id = if raw.chars().count() > ID_MAX_CHARS {
        raw.replace('-', "")
    } else {
        raw.to_string()
    };
    check_identifier(&id)?;
    Ok(id)
}

/// Checks an identifier (`MsgId`, `PmtInfId`, `EndToEndId`) as the EPC rules want it
/// (R-PAY-5): 1 to 35 characters of the restricted Latin set without space, not starting or
/// ending with `/`, without `//`.
pub fn check_identifier(id: &str) -> Result<(), IdProblem> {
    if id.is_empty() {
        return Err(IdProblem::Empty);
    }
    if id.chars().any(|c| c == ' ' || !is_restricted_latin(c)) {
        return Err(IdProblem::ForbiddenCharacter);
    }
    // From here `id` is ASCII.
    if id.len() > ID_MAX_CHARS {
        return Err(IdProblem::TooLong);
    }
    if id.starts_with('/') || id.ends_with('/') || id.contains("//") {
        return Err(IdProblem::Slash);
    }
    Ok(())
}

/// Checks an amount (R-PAY-5): more than 0, at most 2 decimals, at most 999 999 999.99.
pub fn check_amount(amount: Decimal) -> Result<(), AmountProblem> {
    if amount <= Decimal::ZERO {
        return Err(AmountProblem::NotPositive);
    }
    if amount.normalize().scale() > 2 {
        return Err(AmountProblem::TooManyDecimals);
    }
    if amount > Decimal::new(99_999_999_999, 2) {
        return Err(AmountProblem::TooLarge);
    }
    Ok(())
}

/// Writes a credit transfer file, ISO 20022 `pain.001.001.09`, of `transfers` paid from
/// `debtor`'s account on `execution_date` (R-PAY-5).
///
/// One group header and one payment information block (SEPA service level, charges shared
/// `SLEV`), one `CdtTrfTxInf` per transfer in the order given; the payment information id
/// is the message id. `NbOfTxs` is the number of transfers and `CtrlSum` the exact sum of the
/// amounts, both in the header and in the block. The whole batch is refused, with the first
/// problem found, if anything cannot be written as SEPA wants it.
pub fn pain_001(
    debtor: &Debtor,
    message_id: &str,
    created_at: DateTime<Utc>,
    execution_date: NaiveDate,
    transfers: &[Transfer],
) -> Result<String, SepaError> {
    let batch = check_batch(debtor, message_id, created_at, execution_date, transfers)?;
    write_document(&batch)
}

/// A batch checked and ready to write: every text is final.
struct Batch {
    message_id: String,
    created_at: String,
    execution_date: String,
    debtor_name: String,
    debtor_iban: String,
    debtor_bic: String,
    count: String,
    control_sum: String,
    transactions: Vec<Transaction>,
}

/// A transfer checked and ready to write.
struct Transaction {
    end_to_end_id: String,
    amount: String,
    creditor_name: String,
    creditor_iban: String,
    creditor_bic: String,
    remittance: Option<String>,
}

/// Checks the whole batch and turns it into the texts to write.
fn check_batch(
    debtor: &Debtor,
    message_id: &str,
    created_at: DateTime<Utc>,
    execution_date: NaiveDate,
    transfers: &[Transfer],
) -> Result<Batch, SepaError> {
    if transfers.is_empty() {
        return Err(SepaError::EmptyBatch);
    }
    check_identifier(message_id).map_err(SepaError::InvalidMessageId)?;
    check_dates(created_at, execution_date)?;
    let (debtor_iban, debtor_bic) =
        validate_account(&debtor.iban, &debtor.bic).map_err(SepaError::InvalidDebtor)?;
    let debtor_name = sepa_name(&debtor.name).map_err(SepaError::InvalidDebtor)?;

    let mut seen = HashSet::with_capacity(transfers.len());
    let mut transactions = Vec::with_capacity(transfers.len());
    let mut sum = Decimal::ZERO;
    for (index, transfer) in transfers.iter().enumerate() {
        let transaction = check_transfer(index, transfer)?;
        if !seen.insert(transaction.end_to_end_id.clone()) {
            return Err(SepaError::DuplicateEndToEndId {
                index,
                end_to_end_id: transaction.end_to_end_id,
            });
        }
        sum = sum
            .checked_add(transfer.amount)
            .ok_or(SepaError::ControlSumTooLarge)?;
        transactions.push(transaction);
    }
    // CtrlSum is a DecimalNumber of at most 18 digits: 16 before the decimal point.
    if sum >= Decimal::from(10_000_000_000_000_000_i64) {
        return Err(SepaError::ControlSumTooLarge);
    }

    Ok(Batch {
        message_id: message_id.to_string(),
        created_at: created_at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        execution_date: execution_date.format("%Y-%m-%d").to_string(),
        debtor_name,
        debtor_iban,
        debtor_bic,
        count: transactions.len().to_string(),
        control_sum: two_decimals(sum),
        transactions,
    })
}

/// Checks the creation time and the execution date: years 1 to 9999 (what `xs:date` can
/// carry in 4 digits), execution not before the creation's (UTC) date.
fn check_dates(created_at: DateTime<Utc>, execution_date: NaiveDate) -> Result<(), SepaError> {
    if !(1..=9999).contains(&created_at.year()) {
        return Err(SepaError::InvalidCreationTime);
    }
    if execution_date < created_at.date_naive() || execution_date.year() > 9999 {
        return Err(SepaError::InvalidExecutionDate);
    }
    Ok(())
}

/// Checks one transfer and turns it into the texts to write.
fn check_transfer(index: usize, transfer: &Transfer) -> Result<Transaction, SepaError> {
    let end_to_end_id = normalize_end_to_end_id(&transfer.end_to_end_id)
        .map_err(|problem| SepaError::InvalidEndToEndId { index, problem })?;
    check_amount(transfer.amount).map_err(|problem| SepaError::InvalidAmount {
        index,
        amount: transfer.amount,
        problem,
    })?;
    let creditor = |source| SepaError::InvalidCreditor { index, source };
    let (creditor_iban, creditor_bic) =
        validate_account(&transfer.creditor_iban, &transfer.creditor_bic).map_err(creditor)?;
    let creditor_name = sepa_name(&transfer.creditor_name).map_err(creditor)?;
    let remittance = to_restricted_latin(&transfer.remittance, REMITTANCE_MAX_CHARS);
    Ok(Transaction {
        end_to_end_id,
        amount: two_decimals(transfer.amount),
        creditor_name,
        creditor_iban,
        creditor_bic,
        remittance: (!remittance.is_empty()).then_some(remittance),
    })
}

/// A party's name in the restricted Latin set, cut to 70 characters; refused if nothing of
/// it is left (`Nm` may not be empty).
fn sepa_name(name: &str) -> Result<String, BankDetailsError> {
    let sepa = to_restricted_latin(name, NAME_MAX_CHARS);
    if sepa.is_empty() {
        let problem = if name.trim().is_empty() {
            HolderProblem::Empty
        } else {
            HolderProblem::NotRepresentable
        };
        return Err(BankDetailsError::InvalidHolder(problem));
    }
    Ok(sepa)
}

/// An amount with exactly 2 decimals, e.g. `12.30` (the amount has at most 2 already).
fn two_decimals(amount: Decimal) -> String {
    let mut amount = amount;
    amount.rescale(2);
    amount.to_string()
}

/// Writes the checked batch as a `pain.001.001.09` document.
fn write_document(batch: &Batch) -> Result<String, SepaError> {
    let mut xml = Xml::new();
    xml.declaration()?;
    xml.open_with("Document", ("xmlns", NAMESPACE))?;
    xml.open("CstmrCdtTrfInitn")?;
    write_group_header(&mut xml, batch)?;
    write_payment_information(&mut xml, batch)?;
    xml.close("CstmrCdtTrfInitn")?;
    xml.close("Document")?;
    xml.finish()
}

/// `GrpHdr`: the message id, its time, the number of transfers, their sum, the initiator.
fn write_group_header(xml: &mut Xml, batch: &Batch) -> Result<(), SepaError> {
    xml.open("GrpHdr")?;
    xml.leaf("MsgId", &batch.message_id)?;
    xml.leaf("CreDtTm", &batch.created_at)?;
    xml.leaf("NbOfTxs", &batch.count)?;
    xml.leaf("CtrlSum", &batch.control_sum)?;
    xml.open("InitgPty")?;
    xml.leaf("Nm", &batch.debtor_name)?;
    xml.close("InitgPty")?;
    xml.close("GrpHdr")
}

/// `PmtInf`: the debtor's side, then every transaction.
fn write_payment_information(xml: &mut Xml, batch: &Batch) -> Result<(), SepaError> {
    xml.open("PmtInf")?;
    xml.leaf("PmtInfId", &batch.message_id)?;
    xml.leaf("PmtMtd", "TRF")?;
    xml.leaf("NbOfTxs", &batch.count)?;
    xml.leaf("CtrlSum", &batch.control_sum)?;
    xml.open("PmtTpInf")?;
    xml.open("SvcLvl")?;
    xml.leaf("Cd", "SEPA")?;
    xml.close("SvcLvl")?;
    xml.close("PmtTpInf")?;
    xml.open("ReqdExctnDt")?;
    xml.leaf("Dt", &batch.execution_date)?;
    xml.close("ReqdExctnDt")?;
    xml.open("Dbtr")?;
    xml.leaf("Nm", &batch.debtor_name)?;
    xml.close("Dbtr")?;
    write_account(xml, "DbtrAcct", &batch.debtor_iban)?;
    write_agent(xml, "DbtrAgt", &batch.debtor_bic)?;
    xml.leaf("ChrgBr", "SLEV")?;
    for transaction in &batch.transactions {
        write_transaction(xml, transaction)?;
    }
    xml.close("PmtInf")
}

/// `CdtTrfTxInf`: one transfer.
fn write_transaction(xml: &mut Xml, transaction: &Transaction) -> Result<(), SepaError> {
    xml.open("CdtTrfTxInf")?;
    xml.open("PmtId")?;
    xml.leaf("EndToEndId", &transaction.end_to_end_id)?;
    xml.close("PmtId")?;
    xml.open("Amt")?;
    xml.leaf_with("InstdAmt", ("Ccy", "EUR"), &transaction.amount)?;
    xml.close("Amt")?;
    write_agent(xml, "CdtrAgt", &transaction.creditor_bic)?;
    xml.open("Cdtr")?;
    xml.leaf("Nm", &transaction.creditor_name)?;
    xml.close("Cdtr")?;
    write_account(xml, "CdtrAcct", &transaction.creditor_iban)?;
    if let Some(remittance) = &transaction.remittance {
        xml.open("RmtInf")?;
        xml.leaf("Ustrd", remittance)?;
        xml.close("RmtInf")?;
    }
    xml.close("CdtTrfTxInf")
}

/// An account by its IBAN: `<tag><Id><IBAN>…</IBAN></Id></tag>`.
fn write_account(xml: &mut Xml, tag: &str, iban: &str) -> Result<(), SepaError> {
    xml.open(tag)?;
    xml.open("Id")?;
    xml.leaf("IBAN", iban)?;
    xml.close("Id")?;
    xml.close(tag)
}

/// A bank by its BIC: `<tag><FinInstnId><BICFI>…</BICFI></FinInstnId></tag>`.
fn write_agent(xml: &mut Xml, tag: &str, bic: &str) -> Result<(), SepaError> {
    xml.open(tag)?;
    xml.open("FinInstnId")?;
    xml.leaf("BICFI", bic)?;
    xml.close("FinInstnId")?;
    xml.close(tag)
}

/// A thin layer on quick-xml's writer, indented by 2 spaces, that maps its errors.
struct Xml {
    writer: Writer<Vec<u8>>,
}

impl Xml {
    fn new() -> Self {
        Self {
            writer: Writer::new_with_indent(Vec::new(), b' ', 2),
        }
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), SepaError> {
        self.writer
            .write_event(event)
            .map_err(|e| SepaError::Xml(e.to_string()))
    }

    fn declaration(&mut self) -> Result<(), SepaError> {
        self.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
    }

    fn open(&mut self, tag: &str) -> Result<(), SepaError> {
        self.event(Event::Start(BytesStart::new(tag)))
    }

    fn open_with(&mut self, tag: &str, attribute: (&str, &str)) -> Result<(), SepaError> {
        self.event(Event::Start(
            BytesStart::new(tag).with_attributes([attribute]),
        ))
    }

    fn close(&mut self, tag: &str) -> Result<(), SepaError> {
        self.event(Event::End(BytesEnd::new(tag)))
    }

    /// `<tag>text</tag>`, the text escaped (`<`, `>`, `&`; SEPA texts keep their `'`).
    fn leaf(&mut self, tag: &str, text: &str) -> Result<(), SepaError> {
        self.open(tag)?;
        self.text(text)?;
        self.close(tag)
    }

    fn leaf_with(
        &mut self,
        tag: &str,
        attribute: (&str, &str),
        text: &str,
    ) -> Result<(), SepaError> {
        self.open_with(tag, attribute)?;
        self.text(text)?;
        self.close(tag)
    }

    fn text(&mut self, text: &str) -> Result<(), SepaError> {
        self.event(Event::Text(BytesText::from_escaped(partial_escape(text))))
    }

    fn finish(self) -> Result<String, SepaError> {
        let mut bytes = self.writer.into_inner();
        bytes.push(b'\n');
        String::from_utf8(bytes).map_err(|e| SepaError::Xml(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quick_xml::events::Event as ReadEvent;
    use quick_xml::{Reader, XmlVersion};

    const DEBTOR_IBAN: &str = "FR7630006000011234567890189";
    const CREDITOR_IBAN: &str = "FR1420041010050500013M02606";

    fn debtor() -> Debtor {
        Debtor {
            name: "Étal SAS".to_string(),
            iban: DEBTOR_IBAN.to_string(),
            bic: "AGRIFRPP".to_string(),
        }
    }

    fn transfer(id: &str, amount: Decimal) -> Transfer {
        Transfer {
            end_to_end_id: id.to_string(),
            amount,
            creditor_name: "Ferme de l'Étang — Léa & Zoé".to_string(),
            creditor_iban: CREDITOR_IBAN.to_string(),
            creditor_bic: "PSSTFRPPPAR".to_string(),
            remittance: "Ventes du marché de Céret, semaine 12".to_string(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("test date")
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    fn write(transfers: &[Transfer]) -> Result<String, SepaError> {
        pain_001(
            &debtor(),
            "ETAL-2025-03-14-1",
            at("2025-03-14T09:30:00Z"),
            date("2025-03-17"),
            transfers,
        )
    }

    /// Every `(path, text)` of the document's text elements, the path from the root
    /// (`Document/CstmrCdtTrfInitn/GrpHdr/MsgId`), plus `(path@attr, value)` of attributes.
    fn leaves(xml: &str) -> Vec<(String, String)> {
        let mut reader = Reader::from_str(xml);
        let mut path: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut out = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                ReadEvent::Start(e) => {
                    path.push(e.local_name().as_ref().to_string());
                    for attribute in e.attributes() {
                        let attribute = attribute.expect("attribute");
                        let value = attribute
                            .normalized_value(XmlVersion::Implicit1_0)
                            .expect("value")
                            .into_owned();
                        let key = attribute.key.local_name().as_ref().to_string();
                        out.push((format!("{}@{key}", path.join("/")), value));
                    }
                    text.clear();
                }
                ReadEvent::Text(t) => text.push_str(&t.xml10_content()),
                ReadEvent::End(_) => {
                    if !text.trim().is_empty() {
                        out.push((path.join("/"), std::mem::take(&mut text)));
                    }
                    text.clear();
                    path.pop();
                }
                ReadEvent::Eof => break,
                _ => {}
            }
        }
        out
    }

    fn values(leaves: &[(String, String)], suffix: &str) -> Vec<String> {
        leaves
            .iter()
            .filter(|(path, _)| path.ends_with(suffix))
            .map(|(_, value)| value.clone())
            .collect()
    }

    #[test]
    fn transliterates_french_names() {
        assert_eq!(
            to_restricted_latin("Ferme de l'Étang — Léa & Zoé", NAME_MAX_CHARS),
            "Ferme de l'Etang -- Lea Zoe"
        );
        assert_eq!(
            to_restricted_latin("Œufs de la Forêt, Çà et là", 70),
            "OEufs de la Foret, Ca et la"
        );
        assert_eq!(to_restricted_latin("Straße Øster", 70), "Strasse Oster");
        assert_eq!(to_restricted_latin("L’Aïeule « bio »", 70), "L'Aieule bio");
        assert_eq!(to_restricted_latin("a_b@c#d\te\n\u{0}f", 70), "a b c d e f");
        assert_eq!(to_restricted_latin("  &&  ", 70), "");
        assert_eq!(to_restricted_latin("", 70), "");
    }

    #[test]
    fn truncates_to_the_field_length() {
        let long = "é".repeat(200);
        assert_eq!(to_restricted_latin(&long, 70), "e".repeat(70));
        assert_eq!(to_restricted_latin(&long, REMITTANCE_MAX_CHARS).len(), 140);
        // No trailing space after a cut between two words.
        assert_eq!(to_restricted_latin("abc def", 4), "abc");
        // A letter that transliterates to several counts for each of them.
        assert_eq!(to_restricted_latin("œœœ", 5), "oeoeo");
    }

    #[test]
    fn every_transliterated_character_is_allowed() {
        let text = "àâäéèêëïîôöùûüÿçœæÀÂÄÉÈÊËÏÎÔÖÙÛÜŸÇŒÆ€$%*\"<>[]{}|~^`=!;#№ñ漢字🙂";
        let sepa = to_restricted_latin(text, 1000);
        assert!(sepa.chars().all(is_restricted_latin), "{sepa}");
        assert!(!sepa.is_empty());
    }

    #[test]
    fn checks_identifiers() {
        assert_eq!(check_identifier("ETAL-2025/03:1"), Ok(()));
        assert_eq!(check_identifier(""), Err(IdProblem::Empty));
        assert_eq!(check_identifier(&"a".repeat(36)), Err(IdProblem::TooLong));
        assert_eq!(check_identifier("a b"), Err(IdProblem::ForbiddenCharacter));
        assert_eq!(check_identifier("é"), Err(IdProblem::ForbiddenCharacter));
        assert_eq!(check_identifier("a&b"), Err(IdProblem::ForbiddenCharacter));
        assert_eq!(check_identifier("/ab"), Err(IdProblem::Slash));
        assert_eq!(check_identifier("ab/"), Err(IdProblem::Slash));
        assert_eq!(check_identifier("a//b"), Err(IdProblem::Slash));
    }

    #[test]
    fn a_uuid_loses_its_dashes_only_when_too_long() {
        assert_eq!(
            normalize_end_to_end_id("0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            Ok("0195a1b2c3d47e5f8a9b0c1d2e3f4a5b".to_string())
        );
        assert_eq!(
            normalize_end_to_end_id("PAYOUT-42"),
            Ok("PAYOUT-42".to_string())
        );
        assert_eq!(
            normalize_end_to_end_id(&"x".repeat(36)),
            Err(IdProblem::TooLong)
        );
    }

    #[test]
    fn checks_amounts() {
        assert_eq!(check_amount(Decimal::new(1, 2)), Ok(()));
        assert_eq!(
            check_amount(Decimal::new(12300, 3)),
            Ok(()),
            "12.300 is 12.30"
        );
        assert_eq!(check_amount(Decimal::new(99_999_999_999, 2)), Ok(()));
        assert_eq!(check_amount(Decimal::ZERO), Err(AmountProblem::NotPositive));
        assert_eq!(
            check_amount(Decimal::new(-1, 2)),
            Err(AmountProblem::NotPositive)
        );
        assert_eq!(
            check_amount(Decimal::new(1, 3)),
            Err(AmountProblem::TooManyDecimals)
        );
        assert_eq!(
            check_amount(Decimal::new(100_000_000_000, 2)),
            Err(AmountProblem::TooLarge)
        );
    }

    #[test]
    fn writes_the_expected_document() {
        let xml = write(&[
            transfer(
                "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                Decimal::new(1230, 2),
            ),
            Transfer {
                remittance: String::new(),
                ..transfer("P2", Decimal::new(123456, 2))
            },
        ])
        .expect("a valid batch");
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(xml.contains(&format!("<Document xmlns=\"{NAMESPACE}\">")));
        let doc = "Document/CstmrCdtTrfInitn";
        let pmt = "Document/CstmrCdtTrfInitn/PmtInf";
        let tx = "Document/CstmrCdtTrfInitn/PmtInf/CdtTrfTxInf";
        let s = |v: &str| v.to_string();
        let expected: Vec<(String, String)> = vec![
            (s("Document@xmlns"), s(NAMESPACE)),
            (format!("{doc}/GrpHdr/MsgId"), s("ETAL-2025-03-14-1")),
            (
                format!("{doc}/GrpHdr/CreDtTm"),
                s("2025-03-14T09:30:00+00:00"),
            ),
            (format!("{doc}/GrpHdr/NbOfTxs"), s("2")),
            (format!("{doc}/GrpHdr/CtrlSum"), s("1246.86")),
            (format!("{doc}/GrpHdr/InitgPty/Nm"), s("Etal SAS")),
            (format!("{pmt}/PmtInfId"), s("ETAL-2025-03-14-1")),
            (format!("{pmt}/PmtMtd"), s("TRF")),
            (format!("{pmt}/NbOfTxs"), s("2")),
            (format!("{pmt}/CtrlSum"), s("1246.86")),
            (format!("{pmt}/PmtTpInf/SvcLvl/Cd"), s("SEPA")),
            (format!("{pmt}/ReqdExctnDt/Dt"), s("2025-03-17")),
            (format!("{pmt}/Dbtr/Nm"), s("Etal SAS")),
            (format!("{pmt}/DbtrAcct/Id/IBAN"), s(DEBTOR_IBAN)),
            (format!("{pmt}/DbtrAgt/FinInstnId/BICFI"), s("AGRIFRPP")),
            (format!("{pmt}/ChrgBr"), s("SLEV")),
            (
                format!("{tx}/PmtId/EndToEndId"),
                s("0195a1b2c3d47e5f8a9b0c1d2e3f4a5b"),
            ),
            (format!("{tx}/Amt/InstdAmt@Ccy"), s("EUR")),
            (format!("{tx}/Amt/InstdAmt"), s("12.30")),
            (format!("{tx}/CdtrAgt/FinInstnId/BICFI"), s("PSSTFRPPPAR")),
            (format!("{tx}/Cdtr/Nm"), s("Ferme de l'Etang -- Lea Zoe")),
            (format!("{tx}/CdtrAcct/Id/IBAN"), s(CREDITOR_IBAN)),
            (
                format!("{tx}/RmtInf/Ustrd"),
                s("Ventes du marche de Ceret, semaine 12"),
            ),
            (format!("{tx}/PmtId/EndToEndId"), s("P2")),
            (format!("{tx}/Amt/InstdAmt@Ccy"), s("EUR")),
            (format!("{tx}/Amt/InstdAmt"), s("1234.56")),
            (format!("{tx}/CdtrAgt/FinInstnId/BICFI"), s("PSSTFRPPPAR")),
            (format!("{tx}/Cdtr/Nm"), s("Ferme de l'Etang -- Lea Zoe")),
            (format!("{tx}/CdtrAcct/Id/IBAN"), s(CREDITOR_IBAN)),
        ];
        assert_eq!(leaves(&xml), expected);
        // The apostrophe is written as is, not as an entity.
        assert!(xml.contains("<Nm>Ferme de l'Etang -- Lea Zoe</Nm>"));
    }

    #[test]
    fn normalises_typed_accounts() {
        let xml = write(&[Transfer {
            creditor_iban: "fr14 2004 1010 0505 0001 3m02 606".to_string(),
            creditor_bic: "psst fr pp par".to_string(),
            ..transfer("P1", Decimal::ONE)
        }])
        .expect("a valid batch");
        let leaves = leaves(&xml);
        assert_eq!(values(&leaves, "CdtrAcct/Id/IBAN"), [CREDITOR_IBAN]);
        assert_eq!(values(&leaves, "CdtrAgt/FinInstnId/BICFI"), ["PSSTFRPPPAR"]);
        assert_eq!(values(&leaves, "InstdAmt"), ["1.00"]);
    }

    #[test]
    fn refuses_an_empty_batch() {
        let err = write(&[]).unwrap_err();
        assert_eq!(err, SepaError::EmptyBatch);
        assert_eq!(err.code(), "EMPTY_BATCH");
    }

    #[test]
    fn refuses_bad_amounts_with_their_position() {
        let cases = [
            (Decimal::ZERO, AmountProblem::NotPositive),
            (Decimal::new(-500, 2), AmountProblem::NotPositive),
            (Decimal::new(12345, 3), AmountProblem::TooManyDecimals),
            (Decimal::new(100_000_000_000, 2), AmountProblem::TooLarge),
        ];
        for (amount, problem) in cases {
            let err = write(&[transfer("P1", Decimal::ONE), transfer("P2", amount)]).unwrap_err();
            assert_eq!(
                err,
                SepaError::InvalidAmount {
                    index: 1,
                    amount,
                    problem
                }
            );
            assert_eq!(err.code(), "INVALID_AMOUNT");
            assert!(err.to_string().contains("transfer 1"), "{err}");
        }
    }

    #[test]
    fn refuses_duplicate_end_to_end_ids() {
        let err = write(&[
            transfer("0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Decimal::ONE),
            transfer("0195a1b2c3d47e5f8a9b0c1d2e3f4a5b", Decimal::ONE),
        ])
        .unwrap_err();
        assert_eq!(err.code(), "DUPLICATE_END_TO_END_ID");
    }

    #[test]
    fn refuses_bad_identifiers() {
        let err = write(&[transfer("P 1", Decimal::ONE)]).unwrap_err();
        assert_eq!(
            err,
            SepaError::InvalidEndToEndId {
                index: 0,
                problem: IdProblem::ForbiddenCharacter
            }
        );
        let err = pain_001(
            &debtor(),
            &"M".repeat(36),
            at("2025-03-14T09:30:00Z"),
            date("2025-03-17"),
            &[transfer("P1", Decimal::ONE)],
        )
        .unwrap_err();
        assert_eq!(err, SepaError::InvalidMessageId(IdProblem::TooLong));
        assert_eq!(err.code(), "INVALID_MESSAGE_ID");
    }

    #[test]
    fn refuses_bad_creditors_and_debtors() {
        let bad_iban = Transfer {
            creditor_iban: "FR1420041010050500013M02607".to_string(),
            ..transfer("P1", Decimal::ONE)
        };
        let err = write(&[bad_iban]).unwrap_err();
        assert_eq!(err.code(), "INVALID_CREDITOR");
        assert!(matches!(
            err,
            SepaError::InvalidCreditor {
                index: 0,
                source: BankDetailsError::InvalidIban(_)
            }
        ));

        let wrong_country = Transfer {
            creditor_bic: "COBADEFF".to_string(),
            ..transfer("P1", Decimal::ONE)
        };
        let err = write(&[wrong_country]).unwrap_err();
        assert!(matches!(
            err,
            SepaError::InvalidCreditor {
                source: BankDetailsError::BicCountryMismatch { .. },
                ..
            }
        ));

        let nameless = Transfer {
            creditor_name: " — ".to_string(),
            ..transfer("P1", Decimal::ONE)
        };
        // "—" transliterates to "--", which SEPA allows.
        assert!(write(&[nameless]).is_ok());
        let nameless = Transfer {
            creditor_name: " & ".to_string(),
            ..transfer("P1", Decimal::ONE)
        };
        let err = write(&[nameless]).unwrap_err();
        assert!(matches!(
            err,
            SepaError::InvalidCreditor {
                source: BankDetailsError::InvalidHolder(_),
                ..
            }
        ));

        let bad_debtor = Debtor {
            bic: "AGRIFRP".to_string(),
            ..debtor()
        };
        let err = pain_001(
            &bad_debtor,
            "M1",
            at("2025-03-14T09:30:00Z"),
            date("2025-03-17"),
            &[transfer("P1", Decimal::ONE)],
        )
        .unwrap_err();
        assert_eq!(err.code(), "INVALID_DEBTOR");
        assert!(err.to_string().contains("BIC is invalid"), "{err}");
    }

    #[test]
    fn refuses_an_execution_date_in_the_past() {
        let run = |created: &str, execution: &str| {
            pain_001(
                &debtor(),
                "M1",
                at(created),
                date(execution),
                &[transfer("P1", Decimal::ONE)],
            )
        };
        assert!(run("2025-03-14T23:59:59Z", "2025-03-14").is_ok());
        assert_eq!(
            run("2025-03-14T00:00:00Z", "2025-03-13").unwrap_err(),
            SepaError::InvalidExecutionDate
        );
        assert_eq!(
            run("2025-03-14T00:00:00Z", "+10000-01-01").unwrap_err(),
            SepaError::InvalidExecutionDate
        );
    }

    #[test]
    fn truncates_long_names_and_remittances() {
        let xml = write(&[Transfer {
            creditor_name: "Groupement agricole d'exploitation en commun des Vergers de l'Abbaye"
                .repeat(2),
            remittance: "Règlement des ventes ".repeat(10),
            ..transfer("P1", Decimal::ONE)
        }])
        .expect("a valid batch");
        let leaves = leaves(&xml);
        let name = &values(&leaves, "Cdtr/Nm")[0];
        let remittance = &values(&leaves, "Ustrd")[0];
        assert!(
            name.len() <= 70 && name.starts_with("Groupement agricole"),
            "{name}"
        );
        assert!(remittance.len() <= 140 && remittance.starts_with("Reglement des ventes"));
    }

    /// Sums `cents` and writes a batch of one transfer per amount, with UUID-like ids made
    /// unique by their position.
    fn random_batch(amounts: &[(i64, u128)]) -> (Vec<Transfer>, Decimal, Vec<String>) {
        let mut transfers = Vec::new();
        let mut ids = Vec::new();
        let mut sum = Decimal::ZERO;
        for (index, (cents, bits)) in amounts.iter().enumerate() {
            let hex = format!("{:08x}{:024x}", index, bits & ((1u128 << 96) - 1));
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            let amount = Decimal::new(*cents, 2);
            sum += amount;
            ids.push(hex);
            transfers.push(transfer(&uuid, amount));
        }
        (transfers, sum, ids)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// R-PAY-5: the counts and sums are right and every id comes back, in order.
        #[test]
        fn counts_and_sums_are_exact(
            amounts in prop::collection::vec((1i64..=99_999_999_999, any::<u128>()), 1..50)
        ) {
            let (transfers, sum, ids) = random_batch(&amounts);
            let xml = write(&transfers).expect("a valid batch");
            let leaves = leaves(&xml);
            let count = transfers.len().to_string();
            prop_assert_eq!(values(&leaves, "GrpHdr/NbOfTxs"), [count.clone()]);
            prop_assert_eq!(values(&leaves, "PmtInf/NbOfTxs"), [count]);
            let ctrl_sums = values(&leaves, "CtrlSum");
            prop_assert_eq!(ctrl_sums.len(), 2);
            for ctrl_sum in &ctrl_sums {
                let parsed: Decimal = ctrl_sum.parse().expect("a decimal");
                prop_assert_eq!(parsed, sum);
                prop_assert_eq!(parsed.scale(), 2);
            }
            let written: Decimal = values(&leaves, "InstdAmt")
                .iter()
                .map(|a| a.parse::<Decimal>().expect("a decimal"))
                .sum();
            prop_assert_eq!(written, sum);
            prop_assert_eq!(values(&leaves, "EndToEndId"), ids);
        }

        /// R-PAY-5: whatever the text, the transliteration keeps to the set and the length.
        #[test]
        fn transliteration_keeps_to_the_set(text in "\\PC{0,300}", max in 0usize..200) {
            let sepa = to_restricted_latin(&text, max);
            prop_assert!(sepa.chars().count() <= max);
            prop_assert!(sepa.chars().all(is_restricted_latin));
            prop_assert_eq!(sepa.trim(), sepa.as_str());
            prop_assert!(!sepa.contains("  "));
        }
    }
}
