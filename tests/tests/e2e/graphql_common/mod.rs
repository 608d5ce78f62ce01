//! Shared by the graphql_* tests: a server with a signing key, tokens, and a GraphQL client.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sqlx::PgPool;

use etal_api::auth::{mint, JwtKey};
use etal_domain::ids::UserId;
use etal_domain::Role;
use etal_tests::{spawn_server, Proc, TestDb};
use serde_json::{json, Value};

pub const SECRET: &str = "graphql-tests-secret-0123456789abcdef";

pub struct Api {
    pub db: TestDb,
    pub server: Proc,
    pub base: String,
    pub http: reqwest::Client,
}

/// Someone with a token.
#[derive(Clone)]
pub struct Who {
    pub user: UserId,
    pub role: Role,
    pub token: String,
}

impl Api {
    pub async fn start(extra_env: &[(&str, &str)]) -> Api {
        let db = TestDb::new(10).await;
        let mut env = vec![
            ("ETAL_JWT_SECRET", SECRET),
            ("ETAL_SCHEDULER_INTERVAL_MS", "100"),
        ];
        env.extend_from_slice(extra_env);
        let (server, base) = spawn_server(&db.url, &env).await;
        Api {
            db,
            server,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    pub fn who(&self, role: Role) -> Who {
        let user = UserId::new();
        let key = JwtKey::new(SECRET.into()).unwrap();
        Who {
            user,
            role,
            token: mint(&key, user, role, Duration::from_secs(3600)).unwrap(),
        }
    }

    /// POSTs a GraphQL request (application/json); returns (status, body).
    pub async fn raw(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn call(&self, who: &Who, query: &str, variables: Value) -> Value {
        self.raw(Some(&who.token), query, variables).await.1
    }

    /// A call that must succeed; returns `data`.
    pub async fn ok(&self, who: &Who, query: &str, variables: Value) -> Value {
        let body = self.call(who, query, variables).await;
        assert!(
            body.get("errors").is_none(),
            "{query}\n{}",
            serde_json::to_string_pretty(&body).unwrap()
        );
        body["data"].clone()
    }
}

/// The `extensions.code` of the first error, if any.
pub fn code(body: &Value) -> Option<String> {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_string)
}

/// A market with one sale two days from now, a producer with a product (stock 10) offered in a
/// linked catalog taking part in it, and the order period open.
pub struct Fixture {
    pub producer: Who,
    pub admin: Who,
    pub customer: Who,
    pub producer_id: String,
    pub product_id: String,
    pub chicken_id: String,
    pub catalog_id: String,
    pub market_id: String,
    pub sale_id: String,
}

pub const OPEN_ACCOUNT: &str = "mutation($k: String) { openAccount(acceptedCharter: \"v2\", plan: PRO, idempotencyKey: $k) { producerId position producer { plan youOwnIt } } }";

pub async fn fixture(api: &Api) -> Fixture {
    fixture_with(api, true).await
}

/// [`fixture`]; with `opened`, waits until the scheduler opened the period (its prices frozen,
/// so nothing more is written for it); without, the server may run no scheduler and the period
/// is open by the clock only.
pub async fn fixture_with(api: &Api, opened: bool) -> Fixture {
    let producer = api.who(Role::Producer);
    let admin = api.who(Role::MarketAdmin);
    let customer = api.who(Role::Customer);
    let d = api
        .ok(&producer, OPEN_ACCOUNT, json!({"k": "open-1"}))
        .await;
    let producer_id = d["openAccount"]["producerId"].as_str().unwrap().to_string();
    let add = "mutation($p: UUID!, $input: ProductInput!) { addProduct(producerId: $p, product: $input) { productId position product { name priceInclVat } } }";
    let d = api
        .ok(
            &producer,
            add,
            json!({"p": producer_id, "input": {"name": "Miel 500 g", "unit": "pot", "priceInclVat": "8.50", "vatRate": "5.5"}}),
        )
        .await;
    assert_eq!(d["addProduct"]["product"]["priceInclVat"], "8.50");
    let product_id = d["addProduct"]["productId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &producer,
            add,
            json!({"p": producer_id, "input": {"name": "Poulet fermier", "unit": "kg", "priceInclVat": "12.00", "variableWeight": true, "estimatedWeightKg": "1.5"}}),
        )
        .await;
    let chicken_id = d["addProduct"]["productId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &producer,
            "mutation($p: UUID!, $x: UUID!) { setStock(producerId: $p, productId: $x, real: 10) { stock { real available } } }",
            json!({"p": producer_id, "x": product_id}),
        )
        .await;
    assert_eq!(d["setStock"]["stock"]["available"], 10);
    let d = api
        .ok(
            &producer,
            "mutation($p: UUID!) { createCatalog(producerId: $p, name: \"Le panier\") { catalogId } }",
            json!({"p": producer_id}),
        )
        .await;
    let catalog_id = d["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    for (product, price) in [(&product_id, "8.50"), (&chicken_id, "12.00")] {
        api.ok(
            &producer,
            "mutation($c: UUID!, $x: UUID!, $price: Money!) { addOffer(catalogId: $c, productId: $x, priceInclVat: $price) { catalog { offers { edges { node { name priceInclVat } } } } } }",
            json!({"c": catalog_id, "x": product, "price": price}),
        )
        .await;
    }
    // A sale two days from now (Europe/Paris date), orders open a week before.
    let day = (chrono::Utc::now() + chrono::Duration::days(2))
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let weekday = weekday_code(day);
    let d = api
        .ok(
            &admin,
            "mutation($m: MarketInput!) { createMarket(market: $m, idempotencyKey: \"m1\") { marketId position market { name youAdminister } } }",
            json!({"m": {"name": "Segonzac", "place": "Salle des fêtes", "paymentMode": "ONLINE",
                "slots": [{"weekday": weekday, "start": "18:00", "end": "19:00", "everyWeeks": 1, "anchor": day.to_string()}]}}),
        )
        .await;
    assert_eq!(d["createMarket"]["market"]["youAdminister"], true);
    let market_id = d["createMarket"]["marketId"].as_str().unwrap().to_string();
    api.ok(
        &admin,
        "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { market { linkedCatalogs { catalogId } } } }",
        json!({"m": market_id, "c": catalog_id}),
    )
    .await;
    let d = api
        .ok(
            &admin,
            "mutation($m: UUID!, $d: Date!) { generateSales(marketId: $m, from: $d, to: $d) { saleIds position sales { status date } } }",
            json!({"m": market_id, "d": day.to_string()}),
        )
        .await;
    let sale_id = d["generateSales"]["saleIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &producer,
        "mutation($c: UUID!, $s: UUID!) { participate(catalogId: $c, saleIds: [$s]) { position } }",
        json!({"c": catalog_id, "s": sale_id}),
    )
    .await;
    // R-SAL-3: this sale's period opens an hour ago and closes in 12 hours.
    let now = chrono::Utc::now();
    api.ok(
        &producer,
        "mutation($s: UUID!, $c: UUID!, $o: DateTime!, $cl: DateTime!) { overridePeriod(saleId: $s, catalogId: $c, opensAt: $o, closesAt: $cl) { position } }",
        json!({"s": sale_id, "c": catalog_id, "o": (now - chrono::Duration::hours(1)).to_rfc3339(), "cl": (now + chrono::Duration::hours(12)).to_rfc3339()}),
    )
    .await;
    // The period is open by the clock; the scheduler opens it (freezing its prices).
    let mut done = false;
    for _ in 0..100 {
        let d = api
            .ok(
                &customer,
                "query($s: UUID!) { sale(id: $s) { status participations { period offers { name priceInclVat } } } }",
                json!({"s": sale_id}),
            )
            .await;
        let period = &d["sale"]["participations"][0]["period"];
        let frozen: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'OrderPeriodOpened'",
        )
        .bind(&sale_id)
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
        if *period == "OPEN" && (!opened || frozen > 0) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !done {
        type Row = (
            String,
            chrono::DateTime<chrono::Utc>,
            String,
            Option<Value>,
            Option<String>,
        );
        let rows: Vec<Row> =
            sqlx::query_as("SELECT kind, due_at, status, outcome, last_error FROM scheduled_commands ORDER BY due_at")
                .fetch_all(&api.db.pool)
                .await
                .unwrap();
        panic!("the order period never opened: {rows:#?}");
    }
    Fixture {
        producer,
        admin,
        customer,
        producer_id,
        product_id,
        chicken_id,
        catalog_id,
        market_id,
        sale_id,
    }
}

pub const PLACE_ORDER: &str = "mutation($s: UUID!, $lines: [LineInput!]!, $k: String) { placeOrder(saleId: $s, lines: $lines, idempotencyKey: $k) { orderId position order { number total paid lines { line name quantity amountInclVat } } } }";

// ---------------------------------------------------------------------------------------------
// Waiting and reading, shared by the HTTP tests of flows over time
// ---------------------------------------------------------------------------------------------

/// Polls `f` until it answers `Ok`, at most `timeout`; panics with the last answer.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Value>>,
{
    let started = Instant::now();
    loop {
        match f().await {
            Ok(t) => return t,
            Err(last) => {
                if started.elapsed() > timeout {
                    panic!(
                        "{what}: not within {timeout:?}; last seen:\n{}",
                        serde_json::to_string_pretty(&last).unwrap()
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every projection has applied the log's head.
pub async fn caught_up(api: &Api) {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < Duration::from_secs(10) {
        let (_, body) = api
            .raw(None, "{ projections { name position head } }", json!({}))
            .await;
        if let Some(list) = body["data"]["projections"].as_array() {
            let done = !list.is_empty()
                && list.iter().all(|p| {
                    let pos = p["position"].as_str().unwrap_or("");
                    let head = p["head"].as_str().unwrap_or("");
                    match (pos.parse::<i64>(), head.parse::<i64>()) {
                        (Ok(a), Ok(b)) => a >= b,
                        _ => pos == head,
                    }
                });
            if done {
                return;
            }
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the projections never caught up with the head: {last}");
}

pub fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a DateTime: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

pub async fn balance_events(pool: &PgPool, producer: &str, event_type: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'producer_balance' \
         AND aggregate_id = $1 AND event_type = $2",
    )
    .bind(producer)
    .bind(event_type)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Sends a mutation, which must answer without errors; returns `data`.
pub async fn mutate(api: &Api, who: &Who, query: &str, vars: Value) -> Value {
    let body = api.call(who, query, vars.clone()).await;
    assert!(
        body.get("errors").is_none(),
        "request {query}\nvariables {vars}\nanswered\n{}",
        serde_json::to_string_pretty(&body).unwrap()
    );
    body["data"].clone()
}

pub fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap_or_else(|_| panic!("not a decimal: {v}"))
}

pub fn cent(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// R-FEE-3: an auditor recomputes a line from what it records: `amountExclVat =
/// round(baseAmount * rate) + fixedPart`, `vat = round(amountExclVat * vatRate %)`,
/// `amountInclVat = amountExclVat + vat`, rounded half away from zero to the cent.
pub fn recomputes(line: &Value) {
    assert_eq!(line["rounding"], "half_away_from_zero_cent", "{line}");
    let excl = cent(dec(&line["baseAmount"]) * dec(&line["rate"])) + dec(&line["fixedPart"]);
    let vat = cent(excl * dec(&line["vatRate"]) / Decimal::ONE_HUNDRED);
    assert_eq!(
        (
            dec(&line["amountExclVat"]),
            dec(&line["vat"]),
            dec(&line["amountInclVat"])
        ),
        (excl, vat, excl + vat),
        "R-FEE-3: the line recomputes from its inputs: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// A sale that ends within seconds, on the system clock
// ---------------------------------------------------------------------------------------------

/// The server settings of the tests whose sale ends within seconds: the delivery delay is 0
/// (units delivered as soon as the sale ends), the scheduler and the outbox worker look every
/// 200 ms; the rate limit is not under test (the polls share buckets).
pub const SOON_ENV: &[(&str, &str)] = &[
    ("ETAL_DELIVERY_DELAY_MINUTES", "0"),
    ("ETAL_SCHEDULER_INTERVAL_MS", "200"),
    ("ETAL_OUTBOX_INTERVAL_MS", "200"),
    ("ETAL_RATE_LIMIT_PER_SECOND", "10000"),
    ("ETAL_RATE_LIMIT_BURST", "10000"),
];

/// The sale, its validation and its crediting must all fall on the same Paris date.
const SAME_DAY_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// A slot starting `lead` from now (whole seconds) and lasting `length`, on today's
/// Europe/Paris date.
pub struct Slot {
    pub day: chrono::NaiveDate,
    pub weekday: &'static str,
    pub start: String,
    pub end: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// The GraphQL `Weekday` of a date.
pub fn weekday_code(day: chrono::NaiveDate) -> &'static str {
    match chrono::Datelike::weekday(&day) {
        chrono::Weekday::Mon => "MON",
        chrono::Weekday::Tue => "TUE",
        chrono::Weekday::Wed => "WED",
        chrono::Weekday::Thu => "THU",
        chrono::Weekday::Fri => "FRI",
        chrono::Weekday::Sat => "SAT",
        chrono::Weekday::Sun => "SUN",
    }
}

/// A [`Slot`] starting `lead` from now. Near midnight (the sale, its validation and its
/// crediting would straddle two dates) or in the repeated hour of the autumn DST change (a
/// wall-clock time naming two instants), waits until that has passed.
pub async fn slot_soon(lead: chrono::Duration, length: chrono::Duration) -> Slot {
    use chrono::TimeZone;
    use chrono_tz::Europe::Paris;
    let started = Instant::now();
    loop {
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let starts = now + lead;
        let ends = starts + length;
        let (ls, le) = (starts.with_timezone(&Paris), ends.with_timezone(&Paris));
        let later = (ends + SAME_DAY_MARGIN).with_timezone(&Paris);
        let unambiguous = |t: &DateTime<chrono_tz::Tz>| {
            Paris
                .from_local_datetime(&t.naive_local())
                .single()
                .is_some()
        };
        let today = now.with_timezone(&Paris).date_naive();
        if ls.date_naive() == today
            && le.date_naive() == today
            && later.date_naive() == today
            && unambiguous(&ls)
            && unambiguous(&le)
        {
            return Slot {
                day: today,
                weekday: weekday_code(today),
                start: ls.format("%H:%M:%S").to_string(),
                end: le.format("%H:%M:%S").to_string(),
                starts_at: starts,
                ends_at: ends,
            };
        }
        assert!(
            started.elapsed() < Duration::from_secs(3700),
            "no slot of today's Paris date could be found"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
