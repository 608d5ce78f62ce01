//! Fees added into the customer's price (R-CAT-2), over HTTP against the real `etal serve`
//! binary and real PostgreSQL, with the system clock and the default Cagette schedule
//! (config/fees/cagette.json: online payment 3 % and service 6 %, both of the amount paid incl.
//! VAT, 20 % VAT on fees; R-FEE-1, R-FEE-2):
//! - `setFeeOptions(catalogId, paymentFee, serviceFee)` makes a catalog add the online payment
//!   fee and/or the service fee into the price the customer pays; like prices, the options are
//!   frozen into a sale's terms when its order period opens (R-CAT-3);
//! - the customer's unit price is `round(price / (1 - shares))`, half away from zero to the
//!   cent, where a chosen fee's share is `rate x (1 + 20 %)` for a rule on the amount incl.
//!   VAT: 0.036 for the payment fee, 0.072 for the service fee; the payment fee counts on online
//!   markets only (R-FEE-2: markets paying on site pay the service fee only);
//! - `Sale.participations { offers { priceInclVat customerPriceInclVat } }` shows both prices;
//!   the order's lines are priced at the customer's price, with `producerUnitPriceInclVat` the
//!   producer's (null when the catalog adds no fee);
//! - at crediting the fees are taken on what the customer paid, so the producer whose catalog
//!   adds both fees keeps their price (within a cent per unit sold), while a producer whose
//!   catalog adds none bears the fees (R-FEE-1: "taken at source from the producer's price,
//!   never added to it (unless the producer chose R-CAT-2)");
//! - everyone in one sale pays the same price (R-CAT-3), also when the market's fee schedule
//!   is changed (R-FEE-5) while the sale's order period is open.
//!
//! The online sale starts seconds after the test and is delivered at its end
//! (`ETAL_DELIVERY_DELAY_MINUTES=0`), then validated (R-SAL-6) and credited; the credits are
//! read from the producers' `payouts`.

use crate::graphql_common;

use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use chrono_tz::Europe::Paris;
use etal_domain::Role;
use graphql_common::{
    balance_events, caught_up, cent, code, dec, instant, recomputes, until, weekday_code, Api,
    Slot, Who, OPEN_ACCOUNT,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ENV: &[(&str, &str)] = graphql_common::SOON_ENV;

/// How long after the market's creation its sale starts: time to open the periods and place
/// the order (the periods close when the sale starts).
const LEAD: chrono::Duration = chrono::Duration::seconds(10);
/// How long the sale lasts.
const LENGTH: chrono::Duration = chrono::Duration::seconds(2);

/// The Cagette shares of a customer price incl. VAT (R-FEE-1, R-FEE-2): 3 % x 1.2 and 6 % x 1.2.
const PAYMENT_SHARE: Decimal = Decimal::from_parts(36, 0, 0, false, 3);
const SERVICE_SHARE: Decimal = Decimal::from_parts(72, 0, 0, false, 3);

const SALE_Q: &str = "query($s: UUID!) { sale(id: $s) { status date startsAt endsAt paymentMode participations { catalogId period closesAt } } }";
const OFFERS_Q: &str = "query($s: UUID!) { sale(id: $s) { paymentMode participations { catalogId producerId period offers { productId name priceInclVat customerPriceInclVat includesPaymentFee includesServiceFee } } } }";
const CATALOG_Q: &str = "query($c: UUID!) { catalog(id: $c) { includesPaymentFee includesServiceFee offers { edges { node { productId priceInclVat customerPriceInclVat includesPaymentFee includesServiceFee } } } } }";
const PLACE: &str = "mutation($s: UUID!, $lines: [LineInput!]!, $k: String) { placeOrder(saleId: $s, lines: $lines, idempotencyKey: $k) { orderId order { total lines { line producerId catalogId productId quantity unitPriceInclVat producerUnitPriceInclVat amountInclVat amountExclVat vatAmount } } } }";
const ORDER_Q: &str = "query($o: UUID!) { order(id: $o) { total paid refunded cancelled } }";
const SET_FEES: &str = "mutation($c: UUID!, $p: Boolean!, $s: Boolean!, $k: String) { setFeeOptions(catalogId: $c, paymentFee: $p, serviceFee: $s, idempotencyKey: $k) { catalogId catalog { includesPaymentFee includesServiceFee } } }";
const FEE_FIELDS: &str = "label ruleId ruleVersion schedule beneficiary baseKind baseAmount rate fixedPart vatRate rounding amountExclVat vat amountInclVat";

fn payouts_q() -> String {
    format!(
        "query($p: UUID!) {{ payouts(producerId: $p) {{ creditedTotal balanceHeld \
         credits {{ saleId marketId grossInclVat refunds net fees {{ {FEE_FIELDS} }} }} }} }}"
    )
}

// ---------------------------------------------------------------------------------------------
// Amounts
// ---------------------------------------------------------------------------------------------

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// R-CAT-2: the customer's unit price for a producer's price and the shares of the chosen fees.
/// R-CAT-2: the customer bears the chosen fees: `price x (1 - others) / (1 - all)`, where `all`
/// is the share of every fee in force and `others` of those not chosen.
fn customer_price_bearing(price: &str, chosen: Decimal, all: Decimal) -> String {
    cent(d(price) * (Decimal::ONE - (all - chosen)) / (Decimal::ONE - all)).to_string()
}

/// [`customer_price_bearing`] when every fee in force is chosen.
fn customer_price(price: &str, shares: Decimal) -> String {
    customer_price_bearing(price, shares, shares)
}

// ---------------------------------------------------------------------------------------------
// A sale that ends within seconds
// ---------------------------------------------------------------------------------------------

/// Today's slot starting `LEAD` from now and lasting `LENGTH`.
async fn slot_soon() -> Slot {
    graphql_common::slot_soon(LEAD, LENGTH).await
}

/// A producer (Pro plan) with products (VAT 5.5 %, stock 20 each) offered at their prices in a
/// catalog of its own, whose fee options are set before any sale (R-CAT-2).
struct Seller {
    who: Who,
    id: String,
    catalog: String,
    /// (product id, producer's price), in the order given.
    products: Vec<(String, String)>,
}

async fn seller(
    api: &Api,
    name: &str,
    products: &[(&str, &str)],
    (payment_fee, service_fee): (bool, bool),
) -> Seller {
    let who = api.who(Role::Producer);
    let data = api.ok(&who, OPEN_ACCOUNT, json!({"k": "open-1"})).await;
    let id = data["openAccount"]["producerId"]
        .as_str()
        .unwrap()
        .to_string();
    let data = api
        .ok(
            &who,
            "mutation($p: UUID!, $n: String!) { createCatalog(producerId: $p, name: $n) { catalogId } }",
            json!({"p": id, "n": format!("Catalogue {name}")}),
        )
        .await;
    let catalog = data["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut listed = Vec::new();
    for (product_name, price) in products {
        let data = api
            .ok(
                &who,
                "mutation($p: UUID!, $input: ProductInput!) { addProduct(producerId: $p, product: $input) { productId } }",
                json!({"p": id, "input": {"name": product_name, "unit": "piece", "priceInclVat": price, "vatRate": "5.5"}}),
            )
            .await;
        let product = data["addProduct"]["productId"]
            .as_str()
            .unwrap()
            .to_string();
        let data = api
            .ok(
                &who,
                "mutation($p: UUID!, $x: UUID!) { setStock(producerId: $p, productId: $x, real: 20) { stock { real available } } }",
                json!({"p": id, "x": product}),
            )
            .await;
        assert_eq!(
            data["setStock"]["stock"],
            json!({"real": 20, "available": 20})
        );
        api.ok(
            &who,
            "mutation($c: UUID!, $x: UUID!, $price: Money!) { addOffer(catalogId: $c, productId: $x, priceInclVat: $price) { position } }",
            json!({"c": catalog, "x": product, "price": price}),
        )
        .await;
        listed.push((product, price.to_string()));
    }
    if payment_fee || service_fee {
        let data = api
            .ok(
                &who,
                SET_FEES,
                json!({"c": catalog, "p": payment_fee, "s": service_fee, "k": "fees-1"}),
            )
            .await;
        assert_eq!(
            data["setFeeOptions"],
            json!({"catalogId": catalog, "catalog": {"includesPaymentFee": payment_fee, "includesServiceFee": service_fee}}),
            "R-CAT-2: setFeeOptions answers the catalog with its options"
        );
    }
    // The catalog's own offers show the options, no customer price outside a sale.
    let data = api.ok(&who, CATALOG_Q, json!({"c": catalog})).await;
    let c = &data["catalog"];
    assert_eq!(
        (&c["includesPaymentFee"], &c["includesServiceFee"]),
        (&json!(payment_fee), &json!(service_fee)),
        "{c}"
    );
    let mut offers: Vec<Value> = c["offers"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("offers: {c}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    offers.sort_by_key(|o| o["productId"].as_str().map(str::to_string));
    let mut expected: Vec<Value> = listed
        .iter()
        .map(|(product, price)| {
            json!({"productId": product, "priceInclVat": price, "customerPriceInclVat": null,
                   "includesPaymentFee": payment_fee, "includesServiceFee": service_fee})
        })
        .collect();
    expected.sort_by_key(|o| o["productId"].as_str().map(str::to_string));
    assert_eq!(
        offers, expected,
        "the catalog's current offers (outside a sale)"
    );
    Seller {
        who,
        id,
        catalog,
        products: listed,
    }
}

impl Seller {
    /// An order line of the `i`-th product.
    fn line(&self, i: usize, quantity: i64) -> Value {
        json!({"catalogId": self.catalog, "productId": self.products[i].0, "quantity": quantity})
    }
}

/// A market of `admin` paying `mode` with one slot, the sellers' catalogs linked, and its sales
/// of `days` generated: (market id, sale ids).
async fn market_with_sales(
    api: &Api,
    admin: &Who,
    mode: &str,
    slot: (&str, &str, &str, NaiveDate),
    days: (NaiveDate, NaiveDate),
    sellers: &[&Seller],
) -> (String, Vec<String>) {
    let (weekday, start, end, anchor) = slot;
    let data = api
        .ok(
            admin,
            "mutation($m: MarketInput!) { createMarket(market: $m) { marketId } }",
            json!({"m": {"name": "Segonzac", "place": "Salle des fêtes", "paymentMode": mode,
                "slots": [{"weekday": weekday, "start": start, "end": end, "anchor": anchor.to_string()}]}}),
        )
        .await;
    let market = data["createMarket"]["marketId"]
        .as_str()
        .unwrap()
        .to_string();
    for s in sellers {
        api.ok(
            admin,
            "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { position } }",
            json!({"m": market, "c": s.catalog}),
        )
        .await;
    }
    let data = api
        .ok(
            admin,
            "mutation($m: UUID!, $f: Date!, $t: Date!) { generateSales(marketId: $m, from: $f, to: $t) { saleIds } }",
            json!({"m": market, "f": days.0.to_string(), "t": days.1.to_string()}),
        )
        .await;
    let ids: Vec<String> = data["generateSales"]["saleIds"]
        .as_array()
        .unwrap_or_else(|| panic!("generateSales: {data}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (market, ids)
}

/// R-SAL-2, R-SAL-3: the seller takes part in the sale, orders opening an hour before the
/// start and closing at it.
async fn participate(api: &Api, s: &Seller, sale: &str) {
    api.ok(
        &s.who,
        "mutation($c: UUID!, $s: [UUID!]!) { participate(catalogId: $c, saleIds: $s, opensHoursBefore: 1, closesHoursBefore: 0) { position } }",
        json!({"c": s.catalog, "s": [sale]}),
    )
    .await;
}

/// Waits until the scheduler opened the sale's `participations` periods; returns the sale.
async fn periods_open(api: &Api, sale: &str, participations: usize) -> Value {
    let reader = api.who(Role::Customer);
    let data = until("the order periods open", Duration::from_secs(15), || {
        let (reader, sale) = (reader.clone(), sale.to_string());
        async move {
            let data = api.ok(&reader, SALE_Q, json!({"s": sale})).await;
            let list = data["sale"]["participations"].as_array().cloned();
            let open = list.is_some_and(|l| {
                l.len() == participations && l.iter().all(|p| p["period"] == "OPEN")
            });
            open.then_some(data.clone()).ok_or(data)
        }
    })
    .await;
    data["sale"].clone()
}

/// The sale's offers of a catalog, by product id.
fn offers_of(sale: &Value, catalog: &str) -> Vec<Value> {
    let participation = sale["participations"]
        .as_array()
        .unwrap_or_else(|| panic!("participations: {sale}"))
        .iter()
        .find(|p| p["catalogId"] == catalog)
        .unwrap_or_else(|| panic!("catalog {catalog} takes no part: {sale}"));
    let mut offers = participation["offers"].as_array().cloned().unwrap();
    offers.sort_by_key(|o| o["productId"].as_str().map(str::to_string));
    offers
}

/// Checks a seller's offers in a sale: (producer's price, customer's price) per product, and
/// the options they were frozen with.
fn assert_offers(
    sale: &Value,
    s: &Seller,
    prices: &[(&str, &str)],
    options: (bool, bool),
    why: &str,
) {
    let mut expected: Vec<Value> = s
        .products
        .iter()
        .zip(prices)
        .map(|((product, own), (price, customer))| {
            assert_eq!(own, price, "the producer's price given");
            json!({"productId": product, "priceInclVat": price, "customerPriceInclVat": customer,
                   "includesPaymentFee": options.0, "includesServiceFee": options.1})
        })
        .collect();
    expected.sort_by_key(|o| o["productId"].as_str().map(str::to_string));
    let got: Vec<Value> = offers_of(sale, &s.catalog)
        .into_iter()
        .map(|mut o| {
            o.as_object_mut().unwrap().remove("name");
            o
        })
        .collect();
    assert_eq!(got, expected, "{why}: {sale}");
}

/// The order's line of a catalog and product (exactly one).
fn line_of<'a>(order: &'a Value, s: &Seller, i: usize) -> &'a Value {
    let lines: Vec<&Value> = order["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("lines: {order}"))
        .iter()
        .filter(|l| l["catalogId"] == s.catalog && l["productId"] == s.products[i].0)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line of product {i} of {}: {order}",
        s.id
    );
    lines[0]
}

/// Checks an order line: quantity, the customer's unit price, the producer's (None: null) and
/// the amount; its amount excl. VAT plus its VAT make the amount incl. VAT.
fn assert_line(
    order: &Value,
    s: &Seller,
    i: usize,
    (quantity, unit, producer, amount): (i64, &str, Option<&str>, &str),
) {
    let line = line_of(order, s, i);
    assert_eq!(
        (
            &line["producerId"],
            &line["quantity"],
            &line["unitPriceInclVat"],
            &line["producerUnitPriceInclVat"],
            &line["amountInclVat"],
        ),
        (
            &json!(s.id),
            &json!(quantity),
            &json!(unit),
            &json!(producer),
            &json!(amount),
        ),
        "R-CAT-2: {line}"
    );
    assert_eq!(
        dec(&line["amountExclVat"]) + dec(&line["vatAmount"]),
        dec(&line["amountInclVat"]),
        "{line}"
    );
}

/// R-STK-4, R-SAL-6: waits until the sale is DISTRIBUTED, then its market's administrator
/// validates it.
async fn distribute_and_validate(api: &Api, admin: &Who, sale: &str, slot: &Slot) {
    let wait = (slot.ends_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(30);
    let reader = api.who(Role::Customer);
    until("the sale is distributed", wait, || {
        let (reader, sale) = (reader.clone(), sale.to_string());
        async move {
            let data = api.ok(&reader, SALE_Q, json!({"s": sale})).await;
            (data["sale"]["status"] == "DISTRIBUTED")
                .then_some(())
                .ok_or(data)
        }
    })
    .await;
    let data = api
        .ok(
            admin,
            "mutation($s: UUID!, $k: String) { validateSale(saleId: $s, idempotencyKey: $k) { saleIds sales { status } } }",
            json!({"s": sale, "k": format!("validate-{sale}")}),
        )
        .await;
    assert_eq!(
        data["validateSale"],
        json!({"saleIds": [sale], "sales": [{"status": "VALIDATED"}]})
    );
}

/// Waits until the producer's balance recorded one sale credited, then for the projections;
/// returns the producer's `payouts`.
async fn credited(api: &Api, s: &Seller) -> Value {
    until(
        &format!("producer {} is credited", s.id),
        Duration::from_secs(30),
        || {
            let (pool, p) = (api.db.pool.clone(), s.id.clone());
            async move {
                let got = balance_events(&pool, &p, "SaleCredited").await;
                (got == 1).then_some(()).ok_or(json!({"SaleCredited": got}))
            }
        },
    )
    .await;
    caught_up(api).await;
    api.ok(&s.who, &payouts_q(), json!({"p": s.id})).await["payouts"].clone()
}

/// The credit of `sale` in `payouts` (exactly one), with its Cagette fee lines checked: one
/// online payment line and one service line, both on the gross the customers paid, each
/// recomputing from its inputs. Returns (gross, net, fees incl. VAT).
fn credit_checked(payouts: &Value, sale: &str, market: &str) -> (Decimal, Decimal, Decimal) {
    let credits: Vec<&Value> = payouts["credits"]
        .as_array()
        .unwrap_or_else(|| panic!("credits: {payouts}"))
        .iter()
        .filter(|c| c["saleId"] == sale)
        .collect();
    assert_eq!(credits.len(), 1, "one credit of the sale: {payouts}");
    let credit = credits[0];
    assert_eq!(
        (&credit["marketId"], &credit["refunds"]),
        (&json!(market), &json!("0.00")),
        "{credit}"
    );
    let gross = dec(&credit["grossInclVat"]);
    let fees = credit["fees"].as_array().unwrap();
    assert_eq!(fees.len(), 2, "online payment and service: {credit}");
    let mut total = Decimal::ZERO;
    for (rule, rate) in [
        ("cagette.online_payment", "0.03"),
        ("cagette.service_fee", "0.06"),
    ] {
        let line = fees
            .iter()
            .find(|l| l["ruleId"] == rule)
            .unwrap_or_else(|| panic!("no {rule} line: {credit}"));
        assert_eq!(
            (
                &line["schedule"],
                &line["beneficiary"],
                &line["baseKind"],
                &line["rate"],
                &line["fixedPart"],
                &line["vatRate"],
            ),
            (
                &json!("cagette"),
                &json!("platform"),
                &json!("incl_vat"),
                &json!(rate),
                &json!("0.00"),
                &json!("20"),
            ),
            "{line}"
        );
        assert_eq!(
            dec(&line["baseAmount"]),
            gross,
            "R-CAT-2: the fees are taken on what the customer paid: {line}"
        );
        recomputes(line);
        total += dec(&line["amountInclVat"]);
    }
    let net = dec(&credit["net"]);
    assert_eq!(net, gross - total, "net = gross - fees: {credit}");
    (gross, net, total)
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// R-CAT-2, R-CAT-3, R-FEE-1, R-FEE-2: on an online market with the default Cagette schedule,
/// three producers sell a 10.00 honey (and two of them a 4.20 jam), VAT 5.5 %:
/// - A's catalog adds both fees (shares 0.036 + 0.072 = 0.108): the sale offers the honey at
///   10.00 / 0.892 = 11.2107... -> 11.21 and the jam at 4.20 / 0.892 = 4.7085... -> 4.71;
/// - B's adds the payment fee only, the service fee staying B's: 10.00 x 0.928 / 0.892 =
///   10.4035... -> 10.40;
/// - C's (the control) adds none: 10.00 and 4.20.
///
/// One order, 3 honeys and 2 jams from A, 1 honey from B, 3 honeys and 2 jams from C: the lines
/// are priced at the customer prices (33.63, 9.42, 10.40, 30.00, 8.40; total 91.85), with the
/// producer's price beside them for A and B, null for C. Once the sale is distributed,
/// validated and credited, the fees are taken on what the customers paid:
/// - A: 43.05 gross, 1.29 + 0.26 and 2.58 + 0.52 of fees, net 38.40 = 3 x 10.00 + 2 x 4.20: A
///   keeps their prices (within a cent per unit sold, never less);
/// - B: 10.40 gross, 0.31 + 0.06 and 0.62 + 0.12, net 9.29: what 10.00 leaves without a payment
///   fee (10.00 - 0.60 - 0.12 = 9.28), within a cent;
/// - C: 38.40 gross, 1.15 + 0.23 and 2.30 + 0.46, net 34.26: C bears the fees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_cat_2_fees_added_into_prices_are_paid_by_the_customer_and_the_producer_keeps_their_price(
) {
    let started = Instant::now();
    let api = Api::start(ENV).await;
    let admin = api.who(Role::MarketAdmin);

    let both = seller(
        &api,
        "Ferme A",
        &[("Miel", "10.00"), ("Confiture", "4.20")],
        (true, true),
    )
    .await;
    let payment_only = seller(&api, "Ferme B", &[("Miel", "10.00")], (true, false)).await;
    let control = seller(
        &api,
        "Ferme C",
        &[("Miel", "10.00"), ("Confiture", "4.20")],
        (false, false),
    )
    .await;

    // The expected customer prices, by the formula.
    assert_eq!(
        customer_price("10.00", PAYMENT_SHARE + SERVICE_SHARE),
        "11.21"
    );
    assert_eq!(
        customer_price("4.20", PAYMENT_SHARE + SERVICE_SHARE),
        "4.71"
    );
    assert_eq!(
        customer_price_bearing("10.00", PAYMENT_SHARE, PAYMENT_SHARE + SERVICE_SHARE),
        "10.40"
    );

    let slot = slot_soon().await;
    let (market, sales) = market_with_sales(
        &api,
        &admin,
        "ONLINE",
        (slot.weekday, &slot.start, &slot.end, slot.day),
        (slot.day, slot.day),
        &[&both, &payment_only, &control],
    )
    .await;
    assert_eq!(sales.len(), 1, "one sale today: {sales:?}");
    let sale = sales[0].clone();
    for s in [&both, &payment_only, &control] {
        participate(&api, s, &sale).await;
    }
    let s = periods_open(&api, &sale, 3).await;
    assert_eq!(
        (&s["paymentMode"], &s["date"]),
        (&json!("ONLINE"), &json!(slot.day.to_string())),
        "{s}"
    );
    assert_eq!(instant(&s["startsAt"]), slot.starts_at, "{s}");
    assert_eq!(instant(&s["endsAt"]), slot.ends_at, "{s}");

    // The sale's offers, at its frozen terms.
    let customer = api.who(Role::Customer);
    let data = api.ok(&customer, OFFERS_Q, json!({"s": sale})).await;
    let offers = &data["sale"];
    assert_offers(
        offers,
        &both,
        &[("10.00", "11.21"), ("4.20", "4.71")],
        (true, true),
        "R-CAT-2: both fees added on an online market",
    );
    assert_offers(
        offers,
        &payment_only,
        &[("10.00", "10.40")],
        (true, false),
        "R-CAT-2: the payment fee only",
    );
    assert_offers(
        offers,
        &control,
        &[("10.00", "10.00"), ("4.20", "4.20")],
        (false, false),
        "R-CAT-2: no fee added, the customer pays the producer's price",
    );

    // One order, paid online at once.
    let data = api
        .ok(
            &customer,
            PLACE,
            json!({"s": sale, "k": "o-1", "lines": [
                both.line(0, 3), both.line(1, 2), payment_only.line(0, 1),
                control.line(0, 3), control.line(1, 2),
            ]}),
        )
        .await;
    let placed = &data["placeOrder"]["order"];
    assert_line(placed, &both, 0, (3, "11.21", Some("10.00"), "33.63"));
    assert_line(placed, &both, 1, (2, "4.71", Some("4.20"), "9.42"));
    assert_line(
        placed,
        &payment_only,
        0,
        (1, "10.40", Some("10.00"), "10.40"),
    );
    assert_line(placed, &control, 0, (3, "10.00", None, "30.00"));
    assert_line(placed, &control, 1, (2, "4.20", None, "8.40"));
    assert_eq!(
        placed["lines"].as_array().map(Vec::len),
        Some(5),
        "{placed}"
    );
    let sum: Decimal = placed["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| dec(&l["amountInclVat"]))
        .sum();
    assert_eq!(sum, d("91.85"));
    assert_eq!(
        placed["total"], "91.85",
        "the total is the sum of the customer amounts: {placed}"
    );
    let order = data["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let expected =
        json!({"total": "91.85", "paid": "91.85", "refunded": "0.00", "cancelled": false});
    until("the order is paid 91.85", Duration::from_secs(15), || {
        let (customer, order, expected) = (customer.clone(), order.clone(), expected.clone());
        let api = &api;
        async move {
            let data = api.ok(&customer, ORDER_Q, json!({"o": order})).await;
            (data["order"] == expected).then_some(()).ok_or(data)
        }
    })
    .await;
    assert!(Utc::now() < slot.starts_at, "the order came in time");
    eprintln!(
        "order placed {:?} before the sale's start",
        (slot.starts_at - Utc::now()).to_std().unwrap_or_default()
    );

    // The recap (R-SAL-5) shows the customer's price and the producer's beside it.
    caught_up(&api).await;
    let recap_q = "query($s: UUID!, $c: UUID) { orderRecap(saleId: $s, catalogId: $c) { byCustomer { nodes { lines { productId quantity unitPriceInclVat producerUnitPriceInclVat amountInclVat } } } } }";
    for (s, expected) in [
        (
            &both,
            json!([
                {"productId": both.products[0].0, "quantity": 3, "unitPriceInclVat": "11.21", "producerUnitPriceInclVat": "10.00", "amountInclVat": "33.63"},
                {"productId": both.products[1].0, "quantity": 2, "unitPriceInclVat": "4.71", "producerUnitPriceInclVat": "4.20", "amountInclVat": "9.42"},
            ]),
        ),
        (
            &control,
            json!([
                {"productId": control.products[0].0, "quantity": 3, "unitPriceInclVat": "10.00", "producerUnitPriceInclVat": null, "amountInclVat": "30.00"},
                {"productId": control.products[1].0, "quantity": 2, "unitPriceInclVat": "4.20", "producerUnitPriceInclVat": null, "amountInclVat": "8.40"},
            ]),
        ),
    ] {
        let recap = api
            .ok(&s.who, recap_q, json!({"s": sale, "c": s.catalog}))
            .await;
        assert_eq!(
            recap["orderRecap"]["byCustomer"]["nodes"][0]["lines"], expected,
            "R-CAT-2: the recap shows both prices: {recap}"
        );
    }

    distribute_and_validate(&api, &admin, &sale, &slot).await;

    // A: the customer bore the fees; A keeps 3 x 10.00 + 2 x 4.20.
    let payouts = credited(&api, &both).await;
    let (gross, net, fees) = credit_checked(&payouts, &sale, &market);
    assert_eq!(
        (gross, fees, net),
        (d("43.05"), d("4.65"), d("38.40")),
        "A's credit: {payouts}"
    );
    let own = d("3") * d("10.00") + d("2") * d("4.20");
    let units = d("5");
    assert!(
        (net - own).abs() <= units * d("0.01") && net >= own - units * d("0.01"),
        "R-CAT-2: the producer keeps their price {own} within a cent per unit sold: net {net}"
    );
    assert_eq!(
        (&payouts["creditedTotal"], &payouts["balanceHeld"]),
        (&json!("38.40"), &json!("38.40")),
        "{payouts}"
    );

    // B: the payment fee was the customer's, the service fee B's.
    let payouts = credited(&api, &payment_only).await;
    let (gross, net, fees) = credit_checked(&payouts, &sale, &market);
    assert_eq!(
        (gross, fees, net),
        (d("10.40"), d("1.11"), d("9.29")),
        "B's credit: {payouts}"
    );
    assert_eq!(
        (&payouts["creditedTotal"], &payouts["balanceHeld"]),
        (&json!("9.29"), &json!("9.29")),
        "{payouts}"
    );

    // C, the control: the fees are taken from the producer's price.
    let payouts = credited(&api, &control).await;
    let (gross, net, fees) = credit_checked(&payouts, &sale, &market);
    assert_eq!(
        (gross, fees, net),
        (d("38.40"), d("4.14"), d("34.26")),
        "R-FEE-1: the control producer bears the fees: {payouts}"
    );
    assert!(net < own, "the control keeps less than its prices");
    assert_eq!(
        (&payouts["creditedTotal"], &payouts["balanceHeld"]),
        (&json!("34.26"), &json!("34.26")),
        "{payouts}"
    );
    eprintln!("fees_in_price_online: {:?}", started.elapsed());
}

/// R-CAT-2, R-FEE-2, R-CAT-3: on a market paying on site, a catalog with both options adds the
/// service fee only (share 0.072): 10.00 / 0.928 = 10.7758... -> 10.78, 4.20 / 0.928 =
/// 4.5258... -> 4.53. An order of 3 and 2 is priced 32.34 + 9.06 = 41.40, with the producer's
/// prices beside. The options are frozen into the sale when its order period opens: turning
/// them off afterwards changes the catalog (and the next sale, priced 10.00 and 4.20) but not
/// this sale's offers nor an order placed in it after the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_cat_2_on_site_market_adds_only_the_service_fee_frozen_per_sale_r_cat_3() {
    let started = Instant::now();
    let api = Api::start(ENV).await;
    let admin = api.who(Role::MarketAdmin);
    let farm = seller(
        &api,
        "Ferme D",
        &[("Miel", "10.00"), ("Confiture", "4.20")],
        (true, true),
    )
    .await;
    assert_eq!(customer_price("10.00", SERVICE_SHARE), "10.78");
    assert_eq!(customer_price("4.20", SERVICE_SHARE), "4.53");

    // A sale two days from now and the next, a week later (Europe/Paris dates).
    let day = (Utc::now() + chrono::Duration::days(2))
        .with_timezone(&Paris)
        .date_naive();
    let next = day + chrono::Duration::days(7);
    let (_market, sales) = market_with_sales(
        &api,
        &admin,
        "ON_SITE",
        (weekday_code(day), "18:00", "19:00", day),
        (day, next),
        &[&farm],
    )
    .await;
    assert_eq!(sales.len(), 2, "two sales: {sales:?}");
    let customer = api.who(Role::Customer);
    let mut by_date = Vec::new();
    for s in &sales {
        let data = api.ok(&customer, SALE_Q, json!({"s": s})).await;
        by_date.push((
            data["sale"]["date"].as_str().unwrap().to_string(),
            s.clone(),
        ));
    }
    by_date.sort();
    assert_eq!(
        (by_date[0].0.as_str(), by_date[1].0.as_str()),
        (day.to_string().as_str(), next.to_string().as_str())
    );
    let (sale, next_sale) = (by_date[0].1.clone(), by_date[1].1.clone());

    // R-SAL-3: this sale's period opens an hour ago and closes in 12 hours.
    api.ok(
        &farm.who,
        "mutation($c: UUID!, $s: [UUID!]!) { participate(catalogId: $c, saleIds: $s) { position } }",
        json!({"c": farm.catalog, "s": [sale, next_sale]}),
    )
    .await;
    let now = Utc::now();
    api.ok(
        &farm.who,
        "mutation($s: UUID!, $c: UUID!, $o: DateTime!, $cl: DateTime!) { overridePeriod(saleId: $s, catalogId: $c, opensAt: $o, closesAt: $cl) { position } }",
        json!({"s": sale, "c": farm.catalog, "o": (now - chrono::Duration::hours(1)).to_rfc3339(), "cl": (now + chrono::Duration::hours(12)).to_rfc3339()}),
    )
    .await;
    periods_open(&api, &sale, 1).await;

    let data = api.ok(&customer, OFFERS_Q, json!({"s": sale})).await;
    assert_eq!(data["sale"]["paymentMode"], "ON_SITE", "{data}");
    assert_offers(
        &data["sale"],
        &farm,
        &[("10.00", "10.78"), ("4.20", "4.53")],
        (true, true),
        "R-CAT-2, R-FEE-2: paying on site, only the service fee is added",
    );

    // R-CAT-3: the options turned off once the period is open.
    let data = api
        .ok(
            &farm.who,
            SET_FEES,
            json!({"c": farm.catalog, "p": false, "s": false, "k": "fees-off"}),
        )
        .await;
    assert_eq!(
        data["setFeeOptions"]["catalog"],
        json!({"includesPaymentFee": false, "includesServiceFee": false}),
        "{data}"
    );
    let data = api.ok(&customer, OFFERS_Q, json!({"s": sale})).await;
    assert_offers(
        &data["sale"],
        &farm,
        &[("10.00", "10.78"), ("4.20", "4.53")],
        (true, true),
        "R-CAT-3: the open sale keeps the options it was frozen with",
    );
    let data = api.ok(&customer, OFFERS_Q, json!({"s": next_sale})).await;
    assert_offers(
        &data["sale"],
        &farm,
        &[("10.00", "10.00"), ("4.20", "4.20")],
        (false, false),
        "R-CAT-3: the next sale gets the new options",
    );

    let data = api
        .ok(
            &customer,
            PLACE,
            json!({"s": sale, "k": "o-1", "lines": [farm.line(0, 3), farm.line(1, 2)]}),
        )
        .await;
    let placed = &data["placeOrder"]["order"];
    assert_line(placed, &farm, 0, (3, "10.78", Some("10.00"), "32.34"));
    assert_line(placed, &farm, 1, (2, "4.53", Some("4.20"), "9.06"));
    assert_eq!(
        placed["lines"].as_array().map(Vec::len),
        Some(2),
        "{placed}"
    );
    assert_eq!(placed["total"], "41.40", "{placed}");
    let order = data["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let data = api.ok(&customer, ORDER_Q, json!({"o": order})).await;
    assert_eq!(
        data["order"],
        json!({"total": "41.40", "paid": "0.00", "refunded": "0.00", "cancelled": false}),
        "paid on site, at pick-up"
    );
    eprintln!("fees_in_price_on_site: {:?}", started.elapsed());
}

/// R-CAT-3, R-CAT-2, R-FEE-5: everyone in one sale pays the same price. On an online market
/// with the default Cagette schedule, a catalog with both options sells a 10.00 honey at 11.21
/// in a sale two days from now whose order period is open; a first customer orders one. Then a
/// platform administrator's choice of `ruche` from the sale's date is refused
/// (`FEE_SCHEDULE_SALE_OPEN`), from the day after accepted; the sale's offers and a second
/// customer's order are still at 11.21 (under ruche the gross-up would be
/// 10.00 / (1 - 0.24 / 1.055) = 12.94).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_cat_3_a_fee_schedule_assigned_while_the_period_is_open_keeps_the_sale_prices() {
    let started = Instant::now();
    let api = Api::start(ENV).await;
    let admin = api.who(Role::MarketAdmin);
    let platform = api.who(Role::PlatformAdmin);
    let farm = seller(&api, "Ferme E", &[("Miel", "10.00")], (true, true)).await;
    let ruche_share = d("0.20") * d("1.2") / d("1.055");
    assert_eq!(customer_price("10.00", ruche_share), "12.94");

    let day = (Utc::now() + chrono::Duration::days(2))
        .with_timezone(&Paris)
        .date_naive();
    let (market, sales) = market_with_sales(
        &api,
        &admin,
        "ONLINE",
        (weekday_code(day), "18:00", "19:00", day),
        (day, day),
        &[&farm],
    )
    .await;
    assert_eq!(sales.len(), 1, "one sale: {sales:?}");
    let sale = sales[0].clone();
    api.ok(
        &farm.who,
        "mutation($c: UUID!, $s: [UUID!]!) { participate(catalogId: $c, saleIds: $s) { position } }",
        json!({"c": farm.catalog, "s": [sale]}),
    )
    .await;
    let now = Utc::now();
    api.ok(
        &farm.who,
        "mutation($s: UUID!, $c: UUID!, $o: DateTime!, $cl: DateTime!) { overridePeriod(saleId: $s, catalogId: $c, opensAt: $o, closesAt: $cl) { position } }",
        json!({"s": sale, "c": farm.catalog, "o": (now - chrono::Duration::hours(1)).to_rfc3339(), "cl": (now + chrono::Duration::hours(12)).to_rfc3339()}),
    )
    .await;
    periods_open(&api, &sale, 1).await;

    let first = api.who(Role::Customer);
    let data = api.ok(&first, OFFERS_Q, json!({"s": sale})).await;
    assert_offers(
        &data["sale"],
        &farm,
        &[("10.00", "11.21")],
        (true, true),
        "R-CAT-2: the Cagette gross-up",
    );
    let data = api
        .ok(
            &first,
            PLACE,
            json!({"s": sale, "k": "o-1", "lines": [farm.line(0, 1)]}),
        )
        .await;
    assert_line(
        &data["placeOrder"]["order"],
        &farm,
        0,
        (1, "11.21", Some("10.00"), "11.21"),
    );

    // Either accepted (the open sale keeps its prices) or refused with a code (the schedule of
    // a sale whose period is open cannot change): both keep R-CAT-3.
    let body = api
        .call(
            &platform,
            "mutation($m: UUID!, $s: String!, $f: Date!) { assignFeeSchedule(marketId: $m, schedule: $s, from: $f) { schedule from } }",
            json!({"m": market, "s": "ruche", "f": day.to_string()}),
        )
        .await;
    // Refused: the sale has opened its orders at the current fees.
    assert_eq!(
        code(&body).as_deref(),
        Some("FEE_SCHEDULE_SALE_OPEN"),
        "{body}"
    );
    // From the day after the sale, accepted.
    let after = (day + chrono::Duration::days(1)).to_string();
    let body = api
        .call(
            &platform,
            "mutation($m: UUID!, $s: String!, $f: Date!) { assignFeeSchedule(marketId: $m, schedule: $s, from: $f) { schedule from } }",
            json!({"m": market, "s": "ruche", "f": after}),
        )
        .await;
    assert_eq!(
        body["data"]["assignFeeSchedule"],
        json!({"schedule": "ruche", "from": after}),
        "{body}"
    );

    // The second customer's order first (what the customer is charged), then the offers.
    let second = api.who(Role::Customer);
    let data = api
        .ok(
            &second,
            PLACE,
            json!({"s": sale, "k": "o-2", "lines": [farm.line(0, 1)]}),
        )
        .await;
    assert_line(
        &data["placeOrder"]["order"],
        &farm,
        0,
        (1, "11.21", Some("10.00"), "11.21"),
    );
    let data = api.ok(&second, OFFERS_Q, json!({"s": sale})).await;
    assert_offers(
        &data["sale"],
        &farm,
        &[("10.00", "11.21")],
        (true, true),
        "R-CAT-3: the open sale's customer price does not move with a schedule assigned since",
    );
    eprintln!("fees_in_price_schedule_change: {:?}", started.elapsed());
}
