use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;

use super::*;
use crate::actor::{Actor, MarketAccess, ProducerAccess, Role};
use crate::ids::{CatalogId, MarketId, OrderId, ProducerId, SaleId, UserId};
use crate::market::PaymentMode;

type Fw = TestFramework<Sale>;

fn u(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}
fn market() -> MarketId {
    MarketId(u(1))
}
fn producer() -> ProducerId {
    ProducerId(u(2))
}
fn access() -> ProducerAccess {
    ProducerAccess {
        producer: producer(),
        actor: Actor::new(UserId(u(3)), Role::Producer),
        owner: true,
    }
}
fn other_access() -> ProducerAccess {
    ProducerAccess {
        producer: ProducerId(u(4)),
        actor: Actor::new(UserId(u(5)), Role::Producer),
        owner: true,
    }
}
fn meat() -> CatalogId {
    CatalogId(u(10))
}
fn preserves() -> CatalogId {
    CatalogId(u(11))
}
fn order(n: u128) -> OrderId {
    OrderId(u(100 + n))
}
fn customer(n: u128) -> UserId {
    UserId(u(200 + n))
}
/// Wednesday 14 January 2026, 18:00-19:00 Paris (17:00-18:00 UTC).
fn starts() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 14, 17, 0, 0)
        .single()
        .expect("valid")
}
fn ends() -> DateTime<Utc> {
    starts() + Duration::hours(1)
}
fn opens() -> DateTime<Utc> {
    starts() - Duration::days(7)
}
fn closes() -> DateTime<Utc> {
    starts() - Duration::days(2)
}
fn during() -> DateTime<Utc> {
    opens() + Duration::days(1)
}
fn planned() -> SaleEvent {
    SaleEvent::SalePlanned {
        sale: SaleId(u(50)),
        market: market(),
        number: 7,
        date: NaiveDate::from_ymd_opt(2026, 1, 14).expect("valid"),
        starts_at: starts(),
        ends_at: ends(),
        amap: false,
        payment_mode: PaymentMode::Online,
    }
}
fn participated(catalog: CatalogId) -> SaleEvent {
    SaleEvent::ProducerParticipated {
        producer: producer(),
        catalog,
        opens_at: opens(),
        closes_at: closes(),
        by: access().actor.user,
    }
}
fn opened(catalog: CatalogId) -> SaleEvent {
    SaleEvent::OrderPeriodOpened {
        catalog,
        at: opens(),
    }
}
fn closed(catalog: CatalogId) -> SaleEvent {
    SaleEvent::OrderPeriodClosed {
        catalog,
        at: closes(),
    }
}
fn attached(n: u128, number: &str, catalogs: Vec<CatalogId>) -> SaleEvent {
    SaleEvent::OrderAttached {
        order: order(n),
        customer: customer(n),
        number: number.into(),
        catalogs,
        at: during(),
    }
}
fn open_sale() -> Vec<SaleEvent> {
    vec![planned(), participated(meat()), opened(meat())]
}
fn sale_of(events: Vec<SaleEvent>) -> Sale {
    let mut s = Sale::default();
    for e in events {
        s.apply(e);
    }
    s
}
fn participate(catalog: CatalogId, linked: bool) -> SaleCommand {
    SaleCommand::Participate {
        access: access(),
        catalog,
        catalog_linked: linked,
        opens_at: opens(),
        closes_at: closes(),
    }
}
fn market_access(referent: bool, administrator: bool) -> MarketAccess {
    MarketAccess {
        market: market(),
        actor: Actor::new(UserId(u(300)), Role::Customer),
        administrator,
        referent,
    }
}

/// R-SAL-2, R-SAL-3: a producer takes part with several linked catalogs, each with the default
/// order period the caller gives.
#[test]
fn a_producer_takes_part_with_several_catalogs() {
    Fw::with(())
        .given(vec![planned(), participated(meat())])
        .when(participate(preserves(), true))
        .then_expect_events(vec![participated(preserves())]);
    let s = sale_of(vec![
        planned(),
        participated(meat()),
        participated(preserves()),
    ]);
    assert_eq!(s.participations().len(), 2);
    assert_eq!(s.status(), SaleStatus::Planned);
}

/// R-SAL-2, R-CAT-4: only a catalog linked to the market takes part.
#[test]
fn a_catalog_not_linked_to_the_market_cannot_take_part() {
    Fw::with(())
        .given(vec![planned()])
        .when(participate(meat(), false))
        .then_expect_error(SaleError::CatalogNotLinked { catalog: meat() });
}

/// R-SAL-3: an order period must close before the sale starts.
#[test]
fn an_order_period_closing_after_the_sale_starts_is_refused() {
    Fw::with(())
        .given(vec![planned()])
        .when(SaleCommand::Participate {
            access: access(),
            catalog: meat(),
            catalog_linked: true,
            opens_at: opens(),
            closes_at: starts() + Duration::minutes(1),
        })
        .then_expect_error(SaleError::InvalidOrderPeriod {
            starts_at: starts(),
        });
}

/// R-SAL-3
#[test]
fn the_producer_overrides_the_order_period_of_one_catalog_for_this_sale() {
    let later = closes() + Duration::days(1);
    let s = sale_of(vec![
        planned(),
        participated(meat()),
        participated(preserves()),
        SaleEvent::OrderPeriodOverridden {
            catalog: meat(),
            opens_at: opens(),
            closes_at: later,
            by: access().actor.user,
        },
    ]);
    assert_eq!(s.participations()[&meat()].closes_at, later);
    assert_eq!(s.participations()[&preserves()].closes_at, closes());
    // Another producer cannot override it.
    assert_eq!(
        s.decide(SaleCommand::OverrideOrderPeriod {
            access: other_access(),
            catalog: meat(),
            opens_at: opens(),
            closes_at: later,
        }),
        Err(SaleError::NotYourCatalog {
            catalog: meat(),
            producer: producer()
        })
    );
}

/// R-ORD-3: an order is attached only while the catalog's order period is open.
#[test]
fn an_order_outside_the_order_period_is_refused_and_names_the_catalog() {
    let before = vec![planned(), participated(meat())];
    Fw::with(())
        .given(before)
        .when(SaleCommand::AttachOrder {
            order: order(1),
            customer: customer(1),
            catalogs: vec![meat()],
            at: during(),
        })
        .then_expect_error(SaleError::OrderPeriodNotOpen {
            catalog: meat(),
            opens_at: opens(),
        });
    // Open, but the close command has not run yet: the time alone closes it.
    Fw::with(())
        .given(open_sale())
        .when(SaleCommand::AttachOrder {
            order: order(1),
            customer: customer(1),
            catalogs: vec![meat()],
            at: closes(),
        })
        .then_expect_error(SaleError::OrderPeriodClosed {
            catalog: meat(),
            closes_at: closes(),
        });
    let s = sale_of(open_sale());
    assert!(s.period_open(meat(), during()));
    assert!(!s.period_open(meat(), closes()));
    assert!(!s.period_open(preserves(), during()));
}

/// R-ORD-2: orders are numbered `{sale number}-{sequence}`; the sale number is unique in the
/// market, so the order number is too.
#[test]
fn orders_get_short_numbers_in_sequence() {
    Fw::with(())
        .given(vec![
            planned(),
            participated(meat()),
            opened(meat()),
            attached(1, "7-001", vec![meat()]),
        ])
        .when(SaleCommand::AttachOrder {
            order: order(2),
            customer: customer(2),
            catalogs: vec![meat()],
            at: during(),
        })
        .then_expect_events(vec![attached(2, "7-002", vec![meat()])]);
}

/// R-ORD-2: adding a catalog to an order keeps its number; a detached order's number is never
/// reused.
#[test]
fn an_order_keeps_its_number_and_numbers_are_never_reused() {
    let mut events = vec![
        planned(),
        participated(meat()),
        participated(preserves()),
        opened(meat()),
        opened(preserves()),
        attached(1, "7-001", vec![meat()]),
    ];
    let s = sale_of(events.clone());
    assert_eq!(
        s.decide(SaleCommand::AttachOrder {
            order: order(1),
            customer: customer(1),
            catalogs: vec![meat(), preserves()],
            at: during(),
        }),
        Ok(vec![attached(1, "7-001", vec![preserves()])])
    );
    events.push(SaleEvent::CatalogsDetached {
        order: order(1),
        catalogs: vec![meat()],
        order_detached: true,
    });
    let s = sale_of(events);
    assert!(s.orders().is_empty());
    assert_eq!(
        s.decide(SaleCommand::AttachOrder {
            order: order(2),
            customer: customer(2),
            catalogs: vec![meat()],
            at: during(),
        }),
        Ok(vec![attached(2, "7-002", vec![meat()])])
    );
}

/// R-ORD-1: one order per customer per sale.
#[test]
fn a_customer_has_one_order_per_sale() {
    let mut given = open_sale();
    given.push(attached(1, "7-001", vec![meat()]));
    Fw::with(())
        .given(given)
        .when(SaleCommand::AttachOrder {
            order: order(9),
            customer: customer(1),
            catalogs: vec![meat()],
            at: during(),
        })
        .then_expect_error(SaleError::CustomerAlreadyOrdered { existing: order(1) });
}

/// R-SAL-4
#[test]
fn a_producer_cannot_withdraw_from_a_sale_with_orders_for_their_catalog() {
    let mut given = open_sale();
    given.push(attached(1, "7-001", vec![meat()]));
    given.push(attached(2, "7-002", vec![meat()]));
    Fw::with(())
        .given(given)
        .when(SaleCommand::Withdraw {
            access: access(),
            catalog: meat(),
        })
        .then_expect_error(SaleError::HasOrders {
            catalog: meat(),
            orders: 2,
        });
}

/// R-SAL-4: once the orders are cancelled (detached), the withdrawal is allowed; this is also how
/// a producer opts out of one date of a recurring participation (R-SAL-2).
#[test]
fn a_producer_withdraws_once_the_orders_for_their_catalog_are_cancelled() {
    let mut given = open_sale();
    given.push(attached(1, "7-001", vec![meat()]));
    given.push(SaleEvent::CatalogsDetached {
        order: order(1),
        catalogs: vec![meat()],
        order_detached: true,
    });
    Fw::with(())
        .given(given)
        .when(SaleCommand::Withdraw {
            access: access(),
            catalog: meat(),
        })
        .then_expect_events(vec![SaleEvent::ParticipationWithdrawn {
            producer: producer(),
            catalog: meat(),
            by: access().actor.user,
        }]);
}

/// R-SAL-5
#[test]
fn closing_a_catalogs_order_period_sends_the_producer_its_recap() {
    let mut given = vec![
        planned(),
        participated(meat()),
        participated(preserves()),
        opened(meat()),
        opened(preserves()),
    ];
    given.push(attached(1, "7-001", vec![meat(), preserves()]));
    given.push(attached(2, "7-002", vec![preserves()]));
    Fw::with(())
        .given(given.clone())
        .when(SaleCommand::CloseOrderPeriod {
            catalog: meat(),
            at: closes(),
        })
        .then_expect_events(vec![
            closed(meat()),
            SaleEvent::RecapReady {
                catalog: meat(),
                producer: producer(),
                orders: 1,
            },
        ]);
    Fw::with(())
        .given(given)
        .when(SaleCommand::CloseOrderPeriod {
            catalog: meat(),
            at: closes() - Duration::minutes(1),
        })
        .then_expect_error(SaleError::PeriodNotOver {
            catalog: meat(),
            closes_at: closes(),
        });
}

#[test]
fn a_sale_goes_from_planned_to_open_closed_distributed_and_validated() {
    let mut events = vec![planned(), participated(meat())];
    assert_eq!(sale_of(events.clone()).status(), SaleStatus::Planned);
    events.push(opened(meat()));
    assert_eq!(sale_of(events.clone()).status(), SaleStatus::Open);
    events.push(closed(meat()));
    assert_eq!(sale_of(events.clone()).status(), SaleStatus::Closed);
    assert_eq!(
        sale_of(events.clone()).decide(SaleCommand::EndDistribution {
            at: ends() - Duration::minutes(1)
        }),
        Err(SaleError::DistributionNotOver { ends_at: ends() })
    );
    events.push(SaleEvent::DistributionEnded { at: ends() });
    assert_eq!(sale_of(events.clone()).status(), SaleStatus::Distributed);
    events.push(SaleEvent::SaleValidated {
        by: UserId(u(300)),
        at: ends(),
    });
    let s = sale_of(events);
    assert_eq!(s.status(), SaleStatus::Validated);
    assert_eq!(s.number(), 7);
    assert_eq!(s.market(), market());
    assert!(!s.amap());
    assert_eq!(s.payment_mode(), PaymentMode::Online);
}

#[test]
fn the_distribution_does_not_end_while_an_order_period_is_open() {
    Fw::with(())
        .given(open_sale())
        .when(SaleCommand::EndDistribution { at: ends() })
        .then_expect_error(SaleError::PeriodsStillOpen { catalog: meat() });
}

/// R-SAL-6
#[test]
fn the_referent_validates_the_sale_after_the_distribution() {
    let mut given = open_sale();
    given.push(closed(meat()));
    given.push(SaleEvent::DistributionEnded { at: ends() });
    let at = ends() + Duration::hours(2);
    Fw::with(())
        .given(given.clone())
        .when(SaleCommand::Validate {
            access: market_access(true, false),
            at,
        })
        .then_expect_events(vec![SaleEvent::SaleValidated {
            by: UserId(u(300)),
            at,
        }]);
    Fw::with(())
        .given(given)
        .when(SaleCommand::Validate {
            access: market_access(false, false),
            at,
        })
        .then_expect_error(SaleError::NotAReferent);
}

/// R-SAL-6: no validation before the distribution.
#[test]
fn a_sale_is_not_validated_before_its_distribution() {
    let mut given = open_sale();
    given.push(closed(meat()));
    Fw::with(())
        .given(given)
        .when(SaleCommand::Validate {
            access: market_access(false, true),
            at: ends(),
        })
        .then_expect_error(SaleError::WrongStatus {
            status: SaleStatus::Closed,
        });
}

#[test]
fn the_sale_state_survives_a_json_snapshot() {
    let mut events = open_sale();
    events.push(attached(1, "7-001", vec![meat()]));
    let s = sale_of(events);
    let json = serde_json::to_string(&s).expect("serialize");
    let back: Sale = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, s);
}
