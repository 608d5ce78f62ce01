//! The fee engine (R-FEE-1..5): dated, versioned fee rules read from configuration, and the fee
//! lines they produce.
//!
//! * A [`FeeRule`] says who takes what: a rate on a base (amount incl. or excl. VAT), an optional
//!   fixed part (per payment, per order, per item or per billing period), optional per-period
//!   floor, cap and turnover threshold, the beneficiaries' shares and the VAT on the fee.
//! * A [`FeeSchedule`] is a named set of rules (one platform's model); the versions of a rule are
//!   distinguished by `version` and `valid_from`, and [`FeeSchedule::rules_in_force`] picks, for
//!   each rule id, the latest version in force on a date.
//! * Each computed [`FeeLine`] records every input that produced it (rule id and version,
//!   beneficiary, base kind and amount, rate, fixed part, period limits, rounding, VAT rate), so
//!   that [`recompute`] gives back the same line: an auditor needs nothing else (R-FEE-3).
//!   Every amount is rounded half away from zero to the cent, line by line.
//! * [`split_fixed_part`] shares a per-payment fixed part across the producers of one payment
//!   (R-FEE-1) and [`refund_fees`] gives back fees in proportion to a refund (R-FEE-4).
//!
//! Configuration files live in `config/fees/` at the repository root, one JSON file per
//! platform, each holding one or more named schedules (see [`FeeSchedules::from_json`]).
//! The caller (the API) loads them, picks the schedule of the market and computes the lines;
//! events carry the lines, frozen, so history never depends on today's configuration.

mod billing;
mod compute;
mod error;
mod rule;
#[cfg(test)]
mod tests;

pub use billing::{
    month_of, monthly_period_fees, next_month, period_key, previous_month, subscription_due,
    subscription_key, subscription_line,
};
pub use compute::{
    recompute, recompute_refund, refund_fee_line, refund_fees, split_fixed_part, FeeInput, FeeLine,
    FeeRefund, ProducerFees, ProducerShare, Rounding,
};
pub use error::FeeError;
pub use rule::{
    AppliesTo, Beneficiary, FeeBase, FeePeriod, FeeRule, FeeSchedule, FeeSchedules, FixedPart,
    FixedPer, Share,
};
