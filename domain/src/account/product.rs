//! What a product is, and the checks on its fields (R-ACC-5), shared with catalog offers.

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::vat::VatRate;

/// Longest product (or catalog) name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest unit ("kg", "piece", "bottle", "jar of 500 g"), in characters.
pub const MAX_UNIT_CHARS: usize = 30;

/// A product's sale terms as the producer sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDetails {
    pub name: String,
    /// Sale unit: "kg", "piece", "bottle"...
    pub unit: String,
    /// Price of one unit, VAT included; above zero.
    pub price_incl_vat: Money,
    /// 5.5 % (food) by default; 10 %, 20 % or 0.
    pub vat: VatRate,
    /// Sold by weight: the final amount is known after weighing (R-ORD-4).
    pub variable_weight: bool,
    /// Estimated weight of one unit in kg, for variable-weight products (the price is then per kg).
    #[serde(default)]
    pub estimated_weight_kg: Option<rust_decimal::Decimal>,
    /// Units are ordered by multiples of this (bottles by 6); at least 2 when set.
    pub packaging_multiple: Option<u32>,
}

/// Trims `text` and checks it holds 1..=`max` characters.
pub(crate) fn trimmed_within(text: &str, max: usize) -> Option<String> {
    let trimmed = text.trim();
    let len = trimmed.chars().count();
    (1..=max).contains(&len).then(|| trimmed.to_string())
}

/// A name of 1..=[`MAX_NAME_CHARS`] characters, trimmed.
pub(crate) fn check_name(name: &str) -> Option<String> {
    trimmed_within(name, MAX_NAME_CHARS)
}

/// A unit of 1..=[`MAX_UNIT_CHARS`] characters, trimmed.
pub(crate) fn check_unit(unit: &str) -> Option<String> {
    trimmed_within(unit, MAX_UNIT_CHARS)
}

/// A packaging multiple is absent or at least 2 (a multiple of 1 means none).
pub(crate) fn check_packaging_multiple(multiple: Option<u32>) -> bool {
    multiple.is_none_or(|m| m >= 2)
}
