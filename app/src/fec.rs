//! FEC (Fichier des Écritures Comptables) export, LPF art. A47 A-1.
//!
//! Flat text file: a header line with the 18 field names, one record per
//! entry line, tab separated, CRLF after every line (the last one included),
//! dates `AAAAMMJJ`, amounts `1234,50`, encoded in ISO 8859-15.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use encoding_rs::{EncoderResult, ISO_8859_15};
use rust_decimal::{Decimal, RoundingStrategy};

/// The 18 field names, in the mandatory order.
#[rustfmt::skip]
const FIELDS: [&str; 18] = [
    "JournalCode", "JournalLib", "EcritureNum", "EcritureDate", "CompteNum", "CompteLib",
    "CompAuxNum", "CompAuxLib", "PieceRef", "PieceDate", "EcritureLib", "Debit", "Credit",
    "EcritureLet", "DateLet", "ValidDate", "Montantdevise", "Idevise",
];

/// One line of an accounting entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryLine {
    /// CompteNum: 3 leading ASCII digits, ASCII alphanumeric, at most 40 chars.
    pub account: String,
    /// CompteLib.
    pub account_label: String,
    /// (CompAuxNum, CompAuxLib), if the line has an auxiliary account.
    pub aux: Option<(String, String)>,
    /// Debit, >= 0; rounded to the cent half away from zero.
    pub debit: Decimal,
    /// Credit, >= 0; rounded to the cent half away from zero.
    pub credit: Decimal,
}

/// A balanced accounting entry (écriture) of a journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub journal: String,
    pub journal_label: String,
    pub date: NaiveDate,
    pub piece_ref: String,
    pub piece_date: NaiveDate,
    pub label: String,
    pub valid_date: NaiveDate,
    pub lines: Vec<EntryLine>,
}

/// Why a FEC could not be written, parsed or checked.
#[derive(Debug, thiserror::Error)]
pub enum FecError {
    #[error("entry {piece_ref} is unbalanced: debit {debit}, credit {credit}")]
    Unbalanced {
        piece_ref: String,
        debit: Decimal,
        credit: Decimal,
    },
    #[error("bad account number {0:?}")]
    BadAccount(String),
    #[error("negative amount in entry {0}")]
    NegativeAmount(String),
    #[error("entry {0} has fewer than two non-zero lines")]
    EmptyEntry(String),
    #[error("character not representable in ISO 8859-15: {0}")]
    Unmappable(String),
    #[error("line {line}: {message}")]
    Parse { line: usize, message: String },
}

impl FecError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unbalanced { .. } => "FEC_UNBALANCED",
            Self::BadAccount(_) => "FEC_BAD_ACCOUNT",
            Self::NegativeAmount(_) => "FEC_NEGATIVE_AMOUNT",
            Self::EmptyEntry(_) => "FEC_EMPTY_ENTRY",
            Self::Unmappable(_) => "FEC_UNMAPPABLE",
            Self::Parse { .. } => "FEC_PARSE",
        }
    }
}

/// One record (line) of a FEC file, as written or parsed back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub journal: String,
    pub journal_label: String,
    /// EcritureNum.
    pub number: u64,
    pub date: NaiveDate,
    pub account: String,
    pub account_label: String,
    /// CompAuxNum, empty if none.
    pub aux: String,
    /// CompAuxLib, empty if none.
    pub aux_label: String,
    pub piece_ref: String,
    pub piece_date: NaiveDate,
    pub label: String,
    pub debit: Decimal,
    pub credit: Decimal,
    pub valid_date: NaiveDate,
}

/// `<SIREN>FEC<AAAAMMJJ>.txt`, `closing` being the fiscal year closing date.
pub fn file_name(siren: &str, closing: NaiveDate) -> String {
    format!("{siren}FEC{}.txt", closing.format("%Y%m%d"))
}

/// Writes `entries`, in the given (validation) order, as an ISO 8859-15 FEC.
///
/// EcritureNum is continuous per journal from 1. Lines whose debit and credit
/// both round to zero are skipped. The result is also run through [`check`],
/// so ValidDate must not decrease within a journal.
pub fn write(entries: &[Entry]) -> Result<Vec<u8>, FecError> {
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut records = Vec::new();
    for e in entries {
        let journal = clean(&e.journal);
        let piece_ref = clean(&e.piece_ref);
        let start = records.len();
        for l in &e.lines {
            check_account(&l.account)?;
            if l.debit < Decimal::ZERO || l.credit < Decimal::ZERO {
                return Err(FecError::NegativeAmount(piece_ref));
            }
            let (debit, credit) = (cents(l.debit), cents(l.credit));
            if debit.is_zero() && credit.is_zero() {
                continue;
            }
            let (aux, aux_label) = l
                .aux
                .as_ref()
                .map_or_else(Default::default, |(n, lib)| (clean(n), clean(lib)));
            records.push(Record {
                journal: journal.clone(),
                journal_label: clean(&e.journal_label),
                number: 0,
                date: e.date,
                account: l.account.clone(),
                account_label: clean(&l.account_label),
                aux,
                aux_label,
                piece_ref: piece_ref.clone(),
                piece_date: e.piece_date,
                label: clean(&e.label),
                debit,
                credit,
                valid_date: e.valid_date,
            });
        }
        if records.len() - start < 2 {
            return Err(FecError::EmptyEntry(piece_ref));
        }
        let n = next.entry(journal).or_insert(0);
        *n += 1;
        records[start..].iter_mut().for_each(|r| r.number = *n);
    }
    check(&records)?;
    let mut text = FIELDS.join("\t") + "\r\n";
    for r in &records {
        #[rustfmt::skip]
        let fields: [&str; 18] = [
            &r.journal, &r.journal_label, &r.number.to_string(), &ymd(r.date), &r.account,
            &r.account_label, &r.aux, &r.aux_label, &r.piece_ref, &ymd(r.piece_date), &r.label,
            &amount(r.debit), &amount(r.credit), "", "", &ymd(r.valid_date), "", "",
        ];
        text.push_str(&fields.join("\t"));
        text.push_str("\r\n");
    }
    encode(&text)
}

/// Parses a FEC written by [`write`] (LF alone is also accepted as separator).
/// Line numbers in errors are 1-based, the header being line 1.
pub fn parse(bytes: &[u8]) -> Result<Vec<Record>, FecError> {
    let text = ISO_8859_15
        .decode_without_bom_handling_and_without_replacement(bytes)
        .ok_or_else(|| perr(1, "not ISO 8859-15".into()))?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let mut lines = body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    if lines.next() != Some(FIELDS.join("\t").as_str()) {
        return Err(perr(1, "header is not the 18 FEC field names".into()));
    }
    let mut records = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 18 {
            return Err(perr(n, format!("{} fields instead of 18", f.len())));
        }
        let number = f[2]
            .parse()
            .map_err(|_| perr(n, format!("bad EcritureNum {:?}", f[2])))?;
        records.push(Record {
            journal: f[0].into(),
            journal_label: f[1].into(),
            number,
            date: parse_date(n, f[3])?,
            account: f[4].into(),
            account_label: f[5].into(),
            aux: f[6].into(),
            aux_label: f[7].into(),
            piece_ref: f[8].into(),
            piece_date: parse_date(n, f[9])?,
            label: f[10].into(),
            debit: parse_amount(n, f[11])?,
            credit: parse_amount(n, f[12])?,
            valid_date: parse_date(n, f[15])?,
        });
    }
    Ok(records)
}

/// Checks that each (journal, number) group is balanced, that numbers are
/// continuous from 1 and non-decreasing per journal in file order, and that
/// ValidDate is non-decreasing per journal. Sequence errors are
/// [`FecError::Parse`] with the record's file line (index + 2).
pub fn check(records: &[Record]) -> Result<(), FecError> {
    let mut open: BTreeMap<&str, Group> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let line = i + 2;
        let (last, valid) = open
            .get(r.journal.as_str())
            .map_or((0, r.valid_date), |g| (g.number, g.valid_date));
        if r.number != last + 1 && (last == 0 || r.number != last) {
            let (j, n) = (&r.journal, r.number);
            return Err(perr(
                line,
                format!("journal {j}: EcritureNum {n} after {last}"),
            ));
        }
        if r.valid_date < valid {
            return Err(perr(
                line,
                format!("journal {}: ValidDate goes back", r.journal),
            ));
        }
        if r.number != last {
            let fresh = Group {
                number: r.number,
                valid_date: r.valid_date,
                piece_ref: &r.piece_ref,
                debit: Decimal::ZERO,
                credit: Decimal::ZERO,
            };
            if let Some(done) = open.insert(&r.journal, fresh) {
                done.balanced()?;
            }
        }
        if let Some(g) = open.get_mut(r.journal.as_str()) {
            let overflow = || perr(line, "amount overflow".into());
            g.valid_date = r.valid_date;
            g.debit = g.debit.checked_add(r.debit).ok_or_else(overflow)?;
            g.credit = g.credit.checked_add(r.credit).ok_or_else(overflow)?;
        }
    }
    open.values().try_for_each(Group::balanced)
}

/// The entry being summed, per journal, in [`check`].
struct Group<'a> {
    number: u64,
    valid_date: NaiveDate,
    piece_ref: &'a str,
    debit: Decimal,
    credit: Decimal,
}

impl Group<'_> {
    fn balanced(&self) -> Result<(), FecError> {
        if self.debit == self.credit {
            return Ok(());
        }
        let (piece_ref, debit, credit) = (self.piece_ref.into(), self.debit, self.credit);
        Err(FecError::Unbalanced {
            piece_ref,
            debit,
            credit,
        })
    }
}

fn perr(line: usize, message: String) -> FecError {
    FecError::Parse { line, message }
}

/// 3 leading ASCII digits, ASCII alphanumeric only, at most 40 chars.
fn check_account(a: &str) -> Result<(), FecError> {
    let ok = a.len() <= 40
        && a.bytes().all(|b| b.is_ascii_alphanumeric())
        && a.bytes().take(3).filter(u8::is_ascii_digit).count() == 3;
    ok.then_some(())
        .ok_or_else(|| FecError::BadAccount(a.into()))
}

/// Transliterates chars missing from ISO 8859-15 with deunicode, turns
/// control chars (tab, CR, LF...) into spaces, and trims.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let mut buf = [0u8; 4];
        if c.is_ascii() || !ISO_8859_15.encode(c.encode_utf8(&mut buf)).2 {
            out.push(c);
        } else {
            out.push_str(deunicode::deunicode_char(c).unwrap_or("?"));
        }
    }
    out.replace(char::is_control, " ").trim().to_string()
}

fn encode(text: &str) -> Result<Vec<u8>, FecError> {
    // Single-byte encoding: never more bytes out than UTF-8 bytes in.
    let mut out = vec![0u8; text.len()];
    let mut encoder = ISO_8859_15.new_encoder();
    match encoder.encode_from_utf8_without_replacement(text, &mut out, true) {
        (EncoderResult::InputEmpty, _, written) => {
            out.truncate(written);
            Ok(out)
        }
        (EncoderResult::Unmappable(c), _, _) => Err(FecError::Unmappable(format!("{c:?}"))),
        (EncoderResult::OutputFull, _, _) => Err(FecError::Unmappable("output full".into())),
    }
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .abs()
}

fn amount(d: Decimal) -> String {
    let mut d = d;
    d.rescale(2);
    d.to_string().replace('.', ",")
}

fn ymd(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

fn parse_date(line: usize, s: &str) -> Result<NaiveDate, FecError> {
    let date = (s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| NaiveDate::parse_from_str(s, "%Y%m%d").ok())
        .flatten();
    date.ok_or_else(|| perr(line, format!("bad date {s:?}")))
}

/// `1234,50`; empty means zero; no sign, no dot, no thousands separator.
fn parse_amount(line: usize, s: &str) -> Result<Decimal, FecError> {
    if s.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let (int, frac) = s.split_once(',').unwrap_or((s, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let parsed = (digits(int) && digits(frac)).then(|| format!("{int}.{frac}").parse().ok());
    parsed
        .flatten()
        .ok_or_else(|| perr(line, format!("bad amount {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latin9(bytes: &[u8]) -> String {
        ISO_8859_15.decode_without_bom_handling(bytes).0.into()
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    fn line(account: &str, debit: &str, credit: &str) -> EntryLine {
        let (debit, credit) = (debit.parse().unwrap(), credit.parse().unwrap());
        let account_label = format!("Compte {account}");
        EntryLine {
            account: account.into(),
            account_label,
            aux: None,
            debit,
            credit,
        }
    }

    fn entry(journal: &str, piece_ref: &str, d: u32, lines: Vec<EntryLine>) -> Entry {
        Entry {
            journal: journal.into(),
            journal_label: format!("Journal {journal}"),
            date: day(d),
            piece_ref: piece_ref.into(),
            piece_date: day(d),
            label: format!("Pièce {piece_ref}"),
            valid_date: day(d),
            lines,
        }
    }

    /// A two-line entry: `account` debited, 706000 credited.
    fn pair(journal: &str, piece_ref: &str, account: &str, debit: &str, credit: &str) -> Entry {
        let lines = vec![line(account, debit, "0"), line("706000", "0", credit)];
        entry(journal, piece_ref, 1, lines)
    }

    #[test]
    fn two_interleaved_journals_round_trip() {
        let mut sale = pair("VE", "F1", "411000", "120", "100");
        sale.lines[0].aux = Some(("C001".into(), "Dupont".into()));
        sale.lines.push(line("445710", "0", "20"));
        let mut sale2 = sale.clone();
        sale2.piece_ref = "F2".into();
        let bank = |p: &str| pair("BQ", p, "512000", "120", "120");
        let bytes = write(&[sale, bank("B1"), sale2, bank("B2")]).unwrap();
        let text = latin9(&bytes);
        let lines: Vec<&str> = text.strip_suffix("\r\n").unwrap().split("\r\n").collect();
        assert_eq!(lines[0], FIELDS.join("\t"));
        assert_eq!(lines.len(), 1 + 10);
        assert!(lines.iter().all(|l| l.split('\t').count() == 18));
        let first = "VE|Journal VE|1|20260301|411000|Compte 411000|C001|Dupont|F1|20260301|\
            Pièce F1|120,00|0,00|||20260301||";
        assert_eq!(lines[1], first.replace('|', "\t"));
        let records = parse(&bytes).unwrap();
        let nums: Vec<_> = records
            .iter()
            .map(|r| (r.journal.as_str(), r.number))
            .collect();
        let (v1, b1, v2, b2) = (("VE", 1), ("BQ", 1), ("VE", 2), ("BQ", 2));
        assert_eq!(nums, [v1, v1, v1, b1, b1, v2, v2, v2, b2, b2]);
        assert_eq!(
            (records[3].piece_ref.as_str(), records[0].debit),
            ("B1", 120.into())
        );
        check(&records).unwrap();
    }

    #[test]
    fn unbalanced_entry_is_refused_with_its_piece_ref() {
        let ok = pair("VE", "F1", "411000", "10", "10");
        let err = write(&[ok, pair("VE", "F9", "411000", "10", "9.99")]).unwrap_err();
        assert_eq!(err.code(), "FEC_UNBALANCED");
        assert!(matches!(err, FecError::Unbalanced { piece_ref, .. } if piece_ref == "F9"));
    }

    #[test]
    fn bad_accounts_negative_and_empty_entries_are_refused() {
        for account in ["41A000", "4110é0", "411 000", "", &"4".repeat(41)] {
            let err = write(&[pair("OD", "X", account, "1", "1")]).unwrap_err();
            assert_eq!(err.code(), "FEC_BAD_ACCOUNT", "{account}");
        }
        let err = write(&[pair("OD", "N", "411000", "-1", "-1")]).unwrap_err();
        assert_eq!(err.code(), "FEC_NEGATIVE_AMOUNT");
        let err = write(&[pair("OD", "Z", "411000", "0.004", "0.001")]).unwrap_err();
        assert!(matches!(err, FecError::EmptyEntry(p) if p == "Z"));
    }

    #[test]
    fn text_is_transliterated_and_round_trips() {
        let mut e = pair("BQ", "B1", "512000", "1", "1");
        e.label = " Café € Œuf ŝ\tfin\r\n".into();
        let bytes = write(&[e]).unwrap();
        assert!(bytes.contains(&0xA4), "€ must be byte 0xA4");
        assert!(
            bytes.contains(&0xBC) && bytes.contains(&0xE9),
            "Œ, é in ISO 8859-15"
        );
        assert_eq!(parse(&bytes).unwrap()[0].label, "Café € Œuf s fin");
    }

    #[test]
    fn amounts_are_written_with_a_comma_and_two_decimals() {
        let mut e = pair("BQ", "B1", "512000", "1234.5", "1234.495");
        e.lines.push(line("401000", "0", "0.004"));
        let bytes = write(&[e]).unwrap();
        let text = latin9(&bytes);
        assert!(text.contains("\t1234,50\t0,00\t") && text.contains("\t0,00\t1234,50\t"));
        assert!(!text.contains("401000"), "zero line skipped");
        assert_eq!(parse(&bytes).unwrap()[1].credit, "1234.50".parse().unwrap());
        assert_eq!(file_name("123456789", day(31)), "123456789FEC20260331.txt");
    }

    #[test]
    fn check_finds_a_gap_in_numbering() {
        let (j, d, s) = (String::from("BQ"), day(1), String::new());
        #[rustfmt::skip]
        let rec = |number, debit: u32, credit: u32| Record {
            journal: j.clone(), journal_label: "Banque".into(), number, date: d,
            account: "512000".into(), account_label: "Banque".into(), aux: s.clone(),
            aux_label: s.clone(), piece_ref: format!("B{number}"), piece_date: d,
            label: "Virement".into(), debit: debit.into(), credit: credit.into(), valid_date: d,
        };
        let mut records = vec![rec(1, 5, 0), rec(1, 0, 5), rec(2, 7, 0), rec(2, 0, 7)];
        check(&records).unwrap();
        records.extend([rec(4, 1, 0), rec(4, 0, 1)]);
        let err = check(&records).unwrap_err();
        assert!(matches!(err, FecError::Parse { line: 6, .. }), "{err}");
        let err = check(&[rec(1, 5, 0), rec(1, 0, 4)]).unwrap_err();
        assert_eq!(err.code(), "FEC_UNBALANCED");
        assert_eq!(check(&[rec(2, 0, 0)]).unwrap_err().code(), "FEC_PARSE");
    }

    #[test]
    fn parse_rejects_a_bad_header_and_field_count() {
        let err = parse(b"JournalCode\r\n").unwrap_err();
        assert!(matches!(err, FecError::Parse { line: 1, .. }));
        let mut bytes = write(&[pair("BQ", "B1", "512000", "1", "1")]).unwrap();
        bytes.extend_from_slice(b"BQ\t1\r\n");
        assert!(matches!(
            parse(&bytes),
            Err(FecError::Parse { line: 4, .. })
        ));
    }
}
