//! GraphQL subscriptions over a real websocket (graphql-ws, `graphql-transport-ws`): the stock
//! level of a product and a sale's orders follow an order placed through the API; a customer is
//! refused, an anonymous connection gets no data, a bad token is turned away.

use crate::graphql_common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use graphql_common::{fixture, Api, PLACE_ORDER};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const STOCK: &str = "subscription($p: UUID!, $x: UUID!) { stockLevel(producerId: $p, productId: $x) { real ordered available } }";
const ORDERS: &str = "subscription($s: UUID!, $c: UUID!) { saleOrders(saleId: $s, catalogId: $c) { orderId number customer amount paymentStatus quantity removed } }";

async fn connect(api: &Api, path: &str) -> Ws {
    let url = format!("{}{path}", api.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert_eq!(
        res.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("graphql-transport-ws")
    );
    ws
}

async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message (pings answered), or None when the socket closes or nothing comes.
async fn recv(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match msg {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "ping" {
                    send(ws, json!({"type": "pong"})).await;
                    continue;
                }
                return Some(v);
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Connects and initializes with `init` as the payload; returns the socket once acknowledged.
async fn init(api: &Api, path: &str, init: Value) -> Ws {
    let mut ws = connect(api, path).await;
    send(&mut ws, json!({"type": "connection_init", "payload": init})).await;
    let ack = recv(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(
        ack.as_ref().map(|a| &a["type"]),
        Some(&json!("connection_ack")),
        "{ack:?}"
    );
    ws
}

/// The first `next` or `error` message for subscription `id`.
async fn answer_for(ws: &mut Ws, id: &str) -> Value {
    loop {
        let m = recv(ws, Duration::from_secs(10)).await.expect("an answer");
        if m["id"] == id && m["type"] != "complete" {
            return m;
        }
    }
}

fn bearer(token: &str) -> Value {
    json!({"authorization": format!("Bearer {token}")})
}

/// The next `next` payload for subscription `id`.
async fn next_for(ws: &mut Ws, id: &str, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = recv(ws, left)
            .await
            .unwrap_or_else(|| panic!("no message for subscription {id} in {wait:?}"));
        if m["id"] == id {
            assert_eq!(m["type"], "next", "{m}");
            return m["payload"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_orders_over_graphql_ws() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;

    // The producer follows the honey's stock and the sale's orders for its catalog.
    let mut ws = init(&api, "/graphql", bearer(&f.producer.token)).await;
    send(
        &mut ws,
        json!({"id": "stock", "type": "subscribe", "payload": {"query": STOCK, "variables": {"p": f.producer_id, "x": f.product_id}}}),
    )
    .await;
    let first = next_for(&mut ws, "stock", Duration::from_secs(10)).await;
    assert_eq!(
        first["data"]["stockLevel"],
        json!({"real": 10, "ordered": 0, "available": 10}),
        "{first}"
    );
    send(
        &mut ws,
        json!({"id": "orders", "type": "subscribe", "payload": {"query": ORDERS, "variables": {"s": f.sale_id, "c": f.catalog_id}}}),
    )
    .await;
    let first = next_for(&mut ws, "orders", Duration::from_secs(10)).await;
    assert_eq!(first["data"]["saleOrders"], json!([]), "{first}");

    // The market administrator follows the same recap over /ws.
    let mut admin = init(&api, "/ws", bearer(&f.admin.token)).await;
    send(
        &mut admin,
        json!({"id": "a", "type": "subscribe", "payload": {"query": ORDERS, "variables": {"s": f.sale_id, "c": f.catalog_id}}}),
    )
    .await;
    let first = next_for(&mut admin, "a", Duration::from_secs(10)).await;
    assert_eq!(first["data"]["saleOrders"], json!([]), "{first}");

    // The customer orders 3 pots: the new level arrives within a few seconds.
    let placed_at = Instant::now();
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 3}], "k": "ws-1"}),
        )
        .await;
    let order_id = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let mutation_took = placed_at.elapsed();
    let level = next_for(&mut ws, "stock", Duration::from_secs(15)).await;
    let stock_latency = placed_at.elapsed();
    assert_eq!(
        level["data"]["stockLevel"],
        json!({"real": 10, "ordered": 3, "available": 7}),
        "{level}"
    );
    let orders = next_for(&mut ws, "orders", Duration::from_secs(15)).await;
    let orders_latency = placed_at.elapsed();
    let rows = orders["data"]["saleOrders"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{orders}");
    assert_eq!(rows[0]["orderId"], order_id.as_str());
    assert_eq!(rows[0]["amount"], "25.50");
    assert_eq!(rows[0]["quantity"], 3);
    assert_eq!(rows[0]["removed"], false);
    let admin_rows = next_for(&mut admin, "a", Duration::from_secs(15)).await;
    assert_eq!(
        admin_rows["data"]["saleOrders"][0]["orderId"],
        order_id.as_str()
    );
    eprintln!(
        "placeOrder {mutation_took:?}; stock level received after {stock_latency:?}, sale orders after {orders_latency:?}"
    );

    // Complete: the server stops the subscription.
    send(&mut ws, json!({"id": "stock", "type": "complete"})).await;

    // A customer is refused.
    let mut cust = init(&api, "/graphql", bearer(&f.customer.token)).await;
    send(
        &mut cust,
        json!({"id": "c", "type": "subscribe", "payload": {"query": STOCK, "variables": {"p": f.producer_id, "x": f.product_id}}}),
    )
    .await;
    let m = answer_for(&mut cust, "c").await;
    assert!(m.to_string().contains("FORBIDDEN"), "{m}");
    assert!(
        m["payload"]["data"].is_null() || m["payload"].is_array(),
        "{m}"
    );
    send(
        &mut cust,
        json!({"id": "c2", "type": "subscribe", "payload": {"query": ORDERS, "variables": {"s": f.sale_id, "c": f.catalog_id}}}),
    )
    .await;
    let m = answer_for(&mut cust, "c2").await;
    assert!(m.to_string().contains("FORBIDDEN"), "{m}");

    // An anonymous connection gets no data.
    let mut anon = init(&api, "/graphql", json!({})).await;
    send(
        &mut anon,
        json!({"id": "x", "type": "subscribe", "payload": {"query": STOCK, "variables": {"p": f.producer_id, "x": f.product_id}}}),
    )
    .await;
    let m = answer_for(&mut anon, "x").await;
    assert!(m.to_string().contains("UNAUTHENTICATED"), "{m}");
    assert!(m["payload"]["data"].is_null(), "{m}");

    // A bad token: the connection is closed without an acknowledgement.
    let mut bad = connect(&api, "/graphql").await;
    send(
        &mut bad,
        json!({"type": "connection_init", "payload": bearer("not-a-token")}),
    )
    .await;
    assert_eq!(recv(&mut bad, Duration::from_secs(10)).await, None);

    // Plain GET /graphql still answers queries.
    let res = api
        .http
        .get(format!("{}/graphql?query={{__typename}}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

/// Every message of subscriptions `ids` until each has completed (or `wait` passed), by id.
async fn until_complete(
    ws: &mut Ws,
    ids: &[&str],
    wait: Duration,
) -> std::collections::HashMap<String, Vec<Value>> {
    let deadline = Instant::now() + wait;
    let mut seen: std::collections::HashMap<String, Vec<Value>> = Default::default();
    let complete = |seen: &std::collections::HashMap<String, Vec<Value>>| {
        ids.iter().all(|id| {
            seen.get(*id)
                .is_some_and(|m| m.iter().any(|m| m["type"] == "complete"))
        })
    };
    while !complete(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(m) = recv(ws, left).await else {
            break;
        };
        if let Some(id) = m["id"].as_str() {
            seen.entry(id.to_string()).or_default().push(m);
        }
    }
    seen
}

/// R-ACC-2: access is checked again before each change is sent. A collaborator follows the
/// stock and the orders, the owner revokes their access, an order is placed: the collaborator
/// gets FORBIDDEN on both subscriptions, then their end, and no data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_collaborator_stops_receiving() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let helper = api.who(etal_domain::Role::Producer);
    api.ok(
        &f.producer,
        "mutation($p: UUID!, $u: UUID!) { grantAccess(producerId: $p, userId: $u) { producerId } }",
        json!({"p": f.producer_id, "u": helper.user.0}),
    )
    .await;
    let mut ws = init(&api, "/graphql", bearer(&helper.token)).await;
    send(
        &mut ws,
        json!({"id": "stock", "type": "subscribe", "payload": {"query": STOCK, "variables": {"p": f.producer_id, "x": f.product_id}}}),
    )
    .await;
    let first = next_for(&mut ws, "stock", Duration::from_secs(10)).await;
    assert_eq!(first["data"]["stockLevel"]["available"], 10, "{first}");
    send(
        &mut ws,
        json!({"id": "orders", "type": "subscribe", "payload": {"query": ORDERS, "variables": {"s": f.sale_id, "c": f.catalog_id}}}),
    )
    .await;
    let first = next_for(&mut ws, "orders", Duration::from_secs(10)).await;
    assert_eq!(first["data"]["saleOrders"], json!([]), "{first}");

    api.ok(
        &f.producer,
        "mutation($p: UUID!, $u: UUID!) { revokeAccess(producerId: $p, userId: $u) { producerId } }",
        json!({"p": f.producer_id, "u": helper.user.0}),
    )
    .await;
    api.ok(
        &f.customer,
        PLACE_ORDER,
        json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}], "k": "revoked-1"}),
    )
    .await;
    let all = until_complete(&mut ws, &["stock", "orders"], Duration::from_secs(10)).await;
    for id in ["stock", "orders"] {
        let msgs = all.get(id).cloned().unwrap_or_default();
        assert!(
            msgs.iter().all(|m| m["type"] != "next"
                || m["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"),
            "{id}: data after the revocation: {msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| {
                m["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
                    || m["payload"][0]["extensions"]["code"] == "FORBIDDEN"
            }),
            "{id}: no FORBIDDEN: {msgs:?}"
        );
        assert_eq!(
            msgs.last().map(|m| &m["type"]),
            Some(&json!("complete")),
            "{id}: {msgs:?}"
        );
    }
}

/// R-SAL-5, R-NOT-2: `recapReady(producerId)` tells an open app when a catalog's recap is ready
/// at the close of its order period; another producer may not follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recap_ready_arrives_at_the_close_of_the_period() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    api.ok(
        &f.customer,
        PLACE_ORDER,
        json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}]}),
    )
    .await;
    let q = "subscription($p: UUID!) { recapReady(producerId: $p) { saleId catalogId orders } }";
    let stranger = api.who(etal_domain::Role::Producer);
    let mut other = init(&api, "/graphql", bearer(&stranger.token)).await;
    send(
        &mut other,
        json!({"id": "r", "type": "subscribe", "payload": {"query": q, "variables": {"p": f.producer_id}}}),
    )
    .await;
    let denied = recv(&mut other, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(
        denied["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{denied}"
    );
    let mut ws = init(&api, "/graphql", bearer(&f.producer.token)).await;
    send(
        &mut ws,
        json!({"id": "r", "type": "subscribe", "payload": {"query": q, "variables": {"p": f.producer_id}}}),
    )
    .await;
    // The period closes in 2 s.
    let now = chrono::Utc::now();
    api.ok(
        &f.producer,
        "mutation($s: UUID!, $c: UUID!, $o: DateTime!, $cl: DateTime!) { overridePeriod(saleId: $s, catalogId: $c, opensAt: $o, closesAt: $cl) { position } }",
        json!({"s": f.sale_id, "c": f.catalog_id, "o": (now - chrono::Duration::hours(1)).to_rfc3339(), "cl": (now + chrono::Duration::seconds(2)).to_rfc3339()}),
    )
    .await;
    let ready = next_for(&mut ws, "r", Duration::from_secs(20)).await;
    assert_eq!(
        ready["data"]["recapReady"],
        json!({"saleId": f.sale_id, "catalogId": f.catalog_id, "orders": 1}),
        "{ready}"
    );
}
