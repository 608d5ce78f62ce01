//! Authorization matrix over HTTP: every query and mutation x every role, allowed or denied as
//! the rules say (R-ACC-2: only the producer's people see their account, catalogs and stock; a
//! customer their own orders; auditors read everything; ...), with a collaborator (R-ACC-2), a
//! revoked one and another account's as callers too, and nothing leaks from a denial.

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{fixture, Api, Who, PLACE_ORDER};
use serde_json::{json, Value};

/// What a denial answers (NOT_THE_OWNER: a collaborator doing what only the owner may, R-ACC-2).
const DENIED: [&str; 4] = ["UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "NOT_THE_OWNER"];

fn denial(body: &Value) -> Option<String> {
    let top = body["errors"].as_array().and_then(|errors| {
        errors.iter().find_map(|e| {
            let c = e["extensions"]["code"].as_str()?;
            DENIED.contains(&c).then(|| c.to_string())
        })
    });
    // A batch (recordWeights) answers each entry apart: a denied entry carries the code.
    let entry = || {
        body["data"]["recordWeights"]["results"]
            .as_array()?
            .iter()
            .find_map(|r| {
                let c = r["code"].as_str()?;
                DENIED.contains(&c).then(|| c.to_string())
            })
    };
    top.or_else(entry)
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
    let d = api
        .ok(&other_producer, graphql_common::OPEN_ACCOUNT, json!({}))
        .await;
    let other_producer_id = d["openAccount"]["producerId"].clone();
    // R-ACC-2: a collaborator of the owner's account, one granted then revoked, and one of the
    // other producer's account.
    const GRANT: &str =
        "mutation($p: UUID!, $u: UUID!) { grantAccess(producerId: $p, userId: $u) { producerId } }";
    let collab = api.who(Role::Producer);
    api.ok(
        &f.producer,
        GRANT,
        json!({"p": f.producer_id, "u": collab.user.0}),
    )
    .await;
    let revoked = api.who(Role::Producer);
    api.ok(
        &f.producer,
        GRANT,
        json!({"p": f.producer_id, "u": revoked.user.0}),
    )
    .await;
    api.ok(
        &f.producer,
        "mutation($p: UUID!, $u: UUID!) { revokeAccess(producerId: $p, userId: $u) { producerId } }",
        json!({"p": f.producer_id, "u": revoked.user.0}),
    )
    .await;
    let other_collab = api.who(Role::Producer);
    api.ok(
        &other_producer,
        GRANT,
        json!({"p": other_producer_id, "u": other_collab.user.0}),
    )
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
        ("collab", &collab),
        ("revoked", &revoked),
        ("other_collab", &other_collab),
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
        "w": graphql_common::weekday_code(date.parse().unwrap()),
        "t0": "2030-01-01T08:00:00Z", "t1": "2030-01-02T08:00:00Z",
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
        ("query($m: UUID!) { market(id: $m) { pendingMemberRequests { userId displayName } } }", &["admin", "auditor", "platform"]),
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
        ("{ auditChecks { differences } }", &["auditor", "platform"]),
        ("query($m: UUID!, $d: Date!) { marketProductSales(marketId: $m, from: $d, to: $d) { nodes { name } } }", &["admin", "auditor", "platform"]),
        ("query($d: Date!) { customersPerMarket(from: $d, to: $d) { edges { node { customers } } } }", &["admin", "other_admin", "auditor", "platform"]),
        ("query($d: Date!) { ledgerBalances(asOf: $d) { conservation { holds } accounts { edges { node { account } } } } }", &["auditor"]),
        ("{ journal(first: 5) { edges { node { entryId } } } }", &["auditor"]),
        ("query($p: UUID!, $d: Date!) { feeLedger(grouping: SALE, from: $d, to: $d, producerId: $p) { edges { node { key } } } }", &["owner", "auditor"]),
        ("query($d: Date!) { feeLedger(grouping: PRODUCER, from: $d, to: $d) { edges { node { key } } } }", &["auditor"]),
        ("query($m: UUID!, $d: Date!) { feeLedger(grouping: SALE, from: $d, to: $d, marketId: $m) { edges { node { key } } } }", &["admin", "auditor"]),
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
        // Before erasePerson below: an erased person has no addresses.
        ("mutation { addAddress(address: \"1 rue des Lilas, 24110 Saint-Astier\") { addressRef } }", &["customer"]),
        ("mutation { openAccount(acceptedCharter: \"v2\") { producerId } }", &["owner", "other_producer"]),
        ("mutation { createMarket(market: {name: \"M\", place: \"P\", paymentMode: ON_SITE, slots: []}) { marketId } }", &["admin", "other_admin", "platform"]),
        ("mutation { noop }", &["platform"]),
        ("mutation($u: UUID!) { erasePerson(userId: $u) { userId } }", &["customer", "platform"]),
        // Joining a market, order terms, the market's settings (same values: harmless).
        ("query($m: UUID!) { marketCard(marketId: $m) { name customersCount producers { name } } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("{ markets(near: {lat: 45.2, lon: 0.43}, withinKm: 20) { name } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("query($p: UUID!) { linkedMarkets(producerId: $p) { name } }", &["owner"]),
        ("query($p: UUID!) { proposals(producerId: $p) { id } }", &["owner"]),
        ("query($m: UUID!) { proposals(marketId: $m) { id } }", &["admin"]),
        ("query($r: UUID!) { proposal(id: $r) { status } }", &[]),
        ("{ me { orders { edges { node { number } } } producerAccounts { edges { node { producerId } } } } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("mutation($m: UUID!, $c: UUID!) { proposeCatalog(marketId: $m, catalogId: $c, message: \"Bonjour\") { proposalId } }", &["owner"]),
        ("mutation($r: UUID!) { postProposalMessage(proposalId: $r, message: \"x\") { proposalId } }", &[]),
        ("mutation($r: UUID!) { answerProposal(proposalId: $r, answer: DECLINE) { proposalId } }", &[]),
        ("mutation($r: UUID!) { withdrawProposal(proposalId: $r) { proposalId } }", &[]),
        ("mutation($c: UUID!) { setOrderTerms(catalogId: $c) { position } }", &["owner"]),
        ("mutation($p: UUID!) { addProduct(producerId: $p, product: {name: \"Oeufs\", unit: \"boîte\", priceInclVat: \"3.20\"}) { productId } }", &["owner"]),
        ("mutation($p: UUID!, $r: UUID!) { revokeAccess(producerId: $p, userId: $r) { position } }", &["owner"]),
        ("mutation($m: UUID!) { setMarketLocation(marketId: $m, lat: 45.2, lon: 0.43, commune: \"Segonzac\") { position } }", &["admin"]),
        ("mutation($m: UUID!) { setMinimumOrder(marketId: $m) { position } }", &["admin"]),
        ("mutation($m: UUID!) { setMarketDelivery(marketId: $m) { position } }", &["admin"]),
        ("query($m: UUID!) { market(id: $m) { deliveryFeesHeld } }", &["admin", "auditor", "platform"]),
        ("query($m: UUID!) { market(id: $m) { delivery { fee } minimumOrder } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("mutation($m: UUID!) { setAmap(marketId: $m, amap: false) { position } }", &["admin"]),
        ("mutation($m: UUID!) { setVisibility(marketId: $m, visibility: PUBLIC) { position } }", &["admin"]),
        ("mutation($m: UUID!) { setPaymentMode(marketId: $m, paymentMode: ONLINE) { position } }", &["admin"]),
        ("mutation($m: UUID!, $u: UUID!) { answerMembership(marketId: $m, userId: $u, answer: REFUSE) { position } }", &["admin"]),
        ("mutation($m: UUID!) { requestMembership(marketId: $m) { position } }", &["customer", "other_customer"]),
        ("mutation($m: UUID!) { inviteMember(marketId: $m, email: \"jeanne@example.org\") { invitationId } }", &["admin"]),
        ("mutation($m: UUID!) { acceptInvitation(marketId: $m) { position } }", &[]),
        ("mutation($c: UUID!, $x: UUID!) { addOffer(catalogId: $c, productId: $x, priceInclVat: \"8.50\") { position } }", &["owner"]),
        ("mutation($m: UUID!, $d: Date!) { generateSales(marketId: $m, from: $d, to: $d) { saleIds } }", &["admin"]),
        ("mutation($m: UUID!, $c: UUID!) { participateInRecurringSales(marketId: $m, catalogId: $c) { position } }", &["owner"]),
        ("mutation($m: UUID!, $c: UUID!) { stopRecurringParticipation(marketId: $m, catalogId: $c) { position } }", &["owner"]),
        ("mutation($m: UUID!, $d: Date!) { assignFeeSchedule(marketId: $m, schedule: \"cagette\", from: $d) { marketId } }", &["platform"]),
        ("mutation($p: UUID!) { changePlan(producerId: $p, plan: PRO) { position } }", &["owner"]),
        ("mutation($p: UUID!) { setPayoutAccount(producerId: $p, account: \"acct_1Etal\") { position } }", &["owner"]),
        ("query($p: UUID!) { producer(id: $p) { payoutAccount } }", &["owner", "auditor"]),
        ("mutation($p: UUID!) { setBankDetails(producerId: $p, holder: \"Miel Bouvier\", iban: \"FR7630006000011234567890189\", bic: \"AGRIFRPP882\") { position } }", &["owner"]),
        ("mutation($p: UUID!) { confirmBankDetails(producerId: $p) { position } }", &["owner"]),
        ("mutation($p: UUID!) { setBillingIdentity(producerId: $p, identity: {legalName: \"Miel\", siren: \"732829320\", vatNumber: \"FR44732829320\", addressLine: \"Le Bourg\", postcode: \"24110\", city: \"Saint-Astier\"}) { position } }", &["owner"]),
        ("mutation($p: UUID!) { acceptBillingMandate(producerId: $p, version: \"2026-12\") { position } }", &["owner"]),
        ("query($p: UUID!, $d: Date!) { b2cReport(producerId: $p, from: $d, to: $d) { csv } }", &["owner", "auditor"]),
        ("{ billingMandate { version } }", &["anonymous", "owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("query($p: UUID!) { invoices(producerId: $p) { edges { node { number } } } }", &["owner", "auditor"]),
        ("{ invoices { edges { node { number } } } }", &["customer", "other_customer"]),
        ("query($p: UUID!) { feeInvoices(producerId: $p) { edges { node { number } } } }", &["owner", "auditor"]),
        // R-ORD-8: professional customers and their price lists.
        ("mutation { setProfessionalProfile(profile: {companyName: \"Le Bistrot\", siren: \"303265045\", addressLine: \"3 rue Taillefer\", postcode: \"24000\", city: \"Périgueux\"}) { siren } }", &["customer", "other_customer"]),
        ("{ me { professional { siren } } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("mutation($c: UUID!, $u: UUID!) { setPriceList(catalogId: $c, customerId: $u, prices: []) { position } }", &["owner"]),
        ("query($c: UUID!) { catalog(id: $c) { priceLists { customerId } } }", &["owner", "auditor"]),
        // The books (FEC): a producer's, the platform's.
        ("query($p: UUID!) { fec(producerId: $p, year: 2026) { fileName } }", &["owner", "auditor"]),
        ("{ fec(year: 2026) { fileName } }", &["auditor", "platform"]),
        // R-NOT: each person's own preferences.
        ("mutation { setNotificationPreference(kind: \"recap_ready\", enabled: true) }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        // Webhooks: a producer's people, a market's administrators.
        ("query($p: UUID!) { webhookEndpoints(producerId: $p) { endpointId } }", &["owner"]),
        ("query($m: UUID!) { webhookEndpoints(marketId: $m) { endpointId } }", &["admin"]),
        ("mutation($p: UUID!) { registerWebhook(producerId: $p, url: \"http://example.org/hook\", eventTypes: [\"OrderPlaced\"]) { secret } }", &["owner"]),
        ("{ me { notificationPreferences { kind enabled legal } } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("mutation($o: UUID!, $p: UUID!) { issueInvoice(orderId: $o, producerId: $p) { invoice { number } } }", &["owner", "customer"]),
        ("query($r: UUID!) { invoice(id: $r) { number } }", &[]),
        ("mutation($r: UUID!) { issueCreditNote(invoiceId: $r) { invoice { number } } }", &[]),
        ("query($p: UUID!) { producer(id: $p) { bankDetails { maskedIban confirmed } } }", &["owner", "auditor"]),
        ("query($d: Date!) { sepaFile(executionDate: $d) { xml } }", &["auditor", "platform"]),
        ("mutation { markSepaFileSent(messageId: \"ETAL-2030-01-07\") }", &["platform"]),
        ("mutation($p: UUID!, $r: UUID!) { recordBankReturn(producerId: $p, payoutId: $r, reason: \"AC04\") }", &["platform"]),
        ("mutation($p: UUID!) { recordTraining(producerId: $p) { position } }", &["platform"]),
        // Operational reads, public on purpose (README's walkthrough reads them anonymously):
        // counts and checkpoints, nothing about a person or a sale.
        ("{ eventCounts { aggregateType events } projections { name position head } }", &["anonymous", "owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("{ feeSchedules { name } }", &["owner", "other_producer", "admin", "other_admin", "customer", "other_customer", "auditor", "platform"]),
        ("query($m: UUID!) { invitations(marketId: $m) { email } }", &["admin"]),
        ("mutation($m: UUID!, $w: Weekday!, $d: Date!) { addSlot(marketId: $m, slot: {weekday: $w, start: \"10:00\", end: \"11:00\", anchor: $d}) { position } }", &["admin"]),
        ("mutation($m: UUID!, $w: Weekday!, $d: Date!) { removeSlot(marketId: $m, slot: {weekday: $w, start: \"10:00\", end: \"11:00\", anchor: $d}) { position } }", &["admin"]),
        ("mutation($p: UUID!, $x: UUID!) { archiveProduct(producerId: $p, productId: $x, archived: false) { position } }", &["owner"]),
        ("mutation($c: UUID!) { modulatePrices(catalogId: $c, percent: \"0\") { position } }", &["owner"]),
        ("mutation($o: UUID!, $l: Int!) { recordWeights(entries: [{orderId: $o, line: $l, weightKg: \"1\"}]) { results { ok code } } }", &["owner"]),
        ("mutation($o: UUID!) { recordOnsitePayment(orderId: $o, method: CASH, amount: \"0.01\") { orderId } }", &["admin"]),
        // Destructive last, each refused by the domain once done (or while orders remain), so
        // that no row changes what a later row reads.
        ("mutation($m: UUID!, $c: UUID!) { unlinkCatalog(marketId: $m, catalogId: $c) { position } }", &["admin"]),
        ("mutation($s: UUID!, $c: UUID!) { withdraw(saleId: $s, catalogId: $c) { position } }", &["owner"]),
        ("mutation($s: UUID!, $c: UUID!, $t0: DateTime!, $t1: DateTime!) { overridePeriod(saleId: $s, catalogId: $c, opensAt: $t0, closesAt: $t1) { position } }", &["owner"]),
        ("mutation($o: UUID!) { cancelOrder(orderId: $o) { orderId } }", &["owner", "admin", "customer"]),
        ("mutation($c: UUID!, $x: UUID!) { removeOffer(catalogId: $c, productId: $x) { position } }", &["owner"]),
        ("mutation($p: UUID!) { closeAccount(producerId: $p) { producerId } }", &["owner"]),
    ];
    let mut failures = Vec::new();
    let mut checks = 0;
    for (query, allowed) in &matrix {
        for (name, who) in &people {
            let token = (!who.token.is_empty()).then_some(who.token.as_str());
            let (status, body) = api.raw(token, query, v.clone()).await;
            checks += 1;
            let denied = denial(&body);
            // A collaborator acts as the owner but for the owner's own acts (R-ACC-2); a revoked
            // collaborator and another account's collaborator as any other producer.
            let owner_only = [
                "grantAccess",
                "revokeAccess",
                "changePlan",
                "closeAccount",
                "setPayoutAccount",
                "setBankDetails",
                "confirmBankDetails",
                "setBillingIdentity",
                "acceptBillingMandate",
            ]
            .iter()
            .any(|op| query.contains(op));
            let as_other_producer = allowed.contains(&"other_producer");
            let should_allow = match *name {
                "collab" => as_other_producer || (allowed.contains(&"owner") && !owner_only),
                "revoked" | "other_collab" => as_other_producer,
                _ => allowed.contains(name),
            };
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
