use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;

use super::*;
use crate::actor::{Actor, ProducerAccess, Role};
use crate::ids::{OrderId, ProducerId, ProductId, SaleId, UserId};

type Fw = TestFramework<Stock>;

fn product() -> ProductId {
    ProductId(uuid::Uuid::from_u128(1))
}
fn producer() -> ProducerId {
    ProducerId(uuid::Uuid::from_u128(2))
}
fn access() -> ProducerAccess {
    ProducerAccess {
        producer: producer(),
        actor: Actor::new(UserId(uuid::Uuid::from_u128(3)), Role::Producer),
        owner: true,
    }
}
fn order(n: u128) -> OrderId {
    OrderId(uuid::Uuid::from_u128(100 + n))
}
fn sale(n: u128) -> SaleId {
    SaleId(uuid::Uuid::from_u128(200 + n))
}
fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0)
        .single()
        .expect("valid")
}
fn set(real: Option<i64>, ordered: i64) -> StockEvent {
    StockEvent::StockSet {
        product: product(),
        producer: producer(),
        real,
        ordered,
    }
}
fn reserved(o: u128, s: u128, quantity: i64, available: Option<i64>) -> StockEvent {
    StockEvent::StockReserved {
        product: product(),
        reservation: order(o),
        sale: sale(s),
        quantity,
        expires_at: noon(),
        available,
    }
}
fn reserve(o: u128, s: u128, quantity: i64) -> StockCommand {
    StockCommand::Reserve {
        product: product(),
        reservation: order(o),
        sale: sale(s),
        quantity,
        expires_at: noon(),
    }
}
fn stock_of(events: Vec<StockEvent>) -> Stock {
    let mut s = Stock::default();
    for e in events {
        s.apply(e);
    }
    s
}

/// R-STK-2
#[test]
fn available_is_real_stock_minus_ordered_units() {
    let s = stock_of(vec![
        set(Some(10), 0),
        reserved(1, 1, 3, Some(7)),
        reserved(2, 1, 2, Some(5)),
        StockEvent::ReservationConfirmed {
            reservation: order(1),
        },
    ]);
    assert_eq!(s.real(), Some(10));
    assert_eq!(s.ordered(), 5);
    assert_eq!(s.available(), Some(5));
}

/// R-STK-1: one stock per product, shared by the sales of every market selling it.
#[test]
fn a_reservation_for_one_market_lowers_what_another_market_can_order() {
    // Sale 1 and sale 2 belong to different markets; they draw from the same product stock.
    Fw::with(())
        .given(vec![set(Some(5), 0), reserved(1, 1, 4, Some(1))])
        .when(reserve(2, 2, 2))
        .then_expect_error(StockError::StockExhausted {
            product: product(),
            available: 1,
        });
}

/// R-STK-1: a product without a limit takes any quantity.
#[test]
fn an_unlimited_stock_accepts_every_reservation() {
    Fw::with(())
        .given(vec![set(None, 0)])
        .when(reserve(1, 1, 1_000))
        .then_expect_events(vec![reserved(1, 1, 1_000, None)]);
}

/// R-STK-3
#[test]
fn the_last_unit_goes_to_one_customer_only() {
    let s = stock_of(vec![set(Some(1), 0)]);
    let first = s.decide(reserve(1, 1, 1)).expect("first customer gets it");
    assert_eq!(first, vec![reserved(1, 1, 1, Some(0))]);
    let mut s = s;
    for e in first {
        s.apply(e);
    }
    let err = s.decide(reserve(2, 1, 1)).unwrap_err();
    assert_eq!(
        err,
        StockError::StockExhausted {
            product: product(),
            available: 0
        }
    );
    assert_eq!(err.code(), "STOCK_EXHAUSTED");
    assert_eq!(err.to_string(), "only 0 left");
}

/// R-STK-3
#[test]
fn a_reservation_above_what_is_available_is_refused_and_names_what_is_left() {
    Fw::with(())
        .given(vec![set(Some(3), 0), reserved(1, 1, 1, Some(2))])
        .when(reserve(2, 1, 3))
        .then_expect_error(StockError::StockExhausted {
            product: product(),
            available: 2,
        });
}

#[test]
fn a_quantity_must_be_positive() {
    Fw::with(())
        .given(vec![set(Some(3), 0)])
        .when(reserve(1, 1, 0))
        .then_expect_error(StockError::QuantityNotPositive { quantity: 0 });
}

#[test]
fn a_retried_reservation_changes_nothing() {
    Fw::with(())
        .given(vec![set(Some(3), 0), reserved(1, 1, 2, Some(1))])
        .when(reserve(1, 1, 2))
        .then_expect_events(vec![]);
}

#[test]
fn a_released_reservation_frees_its_units() {
    let s = stock_of(vec![set(Some(3), 0), reserved(1, 1, 2, Some(1))]);
    let events = s
        .decide(StockCommand::Release {
            reservation: order(1),
        })
        .expect("released");
    assert_eq!(
        events,
        vec![StockEvent::ReservationReleased {
            reservation: order(1),
            quantity: 2
        }]
    );
    let mut s = s;
    s.apply(events[0].clone());
    assert_eq!(s.available(), Some(3));
    assert!(s.reservations().is_empty());
}

#[test]
fn unconfirmed_reservations_expire_and_confirmed_ones_stay() {
    Fw::with(())
        .given(vec![
            set(Some(10), 0),
            reserved(1, 1, 2, Some(8)),
            reserved(2, 1, 3, Some(5)),
            StockEvent::ReservationConfirmed {
                reservation: order(2),
            },
        ])
        .when(StockCommand::ExpireReservations {
            at: noon() + Duration::minutes(1),
        })
        .then_expect_events(vec![StockEvent::ReservationExpired {
            reservation: order(1),
            quantity: 2,
        }]);
}

/// R-ORD-4 shortage: a reservation is lowered, 0 releases it.
#[test]
fn a_shortage_lowers_a_reservation_and_zero_releases_it() {
    let given = vec![set(Some(10), 0), reserved(1, 1, 4, Some(6))];
    Fw::with(())
        .given(given.clone())
        .when(StockCommand::AdjustReservation {
            reservation: order(1),
            quantity: 1,
        })
        .then_expect_events(vec![StockEvent::ReservationAdjusted {
            reservation: order(1),
            old_quantity: 4,
            new_quantity: 1,
        }]);
    Fw::with(())
        .given(given.clone())
        .when(StockCommand::AdjustReservation {
            reservation: order(1),
            quantity: 0,
        })
        .then_expect_events(vec![StockEvent::ReservationReleased {
            reservation: order(1),
            quantity: 4,
        }]);
    Fw::with(())
        .given(given)
        .when(StockCommand::AdjustReservation {
            reservation: order(1),
            quantity: 5,
        })
        .then_expect_error(StockError::CannotRaise {
            reservation: order(1),
            current: 4,
            requested: 5,
        });
}

/// R-STK-4
#[test]
fn after_distribution_confirmed_units_of_the_sale_count_as_delivered() {
    let s = stock_of(vec![
        set(Some(10), 0),
        reserved(1, 1, 2, Some(8)),
        reserved(2, 1, 3, Some(5)),
        reserved(3, 2, 1, Some(4)),
        StockEvent::ReservationConfirmed {
            reservation: order(1),
        },
        StockEvent::ReservationConfirmed {
            reservation: order(2),
        },
        StockEvent::ReservationConfirmed {
            reservation: order(3),
        },
    ]);
    let at = noon() + Duration::days(1);
    let events = s
        .decide(StockCommand::Deliver { sale: sale(1), at })
        .expect("delivered");
    assert_eq!(
        events,
        vec![StockEvent::StockDelivered {
            sale: sale(1),
            reservations: vec![order(1), order(2)],
            quantity: 5,
            real: Some(5),
            at,
        }]
    );
    let mut s = s;
    s.apply(events[0].clone());
    assert_eq!(s.real(), Some(5));
    assert_eq!(s.ordered(), 1);
    assert_eq!(s.available(), Some(4));
    assert_eq!(s.reservations().len(), 1);
}

/// R-STK-5
#[test]
fn a_stock_update_applies_at_once_to_reservations() {
    let s = stock_of(vec![set(Some(1), 0), reserved(1, 1, 1, Some(0))]);
    assert!(s.decide(reserve(2, 1, 2)).is_err());
    let mut s = s;
    for e in s
        .decide(StockCommand::SetStock {
            product: product(),
            access: access(),
            real: Some(4),
        })
        .expect("set")
    {
        s.apply(e);
    }
    assert_eq!(s.available(), Some(3));
    assert_eq!(
        s.decide(reserve(2, 1, 2)).expect("now possible"),
        vec![reserved(2, 1, 2, Some(1))]
    );
}

/// R-STK-5: the producer cannot set less than what is already ordered.
#[test]
fn a_stock_below_ordered_units_is_refused() {
    Fw::with(())
        .given(vec![set(Some(5), 0), reserved(1, 1, 3, Some(2))])
        .when(StockCommand::SetStock {
            product: product(),
            access: access(),
            real: Some(2),
        })
        .then_expect_error(StockError::BelowOrdered {
            real: 2,
            ordered: 3,
        });
}

#[test]
fn another_producer_cannot_set_the_stock() {
    let mut other = access();
    other.producer = ProducerId(uuid::Uuid::from_u128(9));
    Fw::with(())
        .given(vec![set(Some(5), 0)])
        .when(StockCommand::SetStock {
            product: product(),
            access: other,
            real: Some(2),
        })
        .then_expect_error(StockError::NotYourProduct { owner: producer() });
}

#[test]
fn the_stock_state_survives_a_json_snapshot() {
    let s = stock_of(vec![set(Some(5), 0), reserved(1, 1, 3, Some(2))]);
    let json = serde_json::to_string(&s).expect("serialize");
    let back: Stock = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, s);
}

#[derive(Debug, Clone)]
enum Op {
    Set(Option<i64>),
    Reserve(u8, u8, i64),
    Confirm(u8),
    Release(u8),
    Adjust(u8, i64),
    Deliver(u8),
    Expire(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::option::of(0i64..30).prop_map(Op::Set),
        (0u8..8, 0u8..3, -2i64..12).prop_map(|(o, s, q)| Op::Reserve(o, s, q)),
        (0u8..8).prop_map(Op::Confirm),
        (0u8..8).prop_map(Op::Release),
        (0u8..8, -1i64..12).prop_map(|(o, q)| Op::Adjust(o, q)),
        (0u8..3).prop_map(Op::Deliver),
        (0i64..120).prop_map(Op::Expire),
    ]
}

proptest! {
    /// R-STK-2, R-STK-3: whatever happens, a limited stock never has a negative availability,
    /// and ordered is always the sum of the live reservations.
    #[test]
    fn availability_never_goes_negative_and_ordered_is_the_sum_of_reservations(
        ops in prop::collection::vec(op(), 1..60)
    ) {
        let mut s = stock_of(vec![set(Some(10), 0)]);
        for op in ops {
            let cmd = match op {
                Op::Set(real) => StockCommand::SetStock { product: product(), access: access(), real },
                Op::Reserve(o, sl, q) => StockCommand::Reserve {
                    product: product(),
                    reservation: order(u128::from(o)),
                    sale: sale(u128::from(sl)),
                    quantity: q,
                    expires_at: noon() + Duration::minutes(i64::from(o) * 10),
                },
                Op::Confirm(o) => StockCommand::Confirm { reservation: order(u128::from(o)) },
                Op::Release(o) => StockCommand::Release { reservation: order(u128::from(o)) },
                Op::Adjust(o, q) => StockCommand::AdjustReservation { reservation: order(u128::from(o)), quantity: q },
                Op::Deliver(sl) => StockCommand::Deliver { sale: sale(u128::from(sl)), at: noon() },
                Op::Expire(m) => StockCommand::ExpireReservations { at: noon() + Duration::minutes(m) },
            };
            if let Ok(events) = s.decide(cmd) {
                for e in events {
                    s.apply(e);
                }
            }
            if let Some(available) = s.available() {
                prop_assert!(available >= 0, "available {available}");
            }
            let sum: i64 = s.reservations().values().map(|r| r.quantity).sum();
            prop_assert_eq!(s.ordered(), sum);
            prop_assert!(s.reservations().values().all(|r| r.quantity > 0));
        }
    }
}
