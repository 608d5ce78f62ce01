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

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for e in events {
            webhook_event(conn, e).await?;
            let messages = match e.aggregate_type.as_str() {
                "order" => order_messages(conn, e).await?,
                "sale" => sale_messages(conn, e).await?,
                "proposal" => proposal_messages(e)?,
                "producer_balance" => balance_messages(e)?,
                _ => Vec::new(),
            };
            let cause = format!("{}:{}:{}", e.aggregate_type, e.aggregate_id, e.sequence);
            for m in messages {
                sqlx::query(
                    "INSERT INTO notifications (message_id, recipient_kind, recipient, kind, cause, \
                     txid, position, context, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(message_id(m.recipient, m.kind, &cause))
                .bind(m.recipient_kind)
                .bind(m.recipient)
                .bind(m.kind)
                .bind(&cause)
                .bind(e.position.txid)
                .bind(e.position.position)
                .bind(&m.context)
                .bind(e.recorded_at)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}

async fn order_messages(
    conn: &mut PgConnection,
    e: &StoredEvent,
) -> Result<Vec<Message>, ProjectionError> {
    if e.payload.is_null() {
        return Ok(Vec::new());
    }
    let event: OrderEvent = e.decode().map_err(|err| bad(e, err))?;
    let order: Uuid = e.aggregate_id.parse().map_err(|err| bad(e, err))?;
    if let OrderEvent::OrderPlaced {
        sale,
        market,
        customer,
        number,
        lines,
        total,
        ..
    } = &event
    {
        let names: Value = lines
            .iter()
            .map(|l| (l.line.to_string(), json!(l.name)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let producers: Vec<Uuid> = lines
            .iter()
            .map(|l| l.producer.0)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        sqlx::query(
            "INSERT INTO notification_orders (order_id, customer, number, sale, market, lines, producers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order)
        .bind(customer.0)
        .bind(number)
        .bind(sale.0)
        .bind(market.0)
        .bind(&names)
        .bind(&producers)
        .execute(&mut *conn)
        .await?;
        let lines: Vec<Value> = lines
            .iter()
            .map(|l| {
                json!({"name": l.name, "quantity": l.quantity, "unit": l.unit,
                       "amount": l.amount_incl_vat.to_string()})
            })
            .collect();
        let context = json!({"order": order, "number": number, "sale": sale.0, "market": market.0,
                             "lines": lines, "total": total.to_string()});
        return Ok(vec![
            Message {
                recipient_kind: "user",
                recipient: customer.0,
                kind: kinds::ORDER_PLACED,
                context: context.clone(),
            },
            Message {
                recipient_kind: "user",
                recipient: customer.0,
                kind: kinds::PICKUP_REMINDER,
                context,
            },
        ]);
    }
    let row = sqlx::query(
        "SELECT customer, number, sale, market, lines FROM notification_orders WHERE order_id = $1",
    )
    .bind(order)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(bad(e, "an order event before its OrderPlaced"));
    };
    let customer: Uuid = row.try_get("customer")?;
    let number: String = row.try_get("number")?;
    let names: Value = row.try_get("lines")?;
    let base = json!({"order": order, "number": number, "sale": row.try_get::<Uuid, _>("sale")?,
                      "market": row.try_get::<Uuid, _>("market")?});
    let with = |extra: Value| {
        let mut v = base.clone();
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    };
    let name = |line: u32| names[line.to_string()].as_str().unwrap_or("").to_string();
    let message = |kind, context| Message {
        recipient_kind: "user",
        recipient: customer,
        kind,
        context,
    };
    Ok(match event {
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
    })
}

fn proposal_messages(e: &StoredEvent) -> Result<Vec<Message>, ProjectionError> {
    if e.payload.is_null() {
        return Ok(Vec::new());
    }
    Ok(
        match e
            .decode::<etal_domain::proposal::ProposalEvent>()
            .map_err(|err| bad(e, err))?
        {
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
        },
    )
}

async fn sale_messages(
    conn: &mut PgConnection,
    e: &StoredEvent,
) -> Result<Vec<Message>, ProjectionError> {
    if e.payload.is_null() {
        return Ok(Vec::new());
    }
    let event: SaleEvent = e.decode().map_err(|err| bad(e, err))?;
    let sale: Uuid = e.aggregate_id.parse().map_err(|err| bad(e, err))?;
    if let SaleEvent::SalePlanned { market, date, .. } = &event {
        sqlx::query(
            "INSERT INTO notification_sales (sale_id, market, date) VALUES ($1, $2, $3) \
             ON CONFLICT (sale_id) DO NOTHING",
        )
        .bind(sale)
        .bind(market.0)
        .bind(date)
        .execute(&mut *conn)
        .await?;
        return Ok(Vec::new());
    }
    let market: Option<Uuid> =
        sqlx::query_scalar("SELECT market FROM notification_sales WHERE sale_id = $1")
            .bind(sale)
            .fetch_optional(&mut *conn)
            .await?;
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
    Ok(match event {
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
            context: json!({"sale": e.aggregate_id, "catalog": catalog.0, "producer": producer.0,
                            "orders": orders}),
        }],
        _ => Vec::new(),
    })
}

fn balance_messages(e: &StoredEvent) -> Result<Vec<Message>, ProjectionError> {
    if e.payload.is_null() {
        return Ok(Vec::new());
    }
    let event: ProducerBalanceEvent = e.decode().map_err(|err| bad(e, err))?;
    let producer: Uuid = e.aggregate_id.parse().map_err(|err| bad(e, err))?;
    Ok(match event {
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
    })
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

/// Records an event integrators may follow, with its owners: an order's market and producers;
/// a recap's or a payout's producer. Its body is what the webhook POSTs.
async fn webhook_event(conn: &mut PgConnection, e: &StoredEvent) -> Result<(), ProjectionError> {
    if e.payload.is_null() || !WEBHOOK_EVENT_TYPES.contains(&e.event_type.as_str()) {
        return Ok(());
    }
    let owners: Vec<Uuid> = match e.aggregate_type.as_str() {
        "order" => {
            let order: Uuid = e.aggregate_id.parse().map_err(|err| bad(e, err))?;
            match e.decode::<OrderEvent>().map_err(|err| bad(e, err))? {
                OrderEvent::OrderPlaced { market, lines, .. } => {
                    let mut o: std::collections::BTreeSet<Uuid> =
                        lines.iter().map(|l| l.producer.0).collect();
                    o.insert(market.0);
                    o.into_iter().collect()
                }
                _ => {
                    let row = sqlx::query(
                        "SELECT market, producers FROM notification_orders WHERE order_id = $1",
                    )
                    .bind(order)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some(row) = row else { return Ok(()) };
                    let mut o: Vec<Uuid> = row.try_get("producers")?;
                    o.push(row.try_get("market")?);
                    o
                }
            }
        }
        "sale" => match e.decode::<SaleEvent>().map_err(|err| bad(e, err))? {
            SaleEvent::RecapReady { producer, .. } => vec![producer.0],
            _ => return Ok(()),
        },
        "producer_balance" => vec![e.aggregate_id.parse().map_err(|err| bad(e, err))?],
        _ => return Ok(()),
    };
    let event_id = format!("{}:{}:{}", e.aggregate_type, e.aggregate_id, e.sequence);
    let body = json!({"id": event_id, "type": e.event_type, "aggregateType": e.aggregate_type,
                      "aggregateId": e.aggregate_id, "occurredAt": e.recorded_at,
                      "data": e.payload});
    sqlx::query(
        "INSERT INTO webhook_events (txid, position, event_id, event_type, owners, body) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (txid, position) DO NOTHING",
    )
    .bind(e.position.txid)
    .bind(e.position.position)
    .bind(&event_id)
    .bind(&e.event_type)
    .bind(&owners)
    .bind(&body)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
