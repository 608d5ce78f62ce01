//! Read-your-writes paid by the reads (ADR 0018), against `etal serve` over HTTP: a client's
//! next query sees what its mutation wrote; a mutation answers once committed, without waiting
//! for the projectors; a query waits for them, bounded, then answers with what is there.

use std::time::{Duration, Instant};

use serde_json::json;

use super::graphql_common::{caught_up, fixture, Api, Fixture, PLACE_ORDER, SECRET};

/// The fixture product's stock level as the producer's `stockLevels` query shows it (from the
/// `stock_levels` projection), and how long the query took.
async fn stock_level(api: &Api, f: &Fixture) -> (serde_json::Value, Duration) {
    let t = Instant::now();
    let d = api
        .ok(
            &f.producer,
            "query($p: UUID!) { stockLevels(producerId: $p) { nodes { productId real ordered available } } }",
            json!({"p": f.producer_id}),
        )
        .await;
    let took = t.elapsed();
    let nodes = d["stockLevels"]["nodes"].as_array().expect("nodes");
    let row = nodes
        .iter()
        .find(|n| n["productId"] == f.product_id.as_str())
        .unwrap_or_else(|| panic!("no row for {}: {d}", f.product_id));
    (
        json!({"real": row["real"], "ordered": row["ordered"], "available": row["available"]}),
        took,
    )
}

/// Each order (a customer each), then at once the stock levels: the query shows it, every time.
#[tokio::test]
async fn the_next_query_sees_each_order() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    for i in 1..=8 {
        let customer = api.who(etal_domain::Role::Customer);
        api.ok(
            &customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}], "k": format!("ryw-{i}")}),
        )
        .await;
        assert_eq!(
            stock_level(&api, &f).await.0,
            json!({"real": 10, "ordered": i, "available": 10 - i}),
            "the query right after order {i}"
        );
    }
}

/// No projector running (the server that ran them stopped; the one that answers runs none):
/// `placeOrder` still answers at once; a query waits the whole bound and answers with what the
/// projections hold; once a process runs the projectors again, the next query shows the order.
/// (Stopping the projectors rather than holding one with a lock: an open transaction would
/// hold the watermark of every database of the cluster, and so the tests running beside.)
#[tokio::test]
async fn mutations_answer_once_committed_and_queries_wait_bounded() {
    let bound = Duration::from_secs(3);
    let mut api = Api::start(&[]).await;
    let f = fixture(&api).await;
    caught_up(&api).await;
    let (quiet, base) = etal_tests::spawn_server(
        &api.db.url,
        &[
            ("ETAL_JWT_SECRET", SECRET),
            ("ETAL_PROJECTORS", "false"),
            ("ETAL_SCHEDULER", "false"),
            ("ETAL_READ_YOUR_WRITES_MS", "3000"),
        ],
    )
    .await;
    drop(std::mem::replace(&mut api.server, quiet));
    api.base = base;

    let t = Instant::now();
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}], "k": "quiet-1"}),
        )
        .await;
    let mutation_took = t.elapsed();
    assert!(d["placeOrder"]["position"].is_string(), "{d}");
    assert!(
        mutation_took < bound / 2,
        "placeOrder waited for the projectors: {mutation_took:?}"
    );

    let (level, query_took) = stock_level(&api, &f).await;
    assert!(
        query_took >= bound - Duration::from_millis(200),
        "the query did not wait for the projectors: {query_took:?}"
    );
    assert_eq!(
        level["ordered"], 0,
        "without projectors the query answers what they hold: {level}"
    );
    // Liveness never waits for the projectors.
    let t = Instant::now();
    let (status, body) = api.raw(None, "{ health }", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(t.elapsed() < bound / 2, "{body}");

    // Another process runs the projectors: the next query waits for them, then shows it.
    let (_projecting, _) = etal_tests::spawn_server(
        &api.db.url,
        &[("ETAL_JWT_SECRET", SECRET), ("ETAL_SCHEDULER", "false")],
    )
    .await;
    assert_eq!(
        stock_level(&api, &f).await.0,
        json!({"real": 10, "ordered": 2, "available": 8}),
        "once a process projects again"
    );
}
