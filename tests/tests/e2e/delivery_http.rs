//! R-ORD-6 and R-ORD-7 over HTTP against `etal serve`: home delivery is offered by a producer's
//! catalog at the fee it sets (free above an amount), never at a fee the customer types; a
//! catalog, a delivery and a market may set a minimum order, and an order below one is refused
//! with MINIMUM_ORDER_NOT_REACHED naming the minimum and what is missing, writing nothing.

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{code, fixture, Api};
use serde_json::{json, Value};

const TERMS: &str = "mutation($c: UUID!, $d: DeliveryOfferInput, $min: Money) { setOrderTerms(catalogId: $c, delivery: $d, minimumOrder: $min) { catalog { delivery { fee freeAbove minimum } minimumOrder } } }";
const ORDER: &str = "mutation($s: UUID!, $lines: [LineInput!]!, $d: DeliveryInput, $k: String) { placeOrder(saleId: $s, lines: $lines, delivery: $d, idempotencyKey: $k) { orderId order { total deliveryFee homeDelivery } } }";

/// The events written on someone's behalf (the scheduler's own work, such as the sales it
/// generates ahead, may land at any moment under load and is not what a refusal must not write).
async fn events(api: &Api) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE metadata->'actor'->>'role' IS DISTINCT FROM 'system'",
    )
    .fetch_one(&api.db.pool)
    .await
    .unwrap()
}

fn ext<'a>(r: &'a Value, key: &str) -> &'a Value {
    &r["errors"][0]["extensions"][key]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_ord_6_r_ord_7_the_delivering_catalog_sets_the_fee_and_minimums_refuse_small_orders() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let d = api
        .ok(
            &f.producer,
            TERMS,
            json!({"c": f.catalog_id, "d": {"fee": "4.90", "freeAbove": "30.00", "minimum": "10.00"}}),
        )
        .await;
    assert_eq!(
        d["setOrderTerms"]["catalog"],
        json!({"delivery": {"fee": "4.90", "freeAbove": "30.00", "minimum": "10.00"}, "minimumOrder": null})
    );
    // Bad terms, and someone else's catalog.
    for bad in [
        json!({"c": f.catalog_id, "d": {"fee": "-1.00"}}),
        json!({"c": f.catalog_id, "min": "0.00"}),
    ] {
        let r = api.call(&f.producer, TERMS, bad.clone()).await;
        assert_eq!(
            code(&r).as_deref(),
            Some("INVALID_ORDER_TERMS"),
            "{bad} {r}"
        );
    }
    let other = api.who(Role::Producer);
    let r = api.call(&other, TERMS, json!({"c": f.catalog_id})).await;
    assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"), "{r}");

    let address = |who: &graphql_common::Who| {
        let (api, who) = (&api, who.clone());
        async move {
            api.ok(
                &who,
                "mutation { registerPerson(displayName: \"Client\") { userId } }",
                json!({}),
            )
            .await;
            let d = api
                .ok(&who, "mutation { addAddress(address: \"3 route de Ribérac, Segonzac\") { addressRef } }", json!({}))
                .await;
            d["addAddress"]["addressRef"].clone()
        }
    };
    let lines =
        |q: i64| json!([{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": q}]);
    let a = address(&f.customer).await;

    // Below the delivery's minimum: refused, naming it and what is missing; nothing written.
    let before = events(&api).await;
    let r = api
        .call(
            &f.customer,
            ORDER,
            json!({"s": f.sale_id, "lines": lines(1), "d": {"addressRef": a}, "k": "d-1"}),
        )
        .await;
    assert_eq!(
        code(&r).as_deref(),
        Some("MINIMUM_ORDER_NOT_REACHED"),
        "{r}"
    );
    assert_eq!(ext(&r, "minimum"), "10.00");
    assert_eq!(ext(&r, "missing"), "1.50");
    assert_eq!(events(&api).await, before, "a refused order writes nothing");
    // The customer cannot name a fee.
    let r = api
        .call(
            &f.customer,
            ORDER,
            json!({"s": f.sale_id, "lines": lines(2), "d": {"addressRef": a, "fee": "0.00"}}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("BAD_USER_INPUT"), "{r}");
    assert!(r["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unknown field \"fee\""));
    // 2 x 8.50 delivered: the catalog's fee.
    let d = api
        .ok(
            &f.customer,
            ORDER,
            json!({"s": f.sale_id, "lines": lines(2), "d": {"addressRef": a}, "k": "d-2"}),
        )
        .await;
    assert_eq!(
        d["placeOrder"]["order"],
        json!({"total": "21.90", "deliveryFee": "4.90", "homeDelivery": true})
    );
    // 4 x 8.50 = 34.00, above 30.00: delivered free.
    let big = api.who(Role::Customer);
    let b = address(&big).await;
    let d = api
        .ok(
            &big,
            ORDER,
            json!({"s": f.sale_id, "lines": lines(4), "d": {"addressRef": b}}),
        )
        .await;
    assert_eq!(
        d["placeOrder"]["order"],
        json!({"total": "34.00", "deliveryFee": "0.00", "homeDelivery": true})
    );

    // Pick-up only again: a delivery is refused.
    api.ok(
        &f.producer,
        TERMS,
        json!({"c": f.catalog_id, "min": "5.00"}),
    )
    .await;
    let third = api.who(Role::Customer);
    let t = address(&third).await;
    let r = api
        .call(
            &third,
            ORDER,
            json!({"s": f.sale_id, "lines": lines(2), "d": {"addressRef": t}}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("DELIVERY_NOT_OFFERED"), "{r}");
    // The catalog's own minimum (5.00) holds for a pick-up too: 1 x 8.50 passes it.
    // R-ORD-7 for the market: 20.00 for any order.
    let r = api
        .call(
            &api.who(Role::MarketAdmin),
            "mutation($m: UUID!) { setMinimumOrder(marketId: $m, amount: \"20.00\") { marketId } }",
            json!({"m": f.market_id}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"), "{r}");
    api.ok(
        &f.admin,
        "mutation($m: UUID!) { setMinimumOrder(marketId: $m, amount: \"20.00\") { marketId } }",
        json!({"m": f.market_id}),
    )
    .await;
    let before = events(&api).await;
    let r = api
        .call(&third, ORDER, json!({"s": f.sale_id, "lines": lines(1)}))
        .await;
    assert_eq!(
        code(&r).as_deref(),
        Some("MINIMUM_ORDER_NOT_REACHED"),
        "{r}"
    );
    assert_eq!(
        (ext(&r, "minimum"), ext(&r, "missing")),
        (&json!("20.00"), &json!("11.50"))
    );
    assert_eq!(events(&api).await, before);
    let d = api
        .ok(&third, ORDER, json!({"s": f.sale_id, "lines": lines(3)}))
        .await;
    assert_eq!(
        d["placeOrder"]["order"],
        json!({"total": "25.50", "deliveryFee": "0.00", "homeDelivery": false})
    );
}

const MARKET_DELIVERY: &str = "mutation($m: UUID!, $d: DeliveryOfferInput) { setMarketDelivery(marketId: $m, delivery: $d) { market { delivery { fee freeAbove minimum } } } }";
const DELIVERED: &str = "mutation($s: UUID!, $lines: [LineInput!]!, $d: DeliveryInput) { placeOrder(saleId: $s, lines: $lines, delivery: $d) { orderId order { total paid deliveryFee deliveredBy } } }";

/// What the ledger holds for the market, as its administrator reads it, and whether money is
/// conserved, as an auditor reads it, once the projections caught up.
async fn held(
    api: &Api,
    f: &graphql_common::Fixture,
    auditor: &graphql_common::Who,
) -> (String, bool) {
    graphql_common::caught_up(api).await;
    let d = api
        .ok(
            &f.admin,
            "query($m: UUID!) { market(id: $m) { deliveryFeesHeld } }",
            json!({"m": f.market_id}),
        )
        .await;
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive()
        .to_string();
    let c = api
        .ok(
            auditor,
            "query($d: Date!) { ledgerBalances(asOf: $d) { conservation { holds } } }",
            json!({"d": today}),
        )
        .await;
    (
        d["market"]["deliveryFeesHeld"]
            .as_str()
            .unwrap()
            .to_string(),
        c["ledgerBalances"]["conservation"]["holds"]
            .as_bool()
            .unwrap(),
    )
}

/// R-ORD-6: a market runs home delivery at its own fee. An order of two producers' catalogs
/// is delivered by the market and its fee is the market's (held for it in the ledger, never a
/// producer's share); a one-catalog order whose producer delivers stays the producer's; a
/// cancellation gives the market's fee back; money is conserved throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_ord_6_a_market_runs_delivery_and_its_fee_is_the_markets() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let auditor = api.who(Role::Auditor);
    // Only its administrator sets it, and only a sound offer.
    let r = api
        .call(
            &api.who(Role::MarketAdmin),
            MARKET_DELIVERY,
            json!({"m": f.market_id, "d": {"fee": "6.00"}}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"), "{r}");
    let r = api
        .call(
            &f.admin,
            MARKET_DELIVERY,
            json!({"m": f.market_id, "d": {"fee": "-6.00"}}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("INVALID_ORDER_TERMS"), "{r}");
    let d = api
        .ok(
            &f.admin,
            MARKET_DELIVERY,
            json!({"m": f.market_id, "d": {"fee": "6.00", "freeAbove": "60.00", "minimum": "15.00"}}),
        )
        .await;
    assert_eq!(
        d["setMarketDelivery"]["market"]["delivery"],
        json!({"fee": "6.00", "freeAbove": "60.00", "minimum": "15.00"})
    );
    // Everyone who may see the market sees its delivery terms.
    let d = api
        .ok(
            &f.customer,
            "query($m: UUID!) { market(id: $m) { delivery { fee } minimumOrder } }",
            json!({"m": f.market_id}),
        )
        .await;
    assert_eq!(
        d["market"],
        json!({"delivery": {"fee": "6.00"}, "minimumOrder": null})
    );

    // A second producer in the same sale: eggs at 3.20.
    let second = api.who(Role::Producer);
    let d = api
        .ok(&second, graphql_common::OPEN_ACCOUNT, json!({}))
        .await;
    let second_id = d["openAccount"]["producerId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &second,
            "mutation($p: UUID!) { addProduct(producerId: $p, product: {name: \"Oeufs x6\", unit: \"boîte\", priceInclVat: \"3.20\"}) { productId } }",
            json!({"p": second_id}),
        )
        .await;
    let eggs = d["addProduct"]["productId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &second,
            "mutation($p: UUID!) { createCatalog(producerId: $p, name: \"Les oeufs\") { catalogId } }",
            json!({"p": second_id}),
        )
        .await;
    let eggs_catalog = d["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &second,
        "mutation($c: UUID!, $x: UUID!) { addOffer(catalogId: $c, productId: $x, priceInclVat: \"3.20\") { position } }",
        json!({"c": eggs_catalog, "x": eggs}),
    )
    .await;
    api.ok(
        &f.admin,
        "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { position } }",
        json!({"m": f.market_id, "c": eggs_catalog}),
    )
    .await;
    api.ok(
        &second,
        "mutation($c: UUID!, $s: UUID!) { participate(catalogId: $c, saleIds: [$s]) { position } }",
        json!({"c": eggs_catalog, "s": f.sale_id}),
    )
    .await;
    let now = chrono::Utc::now();
    api.ok(
        &second,
        "mutation($s: UUID!, $c: UUID!, $o: DateTime!, $cl: DateTime!) { overridePeriod(saleId: $s, catalogId: $c, opensAt: $o, closesAt: $cl) { position } }",
        json!({"s": f.sale_id, "c": eggs_catalog, "o": (now - chrono::Duration::hours(1)).to_rfc3339(), "cl": (now + chrono::Duration::hours(12)).to_rfc3339()}),
    )
    .await;

    let address = |who: graphql_common::Who| {
        let api = &api;
        async move {
            api.ok(
                &who,
                "mutation { registerPerson(displayName: \"Client\") { userId } }",
                json!({}),
            )
            .await;
            let d = api
                .ok(&who, "mutation { addAddress(address: \"3 route de Ribérac, Segonzac\") { addressRef } }", json!({}))
                .await;
            d["addAddress"]["addressRef"].clone()
        }
    };
    let both = |honey: i64, eggs_n: i64| {
        json!([
            {"catalogId": f.catalog_id, "productId": f.product_id, "quantity": honey},
            {"catalogId": eggs_catalog, "productId": eggs, "quantity": eggs_n},
        ])
    };
    let a = address(f.customer.clone()).await;
    // Below the market delivery's minimum (8.50 + 3.20 = 11.70 < 15.00): refused.
    let before = events(&api).await;
    let r = api
        .call(
            &f.customer,
            DELIVERED,
            json!({"s": f.sale_id, "lines": both(1, 1), "d": {"addressRef": a}}),
        )
        .await;
    assert_eq!(
        code(&r).as_deref(),
        Some("MINIMUM_ORDER_NOT_REACHED"),
        "{r}"
    );
    assert_eq!(
        (ext(&r, "minimum"), ext(&r, "missing")),
        (&json!("15.00"), &json!("3.30"))
    );
    assert_eq!(events(&api).await, before, "a refused order writes nothing");
    // 2 x 8.50 + 1 x 3.20 = 20.20, delivered by the market for 6.00, paid online.
    let d = api
        .ok(
            &f.customer,
            DELIVERED,
            json!({"s": f.sale_id, "lines": both(2, 1), "d": {"addressRef": a}}),
        )
        .await;
    assert_eq!(
        d["placeOrder"]["order"],
        json!({"total": "26.20", "paid": "26.20", "deliveryFee": "6.00", "deliveredBy": "MARKET"})
    );
    let market_order = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    assert_eq!(held(&api, &f, &auditor).await, ("6.00".into(), true));
    // The producers' shares are their lines only: the ledger holds 17.00 for the first and
    // 3.20 for the second, the fee for the market.
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive()
        .to_string();
    let d = api
        .ok(
            &auditor,
            "query($d: Date!) { ledgerBalances(asOf: $d) { accounts(first: 100) { edges { node { account party credits } } } } }",
            json!({"d": today}),
        )
        .await;
    let credits = |account: &str, party: &str| {
        d["ledgerBalances"]["accounts"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["account"] == account && e["node"]["party"] == party)
            .map(|e| e["node"]["credits"].as_str().unwrap().to_string())
    };
    assert_eq!(
        credits("ProducerPayable", &f.producer_id).as_deref(),
        Some("17.00")
    );
    assert_eq!(
        credits("ProducerPayable", &second_id).as_deref(),
        Some("3.20")
    );
    assert_eq!(
        credits("MarketPayable", &f.market_id).as_deref(),
        Some("6.00")
    );
    // Only the market's people and auditors read what it holds.
    for who in [&f.customer, &f.producer, &api.who(Role::MarketAdmin)] {
        let r = api
            .call(
                who,
                "query($m: UUID!) { market(id: $m) { deliveryFeesHeld } }",
                json!({"m": f.market_id}),
            )
            .await;
        assert!(code(&r).is_some(), "{r}");
    }

    // A one-catalog order whose producer delivers: the producer's fee, not the market's.
    api.ok(
        &f.producer,
        TERMS,
        json!({"c": f.catalog_id, "d": {"fee": "4.90"}}),
    )
    .await;
    let other = api.who(Role::Customer);
    let b = address(other.clone()).await;
    let honey = json!([{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}]);
    let d = api
        .ok(
            &other,
            DELIVERED,
            json!({"s": f.sale_id, "lines": honey, "d": {"addressRef": b}}),
        )
        .await;
    assert_eq!(
        d["placeOrder"]["order"],
        json!({"total": "21.90", "paid": "21.90", "deliveryFee": "4.90", "deliveredBy": "PRODUCER"})
    );
    assert_eq!(held(&api, &f, &auditor).await, ("6.00".into(), true));
    // A one-catalog order whose producer does not deliver: the market does.
    let third = api.who(Role::Customer);
    let t = address(third.clone()).await;
    let eggs_only = json!([{"catalogId": eggs_catalog, "productId": eggs, "quantity": 5}]);
    let d = api
        .ok(
            &third,
            DELIVERED,
            json!({"s": f.sale_id, "lines": eggs_only, "d": {"addressRef": t}}),
        )
        .await;
    assert_eq!(
        d["placeOrder"]["order"],
        json!({"total": "22.00", "paid": "22.00", "deliveryFee": "6.00", "deliveredBy": "MARKET"})
    );
    assert_eq!(held(&api, &f, &auditor).await, ("12.00".into(), true));

    // The customer cancels the first order while the period is open: all of it is refunded,
    // the market's fee included.
    api.ok(
        &f.customer,
        "mutation($o: UUID!) { cancelOrder(orderId: $o) { orderId } }",
        json!({"o": market_order}),
    )
    .await;
    let refunded = graphql_common::until(
        "the cancellation's refund",
        std::time::Duration::from_secs(20),
        || {
            let (api, f) = (&api, &f);
            let o = market_order.clone();
            async move {
                let d = api
                    .ok(
                        &f.customer,
                        "query($o: UUID!) { order(id: $o) { refunded } }",
                        json!({"o": o}),
                    )
                    .await;
                let r = d["order"]["refunded"].as_str().unwrap().to_string();
                if r == "26.20" {
                    Ok(r)
                } else {
                    Err(d)
                }
            }
        },
    )
    .await;
    assert_eq!(refunded, "26.20");
    assert_eq!(held(&api, &f, &auditor).await, ("6.00".into(), true));
}
