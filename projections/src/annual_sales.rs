//! A producer's sales per calendar year (R-ACC-4), AMAP and non-AMAP apart, with the cap of the
//! plan in force at the latest reservation and what is left under it, counted as the AnnualSales
//! aggregate counts: committed = confirmed + pending, outside AMAP markets; released orders leave.

use etal_domain::annual::AnnualSalesEvent;
use etal_domain::ids::ProducerId;
use etal_domain::Money;
use etal_store::StoredEvent;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::support::{bad_event, decode, money, money_opt};
use crate::{Projection, ProjectionError};

const NAME: &str = "annual_sales";

pub struct AnnualSalesProjection;

/// The stream id `"{producer}:{year}"` (see `etal_domain::annual::annual_sales_id`).
fn stream_key(e: &StoredEvent) -> Result<(Uuid, i32), ProjectionError> {
    let parsed = e
        .aggregate_id
        .split_once(':')
        .and_then(|(p, y)| Some((Uuid::parse_str(p).ok()?, y.parse::<i32>().ok()?)));
    parsed.ok_or_else(|| {
        bad_event(
            NAME,
            e,
            format!("aggregate id '{}' is not 'producer:year'", e.aggregate_id),
        )
    })
}

#[async_trait::async_trait]
impl Projection for AnnualSalesProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["annual_sales_orders", "annual_sales_caps"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for e in events.iter().filter(|e| e.aggregate_type == "annual_sales") {
            let event = decode::<AnnualSalesEvent>(NAME, e)?;
            let (producer, year) = stream_key(e)?;
            let key = |sql: &'static str| sqlx::query(sql).bind(producer).bind(year);
            match event {
                AnnualSalesEvent::Reserved {
                    order,
                    amount,
                    amap,
                    cap,
                    ..
                } => {
                    key("INSERT INTO annual_sales_orders (producer_id, year, order_id, amount, amap, confirmed) \
                         VALUES ($1, $2, $3, $4, $5, false)")
                    .bind(order.0)
                    .bind(amount.amount())
                    .bind(amap)
                    .execute(&mut *conn)
                    .await?;
                    key("INSERT INTO annual_sales_caps (producer_id, year, cap) VALUES ($1, $2, $3) \
                         ON CONFLICT (producer_id, year) DO UPDATE SET cap = EXCLUDED.cap")
                    .bind(cap.map(|c| c.amount()))
                    .execute(&mut *conn)
                    .await?;
                }
                AnnualSalesEvent::Confirmed { order } => {
                    key("UPDATE annual_sales_orders SET confirmed = true \
                         WHERE producer_id = $1 AND year = $2 AND order_id = $3")
                    .bind(order.0)
                    .execute(&mut *conn)
                    .await?;
                }
                AnnualSalesEvent::Released { order, .. } => {
                    key("DELETE FROM annual_sales_orders WHERE producer_id = $1 AND year = $2 AND order_id = $3")
                        .bind(order.0)
                        .execute(&mut *conn)
                        .await?;
                }
                AnnualSalesEvent::Reduced { order, to, .. } => {
                    key("UPDATE annual_sales_orders SET amount = $4 \
                         WHERE producer_id = $1 AND year = $2 AND order_id = $3")
                    .bind(order.0)
                    .bind(to.amount())
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        Ok(())
    }
}

/// A producer's sales of one calendar year.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AnnualSalesSummary {
    pub producer: ProducerId,
    pub year: i32,
    pub non_amap_confirmed: Money,
    pub non_amap_pending: Money,
    /// Confirmed + pending outside AMAP markets: what counts against the cap.
    pub non_amap_committed: Money,
    pub amap_confirmed: Money,
    pub amap_pending: Money,
    pub orders: i64,
    /// The cap in force at the latest reservation (`None`: no cap).
    pub cap: Option<Money>,
    /// Room left under the cap, never negative (`None`: no cap).
    pub left: Option<Money>,
}

const SUMMARY: &str = "SELECT k.producer_id, k.year, c.cap, \
     coalesce(sum(o.amount) FILTER (WHERE NOT o.amap AND o.confirmed), 0) AS nac, \
     coalesce(sum(o.amount) FILTER (WHERE NOT o.amap AND NOT o.confirmed), 0) AS nap, \
     coalesce(sum(o.amount) FILTER (WHERE o.amap AND o.confirmed), 0) AS ac, \
     coalesce(sum(o.amount) FILTER (WHERE o.amap AND NOT o.confirmed), 0) AS ap, \
     count(o.order_id) AS orders \
     FROM (SELECT producer_id, year FROM annual_sales_caps WHERE producer_id = $1 \
           UNION SELECT producer_id, year FROM annual_sales_orders WHERE producer_id = $1) k \
     LEFT JOIN annual_sales_caps c ON c.producer_id = k.producer_id AND c.year = k.year \
     LEFT JOIN annual_sales_orders o ON o.producer_id = k.producer_id AND o.year = k.year \
     WHERE ($2::int IS NULL OR k.year = $2) \
     GROUP BY k.producer_id, k.year, c.cap ORDER BY k.year";

fn summary(r: &sqlx::postgres::PgRow) -> Result<AnnualSalesSummary, sqlx::Error> {
    let non_amap_confirmed = money(r, "nac")?;
    let non_amap_pending = money(r, "nap")?;
    let committed = non_amap_confirmed + non_amap_pending;
    let cap = money_opt(r, "cap")?;
    Ok(AnnualSalesSummary {
        producer: ProducerId(r.try_get("producer_id")?),
        year: r.try_get("year")?,
        non_amap_confirmed,
        non_amap_pending,
        non_amap_committed: committed,
        amap_confirmed: money(r, "ac")?,
        amap_pending: money(r, "ap")?,
        orders: r.try_get("orders")?,
        cap,
        left: cap.map(|c| (c - committed).max(Money::ZERO)),
    })
}

/// `producer`'s sales of `year` (`None`: no sale recorded that year).
pub async fn annual_sales(
    pool: &PgPool,
    producer: ProducerId,
    year: i32,
) -> Result<Option<AnnualSalesSummary>, sqlx::Error> {
    let row = sqlx::query(SUMMARY)
        .bind(producer.0)
        .bind(Some(year))
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(summary).transpose()
}

/// `producer`'s sales of every year, oldest first.
pub async fn annual_sales_by_year(
    pool: &PgPool,
    producer: ProducerId,
) -> Result<Vec<AnnualSalesSummary>, sqlx::Error> {
    let rows = sqlx::query(SUMMARY)
        .bind(producer.0)
        .bind(None::<i32>)
        .fetch_all(pool)
        .await?;
    rows.iter().map(summary).collect()
}
