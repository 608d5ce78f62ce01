//! R-ACC-5 over HTTP against `etal serve`: archiving a product removes it from every listing at
//! once (the sale's offers a customer reads, the catalog's offers its producer reads) and an
//! order for it is refused (PRODUCT_UNAVAILABLE); unarchiving brings it back and it can be
//! ordered again.

use crate::graphql_common;

use graphql_common::{fixture, Api, PLACE_ORDER};
use serde_json::{json, Value};

const ARCHIVE: &str = "mutation($p: UUID!, $x: UUID!, $a: Boolean!) { archiveProduct(producerId: $p, productId: $x, archived: $a) { productId } }";
const SALE_OFFERS: &str =
    "query($s: UUID!) { sale(id: $s) { participations { offers { productId } } } }";
const CATALOG_OFFERS: &str =
    "query($c: UUID!) { catalog(id: $c) { offers { nodes { productId } } } }";

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|o| o["productId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// (the sale's offers a customer reads, the catalog's offers its producer reads), product ids.
async fn listings(api: &Api, f: &graphql_common::Fixture) -> (Vec<String>, Vec<String>) {
    let sale = api
        .ok(&f.customer, SALE_OFFERS, json!({"s": f.sale_id}))
        .await;
    let catalog = api
        .ok(&f.producer, CATALOG_OFFERS, json!({"c": f.catalog_id}))
        .await;
    (
        ids(&sale["sale"]["participations"][0]["offers"]),
        ids(&catalog["catalog"]["offers"]["nodes"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_acc_5_an_archived_product_leaves_every_listing_and_comes_back_on_unarchive() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let both = {
        let mut v = vec![f.product_id.clone(), f.chicken_id.clone()];
        v.sort();
        v
    };
    assert_eq!(listings(&api, &f).await, (both.clone(), both.clone()));

    api.ok(
        &f.producer,
        ARCHIVE,
        json!({"p": f.producer_id, "x": f.chicken_id, "a": true}),
    )
    .await;
    let honey_only = vec![f.product_id.clone()];
    assert_eq!(
        listings(&api, &f).await,
        (honey_only.clone(), honey_only),
        "R-ACC-5: the archived chicken is in no listing"
    );
    let refused = api
        .call(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "k": "chicken", "lines": [
                {"catalogId": f.catalog_id, "productId": f.chicken_id, "quantity": 1}]}),
        )
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["lines"][0]["code"], "PRODUCT_UNAVAILABLE",
        "{refused}"
    );

    api.ok(
        &f.producer,
        ARCHIVE,
        json!({"p": f.producer_id, "x": f.chicken_id, "a": false}),
    )
    .await;
    assert_eq!(listings(&api, &f).await, (both.clone(), both));
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "k": "chicken-again", "lines": [
                {"catalogId": f.catalog_id, "productId": f.chicken_id, "quantity": 1}]}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "18.00", "{d}");
}
