//! The main flow over HTTP with bearer tokens: account, products, catalog, market, sales,
//! participation, order, adjustment, weighing, payments, reads, validation, idempotency.

use crate::graphql_common;

use graphql_common::{code, fixture, Api, PLACE_ORDER};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_flow_runs_over_http() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;

    // R-ORD-1: the customer orders 3 pots of honey and a chicken (estimated 1.5 kg).
    let lines = json!([
        {"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 3},
        {"catalogId": f.catalog_id, "productId": f.chicken_id, "quantity": 1}
    ]);
    let started = std::time::Instant::now();
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": lines, "k": "order-1"}),
        )
        .await;
    eprintln!("placeOrder took {:?}", started.elapsed());
    let placed = &d["placeOrder"];
    let order_id = placed["orderId"].as_str().unwrap().to_string();
    assert!(placed["position"].as_str().unwrap().contains('/'));
    // 3 x 8.50 + 1.5 kg x 12.00 = 25.50 + 18.00
    assert_eq!(placed["order"]["total"], "43.50");
    assert_eq!(placed["order"]["paid"], "43.50");
    let number = placed["order"]["number"].as_str().unwrap().to_string();

    // Idempotency: the same key returns the same order and writes nothing new.
    let again = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": lines, "k": "order-1"}),
        )
        .await;
    assert_eq!(again["placeOrder"]["orderId"], order_id.as_str());
    // The same key for another request: CONFLICT.
    let other = api
        .call(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}], "k": "order-1"}),
        )
        .await;
    assert_eq!(code(&other).as_deref(), Some("CONFLICT"), "{other}");

    // Stock: 3 of 10 ordered.
    let stock_q = "query($p: UUID!, $x: UUID!) { stockLevel(producerId: $p, productId: $x) { real ordered available } }";
    let d = api
        .ok(
            &f.producer,
            stock_q,
            json!({"p": f.producer_id, "x": f.product_id}),
        )
        .await;
    assert_eq!(
        d["stockLevel"],
        json!({"real": 10, "ordered": 3, "available": 7})
    );

    // R-STK-3 inside ORDER_REFUSED: another customer asks for 8 of the 7 left.
    let other_customer = api.who(etal_domain::Role::Customer);
    let refused = api
        .call(
            &other_customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 8}]}),
        )
        .await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("ORDER_REFUSED"),
        "{refused}"
    );
    assert_eq!(
        refused["errors"][0]["extensions"]["lines"][0]["code"],
        "STOCK_EXHAUSTED"
    );

    // R-ORD-4: shortage (3 -> 2 pots) and weighing (1.5 -> 1.75 kg).
    let honey_line = placed["order"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "Miel 500 g")
        .unwrap()["line"]
        .as_u64()
        .unwrap();
    let chicken_line = placed["order"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "Poulet fermier")
        .unwrap()["line"]
        .as_u64()
        .unwrap();
    let d = api
        .ok(
            &f.producer,
            "mutation($o: UUID!, $l: Int!) { adjustQuantity(orderId: $o, line: $l, quantity: 2) { position order { total } } }",
            json!({"o": order_id, "l": honey_line}),
        )
        .await;
    // 2 x 8.50 + 18.00 (every line is this producer's)
    assert_eq!(d["adjustQuantity"]["order"]["total"], "35.00");
    let d = api
        .ok(
            &f.producer,
            "mutation($o: UUID!, $l: Int!) { recordWeight(orderId: $o, line: $l, weightKg: \"1.75\") { position order { lines { weightKg amountInclVat } } } }",
            json!({"o": order_id, "l": chicken_line}),
        )
        .await;
    let weighed = d["recordWeight"]["order"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| !l["weightKg"].is_null())
        .unwrap()
        .clone();
    assert_eq!(weighed["weightKg"], "1.75");
    assert_eq!(weighed["amountInclVat"], "21.00");

    // The customer reads the order and the receipt: 2 x 8.50 + 21.00 = 38.00.
    let d = api
        .ok(
            &f.customer,
            "query($o: UUID!) { order(id: $o) { number total paid refunded balanceDue yours lines { name quantity weightKg amountInclVat } payments { method amount refunded } receipt { totalInclVat totalExclVat vat { rate baseExclVat vat } } } }",
            json!({"o": order_id}),
        )
        .await;
    let o = &d["order"];
    assert_eq!(o["number"], number.as_str());
    assert_eq!(o["total"], "38.00");
    assert_eq!(o["receipt"]["totalInclVat"], "38.00");
    assert_eq!(o["yours"], true);
    assert_eq!(o["payments"][0]["method"], "ONLINE");
    eprintln!("order after adjustments: {o}");

    // The sale's own view for the customer and the admin.
    let d = api
        .ok(
            &f.customer,
            "query($s: UUID!) { sale(id: $s) { myOrder { number } } }",
            json!({"s": f.sale_id}),
        )
        .await;
    assert_eq!(d["sale"]["myOrder"]["number"], number.as_str());
    let d = api
        .ok(
            &f.admin,
            "query($s: UUID!) { sale(id: $s) { orders(first: 10) { edges { node { number customerName total } } pageInfo { hasNextPage } } } }",
            json!({"s": f.sale_id}),
        )
        .await;
    assert_eq!(
        d["sale"]["orders"]["edges"][0]["node"]["number"],
        number.as_str()
    );

    // The producer's account with products and stock (2 of 10 ordered now).
    let d = api
        .ok(
            &f.producer,
            "query($p: UUID!) { producer(id: $p) { plan products(first: 10) { edges { cursor node { name stock { ordered available } } } pageInfo { hasNextPage } } } }",
            json!({"p": f.producer_id}),
        )
        .await;
    let honey = d["producer"]["products"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["name"] == "Miel 500 g")
        .unwrap()
        .clone();
    assert_eq!(
        honey["node"]["stock"],
        json!({"ordered": 2, "available": 8})
    );

    // R-SAL-6: the sale is not distributed yet; the market's admin gets the domain's refusal,
    // the customer is forbidden.
    let v = "mutation($s: UUID!) { validateSale(saleId: $s) { position } }";
    let r = api.call(&f.admin, v, json!({"s": f.sale_id})).await;
    let c = code(&r).unwrap();
    assert!(!["FORBIDDEN", "INTERNAL"].contains(&c.as_str()), "{r}");
    let r = api.call(&f.customer, v, json!({"s": f.sale_id})).await;
    assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"));

    // The customer cancels while the period is open: the reservation goes back.
    let d = api
        .ok(
            &f.customer,
            "mutation($o: UUID!) { cancelOrder(orderId: $o) { order { cancelled refunded } } }",
            json!({"o": order_id}),
        )
        .await;
    assert_eq!(d["cancelOrder"]["order"]["cancelled"], true);
    let d = api
        .ok(
            &f.producer,
            stock_q,
            json!({"p": f.producer_id, "x": f.product_id}),
        )
        .await;
    assert_eq!(d["stockLevel"]["available"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_the_rate_limit_is_per_token() {
    let api = Api::start(&[
        ("ETAL_RATE_LIMIT_PER_SECOND", "1"),
        ("ETAL_RATE_LIMIT_BURST", "5"),
    ])
    .await;
    // No token: public fields answer, the rest is UNAUTHENTICATED.
    let (status, body) = api.raw(None, "{ health }", json!({})).await;
    assert_eq!((status, body["data"]["health"].as_str()), (200, Some("ok")));
    let (_, body) = api.raw(None, "{ me { userId } }", json!({})).await;
    assert_eq!(code(&body).as_deref(), Some("UNAUTHENTICATED"));
    // A forged or garbled token: 401.
    let (status, body) = api.raw(Some("not.a.token"), "{ health }", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body).as_deref(), Some("UNAUTHENTICATED"));
    let forged = etal_api::auth::mint(
        &etal_api::auth::JwtKey::new("some other key of enough bytes".into()).unwrap(),
        etal_domain::ids::UserId::new(),
        etal_domain::Role::Auditor,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(api.raw(Some(&forged), "{ health }", json!({})).await.0, 401);
    // One token's burst is 5; another token is not affected.
    let a = api.who(etal_domain::Role::Customer);
    let b = api.who(etal_domain::Role::Customer);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            api.raw(Some(&a.token), "{ me { role } }", json!({}))
                .await
                .0,
        );
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert_eq!(statuses[6], 429, "{statuses:?}");
    let (status, body) = api.raw(Some(&b.token), "{ me { role } }", json!({})).await;
    assert_eq!(
        (status, body["data"]["me"]["role"].as_str()),
        (200, Some("customer"))
    );

    // `etal token` mints a token the server accepts.
    let out = std::process::Command::new(etal_tests::etal_bin())
        .args(["token", "--role", "auditor"])
        .env("ETAL_JWT_SECRET", graphql_common::SECRET)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (status, body) = api.raw(Some(&token), "{ me { role } }", json!({})).await;
    assert_eq!(
        (status, body["data"]["me"]["role"].as_str()),
        (200, Some("auditor"))
    );
}
