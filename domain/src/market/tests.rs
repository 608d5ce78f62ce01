use chrono::{NaiveDate, NaiveTime, Weekday};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;

use super::*;
use crate::actor::{Actor, Role};
use crate::ids::{CatalogId, MarketId, ProducerId, SaleId, UserId};
use rust_decimal::Decimal;

type Fw = TestFramework<Market>;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
}
fn t(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("valid time")
}
fn market_id() -> MarketId {
    MarketId(uuid::Uuid::from_u128(1))
}
fn admin() -> Actor {
    Actor::new(UserId(uuid::Uuid::from_u128(10)), Role::MarketAdmin)
}
fn stranger() -> Actor {
    Actor::new(UserId(uuid::Uuid::from_u128(11)), Role::MarketAdmin)
}
fn wednesdays() -> Slot {
    Slot {
        weekday: Weekday::Wed,
        start: t(18, 0),
        end: t(19, 0),
        every_weeks: 1,
        anchor: d(2026, 1, 7),
    }
}
fn other_fridays() -> Slot {
    Slot {
        weekday: Weekday::Fri,
        start: t(17, 30),
        end: t(18, 30),
        every_weeks: 2,
        anchor: d(2026, 10, 16),
    }
}
fn created() -> MarketEvent {
    MarketEvent::MarketCreated {
        market: market_id(),
        name: "La Cagette de Segonzac".into(),
        place: "Place du marché".into(),
        slots: vec![wednesdays()],
        administrators: vec![admin().user],
        payment_mode: PaymentMode::Online,
        visibility: Visibility::Public,
        amap: false,
        created_by: admin().user,
    }
}
fn market_with(events: Vec<MarketEvent>) -> Market {
    let mut m = Market::default();
    for e in events {
        m.apply(e);
    }
    m
}

/// R-SAL-1
#[test]
fn a_market_is_created_with_a_place_slots_administrators_a_payment_mode_and_an_amap_flag() {
    Fw::with(())
        .given_no_previous_events()
        .when(MarketCommand::CreateMarket {
            market: market_id(),
            name: " La Cagette de Segonzac ".into(),
            place: "Place du marché".into(),
            slots: vec![wednesdays()],
            administrators: vec![admin().user, admin().user],
            payment_mode: PaymentMode::Online,
            visibility: Visibility::Public,
            amap: false,
            actor: admin(),
        })
        .then_expect_events(vec![created()]);
}

/// R-SAL-1
#[test]
fn a_market_without_slot_or_administrator_is_refused() {
    let cmd = |slots: Vec<Slot>, admins: Vec<UserId>| MarketCommand::CreateMarket {
        market: market_id(),
        name: "M".into(),
        place: "P".into(),
        slots,
        administrators: admins,
        payment_mode: PaymentMode::OnSite,
        visibility: Visibility::MembersOnly,
        amap: true,
        actor: admin(),
    };
    Fw::with(())
        .given_no_previous_events()
        .when(cmd(vec![], vec![admin().user]))
        .then_expect_error(MarketError::NoSlot);
    Fw::with(())
        .given_no_previous_events()
        .when(cmd(vec![wednesdays()], vec![]))
        .then_expect_error(MarketError::NoAdministrator);
    let mut three_weeks = wednesdays();
    three_weeks.every_weeks = 3;
    let err = Market::default()
        .decide(cmd(vec![three_weeks], vec![admin().user]))
        .unwrap_err();
    assert_eq!(err.code(), "MARKET_INVALID_SLOT");
}

/// R-SAL-1: every Wednesday 18:00-19:00 Paris time, across the spring DST change.
#[test]
fn weekly_sales_are_generated_at_paris_wall_time_across_the_spring_change() {
    let m = market_with(vec![created()]);
    let dates = m.sale_dates(d(2026, 3, 20), d(2026, 4, 5));
    let got: Vec<_> = dates
        .iter()
        .map(|o| (o.date, o.starts_at.to_rfc3339(), o.ends_at.to_rfc3339()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                d(2026, 3, 25),
                "2026-03-25T17:00:00+00:00".to_string(),
                "2026-03-25T18:00:00+00:00".to_string()
            ),
            (
                d(2026, 4, 1),
                "2026-04-01T16:00:00+00:00".to_string(),
                "2026-04-01T17:00:00+00:00".to_string()
            ),
        ]
    );
}

/// R-SAL-1: every other Friday 17:30-18:30 Paris time, across the autumn DST change.
#[test]
fn fortnightly_sales_skip_every_other_week_across_the_autumn_change() {
    let m = market_with(vec![
        created(),
        MarketEvent::SlotAdded {
            slot: other_fridays(),
        },
    ]);
    let fridays: Vec<_> = m
        .sale_dates(d(2026, 10, 1), d(2026, 11, 15))
        .into_iter()
        .filter(|o| o.date.format("%a").to_string() == "Fri")
        .map(|o| (o.date, o.starts_at.to_rfc3339()))
        .collect();
    assert_eq!(
        fridays,
        vec![
            (d(2026, 10, 2), "2026-10-02T15:30:00+00:00".to_string()),
            (d(2026, 10, 16), "2026-10-16T15:30:00+00:00".to_string()),
            (d(2026, 10, 30), "2026-10-30T16:30:00+00:00".to_string()),
            (d(2026, 11, 13), "2026-11-13T16:30:00+00:00".to_string()),
        ]
    );
    // Both slots together, sorted by start.
    let all = m.sale_dates(d(2026, 10, 14), d(2026, 10, 16));
    assert_eq!(all.len(), 2);
    assert!(all[0].starts_at < all[1].starts_at);
}

#[test]
fn the_last_administrator_cannot_be_removed() {
    Fw::with(())
        .given(vec![created()])
        .when(MarketCommand::RemoveAdministrator {
            user: admin().user,
            actor: admin(),
        })
        .then_expect_error(MarketError::LastAdministrator);
    Fw::with(())
        .given(vec![
            created(),
            MarketEvent::AdministratorAdded {
                user: stranger().user,
            },
        ])
        .when(MarketCommand::RemoveAdministrator {
            user: admin().user,
            actor: stranger(),
        })
        .then_expect_events(vec![MarketEvent::AdministratorRemoved {
            user: admin().user,
        }]);
}

#[test]
fn only_an_administrator_changes_the_payment_mode() {
    Fw::with(())
        .given(vec![created()])
        .when(MarketCommand::SetPaymentMode {
            payment_mode: PaymentMode::OnSite,
            actor: stranger(),
        })
        .then_expect_error(MarketError::NotAnAdministrator);
    Fw::with(())
        .given(vec![created()])
        .when(MarketCommand::SetPaymentMode {
            payment_mode: PaymentMode::OnSite,
            actor: admin(),
        })
        .then_expect_events(vec![MarketEvent::PaymentModeSet {
            payment_mode: PaymentMode::OnSite,
        }]);
}

/// R-CAT-4
#[test]
fn an_administrator_of_the_market_links_a_catalog() {
    let catalog = CatalogId(uuid::Uuid::from_u128(5));
    let producer = ProducerId(uuid::Uuid::from_u128(6));
    let m = market_with(vec![created()]);
    let events = m
        .decide(MarketCommand::LinkCatalog {
            catalog,
            producer,
            access: m.access(admin()),
        })
        .expect("linked");
    assert_eq!(
        events,
        vec![MarketEvent::CatalogLinked {
            catalog,
            producer,
            linked_by: admin().user
        }]
    );
    let mut m = m;
    for e in events {
        m.apply(e);
    }
    assert!(m.is_linked(catalog));
    assert!(!m.is_linked(CatalogId(uuid::Uuid::from_u128(7))));
    // Several catalogs of one producer may be linked.
    let second = CatalogId(uuid::Uuid::from_u128(8));
    assert!(m
        .decide(MarketCommand::LinkCatalog {
            catalog: second,
            producer,
            access: m.access(admin()),
        })
        .is_ok());
}

/// R-CAT-4: nobody but this market's administrator links, whatever their access claims.
#[test]
fn a_producer_or_another_markets_administrator_cannot_link_a_catalog() {
    let m = market_with(vec![created()]);
    let catalog = CatalogId(uuid::Uuid::from_u128(5));
    let producer = ProducerId(uuid::Uuid::from_u128(6));
    let mut forged = m.access(stranger());
    forged.administrator = true;
    assert_eq!(
        m.decide(MarketCommand::LinkCatalog {
            catalog,
            producer,
            access: forged
        }),
        Err(MarketError::NotAnAdministrator)
    );
    let mut elsewhere = m.access(admin());
    elsewhere.market = MarketId(uuid::Uuid::from_u128(99));
    assert_eq!(
        m.decide(MarketCommand::LinkCatalog {
            catalog,
            producer,
            access: elsewhere
        }),
        Err(MarketError::WrongMarket)
    );
}

/// R-CAT-4
#[test]
fn an_unlinked_catalog_is_no_longer_linked() {
    let catalog = CatalogId(uuid::Uuid::from_u128(5));
    let producer = ProducerId(uuid::Uuid::from_u128(6));
    let linked = MarketEvent::CatalogLinked {
        catalog,
        producer,
        linked_by: admin().user,
    };
    let m = market_with(vec![created(), linked.clone()]);
    Fw::with(())
        .given(vec![created(), linked])
        .when(MarketCommand::UnlinkCatalog {
            catalog,
            access: m.access(admin()),
        })
        .then_expect_events(vec![MarketEvent::CatalogUnlinked { catalog, producer }]);
}

/// R-SAL-6: the access of a referent says so, so a sale can accept its validation.
#[test]
fn a_referent_gets_a_referent_access() {
    let referent = Actor::new(UserId(uuid::Uuid::from_u128(20)), Role::Customer);
    let m = market_with(vec![
        created(),
        MarketEvent::ReferentSet {
            user: referent.user,
        },
    ]);
    let a = m.access(referent);
    assert!(a.referent && !a.administrator);
    assert_eq!(a.market, market_id());
    assert!(!m.access(stranger()).referent);
}

/// R-ORD-2: sale numbers are allocated in sequence, so order numbers are unique per market.
#[test]
fn sales_are_numbered_in_sequence() {
    let s1 = SaleId(uuid::Uuid::from_u128(100));
    let s2 = SaleId(uuid::Uuid::from_u128(101));
    Fw::with(())
        .given(vec![
            created(),
            MarketEvent::SaleRegistered {
                sale: s1,
                date: d(2026, 1, 7),
                number: 1,
            },
        ])
        .when(MarketCommand::RegisterSale {
            sale: s2,
            date: d(2026, 1, 14),
        })
        .then_expect_events(vec![MarketEvent::SaleRegistered {
            sale: s2,
            date: d(2026, 1, 14),
            number: 2,
        }]);
}

#[test]
fn the_market_state_survives_a_json_snapshot() {
    let m = market_with(vec![
        created(),
        MarketEvent::CatalogLinked {
            catalog: CatalogId::new(),
            producer: ProducerId::new(),
            linked_by: admin().user,
        },
    ]);
    let json = serde_json::to_string(&m).expect("serialize");
    let back: Market = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, m);
}

/// R-FEE-5: a platform administrator chooses the market's fee schedule from a date; a sale
/// uses the latest choice on or before its date, none before the first choice; a market
/// administrator cannot choose, nor can anyone choose for a past date.
#[test]
fn r_fee_5_a_fee_schedule_is_chosen_per_market_from_a_date() {
    let platform = Actor::new(UserId(uuid::Uuid::from_u128(99)), Role::PlatformAdmin);
    let today = d(2026, 3, 2);
    let m = market_with(vec![created()]);
    let assign = |m: &Market, schedule: &str, from, actor| {
        m.decide(MarketCommand::AssignFeeSchedule {
            schedule: schedule.into(),
            from,
            today,
            actor,
        })
    };
    assert_eq!(
        assign(&m, "ruche", today, admin()),
        Err(MarketError::NotPlatformAdministrator)
    );
    assert_eq!(
        assign(&m, "ruche", d(2026, 3, 1), platform),
        Err(MarketError::FeeScheduleDatePast {
            from: d(2026, 3, 1)
        })
    );
    assert_eq!(
        assign(&m, "ru che", today, platform),
        Err(MarketError::InvalidFeeSchedule)
    );
    assert_eq!(
        assign(&Market::default(), "ruche", today, platform),
        Err(MarketError::NotCreated)
    );
    let first = assign(&m, "ruche", d(2026, 3, 16), platform).expect("assigned");
    let mut m = market_with(vec![created()]);
    for e in first {
        m.apply(e);
    }
    // The same choice again changes nothing.
    assert_eq!(assign(&m, "ruche", d(2026, 3, 16), platform), Ok(vec![]));
    for e in assign(&m, "locavor", d(2026, 6, 1), platform).expect("assigned") {
        m.apply(e);
    }
    assert_eq!(m.fee_schedule_on(d(2026, 3, 15)), None);
    assert_eq!(m.fee_schedule_on(d(2026, 3, 16)), Some("ruche"));
    assert_eq!(m.fee_schedule_on(d(2026, 5, 31)), Some("ruche"));
    assert_eq!(m.fee_schedule_on(d(2026, 6, 1)), Some("locavor"));
    assert_eq!(m.fee_schedules().len(), 2);
}

/// R-SAL-8: an administrator places the market; the place is checked, and the same place again
/// writes nothing.
#[test]
fn r_sal_8_an_administrator_places_the_market_on_the_map() {
    let m = market_with(vec![created()]);
    let here = Location {
        lat: Decimal::new(452006, 4),
        lon: Decimal::new(4286, 4),
        commune: "  Segonzac ".into(),
    };
    let events = m
        .decide(MarketCommand::SetLocation {
            location: here.clone(),
            actor: admin(),
        })
        .unwrap();
    let placed = Location {
        commune: "Segonzac".into(),
        ..here.clone()
    };
    assert_eq!(
        events,
        vec![MarketEvent::LocationSet {
            location: placed.clone(),
            by: admin().user
        }]
    );
    let m = market_with(vec![created(), events[0].clone()]);
    assert_eq!(m.location(), Some(&placed));
    assert!(m
        .decide(MarketCommand::SetLocation {
            location: placed,
            actor: admin()
        })
        .unwrap()
        .is_empty());
    for bad in [(91, 0, "Nulle part"), (45, -181, "Ailleurs"), (45, 0, " ")] {
        let e = m
            .decide(MarketCommand::SetLocation {
                location: Location {
                    lat: Decimal::from(bad.0),
                    lon: Decimal::from(bad.1),
                    commune: bad.2.into(),
                },
                actor: admin(),
            })
            .unwrap_err();
        assert_eq!(e.code(), "MARKET_INVALID_LOCATION");
    }
    let e = m
        .decide(MarketCommand::SetLocation {
            location: here,
            actor: stranger(),
        })
        .unwrap_err();
    assert_eq!(e.code(), "NOT_A_MARKET_ADMINISTRATOR");
}

/// R-SAL-1: the AMAP flag changes for the sales generated from then on.
#[test]
fn r_sal_1_an_administrator_sets_the_amap_flag() {
    let m = market_with(vec![created()]);
    let events = m
        .decide(MarketCommand::SetAmap {
            amap: true,
            actor: admin(),
        })
        .unwrap();
    let m = market_with(vec![created(), events[0].clone()]);
    assert!(m.amap());
    assert!(m
        .decide(MarketCommand::SetAmap {
            amap: true,
            actor: admin()
        })
        .unwrap()
        .is_empty());
}
