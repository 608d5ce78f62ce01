//! Order recaps (R-SAL-5): per sale and catalog, by product, by customer, totals per VAT rate,
//! and the sign-off list (liste d'émargement); the same across several catalogs and markets of
//! one day for one producer.
//!
//! The projection keeps orders and lines normalized (`recap_orders`, `recap_lines` keyed by
//! `(order_id, line)`), plus the sales and markets they belong to; groupings are computed by
//! the query functions below, over a [`Scope`] list of `(sale, catalog)` pairs. An order is in a
//! scope when it is not cancelled and has a line of the scope's catalog with a quantity above
//! zero (as `Order::catalogs` says).
//!
//! Two tables exist for the speed of the recap requests:
//! - `recap_participations`: the catalogs taking part in each sale and their producers (the
//!   Sale's participations), so authorizing a recap reads one row per catalog instead of
//!   loading the Sale aggregate (its stream grows with every order attached).
//! - `recap_products`: the recap by product pre-aggregated per (sale, catalog, product, VAT
//!   rate). Each batch recomputes, from `recap_lines` alone (each line carries its order's
//!   cancellation), the groups whose lines its events changed (adjusted or weighed, orders
//!   cancelled), with the same expressions a rebuild uses ([`GROUP_SQL`]): recomputing keeps
//!   `orders` (distinct live orders) and `name` (`min`, which a delta cannot retract) exact; a
//!   group costs one index range of its lines. Groups that only gained lines of orders placed
//!   in the batch get those lines' figures added ([`ADD_PLACED_SQL`], the same expressions over
//!   the new lines only), so a busy sale's batch does not re-read the sale.
//!
//! A rebuild (or verify) writes the normalized tables batch by batch and leaves
//! `recap_products` and `recap_order_lines` to the end, where each is one statement over all
//! the lines (`ALL_GROUPS_SQL`, `ALL_ORDER_LINES_SQL`: the same expressions as the live
//! batches', so the rows are the same); it then needs no plain index (rows are found by primary
//! key only) and reads only the sale and market events it projects, without metadata.

use std::collections::{HashMap, HashSet};

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

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["order", "sale", "market"])
    }

    /// Every order event, but only the few sale and market events it projects (a sale's log is
    /// mostly orders attached and periods opened or closed).
    fn payloads_read(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("sale", SALE_EVENTS), ("market", MARKET_EVENTS)]
    }

    fn reads_metadata(&self) -> bool {
        false
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "recap_markets",
            "recap_sales",
            "recap_orders",
            "recap_lines",
            "recap_participations",
            "recap_products",
            "recap_order_lines",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        fold(events)?.flush(conn, Derived::Touched).await
    }

    /// A rebuild leaves `recap_products` and `recap_order_lines` empty until it is complete,
    /// then computes every row of both at once ([`Projection::finish_rebuild`]), with the same
    /// expressions: a row is a function of the lines and orders, whichever batches brought them.
    async fn apply_rebuilding(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        fold(events)?.flush(conn, Derived::Deferred).await
    }

    async fn finish_rebuild(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        // One grouping of every line (sorted for the distinct orders): room to sort in memory.
        sqlx::query("SET LOCAL work_mem TO '256MB'")
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM recap_products")
            .execute(&mut *conn)
            .await?;
        sqlx::query(ALL_GROUPS_SQL).execute(&mut *conn).await?;
        sqlx::query("DELETE FROM recap_order_lines")
            .execute(&mut *conn)
            .await?;
        sqlx::query(ALL_ORDER_LINES_SQL).execute(&mut *conn).await?;
        Ok(())
    }

    /// A rebuild finds rows by primary key only (lines and orders to update); the groups and
    /// the orders' lines are computed from whole tables at the end.
    fn rebuilds_without_plain_indexes(&self) -> bool {
        true
    }
}

/// The sale events projected (by `event_type`, the variant's name), decoded in [`fold`].
const SALE_EVENTS: &[&str] = &[
    "SalePlanned",
    "ProducerParticipated",
    "ParticipationWithdrawn",
];

/// The market events projected.
const MARKET_EVENTS: &[&str] = &["MarketCreated"];

/// Folds a batch of events (in global order) in memory.
fn fold(events: &[StoredEvent]) -> Result<Batch, ProjectionError> {
    let mut batch = Batch::default();
    for e in events {
        match e.aggregate_type.as_str() {
            "order" => batch.order(e)?,
            // The others come without payload (`payloads_read`).
            "sale" if !SALE_EVENTS.contains(&e.event_type.as_str()) => {}
            "market" if !MARKET_EVENTS.contains(&e.event_type.as_str()) => {}
            "sale" => match decode::<SaleEvent>(NAME, e)? {
                SaleEvent::SalePlanned {
                    sale,
                    market,
                    number,
                    date,
                    starts_at,
                    ends_at,
                    amap,
                    ..
                } => {
                    batch.sales.push((
                        sale.0,
                        market.0,
                        i64::from(number),
                        date,
                        starts_at,
                        ends_at,
                        amap,
                    ));
                }
                SaleEvent::ProducerParticipated {
                    producer, catalog, ..
                } => {
                    let sale = aggregate_uuid(NAME, e)?;
                    batch
                        .participations
                        .insert((sale, catalog.0), Some(producer.0));
                }
                SaleEvent::ParticipationWithdrawn { catalog, .. } => {
                    let sale = aggregate_uuid(NAME, e)?;
                    batch.participations.insert((sale, catalog.0), None);
                }
                _ => {}
            },
            "market" => {
                if let MarketEvent::MarketCreated {
                    market, name, amap, ..
                } = decode::<MarketEvent>(NAME, e)?
                {
                    batch.markets.push((market.0, name, amap));
                }
            }
            _ => {}
        }
    }

    Ok(batch)
}

/// What a batch does to the tables derived from the lines and orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Derived {
    /// Recomputes the `recap_products` groups and `recap_order_lines` rows its events touched.
    Touched,
    /// Leaves them to [`Projection::finish_rebuild`].
    Deferred,
}

/// A recap order row.
struct OrderRow {
    order: Uuid,
    sale: Uuid,
    market: Uuid,
    customer: Uuid,
    number: String,
    mode: &'static str,
    fee: Decimal,
    total: Decimal,
    paid: Decimal,
    refunded: Decimal,
    cancelled: bool,
    at: DateTime<Utc>,
}

/// A recap line row.
struct LineRow {
    order: Uuid,
    sale: Uuid,
    line: etal_domain::order::Line,
}

/// Changes to a line inserted by an earlier batch (last value wins, as the events carry the
/// line's new figures, not deltas).
#[derive(Default)]
struct LineSet {
    quantity: Option<i64>,
    weight: Option<Decimal>,
    amounts: Option<(Decimal, Decimal, Decimal)>,
}

/// Changes to an order inserted by an earlier batch.
#[derive(Default)]
struct OrderSet {
    total: Option<Decimal>,
    paid: Option<Decimal>,
    refunded: Option<Decimal>,
    cancelled: bool,
}

/// One batch of events folded in memory, then written with a handful of set-based statements:
/// replay speed does not depend on round trips per event.
#[derive(Default)]
struct Batch {
    markets: Vec<(Uuid, String, bool)>,
    #[allow(clippy::type_complexity)]
    sales: Vec<(
        Uuid,
        Uuid,
        i64,
        NaiveDate,
        DateTime<Utc>,
        DateTime<Utc>,
        bool,
    )>,
    orders: Vec<OrderRow>,
    order_index: HashMap<Uuid, usize>,
    lines: Vec<LineRow>,
    line_index: HashMap<(Uuid, u32), usize>,
    line_sets: HashMap<(Uuid, u32), LineSet>,
    order_sets: HashMap<Uuid, OrderSet>,
    /// (sale, catalog) -> the producer taking part, or `None`: withdrawn (last event wins).
    participations: HashMap<(Uuid, Uuid), Option<Uuid>>,
}

/// A `recap_products` group: (sale, catalog, product).
type Group = (Uuid, Uuid, Uuid);

/// Adds the groups of `rows` (columns sale_id, catalog_id, product_id) to `touched`.
fn touch(touched: &mut HashSet<Group>, rows: &[sqlx::postgres::PgRow]) -> Result<(), sqlx::Error> {
    for r in rows {
        touched.insert((
            r.try_get("sale_id")?,
            r.try_get("catalog_id")?,
            r.try_get("product_id")?,
        ));
    }
    Ok(())
}

/// The columns of a `recap_products` row computed from the lines `l` of live orders `o`: the
/// only definition of a group's figures ([`GROUP_SQL`] for some groups, [`ALL_GROUPS_SQL`] for
/// every group, as the migration's backfill did).
macro_rules! group_insert {
    () => {
        "INSERT INTO recap_products (sale_id, catalog_id, product_id, vat_rate, name, unit, \
         quantity, orders, weighed_kg, lines_to_weigh, amount_incl_vat, amount_excl_vat, vat_amount) "
    };
}
macro_rules! group_columns {
    () => {
        "SELECT l.sale_id, l.catalog_id, l.product_id, l.vat_rate, min(l.name), min(l.unit), \
         sum(l.quantity)::bigint, count(DISTINCT l.order_id), sum(l.weight_kg), \
         count(*) FILTER (WHERE l.variable_weight AND l.weight_kg IS NULL), \
         sum(l.amount_incl_vat), sum(l.amount_excl_vat), sum(l.vat_amount) FROM recap_lines l "
    };
}

/// The live lines `l` of a group (their order not cancelled, quantity above zero): each line
/// carries its order's cancellation, so a group is read from its lines alone.
macro_rules! group_live {
    () => {
        " WHERE NOT l.cancelled AND l.quantity > 0 "
    };
}
macro_rules! group_by {
    () => {
        " GROUP BY l.sale_id, l.catalog_id, l.product_id, l.vat_rate"
    };
}

/// Recomputes the `recap_products` rows of the groups `$1, $2, $3` (sale, catalog, product)
/// from the live lines. Live batches use it for the groups they touch, rebuilds
/// [`ALL_GROUPS_SQL`] once: the same expressions, so they cannot differ. One group at a time
/// (a lateral subquery reading the group's lines by index): a join of the whole list with
/// `recap_lines` let the planner pick plans that read far more lines than the groups hold
/// (a live batch took 1.4 s on a table of a few thousand lines).
const GROUP_SQL: &str = concat!(
    group_insert!(),
    "SELECT x.* FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS g(sale_id, catalog_id, product_id) \
     CROSS JOIN LATERAL (",
    group_columns!(),
    group_live!(),
    "AND l.sale_id = g.sale_id AND l.catalog_id = g.catalog_id AND l.product_id = g.product_id",
    group_by!(),
    ") x"
);

/// Adds to their groups the live lines of the orders `$1` placed in the batch, except in the
/// groups `$2, $3, $4` (sale, catalog, product), which are recomputed. A group's figures are
/// sums, distinct orders and minimums over its lines: an order's lines all arrive with its
/// `OrderPlaced` (one line per product), so adding the new lines' figures to the row gives what
/// [`GROUP_SQL`] would, at the cost of the new lines instead of the whole group. Removing a
/// line (cut to zero, cancelled) cannot be added: those groups are recomputed.
const ADD_PLACED_SQL: &str = concat!(
    group_insert!(),
    group_columns!(),
    group_live!(),
    "AND l.order_id = ANY($1) AND NOT EXISTS (SELECT 1 FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[])      AS g(sale_id, catalog_id, product_id) WHERE g.sale_id = l.sale_id AND g.catalog_id = l.catalog_id      AND g.product_id = l.product_id)",
    group_by!(),
    " ORDER BY 1, 2, 3, 4",
    " ON CONFLICT (sale_id, catalog_id, product_id, vat_rate) DO UPDATE SET      name = least(recap_products.name, EXCLUDED.name), unit = least(recap_products.unit, EXCLUDED.unit),      quantity = recap_products.quantity + EXCLUDED.quantity,      orders = recap_products.orders + EXCLUDED.orders,      weighed_kg = CASE WHEN recap_products.weighed_kg IS NULL THEN EXCLUDED.weighed_kg                        WHEN EXCLUDED.weighed_kg IS NULL THEN recap_products.weighed_kg                        ELSE recap_products.weighed_kg + EXCLUDED.weighed_kg END,      lines_to_weigh = recap_products.lines_to_weigh + EXCLUDED.lines_to_weigh,      amount_incl_vat = recap_products.amount_incl_vat + EXCLUDED.amount_incl_vat,      amount_excl_vat = recap_products.amount_excl_vat + EXCLUDED.amount_excl_vat,      vat_amount = recap_products.vat_amount + EXCLUDED.vat_amount"
);

/// Computes every `recap_products` row (a rebuild, once it holds every line).
const ALL_GROUPS_SQL: &str = concat!(
    group_insert!(),
    group_columns!(),
    group_live!(),
    group_by!()
);

/// The `recap_order_lines` row of each order from its live lines `l` (an order without live
/// lines has none): the only definition of the row, shared by live batches ([`ORDER_LINES_SQL`]),
/// rebuilds ([`ALL_ORDER_LINES_SQL`]) and the migration's backfill.
macro_rules! order_lines_insert {
    () => {
        "INSERT INTO recap_order_lines (order_id, lines) \
         SELECT l.order_id, json_agg(json_build_array(l.line, l.catalog_id, l.product_id, l.name, l.unit, \
         l.quantity, (l.weight_kg * 1000)::bigint, (l.unit_price_incl_vat * 100)::bigint, \
         (l.amount_incl_vat * 100)::bigint, (l.producer_unit_price_incl_vat * 100)::bigint) \
         ORDER BY l.line)::text \
         FROM recap_lines l WHERE "
    };
}

/// Recomputes the `recap_order_lines` rows of the orders `$1` (their rows deleted first).
const ORDER_LINES_SQL: &str = concat!(
    order_lines_insert!(),
    "l.order_id = ANY($1) AND l.quantity > 0 GROUP BY l.order_id"
);

/// Computes every `recap_order_lines` row (a rebuild, once it holds every line).
const ALL_ORDER_LINES_SQL: &str =
    concat!(order_lines_insert!(), "l.quantity > 0 GROUP BY l.order_id");

/// Sets the figures `u` of lines inserted by earlier batches (`NULL`: unchanged).
macro_rules! line_update {
    () => {
        "UPDATE recap_lines l SET quantity = coalesce(u.quantity, l.quantity), \
         weight_kg = coalesce(u.weight, l.weight_kg), \
         amount_incl_vat = coalesce(u.incl, l.amount_incl_vat), \
         amount_excl_vat = coalesce(u.excl, l.amount_excl_vat), vat_amount = coalesce(u.vat, l.vat_amount) \
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::numeric[], $5::numeric[], $6::numeric[], \
         $7::numeric[]) AS u(order_id, line, quantity, weight, incl, excl, vat) \
         WHERE l.order_id = u.order_id AND l.line = u.line"
    };
}

impl Batch {
    fn order(&mut self, e: &StoredEvent) -> Result<(), ProjectionError> {
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
                self.order_index.insert(placed.0, self.orders.len());
                self.orders.push(OrderRow {
                    order: placed.0,
                    sale: sale.0,
                    market: market.0,
                    customer: customer.0,
                    number,
                    mode: match payment_mode {
                        PaymentMode::Online => "online",
                        PaymentMode::OnSite => "on_site",
                    },
                    fee: fee.amount(),
                    total: total.amount(),
                    paid: Decimal::ZERO,
                    refunded: Decimal::ZERO,
                    cancelled: false,
                    at,
                });
                for line in lines {
                    self.line_index
                        .insert((placed.0, line.line), self.lines.len());
                    self.lines.push(LineRow {
                        order: placed.0,
                        sale: sale.0,
                        line,
                    });
                }
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
                let amounts = (
                    new_amount.amount(),
                    amount_excl_vat.amount(),
                    vat_amount.amount(),
                );
                match self.line_index.get(&(order, line)) {
                    Some(&i) => {
                        let l = &mut self.lines[i].line;
                        l.quantity = new_quantity;
                        (l.amount_incl_vat, l.amount_excl_vat, l.vat_amount) =
                            (new_amount, amount_excl_vat, vat_amount);
                    }
                    None => {
                        let set = self.line_sets.entry((order, line)).or_default();
                        set.quantity = Some(new_quantity);
                        set.amounts = Some(amounts);
                    }
                }
                self.set_order(
                    order,
                    |row| row.total = total.amount(),
                    |set| set.total = Some(total.amount()),
                );
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
                let amounts = (
                    new_amount.amount(),
                    amount_excl_vat.amount(),
                    vat_amount.amount(),
                );
                match self.line_index.get(&(order, line)) {
                    Some(&i) => {
                        let l = &mut self.lines[i].line;
                        l.weight_kg = Some(weight_kg);
                        (l.amount_incl_vat, l.amount_excl_vat, l.vat_amount) =
                            (new_amount, amount_excl_vat, vat_amount);
                    }
                    None => {
                        let set = self.line_sets.entry((order, line)).or_default();
                        set.weight = Some(weight_kg);
                        set.amounts = Some(amounts);
                    }
                }
                self.set_order(
                    order,
                    |row| row.total = total.amount(),
                    |set| set.total = Some(total.amount()),
                );
            }
            OrderEvent::PaymentRecorded { paid, .. } => {
                self.set_order(
                    order,
                    |row| row.paid = paid.amount(),
                    |set| set.paid = Some(paid.amount()),
                );
            }
            // The recap shows what was refunded once the provider acknowledged it.
            OrderEvent::RefundRequested { .. }
            | OrderEvent::PaymentAwaited { .. }
            | OrderEvent::PaymentFailed { .. } => {}
            OrderEvent::RefundRecorded { refunded, .. } => {
                self.set_order(
                    order,
                    |row| row.refunded = refunded.amount(),
                    |set| set.refunded = Some(refunded.amount()),
                );
            }
            OrderEvent::OrderCancelled { .. } => {
                self.set_order(
                    order,
                    |row| {
                        row.cancelled = true;
                        row.total = Decimal::ZERO;
                    },
                    |set| {
                        set.cancelled = true;
                        set.total = Some(Decimal::ZERO);
                    },
                );
            }
        }
        Ok(())
    }

    fn set_order(
        &mut self,
        order: Uuid,
        on_row: impl FnOnce(&mut OrderRow),
        on_set: impl FnOnce(&mut OrderSet),
    ) {
        match self.order_index.get(&order) {
            Some(&i) => on_row(&mut self.orders[i]),
            None => on_set(self.order_sets.entry(order).or_default()),
        }
    }

    async fn flush(self, conn: &mut PgConnection, derived: Derived) -> Result<(), ProjectionError> {
        let touching = derived == Derived::Touched;
        // The recap_products groups whose lines change (recomputed), and those only given
        // lines of orders placed in this batch (their figures added).
        let mut touched: HashSet<Group> = HashSet::new();
        let mut added: HashSet<Group> = HashSet::new();
        let mut placed: Vec<Uuid> = Vec::new();
        // The orders whose lines change (recap_order_lines).
        let mut relined: Vec<Uuid> = Vec::new();
        if touching {
            added.extend(
                self.lines
                    .iter()
                    .map(|r| (r.sale, r.line.catalog.0, r.line.product.0)),
            );
            placed.extend(self.lines.iter().map(|r| r.order));
            placed.sort_unstable();
            placed.dedup();
            relined.extend(
                self.lines
                    .iter()
                    .map(|r| r.order)
                    .chain(self.line_sets.keys().map(|(o, _)| *o)),
            );
            relined.sort_unstable();
            relined.dedup();
        }
        if !self.participations.is_empty() {
            let (keys, producers): (Vec<(Uuid, Uuid)>, Vec<Option<Uuid>>) =
                self.participations.into_iter().unzip();
            let (sales, catalogs): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
            sqlx::query(
                "DELETE FROM recap_participations p USING UNNEST($1::uuid[], $2::uuid[]) AS u(sale_id, catalog_id) \
                 WHERE p.sale_id = u.sale_id AND p.catalog_id = u.catalog_id",
            )
            .bind(&sales)
            .bind(&catalogs)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO recap_participations (sale_id, catalog_id, producer_id) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS u(sale_id, catalog_id, producer_id) \
                 WHERE u.producer_id IS NOT NULL",
            )
            .bind(&sales)
            .bind(&catalogs)
            .bind(&producers)
            .execute(&mut *conn)
            .await?;
        }
        if !self.markets.is_empty() {
            let (ids, rest): (Vec<Uuid>, Vec<(String, bool)>) = self
                .markets
                .into_iter()
                .map(|(a, b, c)| (a, (b, c)))
                .unzip();
            let (names, amaps): (Vec<String>, Vec<bool>) = rest.into_iter().unzip();
            sqlx::query("INSERT INTO recap_markets (market_id, name, amap) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bool[])")
                .bind(&ids)
                .bind(&names)
                .bind(&amaps)
                .execute(&mut *conn)
                .await?;
        }
        if !self.sales.is_empty() {
            let mut cols = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for (sale, market, number, date, starts, ends, amap) in self.sales {
                cols.0.push(sale);
                cols.1.push(market);
                cols.2.push(number);
                cols.3.push(date);
                cols.4.push(starts);
                cols.5.push(ends);
                cols.6.push(amap);
            }
            sqlx::query(
                "INSERT INTO recap_sales (sale_id, market_id, number, date, starts_at, ends_at, amap) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::date[], $5::timestamptz[], \
                 $6::timestamptz[], $7::bool[])",
            )
            .bind(&cols.0)
            .bind(&cols.1)
            .bind(&cols.2)
            .bind(&cols.3)
            .bind(&cols.4)
            .bind(&cols.5)
            .bind(&cols.6)
            .execute(&mut *conn)
            .await?;
        }
        if !self.orders.is_empty() {
            let o = &self.orders;
            sqlx::query(
                "INSERT INTO recap_orders (order_id, sale_id, market_id, customer_id, number, payment_mode, \
                 delivery_fee, total, paid, refunded, cancelled, placed_at) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], \
                 $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[], $11::bool[], $12::timestamptz[])",
            )
            .bind(o.iter().map(|r| r.order).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.sale).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.market).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.customer).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.number.clone()).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.mode).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.fee).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.total).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.paid).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.refunded).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.cancelled).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.lines.is_empty() {
            let l = &self.lines;
            sqlx::query(
                "INSERT INTO recap_lines (order_id, line, sale_id, catalog_id, producer_id, product_id, name, unit, \
                 unit_price_incl_vat, vat_rate, variable_weight, estimated_weight_kg, quantity, weight_kg, \
                 amount_incl_vat, amount_excl_vat, vat_amount, producer_unit_price_incl_vat, cancelled) \
                 SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], \
                 $7::text[], $8::text[], $9::numeric[], $10::numeric[], $11::bool[], $12::numeric[], $13::bigint[], \
                 $14::numeric[], $15::numeric[], $16::numeric[], $17::numeric[], $18::numeric[], $19::bool[])",
            )
            .bind(l.iter().map(|r| r.order).collect::<Vec<_>>())
            .bind(l.iter().map(|r| i64::from(r.line.line)).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.sale).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.catalog.0).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.producer.0).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.product.0).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.name.clone()).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.unit.clone()).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.unit_price_incl_vat.amount()).collect::<Vec<_>>())
            .bind(l.iter().map(|r| vat_percent(r.line.vat)).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.variable_weight).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.estimated_weight_kg).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.quantity).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.weight_kg).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.amount_incl_vat.amount()).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.amount_excl_vat.amount()).collect::<Vec<_>>())
            .bind(l.iter().map(|r| r.line.vat_amount.amount()).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|r| r.line.producer_unit_price_incl_vat.map(|m| m.amount()))
                    .collect::<Vec<_>>(),
            )
            // An order placed and cancelled in the same batch: its lines are born cancelled.
            .bind(
                l.iter()
                    .map(|r| {
                        self.order_index
                            .get(&r.order)
                            .is_some_and(|&i| self.orders[i].cancelled)
                    })
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
        }
        if !self.line_sets.is_empty() {
            let sets: Vec<_> = self.line_sets.into_iter().collect();
            let rows = sqlx::query(if touching {
                concat!(
                    line_update!(),
                    " RETURNING l.sale_id, l.catalog_id, l.product_id"
                )
            } else {
                line_update!()
            })
            .bind(sets.iter().map(|((o, _), _)| *o).collect::<Vec<_>>())
            .bind(
                sets.iter()
                    .map(|((_, l), _)| i64::from(*l))
                    .collect::<Vec<_>>(),
            )
            .bind(sets.iter().map(|(_, s)| s.quantity).collect::<Vec<_>>())
            .bind(sets.iter().map(|(_, s)| s.weight).collect::<Vec<_>>())
            .bind(
                sets.iter()
                    .map(|(_, s)| s.amounts.map(|a| a.0))
                    .collect::<Vec<_>>(),
            )
            .bind(
                sets.iter()
                    .map(|(_, s)| s.amounts.map(|a| a.1))
                    .collect::<Vec<_>>(),
            )
            .bind(
                sets.iter()
                    .map(|(_, s)| s.amounts.map(|a| a.2))
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *conn)
            .await?;
            touch(&mut touched, &rows)?;
        }
        if !self.order_sets.is_empty() {
            let sets: Vec<_> = self.order_sets.into_iter().collect();
            sqlx::query(
                "UPDATE recap_orders o SET total = coalesce(u.total, o.total), paid = coalesce(u.paid, o.paid), \
                 refunded = coalesce(u.refunded, o.refunded), cancelled = o.cancelled OR u.cancelled \
                 FROM UNNEST($1::uuid[], $2::numeric[], $3::numeric[], $4::numeric[], $5::bool[]) \
                 AS u(order_id, total, paid, refunded, cancelled) WHERE o.order_id = u.order_id",
            )
            .bind(sets.iter().map(|(o, _)| *o).collect::<Vec<_>>())
            .bind(sets.iter().map(|(_, s)| s.total).collect::<Vec<_>>())
            .bind(sets.iter().map(|(_, s)| s.paid).collect::<Vec<_>>())
            .bind(sets.iter().map(|(_, s)| s.refunded).collect::<Vec<_>>())
            .bind(sets.iter().map(|(_, s)| s.cancelled).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
            // A cancellation takes every line of the order out of its groups.
            let cancelled: Vec<Uuid> = sets
                .iter()
                .filter(|(_, s)| s.cancelled)
                .map(|(o, _)| *o)
                .collect();
            if !cancelled.is_empty() {
                let rows = sqlx::query(
                    "UPDATE recap_lines SET cancelled = true WHERE order_id = ANY($1) \
                     RETURNING sale_id, catalog_id, product_id",
                )
                .bind(&cancelled)
                .fetch_all(&mut *conn)
                .await?;
                if touching {
                    touch(&mut touched, &rows)?;
                }
            }
        }
        added.retain(|g| !touched.contains(g));
        // The recomputed groups, sorted: the same statements for the same batch, rows locked in
        // key order.
        let mut groups: Vec<Group> = touched.into_iter().collect();
        groups.sort_unstable();
        let sales: Vec<Uuid> = groups.iter().map(|g| g.0).collect();
        let catalogs: Vec<Uuid> = groups.iter().map(|g| g.1).collect();
        let products: Vec<Uuid> = groups.iter().map(|g| g.2).collect();
        if !added.is_empty() {
            sqlx::query(ADD_PLACED_SQL)
                .bind(&placed)
                .bind(&sales)
                .bind(&catalogs)
                .bind(&products)
                .execute(&mut *conn)
                .await?;
        }
        if !groups.is_empty() {
            sqlx::query(
                "DELETE FROM recap_products p USING UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) \
                 AS g(sale_id, catalog_id, product_id) \
                 WHERE p.sale_id = g.sale_id AND p.catalog_id = g.catalog_id AND p.product_id = g.product_id",
            )
            .bind(&sales)
            .bind(&catalogs)
            .bind(&products)
            .execute(&mut *conn)
            .await?;
            sqlx::query(GROUP_SQL)
                .bind(&sales)
                .bind(&catalogs)
                .bind(&products)
                .execute(&mut *conn)
                .await?;
        }
        if !relined.is_empty() {
            sqlx::query("DELETE FROM recap_order_lines WHERE order_id = ANY($1)")
                .bind(&relined)
                .execute(&mut *conn)
                .await?;
            sqlx::query(ORDER_LINES_SQL)
                .bind(&relined)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
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
///
/// Reads the pre-aggregated `recap_products` rows of the scopes (one per product and VAT rate
/// of each catalog). Summing them across scopes is exact, except the distinct orders of a
/// product offered in two catalogs of the same sale (one order may hold both lines): then it
/// answers from the lines ([`recap_by_product_from_lines`]).
pub async fn recap_by_product(
    pool: &PgPool,
    scopes: &[Scope],
) -> Result<Vec<ProductRecap>, sqlx::Error> {
    let (sales, catalogs) = scope_binds(scopes);
    let sql = format!(
        "{SCOPE} SELECT p.product_id, min(p.name) AS name, min(p.unit) AS unit, p.vat_rate, \
         sum(p.quantity)::bigint AS quantity, sum(p.orders)::bigint AS orders, \
         sum(p.weighed_kg) AS weighed_kg, sum(p.lines_to_weigh)::bigint AS lines_to_weigh, \
         sum(p.amount_incl_vat) AS incl, sum(p.amount_excl_vat) AS excl, sum(p.vat_amount) AS vat, \
         count(*) > count(DISTINCT p.sale_id) AS shared \
         FROM recap_products p JOIN scope s ON s.sale_id = p.sale_id AND s.catalog_id = p.catalog_id \
         GROUP BY p.product_id, p.vat_rate ORDER BY 2, 1, 4"
    );
    let rows = sqlx::query(&sql)
        .bind(&sales)
        .bind(&catalogs)
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        if r.try_get::<bool, _>("shared")? {
            return recap_by_product_from_lines(pool, scopes).await;
        }
        out.push(product_recap(r)?);
    }
    Ok(out)
}

fn product_recap(r: &sqlx::postgres::PgRow) -> Result<ProductRecap, sqlx::Error> {
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
}

/// The recap by product computed from the lines at query time: what [`recap_by_product`]
/// answers, without the pre-aggregated table (the reference its tests compare with).
pub async fn recap_by_product_from_lines(
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
    rows.iter().map(product_recap).collect()
}

/// R-INV-6: one seller's consumer sales of one day at one VAT rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct B2cDay {
    pub date: chrono::NaiveDate,
    pub vat_rate: Decimal,
    pub amount_excl_vat: Money,
    pub vat_amount: Money,
    pub amount_incl_vat: Money,
    /// Orders with a line at this rate that day.
    pub transactions: i64,
}

/// R-INV-6: a producer's sales of each distribution day (Europe/Paris) between two dates, per
/// VAT rate, from the live lines of orders not cancelled: the same lines the recaps add up.
pub async fn b2c_days(
    pool: &PgPool,
    producer: uuid::Uuid,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<B2cDay>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.date, l.vat_rate, sum(l.amount_excl_vat) AS excl, sum(l.vat_amount) AS vat,          sum(l.amount_incl_vat) AS incl, count(DISTINCT l.order_id) AS transactions          FROM recap_lines l JOIN recap_sales s ON s.sale_id = l.sale_id          JOIN recap_orders o ON o.order_id = l.order_id          WHERE l.producer_id = $1 AND s.date BETWEEN $2 AND $3 AND NOT o.cancelled            AND l.amount_incl_vat <> 0          GROUP BY s.date, l.vat_rate ORDER BY s.date, l.vat_rate",
    )
    .bind(producer)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(B2cDay {
                date: r.try_get("date")?,
                vat_rate: r.try_get::<Decimal, _>("vat_rate")?.normalize(),
                amount_excl_vat: money(r, "excl")?,
                vat_amount: money(r, "vat")?,
                amount_incl_vat: money(r, "incl")?,
                transactions: r.try_get("transactions")?,
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

/// Totals per VAT rate over `scopes`, by rate (sums of the `recap_products` groups: the same
/// live lines).
pub async fn vat_totals(pool: &PgPool, scopes: &[Scope]) -> Result<Vec<VatTotal>, sqlx::Error> {
    let (sales, catalogs) = scope_binds(scopes);
    let sql = format!(
        "{SCOPE} SELECT p.vat_rate, sum(p.amount_incl_vat) AS incl, sum(p.amount_excl_vat) AS excl, \
         sum(p.vat_amount) AS vat FROM recap_products p \
         JOIN scope s ON s.sale_id = p.sale_id AND s.catalog_id = p.catalog_id \
         GROUP BY p.vat_rate ORDER BY p.vat_rate"
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

/// Totals per VAT rate of recap-by-product rows, by rate: what [`vat_totals`] answers over
/// the same scopes (both sum the same live lines).
pub fn vat_totals_of(rows: &[ProductRecap]) -> Vec<VatTotal> {
    let mut by_rate: std::collections::BTreeMap<Decimal, VatTotal> = Default::default();
    for r in rows {
        let t = by_rate.entry(r.vat_rate).or_insert_with(|| VatTotal {
            vat_rate: r.vat_rate,
            amount_excl_vat: Money::ZERO,
            vat_amount: Money::ZERO,
            amount_incl_vat: Money::ZERO,
        });
        t.amount_excl_vat += r.amount_excl_vat;
        t.vat_amount += r.vat_amount;
        t.amount_incl_vat += r.amount_incl_vat;
    }
    by_rate.into_values().collect()
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
    /// R-CAT-2: the producer's unit price when the catalog adds fees into the customer's.
    pub producer_unit_price_incl_vat: Option<Money>,
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
/// order number (every order; [`recap_by_customer_page`] reads one page).
pub async fn recap_by_customer(
    pool: &PgPool,
    scopes: &[Scope],
) -> Result<Vec<CustomerRecap>, sqlx::Error> {
    let mut orders = orders_in_scope(pool, scopes, "o.number, o.order_id").await?;
    let (sales, catalogs) = scope_binds(scopes);
    let sql = format!(
        "{SCOPE} SELECT l.order_id, l.line, l.catalog_id, l.product_id, l.name, l.unit, l.quantity, l.weight_kg, \
         {LINE_CENTS} {IN_SCOPE} ORDER BY l.order_id, l.line"
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
        let line = recap_line(r)?;
        if let Some(&i) = index.get(&order) {
            orders[i].lines.push(line);
        }
    }
    Ok(orders)
}

/// The orders in scope, from `recap_orders o` joined with `people p`. A scope of one sale (the
/// common case) names it with `=`, so the index on (sale_id, number) yields the orders in order
/// and a page stops reading after its last order.
fn orders_in_scope_sql(scopes: &[Scope]) -> String {
    let one_sale = scopes.windows(2).all(|w| w[0].sale == w[1].sale);
    let sale = if one_sale {
        "o.sale_id = ($1::uuid[])[1]"
    } else {
        "o.sale_id = ANY($1::uuid[])"
    };
    format!(
        "FROM recap_orders o LEFT JOIN people p ON p.user_id = o.customer_id \
         WHERE {sale} AND NOT o.cancelled AND EXISTS (SELECT 1 FROM recap_lines l \
         JOIN scope s ON s.sale_id = l.sale_id AND s.catalog_id = l.catalog_id \
         WHERE l.order_id = o.order_id AND l.sale_id = o.sale_id AND l.quantity > 0)"
    )
}

/// How many orders [`recap_by_customer`] lists.
pub async fn count_orders_in_scope(pool: &PgPool, scopes: &[Scope]) -> Result<usize, sqlx::Error> {
    if scopes.is_empty() {
        return Ok(0);
    }
    let (sales, catalogs) = scope_binds(scopes);
    let sql = format!("{SCOPE} SELECT count(*) {}", orders_in_scope_sql(scopes));
    let n: i64 = sqlx::query_scalar(&sql)
        .bind(&sales)
        .bind(&catalogs)
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// A page of [`recap_by_customer`]: at most `limit` orders from the `offset`-th (0-based), by
/// order number, each with its lines in scope. One statement (one snapshot): the page's orders
/// with their lines as stored in `recap_order_lines` (one row an order, not one a line), the
/// lines of catalogs out of scope dropped here.
pub async fn recap_by_customer_page(
    pool: &PgPool,
    scopes: &[Scope],
    offset: usize,
    limit: usize,
) -> Result<Vec<CustomerRecap>, sqlx::Error> {
    if scopes.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let (sales, catalogs) = scope_binds(scopes);
    let in_scope: HashSet<(Uuid, Uuid)> = sales
        .iter()
        .copied()
        .zip(catalogs.iter().copied())
        .collect();
    let sql = format!(
        "{SCOPE} SELECT o.order_id, o.number, o.sale_id, o.market_id, o.customer_id, \
         {CUSTOMER_NAME} AS customer, o.total, o.paid, o.refunded, ol.lines {} \
         ORDER BY o.number, o.order_id OFFSET $3 LIMIT $4",
        orders_in_scope_sql(scopes).replacen(
            "FROM recap_orders o ",
            "FROM recap_orders o LEFT JOIN recap_order_lines ol ON ol.order_id = o.order_id ",
            1
        )
    );
    let rows = sqlx::query(&sql)
        .bind(&sales)
        .bind(&catalogs)
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    let mut orders = Vec::with_capacity(rows.len());
    for r in &rows {
        let total = money(r, "total")?;
        let paid = money(r, "paid")?;
        let refunded = money(r, "refunded")?;
        let sale: Uuid = r.try_get("sale_id")?;
        let lines: Vec<RecapLine> = match r.try_get::<Option<&str>, _>("lines")? {
            None => Vec::new(),
            Some(json) => serde_json::from_str::<Vec<StoredLine>>(json)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?
                .into_iter()
                .filter(|l| in_scope.contains(&(sale, l.1)))
                .map(StoredLine::into_line)
                .collect(),
        };
        let amount: Money = lines.iter().map(|l| l.amount_incl_vat).sum();
        let balance_due = (total - (paid - refunded)).max(Money::ZERO);
        orders.push(CustomerRecap {
            order: OrderId(r.try_get("order_id")?),
            number: r.try_get("number")?,
            sale: SaleId(sale),
            market: MarketId(r.try_get("market_id")?),
            customer_id: UserId(r.try_get("customer_id")?),
            customer: r.try_get("customer")?,
            lines,
            amount_incl_vat: amount,
            order_total: total,
            paid,
            refunded,
            payment_status: PaymentStatus::of(total, paid, refunded),
            balance_due,
            due_at_pickup: amount.min(balance_due),
        });
    }
    Ok(orders)
}

/// A line as `recap_order_lines` stores it (`ORDER_LINES_SQL`): line, catalog, product, name,
/// unit, quantity, weight in grams, unit price and amount incl. VAT in cents, producer's unit
/// price in cents (null without fees in the price).
#[derive(serde::Deserialize)]
struct StoredLine(
    u32,
    Uuid,
    Uuid,
    String,
    String,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
);

impl StoredLine {
    fn into_line(self) -> RecapLine {
        let StoredLine(
            line,
            catalog,
            product,
            name,
            unit,
            quantity,
            grams,
            price,
            amount,
            producer_price,
        ) = self;
        RecapLine {
            line,
            catalog: CatalogId(catalog),
            product: ProductId(product),
            name,
            unit,
            quantity,
            weight_kg: grams.map(|g| Decimal::new(g, 3).normalize()),
            unit_price_incl_vat: Money::from_cents(price),
            amount_incl_vat: Money::from_cents(amount),
            producer_unit_price_incl_vat: producer_price.map(Money::from_cents),
        }
    }
}

/// The line's two amounts in cents (`numeric(14,2)` times 100 is an exact integer), read as
/// integers: decoding a PostgreSQL numeric into a `Decimal` is the costliest part of a row.
const LINE_CENTS: &str = "(l.unit_price_incl_vat * 100)::bigint AS unit_price_cents, \
     (l.amount_incl_vat * 100)::bigint AS amount_cents, \
     (l.producer_unit_price_incl_vat * 100)::bigint AS producer_unit_price_cents";

/// A line row: `order_id, line, catalog_id, product_id, name, unit, quantity, weight_kg`, then
/// [`LINE_CENTS`], read by position (a page holds a thousand lines: no lookup of the column by
/// name, no check of each value's type against the column's, which this SQL fixes).
fn recap_line(r: &sqlx::postgres::PgRow) -> Result<RecapLine, sqlx::Error> {
    Ok(RecapLine {
        line: u32::try_from(r.try_get_unchecked::<i64, _>(1)?).unwrap_or(u32::MAX),
        catalog: CatalogId(r.try_get_unchecked(2)?),
        product: ProductId(r.try_get_unchecked(3)?),
        name: r.try_get_unchecked(4)?,
        unit: r.try_get_unchecked(5)?,
        quantity: r.try_get_unchecked(6)?,
        weight_kg: r
            .try_get_unchecked::<Option<Decimal>, _>(7)?
            .map(|d| d.normalize()),
        unit_price_incl_vat: Money::from_cents(r.try_get_unchecked(8)?),
        amount_incl_vat: Money::from_cents(r.try_get_unchecked(9)?),
        producer_unit_price_incl_vat: r
            .try_get_unchecked::<Option<i64>, _>(10)?
            .map(Money::from_cents),
    })
}

/// The catalogs taking part in `sale` and their producers, by catalog id, with the sale's
/// market; `None` when the sale is not (yet) projected. From `recap_participations`: as fresh
/// as the projection (a mutation's read-your-writes wait covers its own writes).
pub async fn sale_participations(
    pool: &PgPool,
    sale: SaleId,
) -> Result<Option<(MarketId, Vec<(CatalogId, ProducerId)>)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.market_id, p.catalog_id, p.producer_id FROM recap_sales s \
         LEFT JOIN recap_participations p ON p.sale_id = s.sale_id \
         WHERE s.sale_id = $1 ORDER BY p.catalog_id",
    )
    .bind(sale.0)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let market = MarketId(first.try_get("market_id")?);
    let mut taking_part = Vec::with_capacity(rows.len());
    for r in &rows {
        if let (Some(c), Some(p)) = (
            r.try_get::<Option<Uuid>, _>("catalog_id")?,
            r.try_get::<Option<Uuid>, _>("producer_id")?,
        ) {
            taking_part.push((CatalogId(c), ProducerId(p)));
        }
    }
    Ok(Some((market, taking_part)))
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
