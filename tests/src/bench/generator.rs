//! A deterministic national network: producers, products, catalogs, markets, a year of weekly
//! sales with participations, order periods, orders (stock reservations, annual sales, payment),
//! distribution ends and validations. At scale 1: 1,000 producers, 1,200 markets, 50 weeks,
//! about 200,000 orders and over 1,000,000 order lines (about 6 M EUR), Cagette's size.
//!
//! Every command is decided by the real aggregates (see [`super::memstore`]); the flows mirror
//! `api/src/app` (same commands, same order, same facts), without the database round trips.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use etal_app::derived_id;
use etal_domain::account::{AccountCommand, ProducerAccount, ProductDetails};
use etal_domain::annual::{annual_sales_id, sales_year, AnnualSales, AnnualSalesCommand};
use etal_domain::catalog::{Catalog, CatalogCommand, OfferProduct};
use etal_domain::config::{Config, PlanKind};
use etal_domain::ids::{
    CatalogId, MarketId, OrderId, PaymentId, ProducerId, ProductId, SaleId, UserId,
};
use etal_domain::market::{Market, MarketCommand, MarketEvent, PaymentMode, Slot, Visibility};
use etal_domain::order::{Delivery, LineInput, Order, OrderCommand, PaymentMethod};
use etal_domain::sale::{Sale, SaleCommand};
use etal_domain::stock::{Stock, StockCommand};
use etal_domain::{Actor, Money, Role, VatRate};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;

use super::memstore::{Streams, Writer};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub producers: usize,
    pub markets: usize,
    pub weeks: i64,
    pub orders: usize,
    pub seed: u64,
}

impl Shape {
    /// Cagette's size times `scale`.
    pub fn at_scale(scale: f64, seed: u64) -> Shape {
        let n = |x: f64| ((x * scale).round() as usize).max(2);
        Shape {
            producers: n(1_000.0),
            markets: n(1_200.0),
            weeks: 50,
            orders: n(200_000.0),
            seed,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub events: u64,
    pub producers: usize,
    pub products: usize,
    pub catalogs: usize,
    pub markets: usize,
    pub sales: usize,
    pub orders: u64,
    pub lines: u64,
    pub turnover: Money,
    pub refused: u64,
    pub seconds: f64,
}

struct ProducerInfo {
    actor: Actor,
    id: ProducerId,
    catalogs: Vec<CatalogId>,
}

struct MarketInfo {
    id: MarketId,
    admin: Actor,
    customers: Vec<UserId>,
    catalogs: Vec<(CatalogId, usize)>,
}

struct PlannedSale {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    sale: SaleId,
    market: usize,
}

#[derive(Default)]
struct World {
    accounts: Streams<ProducerAccount>,
    catalogs: Streams<Catalog>,
    markets: Streams<Market>,
    sales: Streams<Sale>,
    stocks: Streams<Stock>,
    annual: Streams<AnnualSales>,
    orders: Streams<Order>,
}

fn uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

const NAMES: &[&str] = &[
    "Miel de lavande 500 g",
    "Oeufs x6",
    "Pain de campagne",
    "Tomme de brebis",
    "Pommes Reinette 1 kg",
    "Carottes 1 kg",
    "Jus de pomme 1 l",
    "Confiture de fraises",
    "Yaourt nature x4",
    "Saucisson sec",
    "Salade batavia",
    "Poulet fermier",
    "Lentilles vertes 500 g",
    "Farine T80 1 kg",
];

/// Generates the network into the database of `pool`. `progress` gets (events written so far,
/// orders placed so far) now and then.
pub async fn generate(
    pool: &PgPool,
    shape: Shape,
    config: &Config,
    on_events: impl Fn(u64) + Send + 'static,
    on_orders: &dyn Fn(u64),
) -> anyhow::Result<Generated> {
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(shape.seed);
    let mut w = Writer::new(pool.clone(), on_events);
    let mut s = World::default();
    let mut out = Generated::default();
    let first_day = NaiveDate::from_ymd_opt(2025, 1, 6).expect("a date");
    let t0 = Utc.with_ymd_and_hms(2024, 12, 1, 9, 0, 0).unwrap();
    let system = Actor::system();
    let charter = config
        .current_charter(first_day)
        .map(|c| c.version.clone())
        .unwrap_or_else(|| "v1".into());

    // Producers, products, stock, catalogs.
    let mut producers = Vec::with_capacity(shape.producers);
    for i in 0..shape.producers {
        let actor = Actor::new(UserId(uuid(&mut rng)), Role::Producer);
        let id = ProducerId(uuid(&mut rng));
        // Pro: no cap (Member needs a training first, Discovery is capped at 1,000 EUR a year).
        let plan = PlanKind::Pro;
        let terms = config
            .plan_terms(plan, first_day)
            .or_else(|| config.plan_terms(PlanKind::Pro, first_day))
            .ok_or_else(|| anyhow::anyhow!("no plan terms in force on {first_day}"))?
            .clone();
        let at = t0 + Duration::minutes(i as i64);
        s.accounts
            .exec(
                &mut w,
                &id.to_string(),
                AccountCommand::OpenAccount {
                    producer: id,
                    owner: actor.user,
                    actor,
                    accepted_charter: charter.clone(),
                    current_charter: charter.clone(),
                    plan,
                    terms,
                    at,
                },
                actor,
                at,
            )
            .await
            .map_err(|e| anyhow::anyhow!("open account: {e}"))?;
        let access = s
            .accounts
            .get(&id.to_string())
            .expect("opened")
            .access(actor)?;
        let n_products = rng.gen_range(8..=12);
        let mut products = Vec::new();
        for _ in 0..n_products {
            let product = ProductId(uuid(&mut rng));
            let cents: i64 = rng.gen_range(150..=800);
            let details = ProductDetails {
                name: NAMES.choose(&mut rng).expect("names").to_string(),
                unit: "piece".into(),
                price_incl_vat: Money::from_cents(cents),
                vat: if rng.gen_bool(0.9) {
                    VatRate::Reduced5_5
                } else {
                    VatRate::Standard20
                },
                variable_weight: false,
                estimated_weight_kg: None,
                packaging_multiple: None,
            };
            s.accounts
                .exec(
                    &mut w,
                    &id.to_string(),
                    AccountCommand::AddProduct {
                        access,
                        product,
                        details,
                    },
                    actor,
                    at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("add product: {e}"))?;
            if rng.gen_bool(0.3) {
                s.stocks
                    .exec(
                        &mut w,
                        &product.to_string(),
                        StockCommand::SetStock {
                            product,
                            access,
                            real: Some(1_000_000),
                        },
                        actor,
                        at,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("set stock: {e}"))?;
            }
            products.push(product);
            out.products += 1;
        }
        let mut catalogs = Vec::new();
        for (c, name) in ["Tous les produits", "Sélection"].iter().enumerate() {
            let catalog = CatalogId(uuid(&mut rng));
            s.catalogs
                .exec(
                    &mut w,
                    &catalog.to_string(),
                    CatalogCommand::CreateCatalog {
                        catalog,
                        name: name.to_string(),
                        access,
                    },
                    actor,
                    at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("create catalog: {e}"))?;
            let account = s.accounts.get(&id.to_string()).expect("opened");
            let offered: Vec<(OfferProduct, Money)> = products
                .iter()
                .enumerate()
                .filter(|(k, _)| c == 0 || k % 2 == 0)
                .filter_map(|(_, p)| {
                    account
                        .product(*p)
                        .map(|p| (OfferProduct::from(p), p.details.price_incl_vat))
                })
                .collect();
            for (product, price) in offered {
                s.catalogs
                    .exec(
                        &mut w,
                        &catalog.to_string(),
                        CatalogCommand::AddOffer {
                            product,
                            price_incl_vat: price,
                            access,
                        },
                        actor,
                        at,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("add offer: {e}"))?;
            }
            catalogs.push(catalog);
            out.catalogs += 1;
        }
        producers.push(ProducerInfo {
            actor,
            id,
            catalogs,
        });
        w.maybe_flush().await?;
    }
    out.producers = producers.len();

    // Markets, linked catalogs, sales, participations.
    let last_day = first_day + Duration::days(shape.weeks * 7 - 1);
    let mut markets = Vec::with_capacity(shape.markets);
    let mut planned = Vec::new();
    let weekdays = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
    ];
    for i in 0..shape.markets {
        let admin = Actor::new(UserId(uuid(&mut rng)), Role::MarketAdmin);
        let id = MarketId(uuid(&mut rng));
        let weekday = *weekdays.choose(&mut rng).expect("weekdays");
        let shift = (i64::from(weekday.num_days_from_monday())
            - i64::from(first_day.weekday().num_days_from_monday()))
        .rem_euclid(7);
        let start_hour = rng.gen_range(16..=18);
        let slot = Slot {
            weekday,
            start: NaiveTime::from_hms_opt(start_hour, 30, 0).expect("time"),
            end: NaiveTime::from_hms_opt(start_hour + 1, 30, 0).expect("time"),
            every_weeks: if rng.gen_bool(0.7) { 1 } else { 2 },
            anchor: first_day + Duration::days(shift),
        };
        let payment_mode = if rng.gen_bool(0.6) {
            PaymentMode::Online
        } else {
            PaymentMode::OnSite
        };
        let amap = rng.gen_bool(0.1);
        let at = t0 + Duration::days(1) + Duration::minutes(i as i64);
        s.markets
            .exec(
                &mut w,
                &id.to_string(),
                MarketCommand::CreateMarket {
                    market: id,
                    name: format!("Marché {i}"),
                    place: format!("Salle des fêtes {i}"),
                    slots: vec![slot],
                    administrators: vec![admin.user],
                    payment_mode,
                    visibility: Visibility::Public,
                    amap,
                    actor: admin,
                },
                admin,
                at,
            )
            .await
            .map_err(|e| anyhow::anyhow!("create market: {e}"))?;
        let n_links = rng.gen_range(3..=5).min(producers.len());
        let mut chosen = BTreeSet::new();
        while chosen.len() < n_links {
            chosen.insert(rng.gen_range(0..producers.len()));
        }
        let mut catalogs = Vec::new();
        for p in chosen {
            let catalog = *producers[p].catalogs.choose(&mut rng).expect("catalogs");
            let access = s
                .markets
                .get(&id.to_string())
                .expect("market")
                .access(admin);
            s.markets
                .exec(
                    &mut w,
                    &id.to_string(),
                    MarketCommand::LinkCatalog {
                        catalog,
                        producer: producers[p].id,
                        access,
                    },
                    admin,
                    at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("link catalog: {e}"))?;
            catalogs.push((catalog, p));
        }
        let customers = (0..rng.gen_range(40..=140))
            .map(|_| UserId(uuid(&mut rng)))
            .collect();
        let dates = s
            .markets
            .get(&id.to_string())
            .expect("market")
            .sale_dates(first_day, last_day);
        for occ in dates {
            let sale = SaleId(derived_id(&format!(
                "sale:{id}:{}",
                occ.starts_at.to_rfc3339()
            )));
            let events = s
                .markets
                .exec(
                    &mut w,
                    &id.to_string(),
                    MarketCommand::RegisterSale {
                        sale,
                        date: occ.date,
                    },
                    system,
                    at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("register sale: {e}"))?;
            let number = events
                .iter()
                .find_map(|e| match e {
                    MarketEvent::SaleRegistered { number, .. } => Some(*number),
                    _ => None,
                })
                .ok_or_else(|| anyhow::anyhow!("sale not numbered"))?;
            s.sales
                .exec(
                    &mut w,
                    &sale.to_string(),
                    SaleCommand::PlanSale {
                        sale,
                        market: id,
                        number,
                        date: occ.date,
                        starts_at: occ.starts_at,
                        ends_at: occ.ends_at,
                        amap,
                        payment_mode,
                    },
                    system,
                    at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("plan sale: {e}"))?;
            for (catalog, p) in &catalogs {
                let producer = &producers[*p];
                let access = s
                    .accounts
                    .get(&producer.id.to_string())
                    .expect("account")
                    .access(producer.actor)?;
                s.sales
                    .exec(
                        &mut w,
                        &sale.to_string(),
                        SaleCommand::Participate {
                            access,
                            catalog: *catalog,
                            catalog_linked: true,
                            opens_at: occ.starts_at - Duration::days(7),
                            closes_at: occ.starts_at - Duration::hours(24),
                        },
                        producer.actor,
                        at,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("participate: {e}"))?;
            }
            planned.push(PlannedSale {
                starts_at: occ.starts_at,
                ends_at: occ.ends_at,
                sale,
                market: i,
            });
        }
        markets.push(MarketInfo {
            id,
            admin,
            customers,
            catalogs,
        });
        w.maybe_flush().await?;
    }
    out.markets = markets.len();
    out.sales = planned.len();
    planned.sort_by_key(|p| (p.starts_at, p.sale));

    // The year, sale by sale in date order: open, orders, close, distribution, validation.
    let mean = shape.orders as f64 / planned.len().max(1) as f64;
    for (k, p) in planned.iter().enumerate() {
        let market = &markets[p.market];
        let sale_id = p.sale.to_string();
        let opens_at = p.starts_at - Duration::days(7);
        let closes_at = p.starts_at - Duration::hours(24);
        for (catalog, _) in &market.catalogs {
            s.catalogs
                .exec(
                    &mut w,
                    &catalog.to_string(),
                    CatalogCommand::FreezePricesForSale {
                        sale: p.sale,
                        at: opens_at,
                    },
                    system,
                    opens_at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("freeze: {e}"))?;
            s.sales
                .exec(
                    &mut w,
                    &sale_id,
                    SaleCommand::OpenOrderPeriod {
                        catalog: *catalog,
                        at: opens_at,
                    },
                    system,
                    opens_at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("open period: {e}"))?;
        }
        // Orders: as many as the plan needs on average, spread around the mean.
        let want = (shape.orders as f64 * (k + 1) as f64 / planned.len() as f64).round() as u64;
        let n = want.saturating_sub(out.orders) as usize;
        let n = if mean > 2.0 {
            rng.gen_range(n / 2..=n + n / 2)
        } else {
            n
        };
        let mut customers = market.customers.clone();
        customers.shuffle(&mut rng);
        let mut products_ordered = BTreeSet::new();
        for customer in customers.into_iter().cycle().take(n) {
            let at = opens_at
                + Duration::seconds(rng.gen_range(0..(closes_at - opens_at).num_seconds()));
            match place_order(
                &mut s, &mut w, &mut rng, config, &producers, market, p.sale, customer, at,
            )
            .await?
            {
                Some((lines, total, products)) => {
                    out.orders += 1;
                    out.lines += lines;
                    out.turnover += total;
                    products_ordered.extend(products);
                }
                None => out.refused += 1,
            }
            w.maybe_flush().await?;
        }
        for (catalog, _) in &market.catalogs {
            s.sales
                .exec(
                    &mut w,
                    &sale_id,
                    SaleCommand::CloseOrderPeriod {
                        catalog: *catalog,
                        at: closes_at,
                    },
                    system,
                    closes_at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("close period: {e}"))?;
        }
        let end = p.ends_at + Duration::hours(2);
        s.sales
            .exec(
                &mut w,
                &sale_id,
                SaleCommand::EndDistribution { at: end },
                system,
                end,
            )
            .await
            .map_err(|e| anyhow::anyhow!("end distribution: {e}"))?;
        for product in products_ordered {
            s.stocks
                .exec(
                    &mut w,
                    &product.to_string(),
                    StockCommand::Deliver {
                        sale: p.sale,
                        at: end,
                    },
                    system,
                    end,
                )
                .await
                .map_err(|e| anyhow::anyhow!("deliver: {e}"))?;
        }
        let validated = p.ends_at + Duration::hours(20);
        let access = s
            .markets
            .get(&market.id.to_string())
            .expect("market")
            .access(market.admin);
        s.sales
            .exec(
                &mut w,
                &sale_id,
                SaleCommand::Validate {
                    access,
                    at: validated,
                },
                market.admin,
                validated,
            )
            .await
            .map_err(|e| anyhow::anyhow!("validate: {e}"))?;
        for (catalog, _) in &market.catalogs {
            s.catalogs
                .exec(
                    &mut w,
                    &catalog.to_string(),
                    CatalogCommand::ForgetSale { sale: p.sale },
                    system,
                    validated,
                )
                .await
                .map_err(|e| anyhow::anyhow!("forget sale: {e}"))?;
        }
        // A finished sale and its orders are never needed again.
        s.sales.remove(&sale_id);
        on_orders(out.orders);
        w.maybe_flush().await?;
    }
    out.events = w.finish().await?;
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// The order flow of `App::place_order`, in memory: reserve each line's stock, each producer's
/// annual sales, attach to the sale (which numbers the order), place the order, confirm, pay.
/// Returns (lines, total, products) or None when the domain refused it.
#[allow(clippy::too_many_arguments)]
async fn place_order(
    s: &mut World,
    w: &mut Writer,
    rng: &mut StdRng,
    config: &Config,
    producers: &[ProducerInfo],
    market: &MarketInfo,
    sale_id: SaleId,
    customer: UserId,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<(u64, Money, Vec<ProductId>)>> {
    let actor = Actor::new(customer, Role::Customer);
    let system = Actor::system();
    let order_id = OrderId(uuid(rng));
    let sale = s
        .sales
        .get(&sale_id.to_string())
        .ok_or_else(|| anyhow::anyhow!("sale state"))?
        .clone();
    let n_lines = rng.gen_range(3..=8);
    let mut inputs: Vec<LineInput> = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..n_lines * 2 {
        if inputs.len() == n_lines {
            break;
        }
        let (catalog_id, p) = *market.catalogs.choose(rng).expect("catalogs");
        let catalog = s
            .catalogs
            .get(&catalog_id.to_string())
            .ok_or_else(|| anyhow::anyhow!("catalog state"))?;
        let offers: Vec<ProductId> = catalog.offers().map(|o| o.product.product).collect();
        let Some(product) = offers.choose(rng).copied() else {
            continue;
        };
        if !seen.insert(product) {
            continue;
        }
        let Some(terms) = catalog.terms_for_sale(sale_id, product) else {
            continue;
        };
        if !sale.period_open(catalog_id, at) {
            continue;
        }
        inputs.push(LineInput {
            line: inputs.len() as u32,
            producer: producers[p].id,
            catalog: catalog_id,
            product,
            name: terms.name.clone(),
            unit: terms.unit.clone(),
            unit_price_incl_vat: terms.price_incl_vat,
            producer_unit_price_incl_vat: None,
            vat: terms.vat,
            variable_weight: terms.variable_weight,
            estimated_weight_kg: terms.estimated_weight_kg,
            packaging_multiple: terms.packaging_multiple,
            quantity: if rng.gen_bool(0.7) { 1 } else { 2 },
        });
    }
    if inputs.is_empty() {
        return Ok(None);
    }
    let priced = match Order::price_lines(inputs.clone()) {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    let expires_at = at + Duration::minutes(15);
    for l in &priced {
        if s.stocks
            .exec(
                w,
                &l.product.to_string(),
                StockCommand::Reserve {
                    product: l.product,
                    reservation: order_id,
                    sale: sale_id,
                    quantity: l.quantity,
                    expires_at,
                },
                actor,
                at,
            )
            .await
            .is_err()
        {
            return Ok(None);
        }
    }
    let mut by_producer: BTreeMap<ProducerId, Money> = BTreeMap::new();
    for l in &priced {
        *by_producer.entry(l.producer).or_default() += l.amount_incl_vat;
    }
    let year = sales_year(sale.starts_at().unwrap_or(at));
    let sale_date = sale.date().unwrap_or_else(|| at.date_naive());
    for (producer, amount) in &by_producer {
        let plan = s
            .accounts
            .get(&producer.to_string())
            .map(|a| a.plan())
            .unwrap_or_default();
        let cap = config
            .plan_terms(plan, sale_date)
            .and_then(|t| t.annual_cap_non_amap);
        s.annual
            .exec(
                w,
                &annual_sales_id(*producer, year),
                AnnualSalesCommand::Reserve {
                    order: order_id,
                    amount: *amount,
                    amap: sale.amap(),
                    cap,
                    at,
                },
                actor,
                at,
            )
            .await
            .map_err(|e| anyhow::anyhow!("annual sales: {e}"))?;
    }
    let catalogs: Vec<CatalogId> = priced
        .iter()
        .map(|l| l.catalog)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    s.sales
        .exec(
            w,
            &sale_id.to_string(),
            SaleCommand::AttachOrder {
                order: order_id,
                customer,
                catalogs,
                at,
            },
            actor,
            at,
        )
        .await
        .map_err(|e| anyhow::anyhow!("attach order: {e}"))?;
    let number = s
        .sales
        .get(&sale_id.to_string())
        .and_then(|sale| sale.order_number(order_id))
        .ok_or_else(|| anyhow::anyhow!("order not numbered"))?
        .to_string();
    let oid = order_id.to_string();
    s.orders
        .exec(
            w,
            &oid,
            OrderCommand::PlaceOrder {
                order: order_id,
                sale: sale_id,
                market: market.id,
                customer,
                number,
                lines: inputs,
                payment_mode: sale.payment_mode(),
                delivery: Delivery::PickUp,
                at,
                actor,
            },
            actor,
            at,
        )
        .await
        .map_err(|e| anyhow::anyhow!("place order: {e}"))?;
    for l in &priced {
        s.stocks
            .exec(
                w,
                &l.product.to_string(),
                StockCommand::Confirm {
                    reservation: order_id,
                },
                actor,
                at,
            )
            .await
            .map_err(|e| anyhow::anyhow!("confirm: {e}"))?;
    }
    for producer in by_producer.keys() {
        s.annual
            .exec(
                w,
                &annual_sales_id(*producer, year),
                AnnualSalesCommand::Confirm { order: order_id },
                system,
                at,
            )
            .await
            .map_err(|e| anyhow::anyhow!("confirm annual: {e}"))?;
    }
    let total = s.orders.get(&oid).map(|o| o.total()).unwrap_or_default();
    if sale.payment_mode() == PaymentMode::Online && !total.is_zero() {
        s.orders
            .exec(
                w,
                &oid,
                OrderCommand::RecordPayment {
                    payment: PaymentId(derived_id(&format!("payment:{order_id}:online"))),
                    method: PaymentMethod::Online {
                        provider_ref: format!("sim-{order_id}"),
                    },
                    amount: total,
                    actor,
                    market_access: None,
                    at,
                },
                actor,
                at,
            )
            .await
            .map_err(|e| anyhow::anyhow!("record payment: {e}"))?;
    }
    s.orders.remove(&oid);
    let products = priced.iter().map(|l| l.product).collect();
    Ok(Some((priced.len() as u64, total, products)))
}
