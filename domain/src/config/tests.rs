use chrono::NaiveDate;

use super::*;

const PLANS_JSON: &str = include_str!("../../../config/plans.json");

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
}

fn money(s: &str) -> Money {
    s.parse().expect("valid amount")
}

fn shipped() -> Config {
    Config::from_json(PLANS_JSON).expect("config/plans.json is valid")
}

/// R-ACC-3, R-ACC-4: the shipped configuration holds the real figures.
#[test]
fn the_shipped_configuration_holds_the_discovery_cap_and_the_pro_prices() {
    let config = shipped();
    let discovery = config
        .plan_terms(PlanKind::Discovery, d(2023, 6, 1))
        .expect("discovery in 2023");
    assert_eq!(discovery.annual_cap_non_amap, Some(money("1000.00")));
    assert_eq!(discovery.subscription, None);

    let pro = config
        .plan_terms(PlanKind::Pro, d(2023, 6, 1))
        .expect("pro");
    let sub = pro.subscription.as_ref().expect("pro has a subscription");
    assert_eq!(sub.monthly_excl_vat_billed_yearly, money("29"));
    assert_eq!(sub.monthly_excl_vat_billed_monthly, money("39"));
    assert_eq!(pro.annual_cap_non_amap, None);

    let member = config
        .plan_terms(PlanKind::Member, d(2023, 6, 1))
        .expect("member");
    assert_eq!(member.annual_cap_non_amap, None);
    assert!(member.requires_training);
    assert_eq!(member.training_renewal_years, None);
}

/// R-ACC-3: the 2024 offer (Flexible, Engaged) is dated, not built in.
#[test]
fn the_2024_plans_exist_only_from_their_date() {
    let config = shipped();
    assert_eq!(config.plan_terms(PlanKind::Engaged, d(2023, 12, 31)), None);
    assert_eq!(config.plan_terms(PlanKind::Flexible, d(2023, 12, 31)), None);
    let engaged = config
        .plan_terms(PlanKind::Engaged, d(2024, 1, 1))
        .expect("engaged");
    assert!(engaged.requires_training);
    assert_eq!(engaged.training_renewal_years, Some(2));
    let flexible = config
        .plan_terms(PlanKind::Flexible, d(2024, 1, 1))
        .expect("flexible");
    assert!(!flexible.requires_training);
}

/// R-ACC-3: a later version of a plan replaces the earlier one from its date on.
#[test]
fn the_latest_version_in_force_on_a_date_applies() {
    let mut config = shipped();
    let mut raised = config
        .plan_terms(PlanKind::Discovery, d(2020, 1, 1))
        .expect("discovery")
        .clone();
    raised.valid_from = d(2026, 1, 1);
    raised.annual_cap_non_amap = Some(money("1500"));
    config.plans.push(raised);
    config.validate().expect("still valid");
    let cap = |on| {
        config
            .plan_terms(PlanKind::Discovery, on)
            .and_then(|t| t.annual_cap_non_amap)
    };
    assert_eq!(cap(d(2025, 12, 31)), Some(money("1000")));
    assert_eq!(cap(d(2026, 1, 1)), Some(money("1500")));
    assert_eq!(
        config.plan_terms(PlanKind::Discovery, d(2018, 12, 31)),
        None
    );
}

/// R-ACC-1: the charter in force on a date is the latest version.
#[test]
fn the_current_charter_is_the_latest_in_force() {
    let config = shipped();
    assert_eq!(config.current_charter(d(2018, 1, 1)), None);
    let v = |on| config.current_charter(on).map(|c| c.version.as_str());
    assert_eq!(v(d(2023, 12, 31)), Some("v1"));
    assert_eq!(v(d(2024, 1, 1)), Some("v2"));
}

#[test]
fn a_configuration_with_a_zero_cap_is_refused() {
    let json = PLANS_JSON.replace("\"1000.00\"", "\"0\"");
    let err = Config::from_json(&json).expect_err("zero cap");
    assert_eq!(
        err,
        ConfigError::NonPositiveCap {
            plan: PlanKind::Discovery,
            valid_from: d(2019, 1, 1)
        }
    );
    assert_eq!(err.code(), "CONFIG_NON_POSITIVE_CAP");
}

#[test]
fn a_configuration_with_amounts_as_floats_or_typos_is_refused() {
    let floats = PLANS_JSON.replace("\"1000.00\"", "1000.0");
    assert!(matches!(
        Config::from_json(&floats),
        Err(ConfigError::InvalidJson(_))
    ));
    let typo = PLANS_JSON.replace("annual_cap_non_amap", "annual_cap");
    assert!(matches!(
        Config::from_json(&typo),
        Err(ConfigError::InvalidJson(_))
    ));
    let three_decimals = PLANS_JSON.replace("\"29.00\"", "\"29.001\"");
    assert!(Config::from_json(&three_decimals).is_err());
}

#[test]
fn a_configuration_with_two_versions_of_a_plan_on_one_date_is_refused() {
    let mut config = shipped();
    let dup = config.plans[0].clone();
    config.plans.push(dup);
    assert_eq!(
        config.validate(),
        Err(ConfigError::DuplicatePlanDate {
            plan: PlanKind::Discovery,
            valid_from: d(2019, 1, 1)
        })
    );
}

#[test]
fn a_renewal_without_training_or_of_zero_years_is_refused() {
    let mut config = shipped();
    config.plans[1].training_renewal_years = Some(2);
    assert_eq!(
        config.validate().map_err(|e| e.code()),
        Err("CONFIG_RENEWAL_WITHOUT_TRAINING")
    );
    let mut config = shipped();
    config.plans[4].training_renewal_years = Some(0);
    assert_eq!(
        config.validate().map_err(|e| e.code()),
        Err("CONFIG_ZERO_RENEWAL_YEARS")
    );
}

#[test]
fn charter_versions_must_be_named_and_unique() {
    let mut config = shipped();
    config.charters[1].version = "v1".into();
    assert_eq!(
        config.validate(),
        Err(ConfigError::DuplicateCharterVersion {
            version: "v1".into()
        })
    );
    let mut config = shipped();
    config.charters[0].version = "  ".into();
    assert_eq!(config.validate(), Err(ConfigError::InvalidCharterVersion));
    let mut config = shipped();
    config.charters.clear();
    assert_eq!(config.validate(), Err(ConfigError::NoCharters));
}
