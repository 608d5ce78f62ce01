//! VAT rates allowed on products (R-ACC-5) and fees (R-FEE-2).

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// A VAT rate in percent: 0, 5.5 (food, the default), 10 or 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum VatRate {
    Zero,
    #[default]
    Reduced5_5,
    Intermediate10,
    Standard20,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an allowed VAT rate (0, 5.5, 10 or 20)")]
pub struct InvalidVatRate(pub String);

impl VatRate {
    /// The rate in percent (5.5 for 5.5 %).
    pub fn percent(&self) -> Decimal {
        match self {
            VatRate::Zero => Decimal::ZERO,
            VatRate::Reduced5_5 => Decimal::new(55, 1),
            VatRate::Intermediate10 => Decimal::TEN,
            VatRate::Standard20 => Decimal::new(20, 0),
        }
    }

    /// The amount excl. VAT of an amount incl. VAT, rounded to the cent.
    pub fn excl_vat(&self, incl_vat: Money) -> Money {
        Money::round(
            incl_vat.amount() * Decimal::ONE_HUNDRED / (Decimal::ONE_HUNDRED + self.percent()),
        )
    }

    /// The VAT on an amount excl. VAT, rounded to the cent.
    pub fn vat_on(&self, excl_vat: Money) -> Money {
        Money::round(excl_vat.amount() * self.percent() / Decimal::ONE_HUNDRED)
    }
}

impl fmt::Display for VatRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.percent().normalize())
    }
}

impl TryFrom<String> for VatRate {
    type Error = InvalidVatRate;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for VatRate {
    type Err = InvalidVatRate;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d: Decimal = s
            .trim()
            .parse()
            .map_err(|_| InvalidVatRate(s.chars().take(40).collect()))?;
        match d.normalize().to_string().as_str() {
            "0" => Ok(VatRate::Zero),
            "5.5" => Ok(VatRate::Reduced5_5),
            "10" => Ok(VatRate::Intermediate10),
            "20" => Ok(VatRate::Standard20),
            _ => Err(InvalidVatRate(s.chars().take(40).collect())),
        }
    }
}

impl From<VatRate> for String {
    fn from(v: VatRate) -> String {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn food_vat_splits_an_amount_incl_vat() {
        let incl: Money = "10.55".parse().unwrap();
        assert_eq!(VatRate::Reduced5_5.excl_vat(incl).to_string(), "10.00");
        assert_eq!(
            VatRate::Standard20
                .vat_on("3.00".parse().unwrap())
                .to_string(),
            "0.60"
        );
    }

    #[test]
    fn only_the_four_rates_are_accepted() {
        assert_eq!("5.5".parse::<VatRate>(), Ok(VatRate::Reduced5_5));
        assert_eq!("20.0".parse::<VatRate>(), Ok(VatRate::Standard20));
        assert!("7".parse::<VatRate>().is_err());
        assert_eq!(
            serde_json::to_string(&VatRate::Reduced5_5).unwrap(),
            "\"5.5\""
        );
    }
}
