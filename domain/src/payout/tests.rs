use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;

use super::*;
use crate::fees::{refund_fees, FeeInput, FeeLine, FeeSchedules};
use crate::ids::{MarketId, SaleId};
use crate::money::Money;

type Fw = TestFramework<ProducerBalance>;

const CAGETTE: &str = include_str!("../../../config/fees/cagette.json");

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
}
fn utc(y: i32, mo: u32, day: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, day, h, mi, 0)
        .single()
        .expect("valid")
}
fn m(s: &str) -> Money {
    s.parse().expect("valid amount")
}
fn sale(n: u128) -> SaleId {
    SaleId(uuid::Uuid::from_u128(1000 + n))
}
fn market() -> MarketId {
    MarketId(uuid::Uuid::from_u128(7))
}
fn payout(n: u128) -> PayoutId {
    PayoutId(uuid::Uuid::from_u128(5000 + n))
}
fn at() -> DateTime<Utc> {
    utc(2023, 9, 18, 6, 0)
}
fn fees(gross: Money) -> Vec<FeeLine> {
    let schedules = FeeSchedules::from_json(CAGETTE).expect("valid");
    schedules
        .get("cagette")
        .expect("cagette")
        .fees_for_share(&FeeInput {
            on: d(2023, 9, 9),
            online: true,
            amount_incl_vat: gross,
            amount_excl_vat: crate::vat::VatRate::Reduced5_5.excl_vat(gross),
            items: 1,
            orders: 1,
        })
        .expect("fees")
}
fn credit_cmd(n: u128, gross: &str, refunds: &str, available: NaiveDate) -> ProducerBalanceCommand {
    let gross = m(gross);
    let refunds = m(refunds);
    let fees = fees(gross - refunds);
    let net = gross - refunds - fees.iter().map(|l| l.amount_incl_vat).sum::<Money>();
    ProducerBalanceCommand::CreditSale {
        sale: sale(n),
        market: market(),
        gross_incl_vat: gross,
        refunds,
        fees,
        fee_refunds: vec![],
        net,
        available_on: available,
        at: at(),
    }
}
fn credited(n: u128, gross: &str, refunds: &str, available: NaiveDate) -> ProducerBalanceEvent {
    ProducerBalance::default()
        .decide(credit_cmd(n, gross, refunds, available))
        .expect("credit")
        .remove(0)
}
fn fold(events: Vec<ProducerBalanceEvent>) -> ProducerBalance {
    let mut b = ProducerBalance::default();
    for e in events {
        b.apply(e);
    }
    b
}
fn run(b: &mut ProducerBalance, cmd: ProducerBalanceCommand) -> Result<(), ProducerBalanceError> {
    for e in b.decide(cmd)? {
        b.apply(e);
    }
    Ok(())
}

// ---- R-PAY-1: dates ----

/// R-PAY-1, the guide's first example: validated Saturday 9 Sept 2023 -> available Tuesday 12
/// -> paid Monday 18 (9 days).
#[test]
fn r_pay_1_validated_saturday_is_paid_nine_days_later() {
    let validated = utc(2023, 9, 9, 16, 0);
    let available = available_on(validated);
    assert_eq!(available, d(2023, 9, 12));
    assert_eq!(available.weekday(), Weekday::Tue);
    let paid = payout_on(available);
    assert_eq!(paid, d(2023, 9, 18));
    assert_eq!((paid - d(2023, 9, 9)).num_days(), 9);
}

/// R-PAY-1, the guide's second example: validated Wednesday 6 Sept 2023 -> available Saturday 9
/// -> paid Monday 11 (5 days).
#[test]
fn r_pay_1_validated_wednesday_is_paid_five_days_later() {
    let available = available_on(utc(2023, 9, 6, 19, 30));
    assert_eq!(available, d(2023, 9, 9));
    assert_eq!(payout_on(available), d(2023, 9, 11));
}

/// R-PAY-1 on each weekday of the week of 4 Sept 2023. Money available on a Monday (validated
/// Friday) waits for the next Monday.
#[test]
fn r_pay_1_payout_date_for_a_validation_on_each_weekday() {
    let expected = [
        (4, Weekday::Mon, 7, 11),
        (5, Weekday::Tue, 8, 11),
        (6, Weekday::Wed, 9, 11),
        (7, Weekday::Thu, 10, 11),
        (8, Weekday::Fri, 11, 18),
        (9, Weekday::Sat, 12, 18),
        (10, Weekday::Sun, 13, 18),
    ];
    for (day, weekday, available, paid) in expected {
        assert_eq!(d(2023, 9, day).weekday(), weekday);
        let a = available_on(utc(2023, 9, day, 10, 0));
        assert_eq!(a, d(2023, 9, available), "validated {weekday}");
        let p = payout_on(a);
        assert_eq!(p, d(2023, 9, paid), "validated {weekday}");
        assert_eq!(p.weekday(), Weekday::Mon);
        assert!(p > a && (p - a).num_days() <= 7);
    }
}

/// R-PAY-1: late in the evening UTC it is already the next day in Paris.
#[test]
fn r_pay_1_a_late_evening_validation_counts_from_the_paris_date() {
    // Friday 8 Sept 2023 22:30 UTC = Saturday 9 Sept 00:30 in Paris (CEST).
    assert_eq!(available_on(utc(2023, 9, 8, 22, 30)), d(2023, 9, 12));
    assert_eq!(available_on(utc(2023, 9, 8, 21, 59)), d(2023, 9, 11));
    // In winter (CET) the switch happens at 23:00 UTC.
    assert_eq!(available_on(utc(2024, 1, 5, 22, 59)), d(2024, 1, 8));
    assert_eq!(available_on(utc(2024, 1, 5, 23, 0)), d(2024, 1, 9));
}

/// R-PAY-1 across the DST changes of 31 March and 27 October 2024.
#[test]
fn r_pay_1_dates_across_daylight_saving_changes() {
    // Thursday 28 March 23:30 CET -> available Sunday 31 (the change) -> paid Monday 1 April.
    let a = available_on(utc(2024, 3, 28, 22, 30));
    assert_eq!(a, d(2024, 3, 31));
    assert_eq!(payout_on(a), d(2024, 4, 1));
    // Sunday 31 March 22:30 UTC is Monday 1 April 00:30 CEST.
    assert_eq!(available_on(utc(2024, 3, 31, 22, 30)), d(2024, 4, 4));
    // Saturday 30 March 22:30 UTC is still Saturday 23:30 CET.
    assert_eq!(available_on(utc(2024, 3, 30, 22, 30)), d(2024, 4, 2));
    // Saturday 26 October 22:30 UTC is Sunday 27 October 00:30 CEST (the change that night).
    let autumn = available_on(utc(2024, 10, 26, 22, 30));
    assert_eq!(autumn, d(2024, 10, 30));
    assert_eq!(payout_on(autumn), d(2024, 11, 4));
    // Sunday 27 October 23:30 UTC is Monday 28 00:30 CET.
    assert_eq!(available_on(utc(2024, 10, 27, 23, 30)), d(2024, 10, 31));
}

// ---- R-PAY-2: the aggregate ----

/// R-PAY-2: a sale is credited once; the net is gross - refunds - fees incl. VAT.
#[test]
fn r_pay_2_a_sale_is_credited_once_with_its_net() {
    let event = credited(1, "100.00", "0.00", d(2023, 9, 12));
    let ProducerBalanceEvent::SaleCredited { net, .. } = &event else {
        panic!("credit");
    };
    // 100.00 - 3.60 - 7.20.
    assert_eq!(*net, m("89.20"));
    Fw::with(())
        .given(vec![event])
        .when(credit_cmd(1, "100.00", "0.00", d(2023, 9, 12)))
        .then_expect_error(ProducerBalanceError::SaleAlreadyCredited { sale: sale(1) });
}

/// R-PAY-2: a credit whose net does not follow from its figures, or whose fee lines do not
/// recompute, is refused.
#[test]
fn r_pay_2_a_credit_with_a_wrong_net_or_fee_line_is_refused() {
    let ProducerBalanceCommand::CreditSale {
        sale,
        market,
        gross_incl_vat,
        refunds,
        fees,
        net,
        available_on,
        at,
        ..
    } = credit_cmd(1, "100.00", "10.00", d(2023, 9, 12))
    else {
        panic!("credit");
    };
    assert_eq!(net, m("80.28"));
    Fw::with(())
        .given_no_previous_events()
        .when(ProducerBalanceCommand::CreditSale {
            sale,
            market,
            gross_incl_vat,
            refunds,
            fees: fees.clone(),
            fee_refunds: vec![],
            net: m("81.00"),
            available_on,
            at,
        })
        .then_expect_error(ProducerBalanceError::NetMismatch {
            expected: m("80.28"),
            given: m("81.00"),
        });
    let mut tampered = fees.clone();
    tampered[0].amount_excl_vat = m("0.01");
    Fw::with(())
        .given_no_previous_events()
        .when(ProducerBalanceCommand::CreditSale {
            sale,
            market,
            gross_incl_vat,
            refunds,
            fees: tampered,
            fee_refunds: vec![],
            net,
            available_on,
            at,
        })
        .then_expect_error(ProducerBalanceError::FeeLineDoesNotRecompute {
            rule_id: "cagette.online_payment".into(),
        });
    Fw::with(())
        .given_no_previous_events()
        .when(ProducerBalanceCommand::CreditSale {
            sale,
            market,
            gross_incl_vat,
            refunds: m("100.01"),
            fees,
            fee_refunds: vec![],
            net,
            available_on,
            at,
        })
        .then_expect_error(ProducerBalanceError::RefundsAboveGross {
            gross: m("100.00"),
            refunds: m("100.01"),
        });
}

/// R-PAY-1, R-PAY-2: a payout pays every credit available on its date, with a statement listing
/// each sale and each fee line; later credits wait.
#[test]
fn r_pay_2_a_payout_pays_what_is_available_with_a_statement() {
    let mut b = fold(vec![
        credited(1, "100.00", "0.00", d(2023, 9, 12)),
        credited(2, "50.00", "5.00", d(2023, 9, 9)),
        credited(3, "30.00", "0.00", d(2023, 9, 19)),
    ]);
    assert_eq!(b.available(d(2023, 9, 18)), m("89.20") + m("40.14"));
    run(
        &mut b,
        ProducerBalanceCommand::StartPayout {
            payout: payout(1),
            on: d(2023, 9, 18),
            at: at(),
        },
    )
    .expect("payout");
    let statement = b.statement(payout(1)).expect("statement").clone();
    assert_eq!(statement.lines.len(), 2);
    assert_eq!(statement.total, m("129.34"));
    let line = statement
        .lines
        .iter()
        .find(|l| l.sale == sale(2))
        .expect("sale 2");
    assert_eq!(line.gross_incl_vat, m("50.00"));
    assert_eq!(line.refunds, m("5.00"));
    assert_eq!(line.fees.len(), 2);
    assert_eq!(
        line.net,
        line.gross_incl_vat - line.refunds - line.fees_incl_vat
    );
    assert_eq!(b.in_flight(), m("129.34"));
    assert_eq!(b.balance_held(), b.credited_total() - m("129.34"));
    assert_eq!(b.available(d(2023, 9, 18)), Money::ZERO);
    // R-PAY-2: the payout knows when it was sent and, below, when the bank confirmed it.
    let record = b.payout(payout(1)).expect("payout");
    assert_eq!((record.started_at, record.paid_at), (Some(at()), None));
    run(
        &mut b,
        ProducerBalanceCommand::RecordTransferSucceeded {
            payout: payout(1),
            provider_ref: "tr_1".into(),
            at: at() + chrono::Duration::hours(2),
        },
    )
    .expect("paid");
    assert_eq!(
        b.payout(payout(1)).expect("payout").paid_at,
        Some(at() + chrono::Duration::hours(2))
    );
    assert_eq!(b.paid_total(), m("129.34"));
    assert_eq!(b.in_flight(), Money::ZERO);
    assert_eq!(b.statement(payout(1)), Some(&statement));
    // A paid sale cannot be credited again.
    assert_eq!(
        b.decide(credit_cmd(1, "100.00", "0.00", d(2023, 9, 12))),
        Err(ProducerBalanceError::SaleAlreadyCredited { sale: sale(1) })
    );
}

/// R-PAY-2: an empty payout is refused.
#[test]
fn r_pay_2_an_empty_payout_is_refused() {
    Fw::with(())
        .given(vec![credited(1, "100.00", "0.00", d(2023, 9, 19))])
        .when(ProducerBalanceCommand::StartPayout {
            payout: payout(1),
            on: d(2023, 9, 18),
            at: at(),
        })
        .then_expect_error(ProducerBalanceError::NothingToPay { on: d(2023, 9, 18) });
}

fn started(n: u128, on: NaiveDate, credits: &[ProducerBalanceEvent]) -> ProducerBalanceEvent {
    fold(credits.to_vec())
        .decide(ProducerBalanceCommand::StartPayout {
            payout: payout(n),
            on,
            at: at(),
        })
        .expect("start")
        .remove(0)
}

/// R-PAY-2: a failed transfer is retried, then paid once; a second confirmation writes nothing.
#[test]
fn r_pay_2_a_failed_transfer_is_retried_and_paid_once() {
    let credit = credited(1, "100.00", "0.00", d(2023, 9, 12));
    let start = started(1, d(2023, 9, 18), std::slice::from_ref(&credit));
    let failed = ProducerBalanceEvent::TransferFailed {
        payout: payout(1),
        amount: m("89.20"),
        reason: "IBAN closed".into(),
        at: at(),
    };
    Fw::with(())
        .given(vec![credit.clone(), start.clone(), failed.clone()])
        .when(ProducerBalanceCommand::RetryTransfer {
            payout: payout(1),
            at: at(),
        })
        .then_expect_events(vec![ProducerBalanceEvent::TransferRetried {
            payout: payout(1),
            amount: m("89.20"),
            attempt: 2,
            at: at(),
        }]);
    // A failed transfer cannot be confirmed without a retry.
    Fw::with(())
        .given(vec![credit.clone(), start.clone(), failed.clone()])
        .when(ProducerBalanceCommand::RecordTransferSucceeded {
            payout: payout(1),
            provider_ref: "tr_1".into(),
            at: at(),
        })
        .then_expect_error(ProducerBalanceError::WrongPayoutStatus {
            payout: payout(1),
            status: PayoutStatus::Failed,
        });
    let succeeded = ProducerBalanceEvent::TransferSucceeded {
        payout: payout(1),
        amount: m("89.20"),
        provider_ref: "tr_1".into(),
        at: at(),
    };
    Fw::with(())
        .given(vec![credit.clone(), start.clone(), succeeded.clone()])
        .when(ProducerBalanceCommand::RecordTransferSucceeded {
            payout: payout(1),
            provider_ref: "tr_1".into(),
            at: at(),
        })
        .then_expect_events(vec![]);
    Fw::with(())
        .given(vec![credit, start, succeeded])
        .when(ProducerBalanceCommand::RecordTransferSucceeded {
            payout: payout(1),
            provider_ref: "tr_2".into(),
            at: at(),
        })
        .then_expect_error(ProducerBalanceError::WrongPayoutStatus {
            payout: payout(1),
            status: PayoutStatus::Succeeded,
        });
}

/// R-PAY-2: a failed transfer returned to the balance is paid by the next payout, and the
/// returned payout can never be confirmed.
#[test]
fn r_pay_2_a_returned_transfer_goes_back_to_the_balance_never_lost() {
    let credit = credited(1, "100.00", "0.00", d(2023, 9, 12));
    let start = started(1, d(2023, 9, 18), std::slice::from_ref(&credit));
    let mut b = fold(vec![credit, start]);
    let before = b.credited_total();
    run(
        &mut b,
        ProducerBalanceCommand::RecordTransferFailed {
            payout: payout(1),
            reason: "IBAN closed".into(),
            at: at(),
        },
    )
    .expect("failed");
    assert_eq!(b.in_flight(), m("89.20"));
    assert_eq!(b.balance_held(), Money::ZERO);
    run(
        &mut b,
        ProducerBalanceCommand::ReturnToBalance {
            payout: payout(1),
            at: at(),
        },
    )
    .expect("returned");
    assert_eq!(b.in_flight(), Money::ZERO);
    assert_eq!(b.balance_held(), before);
    assert_eq!(
        b.decide(ProducerBalanceCommand::RecordTransferSucceeded {
            payout: payout(1),
            provider_ref: "late".into(),
            at: at(),
        }),
        Err(ProducerBalanceError::WrongPayoutStatus {
            payout: payout(1),
            status: PayoutStatus::Returned
        })
    );
    assert_eq!(
        b.decide(ProducerBalanceCommand::StartPayout {
            payout: payout(1),
            on: d(2023, 9, 25),
            at: at(),
        }),
        Err(ProducerBalanceError::PayoutAlreadyExists { payout: payout(1) })
    );
    run(
        &mut b,
        ProducerBalanceCommand::StartPayout {
            payout: payout(2),
            on: d(2023, 9, 25),
            at: at(),
        },
    )
    .expect("next payout");
    assert_eq!(b.statement(payout(2)).expect("statement").total, m("89.20"));
}

#[test]
fn events_are_named_after_their_variant_and_version_1() {
    use cqrs_es::DomainEvent;
    let e = credited(1, "10.00", "0.00", d(2023, 9, 12));
    assert_eq!(e.event_type(), "SaleCredited");
    assert_eq!(e.event_version(), "1");
    assert_eq!(ProducerBalance::TYPE, "producer_balance");
    let json = serde_json::to_string(&e).expect("json");
    let back: ProducerBalanceEvent = serde_json::from_str(&json).expect("back");
    assert_eq!(back, e);
}

#[derive(Debug, Clone)]
enum Op {
    Credit {
        cents: i64,
        refund_pct: u8,
        delay: i64,
    },
    Start {
        day: i64,
    },
    Succeed {
        which: usize,
    },
    Fail {
        which: usize,
    },
    Retry {
        which: usize,
    },
    Return {
        which: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..50_000, 0u8..=100, 0i64..20).prop_map(|(cents, refund_pct, delay)| Op::Credit {
            cents,
            refund_pct,
            delay
        }),
        (0i64..30).prop_map(|day| Op::Start { day }),
        (0usize..8).prop_map(|which| Op::Succeed { which }),
        (0usize..8).prop_map(|which| Op::Fail { which }),
        (0usize..8).prop_map(|which| Op::Retry { which }),
        (0usize..8).prop_map(|which| Op::Return { which }),
    ]
}

proptest! {
    /// R-PAY-2: over any sequence of credits, payouts, successes, failures, retries and returns,
    /// money credited = paid + held + in flight, and no credit is ever paid twice.
    #[test]
    fn r_pay_2_money_is_never_lost_nor_paid_twice(ops in proptest::collection::vec(op(), 1..60)) {
        let mut b = ProducerBalance::default();
        let start = d(2023, 9, 1);
        let mut next_sale = 0u128;
        let mut payouts: Vec<PayoutId> = Vec::new();
        let mut paid_sales: BTreeSet<SaleId> = BTreeSet::new();
        let mut paid_sum = Money::ZERO;
        for op in ops {
            let cmd = match op {
                Op::Credit { cents, refund_pct, delay } => {
                    next_sale += 1;
                    let gross = Money::from_cents(cents);
                    let refunds = gross.times(rust_decimal::Decimal::new(i64::from(refund_pct), 2));
                    let fees = fees(gross - refunds);
                    let net = gross - refunds - fees.iter().map(|l| l.amount_incl_vat).sum::<Money>();
                    ProducerBalanceCommand::CreditSale {
                        sale: sale(next_sale),
                        market: market(),
                        gross_incl_vat: gross,
                        refunds,
                        fees,
                        fee_refunds: vec![],
                        net,
                        available_on: start + Duration::days(delay),
                        at: at(),
                    }
                }
                Op::Start { day } => {
                    let id = payout(payouts.len() as u128 + 1);
                    payouts.push(id);
                    ProducerBalanceCommand::StartPayout { payout: id, on: start + Duration::days(day), at: at() }
                }
                Op::Succeed { which } => match payouts.get(which) {
                    Some(p) => ProducerBalanceCommand::RecordTransferSucceeded { payout: *p, provider_ref: format!("tr-{which}"), at: at() },
                    None => continue,
                },
                Op::Fail { which } => match payouts.get(which) {
                    Some(p) => ProducerBalanceCommand::RecordTransferFailed { payout: *p, reason: "rejected".into(), at: at() },
                    None => continue,
                },
                Op::Retry { which } => match payouts.get(which) {
                    Some(p) => ProducerBalanceCommand::RetryTransfer { payout: *p, at: at() },
                    None => continue,
                },
                Op::Return { which } => match payouts.get(which) {
                    Some(p) => ProducerBalanceCommand::ReturnToBalance { payout: *p, at: at() },
                    None => continue,
                },
            };
            if let Ok(events) = b.decide(cmd) {
                for e in events {
                    if let ProducerBalanceEvent::TransferSucceeded { payout, amount, .. } = &e {
                        let statement = b.statement(*payout).expect("open payout").clone();
                        prop_assert_eq!(statement.total, *amount);
                        for line in &statement.lines {
                            prop_assert!(paid_sales.insert(line.sale), "sale paid twice");
                        }
                        paid_sum += *amount;
                    }
                    b.apply(e);
                }
            }
            prop_assert_eq!(b.credited_total(), b.paid_total() + b.balance_held() + b.in_flight());
            prop_assert_eq!(b.paid_total(), paid_sum);
            prop_assert!(!b.balance_held().is_negative());
        }
    }
}

fn service_fee(sold: Money) -> Vec<FeeLine> {
    let schedules = FeeSchedules::from_json(CAGETTE).expect("valid");
    schedules
        .get("cagette")
        .expect("cagette")
        .fees_for_share(&FeeInput {
            on: d(2023, 9, 9),
            online: false,
            amount_incl_vat: sold,
            amount_excl_vat: crate::vat::VatRate::Reduced5_5.excl_vat(sold),
            items: 1,
            orders: 1,
        })
        .expect("fees")
}

/// R-FEE-2, R-SAL-6: an on-site sale's service fee is owed once, deducted from the next payout;
/// with nothing available it stays owed and no payout is started.
#[test]
fn r_fee_2_an_on_site_fee_is_owed_once_and_deducted_from_the_next_payout() {
    let fees = service_fee(m("100.00"));
    assert_eq!(fees.len(), 1);
    let owed: Money = fees.iter().map(|l| l.amount_incl_vat).sum();
    let record = ProducerBalanceCommand::RecordOnSiteSale {
        sale: sale(9),
        market: market(),
        sales_incl_vat: m("100.00"),
        fees,
        at: at(),
    };
    let mut b = ProducerBalance::default();
    run(&mut b, record.clone()).expect("record");
    assert_eq!(
        run(&mut b, record),
        Err(ProducerBalanceError::OnSiteSaleAlreadyRecorded { sale: sale(9) })
    );
    assert_eq!(b.owed(), owed);
    assert_eq!(b.balance_held(), -owed);
    // Nothing to pay: the fee stays a receivable.
    let start = |n| ProducerBalanceCommand::StartPayout {
        payout: payout(n),
        on: d(2023, 9, 17),
        at: at(),
    };
    assert!(matches!(
        run(&mut b, start(1)),
        Err(ProducerBalanceError::NothingToPay { .. })
    ));
    run(&mut b, credit_cmd(1, "50.00", "0.00", d(2023, 9, 12))).expect("credit");
    let net = b.credits()[&sale(1)].net;
    run(&mut b, start(2)).expect("start");
    let st = b.statement(payout(2)).expect("statement").clone();
    assert_eq!(st.total, net - owed);
    assert_eq!(st.deductions.len(), 1);
    assert_eq!(b.owed(), Money::ZERO);
    run(
        &mut b,
        ProducerBalanceCommand::RecordTransferSucceeded {
            payout: payout(2),
            provider_ref: "tr".into(),
            at: at(),
        },
    )
    .expect("paid");
    assert!(b.debits().is_empty());
    assert_eq!(
        b.credited_total(),
        b.paid_total() + b.balance_held() + b.in_flight()
    );
}

/// R-FEE-4, R-PAY-2: a refund after crediting is debited once (cumulative total), net of the
/// fees given back; a debit above what is available waits for later credits.
#[test]
fn r_pay_2_a_late_refund_is_debited_once_and_recovered_from_later_credits() {
    let mut b = ProducerBalance::default();
    run(&mut b, credit_cmd(1, "20.00", "0.00", d(2023, 9, 12))).expect("credit");
    let before = b.credits()[&sale(1)].fees.clone();
    let debit = |total: &str| ProducerBalanceCommand::DebitRefunds {
        sale: sale(1),
        market: market(),
        order: Default::default(),
        refunds_total: m(total),
        fee_refunds: refund_fees(&before, m("20.00"), Money::ZERO, m(total)).expect("fee refund"),
        at: at(),
    };
    run(&mut b, debit("20.00")).expect("debit");
    assert_eq!(
        run(&mut b, debit("20.00")),
        Err(ProducerBalanceError::RefundsAlreadyDebited { sale: sale(1) })
    );
    // Everything refunded: the producer keeps nothing, owes nothing more.
    assert_eq!(b.balance_held(), Money::ZERO);
    let start = |n, on| ProducerBalanceCommand::StartPayout {
        payout: payout(n),
        on,
        at: at(),
    };
    assert!(matches!(
        run(&mut b, start(1, d(2023, 9, 17))),
        Err(ProducerBalanceError::NothingToPay { .. })
    ));
    run(&mut b, credit_cmd(2, "30.00", "0.00", d(2023, 9, 19))).expect("credit 2");
    let net2 = b.credits()[&sale(2)].net;
    run(&mut b, start(2, d(2023, 9, 24))).expect("start");
    assert_eq!(b.statement(payout(2)).expect("st").total, net2);
    // A debit on an uncredited sale is refused.
    assert_eq!(
        run(
            &mut b,
            ProducerBalanceCommand::DebitRefunds {
                sale: sale(3),
                market: market(),
                order: Default::default(),
                refunds_total: m("1.00"),
                fee_refunds: vec![],
                at: at(),
            }
        ),
        Err(ProducerBalanceError::SaleNotCredited { sale: sale(3) })
    );
}
