//! Exact money: euros as `rust_decimal`, rounded half away from zero to the cent per line.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// An amount in euros, always held to the cent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Money(Decimal);

/// Why a text or a decimal is not a valid amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not a decimal amount")]
    NotADecimal(String),
    #[error("'{0}' has more than two decimals")]
    TooManyDecimals(String),
    #[error("'{0}' is out of range")]
    OutOfRange(String),
}

/// Largest amount accepted from outside: one billion euros.
const MAX_ABS: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Rounds any decimal half away from zero to the cent (the rule for every computed line).
    pub fn round(amount: Decimal) -> Money {
        Money(amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
    }

    /// An exact amount: refuses more than two decimals (input from users).
    pub fn exact(amount: Decimal) -> Result<Money, MoneyError> {
        let normalized = amount.normalize();
        if normalized.scale() > 2 {
            return Err(MoneyError::TooManyDecimals(amount.to_string()));
        }
        if normalized.abs() > MAX_ABS {
            return Err(MoneyError::OutOfRange(amount.to_string()));
        }
        Ok(Money::round(amount))
    }

    pub fn from_cents(cents: i64) -> Money {
        Money(Decimal::new(cents, 2))
    }

    pub fn cents(&self) -> i64 {
        // Held to the cent and bounded, so this is exact.
        (self.0 * Decimal::ONE_HUNDRED)
            .trunc()
            .try_into()
            .unwrap_or(i64::MAX)
    }

    pub fn amount(&self) -> Decimal {
        self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn is_negative(&self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// `self * factor`, rounded to the cent.
    pub fn times(&self, factor: Decimal) -> Money {
        Money::round(self.0 * factor)
    }

    pub fn max(self, other: Money) -> Money {
        if self >= other {
            self
        } else {
            other
        }
    }

    pub fn min(self, other: Money) -> Money {
        if self <= other {
            self
        } else {
            other
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.is_empty() || trimmed.len() > 32 {
            return Err(MoneyError::NotADecimal(s.chars().take(40).collect()));
        }
        let d = Decimal::from_str_exact(trimmed)
            .map_err(|_| MoneyError::NotADecimal(trimmed.to_string()))?;
        Money::exact(d)
    }
}

impl TryFrom<String> for Money {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Money> for String {
    fn from(m: Money) -> String {
        m.to_string()
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        self.0 -= rhs.0;
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounds_half_away_from_zero_to_the_cent() {
        assert_eq!(Money::round(dec!(0.125)).to_string(), "0.13");
        assert_eq!(Money::round(dec!(-0.125)).to_string(), "-0.13");
        assert_eq!(Money::round(dec!(0.124)).to_string(), "0.12");
        assert_eq!(Money::round(dec!(2.675)).to_string(), "2.68");
    }

    #[test]
    fn three_decimals_are_refused_from_input() {
        assert_eq!(
            "12.345".parse::<Money>(),
            Err(MoneyError::TooManyDecimals("12.345".into()))
        );
        assert_eq!("12.340".parse::<Money>().unwrap().to_string(), "12.34");
        assert!("abc".parse::<Money>().is_err());
        assert!("1e3".parse::<Money>().is_err());
        assert!("".parse::<Money>().is_err());
        assert!("9999999999999".parse::<Money>().is_err());
    }

    #[test]
    fn serializes_as_a_string() {
        let m: Money = "12.3".parse().unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"12.30\"");
        let back: Money = serde_json::from_str("\"12.30\"").unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Money>("\"1.001\"").is_err());
    }

    proptest! {
        #[test]
        fn cents_round_trip(c in -10_000_000_000i64..10_000_000_000i64) {
            let m = Money::from_cents(c);
            prop_assert_eq!(m.cents(), c);
            prop_assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }
    }
}
