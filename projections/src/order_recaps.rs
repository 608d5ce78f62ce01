//! Order recaps (R-SAL-5): per sale and catalog, by product, by customer, totals per VAT rate,
//! and the sign-off list (liste d'émargement); the same across several catalogs and markets of
//! one day for one producer.
//!
//! The projection keeps orders and lines normalized (`recap_orders`, `recap_lines` keyed by
//! `(order_id, line)`), plus the sales and markets they belong to; every grouping is computed by
//! the query functions below, over a [`Scope`] list of `(sale, catalog)` pairs. An order is in a
//! scope when it is not cancelled and has a line of the scope's catalog with a quantity above
//! zero (as `Order::catalogs` says).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use etal_domain::ids::{CatalogId, MarketId, OrderId, ProducerId, ProductId, SaleId, UserId};
use etal_domain::market::{MarketEvent, PaymentMode};
use etal_domain::order::{Delivery, OrderEvent};
use etal_domain::sale::SaleEvent;
use etal_domain::Money;
use etal_store::StoredEvent;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::support::{aggregate_uuid, decode, money, vat_percent, CUSTOMER_NAME};
use crate::{Projection, ProjectionError};

const NAME: &str = "order_recaps";

pub struct OrderRecaps;

#[async_trait::async_trait]
impl Projection for OrderRecaps {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "recap_markets",
            "recap_sales",
            "recap_orders",
            "recap_lines",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for e in events {
            match e.aggregate_type.as_str() {
                "order" => apply_order(conn, e).await?,
                "sale" => {
                    if let SaleEvent::SalePlanned {
                        sale,
                        market,
                        number,
                        date,
                        starts_at,
                        ends_at,
                        amap,
                        ..
                    } = decode::<SaleEvent>(NAME, e)?
                    {
                        sqlx::query(
                            "INSERT INTO recap_sales (sale_id, market_id, number, date, starts_at, ends_at, amap) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(sale.0)
                        .bind(market.0)
                        .bind(i64::from(number))
                        .bind(date)
                        .bind(starts_at)
                        .bind(ends_at)
                        .bind(amap)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                "market" => {
                    if let MarketEvent::MarketCreated {
                        market, name, amap, ..
                    } = decode::<MarketEvent>(NAME, e)?
                    {
                        sqlx::query(
                            "INSERT INTO recap_markets (market_id, name, amap) VALUES ($1, $2, $3)",
                        )
                        .bind(market.0)
                        .bind(name)
                        .bind(amap)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

async fn apply_order(conn: &mut PgConnection, e: &StoredEvent) -> Result<(), ProjectionError> {
    let event = decode::<OrderEvent>(NAME, e)?;
    let order = aggregate_uuid(NAME, e)?;
    match event {
        OrderEvent::OrderPlaced {
            order: placed,
            sale,
            market,
            customer,
            number,
            lines,
            payment_mode,
            delivery,
            total,
            at,
        } => {
            let fee = match delivery {
                Delivery::PickUp => Money::ZERO,
                Delivery::Home { fee, .. } => fee,
            };
            let mode = match payment_mode {
                PaymentMode::Online => "online",
                PaymentMode::OnSite => "on_site",
            };
            sqlx::query(
                "INSERT INTO recap_orders (order_id, sale_id, market_id, customer_id, number, payment_mode, \
                 delivery_fee, total, paid, refunded, cancelled, placed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, false, $9)",
            )
            .bind(placed.0)
            .bind(sale.0)
            .bind(market.0)
            .bind(customer.0)
            .bind(&number)
            .bind(mode)
            .bind(fee.amount())
            .bind(total.amount())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            let n = lines.len();
            let mut line = Vec::with_capacity(n);
            let mut catalog = Vec::with_capacity(n);
            let mut producer = Vec::with_capacity(n);
            let mut product = Vec::with_capacity(n);
            let mut name = Vec::with_capacity(n);
            let mut unit = Vec::with_capacity(n);
            let mut price = Vec::with_capacity(n);
            let mut vat = Vec::with_capacity(n);
            let mut variable = Vec::with_capacity(n);
            let mut estimated = Vec::with_capacity(n);
            let mut quantity = Vec::with_capacity(n);
            let mut weight = Vec::with_capacity(n);
            let mut incl = Vec::with_capacity(n);
            let mut excl = Vec::with_capacity(n);
            let mut vat_amount = Vec::with_capacity(n);
            for l in lines {
                line.push(i64::from(l.line));
                catalog.push(l.catalog.0);
                producer.push(l.producer.0);
                product.push(l.product.0);
                name.push(l.name);
                unit.push(l.unit);
                price.push(l.unit_price_incl_vat.amount());
                vat.push(vat_percent(l.vat));
                variable.push(l.variable_weight);
                estimated.push(l.estimated_weight_kg);
                quantity.push(l.quantity);
                weight.push(l.weight_kg);
                incl.push(l.amount_incl_vat.amount());
                excl.push(l.amount_excl_vat.amount());
                vat_amount.push(l.vat_amount.amount());
            }
            sqlx::query(
                "INSERT INTO recap_lines (order_id, line, sale_id, catalog_id, producer_id, product_id, name, unit, \
                 unit_price_incl_vat, vat_rate, variable_weight, estimated_weight_kg, quantity, weight_kg, \
                 amount_incl_vat, amount_excl_vat, vat_amount) \
                 SELECT $1, t.* FROM UNNEST($3::bigint[], $2::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[], \
                 $8::text[], $9::numeric[], $10::numeric[], $11::bool[], $12::numeric[], $13::bigint[], \
                 $14::numeric[], $15::numeric[], $16::numeric[], $17::numeric[]) AS t",
            )
            .bind(placed.0)
            .bind(vec![sale.0; n])
            .bind(&line)
            .bind(&catalog)
            .bind(&producer)
            .bind(&product)
            .bind(&name)
            .bind(&unit)
            .bind(&price)
            .bind(&vat)
            .bind(&variable)
            .bind(&estimated)
            .bind(&quantity)
            .bind(&weight)
            .bind(&incl)
            .bind(&excl)
            .bind(&vat_amount)
            .execute(&mut *conn)
            .await?;
        }
        OrderEvent::QuantityAdjusted {
            line,
            new_quantity,
            new_amount,
            amount_excl_vat,
            vat_amount,
            total,
            ..
        } => {
            sqlx::query(
                "UPDATE recap_lines SET quantity = $3, amount_incl_vat = $4, amount_excl_vat = $5, vat_amount = $6 \
                 WHERE order_id = $1 AND line = $2",
            )
            .bind(order)
            .bind(i64::from(line))
            .bind(new_quantity)
            .bind(new_amount.amount())
            .bind(amount_excl_vat.amount())
            .bind(vat_amount.amount())
            .execute(&mut *conn)
            .await?;
            set_total(conn, order, total).await?;
        }
        OrderEvent::WeightRecorded {
            line,
            weight_kg,
            new_amount,
            amount_excl_vat,
            vat_amount,
            total,
            ..
        } => {
            sqlx::query(
                "UPDATE recap_lines SET weight_kg = $3, amount_incl_vat = $4, amount_excl_vat = $5, vat_amount = $6 \
                 WHERE order_id = $1 AND line = $2",
            )
            .bind(order)
            .bind(i64::from(line))
            .bind(weight_kg)
            .bind(new_amount.amount())
            .bind(amount_excl_vat.amount())
            .bind(vat_amount.amount())
            .execute(&mut *conn)
            .await?;
            set_total(conn, order, total).await?;
        }
        OrderEvent::PaymentRecorded { paid, .. } => {
            sqlx::query("UPDATE recap_orders SET paid = $2 WHERE order_id = $1")
                .bind(order)
                .bind(paid.amount())
                .execute(&mut *conn)
                .await?;
        }
        OrderEvent::RefundRecorded { refunded, .. } => {
            sqlx::query("UPDATE recap_orders SET refunded = $2 WHERE order_id = $1")
                .bind(order)
                .bind(refunded.amount())
                .execute(&mut *conn)
                .await?;
        }
        OrderEvent::OrderCancelled { .. } => {
            sqlx::query("UPDATE recap_orders SET cancelled = true, total = 0 WHERE order_id = $1")
                .bind(order)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn set_total(conn: &mut PgConnection, order: Uuid, total: Money) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE recap_orders SET total = $2 WHERE order_id = $1")
        .bind(order)
        .bind(total.amount())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One catalog in one sale: the unit of a producer's recap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Scope {
    pub sale: SaleId,
    pub catalog: CatalogId,
}

impl Scope {
    pub fn new(sale: SaleId, catalog: CatalogId) -> Self {
        Self { sale, catalog }
    }
}

/// The scope CTE `scope(sale_id, catalog_id)` from binds $1 and $2.
const SCOPE: &str =
    "WITH scope (sale_id, catalog_id) AS (SELECT * FROM UNNEST($1::uuid[], $2::uuid[])) ";

/// Lines in scope: `l` (line) joined with `o` (its live order).
const IN_SCOPE: &str = "FROM recap_lines l \
     JOIN scope s ON s.sale_id = l.sale_id AND s.catalog_id = l.catalog_id \
     JOIN recap_orders o ON o.order_id = l.order_id AND o.sale_id = s.sale_id \
     WHERE NOT o.cancelled AND l.quantity > 0 ";

fn scope_binds(scopes: &[Scope]) -> (Vec<Uuid>, Vec<Uuid>) {
    scopes.iter().map(|s| (s.sale.0, s.catalog.0)).unzip()
}

/// One product of a recap.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProductRecap {
    pub product: ProductId,
    pub name: String,
    pub unit: String,
    /// VAT rate in percent (5.5).
    pub vat_rate: Decimal,
    pub quantity: i64,
    /// Orders with this product.
    pub orders: i64,
    /// Total weight of the weighed lines, kg (`None`: nothing weighed).
    pub weighed_kg: Option<Decimal>,
    /// Variable-weight lines still to weigh.
    pub lines_to_weigh: i64,
    pub amount_incl_vat: Money,
    pub amount_excl_vat: Money,
    pub vat_amount: Money,
}

/// Recap by product over `scopes`, ordered by product name. A product sold at two VAT rates
/// (the rate changed between sales) gives two rows.
pub async fn recap_by_product(
    pool: &PgPool,
    scopes: &[Scope],
) -> Result<Vec<ProductRecap>, sqlx::Error> {
    let (sales, catalogs) = scope_binds(scopes);
    let sql = format!(
        "{SCOPE} SELECT l.product_id, min(l.name) AS name, min(l.unit) AS unit, l.vat_rate, \
         sum(l.quantity)::bigint AS quantity, count(DISTINCT l.order_id) AS orders, \
         sum(l.weight_kg) AS weighed_kg, \
         count(*) FILTER (WHERE l.variable_weight AND l.weight_kg IS NULL) AS lines_to_weigh, \
         sum(l.amount_incl_vat) AS incl, sum(l.amount_excl_vat) AS excl, sum(l.vat_amount) AS vat \
         {IN_SCOPE} GROUP BY l.product_id, l.vat_rate ORDER BY 2, 1, 4"
    );
    let rows = sqlx::query(&sql)
        .bind(&sales)
        .bind(&catalogs)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ProductRecap {
                product: ProductId(r.try_get("product_id")?),
                name: r.try_get("name")?,
                unit: r.try_get("unit")?,
                vat_rate: r.try_get::<Decimal, _>("vat_rate")?.normalize(),
                quantity: r.try_get("quantity")?,
                orders: r.try_get("orders")?,
                weighed_kg: r
                    .try_get::<Option<Decimal>, _>("weighed_kg")?
                    .map(|d| d.normalize()),
                lines_to_weigh: r.try_get("lines_to_weigh")?,
                amount_incl_vat: money(r, "incl")?,
                amount_excl_vat: money(r, "excl")?,
                vat_amount: money(r, "vat")?,
            })
        })
        .collect()
}

/// Totals for one VAT rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VatTotal {
    pub vat_rate: Decimal,
    pub amount_excl_vat: Money,
    pub vat_amount: Money,
    pub amount_incl_vat: Money,
}

/// Totals per VAT rate over `scopes`, by rate.
pub async fn vat_totals(pool: &PgPool, scopes: &[Scope]) -> Result<Vec<VatTotal>, sqlx::Error> {
    let (sales, catalogs) = scope_binds(scopes);
    let sql = format!(
        "{SCOPE} SELECT l.vat_rate, sum(l.amount_incl_vat) AS incl, sum(l.amount_excl_vat) AS excl, \
         sum(l.vat_amount) AS vat {IN_SCOPE} GROUP BY l.vat_rate ORDER BY l.vat_rate"
    );
    let rows = sqlx::query(&sql)
        .bind(&sales)
        .bind(&catalogs)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(VatTotal {
                vat_rate: r.try_get::<Decimal, _>("vat_rate")?.normalize(),
                amount_excl_vat: money(r, "excl")?,
                vat_amount: money(r, "vat")?,
                amount_incl_vat: money(r, "incl")?,
            })
        })
        .collect()
}

/// Where an order stands with its payments (the whole order: a customer pays once, R-ORD-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Unpaid,
    PartiallyPaid,
    Paid,
    /// More was received than the order now costs (R-ORD-4, R-ORD-5).
    RefundOwed,
}

impl PaymentStatus {
    /// From the order's total, what was paid, and what was refunded.
    pub fn of(total: Money, paid: Money, refunded: Money) -> Self {
        let net = paid - refunded;
        if net > total {
            PaymentStatus::RefundOwed
        } else if net >= total {
            PaymentStatus::Paid
        } else if net.is_zero() {
            PaymentStatus::Unpaid
        } else {
            PaymentStatus::PartiallyPaid
        }
    }
}

/// One order line as a recap shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecapLine {
    pub line: u32,
    pub catalog: CatalogId,
    pub product: ProductId,
    pub name: String,
    pub unit: String,
    pub quantity: i64,
    pub weight_kg: Option<Decimal>,
    pub unit_price_incl_vat: Money,
    pub amount_incl_vat: Money,
}

/// One order of a recap by customer (also a row of the sign-off list).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CustomerRecap {
    pub order: OrderId,
    pub number: String,
    pub sale: SaleId,
    pub market: MarketId,
    pub customer_id: UserId,
    /// The display name, or "erased customer".
    pub customer: String,
    /// The lines in scope, by line number.
    pub lines: Vec<RecapLine>,
    /// The lines in scope, incl. VAT.
    pub amount_incl_vat: Money,
    /// The whole order (all producers, delivery fee).
    pub order_total: Money,
    pub paid: Money,
    pub refunded: Money,
    pub payment_status: PaymentStatus,
    /// What the customer still owes on the whole order.
    pub balance_due: Money,
    /// What is collected at pick-up for this scope: the scope's amount, at most the balance due.
    pub due_at_pickup: Money,
}

fn order_sql(extra_order: &str) -> String {
    format!(
        "{SCOPE} SELECT o.order_id, o.number, o.sale_id, o.market_id, o.customer_id, {CUSTOMER_NAME} AS customer, \
         sum(l.amount_incl_vat) AS amount, o.total, o.paid, o.refunded \
         {IN_SCOPE_P} GROUP BY o.order_id, p.user_id, p.display_name, p.erased_at \
         ORDER BY {extra_order}",
        IN_SCOPE_P = IN_SCOPE.replace(
            "JOIN recap_orders o ON o.order_id = l.order_id AND o.sale_id = s.sale_id",
            "JOIN recap_orders o ON o.order_id = l.order_id AND o.sale_id = s.sale_id \
             LEFT JOIN people p ON p.user_id = o.customer_id"
        ),
    )
}

async fn orders_in_scope(
    pool: &PgPool,
    scopes: &[Scope],
    order_by: &str,
) -> Result<Vec<CustomerRecap>, sqlx::Error> {
    let (sales, catalogs) = scope_binds(scopes);
    let rows = sqlx::query(&order_sql(order_by))
        .bind(&sales)
        .bind(&catalogs)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let amount = money(r, "amount")?;
            let total = money(r, "total")?;
            let paid = money(r, "paid")?;
            let refunded = money(r, "refunded")?;
            let balance_due = (total - (paid - refunded)).max(Money::ZERO);
            Ok(CustomerRecap {
                order: OrderId(r.try_get("order_id")?),
                number: r.try_get("number")?,
                sale: SaleId(r.try_get("sale_id")?),
                market: MarketId(r.try_get("market_id")?),
                customer_id: UserId(r.try_get("customer_id")?),
                customer: r.try_get("customer")?,
                lines: Vec::new(),
                amount_incl_vat: amount,
                order_total: total,
                paid,
                refunded,
                payment_status: PaymentStatus::of(total, paid, refunded),
                balance_due,
                due_at_pickup: amount.min(balance_due),
            })
        })
        .collect()
}

/// Recap by customer over `scopes`: one entry per order with its lines in scope, ordered by
/// order number.
pub async fn recap_by_customer(
    pool: &PgPool,
    scopes: &[Scope],
) -> Result<Vec<CustomerRecap>, sqlx::Error> {
    let mut orders = orders_in_scope(pool, scopes, "o.number, o.order_id").await?;
    let (sales, catalogs) = scope_binds(scopes);
    let sql = format!(
        "{SCOPE} SELECT l.order_id, l.line, l.catalog_id, l.product_id, l.name, l.unit, l.quantity, l.weight_kg, \
         l.unit_price_incl_vat, l.amount_incl_vat {IN_SCOPE} ORDER BY l.order_id, l.line"
    );
    let rows = sqlx::query(&sql)
        .bind(&sales)
        .bind(&catalogs)
        .fetch_all(pool)
        .await?;
    let index: HashMap<OrderId, usize> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| (o.order, i))
        .collect();
    for r in &rows {
        let order = OrderId(r.try_get("order_id")?);
        let line = RecapLine {
            line: u32::try_from(r.try_get::<i64, _>("line")?).unwrap_or(u32::MAX),
            catalog: CatalogId(r.try_get("catalog_id")?),
            product: ProductId(r.try_get("product_id")?),
            name: r.try_get("name")?,
            unit: r.try_get("unit")?,
            quantity: r.try_get("quantity")?,
            weight_kg: r
                .try_get::<Option<Decimal>, _>("weight_kg")?
                .map(|d| d.normalize()),
            unit_price_incl_vat: money(r, "unit_price_incl_vat")?,
            amount_incl_vat: money(r, "amount_incl_vat")?,
        };
        if let Some(&i) = index.get(&order) {
            orders[i].lines.push(line);
        }
    }
    Ok(orders)
}

/// The sign-off list (liste d'émargement): one row per order in scope, with the amount to
/// collect at pick-up, sorted by customer name (case-insensitive) then order number. The rows'
/// `lines` are left empty.
pub async fn sign_off_list(
    pool: &PgPool,
    scopes: &[Scope],
) -> Result<Vec<CustomerRecap>, sqlx::Error> {
    let order_by = format!("lower({CUSTOMER_NAME}), {CUSTOMER_NAME}, o.number, o.order_id");
    orders_in_scope(pool, scopes, &order_by).await
}

/// The (sale, catalog) pairs in which `producer` has orders for sales distributed on `date`
/// (Europe/Paris), across all markets: the scope of a producer's day.
pub async fn producer_day_scopes(
    pool: &PgPool,
    producer: ProducerId,
    date: NaiveDate,
) -> Result<Vec<Scope>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT l.sale_id, l.catalog_id FROM recap_lines l \
         JOIN recap_sales s ON s.sale_id = l.sale_id \
         WHERE l.producer_id = $1 AND s.date = $2 ORDER BY 1, 2",
    )
    .bind(producer.0)
    .bind(date)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Scope {
                sale: SaleId(r.try_get("sale_id")?),
                catalog: CatalogId(r.try_get("catalog_id")?),
            })
        })
        .collect()
}

/// A sale as projected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SaleInfo {
    pub sale: SaleId,
    pub market: MarketId,
    pub number: i64,
    pub date: NaiveDate,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub amap: bool,
}

/// The sale `sale`, if planned.
pub async fn sale(pool: &PgPool, sale: SaleId) -> Result<Option<SaleInfo>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT sale_id, market_id, number, date, starts_at, ends_at, amap FROM recap_sales WHERE sale_id = $1",
    )
    .bind(sale.0)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(SaleInfo {
            sale: SaleId(r.try_get("sale_id")?),
            market: MarketId(r.try_get("market_id")?),
            number: r.try_get("number")?,
            date: r.try_get("date")?,
            starts_at: r.try_get("starts_at")?,
            ends_at: r.try_get("ends_at")?,
            amap: r.try_get("amap")?,
        })
    })
    .transpose()
}
