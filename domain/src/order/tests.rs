use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::actor::{Actor, MarketAccess, ProducerAccess, Role};
use crate::ids::{CatalogId, MarketId, OrderId, PaymentId, ProducerId, ProductId, SaleId, UserId};
use crate::market::PaymentMode;
use crate::money::Money;
use crate::vat::VatRate;

type Fw = TestFramework<Order>;

fn u(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}
fn m(s: &str) -> Money {
    s.parse().expect("money")
}
fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 10, 9, 0, 0)
        .single()
        .expect("valid")
}
fn customer() -> Actor {
    Actor::new(UserId(u(1)), Role::Customer)
}
fn market() -> MarketId {
    MarketId(u(2))
}
fn farmer() -> ProducerAccess {
    ProducerAccess {
        producer: ProducerId(u(3)),
        actor: Actor::new(UserId(u(30)), Role::Producer),
        owner: true,
    }
}
fn baker() -> ProducerAccess {
    ProducerAccess {
        producer: ProducerId(u(4)),
        actor: Actor::new(UserId(u(40)), Role::Producer),
        owner: true,
    }
}
fn admin_access() -> MarketAccess {
    MarketAccess {
        market: market(),
        actor: Actor::new(UserId(u(50)), Role::MarketAdmin),
        administrator: true,
        referent: false,
    }
}
/// Line 1: 3 jars of honey at 2.35 (farmer); line 2: 2 chickens at 18.90/kg, about 1.333 kg
/// each (baker's second catalog, variable weight).
fn inputs() -> Vec<LineInput> {
    vec![
        LineInput {
            line: 1,
            producer: farmer().producer,
            catalog: CatalogId(u(10)),
            product: ProductId(u(100)),
            name: "Miel".into(),
            unit: "pot 250 g".into(),
            unit_price_incl_vat: m("2.35"),
            producer_unit_price_incl_vat: None,
            vat: VatRate::Reduced5_5,
            variable_weight: false,
            estimated_weight_kg: None,
            packaging_multiple: Some(3),
            quantity: 3,
        },
        LineInput {
            line: 2,
            producer: baker().producer,
            catalog: CatalogId(u(11)),
            product: ProductId(u(101)),
            name: "Poulet".into(),
            unit: "kg".into(),
            unit_price_incl_vat: m("18.90"),
            producer_unit_price_incl_vat: None,
            vat: VatRate::Reduced5_5,
            variable_weight: true,
            estimated_weight_kg: Some(dec!(1.333)),
            packaging_multiple: None,
            quantity: 2,
        },
    ]
}
fn place(lines: Vec<LineInput>, delivery: Delivery) -> OrderCommand {
    OrderCommand::PlaceOrder {
        order: OrderId(u(7)),
        sale: SaleId(u(8)),
        market: market(),
        customer: customer().user,
        number: "7-001".into(),
        lines,
        payment_mode: PaymentMode::Online,
        delivery,
        at: at(),
        actor: customer(),
    }
}
fn placed() -> OrderEvent {
    Order::default()
        .decide(place(inputs(), Delivery::PickUp))
        .expect("placed")
        .remove(0)
}
fn paid(amount: &str) -> OrderEvent {
    let o = order_of(vec![placed()]);
    o.decide(OrderCommand::RecordPayment {
        payment: PaymentId(u(60)),
        method: PaymentMethod::Online {
            provider_ref: "pi_1".into(),
        },
        amount: m(amount),
        actor: Actor::system(),
        market_access: None,
        at: at(),
    })
    .expect("paid")
    .remove(0)
}
fn order_of(events: Vec<OrderEvent>) -> Order {
    let mut o = Order::default();
    for e in events {
        o.apply(e);
    }
    o
}

/// R-ORD-1: one order, lines from several producers and catalogs, one total.
#[test]
fn an_order_holds_lines_from_several_producers_with_frozen_terms_and_one_total() {
    let o = order_of(vec![placed()]);
    let lines = o.lines();
    // 3 x 2.35 = 7.05; 18.90 x 1.333 x 2 = 50.3874 -> 50.39 (half away from zero, per line).
    assert_eq!(lines[0].amount_incl_vat, m("7.05"));
    assert_eq!(lines[0].amount_excl_vat, m("6.68"));
    assert_eq!(lines[0].vat_amount, m("0.37"));
    assert_eq!(lines[1].amount_incl_vat, m("50.39"));
    assert_eq!(
        lines[1].amount_excl_vat + lines[1].vat_amount,
        lines[1].amount_incl_vat
    );
    assert_eq!(o.total(), m("57.44"));
    assert_eq!(o.balance_due(), m("57.44"));
    assert_eq!(o.catalogs().len(), 2);
    assert_eq!(o.producers().len(), 2);
    assert_eq!(o.quantity_of(ProductId(u(100))), 3);
    assert_eq!(o.customer(), customer().user);
    assert_eq!(o.number(), "7-001");
}

/// R-ORD-3: packaging multiples.
#[test]
fn a_quantity_that_is_not_a_packaging_multiple_is_refused_and_names_the_line() {
    let mut lines = inputs();
    lines[0].quantity = 4;
    Fw::with(())
        .given_no_previous_events()
        .when(place(lines, Delivery::PickUp))
        .then_expect_error(OrderError::NotAPackagingMultiple {
            line: 1,
            multiple: 3,
        });
}

/// R-ORD-3
#[test]
fn lines_need_positive_quantities_and_distinct_products() {
    let mut lines = inputs();
    lines[1].quantity = 0;
    assert_eq!(
        Order::default().decide(place(lines, Delivery::PickUp)),
        Err(OrderError::QuantityNotPositive {
            line: 2,
            quantity: 0
        })
    );
    let mut lines = inputs();
    lines[1].product = lines[0].product;
    assert_eq!(
        Order::default().decide(place(lines, Delivery::PickUp)),
        Err(OrderError::DuplicateProduct {
            line: 2,
            product: ProductId(u(100))
        })
    );
    assert_eq!(
        Order::default().decide(place(vec![], Delivery::PickUp)),
        Err(OrderError::NoLine)
    );
}

/// R-ORD-6
#[test]
fn home_delivery_adds_its_fee_and_keeps_only_an_address_reference() {
    let delivery = Delivery::Home {
        fee: m("4.50"),
        address_ref: u(999),
        by: crate::order::Deliverer::Producer,
    };
    let o = order_of(
        Order::default()
            .decide(place(inputs(), delivery))
            .expect("placed"),
    );
    assert_eq!(o.total(), m("61.94"));
    assert_eq!(o.delivery(), delivery);
    let negative = Delivery::Home {
        fee: m("-1"),
        address_ref: u(999),
        by: crate::order::Deliverer::Producer,
    };
    assert_eq!(
        Order::default().decide(place(inputs(), negative)),
        Err(OrderError::NegativeDeliveryFee)
    );
}

/// R-ORD-4: a shortage after an online payment makes the difference owed back.
#[test]
fn a_shortage_after_an_online_payment_owes_a_refund() {
    Fw::with(())
        .given(vec![placed(), paid("57.44")])
        .when(OrderCommand::AdjustQuantity {
            line: 1,
            quantity: 0,
            access: farmer(),
            at: at(),
        })
        .then_expect_events(vec![OrderEvent::QuantityAdjusted {
            line: 1,
            old_quantity: 3,
            new_quantity: 0,
            old_amount: m("7.05"),
            new_amount: Money::ZERO,
            amount_excl_vat: Money::ZERO,
            vat_amount: Money::ZERO,
            delta: m("-7.05"),
            total: m("50.39"),
            refund_owed: m("7.05"),
            extra_due: Money::ZERO,
            by: farmer().actor.user,
            at: at(),
        }]);
}

/// R-ORD-4: a heavier weighing after payment is recorded as extra due.
#[test]
fn a_heavier_weighing_after_payment_records_the_extra_due() {
    let events = order_of(vec![placed(), paid("57.44")])
        .decide(OrderCommand::RecordWeight {
            line: 2,
            weight_kg: dec!(2.9),
            access: baker(),
            at: at(),
        })
        .expect("weighed");
    // 18.90 x 2.9 = 54.81; was 50.39.
    match &events[..] {
        [OrderEvent::WeightRecorded {
            new_amount,
            delta,
            total,
            extra_due,
            refund_owed,
            ..
        }] => {
            assert_eq!(*new_amount, m("54.81"));
            assert_eq!(*delta, m("4.42"));
            assert_eq!(*total, m("61.86"));
            assert_eq!(*extra_due, m("4.42"));
            assert_eq!(*refund_owed, Money::ZERO);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Only the line's producer weighs it, and only variable-weight lines are weighed.
    let o = order_of(vec![placed()]);
    let weigh = |line, access| OrderCommand::RecordWeight {
        line,
        weight_kg: dec!(1.5),
        access,
        at: at(),
    };
    assert_eq!(
        o.decide(weigh(2, farmer())),
        Err(OrderError::NotYourLine { line: 2 })
    );
    assert_eq!(
        o.decide(weigh(1, farmer())),
        Err(OrderError::NotVariableWeight { line: 1 })
    );
    assert!(matches!(
        o.decide(OrderCommand::RecordWeight {
            line: 2,
            weight_kg: dec!(1.2345),
            access: baker(),
            at: at()
        }),
        Err(OrderError::InvalidWeight { .. })
    ));
}

/// R-ORD-4: nothing is ever refunded twice.
#[test]
fn a_refund_never_exceeds_what_is_owed() {
    let shortage = OrderEvent::QuantityAdjusted {
        line: 1,
        old_quantity: 3,
        new_quantity: 0,
        old_amount: m("7.05"),
        new_amount: Money::ZERO,
        amount_excl_vat: Money::ZERO,
        vat_amount: Money::ZERO,
        delta: m("-7.05"),
        total: m("50.39"),
        refund_owed: m("7.05"),
        extra_due: Money::ZERO,
        by: farmer().actor.user,
        at: at(),
    };
    let refund = |amount: &str| OrderCommand::RecordRefund {
        payment: PaymentId(u(60)),
        amount: m(amount),
        provider_ref: "re_1".into(),
        at: at(),
        refund: None,
    };
    Fw::with(())
        .given(vec![placed(), paid("57.44"), shortage.clone()])
        .when(refund("7.06"))
        .then_expect_error(OrderError::RefundExceedsOwed { owed: m("7.05") });
    let done = OrderEvent::RefundRecorded {
        payment: PaymentId(u(60)),
        amount: m("7.05"),
        provider_ref: "re_1".into(),
        at: at(),
        refunded: m("7.05"),
        refund_owed: Money::ZERO,
        refund: None,
    };
    Fw::with(())
        .given(vec![placed(), paid("57.44"), shortage.clone()])
        .when(refund("7.05"))
        .then_expect_events(vec![done.clone()]);
    Fw::with(())
        .given(vec![placed(), paid("57.44"), shortage, done])
        .when(refund("0.01"))
        .then_expect_error(OrderError::RefundExceedsOwed { owed: Money::ZERO });
}

#[test]
fn payments_on_site_are_recorded_by_an_administrator_of_the_market() {
    let o = order_of(vec![placed()]);
    let cash = |access: Option<MarketAccess>, actor: Actor| OrderCommand::RecordPayment {
        payment: PaymentId(u(61)),
        method: PaymentMethod::Cash,
        amount: m("10"),
        actor,
        market_access: access,
        at: at(),
    };
    assert_eq!(
        o.decide(cash(None, customer())),
        Err(OrderError::NotAMarketAdministrator)
    );
    assert!(o
        .decide(cash(Some(admin_access()), admin_access().actor))
        .is_ok());
    assert_eq!(
        o.decide(OrderCommand::RecordPayment {
            payment: PaymentId(u(62)),
            method: PaymentMethod::Cheque,
            amount: m("100"),
            actor: admin_access().actor,
            market_access: Some(admin_access()),
            at: at(),
        }),
        Err(OrderError::PaymentExceedsDue { due: m("57.44") })
    );
}

/// R-ORD-5: the customer cancels while the period is open; online payments are owed back.
#[test]
fn the_customer_cancels_while_the_period_is_open_and_is_owed_a_full_refund() {
    Fw::with(())
        .given(vec![placed(), paid("57.44")])
        .when(OrderCommand::Cancel {
            by: Canceller::Customer(customer()),
            at: at(),
            period_open: true,
        })
        .then_expect_events(vec![OrderEvent::OrderCancelled {
            by: customer().user,
            at: at(),
            previous_total: m("57.44"),
            refund_owed: m("57.44"),
        }]);
}

/// R-ORD-5: after the close, only a producer of the order or the market's administrator.
#[test]
fn after_the_close_only_a_producer_of_the_order_or_an_administrator_cancels() {
    let o = order_of(vec![placed(), paid("57.44")]);
    let cancel = |by| OrderCommand::Cancel {
        by,
        at: at(),
        period_open: false,
    };
    assert_eq!(
        o.decide(cancel(Canceller::Customer(customer()))),
        Err(OrderError::CancellationClosed)
    );
    let stranger = ProducerAccess {
        producer: ProducerId(u(77)),
        ..farmer()
    };
    assert_eq!(
        o.decide(cancel(Canceller::Producer(stranger))),
        Err(OrderError::NotAllowedToCancel)
    );
    assert!(o.decide(cancel(Canceller::Producer(baker()))).is_ok());
    let events = o
        .decide(cancel(Canceller::MarketAdministrator(admin_access())))
        .expect("cancelled");
    let o = order_of(vec![placed(), paid("57.44"), events[0].clone()]);
    assert!(o.is_cancelled());
    assert_eq!(o.total(), Money::ZERO);
    assert_eq!(o.refund_owed(), m("57.44"));
    assert!(o.catalogs().is_empty());
}

#[test]
fn the_order_state_survives_a_json_snapshot() {
    let o = order_of(vec![placed(), paid("20")]);
    let json = serde_json::to_string(&o).expect("serialize");
    let back: Order = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, o);
}

#[derive(Debug, Clone)]
enum Op {
    Pay(u8, i64),
    Refund(u8, i64),
    Adjust(u32, i64),
    Weigh(i64),
    Cancel,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 1i64..8000).prop_map(|(p, c)| Op::Pay(p, c)),
        (0u8..3, 1i64..8000).prop_map(|(p, c)| Op::Refund(p, c)),
        (1u32..3, 0i64..4).prop_map(|(l, q)| Op::Adjust(l, q)),
        (1i64..5000).prop_map(Op::Weigh),
        Just(Op::Cancel),
    ]
}

proptest! {
    /// R-ORD-4: money is conserved. At every step:
    /// paid - refunded - total == refund_owed - balance_due, both are >= 0 and at most one is
    /// non-zero, refunded <= paid, and no payment is refunded beyond its amount.
    #[test]
    fn money_is_conserved_through_adjustments_payments_and_refunds(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        let mut o = order_of(vec![placed()]);
        for op in ops {
            let cmd = match op {
                Op::Pay(p, c) => OrderCommand::RecordPayment {
                    payment: PaymentId(u(600 + u128::from(p))),
                    method: PaymentMethod::Online { provider_ref: format!("pi_{p}") },
                    amount: Money::from_cents(c),
                    actor: Actor::system(),
                    market_access: None,
                    at: at(),
                },
                Op::Refund(p, c) => OrderCommand::RecordRefund {
                    payment: PaymentId(u(600 + u128::from(p))),
                    amount: Money::from_cents(c),
                    provider_ref: "re".into(),
                    at: at(),
                    refund: None,
                },
                Op::Adjust(line, q) => OrderCommand::AdjustQuantity {
                    line,
                    quantity: q,
                    access: if line == 1 { farmer() } else { baker() },
                    at: at(),
                },
                Op::Weigh(g) => OrderCommand::RecordWeight {
                    line: 2,
                    weight_kg: Decimal::new(g, 3),
                    access: baker(),
                    at: at(),
                },
                Op::Cancel => OrderCommand::Cancel {
                    by: Canceller::MarketAdministrator(admin_access()),
                    at: at(),
                    period_open: false,
                },
            };
            if let Ok(events) = o.decide(cmd) {
                for e in events {
                    o.apply(e);
                }
            }
            let lhs = o.paid() - o.refunded() - o.total();
            prop_assert_eq!(lhs, o.refund_owed() - o.balance_due());
            prop_assert!(!o.refund_owed().is_negative() && !o.balance_due().is_negative());
            prop_assert!(o.refund_owed().is_zero() || o.balance_due().is_zero());
            prop_assert!(o.refunded() <= o.paid());
            prop_assert!(o.payments().values().all(|p| p.refunded <= p.amount));
            let sum: Money = o.payments().values().map(|p| p.amount).sum();
            prop_assert_eq!(sum, o.paid());
            if !o.is_cancelled() {
                let lines: Money = o.lines().iter().map(|l| l.amount_incl_vat).sum();
                prop_assert_eq!(lines, o.total());
            }
        }
    }
}

/// R-ORD-6: a home delivery recorded before the deliverer was named is the producer's.
#[test]
fn an_older_home_delivery_is_delivered_by_the_producer() {
    let old: Delivery = serde_json::from_value(serde_json::json!(
        {"home": {"fee": "4.50", "address_ref": "00000000-0000-0000-0000-0000000003e7"}}
    ))
    .expect("old delivery");
    assert_eq!(
        old,
        Delivery::Home {
            fee: m("4.50"),
            address_ref: u(999),
            by: crate::order::Deliverer::Producer,
        }
    );
}
