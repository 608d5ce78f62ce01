//! The back office and GraphiQL in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which scripts/tools.sh installs), driven over WebDriver by fantoccini,
//! against the real `etal serve` and PostgreSQL. Everything is on loopback: the pages load
//! nothing from elsewhere (checked from the browser's own resource list). Each page is saved
//! as a screenshot in target/screenshots/ (build artefacts).
//!
//! People log in as they would: the address typed in the form, the link read from the e-mail
//! the service wrote (ETAL_MAIL_DIR), the button on the link's page.

use crate::graphql_common;

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use etal_api::auth::{mint, JwtKey};
use etal_domain::ids::UserId;
use etal_domain::Role;
use etal_tests::{free_port, project_root, spawn_etal, Proc, TestDb};
use fantoccini::{Client, ClientBuilder, Locator};
use graphql_common::{weekday_code, SECRET};
use serde_json::{json, Value};

/// `etal serve` with the demo data, its e-mails written to a folder of the test's own.
struct Served {
    db: TestDb,
    _server: Proc,
    base: String,
    mail: PathBuf,
    http: reqwest::Client,
}

impl Served {
    async fn start(extra: &[(&str, &str)]) -> Served {
        let db = TestDb::new(10).await;
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mail = std::env::temp_dir().join(format!("etal-mail-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&mail).unwrap();
        let listen = format!("127.0.0.1:{port}");
        let mail_dir = mail.display().to_string();
        let mut env = vec![
            ("ETAL_LISTEN", listen.as_str()),
            ("ETAL_PUBLIC_URL", base.as_str()),
            ("ETAL_MAIL_DIR", mail_dir.as_str()),
            ("ETAL_JWT_SECRET", SECRET),
            ("ETAL_NOTIFY_INTERVAL_MS", "100"),
            ("ETAL_SCHEDULER_INTERVAL_MS", "100"),
            ("ETAL_DELIVERY_DELAY_MINUTES", "0"),
            ("DEMO", "1"),
        ];
        env.extend_from_slice(extra);
        let server = spawn_etal(&db.url, &["serve"], &env);
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/health")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "etal serve did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Served {
            db,
            _server: server,
            base,
            mail,
            http,
        }
    }

    fn token(&self, user: UserId, role: Role) -> String {
        mint(
            &JwtKey::new(SECRET.into()).unwrap(),
            user,
            role,
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    /// A GraphQL call that must succeed.
    async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let body: Value = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    /// The person of a demo address.
    async fn user_of(&self, email: &str) -> UserId {
        UserId(
            sqlx::query_scalar("SELECT user_id FROM people WHERE email = $1")
                .bind(email)
                .fetch_one(&self.db.pool)
                .await
                .unwrap(),
        )
    }

    /// The log-in links of the e-mails to `to` not seen yet, waiting for one at most `wait`.
    async fn new_links(
        &self,
        to: &str,
        seen: &mut HashSet<PathBuf>,
        wait: Duration,
    ) -> Vec<String> {
        let started = Instant::now();
        loop {
            let mut links = Vec::new();
            for entry in std::fs::read_dir(&self.mail).unwrap() {
                let path = entry.unwrap().path();
                if seen.contains(&path) {
                    continue;
                }
                let raw = std::fs::read(&path).unwrap();
                let parsed = mailparse::parse_mail(&raw).unwrap();
                let to_header =
                    mailparse::MailHeaderMap::get_first_value(parsed.headers.as_slice(), "To")
                        .unwrap_or_default();
                seen.insert(path);
                if !to_header.contains(to) {
                    continue;
                }
                let text = parsed
                    .subparts
                    .iter()
                    .find(|p| p.ctype.mimetype == "text/plain")
                    .map(|p| p.get_body().unwrap())
                    .unwrap_or_default();
                for word in text.split_whitespace() {
                    if word.contains("/admin/login/") {
                        links.push(word.to_string());
                    }
                }
            }
            if !links.is_empty() || started.elapsed() > wait {
                return links;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A headless Chromium under chromedriver.
struct Browser {
    _driver: Driver,
    c: Client,
    shots: PathBuf,
}

/// chromedriver in a process group of its own: dropping it kills the group, the Chromium it
/// started included (killing chromedriver alone leaves the browser's processes running).
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Driver(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("chromedriver (scripts/tools.sh installs chromium-driver)"),
        );
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--disable-background-networking",
                         "--disable-extensions", "--disable-sync", "--lang=fr-FR"]
            }),
        );
        let started = Instant::now();
        let c = loop {
            // Plain HTTP to the local driver: no TLS anywhere.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "chromedriver did not answer: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let shots = project_root().join("target/screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            _driver: driver,
            c,
            shots,
        }
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Every resource the page loaded comes from `base`.
    async fn loaded_only_from(&self, base: &str) {
        let names = self
            .c
            .execute(
                "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);",
                vec![],
            )
            .await
            .unwrap();
        for n in names.as_array().unwrap() {
            let n = n.as_str().unwrap();
            assert!(n.starts_with(base), "the page loaded {n} from elsewhere");
        }
    }

    /// Logs `email` in through the form, the e-mail and the link's button.
    async fn log_in(&self, s: &Served, email: &str, seen: &mut HashSet<PathBuf>) {
        self.c
            .goto(&format!("{}/admin/login", s.base))
            .await
            .unwrap();
        self.c
            .find(Locator::Css("#email"))
            .await
            .unwrap()
            .send_keys(email)
            .await
            .unwrap();
        self.c
            .find(Locator::Css("#login-form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.text("#login-sent").await;
        let links = s.new_links(email, seen, Duration::from_secs(15)).await;
        assert_eq!(links.len(), 1, "one link for one role: {links:?}");
        self.c.goto(&links[0]).await.unwrap();
        self.c
            .wait()
            .for_element(Locator::Css("#open-session"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("nav.main-nav"))
            .await
            .unwrap();
    }
}

impl Browser {
    /// The header's log-out button: back to the log-in page, the session ended.
    async fn log_out(&self) {
        self.c
            .find(Locator::Css("form.logout button"))
            .await
            .expect("a log-out button")
            .click()
            .await
            .unwrap();
        self.c
            .wait()
            .for_element(Locator::Css("#login-form"))
            .await
            .unwrap();
        assert!(self
            .c
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/login"));
    }
}

fn chromium() -> String {
    for c in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(c).exists() {
            return c.to_string();
        }
    }
    panic!("no Chromium (scripts/tools.sh installs Debian's chromium)");
}

/// "1 234,50 €" -> "1234.50".
fn amount(text: &str) -> String {
    text.replace(['\u{a0}', '\u{202f}', ' ', '€'], "")
        .replace(',', ".")
        .trim()
        .to_string()
}

/// A market of its own (administered by a person with an address) with one sale today that
/// starts in a few seconds and lasts a few seconds, with one producer's catalog: distributed
/// soon after (the delivery delay is 0), so ready to validate.
async fn market_with_a_sale_to_validate(s: &Served) -> (String, String, String) {
    let admin = UserId::new();
    let admin_token = s.token(admin, Role::MarketAdmin);
    let email = "referente@exemple.test";
    s.ok(
        &admin_token,
        "mutation($e: String) { registerPerson(displayName: \"Irène Referente\", email: $e) { userId } }",
        json!({"e": email}),
    )
    .await;
    let producer = s.token(UserId::new(), Role::Producer);
    let d = s
        .ok(
            &producer,
            "mutation { openAccount(acceptedCharter: \"v2\", plan: PRO, idempotencyKey: \"open\") { producerId } }",
            json!({}),
        )
        .await;
    let producer_id = d["openAccount"]["producerId"].as_str().unwrap().to_string();
    let d = s
        .ok(
            &producer,
            "mutation($p: UUID!) { addProduct(producerId: $p, product: {name: \"Miel\", unit: \"pot\", priceInclVat: \"8.50\", vatRate: \"5.5\"}) { productId } }",
            json!({"p": producer_id}),
        )
        .await;
    let product = d["addProduct"]["productId"].as_str().unwrap().to_string();
    let d = s
        .ok(
            &producer,
            "mutation($p: UUID!) { createCatalog(producerId: $p, name: \"Le rucher\") { catalogId } }",
            json!({"p": producer_id}),
        )
        .await;
    let catalog = d["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(
        &producer,
        "mutation($c: UUID!, $x: UUID!) { addOffer(catalogId: $c, productId: $x, priceInclVat: \"8.50\") { position } }",
        json!({"c": catalog, "x": product}),
    )
    .await;
    // Today, in Paris, starting 4 s from now for 4 s (away from midnight and DST changes).
    let (day, start, end) = loop {
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let (a, b) = (
            (now + chrono::Duration::seconds(4)).with_timezone(&Paris),
            (now + chrono::Duration::seconds(8)).with_timezone(&Paris),
        );
        let single = |t: &DateTime<chrono_tz::Tz>| {
            Paris
                .from_local_datetime(&t.naive_local())
                .single()
                .is_some()
        };
        if a.date_naive() == b.date_naive() && single(&a) && single(&b) {
            break (
                a.date_naive(),
                a.format("%H:%M:%S").to_string(),
                b.format("%H:%M:%S").to_string(),
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let d = s
        .ok(
            &admin_token,
            "mutation($m: MarketInput!) { createMarket(market: $m) { marketId } }",
            json!({"m": {"name": "Marché de la Référente", "place": "Halle", "paymentMode": "ON_SITE",
                "slots": [{"weekday": weekday_code(day), "start": start, "end": end, "anchor": day.to_string()}]}}),
        )
        .await;
    let market = d["createMarket"]["marketId"].as_str().unwrap().to_string();
    s.ok(
        &admin_token,
        "mutation($m: UUID!, $c: UUID!) { linkCatalog(marketId: $m, catalogId: $c) { position } }",
        json!({"m": market, "c": catalog}),
    )
    .await;
    let d = s
        .ok(
            &admin_token,
            "mutation($m: UUID!, $d: Date!) { generateSales(marketId: $m, from: $d, to: $d) { saleIds } }",
            json!({"m": market, "d": day.to_string()}),
        )
        .await;
    let sale = d["generateSales"]["saleIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(
        &producer,
        "mutation($c: UUID!, $s: UUID!) { participate(catalogId: $c, saleIds: [$s], opensHoursBefore: 1, closesHoursBefore: 0) { position } }",
        json!({"c": catalog, "s": sale}),
    )
    .await;
    let started = Instant::now();
    loop {
        let d = s
            .ok(
                &admin_token,
                "query($s: UUID!) { sale(id: $s) { status } }",
                json!({"s": sale}),
            )
            .await;
        if d["sale"]["status"] == "DISTRIBUTED" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the sale was never distributed: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (market, sale, admin_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_sal_6_a_market_administrator_sees_sales_opens_a_recap_and_validates_a_sale() {
    let s = Served::start(&[]).await;
    let b = Browser::start().await;
    let mut seen = HashSet::new();

    // The demo's market administrator whose market has orders.
    let today = etal_domain::calendar::paris_date(Utc::now());
    let (from, to) = (
        (today - chrono::Duration::weeks(26)).to_string(),
        (today + chrono::Duration::weeks(8)).to_string(),
    );
    let mut chosen = None;
    for i in 1..=3 {
        let email = format!("marche{i}@demo.etal.test");
        let admin = s.user_of(&email).await;
        let token = s.token(admin, Role::MarketAdmin);
        let mine = s
            .ok(
                &token,
                "{ me { marketsAdministered { nodes { marketId } } } }",
                json!({}),
            )
            .await;
        let market = mine["me"]["marketsAdministered"]["nodes"][0]["marketId"]
            .as_str()
            .unwrap()
            .to_string();
        let per_sale = s
            .ok(
                &token,
                "query($m: UUID!, $f: Date!, $t: Date!) { ordersPerSale(marketId: $m, from: $f, to: $t) { saleId orders turnoverInclVat } }",
                json!({"m": market, "f": from, "t": to}),
            )
            .await;
        if per_sale["ordersPerSale"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["orders"].as_i64() > Some(0))
        {
            chosen = Some((email, token, market, per_sale));
            break;
        }
    }
    let (email, token, market, per_sale) = chosen.expect("a demo market with orders");
    b.log_in(&s, &email, &mut seen).await;
    assert!(b
        .c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin/markets"));
    b.loaded_only_from(&s.base).await;
    b.shot("market_admin_markets").await;
    b.c.find(Locator::Css(&format!("a[href='/admin/markets/{market}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.text("#upcoming-sales").await;
    b.loaded_only_from(&s.base).await;
    b.shot("market_admin_market").await;

    // Each open sale's order count and turnover on the page are the API's.
    let rows =
        b.c.find_all(Locator::Css("#upcoming-sales tr[data-sale-id]"))
            .await
            .unwrap();
    assert!(!rows.is_empty(), "the demo's market has open sales");
    let mut with_orders = None;
    let mut checked = 0;
    for row in rows {
        let id = row.attr("data-sale-id").await.unwrap().unwrap();
        let orders = row
            .find(Locator::Css(".orders"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let turnover = row
            .find(Locator::Css(".turnover"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let api = per_sale["ordersPerSale"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["saleId"] == id.as_str());
        let (api_orders, api_turnover) = match api {
            Some(r) => (
                r["orders"].to_string(),
                r["turnoverInclVat"].as_str().unwrap().to_string(),
            ),
            None => ("0".to_string(), "0.00".to_string()),
        };
        assert_eq!(orders, api_orders.trim_matches('"'), "orders of sale {id}");
        assert_eq!(amount(&turnover), api_turnover, "turnover of sale {id}");
        if api_orders != "0" && with_orders.is_none() {
            with_orders = Some(id.clone());
        }
        checked += 1;
    }
    assert!(checked > 0);
    let sale = with_orders.expect("the demo placed orders on an open sale");

    // Its recap: the page's total is the sum of the API's customer totals.
    b.c.goto(&format!("{}/admin/recaps/{sale}", s.base))
        .await
        .unwrap();
    let total = amount(&b.text("#recap-total").await);
    b.shot("market_admin_recap").await;
    let recap = s
        .ok(
            &token,
            "query($s: UUID!) { orderRecap(saleId: $s) { byCustomer(first: 100) { nodes { amountInclVat } } } }",
            json!({"s": sale}),
        )
        .await;
    let sum: rust_decimal::Decimal = recap["orderRecap"]["byCustomer"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["amountInclVat"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert!(sum > rust_decimal::Decimal::ZERO, "{recap}");
    assert_eq!(total, format!("{sum:.2}"), "the recap's total");

    // Another market's page is refused, as the API refuses it.
    let others: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id::uuid FROM events WHERE aggregate_type = 'market' AND aggregate_id <> $1",
    )
    .bind(&market)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    b.c.goto(&format!("{}/admin/markets/{}", s.base, others[0]))
        .await
        .unwrap();
    b.text("#page-refused").await;
    assert!(b.text(".errors").await.contains("FORBIDDEN"));

    // A sale of its own market, distributed: validated with the page's button.
    let (own_market, own_sale, own_token) = market_with_a_sale_to_validate(&s).await;
    b.log_out().await;
    b.log_in(&s, "referente@exemple.test", &mut seen).await;
    b.c.goto(&format!("{}/admin/markets/{own_market}", s.base))
        .await
        .unwrap();
    b.shot("market_admin_to_validate").await;
    b.c.find(Locator::Css(&format!(
        "button.validate-sale[data-sale-id='{own_sale}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let flash = b.text(".flash").await;
    assert!(flash.contains("Vente validée"), "{flash}");
    b.shot("market_admin_validated").await;
    let d = s
        .ok(
            &own_token,
            "query($s: UUID!) { sale(id: $s) { status } }",
            json!({"s": own_sale}),
        )
        .await;
    assert_eq!(d["sale"]["status"], "VALIDATED", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_stk_5_a_producer_sees_low_stock_and_a_customer_is_refused() {
    let s = Served::start(&[]).await;
    let b = Browser::start().await;
    let mut seen = HashSet::new();

    let email = "producteur1@demo.etal.test";
    let owner = s.user_of(email).await;
    let token = s.token(owner, Role::Producer);
    let d = s
        .ok(
            &token,
            "{ me { producerAccounts { nodes { producerId } } } }",
            json!({}),
        )
        .await;
    let producer = d["me"]["producerAccounts"]["nodes"][0]["producerId"]
        .as_str()
        .unwrap()
        .to_string();
    let d = s
        .ok(
            &token,
            "query($p: UUID!) { stockLevels(producerId: $p) { nodes { productId real ordered available } } }",
            json!({"p": producer}),
        )
        .await;
    let product = d["stockLevels"]["nodes"][0]["productId"]
        .as_str()
        .unwrap()
        .to_string();
    let ordered = d["stockLevels"]["nodes"][0]["ordered"].as_i64().unwrap();
    let real = ordered + 2;

    b.log_in(&s, email, &mut seen).await;
    b.c.goto(&format!("{}/admin/producers/{producer}", s.base))
        .await
        .unwrap();
    b.loaded_only_from(&s.base).await;
    b.shot("producer_home").await;
    assert!(
        b.c.find(Locator::Css(&format!(
            "tr.low[data-product-id='{product}']"
        )))
        .await
        .is_err(),
        "60 units is not low"
    );
    // The producer sets the stock to what is ordered and 2 more with the page's form: 2
    // available, the row turns low.
    let form =
        b.c.find(Locator::Css(&format!(
            "tr[data-product-id='{product}'] form"
        )))
        .await
        .expect("a stock form per product");
    let input = form.find(Locator::Css("input[name=real]")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(&real.to_string()).await.unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = b.text(".flash").await;
    assert!(flash.contains("Stock mis à jour"), "{flash}");
    let low =
        b.c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(&format!(
                "tr.low[data-product-id='{product}']"
            )))
            .await
            .expect("the product is shown as low");
    assert!(low.text().await.unwrap().contains('2'));
    b.shot("producer_low_stock").await;
    let d = s
        .ok(
            &token,
            "query($p: UUID!) { stockLevels(producerId: $p) { nodes { productId real } } }",
            json!({"p": producer}),
        )
        .await;
    let row = d["stockLevels"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["productId"] == product.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["real"], real, "{row}");

    // A customer with an address: no link is sent, and /admin/ is not theirs.
    let customer = UserId::new();
    let customer_token = s.token(customer, Role::Customer);
    s.ok(
        &customer_token,
        "mutation { registerPerson(displayName: \"Paul Client\", email: \"paul@exemple.test\") { userId } }",
        json!({}),
    )
    .await;
    b.log_out().await;
    b.c.goto(&format!("{}/admin/login", s.base)).await.unwrap();
    b.c.find(Locator::Css("#email"))
        .await
        .unwrap()
        .send_keys("paul@exemple.test")
        .await
        .unwrap();
    b.c.find(Locator::Css("#login-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.text("#login-sent").await;
    let links = s
        .new_links("paul@exemple.test", &mut seen, Duration::from_secs(3))
        .await;
    assert!(links.is_empty(), "a customer got a link: {links:?}");
    b.c.goto(&format!("{}/admin/markets", s.base))
        .await
        .unwrap();
    assert!(
        b.c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/login"),
        "no session: the log-in page"
    );
    b.shot("customer_refused").await;
    // Nor does a customer's bearer token open it.
    let r = s
        .http
        .get(format!("{}/admin/markets", s.base))
        .bearer_auth(&customer_token)
        .send()
        .await
        .unwrap();
    assert!(r.url().path().ends_with("/admin/login"), "{}", r.url());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_works_offline_and_its_docs_explorer_lists_order_recap() {
    let s = Served::start(&[("DEMO", "0")]).await;
    let b = Browser::start().await;
    b.c.goto(&format!("{}/", s.base)).await.unwrap();
    b.c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".graphiql-container"))
        .await
        .expect("GraphiQL renders");
    b.loaded_only_from(&s.base).await;
    b.c.find(Locator::Css(
        "button[aria-label='Show Documentation Explorer']",
    ))
    .await
    .expect("the docs button")
    .click()
    .await
    .unwrap();
    // The explorer reads the schema by the standard introspection query.
    b.c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//a[contains(@class,'graphiql-doc-explorer-type-name') and text()='Query']",
        ))
        .await
        .expect("the explorer shows the root types")
        .click()
        .await
        .unwrap();
    let field =
        b.c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(
                "//*[contains(@class,'graphiql-doc-explorer-field-name') and text()='orderRecap']",
            ))
            .await
            .expect("Query.orderRecap in the docs explorer");
    assert_eq!(field.text().await.unwrap(), "orderRecap");
    b.shot("graphiql_docs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_pay_3_an_auditor_reads_the_ledger_the_latest_check_and_an_aggregates_history() {
    let s = Served::start(&[]).await;
    // The auditors' page shows the latest `etal audit check`.
    let (code, out, err) = etal_tests::run_etal(&s.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    let auditor = uuid::Uuid::new_v4().to_string();
    let (code, link, err) = etal_tests::run_etal(
        &s.db.url,
        &["admin", "link", "--user", &auditor, "--role", "auditor"],
    );
    assert_eq!(code, 0, "{err}");
    let link = link.trim().replace("http://127.0.0.1:8080", &s.base);
    let b = Browser::start().await;
    b.c.goto(&link).await.unwrap();
    b.c.wait()
        .for_element(Locator::Css("#open-session"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.text("#conservation").await;
    assert!(b
        .c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin/audit"));
    b.loaded_only_from(&s.base).await;
    let holds =
        b.c.find(Locator::Css("#conservation"))
            .await
            .unwrap()
            .attr("data-holds")
            .await
            .unwrap();
    assert_eq!(
        holds.as_deref(),
        Some("true"),
        "money is conserved in the demo"
    );
    let differences =
        b.c.find(Locator::Css("#check-differences"))
            .await
            .unwrap()
            .attr("data-differences")
            .await
            .unwrap();
    assert_eq!(differences.as_deref(), Some("0"), "the check found nothing");
    assert_eq!(
        amount(&b.text("#ledger-total-debits").await),
        amount(&b.text("#ledger-total-credits").await),
        "debits equal credits"
    );
    b.shot("auditor_audit").await;
    // The same page on a phone's width.
    b.c.set_window_size(390, 844).await.unwrap();
    b.c.refresh().await.unwrap();
    b.text("#conservation").await;
    b.shot("auditor_audit_phone").await;
    b.c.set_window_size(1280, 1000).await.unwrap();
    // An aggregate's history: a market's events, as the API lists them.
    let market: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'market' ORDER BY global_position LIMIT 1",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    b.c.goto(&format!("{}/admin/history/market/{market}", s.base))
        .await
        .unwrap();
    let page = b.text("main").await;
    assert!(page.contains("MarketCreated"), "{page}");
    b.shot("auditor_history").await;
}
