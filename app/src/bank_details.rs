//! Bank details of a payee (rule R-PAY-4): the account holder, the IBAN and the BIC that a
//! producer gives for their payouts, checked before they are kept.
//!
//! The IBAN's check digits and country format are checked by the `iban_validate` crate; the
//! BIC's shape and its country (which must be the IBAN's) here. Everything is pure: no bank
//! directory is consulted, so a well-formed BIC of a bank that does not exist is accepted.

use std::fmt;

use iban::{Iban, IbanLike, ParseBaseIbanError, ParseIbanError};

use crate::sepa::{to_restricted_latin, NAME_MAX_CHARS};

/// Checked bank details of an account (R-PAY-4).
///
/// Build one with [`validate`]: its `iban` is then in the electronic form (no spaces, upper
/// case), its `bic` in upper case without spaces, and its `holder` trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BankDetails {
    /// The account holder's name as given (trimmed); it is transliterated to the SEPA
    /// character set only when written to a transfer file.
    pub holder: String,
    /// The IBAN in electronic form, e.g. `FR7630006000011234567890189`.
    pub iban: String,
    /// The BIC, 8 or 11 characters, e.g. `AGRIFRPP` or `AGRIFRPP882`.
    pub bic: String,
}

/// Why an IBAN was refused (R-PAY-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IbanProblem {
    /// Not 2 letters, 2 digits and up to 30 letters or digits.
    Format,
    /// The check digits do not match the rest of the IBAN.
    CheckDigits,
    /// The country code is not one of a country that has IBANs.
    UnknownCountry,
    /// The account part does not follow the format of the IBAN's country.
    CountryFormat,
}

impl fmt::Display for IbanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Format => "it is not 2 letters, 2 digits and up to 30 letters or digits",
            Self::CheckDigits => "its check digits are wrong (a typing mistake?)",
            Self::UnknownCountry => "its country code is not one of a country that has IBANs",
            Self::CountryFormat => "its account number does not follow its country's format",
        })
    }
}

/// Why a BIC was refused (R-PAY-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BicProblem {
    /// Neither 8 nor 11 characters long.
    Length,
    /// The first 4 characters (the bank code) are not all letters.
    BankCode,
    /// Characters 5 and 6 (the country code) are not 2 letters.
    CountryCode,
    /// Characters 7 and 8 (the location code) are not letters or digits.
    LocationCode,
    /// Characters 9 to 11 (the branch code) are not letters or digits.
    BranchCode,
}

impl fmt::Display for BicProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Length => "it must be 8 or 11 characters long",
            Self::BankCode => "its first 4 characters (the bank code) must be letters",
            Self::CountryCode => "its characters 5 and 6 (the country code) must be letters",
            Self::LocationCode => {
                "its characters 7 and 8 (the location code) must be letters or digits"
            }
            Self::BranchCode => {
                "its characters 9 to 11 (the branch code) must be letters or digits"
            }
        })
    }
}

/// Why an account holder's name was refused (R-PAY-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HolderProblem {
    /// Empty once trimmed.
    Empty,
    /// Longer than 70 characters once trimmed.
    TooLong,
    /// Contains a control character (a line break, a tab...).
    ControlCharacter,
    /// Has no letter or digit once written in the SEPA character set.
    NotRepresentable,
}

impl fmt::Display for HolderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "it is empty",
            Self::TooLong => "it is longer than 70 characters",
            Self::ControlCharacter => {
                "it contains a line break, a tab or another control character"
            }
            Self::NotRepresentable => "it has no letter or digit that a SEPA transfer can carry",
        })
    }
}

/// A refusal of bank details (R-PAY-4); [`BankDetailsError::code`] gives its stable code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum BankDetailsError {
    /// The IBAN is malformed, has wrong check digits or does not follow its country's format.
    #[error("the IBAN is invalid: {0}")]
    InvalidIban(IbanProblem),
    /// The BIC is malformed.
    #[error("the BIC is invalid: {0}")]
    InvalidBic(BicProblem),
    /// The BIC's country (its characters 5 and 6) is not the IBAN's.
    #[error(
        "the BIC of the wrong country: the BIC is of {bic_country}, the IBAN of {iban_country}"
    )]
    BicCountryMismatch {
        /// The BIC's country code.
        bic_country: String,
        /// The IBAN's country code.
        iban_country: String,
    },
    /// The account holder's name is empty, too long or cannot be written in a SEPA transfer.
    #[error("the account holder's name is invalid: {0}")]
    InvalidHolder(HolderProblem),
}

impl BankDetailsError {
    /// The stable code of the refusal: `INVALID_IBAN`, `INVALID_BIC`, `BIC_COUNTRY_MISMATCH`
    /// or `INVALID_HOLDER` (R-PAY-4).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidIban(_) => "INVALID_IBAN",
            Self::InvalidBic(_) => "INVALID_BIC",
            Self::BicCountryMismatch { .. } => "BIC_COUNTRY_MISMATCH",
            Self::InvalidHolder(_) => "INVALID_HOLDER",
        }
    }
}

/// Checks bank details and returns them normalised (R-PAY-4).
///
/// The IBAN and the BIC may be typed with spaces and in lower case. The checks run in this
/// order: holder, IBAN, BIC, then the BIC's country against the IBAN's.
pub fn validate(holder: &str, iban: &str, bic: &str) -> Result<BankDetails, BankDetailsError> {
    let holder = validate_holder(holder)?;
    let (iban, bic) = validate_account(iban, bic)?;
    Ok(BankDetails { holder, iban, bic })
}

/// Checks an IBAN and a BIC together (R-PAY-4): each alone, then that the BIC is of the
/// IBAN's country. Returns `(iban, bic)` normalised.
pub fn validate_account(iban: &str, bic: &str) -> Result<(String, String), BankDetailsError> {
    let iban = normalize_iban(iban)?;
    let bic = normalize_bic(bic)?;
    let iban_country = &iban[..2];
    let bic_country = &bic[4..6];
    if iban_country != bic_country {
        return Err(BankDetailsError::BicCountryMismatch {
            bic_country: bic_country.to_string(),
            iban_country: iban_country.to_string(),
        });
    }
    Ok((iban, bic))
}

/// Checks an IBAN and returns its electronic form: no spaces, upper case (R-PAY-4).
///
/// Any whitespace is accepted between characters; the check digits and the country's format
/// are checked by `iban_validate`.
pub fn normalize_iban(raw: &str) -> Result<String, BankDetailsError> {
    let compact = compact_upper(raw);
    let parsed: Iban = compact.parse().map_err(|e| {
        BankDetailsError::InvalidIban(match e {
            ParseIbanError::InvalidBaseIban {
                source: ParseBaseIbanError::InvalidChecksum,
            } => IbanProblem::CheckDigits,
            ParseIbanError::InvalidBaseIban { .. } => IbanProblem::Format,
            ParseIbanError::UnknownCountry(_) => IbanProblem::UnknownCountry,
            ParseIbanError::InvalidBban(_) => IbanProblem::CountryFormat,
        })
    })?;
    Ok(parsed.electronic_str().to_string())
}

/// Checks a BIC's shape and returns it in upper case without spaces (R-PAY-4).
///
/// `AAAA BB CC (DDD)`: 4 letters of bank code, 2 letters of country, 2 letters or digits of
/// location and, optionally, 3 letters or digits of branch.
pub fn normalize_bic(raw: &str) -> Result<String, BankDetailsError> {
    let bic = compact_upper(raw);
    let bytes = bic.as_bytes();
    let invalid = |problem| Err(BankDetailsError::InvalidBic(problem));
    // A non-ASCII character makes the byte length differ from 8 or 11 or fails a class check.
    if bytes.len() != 8 && bytes.len() != 11 {
        return invalid(BicProblem::Length);
    }
    if !bytes[..4].iter().all(u8::is_ascii_uppercase) {
        return invalid(BicProblem::BankCode);
    }
    if !bytes[4..6].iter().all(u8::is_ascii_uppercase) {
        return invalid(BicProblem::CountryCode);
    }
    if !bytes[6..8].iter().all(is_upper_alphanumeric) {
        return invalid(BicProblem::LocationCode);
    }
    if !bytes[8..].iter().all(is_upper_alphanumeric) {
        return invalid(BicProblem::BranchCode);
    }
    Ok(bic)
}

/// Checks an account holder's name and returns it trimmed (R-PAY-4): 1 to 70 characters, no
/// control character, and at least one letter or digit once transliterated to the SEPA
/// restricted Latin set (see [`to_restricted_latin`]).
pub fn validate_holder(raw: &str) -> Result<String, BankDetailsError> {
    let holder = raw.trim();
    let invalid = |problem| Err(BankDetailsError::InvalidHolder(problem));
    if holder.is_empty() {
        return invalid(HolderProblem::Empty);
    }
    if holder.chars().count() > NAME_MAX_CHARS {
        return invalid(HolderProblem::TooLong);
    }
    if holder.chars().any(char::is_control) {
        return invalid(HolderProblem::ControlCharacter);
    }
    let sepa = to_restricted_latin(holder, NAME_MAX_CHARS);
    if !sepa.chars().any(|c| c.is_ascii_alphanumeric()) {
        return invalid(HolderProblem::NotRepresentable);
    }
    Ok(holder.to_string())
}

/// Masks an IBAN for display (R-PAY-4): its first 4 characters (country and check digits),
/// `**** ****`, then its last 4 characters, e.g. `FR76 **** **** 0189`.
///
/// Spaces in the input are ignored; an input shorter than 8 characters is masked whole
/// (`**** **** ****`), so nothing of a malformed value leaks.
pub fn masked_iban(iban: &str) -> String {
    let chars: Vec<char> = compact_upper(iban).chars().collect();
    if chars.len() < 8 {
        return "**** **** ****".to_string();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head} **** **** {tail}")
}

/// Removes every whitespace character and upper-cases ASCII letters.
fn compact_upper(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// An upper-case ASCII letter or an ASCII digit.
fn is_upper_alphanumeric(b: &u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IBAN_FR: &str = "FR7630006000011234567890189";
    const IBAN_DE: &str = "DE89370400440532013000";

    #[test]
    fn accepts_and_normalises_typed_details() {
        let details = validate(
            "  Ferme de l'Étang  ",
            "fr76 3000 6000 0112 3456 7890 189",
            "agri fr pp",
        )
        .expect("valid details");
        assert_eq!(
            details,
            BankDetails {
                holder: "Ferme de l'Étang".to_string(),
                iban: IBAN_FR.to_string(),
                bic: "AGRIFRPP".to_string(),
            }
        );
    }

    #[test]
    fn accepts_an_11_character_bic() {
        let details = validate("Léa", IBAN_FR, "AGRIFRPP882").expect("valid details");
        assert_eq!(details.bic, "AGRIFRPP882");
    }

    #[test]
    fn refuses_wrong_check_digits() {
        let err = validate("Léa", "FR7730006000011234567890189", "AGRIFRPP").unwrap_err();
        assert_eq!(err, BankDetailsError::InvalidIban(IbanProblem::CheckDigits));
        assert_eq!(err.code(), "INVALID_IBAN");
        assert!(err.to_string().contains("check digits"));
    }

    #[test]
    fn refuses_malformed_ibans() {
        for raw in [
            "",
            "FR",
            "12FR30006000011234567890189",
            "FR76-3000-6000",
            "FR76 3000 é",
        ] {
            assert_eq!(
                normalize_iban(raw),
                Err(BankDetailsError::InvalidIban(IbanProblem::Format)),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn refuses_an_iban_off_its_country_format() {
        // Valid check digits, but a French IBAN has 23 characters after the check digits.
        assert_eq!(
            normalize_iban("FR3520041010050500013"),
            Err(BankDetailsError::InvalidIban(IbanProblem::CountryFormat))
        );
    }

    #[test]
    fn refuses_an_unknown_iban_country() {
        assert_eq!(
            normalize_iban("ZZ6600000000000000000"),
            Err(BankDetailsError::InvalidIban(IbanProblem::UnknownCountry))
        );
    }

    #[test]
    fn refuses_malformed_bics() {
        let cases = [
            ("AGRIFRP", BicProblem::Length),
            ("AGRIFRPP88", BicProblem::Length),
            ("AGRIFRPP8822", BicProblem::Length),
            ("AGR1FRPP", BicProblem::BankCode),
            ("AGRIF1PP", BicProblem::CountryCode),
            ("AGRIFRP-", BicProblem::LocationCode),
            ("AGRIFRPP8-2", BicProblem::BranchCode),
            ("AGRIFRPÉ", BicProblem::Length),
            ("ÉGRIFRPP", BicProblem::Length),
            ("AÉRIFRP", BicProblem::BankCode),
        ];
        for (raw, problem) in cases {
            let err = validate("Léa", IBAN_FR, raw).unwrap_err();
            assert_eq!(err, BankDetailsError::InvalidBic(problem), "{raw:?}");
            assert_eq!(err.code(), "INVALID_BIC");
        }
    }

    #[test]
    fn refuses_a_bic_of_another_country() {
        let err = validate("Léa", IBAN_DE, "AGRIFRPP").unwrap_err();
        assert_eq!(
            err,
            BankDetailsError::BicCountryMismatch {
                bic_country: "FR".to_string(),
                iban_country: "DE".to_string(),
            }
        );
        assert_eq!(err.code(), "BIC_COUNTRY_MISMATCH");
        assert!(err.to_string().contains("BIC of the wrong country"));
        assert!(validate("Jörg", IBAN_DE, "COBADEFFXXX").is_ok());
    }

    #[test]
    fn checks_the_holder() {
        let cases = [
            ("   ", HolderProblem::Empty),
            ("Léa\nZoé", HolderProblem::ControlCharacter),
            ("&&& @@@", HolderProblem::NotRepresentable),
        ];
        for (raw, problem) in cases {
            let err = validate(raw, IBAN_FR, "AGRIFRPP").unwrap_err();
            assert_eq!(err, BankDetailsError::InvalidHolder(problem), "{raw:?}");
            assert_eq!(err.code(), "INVALID_HOLDER");
        }
        let seventy = "é".repeat(70);
        assert!(validate_holder(&seventy).is_ok());
        assert_eq!(
            validate_holder(&format!(" {seventy}e ")),
            Err(BankDetailsError::InvalidHolder(HolderProblem::TooLong))
        );
    }

    #[test]
    fn the_holder_is_checked_first() {
        let err = validate("", "nonsense", "nonsense").unwrap_err();
        assert_eq!(err.code(), "INVALID_HOLDER");
        let err = validate("Léa", "nonsense", "nonsense").unwrap_err();
        assert_eq!(err.code(), "INVALID_IBAN");
    }

    #[test]
    fn masks_an_iban() {
        assert_eq!(masked_iban(IBAN_FR), "FR76 **** **** 0189");
        assert_eq!(
            masked_iban("fr76 3000 6000 0112 3456 7890 189"),
            "FR76 **** **** 0189"
        );
        assert_eq!(masked_iban(IBAN_DE), "DE89 **** **** 3000");
        assert_eq!(masked_iban("FR761234"), "FR76 **** **** 1234");
        assert_eq!(masked_iban("FR76123"), "**** **** ****");
        assert_eq!(masked_iban(""), "**** **** ****");
        assert_eq!(masked_iban("ÉÉÉÉÉÉÉÉÉ"), "ÉÉÉÉ **** **** ÉÉÉÉ");
    }
}
