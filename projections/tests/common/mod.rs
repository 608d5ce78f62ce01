//! Shared test support: a database per test, event builders, catch-up and verify helpers.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use etal_domain::ids::{CatalogId, MarketId, OrderId, ProducerId, ProductId, SaleId, UserId};
use etal_domain::market::PaymentMode;
use etal_domain::order::{Delivery, Line, OrderEvent};
use etal_domain::{Money, VatRate};
use etal_projections::VerifyReport;
pub use etal_store::testkit::{append_events, TestDb};
use rust_decimal::Decimal;
use sqlx::PgPool;

pub fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

pub fn eur(s: &str) -> Money {
    s.parse().unwrap()
}

/// Catches `name` up with every event appended so far. The global log only shows events below
/// the cluster-wide oldest running transaction, and other tests share the cluster, so this
/// retries until all the database's events are applied.
pub async fn catch_up(pool: &PgPool, name: &str) -> u64 {
    let p = etal_projections::by_name(name).unwrap();
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    let mut total = 0;
    for _ in 0..1000 {
        total += etal_projections::catch_up(pool, p.as_ref(), None, None, &|_| {})
            .await
            .unwrap();
        let last: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, global_position FROM events \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        let checkpoint: Option<(i64, i64)> = sqlx::query_as(
            "SELECT last_txid, last_position FROM projector_checkpoints WHERE projection = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await
        .unwrap();
        if last.is_none() || checkpoint.is_some_and(|c| Some(c) >= last) {
            return total;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{name} did not catch up with {all} events");
}

pub async fn verify(pool: &PgPool, name: &str) -> VerifyReport {
    let p = etal_projections::by_name(name).unwrap();
    etal_projections::verify(pool, p.as_ref(), &|_| {})
        .await
        .unwrap()
}

pub async fn rebuild(pool: &PgPool, name: &str) -> u64 {
    let p = etal_projections::by_name(name).unwrap();
    etal_projections::rebuild(pool, p.as_ref(), &|_| {})
        .await
        .unwrap()
}

pub async fn person(pool: &PgPool, user: UserId, name: Option<&str>, erased: bool) {
    sqlx::query(
        "INSERT INTO people (user_id, display_name, created_at, erased_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user.0)
    .bind(name)
    .bind(at(2026, 1, 1, 0))
    .bind(erased.then(|| at(2026, 2, 1, 0)))
    .execute(pool)
    .await
    .unwrap();
}

/// A fixed-price line; amounts incl. VAT, excl. VAT and VAT given by hand.
#[allow(clippy::too_many_arguments)]
pub fn line(
    n: u32,
    producer: ProducerId,
    catalog: CatalogId,
    product: ProductId,
    name: &str,
    price: &str,
    vat: VatRate,
    quantity: i64,
    amounts: (&str, &str, &str),
) -> Line {
    Line {
        line: n,
        producer,
        catalog,
        product,
        name: name.into(),
        unit: "piece".into(),
        unit_price_incl_vat: eur(price),
        producer_unit_price_incl_vat: None,
        vat,
        variable_weight: false,
        estimated_weight_kg: None,
        packaging_multiple: None,
        quantity,
        weight_kg: None,
        amount_incl_vat: eur(amounts.0),
        amount_excl_vat: eur(amounts.1),
        vat_amount: eur(amounts.2),
    }
}

pub fn weighed(mut l: Line, estimated_kg: Decimal) -> Line {
    l.variable_weight = true;
    l.estimated_weight_kg = Some(estimated_kg);
    l.unit = "kg".into();
    l
}

#[allow(clippy::too_many_arguments)]
pub fn placed(
    order: OrderId,
    sale: SaleId,
    market: MarketId,
    customer: UserId,
    number: &str,
    lines: Vec<Line>,
    mode: PaymentMode,
    total: &str,
    when: DateTime<Utc>,
) -> OrderEvent {
    OrderEvent::OrderPlaced {
        order,
        sale,
        market,
        customer,
        number: number.into(),
        lines,
        payment_mode: mode,
        delivery: Delivery::PickUp,
        total: eur(total),
        at: when,
    }
}
