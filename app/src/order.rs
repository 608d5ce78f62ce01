//! Orders: placing, adjustments, weighing, payments, refunds, cancellation (R-ORD, R-STK-3,
//! R-ACC-4). Each flow loads every stream it decides on, decides in memory with the domain's
//! pure functions and commits once ([`App::run_flow`]); online charges and refunds are outbox
//! messages committed with the change that makes them owed ([`super::outbox`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};

use etal_domain::account::ProducerAccount;
use etal_domain::annual::{annual_sales_id, sales_year, AnnualSales, AnnualSalesCommand};
use etal_domain::catalog::{Catalog, CatalogCommand};
use etal_domain::ids::{
    CatalogId, MarketId, OrderId, PaymentId, ProducerId, ProductId, SaleId, UserId,
};
use etal_domain::market::{Market, PaymentMode};
use etal_domain::order::{
    Canceller, Deliverer, Delivery, Line, LineInput, Order, OrderCommand, PaymentMethod,
};
use etal_domain::sale::{PeriodState, Sale, SaleCommand};
use etal_domain::stock::{Stock, StockCommand};
use etal_domain::{Money, Role};
use etal_store::{Changes, Stream, StreamRef};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::flow::{turn_key, Decided};
use super::outbox::rejected;
use super::{fingerprint, App, AppError, Ctx, Done, LineRefusal};

/// One line as a customer asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRequest {
    pub catalog: CatalogId,
    pub product: ProductId,
    pub quantity: i64,
}

/// Pick-up (the default) or home delivery to an address the customer registered (R-ORD-6):
/// by the producer whose catalog the order's lines are of, at the fee that catalog sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryRequest {
    PickUp,
    Home { address_ref: Uuid },
}

/// R-ORD-7: refused below a minimum, naming it and what is missing.
fn minimum_reached(whose: &str, minimum: Money, amount: Money) -> Result<(), AppError> {
    if amount >= minimum {
        return Ok(());
    }
    Err(AppError::MinimumNotReached {
        message: format!(
            "{whose} minimum order is {minimum} EUR: {} EUR missing",
            minimum - amount
        ),
        minimum,
        missing: minimum - amount,
    })
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub order: OrderId,
    pub number: String,
    pub total: Money,
}

/// The lines of an order, priced once with the terms frozen for the sale (R-CAT-3).
struct Priced {
    inputs: Vec<LineInput>,
    lines: Vec<Line>,
}

/// What an order reads and never writes: the catalogs of its lines, their producers'
/// accounts (plan, archived products), the sale's calendar year (R-ACC-4).
pub(crate) struct OrderFacts {
    catalogs: BTreeMap<CatalogId, Catalog>,
    accounts: BTreeMap<ProducerId, ProducerAccount>,
    year: i32,
}

/// What an order's turns are taken on before it decides, and never changes: the producer of
/// each catalog of its lines and the sale's calendar year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderHint {
    producers: BTreeMap<CatalogId, ProducerId>,
    year: i32,
    /// The sale's market (its fee schedule prices offers that add fees, R-CAT-2).
    market: MarketId,
}

impl OrderHint {
    fn producers(&self) -> BTreeSet<ProducerId> {
        self.producers.values().copied().collect()
    }
}

/// Order hints known to this process, and reads of them in flight (see [`App::order_hint`]).
#[derive(Default)]
pub(crate) struct OrderHints {
    known: std::sync::Mutex<BTreeMap<String, Arc<OrderHint>>>,
    reads: std::sync::Mutex<BTreeMap<String, HintRead>>,
}

/// How many order hints a process keeps (past it, they are read again).
const HINTS_KEPT: usize = 10_000;

/// One read of an order hint, shared by whoever awaits it (`None`: it failed).
type HintRead = Shared<BoxFuture<'static, Option<Arc<OrderHint>>>>;

/// Streams an order decided on, kept for the next order of the sale.
enum Kept {
    Stock(Stream<Stock>),
    Annual(Stream<AnnualSales>),
}

fn refusal(
    line: u32,
    name: &str,
    code: &'static str,
    message: impl std::fmt::Display,
) -> LineRefusal {
    LineRefusal {
        line,
        product: name.to_string(),
        code,
        message: format!("{name}: {message}"),
    }
}

/// Checks what an order request must be before anything is looked up.
fn check_request(ctx: &Ctx, lines: &[LineRequest]) -> Result<(), AppError> {
    if ctx.actor.role != Role::Customer {
        return Err(AppError::Forbidden(
            "only a customer places an order".into(),
        ));
    }
    if lines.is_empty() {
        return Err(AppError::bad_input(
            "lines",
            "an order needs at least one line",
        ));
    }
    if lines.len() > 500 {
        return Err(AppError::bad_input("lines", "at most 500 lines"));
    }
    let mut seen = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        if !seen.insert(l.product) {
            return Err(AppError::bad_input(
                &format!("lines[{i}].product"),
                "a product appears on two lines",
            ));
        }
    }
    Ok(())
}

impl App {
    /// R-ORD-1..3: places a customer's order for a sale, with lines from any producers and
    /// catalogs, all or nothing, in one commit: each line's stock (R-STK-3), each producer's
    /// annual sales (the Discovery cap, R-ACC-4), the sale that numbers the order (R-ORD-2)
    /// and the order itself, plus the charge owed on an online market (an outbox message,
    /// delivered right after). A refused line refuses the order and writes nothing; the error
    /// names every refused line. A declined charge cancels the order (PAYMENT_FAILED).
    pub async fn place_order(
        &self,
        ctx: &Ctx,
        sale_id: SaleId,
        lines: &[LineRequest],
        delivery: DeliveryRequest,
    ) -> Result<Done<PlacedOrder>, AppError> {
        check_request(ctx, lines)?;
        let fp = fingerprint("placeOrder", &(sale_id, lines, delivery));
        let cc = ctx.flow("placeOrder", &fp);
        let order_id = OrderId(ctx.new_id("order"));
        // Who sells and in which year, known before deciding (they never change).
        let hint = self.order_hint(sale_id, lines).await?;
        // Every order of a sale writes the sale's stream, and orders of a busy sale the same
        // stocks and annual sales: orders of one sale take turns on them in this process.
        let mut turns = vec![turn_key::<Sale>(&sale_id.to_string())];
        turns.extend(
            lines
                .iter()
                .map(|l| turn_key::<Stock>(&l.product.to_string())),
        );
        turns.extend(
            hint.producers()
                .into_iter()
                .map(|p| turn_key::<AnnualSales>(&annual_sales_id(p, hint.year))),
        );
        let flowed = self
            .run_flow(&cc, turns, || {
                self.decide_order(ctx, order_id, sale_id, lines, delivery, &hint)
            })
            .await?;
        let delivered = self.deliver_now(&flowed.outbox, &flowed.owed).await;
        let placed = flowed.value;
        let position = flowed.position.max(delivered.position);
        // A declined charge cancelled the order: the first answer, and every retry's.
        let declined = match delivered.failed {
            Some(reason) => Some(reason),
            None if flowed.replayed && !flowed.outbox.is_empty() => {
                self.declined_charge(placed.order).await?
            }
            None => None,
        };
        if let Some(reason) = declined {
            return Err(AppError::PaymentFailed(reason));
        }
        Ok(Done::new(placed, position))
    }

    /// Why the order's charge was declined, if it was (the order is then cancelled).
    async fn declined_charge(&self, order: OrderId) -> Result<Option<String>, AppError> {
        let id = super::derived_id(&format!("outbox:charge:{order}"));
        Ok(sqlx::query_scalar(
            "SELECT result->>'declined' FROM outbox WHERE id = $1 AND status = 'failed'",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// The decision of [`App::place_order`]: loads, prices, decides every stream; writes nothing.
    async fn decide_order(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        sale_id: SaleId,
        requests: &[LineRequest],
        delivery: DeliveryRequest,
        hint: &OrderHint,
    ) -> Result<Decided<PlacedOrder>, AppError> {
        let now = self.now();
        let customer = ctx.actor.user;
        // Every stream the order decides on and every fact it reads, in one read (the states
        // kept from earlier flows read from after their versions).
        let producers = hint.producers();
        let mut refs = vec![StreamRef::of::<Sale>(sale_id.to_string())];
        refs.extend(
            requests
                .iter()
                .map(|l| StreamRef::of::<Stock>(l.product.to_string())),
        );
        refs.extend(
            producers
                .iter()
                .map(|p| StreamRef::of::<AnnualSales>(annual_sales_id(*p, hint.year))),
        );
        refs.extend(
            hint.producers
                .keys()
                .map(|c| StreamRef::of::<Catalog>(c.to_string())),
        );
        refs.extend(
            producers
                .iter()
                .map(|p| StreamRef::of::<ProducerAccount>(p.to_string())),
        );
        refs.push(StreamRef::of::<Market>(hint.market.to_string()));
        let mut loaded = self.load_turned_many(refs).await?;
        let mut sale = self
            .take_turned::<Sale>(&mut loaded, &sale_id.to_string())
            .await?;
        if !sale.exists() {
            return Err(AppError::not_found("sale", sale_id));
        }
        let market = self
            .take_turned::<Market>(&mut loaded, &hint.market.to_string())
            .await?
            .state;
        // R-SAL-7: a members-only market takes orders from its members only.
        if !market.admits(customer) {
            return Err(AppError::Rejected {
                code: "NOT_A_MEMBER",
                message: format!(
                    "market {} takes orders from its members only: ask to join it first",
                    hint.market
                ),
            });
        }
        let mut facts = OrderFacts {
            catalogs: BTreeMap::new(),
            accounts: BTreeMap::new(),
            year: hint.year,
        };
        // R-ORD-3: a period due to open and not opened yet (the scheduler has not run) opens
        // with this order, its prices frozen first (R-CAT-3), in the same commit, as the
        // scheduled opening would have done.
        let mut opened = Vec::new();
        for (id, producer) in &hint.producers {
            let mut c = self
                .take_turned::<Catalog>(&mut loaded, &id.to_string())
                .await?;
            if c.state.producer() != Some(*producer) {
                return Err(AppError::Internal(format!("catalog {id} changed producer")));
            }
            let due = sale
                .state
                .participations()
                .get(id)
                .is_some_and(|p| p.opening_due(now));
            if due {
                c.decide(|cat| {
                    cat.decide(CatalogCommand::FreezePricesForSale {
                        sale: sale_id,
                        at: now,
                    })
                })
                .map_err(rejected)?;
                sale.decide(|s| {
                    s.decide(SaleCommand::OpenOrderPeriod {
                        catalog: *id,
                        at: now,
                    })
                })
                .map_err(rejected)?;
                facts.catalogs.insert(*id, c.state.clone());
                opened.push(c);
            } else {
                facts.catalogs.insert(*id, c.state);
            }
        }
        for p in &producers {
            let a = self
                .take_turned::<ProducerAccount>(&mut loaded, &p.to_string())
                .await?;
            facts.accounts.insert(*p, a.state);
        }
        let facts = &facts;
        let priced = self.price(facts, &sale.state, &market, sale_id, customer, requests)?;
        let delivery = self
            .delivery(customer, delivery, facts, &market, &priced.lines)
            .await?;
        // The order's id is new (random, or derived from a key whose record was not found): a
        // copy of the request committed meanwhile makes this commit conflict on the order's
        // stream, and the retry answers with its record.
        let mut order = Stream::new(order_id.to_string(), Order::default(), 0);
        let mut changes = Changes::new();
        for c in &opened {
            changes.stream(c)?;
        }
        let mut kept = Vec::new();
        let mut refusals = Vec::new();

        // Stock: each line holds its units on the product's stock, which decides (R-STK-3).
        for l in &priced.lines {
            let mut stock = self
                .take_turned::<Stock>(&mut loaded, &l.product.to_string())
                .await?;
            let held = stock.decide(|s| {
                s.decide(StockCommand::Reserve {
                    product: l.product,
                    reservation: order_id,
                    sale: sale_id,
                    quantity: l.quantity,
                    expires_at: now,
                })
            });
            match held {
                Ok(_) => {
                    // Placed in the same commit: the reservation is confirmed at once and never
                    // expires.
                    stock
                        .decide(|s| {
                            s.decide(StockCommand::Confirm {
                                reservation: order_id,
                            })
                        })
                        .map_err(rejected)?;
                    changes.stream(&stock)?;
                    kept.push(Kept::Stock(stock));
                }
                Err(e) => refusals.push(refusal(l.line, &l.name, e.code(), e)),
            }
        }
        // The Discovery cap: each producer's amount on their annual sales (R-ACC-4).
        let mut by_producer: BTreeMap<ProducerId, Money> = BTreeMap::new();
        for l in &priced.lines {
            *by_producer.entry(l.producer).or_default() += l.amount_incl_vat;
        }
        let year = facts.year;
        let sale_date = sale
            .state
            .date()
            .unwrap_or_else(|| etal_domain::calendar::paris_date(now));
        for (producer, amount) in by_producer {
            let plan = facts
                .accounts
                .get(&producer)
                .map(|a| a.plan())
                .unwrap_or_default();
            let cap = self
                .config
                .plan_terms(plan, sale_date)
                .and_then(|t| t.annual_cap_non_amap);
            let mut annual = self
                .take_turned::<AnnualSales>(&mut loaded, &annual_sales_id(producer, year))
                .await?;
            let reserved = annual.decide(|a| {
                a.decide(AnnualSalesCommand::Reserve {
                    order: order_id,
                    amount,
                    amap: sale.state.amap(),
                    cap,
                    at: now,
                })
            });
            match reserved {
                Ok(_) => {
                    annual
                        .decide(|a| a.decide(AnnualSalesCommand::Confirm { order: order_id }))
                        .map_err(rejected)?;
                    changes.stream(&annual)?;
                    kept.push(Kept::Annual(annual));
                }
                Err(e) => {
                    for l in priced.lines.iter().filter(|l| l.producer == producer) {
                        refusals.push(refusal(l.line, &l.name, e.code(), &e));
                    }
                }
            }
        }
        if !refusals.is_empty() {
            refusals.sort_by_key(|r| r.line);
            return Err(AppError::OrderRefused { lines: refusals });
        }
        // The sale checks the periods again and numbers the order (R-ORD-2/3).
        let catalogs: Vec<CatalogId> = priced
            .lines
            .iter()
            .map(|l| l.catalog)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        sale.decide(|s| {
            s.decide(SaleCommand::AttachOrder {
                order: order_id,
                customer,
                catalogs,
                at: now,
            })
        })
        .map_err(rejected)?;
        let number = sale
            .state
            .order_number(order_id)
            .ok_or_else(|| AppError::Internal("the sale did not number the order".into()))?
            .to_string();
        // The order, with its frozen terms.
        order
            .decide(|o| {
                o.decide(OrderCommand::PlaceOrder {
                    order: order_id,
                    sale: sale_id,
                    market: sale.state.market(),
                    customer,
                    number: number.clone(),
                    lines: priced.inputs.clone(),
                    payment_mode: sale.state.payment_mode(),
                    delivery,
                    at: now,
                    actor: ctx.actor,
                })
            })
            .map_err(rejected)?;
        changes.stream(&sale)?;
        changes.stream(&order)?;
        let total = order.state.total();
        // Online markets charge at once: owed with the order, delivered after the commit.
        if sale.state.payment_mode() == PaymentMode::Online && !total.is_zero() {
            changes.send(Self::charge_message(order_id, total));
        }
        let mut decided = Decided::new(
            changes,
            PlacedOrder {
                order: order_id,
                number,
                total,
            },
        );
        decided.remember(&sale);
        for k in &kept {
            match k {
                Kept::Stock(s) => decided.remember(s),
                Kept::Annual(a) => decided.remember(a),
            }
        }
        Ok(decided)
    }

    /// The minimum orders (R-ORD-7: the market's for the whole order, each catalog's for its
    /// lines, a delivery's for the delivered lines) and the delivery: to an address the customer
    /// registered, by the producer of the one catalog the lines are of, at that catalog's fee
    /// (nothing above its free-delivery amount), never a fee the customer chose (R-ORD-6).
    async fn delivery(
        &self,
        customer: UserId,
        delivery: DeliveryRequest,
        facts: &OrderFacts,
        market: &etal_domain::market::Market,
        lines: &[Line],
    ) -> Result<Delivery, AppError> {
        let total: Money = lines.iter().map(|l| l.amount_incl_vat).sum();
        let mut per_catalog: BTreeMap<CatalogId, Money> = BTreeMap::new();
        for l in lines {
            *per_catalog.entry(l.catalog).or_default() += l.amount_incl_vat;
        }
        if let Some(minimum) = market.minimum_order() {
            minimum_reached("this market's", minimum, total)?;
        }
        for (catalog, amount) in &per_catalog {
            let terms = facts
                .catalogs
                .get(catalog)
                .map(|c| c.order_terms())
                .unwrap_or_default();
            if let Some(minimum) = terms.minimum_order {
                minimum_reached(&format!("catalog {catalog}'s"), minimum, *amount)?;
            }
        }
        Ok(match delivery {
            DeliveryRequest::PickUp => Delivery::PickUp,
            DeliveryRequest::Home { address_ref } => {
                let owner: Option<Uuid> = sqlx::query_scalar(
                    "SELECT user_id FROM addresses WHERE address_ref = $1 AND erased_at IS NULL",
                )
                .bind(address_ref)
                .fetch_optional(&self.pool)
                .await?;
                if owner != Some(customer.0) {
                    return Err(AppError::not_found("address", address_ref));
                }
                // The producer of the order's one catalog delivers it if they offer to (the
                // fee is theirs); else the market, if it runs deliveries (the fee is the
                // market's).
                let by_producer = match per_catalog.keys().collect::<Vec<_>>().as_slice() {
                    [catalog] => facts
                        .catalogs
                        .get(*catalog)
                        .and_then(|c| c.order_terms().delivery),
                    _ => None,
                };
                let (offer, by) =
                    match (by_producer, market.delivery()) {
                        (Some(offer), _) => (offer, Deliverer::Producer),
                        (None, Some(offer)) => (offer, Deliverer::Market),
                        (None, None) => return Err(AppError::Rejected {
                            code: "DELIVERY_NOT_OFFERED",
                            message: if per_catalog.len() > 1 {
                                "this market runs no home delivery, and a producer delivers only \
                                 their own catalog's lines: order one catalog's lines to have them \
                                 delivered, or pick the order up"
                            } else {
                                "neither this catalog nor this market offers home delivery: pick \
                                 the order up"
                            }
                            .into(),
                        }),
                    };
                if let Some(minimum) = offer.minimum {
                    minimum_reached("a delivery's", minimum, total)?;
                }
                Delivery::Home {
                    fee: offer.fee_for(total),
                    address_ref,
                    by,
                }
            }
        })
    }

    /// Who sells on an order's catalogs and the sale's year: known to the process, else read
    /// once for the orders that ask for it at the same time (a busy sale's opening: hundreds of
    /// customers, one sale, one catalog). Both never change once the sale and the catalogs
    /// exist; the decision reads the catalogs and checks them.
    async fn order_hint(
        &self,
        sale_id: SaleId,
        lines: &[LineRequest],
    ) -> Result<Arc<OrderHint>, AppError> {
        let catalogs: BTreeSet<CatalogId> = lines.iter().map(|l| l.catalog).collect();
        let key = format!("{sale_id}:{catalogs:?}");
        if let Some(h) = self
            .hints
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(h.clone());
        }
        let flight = {
            let mut map = self.hints.reads.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let app = self.clone();
                    let done_key = key.clone();
                    // The read forgets itself when done, whoever polled it to the end.
                    let f = async move {
                        let hint = app.read_hint(sale_id, &catalogs).await.ok().map(Arc::new);
                        if let Some(h) = &hint {
                            let mut known =
                                app.hints.known.lock().unwrap_or_else(|p| p.into_inner());
                            if known.len() >= HINTS_KEPT {
                                known.clear();
                            }
                            known.insert(done_key.clone(), h.clone());
                        }
                        app.hints
                            .reads
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&done_key);
                        hint
                    }
                    .boxed()
                    .shared();
                    map.insert(key, f.clone());
                    f
                }
            }
        };
        match flight.await {
            Some(h) => Ok(h),
            // The shared read failed: read alone, for this request's own answer.
            None => {
                let catalogs: BTreeSet<CatalogId> = lines.iter().map(|l| l.catalog).collect();
                Ok(Arc::new(self.read_hint(sale_id, &catalogs).await?))
            }
        }
    }

    /// Reads an [`OrderHint`]: the sale and the catalogs, in one round trip.
    async fn read_hint(
        &self,
        sale_id: SaleId,
        catalog_ids: &BTreeSet<CatalogId>,
    ) -> Result<OrderHint, AppError> {
        let mut refs = vec![StreamRef::of::<Sale>(sale_id.to_string())];
        refs.extend(
            catalog_ids
                .iter()
                .map(|c| StreamRef::of::<Catalog>(c.to_string())),
        );
        let mut loaded = self.load_turned_many(refs).await?;
        let sale = self
            .take_turned::<Sale>(&mut loaded, &sale_id.to_string())
            .await?;
        if !sale.exists() {
            return Err(AppError::not_found("sale", sale_id));
        }
        let mut producers = BTreeMap::new();
        for id in catalog_ids {
            let c = self
                .take_turned::<Catalog>(&mut loaded, &id.to_string())
                .await?;
            match c.state.producer() {
                Some(p) if c.exists() => {
                    producers.insert(*id, p);
                }
                _ => return Err(AppError::not_found("catalog", id)),
            }
        }
        Ok(OrderHint {
            producers,
            year: sales_year(sale.state.starts_at().unwrap_or_else(|| self.now())),
            market: sale.state.market(),
        })
    }

    /// Looks up the frozen terms of every line (R-CAT-3, R-ORD-8) and prices each line once; refuses
    /// (naming every refused line) what needs no stream to refuse.
    fn price(
        &self,
        facts: &OrderFacts,
        sale: &Sale,
        market: &Market,
        sale_id: SaleId,
        customer: UserId,
        lines: &[LineRequest],
    ) -> Result<Priced, AppError> {
        let now = self.now();
        let mut inputs = Vec::new();
        let mut priced = Vec::new();
        let mut refusals = Vec::new();
        for (i, req) in lines.iter().enumerate() {
            let line = i as u32;
            let catalog = &facts.catalogs[&req.catalog];
            let Some(producer) = catalog.producer() else {
                return Err(AppError::not_found("catalog", req.catalog));
            };
            // R-ORD-8: a professional customer's own price, when the catalog gives one.
            let Some(terms) = catalog.terms_for_customer(sale_id, req.product, customer) else {
                refusals.push(refusal(
                    line,
                    &req.product.to_string(),
                    "UNKNOWN_OFFER",
                    "not offered in this catalog",
                ));
                continue;
            };
            if !facts.accounts[&producer].is_orderable(req.product) {
                refusals.push(refusal(
                    line,
                    &terms.name,
                    "PRODUCT_UNAVAILABLE",
                    "no longer offered",
                ));
                continue;
            }
            if !sale.period_open(req.catalog, now) {
                // R-ORD-3: the code says which side of the period the order came.
                let not_yet = sale
                    .participations()
                    .get(&req.catalog)
                    .filter(|p| p.period_at(now) == PeriodState::NotOpen);
                match not_yet {
                    Some(p) => refusals.push(refusal(
                        line,
                        &terms.name,
                        "ORDER_PERIOD_NOT_OPEN",
                        format!("orders for this catalog open at {}", p.opens_at),
                    )),
                    None => refusals.push(refusal(
                        line,
                        &terms.name,
                        "ORDER_PERIOD_CLOSED",
                        "orders for this catalog are closed",
                    )),
                }
                continue;
            }
            // R-CAT-2: fees added into the price when the catalog chose so.
            let customer_price = self.customer_unit_price(sale, market, &terms)?;
            let fees_added = terms.fees.include_payment_fee || terms.fees.include_service_fee;
            let input = LineInput {
                line,
                producer,
                catalog: req.catalog,
                product: req.product,
                name: terms.name.clone(),
                unit: terms.unit.clone(),
                unit_price_incl_vat: customer_price,
                producer_unit_price_incl_vat: fees_added.then_some(terms.price_incl_vat),
                vat: terms.vat,
                variable_weight: terms.variable_weight,
                estimated_weight_kg: terms.estimated_weight_kg,
                packaging_multiple: terms.packaging_multiple,
                quantity: req.quantity,
            };
            match Order::price_lines(vec![input.clone()]) {
                Ok(mut l) => priced.append(&mut l),
                Err(e) => {
                    refusals.push(refusal(line, &terms.name, e.code(), e));
                    continue;
                }
            }
            inputs.push(input);
        }
        if !refusals.is_empty() {
            return Err(AppError::OrderRefused { lines: refusals });
        }
        Ok(Priced {
            inputs,
            lines: priced,
        })
    }

    /// Cancels `order` with everything it holds, into `changes`: the order (R-ORD-5), each
    /// line's stock reservation (released; nothing once delivered, R-STK-4), each producer's
    /// annual sales, the sale's attachment, and the refunds owed on online payments.
    pub(crate) async fn decide_cancellation(
        &self,
        order: &mut Stream<Order>,
        by: Canceller,
        period_open: bool,
        changes: &mut Changes,
    ) -> Result<(), AppError> {
        let order_id = order
            .state
            .id()
            .ok_or_else(|| AppError::not_found("order", &order.id))?;
        let products: Vec<ProductId> = order.state.lines().iter().map(|l| l.product).collect();
        let producers = order.state.producers();
        let catalogs: Vec<CatalogId> = order.state.catalogs().into_iter().collect();
        let awaited: Vec<(etal_domain::ids::PaymentId, String)> = order
            .state
            .awaiting()
            .iter()
            .map(|(p, a)| (*p, a.provider_ref.clone()))
            .collect();
        order
            .decide(|o| {
                o.decide(OrderCommand::Cancel {
                    by,
                    at: self.now(),
                    period_open,
                })
            })
            .map_err(rejected)?;
        // R-PAY-1: a payment still awaiting the customer is given up at the provider, so the
        // cancelled order cannot be paid (one paid meanwhile is recorded, then owed back).
        for (payment, provider_ref) in awaited {
            changes.send(Self::cancel_charge_message(order_id, payment, provider_ref));
        }
        for product in products {
            let mut stock = self.bus.load_stream::<Stock>(&product.to_string()).await?;
            stock
                .decide(|s| {
                    s.decide(StockCommand::Release {
                        reservation: order_id,
                    })
                })
                .map_err(rejected)?;
            changes.stream(&stock)?;
        }
        let mut sale = self
            .bus
            .load_stream::<Sale>(&order.state.sale().to_string())
            .await?;
        let year = sales_year(sale.state.starts_at().unwrap_or_else(|| self.now()));
        for producer in producers {
            let mut annual = self
                .bus
                .load_stream::<AnnualSales>(&annual_sales_id(producer, year))
                .await?;
            if annual.state.reservation(order_id).is_some() {
                annual
                    .decide(|a| a.decide(AnnualSalesCommand::Release { order: order_id }))
                    .map_err(rejected)?;
                changes.stream(&annual)?;
            }
        }
        if !catalogs.is_empty() {
            sale.decide(|s| {
                s.decide(SaleCommand::DetachCatalogs {
                    order: order_id,
                    catalogs,
                })
            })
            .map_err(rejected)?;
            changes.stream(&sale)?;
        }
        self.request_refunds(order, changes)
    }

    /// The line `line` of an order, with the order's stream.
    async fn order_line(
        &self,
        order: OrderId,
        line: u32,
    ) -> Result<(Stream<Order>, Line), AppError> {
        let stream = self.bus.load_stream::<Order>(&order.to_string()).await?;
        if !stream.exists() {
            return Err(AppError::not_found("order", order));
        }
        let l = stream
            .state
            .lines()
            .iter()
            .find(|l| l.line == line)
            .cloned()
            .ok_or_else(|| AppError::not_found("order line", format!("{order}/{line}")))?;
        Ok((stream, l))
    }

    /// R-ORD-4: a producer lowers a line after a shortage. In one commit: the order, the stock
    /// reservation (until the units were delivered, R-STK-4), the annual sales, the sale's
    /// attachment when the catalog has no unit left, and the refund owed on an online payment.
    pub async fn adjust_quantity(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        line: u32,
        quantity: i64,
    ) -> Result<Done<()>, AppError> {
        let cc = ctx.flow(
            "adjustQuantity",
            &fingerprint("adjustQuantity", &(order_id, line, quantity)),
        );
        let flowed = self
            .run_flow(&cc, vec![format!("order:{order_id}")], || async move {
                let (mut order, l) = self.order_line(order_id, line).await?;
                let (_, access) = self.producer_access(ctx.actor, l.producer).await?;
                order
                    .decide(|o| {
                        o.decide(OrderCommand::AdjustQuantity {
                            line,
                            quantity,
                            access,
                            at: self.now(),
                        })
                    })
                    .map_err(rejected)?;
                let mut changes = Changes::new();
                let mut stock = self
                    .bus
                    .load_stream::<Stock>(&l.product.to_string())
                    .await?;
                // Once delivered (R-STK-4) the units left the stock: nothing to lower.
                if stock.state.reservation(order_id).is_some() {
                    stock
                        .decide(|s| {
                            s.decide(StockCommand::AdjustReservation {
                                reservation: order_id,
                                quantity,
                            })
                        })
                        .map_err(rejected)?;
                    changes.stream(&stock)?;
                }
                self.decide_after_change(&mut order, l.producer, l.catalog, &mut changes)
                    .await?;
                changes.stream(&order)?;
                Ok(Decided::new(changes, ()))
            })
            .await?;
        let delivered = self.deliver_now(&flowed.outbox, &flowed.owed).await;
        Ok(Done::new((), flowed.position.max(delivered.position)))
    }

    /// R-ORD-4: a producer records the actual weight of a variable-weight line, in one commit
    /// with the annual sales and the refund owed.
    pub async fn record_weight(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        line: u32,
        weight_kg: Decimal,
    ) -> Result<Done<()>, AppError> {
        let cc = ctx.flow(
            &format!("recordWeight:{order_id}:{line}"),
            &fingerprint("recordWeight", &(order_id, line, weight_kg)),
        );
        let flowed = self
            .run_flow(&cc, vec![format!("order:{order_id}")], || async move {
                let (mut order, l) = self.order_line(order_id, line).await?;
                let (_, access) = self.producer_access(ctx.actor, l.producer).await?;
                order
                    .decide(|o| {
                        o.decide(OrderCommand::RecordWeight {
                            line,
                            weight_kg,
                            access,
                            at: self.now(),
                        })
                    })
                    .map_err(rejected)?;
                let mut changes = Changes::new();
                self.decide_after_change(&mut order, l.producer, l.catalog, &mut changes)
                    .await?;
                changes.stream(&order)?;
                Ok(Decided::new(changes, ()))
            })
            .await?;
        let delivered = self.deliver_now(&flowed.outbox, &flowed.owed).await;
        Ok(Done::new((), flowed.position.max(delivered.position)))
    }

    /// R-ORD-4: weighing in bulk for a whole sale: (order, line, kg) entries, each applied as
    /// [`App::record_weight`] (one commit per order line). Returns one result per entry.
    pub async fn record_weights(
        &self,
        ctx: &Ctx,
        entries: &[(OrderId, u32, Decimal)],
    ) -> Vec<Result<Done<()>, AppError>> {
        let mut results = Vec::with_capacity(entries.len());
        for (order, line, kg) in entries {
            let entry_ctx = match &ctx.key {
                Some(k) => ctx.clone().with_key(format!("{k}:{order}:{line}")),
                None => ctx.clone(),
            };
            results.push(self.record_weight(&entry_ctx, *order, *line, *kg).await);
        }
        results
    }

    /// After an order line changed: the producer's annual sales follow (down only), a catalog
    /// with no unit left leaves the sale's attachment, and the refund owed is requested.
    async fn decide_after_change(
        &self,
        order: &mut Stream<Order>,
        producer: ProducerId,
        catalog: CatalogId,
        changes: &mut Changes,
    ) -> Result<(), AppError> {
        let order_id = order
            .state
            .id()
            .ok_or_else(|| AppError::not_found("order", &order.id))?;
        let mut sale = self
            .bus
            .load_stream::<Sale>(&order.state.sale().to_string())
            .await?;
        let year = sales_year(sale.state.starts_at().unwrap_or_else(|| self.now()));
        let amount: Money = order
            .state
            .lines()
            .iter()
            .filter(|l| l.producer == producer)
            .map(|l| l.amount_incl_vat)
            .sum();
        let mut annual = self
            .bus
            .load_stream::<AnnualSales>(&annual_sales_id(producer, year))
            .await?;
        // A reduction, or a heavier weighing checked against the Discovery cap (R-ORD-4,
        // R-ACC-4): refused above it, the weighing writes nothing.
        if let Some(current) = annual.state.reservation(order_id).map(|r| r.amount) {
            let command = if amount.is_zero() {
                Some(AnnualSalesCommand::Release { order: order_id })
            } else if amount < current {
                Some(AnnualSalesCommand::Reduce {
                    order: order_id,
                    new_amount: amount,
                })
            } else if amount > current {
                let (account, _) = self.load::<ProducerAccount>(producer).await?;
                let date = sale
                    .state
                    .date()
                    .unwrap_or_else(|| etal_domain::calendar::paris_date(self.now()));
                let cap = self
                    .config
                    .plan_terms(account.plan(), date)
                    .and_then(|t| t.annual_cap_non_amap);
                Some(AnnualSalesCommand::Raise {
                    order: order_id,
                    new_amount: amount,
                    cap,
                })
            } else {
                None
            };
            if let Some(command) = command {
                annual.decide(|a| a.decide(command)).map_err(rejected)?;
                changes.stream(&annual)?;
            }
        }
        let units_left: i64 = order
            .state
            .lines()
            .iter()
            .filter(|l| l.catalog == catalog)
            .map(|l| l.quantity)
            .sum();
        if units_left == 0 {
            sale.decide(|s| {
                s.decide(SaleCommand::DetachCatalogs {
                    order: order_id,
                    catalogs: vec![catalog],
                })
            })
            .map_err(rejected)?;
            changes.stream(&sale)?;
        }
        self.request_refunds(order, changes)?;
        // R-ORD-4: a heavier weighing on an online market is charged online, through the
        // outbox, once the order's charge was taken (before it, the charge owed covers the
        // order as placed and the extra stays due at pick-up).
        let due = order.state.balance_due();
        if order.state.payment_mode() == PaymentMode::Online
            && !order.state.is_cancelled()
            && order.state.paid() > Money::ZERO
            && due > Money::ZERO
        {
            let version = order.version + order.pending().len() as i64;
            changes.send(Self::extra_charge_message(order_id, version, due));
        }
        Ok(())
    }

    /// R-ORD-5: the customer cancels while the period is open; a producer of the order or a
    /// market administrator after. One commit: the order, its stock, annual sales, the sale's
    /// attachment, and the refunds owed on online payments (delivered after).
    pub async fn cancel_order(&self, ctx: &Ctx, order_id: OrderId) -> Result<Done<()>, AppError> {
        let cc = ctx.flow("cancelOrder", &fingerprint("cancelOrder", &order_id));
        let flowed = self
            .run_flow(&cc, vec![format!("order:{order_id}")], || async move {
                let mut order = self.bus.load_stream::<Order>(&order_id.to_string()).await?;
                if !order.exists() {
                    return Err(AppError::not_found("order", order_id));
                }
                let (sale, _) = self.load::<Sale>(order.state.sale()).await?;
                let now = self.now();
                let by = self.canceller(ctx, &order.state).await?;
                let period_open = order
                    .state
                    .catalogs()
                    .iter()
                    .all(|c| sale.period_open(*c, now));
                let mut changes = Changes::new();
                self.decide_cancellation(&mut order, by, period_open, &mut changes)
                    .await?;
                changes.stream(&order)?;
                Ok(Decided::new(changes, ()))
            })
            .await?;
        let delivered = self.deliver_now(&flowed.outbox, &flowed.owed).await;
        Ok(Done::new((), flowed.position.max(delivered.position)))
    }

    /// Who cancels, with the access that proves they may.
    async fn canceller(&self, ctx: &Ctx, order: &Order) -> Result<Canceller, AppError> {
        Ok(match ctx.actor.role {
            Role::Customer => Canceller::Customer(ctx.actor),
            Role::Producer => {
                let mut found = None;
                for producer in order.producers() {
                    if let Ok((_, access)) = self.producer_access(ctx.actor, producer).await {
                        found = Some(access);
                        break;
                    }
                }
                Canceller::Producer(
                    found.ok_or_else(|| {
                        AppError::Forbidden("you sell nothing in this order".into())
                    })?,
                )
            }
            Role::MarketAdmin => {
                let (_, access) = self.market_access(ctx.actor, order.market()).await?;
                // Checked here, before the order's state: another market's administrator
                // learns nothing of it (not even that it is cancelled).
                if !access.administrator {
                    return Err(AppError::Forbidden(
                        "only this market's administrators cancel its orders".into(),
                    ));
                }
                Canceller::MarketAdministrator(access)
            }
            _ => return Err(AppError::Forbidden("you cannot cancel this order".into())),
        })
    }

    /// A market administrator records a payment taken at pick-up (cash, cheque, card terminal).
    pub async fn record_onsite_payment(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        method: PaymentMethod,
        amount: Money,
    ) -> Result<Done<()>, AppError> {
        if method.is_online() {
            return Err(AppError::bad_input(
                "method",
                "online payments come from the payment provider",
            ));
        }
        let (order, version) = self.load::<Order>(order_id).await?;
        if version == 0 {
            return Err(AppError::not_found("order", order_id));
        }
        let (_, access) = self.market_access(ctx.actor, order.market()).await?;
        if !access.administrator {
            return Err(AppError::Forbidden(
                "only a market administrator records payments at pick-up".into(),
            ));
        }
        let payment = PaymentId(ctx.new_id("payment"));
        let out = self
            .exec::<Order>(
                order_id,
                OrderCommand::RecordPayment {
                    payment,
                    method: method.clone(),
                    amount,
                    actor: ctx.actor,
                    market_access: Some(access),
                    at: self.now(),
                },
                &ctx.step(
                    "pay",
                    &fingerprint("recordPayment", &(order_id, &method, amount)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }
}
