//! R-NOT-1..4: the messages the log calls for. Each causing event gives at most one message per
//! recipient, its id derived from (recipient, kind, cause), so a rebuild writes the very same
//! rows and the sender (`etal_app::notify`), which keeps its deliveries in tables of its own,
//! never sends one twice. Rows commit with the checkpoint: a crash loses none.
//!
//! - to the producer, when a catalog's recap is ready at the close of its order period
//!   (`RecapReady`, R-SAL-5, R-NOT-2), and on each payout with its statement (`PayoutStarted`,
//!   R-NOT-4);
//! - to the customer, when their order is placed, cut or changed, weighed, cancelled or
//!   refunded, and the day before the pick-up (R-NOT-3; the sender holds that one until then).

use etal_domain::order::OrderEvent;
use etal_domain::payout::ProducerBalanceEvent;
use etal_domain::sale::SaleEvent;
use etal_store::StoredEvent;
use serde_json::{json, Value};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

/// The kinds of messages, as the templates and the preferences name them.
pub mod kinds {
    pub const RECAP_READY: &str = "recap_ready";
    pub const PAYOUT_STATEMENT: &str = "payout_statement";
    pub const ORDER_PLACED: &str = "order_placed";
    pub const ORDER_CHANGED: &str = "order_changed";
    pub const ORDER_WEIGHED: &str = "order_weighed";
    pub const ORDER_CANCELLED: &str = "order_cancelled";
    pub const ORDER_REFUNDED: &str = "order_refunded";
    /// The day before the pick-up: place, time, order number (sent then, if the order stands).
    pub const PICKUP_REMINDER: &str = "pickup_reminder";
    /// To a market's administrators: a producer asks to join.
    pub const JOIN_REQUEST: &str = "join_request";
    /// To a market's administrators: a producer withdraws from a sale.
    pub const PARTICIPATION_WITHDRAWN: &str = "participation_withdrawn";
    /// To a market's administrators: a sale is distributed, ready to validate.
    pub const SALE_TO_VALIDATE: &str = "sale_to_validate";
    /// To a webhook endpoint's owner: it failed for 24 h and was disabled (no event causes it:
    /// the sender writes it, `system_messages`).
    pub const WEBHOOK_DISABLED: &str = "webhook_disabled";
    /// A log-in link to the back office, asked for on its log-in page (`system_messages`).
    pub const LOGIN_LINK: &str = "login_link";
    /// Every kind.
    pub const ALL: &[&str] = &[
        RECAP_READY,
        PAYOUT_STATEMENT,
        ORDER_PLACED,
        ORDER_CHANGED,
        ORDER_WEIGHED,
        ORDER_CANCELLED,
        ORDER_REFUNDED,
        PICKUP_REMINDER,
        JOIN_REQUEST,
        PARTICIPATION_WITHDRAWN,
        SALE_TO_VALIDATE,
        WEBHOOK_DISABLED,
        LOGIN_LINK,
    ];
    /// The messages a person cannot turn off: receipts, changes of what they owe or are owed,
    /// refunds, payout statements.
    pub const LEGAL: &[&str] = &[
        ORDER_PLACED,
        ORDER_CHANGED,
        ORDER_WEIGHED,
        ORDER_CANCELLED,
        ORDER_REFUNDED,
        PAYOUT_STATEMENT,
        WEBHOOK_DISABLED,
        LOGIN_LINK,
    ];
}

pub struct Notifications;

/// The id of the message of `kind` to `recipient` caused by `cause`.
pub fn message_id(recipient: Uuid, kind: &str, cause: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("notification:{recipient}:{kind}:{cause}").as_bytes(),
    )
}

struct Message {
    recipient_kind: &'static str,
    recipient: Uuid,
    kind: &'static str,
    context: Value,
}

fn bad(e: &StoredEvent, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Event {
        projection: "notifications",
        position: e.position.position,
        reason: reason.to_string(),
    }
}

#[async_trait::async_trait]
impl Projection for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "notifications",
            "notification_orders",
            "webhook_events",
            "notification_sales",
        ]
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["order", "sale", "producer_balance", "proposal"])
    }

    fn payloads_read(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            (
                "order",
                &[
                    "OrderPlaced",
                    "QuantityAdjusted",
                    "WeightRecorded",
                    "OrderCancelled",
                    "RefundRecorded",
                    "PaymentRecorded",
                ],
            ),
            (
                "sale",
                &[
                    "RecapReady",
                    "SalePlanned",
                    "ParticipationWithdrawn",
                    "DistributionEnded",
                ],
            ),
            ("proposal", &["ProposalSent"]),
            ("producer_balance", &["PayoutStarted"]),
        ]
    }

    fn reads_metadata(&self) -> bool {
        false
    }

    /// A batch finds the orders and sales it remembers by primary key, and its inserts conflict
    /// on primary keys only: the messages' order index (the sender's) is built once, at the swap.
    fn rebuilds_without_plain_indexes(&self) -> bool {
        true
    }

    /// One batch in a handful of statements: the events are decoded once, the orders and sales
    /// they refer to are read in one query each, and the messages, webhook events and the
    /// projection's memory are written with one `INSERT ... SELECT FROM UNNEST` each. The rows
    /// are those the events give one by one (an event applies after the earlier ones of the
    /// batch, so an order placed in the batch is known to its later events).
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        let (mut order_ids, mut sale_ids) = (Vec::new(), Vec::new());
        for e in events {
            if e.payload.is_null() {
                continue;
            }
            let event = match e.aggregate_type.as_str() {
                "order" => {
                    let id = uuid(e)?;
                    let event: OrderEvent = e.decode().map_err(|err| bad(e, err))?;
                    if !matches!(event, OrderEvent::OrderPlaced { .. }) {
                        order_ids.push(id);
                    }
                    Decoded::Order(id, event)
                }
                "sale" => {
                    let id = uuid(e)?;
                    let event: SaleEvent = e.decode().map_err(|err| bad(e, err))?;
                    if !matches!(event, SaleEvent::SalePlanned { .. }) {
                        sale_ids.push(id);
                    }
                    Decoded::Sale(id, event)
                }
                "proposal" => Decoded::Proposal(e.decode().map_err(|err| bad(e, err))?),
                "producer_balance" => {
                    Decoded::Balance(uuid(e)?, e.decode().map_err(|err| bad(e, err))?)
                }
                _ => continue,
            };
            decoded.push((e, event));
        }
        let mut memory = Memory::load(conn, &order_ids, &sale_ids).await?;
        let mut rows = Rows::default();
        for (e, event) in &decoded {
            let messages = match event {
                Decoded::Order(id, event) => {
                    let order = memory.order(e, *id, event)?;
                    if WEBHOOK_EVENT_TYPES.contains(&e.event_type.as_str()) {
                        rows.webhook(e, order.owners(event));
                    }
                    order_messages(*id, &order, event)
                }
                Decoded::Sale(id, event) => {
                    if let SaleEvent::SalePlanned { market, date, .. } = event {
                        memory.plan(*id, market.0, *date);
                        Vec::new()
                    } else {
                        if let SaleEvent::RecapReady { producer, .. } = event {
                            if WEBHOOK_EVENT_TYPES.contains(&e.event_type.as_str()) {
                                rows.webhook(e, vec![producer.0]);
                            }
                        }
                        sale_messages(*id, memory.sales.get(id).copied(), event)
                    }
                }
                Decoded::Proposal(event) => proposal_messages(e, event),
                Decoded::Balance(id, event) => {
                    if WEBHOOK_EVENT_TYPES.contains(&e.event_type.as_str()) {
                        rows.webhook(e, vec![*id]);
                    }
                    balance_messages(*id, event)
                }
            };
            let cause = format!("{}:{}:{}", e.aggregate_type, e.aggregate_id, e.sequence);
            for m in messages {
                rows.message(e, &cause, m);
            }
        }
        memory.write(conn).await?;
        rows.write(conn).await
    }
}

/// An event this projection reads, decoded once.
enum Decoded {
    Order(Uuid, OrderEvent),
    Sale(Uuid, SaleEvent),
    Proposal(etal_domain::proposal::ProposalEvent),
    Balance(Uuid, ProducerBalanceEvent),
}

fn uuid(e: &StoredEvent) -> Result<Uuid, ProjectionError> {
    e.aggregate_id.parse().map_err(|err| bad(e, err))
}

/// What the projection remembers of an order (`notification_orders`).
#[derive(Clone)]
struct OrderMemo {
    customer: Uuid,
    number: String,
    sale: Uuid,
    market: Uuid,
    /// line number -> product name
    names: Value,
    /// the order's producers, sorted
    producers: Vec<Uuid>,
}

impl OrderMemo {
    /// Who may follow the event with a webhook: the order's producers and its market.
    fn owners(&self, event: &OrderEvent) -> Vec<Uuid> {
        if matches!(event, OrderEvent::OrderPlaced { .. }) {
            let mut o: std::collections::BTreeSet<Uuid> = self.producers.iter().copied().collect();
            o.insert(self.market);
            o.into_iter().collect()
        } else {
            let mut o = self.producers.clone();
            o.push(self.market);
            o
        }
    }
}

/// The orders and sales the batch refers to, read once, and those it adds.
struct Memory {
    orders: std::collections::HashMap<Uuid, OrderMemo>,
    sales: std::collections::HashMap<Uuid, Uuid>,
    new_orders: Vec<(Uuid, OrderMemo)>,
    new_sales: Vec<(Uuid, Uuid, chrono::NaiveDate)>,
}

impl Memory {
    async fn load(
        conn: &mut PgConnection,
        order_ids: &[Uuid],
        sale_ids: &[Uuid],
    ) -> Result<Self, ProjectionError> {
        let mut orders = std::collections::HashMap::new();
        if !order_ids.is_empty() {
            let rows = sqlx::query(
                "SELECT order_id, customer, number, sale, market, lines, producers \
                 FROM notification_orders WHERE order_id = ANY($1)",
            )
            .bind(order_ids)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                orders.insert(
                    row.try_get("order_id")?,
                    OrderMemo {
                        customer: row.try_get("customer")?,
                        number: row.try_get("number")?,
                        sale: row.try_get("sale")?,
                        market: row.try_get("market")?,
                        names: row.try_get("lines")?,
                        producers: row.try_get("producers")?,
                    },
                );
            }
        }
        let mut sales = std::collections::HashMap::new();
        if !sale_ids.is_empty() {
            let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
                "SELECT sale_id, market FROM notification_sales WHERE sale_id = ANY($1)",
            )
            .bind(sale_ids)
            .fetch_all(&mut *conn)
            .await?;
            sales.extend(rows);
        }
        Ok(Self {
            orders,
            sales,
            new_orders: Vec::new(),
            new_sales: Vec::new(),
        })
    }

    /// The order an order event belongs to; its `OrderPlaced` records it.
    fn order(
        &mut self,
        e: &StoredEvent,
        id: Uuid,
        event: &OrderEvent,
    ) -> Result<OrderMemo, ProjectionError> {
        if let OrderEvent::OrderPlaced {
            sale,
            market,
            customer,
            number,
            lines,
            ..
        } = event
        {
            let memo = OrderMemo {
                customer: customer.0,
                number: number.clone(),
                sale: sale.0,
                market: market.0,
                names: lines
                    .iter()
                    .map(|l| (l.line.to_string(), json!(l.name)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                producers: lines
                    .iter()
                    .map(|l| l.producer.0)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            };
            if let std::collections::hash_map::Entry::Vacant(v) = self.orders.entry(id) {
                v.insert(memo.clone());
                self.new_orders.push((id, memo.clone()));
            }
            return Ok(memo);
        }
        self.orders
            .get(&id)
            .cloned()
            .ok_or_else(|| bad(e, "an order event before its OrderPlaced"))
    }

    fn plan(&mut self, sale: Uuid, market: Uuid, date: chrono::NaiveDate) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.sales.entry(sale) {
            v.insert(market);
            self.new_sales.push((sale, market, date));
        }
    }

    async fn write(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if !self.new_orders.is_empty() {
            let n = self.new_orders.len();
            let (
                mut ids,
                mut customers,
                mut numbers,
                mut sales,
                mut markets,
                mut names,
                mut producers,
            ) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (id, o) in &self.new_orders {
                ids.push(*id);
                customers.push(o.customer);
                numbers.push(o.number.as_str());
                sales.push(o.sale);
                markets.push(o.market);
                names.push(o.names.clone());
                producers.push(json!(o.producers));
            }
            sqlx::query(
                "INSERT INTO notification_orders (order_id, customer, number, sale, market, lines, producers) \
                 SELECT o, c, n, s, m, l, ARRAY(SELECT jsonb_array_elements_text(p)::uuid) \
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::jsonb[], $7::jsonb[]) \
                 AS u(o, c, n, s, m, l, p) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(&ids)
            .bind(&customers)
            .bind(&numbers)
            .bind(&sales)
            .bind(&markets)
            .bind(&names)
            .bind(&producers)
            .execute(&mut *conn)
            .await?;
        }
        if !self.new_sales.is_empty() {
            let ids: Vec<Uuid> = self.new_sales.iter().map(|s| s.0).collect();
            let markets: Vec<Uuid> = self.new_sales.iter().map(|s| s.1).collect();
            let dates: Vec<chrono::NaiveDate> = self.new_sales.iter().map(|s| s.2).collect();
            sqlx::query(
                "INSERT INTO notification_sales (sale_id, market, date) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::date[]) ON CONFLICT (sale_id) DO NOTHING",
            )
            .bind(&ids)
            .bind(&markets)
            .bind(&dates)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// The rows a batch writes: messages and webhook events.
#[derive(Default)]
struct Rows {
    ids: Vec<Uuid>,
    recipient_kinds: Vec<&'static str>,
    recipients: Vec<Uuid>,
    kinds: Vec<&'static str>,
    causes: Vec<String>,
    txids: Vec<i64>,
    positions: Vec<i64>,
    contexts: Vec<Value>,
    occurred: Vec<chrono::DateTime<chrono::Utc>>,
    hooks: Vec<(i64, i64, String, String, Value, Value)>,
}

impl Rows {
    fn message(&mut self, e: &StoredEvent, cause: &str, m: Message) {
        self.ids.push(message_id(m.recipient, m.kind, cause));
        self.recipient_kinds.push(m.recipient_kind);
        self.recipients.push(m.recipient);
        self.kinds.push(m.kind);
        self.causes.push(cause.to_string());
        self.txids.push(e.position.txid);
        self.positions.push(e.position.position);
        self.contexts.push(m.context);
        self.occurred.push(e.recorded_at);
    }

    /// Records an event integrators may follow, with its owners. Its body is what the webhook
    /// POSTs.
    fn webhook(&mut self, e: &StoredEvent, owners: Vec<Uuid>) {
        let event_id = format!("{}:{}:{}", e.aggregate_type, e.aggregate_id, e.sequence);
        let body = json!({"id": event_id, "type": e.event_type, "aggregateType": e.aggregate_type,
                          "aggregateId": e.aggregate_id, "occurredAt": e.recorded_at,
                          "data": e.payload});
        self.hooks.push((
            e.position.txid,
            e.position.position,
            event_id,
            e.event_type.clone(),
            json!(owners),
            body,
        ));
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if !self.ids.is_empty() {
            sqlx::query(
                "INSERT INTO notifications (message_id, recipient_kind, recipient, kind, cause, \
                 txid, position, context, occurred_at) \
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], \
                 $6::bigint[], $7::bigint[], $8::jsonb[], $9::timestamptz[]) \
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(&self.ids)
            .bind(&self.recipient_kinds)
            .bind(&self.recipients)
            .bind(&self.kinds)
            .bind(&self.causes)
            .bind(&self.txids)
            .bind(&self.positions)
            .bind(&self.contexts)
            .bind(&self.occurred)
            .execute(&mut *conn)
            .await?;
        }
        if !self.hooks.is_empty() {
            let n = self.hooks.len();
            let (mut txids, mut positions, mut ids, mut types, mut owners, mut bodies) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (txid, position, id, ty, o, body) in self.hooks {
                txids.push(txid);
                positions.push(position);
                ids.push(id);
                types.push(ty);
                owners.push(o);
                bodies.push(body);
            }
            sqlx::query(
                "INSERT INTO webhook_events (txid, position, event_id, event_type, owners, body) \
                 SELECT t, p, i, y, ARRAY(SELECT jsonb_array_elements_text(o)::uuid), b \
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[]) \
                 AS u(t, p, i, y, o, b) ON CONFLICT (txid, position) DO NOTHING",
            )
            .bind(&txids)
            .bind(&positions)
            .bind(&ids)
            .bind(&types)
            .bind(&owners)
            .bind(&bodies)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// The messages of an order event to its customer.
fn order_messages(order: Uuid, memo: &OrderMemo, event: &OrderEvent) -> Vec<Message> {
    let customer = memo.customer;
    if let OrderEvent::OrderPlaced {
        sale,
        market,
        number,
        lines,
        total,
        ..
    } = event
    {
        let lines: Vec<Value> = lines
            .iter()
            .map(|l| {
                json!({"name": l.name, "quantity": l.quantity, "unit": l.unit,
                       "amount": l.amount_incl_vat.to_string()})
            })
            .collect();
        let context = json!({"order": order, "number": number, "sale": sale.0, "market": market.0,
                             "lines": lines, "total": total.to_string()});
        return vec![
            Message {
                recipient_kind: "user",
                recipient: customer,
                kind: kinds::ORDER_PLACED,
                context: context.clone(),
            },
            Message {
                recipient_kind: "user",
                recipient: customer,
                kind: kinds::PICKUP_REMINDER,
                context,
            },
        ];
    }
    let base = json!({"order": order, "number": memo.number, "sale": memo.sale,
                      "market": memo.market});
    let with = |extra: Value| {
        let mut v = base.clone();
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    };
    let name = |line: &u32| {
        memo.names[line.to_string()]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let message = |kind, context| Message {
        recipient_kind: "user",
        recipient: customer,
        kind,
        context,
    };
    match event {
        OrderEvent::QuantityAdjusted {
            line,
            old_quantity,
            new_quantity,
            old_amount,
            new_amount,
            total,
            refund_owed,
            extra_due,
            ..
        } if old_quantity != new_quantity => vec![message(
            kinds::ORDER_CHANGED,
            with(
                json!({"line": line, "name": name(line), "old_quantity": old_quantity,
                        "new_quantity": new_quantity, "old_amount": old_amount.to_string(),
                        "new_amount": new_amount.to_string(), "total": total.to_string(),
                        "refund_owed": refund_owed.to_string(), "extra_due": extra_due.to_string()}),
            ),
        )],
        OrderEvent::WeightRecorded {
            line,
            weight_kg,
            old_amount,
            new_amount,
            total,
            refund_owed,
            extra_due,
            ..
        } if old_amount != new_amount => vec![message(
            kinds::ORDER_WEIGHED,
            with(
                json!({"line": line, "name": name(line), "weight_kg": weight_kg.to_string(),
                        "old_amount": old_amount.to_string(), "new_amount": new_amount.to_string(),
                        "total": total.to_string(), "refund_owed": refund_owed.to_string(),
                        "extra_due": extra_due.to_string()}),
            ),
        )],
        OrderEvent::OrderCancelled {
            previous_total,
            refund_owed,
            ..
        } => vec![message(
            kinds::ORDER_CANCELLED,
            with(json!({"previous_total": previous_total.to_string(),
                        "refund_owed": refund_owed.to_string()})),
        )],
        OrderEvent::RefundRecorded {
            amount, refunded, ..
        } => vec![message(
            kinds::ORDER_REFUNDED,
            with(json!({"amount": amount.to_string(), "refunded": refunded.to_string()})),
        )],
        _ => Vec::new(),
    }
}

/// A producer's request to join a market, to the market's administrators.
fn proposal_messages(
    e: &StoredEvent,
    event: &etal_domain::proposal::ProposalEvent,
) -> Vec<Message> {
    match event {
        etal_domain::proposal::ProposalEvent::ProposalSent {
            market,
            catalog,
            producer,
            message,
            ..
        } => vec![Message {
            recipient_kind: "market",
            recipient: market.0,
            kind: kinds::JOIN_REQUEST,
            context: json!({"market": market.0, "catalog": catalog.0, "producer": producer.0,
                        "proposal": e.aggregate_id, "message": message}),
        }],
        _ => Vec::new(),
    }
}

/// A sale's messages: to its market's administrators (a withdrawal, a sale to validate), and
/// to a producer when its recap is ready. `market` is the sale's, when its `SalePlanned` is known.
fn sale_messages(sale: Uuid, market: Option<Uuid>, event: &SaleEvent) -> Vec<Message> {
    let to_market = |kind, context: Value| -> Vec<Message> {
        market
            .map(|m| Message {
                recipient_kind: "market",
                recipient: m,
                kind,
                context,
            })
            .into_iter()
            .collect()
    };
    match event {
        SaleEvent::ParticipationWithdrawn {
            producer, catalog, ..
        } => to_market(
            kinds::PARTICIPATION_WITHDRAWN,
            json!({"sale": sale, "market": market, "producer": producer.0, "catalog": catalog.0}),
        ),
        SaleEvent::DistributionEnded { .. } => to_market(
            kinds::SALE_TO_VALIDATE,
            json!({"sale": sale, "market": market}),
        ),
        SaleEvent::RecapReady {
            catalog,
            producer,
            orders,
        } => vec![Message {
            recipient_kind: "producer",
            recipient: producer.0,
            kind: kinds::RECAP_READY,
            context: json!({"sale": sale.to_string(), "catalog": catalog.0, "producer": producer.0,
                            "orders": orders}),
        }],
        _ => Vec::new(),
    }
}

/// The payout statement, to the producer.
fn balance_messages(producer: Uuid, event: &ProducerBalanceEvent) -> Vec<Message> {
    match event {
        ProducerBalanceEvent::PayoutStarted { statement, .. } => {
            let lines: Vec<Value> = statement
                .lines
                .iter()
                .map(|l| {
                    json!({"sale": l.sale.0, "market": l.market.0,
                           "gross": l.gross_incl_vat.to_string(), "refunds": l.refunds.to_string(),
                           "fees": l.fees_incl_vat.to_string(), "net": l.net.to_string()})
                })
                .collect();
            let deductions: Vec<Value> = statement
                .deductions
                .iter()
                .map(|d| json!({"id": d.id, "amount": d.amount.to_string()}))
                .collect();
            vec![Message {
                recipient_kind: "producer",
                recipient: producer,
                kind: kinds::PAYOUT_STATEMENT,
                context: json!({"producer": producer, "payout": statement.payout.0,
                                "on": statement.on, "lines": lines, "deductions": deductions,
                                "total": statement.total.to_string()}),
            }]
        }
        _ => Vec::new(),
    }
}

/// The event types integrators may follow with a webhook.
pub const WEBHOOK_EVENT_TYPES: &[&str] = &[
    "OrderPlaced",
    "QuantityAdjusted",
    "WeightRecorded",
    "PaymentRecorded",
    "RefundRecorded",
    "OrderCancelled",
    "RecapReady",
    "PayoutStarted",
];
