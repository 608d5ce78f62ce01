//! GraphQL subscriptions over websockets (graphql-ws, sub-protocol `graphql-transport-ws`; the
//! legacy `graphql-ws` sub-protocol of subscriptions-transport-ws is accepted too).
//!
//! - `stockLevel(producerId, productId)`: the product's stock level at once, then each time it
//!   changes. Same access as the `stockLevel` query (the producer's people, auditors).
//! - `saleOrders(saleId, catalogId)`: the recap by customer of a (sale, catalog) at once, then the
//!   orders that are new, changed or gone (`removed: true`) since the last batch. Access: the
//!   catalog's producer (owner, collaborators), the market's administrators, auditors.
//!
//! Authentication: the client sends its token in the `connection_init` payload
//! (`{"authorization": "Bearer <token>"}`); a bad token closes the connection (4403), no token
//! means an anonymous connection, whose subscriptions end with UNAUTHENTICATED.
//!
//! Change detection: one [`Notifier`] per server process holds a single LISTEN connection on
//! `etal_events` (with polling as a safety net, see `etal_store::log::Waker`) and fans wake-ups
//! out through a tokio broadcast channel; subscribers never hold a database connection while
//! they wait. A wake-up says only "something committed": each subscriber debounces, re-reads its
//! value and yields only when it differs. N subscribers cost one LISTEN connection plus N short
//! reads per burst of commits, instead of N idle connections out of the pool. The stock level is
//! read from the `Stock` aggregate (as the query does: consistent as soon as the event commits);
//! the recap from the `order_recaps` projection, after waiting (bounded) for it to pass the log's
//! head at wake-up time. Authorization is checked when the subscription starts and again before
//! each change is sent: a caller who lost access gets FORBIDDEN and the subscription ends.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Context, Data, Result, SimpleObject, Subscription};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use etal_domain::ids::{CatalogId, OrderId, ProducerId, ProductId, SaleId};
use etal_domain::sale::Sale;
use etal_domain::stock::Stock;
use etal_domain::{Actor, Role};
use etal_projections::order_recaps::{recap_by_customer, CustomerRecap, Scope};
use etal_store::log::{EventLog, Waker};
use futures::Stream;
use sqlx::PgPool;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::common::{actor, app, app_error, forbidden, OrCoded, RoleGuard};
use super::producers::{producer_for_read, StockLevel};
use super::scalars::Money;
use crate::auth::{verify, Principal};
use crate::http::GraphqlState;
use etal_app::{App, AppError};

/// How long a subscriber waits after a wake-up before re-reading, so that a burst of commits
/// costs one read.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// The polling safety net: subscribers re-read at least this often.
const POLL: Duration = Duration::from_secs(5);
/// How long a recap subscriber waits for the projection to pass the head before reading anyway.
const PROJECTION_WAIT: Duration = Duration::from_secs(3);

/// The process's wake-ups: one LISTEN connection, started by the first subscriber.
#[derive(Clone)]
pub struct Notifier {
    pool: PgPool,
    sender: Arc<OnceLock<broadcast::Sender<()>>>,
}

impl Notifier {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            sender: Arc::new(OnceLock::new()),
        }
    }

    /// A receiver of wake-ups (starts the listening task on first use).
    pub fn subscribe(&self) -> broadcast::Receiver<()> {
        self.sender
            .get_or_init(|| {
                let (tx, _) = broadcast::channel(16);
                let sender = tx.clone();
                let pool = self.pool.clone();
                tokio::spawn(async move {
                    let mut waker = Waker::new(&pool, POLL).await;
                    loop {
                        waker.wait().await;
                        // No receiver now is fine: later subscribers read at once anyway.
                        let _ = sender.send(());
                    }
                });
                tx
            })
            .subscribe()
    }
}

/// Waits for the next wake-up, then lets a burst settle and swallows what it queued.
async fn next_wake(rx: &mut broadcast::Receiver<()>) -> bool {
    match rx.recv().await {
        Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {}
        Err(broadcast::error::RecvError::Closed) => return false,
    }
    tokio::time::sleep(DEBOUNCE).await;
    loop {
        match rx.try_recv() {
            Ok(()) | Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return true,
        }
    }
}

async fn read_stock(app: &App, product: ProductId) -> Result<StockLevel> {
    let (s, _) = app.load::<Stock>(product).await.coded()?;
    Ok(StockLevel {
        product: product.0,
        real: s.real(),
        ordered: s.ordered(),
        available: s.available(),
    })
}

/// One order of a sale's recap for one catalog.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct SaleOrder {
    pub order_id: Uuid,
    pub number: String,
    pub customer_id: Uuid,
    /// The display name, or "erased customer".
    pub customer: String,
    /// The catalog's lines, incl. VAT.
    pub amount: Money,
    /// The whole order (all producers, delivery fee).
    pub order_total: Money,
    pub paid: Money,
    /// UNPAID, PARTIALLY_PAID, PAID or REFUND_OWED.
    pub payment_status: String,
    /// Units ordered from the catalog.
    pub quantity: i64,
    /// The order left the recap (cancelled, or no line of the catalog any more).
    pub removed: bool,
}

impl SaleOrder {
    fn of(r: &CustomerRecap) -> Self {
        let status = serde_json::to_value(r.payment_status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_ascii_uppercase))
            .unwrap_or_default();
        SaleOrder {
            order_id: r.order.0,
            number: r.number.clone(),
            customer_id: r.customer_id.0,
            customer: r.customer.clone(),
            amount: Money(r.amount_incl_vat),
            order_total: Money(r.order_total),
            paid: Money(r.paid),
            payment_status: status,
            quantity: r.lines.iter().map(|l| l.quantity).sum(),
            removed: false,
        }
    }
}

/// Whether the caller may still follow the stock of `producer`'s products (the start is checked
/// by `producer_for_read`, which also finds the product).
async fn may_follow_stock(app: &App, a: Actor, producer: ProducerId) -> Result<()> {
    match a.role {
        Role::Auditor => Ok(()),
        Role::Producer => {
            app.producer_access(a, producer).await.coded()?;
            Ok(())
        }
        _ => Err(forbidden("you do not see this stock")),
    }
}

/// Whether the caller may follow the recap of `catalog` in `sale`.
async fn may_follow_recap(app: &App, a: Actor, sale: SaleId, catalog: CatalogId) -> Result<()> {
    let (s, v) = app.load::<Sale>(sale).await.coded()?;
    if v == 0 || s.id().is_none() {
        return Err(app_error(AppError::not_found("sale", sale)));
    }
    match a.role {
        Role::Auditor => Ok(()),
        Role::Producer => {
            app.catalog_access(&etal_app::Ctx::new(a), catalog)
                .await
                .coded()?;
            Ok(())
        }
        Role::MarketAdmin => {
            let (_, access) = app.market_access(a, s.market()).await.coded()?;
            if access.administrator {
                Ok(())
            } else {
                Err(forbidden("you do not administer this sale's market"))
            }
        }
        _ => Err(forbidden("you do not see this recap")),
    }
}

/// What changed between two snapshots of a recap (new, changed, then removed orders).
fn diff(before: &HashMap<OrderId, SaleOrder>, now: &[CustomerRecap]) -> Vec<SaleOrder> {
    let mut out: Vec<SaleOrder> = now
        .iter()
        .map(SaleOrder::of)
        .filter(|o| before.get(&OrderId(o.order_id)) != Some(o))
        .collect();
    let present: std::collections::HashSet<OrderId> = now.iter().map(|r| r.order).collect();
    let mut gone: Vec<SaleOrder> = before
        .iter()
        .filter(|(id, _)| !present.contains(id))
        .map(|(_, o)| SaleOrder {
            removed: true,
            ..o.clone()
        })
        .collect();
    gone.sort_by(|a, b| a.number.cmp(&b.number));
    out.extend(gone);
    out
}

#[derive(Default)]
pub struct Subscription;

/// A recap ready at the close of a catalog's order period.
#[derive(SimpleObject, Clone)]
pub struct RecapReadyEvent {
    pub sale_id: Uuid,
    pub catalog_id: Uuid,
    pub orders: i32,
}

/// The caller still acts for the producer.
async fn producer_access(app: &App, a: Actor, producer: ProducerId) -> Result<()> {
    app.producer_access(a, producer)
        .await
        .map(|_| ())
        .map_err(app_error)
}

#[Subscription]
impl Subscription {
    /// A product's stock level now, then at each change: the producer's people and auditors.
    #[graphql(guard = "RoleGuard(&[Role::Producer, Role::Auditor])")]
    async fn stock_level(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        product_id: Uuid,
    ) -> Result<impl Stream<Item = Result<StockLevel>>> {
        let (account, _) = producer_for_read(ctx, ProducerId(producer_id)).await?;
        let product = ProductId(product_id);
        if account.product(product).is_none() {
            return Err(app_error(AppError::not_found("product", product_id)));
        }
        let a = actor(ctx)?;
        let producer = ProducerId(producer_id);
        let app = app(ctx).clone();
        let rx = ctx.data_unchecked::<Notifier>().subscribe();
        let first = read_stock(&app, product).await?;
        let state = (
            app,
            rx,
            Some(first),
            None::<(Option<i64>, i64, Option<i64>)>,
            false,
        );
        Ok(futures::stream::unfold(
            state,
            move |(app, mut rx, pending, mut last, ended)| async move {
                if ended {
                    return None;
                }
                if let Some(level) = pending {
                    last = Some((level.real, level.ordered, level.available));
                    return Some((Ok(level), (app, rx, None, last, false)));
                }
                loop {
                    if !next_wake(&mut rx).await {
                        return None;
                    }
                    match read_stock(&app, product).await {
                        Ok(level) if last == Some((level.real, level.ordered, level.available)) => {
                            continue
                        }
                        Ok(level) => {
                            // Access is checked again before each change is sent: a producer
                            // removed from the account stops receiving (FORBIDDEN, then the end).
                            if let Err(e) = may_follow_stock(&app, a, producer).await {
                                return Some((Err(e), (app, rx, None, last, true)));
                            }
                            last = Some((level.real, level.ordered, level.available));
                            return Some((Ok(level), (app, rx, None, last, false)));
                        }
                        Err(e) => {
                            tracing::warn!(error = ?e.message, "stock level subscription: read failed");
                            continue;
                        }
                    }
                }
            },
        ))
    }

    /// R-SAL-5, R-NOT-2: each recap of the producer's catalogs that becomes ready from now on
    /// (at the close of its order period), for apps open at that moment: the producer's people.
    #[graphql(guard = "RoleGuard(&[Role::Producer])")]
    async fn recap_ready(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
    ) -> Result<impl Stream<Item = Result<RecapReadyEvent>>> {
        let producer = ProducerId(producer_id);
        producer_for_read(ctx, producer).await?;
        let a = actor(ctx)?;
        let app = app(ctx).clone();
        let rx = ctx.data_unchecked::<Notifier>().subscribe();
        // From now on: the newest recap message of this producer so far is the start.
        let start: (i64, i64) = sqlx::query_as(
            "SELECT coalesce(max(txid), 0), coalesce(max(position), 0) FROM notifications \
             WHERE kind = 'recap_ready' AND recipient = $1",
        )
        .bind(producer_id)
        .fetch_one(&app.pool)
        .await
        .map_err(|e| app_error(AppError::from(e)))?;
        let queue: std::collections::VecDeque<RecapReadyEvent> = Default::default();
        Ok(futures::stream::unfold(
            (app, rx, start, queue),
            move |(app, mut rx, mut last, mut queue)| async move {
                loop {
                    if let Some(next) = queue.pop_front() {
                        if let Err(e) = producer_access(&app, a, producer).await {
                            return Some((Err(e), (app, rx, last, Default::default())));
                        }
                        return Some((Ok(next), (app, rx, last, queue)));
                    }
                    if !next_wake(&mut rx).await {
                        return None;
                    }
                    if let Ok(head) = EventLog::head(&app.pool).await {
                        let _ = etal_projections::runtime::wait_until(
                            &app.pool,
                            "notifications",
                            head,
                            PROJECTION_WAIT,
                        )
                        .await;
                    }
                    let rows: Result<Vec<(i64, i64, serde_json::Value)>, _> = sqlx::query_as(
                        "SELECT txid, position, context FROM notifications WHERE kind = 'recap_ready' \
                         AND recipient = $1 AND (txid, position) > ($2, $3) ORDER BY txid, position",
                    )
                    .bind(producer_id)
                    .bind(last.0)
                    .bind(last.1)
                    .fetch_all(&app.pool)
                    .await;
                    match rows {
                        Ok(rows) => {
                            for (txid, position, c) in rows {
                                last = (txid, position);
                                let id = |k: &str| c[k].as_str().and_then(|s| s.parse().ok());
                                if let (Some(sale_id), Some(catalog_id)) =
                                    (id("sale"), id("catalog"))
                                {
                                    queue.push_back(RecapReadyEvent {
                                        sale_id,
                                        catalog_id,
                                        orders: c["orders"].as_i64().unwrap_or(0) as i32,
                                    });
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "recap ready subscription: read failed")
                        }
                    }
                }
            },
        ))
    }

    /// The orders of a sale for one catalog: all of them at once, then those new, changed or
    /// removed since the last batch. The catalog's producer, the market's administrators,
    /// auditors.
    #[graphql(guard = "RoleGuard(&[Role::Producer, Role::MarketAdmin, Role::Auditor])")]
    async fn sale_orders(
        &self,
        ctx: &Context<'_>,
        sale_id: Uuid,
        catalog_id: Uuid,
    ) -> Result<impl Stream<Item = Result<Vec<SaleOrder>>>> {
        let a = actor(ctx)?;
        let app = app(ctx).clone();
        let (sale, catalog) = (SaleId(sale_id), CatalogId(catalog_id));
        may_follow_recap(&app, a, sale, catalog).await?;
        let scope = Scope::new(sale, catalog);
        let rx = ctx.data_unchecked::<Notifier>().subscribe();
        let first = read_recap(&app.pool, scope, false).await?;
        let seen: HashMap<OrderId, SaleOrder> = HashMap::new();
        Ok(futures::stream::unfold(
            (app, rx, Some(first), seen, false),
            move |(app, mut rx, pending, mut seen, ended)| async move {
                if ended {
                    return None;
                }
                if let Some(rows) = pending {
                    let batch = diff(&seen, &rows);
                    seen = rows.iter().map(|r| (r.order, SaleOrder::of(r))).collect();
                    return Some((Ok(batch), (app, rx, None, seen, false)));
                }
                loop {
                    if !next_wake(&mut rx).await {
                        return None;
                    }
                    match read_recap(&app.pool, scope, true).await {
                        Ok(rows) => {
                            let batch = diff(&seen, &rows);
                            if batch.is_empty() {
                                continue;
                            }
                            // Access is checked again before each batch is sent (a collaborator
                            // removed, an administrator replaced): FORBIDDEN, then the end.
                            if let Err(e) = may_follow_recap(&app, a, sale, catalog).await {
                                return Some((Err(e), (app, rx, None, seen, true)));
                            }
                            seen = rows.iter().map(|r| (r.order, SaleOrder::of(r))).collect();
                            return Some((Ok(batch), (app, rx, None, seen, false)));
                        }
                        Err(e) => {
                            tracing::warn!(error = ?e.message, "sale orders subscription: read failed");
                            continue;
                        }
                    }
                }
            },
        ))
    }
}

/// The recap of one scope; after a wake-up, once the projection has passed the log's head.
async fn read_recap(pool: &PgPool, scope: Scope, wait: bool) -> Result<Vec<CustomerRecap>> {
    let internal = |e: String| app_error(AppError::Internal(e));
    if wait {
        let head = EventLog::head(pool)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let _ = etal_projections::runtime::wait_until(pool, "order_recaps", head, PROJECTION_WAIT)
            .await;
    }
    recap_by_customer(pool, &[scope])
        .await
        .map_err(|e| internal(e.to_string()))
}

/// `GET /graphql` (and `/ws`): a websocket upgrade serves graphql-ws, anything else is plain
/// GraphQL over HTTP ([`crate::http::graphql_get`]).
pub async fn graphql_get_or_ws(State(state): State<GraphqlState>, req: Request) -> Response {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return crate::http::graphql_get.call(req, state).await;
    }
    let (mut parts, _) = req.into_parts();
    let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &state).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    // At most ETAL_MAX_WEBSOCKETS open: the permit lives as long as the socket.
    let Ok(permit) = state.websockets.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(serde_json::json!({"errors": [{
                "message": "too many open websockets; retry later",
                "extensions": {"code": "TOO_MANY_WEBSOCKETS"}
            }]})),
        )
            .into_response();
    };
    let schema = state.schema.clone();
    let jwt = state.jwt.clone();
    let init_timeout = state.ws_init_timeout;
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            use futures::{SinkExt, StreamExt};
            let (mut sink, mut stream) = socket.split();
            // graphql-ws: a client that sends no `connection_init` in time is closed with 4408.
            let first = match tokio::time::timeout(init_timeout, stream.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(_) => return,
                Err(_) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: 4408,
                            reason: "Connection initialisation timeout".into(),
                        })))
                        .await;
                    drop(permit);
                    return;
                }
            };
            let stream = futures::stream::once(async move { Ok(first) }).chain(stream);
            GraphQLWebSocket::new_with_pair(sink, stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let mut data = Data::default();
                    data.insert(principal_of(&payload, jwt.as_deref())?);
                    Ok(data)
                })
                .serve()
                .await;
            drop(permit);
        })
        .into_response()
}

/// The caller named by a `connection_init` payload (`authorization: "Bearer <token>"`, any
/// case of the key); no token: anonymous; a bad token: refused.
fn principal_of(
    payload: &serde_json::Value,
    jwt: Option<&crate::auth::JwtKey>,
) -> Result<Principal> {
    let value = payload.as_object().and_then(|m| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v)
    });
    let Some(value) = value else {
        return Ok(Principal::Anonymous);
    };
    let token = value
        .as_str()
        .and_then(|s| {
            let (scheme, token) = s.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| async_graphql::Error::new("malformed authorization"))?;
    let key = jwt.ok_or_else(|| async_graphql::Error::new("no token is accepted"))?;
    verify(key, token)
        .map(Principal::User)
        .map_err(|e| async_graphql::Error::new(e.to_string()))
}
