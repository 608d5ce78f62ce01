//! Completeness checks of `etal audit check` (issue 12, design property 4): from the events
//! alone, nothing is left half-done.
//!
//! - per product, the units held by the stock are exactly the live orders' undelivered units,
//!   and never more than the real stock (R-STK-2, R-STK-3);
//! - every live order of an online market is paid, or awaiting its charge within the time limit;
//! - no order number is attached to a sale without its order (R-ORD-2);
//! - no reservation of any kind (stock, annual sales) without a live order (R-ACC-4).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use etal_domain::annual::AnnualSales;
use etal_domain::ids::{OrderId, ProductId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::order::OrderEvent;
use etal_domain::sale::Sale;
use etal_domain::stock::{Stock, StockEvent};
use etal_domain::Money;
use etal_store::StoredEvent;

use crate::audit::Difference;

/// How long a live online order may wait for its charge before the audit names it.
pub const CHARGE_TIME_LIMIT: chrono::Duration = chrono::Duration::minutes(15);

/// What the checks keep of an order.
#[derive(Debug, Clone, Default)]
struct OrderSeen {
    sale: SaleId,
    online: bool,
    live: bool,
    /// line -> (product, quantity)
    lines: BTreeMap<u32, (ProductId, i64)>,
    total: Money,
    paid: Money,
    refunded: Money,
    placed_at: Option<DateTime<Utc>>,
    /// The latest time limit of a payment awaiting the customer's confirmation (R-PAY-1).
    awaiting_until: Option<DateTime<Utc>>,
}

/// The streams folded for the completeness checks.
#[derive(Default)]
pub struct Completeness {
    orders: HashMap<OrderId, OrderSeen>,
    stocks: BTreeMap<String, Stock>,
    /// (product, order) whose units the stock delivered (R-STK-4).
    delivered: BTreeSet<(ProductId, OrderId)>,
    sales: BTreeMap<String, Sale>,
    annual: BTreeMap<String, AnnualSales>,
    /// Events that could not be read (reported by the money replay already).
    unreadable: usize,
}

fn total(id: &str, field: &str, message: String, kind: &str) -> Difference {
    Difference {
        position: 0,
        aggregate_type: kind.to_string(),
        aggregate_id: id.to_string(),
        sequence: 0,
        field: field.to_string(),
        message,
    }
}

impl Completeness {
    /// Folds one event (in global order).
    pub fn apply(&mut self, e: &StoredEvent) {
        match e.aggregate_type.as_str() {
            "order" => match e.decode::<OrderEvent>() {
                Ok(ev) => self.order(e, ev),
                Err(_) => self.unreadable += 1,
            },
            "stock" => match e.decode::<StockEvent>() {
                Ok(ev) => {
                    if let StockEvent::StockDelivered { reservations, .. } = &ev {
                        if let Ok(product) = e.aggregate_id.parse::<uuid::Uuid>() {
                            for o in reservations {
                                self.delivered.insert((ProductId(product), *o));
                            }
                        }
                    }
                    self.stocks
                        .entry(e.aggregate_id.clone())
                        .or_default()
                        .apply(ev);
                }
                Err(_) => self.unreadable += 1,
            },
            "sale" => match e.decode() {
                Ok(ev) => self
                    .sales
                    .entry(e.aggregate_id.clone())
                    .or_default()
                    .apply(ev),
                Err(_) => self.unreadable += 1,
            },
            "annual_sales" => match e.decode() {
                Ok(ev) => self
                    .annual
                    .entry(e.aggregate_id.clone())
                    .or_default()
                    .apply(ev),
                Err(_) => self.unreadable += 1,
            },
            _ => {}
        }
    }

    fn order(&mut self, e: &StoredEvent, ev: OrderEvent) {
        let Ok(id) = e.aggregate_id.parse::<uuid::Uuid>() else {
            self.unreadable += 1;
            return;
        };
        let o = self.orders.entry(OrderId(id)).or_default();
        match ev {
            OrderEvent::OrderPlaced {
                sale,
                lines,
                payment_mode,
                total,
                at,
                ..
            } => {
                o.sale = sale;
                o.online = payment_mode == PaymentMode::Online;
                o.live = true;
                o.total = total;
                o.placed_at = Some(at);
                o.lines = lines
                    .iter()
                    .map(|l| (l.line, (l.product, l.quantity)))
                    .collect();
            }
            OrderEvent::QuantityAdjusted {
                line,
                new_quantity,
                total,
                ..
            } => {
                if let Some(l) = o.lines.get_mut(&line) {
                    l.1 = new_quantity;
                }
                o.total = total;
            }
            OrderEvent::WeightRecorded { total, .. } => o.total = total,
            OrderEvent::PaymentRecorded { amount, method, .. } => {
                if method.is_online() {
                    o.paid += amount;
                }
            }
            OrderEvent::RefundRecorded { amount, .. } => o.refunded += amount,
            OrderEvent::PaymentAwaited { expires_at, .. } => {
                o.awaiting_until = o.awaiting_until.max(Some(expires_at));
            }
            OrderEvent::RefundRequested { .. } | OrderEvent::PaymentFailed { .. } => {}
            OrderEvent::OrderCancelled { .. } => {
                o.live = false;
                o.total = Money::ZERO;
            }
        }
    }

    /// The differences found, as of `now`.
    pub fn finish(&self, now: DateTime<Utc>) -> Vec<Difference> {
        let mut out = Vec::new();
        if self.unreadable > 0 {
            out.push(total(
                "-",
                "events",
                format!("{} events could not be read", self.unreadable),
                "log",
            ));
        }
        // Stock: every reservation is a live order's undelivered units, within the real stock.
        let mut held: BTreeSet<(ProductId, OrderId)> = BTreeSet::new();
        for (id, stock) in &self.stocks {
            let Ok(product) = id.parse::<uuid::Uuid>().map(ProductId) else {
                continue;
            };
            if let Some(available) = stock.available() {
                if available < 0 {
                    out.push(total(
                        id,
                        "available",
                        format!(
                            "{} units held for orders, real stock {}: oversold by {}",
                            stock.ordered(),
                            stock.real().unwrap_or(0),
                            -available
                        ),
                        "stock",
                    ));
                }
            }
            for (order, r) in stock.reservations() {
                held.insert((product, *order));
                let ordered = self.orders.get(order).filter(|o| o.live).map(|o| {
                    o.lines
                        .values()
                        .filter(|(p, _)| *p == product)
                        .map(|(_, q)| *q)
                        .sum::<i64>()
                });
                match ordered {
                    None => out.push(total(
                        id,
                        "reservation",
                        format!(
                            "{} units held for order {order}, which is not a live order",
                            r.quantity
                        ),
                        "stock",
                    )),
                    Some(q) if q != r.quantity => out.push(total(
                        id,
                        "reservation",
                        format!(
                            "{} units held for order {order}, which orders {q}",
                            r.quantity
                        ),
                        "stock",
                    )),
                    Some(_) => {}
                }
            }
        }
        let mut order_ids: Vec<&OrderId> = self.orders.keys().collect();
        order_ids.sort();
        for id in order_ids {
            let o = &self.orders[id];
            if o.placed_at.is_none() {
                out.push(total(
                    &id.to_string(),
                    "placed",
                    "events of an order that was never placed".into(),
                    "order",
                ));
                continue;
            }
            if !o.live {
                continue;
            }
            // Units counted by the stock of each product, until delivered.
            for (product, q) in o.lines.values() {
                if *q > 0
                    && !held.contains(&(*product, *id))
                    && !self.delivered.contains(&(*product, *id))
                {
                    out.push(total(
                        &id.to_string(),
                        "stock",
                        format!(
                            "{q} units of product {product} ordered but not counted by its stock"
                        ),
                        "order",
                    ));
                }
            }
            if o.online && o.paid - o.refunded < o.total {
                let waiting = o.placed_at.map(|t| now - t).unwrap_or_default();
                // A payment the customer has to confirm may wait until its own time limit,
                // then the expiry (a scheduled command) has as long again to cancel the order.
                let awaited = o
                    .awaiting_until
                    .is_some_and(|until| now <= until + CHARGE_TIME_LIMIT);
                if waiting > CHARGE_TIME_LIMIT && !awaited {
                    out.push(total(
                        &id.to_string(),
                        "paid",
                        format!(
                            "online order of {} paid {} (refunded {}) after {} min",
                            o.total,
                            o.paid,
                            o.refunded,
                            waiting.num_minutes()
                        ),
                        "order",
                    ));
                }
            }
        }
        // Sales: every number attached names a placed order of that sale.
        for (id, sale) in &self.sales {
            for order in sale.orders().keys() {
                match self.orders.get(order) {
                    Some(o) if o.placed_at.is_some() && o.sale.to_string() == *id => {}
                    _ => out.push(total(
                        id,
                        "orders",
                        format!("order number attached for {order}, which was never placed in this sale"),
                        "sale",
                    )),
                }
            }
        }
        // Annual sales: every reservation is a live order's.
        for (id, annual) in &self.annual {
            for order in annual.orders() {
                if !self.orders.get(&order).is_some_and(|o| o.live) {
                    out.push(total(
                        id,
                        "reservation",
                        format!("annual sales hold an amount for order {order}, which is not a live order"),
                        "annual_sales",
                    ));
                }
            }
        }
        out
    }
}
