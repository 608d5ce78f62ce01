//! After the distribution, over HTTP against the real `etal serve` binary and real PostgreSQL,
//! with the system clock: a sale that ends seconds after the test starts, whose units the
//! scheduled `end_distribution` marks delivered (R-STK-4, `ETAL_DELIVERY_DELAY_MINUTES=0`).
//! After that, a shortage (`adjustQuantity`), a weighing (`recordWeight`) and a cancellation by
//! the producer (`cancelOrder`) still answer OK on an online market and refund exactly what is
//! owed, once (R-ORD-4, R-ORD-5), through the outbox right after the commit (design property
//! 5b); a retry with the same idempotency key answers the same and writes nothing. After
//! `validateSale` (R-SAL-6) a shortage still refunds, and the refund is debited once from the
//! producer's balance by a scheduled command (R-FEE-4). A payment provider that refuses the
//! first two refund calls (`ETAL_SIM_FAIL=refund:2`) leaves the refund owed, and the outbox
//! worker retries it with backoff (2 s, then 4 s) until it is recorded exactly once.

use crate::graphql_common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use etal_domain::Role;
use graphql_common::{
    balance_events, caught_up, instant, mutate, until, Api, Who, OPEN_ACCOUNT, PLACE_ORDER,
};
use serde_json::{json, Value};
use sqlx::PgPool;

const ENV: &[(&str, &str)] = graphql_common::SOON_ENV;

/// How long after the market's creation its sale starts: time to open the period and place the
/// orders (the period closes when the sale starts).
const LEAD: chrono::Duration = chrono::Duration::seconds(8);
/// How long the sale lasts.
const LENGTH: chrono::Duration = chrono::Duration::seconds(2);

const HONEY: &str = "Miel 500 g";
const CHICKEN: &str = "Poulet fermier";

const STOCK_Q: &str = "query($p: UUID!, $x: UUID!) { stockLevel(producerId: $p, productId: $x) { real ordered available } }";
const SALE_Q: &str = "query($s: UUID!) { sale(id: $s) { status startsAt endsAt paymentMode participations { period opensAt closesAt } } }";
const ORDER_Q: &str = "query($o: UUID!) { order(id: $o) { total paid refunded cancelled lines { line quantity weightKg amountInclVat } } }";
/// What the three after-distribution mutations return (nothing in it moves with the refund, so
/// a retry can be compared whole).
const ORDER_PAYLOAD: &str =
    "orderId position order { total cancelled lines { line quantity weightKg amountInclVat } }";

fn adjust_q() -> String {
    format!("mutation($o: UUID!, $l: Int!, $q: Int!, $k: String) {{ adjustQuantity(orderId: $o, line: $l, quantity: $q, idempotencyKey: $k) {{ {ORDER_PAYLOAD} }} }}")
}
fn weigh_q() -> String {
    format!("mutation($o: UUID!, $l: Int!, $w: Decimal!, $k: String) {{ recordWeight(orderId: $o, line: $l, weightKg: $w, idempotencyKey: $k) {{ {ORDER_PAYLOAD} }} }}")
}
fn cancel_q() -> String {
    format!("mutation($o: UUID!, $k: String) {{ cancelOrder(orderId: $o, idempotencyKey: $k) {{ {ORDER_PAYLOAD} }} }}")
}

// ---------------------------------------------------------------------------------------------
// A sale that ends within seconds
// ---------------------------------------------------------------------------------------------

/// A slot starting `LEAD` from now (whole seconds) and lasting `LENGTH`, on today's Europe/Paris
/// date: (date, weekday, "HH:MM:SS" start and end, their UTC instants). Near midnight (the sale
/// would straddle two dates) or in the repeated hour of the autumn DST change (a wall-clock time
/// naming two instants), waits until that has passed.
async fn slot_soon() -> (
    NaiveDate,
    &'static str,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
) {
    let started = Instant::now();
    loop {
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let starts = now + LEAD;
        let ends = starts + LENGTH;
        let (ls, le) = (starts.with_timezone(&Paris), ends.with_timezone(&Paris));
        let unambiguous = |t: &DateTime<chrono_tz::Tz>| {
            Paris
                .from_local_datetime(&t.naive_local())
                .single()
                .is_some()
        };
        if ls.date_naive() == le.date_naive() && unambiguous(&ls) && unambiguous(&le) {
            let weekday = match ls.weekday() {
                chrono::Weekday::Mon => "MON",
                chrono::Weekday::Tue => "TUE",
                chrono::Weekday::Wed => "WED",
                chrono::Weekday::Thu => "THU",
                chrono::Weekday::Fri => "FRI",
                chrono::Weekday::Sat => "SAT",
                chrono::Weekday::Sun => "SUN",
            };
            return (
                ls.date_naive(),
                weekday,
                ls.format("%H:%M:%S").to_string(),
                le.format("%H:%M:%S").to_string(),
                starts,
                ends,
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(3700),
            "no slot of today's Paris date could be found"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A producer (Pro plan) with honey (8.50 the pot, stock 10) and a variable-weight chicken
/// (12.00/kg, 1.5 kg estimated, stock 10) in one catalog, linked to an online market of its
/// administrator with one sale today starting `LEAD` from now; the producer takes part with
/// orders opening an hour before the start and closing at it (R-SAL-2, R-SAL-3), and the
/// period is open.
struct Setup {
    producer: Who,
    admin: Who,
    producer_id: String,
    honey: String,
    chicken: String,
    catalog: String,
    sale: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

async fn setup(api: &Api) -> Setup {
    let producer = api.who(Role::Producer);
    let admin = api.who(Role::MarketAdmin);
    let d = api
        .ok(&producer, OPEN_ACCOUNT, json!({"k": "open-1"}))
        .await;
    let producer_id = d["openAccount"]["producerId"].as_str().unwrap().to_string();
    let add = "mutation($p: UUID!, $input: ProductInput!) { addProduct(producerId: $p, product: $input) { productId product { variableWeight estimatedWeightKg } } }";
    let d = api
        .ok(
            &producer,
            add,
            json!({"p": producer_id, "input": {"name": HONEY, "unit": "pot", "priceInclVat": "8.50", "vatRate": "5.5"}}),
        )
        .await;
    let honey = d["addProduct"]["productId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &producer,
            add,
            json!({"p": producer_id, "input": {"name": CHICKEN, "unit": "kg", "priceInclVat": "12.00", "vatRate": "5.5", "variableWeight": true, "estimatedWeightKg": "1.5"}}),
        )
        .await;
    assert_eq!(d["addProduct"]["product"]["variableWeight"], true, "{d}");
    let chicken = d["addProduct"]["productId"].as_str().unwrap().to_string();
    for product in [&honey, &chicken] {
        let d = api
            .ok(
                &producer,
                "mutation($p: UUID!, $x: UUID!) { setStock(producerId: $p, productId: $x, real: 10) { stock { real ordered available } } }",
                json!({"p": producer_id, "x": product}),
            )
            .await;
        assert_eq!(
            d["setStock"]["stock"],
            json!({"real": 10, "ordered": 0, "available": 10})
        );
    }
    let d = api
        .ok(
            &producer,
            "mutation($p: UUID!) { createCatalog(producerId: $p, name: \"Le panier\") { catalogId } }",
            json!({"p": producer_id}),
        )
        .await;
    let catalog = d["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    for (product, price) in [(&honey, "8.50"), (&chicken, "12.00")] {
        api.ok(
            &producer,
            "mutation($c: UUID!, $x: UUID!, $price: Money!) { addOffer(catalogId: $c, productId: $x, priceInclVat: $price) { position } }",
            json!({"c": catalog, "x": product, "price": price}),
        )
        .await;
    }

    // R-SAL-1: the slot is today, a few seconds ahead (the API takes "HH:MM:SS").
    let (day, weekday, start, end, starts_at, ends_at) = slot_soon().await;
    let d = api
        .ok(
            &admin,
            "mutation($m: MarketInput!) { createMarket(market: $m) { marketId market { slots { start end } } } }",
            json!({"m": {"name": "Segonzac", "place": "Salle des fêtes", "paymentMode": "ONLINE",
                "slots": [{"weekday": weekday, "start": start, "end": end, "anchor": day.to_string()}]}}),
        )
        .await;
    let market = d["createMarket"]["marketId"].as_str().unwrap().to_string();
    api.ok(
        &admin,
        "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { position } }",
        json!({"m": market, "c": catalog}),
    )
    .await;
    let d = api
        .ok(
            &admin,
            "mutation($m: UUID!, $d: Date!) { generateSales(marketId: $m, from: $d, to: $d) { saleIds } }",
            json!({"m": market, "d": day.to_string()}),
        )
        .await;
    let ids = d["generateSales"]["saleIds"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "one sale today: {d}");
    let sale = ids[0].as_str().unwrap().to_string();
    api.ok(
        &producer,
        "mutation($c: UUID!, $s: UUID!) { participate(catalogId: $c, saleIds: [$s], opensHoursBefore: 1, closesHoursBefore: 0) { position } }",
        json!({"c": catalog, "s": sale}),
    )
    .await;
    // The scheduler opens the period (due an hour ago). Any signed-in user reads a sale.
    let reader = api.who(Role::Customer);
    let s = until("the order period opens", Duration::from_secs(10), || {
        let (reader, sale) = (reader.clone(), sale.clone());
        async move {
            let d = api.ok(&reader, SALE_Q, json!({"s": sale})).await;
            (d["sale"]["participations"][0]["period"] == "OPEN")
                .then_some(d.clone())
                .ok_or(d)
        }
    })
    .await;
    let s = &s["sale"];
    assert_eq!(s["paymentMode"], "ONLINE");
    assert_eq!(instant(&s["startsAt"]), starts_at, "the sale's start: {s}");
    assert_eq!(instant(&s["endsAt"]), ends_at, "the sale's end: {s}");
    assert_eq!(
        instant(&s["participations"][0]["closesAt"]),
        starts_at,
        "orders close when the sale starts: {s}"
    );
    Setup {
        producer,
        admin,
        producer_id,
        honey,
        chicken,
        catalog,
        sale,
        starts_at,
        ends_at,
    }
}

impl Setup {
    fn line(&self, product: &str, quantity: i64) -> Value {
        json!({"catalogId": self.catalog, "productId": product, "quantity": quantity})
    }

    /// A fresh customer places an order (R-ORD-1), paid online at once (the charge is delivered
    /// right after the commit); returns the customer, the order id and its lines by name.
    async fn order(&self, api: &Api, lines: Vec<Value>, total: &str) -> Placed {
        let customer = api.who(Role::Customer);
        let d = api
            .ok(
                &customer,
                PLACE_ORDER,
                json!({"s": self.sale, "lines": lines, "k": "o-1"}),
            )
            .await;
        let placed = &d["placeOrder"];
        assert_eq!(placed["order"]["total"], total, "{d}");
        let id = placed["orderId"].as_str().unwrap().to_string();
        let line_of = |name: &str| {
            placed["order"]["lines"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["name"] == name)
                .map(|l| l["line"].as_i64().unwrap())
        };
        let placed = Placed {
            honey_line: line_of(HONEY),
            chicken_line: line_of(CHICKEN),
            customer,
            id,
        };
        // Paid in full online.
        placed
            .settles(
                api,
                json!({"total": total, "paid": total, "refunded": "0.00", "cancelled": false}),
            )
            .await;
        placed
    }

    async fn stock(&self, api: &Api, product: &str) -> Value {
        api.ok(
            &self.producer,
            STOCK_Q,
            json!({"p": self.producer_id, "x": product}),
        )
        .await["stockLevel"]
            .clone()
    }

    /// R-STK-4: waits until `end_distribution` ran: the sale is DISTRIBUTED and the ordered
    /// units left both the ordered and the real stock.
    async fn delivered(&self, api: &Api, honey: Value, chicken: Value) {
        let wait =
            (self.ends_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(20);
        let reader = api.who(Role::Customer);
        until("the sale is distributed", wait, || {
            let (reader, sale) = (reader.clone(), self.sale.clone());
            async move {
                let d = api.ok(&reader, SALE_Q, json!({"s": sale})).await;
                (d["sale"]["status"] == "DISTRIBUTED")
                    .then_some(())
                    .ok_or(d)
            }
        })
        .await;
        caught_up(api).await;
        assert_eq!(
            self.stock(api, &self.honey).await,
            honey,
            "R-STK-4: the honey delivered"
        );
        assert_eq!(
            self.stock(api, &self.chicken).await,
            chicken,
            "R-STK-4: the chickens delivered"
        );
        let ran: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM scheduled_commands WHERE kind = 'end_distribution' AND status = 'done'",
        )
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
        assert_eq!(ran, 1, "end_distribution ran once");
    }
}

struct Placed {
    customer: Who,
    id: String,
    honey_line: Option<i64>,
    chicken_line: Option<i64>,
}

impl Placed {
    /// Waits until the customer's view of the order has these fields.
    async fn settles(&self, api: &Api, expected: Value) {
        let fields: Vec<String> = expected.as_object().unwrap().keys().cloned().collect();
        until(
            &format!("order {} settles at {expected}", self.id),
            Duration::from_secs(15),
            || {
                let (customer, id, fields, expected) = (
                    self.customer.clone(),
                    self.id.clone(),
                    fields.clone(),
                    expected.clone(),
                );
                async move {
                    let d = api.ok(&customer, ORDER_Q, json!({"o": id})).await;
                    let got: serde_json::Map<String, Value> = fields
                        .iter()
                        .map(|f| (f.clone(), d["order"][f].clone()))
                        .collect();
                    (Value::Object(got) == expected).then_some(()).ok_or(d)
                }
            },
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Reading what was written
// ---------------------------------------------------------------------------------------------

/// How many events of this type are stored (the public `eventCounts`).
async fn event_count(api: &Api, aggregate_type: &str, event_type: &str) -> u64 {
    let (_, body) = api
        .raw(
            None,
            "{ eventCounts { aggregateType eventType events } }",
            json!({}),
        )
        .await;
    body["data"]["eventCounts"]
        .as_array()
        .unwrap_or_else(|| panic!("eventCounts: {body}"))
        .iter()
        .find(|c| c["aggregateType"] == aggregate_type && c["eventType"] == event_type)
        .map(|c| c["events"].as_str().unwrap().parse::<u64>().unwrap())
        .unwrap_or(0)
}

/// The `amount` of each event of this type in the order's stream, in order.
async fn order_amounts(pool: &PgPool, order: &str, event_type: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT payload -> event_type ->> 'amount' FROM events \
         WHERE aggregate_type = 'order' AND aggregate_id = $1 AND event_type = $2 ORDER BY sequence",
    )
    .bind(order)
    .bind(event_type)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Everything a retry must leave alone: events, outbox rows, delivery attempts, scheduled
/// commands.
async fn written(pool: &PgPool) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM outbox), \
                (SELECT count(*) FROM outbox_attempts), (SELECT count(*) FROM scheduled_commands)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The refund rows of an order's outbox: (id, status, attempts).
async fn refund_rows(pool: &PgPool, order: &str) -> Vec<(uuid::Uuid, String, i32)> {
    sqlx::query_as(
        "SELECT id, status, attempts FROM outbox WHERE kind = 'refund' AND payload ->> 'order' = $1 \
         ORDER BY created_at",
    )
    .bind(order)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// (attempt, ok, at) of each delivery attempt of an outbox row.
async fn attempts(pool: &PgPool, id: uuid::Uuid) -> Vec<(i32, bool, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT attempt, ok, at FROM outbox_attempts WHERE outbox_id = $1 ORDER BY attempt",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The producer's `RefundDebited` events: (order, refunds_total, amount, debit).
async fn refund_debits(pool: &PgPool, producer: &str) -> Vec<(String, String, String, String)> {
    sqlx::query_as(
        "SELECT payload -> 'RefundDebited' ->> 'order', payload -> 'RefundDebited' ->> 'refunds_total', \
                payload -> 'RefundDebited' ->> 'amount', payload -> 'RefundDebited' ->> 'debit' \
         FROM events WHERE aggregate_type = 'producer_balance' AND aggregate_id = $1 \
         AND event_type = 'RefundDebited' ORDER BY sequence",
    )
    .bind(producer)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Design property 5: the same request with the same key, again: the same answer, and nothing
/// written (no event, no outbox row or attempt, no scheduled command), even after the outbox
/// worker and the scheduler had their turns. The answer must be the first one whole; a
/// different `position` alone is returned (and asserted at the end of the test, so that the
/// rest still runs).
async fn retry_writes_nothing(
    api: &Api,
    who: &Who,
    query: &str,
    vars: Value,
    first: &Value,
) -> Option<String> {
    caught_up(api).await;
    let before = written(&api.db.pool).await;
    let again = mutate(api, who, query, vars.clone()).await;
    let without_position = |v: &Value| {
        let mut v = v.clone();
        for payload in v.as_object_mut().unwrap().values_mut() {
            payload.as_object_mut().unwrap().remove("position");
        }
        v
    };
    assert_eq!(
        without_position(&again),
        without_position(first),
        "a retry with the same idempotencyKey answers the first outcome ({vars})"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    caught_up(api).await;
    assert_eq!(
        written(&api.db.pool).await,
        before,
        "a retry with the same idempotencyKey writes nothing ({vars}); (events, outbox, attempts, scheduled)"
    );
    (&again != first).then(|| {
        format!("request {query}\nvariables {vars}\nfirst answer {first}\nretry answered {again}")
    })
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// R-STK-4, R-ORD-4, R-ORD-5, R-SAL-6, R-FEE-4, design properties 5 and 5b, on one online
/// market whose sale ends seconds after the orders:
/// - four customers order (A: 3 honey; B: 1 honey and 2 chickens, 3 kg estimated; C: 2 honey;
///   D: 2 honey) and `end_distribution` delivers the units: honey real 10 -> 2, chicken
///   10 -> 8, nothing ordered any more;
/// - A's line lowered 3 -> 2: 8.50 refunded once, paid stays 25.50;
/// - B's chickens weighed 2.65 kg instead of 3 kg: 36.00 -> 31.80, 4.20 refunded once;
/// - C cancelled by the producer: the 17.00 paid refunded in full, once;
/// - each retried with its idempotency key: the same answer, nothing written;
/// - the market's administrator validates the sale; the producer is credited 104.00 paid -
///   29.70 refunded - fees 8.03 (3 % and 6 % excl. VAT, 20 % VAT, on the 74.30 kept) = 66.27;
/// - D's line lowered 2 -> 1: 8.50 refunded once, and a scheduled command debits the producer
///   once: fees on the 65.80 kept are 7.10, so 0.93 goes back and 7.57 is debited (66.27 ->
///   58.70); its retry writes nothing;
/// - the units stay delivered: the stock does not move after the delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_distribution_shortages_weighings_and_cancellations_refund_once() {
    let started = Instant::now();
    let api = Api::start(ENV).await;
    let pool = api.db.pool.clone();
    let s = setup(&api).await;
    let a = s.order(&api, vec![s.line(&s.honey, 3)], "25.50").await;
    let b = s
        .order(
            &api,
            vec![s.line(&s.honey, 1), s.line(&s.chicken, 2)],
            "44.50",
        )
        .await;
    let c = s.order(&api, vec![s.line(&s.honey, 2)], "17.00").await;
    let d = s.order(&api, vec![s.line(&s.honey, 2)], "17.00").await;
    eprintln!(
        "orders placed {:?} before the sale's start",
        (s.starts_at - Utc::now()).to_std().unwrap_or_default()
    );
    assert!(Utc::now() < s.starts_at, "the orders came in time");
    assert_eq!(
        s.stock(&api, &s.honey).await,
        json!({"real": 10, "ordered": 8, "available": 2})
    );
    assert_eq!(
        s.stock(&api, &s.chicken).await,
        json!({"real": 10, "ordered": 2, "available": 8})
    );
    // A mutation before the distribution would be a different test: wait for the delivery.
    s.delivered(
        &api,
        json!({"real": 2, "ordered": 0, "available": 2}),
        json!({"real": 8, "ordered": 0, "available": 8}),
    )
    .await;
    let recorded_before = event_count(&api, "order", "RefundRecorded").await;
    assert_eq!(recorded_before, 0, "no refund so far");

    // --- A: a shortage after the delivery (R-ORD-4). ---
    let vars_a = json!({"o": a.id, "l": a.honey_line.unwrap(), "q": 2, "k": "short-a"});
    let first_a = mutate(&api, &s.producer, &adjust_q(), vars_a.clone()).await;
    assert_eq!(
        first_a["adjustQuantity"]["order"],
        json!({"total": "17.00", "cancelled": false, "lines": [{"line": a.honey_line.unwrap(), "quantity": 2, "weightKg": null, "amountInclVat": "17.00"}]}),
        "{first_a}"
    );
    a.settles(
        &api,
        json!({"total": "17.00", "paid": "25.50", "refunded": "8.50", "cancelled": false}),
    )
    .await;
    assert_eq!(
        order_amounts(&pool, &a.id, "RefundRequested").await,
        ["8.50"]
    );
    assert_eq!(
        order_amounts(&pool, &a.id, "RefundRecorded").await,
        ["8.50"]
    );
    caught_up(&api).await;
    assert_eq!(event_count(&api, "order", "RefundRecorded").await, 1);

    // --- B: a weighing below the estimate (R-ORD-4). ---
    let chicken_line = b.chicken_line.unwrap();
    let vars_b = json!({"o": b.id, "l": chicken_line, "w": "2.65", "k": "weigh-b"});
    let first_b = mutate(&api, &s.producer, &weigh_q(), vars_b.clone()).await;
    let lines = first_b["recordWeight"]["order"]["lines"]
        .as_array()
        .unwrap();
    let weighed = lines
        .iter()
        .find(|l| l["line"] == chicken_line)
        .unwrap_or_else(|| panic!("{first_b}"));
    assert_eq!(
        weighed,
        &json!({"line": chicken_line, "quantity": 2, "weightKg": "2.65", "amountInclVat": "31.80"}),
        "{first_b}"
    );
    assert_eq!(
        first_b["recordWeight"]["order"]["total"], "40.30",
        "{first_b}"
    );
    b.settles(
        &api,
        json!({"total": "40.30", "paid": "44.50", "refunded": "4.20", "cancelled": false}),
    )
    .await;
    assert_eq!(
        order_amounts(&pool, &b.id, "RefundRequested").await,
        ["4.20"]
    );
    assert_eq!(
        order_amounts(&pool, &b.id, "RefundRecorded").await,
        ["4.20"]
    );

    // --- C: cancelled by the producer after the period (R-ORD-5). ---
    let vars_c = json!({"o": c.id, "k": "cancel-c"});
    let first_c = mutate(&api, &s.producer, &cancel_q(), vars_c.clone()).await;
    assert_eq!(
        first_c["cancelOrder"]["order"]["cancelled"], true,
        "{first_c}"
    );
    c.settles(
        &api,
        json!({"paid": "17.00", "refunded": "17.00", "cancelled": true}),
    )
    .await;
    assert_eq!(
        order_amounts(&pool, &c.id, "RefundRequested").await,
        ["17.00"]
    );
    assert_eq!(
        order_amounts(&pool, &c.id, "RefundRecorded").await,
        ["17.00"]
    );
    // A cancelled order owes nothing, and its receipt says so (R-ORD-1, R-ORD-5).
    let receipt = api
        .ok(
            &c.customer,
            "query($o: UUID!) { order(id: $o) { total receipt { totalInclVat totalExclVat vat { rate } } } }",
            json!({"o": c.id}),
        )
        .await;
    assert_eq!(
        receipt["order"],
        json!({"total": "0.00", "receipt": {"totalInclVat": "0.00", "totalExclVat": "0.00", "vat": []}}),
        "{receipt}"
    );

    // --- Each again with its key: the same answer, nothing new (design property 5). ---
    let mut answered_otherwise = Vec::new();
    answered_otherwise
        .extend(retry_writes_nothing(&api, &s.producer, &adjust_q(), vars_a, &first_a).await);
    answered_otherwise
        .extend(retry_writes_nothing(&api, &s.producer, &weigh_q(), vars_b, &first_b).await);
    answered_otherwise
        .extend(retry_writes_nothing(&api, &s.producer, &cancel_q(), vars_c, &first_c).await);
    for (o, amount) in [(&a, "8.50"), (&b, "4.20"), (&c, "17.00")] {
        assert_eq!(
            order_amounts(&pool, &o.id, "RefundRecorded").await,
            [amount],
            "order {} refunded once",
            o.id
        );
    }

    // --- Validation (R-SAL-6) releases the money: the producer is credited. ---
    let validated = mutate(
        &api,
        &s.admin,
        "mutation($s: UUID!, $k: String) { validateSale(saleId: $s, idempotencyKey: $k) { saleIds sales { status } } }",
        json!({"s": s.sale, "k": "validate-1"}),
    )
    .await;
    assert_eq!(
        validated["validateSale"],
        json!({"saleIds": [s.sale], "sales": [{"status": "VALIDATED"}]})
    );
    let payouts_q = "query($p: UUID!) { payouts(producerId: $p) { creditedTotal balanceHeld } }";
    until("the producer is credited", Duration::from_secs(15), || {
        let (pool, p) = (pool.clone(), s.producer_id.clone());
        async move {
            let n = balance_events(&pool, &p, "SaleCredited").await;
            (n == 1).then_some(()).ok_or(json!({"SaleCredited": n}))
        }
    })
    .await;
    caught_up(&api).await;
    let held = api
        .ok(&s.producer, payouts_q, json!({"p": s.producer_id}))
        .await;
    assert_eq!(
        held["payouts"],
        json!({"creditedTotal": "66.28", "balanceHeld": "66.28"}),
        "R-FEE-4: 104.00 paid - 29.70 refunded - 11.23 fees charged on the 104.00 paid + 3.21 \
         given back for the 29.70 refunded (0.89 + 0.18 and 1.78 + 0.36)"
    );

    // --- D: a shortage after the validation: refunded, then debited from the producer. ---
    let vars_d = json!({"o": d.id, "l": d.honey_line.unwrap(), "q": 1, "k": "short-d"});
    let first_d = mutate(&api, &s.producer, &adjust_q(), vars_d.clone()).await;
    assert_eq!(
        first_d["adjustQuantity"]["order"]["total"], "8.50",
        "{first_d}"
    );
    d.settles(
        &api,
        json!({"total": "8.50", "paid": "17.00", "refunded": "8.50", "cancelled": false}),
    )
    .await;
    assert_eq!(
        order_amounts(&pool, &d.id, "RefundRecorded").await,
        ["8.50"]
    );
    let debits = until("the refund is debited", Duration::from_secs(15), || {
        let (pool, p) = (pool.clone(), s.producer_id.clone());
        async move {
            let debits = refund_debits(&pool, &p).await;
            (!debits.is_empty()).then_some(debits).ok_or(Value::Null)
        }
    })
    .await;
    assert_eq!(
        debits,
        [(
            d.id.clone(),
            "8.50".to_string(),
            "8.50".to_string(),
            "7.58".to_string()
        )],
        "R-FEE-4: (order, refunds_total, amount, debit): 38.20 of 104.00 refunded now, the fees \
         given back reach 1.15 + 0.23 and 2.29 + 0.46: 0.92 more, 7.58 debited"
    );
    caught_up(&api).await;
    let held = api
        .ok(&s.producer, payouts_q, json!({"p": s.producer_id}))
        .await;
    assert_eq!(held["payouts"]["balanceHeld"], "58.70", "66.28 - 7.58");
    answered_otherwise
        .extend(retry_writes_nothing(&api, &s.producer, &adjust_q(), vars_d, &first_d).await);
    assert_eq!(
        refund_debits(&pool, &s.producer_id).await.len(),
        1,
        "debited once"
    );
    assert_eq!(
        order_amounts(&pool, &d.id, "RefundRecorded").await,
        ["8.50"]
    );

    // Four refunds in all, each once; the units delivered stay delivered.
    caught_up(&api).await;
    assert_eq!(event_count(&api, "order", "RefundRecorded").await, 4);
    assert_eq!(
        event_count(&api, "producer_balance", "RefundDebited").await,
        1
    );
    assert_eq!(
        s.stock(&api, &s.honey).await,
        json!({"real": 2, "ordered": 0, "available": 2})
    );
    assert_eq!(
        s.stock(&api, &s.chicken).await,
        json!({"real": 8, "ordered": 0, "available": 8})
    );
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status <> 'delivered'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 0, "every outbox message delivered");
    eprintln!("after_the_distribution: {:?}", started.elapsed());
    // Design property 5: a retry gets the first outcome, `position` included (the README: "gets
    // the first outcome").
    assert!(
        answered_otherwise.is_empty(),
        "retries answered otherwise than the first time:\n{}",
        answered_otherwise.join("\n\n")
    );
}

/// R-ORD-4, R-STK-4, design property 5b: the payment provider refuses the next two refund
/// calls (`ETAL_SIM_FAIL=refund:2`). A shortage after the delivery still answers OK; the
/// refund is owed (its outbox row pending after one failed attempt, requested and not
/// recorded, nothing refunded on the order), then the worker retries it after 2 s and 4 s and
/// the third attempt is recorded, exactly once, within 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_the_provider_refuses_is_retried_until_recorded_once() {
    let started = Instant::now();
    let mut env = ENV.to_vec();
    env.push(("ETAL_SIM_FAIL", "refund:2"));
    let api = Api::start(&env).await;
    let pool = api.db.pool.clone();
    let s = setup(&api).await;
    let e = s.order(&api, vec![s.line(&s.honey, 3)], "25.50").await;
    s.delivered(
        &api,
        json!({"real": 7, "ordered": 0, "available": 7}),
        json!({"real": 10, "ordered": 0, "available": 10}),
    )
    .await;

    let vars = json!({"o": e.id, "l": e.honey_line.unwrap(), "q": 2, "k": "short-e"});
    let adjusted_at = Instant::now();
    let first = mutate(&api, &s.producer, &adjust_q(), vars).await;
    assert_eq!(
        first["adjustQuantity"]["order"]["total"], "17.00",
        "{first}"
    );

    // Owed, not recorded: the inline delivery failed once.
    let rows = refund_rows(&pool, &e.id).await;
    assert_eq!(rows.len(), 1, "one refund owed: {rows:?}");
    let (row, status, tried) = rows[0].clone();
    assert_eq!(
        (status.as_str(), tried),
        ("pending", 1),
        "after the inline attempt"
    );
    assert_eq!(
        order_amounts(&pool, &e.id, "RefundRequested").await,
        ["8.50"]
    );
    assert!(
        order_amounts(&pool, &e.id, "RefundRecorded")
            .await
            .is_empty(),
        "nothing recorded while the provider refuses"
    );
    let o = api.ok(&e.customer, ORDER_Q, json!({"o": e.id})).await;
    assert_eq!(
        (
            &o["order"]["total"],
            &o["order"]["paid"],
            &o["order"]["refunded"]
        ),
        (&json!("17.00"), &json!("25.50"), &json!("0.00")),
        "{o}"
    );

    // The worker's retries: recorded within ~15 s.
    until("the refund is recorded", Duration::from_secs(15), || {
        let (pool, id) = (pool.clone(), e.id.clone());
        async move {
            let recorded = order_amounts(&pool, &id, "RefundRecorded").await;
            (!recorded.is_empty()).then_some(()).ok_or(json!(recorded))
        }
    })
    .await;
    eprintln!(
        "refund recorded {:?} after the adjustment",
        adjusted_at.elapsed()
    );
    e.settles(
        &api,
        json!({"total": "17.00", "paid": "25.50", "refunded": "8.50", "cancelled": false}),
    )
    .await;
    let tries = attempts(&pool, row).await;
    let oks: Vec<(i32, bool)> = tries.iter().map(|(n, ok, _)| (*n, *ok)).collect();
    assert_eq!(oks, [(1, false), (2, false), (3, true)], "{tries:?}");
    let gap = |i: usize| tries[i + 1].2 - tries[i].2;
    assert!(
        gap(0) >= chrono::Duration::seconds(2),
        "the second attempt waits 2 s: {tries:?}"
    );
    assert!(
        gap(1) >= chrono::Duration::seconds(4),
        "the third attempt waits 4 s: {tries:?}"
    );
    // Nothing more afterwards: recorded once, delivered, three attempts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        order_amounts(&pool, &e.id, "RefundRecorded").await,
        ["8.50"]
    );
    let rows = refund_rows(&pool, &e.id).await;
    assert_eq!(
        rows.iter()
            .map(|(_, s, n)| (s.as_str(), *n))
            .collect::<Vec<_>>(),
        [("delivered", 3)]
    );
    assert_eq!(attempts(&pool, row).await.len(), 3);
    caught_up(&api).await;
    assert_eq!(event_count(&api, "order", "RefundRecorded").await, 1);
    eprintln!("provider_refuses: {:?}", started.elapsed());
}
