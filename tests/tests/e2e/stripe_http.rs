//! R-PAY-1, R-ORD-5 with Stripe as the payment provider (`ETAL_PAYMENTS=stripe`), against a
//! local fake of Stripe's API and webhooks signed as Stripe signs them: an online order creates
//! a PaymentIntent (amount in cents, EUR, the order's ids as metadata, an `Idempotency-Key`
//! from the outbox row), waits for `payment_intent.succeeded`, which is applied once; bad
//! webhooks are refused and write nothing; a refund goes through the adapter; an order never
//! paid expires, its stock comes back and the PaymentIntent is cancelled; a payment confirmed
//! before etal recorded its request is kept.

use crate::fake_stripe;
use crate::graphql_common;

use std::time::Duration;

use etal_domain::Role;
use fake_stripe::FakeStripe;
use graphql_common::{fixture, until, Api, Fixture};
use serde_json::{json, Value};

const ORDER: &str = "mutation($s: UUID!, $lines: [LineInput!]!) { placeOrder(saleId: $s, lines: $lines) { orderId order { total paid paymentState awaitingPayment { amount providerRef clientSecret expiresAt } } } }";
const READ: &str = "query($o: UUID!) { order(id: $o) { total paid refunded cancelled paymentState awaitingPayment { providerRef clientSecret failures lastFailure } } }";
const STOCK: &str = "query($p: UUID!, $x: UUID!) { stockLevel(producerId: $p, productId: $x) { ordered available } }";

async fn start(fake: &FakeStripe, extra: &[(&str, &str)]) -> Api {
    let env = fake_stripe::env(fake);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    Api::start(&all).await
}

async fn events(api: &Api) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&api.db.pool)
        .await
        .unwrap()
}

fn lines(f: &Fixture, q: i64) -> Value {
    json!([{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": q}])
}

fn succeeded(id: &str, intent: &str, order: &str, payment: &str, cents: i64) -> String {
    fake_stripe::event(
        id,
        "payment_intent.succeeded",
        json!({"id": intent, "object": "payment_intent", "amount": cents, "amount_received": cents,
               "currency": "eur", "status": "succeeded",
               "metadata": {"order_id": order, "payment_id": payment}}),
    )
}

async fn order(api: &Api, f: &Fixture, id: &str) -> Value {
    api.ok(&f.customer, READ, json!({"o": id})).await["order"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_pay_1_an_online_order_awaits_stripe_and_its_webhook_pays_it_once() {
    let fake = FakeStripe::start().await;
    let api = start(&fake, &[]).await;
    let f = fixture(&api).await;

    // 2 x 8.50: a PaymentIntent of 1700 cents; the order awaits its confirmation.
    let d = api
        .ok(
            &f.customer,
            ORDER,
            json!({"s": f.sale_id, "lines": lines(&f, 2)}),
        )
        .await;
    let order_id = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let placed = &d["placeOrder"]["order"];
    assert_eq!(placed["total"], "17.00");
    assert_eq!(placed["paid"], "0.00");
    assert_eq!(placed["paymentState"], "AWAITING_PAYMENT");
    let awaiting = &placed["awaitingPayment"];
    assert_eq!(awaiting["amount"], "17.00", "{placed}");
    let intent = awaiting["providerRef"].as_str().unwrap().to_string();
    assert_eq!(awaiting["clientSecret"], format!("{intent}_secret_fake"));
    let creates = fake.seen("/v1/payment_intents");
    assert_eq!(creates.len(), 1);
    let create = &creates[0];
    assert_eq!(create.form["amount"], "1700");
    assert_eq!(create.form["currency"], "eur");
    assert_eq!(create.form["metadata[order_id]"], order_id);
    assert_eq!(create.authorization.as_deref(), Some("Bearer sk_test_etal"));
    let key = create.idempotency_key.clone().expect("an Idempotency-Key");
    assert!(key.starts_with("etal-"), "{key}");
    let payment = create.form["metadata[payment_id]"].clone();
    // The client secret is the customer's only.
    let r = api.ok(&f.admin, READ, json!({"o": order_id})).await;
    assert_eq!(r["order"]["awaitingPayment"]["providerRef"], intent);
    assert_eq!(r["order"]["awaitingPayment"]["clientSecret"], Value::Null);

    // Bad webhooks: refused, nothing written.
    let http = reqwest::Client::new();
    let body = succeeded("evt_1", &intent, &order_id, &payment, 1700);
    let before = events(&api).await;
    let now = chrono::Utc::now().timestamp();
    for (what, sig) in [
        ("no signature", None),
        (
            "wrong secret",
            Some(fake_stripe::signature("whsec_wrong", now, &body)),
        ),
        (
            "stale",
            Some(fake_stripe::signature(
                fake_stripe::WEBHOOK_SECRET,
                now - 600,
                &body,
            )),
        ),
        ("garbled", Some("t=abc,v1=zz".to_string())),
    ] {
        let (status, answer) = fake_stripe::post_webhook(&http, &api.base, body.clone(), sig).await;
        assert_eq!(status, 400, "{what}: {answer}");
    }
    // The signed body changed after signing.
    let sig = fake_stripe::signature(fake_stripe::WEBHOOK_SECRET, now, &body);
    let tampered = body.replace("1700", "1");
    let (status, _) = fake_stripe::post_webhook(&http, &api.base, tampered, Some(sig)).await;
    assert_eq!(status, 400);
    // 10 MB: refused before it is read.
    let huge = format!(
        "{{\"id\": \"evt_big\", \"pad\": \"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let sig = fake_stripe::signature(fake_stripe::WEBHOOK_SECRET, now, &huge);
    let res = http
        .post(format!("{}/webhooks/stripe", api.base))
        .header("Stripe-Signature", sig)
        .body(huge)
        .send()
        .await;
    // 413, or the connection closed while the client still wrote the body: never processed.
    if let Ok(res) = res {
        assert_eq!(res.status().as_u16(), 413);
    }
    assert_eq!(events(&api).await, before, "refused webhooks write nothing");
    assert_eq!(order(&api, &f, &order_id).await["paid"], "0.00");

    // Signed right: the payment is recorded, once however often it comes.
    let (status, answer) = fake_stripe::send(&http, &api.base, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "applied", "{answer}");
    let paid = order(&api, &f, &order_id).await;
    assert_eq!(
        (&paid["paid"], &paid["awaitingPayment"]),
        (&json!("17.00"), &Value::Null)
    );
    let after = events(&api).await;
    for _ in 0..3 {
        let (status, _) = fake_stripe::send(&http, &api.base, body.clone()).await;
        assert_eq!(status, 200);
    }
    // Another event id about the same PaymentIntent (Stripe may send several): nothing new.
    let (status, _) = fake_stripe::send(
        &http,
        &api.base,
        succeeded("evt_1b", &intent, &order_id, &payment, 1700),
    )
    .await;
    assert_eq!(status, 200);
    // Types etal does not use are acknowledged.
    let (status, answer) = fake_stripe::send(
        &http,
        &api.base,
        fake_stripe::event("evt_2", "customer.created", json!({"id": "cus_1"})),
    )
    .await;
    assert_eq!((status, &answer["received"]), (200, &json!(true)));
    assert_eq!(events(&api).await, after, "a duplicate changes nothing");
    assert_eq!(order(&api, &f, &order_id).await["paid"], "17.00");

    // The producer cuts a unit: 8.50 refunded through Stripe, with its own key; the first
    // attempt meets a Stripe error and is retried with the same key.
    fake.fail_next("/v1/refunds", 1);
    api.ok(
        &f.producer,
        "mutation($o: UUID!) { adjustQuantity(orderId: $o, line: 0, quantity: 1) { position } }",
        json!({"o": order_id}),
    )
    .await;
    let refunded = until("the refund", Duration::from_secs(30), || async {
        let o = order(&api, &f, &order_id).await;
        if o["refunded"] == "8.50" {
            Ok(o)
        } else {
            Err(o)
        }
    })
    .await;
    assert_eq!(refunded["total"], "8.50");
    let refunds = fake.seen("/v1/refunds");
    assert_eq!(refunds.len(), 2, "one failure, then the retry");
    assert_eq!(refunds[1].form["payment_intent"], intent);
    assert_eq!(refunds[1].form["amount"], "850");
    assert_eq!(refunds[0].idempotency_key, refunds[1].idempotency_key);
    assert_ne!(refunds[1].idempotency_key.as_deref(), Some(key.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_pay_1_an_order_never_paid_expires_and_its_stock_comes_back() {
    let fake = FakeStripe::start().await;
    let api = start(
        &fake,
        &[
            // Long enough for the checks before the expiry on a loaded machine (2 s was not
            // under the full suite on 2 cores).
            ("ETAL_PAYMENT_TIMEOUT_SECONDS", "8"),
            ("ETAL_SCHEDULER_INTERVAL_MS", "200"),
            ("ETAL_OUTBOX_INTERVAL_MS", "200"),
        ],
    )
    .await;
    let f = fixture(&api).await;
    let stock = || async {
        api.ok(
            &f.producer,
            STOCK,
            json!({"p": f.producer_id, "x": f.product_id}),
        )
        .await["stockLevel"]
            .clone()
    };
    let d = api
        .ok(
            &f.customer,
            ORDER,
            json!({"s": f.sale_id, "lines": lines(&f, 3)}),
        )
        .await;
    let order_id = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let intent = d["placeOrder"]["order"]["awaitingPayment"]["providerRef"]
        .as_str()
        .unwrap()
        .to_string();
    graphql_common::caught_up(&api).await;
    assert_eq!(stock().await, json!({"ordered": 3, "available": 7}));
    // A declined card: the order still waits, the customer may try again.
    let payment = fake.seen("/v1/payment_intents")[0].form["metadata[payment_id]"].clone();
    let (status, _) = fake_stripe::send(
        &reqwest::Client::new(),
        &api.base,
        fake_stripe::event(
            "evt_failed",
            "payment_intent.payment_failed",
            json!({"id": intent, "object": "payment_intent",
                   "last_payment_error": {"message": "Your card was declined."},
                   "metadata": {"order_id": order_id, "payment_id": payment}}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let o = order(&api, &f, &order_id).await;
    assert_eq!(o["awaitingPayment"]["failures"], 1);
    assert_eq!(
        o["awaitingPayment"]["lastFailure"],
        "Your card was declined."
    );
    assert_eq!(o["cancelled"], false);

    // Past its 8 s: cancelled, the stock released, the PaymentIntent cancelled at Stripe.
    let expired = until("the expiry", Duration::from_secs(30), || async {
        let o = order(&api, &f, &order_id).await;
        if o["cancelled"] == true {
            Ok(o)
        } else {
            Err(o)
        }
    })
    .await;
    assert_eq!(expired["awaitingPayment"], Value::Null);
    graphql_common::caught_up(&api).await;
    assert_eq!(stock().await, json!({"ordered": 0, "available": 10}));
    until(
        "the PaymentIntent's cancellation",
        Duration::from_secs(30),
        || async {
            let seen = fake.seen(&format!("/v1/payment_intents/{intent}/cancel"));
            if seen.len() == 1 {
                Ok(())
            } else {
                Err(json!(seen.len()))
            }
        },
    )
    .await;

    // The customer confirmed anyway, just before the cancellation reached Stripe: the payment
    // is recorded and owed back at once, through Stripe.
    let (status, answer) = fake_stripe::send(
        &reqwest::Client::new(),
        &api.base,
        succeeded("evt_late", &intent, &order_id, &payment, 2550),
    )
    .await;
    assert_eq!(
        (status, &answer["outcome"]),
        (200, &json!("applied")),
        "{answer}"
    );
    let o = until(
        "the late payment's refund",
        Duration::from_secs(30),
        || async {
            let o = order(&api, &f, &order_id).await;
            if o["refunded"] == "25.50" {
                Ok(o)
            } else {
                Err(o)
            }
        },
    )
    .await;
    assert_eq!(o["paid"], "25.50");
    let refunds = fake.seen("/v1/refunds");
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].form["amount"], "2550");
    // Money is conserved.
    let auditor = api.who(Role::Auditor);
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive()
        .to_string();
    graphql_common::caught_up(&api).await;
    let c = api
        .ok(
            &auditor,
            "query($d: Date!) { ledgerBalances(asOf: $d) { conservation { payments refunds holds } } }",
            json!({"d": today}),
        )
        .await;
    assert_eq!(
        c["ledgerBalances"]["conservation"],
        json!({"payments": "25.50", "refunds": "25.50", "holds": true})
    );
}

/// The customer's confirmation can reach etal before Stripe's answer to the PaymentIntent's
/// creation: the payment is recorded from the webhook, and the late answer adds nothing to wait
/// for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_pay_1_a_payment_confirmed_before_its_request_was_recorded_is_kept() {
    let fake = FakeStripe::start().await;
    let api = start(&fake, &[]).await;
    let f = fixture(&api).await;
    let release = fake.hold_creates();
    let placing = {
        let (base, token, sale, lines) = (
            api.base.clone(),
            f.customer.token.clone(),
            f.sale_id.clone(),
            lines(&f, 1),
        );
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/graphql"))
                .bearer_auth(token)
                .json(&json!({"query": ORDER, "variables": {"s": sale, "lines": lines}}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let create = until(
        "the PaymentIntent's creation",
        Duration::from_secs(30),
        || async {
            match fake.seen("/v1/payment_intents").first() {
                Some(s) => Ok(s.clone()),
                None => Err(Value::Null),
            }
        },
    )
    .await;
    let (order_id, payment) = (
        create.form["metadata[order_id]"].clone(),
        create.form["metadata[payment_id]"].clone(),
    );
    // Stripe numbers its objects from 1: the first PaymentIntent will be pi_00000001.
    let (status, answer) = fake_stripe::send(
        &reqwest::Client::new(),
        &api.base,
        succeeded("evt_early", "pi_00000001", &order_id, &payment, 850),
    )
    .await;
    assert_eq!(
        (status, &answer["outcome"]),
        (200, &json!("applied")),
        "{answer}"
    );
    release.notify_one();
    let placed = placing.await.unwrap();
    assert!(placed.get("errors").is_none(), "{placed}");
    let o = order(&api, &f, &order_id).await;
    assert_eq!(
        (&o["paid"], &o["awaitingPayment"], &o["cancelled"]),
        (&json!("8.50"), &Value::Null, &json!(false))
    );
}

/// R-ORD-5, R-PAY-1: a customer who cancels an order still awaiting payment gets its
/// PaymentIntent cancelled at Stripe, so the cancelled order cannot be paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_pay_1_cancelling_an_order_awaiting_payment_cancels_its_payment_intent() {
    let fake = FakeStripe::start().await;
    let api = start(&fake, &[("ETAL_OUTBOX_INTERVAL_MS", "200")]).await;
    let f = fixture(&api).await;
    let d = api
        .ok(
            &f.customer,
            ORDER,
            json!({"s": f.sale_id, "lines": lines(&f, 2)}),
        )
        .await;
    let order_id = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let intent = d["placeOrder"]["order"]["awaitingPayment"]["providerRef"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &f.customer,
        "mutation($o: UUID!) { cancelOrder(orderId: $o) { orderId } }",
        json!({"o": order_id}),
    )
    .await;
    let o = order(&api, &f, &order_id).await;
    assert_eq!(
        (&o["cancelled"], &o["awaitingPayment"]),
        (&json!(true), &Value::Null)
    );
    until(
        "the PaymentIntent's cancellation",
        Duration::from_secs(30),
        || async {
            let seen = fake.seen(&format!("/v1/payment_intents/{intent}/cancel"));
            if seen.len() == 1 {
                Ok(())
            } else {
                Err(json!(seen.len()))
            }
        },
    )
    .await;
    let cancel = &fake.seen(&format!("/v1/payment_intents/{intent}/cancel"))[0];
    assert_eq!(cancel.form["cancellation_reason"], "abandoned");
    assert!(cancel.idempotency_key.is_some());
}
