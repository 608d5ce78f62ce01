//! Fee schedules as configuration, over HTTP against the real `etal serve` binary and real
//! PostgreSQL, with the system clock (R-FEE-1, R-FEE-3, R-FEE-5):
//! - `etal serve` loads its schedules from the folder `ETAL_FEES` and uses `ETAL_FEE_SCHEDULE`
//!   for markets that have none assigned; `feeSchedules` lists what it loaded;
//! - a fixed part per payment is split across the producers of the payment in proportion to
//!   their amounts incl. VAT, rounded half away from zero, the remainder to the largest
//!   (R-FEE-1: 0.25 over 10.00, 60.00 and 30.00 gives 0.03, 0.14, 0.08), and each fee line
//!   records what produced it so that it can be recomputed (R-FEE-3);
//! - a platform administrator assigns a market its schedule from a date (`assignFeeSchedule`);
//!   a sale uses the one assigned with the latest date on or before its own, else the default
//!   (R-FEE-5); the refusals are coded (NOT_FOUND, FORBIDDEN, FEE_SCHEDULE_DATE_PAST) and a
//!   retry with the same idempotency key answers the first outcome;
//! - an invalid fee file stops `etal serve` at start with a message naming the file.
//!
//! Each sale starts seconds after the test and is delivered at its end
//! (`ETAL_DELIVERY_DELAY_MINUTES=0`), then validated (R-SAL-6) and credited; the fee lines are
//! read from the producers' open credits (`payouts { credits { fees } }`).

use crate::graphql_common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use etal_domain::Role;
use graphql_common::{
    balance_events, caught_up, code, dec, instant, mutate, recomputes, until, Api, Slot, Who,
    OPEN_ACCOUNT, PLACE_ORDER, SECRET,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;

const ENV: &[(&str, &str)] = graphql_common::SOON_ENV;

/// How long after the market's creation its sale starts: time to open the periods and place
/// the orders (the periods close when the sale starts).
const LEAD: chrono::Duration = chrono::Duration::seconds(8);
/// How long the sale lasts.
const LENGTH: chrono::Duration = chrono::Duration::seconds(2);

/// A schedule of the test's own: an online payment rule of 3 % of the amount paid incl. VAT
/// plus a fixed 0.25 per payment (version 2; version 1, 5 % without a fixed part, is no longer
/// in force), and a 6 % service fee, both with 20 % VAT.
const TEST_FIXED: &str = r#"{"schedules": [{
  "name": "test_fixed",
  "description": "Test: 3 % of the payment plus 0.25 per payment, 6 % service.",
  "rules": [
    {"id": "test.online_payment", "version": 1, "valid_from": "2020-01-01",
     "label": "Paiement en ligne", "base": "incl_vat", "rate": "0.05",
     "split": [{"beneficiary": "platform", "rate": "0.05"}],
     "vat_on_fee": "20", "applies_to": "online_payment"},
    {"id": "test.online_payment", "version": 2, "valid_from": "2024-01-01",
     "label": "Paiement en ligne", "base": "incl_vat", "rate": "0.03",
     "fixed": {"amount": "0.25", "per": "payment", "beneficiary": "platform"},
     "split": [{"beneficiary": "platform", "rate": "0.03"}],
     "vat_on_fee": "20", "applies_to": "online_payment"},
    {"id": "test.service", "version": 1, "valid_from": "2020-01-01",
     "label": "Service", "base": "incl_vat", "rate": "0.06",
     "split": [{"beneficiary": "platform", "rate": "0.06"}],
     "vat_on_fee": "20", "applies_to": "all_sales"}
  ]}]}"#;

const SALE_Q: &str = "query($s: UUID!) { sale(id: $s) { status date startsAt endsAt paymentMode participations { period closesAt } } }";
const ORDER_Q: &str = "query($o: UUID!) { order(id: $o) { total paid refunded cancelled } }";
const FEE_FIELDS: &str = "label ruleId ruleVersion schedule beneficiary baseKind baseAmount rate fixedPart vatRate rounding amountExclVat vat amountInclVat";
const ASSIGN: &str = "mutation($m: UUID!, $s: String!, $f: Date!, $k: String) { assignFeeSchedule(marketId: $m, schedule: $s, from: $f, idempotencyKey: $k) { position marketId schedule from } }";

fn payouts_q() -> String {
    format!(
        "query($p: UUID!) {{ payouts(producerId: $p) {{ creditedTotal balanceHeld \
         credits {{ saleId marketId grossInclVat refunds net fees {{ {FEE_FIELDS} }} }} \
         payouts {{ statement {{ saleId net fees {{ {FEE_FIELDS} }} }} }} }} }}"
    )
}

// ---------------------------------------------------------------------------------------------
// A sale that ends within seconds
// ---------------------------------------------------------------------------------------------

/// Today's slot starting `LEAD` from now and lasting `LENGTH`.
pub(crate) async fn slot_soon() -> Slot {
    graphql_common::slot_soon(LEAD, LENGTH).await
}

/// A producer (Pro plan) with one product (VAT 5.5 %, stock 20) offered at its price in a
/// catalog of its own.
pub(crate) struct Seller {
    pub(crate) who: Who,
    pub(crate) id: String,
    pub(crate) catalog: String,
    pub(crate) product: String,
}

pub(crate) async fn seller(api: &Api, name: &str, price: &str) -> Seller {
    let who = api.who(Role::Producer);
    let d = api.ok(&who, OPEN_ACCOUNT, json!({"k": "open-1"})).await;
    let id = d["openAccount"]["producerId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &who,
            "mutation($p: UUID!, $input: ProductInput!) { addProduct(producerId: $p, product: $input) { productId } }",
            json!({"p": id, "input": {"name": name, "unit": "piece", "priceInclVat": price, "vatRate": "5.5"}}),
        )
        .await;
    let product = d["addProduct"]["productId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &who,
            "mutation($p: UUID!, $x: UUID!) { setStock(producerId: $p, productId: $x, real: 20) { stock { real available } } }",
            json!({"p": id, "x": product}),
        )
        .await;
    assert_eq!(d["setStock"]["stock"], json!({"real": 20, "available": 20}));
    let d = api
        .ok(
            &who,
            "mutation($p: UUID!, $n: String!) { createCatalog(producerId: $p, name: $n) { catalogId } }",
            json!({"p": id, "n": format!("Catalogue {name}")}),
        )
        .await;
    let catalog = d["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &who,
        "mutation($c: UUID!, $x: UUID!, $price: Money!) { addOffer(catalogId: $c, productId: $x, priceInclVat: $price) { position } }",
        json!({"c": catalog, "x": product, "price": price}),
    )
    .await;
    Seller {
        who,
        id,
        catalog,
        product,
    }
}

impl Seller {
    pub(crate) fn line(&self, quantity: i64) -> Value {
        json!({"catalogId": self.catalog, "productId": self.product, "quantity": quantity})
    }
}

/// An online market of `admin` with the slot, the sellers' catalogs linked, and its one sale
/// of today generated: (market id, sale id).
pub(crate) async fn market_with_sale(
    api: &Api,
    admin: &Who,
    name: &str,
    slot: &Slot,
    sellers: &[&Seller],
) -> (String, String) {
    let market = market_only(api, admin, name, slot, sellers).await;
    let sale = todays_sale(api, admin, &market, slot).await;
    (market, sale)
}

/// An online market of `admin` with the slot and the sellers' catalogs linked, no sale yet.
pub(crate) async fn market_only(
    api: &Api,
    admin: &Who,
    name: &str,
    slot: &Slot,
    sellers: &[&Seller],
) -> String {
    let d = api
        .ok(
            admin,
            "mutation($m: MarketInput!) { createMarket(market: $m) { marketId } }",
            json!({"m": {"name": name, "place": "Salle des fêtes", "paymentMode": "ONLINE",
                "slots": [{"weekday": slot.weekday, "start": slot.start, "end": slot.end, "anchor": slot.day.to_string()}]}}),
        )
        .await;
    let market = d["createMarket"]["marketId"].as_str().unwrap().to_string();
    for s in sellers {
        api.ok(
            admin,
            "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { position } }",
            json!({"m": market, "c": s.catalog}),
        )
        .await;
    }
    market
}

/// The market's one sale of today, generated.
pub(crate) async fn todays_sale(api: &Api, admin: &Who, market: &str, slot: &Slot) -> String {
    let d = api
        .ok(
            admin,
            "mutation($m: UUID!, $d: Date!) { generateSales(marketId: $m, from: $d, to: $d) { saleIds } }",
            json!({"m": market, "d": slot.day.to_string()}),
        )
        .await;
    let ids = d["generateSales"]["saleIds"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "one sale today: {d}");
    ids[0].as_str().unwrap().to_string()
}

/// R-SAL-2, R-SAL-3: the seller takes part in the sales, orders opening an hour before the
/// start and closing at it.
pub(crate) async fn participate(api: &Api, s: &Seller, sales: &[&str]) {
    api.ok(
        &s.who,
        "mutation($c: UUID!, $s: [UUID!]!) { participate(catalogId: $c, saleIds: $s, opensHoursBefore: 1, closesHoursBefore: 0) { position } }",
        json!({"c": s.catalog, "s": sales}),
    )
    .await;
}

/// Waits until the scheduler opened the sale's `participations` periods (due an hour ago), and
/// checks the sale is today's, online, starting and ending at the slot's instants.
pub(crate) async fn periods_open(api: &Api, sale: &str, participations: usize, slot: &Slot) {
    let reader = api.who(Role::Customer);
    let d = until("the order periods open", Duration::from_secs(10), || {
        let (reader, sale) = (reader.clone(), sale.to_string());
        async move {
            let d = api.ok(&reader, SALE_Q, json!({"s": sale})).await;
            let list = d["sale"]["participations"].as_array().cloned();
            let open = list.is_some_and(|l| {
                l.len() == participations && l.iter().all(|p| p["period"] == "OPEN")
            });
            open.then_some(d.clone()).ok_or(d)
        }
    })
    .await;
    let s = &d["sale"];
    assert_eq!(s["paymentMode"], "ONLINE", "{s}");
    assert_eq!(s["date"], slot.day.to_string(), "{s}");
    assert_eq!(
        instant(&s["startsAt"]),
        slot.starts_at,
        "the sale's start: {s}"
    );
    assert_eq!(instant(&s["endsAt"]), slot.ends_at, "the sale's end: {s}");
}

/// A fresh customer places one order (R-ORD-1), paid online at once as one payment; waits until
/// it is paid in full. Returns the order id.
pub(crate) async fn order(
    api: &Api,
    sale: &str,
    lines: Vec<Value>,
    total: &str,
    slot: &Slot,
) -> String {
    let customer = api.who(Role::Customer);
    let d = api
        .ok(
            &customer,
            PLACE_ORDER,
            json!({"s": sale, "lines": lines, "k": "o-1"}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], total, "{d}");
    let id = d["placeOrder"]["orderId"].as_str().unwrap().to_string();
    let expected = json!({"total": total, "paid": total, "refunded": "0.00", "cancelled": false});
    until(
        &format!("order {id} is paid {total}"),
        Duration::from_secs(15),
        || {
            let (customer, id, expected) = (customer.clone(), id.clone(), expected.clone());
            async move {
                let d = api.ok(&customer, ORDER_Q, json!({"o": id})).await;
                (d["order"] == expected).then_some(()).ok_or(d)
            }
        },
    )
    .await;
    assert!(Utc::now() < slot.starts_at, "the order came in time");
    id
}

/// R-STK-4, R-SAL-6: waits until the sale is DISTRIBUTED, then its market's administrator
/// validates it.
pub(crate) async fn distribute_and_validate(api: &Api, admin: &Who, sale: &str, slot: &Slot) {
    distributed(api, sale, slot).await;
    validate(api, admin, sale).await;
}

/// R-STK-4: waits until the scheduler marked the sale DISTRIBUTED.
pub(crate) async fn distributed(api: &Api, sale: &str, slot: &Slot) {
    let wait = (slot.ends_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(20);
    let reader = api.who(Role::Customer);
    until("the sale is distributed", wait, || {
        let (reader, sale) = (reader.clone(), sale.to_string());
        async move {
            let d = api.ok(&reader, SALE_Q, json!({"s": sale})).await;
            (d["sale"]["status"] == "DISTRIBUTED")
                .then_some(())
                .ok_or(d)
        }
    })
    .await;
}

/// R-SAL-6: the market's administrator validates the sale.
pub(crate) async fn validate(api: &Api, admin: &Who, sale: &str) {
    let validated = mutate(
        api,
        admin,
        "mutation($s: UUID!, $k: String) { validateSale(saleId: $s, idempotencyKey: $k) { saleIds sales { status } } }",
        json!({"s": sale, "k": format!("validate-{sale}")}),
    )
    .await;
    assert_eq!(
        validated["validateSale"],
        json!({"saleIds": [sale], "sales": [{"status": "VALIDATED"}]})
    );
}

/// Waits until the producer's balance recorded `n` sales credited, then for the projections;
/// returns the producer's `payouts`.
async fn credited(api: &Api, s: &Seller, n: i64) -> Value {
    until(
        &format!("producer {} is credited {n} sale(s)", s.id),
        Duration::from_secs(20),
        || {
            let (pool, p) = (api.db.pool.clone(), s.id.clone());
            async move {
                let got = balance_events(&pool, &p, "SaleCredited").await;
                (got == n).then_some(()).ok_or(json!({"SaleCredited": got}))
            }
        },
    )
    .await;
    caught_up(api).await;
    api.ok(&s.who, &payouts_q(), json!({"p": s.id})).await["payouts"].clone()
}

/// The open credit of one sale in a producer's `payouts`, checking that any statement line of
/// the same sale shows the same fee lines.
fn credit_of<'a>(payouts: &'a Value, sale: &str) -> &'a Value {
    let credits = payouts["credits"].as_array().expect("credits");
    let credit = credits
        .iter()
        .find(|c| c["saleId"] == sale)
        .unwrap_or_else(|| panic!("no credit of sale {sale}: {payouts}"));
    for payout in payouts["payouts"].as_array().expect("payouts") {
        for line in payout["statement"].as_array().expect("statement") {
            if line["saleId"] == sale {
                assert_eq!(
                    line["fees"], credit["fees"],
                    "the statement shows the credit's fee lines"
                );
            }
        }
    }
    credit
}

/// The fee line of a rule and beneficiary (exactly one).
fn fee_line<'a>(credit: &'a Value, rule: &str, beneficiary: &str) -> &'a Value {
    let lines: Vec<&Value> = credit["fees"]
        .as_array()
        .expect("fees")
        .iter()
        .filter(|l| l["ruleId"] == rule && l["beneficiary"] == beneficiary)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one fee line of {rule} for {beneficiary}: {credit}"
    );
    lines[0]
}

// ---------------------------------------------------------------------------------------------
// Reading what was written
// ---------------------------------------------------------------------------------------------

/// The (schedule, from) of every `FeeScheduleAssigned` of a market, in order.
/// A rule version 1 without fixed part and with 20 % VAT on the fee, as a credit's fee lines
/// show it: [`Rule::check`] compares a beneficiary's line whole and recomputes it.
struct Rule<'a> {
    id: &'a str,
    label: &'a str,
    schedule: &'a str,
    base_kind: &'a str,
    base: &'a str,
}

impl Rule<'_> {
    /// `figures`: (rate, amount excl. VAT, VAT, amount incl. VAT).
    fn check(
        &self,
        credit: &Value,
        beneficiary: &str,
        figures: (&str, &str, &str, &str),
        why: &str,
    ) {
        let (rate, excl, vat, incl) = figures;
        let line = fee_line(credit, self.id, beneficiary);
        assert_eq!(
            line,
            &json!({
                "label": self.label, "ruleId": self.id, "ruleVersion": 1,
                "schedule": self.schedule, "beneficiary": beneficiary, "baseKind": self.base_kind,
                "baseAmount": self.base, "rate": rate, "fixedPart": "0.00", "vatRate": "20",
                "rounding": "half_away_from_zero_cent",
                "amountExclVat": excl, "vat": vat, "amountInclVat": incl,
            }),
            "{why}"
        );
        recomputes(line);
    }
}

async fn assignments(pool: &PgPool, market: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT payload -> 'FeeScheduleAssigned' ->> 'schedule', \
                payload -> 'FeeScheduleAssigned' ->> 'from' \
         FROM events WHERE aggregate_type = 'market' AND aggregate_id = $1 \
         AND event_type = 'FeeScheduleAssigned' ORDER BY sequence",
    )
    .bind(market)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// How many events the market's stream holds.
async fn market_events(pool: &PgPool, market: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'market' AND aggregate_id = $1",
    )
    .bind(market)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// An assignment that must be refused with this `extensions.code`, and write nothing on the
/// market (`vars.m`).
async fn refused(api: &Api, who: &Who, query: &str, vars: Value, expected: &str) {
    let market = vars["m"].as_str().expect("vars.m").to_string();
    let before = market_events(&api.db.pool, &market).await;
    let body = api.call(who, query, vars.clone()).await;
    assert_eq!(
        code(&body).as_deref(),
        Some(expected),
        "request {query}\nvariables {vars}\nanswered\n{}",
        serde_json::to_string_pretty(&body).unwrap()
    );
    assert!(
        body["data"].is_null()
            || body["data"]
                .as_object()
                .is_some_and(|o| o.values().all(Value::is_null)),
        "a refusal answers no data: {body}"
    );
    assert_eq!(
        market_events(&api.db.pool, &market).await,
        before,
        "a refusal writes nothing ({vars})"
    );
}

/// A folder of fee files of the test's own, removed on drop.
struct FeeDir(PathBuf);

impl FeeDir {
    fn new(files: &[(&str, &str)]) -> FeeDir {
        let dir = std::env::temp_dir().join(format!("etal-fees-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create the fee folder");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write a fee file");
        }
        FeeDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for FeeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `etal serve` with the fee folder against `database_url` (the environment
/// graphql_common gives it) and waits at most 60 s for it to exit: (exit status, stderr).
/// Still running after that is a failure (it started with an invalid fee file).
async fn serve_exits(database_url: &str, fees: &Path) -> (std::process::ExitStatus, String) {
    let listen = format!("127.0.0.1:{}", etal_tests::free_port());
    let mut child = Command::new(etal_tests::etal_bin())
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .env("ETAL_LISTEN", &listen)
        .env("ETAL_JWT_SECRET", SECRET)
        .env("ETAL_FEES", fees)
        .env_remove("ETAL_FEE_SCHEDULE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etal serve");
    let mut pipe = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reader.join().unwrap_or_default();
            panic!(
                "etal serve with the invalid fee folder {} was still running after 60 s; stderr:\n{stderr}",
                fees.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (status, reader.join().expect("stderr reader"))
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// R-FEE-1, R-FEE-3, R-FEE-5: `etal serve` with `ETAL_FEES` = a folder holding one schedule,
/// `test_fixed` (3 % of the payment incl. VAT plus 0.25 per payment, version 2 of its rule;
/// 6 % service), and `ETAL_FEE_SCHEDULE=test_fixed`. `feeSchedules` lists it, rule by rule. On
/// an online market with no schedule assigned, ONE order pays 10.00, 60.00 and 30.00 to three
/// producers; once the sale is distributed, validated and credited, each producer's online
/// payment fee line carries its share of the fixed part, 0.03, 0.14 and 0.08 (0.025, 0.15,
/// 0.075 rounded half away from zero; the remainder -0.01 to the largest), adding up to 0.25;
/// every line records its schedule, rule version, beneficiary, base, rate, fixed part, VAT
/// rate and rounding, and recomputes from them:
/// - 10.00: 0.30 + 0.03 = 0.33 excl., 0.07 VAT; service 0.60 + 0.12; net 8.88;
/// - 60.00: 1.80 + 0.14 = 1.94 excl., 0.39 VAT; service 3.60 + 0.72; net 53.35;
/// - 30.00: 0.90 + 0.08 = 0.98 excl., 0.20 VAT; service 1.80 + 0.36; net 26.66.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_fee_1_a_fixed_part_per_payment_is_split_across_the_producers_of_the_payment() {
    let started = Instant::now();
    let fees = FeeDir::new(&[("test_fixed.json", TEST_FIXED)]);
    let mut env = ENV.to_vec();
    env.push(("ETAL_FEES", fees.path()));
    env.push(("ETAL_FEE_SCHEDULE", "test_fixed"));
    let api = Api::start(&env).await;
    let platform = api.who(Role::PlatformAdmin);

    // R-FEE-5: the schedule of the folder is loaded, whole.
    let d = api
        .ok(
            &platform,
            "{ feeSchedules { name description rules { id version validFrom label } } }",
            json!({}),
        )
        .await;
    let listed = d["feeSchedules"]
        .as_array()
        .unwrap_or_else(|| panic!("feeSchedules: {d}"))
        .iter()
        .find(|s| s["name"] == "test_fixed")
        .unwrap_or_else(|| panic!("test_fixed is not listed: {d}"))
        .clone();
    let mut rules = listed["rules"].as_array().cloned().unwrap_or_default();
    rules.sort_by_key(|r| (r["id"].to_string(), r["version"].as_i64()));
    assert_eq!(
        (&listed["description"], json!(rules)),
        (
            &json!("Test: 3 % of the payment plus 0.25 per payment, 6 % service."),
            json!([
                {"id": "test.online_payment", "version": 1, "validFrom": "2020-01-01", "label": "Paiement en ligne"},
                {"id": "test.online_payment", "version": 2, "validFrom": "2024-01-01", "label": "Paiement en ligne"},
                {"id": "test.service", "version": 1, "validFrom": "2020-01-01", "label": "Service"},
            ])
        ),
        "{listed}"
    );

    // Three producers, each with a catalog of its own.
    let lettuce = seller(&api, "Salade", "2.50").await; // 4 -> 10.00
    let chicken = seller(&api, "Poulet", "20.00").await; // 3 -> 60.00
    let cheese = seller(&api, "Fromage", "7.50").await; // 4 -> 30.00
    let admin = api.who(Role::MarketAdmin);
    let slot = slot_soon().await;
    let (market, sale) = market_with_sale(
        &api,
        &admin,
        "Segonzac",
        &slot,
        &[&lettuce, &chicken, &cheese],
    )
    .await;
    for s in [&lettuce, &chicken, &cheese] {
        participate(&api, s, &[&sale]).await;
    }
    periods_open(&api, &sale, 3, &slot).await;
    let d = api
        .ok(
            &admin,
            "query($m: UUID!) { market(id: $m) { feeSchedules { schedule from } } }",
            json!({"m": market}),
        )
        .await;
    assert_eq!(
        d["market"]["feeSchedules"],
        json!([]),
        "nothing assigned: the default applies"
    );

    // One order, one payment, three producers.
    order(
        &api,
        &sale,
        vec![lettuce.line(4), chicken.line(3), cheese.line(4)],
        "100.00",
        &slot,
    )
    .await;
    eprintln!(
        "order placed {:?} before the sale's start",
        (slot.starts_at - Utc::now()).to_std().unwrap_or_default()
    );
    distribute_and_validate(&api, &admin, &sale, &slot).await;

    let expected = [
        // (producer, gross, fixed part, online excl., VAT, incl., service incl., net)
        (
            &lettuce, "10.00", "0.03", "0.33", "0.07", "0.40", "0.72", "8.88",
        ),
        (
            &chicken, "60.00", "0.14", "1.94", "0.39", "2.33", "4.32", "53.35",
        ),
        (
            &cheese, "30.00", "0.08", "0.98", "0.20", "1.18", "2.16", "26.66",
        ),
    ];
    let mut fixed_total = Decimal::ZERO;
    for (s, gross, fixed, excl, vat, incl, service, net) in expected {
        let payouts = credited(&api, s, 1).await;
        let credit = credit_of(&payouts, &sale);
        assert_eq!(
            (
                &credit["marketId"],
                &credit["grossInclVat"],
                &credit["refunds"],
                &credit["net"]
            ),
            (&json!(market), &json!(gross), &json!("0.00"), &json!(net)),
            "{credit}"
        );
        assert_eq!(
            (&payouts["creditedTotal"], &payouts["balanceHeld"]),
            (&json!(net), &json!(net)),
            "{payouts}"
        );
        assert_eq!(
            credit["fees"].as_array().map(Vec::len),
            Some(2),
            "one online payment line and one service line: {credit}"
        );
        let online = fee_line(credit, "test.online_payment", "platform");
        assert_eq!(
            online,
            &json!({
                "label": "Paiement en ligne", "ruleId": "test.online_payment", "ruleVersion": 2,
                "schedule": "test_fixed", "beneficiary": "platform", "baseKind": "incl_vat",
                "baseAmount": gross, "rate": "0.03", "fixedPart": fixed, "vatRate": "20",
                "rounding": "half_away_from_zero_cent",
                "amountExclVat": excl, "vat": vat, "amountInclVat": incl,
            }),
            "R-FEE-1: producer {} paid {gross} gets {fixed} of the fixed part",
            s.id
        );
        recomputes(online);
        let service_line = fee_line(credit, "test.service", "platform");
        assert_eq!(
            (
                &service_line["schedule"],
                &service_line["ruleVersion"],
                &service_line["baseKind"],
                &service_line["baseAmount"],
                &service_line["rate"],
                &service_line["fixedPart"],
                &service_line["amountInclVat"],
            ),
            (
                &json!("test_fixed"),
                &json!(1),
                &json!("incl_vat"),
                &json!(gross),
                &json!("0.06"),
                &json!("0.00"),
                &json!(service),
            ),
            "{service_line}"
        );
        recomputes(service_line);
        fixed_total += dec(&online["fixedPart"]);
    }
    assert_eq!(
        fixed_total,
        Decimal::new(25, 2),
        "R-FEE-1: the parts add up to the fixed part"
    );
    eprintln!("fixed_part_split: {:?}", started.elapsed());
}

/// R-FEE-5, R-FEE-3: with the built-in schedules and the default `cagette`, a platform
/// administrator assigns `ruche` to market A from today (and `locavor_presence` from in a week,
/// assigned first), and `ruche` to market B from tomorrow only. `Market.feeSchedules` lists A's
/// choices by date. The refusals: an unknown schedule (NOT_FOUND), a market administrator
/// (FORBIDDEN), a date before today (FEE_SCHEDULE_DATE_PAST), none writing anything; a retry
/// with the same idempotency key answers the first outcome, `position` included, and writes
/// nothing. One producer sells in both markets' sales of today: A's credit carries the ruche
/// commission only (20 % on the 100.00 excl. VAT: 8.35 to the host and 11.65 to the platform,
/// plus 20 % VAT: net 105.50 - 24.00 = 81.50), B's the cagette rules (3 % and 6 % of the 10.55
/// paid: 0.38 and 0.76 incl. VAT, net 9.41).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_fee_5_a_platform_administrator_assigns_a_market_its_fee_schedule_from_a_date() {
    let started = Instant::now();
    let api = Api::start(ENV).await;
    let pool = api.db.pool.clone();
    let platform = api.who(Role::PlatformAdmin);
    let admin = api.who(Role::MarketAdmin);

    let d = api
        .ok(
            &platform,
            "{ feeSchedules { name rules { id version } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = d["feeSchedules"]
        .as_array()
        .unwrap_or_else(|| panic!("feeSchedules: {d}"))
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for name in ["cagette", "ruche", "locavor_presence"] {
        assert!(names.contains(&name), "{name} is built in: {d}");
    }

    let jam = seller(&api, "Confiture", "10.55").await; // 10.00 excl. 5.5 % VAT
    let slot = slot_soon().await;
    let today = slot.day;
    let tomorrow = today.succ_opt().unwrap();
    let in_a_week = today + chrono::Duration::days(7);
    let market_a = market_only(&api, &admin, "Segonzac", &slot, &[&jam]).await;
    let market_b = market_only(&api, &admin, "Jarnac", &slot, &[&jam]).await;
    let market_c = market_only(&api, &admin, "Cognac", &slot, &[&jam]).await;

    // Assigned by the platform administrator before any sale opens its orders (R-CAT-3: a
    // choice never reaches a sale whose orders are open), the later date first.
    let later = mutate(
        &api,
        &platform,
        ASSIGN,
        json!({"m": market_a, "s": "locavor_presence", "f": in_a_week.to_string(), "k": "assign-a-later"}),
    )
    .await;
    assert_eq!(
        (
            &later["assignFeeSchedule"]["marketId"],
            &later["assignFeeSchedule"]["schedule"],
            &later["assignFeeSchedule"]["from"]
        ),
        (
            &json!(market_a),
            &json!("locavor_presence"),
            &json!(in_a_week.to_string())
        ),
        "{later}"
    );
    let vars = json!({"m": market_a, "s": "ruche", "f": today.to_string(), "k": "assign-a"});
    let first = mutate(&api, &platform, ASSIGN, vars.clone()).await;
    assert_eq!(
        (
            &first["assignFeeSchedule"]["marketId"],
            &first["assignFeeSchedule"]["schedule"],
            &first["assignFeeSchedule"]["from"]
        ),
        (&json!(market_a), &json!("ruche"), &json!(today.to_string())),
        "{first}"
    );
    assert!(
        first["assignFeeSchedule"]["position"].is_string(),
        "the assignment answers its position: {first}"
    );
    mutate(
        &api,
        &platform,
        ASSIGN,
        json!({"m": market_b, "s": "ruche", "f": tomorrow.to_string(), "k": "assign-b"}),
    )
    .await;
    // C: Locavor, the producer only prepares the orders (R-FEE-5's third tier).
    mutate(
        &api,
        &platform,
        ASSIGN,
        json!({"m": market_c, "s": "locavor_preparation", "f": today.to_string(), "k": "assign-c"}),
    )
    .await;

    // Today's sales of both markets.
    let sale_a = todays_sale(&api, &admin, &market_a, &slot).await;
    let sale_b = todays_sale(&api, &admin, &market_b, &slot).await;
    let sale_c = todays_sale(&api, &admin, &market_c, &slot).await;
    participate(&api, &jam, &[&sale_a, &sale_b, &sale_c]).await;
    periods_open(&api, &sale_a, 1, &slot).await;
    periods_open(&api, &sale_b, 1, &slot).await;
    periods_open(&api, &sale_c, 1, &slot).await;
    order(&api, &sale_a, vec![jam.line(10)], "105.50", &slot).await;
    order(&api, &sale_b, vec![jam.line(1)], "10.55", &slot).await;
    order(&api, &sale_c, vec![jam.line(5)], "52.75", &slot).await;
    eprintln!(
        "orders placed {:?} before the sales' start",
        (slot.starts_at - Utc::now()).to_std().unwrap_or_default()
    );

    // While the sales run: a retry with the same key answers the first outcome and writes
    // nothing.
    caught_up(&api).await;
    let before = market_events(&pool, &market_a).await;
    let again = mutate(&api, &platform, ASSIGN, vars).await;
    assert_eq!(
        again, first,
        "a retry with the same idempotencyKey answers the first outcome, position included"
    );
    assert_eq!(
        market_events(&pool, &market_a).await,
        before,
        "a retry with the same idempotencyKey writes nothing"
    );

    // The refusals.
    refused(
        &api,
        &platform,
        ASSIGN,
        json!({"m": market_a, "s": "no_such_schedule", "f": today.to_string(), "k": "assign-unknown"}),
        "NOT_FOUND",
    )
    .await;
    refused(
        &api,
        &admin,
        ASSIGN,
        json!({"m": market_a, "s": "cagette", "f": today.to_string(), "k": "assign-by-admin"}),
        "FORBIDDEN",
    )
    .await;
    refused(
        &api,
        &platform,
        ASSIGN,
        json!({"m": market_a, "s": "cagette", "f": today.pred_opt().unwrap().to_string(), "k": "assign-past"}),
        "FEE_SCHEDULE_DATE_PAST",
    )
    .await;
    assert_eq!(
        assignments(&pool, &market_a).await,
        [
            ("locavor_presence".to_string(), in_a_week.to_string()),
            ("ruche".to_string(), today.to_string())
        ]
    );
    assert_eq!(
        assignments(&pool, &market_b).await,
        [("ruche".to_string(), tomorrow.to_string())]
    );

    // What the markets show, by date.
    let market_q = "query($m: UUID!) { market(id: $m) { feeSchedules { schedule from } } }";
    let d = api.ok(&admin, market_q, json!({"m": market_a})).await;
    assert_eq!(
        d["market"]["feeSchedules"],
        json!([
            {"schedule": "ruche", "from": today.to_string()},
            {"schedule": "locavor_presence", "from": in_a_week.to_string()},
        ]),
        "{d}"
    );
    let d = api.ok(&admin, market_q, json!({"m": market_b})).await;
    assert_eq!(
        d["market"]["feeSchedules"],
        json!([{"schedule": "ruche", "from": tomorrow.to_string()}]),
        "{d}"
    );

    distribute_and_validate(&api, &admin, &sale_a, &slot).await;
    distribute_and_validate(&api, &admin, &sale_b, &slot).await;
    distribute_and_validate(&api, &admin, &sale_c, &slot).await;
    let payouts = credited(&api, &jam, 3).await;

    // A: ruche, from today.
    let a = credit_of(&payouts, &sale_a);
    assert_eq!(
        (&a["marketId"], &a["grossInclVat"], &a["net"]),
        (&json!(market_a), &json!("105.50"), &json!("81.50")),
        "{a}"
    );
    let rules: Vec<&Value> = a["fees"].as_array().unwrap().iter().collect();
    assert_eq!(rules.len(), 2, "the ruche commission's two shares: {a}");
    let ruche = Rule {
        id: "ruche.commission",
        label: "Commission Ruche",
        schedule: "ruche",
        base_kind: "excl_vat",
        base: "100.00",
    };
    for (beneficiary, figures) in [
        ("market_host", ("0.0835", "8.35", "1.67", "10.02")),
        ("platform", ("0.1165", "11.65", "2.33", "13.98")),
    ] {
        ruche.check(
            a,
            beneficiary,
            figures,
            "R-FEE-5: market A's sale of today uses ruche",
        );
    }

    // B: ruche only from tomorrow, so today's sale uses the default, cagette.
    let b = credit_of(&payouts, &sale_b);
    assert_eq!(
        (&b["marketId"], &b["grossInclVat"], &b["net"]),
        (&json!(market_b), &json!("10.55"), &json!("9.41")),
        "{b}"
    );
    assert_eq!(b["fees"].as_array().map(Vec::len), Some(2), "{b}");
    for (rule, label, rate, excl, vat, incl) in [
        (
            "cagette.online_payment",
            "Frais de paiement en ligne",
            "0.03",
            "0.32",
            "0.06",
            "0.38",
        ),
        (
            "cagette.service_fee",
            "Frais de service",
            "0.06",
            "0.63",
            "0.13",
            "0.76",
        ),
    ] {
        let cagette = Rule {
            id: rule,
            label,
            schedule: "cagette",
            base_kind: "incl_vat",
            base: "10.55",
        };
        cagette.check(
            b,
            "platform",
            (rate, excl, vat, incl),
            "R-FEE-5: market B's sale of today uses the default",
        );
    }
    // C: Locavor with the producer preparing only: 7.5 % to the platform and 11 % to the
    // manager of the 50.00 sold excl. VAT, 20 % VAT on each (the farm keeps 81.5 %).
    let c = credit_of(&payouts, &sale_c);
    assert_eq!(
        (&c["marketId"], &c["grossInclVat"], &c["net"]),
        (&json!(market_c), &json!("52.75"), &json!("41.65")),
        "52.75 - 4.50 - 6.60: {c}"
    );
    assert_eq!(c["fees"].as_array().map(Vec::len), Some(2), "{c}");
    let locavor = Rule {
        id: "locavor.preparation",
        label: "Frais Locavor (préparation seule)",
        schedule: "locavor_preparation",
        base_kind: "excl_vat",
        base: "50.00",
    };
    for (beneficiary, figures) in [
        ("market_host", ("0.11", "5.50", "1.10", "6.60")),
        ("platform", ("0.075", "3.75", "0.75", "4.50")),
    ] {
        locavor.check(
            c,
            beneficiary,
            figures,
            "R-FEE-5: market C's sale uses locavor_preparation",
        );
    }
    assert_eq!(
        (&payouts["creditedTotal"], &payouts["balanceHeld"]),
        (&json!("132.56"), &json!("132.56")),
        "81.50 + 9.41 + 41.65: {payouts}"
    );

    // The market's administrator reads the fees of their market's sales, and only theirs.
    let fees_q = "query($m: UUID, $d: Date!) { feeLedger(grouping: MARKET, from: $d, to: $d, marketId: $m) { nodes { key beneficiary amountExclVat vat } } }";
    let day = today.to_string();
    let d = api
        .ok(&admin, fees_q, json!({"m": market_c, "d": day}))
        .await;
    assert_eq!(
        d["feeLedger"]["nodes"],
        json!([
            {"key": market_c, "beneficiary": "market_host", "amountExclVat": "5.50", "vat": "1.10"},
            {"key": market_c, "beneficiary": "platform", "amountExclVat": "3.75", "vat": "0.75"},
        ]),
        "{d}"
    );
    let stranger = api.who(Role::MarketAdmin);
    for (who, m) in [(&stranger, json!(market_c)), (&admin, Value::Null)] {
        let refused = api.call(who, fees_q, json!({"m": m, "d": day})).await;
        assert_eq!(code(&refused).as_deref(), Some("FORBIDDEN"), "{refused}");
    }
    eprintln!("assigned_schedule: {:?}", started.elapsed());
}

/// R-FEE-3: the fee configuration is checked at start. `etal serve` with `ETAL_FEES` holding a
/// valid file and a malformed one, then a valid file and one whose rule breaks the rules (a
/// rate of 1.5), exits with a failure, and its stderr names the offending file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_fee_3_an_invalid_fee_file_stops_etal_serve_naming_the_file() {
    let started = Instant::now();
    let db = etal_tests::TestDb::new(2).await;
    let bad_rate = TEST_FIXED.replace(
        r#""rate": "0.06",
     "split": [{"beneficiary": "platform", "rate": "0.06"}]"#,
        r#""rate": "1.5",
     "split": [{"beneficiary": "platform", "rate": "1.5"}]"#,
    );
    assert_ne!(bad_rate, TEST_FIXED, "the service rule's rate is replaced");
    let ruche = include_str!("../../../config/fees/ruche.json");
    for (bad_name, bad_text) in [
        (
            "broken_syntax.json",
            r#"{"schedules": [{"name": "oops", "rules": ["#,
        ),
        ("rate_above_one.json", bad_rate.as_str()),
    ] {
        let dir = FeeDir::new(&[("ruche.json", ruche), (bad_name, bad_text)]);
        let (status, stderr) = serve_exits(&db.url, &dir.0).await;
        assert!(
            !status.success(),
            "etal serve must fail with {bad_name}: {status}; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(bad_name),
            "the message names {bad_name}; stderr:\n{stderr}"
        );
    }
    eprintln!("invalid_fee_file: {:?}", started.elapsed());
}

const ADJUST: &str = "mutation($o: UUID!, $l: Int!, $q: Int!, $k: String) { adjustQuantity(orderId: $o, line: $l, quantity: $q, idempotencyKey: $k) { order { total } } }";
const FEE_REFUND_FIELDS: &str = "refund ruleId ruleVersion schedule beneficiary rate vatRate chargedExclVat chargedVat chargedFixedPart paid refundedBefore refundedNow fixedBackBefore fixedBackNow rounding amountExclVat vat amountInclVat";

/// The producer's shortage on `line` of `order` down to `quantity`, then waits until the
/// order's recorded refunds reach `refunded` (the outbox delivered the refund).
async fn shortage(api: &Api, s: &Seller, order: &str, line: i64, quantity: i64, refunded: &str) {
    mutate(
        api,
        &s.who,
        ADJUST,
        json!({"o": order, "l": line, "q": quantity, "k": format!("short-{order}-{quantity}")}),
    )
    .await;
    until(
        &format!("order {order} has {refunded} refunded"),
        Duration::from_secs(15),
        || {
            let (pool, order) = (api.db.pool.clone(), order.to_string());
            async move {
                let got: String = sqlx::query_scalar(
                    "SELECT coalesce(sum((payload -> 'RefundRecorded' ->> 'amount')::numeric), 0)::text \
                     FROM events WHERE aggregate_type = 'order' AND aggregate_id = $1 \
                     AND event_type = 'RefundRecorded'",
                )
                .bind(&order)
                .fetch_one(&pool)
                .await
                .unwrap();
                (got == refunded).then_some(()).ok_or(json!({"refunded": got}))
            }
        },
    )
    .await;
}

/// The fee given back for one rule (the payment line or the service line) in a list of
/// `feeRefunds` or of the event's `fee_refunds`: (excl. VAT, VAT, incl. VAT, fixed part back).
fn given_back(list: &Value, rule: &str, camel: bool) -> (String, String, String, String) {
    let key = |k: &str, c: &str| if camel { c.to_string() } else { k.to_string() };
    let r = list
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .find(|r| r[key("rule_id", "ruleId")] == rule)
        .unwrap_or_else(|| panic!("no fee given back for {rule}: {list}"));
    let text = |k: &str, c: &str| r[key(k, c)].as_str().unwrap_or_default().to_string();
    (
        text("amount_excl_vat", "amountExclVat"),
        text("vat", "vat"),
        text("amount_incl_vat", "amountInclVat"),
        text("fixed_back_now", "fixedBackNow"),
    )
}

/// R-FEE-4 on the live path, over HTTP with the test schedule (3 % + 0.25 per payment, 6 %
/// service, 20 % VAT). One online order of 90.00 from two producers: cheese 4 x 7.50 = 30.00
/// and chicken 3 x 20.00 = 60.00; the fixed part splits 0.08 / 0.17. Cheese is charged on the
/// 30.00 paid: payment 0.90 + 0.08 = 0.98 excl. (VAT 0.20), service 1.80 (VAT 0.36).
/// Three shortages of cheese, each refunded to the customer through the outbox:
/// - 4 -> 3 after the distribution, before the validation (7.50): given back at crediting,
///   cumulatively 7.50 / 30.00 of the variable parts: 0.23 (VAT 0.05) and 0.45 (0.09), so the
///   credit is 30.00 - 7.50 - 3.34 + 0.82 = 19.98 (recomputing the fee on the 22.50 kept would
///   have charged 0.68 + 0.08, not 0.98 - 0.23 = 0.75);
/// - 3 -> 1 after the crediting (15.00): 22.50 / 30.00 cumulatively, 0.68 - 0.23 = 0.45 (VAT
///   0.14 - 0.05) and 1.35 - 0.45 = 0.90 (VAT 0.27 - 0.09): 1.62 given back, 13.38 debited;
/// - 1 -> 0 (7.50): cheese's share is wholly refunded, the rest of the lines come back with
///   the fixed part, once: 0.30 (0.22 + 0.08, VAT 0.06) and 0.45 (VAT 0.09): 0.90 back, 6.60
///   debited.
/// Chicken keeps its 60.00 and pays its own fees only (1.97 + 0.39, 3.60 + 0.72: net 53.32).
/// Every fee given back recomputes from its fields; `feeLedger` equals the journal's fee
/// accounts; `etal audit check` and `etal projections verify --all` exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_fee_4_each_refund_gives_back_its_share_of_the_fee_and_the_fixed_part_once() {
    let started = Instant::now();
    let fees = FeeDir::new(&[("test_fixed.json", TEST_FIXED)]);
    let mut env = ENV.to_vec();
    env.push(("ETAL_FEES", fees.path()));
    env.push(("ETAL_FEE_SCHEDULE", "test_fixed"));
    let api = Api::start(&env).await;
    let pool = api.db.pool.clone();
    let auditor = api.who(Role::Auditor);

    let cheese = seller(&api, "Fromage", "7.50").await;
    let chicken = seller(&api, "Poulet", "20.00").await;
    let admin = api.who(Role::MarketAdmin);
    let slot = slot_soon().await;
    let (_market, sale) =
        market_with_sale(&api, &admin, "Jarnac", &slot, &[&cheese, &chicken]).await;
    for s in [&cheese, &chicken] {
        participate(&api, s, &[&sale]).await;
    }
    periods_open(&api, &sale, 2, &slot).await;
    let order_id = order(
        &api,
        &sale,
        vec![cheese.line(4), chicken.line(3)],
        "90.00",
        &slot,
    )
    .await;
    let d = api
        .ok(
            &cheese.who,
            "query($o: UUID!) { order(id: $o) { lines { line productId } } }",
            json!({"o": order_id}),
        )
        .await;
    let line = d["order"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["productId"] == cheese.product.as_str())
        .and_then(|l| l["line"].as_i64())
        .unwrap_or_else(|| panic!("cheese's line: {d}"));

    // Before the crediting.
    distributed(&api, &sale, &slot).await;
    shortage(&api, &cheese, &order_id, line, 3, "7.50").await;
    validate(&api, &admin, &sale).await;
    let fee_refunds_q = format!(
        "query($p: UUID!) {{ payouts(producerId: $p) {{ credits {{ saleId grossInclVat refunds net \
         fees {{ {FEE_FIELDS} }} feeRefunds {{ {FEE_REFUND_FIELDS} }} }} }} }}"
    );
    credited(&api, &cheese, 1).await;
    let d = api
        .ok(&cheese.who, &fee_refunds_q, json!({"p": cheese.id}))
        .await;
    let credit = d["payouts"]["credits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["saleId"] == sale.as_str())
        .unwrap_or_else(|| panic!("cheese's credit: {d}"))
        .clone();
    assert_eq!(
        (&credit["grossInclVat"], &credit["refunds"], &credit["net"]),
        (&json!("30.00"), &json!("7.50"), &json!("19.98")),
        "R-FEE-4: charged on the 30.00 paid, 0.82 given back for the 7.50 refunded: {credit}"
    );
    let online = fee_line(&credit, "test.online_payment", "platform");
    assert_eq!(
        (
            &online["baseAmount"],
            &online["fixedPart"],
            &online["amountExclVat"],
            &online["vat"]
        ),
        (
            &json!("30.00"),
            &json!("0.08"),
            &json!("0.98"),
            &json!("0.20")
        ),
        "{online}"
    );
    recomputes(online);
    let refunds = &credit["feeRefunds"];
    assert_eq!(
        given_back(refunds, "test.online_payment", true),
        ("0.23".into(), "0.05".into(), "0.28".into(), "0.00".into()),
        "{refunds}"
    );
    assert_eq!(
        given_back(refunds, "test.service", true),
        ("0.45".into(), "0.09".into(), "0.54".into(), "0.00".into()),
        "{refunds}"
    );
    for r in refunds.as_array().unwrap() {
        assert_eq!(
            (
                &r["refund"],
                &r["paid"],
                &r["refundedBefore"],
                &r["refundedNow"],
                &r["schedule"]
            ),
            (
                &json!("before-credit"),
                &json!("30.00"),
                &json!("0.00"),
                &json!("7.50"),
                &json!("test_fixed")
            ),
            "{r}"
        );
        // The rule of the field's documentation, recomputed here.
        let variable = dec(&r["chargedExclVat"]) - dec(&r["chargedFixedPart"]);
        let cum = graphql_common::cent(variable * dec(&r["refundedNow"]) / dec(&r["paid"]));
        assert_eq!(cum, dec(&r["amountExclVat"]), "{r}");
    }

    // After the crediting: two more shortages, each debited once with its fees given back.
    shortage(&api, &cheese, &order_id, line, 1, "22.50").await;
    until(
        "the first late refund is debited",
        Duration::from_secs(20),
        || {
            let (pool, p) = (pool.clone(), cheese.id.clone());
            async move {
                let n = balance_events(&pool, &p, "RefundDebited").await;
                (n == 1).then_some(()).ok_or(json!({"RefundDebited": n}))
            }
        },
    )
    .await;
    shortage(&api, &cheese, &order_id, line, 0, "30.00").await;
    until(
        "the second late refund is debited",
        Duration::from_secs(20),
        || {
            let (pool, p) = (pool.clone(), cheese.id.clone());
            async move {
                let n = balance_events(&pool, &p, "RefundDebited").await;
                (n == 2).then_some(()).ok_or(json!({"RefundDebited": n}))
            }
        },
    )
    .await;
    let debited: Vec<Value> = sqlx::query_scalar(
        "SELECT payload -> 'RefundDebited' FROM events WHERE aggregate_type = 'producer_balance' \
         AND aggregate_id = $1 AND event_type = 'RefundDebited' ORDER BY sequence",
    )
    .bind(&cheese.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    // (refund, debit, payment line given back, service line given back), each as (excl. VAT,
    // VAT, incl. VAT, fixed part back).
    let expected = [
        (
            "15.00",
            "13.38",
            ("0.45", "0.09", "0.54", "0.00"),
            ("0.90", "0.18", "1.08", "0.00"),
        ),
        (
            "7.50",
            "6.60",
            // R-FEE-4: the fixed part comes back with the share wholly refunded.
            ("0.30", "0.06", "0.36", "0.08"),
            ("0.45", "0.09", "0.54", "0.00"),
        ),
    ];
    assert_eq!(debited.len(), expected.len(), "{debited:?}");
    for (event, (amount, debit, online, service)) in debited.iter().zip(expected) {
        let text = |t: (&str, &str, &str, &str)| {
            (
                t.0.to_string(),
                t.1.to_string(),
                t.2.to_string(),
                t.3.to_string(),
            )
        };
        assert_eq!(
            (&event["amount"], &event["debit"]),
            (&json!(amount), &json!(debit)),
            "{event}"
        );
        assert_eq!(
            given_back(&event["fee_refunds"], "test.online_payment", false),
            text(online),
            "{event}"
        );
        assert_eq!(
            given_back(&event["fee_refunds"], "test.service", false),
            text(service),
            "{event}"
        );
    }
    let (second, third) = (&debited[0], &debited[1]);
    for r in second["fee_refunds"]
        .as_array()
        .unwrap()
        .iter()
        .chain(third["fee_refunds"].as_array().unwrap())
    {
        assert!(
            r["refund"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("order:{order_id}:")),
            "each fee given back names its refund: {r}"
        );
    }

    // Chicken pays its own fees on what it kept, untouched by cheese's refunds.
    let d = api
        .ok(&chicken.who, &fee_refunds_q, json!({"p": chicken.id}))
        .await;
    let c = &d["payouts"]["credits"][0];
    assert_eq!(
        (
            &c["grossInclVat"],
            &c["refunds"],
            &c["net"],
            &c["feeRefunds"]
        ),
        (&json!("60.00"), &json!("0.00"), &json!("53.32"), &json!([])),
        "{d}"
    );

    // The fee ledger: every fee of cheese given back, chicken's 6.68 charged; equal to the
    // journal's fee accounts.
    caught_up(&api).await;
    let day = slot.day.to_string();
    let d = api
        .ok(
            &auditor,
            "query($f: Date!, $t: Date!) { feeLedger(grouping: PRODUCER, from: $f, to: $t) { nodes { key beneficiary amountExclVat vat amountInclVat } } }",
            json!({"f": day, "t": day}),
        )
        .await;
    let nodes = d["feeLedger"]["nodes"].as_array().unwrap().clone();
    let of = |p: &str| -> Vec<Value> {
        nodes
            .iter()
            .filter(|n| n["key"] == p)
            .map(|n| json!([n["amountExclVat"], n["vat"], n["amountInclVat"]]))
            .collect()
    };
    assert_eq!(of(&cheese.id), vec![json!(["0.00", "0.00", "0.00"])], "{d}");
    assert_eq!(
        of(&chicken.id),
        vec![json!(["5.57", "1.11", "6.68"])],
        "{d}"
    );
    let (ledger_excl, ledger_vat) = nodes.iter().fold((Decimal::ZERO, Decimal::ZERO), |a, n| {
        (a.0 + dec(&n["amountExclVat"]), a.1 + dec(&n["vat"]))
    });
    let journal: Vec<(String, Decimal)> = sqlx::query_as(
        "SELECT account, sum(credit) - sum(debit) FROM ledger_postings \
         WHERE account IN ('PlatformFeeRevenue', 'HostFeeRevenue', 'VatCollectedOnFees') \
         GROUP BY account ORDER BY account",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let of_account = |a: &str| {
        journal
            .iter()
            .filter(|(name, _)| name == a)
            .map(|(_, m)| *m)
            .sum::<Decimal>()
    };
    assert_eq!(
        (
            of_account("PlatformFeeRevenue") + of_account("HostFeeRevenue"),
            of_account("VatCollectedOnFees")
        ),
        (ledger_excl, ledger_vat),
        "feeLedger = the journal's fee accounts: {journal:?}"
    );

    let url = api.db.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let audit = etal_tests::run_etal(&url, &["audit", "check"]);
        let verify = etal_tests::run_etal(&url, &["projections", "verify", "--all"]);
        (
            (audit.0, verify.0),
            format!("{}\n{}", audit.1, verify.1),
            format!("{}\n{}", audit.2, verify.2),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        code,
        (0, 0),
        "audit check, projections verify: {out}\n{err}"
    );
    eprintln!("fee_refunds: {:?}", started.elapsed());
}
