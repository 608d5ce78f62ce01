//! One flow, one commit, over HTTP against the real `etal` binary: concurrent copies of one
//! request make one order (stock counted once, nothing written by the losing copies),
//! idempotency keys are scoped to the caller (two users may use the same key), a key reused for
//! another request is a CONFLICT that writes nothing, long keys up to 200 characters work, and
//! the README's walkthrough runs twice with the README's own key strings.

use crate::graphql_common;

use std::time::{Duration, Instant};

use etal_domain::Role;
use graphql_common::{caught_up, code, fixture, Api, Fixture, Who, OPEN_ACCOUNT, PLACE_ORDER};
use serde_json::{json, Value};

/// The rate limit is not under test here: the polling reads share the anonymous bucket.
const ENV: &[(&str, &str)] = &[
    ("ETAL_RATE_LIMIT_PER_SECOND", "10000"),
    ("ETAL_RATE_LIMIT_BURST", "10000"),
];
const STOCK_Q: &str = "query($p: UUID!, $x: UUID!) { stockLevel(producerId: $p, productId: $x) { real ordered available } }";
const SALE_ORDERS_Q: &str = "query($s: UUID!) { sale(id: $s) { orders(first: 100) { edges { node { id number customerId } } pageInfo { hasNextPage } } } }";
const ADD_PRODUCT: &str = "mutation($p: UUID!, $input: ProductInput!) { addProduct(producerId: $p, product: $input) { productId producerId } }";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How many events of this type are stored (the `event_counts` projection, public).
async fn events(api: &Api, aggregate_type: &str, event_type: &str) -> u64 {
    let (_, body) = api
        .raw(
            None,
            "{ eventCounts { aggregateType eventType events } }",
            json!({}),
        )
        .await;
    let list = body["data"]["eventCounts"]
        .as_array()
        .unwrap_or_else(|| panic!("eventCounts: {body}"));
    list.iter()
        .find(|c| c["aggregateType"] == aggregate_type && c["eventType"] == event_type)
        .map(|c| c["events"].as_str().unwrap().parse::<u64>().unwrap())
        .unwrap_or(0)
}

async fn stock(api: &Api, f: &Fixture) -> Value {
    api.ok(
        &f.producer,
        STOCK_Q,
        json!({"p": f.producer_id, "x": f.product_id}),
    )
    .await["stockLevel"]
        .clone()
}

/// The ids of the sale's orders, as its market's administrator reads them.
async fn sale_order_ids(api: &Api, f: &Fixture) -> Vec<String> {
    let d = api
        .ok(&f.admin, SALE_ORDERS_Q, json!({"s": f.sale_id}))
        .await;
    assert_eq!(d["sale"]["orders"]["pageInfo"]["hasNextPage"], false, "{d}");
    d["sale"]["orders"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// Sets the honey's real stock (before any order).
async fn set_stock(api: &Api, f: &Fixture, real: i64) {
    let d = api
        .ok(
            &f.producer,
            "mutation($p: UUID!, $x: UUID!, $r: Int!) { setStock(producerId: $p, productId: $x, real: $r) { stock { real ordered available } } }",
            json!({"p": f.producer_id, "x": f.product_id, "r": real}),
        )
        .await;
    assert_eq!(
        d["setStock"]["stock"],
        json!({"real": real, "ordered": 0, "available": real})
    );
}

fn honey(f: &Fixture, quantity: i64) -> Value {
    json!([{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": quantity}])
}

/// Sends `copies` copies of one placeOrder (same token, same key, same lines) at once and checks
/// every answer: the one order's id, or RETRYABLE; never INTERNAL nor any other code. Returns the
/// order id and number.
async fn race(
    api: &Api,
    f: &Fixture,
    who: &Who,
    key: &str,
    quantity: i64,
    copies: usize,
) -> (String, String) {
    let vars = json!({"s": f.sale_id, "lines": honey(f, quantity), "k": key});
    let answers: Vec<Value> =
        futures::future::join_all((0..copies).map(|_| api.call(who, PLACE_ORDER, vars.clone())))
            .await;
    let dump = || serde_json::to_string_pretty(&answers).unwrap();
    let mut ids = Vec::new();
    let mut numbers = Vec::new();
    let mut retryable = 0;
    for a in &answers {
        if let Some(errors) = a.get("errors") {
            let errors = errors.as_array().unwrap();
            assert!(!errors.is_empty(), "{}", dump());
            for e in errors {
                assert_eq!(
                    e["extensions"]["code"],
                    "RETRYABLE",
                    "key {key}: an answer is neither the order nor RETRYABLE:\n{}",
                    dump()
                );
            }
            retryable += 1;
        }
        let placed = &a["data"]["placeOrder"];
        if !placed.is_null() {
            ids.push(placed["orderId"].as_str().unwrap().to_string());
            numbers.push(placed["order"]["number"].as_str().unwrap().to_string());
        }
    }
    assert!(
        !ids.is_empty(),
        "key {key}: no answer names the order ({retryable} RETRYABLE):\n{}",
        dump()
    );
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "key {key}: copies answered different orders {ids:?}:\n{}",
        dump()
    );
    assert!(
        numbers.iter().all(|n| *n == numbers[0]),
        "key {key}: copies answered different numbers {numbers:?}"
    );
    eprintln!(
        "{copies} copies of key {key}: {} answered the order, {retryable} RETRYABLE",
        ids.len()
    );
    (ids[0].clone(), numbers[0].clone())
}

/// After the orders `order_ids` (one honey line each, `ordered` units in all) on a stock of
/// `real`: the stock, the sale's orders and the stored events count each order exactly once, and
/// no copy reserved then released (a losing copy writes nothing).
async fn counted_once(api: &Api, f: &Fixture, real: i64, ordered: i64, order_ids: &[String]) {
    caught_up(api).await;
    let n = order_ids.len() as i64;
    assert_eq!(
        stock(api, f).await,
        json!({"real": real, "ordered": ordered, "available": real - ordered}),
        "R-STK-3: the stock counts each order once"
    );
    let mut listed = sale_order_ids(api, f).await;
    listed.sort();
    let mut expected = order_ids.to_vec();
    expected.sort();
    assert_eq!(listed, expected, "the sale's orders");
    assert_eq!(events(api, "order", "OrderPlaced").await, n as u64);
    assert_eq!(events(api, "sale", "OrderAttached").await, n as u64);
    assert_eq!(events(api, "stock", "StockReserved").await, n as u64);
    assert_eq!(events(api, "stock", "ReservationReleased").await, 0);
}

/// A key of exactly `len` characters, distinct per prefix.
fn key_of(prefix: &str, len: usize) -> String {
    let k = format!("{prefix}-{}", "k".repeat(len - prefix.len() - 1));
    assert_eq!(k.chars().count(), len);
    k
}

// ---------------------------------------------------------------------------------------------
// Concurrent copies of one request
// ---------------------------------------------------------------------------------------------

/// R-ORD-1, R-ORD-2, R-STK-3, design property 4 (no oversell) and one flow, one commit
/// (ADR 0008): two copies of one placeOrder (same customer, same `idempotencyKey`) sent at once
/// make one order: each answer names that order or is RETRYABLE (never INTERNAL, never another
/// code), the stock counts the line once, the sale has one order, and the losing copy writes
/// nothing. Repeated 10 times with a fresh customer and key (the original bug showed up in 4 of
/// 10 runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_one_place_order_make_one_order() {
    let api = Api::start(ENV).await;
    let f = fixture(&api).await;
    set_stock(&api, &f, 100).await;
    let mut orders = Vec::new();
    for i in 0..10 {
        let customer = api.who(Role::Customer);
        let key = format!("race-{i}");
        let (order, number) = race(&api, &f, &customer, &key, 2, 2).await;
        assert!(!orders.contains(&order), "run {i}: {order} again");
        orders.push(order.clone());
        // A later retry gets the same order.
        let again = api
            .ok(
                &customer,
                PLACE_ORDER,
                json!({"s": f.sale_id, "lines": honey(&f, 2), "k": key}),
            )
            .await;
        assert_eq!(again["placeOrder"]["orderId"], order.as_str());
        assert_eq!(again["placeOrder"]["order"]["number"], number.as_str());
        // The customer's own view of the sale names it.
        let d = api
            .ok(
                &customer,
                "query($s: UUID!) { sale(id: $s) { myOrder { id number total } } }",
                json!({"s": f.sale_id}),
            )
            .await;
        assert_eq!(
            d["sale"]["myOrder"],
            json!({"id": order, "number": number, "total": "17.00"})
        );
        counted_once(&api, &f, 100, 2 * orders.len() as i64, &orders).await;
    }
}

/// R-ORD-1, R-STK-3, design property 4 (no oversell) and one flow, one commit (ADR 0008): fifty
/// copies of one placeOrder (same customer, same key) sent at once make one order: each answer
/// names it or is RETRYABLE, the stock counts 3 once, the sale has one order, nothing was
/// reserved and released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_copies_of_one_place_order_make_one_order() {
    let api = Api::start(ENV).await;
    let f = fixture(&api).await;
    let (order, _) = race(&api, &f, &f.customer, "fifty", 3, 50).await;
    counted_once(&api, &f, 10, 3, std::slice::from_ref(&order)).await;
    let d = api
        .ok(
            &f.customer,
            "query($o: UUID!) { order(id: $o) { id yours total lines { quantity } } }",
            json!({"o": order}),
        )
        .await;
    assert_eq!(
        d["order"],
        json!({"id": order, "yours": true, "total": "25.50", "lines": [{"quantity": 3}]})
    );
}

// ---------------------------------------------------------------------------------------------
// Keys scoped to the caller
// ---------------------------------------------------------------------------------------------

/// Design property 5 (idempotency scoped to the caller), R-ORD-1, R-STK-3: two customers each
/// send placeOrder with the key "o-1": two different orders, each customer reads its own and is
/// refused the other's, neither answer names the other's id, the stock counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_customers_with_the_same_key_get_two_orders() {
    let api = Api::start(ENV).await;
    let f = fixture(&api).await;
    let a = api.who(Role::Customer);
    let b = api.who(Role::Customer);
    let ra = api
        .call(
            &a,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": honey(&f, 3), "k": "o-1"}),
        )
        .await;
    let rb = api
        .call(
            &b,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": honey(&f, 2), "k": "o-1"}),
        )
        .await;
    assert!(ra.get("errors").is_none(), "customer a: {ra}");
    assert!(rb.get("errors").is_none(), "customer b: {rb}");
    let oa = ra["data"]["placeOrder"]["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    let ob = rb["data"]["placeOrder"]["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(oa, ob, "two customers, one key: two orders");
    assert!(
        !ra.to_string().contains(&ob),
        "a's answer names b's order: {ra}"
    );
    assert!(
        !rb.to_string().contains(&oa),
        "b's answer names a's order: {rb}"
    );
    assert_eq!(ra["data"]["placeOrder"]["order"]["total"], "25.50");
    assert_eq!(rb["data"]["placeOrder"]["order"]["total"], "17.00");

    let read =
        "query($o: UUID!) { order(id: $o) { id customerId yours total lines { quantity } } }";
    for (who, mine, theirs, quantity, total) in
        [(&a, &oa, &ob, 3, "25.50"), (&b, &ob, &oa, 2, "17.00")]
    {
        let d = api.ok(who, read, json!({"o": mine})).await;
        assert_eq!(
            d["order"],
            json!({"id": mine, "customerId": who.user.0.to_string(), "yours": true, "total": total, "lines": [{"quantity": quantity}]})
        );
        let other = api.call(who, read, json!({"o": theirs})).await;
        assert_eq!(code(&other).as_deref(), Some("FORBIDDEN"), "{other}");
        // Each one's retry with "o-1" still answers its own order.
        let again = api
            .ok(
                who,
                PLACE_ORDER,
                json!({"s": f.sale_id, "lines": honey(&f, quantity), "k": "o-1"}),
            )
            .await;
        assert_eq!(again["placeOrder"]["orderId"], mine.as_str());
    }
    // Stock: 3 + 2 ordered, each order once.
    counted_once(&api, &f, 10, 5, &[oa, ob]).await;
}

/// Design property 5 (idempotency scoped to the caller) and one flow, one commit (ADR 0008): the
/// same customer reusing a key for another request (another quantity) gets CONFLICT
/// (`reason: IDEMPOTENCY_KEY_REUSED`), and nothing new is written: the order keeps its line, the
/// stock its reservation (R-STK-3), the sale its one order; the original request still answers
/// the original order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_for_another_request_is_a_conflict() {
    let api = Api::start(ENV).await;
    let f = fixture(&api).await;
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": honey(&f, 3), "k": "o-1"}),
        )
        .await;
    let order = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    assert_eq!(d["placeOrder"]["order"]["total"], "25.50");
    counted_once(&api, &f, 10, 3, std::slice::from_ref(&order)).await;

    for quantity in [1, 4] {
        let r = api
            .call(
                &f.customer,
                PLACE_ORDER,
                json!({"s": f.sale_id, "lines": honey(&f, quantity), "k": "o-1"}),
            )
            .await;
        assert_eq!(code(&r).as_deref(), Some("CONFLICT"), "{r}");
        assert_eq!(
            r["errors"][0]["extensions"]["reason"], "IDEMPOTENCY_KEY_REUSED",
            "{r}"
        );
        assert!(r["data"]["placeOrder"].is_null(), "{r}");
    }
    // Nothing new: the same stock, the same one order, the same events.
    counted_once(&api, &f, 10, 3, std::slice::from_ref(&order)).await;
    let d = api
        .ok(
            &f.customer,
            "query($o: UUID!) { order(id: $o) { total lines { quantity } } }",
            json!({"o": order}),
        )
        .await;
    assert_eq!(
        d["order"],
        json!({"total": "25.50", "lines": [{"quantity": 3}]})
    );
    let again = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": honey(&f, 3), "k": "o-1"}),
        )
        .await;
    assert_eq!(again["placeOrder"]["orderId"], order.as_str());
    counted_once(&api, &f, 10, 3, std::slice::from_ref(&order)).await;
}

/// Design property 5 (idempotency scoped to the caller), R-ACC-1, R-ACC-5: two producers each
/// open an account with the key "open-1": two different accounts, each owned by its producer,
/// each producer adds a product to their own account (the id really exists) and is refused the
/// other's; a retry by each answers their own account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_producers_with_the_same_key_open_two_accounts() {
    let api = Api::start(ENV).await;
    let p1 = api.who(Role::Producer);
    let p2 = api.who(Role::Producer);
    let r1 = api.call(&p1, OPEN_ACCOUNT, json!({"k": "open-1"})).await;
    let r2 = api.call(&p2, OPEN_ACCOUNT, json!({"k": "open-1"})).await;
    assert!(r1.get("errors").is_none(), "producer 1: {r1}");
    assert!(r2.get("errors").is_none(), "producer 2: {r2}");
    let id1 = r1["data"]["openAccount"]["producerId"]
        .as_str()
        .unwrap()
        .to_string();
    let id2 = r2["data"]["openAccount"]["producerId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(id1, id2, "two producers, one key: two accounts");
    for r in [&r1, &r2] {
        assert_eq!(
            r["data"]["openAccount"]["producer"],
            json!({"plan": "PRO", "youOwnIt": true}),
            "{r}"
        );
    }
    caught_up(&api).await;
    assert_eq!(events(&api, "producer_account", "AccountOpened").await, 2);

    for (who, mine, theirs, name) in [
        (&p1, &id1, &id2, "Miel 500 g"),
        (&p2, &id2, &id1, "Confiture"),
    ] {
        let again = api.ok(who, OPEN_ACCOUNT, json!({"k": "open-1"})).await;
        assert_eq!(again["openAccount"]["producerId"], mine.as_str());
        let d = api
            .ok(
                who,
                ADD_PRODUCT,
                json!({"p": mine, "input": {"name": name, "unit": "pot", "priceInclVat": "8.50", "vatRate": "5.5"}}),
            )
            .await;
        assert_eq!(d["addProduct"]["producerId"], mine.as_str());
        let product = d["addProduct"]["productId"].as_str().unwrap().to_string();
        let d = api
            .ok(
                who,
                "query($p: UUID!) { producer(id: $p) { plan youOwnIt products(first: 10) { edges { node { id name } } } } }",
                json!({"p": mine}),
            )
            .await;
        assert_eq!(
            d["producer"],
            json!({"plan": "PRO", "youOwnIt": true, "products": {"edges": [{"node": {"id": product, "name": name}}]}})
        );
        let refused = api
            .call(
                who,
                ADD_PRODUCT,
                json!({"p": theirs, "input": {"name": "Intrus", "unit": "pot", "priceInclVat": "1.00", "vatRate": "5.5"}}),
            )
            .await;
        assert_eq!(code(&refused).as_deref(), Some("FORBIDDEN"), "{refused}");
    }
    caught_up(&api).await;
    assert_eq!(events(&api, "producer_account", "AccountOpened").await, 2);
}

// ---------------------------------------------------------------------------------------------
// Long keys
// ---------------------------------------------------------------------------------------------

/// Idempotency keys of 1 to 200 characters (README, `BAD_USER_INPUT` beyond), whatever the
/// service appends to them for its own steps: keys of 195, 199 and 200 characters work for
/// openAccount (R-ACC-1) and placeOrder (R-ORD-1, with its stock and payment steps) and a retry
/// with the same key answers the same result; 201 characters is BAD_USER_INPUT on
/// `idempotencyKey` and writes nothing. Never INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_idempotency_keys() {
    let api = Api::start(ENV).await;
    let f = fixture(&api).await;
    let mut orders = Vec::new();
    for len in [195, 199, 200] {
        // openAccount: a fresh producer each time.
        let producer = api.who(Role::Producer);
        let key = key_of("open", len);
        let r = api.call(&producer, OPEN_ACCOUNT, json!({"k": key})).await;
        assert!(r.get("errors").is_none(), "openAccount, key of {len}: {r}");
        let id = r["data"]["openAccount"]["producerId"]
            .as_str()
            .unwrap()
            .to_string();
        let again = api.call(&producer, OPEN_ACCOUNT, json!({"k": key})).await;
        assert!(
            again.get("errors").is_none(),
            "openAccount retry, key of {len}: {again}"
        );
        assert_eq!(again["data"]["openAccount"]["producerId"], id.as_str());

        // placeOrder: a fresh customer each time (one order per customer per sale).
        let customer = api.who(Role::Customer);
        let key = key_of("order", len);
        let vars = json!({"s": f.sale_id, "lines": honey(&f, 1), "k": key});
        let r = api.call(&customer, PLACE_ORDER, vars.clone()).await;
        assert!(r.get("errors").is_none(), "placeOrder, key of {len}: {r}");
        let order = r["data"]["placeOrder"]["orderId"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(r["data"]["placeOrder"]["order"]["total"], "8.50");
        let again = api.call(&customer, PLACE_ORDER, vars).await;
        assert!(
            again.get("errors").is_none(),
            "placeOrder retry, key of {len}: {again}"
        );
        assert_eq!(again["data"]["placeOrder"]["orderId"], order.as_str());
        assert_eq!(
            again["data"]["placeOrder"]["order"]["number"],
            r["data"]["placeOrder"]["order"]["number"]
        );
        orders.push(order);
    }
    counted_once(&api, &f, 10, 3, &orders).await;
    assert_eq!(events(&api, "producer_account", "AccountOpened").await, 4);

    // 201 characters: refused before anything runs.
    let producer = api.who(Role::Producer);
    let r = api
        .call(&producer, OPEN_ACCOUNT, json!({"k": key_of("open", 201)}))
        .await;
    assert_eq!(code(&r).as_deref(), Some("BAD_USER_INPUT"), "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["field"], "idempotencyKey",
        "{r}"
    );
    let customer = api.who(Role::Customer);
    let r = api
        .call(
            &customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": honey(&f, 1), "k": key_of("order", 201)}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("BAD_USER_INPUT"), "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["field"], "idempotencyKey",
        "{r}"
    );
    counted_once(&api, &f, 10, 3, &orders).await;
    assert_eq!(events(&api, "producer_account", "AccountOpened").await, 4);
}

// ---------------------------------------------------------------------------------------------
// The README's walkthrough, twice
// ---------------------------------------------------------------------------------------------

/// The ids one run of the walkthrough made.
#[derive(Debug)]
struct Walk {
    producer: String,
    product: String,
    catalog: String,
    market: String,
    sale: String,
    order: String,
}

/// The README's main flow, query for query, with fresh users and the README's key strings.
async fn walkthrough(api: &Api) -> Walk {
    let p = api.who(Role::Producer);
    let a = api.who(Role::MarketAdmin);
    let c = api.who(Role::Customer);
    // R-ACC-1, R-ACC-5, R-STK-1
    let d = api
        .ok(&p, "mutation { openAccount(acceptedCharter: \"v2\", plan: PRO, idempotencyKey: \"open-1\") { producerId } }", json!({}))
        .await;
    let pid = d["openAccount"]["producerId"].as_str().unwrap().to_string();
    let d = api
        .ok(&p, "mutation($p: UUID!) { addProduct(producerId: $p, product: {name: \"Miel 500 g\", unit: \"pot\", priceInclVat: \"8.50\", vatRate: \"5.5\"}) { productId } }", json!({"p": pid}))
        .await;
    let xid = d["addProduct"]["productId"].as_str().unwrap().to_string();
    let d = api
        .ok(&p, "mutation($p: UUID!, $x: UUID!) { setStock(producerId: $p, productId: $x, real: 10) { stock { available } position } }", json!({"p": pid, "x": xid}))
        .await;
    assert_eq!(d["setStock"]["stock"]["available"], 10);
    // R-CAT-1
    let d = api
        .ok(&p, "mutation($p: UUID!) { createCatalog(producerId: $p, name: \"Le panier\") { catalogId } }", json!({"p": pid}))
        .await;
    let cid = d["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(&p, "mutation($c: UUID!, $x: UUID!) { addOffer(catalogId: $c, productId: $x, priceInclVat: \"8.50\") { position } }", json!({"c": cid, "x": xid}))
        .await;
    // A market with a weekly slot two days from now (Paris), the catalog linked, one sale.
    let day = (chrono::Utc::now() + chrono::Duration::days(2))
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let wd = match chrono::Datelike::weekday(&day) {
        chrono::Weekday::Mon => "MON",
        chrono::Weekday::Tue => "TUE",
        chrono::Weekday::Wed => "WED",
        chrono::Weekday::Thu => "THU",
        chrono::Weekday::Fri => "FRI",
        chrono::Weekday::Sat => "SAT",
        chrono::Weekday::Sun => "SUN",
    };
    let d = api
        .ok(&a, "mutation($d: Date!, $w: Weekday!) { createMarket(market: {name: \"Segonzac\", place: \"Salle des fêtes\", paymentMode: ONLINE, slots: [{weekday: $w, start: \"18:00\", end: \"19:00\", anchor: $d}]}) { marketId } }", json!({"d": day.to_string(), "w": wd}))
        .await;
    let mid = d["createMarket"]["marketId"].as_str().unwrap().to_string();
    api.ok(
        &a,
        "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { position } }",
        json!({"m": mid, "c": cid}),
    )
    .await;
    let d = api
        .ok(&a, "mutation($m: UUID!, $d: Date!) { generateSales(marketId: $m, from: $d, to: $d) { saleIds } }", json!({"m": mid, "d": day.to_string()}))
        .await;
    let sids = d["generateSales"]["saleIds"].as_array().unwrap();
    assert_eq!(sids.len(), 1, "{d}");
    let sid = sids[0].as_str().unwrap().to_string();
    // R-SAL-2/3: the producer takes part; orders open 168 h before the sale, so the scheduler
    // opens the period at once.
    api.ok(
        &p,
        "mutation($c: UUID!, $s: UUID!) { participate(catalogId: $c, saleIds: [$s]) { position } }",
        json!({"c": cid, "s": sid}),
    )
    .await;
    let started = Instant::now();
    loop {
        let d = api
            .ok(&c, "query($s: UUID!) { sale(id: $s) { status participations { period offers { name priceInclVat } } } }", json!({"s": sid}))
            .await;
        let part = &d["sale"]["participations"][0];
        if part["period"] == "OPEN" {
            assert_eq!(
                part["offers"],
                json!([{"name": "Miel 500 g", "priceInclVat": "8.50"}])
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the order period never opened: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // R-ORD-1: 3 pots with the README's key.
    let d = api
        .ok(&c, "mutation($s: UUID!, $c: UUID!, $x: UUID!) { placeOrder(saleId: $s, lines: [{catalogId: $c, productId: $x, quantity: 3}], idempotencyKey: \"o-1\") { orderId order { number total paid } } }", json!({"s": sid, "c": cid, "x": xid}))
        .await;
    let oid = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    assert_eq!(d["placeOrder"]["order"]["total"], "25.50");
    // R-ORD-4: the producer lowers the line to 2.
    let d = api
        .ok(&p, "mutation($o: UUID!) { adjustQuantity(orderId: $o, line: 0, quantity: 2) { order { lines { line quantity amountInclVat } total } } }", json!({"o": oid}))
        .await;
    assert_eq!(
        d["adjustQuantity"]["order"],
        json!({"lines": [{"line": 0, "quantity": 2, "amountInclVat": "17.00"}], "total": "17.00"})
    );
    // Reads: the order and its receipt (paid 25.50 online, 8.50 refunded once delivered), the
    // stock (R-STK-3: 2 of 10 ordered).
    let started = Instant::now();
    loop {
        let d = api
            .ok(&c, "query($o: UUID!) { order(id: $o) { number total paid refunded balanceDue receipt { totalInclVat totalExclVat vat { rate baseExclVat vat } } } }", json!({"o": oid}))
            .await;
        let o = &d["order"];
        assert_eq!(o["total"], "17.00", "{d}");
        assert_eq!(o["receipt"]["totalInclVat"], "17.00", "{d}");
        if o["paid"] == "25.50" && o["refunded"] == "8.50" && o["balanceDue"] == "0.00" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the payment and refund never settled: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = api.ok(&p, STOCK_Q, json!({"p": pid, "x": xid})).await;
    assert_eq!(
        d["stockLevel"],
        json!({"real": 10, "ordered": 2, "available": 8})
    );
    Walk {
        producer: pid,
        product: xid,
        catalog: cid,
        market: mid,
        sale: sid,
        order: oid,
    }
}

/// Design property 5 (idempotency scoped to the caller) on the README's walkthrough (R-ACC-1,
/// R-CAT-1, R-SAL-2, R-SAL-3, R-ORD-1, R-ORD-4, R-STK-3): run twice on one server with fresh
/// users but the README's own keys ("open-1", "o-1"), both runs succeed end to end with ids of
/// their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_twice() {
    let api = Api::start(ENV).await;
    let first = walkthrough(&api).await;
    let second = walkthrough(&api).await;
    eprintln!("{first:?}\n{second:?}");
    assert_ne!(first.producer, second.producer);
    assert_ne!(first.product, second.product);
    assert_ne!(first.catalog, second.catalog);
    assert_ne!(first.market, second.market);
    assert_ne!(first.sale, second.sale);
    assert_ne!(first.order, second.order);
    caught_up(&api).await;
    assert_eq!(events(&api, "producer_account", "AccountOpened").await, 2);
    assert_eq!(events(&api, "order", "OrderPlaced").await, 2);
    assert_eq!(events(&api, "stock", "StockReserved").await, 2);
}
