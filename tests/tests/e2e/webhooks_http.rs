//! Webhooks over HTTP against `etal serve`: a producer registers an endpoint (a local HTTP
//! receiver, allowed by `ETAL_WEBHOOKS_ALLOW_INSECURE=true`); its order events are POSTed signed
//! (HMAC-SHA256 of `t.body` with the secret shown once); a receiver answering 500 three times
//! gets the first delivery on the fourth attempt, and the deliveries of the endpoint keep the
//! log's order; deliveries are listed and replayed. Without that setting, a URL that is not
//! https:// or not a public address is refused with a coded error.

use crate::graphql_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use etal_domain::Role;
use graphql_common::{code, fixture, until, Api, PLACE_ORDER};
use serde_json::{json, Value};

const REGISTER: &str = "mutation($p: UUID, $m: UUID, $u: String!, $t: [String!]!) { registerWebhook(producerId: $p, marketId: $m, url: $u, eventTypes: $t) { secret endpoint { endpointId url enabled eventTypes } } }";

/// (signature header, body) of each request received.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Receiver {
    seen: Seen,
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let sig = headers
        .get("etal-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut seen = r.seen.lock().unwrap();
    seen.push((sig, body.to_vec()));
    if seen.len() <= 3 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_in_order_and_replayed() {
    let api = Api::start(&[
        ("ETAL_WEBHOOKS_ALLOW_INSECURE", "true"),
        ("ETAL_NOTIFY_INTERVAL_MS", "100"),
    ])
    .await;
    let f = fixture(&api).await;
    let (rx, url) = receiver().await;
    // Another producer does not register for this one; an unknown event type is refused.
    let other = api.who(Role::Producer);
    let r = api
        .call(
            &other,
            REGISTER,
            json!({"p": f.producer_id, "u": url, "t": ["OrderPlaced"]}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"), "{r}");
    let r = api
        .call(
            &f.producer,
            REGISTER,
            json!({"p": f.producer_id, "u": url, "t": ["StockSet"]}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("BAD_USER_INPUT"), "{r}");
    let d = api
        .ok(
            &f.producer,
            REGISTER,
            json!({"p": f.producer_id, "u": url, "t": ["OrderPlaced", "QuantityAdjusted"]}),
        )
        .await;
    let secret = d["registerWebhook"]["secret"].as_str().unwrap().to_string();
    let endpoint = d["registerWebhook"]["endpoint"]["endpointId"].clone();
    assert!(secret.starts_with("whsec_"));
    let listed = api
        .ok(
            &f.producer,
            "query($p: UUID) { webhookEndpoints(producerId: $p) { endpointId url enabled } }",
            json!({"p": f.producer_id}),
        )
        .await;
    assert_eq!(
        listed["webhookEndpoints"],
        json!([{"endpointId": endpoint, "url": url, "enabled": true}])
    );

    // Three events: the order placed, then two cuts.
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 3}]}),
        )
        .await;
    let order = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    for q in [2, 1] {
        api.ok(
            &f.producer,
            "mutation($o: UUID!, $q: Int!) { adjustQuantity(orderId: $o, line: 0, quantity: $q) { position } }",
            json!({"o": order, "q": q}),
        )
        .await;
    }
    let seen = until("three deliveries", Duration::from_secs(60), || async {
        let seen = rx.seen.lock().unwrap().clone();
        (seen.len() >= 6)
            .then_some(seen.clone())
            .ok_or(json!(seen.len()))
    })
    .await;
    let bodies: Vec<Value> = seen
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect();
    // The first event four times (500, 500, 500, 200), then the next ones once each, in order.
    let ids: Vec<&str> = bodies.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert!(ids[..4].iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(
        bodies
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect::<Vec<_>>()[3..],
        ["OrderPlaced", "QuantityAdjusted", "QuantityAdjusted"]
    );
    let sequence = |id: &str| -> i64 { id.rsplit(':').next().unwrap().parse().unwrap() };
    assert!(
        sequence(ids[3]) < sequence(ids[4]) && sequence(ids[4]) < sequence(ids[5]),
        "the log's order: {ids:?}"
    );
    assert_eq!(bodies[3]["aggregateId"], order.as_str());
    // Every request is signed with the secret.
    for (sig, body) in &seen {
        let t: i64 = sig
            .split(',')
            .find_map(|p| p.strip_prefix("t="))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            *sig,
            etal_app::webhooks::signature(&secret, t, body),
            "{sig}"
        );
    }
    let deliveries = api
        .ok(
            &f.producer,
            "query($e: UUID!) { webhookDeliveries(endpointId: $e) { eventId eventType status attempts lastStatus } }",
            json!({"e": endpoint}),
        )
        .await;
    let list = deliveries["webhookDeliveries"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let first = list.last().unwrap();
    assert_eq!(
        (&first["status"], &first["attempts"], &first["lastStatus"]),
        (&json!("delivered"), &json!(4), &json!(200)),
        "{deliveries}"
    );
    // A replay sends the first event again.
    api.ok(
        &f.producer,
        "mutation($e: UUID!, $i: String!) { replayWebhook(endpointId: $e, eventId: $i) }",
        json!({"e": endpoint, "i": ids[0]}),
    )
    .await;
    until("the replay", Duration::from_secs(30), || async {
        let seen = rx.seen.lock().unwrap().clone();
        (seen.len() == 7).then_some(()).ok_or(json!(seen.len()))
    })
    .await;
    let last: Value = serde_json::from_slice(&rx.seen.lock().unwrap()[6].1).unwrap();
    assert_eq!(last["id"], ids[0]);
}

/// Bad input: a URL that is not https://, a loopback or private address (SSRF), a URL too long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_must_be_https_and_public() {
    let api = Api::start(&[]).await;
    let producer = api.who(Role::Producer);
    let d = api
        .ok(&producer, graphql_common::OPEN_ACCOUNT, json!({"k": "w"}))
        .await;
    let p = d["openAccount"]["producerId"].clone();
    let long = format!("https://example.org/{}", "a".repeat(3_000));
    for (url, expected) in [
        ("http://example.org/hook", "WEBHOOK_URL_NOT_HTTPS"),
        ("https://127.0.0.1/hook", "WEBHOOK_URL_NOT_PUBLIC"),
        ("https://10.1.2.3/hook", "WEBHOOK_URL_NOT_PUBLIC"),
        ("https://192.168.1.10/hook", "WEBHOOK_URL_NOT_PUBLIC"),
        (
            "https://169.254.169.254/latest/meta-data",
            "WEBHOOK_URL_NOT_PUBLIC",
        ),
        ("https://[::1]/hook", "WEBHOOK_URL_NOT_PUBLIC"),
        ("https://localhost/hook", "WEBHOOK_URL_NOT_PUBLIC"),
        ("not a url", "WEBHOOK_URL_INVALID"),
        (long.as_str(), "BAD_USER_INPUT"),
    ] {
        let r = api
            .call(
                &producer,
                REGISTER,
                json!({"p": p, "u": url, "t": ["OrderPlaced"]}),
            )
            .await;
        assert_eq!(
            code(&r).as_deref(),
            Some(expected),
            "{}: {r}",
            &url[..url.len().min(60)]
        );
    }
    // A 2 MB variable: refused whole, with a code.
    let huge = format!("https://example.org/{}", "a".repeat(2_000_000));
    let (status, body) = api
        .raw(
            Some(&producer.token),
            REGISTER,
            json!({"p": p, "u": huge, "t": ["OrderPlaced"]}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(code(&body).as_deref(), Some("PAYLOAD_TOO_LARGE"), "{body}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing registered");
}
