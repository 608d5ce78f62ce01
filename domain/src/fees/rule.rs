//! Fee rules and schedules: dated, versioned configuration (R-FEE-3, R-FEE-5).

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::vat::VatRate;

use super::error::FeeError;

/// The amount a rate applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeBase {
    /// The amount paid by the customer, VAT included.
    InclVat,
    /// The sales excluding VAT.
    ExclVat,
}

/// What a fixed part is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixedPer {
    /// Once per customer payment, split across the producers of the payment in proportion to
    /// their amounts (R-FEE-1).
    Payment,
    /// Once per producer order (a producer's part of one customer order).
    Order,
    /// Once per item sold.
    Item,
    /// Once per billing period (subscriptions, monthly fixed fees); needs `period`.
    Period,
}

/// Who receives (a share of) a fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Beneficiary {
    /// The platform (Cagette, La Ruche qui dit Oui, Locavor, the payment provider at cost...).
    Platform,
    /// The market's host (Ruche host, Locavor manager).
    MarketHost,
}

/// Billing period of a rule billed per period rather than per sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeePeriod {
    Monthly,
    Yearly,
}

/// What a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliesTo {
    /// Only sales paid online (the payment provider's fee).
    OnlinePayment,
    /// Every sale, paid online or on site.
    AllSales,
    /// A subscription, billed per period whatever the sales.
    Subscription,
}

/// A fixed amount added to the fee (excl. VAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedPart {
    pub amount: Money,
    pub per: FixedPer,
    /// Who receives the fixed part; must be one of the rule's shares. Default: the platform.
    #[serde(default = "platform")]
    pub beneficiary: Beneficiary,
}

fn platform() -> Beneficiary {
    Beneficiary::Platform
}

/// One beneficiary's part of a rule: `rate` applies to the rule's base. The shares' rates add up
/// to the rule's rate (20 % = 8.35 % host + 11.65 % platform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub beneficiary: Beneficiary,
    pub rate: Decimal,
}

/// One version of a fee rule. Amounts excl. VAT; `rate` is a fraction (0.03 for 3 %).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRule {
    pub id: String,
    pub version: u32,
    /// First day (Europe/Paris) this version applies.
    pub valid_from: NaiveDate,
    /// First day it no longer applies (exclusive); `None`: until a later version.
    #[serde(default)]
    pub valid_until: Option<NaiveDate>,
    pub label: String,
    pub base: FeeBase,
    pub rate: Decimal,
    #[serde(default)]
    pub fixed: Option<FixedPart>,
    /// Least fee of a period (rules with `period` only).
    #[serde(default)]
    pub floor_per_period: Option<Money>,
    /// Greatest fee of a period (rules with `period` only).
    #[serde(default)]
    pub cap_per_period: Option<Money>,
    /// No fee at all for a period whose turnover (on the rule's base) is below this.
    #[serde(default)]
    pub turnover_threshold: Option<Money>,
    /// Billed per period on the period's turnover instead of per sale.
    #[serde(default)]
    pub period: Option<FeePeriod>,
    pub split: Vec<Share>,
    pub vat_on_fee: VatRate,
    pub applies_to: AppliesTo,
}

const MAX_NAME_CHARS: usize = 80;

fn valid_name(s: &str) -> bool {
    let n = s.trim().chars().count();
    n > 0 && n <= MAX_NAME_CHARS
}

impl FeeRule {
    fn invalid(&self, reason: &'static str) -> FeeError {
        FeeError::InvalidRule {
            id: self.id.clone(),
            version: self.version,
            reason,
        }
    }

    /// Checks one rule on its own.
    pub fn validate(&self) -> Result<(), FeeError> {
        if !valid_name(&self.id) || !valid_name(&self.label) {
            return Err(FeeError::InvalidName);
        }
        if self.version == 0 {
            return Err(self.invalid("versions start at 1"));
        }
        if self.rate < Decimal::ZERO || self.rate >= Decimal::ONE {
            return Err(self.invalid("the rate must be a fraction in [0, 1)"));
        }
        if self.valid_until.is_some_and(|u| u <= self.valid_from) {
            return Err(self.invalid("valid_until must be after valid_from"));
        }
        if self.split.is_empty() {
            return Err(self.invalid("the split needs at least one share"));
        }
        let mut seen = BTreeSet::new();
        for share in &self.split {
            if !seen.insert(share.beneficiary) {
                return Err(self.invalid("a beneficiary appears twice in the split"));
            }
            if share.rate < Decimal::ZERO {
                return Err(self.invalid("a share's rate must not be negative"));
            }
        }
        let total: Decimal = self.split.iter().map(|s| s.rate).sum();
        if total != self.rate {
            return Err(self.invalid("the shares' rates must add up to the rule's rate"));
        }
        if let Some(fixed) = &self.fixed {
            if fixed.amount <= Money::ZERO {
                return Err(self.invalid("a fixed part must be above zero"));
            }
            if !seen.contains(&fixed.beneficiary) {
                return Err(self.invalid("the fixed part's beneficiary must be in the split"));
            }
            if (fixed.per == FixedPer::Period) != self.period.is_some() {
                return Err(self.invalid("a fixed part per period needs a period, and only then"));
            }
        }
        let limits = [
            self.floor_per_period,
            self.cap_per_period,
            self.turnover_threshold,
        ];
        if limits.iter().flatten().any(|m| m.is_negative()) {
            return Err(self.invalid("floor, cap and threshold must not be negative"));
        }
        if self.period.is_none() && limits.iter().any(Option::is_some) {
            return Err(self.invalid("floor, cap and threshold need a billing period"));
        }
        if (self.floor_per_period.is_some() || self.cap_per_period.is_some())
            && self.split.len() != 1
        {
            return Err(self.invalid("a floor or a cap needs a single beneficiary"));
        }
        if let (Some(floor), Some(cap)) = (self.floor_per_period, self.cap_per_period) {
            if floor > cap {
                return Err(self.invalid("the floor is above the cap"));
            }
        }
        if self.applies_to == AppliesTo::Subscription && self.period.is_none() {
            return Err(self.invalid("a subscription needs a billing period"));
        }
        Ok(())
    }

    /// Whether this version applies on `on` (ignoring later versions).
    pub fn in_force_on(&self, on: NaiveDate) -> bool {
        self.valid_from <= on && self.valid_until.is_none_or(|u| on < u)
    }

    fn applies(&self, online: bool) -> bool {
        match self.applies_to {
            AppliesTo::OnlinePayment => online,
            AppliesTo::AllSales | AppliesTo::Subscription => true,
        }
    }
}

/// A named set of fee rules: one platform's model (or one variant of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<FeeRule>,
}

impl FeeSchedule {
    /// Checks every rule, and that the versions of each rule are distinct and dated in order.
    pub fn validate(&self) -> Result<(), FeeError> {
        if !valid_name(&self.name) {
            return Err(FeeError::InvalidName);
        }
        if self.rules.is_empty() {
            return Err(FeeError::EmptySchedule(self.name.clone()));
        }
        let mut versions: BTreeMap<&str, BTreeMap<u32, NaiveDate>> = BTreeMap::new();
        for rule in &self.rules {
            rule.validate()?;
            let by_version = versions.entry(rule.id.as_str()).or_default();
            if by_version.insert(rule.version, rule.valid_from).is_some() {
                return Err(FeeError::DuplicateRuleVersion {
                    id: rule.id.clone(),
                    version: rule.version,
                });
            }
        }
        for (id, by_version) in versions {
            let mut last: Option<NaiveDate> = None;
            for (version, from) in by_version {
                if last.is_some_and(|l| from <= l) {
                    return Err(FeeError::VersionsOutOfOrder {
                        id: id.to_string(),
                        version,
                    });
                }
                last = Some(from);
            }
        }
        Ok(())
    }

    /// Parses and validates a single schedule.
    pub fn from_json(json: &str) -> Result<FeeSchedule, FeeError> {
        let schedule: FeeSchedule =
            serde_json::from_str(json).map_err(|e| FeeError::InvalidJson(e.to_string()))?;
        schedule.validate()?;
        Ok(schedule)
    }

    /// For each rule id, the latest version with `valid_from <= on`, if it is still in force
    /// (`valid_until`) and applies to the sale (`OnlinePayment` rules only when `online`).
    /// Subscription and per-period rules are returned too; the computations pick their kind.
    /// Ordered by rule id.
    pub fn rules_in_force(&self, on: NaiveDate, online: bool) -> Vec<&FeeRule> {
        let mut latest: BTreeMap<&str, &FeeRule> = BTreeMap::new();
        for rule in self.rules.iter().filter(|r| r.valid_from <= on) {
            match latest.get(rule.id.as_str()) {
                Some(current) if current.valid_from >= rule.valid_from => {}
                _ => {
                    latest.insert(rule.id.as_str(), rule);
                }
            }
        }
        latest
            .into_values()
            .filter(|r| r.in_force_on(on) && r.applies(online))
            .collect()
    }

    /// A rule version by id and version (an auditor looking up the terms of a fee line).
    pub fn rule(&self, id: &str, version: u32) -> Option<&FeeRule> {
        self.rules
            .iter()
            .find(|r| r.id == id && r.version == version)
    }
}

/// The content of one configuration file: one or more named schedules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedules {
    pub schedules: Vec<FeeSchedule>,
}

impl FeeSchedules {
    /// Parses and validates a configuration file of `config/fees/`.
    pub fn from_json(json: &str) -> Result<FeeSchedules, FeeError> {
        let file: FeeSchedules =
            serde_json::from_str(json).map_err(|e| FeeError::InvalidJson(e.to_string()))?;
        file.validate()?;
        Ok(file)
    }

    /// Checks every schedule and that names are unique.
    pub fn validate(&self) -> Result<(), FeeError> {
        if self.schedules.is_empty() {
            return Err(FeeError::NoSchedules);
        }
        let mut names = BTreeSet::new();
        for schedule in &self.schedules {
            schedule.validate()?;
            if !names.insert(schedule.name.as_str()) {
                return Err(FeeError::DuplicateSchedule(schedule.name.clone()));
            }
        }
        Ok(())
    }

    /// Merges several files (e.g. every file of `config/fees/`), checking names stay unique.
    pub fn merge(files: Vec<FeeSchedules>) -> Result<FeeSchedules, FeeError> {
        let merged = FeeSchedules {
            schedules: files.into_iter().flat_map(|f| f.schedules).collect(),
        };
        merged.validate()?;
        Ok(merged)
    }

    pub fn get(&self, name: &str) -> Option<&FeeSchedule> {
        self.schedules.iter().find(|s| s.name == name)
    }
}
