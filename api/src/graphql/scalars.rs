//! Scalars: money and decimals as strings (never through f64), dates in ISO 8601.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::NaiveDate;
use etal_domain::Money as DomainMoney;
use rust_decimal::Decimal as RustDecimal;

/// An amount in euros as a string with at most two decimals ("12.30"). Input must be a JSON
/// string: a number is refused, so that no amount ever passes through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(pub DomainMoney);

fn parse_money(value: &Value) -> Result<DomainMoney, String> {
    match value {
        Value::String(s) if s.len() <= 32 => {
            s.trim().parse::<DomainMoney>().map_err(|e| e.to_string())
        }
        Value::String(_) => Err("an amount has at most 32 characters".into()),
        _ => Err("an amount is a string such as \"12.30\", never a number".into()),
    }
}

#[Scalar(name = "Money")]
impl ScalarType for Money {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_money(&value)
            .map(Money)
            .map_err(InputValueError::custom)
    }

    fn is_valid(value: &Value) -> bool {
        parse_money(value).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// An exact decimal as a string ("1.250"): weights in kg (at most 3 decimals), percentages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal(pub RustDecimal);

fn parse_decimal(value: &Value) -> Result<RustDecimal, String> {
    match value {
        Value::String(s) if s.len() <= 32 => {
            let d: RustDecimal = s
                .trim()
                .parse()
                .map_err(|_| format!("'{s}' is not a decimal"))?;
            if d.normalize().scale() > 3 {
                return Err(format!("'{s}' has more than three decimals"));
            }
            if d.abs() > RustDecimal::from(1_000_000) {
                return Err(format!("'{s}' is out of range"));
            }
            Ok(d)
        }
        Value::String(_) => Err("a decimal has at most 32 characters".into()),
        _ => Err("a decimal is a string such as \"1.250\", never a number".into()),
    }
}

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_decimal(&value)
            .map(Decimal)
            .map_err(InputValueError::custom)
    }

    fn is_valid(value: &Value) -> bool {
        parse_decimal(value).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.normalize().to_string())
    }
}

/// A calendar date, ISO 8601 ("2026-03-11"), in Europe/Paris where it is a business date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

fn parse_date(value: &Value) -> Result<NaiveDate, String> {
    match value {
        Value::String(s) if s.len() <= 16 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| format!("'{s}' is not a date (YYYY-MM-DD)")),
        _ => Err("a date is a string YYYY-MM-DD".into()),
    }
}

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_date(&value)
            .map(Date)
            .map_err(InputValueError::custom)
    }

    fn is_valid(value: &Value) -> bool {
        parse_date(value).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// The VAT rate of a product: "0", "5.5", "10" or "20".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VatRate(pub etal_domain::VatRate);

fn parse_vat(value: &Value) -> Result<etal_domain::VatRate, String> {
    match value {
        Value::String(s) if s.len() <= 8 => s
            .parse()
            .map_err(|e: etal_domain::vat::InvalidVatRate| e.to_string()),
        _ => Err("a VAT rate is a string: \"0\", \"5.5\", \"10\" or \"20\"".into()),
    }
}

#[Scalar(name = "VatRate")]
impl ScalarType for VatRate {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_vat(&value)
            .map(VatRate)
            .map_err(InputValueError::custom)
    }

    fn is_valid(value: &Value) -> bool {
        parse_vat(value).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_a_string_with_two_decimals_at_most() {
        assert!(Money::is_valid(&Value::String("12.30".into())));
        assert!(!Money::is_valid(&Value::String("12.305".into())));
        assert!(!Money::is_valid(&Value::from(12.3)));
        assert_eq!(
            Money::parse(Value::String("12.3".into()))
                .unwrap()
                .to_value(),
            Value::String("12.30".into())
        );
    }

    #[test]
    fn weights_have_three_decimals_at_most() {
        assert!(Decimal::is_valid(&Value::String("1.250".into())));
        assert!(!Decimal::is_valid(&Value::String("1.2501".into())));
        assert!(!Decimal::is_valid(&Value::from(1)));
    }
}
