//! R-ORD-6 and R-ORD-7 over HTTP against `etal serve`: home delivery is offered by a producer's
//! catalog at the fee it sets (free above an amount), never at a fee the customer types; a
//! catalog, a delivery and a market may set a minimum order, and an order below one is refused
//! with MINIMUM_ORDER_NOT_REACHED naming the minimum and what is missing, writing nothing.

mod graphql_common;

use etal_domain::Role;
use graphql_common::{code, fixture, Api};
use serde_json::{json, Value};

const TERMS: &str = "mutation($c: UUID!, $d: DeliveryOfferInput, $min: Money) { setOrderTerms(catalogId: $c, delivery: $d, minimumOrder: $min) { catalog { delivery { fee freeAbove minimum } minimumOrder } } }";
const ORDER: &str = "mutation($s: UUID!, $lines: [LineInput!]!, $d: DeliveryInput, $k: String) { placeOrder(saleId: $s, lines: $lines, delivery: $d, idempotencyKey: $k) { orderId order { total deliveryFee homeDelivery } } }";

async fn events(api: &Api) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
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
