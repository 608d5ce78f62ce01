//! Authorization matrix over HTTP: every query and mutation x every role, allowed or denied as
//! the rules say (R-ACC-2: only the producer's people see their account, catalogs and stock; a
//! customer their own orders; auditors read everything; ...), and nothing leaks from a denial.

mod graphql_common;

use etal_domain::Role;
use graphql_common::{fixture, Api, Who, PLACE_ORDER};
use serde_json::{json, Value};

const DENIED: [&str; 3] = ["UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"];

fn denial(body: &Value) -> Option<String> {
    body["errors"].as_array()?.iter().find_map(|e| {
        let c = e["extensions"]["code"].as_str()?;
        DENIED.contains(&c).then(|| c.to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_allows_exactly_the_roles_it_should_and_leaks_nothing() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    api.ok(
        &f.customer,
        "mutation { registerPerson(displayName: \"Alice Secretname\") { displayName } }",
        json!({}),
    )
    .await;
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}]}),
        )
        .await;
    let order_id = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let line = d["placeOrder"]["order"]["lines"][0]["line"]
        .as_u64()
        .unwrap();

    let other_producer = api.who(Role::Producer);
    api.ok(&other_producer, graphql_common::OPEN_ACCOUNT, json!({}))
        .await;
    let other_admin = api.who(Role::MarketAdmin);
    let other_customer = api.who(Role::Customer);
    let auditor = api.who(Role::Auditor);
    let platform = api.who(Role::PlatformAdmin);
    let anonymous = Who {
        user: etal_domain::ids::UserId::new(),
        role: Role::Customer,
        token: String::new(),
    };
    let people: Vec<(&str, &Who)> = vec![
        ("anonymous", &anonymous),
        ("owner", &f.producer),
        ("other_producer", &other_producer),
        ("admin", &f.admin),
        ("other_admin", &other_admin),
        ("customer", &f.customer),
        ("other_customer", &other_customer),
        ("auditor", &auditor),
        ("platform", &platform),
    ];
    let d = api
        .ok(
            &f.admin,
            "query($s: UUID!) { sale(id: $s) { date } }",
            json!({"s": f.sale_id}),
        )
        .await;
    let date = d["sale"]["date"].as_str().unwrap().to_string();
    let v = json!({
        "d": date,
        "p": f.producer_id, "x": f.product_id, "c": f.catalog_id, "o": order_id, "m": f.market_id,
        "s": f.sale_id, "u": f.customer.user.0, "l": line, "r": uuid::Uuid::new_v4(),
    });
    // (operation, roles allowed); every other role is denied.
    let matrix: Vec<(&str, &[&str])> = vec![
        ("query($p: UUID!) { producer(id: $p) { plan charterVersion } }", &["owner", "auditor", "platform"]),
        ("query($p: UUID!) { producer(id: $p) { products { edges { node { name } } } } }", &["owner", "auditor"]),
        ("query($p: UUID!, $x: UUID!) { stockLevel(producerId: $p, productId: $x) { available } }", &["owner", "auditor"]),
        ("query($p: UUID!, $x: UUID!) { producer(id: $p) { product(id: $x) { name stock { available } } } }", &["owner", "auditor"]),
        ("query($c: UUID!) { catalog(id: $c) { offers { edges { node { name } } } } }", &["owner", "auditor", "admin", "other_admin"]),
        ("query($o: UUID!) { order(id: $o) { number customerName lines { name } } }", &["owner", "admin", "customer", "auditor"]),
        ("query($o: UUID!) { order(id: $o) { payments { amount } receipt { totalInclVat } } }", &["admin", "customer", "auditor"]),
        ("query($m: UUID!) { market(id: $m) { administrators linkedCatalogs { catalogId } } }", &["admin", "auditor", "platform"]),
        ("query($m: UUID!) { market(id: $m) { name slots { weekday } } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("query($s: UUID!) { sale(id: $s) { orders { edges { node { number customerName } } } } }", &["admin", "auditor"]),
        ("query($s: UUID!) { sale(id: $s) { status participations { offers { name } } } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("query($u: UUID!) { displayName(userId: $u) }", &["customer", "auditor", "platform"]),
        ("{ me { role } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("{ health }", &["anonymous", "owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        // The read side (projections, payouts, the log).
        ("query($s: UUID!, $c: UUID!) { orderRecap(saleId: $s, catalogId: $c) { byProduct { name } byCustomer { edges { node { customer } } } } }", &["owner", "admin", "auditor"]),
        ("query($s: UUID!) { orderRecap(saleId: $s) { vatTotals { amountInclVat } signOffList { edges { node { customer } } } } }", &["owner", "admin", "auditor"]),
        ("query($p: UUID!, $d: Date!) { producerDayRecap(producerId: $p, date: $d) { byProduct { name } } }", &["owner", "auditor"]),
        ("query($p: UUID!) { stockLevels(producerId: $p) { edges { node { name available } } } }", &["owner", "auditor"]),
        ("query($p: UUID!) { annualSales(producerId: $p) { orders nonAmapCommitted } }", &["owner", "auditor"]),
        ("query($p: UUID!, $d: Date!) { producerProductSales(producerId: $p, from: $d, to: $d) { edges { node { name } } } }", &["owner", "auditor"]),
        ("query($p: UUID!, $d: Date!) { producerCustomerSales(producerId: $p, from: $d, to: $d) { edges { node { customer } } } }", &["owner", "auditor"]),
        ("query($p: UUID!, $d: Date!) { producerMarkets(producerId: $p, from: $d, to: $d) { name orders } }", &["owner", "auditor"]),
        ("query($m: UUID!, $d: Date!) { marketWeeklySales(marketId: $m, from: $d, to: $d) { orders } }", &["admin", "auditor", "platform"]),
        ("query($m: UUID!, $d: Date!) { ordersPerSale(marketId: $m, from: $d, to: $d) { orders } }", &["admin", "auditor", "platform"]),
        ("query($d: Date!) { customersPerMarket(from: $d, to: $d) { edges { node { customers } } } }", &["admin", "other_admin", "auditor", "platform"]),
        ("query($d: Date!) { ledgerBalances(asOf: $d) { conservation { holds } accounts { edges { node { account } } } } }", &["auditor"]),
        ("{ journal(first: 5) { edges { node { entryId } } } }", &["auditor"]),
        ("query($p: UUID!, $d: Date!) { feeLedger(grouping: SALE, from: $d, to: $d, producerId: $p) { edges { node { key } } } }", &["owner", "auditor"]),
        ("query($d: Date!) { feeLedger(grouping: PRODUCER, from: $d, to: $d) { edges { node { key } } } }", &["auditor"]),
        ("query($p: UUID!) { payouts(producerId: $p) { balanceHeld payouts { total } } }", &["owner", "auditor"]),
        ("{ eventHistory(first: 5) { edges { node { eventType payload } } } }", &["auditor"]),
        ("query($s: String!) { eventHistory(aggregateType: \"sale\", aggregateId: $s, first: 5) { edges { node { eventType } } } }", &["auditor"]),
        // Mutations (harmless when allowed: same values, or refused by the domain afterwards).
        ("mutation($p: UUID!, $x: UUID!) { setStock(producerId: $p, productId: $x, real: 10) { position } }", &["owner"]),
        ("mutation($c: UUID!, $x: UUID!) { setOfferPrice(catalogId: $c, productId: $x, priceInclVat: \"8.50\") { position } }", &["owner"]),
        ("mutation($c: UUID!) { setFeeOptions(catalogId: $c, paymentFee: false, serviceFee: false) { position } }", &["owner"]),
        ("mutation($p: UUID!) { createCatalog(producerId: $p, name: \"x\") { catalogId } }", &["owner"]),
        ("mutation($p: UUID!, $r: UUID!) { grantAccess(producerId: $p, userId: $r) { position } }", &["owner"]),
        ("mutation($p: UUID!, $x: UUID!) { updateProduct(producerId: $p, productId: $x, product: {name: \"Miel 500 g\", unit: \"pot\", priceInclVat: \"8.50\"}) { position } }", &["owner"]),
        ("mutation($s: UUID!, $c: UUID!) { participate(catalogId: $c, saleIds: [$s]) { position } }", &["owner"]),
        ("mutation($m: UUID!, $r: UUID!) { addMarketRole(marketId: $m, userId: $r, referent: true) { position } }", &["admin"]),
        ("mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { position } }", &["admin"]),
        ("mutation($s: UUID!) { validateSale(saleId: $s) { position } }", &["admin"]),
        ("mutation($o: UUID!, $l: Int!) { adjustQuantity(orderId: $o, line: $l, quantity: 2) { position } }", &["owner"]),
        ("mutation($o: UUID!, $l: Int!) { recordWeight(orderId: $o, line: $l, weightKg: \"1\") { position } }", &["owner"]),
        ("mutation($s: UUID!, $c: UUID!, $x: UUID!) { placeOrder(saleId: $s, lines: [{catalogId: $c, productId: $x, quantity: 1}]) { orderId } }", &["customer", "other_customer"]),
        ("mutation { openAccount(acceptedCharter: \"v2\") { producerId } }", &["owner", "other_producer"]),
        ("mutation { createMarket(market: {name: \"M\", place: \"P\", paymentMode: ON_SITE, slots: []}) { marketId } }", &["admin", "other_admin", "platform"]),
        ("mutation { noop }", &["platform"]),
        ("mutation($u: UUID!) { erasePerson(userId: $u) { userId } }", &["customer", "platform"]),
    ];
    let mut failures = Vec::new();
    let mut checks = 0;
    for (query, allowed) in &matrix {
        for (name, who) in &people {
            let token = (!who.token.is_empty()).then_some(who.token.as_str());
            let (status, body) = api.raw(token, query, v.clone()).await;
            checks += 1;
            let denied = denial(&body);
            let should_allow = allowed.contains(name);
            let text = body.to_string();
            if status >= 500 || text.contains("\"INTERNAL\"") {
                failures.push(format!("{name}: {query}: status {status}: {text}"));
            } else if should_allow && denied.is_some() {
                failures.push(format!("{name} should be ALLOWED: {query}: {text}"));
            } else if !should_allow && denied.is_none() {
                failures.push(format!("{name} should be DENIED: {query}: {text}"));
            } else if !should_allow && (text.contains("Miel 500 g") || text.contains("Secretname"))
            {
                failures.push(format!("{name} LEAK: {query}: {text}"));
            }
        }
    }
    eprintln!("{checks} checks, {} failures", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
