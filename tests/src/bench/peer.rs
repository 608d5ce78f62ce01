//! The peer a user of this stack would pick instead of etal's command bus: cqrs-es's own
//! `CqrsFramework::execute` on postgres-es (`postgres_cqrs(pool, queries, services)`, as its
//! README shows), driving the same domain aggregates through the same decisions as an etal
//! order. One order is one `execute` per stream an etal order writes (each stock of a line, the
//! annual sales of each producer, the sale, the order) plus, on online markets, one for the
//! payment the outbox records: each `execute` loads that aggregate's events from postgres-es's
//! `events` table (no snapshots), decides, and appends them in a transaction of its own. A
//! conflict (another client appended first) is retried with the backoff of etal's bus.
//!
//! postgres-es's tables live in the schema `peer` of the bench world's database (the peer's
//! pool has `search_path=peer`), so they never meet etal's `events`. The sale, stock and annual
//! sales streams of the fixture are copied there before any order, so the peer starts from the
//! same states as etal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, Query};
use etal_domain::annual::{annual_sales_id, sales_year, AnnualSales, AnnualSalesCommand};
use etal_domain::catalog::Catalog;
use etal_domain::config::PlanKind;
use etal_domain::ids::{CatalogId, MarketId, OrderId, PaymentId, SaleId, UserId};
use etal_domain::market::PaymentMode;
use etal_domain::order::{Delivery, LineInput, Order, OrderCommand, PaymentMethod};
use etal_domain::sale::{Sale, SaleCommand, SaleEvent};
use etal_domain::stock::{Stock, StockCommand};
use etal_domain::{Actor, Money, Role};
use postgres_es::{postgres_cqrs, PostgresCqrs};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::bench::measure::Fixture;

/// Attempts of one `execute` on conflicts (the application's bus: 40 in the bench world).
const MAX_ATTEMPTS: u32 = 40;

/// postgres-es's tables (db/init.sql of postgres-es 0.5), in their own schema.
const SCHEMA: &str = "
DROP SCHEMA IF EXISTS peer CASCADE;
CREATE SCHEMA peer;
CREATE TABLE peer.events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE peer.snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
";

/// A domain aggregate whose inherent `decide` the peer calls.
pub trait Decide: Aggregate<Services = ()> {
    fn decide_one(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}

impl Decide for Stock {
    fn decide_one(&self, command: StockCommand) -> Result<Vec<Self::Event>, Self::Error> {
        self.decide(command)
    }
}

impl Decide for AnnualSales {
    fn decide_one(&self, command: AnnualSalesCommand) -> Result<Vec<Self::Event>, Self::Error> {
        self.decide(command)
    }
}

/// A domain aggregate taking several of its commands in one `execute` (decided in turn on the
/// state the previous one left): an etal order reserves and confirms a stock, and an annual
/// sales, in one write; the peer does the same in one `execute` per stream.
#[derive(Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Several<A>(pub A);

impl<A> Aggregate for Several<A>
where
    A: Decide,
    A::Command: Send,
    A::Error: Send,
{
    const TYPE: &'static str = A::TYPE;
    type Command = Vec<A::Command>;
    type Event = A::Event;
    type Error = A::Error;
    type Services = ();

    async fn handle(
        &mut self,
        commands: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for command in commands {
            for event in self.0.decide_one(command)? {
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.0.apply(event);
    }
}

/// The order numbers the sale hands out: `execute` returns nothing, so the number an order
/// needs comes out through a query, the cqrs-es way (in memory: the cheapest query there is).
#[derive(Clone, Default)]
struct Numbers(Arc<Mutex<HashMap<OrderId, String>>>);

#[async_trait]
impl Query<Sale> for Numbers {
    async fn dispatch(&self, _aggregate_id: &str, events: &[EventEnvelope<Sale>]) {
        let mut numbers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            if let SaleEvent::OrderAttached { order, number, .. } = &e.payload {
                numbers.insert(*order, number.clone());
            }
        }
    }
}

impl Numbers {
    fn take(&self, order: OrderId) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&order)
    }
}

/// What an order on a sale needs that no order changes (looked up once, before the runs: the
/// peer never reads catalogs or accounts while ordering, as etal does for each order).
struct PeerSale {
    id: SaleId,
    market: MarketId,
    payment_mode: PaymentMode,
    amap: bool,
    year: i32,
    cap: Option<Money>,
    /// Per catalog, its lines as ordered (1 unit; `line` set per order).
    catalogs: Vec<(CatalogId, Vec<LineInput>)>,
}

/// The peer: four `CqrsFramework`s (stock, annual sales, sale, order) on one pool.
pub struct Peer {
    pool: PgPool,
    stocks: PostgresCqrs<Several<Stock>>,
    annual: PostgresCqrs<Several<AnnualSales>>,
    sales: PostgresCqrs<Sale>,
    orders: PostgresCqrs<Order>,
    numbers: Numbers,
    facts: Vec<PeerSale>,
    now: DateTime<Utc>,
    executes: AtomicU64,
    conflicts: AtomicU64,
}

/// One run of the peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerRun {
    pub orders_per_second: f64,
    pub executes_per_second: f64,
    /// `execute` calls that conflicted and were retried.
    pub conflicts: u64,
    /// Orders given up (a refusal, an error, or conflicts past [`MAX_ATTEMPTS`]).
    pub failed: u64,
}

impl Peer {
    /// Creates postgres-es's tables in the schema `peer` of the fixture's database and copies the
    /// fixture's sale, stock and annual sales streams there. Call it before any order.
    pub async fn setup(fx: &Fixture) -> anyhow::Result<Peer> {
        let main = &fx.world.db.pool;
        sqlx::raw_sql(SCHEMA).execute(main).await?;
        // The metadata as the string map postgres-es reads (ours holds nested JSON and nulls).
        sqlx::query(
            "INSERT INTO peer.events
             SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version,
                    e.payload::json,
                    (SELECT coalesce(json_object_agg(key, value #>> '{}'), '{}'::json)
                     FROM jsonb_each(e.metadata) WHERE jsonb_typeof(value) <> 'null')
             FROM public.events e
             WHERE e.aggregate_type IN ('sale', 'stock', 'annual_sales')",
        )
        .execute(main)
        .await?;
        let plans = crate::world::plans();
        let mut facts = Vec::new();
        for (sale_id, catalogs) in &fx.sales {
            let (sale, _) = fx.world.app.load::<Sale>(*sale_id).await?;
            let starts = sale.starts_at().unwrap_or_else(|| fx.world.now());
            let mut lines = Vec::new();
            for (catalog_id, products) in catalogs {
                let (catalog, _) = fx.world.app.load::<Catalog>(*catalog_id).await?;
                let producer = catalog
                    .producer()
                    .ok_or_else(|| anyhow::anyhow!("catalog {catalog_id} has no producer"))?;
                let mut templates = Vec::new();
                for product in products {
                    let t = catalog.terms_for_sale(*sale_id, *product).ok_or_else(|| {
                        anyhow::anyhow!("product {product} not offered in {catalog_id}")
                    })?;
                    templates.push(LineInput {
                        line: 0,
                        producer,
                        catalog: *catalog_id,
                        product: *product,
                        name: t.name,
                        unit: t.unit,
                        unit_price_incl_vat: t.price_incl_vat,
                        producer_unit_price_incl_vat: None,
                        vat: t.vat,
                        variable_weight: t.variable_weight,
                        estimated_weight_kg: t.estimated_weight_kg,
                        packaging_multiple: t.packaging_multiple,
                        quantity: 1,
                    });
                }
                lines.push((*catalog_id, templates));
            }
            facts.push(PeerSale {
                id: *sale_id,
                market: sale.market(),
                payment_mode: sale.payment_mode(),
                amap: sale.amap(),
                year: sales_year(starts),
                // The fixture's producers are on the Pro plan.
                cap: plans
                    .plan_terms(PlanKind::Pro, starts.date_naive())
                    .and_then(|t| t.annual_cap_non_amap),
                catalogs: lines,
            });
        }
        let options = fx
            .world
            .db
            .url
            .parse::<PgConnectOptions>()?
            .options([("search_path", "peer")]);
        let pool = PgPoolOptions::new()
            .max_connections(40)
            .connect_with(options)
            .await?;
        let numbers = Numbers::default();
        Ok(Peer {
            stocks: postgres_cqrs(pool.clone(), vec![], ()),
            annual: postgres_cqrs(pool.clone(), vec![], ()),
            sales: postgres_cqrs(pool.clone(), vec![Box::new(numbers.clone())], ()),
            orders: postgres_cqrs(pool.clone(), vec![], ()),
            pool,
            numbers,
            facts,
            now: fx.world.now(),
            executes: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        })
    }

    /// One `execute`, retried on conflicts.
    async fn execute<A>(
        &self,
        cqrs: &PostgresCqrs<A>,
        id: &str,
        command: impl Fn() -> A::Command,
    ) -> Result<(), String>
    where
        A: Aggregate,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            self.executes.fetch_add(1, Ordering::Relaxed);
            match cqrs.execute(id, command()).await {
                Ok(()) => return Ok(()),
                Err(AggregateError::AggregateConflict) => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    etal_store::bus::backoff(attempt).await;
                }
                Err(e) => return Err(format!("{} {id}: {e}", A::TYPE)),
            }
        }
        Err(format!("{} {id}: conflicts", A::TYPE))
    }

    /// One order by a new customer on a random sale, 3 to 5 lines of 1 unit (as
    /// [`Fixture::random_order`]): its stocks, annual sales, sale and order, then its payment
    /// on an online market.
    pub async fn place_order(&self, rng: &mut StdRng) -> Result<(), String> {
        let sale = self.facts.choose(rng).expect("sales");
        let products: usize = sale.catalogs.iter().map(|(_, l)| l.len()).sum();
        let n = rng.gen_range(3..=5).min(products);
        let mut lines: Vec<LineInput> = Vec::new();
        while lines.len() < n {
            let (_, templates) = sale.catalogs.choose(rng).expect("catalogs");
            let t = templates.choose(rng).expect("products");
            if lines.iter().any(|l| l.product == t.product) {
                continue;
            }
            let mut line = t.clone();
            line.line = lines.len() as u32;
            lines.push(line);
        }
        let order = OrderId::new();
        let customer = UserId::new();
        let actor = Actor::new(customer, Role::Customer);
        let now = self.now;
        let priced = Order::price_lines(lines.clone()).map_err(|e| e.to_string())?;

        for l in &lines {
            self.execute(&self.stocks, &l.product.to_string(), || {
                vec![
                    StockCommand::Reserve {
                        product: l.product,
                        reservation: order,
                        sale: sale.id,
                        quantity: l.quantity,
                        expires_at: now,
                    },
                    StockCommand::Confirm { reservation: order },
                ]
            })
            .await?;
        }
        let mut by_producer: BTreeMap<_, Money> = BTreeMap::new();
        for l in &priced {
            *by_producer.entry(l.producer).or_default() += l.amount_incl_vat;
        }
        for (producer, amount) in by_producer {
            self.execute(&self.annual, &annual_sales_id(producer, sale.year), || {
                vec![
                    AnnualSalesCommand::Reserve {
                        order,
                        amount,
                        amap: sale.amap,
                        cap: sale.cap,
                        at: now,
                    },
                    AnnualSalesCommand::Confirm { order },
                ]
            })
            .await?;
        }
        let catalogs: Vec<CatalogId> = lines
            .iter()
            .map(|l| l.catalog)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.execute(&self.sales, &sale.id.to_string(), || {
            SaleCommand::AttachOrder {
                order,
                customer,
                catalogs: catalogs.clone(),
                at: now,
            }
        })
        .await?;
        let number = self
            .numbers
            .take(order)
            .ok_or_else(|| format!("no number for order {order}"))?;
        let order_id = order.to_string();
        self.execute(&self.orders, &order_id, || OrderCommand::PlaceOrder {
            order,
            sale: sale.id,
            market: sale.market,
            customer,
            number: number.clone(),
            lines: lines.clone(),
            payment_mode: sale.payment_mode,
            delivery: Delivery::PickUp,
            at: now,
            actor,
        })
        .await?;
        let total: Money = priced.iter().map(|l| l.amount_incl_vat).sum();
        if sale.payment_mode == PaymentMode::Online && !total.is_zero() {
            let payment = PaymentId::new();
            self.execute(&self.orders, &order_id, || OrderCommand::RecordPayment {
                payment,
                method: PaymentMethod::Online {
                    provider_ref: format!("peer-{order}"),
                },
                amount: total,
                actor,
                market_access: None,
                at: now,
            })
            .await?;
        }
        Ok(())
    }

    /// `clients` concurrent clients placing orders for `secs`.
    pub async fn run(self: &Arc<Self>, clients: usize, secs: f64, seed: u64) -> PeerRun {
        let placed = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let executes = self.executes.load(Ordering::Relaxed);
        let conflicts = self.conflicts.load(Ordering::Relaxed);
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (peer, placed, failed) = (self.clone(), placed.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ (c as u64 * 15_485_863));
                while Instant::now() < deadline {
                    match peer.place_order(&mut rng).await {
                        Ok(()) => placed.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::warn!(error = %e, "peer order failed");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        PeerRun {
            orders_per_second: placed.load(Ordering::Relaxed) as f64 / elapsed,
            executes_per_second: (self.executes.load(Ordering::Relaxed) - executes) as f64
                / elapsed,
            conflicts: self.conflicts.load(Ordering::Relaxed) - conflicts,
            failed: failed.load(Ordering::Relaxed),
        }
    }

    /// Events in the peer's `events` table.
    pub async fn events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap_or(0)
    }

    /// Closes the peer's pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
