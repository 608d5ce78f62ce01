//! Stock levels (R-STK-2, R-STK-4, R-STK-5) as the Stock aggregate counts them; rebuild equals
//! live; verify names a tampered row and rebuild repairs it.

mod common;

use common::*;
use cqrs_es::Aggregate;
use etal_domain::account::{AccountEvent, ProducerAccount, ProductDetails};
use etal_domain::ids::{OrderId, ProducerId, ProductId, SaleId};
use etal_domain::stock::{Stock, StockEvent};
use etal_domain::VatRate;
use etal_projections::stock_levels::{self, StockLevel};

fn details(name: &str) -> ProductDetails {
    ProductDetails {
        name: name.into(),
        unit: "kg".into(),
        price_incl_vat: eur("3.00"),
        vat: VatRate::Reduced5_5,
        variable_weight: false,
        estimated_weight_kg: None,
        packaging_multiple: None,
    }
}

struct World {
    producer: ProducerId,
    apples: ProductId,
    bread: ProductId,
    cider: ProductId,
    apple_events: Vec<StockEvent>,
}

async fn world(pool: &sqlx::PgPool) -> World {
    let producer = ProducerId::new();
    let (apples, bread, cider) = (ProductId::new(), ProductId::new(), ProductId::new());
    append_events::<ProducerAccount>(
        pool,
        &producer.to_string(),
        &[
            AccountEvent::ProductAdded {
                product: apples,
                details: details("apples"),
            },
            AccountEvent::ProductAdded {
                product: bread,
                details: details("Bread"),
            },
            AccountEvent::ProductAdded {
                product: cider,
                details: details("Cider"),
            },
            AccountEvent::ProductUpdated {
                product: apples,
                details: details("Apples"),
            },
            AccountEvent::ProductArchived { product: cider },
        ],
        at(2026, 3, 1, 8),
    )
    .await;
    let (s1, s2) = (SaleId::new(), SaleId::new());
    let [o1, o2, o3, o4] = [(); 4].map(|_| OrderId::new());
    let reserve = |reservation, sale, quantity| StockEvent::StockReserved {
        product: apples,
        reservation,
        sale,
        quantity,
        expires_at: at(2026, 3, 2, 8),
        available: None,
    };
    let apple_events = vec![
        StockEvent::StockSet {
            product: apples,
            producer,
            real: Some(10),
            ordered: 0,
        },
        reserve(o1, s1, 3),
        reserve(o2, s1, 2),
        StockEvent::ReservationConfirmed { reservation: o1 },
        // o2 never confirmed: expires.
        StockEvent::ReservationExpired {
            reservation: o2,
            quantity: 2,
        },
        reserve(o3, s1, 4),
        StockEvent::ReservationConfirmed { reservation: o3 },
        StockEvent::ReservationAdjusted {
            reservation: o3,
            old_quantity: 4,
            new_quantity: 2,
        },
        // R-STK-5: the producer raises the stock while sales are open.
        StockEvent::StockSet {
            product: apples,
            producer,
            real: Some(12),
            ordered: 5,
        },
        // Pending in another sale.
        reserve(o4, s2, 1),
        // R-STK-4: sale s1 distributed: its confirmed units leave real and ordered.
        StockEvent::StockDelivered {
            sale: s1,
            reservations: vec![o1, o3],
            quantity: 5,
            real: Some(7),
            at: at(2026, 3, 4, 20),
        },
    ];
    append_events::<Stock>(pool, &apples.to_string(), &apple_events, at(2026, 3, 1, 9)).await;
    // Bread: no limit set, one pending reservation.
    append_events::<Stock>(
        pool,
        &bread.to_string(),
        &[StockEvent::StockReserved {
            product: bread,
            reservation: o1,
            sale: s1,
            quantity: 3,
            expires_at: at(2026, 3, 2, 8),
            available: None,
        }],
        at(2026, 3, 1, 9),
    )
    .await;
    World {
        producer,
        apples,
        bread,
        cider,
        apple_events,
    }
}

/// R-STK-2: available = real - ordered, where pending and confirmed reservations both count as
/// ordered, exactly as the Stock aggregate counts them, at every step.
#[tokio::test]
async fn stock_levels_follow_the_stock_aggregate_step_by_step() {
    let db = TestDb::new(4).await;
    let producer = ProducerId::new();
    let product = ProductId::new();
    let (s1, o1, o2) = (SaleId::new(), OrderId::new(), OrderId::new());
    let steps = vec![
        StockEvent::StockSet {
            product,
            producer,
            real: Some(10),
            ordered: 0,
        },
        StockEvent::StockReserved {
            product,
            reservation: o1,
            sale: s1,
            quantity: 3,
            expires_at: at(2026, 3, 2, 8),
            available: Some(7),
        },
        StockEvent::StockReserved {
            product,
            reservation: o2,
            sale: s1,
            quantity: 4,
            expires_at: at(2026, 3, 2, 8),
            available: Some(3),
        },
        StockEvent::ReservationConfirmed { reservation: o1 },
        StockEvent::ReservationReleased {
            reservation: o2,
            quantity: 4,
        },
        StockEvent::StockDelivered {
            sale: s1,
            reservations: vec![o1],
            quantity: 3,
            real: Some(7),
            at: at(2026, 3, 4, 20),
        },
    ];
    let mut aggregate = Stock::default();
    let expected = [(10, 0), (10, 3), (10, 7), (10, 7), (10, 3), (7, 0)];
    for (event, (real, ordered)) in steps.into_iter().zip(expected) {
        aggregate.apply(event.clone());
        append_events::<Stock>(&db.pool, &product.to_string(), &[event], at(2026, 3, 1, 9)).await;
        catch_up(&db.pool, "stock_levels").await;
        let level = stock_levels::stock_level(&db.pool, product)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((level.real, level.ordered), (Some(real), ordered));
        assert_eq!(level.real, aggregate.real());
        assert_eq!(level.ordered, aggregate.ordered());
        assert_eq!(level.available, aggregate.available());
    }
}

/// R-STK-2, R-STK-4, R-STK-5: the list a producer sees.
#[tokio::test]
async fn a_producer_sees_each_product_with_real_ordered_and_available_units() {
    let db = TestDb::new(4).await;
    let w = world(&db.pool).await;
    catch_up(&db.pool, "stock_levels").await;

    let mut aggregate = Stock::default();
    for e in w.apple_events.clone() {
        aggregate.apply(e);
    }
    // By hand: real 12 - 5 delivered = 7; only o4 (1 unit, pending) is still ordered.
    let apples = stock_levels::stock_level(&db.pool, w.apples)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        apples,
        StockLevel {
            product: w.apples,
            limited: true,
            real: Some(7),
            ordered: 1,
            available: Some(6),
            confirmed: 0,
        }
    );
    assert_eq!(apples.available, aggregate.available());

    let list = stock_levels::producer_stock(&db.pool, w.producer)
        .await
        .unwrap();
    let got: Vec<_> = list
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.archived,
                p.stock.product,
                p.stock.limited,
                p.stock.real,
                p.stock.ordered,
                p.stock.available,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("Apples", false, w.apples, true, Some(7), 1, Some(6)),
            ("Bread", false, w.bread, false, None, 3, None),
            ("Cider", true, w.cider, false, None, 0, None),
        ]
    );
}

/// Design property 3 for stock levels.
#[tokio::test]
async fn verify_names_the_one_altered_stock_row_and_rebuild_repairs_it() {
    let db = TestDb::new(4).await;
    let w = world(&db.pool).await;
    catch_up(&db.pool, "stock_levels").await;
    let clean = verify(&db.pool, "stock_levels").await;
    assert!(clean.diffs.is_empty(), "{:?}", clean.diffs);
    // 3 products + 2 stock rows + 2 live reservations.
    assert_eq!(clean.rows_compared, 7);

    sqlx::query("UPDATE stock_levels SET real = 70 WHERE product_id = $1")
        .bind(w.apples.0)
        .execute(&db.pool)
        .await
        .unwrap();
    let report = verify(&db.pool, "stock_levels").await;
    assert_eq!(report.diffs.len(), 1, "{:?}", report.diffs);
    assert_eq!(report.diffs[0].table, "stock_levels");
    assert_eq!(report.diffs[0].key["product_id"], w.apples.to_string());
    assert_eq!(report.diffs[0].live.as_ref().unwrap()["real"], 70);
    assert_eq!(report.diffs[0].rebuilt.as_ref().unwrap()["real"], 7);

    rebuild(&db.pool, "stock_levels").await;
    assert!(verify(&db.pool, "stock_levels").await.diffs.is_empty());
    let apples = stock_levels::stock_level(&db.pool, w.apples)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(apples.real, Some(7));
}
