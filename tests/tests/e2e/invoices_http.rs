//! R-INV-1..5 over HTTP: a producer's legal identity (SIREN and VAT number checked), the billing
//! mandate, an order's invoice on the customer's request (Factur-X EN 16931 CII XML, valid
//! against the official XSD), asked again the same invoice, and the credit note of a refund that
//! references it; refusals take no number and write nothing; issued documents never change.

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{code, fixture, Api, PLACE_ORDER};
use serde_json::{json, Value};

const IDENTITY: &str = "mutation($p: UUID!, $i: BillingIdentityInput!) { setBillingIdentity(producerId: $p, identity: $i) { position } }";
const INVOICE: &str = "mutation($o: UUID!, $p: UUID!) { issueInvoice(orderId: $o, producerId: $p) { invoice { id number kind issueDate totalExclVat totalVat totalInclVat corrects facturXXml } } }";
const CREDIT: &str = "mutation($i: UUID!) { issueCreditNote(invoiceId: $i) { invoice { id number kind totalExclVat totalVat totalInclVat corrects facturXXml } } }";

async fn writes(api: &Api) -> (i64, i64) {
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice_documents")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    (events, docs)
}

/// `xmllint --schema` of the official Factur-X EN 16931 XSD on `xml`.
fn valid_factur_x(xml: &str) {
    etal_tests::assert_valid_xml("app/schemas/facturx-en16931/Factur-X_EN16931.xsd", xml);
}

/// The file embedded as `factur-x.xml` in a PDF (the catalog's /AF array of file specs).
fn embedded_factur_x(pdf: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(pdf).expect("a PDF");
    let catalog = doc.catalog().expect("catalog");
    let af = catalog.get(b"AF").expect("/AF").as_array().expect("array");
    for spec in af {
        let spec = doc
            .get_object(spec.as_reference().expect("ref"))
            .and_then(|o| o.as_dict())
            .expect("file spec");
        let name = spec.get(b"F").and_then(|f| f.as_str()).expect("/F");
        if name != b"factur-x.xml" {
            continue;
        }
        assert_eq!(
            spec.get(b"AFRelationship")
                .and_then(|r| r.as_name())
                .expect("relationship"),
            b"Data"
        );
        let ef = spec.get(b"EF").and_then(|e| e.as_dict()).expect("/EF");
        let stream = doc
            .get_object(ef.get(b"F").and_then(|f| f.as_reference()).expect("ref"))
            .and_then(|o| o.as_stream())
            .expect("stream");
        let bytes = stream
            .decompressed_content()
            .unwrap_or_else(|_| stream.content.clone());
        return String::from_utf8(bytes).expect("UTF-8");
    }
    panic!("no factur-x.xml in the PDF");
}

fn identity(siren: &str, vat: Option<&str>) -> Value {
    json!({"legalName": "Miel Bouvier EARL", "siren": siren, "vatNumber": vat,
           "addressLine": "Le Bourg", "postcode": "24110", "city": "Saint-Astier"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_inv_1_to_5_an_order_is_invoiced_on_request_and_a_refund_credited() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    api.ok(
        &f.customer,
        "mutation { registerPerson(displayName: \"Jeanne Martin\") { userId } }",
        json!({}),
    )
    .await;
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 3}]}),
        )
        .await;
    let order = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let ask = json!({"o": order, "p": f.producer_id});

    // Without an identity and a mandate: refused, nothing written.
    let before = writes(&api).await;
    let r = api.call(&f.customer, INVOICE, ask.clone()).await;
    assert_eq!(code(&r).as_deref(), Some("BILLING_MANDATE_MISSING"), "{r}");
    // A SIREN with a wrong Luhn key, a VAT number of another country or company: refused.
    for (siren, vat, expected) in [
        ("732829321", Some("FR44732829320"), "INVALID_SIREN"),
        ("732829320", Some("DE123456789"), "VAT_NUMBER_MISMATCH"),
        ("732829320", Some("FR40303265045"), "VAT_NUMBER_MISMATCH"),
        ("732829320", None, "VAT_NUMBER_REQUIRED"),
    ] {
        let r = api
            .call(
                &f.producer,
                IDENTITY,
                json!({"p": f.producer_id, "i": identity(siren, vat)}),
            )
            .await;
        assert_eq!(code(&r).as_deref(), Some(expected), "{siren} {vat:?}: {r}");
    }
    let r = api
        .call(
            &f.producer,
            "mutation($p: UUID!) { acceptBillingMandate(producerId: $p, version: \"2020-01\") { position } }",
            json!({"p": f.producer_id}),
        )
        .await;
    assert_eq!(
        code(&r).as_deref(),
        Some("BILLING_MANDATE_NOT_CURRENT"),
        "{r}"
    );
    assert_eq!(writes(&api).await, before, "refusals write nothing");

    api.ok(
        &f.producer,
        IDENTITY,
        json!({"p": f.producer_id, "i": identity("732 829 320", Some("fr 44 732829320"))}),
    )
    .await;
    let m = api
        .ok(
            &f.producer,
            "{ billingMandate { version text } }",
            json!({}),
        )
        .await;
    assert!(m["billingMandate"]["text"]
        .as_str()
        .unwrap()
        .contains("242 nonies"));
    api.ok(
        &f.producer,
        "mutation($p: UUID!, $v: String!) { acceptBillingMandate(producerId: $p, version: $v) { position } }",
        json!({"p": f.producer_id, "v": m["billingMandate"]["version"]}),
    )
    .await;

    // Someone else's order, another producer's part: refused, no number taken.
    let other = api.who(Role::Customer);
    let r = api.call(&other, INVOICE, ask.clone()).await;
    assert_eq!(code(&r).as_deref(), Some("NOT_FOUND"), "{r}");
    let stranger = uuid::Uuid::new_v4();
    let r = api
        .call(&f.customer, INVOICE, json!({"o": order, "p": stranger}))
        .await;
    assert_eq!(code(&r).as_deref(), Some("PRODUCER_NOT_IN_ORDER"), "{r}");

    // 3 x 8.50 = 25.50 incl. 5.5 % VAT: 24.17 + 1.33.
    let d = api.ok(&f.customer, INVOICE, ask.clone()).await;
    let inv = d["issueInvoice"]["invoice"].clone();
    assert_eq!(inv["number"], "F-000001");
    assert_eq!(inv["kind"], "INVOICE");
    assert_eq!(
        (&inv["totalExclVat"], &inv["totalVat"], &inv["totalInclVat"]),
        (&json!("24.17"), &json!("1.33"), &json!("25.50"))
    );
    let xml = inv["facturXXml"].as_str().unwrap();
    valid_factur_x(xml);
    for needle in [
        "<ram:TypeCode>380</ram:TypeCode>",
        "<ram:ID>F-000001</ram:ID>",
        "732829320",
        "FR44732829320",
        "Jeanne Martin",
        "Miel 500 g",
        "<ram:GrandTotalAmount>25.50</ram:GrandTotalAmount>",
    ] {
        assert!(xml.contains(needle), "{needle}:\n{xml}");
    }
    // Asked again, by the producer this time: the same invoice.
    let again = api.ok(&f.producer, INVOICE, ask.clone()).await;
    assert_eq!(again["issueInvoice"]["invoice"]["id"], inv["id"]);
    let r = api.call(&f.customer, CREDIT, json!({"i": inv["id"]})).await;
    assert_eq!(code(&r).as_deref(), Some("NOTHING_TO_CREDIT"), "{r}");

    // Two units refunded: a credit note of 16.11 + 0.89 referencing F-000001.
    api.ok(
        &f.producer,
        "mutation($o: UUID!) { adjustQuantity(orderId: $o, line: 0, quantity: 1) { position } }",
        json!({"o": order}),
    )
    .await;
    let d = api.ok(&f.customer, CREDIT, json!({"i": inv["id"]})).await;
    let cn = &d["issueCreditNote"]["invoice"];
    assert_eq!(
        (&cn["number"], &cn["kind"]),
        (&json!("F-000002"), &json!("CREDIT_NOTE"))
    );
    assert_eq!(cn["corrects"], inv["id"]);
    assert_eq!(
        (&cn["totalExclVat"], &cn["totalVat"], &cn["totalInclVat"]),
        (&json!("16.11"), &json!("0.89"), &json!("17.00"))
    );
    let cxml = cn["facturXXml"].as_str().unwrap();
    valid_factur_x(cxml);
    assert!(cxml.contains("<ram:TypeCode>381</ram:TypeCode>"));
    assert!(
        cxml.contains("<ram:IssuerAssignedID>F-000001</ram:IssuerAssignedID>"),
        "{cxml}"
    );
    let r = api.call(&f.customer, CREDIT, json!({"i": inv["id"]})).await;
    assert_eq!(code(&r).as_deref(), Some("NOTHING_TO_CREDIT"), "{r}");

    // Lists: the customer's and the producer's.
    let mine = api
        .ok(
            &f.customer,
            "{ invoices { edges { node { number kind } } } }",
            json!({}),
        )
        .await;
    assert_eq!(mine["invoices"]["edges"].as_array().unwrap().len(), 2);
    let theirs = api
        .ok(
            &f.producer,
            "query($p: UUID!) { invoices(producerId: $p) { edges { node { number } } } }",
            json!({"p": f.producer_id}),
        )
        .await;
    assert_eq!(theirs["invoices"]["edges"][1]["node"]["number"], "F-000002");
    let r = api
        .call(
            &other,
            "query($i: UUID!) { invoice(id: $i) { number } }",
            json!({"i": inv["id"]}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("NOT_FOUND"));

    // The XML as a download: the customer's, not another's, not without a token.
    let links = api
        .ok(
            &f.customer,
            "query($i: UUID!) { invoice(id: $i) { pdfUrl xmlUrl } }",
            json!({"i": inv["id"]}),
        )
        .await;
    let url = format!(
        "{}{}",
        api.base,
        links["invoice"]["xmlUrl"].as_str().unwrap()
    );
    assert_eq!(
        links["invoice"]["pdfUrl"].as_str().unwrap(),
        format!("/invoices/{}/factur-x.pdf", inv["id"].as_str().unwrap())
    );
    let res = api
        .http
        .get(&url)
        .bearer_auth(&f.customer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/xml"));
    assert_eq!(res.text().await.unwrap(), xml);
    let res = api
        .http
        .get(&url)
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let res = api.http.get(&url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // The Factur-X PDF carries the same XML as its embedded factur-x.xml.
    let pdf_url = url.replace("factur-x.xml", "factur-x.pdf");
    let res = api
        .http
        .get(&pdf_url)
        .bearer_auth(&f.producer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    let pdf = res.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let embedded = embedded_factur_x(&pdf);
    assert_eq!(embedded, xml, "the PDF embeds the invoice's XML");
    // Its totals are the order's: 3 x 8.50.
    assert!(embedded.contains("<ram:GrandTotalAmount>25.50</ram:GrandTotalAmount>"));
    // The producer's back-office session downloads the same PDF (its invoices list links there).
    let (_, session) = etal_tests::back_office_session(
        &api.db.url,
        &api.base,
        &f.producer.user.0.to_string(),
        "producer",
    )
    .await
    .unwrap();
    let plain = reqwest::Client::new();
    let res = plain
        .get(format!(
            "{}/admin/invoices/{}/factur-x.pdf",
            api.base,
            inv["id"].as_str().unwrap()
        ))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.bytes().await.unwrap(),
        pdf,
        "the same PDF through the back office"
    );

    // The producer's books of the year as a FEC (GraphQL, then the download): the invoice
    // and its credit note in the sales journal, settled through the platform.
    let year = inv["issueDate"].as_str().unwrap()[..4]
        .parse::<i32>()
        .unwrap();
    let fec_q = "query($p: UUID, $y: Int!) { fec(producerId: $p, year: $y) { fileName url entries lines totalDebit } }";
    let d = api
        .ok(&f.producer, fec_q, json!({"p": f.producer_id, "y": year}))
        .await;
    let fec = &d["fec"];
    assert_eq!(fec["fileName"], format!("732829320FEC{year}1231.txt"));
    assert_eq!(
        (&fec["entries"], &fec["lines"]),
        (&json!(4), &json!(10)),
        "{fec}"
    );
    for who in [&f.customer, &other] {
        let r = api
            .call(who, fec_q, json!({"p": f.producer_id, "y": year}))
            .await;
        assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"), "{r}");
    }
    let r = api.call(&f.producer, fec_q, json!({"y": year})).await;
    assert_eq!(
        code(&r).as_deref(),
        Some("FORBIDDEN"),
        "the platform's books: {r}"
    );
    let url = format!("{}{}", api.base, fec["url"].as_str().unwrap());
    let res = api
        .http
        .get(&url)
        .bearer_auth(&f.producer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; charset=iso-8859-15"
    );
    let bytes = res.bytes().await.unwrap();
    let records = etal_app::fec::parse(&bytes).expect("a FEC");
    etal_app::fec::check(&records).expect("balanced and numbered");
    assert_eq!(records.len(), 10);
    assert!(
        records
            .iter()
            .all(|r| r.piece_ref == "F-000001" || r.piece_ref == "F-000002"),
        "{records:?}"
    );
    // F-000001: 411 debited 25.50; 707055 credited 24.17; 44571 credited 1.33.
    let amount = |piece: &str, journal: &str, account: &str| {
        records
            .iter()
            .filter(|r| r.piece_ref == piece && r.journal == journal && r.account == account)
            .map(|r| (r.debit, r.credit))
            .collect::<Vec<_>>()
    };
    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    let zero = rust_decimal::Decimal::ZERO;
    assert_eq!(
        amount("F-000001", "VT", "411000"),
        vec![(dec("25.50"), zero)]
    );
    assert_eq!(
        amount("F-000001", "VT", "707055"),
        vec![(zero, dec("24.17"))]
    );
    assert_eq!(
        amount("F-000001", "VT", "445710"),
        vec![(zero, dec("1.33"))]
    );
    assert_eq!(
        amount("F-000002", "VT", "411000"),
        vec![(zero, dec("17.00"))]
    );
    assert_eq!(
        amount("F-000002", "VT", "707055"),
        vec![(dec("16.11"), zero)]
    );
    assert_eq!(
        amount("F-000001", "OD", "467000"),
        vec![(dec("25.50"), zero)]
    );
    assert_eq!(
        amount("F-000002", "OD", "467000"),
        vec![(zero, dec("17.00"))]
    );
    // Accents arrive in ISO 8859-15: "Opérations diverses", é as the one byte 0xE9.
    assert!(
        bytes.windows(9).any(|w| w == b"Op\xe9ration"),
        "é as one byte"
    );
    for who in [&f.customer, &other] {
        let res = api
            .http
            .get(&url)
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 404);
    }

    // Issued documents never change.
    let tamper = sqlx::query("UPDATE invoice_documents SET incl_vat = 0")
        .execute(&api.db.pool)
        .await;
    assert!(tamper.is_err(), "an UPDATE of an issued invoice is refused");
    let delete = sqlx::query("DELETE FROM invoice_documents")
        .execute(&api.db.pool)
        .await;
    assert!(delete.is_err());
}

/// R-INV-6: the e-reporting of a day equals the producer's recap of that day per VAT rate, and
/// counts the live orders; only the producer's people and auditors read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_inv_6_the_daily_b2c_aggregates_equal_the_recap_of_the_day() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let mut orders = Vec::new();
    for q in [1, 2, 4] {
        let who = api.who(Role::Customer);
        let d = api
            .ok(
                &who,
                PLACE_ORDER,
                json!({"s": f.sale_id, "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": q}]}),
            )
            .await;
        orders.push(d["placeOrder"]["orderId"].as_str().unwrap().to_string());
    }
    api.ok(
        &f.producer,
        "mutation($o: UUID!) { cancelOrder(orderId: $o) { orderId } }",
        json!({"o": orders[0]}),
    )
    .await;
    graphql_common::caught_up(&api).await;
    let date = api
        .ok(
            &f.admin,
            "query($s: UUID!) { sale(id: $s) { date } }",
            json!({"s": f.sale_id}),
        )
        .await["sale"]["date"]
        .clone();
    let report = api
        .ok(
            &f.producer,
            "query($p: UUID!, $d: Date!) { b2cReport(producerId: $p, from: $d, to: $d) { days { date vatRate amountExclVat vatAmount amountInclVat transactions category } csv } }",
            json!({"p": f.producer_id, "d": date}),
        )
        .await;
    let recap = api
        .ok(
            &f.producer,
            "query($p: UUID!, $d: Date!) { producerDayRecap(producerId: $p, date: $d) { vatTotals { vatRate amountExclVat vatAmount amountInclVat } } }",
            json!({"p": f.producer_id, "d": date}),
        )
        .await;
    let days = report["b2cReport"]["days"].as_array().unwrap();
    let totals = recap["producerDayRecap"]["vatTotals"].as_array().unwrap();
    assert_eq!(days.len(), totals.len());
    assert!(!days.is_empty());
    for (d, t) in days.iter().zip(totals) {
        for k in ["vatRate", "amountExclVat", "vatAmount", "amountInclVat"] {
            assert_eq!(d[k], t[k], "{k}: {d} vs {t}");
        }
        assert_eq!(d["date"], date);
        assert_eq!(d["category"], "TLB1");
    }
    // 2 + 4 units of honey at 8.50 in the two orders left.
    assert_eq!(days[0]["amountInclVat"], "51.00");
    assert_eq!(days[0]["transactions"], 2);
    let csv = report["b2cReport"]["csv"].as_str().unwrap();
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("seller_siren,date,currency,category,vat_rate,base_excl_vat,vat,transactions")
    );
    assert_eq!(rows.count(), days.len());
    let r = api
        .call(
            &f.customer,
            "query($p: UUID!, $d: Date!) { b2cReport(producerId: $p, from: $d, to: $d) { csv } }",
            json!({"p": f.producer_id, "d": date}),
        )
        .await;
    assert!(code(&r).is_some(), "{r}");
}

const PROFILE: &str = "mutation($p: ProfessionalProfileInput!) { setProfessionalProfile(profile: $p) { companyName siren vatNumber country } }";
const PRICE_LIST: &str = "mutation($c: UUID!, $u: UUID!, $prices: [ListPriceInput!]!) { setPriceList(catalogId: $c, customerId: $u, prices: $prices) { catalog { priceLists { customerId prices { productId priceInclVat } } } } }";
const SALE_OFFERS: &str =
    "query($s: UUID!) { sale(id: $s) { participations { period offers { name customerPriceInclVat } } } }";

/// R-ORD-8, R-INV-3, R-INV-4 over HTTP: a customer records itself as a professional (SIREN and
/// VAT number checked); the producer gives it its own price in a catalog (refused for a
/// consumer); a sale already open keeps its prices (R-CAT-3), the next one shows the
/// professional its price and the consumer the catalog's; the professional's order is priced
/// at its list, and its invoice names the company, its SIREN and VAT number, with a due date,
/// the late-payment rate and the 40 EUR indemnity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_ord_8_a_professional_customer_gets_its_prices_and_a_professional_invoice() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let pro = api.who(Role::Customer);
    let profile = |siren: &str, vat: Option<&str>| {
        json!({"companyName": "Le Bistrot du Marché SARL", "siren": siren, "vatNumber": vat,
               "addressLine": "3 rue Taillefer", "postcode": "24000", "city": "Périgueux"})
    };
    let before = writes(&api).await;
    for (siren, vat, expected) in [
        ("303265046", None, "INVALID_SIREN"),
        ("303265045", Some("DE123456789"), "VAT_NUMBER_MISMATCH"),
        ("303265045", Some("FR44732829320"), "VAT_NUMBER_MISMATCH"),
    ] {
        let r = api
            .call(&pro, PROFILE, json!({"p": profile(siren, vat)}))
            .await;
        assert_eq!(code(&r).as_deref(), Some(expected), "{siren} {vat:?}: {r}");
    }
    let r = api
        .call(
            &f.producer,
            PROFILE,
            json!({"p": profile("303265045", None)}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"), "{r}");
    // The consumer is not a professional: no price list for it.
    let honey = |price: &str| json!([{"productId": f.product_id, "priceInclVat": price}]);
    let consumer_user = api
        .ok(
            &f.customer,
            "{ me { userId professional { siren } } }",
            json!({}),
        )
        .await;
    assert_eq!(consumer_user["me"]["professional"], Value::Null);
    let consumer_id = consumer_user["me"]["userId"].clone();
    let r = api
        .call(
            &f.producer,
            PRICE_LIST,
            json!({"c": f.catalog_id, "u": consumer_id, "prices": honey("7.50")}),
        )
        .await;
    assert_eq!(
        code(&r).as_deref(),
        Some("CUSTOMER_NOT_PROFESSIONAL"),
        "{r}"
    );
    assert_eq!(writes(&api).await, before, "refusals write nothing");

    let d = api
        .ok(
            &pro,
            PROFILE,
            json!({"p": profile("303 265 045", Some("fr40303265045"))}),
        )
        .await;
    assert_eq!(
        d["setProfessionalProfile"],
        json!({"companyName": "Le Bistrot du Marché SARL", "siren": "303265045",
               "vatNumber": "FR40303265045", "country": "FR"})
    );
    let me = api
        .ok(
            &pro,
            "{ me { userId professional { siren city } } }",
            json!({}),
        )
        .await;
    assert_eq!(me["me"]["professional"]["city"], "Périgueux");
    let pro_id = me["me"]["userId"].clone();
    // A price that is not a price, a product the catalog does not offer: refused.
    let r = api
        .call(
            &f.producer,
            PRICE_LIST,
            json!({"c": f.catalog_id, "u": pro_id, "prices": honey("0.00")}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("NON_POSITIVE_PRICE"), "{r}");
    let r = api
        .call(
            &f.producer,
            PRICE_LIST,
            json!({"c": f.catalog_id, "u": pro_id, "prices": [{"productId": uuid::Uuid::new_v4(), "priceInclVat": "1.00"}]}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("UNKNOWN_OFFER"), "{r}");
    // Another producer does not set this catalog's lists; nor does the customer.
    let r = api
        .call(
            &pro,
            PRICE_LIST,
            json!({"c": f.catalog_id, "u": pro_id, "prices": honey("7.50")}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"), "{r}");
    let d = api
        .ok(
            &f.producer,
            PRICE_LIST,
            json!({"c": f.catalog_id, "u": pro_id, "prices": honey("7.50")}),
        )
        .await;
    assert_eq!(
        d["setPriceList"]["catalog"]["priceLists"],
        json!([{"customerId": pro_id, "prices": [{"productId": f.product_id, "priceInclVat": "7.50"}]}])
    );

    // The open sale keeps its prices (R-CAT-3): the professional sees 8.50 there.
    let d = api.ok(&pro, SALE_OFFERS, json!({"s": f.sale_id})).await;
    assert_eq!(
        d["sale"]["participations"][0]["offers"][0]["customerPriceInclVat"],
        "8.50"
    );
    // The next week's sale opens after the list: the professional's price is its own.
    let day = (chrono::Utc::now() + chrono::Duration::days(9))
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let d = api
        .ok(
            &f.admin,
            "mutation($m: UUID!, $d: Date!) { generateSales(marketId: $m, from: $d, to: $d) { saleIds } }",
            json!({"m": f.market_id, "d": day.to_string()}),
        )
        .await;
    let next = d["generateSales"]["saleIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &f.producer,
        "mutation($c: UUID!, $s: UUID!) { participate(catalogId: $c, saleIds: [$s]) { position } }",
        json!({"c": f.catalog_id, "s": next}),
    )
    .await;
    let now = chrono::Utc::now();
    api.ok(
        &f.producer,
        "mutation($s: UUID!, $c: UUID!, $o: DateTime!, $cl: DateTime!) { overridePeriod(saleId: $s, catalogId: $c, opensAt: $o, closesAt: $cl) { position } }",
        json!({"s": next, "c": f.catalog_id, "o": (now - chrono::Duration::minutes(1)).to_rfc3339(), "cl": (now + chrono::Duration::hours(12)).to_rfc3339()}),
    )
    .await;
    let d = api.ok(&pro, SALE_OFFERS, json!({"s": next})).await;
    let offers = &d["sale"]["participations"][0];
    assert_eq!(offers["period"], "OPEN", "{d}");
    assert_eq!(offers["offers"][0]["customerPriceInclVat"], "7.50", "{d}");
    let d = api.ok(&f.customer, SALE_OFFERS, json!({"s": next})).await;
    assert_eq!(
        d["sale"]["participations"][0]["offers"][0]["customerPriceInclVat"],
        "8.50"
    );
    let lines = json!([{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 2}]);
    let d = api
        .ok(&pro, PLACE_ORDER, json!({"s": next, "lines": lines}))
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "15.00", "2 x 7.50");
    let pro_order = d["placeOrder"]["orderId"].clone();
    let d = api
        .ok(&f.customer, PLACE_ORDER, json!({"s": next, "lines": lines}))
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "17.00", "2 x 8.50");
    // A new list changes nothing of the open sale.
    api.ok(
        &f.producer,
        PRICE_LIST,
        json!({"c": f.catalog_id, "u": pro_id, "prices": honey("7.00")}),
    )
    .await;
    let d = api.ok(&pro, SALE_OFFERS, json!({"s": next})).await;
    assert_eq!(
        d["sale"]["participations"][0]["offers"][0]["customerPriceInclVat"],
        "7.50"
    );
    // The customer does not read the catalog's lists.
    let r = api
        .call(
            &pro,
            "query($c: UUID!) { catalog(id: $c) { priceLists { customerId } } }",
            json!({"c": f.catalog_id}),
        )
        .await;
    assert_eq!(code(&r).as_deref(), Some("FORBIDDEN"), "{r}");

    // The professional's invoice.
    api.ok(
        &f.producer,
        IDENTITY,
        json!({"p": f.producer_id, "i": identity("732829320", Some("FR44732829320"))}),
    )
    .await;
    api.ok(
        &f.producer,
        "mutation($p: UUID!) { acceptBillingMandate(producerId: $p, version: \"2026-12\") { position } }",
        json!({"p": f.producer_id}),
    )
    .await;
    let d = api
        .ok(&pro, INVOICE, json!({"o": pro_order, "p": f.producer_id}))
        .await;
    let inv = &d["issueInvoice"]["invoice"];
    assert_eq!(inv["totalInclVat"], "15.00");
    let xml = inv["facturXXml"].as_str().unwrap();
    valid_factur_x(xml);
    for needle in [
        "Le Bistrot du Marché SARL",
        "303265045",
        "FR40303265045",
        "3 rue Taillefer",
        "<ram:DueDateDateTime>",
        "indemnité forfaitaire pour frais de recouvrement : 40 €",
        "Pénalités de retard : trois fois le taux d",
    ] {
        assert!(xml.contains(needle), "{needle}:\n{xml}");
    }
}
