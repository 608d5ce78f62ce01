use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;

use super::*;
use crate::config::{Config, PlanKind};
use crate::ids::{OrderId, ProducerId};
use crate::money::Money;

type Test = TestFramework<AnnualSales>;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 5, 1, 9, 0, 0)
        .single()
        .expect("instant")
}
fn m(s: &str) -> Money {
    s.parse().expect("amount")
}
fn order(n: u128) -> OrderId {
    OrderId(uuid::Uuid::from_u128(n))
}

/// The Discovery cap, from the shipped configuration (not a constant in code).
fn discovery_cap() -> Option<Money> {
    Config::from_json(include_str!("../../../config/plans.json"))
        .expect("config")
        .plan_terms(PlanKind::Discovery, at().date_naive())
        .and_then(|t| t.annual_cap_non_amap)
}

fn reserve(n: u128, amount: &str, amap: bool) -> AnnualSalesCommand {
    AnnualSalesCommand::Reserve {
        order: order(n),
        amount: m(amount),
        amap,
        cap: discovery_cap(),
        at: at(),
    }
}

fn reserved(n: u128, amount: &str, amap: bool, left_after: &str) -> AnnualSalesEvent {
    AnnualSalesEvent::Reserved {
        order: order(n),
        amount: m(amount),
        amap,
        cap: discovery_cap(),
        left_after: Some(m(left_after)),
        at: at(),
    }
}

fn state(events: Vec<AnnualSalesEvent>) -> AnnualSales {
    let mut s = AnnualSales::default();
    for e in events {
        s.apply(e);
    }
    s
}

/// R-ACC-4: reaching the cap exactly is allowed.
#[test]
fn an_order_reaching_the_cap_exactly_is_accepted() {
    assert_eq!(discovery_cap(), Some(m("1000")));
    Test::with(())
        .given(vec![
            reserved(1, "600.00", false, "400.00"),
            AnnualSalesEvent::Confirmed { order: order(1) },
            reserved(2, "150.00", false, "250.00"),
        ])
        .when(reserve(3, "250.00", false))
        .then_expect_events(vec![reserved(3, "250.00", false, "0.00")]);
}

/// R-ACC-4: one cent over the cap is refused with an error naming the cap and the amount left.
#[test]
fn an_order_one_cent_over_the_cap_is_refused_naming_the_cap_and_the_amount_left() {
    let given = vec![
        reserved(1, "600.00", false, "400.00"),
        AnnualSalesEvent::Confirmed { order: order(1) },
        reserved(2, "150.00", false, "250.00"),
    ];
    let error = AnnualSalesError::CapExceeded {
        cap: m("1000"),
        left: m("250.00"),
    };
    Test::with(())
        .given(given)
        .when(reserve(3, "250.01", false))
        .then_expect_error(error.clone());
    assert_eq!(error.code(), "CAP_EXCEEDED");
    let message = error.to_string();
    assert!(message.contains("1000.00 EUR"), "{message}");
    assert!(message.contains("250.00 EUR left"), "{message}");
}

/// R-ACC-4: sales in AMAP markets never count, but are recorded.
#[test]
fn amap_sales_never_count_against_the_cap_but_are_recorded() {
    let given = vec![reserved(1, "1000.00", false, "0.00")];
    Test::with(())
        .given(given.clone())
        .when(reserve(2, "5000.00", true))
        .then_expect_events(vec![reserved(2, "5000.00", true, "0.00")]);
    let mut events = given;
    events.push(reserved(2, "5000.00", true, "0.00"));
    let s = state(events);
    assert_eq!(s.amap_total(), m("5000"));
    assert_eq!(s.committed_non_amap(), m("1000"));
    assert_eq!(s.left(discovery_cap()), Some(Money::ZERO));
}

/// R-ACC-4: releasing a failed or cancelled order frees its room.
#[test]
fn releasing_an_order_frees_room_under_the_cap() {
    let given = vec![
        reserved(1, "900.00", false, "100.00"),
        AnnualSalesEvent::Confirmed { order: order(1) },
    ];
    Test::with(())
        .given(given.clone())
        .when(reserve(2, "200.00", false))
        .then_expect_error(AnnualSalesError::CapExceeded {
            cap: m("1000"),
            left: m("100.00"),
        });
    Test::with(())
        .given(given.clone())
        .when(AnnualSalesCommand::Release { order: order(1) })
        .then_expect_events(vec![AnnualSalesEvent::Released {
            order: order(1),
            amount: m("900"),
        }]);
    let mut events = given;
    events.push(AnnualSalesEvent::Released {
        order: order(1),
        amount: m("900"),
    });
    Test::with(())
        .given(events)
        .when(reserve(2, "200.00", false))
        .then_expect_events(vec![reserved(2, "200.00", false, "800.00")]);
}

/// R-ACC-4: a shortage reduces the committed amount.
#[test]
fn reducing_an_order_after_a_shortage_frees_the_difference() {
    let given = vec![reserved(1, "1000.00", false, "0.00")];
    Test::with(())
        .given(given.clone())
        .when(AnnualSalesCommand::Reduce {
            order: order(1),
            new_amount: m("940.50"),
        })
        .then_expect_events(vec![AnnualSalesEvent::Reduced {
            order: order(1),
            from: m("1000"),
            to: m("940.50"),
        }]);
    let mut events = given.clone();
    events.push(AnnualSalesEvent::Reduced {
        order: order(1),
        from: m("1000"),
        to: m("940.50"),
    });
    assert_eq!(state(events).left(discovery_cap()), Some(m("59.50")));
    for bad in ["1000.00", "1000.01", "-1"] {
        Test::with(())
            .given(given.clone())
            .when(AnnualSalesCommand::Reduce {
                order: order(1),
                new_amount: m(bad),
            })
            .then_expect_error(AnnualSalesError::NotAReduction {
                order: order(1),
                current: m("1000"),
            });
    }
}

/// R-ACC-4: an account without a cap (Pro, Member...) is never refused.
#[test]
fn without_a_cap_nothing_is_refused() {
    Test::with(())
        .given(vec![reserved(1, "1000.00", false, "0.00")])
        .when(AnnualSalesCommand::Reserve {
            order: order(2),
            amount: m("99999"),
            amap: false,
            cap: None,
            at: at(),
        })
        .then_expect_events(vec![AnnualSalesEvent::Reserved {
            order: order(2),
            amount: m("99999"),
            amap: false,
            cap: None,
            left_after: None,
            at: at(),
        }]);
}

#[test]
fn invalid_reservations_confirmations_and_releases_are_refused() {
    Test::with(())
        .given_no_previous_events()
        .when(reserve(1, "0", false))
        .then_expect_error(AnnualSalesError::NonPositiveAmount);
    Test::with(())
        .given(vec![reserved(1, "10.00", false, "990.00")])
        .when(reserve(1, "10.00", false))
        .then_expect_error(AnnualSalesError::AlreadyReserved { order: order(1) });
    Test::with(())
        .given_no_previous_events()
        .when(AnnualSalesCommand::Confirm { order: order(1) })
        .then_expect_error(AnnualSalesError::UnknownOrder { order: order(1) });
    Test::with(())
        .given_no_previous_events()
        .when(AnnualSalesCommand::Release { order: order(1) })
        .then_expect_error(AnnualSalesError::UnknownOrder { order: order(1) });
    Test::with(())
        .given(vec![
            reserved(1, "10.00", false, "990.00"),
            AnnualSalesEvent::Confirmed { order: order(1) },
        ])
        .when(AnnualSalesCommand::Confirm { order: order(1) })
        .then_expect_error(AnnualSalesError::AlreadyConfirmed { order: order(1) });
}

/// R-ACC-4: the year is the Paris calendar year of the distribution date.
#[test]
fn the_stream_is_the_producers_paris_calendar_year_of_distribution() {
    let p = ProducerId(uuid::Uuid::from_u128(7));
    let new_year_eve_utc = Utc
        .with_ymd_and_hms(2025, 12, 31, 23, 30, 0)
        .single()
        .expect("instant");
    assert_eq!(sales_year(new_year_eve_utc), 2026);
    assert_eq!(
        annual_sales_id(p, 2026),
        "00000000-0000-0000-0000-000000000007:2026"
    );
}

#[test]
fn the_annual_state_round_trips_through_json_for_snapshots() {
    let s = state(vec![
        reserved(1, "10.00", false, "990.00"),
        reserved(2, "20.00", true, "990.00"),
        AnnualSalesEvent::Confirmed { order: order(1) },
    ]);
    let back: AnnualSales =
        serde_json::from_str(&serde_json::to_string(&s).expect("serialize")).expect("parse");
    assert_eq!(back, s);
    assert_eq!(s.confirmed_non_amap(), m("10"));
    assert_eq!(s.pending_non_amap(), Money::ZERO);
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { order: u8, cents: i64, amap: bool },
    Confirm { order: u8 },
    Release { order: u8 },
    Reduce { order: u8, cents: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12, 1i64..60_000, any::<bool>())
            .prop_map(|(order, cents, amap)| Op::Reserve { order, cents, amap }),
        2 => (0u8..12).prop_map(|order| Op::Confirm { order }),
        1 => (0u8..12).prop_map(|order| Op::Release { order }),
        1 => (0u8..12, -100i64..60_000).prop_map(|(order, cents)| Op::Reduce { order, cents }),
    ]
}

proptest! {
    /// R-ACC-4: whatever the sequence of reservations, confirmations, releases and reductions,
    /// committed non-AMAP sales never exceed the cap, and a refusal names the true amount left.
    #[test]
    fn committed_non_amap_sales_never_exceed_the_cap(
        cap_cents in 1i64..200_000,
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let cap = Money::from_cents(cap_cents);
        let mut history: Vec<AnnualSalesEvent> = Vec::new();
        for op in ops {
            let command = match op {
                Op::Reserve { order: o, cents, amap } => AnnualSalesCommand::Reserve {
                    order: order(o.into()),
                    amount: Money::from_cents(cents),
                    amap,
                    cap: Some(cap),
                    at: at(),
                },
                Op::Confirm { order: o } => AnnualSalesCommand::Confirm { order: order(o.into()) },
                Op::Release { order: o } => AnnualSalesCommand::Release { order: order(o.into()) },
                Op::Reduce { order: o, cents } => AnnualSalesCommand::Reduce {
                    order: order(o.into()),
                    new_amount: Money::from_cents(cents),
                },
            };
            let before = state(history.clone());
            match Test::with(()).given(history.clone()).when(command).inspect_result() {
                Ok(events) => history.extend(events),
                Err(AnnualSalesError::CapExceeded { cap: named, left }) => {
                    prop_assert_eq!(named, cap);
                    prop_assert_eq!(Some(left), before.left(Some(cap)));
                }
                Err(_) => {}
            }
            let after = state(history.clone());
            prop_assert!(after.committed_non_amap() <= cap);
            prop_assert_eq!(
                after.committed_non_amap(),
                after.confirmed_non_amap() + after.pending_non_amap()
            );
        }
    }
}

/// R-ORD-4, R-ACC-4: a heavier weighing raises the order's amount within the cap, and is
/// refused past it; AMAP orders never count.
#[test]
fn r_ord_4_a_heavier_weighing_raises_the_amount_within_the_cap_only() {
    let cap = discovery_cap().expect("Discovery has a cap");
    let near = cap - m("10.00");
    let s = state(vec![AnnualSalesEvent::Reserved {
        order: order(1),
        amount: near,
        amap: false,
        cap: Some(cap),
        left_after: Some(m("10.00")),
        at: at(),
    }]);
    let raise = |to: Money| AnnualSalesCommand::Raise {
        order: order(1),
        new_amount: to,
        cap: Some(cap),
    };
    assert_eq!(
        s.decide(raise(near + m("10.00"))).unwrap(),
        vec![AnnualSalesEvent::Raised {
            order: order(1),
            from: near,
            to: cap
        }]
    );
    assert_eq!(
        s.decide(raise(near + m("10.01"))).unwrap_err().code(),
        "CAP_EXCEEDED"
    );
    assert_eq!(s.decide(raise(near)).unwrap_err().code(), "NOT_A_RAISE");
    let amap = state(vec![AnnualSalesEvent::Reserved {
        order: order(1),
        amount: near,
        amap: true,
        cap: Some(cap),
        left_after: None,
        at: at(),
    }]);
    assert!(
        amap.decide(raise(cap + m("500.00"))).is_ok(),
        "AMAP never counts"
    );
    let mut raised = s.clone();
    for e in s.decide(raise(cap)).unwrap() {
        raised.apply(e);
    }
    assert_eq!(raised.reservation(order(1)).unwrap().amount, cap);
}
