//! The read side over HTTP: a sale with two orders, then the recaps, stock levels, annual sales,
//! statistics, the ledger and the event history answer with the figures the orders imply.

use crate::graphql_common;

use std::collections::BTreeSet;

use etal_domain::Role;
use graphql_common::{code, fixture, Api, PLACE_ORDER};
use serde_json::{json, Value};

fn money(v: &Value) -> rust_decimal::Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a Money string: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projections_answer_over_graphql() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let zoe = f.customer.clone();
    let albert = api.who(Role::Customer);
    for (who, name) in [(&zoe, "Zoé Martin"), (&albert, "Albert Durand")] {
        api.ok(
            who,
            "mutation($n: String!) { registerPerson(displayName: $n) { displayName } }",
            json!({"n": name}),
        )
        .await;
    }
    // Zoé: 3 pots of honey (8.50) and a chicken (12.00/kg, estimated 1.5 kg) = 43.50.
    // Albert: 2 pots of honey = 17.00.
    let honey = (8.50, 5);
    let d = api
        .ok(
            &zoe,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [
                {"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 3},
                {"catalogId": f.catalog_id, "productId": f.chicken_id, "quantity": 1}]}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "43.50");
    let zoe_number = d["placeOrder"]["order"]["number"]
        .as_str()
        .unwrap()
        .to_string();
    let d = api
        .ok(
            &albert,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}]}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "17.00");
    let honey_amount = format!("{:.2}", honey.0 * honey.1 as f64); // 42.50
    let total = "60.50";

    let d = api
        .ok(
            &f.admin,
            "query($s: UUID!) { sale(id: $s) { date } }",
            json!({"s": f.sale_id}),
        )
        .await;
    let date = d["sale"]["date"].as_str().unwrap().to_string();

    // The producer's recap of their catalog.
    let recap = "query($s: UUID!, $c: UUID) { orderRecap(saleId: $s, catalogId: $c) {
        scopes { catalogId }
        byProduct { name quantity orders linesToWeigh amountInclVat amountExclVat vatAmount vatRate }
        vatTotals { vatRate amountExclVat vatAmount amountInclVat }
        byCustomer(first: 10) { edges { node { number customer amountInclVat orderTotal lines { name quantity amountInclVat } } } pageInfo { hasNextPage } }
        signOffList(first: 10) { edges { node { customer dueAtPickup paymentStatus lines { name } } } } } }";
    let d = api
        .ok(
            &f.producer,
            recap,
            json!({"s": f.sale_id, "c": f.catalog_id}),
        )
        .await;
    let r = &d["orderRecap"];
    eprintln!("{}", serde_json::to_string_pretty(r).unwrap());
    let by_product = r["byProduct"].as_array().unwrap();
    assert_eq!(by_product.len(), 2);
    let miel = &by_product[0];
    assert_eq!(miel["name"], "Miel 500 g");
    assert_eq!(
        (miel["quantity"].as_i64(), miel["orders"].as_i64()),
        (Some(5), Some(2))
    );
    assert_eq!(miel["amountInclVat"], honey_amount.as_str());
    assert_eq!(miel["vatRate"], "5.5");
    let poulet = &by_product[1];
    assert_eq!(poulet["name"], "Poulet fermier");
    assert_eq!(
        (poulet["quantity"].as_i64(), poulet["linesToWeigh"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(poulet["amountInclVat"], "18.00");
    for p in by_product {
        assert_eq!(
            money(&p["amountExclVat"]) + money(&p["vatAmount"]),
            money(&p["amountInclVat"])
        );
    }
    let vat = r["vatTotals"].as_array().unwrap();
    assert_eq!(vat.len(), 1);
    assert_eq!(vat[0]["amountInclVat"], total);
    assert_eq!(
        money(&vat[0]["amountExclVat"]) + money(&vat[0]["vatAmount"]),
        money(&vat[0]["amountInclVat"])
    );
    let excl: rust_decimal::Decimal = by_product.iter().map(|p| money(&p["amountExclVat"])).sum();
    assert_eq!(excl, money(&vat[0]["amountExclVat"]));
    let orders: Vec<&Value> = r["byCustomer"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0]["number"], zoe_number.as_str());
    assert_eq!(orders[0]["customer"], "Zoé Martin");
    assert_eq!(orders[0]["amountInclVat"], "43.50");
    assert_eq!(orders[0]["lines"].as_array().unwrap().len(), 2);
    assert_eq!(orders[1]["customer"], "Albert Durand");
    assert_eq!(orders[1]["amountInclVat"], "17.00");
    // The sign-off list: by name, without lines; online payment, nothing due at pick-up.
    let sign: Vec<&Value> = r["signOffList"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(
        sign.iter()
            .map(|n| n["customer"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Albert Durand", "Zoé Martin"]
    );
    assert!(sign
        .iter()
        .all(|n| n["lines"].as_array().unwrap().is_empty()));
    assert!(sign
        .iter()
        .all(|n| n["paymentStatus"] == "PAID" && n["dueAtPickup"] == "0.00"));

    // The market's administrator sees the whole sale (the same single catalog); the auditor too;
    // the producer's day is the same recap.
    let by_product_q = "query($s: UUID!) { orderRecap(saleId: $s) { byProduct { name amountInclVat } vatTotals { amountInclVat } } }";
    for who in [&f.admin, &api.who(Role::Auditor)] {
        let d = api.ok(who, by_product_q, json!({"s": f.sale_id})).await;
        assert_eq!(d["orderRecap"]["vatTotals"][0]["amountInclVat"], total);
    }
    let d = api
        .ok(
            &f.producer,
            "query($p: UUID!, $d: Date!) { producerDayRecap(producerId: $p, date: $d) { scopes { saleId } vatTotals { amountInclVat } } }",
            json!({"p": f.producer_id, "d": date}),
        )
        .await;
    assert_eq!(
        d["producerDayRecap"]["vatTotals"][0]["amountInclVat"],
        total
    );
    assert_eq!(
        d["producerDayRecap"]["scopes"][0]["saleId"],
        f.sale_id.as_str()
    );

    // Another producer asking for this recap by id: refused, no data.
    let other = api.who(Role::Producer);
    api.ok(&other, graphql_common::OPEN_ACCOUNT, json!({}))
        .await;
    let body = api
        .call(&other, recap, json!({"s": f.sale_id, "c": f.catalog_id}))
        .await;
    assert_eq!(code(&body).as_deref(), Some("FORBIDDEN"), "{body}");
    assert!(body["data"].is_null(), "{body}");

    // Stock levels: honey 10 - 5 ordered; the chicken is unlimited.
    let d = api
        .ok(
            &f.producer,
            "query($p: UUID!) { stockLevels(producerId: $p, first: 10) { edges { node { name real ordered available } } } }",
            json!({"p": f.producer_id}),
        )
        .await;
    assert_eq!(
        d["stockLevels"]["edges"],
        json!([
            {"node": {"name": "Miel 500 g", "real": 10, "ordered": 5, "available": 5}},
            {"node": {"name": "Poulet fermier", "real": null, "ordered": 1, "available": null}}
        ])
    );

    // Annual sales: both orders count against the cap (not an AMAP market).
    let d = api
        .ok(
            &f.producer,
            "query($p: UUID!) { annualSales(producerId: $p) { year orders nonAmapCommitted amapConfirmed amapPending } }",
            json!({"p": f.producer_id}),
        )
        .await;
    let years = d["annualSales"].as_array().unwrap();
    assert_eq!(years.len(), 1, "{d}");
    assert_eq!(years[0]["year"].as_i64(), Some(date[..4].parse().unwrap()));
    assert_eq!(years[0]["orders"], 2);
    assert_eq!(years[0]["nonAmapCommitted"], total);

    // Statistics.
    let d = api
        .ok(
            &f.producer,
            "query($p: UUID!, $d: Date!) { producerProductSales(producerId: $p, from: $d, to: $d) { edges { node { name quantity turnoverInclVat } } }
              producerMarkets(producerId: $p, from: $d, to: $d) { name sales orders turnoverInclVat } }",
            json!({"p": f.producer_id, "d": date}),
        )
        .await;
    assert_eq!(
        d["producerProductSales"]["edges"][0]["node"],
        json!({"name": "Miel 500 g", "quantity": 5, "turnoverInclVat": honey_amount})
    );
    assert_eq!(
        d["producerMarkets"],
        json!([{"name": "Segonzac", "sales": 1, "orders": 2, "turnoverInclVat": total}])
    );
    let d = api
        .ok(
            &f.admin,
            "query($m: UUID!, $d: Date!) { marketWeeklySales(marketId: $m, from: $d, to: $d) { orders customers turnoverInclVat }
              ordersPerSale(marketId: $m, from: $d, to: $d) { saleId orders customers turnoverInclVat } }",
            json!({"m": f.market_id, "d": date}),
        )
        .await;
    assert_eq!(
        d["marketWeeklySales"][0],
        json!({"orders": 2, "customers": 2, "turnoverInclVat": total})
    );
    assert_eq!(d["ordersPerSale"][0]["saleId"], f.sale_id.as_str());
    assert_eq!(d["ordersPerSale"][0]["orders"], 2);
    // A range over 400 days is refused.
    let body = api
        .call(
            &f.admin,
            "query($m: UUID!) { marketWeeklySales(marketId: $m, from: \"2025-01-01\", to: \"2026-12-31\") { orders } }",
            json!({"m": f.market_id}),
        )
        .await;
    assert_eq!(code(&body).as_deref(), Some("BAD_USER_INPUT"), "{body}");

    // The ledger: online payments (60.50) are all held; conservation holds.
    let auditor = api.who(Role::Auditor);
    let d = api
        .ok(
            &auditor,
            "query($d: Date!) { ledgerBalances(asOf: $d) { conservation { payments refunds fees payouts held holds } accounts(first: 100) { edges { node { account balance } } } }
              journal(first: 100) { edges { cursor node { entryId postings { debit credit } } } pageInfo { hasNextPage } } }",
            json!({"d": date}),
        )
        .await;
    eprintln!("ledger: {}", d["ledgerBalances"]["conservation"]);
    let c = &d["ledgerBalances"]["conservation"];
    assert_eq!(c["holds"], true);
    assert_eq!(c["payments"], total);
    for e in d["journal"]["edges"].as_array().unwrap() {
        let debit: rust_decimal::Decimal = e["node"]["postings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| money(&p["debit"]))
            .sum();
        let credit: rust_decimal::Decimal = e["node"]["postings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| money(&p["credit"]))
            .sum();
        assert_eq!(debit, credit, "unbalanced entry {e}");
    }
    // Payouts: nothing credited before the sale is validated.
    let d = api
        .ok(
            &f.producer,
            "query($p: UUID!) { payouts(producerId: $p) { creditedTotal balanceHeld payouts { total } } }",
            json!({"p": f.producer_id}),
        )
        .await;
    assert_eq!(
        d["payouts"],
        json!({"creditedTotal": "0.00", "balanceHeld": "0.00", "payouts": []})
    );

    // The event history: the whole log in pages of 7, no gap and no repeat, against the table.
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY transaction_id, global_position",
    )
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    let q = "query($after: String) { eventHistory(first: 7, after: $after) { edges { cursor node { position eventType aggregateType actor recordedAt } } pageInfo { hasNextPage } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = api.ok(&auditor, q, json!({"after": after})).await;
        let edges = d["eventHistory"]["edges"].as_array().unwrap().clone();
        assert!(edges.len() <= 7);
        for e in &edges {
            let pos = e["node"]["position"].as_str().unwrap();
            seen.push(pos.split_once('/').unwrap().1.parse::<i64>().unwrap());
        }
        if d["eventHistory"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = edges.last().unwrap()["cursor"].clone();
    }
    // Events written after the snapshot (the scheduler) may follow; the prefix must be exact.
    assert!(
        seen.len() >= expected.len(),
        "{} < {}",
        seen.len(),
        expected.len()
    );
    assert_eq!(&seen[..expected.len()], &expected[..]);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
    // By aggregate: the sale's events in sequence, pages of 2.
    let q = "query($id: String!, $after: String) { eventHistory(aggregateType: \"sale\", aggregateId: $id, first: 2, after: $after) { edges { cursor node { sequence eventType actor } } pageInfo { hasNextPage } } }";
    let mut seqs = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = api
            .ok(&auditor, q, json!({"id": f.sale_id, "after": after}))
            .await;
        let edges = d["eventHistory"]["edges"].as_array().unwrap().clone();
        seqs.extend(
            edges
                .iter()
                .map(|e| e["node"]["sequence"].as_i64().unwrap()),
        );
        if d["eventHistory"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = edges.last().unwrap()["cursor"].clone();
    }
    assert!(seqs.len() >= 3, "{seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    // By time: the last hour, pages of 50, as many events as the table has in that window.
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(1)).to_rfc3339();
    let to = (now + chrono::Duration::minutes(1)).to_rfc3339();
    let q = "query($f: DateTime!, $t: DateTime!, $after: String) { eventHistory(from: $f, to: $t, first: 50, after: $after) { edges { cursor node { position } } pageInfo { hasNextPage } } }";
    let mut n = 0;
    let mut after = Value::Null;
    loop {
        let d = api
            .ok(&auditor, q, json!({"f": from, "t": to, "after": after}))
            .await;
        let edges = d["eventHistory"]["edges"].as_array().unwrap().clone();
        n += edges.len();
        if d["eventHistory"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = edges.last().unwrap()["cursor"].clone();
    }
    assert!(n >= expected.len(), "{n} < {}", expected.len());
}
