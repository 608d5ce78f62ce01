//! A local fake of the Stripe API endpoints etal calls, speaking their documented wire format
//! (form-encoded requests with `Authorization: Bearer` and `Idempotency-Key`; JSON objects back,
//! or `{"error": {...}}` with a 4xx/5xx), and a signer of webhooks as Stripe signs them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    pub form: HashMap<String, String>,
}

#[derive(Default)]
struct Inner {
    seen: Vec<Seen>,
    /// Idempotency key -> the first answer (Stripe answers a replayed key with it).
    answers: HashMap<String, (u16, Value)>,
    /// The next N calls of a path answer 500.
    fail_next: HashMap<String, u32>,
    counter: u32,
    /// A create of a PaymentIntent waits for this to be notified (when set).
    hold_creates: Option<Arc<tokio::sync::Notify>>,
}

#[derive(Clone, Default)]
pub struct FakeStripe {
    inner: Arc<Mutex<Inner>>,
    pub base: String,
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let mut fake = FakeStripe::default();
        let app = Router::new()
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
            .route("/v1/refunds", post(create_refund))
            .route("/v1/transfers", post(create_transfer))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        fake
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.inner
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| {
                s.path == path
                    || (path.ends_with('*') && s.path.starts_with(&path[..path.len() - 1]))
            })
            .cloned()
            .collect()
    }

    /// The next `n` calls of `path` fail with a 500 (after being seen).
    pub fn fail_next(&self, path: &str, n: u32) {
        self.inner
            .lock()
            .unwrap()
            .fail_next
            .insert(path.to_string(), n);
    }

    /// PaymentIntent creates wait until the returned handle is notified.
    pub fn hold_creates(&self) -> Arc<tokio::sync::Notify> {
        let n = Arc::new(tokio::sync::Notify::new());
        self.inner.lock().unwrap().hold_creates = Some(n.clone());
        n
    }

    fn record(
        &self,
        path: String,
        headers: &HeaderMap,
        form: HashMap<String, String>,
    ) -> Option<Response> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let key = header("idempotency-key");
        let mut inner = self.inner.lock().unwrap();
        inner.seen.push(Seen {
            path: path.clone(),
            idempotency_key: key.clone(),
            authorization: header("authorization"),
            form,
        });
        if header("authorization").as_deref() != Some("Bearer sk_test_etal") {
            return Some(error(
                401,
                "invalid_request_error",
                "Invalid API Key provided",
            ));
        }
        if let Some(n) = inner.fail_next.get_mut(&path).filter(|n| **n > 0) {
            *n -= 1;
            return Some(error(
                500,
                "api_error",
                "Something went wrong on Stripe's end.",
            ));
        }
        if let Some((status, body)) = key.and_then(|k| inner.answers.get(&k).cloned()) {
            return Some((StatusCode::from_u16(status).unwrap(), Json(body)).into_response());
        }
        None
    }

    fn answer(&self, headers: &HeaderMap, body: Value) -> Response {
        let mut inner = self.inner.lock().unwrap();
        if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            inner.answers.insert(k.to_string(), (200, body.clone()));
        }
        (StatusCode::OK, Json(body)).into_response()
    }

    fn next_id(&self, prefix: &str) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.counter += 1;
        format!("{prefix}_{:08}", inner.counter)
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({ "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

async fn create_intent(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = fake.record("/v1/payment_intents".into(), &headers, form.clone()) {
        return r;
    }
    let hold = fake.inner.lock().unwrap().hold_creates.clone();
    if let Some(n) = hold {
        n.notified().await;
    }
    let id = fake.next_id("pi");
    let body = json!({
        "id": id,
        "object": "payment_intent",
        "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        "currency": form.get("currency"),
        "status": "requires_payment_method",
        "client_secret": format!("{id}_secret_fake"),
        "metadata": {
            "order_id": form.get("metadata[order_id]"),
            "payment_id": form.get("metadata[payment_id]"),
        },
    });
    fake.answer(&headers, body)
}

async fn cancel_intent(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = fake.record(format!("/v1/payment_intents/{id}/cancel"), &headers, form) {
        return r;
    }
    fake.answer(
        &headers,
        json!({ "id": id, "object": "payment_intent", "status": "canceled" }),
    )
}

async fn create_refund(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = fake.record("/v1/refunds".into(), &headers, form.clone()) {
        return r;
    }
    let id = fake.next_id("re");
    fake.answer(
        &headers,
        json!({ "id": id, "object": "refund", "status": "succeeded",
                "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()),
                "payment_intent": form.get("payment_intent") }),
    )
}

async fn create_transfer(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = fake.record("/v1/transfers".into(), &headers, form.clone()) {
        return r;
    }
    let id = fake.next_id("tr");
    fake.answer(
        &headers,
        json!({ "id": id, "object": "transfer",
                "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()),
                "destination": form.get("destination") }),
    )
}

/// The webhook signing secret the tests configure.
pub const WEBHOOK_SECRET: &str = "whsec_etal_test";

/// A `Stripe-Signature` header for `body` at unix time `t`, as Stripe computes it.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Stripe event of `kind` about `object`.
pub fn event(id: &str, kind: &str, object: Value) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": kind,
        "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(),
        "data": { "object": object },
    })
    .to_string()
}

/// POSTs a webhook to etal with the given signature header (None: no header).
pub async fn post_webhook(
    http: &reqwest::Client,
    base: &str,
    body: String,
    signature: Option<String>,
) -> (u16, Value) {
    let mut req = http
        .post(format!("{base}/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = signature {
        req = req.header("Stripe-Signature", s);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A webhook signed now with the tests' secret.
pub async fn send(http: &reqwest::Client, base: &str, body: String) -> (u16, Value) {
    let sig = signature(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    post_webhook(http, base, body, Some(sig)).await
}

/// The environment that makes `etal serve` use this fake.
pub fn env(fake: &FakeStripe) -> Vec<(&'static str, String)> {
    vec![
        ("ETAL_PAYMENTS", "stripe".to_string()),
        ("ETAL_STRIPE_API_BASE", fake.base.clone()),
        ("ETAL_STRIPE_SECRET_KEY", "sk_test_etal".to_string()),
        // Two secrets, as while one is rolled over: either signs.
        (
            "ETAL_STRIPE_WEBHOOK_SECRET",
            format!("whsec_previous,{WEBHOOK_SECRET}"),
        ),
    ]
}
