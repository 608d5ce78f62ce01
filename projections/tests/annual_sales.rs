//! Annual sales per producer and calendar year (R-ACC-4); rebuild equals live; verify names a
//! tampered row and rebuild repairs it.

mod common;

use common::*;
use etal_domain::annual::{annual_sales_id, AnnualSales, AnnualSalesEvent};
use etal_domain::ids::{OrderId, ProducerId};
use etal_domain::Money;
use etal_projections::annual_sales::{self, AnnualSalesSummary};

fn reserved(
    order: OrderId,
    amount: &str,
    amap: bool,
    cap: Option<&str>,
    left: Option<&str>,
) -> AnnualSalesEvent {
    AnnualSalesEvent::Reserved {
        order,
        amount: eur(amount),
        amap,
        cap: cap.map(eur),
        left_after: left.map(eur),
        at: at(2026, 3, 1, 9),
    }
}

struct World {
    producer: ProducerId,
    orders: Vec<OrderId>,
}

async fn world(pool: &sqlx::PgPool) -> World {
    let producer = ProducerId::new();
    let orders: Vec<OrderId> = (0..5).map(|_| OrderId::new()).collect();
    let o = &orders;
    append_events::<AnnualSales>(
        pool,
        &annual_sales_id(producer, 2026),
        &[
            reserved(o[0], "300.00", false, Some("1000.00"), Some("700.00")),
            // AMAP sales never count against the cap.
            reserved(o[1], "200.00", true, Some("1000.00"), Some("700.00")),
            reserved(o[2], "400.00", false, Some("1000.00"), Some("300.00")),
            AnnualSalesEvent::Confirmed { order: o[0] },
            AnnualSalesEvent::Released {
                order: o[2],
                amount: eur("400.00"),
            },
            AnnualSalesEvent::Reduced {
                order: o[0],
                from: eur("300.00"),
                to: eur("250.00"),
            },
            reserved(o[3], "100.00", false, Some("1000.00"), Some("650.00")),
        ],
        at(2026, 3, 1, 9),
    )
    .await;
    append_events::<AnnualSales>(
        pool,
        &annual_sales_id(producer, 2027),
        &[reserved(o[4], "50.00", false, None, None)],
        at(2027, 1, 5, 9),
    )
    .await;
    World { producer, orders }
}

/// R-ACC-4: committed non-AMAP sales (confirmed + pending) against the cap; AMAP apart; the room
/// left is the one the aggregate reported in its last reservation.
#[tokio::test]
async fn annual_sales_keep_amap_apart_and_show_the_cap_and_what_is_left() {
    let db = TestDb::new(4).await;
    let w = world(&db.pool).await;
    catch_up(&db.pool, "annual_sales").await;
    let y2026 = annual_sales::annual_sales(&db.pool, w.producer, 2026)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        y2026,
        AnnualSalesSummary {
            producer: w.producer,
            year: 2026,
            non_amap_confirmed: eur("250.00"),
            non_amap_pending: eur("100.00"),
            non_amap_committed: eur("350.00"),
            amap_confirmed: Money::ZERO,
            amap_pending: eur("200.00"),
            orders: 3,
            cap: Some(eur("1000.00")),
            // = left_after of the last Reserved event.
            left: Some(eur("650.00")),
        }
    );
    let years = annual_sales::annual_sales_by_year(&db.pool, w.producer)
        .await
        .unwrap();
    assert_eq!(years.len(), 2);
    assert_eq!(years[0], y2026);
    assert_eq!(
        (
            years[1].year,
            years[1].non_amap_pending,
            years[1].cap,
            years[1].left
        ),
        (2027, eur("50.00"), None, None)
    );
    assert!(annual_sales::annual_sales(&db.pool, w.producer, 2025)
        .await
        .unwrap()
        .is_none());
}

/// Design property 3 for annual sales.
#[tokio::test]
async fn verify_names_the_one_altered_annual_row_and_rebuild_repairs_it() {
    let db = TestDb::new(4).await;
    let w = world(&db.pool).await;
    catch_up(&db.pool, "annual_sales").await;
    let clean = verify(&db.pool, "annual_sales").await;
    assert!(clean.diffs.is_empty(), "{:?}", clean.diffs);
    // 4 orders + 2 caps.
    assert_eq!(clean.rows_compared, 6);

    sqlx::query("UPDATE annual_sales_orders SET amount = 1 WHERE order_id = $1")
        .bind(w.orders[0].0)
        .execute(&db.pool)
        .await
        .unwrap();
    let report = verify(&db.pool, "annual_sales").await;
    assert_eq!(report.diffs.len(), 1, "{:?}", report.diffs);
    let d = &report.diffs[0];
    assert_eq!(d.table, "annual_sales_orders");
    assert_eq!(d.key["order_id"], w.orders[0].to_string());
    assert_eq!(d.key["year"], 2026);
    assert_eq!(d.rebuilt.as_ref().unwrap()["amount"], 250.0);

    rebuild(&db.pool, "annual_sales").await;
    assert!(verify(&db.pool, "annual_sales").await.diffs.is_empty());
}
