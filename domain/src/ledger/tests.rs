use chrono::{Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::fees::{refund_fees, FeeInput, FeeLine, FeeSchedule, FeeSchedules};
use crate::ids::{MarketId, ProducerId, SaleId};
use crate::money::Money;
use crate::payout::{PayoutId, ProducerBalance, ProducerBalanceCommand};
use crate::vat::VatRate;

const CAGETTE: &str = include_str!("../../../config/fees/cagette.json");
const RUCHE: &str = include_str!("../../../config/fees/ruche.json");

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
}
fn m(s: &str) -> Money {
    s.parse().expect("valid amount")
}
fn p(n: u128) -> ProducerId {
    ProducerId(uuid::Uuid::from_u128(n))
}
fn market() -> MarketId {
    MarketId(uuid::Uuid::from_u128(77))
}
fn schedule(json: &str, name: &str) -> FeeSchedule {
    FeeSchedules::from_json(json)
        .expect("valid")
        .get(name)
        .expect("schedule")
        .clone()
}
fn fees_on(schedule: &FeeSchedule, amount: Money) -> Vec<FeeLine> {
    schedule
        .fees_for_share(&FeeInput {
            on: d(2024, 6, 1),
            online: true,
            amount_incl_vat: amount,
            amount_excl_vat: VatRate::Reduced5_5.excl_vat(amount),
            items: 1,
            orders: 1,
        })
        .expect("fees")
}

/// R-PAY-3 worked through: a payment of 150.00 for two producers, Ruche fees (host and
/// platform), a refund with its fees, a payout that fails and is returned, then one that
/// succeeds. Every entry balances and money is conserved at every date.
#[test]
fn r_pay_3_a_worked_history_balances_and_conserves_money() {
    let ruche = schedule(RUCHE, "ruche");
    let mut ledger = Ledger::default();
    let day1 = d(2024, 6, 1);
    let pay = payment_received(
        entry_id("order", "o1", 3, ""),
        day1,
        &Shares {
            producers: vec![(p(1), m("100.00")), (p(2), m("50.00"))],
            market: Money::ZERO,
        },
        market(),
    );
    assert!(pay.is_balanced());
    ledger.post(pay.clone()).expect("post");
    // Posting the same event twice changes nothing.
    ledger.post(pay).expect("idempotent");
    let fees1 = fees_on(&ruche, m("100.00"));
    let charged = fees_charged(
        entry_id("order", "o1", 3, "fees:1"),
        day1,
        Some(d(2024, 6, 4)),
        p(1),
        market(),
        &fees1,
    );
    assert!(charged.is_balanced());
    ledger.post(charged).expect("post");
    // 100.00 incl. 5.5 % -> 94.79 excl.; host 8.35 % = 7.91, platform 11.65 % = 11.04.
    assert_eq!(
        ledger.credit_balance(&Account::HostFeeRevenue(market()), day1),
        m("7.91")
    );
    assert_eq!(
        ledger.credit_balance(&Account::PlatformFeeRevenue, day1),
        m("11.04")
    );
    assert_eq!(
        ledger.credit_balance(&Account::VatCollectedOnFees, day1),
        m("3.79")
    );
    assert_eq!(
        ledger.credit_balance(&Account::ProducerPayable(p(1)), day1),
        m("100.00") - m("22.74")
    );

    let day2 = d(2024, 6, 2);
    ledger
        .post(refund_paid(
            entry_id("order", "o1", 4, "refund:1"),
            day2,
            Account::ProducerPayable(p(1)),
            m("10.00"),
        ))
        .expect("post");
    let fee_refunds = refund_fees(&fees1, m("100.00"), Money::ZERO, m("10.00")).expect("refund");
    ledger
        .post(fees_refunded(
            entry_id("order", "o1", 4, "fees:1"),
            day2,
            p(1),
            market(),
            &fee_refunds,
        ))
        .expect("post");

    // Payouts, through the producer balance aggregate and its events.
    let mut balance = ProducerBalance::default();
    let mut seq = 0u64;
    let at = Utc
        .with_ymd_and_hms(2024, 6, 10, 6, 0, 0)
        .single()
        .expect("valid");
    let held = ledger.credit_balance(&Account::ProducerPayable(p(1)), day2);
    let commands = vec![
        ProducerBalanceCommand::CreditSale {
            sale: SaleId(uuid::Uuid::from_u128(9)),
            market: market(),
            gross_incl_vat: m("100.00"),
            refunds: m("10.00"),
            fees: Vec::new(),
            fee_refunds: Vec::new(),
            net: m("90.00"),
            available_on: d(2024, 6, 4),
            at,
        },
        ProducerBalanceCommand::StartPayout {
            payout: PayoutId(uuid::Uuid::from_u128(1)),
            on: d(2024, 6, 10),
            at,
        },
        ProducerBalanceCommand::RecordTransferFailed {
            payout: PayoutId(uuid::Uuid::from_u128(1)),
            reason: "rejected".into(),
            at,
        },
        ProducerBalanceCommand::ReturnToBalance {
            payout: PayoutId(uuid::Uuid::from_u128(1)),
            at: at + Duration::days(1),
        },
        ProducerBalanceCommand::StartPayout {
            payout: PayoutId(uuid::Uuid::from_u128(2)),
            on: d(2024, 6, 17),
            at: at + Duration::days(7),
        },
        ProducerBalanceCommand::RecordTransferSucceeded {
            payout: PayoutId(uuid::Uuid::from_u128(2)),
            provider_ref: "tr".into(),
            at: at + Duration::days(8),
        },
    ];
    for cmd in commands {
        for event in balance.decide(cmd).expect("accepted") {
            seq += 1;
            for entry in payout_entries(p(1), seq, &event) {
                assert!(entry.is_balanced());
                ledger.post(entry).expect("post");
            }
            cqrs_es::Aggregate::apply(&mut balance, event);
        }
    }
    // The simplified credit above pays 90.00 of what the ledger holds for producer 1.
    assert_eq!(balance.paid_total(), m("90.00"));
    let end = d(2024, 6, 30);
    assert_eq!(
        ledger.credit_balance(&Account::PayoutsSent, end),
        m("90.00")
    );
    assert_eq!(
        ledger.credit_balance(&Account::ProducerPayable(p(1)), end),
        held - m("90.00")
    );
    assert_eq!(
        ledger.balance(&Account::PayoutsInFlight(p(1)), end),
        Money::ZERO
    );
    // In flight between the failure and the return.
    assert_eq!(
        ledger.credit_balance(&Account::PayoutsInFlight(p(1)), d(2024, 6, 10)),
        m("90.00")
    );
    let mut day = d(2024, 5, 31);
    while day <= end {
        assert!(ledger.trial_balance(day).is_balanced(), "{day}");
        let c = ledger.conservation(day);
        assert!(c.holds(), "{day}: {c:?}");
        day += Duration::days(1);
    }
    let c = ledger.conservation(end);
    assert_eq!(c.payments, m("150.00"));
    assert_eq!(c.refunds, m("10.00"));
    assert_eq!(c.payouts, m("90.00"));
}

/// R-FEE-2: with Cagette's online payment, the fee entry credits 9.00 of platform revenue and
/// 1.80 of VAT on 100.00, all taken from the producer's payable.
#[test]
fn r_fee_2_cagette_fees_are_posted_by_beneficiary_with_their_vat() {
    let fees = fees_on(&schedule(CAGETTE, "cagette"), m("100.00"));
    let e = fees_charged(
        "order:o:1:fees".into(),
        d(2024, 6, 1),
        None,
        p(1),
        market(),
        &fees,
    );
    assert!(e.is_balanced());
    assert_eq!(
        e.postings,
        vec![
            Posting::debit(Account::ProducerPayable(p(1)), m("10.80")),
            Posting::credit(Account::PlatformFeeRevenue, m("9.00")),
            Posting::credit(Account::VatCollectedOnFees, m("1.80")),
        ]
    );
}

#[test]
fn unbalanced_conflicting_or_negative_entries_are_refused() {
    let mut ledger = Ledger::default();
    let mut bad = refund_paid(
        "x:1:1".into(),
        d(2024, 6, 1),
        Account::ProducerPayable(p(1)),
        m("5.00"),
    );
    bad.postings[0].debit = m("4.00");
    assert_eq!(
        ledger.post(bad),
        Err(LedgerError::Unbalanced {
            entry_id: "x:1:1".into()
        })
    );
    ledger
        .post(refund_paid(
            "x:1:1".into(),
            d(2024, 6, 1),
            Account::ProducerPayable(p(1)),
            m("5.00"),
        ))
        .expect("post");
    assert_eq!(
        ledger
            .post(refund_paid(
                "x:1:1".into(),
                d(2024, 6, 1),
                Account::ProducerPayable(p(1)),
                m("6.00")
            ))
            .map_err(|e| e.code()),
        Err("LEDGER_CONFLICTING_ENTRY")
    );
    let negative = refund_paid(
        "x:1:2".into(),
        d(2024, 6, 1),
        Account::ProducerPayable(p(1)),
        m("-5.00"),
    );
    assert_eq!(
        ledger.post(negative).map_err(|e| e.code()),
        Err("LEDGER_NEGATIVE_AMOUNT")
    );
    assert_eq!(entry_id("order", "abc", 7, ""), "order:abc:7");
    assert_eq!(entry_id("order", "abc", 7, "fees:2"), "order:abc:7:fees:2");
}

#[derive(Debug, Clone)]
enum Op {
    Pay { shares: Vec<(u8, i64)>, ruche: bool },
    Refund { which: usize, pct: u8 },
    Payout { producer: u8 },
    Succeed { which: usize },
    Fail { which: usize },
    Return { which: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            proptest::collection::vec((0u8..3, 1i64..100_000), 1..4),
            any::<bool>()
        )
            .prop_map(|(shares, ruche)| Op::Pay { shares, ruche }),
        (0usize..10, 1u8..=100).prop_map(|(which, pct)| Op::Refund { which, pct }),
        (0u8..3).prop_map(|producer| Op::Payout { producer }),
        (0usize..6).prop_map(|which| Op::Succeed { which }),
        (0usize..6).prop_map(|which| Op::Fail { which }),
        (0usize..6).prop_map(|which| Op::Return { which }),
    ]
}

struct Paid {
    producer: ProducerId,
    amount: Money,
    refunded: Money,
    fees: Vec<FeeLine>,
}

#[derive(PartialEq)]
enum Transfer {
    InFlight,
    Failed,
    Done,
}

proptest! {
    /// R-PAY-3: random sequences of payments (several producers), fees (with host shares),
    /// refunds (with their fees), payouts, failed, returned and confirmed transfers always give
    /// a balanced ledger that conserves money, at every date.
    #[test]
    fn r_pay_3_random_histories_balance_and_conserve_money(
        ops in proptest::collection::vec((op(), 0i64..3), 1..50)
    ) {
        let cagette = schedule(CAGETTE, "cagette");
        let ruche = schedule(RUCHE, "ruche");
        let mut ledger = Ledger::default();
        let mut paid: Vec<Paid> = Vec::new();
        let mut payouts: Vec<(ProducerId, Money, Transfer)> = Vec::new();
        let start = d(2024, 1, 1);
        let mut date = start;
        for (seq, (op, step)) in ops.into_iter().enumerate() {
            date += Duration::days(step);
            let seq = seq as u64;
            let mut entries = Vec::new();
            match op {
                Op::Pay { shares, ruche: with_ruche } => {
                    let shares: Vec<(ProducerId, Money)> = shares
                        .iter()
                        .map(|(n, c)| (p(u128::from(*n)), Money::from_cents(*c)))
                        .collect();
                    entries.push(payment_received(entry_id("order", "o", seq, ""), date, &Shares { producers: shares.clone(), market: Money::ZERO }, market()));
                    for (i, (producer, amount)) in shares.iter().enumerate() {
                        let fees = fees_on(if with_ruche { &ruche } else { &cagette }, *amount);
                        entries.push(fees_charged(
                            entry_id("order", "o", seq, &format!("fees:{i}")),
                            date, None, *producer, market(), &fees,
                        ));
                        paid.push(Paid { producer: *producer, amount: *amount, refunded: Money::ZERO, fees });
                    }
                }
                Op::Refund { which, pct } => {
                    let Some(share) = paid.get_mut(which) else { continue };
                    let now = share
                        .amount
                        .times(rust_decimal::Decimal::new(i64::from(pct), 2))
                        .min(share.amount - share.refunded);
                    let fee_back = refund_fees(&share.fees, share.amount, share.refunded, now)
                        .expect("refund");
                    let fee_back_total: Money = fee_back.iter().map(|r| r.amount_incl_vat).sum();
                    let payable = ledger.credit_balance(&Account::ProducerPayable(share.producer), date);
                    // A refund is taken from what is still held for the producer.
                    if payable + fee_back_total < now {
                        continue;
                    }
                    share.refunded += now;
                    entries.push(refund_paid(entry_id("order", "o", seq, "refund"), date, Account::ProducerPayable(share.producer), now));
                    entries.push(fees_refunded(entry_id("order", "o", seq, "fees"), date, share.producer, market(), &fee_back));
                }
                Op::Payout { producer } => {
                    let producer = p(u128::from(producer));
                    let payable = ledger.credit_balance(&Account::ProducerPayable(producer), date);
                    if payable <= Money::ZERO {
                        continue;
                    }
                    entries.push(payout_sent(entry_id("producer_balance", producer, seq, ""), date, producer, payable));
                    payouts.push((producer, payable, Transfer::InFlight));
                }
                Op::Succeed { which } => {
                    let Some((producer, amount, state)) = payouts.get_mut(which) else { continue };
                    if *state != Transfer::InFlight { continue }
                    *state = Transfer::Done;
                    entries.push(payout_succeeded(entry_id("producer_balance", *producer, seq, ""), date, *producer, *amount));
                }
                Op::Fail { which } => {
                    if let Some((_, _, state)) = payouts.get_mut(which) {
                        if *state == Transfer::InFlight {
                            *state = Transfer::Failed;
                        }
                    }
                }
                Op::Return { which } => {
                    let Some((producer, amount, state)) = payouts.get_mut(which) else { continue };
                    if *state != Transfer::Failed { continue }
                    *state = Transfer::Done;
                    entries.push(payout_returned(entry_id("producer_balance", *producer, seq, ""), date, *producer, *amount));
                }
            }
            for entry in entries {
                prop_assert!(entry.is_balanced());
                ledger.post(entry).expect("posted");
            }
        }
        let mut day = start;
        while day <= date {
            prop_assert!(ledger.trial_balance(day).is_balanced());
            let c = ledger.conservation(day);
            prop_assert!(c.holds(), "{}: {:?}", day, c);
            for n in 0..3 {
                prop_assert!(!ledger.credit_balance(&Account::ProducerPayable(p(n)), day).is_negative());
                prop_assert!(!ledger.credit_balance(&Account::PayoutsInFlight(p(n)), day).is_negative());
            }
            prop_assert!(ledger.credit_balance(&Account::Refunds, day) <= c.payments);
            day += Duration::days(1);
        }
    }
}
