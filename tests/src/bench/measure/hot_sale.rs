//! Measurement 2: Hot sale: 500 customers at once for the 50 units of one product.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc, Weekday};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::{AppError, Ctx};
use etal_domain::config::PlanKind;
use etal_domain::ids::{CatalogId, ProductId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::{Role, VatRate};

use super::retryable;
use crate::bench::p50_p99;
use crate::bench::report::Report;
use crate::world::{actor, World};

/// Clients, and orders each, that warm the process up on another market before the rush.
const WARM_CLIENTS: usize = 40;
const WARM_ORDERS: usize = 5;

/// An online market on `day` with its sale, and a new producer selling one product (`stock`
/// units, `None`: unlimited) in a catalog taking part in it: (sale, catalog, product).
async fn one_product_sale(
    world: &World,
    day: NaiveDate,
    market_name: &str,
    (product_name, price, stock): (&str, &str, Option<i64>),
    catalog_name: &str,
) -> anyhow::Result<(SaleId, CatalogId, ProductId)> {
    let (market, admin) = world
        .market(
            market_name,
            Weekday::Wed,
            (18, 0),
            (19, 0),
            1,
            day,
            PaymentMode::Online,
            false,
        )
        .await;
    let sale = world
        .app
        .generate_sales(&Ctx::new(admin), market, day, day)
        .await?
        .value[0];
    let producer = world.producer(PlanKind::Pro).await;
    let product = world
        .product(&producer, product_name, price, VatRate::Reduced5_5)
        .await;
    world
        .app
        .set_stock(&producer.ctx(), producer.id, product, stock)
        .await?;
    let catalog = world
        .catalog(&producer, catalog_name, &[(product, price)])
        .await;
    world.join(admin, market, &producer, catalog, &[sale]).await;
    Ok((sale, catalog, product))
}

pub async fn run(report: &mut Report, customers: usize, units: i64) -> anyhow::Result<()> {
    let world = World::at(Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()).await;
    let wednesday = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
    let (sale, catalog, product) = one_product_sale(
        &world,
        wednesday,
        "Vente flash",
        ("Fraises 500 g", "4.50", Some(units)),
        "Printemps",
    )
    .await?;
    // Another market of the same day, whose orders warm the process up before the rush.
    let (warm_sale, warm_catalog, warm_product) = one_product_sale(
        &world,
        wednesday,
        "Échauffement",
        ("Radis", "1.50", None),
        "Toute l'année",
    )
    .await?;
    world
        .advance_to(world.now() + chrono::Duration::minutes(1))
        .await;

    // A serving process has its pool's connections open, and used, before a rush: open them
    // all, then place orders on the other market from as many clients, so the measure is of
    // the orders, not of PostgreSQL forking backends and planning their first statements.
    let warm: Vec<_> = futures::future::join_all((0..40).map(|_| world.db.pool.acquire()))
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    drop(warm);
    let warmed = futures::future::join_all((0..WARM_CLIENTS).map(|_| {
        let app = world.app.clone();
        async move {
            let mut placed = 0u32;
            for _ in 0..WARM_ORDERS {
                let ctx = Ctx::new(actor(Role::Customer));
                let lines = [LineRequest {
                    catalog: warm_catalog,
                    product: warm_product,
                    quantity: 1,
                }];
                if app
                    .place_order(&ctx, warm_sale, &lines, DeliveryRequest::PickUp)
                    .await
                    .is_ok()
                {
                    placed += 1;
                }
            }
            placed
        }
    }))
    .await
    .into_iter()
    .sum::<u32>();
    let app = Arc::new(world.app.clone());
    let barrier = Arc::new(tokio::sync::Barrier::new(customers));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..customers {
        let app = app.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = Ctx::new(actor(Role::Customer));
            let lines = [LineRequest {
                catalog,
                product,
                quantity: 1,
            }];
            barrier.wait().await;
            let t = Instant::now();
            let mut retries = 0u32;
            loop {
                match app
                    .place_order(&ctx, sale, &lines, DeliveryRequest::PickUp)
                    .await
                {
                    Err(e) if retryable(&e) && retries < 20 => retries += 1,
                    r => {
                        return (
                            r.is_ok(),
                            matches!(r, Err(AppError::OrderRefused { .. })),
                            t.elapsed(),
                            retries,
                        )
                    }
                }
            }
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let (mut sold, mut refused, mut errors, mut retries) = (0u64, 0u64, 0u64, 0u64);
    for t in tasks {
        let (ok, out_of_stock, elapsed, r) = t.await?;
        latencies.push(elapsed);
        retries += r as u64;
        match (ok, out_of_stock) {
            (true, _) => sold += 1,
            (false, true) => refused += 1,
            _ => errors += 1,
        }
    }
    let all = started.elapsed();
    let (p50, p99) = p50_p99(&mut latencies);
    let fastest = latencies
        .first()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let (stock, _) = world.app.load::<etal_domain::stock::Stock>(product).await?;
    let body = format!(
        "{customers} customers start together (a barrier), each ordering 1 of the {units} units of one \
         product on an online market through `App::place_order` (one transaction an order, then \
         its charge through the outbox); the orders of the sale take turns on its hot streams in \
         the process, so they wait for each other rather than conflict; a conflict that exhausts \
         the bus's retries is retried by the client (counted below). Latency: from the barrier to \
         the answer (charge included). Before the rush, as a serving process would have, the \
         pool's 40 connections are open and used: {WARM_CLIENTS} clients placed {warmed} orders \
         ({WARM_ORDERS} each) on another market's sale.\n\n\
         | units sold | refused (sold out) | other errors | client retries | all answered after | fastest | p50 | p99 | stock available after |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | {sold} | {refused} | {errors} | {retries} | {:.2} s | {fastest:.0} ms | {p50:.0} ms | {p99:.0} ms | {} |\n",
        all.as_secs_f64(),
        stock.available().map(|a| a.to_string()).unwrap_or_else(|| "unlimited".into()),
    );
    crate::bench::drop_db(&world.db).await;
    report.section("2. Hot sale", body);
    report.goal(
        "hot sale: exactly the units in stock sold",
        &format!("{units}"),
        format!("{sold}"),
        Some(sold == units as u64),
    );
    report.goal(
        "hot sale p99",
        "< 300 ms",
        format!("{p99:.0} ms ({customers} customers, {units} units)"),
        Some(p99 < 300.0),
    );
    Ok(())
}
