//! Stock levels per product (R-STK-2, R-STK-4, R-STK-5), exactly as the Stock aggregate counts
//! them: every live reservation, pending or confirmed, is ordered; released, expired and
//! delivered ones are not. available = real - ordered; a product without a limit (real `None`)
//! has no available figure. Product names come from the producer accounts.

use std::collections::HashMap;

use etal_domain::account::AccountEvent;
use etal_domain::ids::{ProducerId, ProductId};
use etal_domain::stock::StockEvent;
use etal_domain::Money;
use etal_store::StoredEvent;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::support::{aggregate_uuid, decode, money, vat_percent};
use crate::{Projection, ProjectionError};

const NAME: &str = "stock_levels";

pub struct StockLevels;

#[async_trait::async_trait]
impl Projection for StockLevels {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["stock", "producer_account"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["products", "stock_levels", "stock_reservations"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        // Products (rare account events) are written as they come; stock events, the bulk of
        // the log, are folded per batch. The two touch different tables.
        let mut stock = StockBatch::default();
        for e in events {
            match e.aggregate_type.as_str() {
                "stock" => stock.apply(e)?,
                "producer_account" => apply_account(conn, e).await?,
                _ => {}
            }
        }
        stock.flush(conn).await
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

/// What one batch does to a stock level row (last value wins).
#[derive(Default)]
struct LevelOp {
    producer: Option<Uuid>,
    real: Option<Option<i64>>,
}

/// What one batch does to a reservation row, folded from its events.
enum ReservationOp {
    /// The row as it ends (created or replaced in this batch).
    Put {
        sale: Uuid,
        quantity: i64,
        confirmed: bool,
    },
    /// Changes to a row written by an earlier batch.
    Patch {
        quantity: Option<i64>,
        confirmed: bool,
    },
    Delete,
}

/// Stock events of one batch folded in memory, then written with a few set-based statements.
#[derive(Default)]
struct StockBatch {
    levels: HashMap<Uuid, LevelOp>,
    reservations: HashMap<(Uuid, Uuid), ReservationOp>,
}

impl StockBatch {
    fn apply(&mut self, e: &StoredEvent) -> Result<(), ProjectionError> {
        let event = decode::<StockEvent>(NAME, e)?;
        // The stock's stream id is the product id.
        let product = aggregate_uuid(NAME, e)?;
        match event {
            StockEvent::StockSet { producer, real, .. } => {
                let op = self.levels.entry(product).or_default();
                op.producer = Some(producer.0);
                op.real = Some(real);
            }
            StockEvent::StockReserved {
                reservation,
                sale,
                quantity,
                ..
            } => {
                self.levels.entry(product).or_default();
                self.reservations.insert(
                    (product, reservation.0),
                    ReservationOp::Put {
                        sale: sale.0,
                        quantity,
                        confirmed: false,
                    },
                );
            }
            StockEvent::ReservationConfirmed { reservation } => {
                match self.reservations.entry((product, reservation.0)).or_insert(
                    ReservationOp::Patch {
                        quantity: None,
                        confirmed: false,
                    },
                ) {
                    ReservationOp::Put { confirmed, .. }
                    | ReservationOp::Patch { confirmed, .. } => *confirmed = true,
                    ReservationOp::Delete => {}
                }
            }
            StockEvent::ReservationReleased { reservation, .. }
            | StockEvent::ReservationExpired { reservation, .. } => {
                self.reservations
                    .insert((product, reservation.0), ReservationOp::Delete);
            }
            StockEvent::ReservationAdjusted {
                reservation,
                new_quantity,
                ..
            } => {
                match self.reservations.entry((product, reservation.0)).or_insert(
                    ReservationOp::Patch {
                        quantity: None,
                        confirmed: false,
                    },
                ) {
                    ReservationOp::Put { quantity, .. } => *quantity = new_quantity,
                    ReservationOp::Patch { quantity, .. } => *quantity = Some(new_quantity),
                    ReservationOp::Delete => {}
                }
            }
            StockEvent::StockDelivered {
                reservations, real, ..
            } => {
                for r in reservations {
                    self.reservations
                        .insert((product, r.0), ReservationOp::Delete);
                }
                self.levels.entry(product).or_default().real = Some(real);
            }
        }
        Ok(())
    }

    async fn flush(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if !self.levels.is_empty() {
            let levels: Vec<_> = self.levels.into_iter().collect();
            let products: Vec<Uuid> = levels.iter().map(|(p, _)| *p).collect();
            sqlx::query(
                "INSERT INTO stock_levels (product_id, producer_id, real) \
                 SELECT p, NULL, NULL FROM UNNEST($1::uuid[]) AS p ON CONFLICT (product_id) DO NOTHING",
            )
            .bind(&products)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE stock_levels l SET producer_id = coalesce(u.producer_id, l.producer_id), \
                 real = CASE WHEN u.set_real THEN u.real ELSE l.real END \
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::bool[], $4::bigint[]) AS u(product_id, producer_id, set_real, real) \
                 WHERE l.product_id = u.product_id AND (u.producer_id IS NOT NULL OR u.set_real)",
            )
            .bind(&products)
            .bind(levels.iter().map(|(_, o)| o.producer).collect::<Vec<_>>())
            .bind(levels.iter().map(|(_, o)| o.real.is_some()).collect::<Vec<_>>())
            .bind(levels.iter().map(|(_, o)| o.real.flatten()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        let (mut put, mut patch, mut delete) = (Vec::new(), Vec::new(), Vec::new());
        for (key, op) in self.reservations {
            match op {
                ReservationOp::Put {
                    sale,
                    quantity,
                    confirmed,
                } => put.push((key, sale, quantity, confirmed)),
                ReservationOp::Patch {
                    quantity,
                    confirmed,
                } => patch.push((key, quantity, confirmed)),
                ReservationOp::Delete => delete.push(key),
            }
        }
        if !delete.is_empty() {
            sqlx::query(
                "DELETE FROM stock_reservations r USING UNNEST($1::uuid[], $2::uuid[]) AS d(product_id, order_id) \
                 WHERE r.product_id = d.product_id AND r.order_id = d.order_id",
            )
            .bind(delete.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind(delete.iter().map(|k| k.1).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !put.is_empty() {
            sqlx::query(
                "INSERT INTO stock_reservations (product_id, order_id, sale_id, quantity, confirmed) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::bool[]) \
                 ON CONFLICT (product_id, order_id) DO UPDATE SET sale_id = EXCLUDED.sale_id, \
                 quantity = EXCLUDED.quantity, confirmed = EXCLUDED.confirmed",
            )
            .bind(put.iter().map(|p| p.0 .0).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.0 .1).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.1).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.2).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.3).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !patch.is_empty() {
            sqlx::query(
                "UPDATE stock_reservations r SET quantity = coalesce(u.quantity, r.quantity), \
                 confirmed = r.confirmed OR u.confirmed \
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bool[]) AS u(product_id, order_id, quantity, confirmed) \
                 WHERE r.product_id = u.product_id AND r.order_id = u.order_id",
            )
            .bind(patch.iter().map(|p| p.0 .0).collect::<Vec<_>>())
            .bind(patch.iter().map(|p| p.0 .1).collect::<Vec<_>>())
            .bind(patch.iter().map(|p| p.1).collect::<Vec<_>>())
            .bind(patch.iter().map(|p| p.2).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
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
