//! Fee lines: computing them, recomputing them (audit), splitting fixed parts, refunding them.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::ProducerId;
use crate::money::Money;
use crate::vat::VatRate;

use super::error::FeeError;
use super::rule::{
    AppliesTo, Beneficiary, FeeBase, FeePeriod, FeeRule, FeeSchedule, FixedPer, Share,
};

/// How amounts are rounded: half away from zero to the cent, at each line (R-FEE-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Rounding {
    #[default]
    #[serde(rename = "half_away_from_zero_cent")]
    HalfAwayFromZeroCent,
}

/// One fee charged to a producer for one beneficiary and one rule, with everything that
/// produced it. `amount_excl_vat = round(base_amount * rate) + fixed_part`, then the period's
/// threshold (zero below it), floor and cap; `vat = round(amount_excl_vat * vat_rate)`;
/// `amount_incl_vat = amount_excl_vat + vat`. [`recompute`] does exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeLine {
    /// The schedule the rule belongs to (R-FEE-3, R-FEE-5); absent on lines recorded before
    /// schedules were chosen per market (the rule id names it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub rule_id: String,
    pub rule_version: u32,
    pub label: String,
    pub beneficiary: Beneficiary,
    pub base_kind: FeeBase,
    pub base_amount: Money,
    pub rate: Decimal,
    /// The fixed part included in this line (this producer's share of it), excl. VAT.
    pub fixed_part: Money,
    /// Set for lines billed per period (subscriptions, monthly fees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<FeePeriod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Money>,
    pub rounding: Rounding,
    pub vat_rate: VatRate,
    pub amount_excl_vat: Money,
    pub vat: Money,
    pub amount_incl_vat: Money,
}

/// Recomputes a line's amounts from its recorded inputs. An auditor compares the result with
/// the recorded line: equal means the line is right (R-FEE-3).
pub fn recompute(line: &FeeLine) -> FeeLine {
    let mut excl = match line.rounding {
        Rounding::HalfAwayFromZeroCent => line.base_amount.times(line.rate) + line.fixed_part,
    };
    if line.threshold.is_some_and(|t| line.base_amount < t) {
        excl = Money::ZERO;
    } else {
        if let Some(floor) = line.floor {
            excl = excl.max(floor);
        }
        if let Some(cap) = line.cap {
            excl = excl.min(cap);
        }
    }
    let vat = line.vat_rate.vat_on(excl);
    FeeLine {
        amount_excl_vat: excl,
        vat,
        amount_incl_vat: excl + vat,
        ..line.clone()
    }
}

/// One producer's share of a sale or payment, the input of the per-sale fee rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeInput {
    /// The business date (Europe/Paris) of the payment or sale: picks the rules in force.
    pub on: NaiveDate,
    /// Paid online (the payment provider's rules apply) or on site.
    pub online: bool,
    pub amount_incl_vat: Money,
    pub amount_excl_vat: Money,
    /// Items sold (for fixed parts per item).
    pub items: u32,
    /// Producer orders (for fixed parts per order), usually 1.
    pub orders: u32,
}

impl FeeInput {
    fn check(&self) -> Result<(), FeeError> {
        if self.amount_incl_vat.is_negative() || self.amount_excl_vat.is_negative() {
            return Err(FeeError::NegativeAmount);
        }
        if self.amount_excl_vat > self.amount_incl_vat {
            return Err(FeeError::ExclVatAboveInclVat {
                excl_vat: self.amount_excl_vat,
                incl_vat: self.amount_incl_vat,
            });
        }
        Ok(())
    }
}

/// One producer's part of a payment shared by several producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerShare {
    pub producer: ProducerId,
    pub amount_incl_vat: Money,
    pub amount_excl_vat: Money,
    pub items: u32,
    pub orders: u32,
}

/// The fee lines of one producer of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerFees {
    pub producer: ProducerId,
    pub lines: Vec<FeeLine>,
}

fn line(
    rule: &FeeRule,
    share: &Share,
    base_amount: Money,
    fixed_part: Money,
    period: Option<FeePeriod>,
) -> FeeLine {
    let per_period = period.is_some();
    recompute(&FeeLine {
        schedule: None,
        rule_id: rule.id.clone(),
        rule_version: rule.version,
        label: rule.label.clone(),
        beneficiary: share.beneficiary,
        base_kind: rule.base,
        base_amount,
        rate: share.rate,
        fixed_part,
        period,
        threshold: rule.turnover_threshold.filter(|_| per_period),
        floor: rule.floor_per_period.filter(|_| per_period),
        cap: rule.cap_per_period.filter(|_| per_period),
        rounding: Rounding::HalfAwayFromZeroCent,
        vat_rate: rule.vat_on_fee,
        amount_excl_vat: Money::ZERO,
        vat: Money::ZERO,
        amount_incl_vat: Money::ZERO,
    })
}

fn base_of(rule: &FeeRule, incl_vat: Money, excl_vat: Money) -> Money {
    match rule.base {
        FeeBase::InclVat => incl_vat,
        FeeBase::ExclVat => excl_vat,
    }
}

/// The lines of one per-sale rule for one producer; `payment_fixed` is the producer's share of
/// a fixed part per payment (the whole part when alone on the payment).
fn sale_lines(rule: &FeeRule, input: &FeeInput, payment_fixed: Option<Money>) -> Vec<FeeLine> {
    let base = base_of(rule, input.amount_incl_vat, input.amount_excl_vat);
    let fixed_total = match &rule.fixed {
        None => Money::ZERO,
        Some(f) => match f.per {
            FixedPer::Payment => payment_fixed.unwrap_or(f.amount),
            FixedPer::Order => f.amount.times(Decimal::from(input.orders)),
            FixedPer::Item => f.amount.times(Decimal::from(input.items)),
            FixedPer::Period => Money::ZERO,
        },
    };
    rule.split
        .iter()
        .map(|share| {
            let fixed = match &rule.fixed {
                Some(f) if f.beneficiary == share.beneficiary => fixed_total,
                _ => Money::ZERO,
            };
            line(rule, share, base, fixed, None)
        })
        .collect()
}

impl FeeSchedule {
    /// The fees of one producer's share of a sale or payment (R-FEE-1, R-FEE-2): one line per
    /// per-sale rule in force and beneficiary. A fixed part per payment is charged whole: use
    /// [`FeeSchedule::fees_for_payment`] when several producers share the payment.
    /// No rule in force means no fee (an empty list).
    pub fn fees_for_share(&self, input: &FeeInput) -> Result<Vec<FeeLine>, FeeError> {
        input.check()?;
        Ok(self.stamped(
            self.rules_in_force(input.on, input.online)
                .into_iter()
                .filter(|r| r.period.is_none())
                .flat_map(|r| sale_lines(r, input, None))
                .collect(),
        ))
    }

    /// The fees of every producer of one payment; a fixed part per payment is split across them
    /// in proportion to their amounts incl. VAT, the rounding remainder going to the largest
    /// (R-FEE-1).
    pub fn fees_for_payment(
        &self,
        on: NaiveDate,
        online: bool,
        shares: &[ProducerShare],
    ) -> Result<Vec<ProducerFees>, FeeError> {
        let inputs: Vec<FeeInput> = shares
            .iter()
            .map(|s| FeeInput {
                on,
                online,
                amount_incl_vat: s.amount_incl_vat,
                amount_excl_vat: s.amount_excl_vat,
                items: s.items,
                orders: s.orders,
            })
            .collect();
        for input in &inputs {
            input.check()?;
        }
        let mut result: Vec<ProducerFees> = shares
            .iter()
            .map(|s| ProducerFees {
                producer: s.producer,
                lines: Vec::new(),
            })
            .collect();
        for rule in self
            .rules_in_force(on, online)
            .into_iter()
            .filter(|r| r.period.is_none())
        {
            let fixed_shares: Option<Vec<Money>> = match &rule.fixed {
                Some(f) if f.per == FixedPer::Payment => {
                    let amounts: Vec<((), Money)> =
                        shares.iter().map(|s| ((), s.amount_incl_vat)).collect();
                    Some(
                        split_fixed_part(f.amount, &amounts)?
                            .into_iter()
                            .map(|(_, m)| m)
                            .collect(),
                    )
                }
                _ => None,
            };
            for (i, (input, fees)) in inputs.iter().zip(result.iter_mut()).enumerate() {
                let fixed = fixed_shares.as_ref().and_then(|v| v.get(i).copied());
                fees.lines
                    .extend(self.stamped(sale_lines(rule, input, fixed)));
            }
        }
        Ok(result)
    }

    /// The fees billed for one period (a month or a year starting on `period_start`) on the
    /// producer's turnover of that period: per-period rules (Open Food Network style fixed +
    /// rate x turnover, floor, cap, threshold) and subscriptions (R-FEE-5).
    pub fn period_fees(
        &self,
        period_start: NaiveDate,
        online: bool,
        turnover_incl_vat: Money,
        turnover_excl_vat: Money,
    ) -> Result<Vec<FeeLine>, FeeError> {
        FeeInput {
            on: period_start,
            online,
            amount_incl_vat: turnover_incl_vat,
            amount_excl_vat: turnover_excl_vat,
            items: 0,
            orders: 0,
        }
        .check()?;
        let mut lines = Vec::new();
        for rule in self.rules_in_force(period_start, online) {
            let Some(period) = rule.period else { continue };
            let base = base_of(rule, turnover_incl_vat, turnover_excl_vat);
            for share in &rule.split {
                let fixed = match &rule.fixed {
                    Some(f) if f.beneficiary == share.beneficiary => f.amount,
                    _ => Money::ZERO,
                };
                lines.push(line(rule, share, base, fixed, Some(period)));
            }
        }
        Ok(self.stamped(lines))
    }

    /// R-CAT-2: the share of a customer price incl. VAT that the per-sale rules of `kind`
    /// (`OnlinePayment` or `AllSales`) in force on `on` take at source, fees' VAT included,
    /// for a product at `vat`: the sum over those rules of `rate x (1 + vat_on_fee)`, divided
    /// by `1 + vat` for a rule whose base is the amount excl. VAT. Fixed parts are left out (a
    /// price cannot carry a part per payment). The customer price is then
    /// [`crate::catalog::OfferTerms::customer_price`] of these shares.
    pub fn share_of_price(
        &self,
        on: NaiveDate,
        online: bool,
        kind: AppliesTo,
        vat: VatRate,
    ) -> Decimal {
        let hundred = Decimal::ONE_HUNDRED;
        self.rules_in_force(on, online)
            .into_iter()
            .filter(|r| r.period.is_none() && r.applies_to == kind)
            .map(|r| {
                let rate: Decimal = r.split.iter().map(|s| s.rate).sum();
                let with_vat = rate * (Decimal::ONE + r.vat_on_fee.percent() / hundred);
                match r.base {
                    FeeBase::InclVat => with_vat,
                    FeeBase::ExclVat => with_vat / (Decimal::ONE + vat.percent() / hundred),
                }
            })
            .sum()
    }

    /// The lines, each naming this schedule.
    fn stamped(&self, mut lines: Vec<FeeLine>) -> Vec<FeeLine> {
        for l in &mut lines {
            l.schedule = Some(self.name.clone());
        }
        lines
    }
}

/// Splits a fixed part across shares in proportion to their amounts (R-FEE-1). Each share is
/// rounded half away from zero to the cent and the remainder (positive or negative, at most
/// half a cent per share) goes to the largest share (the first of equals), so the parts add up
/// exactly to `fixed` and every other part is within half a cent of its exact share. Refused
/// when an amount is negative or all are zero.
pub fn split_fixed_part<K: Clone>(
    fixed: Money,
    shares: &[(K, Money)],
) -> Result<Vec<(K, Money)>, FeeError> {
    if fixed.is_negative() || shares.iter().any(|(_, m)| m.is_negative()) {
        return Err(FeeError::NegativeAmount);
    }
    let total: Money = shares.iter().map(|(_, m)| *m).sum();
    if total.is_zero() {
        return Err(FeeError::NothingToSplit);
    }
    let mut parts: Vec<(K, Money)> = shares
        .iter()
        .map(|(k, m)| {
            (
                k.clone(),
                Money::round(fixed.amount() * m.amount() / total.amount()),
            )
        })
        .collect();
    let given: Money = parts.iter().map(|(_, m)| *m).sum();
    let remainder = fixed - given;
    let mut largest = 0;
    for (i, (_, m)) in shares.iter().enumerate() {
        if *m > shares[largest].1 {
            largest = i;
        }
    }
    if let Some(part) = parts.get_mut(largest) {
        part.1 += remainder;
    }
    Ok(parts)
}

/// The fee given back on one charged line because of a refund (R-FEE-4). Cumulative: after
/// `x` of `paid` is refunded, the fees given back are `round(variable * x / paid)` plus the
/// fixed parts given back so far (`fixed_back`: the per-payment shares of the payments whose
/// producer share is wholly refunded), and the whole line once everything is refunded; this
/// refund is the difference with the state before it. So the variable part is given back in
/// proportion to each refund, a fixed part only when its payment is wholly refunded and only
/// once, and the total never exceeds the fee charged.
///
/// `paid` is what the line was charged on: the producer's share of one payment, or of every
/// payment of a sale when the line merges them (then `charged_fixed_part` is the sum of the
/// payments' fixed shares and `fixed_back_*` name which of them came back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRefund {
    /// What the refund belongs to (`refund:<id>`, `before-credit`, `order:<id>:<total>`).
    #[serde(default)]
    pub refund: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub rule_id: String,
    pub rule_version: u32,
    #[serde(default)]
    pub label: String,
    pub beneficiary: Beneficiary,
    #[serde(default = "default_base_kind")]
    pub base_kind: FeeBase,
    /// The charged line's rate (for reading; the refund is proportional to the charged fee).
    #[serde(default)]
    pub rate: Decimal,
    pub vat_rate: VatRate,
    /// The charged line's amounts.
    pub charged_excl_vat: Money,
    pub charged_vat: Money,
    pub charged_fixed_part: Money,
    /// The amount incl. VAT the fee was charged on (the producer's share of the payment).
    pub paid: Money,
    pub refunded_before: Money,
    pub refunded_now: Money,
    /// Fixed parts given back before this refund, and by it.
    #[serde(default)]
    pub fixed_back_before: Money,
    #[serde(default)]
    pub fixed_back_now: Money,
    pub rounding: Rounding,
    pub amount_excl_vat: Money,
    pub vat: Money,
    pub amount_incl_vat: Money,
}

fn default_base_kind() -> FeeBase {
    FeeBase::InclVat
}

/// Cumulative (excl. VAT, VAT) given back once `refunded` out of `paid` has been refunded and
/// `fixed_back` of the fixed part.
fn refunded_after(r: &FeeRefund, refunded: Money, fixed_back: Money) -> (Money, Money) {
    if r.paid.is_zero() || (refunded.is_zero() && fixed_back.is_zero()) {
        return (Money::ZERO, Money::ZERO);
    }
    let fixed = r
        .charged_fixed_part
        .min(r.charged_excl_vat)
        .max(Money::ZERO);
    let variable = (r.charged_excl_vat - fixed).max(Money::ZERO);
    if refunded >= r.paid {
        return (r.charged_excl_vat, r.charged_vat);
    }
    let excl = Money::round(variable.amount() * refunded.amount() / r.paid.amount())
        + fixed_back.min(fixed).max(Money::ZERO);
    let vat = r.vat_rate.vat_on(excl).min(r.charged_vat);
    (excl, vat)
}

/// Recomputes a fee refund from its recorded inputs (audit).
pub fn recompute_refund(r: &FeeRefund) -> FeeRefund {
    let (excl_before, vat_before) = refunded_after(r, r.refunded_before, r.fixed_back_before);
    let (excl_after, vat_after) = refunded_after(
        r,
        r.refunded_before + r.refunded_now,
        r.fixed_back_before + r.fixed_back_now,
    );
    let excl = excl_after - excl_before;
    let vat = vat_after - vat_before;
    FeeRefund {
        amount_excl_vat: excl,
        vat,
        amount_incl_vat: excl + vat,
        ..r.clone()
    }
}

impl FeeRefund {
    /// The refund as a fee line given back (negative amounts), for ledgers that list fee
    /// lines: base = the amount refunded, fixed part = the fixed part given back.
    pub fn as_line(&self) -> FeeLine {
        FeeLine {
            schedule: self.schedule.clone(),
            rule_id: self.rule_id.clone(),
            rule_version: self.rule_version,
            label: format!("{} (given back)", self.label),
            beneficiary: self.beneficiary,
            base_kind: self.base_kind,
            base_amount: -self.refunded_now,
            rate: self.rate,
            fixed_part: -self.fixed_back_now,
            period: None,
            threshold: None,
            floor: None,
            cap: None,
            rounding: self.rounding,
            vat_rate: self.vat_rate,
            amount_excl_vat: -self.amount_excl_vat,
            vat: -self.vat,
            amount_incl_vat: -self.amount_incl_vat,
        }
    }
}

/// The fee given back on one charged `line` (R-FEE-4) when `refunding_now` of the `paid` it
/// was charged on is refunded after `refunded_before`, with `fixed_back_now` of its fixed part
/// coming back (after `fixed_back_before`). `refund` names what the refund belongs to.
#[allow(clippy::too_many_arguments)]
pub fn refund_fee_line(
    line: &FeeLine,
    refund: &str,
    paid: Money,
    refunded_before: Money,
    refunding_now: Money,
    fixed_back_before: Money,
    fixed_back_now: Money,
) -> Result<FeeRefund, FeeError> {
    if paid.is_negative()
        || refunded_before.is_negative()
        || refunding_now.is_negative()
        || fixed_back_before.is_negative()
        || fixed_back_now.is_negative()
    {
        return Err(FeeError::NegativeAmount);
    }
    if refunded_before + refunding_now > paid {
        return Err(FeeError::RefundAbovePaid {
            refunded: refunded_before + refunding_now,
            paid,
        });
    }
    Ok(recompute_refund(&FeeRefund {
        refund: refund.to_string(),
        schedule: line.schedule.clone(),
        rule_id: line.rule_id.clone(),
        rule_version: line.rule_version,
        label: line.label.clone(),
        beneficiary: line.beneficiary,
        base_kind: line.base_kind,
        rate: line.rate,
        vat_rate: line.vat_rate,
        charged_excl_vat: line.amount_excl_vat,
        charged_vat: line.vat,
        charged_fixed_part: line.fixed_part,
        paid,
        refunded_before,
        refunded_now: refunding_now,
        fixed_back_before,
        fixed_back_now,
        rounding: Rounding::HalfAwayFromZeroCent,
        amount_excl_vat: Money::ZERO,
        vat: Money::ZERO,
        amount_incl_vat: Money::ZERO,
    }))
}

/// The fees given back when `refunding_now` of a producer's `paid` share of one payment is
/// refunded, after `refunded_before` was refunded already (R-FEE-4). One [`FeeRefund`] per
/// charged line; the fixed part comes back with the last cent.
pub fn refund_fees(
    charged: &[FeeLine],
    paid: Money,
    refunded_before: Money,
    refunding_now: Money,
) -> Result<Vec<FeeRefund>, FeeError> {
    charged
        .iter()
        .map(|line| {
            refund_fee_line(
                line,
                "",
                paid,
                refunded_before,
                refunding_now,
                Money::ZERO,
                Money::ZERO,
            )
        })
        .collect()
}
