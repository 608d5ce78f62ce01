//! Measures the order recaps on a realistic sale: 1,000 orders of 10 lines for one catalog,
//! among `SALES` sales of the same size in the database (so the indexes have to find them).
//!
//! `DATABASE_URL=postgres://... cargo run -p etal-projections --example recap_bench [SALES]`
//! Numbers are recorded in projections/README.md.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use etal_domain::ids::{CatalogId, MarketId, OrderId, ProducerId, ProductId, SaleId, UserId};
use etal_domain::market::PaymentMode;
use etal_domain::order::{Delivery, Line, Order, OrderEvent};
use etal_domain::{Money, VatRate};
use etal_projections::order_recaps::{self, Scope};
use etal_store::testkit::{append_events, TestDb};
use rust_decimal::Decimal;

const ORDERS: usize = 1_000;
const LINES: usize = 10;

async fn time<T>(label: &str, runs: u32, mut f: impl AsyncFnMut() -> T) -> T {
    let mut best = Duration::MAX;
    let mut total = Duration::ZERO;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        out = Some(f().await);
        let d = t.elapsed();
        best = best.min(d);
        total += d;
    }
    println!(
        "{label:<28} best {:>7.2} ms  mean {:>7.2} ms  ({runs} runs)",
        best.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3 / f64::from(runs)
    );
    out.expect("at least one run")
}

#[tokio::main]
async fn main() {
    let sales: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let db = TestDb::new(4).await;
    let market = MarketId::new();
    let producer = ProducerId::new();
    let products: Vec<ProductId> = (0..LINES).map(|_| ProductId::new()).collect();
    let at = Utc.with_ymd_and_hms(2026, 3, 4, 9, 0, 0).unwrap();
    let mut scopes = Vec::new();
    let t = Instant::now();
    for s in 0..sales {
        let sale = SaleId::new();
        let catalog = CatalogId::new();
        scopes.push(Scope::new(sale, catalog));
        for o in 0..ORDERS {
            let order = OrderId::new();
            let lines: Vec<Line> = products
                .iter()
                .enumerate()
                .map(|(i, &product)| {
                    let quantity = 1 + ((o + i) % 4) as i64;
                    let price = Money::from_cents(150 + 25 * i as i64);
                    let vat = if i % 3 == 0 {
                        VatRate::Standard20
                    } else {
                        VatRate::Reduced5_5
                    };
                    let amount = price.times(Decimal::from(quantity));
                    let excl = vat.excl_vat(amount);
                    Line {
                        line: i as u32 + 1,
                        producer,
                        catalog,
                        product,
                        name: format!("Product {i}"),
                        unit: "piece".into(),
                        unit_price_incl_vat: price,
                        producer_unit_price_incl_vat: None,
                        vat,
                        variable_weight: false,
                        estimated_weight_kg: None,
                        packaging_multiple: None,
                        quantity,
                        weight_kg: None,
                        amount_incl_vat: amount,
                        amount_excl_vat: excl,
                        vat_amount: amount - excl,
                    }
                })
                .collect();
            let total = lines.iter().map(|l| l.amount_incl_vat).sum();
            let event = OrderEvent::OrderPlaced {
                order,
                sale,
                market,
                customer: UserId::new(),
                number: format!("{s}-{o:04}"),
                lines,
                payment_mode: PaymentMode::OnSite,
                delivery: Delivery::PickUp,
                total,
                at,
            };
            append_events::<Order>(&db.pool, &order.to_string(), &[event], at).await;
        }
    }
    println!(
        "appended {} orders ({} lines) in {:.1} s",
        sales * ORDERS,
        sales * ORDERS * LINES,
        t.elapsed().as_secs_f64()
    );
    let projection = etal_projections::by_name("order_recaps").expect("registered");
    let t = Instant::now();
    let mut applied = 0;
    while applied < (sales * ORDERS) as u64 {
        applied += etal_projections::catch_up(&db.pool, projection.as_ref(), None, None, &|_| {})
            .await
            .expect("catch up");
    }
    println!(
        "catch-up of {applied} events: {:.2} s ({:.0} events/s)",
        t.elapsed().as_secs_f64(),
        applied as f64 / t.elapsed().as_secs_f64()
    );
    sqlx::query("ANALYZE")
        .execute(&db.pool)
        .await
        .expect("analyze");

    let one = [scopes[sales / 2]];
    let rows = time("recap_by_product (1 sale)", 20, async || {
        order_recaps::recap_by_product(&db.pool, &one)
            .await
            .expect("query")
    })
    .await;
    assert_eq!(rows.len(), LINES);
    let rows = time("vat_totals (1 sale)", 20, async || {
        order_recaps::vat_totals(&db.pool, &one)
            .await
            .expect("query")
    })
    .await;
    assert_eq!(rows.len(), 2);
    let rows = time("recap_by_customer (1 sale)", 20, async || {
        order_recaps::recap_by_customer(&db.pool, &one)
            .await
            .expect("query")
    })
    .await;
    assert_eq!(rows.len(), ORDERS);
    assert_eq!(rows[0].lines.len(), LINES);
    let rows = time("recap_by_customer_page (100)", 20, async || {
        order_recaps::recap_by_customer_page(&db.pool, &one, 0, 101)
            .await
            .expect("query")
    })
    .await;
    assert_eq!(rows.len(), 101);
    let rows = time("recap_by_product (lines)", 20, async || {
        order_recaps::recap_by_product_from_lines(&db.pool, &one)
            .await
            .expect("query")
    })
    .await;
    assert_eq!(rows.len(), LINES);
    let rows = time("sign_off_list (1 sale)", 20, async || {
        order_recaps::sign_off_list(&db.pool, &one)
            .await
            .expect("query")
    })
    .await;
    assert_eq!(rows.len(), ORDERS);
    let rows = time("recap_by_product (all)", 5, async || {
        order_recaps::recap_by_product(&db.pool, &scopes)
            .await
            .expect("query")
    })
    .await;
    assert_eq!(rows.len(), LINES);
    println!("database {}", db.name);
}
