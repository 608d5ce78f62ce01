//! A producer's sales per calendar year (R-ACC-4), AMAP and non-AMAP apart, with the cap of the
//! plan in force at the latest reservation and what is left under it, counted as the AnnualSales
//! aggregate counts: committed = confirmed + pending, outside AMAP markets; released orders leave.

use std::collections::HashMap;

use etal_domain::annual::AnnualSalesEvent;
use etal_domain::ids::ProducerId;
use etal_domain::Money;
use etal_store::StoredEvent;
use rust_decimal::Decimal;
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

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["annual_sales"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["annual_sales_orders", "annual_sales_caps"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        // Folded per batch: each (producer, year, order) row ends created, changed or deleted,
        // and each (producer, year) keeps the last cap seen; then a few set-based statements.
        enum Op {
            Put {
                amount: Decimal,
                amap: bool,
                confirmed: bool,
            },
            Patch {
                amount: Option<Decimal>,
                confirmed: bool,
            },
            Delete,
        }
        let mut rows: HashMap<(Uuid, i32, Uuid), Op> = HashMap::new();
        let mut caps: HashMap<(Uuid, i32), Option<Decimal>> = HashMap::new();
        for e in events.iter().filter(|e| e.aggregate_type == "annual_sales") {
            let event = decode::<AnnualSalesEvent>(NAME, e)?;
            let (producer, year) = stream_key(e)?;
            match event {
                AnnualSalesEvent::Reserved {
                    order,
                    amount,
                    amap,
                    cap,
                    ..
                } => {
                    rows.insert(
                        (producer, year, order.0),
                        Op::Put {
                            amount: amount.amount(),
                            amap,
                            confirmed: false,
                        },
                    );
                    caps.insert((producer, year), cap.map(|c| c.amount()));
                }
                AnnualSalesEvent::Confirmed { order } => {
                    match rows.entry((producer, year, order.0)).or_insert(Op::Patch {
                        amount: None,
                        confirmed: false,
                    }) {
                        Op::Put { confirmed, .. } | Op::Patch { confirmed, .. } => {
                            *confirmed = true
                        }
                        Op::Delete => {}
                    }
                }
                AnnualSalesEvent::Released { order, .. } => {
                    rows.insert((producer, year, order.0), Op::Delete);
                }
                AnnualSalesEvent::Reduced { order, to, .. }
                | AnnualSalesEvent::Raised { order, to, .. } => {
                    match rows.entry((producer, year, order.0)).or_insert(Op::Patch {
                        amount: None,
                        confirmed: false,
                    }) {
                        Op::Put { amount, .. } => *amount = to.amount(),
                        Op::Patch { amount, .. } => *amount = Some(to.amount()),
                        Op::Delete => {}
                    }
                }
            }
        }
        let (mut put, mut patch, mut delete) = (Vec::new(), Vec::new(), Vec::new());
        for (k, op) in rows {
            match op {
                Op::Put {
                    amount,
                    amap,
                    confirmed,
                } => put.push((k, amount, amap, confirmed)),
                Op::Patch { amount, confirmed } => patch.push((k, amount, confirmed)),
                Op::Delete => delete.push(k),
            }
        }
        if !delete.is_empty() {
            sqlx::query(
                "DELETE FROM annual_sales_orders a USING UNNEST($1::uuid[], $2::int[], $3::uuid[]) AS d(p, y, o) \
                 WHERE a.producer_id = d.p AND a.year = d.y AND a.order_id = d.o",
            )
            .bind(delete.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind(delete.iter().map(|k| k.1).collect::<Vec<_>>())
            .bind(delete.iter().map(|k| k.2).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !put.is_empty() {
            sqlx::query(
                "INSERT INTO annual_sales_orders (producer_id, year, order_id, amount, amap, confirmed) \
                 SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::uuid[], $4::numeric[], $5::bool[], $6::bool[]) \
                 ON CONFLICT (producer_id, year, order_id) DO UPDATE SET amount = EXCLUDED.amount, \
                 amap = EXCLUDED.amap, confirmed = EXCLUDED.confirmed",
            )
            .bind(put.iter().map(|p| p.0 .0).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.0 .1).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.0 .2).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.1).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.2).collect::<Vec<_>>())
            .bind(put.iter().map(|p| p.3).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !patch.is_empty() {
            sqlx::query(
                "UPDATE annual_sales_orders a SET amount = coalesce(u.amount, a.amount), confirmed = a.confirmed OR u.confirmed \
                 FROM UNNEST($1::uuid[], $2::int[], $3::uuid[], $4::numeric[], $5::bool[]) AS u(p, y, o, amount, confirmed) \
                 WHERE a.producer_id = u.p AND a.year = u.y AND a.order_id = u.o",
            )
            .bind(patch.iter().map(|p| p.0 .0).collect::<Vec<_>>())
            .bind(patch.iter().map(|p| p.0 .1).collect::<Vec<_>>())
            .bind(patch.iter().map(|p| p.0 .2).collect::<Vec<_>>())
            .bind(patch.iter().map(|p| p.1).collect::<Vec<_>>())
            .bind(patch.iter().map(|p| p.2).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !caps.is_empty() {
            let caps: Vec<_> = caps.into_iter().collect();
            sqlx::query(
                "INSERT INTO annual_sales_caps (producer_id, year, cap) \
                 SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::numeric[]) \
                 ON CONFLICT (producer_id, year) DO UPDATE SET cap = EXCLUDED.cap",
            )
            .bind(caps.iter().map(|c| c.0 .0).collect::<Vec<_>>())
            .bind(caps.iter().map(|c| c.0 .1).collect::<Vec<_>>())
            .bind(caps.iter().map(|c| c.1).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

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
