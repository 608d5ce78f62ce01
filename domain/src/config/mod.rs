//! Dated configuration of plans and producer charters (R-ACC-3).
//!
//! Plans, prices and caps are never constants in code: they are read from a JSON document
//! (`config/plans.json` at the repository root), each entry dated by `valid_from`. The caller looks
//! up the terms in force on a date and puts them into commands, so events freeze the terms that
//! applied and history never depends on today's configuration.

use std::collections::BTreeSet;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Money;

#[cfg(test)]
mod tests;

/// The plans a producer account can be on (R-ACC-3). Discovery, Pro and Member are the historical
/// offer; Flexible and Engaged are the 2024 offer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// All features, non-AMAP sales capped per calendar year.
    #[default]
    Discovery,
    /// Monthly subscription.
    Pro,
    /// Unlimited, granted when the producer completes the training.
    Member,
    /// 2024 offer: no training, standard conditions.
    Flexible,
    /// 2024 offer: integration training the first year, update training every few years.
    Engaged,
}

impl fmt::Display for PlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanKind::Discovery => "Discovery",
            PlanKind::Pro => "Pro",
            PlanKind::Member => "Member",
            PlanKind::Flexible => "Flexible",
            PlanKind::Engaged => "Engaged",
        })
    }
}

/// How a plan's subscription is billed (R-ACC-3): every month, or a year at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionBilling {
    #[default]
    Monthly,
    Yearly,
}

/// A subscription price, excl. VAT, per month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Monthly price excl. VAT when billed once a year.
    pub monthly_excl_vat_billed_yearly: Money,
    /// Monthly price excl. VAT when billed every month.
    pub monthly_excl_vat_billed_monthly: Money,
}

/// The terms of a plan from a date on. Events that change a plan carry these terms, frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanTerms {
    pub plan: PlanKind,
    /// First day (Europe/Paris) these terms apply.
    pub valid_from: NaiveDate,
    /// Cap on the non-AMAP sales of a calendar year (R-ACC-4); `None`: unlimited.
    #[serde(default)]
    pub annual_cap_non_amap: Option<Money>,
    #[serde(default)]
    pub subscription: Option<Subscription>,
    /// The plan needs a training (Member: granted by it; Engaged: integration the first year).
    #[serde(default)]
    pub requires_training: bool,
    /// An update training is due this many years after the last one; `None`: never.
    #[serde(default)]
    pub training_renewal_years: Option<u32>,
}

/// A version of the producer charter, in force from a date (R-ACC-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharterVersion {
    pub version: String,
    pub valid_from: NaiveDate,
}

/// The dated configuration: every plan version and every charter version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub plans: Vec<PlanTerms>,
    pub charters: Vec<CharterVersion>,
}

/// Why a configuration document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the configuration is not valid JSON of the expected shape: {0}")]
    InvalidJson(String),
    #[error("the configuration defines no plan")]
    NoPlans,
    #[error("the configuration defines no charter version")]
    NoCharters,
    #[error("plan {plan} has two versions starting on {valid_from}; keep one")]
    DuplicatePlanDate {
        plan: PlanKind,
        valid_from: NaiveDate,
    },
    #[error("plan {plan} from {valid_from}: the annual cap must be above zero (or null for none)")]
    NonPositiveCap {
        plan: PlanKind,
        valid_from: NaiveDate,
    },
    #[error("plan {plan} from {valid_from}: subscription prices must be above zero")]
    NonPositiveSubscription {
        plan: PlanKind,
        valid_from: NaiveDate,
    },
    #[error("plan {plan} from {valid_from}: a training renewal needs requires_training = true")]
    RenewalWithoutTraining {
        plan: PlanKind,
        valid_from: NaiveDate,
    },
    #[error("plan {plan} from {valid_from}: the training renewal must be at least 1 year")]
    ZeroRenewalYears {
        plan: PlanKind,
        valid_from: NaiveDate,
    },
    #[error("a charter version needs a name of 1 to 50 characters")]
    InvalidCharterVersion,
    #[error("charter version '{version}' appears twice")]
    DuplicateCharterVersion { version: String },
    #[error("two charter versions start on {valid_from}; keep one")]
    DuplicateCharterDate { valid_from: NaiveDate },
}

impl ConfigError {
    /// A stable code for clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::InvalidJson(_) => "CONFIG_INVALID_JSON",
            ConfigError::NoPlans => "CONFIG_NO_PLANS",
            ConfigError::NoCharters => "CONFIG_NO_CHARTERS",
            ConfigError::DuplicatePlanDate { .. } => "CONFIG_DUPLICATE_PLAN_DATE",
            ConfigError::NonPositiveCap { .. } => "CONFIG_NON_POSITIVE_CAP",
            ConfigError::NonPositiveSubscription { .. } => "CONFIG_NON_POSITIVE_SUBSCRIPTION",
            ConfigError::RenewalWithoutTraining { .. } => "CONFIG_RENEWAL_WITHOUT_TRAINING",
            ConfigError::ZeroRenewalYears { .. } => "CONFIG_ZERO_RENEWAL_YEARS",
            ConfigError::InvalidCharterVersion => "CONFIG_INVALID_CHARTER_VERSION",
            ConfigError::DuplicateCharterVersion { .. } => "CONFIG_DUPLICATE_CHARTER_VERSION",
            ConfigError::DuplicateCharterDate { .. } => "CONFIG_DUPLICATE_CHARTER_DATE",
        }
    }
}

/// Longest charter version name accepted.
const MAX_CHARTER_VERSION_CHARS: usize = 50;

impl Config {
    /// Parses and validates a configuration document.
    pub fn from_json(json: &str) -> Result<Config, ConfigError> {
        let config: Config =
            serde_json::from_str(json).map_err(|e| ConfigError::InvalidJson(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants `from_json` guarantees (useful for configurations built in code).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.plans.is_empty() {
            return Err(ConfigError::NoPlans);
        }
        if self.charters.is_empty() {
            return Err(ConfigError::NoCharters);
        }
        let mut plan_dates = BTreeSet::new();
        for terms in &self.plans {
            let (plan, valid_from) = (terms.plan, terms.valid_from);
            if !plan_dates.insert((plan, valid_from)) {
                return Err(ConfigError::DuplicatePlanDate { plan, valid_from });
            }
            if terms
                .annual_cap_non_amap
                .is_some_and(|cap| cap <= Money::ZERO)
            {
                return Err(ConfigError::NonPositiveCap { plan, valid_from });
            }
            if let Some(sub) = &terms.subscription {
                if sub.monthly_excl_vat_billed_yearly <= Money::ZERO
                    || sub.monthly_excl_vat_billed_monthly <= Money::ZERO
                {
                    return Err(ConfigError::NonPositiveSubscription { plan, valid_from });
                }
            }
            match terms.training_renewal_years {
                Some(0) => return Err(ConfigError::ZeroRenewalYears { plan, valid_from }),
                Some(_) if !terms.requires_training => {
                    return Err(ConfigError::RenewalWithoutTraining { plan, valid_from })
                }
                _ => {}
            }
        }
        let mut versions = BTreeSet::new();
        let mut charter_dates = BTreeSet::new();
        for charter in &self.charters {
            let len = charter.version.trim().chars().count();
            if len == 0 || len > MAX_CHARTER_VERSION_CHARS {
                return Err(ConfigError::InvalidCharterVersion);
            }
            if !versions.insert(charter.version.as_str()) {
                return Err(ConfigError::DuplicateCharterVersion {
                    version: charter.version.clone(),
                });
            }
            if !charter_dates.insert(charter.valid_from) {
                return Err(ConfigError::DuplicateCharterDate {
                    valid_from: charter.valid_from,
                });
            }
        }
        Ok(())
    }

    /// The terms of `plan` in force on `on`: the version with the latest `valid_from <= on`.
    /// `None` when the plan has no version yet on that date.
    pub fn plan_terms(&self, plan: PlanKind, on: NaiveDate) -> Option<&PlanTerms> {
        self.plans
            .iter()
            .filter(|t| t.plan == plan && t.valid_from <= on)
            .max_by_key(|t| t.valid_from)
    }

    /// The charter version in force on `on` (latest `valid_from <= on`).
    pub fn current_charter(&self, on: NaiveDate) -> Option<&CharterVersion> {
        self.charters
            .iter()
            .filter(|c| c.valid_from <= on)
            .max_by_key(|c| c.valid_from)
    }
}
