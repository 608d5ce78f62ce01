//! Market and catalog settings a client can change over HTTP against `etal serve` (R-SAL-1,
//! R-CAT-1, R-CAT-4): a market administrator adds and removes a slot and sets the payment mode;
//! a producer removes an offer; an administrator unlinks a catalog, refused while a sale of the
//! market not validated yet has orders for it (CATALOG_HAS_ORDERS), and others may not
//! (FORBIDDEN).

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{code, fixture, Api, PLACE_ORDER};
use serde_json::json;

const MARKET_Q: &str = "query($m: UUID!) { market(id: $m) { paymentMode slots { weekday start end } linkedCatalogs { catalogId } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_sal_1_r_cat_4_an_administrator_changes_slots_payment_mode_and_linked_catalogs() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let before = api.ok(&f.admin, MARKET_Q, json!({"m": f.market_id})).await;
    assert_eq!(before["market"]["slots"].as_array().map(Vec::len), Some(1));
    let slot = json!({"weekday": "SAT", "start": "09:00", "end": "12:00", "anchor": "2026-12-05"});
    let add =
        "mutation($m: UUID!, $s: SlotInput!) { addSlot(marketId: $m, slot: $s) { marketId } }";
    api.ok(&f.admin, add, json!({"m": f.market_id, "s": slot}))
        .await;
    let d = api.ok(&f.admin, MARKET_Q, json!({"m": f.market_id})).await;
    let slots = d["market"]["slots"].as_array().cloned().unwrap_or_default();
    assert_eq!(slots.len(), 2, "{d}");
    assert!(
        slots
            .iter()
            .any(|s| s["weekday"] == "SAT" && s["start"] == "09:00"),
        "{d}"
    );
    // Bad input names the field.
    let bad = api
        .call(
            &f.admin,
            add,
            json!({"m": f.market_id, "s": {"weekday": "SAT", "start": "9h", "end": "12:00", "anchor": "2026-12-05"}}),
        )
        .await;
    assert_eq!(code(&bad).as_deref(), Some("BAD_USER_INPUT"), "{bad}");
    let remove =
        "mutation($m: UUID!, $s: SlotInput!) { removeSlot(marketId: $m, slot: $s) { marketId } }";
    api.ok(&f.admin, remove, json!({"m": f.market_id, "s": slot}))
        .await;
    let d = api.ok(&f.admin, MARKET_Q, json!({"m": f.market_id})).await;
    assert_eq!(d["market"]["slots"], before["market"]["slots"], "{d}");

    let mode = "mutation($m: UUID!, $p: PaymentMode!) { setPaymentMode(marketId: $m, paymentMode: $p) { marketId } }";
    api.ok(&f.admin, mode, json!({"m": f.market_id, "p": "ON_SITE"}))
        .await;
    let d = api.ok(&f.admin, MARKET_Q, json!({"m": f.market_id})).await;
    assert_eq!(d["market"]["paymentMode"], "ON_SITE", "{d}");
    let other_admin = api.who(Role::MarketAdmin);
    let refused = api
        .call(&other_admin, mode, json!({"m": f.market_id, "p": "ONLINE"}))
        .await;
    assert_eq!(code(&refused).as_deref(), Some("FORBIDDEN"), "{refused}");

    // R-CAT-1: the producer removes the chicken's offer.
    let remove_offer = "mutation($c: UUID!, $x: UUID!) { removeOffer(catalogId: $c, productId: $x) { catalogId } }";
    api.ok(
        &f.producer,
        remove_offer,
        json!({"c": f.catalog_id, "x": f.chicken_id}),
    )
    .await;
    let d = api
        .ok(
            &f.producer,
            "query($c: UUID!) { catalog(id: $c) { offers { nodes { productId } } } }",
            json!({"c": f.catalog_id}),
        )
        .await;
    assert_eq!(
        d["catalog"]["offers"]["nodes"],
        json!([{"productId": f.product_id}]),
        "{d}"
    );

    // R-CAT-4: an order in the open sale keeps the catalog linked.
    api.ok(
        &f.customer,
        PLACE_ORDER,
        json!({"s": f.sale_id, "k": "o-1", "lines": [
            {"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}]}),
    )
    .await;
    let unlink = "mutation($m: UUID!, $c: UUID!) { unlinkCatalog(marketId: $m, catalogId: $c) { marketId } }";
    let refused = api
        .call(
            &f.admin,
            unlink,
            json!({"m": f.market_id, "c": f.catalog_id}),
        )
        .await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("CATALOG_HAS_ORDERS"),
        "{refused}"
    );
    let refused = api
        .call(
            &f.producer,
            unlink,
            json!({"m": f.market_id, "c": f.catalog_id}),
        )
        .await;
    assert_eq!(code(&refused).as_deref(), Some("FORBIDDEN"), "{refused}");
    // A second catalog of the producer, linked then unlinked.
    let d = api
        .ok(
            &f.producer,
            "mutation($p: UUID!) { createCatalog(producerId: $p, name: \"Conserves\") { catalogId } }",
            json!({"p": f.producer_id}),
        )
        .await;
    let second = d["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &f.admin,
        "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { marketId } }",
        json!({"m": f.market_id, "c": second}),
    )
    .await;
    api.ok(&f.admin, unlink, json!({"m": f.market_id, "c": second}))
        .await;
    let d = api.ok(&f.admin, MARKET_Q, json!({"m": f.market_id})).await;
    assert_eq!(
        d["market"]["linkedCatalogs"],
        json!([{"catalogId": f.catalog_id}]),
        "{d}"
    );
}

/// R-SAL-2 over HTTP: a producer takes part in all the recurring sales of a market
/// (`participateInRecurringSales`), the market shows it (`recurringParticipations`), and the
/// next sales `generateSales` plans have the catalog taking part with its default period;
/// after `stopRecurringParticipation`, sales generated later do not. Another producer cannot
/// enrol a catalog that is not theirs (FORBIDDEN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_sal_2_all_the_recurring_sales_include_the_sales_generated_later() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let join = "mutation($m: UUID!, $c: UUID!) { participateInRecurringSales(marketId: $m, catalogId: $c, opensHoursBefore: 72, closesHoursBefore: 12) { marketId } }";
    let other = api.who(Role::Producer);
    let refused = api
        .call(&other, join, json!({"m": f.market_id, "c": f.catalog_id}))
        .await;
    assert_eq!(code(&refused).as_deref(), Some("FORBIDDEN"), "{refused}");
    api.ok(
        &f.producer,
        join,
        json!({"m": f.market_id, "c": f.catalog_id}),
    )
    .await;
    let d = api
        .ok(
            &f.admin,
            "query($m: UUID!) { market(id: $m) { recurringParticipations { catalogId producerId opensHoursBefore closesHoursBefore } } }",
            json!({"m": f.market_id}),
        )
        .await;
    assert_eq!(
        d["market"]["recurringParticipations"],
        json!([{"catalogId": f.catalog_id, "producerId": f.producer_id, "opensHoursBefore": 72, "closesHoursBefore": 12}])
    );
    let generate = "mutation($m: UUID!, $f: Date!, $t: Date!) { generateSales(marketId: $m, from: $f, to: $t) { saleIds } }";
    let sale_q = "query($s: UUID!) { sale(id: $s) { startsAt participations { catalogId opensAt closesAt } } }";
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    // The fixture's slot is weekly: the next week's sale.
    let week = |n: i64| {
        (
            (today + chrono::Duration::days(7 * n + 1)).to_string(),
            (today + chrono::Duration::days(7 * n + 7)).to_string(),
        )
    };
    let (from, to) = week(1);
    let d = api
        .ok(
            &f.admin,
            generate,
            json!({"m": f.market_id, "f": from, "t": to}),
        )
        .await;
    let sale = d["generateSales"]["saleIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let s = api.ok(&f.customer, sale_q, json!({"s": sale})).await;
    let part = &s["sale"]["participations"][0];
    assert_eq!(part["catalogId"], f.catalog_id.as_str(), "{s}");
    let starts = graphql_common::instant(&s["sale"]["startsAt"]);
    assert_eq!(
        (
            starts - graphql_common::instant(&part["opensAt"]),
            starts - graphql_common::instant(&part["closesAt"])
        ),
        (chrono::Duration::hours(72), chrono::Duration::hours(12)),
        "{s}"
    );
    api.ok(
        &f.producer,
        "mutation($m: UUID!, $c: UUID!) { stopRecurringParticipation(marketId: $m, catalogId: $c) { marketId } }",
        json!({"m": f.market_id, "c": f.catalog_id}),
    )
    .await;
    let (from, to) = week(2);
    let d = api
        .ok(
            &f.admin,
            generate,
            json!({"m": f.market_id, "f": from, "t": to}),
        )
        .await;
    let later = d["generateSales"]["saleIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let s = api.ok(&f.customer, sale_q, json!({"s": later})).await;
    assert_eq!(s["sale"]["participations"], json!([]), "{s}");
}
