//! Discoverability over HTTP against `etal serve`: `me` lists what the caller acts for (their
//! producer accounts, owned or as a collaborator, the accounts' catalogs, the markets they
//! administer, their memberships, their orders), each as a Relay connection; a revoked
//! collaborator's list loses the account.

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{caught_up, fixture, Api, PLACE_ORDER};
use serde_json::{json, Value};

const ME: &str = "{ me { role producerAccounts { edges { node { producerId youOwnIt } } } catalogs { edges { node { catalogId name } } } marketsAdministered { edges { node { marketId name } } } memberships { edges { node { marketId } } } orders(first: 10) { pageInfo { hasNextPage } edges { node { orderId number total } } } } }";

fn nodes(d: &Value, field: &str) -> Vec<Value> {
    d["me"][field]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_lists_what_the_caller_acts_for() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "k": "me-1", "lines": [
                {"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}]}),
        )
        .await;
    let order = d["placeOrder"]["orderId"].clone();
    let colleague = api.who(Role::Producer);
    api.ok(
        &f.producer,
        "mutation($p: UUID!, $u: UUID!) { grantAccess(producerId: $p, userId: $u) { producerId } }",
        json!({"p": f.producer_id, "u": colleague.user.0}),
    )
    .await;
    // A members-only market the customer joins.
    let d = api
        .ok(
            &f.admin,
            "mutation($m: MarketInput!) { createMarket(market: $m) { marketId } }",
            json!({"m": {"name": "AMAP du Bourg", "place": "Préau", "paymentMode": "ON_SITE", "amap": true,
                "slots": [{"weekday": "THU", "start": "18:00", "end": "19:00", "everyWeeks": 1, "anchor": "2026-12-03"}]}}),
        )
        .await;
    let amap = d["createMarket"]["marketId"].clone();
    api.ok(
        &f.customer,
        "mutation($m: UUID!) { requestMembership(marketId: $m) { marketId } }",
        json!({"m": amap}),
    )
    .await;
    api.ok(
        &f.admin,
        "mutation($m: UUID!, $u: UUID!) { answerMembership(marketId: $m, userId: $u, answer: APPROVE) { marketId } }",
        json!({"m": amap, "u": f.customer.user.0}),
    )
    .await;
    caught_up(&api).await;

    let d = api.ok(&f.producer, ME, json!({})).await;
    assert_eq!(
        nodes(&d, "producerAccounts"),
        vec![json!({"producerId": f.producer_id, "youOwnIt": true})]
    );
    assert_eq!(
        nodes(&d, "catalogs"),
        vec![json!({"catalogId": f.catalog_id, "name": "Le panier"})]
    );
    assert!(nodes(&d, "orders").is_empty());
    let d = api.ok(&colleague, ME, json!({})).await;
    assert_eq!(
        nodes(&d, "producerAccounts"),
        vec![json!({"producerId": f.producer_id, "youOwnIt": false})]
    );
    assert_eq!(nodes(&d, "catalogs").len(), 1);
    let d = api.ok(&f.admin, ME, json!({})).await;
    let mut markets: Vec<String> = nodes(&d, "marketsAdministered")
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    markets.sort();
    assert_eq!(markets, vec!["AMAP du Bourg", "Segonzac"]);
    let d = api.ok(&f.customer, ME, json!({})).await;
    assert_eq!(nodes(&d, "memberships"), vec![json!({"marketId": amap})]);
    let orders = nodes(&d, "orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["orderId"], order);
    assert_eq!(orders[0]["total"], "17.00");
    assert_eq!(d["me"]["orders"]["pageInfo"]["hasNextPage"], false);
    // Another customer sees none of it.
    let stranger = api.who(Role::Customer);
    let d = api.ok(&stranger, ME, json!({})).await;
    for field in [
        "producerAccounts",
        "catalogs",
        "marketsAdministered",
        "memberships",
        "orders",
    ] {
        assert!(nodes(&d, field).is_empty(), "{field}: {d}");
    }
    // A market administrator reads the customer counts of their own markets only.
    let d = api
        .ok(
            &f.admin,
            "query($s: UUID!) { sale(id: $s) { date } }",
            json!({"s": f.sale_id}),
        )
        .await;
    let day = d["sale"]["date"].clone();
    let counts = "query($d: Date!) { customersPerMarket(from: $d, to: $d) { edges { node { marketId customers orders } } } }";
    let d = api.ok(&f.admin, counts, json!({"d": day})).await;
    assert_eq!(
        d["customersPerMarket"]["edges"],
        json!([{"node": {"marketId": f.market_id, "customers": 1, "orders": 1}}])
    );
    let other_admin = api.who(Role::MarketAdmin);
    let d = api.ok(&other_admin, counts, json!({"d": day})).await;
    assert_eq!(d["customersPerMarket"]["edges"], json!([]));
    let d = api
        .ok(&api.who(Role::Auditor), counts, json!({"d": day}))
        .await;
    assert_eq!(
        d["customersPerMarket"]["edges"].as_array().unwrap().len(),
        1
    );

    // Revoked: the colleague's list loses the account at once.
    api.ok(
        &f.producer,
        "mutation($p: UUID!, $u: UUID!) { revokeAccess(producerId: $p, userId: $u) { producerId } }",
        json!({"p": f.producer_id, "u": colleague.user.0}),
    )
    .await;
    let d = api.ok(&colleague, ME, json!({})).await;
    assert!(nodes(&d, "producerAccounts").is_empty(), "{d}");
    assert!(nodes(&d, "catalogs").is_empty(), "{d}");
}
