//! R-ORD-4 over HTTP against `etal serve`: on an online market, a weighing heavier than the
//! estimate is charged online through the outbox (the extra, once, whatever the retries), so
//! the order ends paid in full; a lighter one is refunded.

use crate::graphql_common;

use graphql_common::{caught_up, fixture, Api, PLACE_ORDER};
use serde_json::json;

const WEIGH: &str = "mutation($o: UUID!, $l: Int!, $w: Decimal!, $k: String) { recordWeight(orderId: $o, line: $l, weightKg: $w, idempotencyKey: $k) { order { total } } }";
const ORDER_Q: &str =
    "query($o: UUID!) { order(id: $o) { total paid refunded balanceDue payments { amount } } }";

/// The order's figures, its payments' amounts sorted (payments are listed by id).
fn figures(order: &serde_json::Value) -> serde_json::Value {
    let mut o = order.clone();
    let mut amounts: Vec<String> = o["payments"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["amount"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    amounts.sort();
    o["payments"] = json!(amounts);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_ord_4_a_heavier_weighing_is_charged_online_once() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    // One chicken, estimated 1.5 kg at 12.00/kg: 18.00 charged with the order.
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "k": "chicken", "lines": [
                {"catalogId": f.catalog_id, "productId": f.chicken_id, "quantity": 1}]}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["paid"], "18.00", "{d}");
    let order = d["placeOrder"]["orderId"].clone();
    let line = d["placeOrder"]["order"]["lines"][0]["line"].clone();
    // Weighed 1.85 kg: 22.20, the extra 4.20 charged online; the retries change nothing.
    let weigh = json!({"o": order, "l": line, "w": "1.85", "k": "weigh-1"});
    let copies: Vec<_> = (0..3)
        .map(|_| {
            let (api, p, v) = (&api, f.producer.clone(), weigh.clone());
            async move { api.call(&p, WEIGH, v).await }
        })
        .collect();
    for r in futures::future::join_all(copies).await {
        assert_eq!(r["data"]["recordWeight"]["order"]["total"], "22.20", "{r}");
    }
    let settled = |want: serde_json::Value| {
        let (api, customer, order) = (&api, f.customer.clone(), order.clone());
        async move {
            graphql_common::until(
                "the extra charge",
                std::time::Duration::from_secs(10),
                || {
                    let (api, customer, order, want) =
                        (api, customer.clone(), order.clone(), want.clone());
                    async move {
                        let d = api.ok(&customer, ORDER_Q, json!({"o": order})).await;
                        if figures(&d["order"]) == want {
                            Ok(())
                        } else {
                            Err(d)
                        }
                    }
                },
            )
            .await
        }
    };
    settled(
        json!({"total": "22.20", "paid": "22.20", "refunded": "0.00", "balanceDue": "0.00",
        "payments": ["18.00", "4.20"]}),
    )
    .await;
    let charges: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE kind = 'charge' AND status = 'delivered' AND payload->>'order' = $1",
    )
    .bind(order.as_str().unwrap())
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(charges, 2, "the order's charge and one extra");
    // Weighed again lighter (1.60 kg, 19.20): 3.00 refunded, nothing charged.
    api.ok(
        &f.producer,
        WEIGH,
        json!({"o": order, "l": line, "w": "1.60", "k": "weigh-2"}),
    )
    .await;
    settled(
        json!({"total": "19.20", "paid": "22.20", "refunded": "3.00", "balanceDue": "0.00",
        "payments": ["18.00", "4.20"]}),
    )
    .await;
    caught_up(&api).await;
}

/// R-ORD-4, R-ACC-4: a heavier weighing counts against the Discovery cap (1,000.00 a year in the
/// shipped plans): past it the weighing is refused and writes nothing; within it, it stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_ord_4_a_heavier_weighing_is_checked_against_the_discovery_cap() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let discovery = api.who(etal_domain::Role::Producer);
    let d = api
        .ok(
            &discovery,
            "mutation { openAccount(acceptedCharter: \"v2\", plan: DISCOVERY) { producerId } }",
            json!({}),
        )
        .await;
    let producer = d["openAccount"]["producerId"].clone();
    let d = api
        .ok(
            &discovery,
            "mutation($p: UUID!) { addProduct(producerId: $p, product: {name: \"Agneau\", unit: \"kg\", priceInclVat: \"600.00\", variableWeight: true, estimatedWeightKg: \"1.5\"}) { productId } }",
            json!({"p": producer}),
        )
        .await;
    let lamb = d["addProduct"]["productId"].clone();
    let d = api
        .ok(
            &discovery,
            "mutation($p: UUID!) { createCatalog(producerId: $p, name: \"Viandes\") { catalogId } }",
            json!({"p": producer}),
        )
        .await;
    let catalog = d["createCatalog"]["catalogId"].clone();
    api.ok(
        &discovery,
        "mutation($c: UUID!, $x: UUID!) { addOffer(catalogId: $c, productId: $x, priceInclVat: \"600.00\") { position } }",
        json!({"c": catalog, "x": lamb}),
    )
    .await;
    api.ok(
        &f.admin,
        "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { position } }",
        json!({"m": f.market_id, "c": catalog}),
    )
    .await;
    api.ok(
        &discovery,
        "mutation($c: UUID!, $s: UUID!) { participate(catalogId: $c, saleIds: [$s]) { position } }",
        json!({"c": catalog, "s": f.sale_id}),
    )
    .await;
    // 1.5 kg estimated: 900.00 of the 1,000.00 a Discovery account may sell in a year.
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "k": "lamb", "lines": [{"catalogId": catalog, "productId": lamb, "quantity": 1}]}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "900.00", "{d}");
    let order = d["placeOrder"]["orderId"].clone();
    let line = d["placeOrder"]["order"]["lines"][0]["line"].clone();
    let events = |api: &Api| {
        let pool = api.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let before = events(&api).await;
    let r = api
        .call(
            &discovery,
            WEIGH,
            json!({"o": order, "l": line, "w": "1.70"}),
        )
        .await;
    assert_eq!(
        graphql_common::code(&r).as_deref(),
        Some("CAP_EXCEEDED"),
        "1,020.00 is past the cap: {r}"
    );
    assert_eq!(
        events(&api).await,
        before,
        "a refused weighing writes nothing"
    );
    let d = api
        .ok(
            &discovery,
            WEIGH,
            json!({"o": order, "l": line, "w": "1.65"}),
        )
        .await;
    assert_eq!(d["recordWeight"]["order"]["total"], "990.00", "{d}");
    let d = api
        .ok(
            &discovery,
            "query($p: UUID!) { annualSales(producerId: $p) { nonAmapCommitted } }",
            json!({"p": producer}),
        )
        .await;
    assert_eq!(d["annualSales"][0]["nonAmapCommitted"], "990.00", "{d}");
}
