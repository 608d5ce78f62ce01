//! Dashboard statistics: groupings over the `order_recaps` projection's tables (so they are
//! rebuilt and verified with it). A sale counts on its distribution date (Europe/Paris); the
//! turnover is the sum of live lines incl. VAT (cancelled orders and zeroed lines excluded,
//! delivery fees excluded). Date ranges are inclusive.

use chrono::NaiveDate;
use etal_domain::ids::{MarketId, ProducerId, ProductId, SaleId, UserId};
use etal_domain::Money;
use sqlx::{PgPool, Row};

use crate::support::{money, CUSTOMER_NAME};

/// Live lines `x` with their order's market and customer and the day they count on.
const LIVE: &str = "(SELECT l.*, o.market_id, o.customer_id, \
     coalesce(s.date, (o.placed_at AT TIME ZONE 'Europe/Paris')::date) AS day \
     FROM recap_lines l JOIN recap_orders o ON o.order_id = l.order_id \
     LEFT JOIN recap_sales s ON s.sale_id = o.sale_id \
     WHERE NOT o.cancelled AND l.quantity > 0) x";

/// Sales of one ISO week.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WeeklySales {
    pub iso_year: i32,
    pub iso_week: i32,
    pub orders: i64,
    pub customers: i64,
    pub turnover_incl_vat: Money,
    pub turnover_excl_vat: Money,
}

/// A market's sales per ISO week between `from` and `to`.
pub async fn market_weekly_sales(
    pool: &PgPool,
    market: MarketId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<WeeklySales>, sqlx::Error> {
    let sql = format!(
        "SELECT extract(isoyear FROM day)::int AS y, extract(week FROM day)::int AS w, \
         count(DISTINCT order_id) AS orders, count(DISTINCT customer_id) AS customers, \
         sum(amount_incl_vat) AS incl, sum(amount_excl_vat) AS excl FROM {LIVE} \
         WHERE market_id = $1 AND day BETWEEN $2 AND $3 GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let rows = sqlx::query(&sql)
        .bind(market.0)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(WeeklySales {
                iso_year: r.try_get("y")?,
                iso_week: r.try_get("w")?,
                orders: r.try_get("orders")?,
                customers: r.try_get("customers")?,
                turnover_incl_vat: money(r, "incl")?,
                turnover_excl_vat: money(r, "excl")?,
            })
        })
        .collect()
}

/// A producer's sales of one product.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProductSales {
    pub product: ProductId,
    pub name: String,
    pub quantity: i64,
    pub orders: i64,
    pub turnover_incl_vat: Money,
    pub turnover_excl_vat: Money,
}

/// A producer's sales per product between `from` and `to`, largest turnover first.
pub async fn producer_product_sales(
    pool: &PgPool,
    producer: ProducerId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<ProductSales>, sqlx::Error> {
    product_sales(pool, "producer_id", producer.0, from, to).await
}

/// A market's sales per product over a period (every producer's), largest turnover first: the
/// market's top products.
pub async fn market_product_sales(
    pool: &PgPool,
    market: MarketId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<ProductSales>, sqlx::Error> {
    product_sales(pool, "market_id", market.0, from, to).await
}

/// Sales per product of the lines whose `column` (`producer_id` or `market_id`) is `id`.
async fn product_sales(
    pool: &PgPool,
    column: &'static str,
    id: uuid::Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<ProductSales>, sqlx::Error> {
    let sql = format!(
        "SELECT product_id, min(name) AS name, sum(quantity)::bigint AS quantity, \
         count(DISTINCT order_id) AS orders, sum(amount_incl_vat) AS incl, sum(amount_excl_vat) AS excl \
         FROM {LIVE} WHERE {column} = $1 AND day BETWEEN $2 AND $3 \
         GROUP BY product_id ORDER BY incl DESC, name, product_id"
    );
    let rows = sqlx::query(&sql)
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ProductSales {
                product: ProductId(r.try_get("product_id")?),
                name: r.try_get("name")?,
                quantity: r.try_get("quantity")?,
                orders: r.try_get("orders")?,
                turnover_incl_vat: money(r, "incl")?,
                turnover_excl_vat: money(r, "excl")?,
            })
        })
        .collect()
}

/// A producer's sales to one customer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomerSales {
    pub customer_id: UserId,
    /// The display name, or "erased customer".
    pub customer: String,
    pub orders: i64,
    pub turnover_incl_vat: Money,
}

/// A producer's sales per customer between `from` and `to`, largest turnover first.
pub async fn producer_customer_sales(
    pool: &PgPool,
    producer: ProducerId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<CustomerSales>, sqlx::Error> {
    let sql = format!(
        "SELECT x.customer_id, {CUSTOMER_NAME} AS customer, count(DISTINCT x.order_id) AS orders, \
         sum(x.amount_incl_vat) AS incl FROM {LIVE} LEFT JOIN people p ON p.user_id = x.customer_id \
         WHERE x.producer_id = $1 AND x.day BETWEEN $2 AND $3 \
         GROUP BY x.customer_id, p.user_id, p.display_name, p.erased_at \
         ORDER BY incl DESC, x.customer_id"
    );
    let rows = sqlx::query(&sql)
        .bind(producer.0)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(CustomerSales {
                customer_id: UserId(r.try_get("customer_id")?),
                customer: r.try_get("customer")?,
                orders: r.try_get("orders")?,
                turnover_incl_vat: money(r, "incl")?,
            })
        })
        .collect()
}

/// A market's customers and orders over a period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MarketCustomers {
    pub market: MarketId,
    /// The market's name ("" when its creation was not seen).
    pub name: String,
    pub customers: i64,
    pub orders: i64,
    pub turnover_incl_vat: Money,
}

/// Customers (distinct people who ordered) per market between `from` and `to`, by name.
pub async fn customers_per_market(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<MarketCustomers>, sqlx::Error> {
    let sql = format!(
        "SELECT x.market_id, coalesce(m.name, '') AS name, count(DISTINCT x.customer_id) AS customers, \
         count(DISTINCT x.order_id) AS orders, sum(x.amount_incl_vat) AS incl \
         FROM {LIVE} LEFT JOIN recap_markets m ON m.market_id = x.market_id \
         WHERE x.day BETWEEN $1 AND $2 GROUP BY x.market_id, m.name ORDER BY 2, 1"
    );
    let rows = sqlx::query(&sql)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(MarketCustomers {
                market: MarketId(r.try_get("market_id")?),
                name: r.try_get("name")?,
                customers: r.try_get("customers")?,
                orders: r.try_get("orders")?,
                turnover_incl_vat: money(r, "incl")?,
            })
        })
        .collect()
}

/// Orders of one sale.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SaleOrders {
    pub sale: SaleId,
    pub number: i64,
    pub date: NaiveDate,
    pub orders: i64,
    pub customers: i64,
    pub turnover_incl_vat: Money,
}

/// A market's sales between `from` and `to` with their live orders, by date (sales without
/// orders included).
pub async fn orders_per_sale(
    pool: &PgPool,
    market: MarketId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<SaleOrders>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.sale_id, s.number, s.date, count(DISTINCT o.order_id) AS orders, \
         count(DISTINCT o.customer_id) AS customers, coalesce(sum(l.amount_incl_vat), 0) AS incl \
         FROM recap_sales s \
         LEFT JOIN recap_orders o ON o.sale_id = s.sale_id AND NOT o.cancelled \
         LEFT JOIN recap_lines l ON l.order_id = o.order_id AND l.quantity > 0 \
         WHERE s.market_id = $1 AND s.date BETWEEN $2 AND $3 \
         GROUP BY s.sale_id ORDER BY s.date, s.number, s.sale_id",
    )
    .bind(market.0)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SaleOrders {
                sale: SaleId(r.try_get("sale_id")?),
                number: r.try_get("number")?,
                date: r.try_get("date")?,
                orders: r.try_get("orders")?,
                customers: r.try_get("customers")?,
                turnover_incl_vat: money(r, "incl")?,
            })
        })
        .collect()
}

/// One market of a producer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProducerMarket {
    pub market: MarketId,
    pub name: String,
    pub amap: bool,
    /// Sales with at least one order for the producer.
    pub sales: i64,
    pub orders: i64,
    pub turnover_incl_vat: Money,
    pub turnover_excl_vat: Money,
}

/// The markets where `producer` sold between `from` and `to`, with turnover and order counts,
/// largest turnover first.
pub async fn producer_markets(
    pool: &PgPool,
    producer: ProducerId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<ProducerMarket>, sqlx::Error> {
    let sql = format!(
        "SELECT x.market_id, coalesce(m.name, '') AS name, coalesce(m.amap, false) AS amap, \
         count(DISTINCT x.sale_id) AS sales, count(DISTINCT x.order_id) AS orders, \
         sum(x.amount_incl_vat) AS incl, sum(x.amount_excl_vat) AS excl \
         FROM {LIVE} LEFT JOIN recap_markets m ON m.market_id = x.market_id \
         WHERE x.producer_id = $1 AND x.day BETWEEN $2 AND $3 \
         GROUP BY x.market_id, m.name, m.amap ORDER BY incl DESC, x.market_id"
    );
    let rows = sqlx::query(&sql)
        .bind(producer.0)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ProducerMarket {
                market: MarketId(r.try_get("market_id")?),
                name: r.try_get("name")?,
                amap: r.try_get("amap")?,
                sales: r.try_get("sales")?,
                orders: r.try_get("orders")?,
                turnover_incl_vat: money(r, "incl")?,
                turnover_excl_vat: money(r, "excl")?,
            })
        })
        .collect()
}
