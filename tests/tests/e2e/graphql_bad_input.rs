//! Bad input over HTTP: wrong types, unknown ids, negative quantities, three-decimal prices,
//! megabyte strings, queries past the depth limit. Each gets a coded error, never a 500, and
//! nothing is written.

use crate::graphql_common;

use graphql_common::{fixture, Api, PLACE_ORDER};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_coded_error_and_writes_nothing() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let events = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&api.db.pool)
            .await
            .unwrap()
    };
    let before = events().await;
    let add = "mutation($p: UUID!, $input: ProductInput!) { addProduct(producerId: $p, product: $input) { productId } }";
    let product = |price: Value, name: Value| json!({"p": f.producer_id, "input": {"name": name, "unit": "pot", "priceInclVat": price}});
    let huge = "x".repeat(900_000);
    // Past the depth limit of 12 (not introspection alone: the standard introspection query
    // nests deeper, and is answered); introspection that nests 25 levels, or lists of the schema in
    // a cycle (the answer would multiply by the schema's size at each level).
    let deep = "{ health __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } }";
    let deep_introspection = format!(
        "{{ __schema {{ types {{ fields {{ type {}{{ name }}{} }} }} }} }}",
        "{ ofType ".repeat(20),
        " }".repeat(20)
    );
    let cyclic_introspection =
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
    let random = uuid::Uuid::new_v4().to_string();
    // (what, who, query, variables, expected code)
    let cases: Vec<(&str, &graphql_common::Who, &str, Value, &str)> = vec![
        ("price as a JSON number", &f.producer, add, product(json!(8.5), json!("Miel")), "BAD_USER_INPUT"),
        ("price with three decimals", &f.producer, add, product(json!("8.505"), json!("Miel")), "BAD_USER_INPUT"),
        ("price that is not a number", &f.producer, add, product(json!("eight"), json!("Miel")), "BAD_USER_INPUT"),
        ("a megabyte name", &f.producer, add, product(json!("8.50"), json!(huge)), "BAD_USER_INPUT"),
        ("three decimals inline", &f.producer, "mutation($c: UUID!, $x: UUID!) { setOfferPrice(catalogId: $c, productId: $x, priceInclVat: \"1.234\") { position } }", json!({"c": f.catalog_id, "x": f.product_id}), "BAD_USER_INPUT"),
        ("a malformed id", &f.producer, "query($p: UUID!) { producer(id: $p) { plan } }", json!({"p": "not-a-uuid"}), "BAD_USER_INPUT"),
        ("a string for an Int", &f.customer, PLACE_ORDER, json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": "three"}]}), "BAD_USER_INPUT"),
        ("a negative quantity", &f.customer, PLACE_ORDER, json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": -2}]}), "BAD_USER_INPUT"),
        ("a zero quantity", &f.customer, PLACE_ORDER, json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 0}]}), "BAD_USER_INPUT"),
        ("no lines", &f.customer, PLACE_ORDER, json!({"s": f.sale_id, "lines": []}), "BAD_USER_INPUT"),
        ("an unknown sale", &f.customer, PLACE_ORDER, json!({"s": random, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}]}), "NOT_FOUND"),
        ("an unknown product in an order", &f.customer, PLACE_ORDER, json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": random, "quantity": 1}]}), "ORDER_REFUSED"),
        ("a negative stock", &f.producer, "mutation($p: UUID!, $x: UUID!) { setStock(producerId: $p, productId: $x, real: -5) { position } }", json!({"p": f.producer_id, "x": f.product_id}), "BAD_USER_INPUT"),
        ("an unknown order", &f.customer, "query($o: UUID!) { order(id: $o) { number } }", json!({"o": random}), "NOT_FOUND"),
        ("an unknown product offered", &f.producer, "mutation($c: UUID!, $x: UUID!) { addOffer(catalogId: $c, productId: $x, priceInclVat: \"1.00\") { position } }", json!({"c": f.catalog_id, "x": random}), "NOT_FOUND"),
        ("an unknown catalog", &f.producer, "query($c: UUID!) { catalog(id: $c) { name } }", json!({"c": random}), "NOT_FOUND"),
        ("a weight as a number", &f.producer, "mutation($o: UUID!) { recordWeight(orderId: $o, line: 1, weightKg: 1.5) { position } }", json!({"o": random}), "BAD_USER_INPUT"),
        ("a malformed date", &f.admin, "mutation($m: UUID!) { generateSales(marketId: $m, from: \"2026-13-45\", to: \"2026-01-01\") { saleIds } }", json!({"m": f.market_id}), "BAD_USER_INPUT"),
        ("a reversed date range", &f.admin, "mutation($m: UUID!) { generateSales(marketId: $m, from: \"2027-02-01\", to: \"2026-01-01\") { saleIds } }", json!({"m": f.market_id}), "BAD_USER_INPUT"),
        ("an unknown field", &f.producer, "{ nothingHere }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        ("a syntax error", &f.producer, "{ producer(", json!({}), "GRAPHQL_PARSE_FAILED"),
        ("a query past the depth limit", &f.producer, deep, json!({}), "QUERY_TOO_COMPLEX"),
        ("introspection 25 levels deep", &f.producer, &deep_introspection, json!({}), "QUERY_TOO_COMPLEX"),
        ("introspection of fields of fields of fields", &f.producer, cyclic_introspection, json!({}), "QUERY_TOO_COMPLEX"),
        ("a page too large", &f.producer, "query($p: UUID!) { producer(id: $p) { products(first: 100000) { edges { cursor } } } }", json!({"p": f.producer_id}), "BAD_USER_INPUT"),
        ("an overlong idempotency key", &f.producer, "mutation($p: UUID!, $k: String) { createCatalog(producerId: $p, name: \"x\", idempotencyKey: $k) { catalogId } }", json!({"p": f.producer_id, "k": "k".repeat(500)}), "BAD_USER_INPUT"),
    ];
    let mut failures = Vec::new();
    for (what, who, query, vars, expected) in &cases {
        let (status, body) = api.raw(Some(&who.token), query, vars.clone()).await;
        let got = body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("none");
        if status >= 500 || got != *expected {
            let text = body.to_string();
            failures.push(format!(
                "{what}: status {status}, code {got} (expected {expected}): {}",
                &text[..text.len().min(400)]
            ));
        }
        if *expected == "BAD_USER_INPUT" && body["errors"][0]["extensions"]["field"].is_null() {
            eprintln!(
                "note: {what}: no extensions.field: {}",
                body["errors"][0]["message"]
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A body over the limit: 413, not 500.
    let big = json!({"query": "{ health }", "variables": {"x": "y".repeat(2 * 1024 * 1024)}});
    let res = api
        .http
        .post(format!("{}/graphql", api.base))
        .json(&big)
        .send()
        .await;
    // 413, or the connection closed while the client still wrote the body: never processed.
    match res {
        Ok(res) => assert_eq!(res.status().as_u16(), 413),
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    assert_eq!(events().await, before, "a refused request wrote events");
}
