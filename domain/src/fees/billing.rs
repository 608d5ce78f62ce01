//! Billing per period (R-ACC-3, R-FEE-5): a plan's subscription and the per-period rules of a
//! market's schedule (Open Food Network style: a fixed part plus a rate on the month's
//! turnover, with a threshold, floor and cap), billed once per period to a producer.
//!
//! Periods are calendar months (Europe/Paris dates). A subscription is billed in advance, from
//! the first whole month of the plan (the month it starts in is free): a monthly one every
//! month, a yearly one (twelve months at the yearly price) in that first month and every twelve
//! months after. Per-period rules are billed
//! in arrears, on the turnover of the sales validated during the month, for each market whose
//! schedule has rules billed monthly. Rules billed yearly (CoopCircuits, invoiced to a
//! collective's manager; a market's yearly subscription) are computed by
//! [`FeeSchedule::period_fees`] but not billed to producers. Each bill has a key
//! ([`subscription_key`], [`period_key`]) that the producer's balance accepts once.

use chrono::{Datelike, Months, NaiveDate};
use rust_decimal::Decimal;

use crate::config::{PlanTerms, SubscriptionBilling};
use crate::ids::MarketId;
use crate::money::Money;
use crate::vat::VatRate;

use super::compute::{recompute, FeeLine, Rounding};
use super::error::FeeError;
use super::rule::{Beneficiary, FeeBase, FeePeriod, FeeSchedule};

/// The first day of the month of `d`.
pub fn month_of(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The first day of the month after the month of `d`.
pub fn next_month(d: NaiveDate) -> NaiveDate {
    month_of(d).checked_add_months(Months::new(1)).unwrap_or(d)
}

/// The first day of the month before the month of `d`.
pub fn previous_month(d: NaiveDate) -> NaiveDate {
    month_of(d).checked_sub_months(Months::new(1)).unwrap_or(d)
}

/// The key of a subscription bill for the month starting `month`.
pub fn subscription_key(month: NaiveDate) -> String {
    format!("subscription:{}", month.format("%Y-%m"))
}

/// The key of the per-period fees of one market for the month starting `month`.
pub fn period_key(market: MarketId, month: NaiveDate) -> String {
    format!("period:{market}:{}", month.format("%Y-%m"))
}

/// Whether a plan started on `plan_since` and billed `billing` is billed for `month`: from the
/// month after the one it started in.
pub fn subscription_due(
    plan_since: NaiveDate,
    billing: SubscriptionBilling,
    month: NaiveDate,
) -> bool {
    let start = next_month(plan_since);
    let month = month_of(month);
    if month < start {
        return false;
    }
    match billing {
        SubscriptionBilling::Monthly => true,
        SubscriptionBilling::Yearly => {
            let months =
                (month.year() - start.year()) * 12 + month.month() as i32 - start.month() as i32;
            months % 12 == 0
        }
    }
}

/// The subscription fee line of a plan for the period starting `month` (R-ACC-3): the plan's
/// monthly price excl. VAT, or twelve times its yearly-billed monthly price, 20 % VAT, as a
/// fixed part per period. `None` for a plan without a subscription. The line names the plan
/// terms it came from (`plans`, rule `plan.<plan>.<billing>`, version = the terms' first day
/// as `YYYYMMDD`), so an auditor finds the price in plans.json.
pub fn subscription_line(terms: &PlanTerms, billing: SubscriptionBilling) -> Option<FeeLine> {
    let sub = terms.subscription.as_ref()?;
    let (amount, period, label, name) = match billing {
        SubscriptionBilling::Monthly => (
            sub.monthly_excl_vat_billed_monthly,
            FeePeriod::Monthly,
            format!("Abonnement {} (mensuel)", terms.plan),
            "monthly",
        ),
        SubscriptionBilling::Yearly => (
            sub.monthly_excl_vat_billed_yearly.times(Decimal::from(12)),
            FeePeriod::Yearly,
            format!("Abonnement {} (annuel)", terms.plan),
            "yearly",
        ),
    };
    let version = terms.valid_from.year() as u32 * 10_000
        + terms.valid_from.month() * 100
        + terms.valid_from.day();
    Some(recompute(&FeeLine {
        schedule: Some("plans".into()),
        rule_id: format!(
            "plan.{}.subscription_{name}",
            terms.plan.to_string().to_lowercase()
        ),
        rule_version: version,
        label,
        beneficiary: Beneficiary::Platform,
        base_kind: FeeBase::ExclVat,
        base_amount: Money::ZERO,
        rate: Decimal::ZERO,
        fixed_part: amount,
        period: Some(period),
        threshold: None,
        floor: None,
        cap: None,
        rounding: Rounding::HalfAwayFromZeroCent,
        vat_rate: VatRate::Standard20,
        amount_excl_vat: Money::ZERO,
        vat: Money::ZERO,
        amount_incl_vat: Money::ZERO,
    }))
}

/// The monthly per-period fees of `schedule` for the month starting `month`, on a producer's
/// turnover of that month in one market (R-FEE-5): the lines of the rules billed monthly (a
/// fixed part plus a rate on the turnover, or a market's subscription rule), zero lines left
/// out. Yearly rules are not billed here (see the module documentation).
pub fn monthly_period_fees(
    schedule: &FeeSchedule,
    month: NaiveDate,
    online: bool,
    turnover_incl_vat: Money,
    turnover_excl_vat: Money,
) -> Result<Vec<FeeLine>, FeeError> {
    Ok(schedule
        .period_fees(
            month_of(month),
            online,
            turnover_incl_vat,
            turnover_excl_vat,
        )?
        .into_iter()
        .filter(|l| l.period == Some(FeePeriod::Monthly))
        .filter(|l| !l.amount_incl_vat.is_zero())
        .collect())
}
