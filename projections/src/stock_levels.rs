//! Stock levels per product (R-STK-2, R-STK-4, R-STK-5), exactly as the Stock aggregate counts
//! them: every live reservation, pending or confirmed, is ordered; released, expired and
//! delivered ones are not. available = real - ordered; a product without a limit (real `None`)
//! has no available figure. Product names come from the producer accounts.

use etal_domain::account::AccountEvent;
use etal_domain::ids::{ProducerId, ProductId};
use etal_domain::stock::StockEvent;
use etal_domain::Money;
use etal_store::StoredEvent;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};

use crate::support::{aggregate_uuid, decode, money, vat_percent};
use crate::{Projection, ProjectionError};

const NAME: &str = "stock_levels";

pub struct StockLevels;

#[async_trait::async_trait]
impl Projection for StockLevels {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["products", "stock_levels", "stock_reservations"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for e in events {
            match e.aggregate_type.as_str() {
                "stock" => apply_stock(conn, e).await?,
                "producer_account" => apply_account(conn, e).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

async fn apply_account(conn: &mut PgConnection, e: &StoredEvent) -> Result<(), ProjectionError> {
    let event = decode::<AccountEvent>(NAME, e)?;
    // The account's stream id is the producer id.
    let producer = aggregate_uuid(NAME, e)?;
    match event {
        AccountEvent::ProductAdded { product, details }
        | AccountEvent::ProductUpdated { product, details } => {
            sqlx::query(
                "INSERT INTO products (product_id, producer_id, name, unit, price_incl_vat, vat_rate, archived) \
                 VALUES ($1, $2, $3, $4, $5, $6, false) \
                 ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit, \
                 price_incl_vat = EXCLUDED.price_incl_vat, vat_rate = EXCLUDED.vat_rate",
            )
            .bind(product.0)
            .bind(producer)
            .bind(&details.name)
            .bind(&details.unit)
            .bind(details.price_incl_vat.amount())
            .bind(vat_percent(details.vat))
            .execute(&mut *conn)
            .await?;
        }
        AccountEvent::ProductArchived { product } | AccountEvent::ProductUnarchived { product } => {
            let archived = matches!(event, AccountEvent::ProductArchived { .. });
            sqlx::query("UPDATE products SET archived = $2 WHERE product_id = $1")
                .bind(product.0)
                .bind(archived)
                .execute(&mut *conn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn apply_stock(conn: &mut PgConnection, e: &StoredEvent) -> Result<(), ProjectionError> {
    let event = decode::<StockEvent>(NAME, e)?;
    // The stock's stream id is the product id.
    let product = aggregate_uuid(NAME, e)?;
    match event {
        StockEvent::StockSet { producer, real, .. } => {
            sqlx::query(
                "INSERT INTO stock_levels (product_id, producer_id, real) VALUES ($1, $2, $3) \
                 ON CONFLICT (product_id) DO UPDATE SET producer_id = EXCLUDED.producer_id, real = EXCLUDED.real",
            )
            .bind(product)
            .bind(producer.0)
            .bind(real)
            .execute(&mut *conn)
            .await?;
        }
        StockEvent::StockReserved {
            reservation,
            sale,
            quantity,
            ..
        } => {
            sqlx::query(
                "INSERT INTO stock_levels (product_id, producer_id, real) VALUES ($1, NULL, NULL) \
                 ON CONFLICT (product_id) DO NOTHING",
            )
            .bind(product)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO stock_reservations (product_id, order_id, sale_id, quantity, confirmed) \
                 VALUES ($1, $2, $3, $4, false)",
            )
            .bind(product)
            .bind(reservation.0)
            .bind(sale.0)
            .bind(quantity)
            .execute(&mut *conn)
            .await?;
        }
        StockEvent::ReservationConfirmed { reservation } => {
            sqlx::query(
                "UPDATE stock_reservations SET confirmed = true WHERE product_id = $1 AND order_id = $2",
            )
            .bind(product)
            .bind(reservation.0)
            .execute(&mut *conn)
            .await?;
        }
        StockEvent::ReservationReleased { reservation, .. }
        | StockEvent::ReservationExpired { reservation, .. } => {
            sqlx::query("DELETE FROM stock_reservations WHERE product_id = $1 AND order_id = $2")
                .bind(product)
                .bind(reservation.0)
                .execute(&mut *conn)
                .await?;
        }
        StockEvent::ReservationAdjusted {
            reservation,
            new_quantity,
            ..
        } => {
            sqlx::query(
                "UPDATE stock_reservations SET quantity = $3 WHERE product_id = $1 AND order_id = $2",
            )
            .bind(product)
            .bind(reservation.0)
            .bind(new_quantity)
            .execute(&mut *conn)
            .await?;
        }
        StockEvent::StockDelivered {
            reservations, real, ..
        } => {
            let ids: Vec<uuid::Uuid> = reservations.iter().map(|r| r.0).collect();
            sqlx::query(
                "DELETE FROM stock_reservations WHERE product_id = $1 AND order_id = ANY($2::uuid[])",
            )
            .bind(product)
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE stock_levels SET real = $2 WHERE product_id = $1")
                .bind(product)
                .bind(real)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// A product's stock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StockLevel {
    pub product: ProductId,
    pub limited: bool,
    /// Real stock; `None` when unlimited.
    pub real: Option<i64>,
    /// Units ordered and not delivered (pending and confirmed reservations).
    pub ordered: i64,
    /// real - ordered; `None` when unlimited.
    pub available: Option<i64>,
    /// Of `ordered`, the confirmed units.
    pub confirmed: i64,
}

const LEVEL_COLUMNS: &str = "coalesce(r.ordered, 0)::bigint AS ordered, \
     coalesce(r.confirmed, 0)::bigint AS confirmed, sl.real";

const RESERVED: &str = "LEFT JOIN (SELECT product_id, sum(quantity) AS ordered, \
     sum(quantity) FILTER (WHERE confirmed) AS confirmed FROM stock_reservations GROUP BY product_id) r \
     ON r.product_id = ";

fn level(product: ProductId, row: &sqlx::postgres::PgRow) -> Result<StockLevel, sqlx::Error> {
    let real: Option<i64> = row.try_get("real")?;
    let ordered: i64 = row.try_get("ordered")?;
    Ok(StockLevel {
        product,
        limited: real.is_some(),
        real,
        ordered,
        available: real.map(|r| r.saturating_sub(ordered)),
        confirmed: row.try_get("confirmed")?,
    })
}

/// The stock of `product` (`None`: nothing known about it).
pub async fn stock_level(
    pool: &PgPool,
    product: ProductId,
) -> Result<Option<StockLevel>, sqlx::Error> {
    let sql = format!(
        "SELECT {LEVEL_COLUMNS} FROM stock_levels sl {RESERVED} sl.product_id WHERE sl.product_id = $1"
    );
    let row = sqlx::query(&sql)
        .bind(product.0)
        .fetch_optional(pool)
        .await?;
    row.map(|r| level(product, &r)).transpose()
}

/// A producer's product with its stock: what the producer sees.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProductStock {
    pub name: String,
    pub unit: String,
    pub price_incl_vat: Money,
    pub vat_rate: Decimal,
    pub archived: bool,
    pub stock: StockLevel,
}

/// `producer`'s products (archived ones too, flagged) with their stock levels, by name.
pub async fn producer_stock(
    pool: &PgPool,
    producer: ProducerId,
) -> Result<Vec<ProductStock>, sqlx::Error> {
    let sql = format!(
        "SELECT p.product_id, p.name, p.unit, p.price_incl_vat, p.vat_rate, p.archived, {LEVEL_COLUMNS} \
         FROM products p LEFT JOIN stock_levels sl ON sl.product_id = p.product_id \
         {RESERVED} p.product_id WHERE p.producer_id = $1 ORDER BY lower(p.name), p.product_id"
    );
    let rows = sqlx::query(&sql).bind(producer.0).fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            let product = ProductId(r.try_get("product_id")?);
            Ok(ProductStock {
                name: r.try_get("name")?,
                unit: r.try_get("unit")?,
                price_incl_vat: money(r, "price_incl_vat")?,
                vat_rate: r.try_get::<Decimal, _>("vat_rate")?.normalize(),
                archived: r.try_get("archived")?,
                stock: level(product, r)?,
            })
        })
        .collect()
}
