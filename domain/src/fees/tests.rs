use chrono::NaiveDate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::ids::ProducerId;
use crate::money::Money;
use crate::vat::VatRate;

const CAGETTE: &str = include_str!("../../../config/fees/cagette.json");
const RUCHE: &str = include_str!("../../../config/fees/ruche.json");
const LOCAVOR: &str = include_str!("../../../config/fees/locavor.json");
const OFN: &str = include_str!("../../../config/fees/ofn.json");
const SUBSCRIPTION: &str = include_str!("../../../config/fees/subscription.json");
const COOPCIRCUITS: &str = include_str!("../../../config/fees/coopcircuits.json");

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
}
fn m(s: &str) -> Money {
    s.parse().expect("valid amount")
}
fn all() -> FeeSchedules {
    let files = [CAGETTE, RUCHE, LOCAVOR, OFN, SUBSCRIPTION, COOPCIRCUITS]
        .into_iter()
        .map(|json| FeeSchedules::from_json(json).expect("shipped fee configuration is valid"))
        .collect();
    FeeSchedules::merge(files).expect("names are unique")
}
fn schedule(name: &str) -> FeeSchedule {
    all().get(name).expect("schedule exists").clone()
}
fn input(incl: &str, excl: &str, online: bool) -> FeeInput {
    FeeInput {
        on: d(2024, 6, 12),
        online,
        amount_incl_vat: m(incl),
        amount_excl_vat: m(excl),
        items: 3,
        orders: 1,
    }
}
fn total_excl(lines: &[FeeLine]) -> Money {
    lines.iter().map(|l| l.amount_excl_vat).sum()
}
fn total_incl(lines: &[FeeLine]) -> Money {
    lines.iter().map(|l| l.amount_incl_vat).sum()
}
fn by_rule<'a>(lines: &'a [FeeLine], id: &str) -> &'a FeeLine {
    lines
        .iter()
        .find(|l| l.rule_id == id)
        .expect("line of rule")
}

#[test]
fn every_shipped_fee_file_is_valid_and_the_schedules_are_named() {
    let all = all();
    for name in [
        "cagette",
        "ruche",
        "locavor_presence",
        "locavor_preparation",
        "locavor_depot_vente",
        "ofn_monthly",
        "pro_billed_yearly",
        "pro_billed_monthly",
        "coopcircuits",
    ] {
        assert!(all.get(name).is_some(), "{name}");
    }
}

/// R-FEE-1, R-FEE-2: 100.00 EUR incl. VAT of food at 5.5 % paid online on Cagette. The payment
/// fee is 3 % excl. VAT of the amount incl. VAT = 3.00 + 0.60 VAT = 3.60 (3.6 % incl. VAT); the
/// service fee is 6 % of the same base = 6.00 + 1.20 VAT; total 9.00 excl. VAT (9 %).
#[test]
fn r_fee_1_and_2_cagette_online_payment_costs_9_percent_excl_vat() {
    let excl = VatRate::Reduced5_5.excl_vat(m("100.00"));
    assert_eq!(excl, m("94.79"));
    let lines = schedule("cagette")
        .fees_for_share(&input("100.00", "94.79", true))
        .expect("fees");
    assert_eq!(lines.len(), 2);
    let payment = by_rule(&lines, "cagette.online_payment");
    assert_eq!(payment.base_kind, FeeBase::InclVat);
    assert_eq!(payment.base_amount, m("100.00"));
    assert_eq!(payment.rate, dec!(0.03));
    assert_eq!(payment.amount_excl_vat, m("3.00"));
    assert_eq!(payment.vat, m("0.60"));
    assert_eq!(payment.amount_incl_vat, m("3.60"));
    assert_eq!(payment.vat_rate, VatRate::Standard20);
    let service = by_rule(&lines, "cagette.service_fee");
    assert_eq!(service.amount_excl_vat, m("6.00"));
    assert_eq!(service.vat, m("1.20"));
    assert_eq!(total_excl(&lines), m("9.00"));
    assert_eq!(total_incl(&lines), m("10.80"));
    assert!(lines.iter().all(|l| l.beneficiary == Beneficiary::Platform));
}

/// R-FEE-2: a market without online payment pays the service fee only (6 %).
#[test]
fn r_fee_2_markets_paying_on_site_pay_only_the_service_fee() {
    let lines = schedule("cagette")
        .fees_for_share(&input("100.00", "94.79", false))
        .expect("fees");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].rule_id, "cagette.service_fee");
    assert_eq!(total_excl(&lines), m("6.00"));
    assert_eq!(total_incl(&lines), m("7.20"));
}

/// R-FEE-2: the base is part of the rule; switching the service fee to the amount excl. VAT
/// changes the line and the line says so.
#[test]
fn r_fee_2_the_base_of_a_fee_is_part_of_its_rule() {
    let mut cagette = schedule("cagette");
    for rule in &mut cagette.rules {
        if rule.id == "cagette.service_fee" {
            rule.base = FeeBase::ExclVat;
        }
    }
    cagette.validate().expect("still valid");
    let lines = cagette
        .fees_for_share(&input("100.00", "94.79", true))
        .expect("fees");
    let service = by_rule(&lines, "cagette.service_fee");
    assert_eq!(service.base_kind, FeeBase::ExclVat);
    assert_eq!(service.base_amount, m("94.79"));
    // 94.79 * 0.06 = 5.6874 -> 5.69; VAT 1.138 -> 1.14.
    assert_eq!(service.amount_excl_vat, m("5.69"));
    assert_eq!(service.vat, m("1.14"));
}

/// R-FEE-3: each amount is rounded half away from zero to the cent at each line, and the line
/// records everything needed to recompute it.
#[test]
fn r_fee_3_lines_round_half_away_from_zero_and_recompute_identically() {
    // 12.50 * 0.03 = 0.375 -> 0.38 (not 0.37 as banker's rounding would give); VAT 0.076 -> 0.08.
    let lines = schedule("cagette")
        .fees_for_share(&input("12.50", "11.85", true))
        .expect("fees");
    let payment = by_rule(&lines, "cagette.online_payment");
    assert_eq!(payment.amount_excl_vat, m("0.38"));
    assert_eq!(payment.vat, m("0.08"));
    assert_eq!(payment.rounding, Rounding::HalfAwayFromZeroCent);
    assert_eq!(payment.rule_version, 1);
    for line in &lines {
        assert_eq!(&recompute(line), line);
    }
    let json = serde_json::to_value(payment).expect("json");
    assert_eq!(json["rounding"], "half_away_from_zero_cent");
    assert_eq!(json["rate"], "0.03");
    assert_eq!(json["amount_excl_vat"], "0.38");
    let back: FeeLine = serde_json::from_value(json).expect("back");
    assert_eq!(&back, payment);
}

/// R-FEE-3: an auditor detects a line whose amount does not follow from its inputs.
#[test]
fn r_fee_3_an_altered_line_does_not_recompute() {
    let lines = schedule("cagette")
        .fees_for_share(&input("100.00", "94.79", true))
        .expect("fees");
    let mut tampered = lines[0].clone();
    tampered.amount_excl_vat = m("2.99");
    assert_ne!(recompute(&tampered), tampered);
}

/// R-FEE-3: rules are dated and versioned; the latest version in force on the date applies and
/// the line records which one.
#[test]
fn r_fee_3_a_new_version_applies_from_its_date_only() {
    let mut cagette = schedule("cagette");
    let mut cheaper = cagette
        .rule("cagette.online_payment", 1)
        .expect("v1")
        .clone();
    cheaper.version = 2;
    cheaper.valid_from = d(2025, 1, 1);
    cheaper.rate = dec!(0.025);
    cheaper.split[0].rate = dec!(0.025);
    cagette.rules.push(cheaper);
    cagette.validate().expect("valid");
    let before = cagette
        .fees_for_share(&input("100.00", "94.79", true))
        .expect("fees");
    assert_eq!(
        by_rule(&before, "cagette.online_payment").amount_excl_vat,
        m("3.00")
    );
    let after = cagette
        .fees_for_share(&FeeInput {
            on: d(2025, 1, 1),
            ..input("100.00", "94.79", true)
        })
        .expect("fees");
    let line = by_rule(&after, "cagette.online_payment");
    assert_eq!(line.rule_version, 2);
    assert_eq!(line.amount_excl_vat, m("2.50"));
    // The service fee did not exist before 2023.
    let old = cagette
        .fees_for_share(&FeeInput {
            on: d(2022, 6, 1),
            ..input("100.00", "94.79", true)
        })
        .expect("fees");
    assert_eq!(old.len(), 1);
}

/// R-FEE-3: invalid configurations are refused with the rule named.
#[test]
fn r_fee_3_invalid_fee_configurations_are_refused() {
    let mut bad = schedule("ruche");
    bad.rules[0].split[0].rate = dec!(0.09);
    assert_eq!(
        bad.validate().map_err(|e| e.code()),
        Err("FEE_CONFIG_INVALID_RULE")
    );

    let mut dup = schedule("cagette");
    let copy = dup.rules[0].clone();
    dup.rules.push(copy);
    assert_eq!(
        dup.validate(),
        Err(FeeError::DuplicateRuleVersion {
            id: "cagette.online_payment".into(),
            version: 1
        })
    );

    let mut order = schedule("cagette");
    let mut v2 = order.rules[0].clone();
    v2.version = 2;
    v2.valid_from = d(2019, 1, 1);
    order.rules.push(v2);
    assert!(matches!(
        order.validate(),
        Err(FeeError::VersionsOutOfOrder { .. })
    ));

    let mut cap_without_period = schedule("cagette");
    cap_without_period.rules[0].cap_per_period = Some(m("10"));
    assert!(cap_without_period.validate().is_err());

    assert!(matches!(
        FeeSchedules::from_json(
            "{\"schedules\": [{\"name\": \"x\", \"rules\": [], \"extra\": 1}]}"
        ),
        Err(FeeError::InvalidJson(_))
    ));
    assert_eq!(
        FeeSchedules::from_json("{\"schedules\": [{\"name\": \"x\", \"rules\": []}]}"),
        Err(FeeError::EmptySchedule("x".into()))
    );
    assert!(matches!(
        FeeSchedules::merge(vec![
            FeeSchedules::from_json(CAGETTE).expect("ok"),
            FeeSchedules::from_json(CAGETTE).expect("ok")
        ]),
        Err(FeeError::DuplicateSchedule(_))
    ));
}

/// R-FEE-5: La Ruche qui dit Oui, 20 % commission = 8.35 % host + 11.65 % platform, on sales
/// excl. VAT.
#[test]
fn r_fee_5_la_ruche_takes_20_percent_split_between_host_and_platform() {
    let lines = schedule("ruche")
        .fees_for_share(&input("105.50", "100.00", true))
        .expect("fees");
    assert_eq!(lines.len(), 2);
    let host = lines
        .iter()
        .find(|l| l.beneficiary == Beneficiary::MarketHost)
        .expect("host");
    let platform = lines
        .iter()
        .find(|l| l.beneficiary == Beneficiary::Platform)
        .expect("platform");
    assert_eq!(host.amount_excl_vat, m("8.35"));
    assert_eq!(platform.amount_excl_vat, m("11.65"));
    assert_eq!(total_excl(&lines), m("20.00"));
    assert_eq!(total_incl(&lines), m("24.00"));
    // Paid on site: the same commission.
    let on_site = schedule("ruche")
        .fees_for_share(&input("105.50", "100.00", false))
        .expect("fees");
    assert_eq!(total_excl(&on_site), m("20.00"));
}

/// R-FEE-5: Locavor, platform 7.5 % + manager 9 % (producer present), 11 % (producer only
/// prepares), or 8.5 % + 13 % on consignment, on sales excl. VAT.
#[test]
fn r_fee_5_locavor_platform_and_manager_shares_on_sales_excl_vat() {
    let presence = schedule("locavor_presence")
        .fees_for_share(&input("211.00", "200.00", false))
        .expect("fees");
    let of = |lines: &[FeeLine], b: Beneficiary| {
        lines
            .iter()
            .filter(|l| l.beneficiary == b)
            .map(|l| l.amount_excl_vat)
            .sum::<Money>()
    };
    assert_eq!(of(&presence, Beneficiary::Platform), m("15.00"));
    assert_eq!(of(&presence, Beneficiary::MarketHost), m("18.00"));
    assert!(presence.iter().all(|l| l.base_kind == FeeBase::ExclVat));
    let depot = schedule("locavor_depot_vente")
        .fees_for_share(&input("211.00", "200.00", false))
        .expect("fees");
    assert_eq!(of(&depot, Beneficiary::Platform), m("17.00"));
    assert_eq!(of(&depot, Beneficiary::MarketHost), m("26.00"));
    // The third tier: the producer only prepares, the manager distributes: manager 11 %, the
    // farm keeps 81.5 % of 200.00 = 163.00.
    let preparation = schedule("locavor_preparation")
        .fees_for_share(&input("211.00", "200.00", false))
        .expect("fees");
    assert_eq!(of(&preparation, Beneficiary::Platform), m("15.00"));
    assert_eq!(of(&preparation, Beneficiary::MarketHost), m("22.00"));
    let kept = m("200.00")
        - of(&preparation, Beneficiary::Platform)
        - of(&preparation, Beneficiary::MarketHost);
    assert_eq!(kept, m("163.00"));
}

/// R-FEE-5: Open Food Network style: monthly fixed + rate x turnover, capped, nothing below the
/// turnover threshold.
#[test]
fn r_fee_5_open_food_network_monthly_fee_with_threshold_and_cap() {
    let ofn = schedule("ofn_monthly");
    let month = d(2024, 3, 1);
    // Per-period rules never appear on a sale.
    assert!(ofn
        .fees_for_share(&input("1000.00", "947.87", true))
        .expect("fees")
        .is_empty());
    let fee = |turnover: &str| {
        let lines = ofn
            .period_fees(month, true, m(turnover), m(turnover))
            .expect("fees");
        assert_eq!(lines.len(), 1);
        assert_eq!(&recompute(&lines[0]), &lines[0]);
        lines[0].clone()
    };
    assert_eq!(fee("499.99").amount_excl_vat, Money::ZERO);
    assert_eq!(fee("500.00").amount_excl_vat, m("15.00"));
    let mid = fee("1234.56");
    // 5.00 + 24.6912 -> 5.00 + 24.69 = 29.69; VAT 5.938 -> 5.94.
    assert_eq!(mid.amount_excl_vat, m("29.69"));
    assert_eq!(mid.vat, m("5.94"));
    assert_eq!(mid.period, Some(FeePeriod::Monthly));
    assert_eq!(fee("5000.00").amount_excl_vat, m("50.00"));
}

/// R-FEE-5: per-order and per-item fixed fees are configuration too.
#[test]
fn r_fee_5_fixed_fees_per_order_and_per_item() {
    let json = r#"{"name": "per_order", "rules": [
        {"id": "o", "version": 1, "valid_from": "2024-01-01", "label": "per order",
         "base": "excl_vat", "rate": "0.05",
         "fixed": {"amount": "0.50", "per": "order"},
         "split": [{"beneficiary": "platform", "rate": "0.05"}],
         "vat_on_fee": "20", "applies_to": "all_sales"},
        {"id": "i", "version": 1, "valid_from": "2024-01-01", "label": "per item",
         "base": "excl_vat", "rate": "0",
         "fixed": {"amount": "0.10", "per": "item", "beneficiary": "market_host"},
         "split": [{"beneficiary": "market_host", "rate": "0"}],
         "vat_on_fee": "20", "applies_to": "all_sales"}]}"#;
    let s = FeeSchedule::from_json(json).expect("valid");
    let lines = s
        .fees_for_share(&FeeInput {
            orders: 2,
            items: 7,
            ..input("105.50", "100.00", true)
        })
        .expect("fees");
    assert_eq!(by_rule(&lines, "o").amount_excl_vat, m("6.00"));
    assert_eq!(by_rule(&lines, "o").fixed_part, m("1.00"));
    assert_eq!(by_rule(&lines, "i").amount_excl_vat, m("0.70"));
    assert_eq!(by_rule(&lines, "i").beneficiary, Beneficiary::MarketHost);
}

/// R-FEE-5, R-ACC-3: the Pro plan subscription, 29 EUR excl. VAT a month billed yearly or
/// 39 EUR billed monthly.
#[test]
fn r_fee_5_pro_subscription_billed_yearly_or_monthly() {
    let yearly = schedule("pro_billed_yearly")
        .period_fees(d(2024, 1, 1), false, Money::ZERO, Money::ZERO)
        .expect("fees");
    assert_eq!(yearly.len(), 1);
    assert_eq!(yearly[0].amount_excl_vat, m("348.00"));
    assert_eq!(yearly[0].amount_excl_vat.amount() / dec!(12), dec!(29));
    assert_eq!(yearly[0].vat, m("69.60"));
    assert_eq!(yearly[0].period, Some(FeePeriod::Yearly));
    let monthly = schedule("pro_billed_monthly")
        .period_fees(d(2024, 1, 1), true, m("5000"), m("4700"))
        .expect("fees");
    assert_eq!(monthly[0].amount_excl_vat, m("39.00"));
    assert_eq!(monthly[0].amount_incl_vat, m("46.80"));
    // A subscription is not a sale fee.
    assert!(schedule("pro_billed_monthly")
        .fees_for_share(&input("10.00", "9.48", true))
        .expect("fees")
        .is_empty());
}

/// R-FEE-5: CoopCircuits, 3.5 % of the year's online turnover excl. VAT, at least 60 EUR and
/// at most 10,000 EUR a year (its published figures; the scan reads "35%"). Nothing on a sale;
/// on-site turnover does not count.
#[test]
fn r_fee_5_coopcircuits_yearly_share_of_online_turnover_with_floor_and_cap() {
    let cc = schedule("coopcircuits");
    assert!(cc
        .fees_for_share(&input("1000.00", "947.87", true))
        .expect("fees")
        .is_empty());
    let year = d(2024, 1, 1);
    let fee = |turnover: &str| {
        let lines = cc
            .period_fees(year, true, m(turnover), m(turnover))
            .expect("fees");
        assert_eq!(lines.len(), 1);
        assert_eq!(&recompute(&lines[0]), &lines[0]);
        assert_eq!(lines[0].period, Some(FeePeriod::Yearly));
        lines[0].clone()
    };
    assert_eq!(fee("1000.00").amount_excl_vat, m("60.00"), "the floor");
    let mid = fee("100000.00");
    assert_eq!((mid.amount_excl_vat, mid.vat), (m("3500.00"), m("700.00")));
    assert_eq!(fee("1714.29").amount_excl_vat, m("60.00")); // 60.0002 -> 60.00
    assert_eq!(fee("2000.00").amount_excl_vat, m("70.00"));
    assert_eq!(fee("400000.00").amount_excl_vat, m("10000.00"), "the cap");
    assert!(
        cc.period_fees(year, false, m("5000.00"), m("5000.00"))
            .expect("fees")
            .is_empty(),
        "on-site sales are not online turnover"
    );
}

/// R-ACC-3: a subscription is billed from the first whole month of the plan: monthly every
/// month, yearly every twelve months; its line is the plan's price, 20 % VAT, recomputable.
#[test]
fn r_acc_3_subscriptions_are_due_from_the_first_whole_month() {
    use crate::config::SubscriptionBilling as B;
    let since = d(2024, 3, 14);
    assert!(!subscription_due(since, B::Monthly, d(2024, 3, 1)));
    assert!(subscription_due(since, B::Monthly, d(2024, 4, 1)));
    assert!(subscription_due(since, B::Monthly, d(2025, 1, 1)));
    assert!(subscription_due(since, B::Yearly, d(2024, 4, 1)));
    assert!(!subscription_due(since, B::Yearly, d(2024, 5, 1)));
    assert!(!subscription_due(since, B::Yearly, d(2025, 3, 1)));
    assert!(subscription_due(since, B::Yearly, d(2025, 4, 1)));
    let plans = crate::config::Config::from_json(include_str!("../../../config/plans.json"))
        .expect("plans");
    let pro = plans
        .plan_terms(crate::config::PlanKind::Pro, d(2024, 3, 14))
        .expect("pro");
    let monthly = subscription_line(pro, B::Monthly).expect("line");
    assert_eq!(
        (monthly.amount_excl_vat, monthly.vat, monthly.period),
        (m("39.00"), m("7.80"), Some(FeePeriod::Monthly))
    );
    let yearly = subscription_line(pro, B::Yearly).expect("line");
    assert_eq!(
        (
            yearly.amount_excl_vat,
            yearly.amount_incl_vat,
            yearly.period
        ),
        (m("348.00"), m("417.60"), Some(FeePeriod::Yearly))
    );
    for l in [&monthly, &yearly] {
        assert_eq!(&recompute(l), l);
    }
    let discovery = plans
        .plan_terms(crate::config::PlanKind::Discovery, d(2024, 3, 14))
        .expect("discovery");
    assert_eq!(subscription_line(discovery, B::Monthly), None);
}

#[test]
fn inputs_with_negative_amounts_or_excl_above_incl_are_refused() {
    let cagette = schedule("cagette");
    assert_eq!(
        cagette.fees_for_share(&input("-1.00", "-1.00", true)),
        Err(FeeError::NegativeAmount)
    );
    assert_eq!(
        cagette.fees_for_share(&input("10.00", "11.00", true)),
        Err(FeeError::ExclVatAboveInclVat {
            excl_vat: m("11.00"),
            incl_vat: m("10.00")
        })
    );
}

fn with_payment_fixed_part() -> FeeSchedule {
    let mut cagette = schedule("cagette");
    for rule in &mut cagette.rules {
        if rule.id == "cagette.online_payment" {
            rule.fixed = Some(FixedPart {
                amount: m("0.25"),
                per: FixedPer::Payment,
                beneficiary: Beneficiary::Platform,
            });
        }
    }
    cagette.validate().expect("valid");
    cagette
}

fn p(n: u128) -> ProducerId {
    ProducerId(uuid::Uuid::from_u128(n))
}

/// R-FEE-1: a fixed per-payment part is split across the producers of the payment in
/// proportion to their amounts, the rounding remainder going to the largest.
#[test]
fn r_fee_1_a_fixed_part_per_payment_is_split_across_the_producers() {
    let parts = split_fixed_part(
        m("0.25"),
        &[(1, m("10.00")), (2, m("60.00")), (3, m("30.00"))],
    )
    .expect("split");
    // 0.025 -> 0.03, 0.15, 0.075 -> 0.08 (half away from zero): 0.26, the remainder -0.01 to
    // the largest.
    assert_eq!(parts, vec![(1, m("0.03")), (2, m("0.14")), (3, m("0.08"))]);

    let share = |producer, incl: &str, excl: &str| ProducerShare {
        producer,
        amount_incl_vat: m(incl),
        amount_excl_vat: m(excl),
        items: 1,
        orders: 1,
    };
    let fees = with_payment_fixed_part()
        .fees_for_payment(
            d(2024, 6, 12),
            true,
            &[
                share(p(1), "10.00", "9.48"),
                share(p(2), "60.00", "56.87"),
                share(p(3), "30.00", "28.44"),
            ],
        )
        .expect("fees");
    let fixed: Vec<Money> = fees
        .iter()
        .map(|f| by_rule(&f.lines, "cagette.online_payment").fixed_part)
        .collect();
    assert_eq!(fixed, vec![m("0.03"), m("0.14"), m("0.08")]);
    // 60.00 * 0.03 + 0.14 = 1.94.
    assert_eq!(
        by_rule(&fees[1].lines, "cagette.online_payment").amount_excl_vat,
        m("1.94")
    );
    for f in &fees {
        for line in &f.lines {
            assert_eq!(&recompute(line), line);
        }
    }
    // Alone on the payment, a producer bears the whole fixed part.
    let alone = with_payment_fixed_part()
        .fees_for_share(&input("10.00", "9.48", true))
        .expect("fees");
    assert_eq!(
        by_rule(&alone, "cagette.online_payment").fixed_part,
        m("0.25")
    );
    assert_eq!(
        split_fixed_part::<u8>(m("1.00"), &[(1, Money::ZERO)]),
        Err(FeeError::NothingToSplit)
    );
}

/// R-FEE-4: a partial refund gives back the variable part in proportion; the fixed part only
/// with the last cent refunded, and only once.
#[test]
fn r_fee_4_refunds_give_back_fees_in_proportion_and_the_fixed_part_once() {
    let charged = with_payment_fixed_part()
        .fees_for_share(&input("100.00", "94.79", true))
        .expect("fees");
    let payment = by_rule(&charged, "cagette.online_payment").clone();
    assert_eq!(payment.amount_excl_vat, m("3.25"));
    let paid = m("100.00");
    let first = refund_fees(&charged, paid, Money::ZERO, m("25.00")).expect("refund");
    let first_payment = first
        .iter()
        .find(|r| r.rule_id == "cagette.online_payment")
        .expect("line");
    assert_eq!(first_payment.amount_excl_vat, m("0.75"));
    assert_eq!(first_payment.vat, m("0.15"));
    let service = first
        .iter()
        .find(|r| r.rule_id == "cagette.service_fee")
        .expect("line");
    assert_eq!(service.amount_excl_vat, m("1.50"));
    for r in &first {
        assert_eq!(&recompute_refund(r), r);
    }
    let rest = refund_fees(&charged, paid, m("25.00"), m("75.00")).expect("refund");
    let rest_payment = rest
        .iter()
        .find(|r| r.rule_id == "cagette.online_payment")
        .expect("line");
    // 2.25 variable + 0.25 fixed.
    assert_eq!(rest_payment.amount_excl_vat, m("2.50"));
    let total: Money = first
        .iter()
        .chain(rest.iter())
        .map(|r| r.amount_incl_vat)
        .sum();
    assert_eq!(total, total_incl(&charged));
    // Nothing more can be refunded.
    assert_eq!(
        refund_fees(&charged, paid, m("100.00"), m("0.01")),
        Err(FeeError::RefundAbovePaid {
            refunded: m("100.01"),
            paid
        })
    );
    let nothing = refund_fees(&charged, paid, m("100.00"), Money::ZERO).expect("zero");
    assert!(nothing.iter().all(|r| r.amount_incl_vat.is_zero()));
}

proptest! {
    /// R-FEE-1: the parts of a split fixed part add up exactly to it; every part but the
    /// largest is its exact share rounded half away from zero to the cent (within half a cent);
    /// the largest takes the remainder.
    #[test]
    fn r_fee_1_split_parts_add_up_exactly(
        fixed in 0i64..100_000,
        amounts in proptest::collection::vec(0i64..10_000_000, 1..12),
    ) {
        prop_assume!(amounts.iter().any(|a| *a > 0));
        let shares: Vec<(usize, Money)> =
            amounts.iter().enumerate().map(|(i, a)| (i, Money::from_cents(*a))).collect();
        let parts = split_fixed_part(Money::from_cents(fixed), &shares).expect("split");
        let sum: Money = parts.iter().map(|(_, m)| *m).sum();
        prop_assert_eq!(sum, Money::from_cents(fixed));
        let total: i64 = amounts.iter().sum();
        let max = amounts.iter().max().expect("one");
        let largest = amounts.iter().position(|x| x == max).expect("one");
        for (i, a) in amounts.iter().enumerate() {
            let exact = rust_decimal::Decimal::from(fixed) * rust_decimal::Decimal::from(*a)
                / rust_decimal::Decimal::from(total) / rust_decimal::Decimal::ONE_HUNDRED;
            if i == largest {
                continue;
            }
            // Half away from zero: within half a cent, and exactly the rounded share.
            let diff = (parts[i].1.amount() - exact).abs();
            prop_assert!(diff <= rust_decimal::Decimal::new(5, 3));
            prop_assert_eq!(parts[i].1, Money::round(exact));
        }
        // The largest is the rest, within half a cent per share of its own exact share.
        let exact = rust_decimal::Decimal::from(fixed) * rust_decimal::Decimal::from(*max)
            / rust_decimal::Decimal::from(total) / rust_decimal::Decimal::ONE_HUNDRED;
        let slack = rust_decimal::Decimal::new(5, 3) * rust_decimal::Decimal::from(amounts.len() as i64);
        prop_assert!((parts[largest].1.amount() - exact).abs() <= slack);
    }

    /// R-FEE-4: whatever the sequence of partial refunds, the fees refunded never exceed the
    /// fees charged, each refund is non-negative, and a full refund gives back exactly the fees.
    #[test]
    fn r_fee_4_refunded_fees_never_exceed_fees_charged(
        paid_cents in 1i64..1_000_000,
        fixed in 0i64..100,
        cuts in proptest::collection::vec(0u32..1000, 0..8),
        full in any::<bool>(),
    ) {
        let mut schedule = schedule("cagette");
        if fixed > 0 {
            schedule.rules[0].fixed = Some(FixedPart {
                amount: Money::from_cents(fixed),
                per: FixedPer::Payment,
                beneficiary: Beneficiary::Platform,
            });
        }
        let paid = Money::from_cents(paid_cents);
        let excl = VatRate::Reduced5_5.excl_vat(paid);
        let charged = schedule
            .fees_for_share(&FeeInput { on: d(2024, 6, 1), online: true, amount_incl_vat: paid, amount_excl_vat: excl, items: 1, orders: 1 })
            .expect("fees");
        let mut refunded = Money::ZERO;
        let mut fee_refunded = Money::ZERO;
        let mut steps: Vec<Money> = cuts.iter().map(|c| paid.times(rust_decimal::Decimal::new(i64::from(*c), 4))).collect();
        if full {
            steps.push(paid);
        }
        for step in steps {
            let now = step.min(paid - refunded);
            let refunds = refund_fees(&charged, paid, refunded, now).expect("refund");
            for r in &refunds {
                prop_assert!(!r.amount_excl_vat.is_negative());
                prop_assert!(!r.vat.is_negative());
                prop_assert_eq!(&recompute_refund(r), r);
                fee_refunded += r.amount_incl_vat;
            }
            refunded += now;
            prop_assert!(fee_refunded <= total_incl(&charged));
        }
        if refunded == paid {
            prop_assert_eq!(fee_refunded, total_incl(&charged));
        }
    }

    /// R-FEE-3: every computed line recomputes to itself.
    #[test]
    fn r_fee_3_computed_lines_always_recompute(cents in 0i64..100_000_000, online in any::<bool>()) {
        let incl = Money::from_cents(cents);
        let excl = VatRate::Reduced5_5.excl_vat(incl);
        for name in ["cagette", "ruche", "locavor_presence", "locavor_depot_vente"] {
            let lines = schedule(name)
                .fees_for_share(&FeeInput { on: d(2024, 6, 1), online, amount_incl_vat: incl, amount_excl_vat: excl, items: 2, orders: 1 })
                .expect("fees");
            for line in &lines {
                prop_assert_eq!(&recompute(line), line);
            }
        }
        let ofn = schedule("ofn_monthly").period_fees(d(2024, 6, 1), online, incl, excl).expect("fees");
        for line in &ofn {
            prop_assert_eq!(&recompute(line), line);
        }
    }
}

/// R-CAT-2: the share of a customer price the chosen fees take at source, fees' VAT included:
/// Cagette's payment fee 3 % x 1.2 = 3.6 % and service fee 6 % x 1.2 = 7.2 % of the amount
/// incl. VAT; a rule on the amount excl. VAT (Locavor) is divided by 1 + the product's VAT.
/// A price grossed up by them leaves the producer their price within a cent.
#[test]
fn r_cat_2_fees_into_prices_leave_the_producer_their_price() {
    let cagette = schedule("cagette");
    let on = d(2024, 6, 12);
    let vat = VatRate::Reduced5_5;
    let payment = cagette.share_of_price(on, true, AppliesTo::OnlinePayment, vat);
    let service = cagette.share_of_price(on, true, AppliesTo::AllSales, vat);
    assert_eq!(payment, dec!(0.036));
    assert_eq!(service, dec!(0.072));
    // On site, no payment fee is in force.
    assert_eq!(
        cagette.share_of_price(on, false, AppliesTo::OnlinePayment, vat),
        Decimal::ZERO
    );
    let locavor = schedule("locavor_presence").share_of_price(on, false, AppliesTo::AllSales, vat);
    assert_eq!(locavor, dec!(0.165) * dec!(1.2) / dec!(1.055));

    // 10.00 with both fees: 10.00 / 0.892 = 11.2107... -> 11.21; the fees taken on 11.21 leave
    // the producer 10.00.
    let gross = Money::round(dec!(10.00) / (Decimal::ONE - payment - service));
    assert_eq!(gross, m("11.21"));
    let excl = vat.excl_vat(gross);
    let fees: Money = cagette
        .fees_for_share(&FeeInput {
            on,
            online: true,
            amount_incl_vat: gross,
            amount_excl_vat: excl,
            items: 1,
            orders: 1,
        })
        .expect("fees")
        .iter()
        .map(|l| l.amount_incl_vat)
        .sum();
    assert_eq!(gross - fees, m("10.00"));
}

proptest! {
    /// R-CAT-2: for any producer price and VAT rate, Cagette's fees taken on the grossed-up
    /// price leave the producer their price within a cent per unit.
    #[test]
    fn r_cat_2_any_grossed_up_price_keeps_the_producer_price_within_a_cent(
        cents in 1i64..100_000,
        vat in prop::sample::select(vec![VatRate::Zero, VatRate::Reduced5_5, VatRate::Intermediate10, VatRate::Standard20]),
        online in any::<bool>(),
    ) {
        let cagette = schedule("cagette");
        let on = d(2024, 6, 12);
        let price = Money::from_cents(cents);
        let shares = if online {
            cagette.share_of_price(on, true, AppliesTo::OnlinePayment, vat)
        } else {
            Decimal::ZERO
        } + cagette.share_of_price(on, online, AppliesTo::AllSales, vat);
        let gross = Money::round(price.amount() / (Decimal::ONE - shares));
        let fees: Money = cagette
            .fees_for_share(&FeeInput {
                on,
                online,
                amount_incl_vat: gross,
                amount_excl_vat: vat.excl_vat(gross),
                items: 1,
                orders: 1,
            })
            .expect("fees")
            .iter()
            .map(|l| l.amount_incl_vat)
            .sum();
        let kept = gross - fees;
        prop_assert!((kept - price).amount().abs() <= dec!(0.01), "{price} -> {gross}, kept {kept}");
    }
}
