//! R-ORD-3, R-CAT-3 over HTTP against `etal serve` with no scheduler at all
//! (`ETAL_SCHEDULER=false`): whether an order period is open is decided from the clock and the
//! period, not from whether the scheduled opening has run. A period that opened an hour ago
//! reads OPEN and takes an order at once; the first order opens it, its prices frozen for the
//! sale, in the order's own commit. A period that opens in an hour reads NOT_OPEN and refuses
//! (ORDER_PERIOD_NOT_OPEN); moved to have opened a minute ago, it takes the order.

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{code, fixture_with, Api, PLACE_ORDER};
use serde_json::json;

const PERIOD_Q: &str = "query($s: UUID!) { sale(id: $s) { participations { period } } }";
const OVERRIDE: &str = "mutation($s: UUID!, $c: UUID!, $o: DateTime!, $cl: DateTime!) { overridePeriod(saleId: $s, catalogId: $c, opensAt: $o, closesAt: $cl) { position } }";

/// The sale's events of `types` committed in the transaction of the order's `OrderPlaced`.
async fn in_the_order_commit(api: &Api, order: &str, sale: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT e.event_type FROM events e \
         WHERE e.transaction_id = (SELECT transaction_id FROM events WHERE aggregate_id = $1 \
                                   AND event_type = 'OrderPlaced') \
           AND ((e.aggregate_type = 'sale' AND e.aggregate_id = $2) OR e.aggregate_type = 'catalog') \
         ORDER BY e.global_position",
    )
    .bind(order)
    .bind(sale)
    .fetch_all(&api.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_ord_3_a_period_is_open_by_the_clock_and_the_first_order_opens_it() {
    let api = Api::start(&[("ETAL_SCHEDULER", "false")]).await;
    // The fixture's period opened an hour ago; no scheduler will ever run.
    let f = fixture_with(&api, false).await;
    let opened: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'OrderPeriodOpened'",
    )
    .bind(&f.sale_id)
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(opened, 0, "nothing opened the period");
    let d = api.ok(&f.customer, PERIOD_Q, json!({"s": f.sale_id})).await;
    assert_eq!(d["sale"]["participations"][0]["period"], "OPEN", "{d}");

    let lines = json!([{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}]);
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": lines, "k": "first"}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "17.00", "{d}");
    let order = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    assert_eq!(
        in_the_order_commit(&api, &order, &f.sale_id).await,
        ["PricesFrozenForSale", "OrderPeriodOpened", "OrderAttached"],
        "R-CAT-3: the prices are frozen and the period opened in the first order's commit"
    );
    // A second customer: the period is open now, nothing opens it again.
    let other = api.who(Role::Customer);
    let d = api
        .ok(
            &other,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": lines, "k": "second"}),
        )
        .await;
    let second = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    assert_eq!(
        in_the_order_commit(&api, &second, &f.sale_id).await,
        ["OrderAttached"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_ord_3_a_period_not_open_yet_refuses_then_takes_orders_once_its_time_has_come() {
    let api = Api::start(&[("ETAL_SCHEDULER", "false")]).await;
    let f = fixture_with(&api, false).await;
    let now = chrono::Utc::now();
    let set = |opens: chrono::Duration| {
        json!({"s": f.sale_id, "c": f.catalog_id,
               "o": (now + opens).to_rfc3339(),
               "cl": (now + chrono::Duration::hours(12)).to_rfc3339()})
    };
    api.ok(&f.producer, OVERRIDE, set(chrono::Duration::hours(1)))
        .await;
    let d = api.ok(&f.customer, PERIOD_Q, json!({"s": f.sale_id})).await;
    assert_eq!(d["sale"]["participations"][0]["period"], "NOT_OPEN", "{d}");
    let lines = json!([{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}]);
    let refused = api
        .call(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": lines, "k": "early"}),
        )
        .await;
    let codes: Vec<String> = refused["errors"][0]["extensions"]["lines"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|x| x["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        code(&refused).as_deref() == Some("ORDER_PERIOD_NOT_OPEN")
            || codes.iter().any(|c| c == "ORDER_PERIOD_NOT_OPEN"),
        "{refused}"
    );
    // Its time has come (moved to a minute ago): open by the clock, no scheduler needed.
    api.ok(&f.producer, OVERRIDE, set(-chrono::Duration::minutes(1)))
        .await;
    let d = api.ok(&f.customer, PERIOD_Q, json!({"s": f.sale_id})).await;
    assert_eq!(d["sale"]["participations"][0]["period"], "OPEN", "{d}");
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": lines, "k": "on-time"}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "8.50", "{d}");
}

/// R-CAT-3 with the period open by the clock and no scheduler: a new price set after the
/// opening does not reach the sale. The change's commit freezes the sale's prices and opens the
/// period first; the sale's offer and an order keep the price it opened with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_cat_3_a_price_changed_after_the_opening_does_not_reach_the_open_sale() {
    let api = Api::start(&[("ETAL_SCHEDULER", "false")]).await;
    let f = fixture_with(&api, false).await;
    api.ok(
        &f.producer,
        "mutation($c: UUID!, $x: UUID!, $p: Money!) { setOfferPrice(catalogId: $c, productId: $x, priceInclVat: $p) { catalogId } }",
        json!({"c": f.catalog_id, "x": f.product_id, "p": "9.90"}),
    )
    .await;
    let d = api
        .ok(
            &f.customer,
            "query($s: UUID!) { sale(id: $s) { participations { offers { productId priceInclVat } } } }",
            json!({"s": f.sale_id}),
        )
        .await;
    let honey = d["sale"]["participations"][0]["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["productId"] == f.product_id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(honey["priceInclVat"], "8.50", "{d}");
    let lines = json!([{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}]);
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": lines, "k": "after-change"}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "8.50", "{d}");
}
