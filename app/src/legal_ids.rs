//! French invoicing identifiers (rule R-INV-4).
//!
//! R-INV-4: every invoice or credit note names the seller by its SIREN
//! (9 digits, Luhn checksum) and, unless the seller is VAT-exempt, by its
//! intra-community VAT number. A French VAT number is `FR` + a 2-digit key +
//! the SIREN, the key being `(12 + 3 * (SIREN % 97)) % 97`. SIRET numbers
//! (SIREN + 5-digit establishment number, Luhn over the 14 digits) are
//! checked the same way.
//!
//! All functions are pure: they normalise their input (white space removed,
//! VAT numbers upper-cased and stripped of dots) and return the normalised
//! form, or a [`LegalIdError`] whose [`code`](LegalIdError::code) is stable.

use std::fmt;

/// EU VAT number prefixes accepted by [`check_vat_number`] (R-INV-4):
/// the 27 member states (Greece is `EL`) and `XI` (Northern Ireland).
pub const EU_VAT_PREFIXES: [&str; 28] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "XI",
];

/// Why an identifier was refused (R-INV-4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegalIdError {
    /// Not 9 digits, or the Luhn checksum fails.
    #[error("invalid SIREN {input:?}: {reason}")]
    InvalidSiren {
        /// The input as received.
        input: String,
        /// What is wrong with it.
        reason: IdFault,
    },
    /// Not 14 digits, or the Luhn checksum fails.
    #[error("invalid SIRET {input:?}: {reason}")]
    InvalidSiret {
        /// The input as received.
        input: String,
        /// What is wrong with it.
        reason: IdFault,
    },
    /// Malformed VAT number, unknown prefix, or (for FR) wrong key.
    #[error("invalid VAT number {input:?}: {reason}")]
    InvalidVatNumber {
        /// The input as received.
        input: String,
        /// What is wrong with it.
        reason: IdFault,
    },
    /// The VAT number is well formed but is not a French one although a
    /// SIREN was given for the company.
    #[error(
        "VAT number {vat_number} is not French (country {country}); expected FR with SIREN {siren}"
    )]
    VatNumberWrongCountry {
        /// Normalised VAT number.
        vat_number: String,
        /// Its 2-letter prefix.
        country: String,
        /// The SIREN it was checked against.
        siren: String,
    },
    /// The VAT number is French and valid but belongs to another company.
    #[error("VAT number {vat_number} belongs to SIREN {found}, not to SIREN {siren}")]
    VatNumberOtherCompany {
        /// Normalised VAT number.
        vat_number: String,
        /// The SIREN contained in the VAT number.
        found: String,
        /// The SIREN it was checked against.
        siren: String,
    },
}

impl LegalIdError {
    /// Stable machine-readable code: `INVALID_SIREN`, `INVALID_SIRET`,
    /// `INVALID_VAT_NUMBER` or `VAT_NUMBER_MISMATCH` (R-INV-4).
    pub fn code(&self) -> &'static str {
        match self {
            LegalIdError::InvalidSiren { .. } => "INVALID_SIREN",
            LegalIdError::InvalidSiret { .. } => "INVALID_SIRET",
            LegalIdError::InvalidVatNumber { .. } => "INVALID_VAT_NUMBER",
            LegalIdError::VatNumberWrongCountry { .. }
            | LegalIdError::VatNumberOtherCompany { .. } => "VAT_NUMBER_MISMATCH",
        }
    }
}

/// The precise fault found in an identifier (part of [`LegalIdError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFault {
    /// Nothing left once white space is removed.
    Empty,
    /// A character other than a digit (SIREN/SIRET) or an ASCII letter or
    /// digit (VAT number).
    BadCharacter,
    /// Wrong number of characters; the number is the expected length.
    Length(usize),
    /// Wrong number of characters after the VAT country prefix.
    VatLength,
    /// The Luhn checksum fails.
    Checksum,
    /// The 2-letter prefix is not an EU VAT prefix.
    UnknownCountry,
    /// French VAT number not of the form FR + 2 digits + 9-digit SIREN.
    FrenchFormat,
    /// French VAT key does not match the SIREN; the number is the right key.
    FrenchKey(u8),
    /// The SIREN inside a French VAT number fails its Luhn checksum.
    FrenchSiren,
}

impl fmt::Display for IdFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdFault::Empty => write!(f, "it is empty"),
            IdFault::BadCharacter => write!(f, "it contains a character that is not allowed"),
            IdFault::Length(n) => write!(f, "it must have exactly {n} digits"),
            IdFault::VatLength => write!(
                f,
                "a country prefix must be followed by 2 to 12 letters or digits"
            ),
            IdFault::Checksum => write!(f, "the Luhn checksum is wrong (typing error?)"),
            IdFault::UnknownCountry => write!(
                f,
                "it must start with the 2-letter prefix of an EU member state (or XI)"
            ),
            IdFault::FrenchFormat => {
                write!(f, "a French VAT number is FR + 2-digit key + 9-digit SIREN")
            }
            IdFault::FrenchKey(k) => {
                write!(f, "the key does not match the SIREN (expected {k:02})")
            }
            IdFault::FrenchSiren => write!(f, "the SIREN it contains is not valid"),
        }
    }
}

/// Remove every white-space character (including no-break spaces).
fn strip_spaces(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Luhn checksum over a string of ASCII digits (false if any non-digit).
fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// Shared SIREN/SIRET check: `len` digits after removing white space, Luhn ok.
fn check_luhn_number(s: &str, len: usize) -> Result<String, IdFault> {
    let n = strip_spaces(s);
    if n.is_empty() {
        return Err(IdFault::Empty);
    }
    if !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdFault::BadCharacter);
    }
    if n.len() != len {
        return Err(IdFault::Length(len));
    }
    if !luhn_ok(&n) {
        return Err(IdFault::Checksum);
    }
    Ok(n)
}

/// Check a SIREN (R-INV-4): 9 digits once spaces are removed, valid Luhn
/// checksum. Returns the 9 digits.
///
/// ```
/// # use facturx::legal_ids::check_siren;
/// assert_eq!(check_siren("732 829 320").unwrap(), "732829320");
/// assert_eq!(check_siren("732 829 321").unwrap_err().code(), "INVALID_SIREN");
/// ```
pub fn check_siren(s: &str) -> Result<String, LegalIdError> {
    check_luhn_number(s, 9).map_err(|reason| LegalIdError::InvalidSiren {
        input: s.to_owned(),
        reason,
    })
}

/// Check a SIRET (R-INV-4): 14 digits once spaces are removed, valid Luhn
/// checksum over the 14 digits (La Poste's exception is not handled).
/// Returns the 14 digits.
pub fn check_siret(s: &str) -> Result<String, LegalIdError> {
    check_luhn_number(s, 14).map_err(|reason| LegalIdError::InvalidSiret {
        input: s.to_owned(),
        reason,
    })
}

/// `siren % 97`, computed digit by digit (no parsing, no overflow).
fn mod97(digits: &str) -> u32 {
    digits
        .chars()
        .filter_map(|c| c.to_digit(10))
        .fold(0, |acc, d| (acc * 10 + d) % 97)
}

/// The French VAT key of a SIREN: `(12 + 3 * (siren % 97)) % 97`.
fn french_vat_key(siren_digits: &str) -> u8 {
    // The value is < 97, so it always fits in a u8.
    ((12 + 3 * mod97(siren_digits)) % 97) as u8
}

/// French intra-community VAT number of a company (R-INV-4):
/// `"FR"` + 2-digit key + SIREN, key = `(12 + 3 * (siren % 97)) % 97`.
///
/// The SIREN is expected to have been checked with [`check_siren`]; white
/// space is removed and non-digits are ignored when computing the key, so
/// the function never panics, but the result of a bad SIREN is meaningless
/// (and [`check_vat_number`] will refuse it).
///
/// ```
/// # use facturx::legal_ids::french_vat_number;
/// assert_eq!(french_vat_number("303 265 045"), "FR40303265045");
/// ```
pub fn french_vat_number(siren: &str) -> String {
    let siren = strip_spaces(siren);
    format!("FR{:02}{}", french_vat_key(&siren), siren)
}

/// Check an EU intra-community VAT number (R-INV-4) and return it
/// normalised (upper case, without white space or dots).
///
/// * It must start with an EU prefix ([`EU_VAT_PREFIXES`]) followed by 2 to
///   12 ASCII letters or digits.
/// * A French number must be `FR` + 2-digit key + 9-digit SIREN, the SIREN
///   must pass its Luhn check and the key must match it.
/// * If `siren` is given (the company's own SIREN), the number must be
///   French and contain exactly that SIREN; otherwise the error is
///   [`LegalIdError::VatNumberWrongCountry`] or
///   [`LegalIdError::VatNumberOtherCompany`] (code `VAT_NUMBER_MISMATCH`).
///   An invalid `siren` argument is reported as `INVALID_SIREN`.
///
/// ```
/// # use facturx::legal_ids::check_vat_number;
/// assert_eq!(check_vat_number("fr 40 303.265.045", Some("303265045")).unwrap(), "FR40303265045");
/// assert_eq!(check_vat_number("FR40303265045", Some("732829320")).unwrap_err().code(), "VAT_NUMBER_MISMATCH");
/// ```
pub fn check_vat_number(vat: &str, siren: Option<&str>) -> Result<String, LegalIdError> {
    let invalid = |reason| LegalIdError::InvalidVatNumber {
        input: vat.to_owned(),
        reason,
    };
    let n: String = vat
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '.')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if n.is_empty() {
        return Err(invalid(IdFault::Empty));
    }
    if !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(IdFault::BadCharacter));
    }
    // Only ASCII remains, so byte slicing is on char boundaries.
    let (country, rest) = n.split_at(n.len().min(2));
    if country.len() != 2 || !EU_VAT_PREFIXES.contains(&country) {
        return Err(invalid(IdFault::UnknownCountry));
    }
    if !(2..=12).contains(&rest.len()) {
        return Err(invalid(IdFault::VatLength));
    }
    if country == "FR" {
        let (key, number) = rest.split_at(rest.len().min(2));
        if rest.len() != 11
            || !key.bytes().all(|b| b.is_ascii_digit())
            || !number.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid(IdFault::FrenchFormat));
        }
        if !luhn_ok(number) {
            return Err(invalid(IdFault::FrenchSiren));
        }
        let expected = french_vat_key(number);
        if key != format!("{expected:02}") {
            return Err(invalid(IdFault::FrenchKey(expected)));
        }
    }
    if let Some(siren) = siren {
        let siren = check_siren(siren)?;
        if country != "FR" {
            return Err(LegalIdError::VatNumberWrongCountry {
                vat_number: n.clone(),
                country: country.to_owned(),
                siren,
            });
        }
        let found = &rest[2..];
        if found != siren {
            return Err(LegalIdError::VatNumberOtherCompany {
                vat_number: n.clone(),
                found: found.to_owned(),
                siren,
            });
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sirens_are_valid() {
        for s in [
            "732829320",
            "542051180",
            "552100554",
            "303265045",
            "356000000",
        ] {
            assert_eq!(check_siren(s).as_deref(), Ok(s), "{s}");
        }
    }

    #[test]
    fn siren_spaces_are_removed() {
        assert_eq!(check_siren(" 732 829 320 ").as_deref(), Ok("732829320"));
        // no-break and narrow no-break spaces, as French formatting uses
        assert_eq!(
            check_siren("732\u{a0}829\u{202f}320").as_deref(),
            Ok("732829320")
        );
    }

    #[test]
    fn siren_errors() {
        let fault = |s| match check_siren(s) {
            Err(LegalIdError::InvalidSiren { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(fault(""), IdFault::Empty);
        assert_eq!(fault("   "), IdFault::Empty);
        assert_eq!(fault("73282932"), IdFault::Length(9));
        assert_eq!(fault("7328293200"), IdFault::Length(9));
        assert_eq!(fault("73282932A"), IdFault::BadCharacter);
        assert_eq!(fault("732-829-320"), IdFault::BadCharacter);
        assert_eq!(fault("७३२८२९३२०"), IdFault::BadCharacter); // non-ASCII digits
        assert_eq!(fault("732829321"), IdFault::Checksum);
        assert_eq!(fault("732829302"), IdFault::Checksum); // swapped digits
        assert_eq!(check_siren("1").unwrap_err().code(), "INVALID_SIREN");
    }

    #[test]
    fn every_single_digit_typo_is_caught() {
        let good = "542051180";
        for pos in 0..9 {
            for d in b'0'..=b'9' {
                let mut bytes = good.as_bytes().to_vec();
                if bytes[pos] == d {
                    continue;
                }
                bytes[pos] = d;
                let typo = String::from_utf8(bytes).expect("ascii");
                assert!(check_siren(&typo).is_err(), "{typo}");
            }
        }
    }

    #[test]
    fn siret() {
        // SIREN 732829320 + establishment 00074; Luhn checked independently.
        assert_eq!(
            check_siret("732 829 320 00074").as_deref(),
            Ok("73282932000074")
        );
        assert_eq!(
            check_siret("55210055400013").as_deref(),
            Ok("55210055400013")
        );
        let e = check_siret("73282932000075").unwrap_err();
        assert_eq!(e.code(), "INVALID_SIRET");
        assert!(matches!(
            check_siret("732829320"),
            Err(LegalIdError::InvalidSiret {
                reason: IdFault::Length(14),
                ..
            })
        ));
    }

    #[test]
    fn vat_key_formula_by_hand() {
        // 303265045 = 97 * 3126443 + 74, so key = (12 + 3 * 74) % 97
        // = 234 % 97 = 40.
        assert_eq!(303_265_045u64 % 97, 74);
        assert_eq!(french_vat_number("303265045"), "FR40303265045");
        // 732829320 = 97 * 7554941 + 43: key = (12 + 129) % 97 = 44.
        assert_eq!(732_829_320u64 % 97, 43);
        assert_eq!(french_vat_number("732829320"), "FR44732829320");
        for siren in ["542051180", "552100554", "356000000"] {
            let n: u64 = siren.parse().expect("digits");
            let key = (12 + 3 * (n % 97)) % 97;
            assert_eq!(french_vat_number(siren), format!("FR{key:02}{siren}"));
        }
        assert_eq!(french_vat_number("542051180"), "FR59542051180");
        assert_eq!(french_vat_number("552100554"), "FR96552100554");
    }

    #[test]
    fn key_is_zero_padded() {
        // Find a valid SIREN whose key is < 10 and check the padding.
        let siren = (100_000_000u64..)
            .map(|n| n.to_string())
            .find(|s| luhn_ok(s) && french_vat_key(s) < 10)
            .expect("exists");
        let vat = french_vat_number(&siren);
        assert_eq!(vat.len(), 13, "{vat}");
        assert_eq!(check_vat_number(&vat, Some(&siren)), Ok(vat));
    }

    #[test]
    fn vat_numbers_valid() {
        assert_eq!(
            check_vat_number("FR40303265045", None).as_deref(),
            Ok("FR40303265045")
        );
        assert_eq!(
            check_vat_number("fr 40 303.265.045", Some("303 265 045")).as_deref(),
            Ok("FR40303265045")
        );
        assert_eq!(
            check_vat_number("FR44732829320", Some("732829320")).as_deref(),
            Ok("FR44732829320")
        );
        // Other member states: format only.
        for v in [
            "DE123456789",
            "BE0123456789",
            "EL123456789",
            "XI123456789",
            "ATU12",
        ] {
            assert_eq!(check_vat_number(v, None).as_deref(), Ok(v));
        }
        assert_eq!(
            check_vat_number("nl 8528.29.302 b01", None).as_deref(),
            Ok("NL852829302B01")
        );
    }

    #[test]
    fn vat_numbers_invalid() {
        let fault = |s: &str| match check_vat_number(s, None) {
            Err(e @ LegalIdError::InvalidVatNumber { .. }) => {
                assert_eq!(e.code(), "INVALID_VAT_NUMBER");
                match e {
                    LegalIdError::InvalidVatNumber { reason, .. } => reason,
                    _ => unreachable!(),
                }
            }
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(fault(""), IdFault::Empty);
        assert_eq!(fault(" . "), IdFault::Empty);
        assert_eq!(fault("FR-40303265045"), IdFault::BadCharacter);
        assert_eq!(fault("FRé0303265045"), IdFault::BadCharacter);
        assert_eq!(fault("F"), IdFault::UnknownCountry);
        assert_eq!(fault("GR123456789"), IdFault::UnknownCountry); // Greece is EL
        assert_eq!(fault("GB123456789"), IdFault::UnknownCountry);
        assert_eq!(fault("US123456789"), IdFault::UnknownCountry);
        assert_eq!(fault("1234567890"), IdFault::UnknownCountry);
        assert_eq!(fault("DE1"), IdFault::VatLength);
        assert_eq!(fault("DE1234567890123"), IdFault::VatLength);
        assert_eq!(fault("FR4030326504"), IdFault::FrenchFormat);
        assert_eq!(fault("FR403032650450"), IdFault::FrenchFormat);
        assert_eq!(fault("FRAB303265045"), IdFault::FrenchFormat);
        assert_eq!(fault("FR41303265045"), IdFault::FrenchKey(40));
        assert_eq!(fault("FR00303265045"), IdFault::FrenchKey(40));
        assert_eq!(fault("FR40303265046"), IdFault::FrenchSiren);
    }

    #[test]
    fn vat_number_mismatch() {
        let e = check_vat_number("DE123456789", Some("303265045")).unwrap_err();
        assert_eq!(e.code(), "VAT_NUMBER_MISMATCH");
        assert!(
            matches!(e, LegalIdError::VatNumberWrongCountry { ref country, .. } if country == "DE")
        );
        assert!(e.to_string().contains("not French"), "{e}");

        let e = check_vat_number("FR40303265045", Some("732829320")).unwrap_err();
        assert_eq!(e.code(), "VAT_NUMBER_MISMATCH");
        assert_eq!(
            e,
            LegalIdError::VatNumberOtherCompany {
                vat_number: "FR40303265045".into(),
                found: "303265045".into(),
                siren: "732829320".into(),
            }
        );
        assert_eq!(
            e.to_string(),
            "VAT number FR40303265045 belongs to SIREN 303265045, not to SIREN 732829320"
        );

        // A malformed VAT number is reported as such, before any comparison.
        let e = check_vat_number("FR41303265045", Some("732829320")).unwrap_err();
        assert_eq!(e.code(), "INVALID_VAT_NUMBER");
        // A bad SIREN argument is reported as a bad SIREN.
        let e = check_vat_number("FR40303265045", Some("303265046")).unwrap_err();
        assert_eq!(e.code(), "INVALID_SIREN");
    }

    #[test]
    fn display_messages() {
        let e = check_siren("732829321").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid SIREN \"732829321\": the Luhn checksum is wrong (typing error?)"
        );
        let e = check_vat_number("FR41303265045", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid VAT number \"FR41303265045\": the key does not match the SIREN (expected 40)"
        );
    }
}
