//! The back office's defences over HTTP, against the real `etal serve`: forged sessions,
//! forms without their CSRF token, log-in attempts from one address, links used twice or
//! expired, another market's page. Each is refused and changes nothing.

use crate::graphql_common;

use std::time::Duration;

use etal_domain::Role;
use graphql_common::Api;
use serde_json::json;

/// A browser's cookie jar, by hand: the `name=value` pairs the server set.
#[derive(Default, Clone)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn take(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.0.retain(|(n, _)| n != k);
            if !v.is_empty() {
                self.0.push((k.to_string(), v.to_string()));
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, jar: &mut Jar, url: &str) -> (u16, String, Option<String>) {
    let r = c
        .get(url)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.take(&r);
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.text().await.unwrap(), location)
}

async fn post(
    c: &reqwest::Client,
    jar: &mut Jar,
    url: &str,
    form: &[(&str, &str)],
) -> (u16, String, Option<String>) {
    let r = c
        .post(url)
        .header("cookie", jar.header())
        .form(form)
        .send()
        .await
        .unwrap();
    jar.take(&r);
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.text().await.unwrap(), location)
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

/// Opens a session with an operator's link (`etal admin link`); the jar holds its cookie.
async fn session(api: &Api, user: &str, role: &str) -> Jar {
    let (link, session) = etal_tests::back_office_session(&api.db.url, &api.base, user, role)
        .await
        .unwrap();
    let (name, value) = session.split_once('=').unwrap();
    // Used once: the same link again is refused.
    let (status, page, _) = get(&client(), &mut Jar::default(), &link).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("LINK_INVALID"));
    Jar(vec![(name.to_string(), value.to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sessions_and_forms_without_their_token_change_nothing() {
    let api = Api::start(&[("ETAL_LOGIN_RATE_PER_MINUTE", "1000")]).await;
    let f = graphql_common::fixture(&api).await;
    let c = client();
    let admin = f.admin.user.0.to_string();
    let mut jar = session(&api, &admin, "market_admin").await;
    let base = &api.base;

    // The market's page is the administrator's.
    let (status, page, _) = get(
        &c,
        &mut jar,
        &format!("{base}/admin/markets/{}", f.market_id),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_of(&page);

    // A forged cookie is no session: the log-in page, nothing shown.
    let mut forged = Jar(vec![("etal_session".into(), "0".repeat(64))]);
    let (status, _, location) = get(
        &c,
        &mut forged,
        &format!("{base}/admin/markets/{}", f.market_id),
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin/login")));

    // A form without its token, or with another's, changes nothing: the stock stays.
    let stock_q =
        "query($p: UUID!, $x: UUID!) { stockLevel(producerId: $p, productId: $x) { real } }";
    let before = api
        .ok(
            &f.producer,
            stock_q,
            json!({"p": f.producer_id, "x": f.product_id}),
        )
        .await;
    let mut producer_jar = session(&api, &f.producer.user.0.to_string(), "producer").await;
    let form = |token: &'static str| {
        vec![
            ("producerId", f.producer_id.clone()),
            ("productId", f.product_id.clone()),
            ("real", "3".to_string()),
            ("back", "/admin/producers".to_string()),
            ("csrf", token.to_string()),
        ]
    };
    for token in ["", "forged"] {
        let fields = form(token);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, page, _) = post(
            &c,
            &mut producer_jar,
            &format!("{base}/admin/actions/set_stock"),
            &fields,
        )
        .await;
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("CSRF"));
    }
    // The administrator's token is not the producer's.
    let fields = vec![
        ("producerId", f.producer_id.as_str()),
        ("productId", f.product_id.as_str()),
        ("real", "3"),
        ("csrf", csrf.as_str()),
    ];
    let (status, _, _) = post(
        &c,
        &mut producer_jar,
        &format!("{base}/admin/actions/set_stock"),
        &fields,
    )
    .await;
    assert_eq!(status, 403);
    let after = api
        .ok(
            &f.producer,
            stock_q,
            json!({"p": f.producer_id, "x": f.product_id}),
        )
        .await;
    assert_eq!(before, after, "a refused form changed the stock");

    // The administrator's session cannot do what the API would refuse it either: the
    // mutation is the API's, with the administrator's authorization.
    let (status, _, location) = post(
        &c,
        &mut jar,
        &format!("{base}/admin/actions/set_stock"),
        &fields,
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/admin/markets"));
    let (_, page, _) = get(&c, &mut jar, &format!("{base}/admin/markets")).await;
    assert!(
        page.contains("Refusé") && page.contains("FORBIDDEN"),
        "{page}"
    );
    let after = api
        .ok(
            &f.producer,
            stock_q,
            json!({"p": f.producer_id, "x": f.product_id}),
        )
        .await;
    assert_eq!(before, after);

    // Another market's page: refused (403), as the API refuses its internals.
    let other = api.who(Role::MarketAdmin);
    let d = api
        .ok(
            &other,
            "mutation { createMarket(market: {name: \"Ailleurs\", place: \"Loin\", paymentMode: ON_SITE, slots: [{weekday: FRI, start: \"17:00:00\", end: \"19:00:00\", anchor: \"2026-12-04\"}]}) { marketId } }",
            json!({}),
        )
        .await;
    let elsewhere = d["createMarket"]["marketId"].as_str().unwrap();
    let (status, page, _) = get(&c, &mut jar, &format!("{base}/admin/markets/{elsewhere}")).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("FORBIDDEN") && page.contains("page-refused"));

    // Invoices download with the session as with a bearer token: 404 for what is not the
    // person's (here: no such invoice), the log-in page without a session.
    let unknown = uuid::Uuid::new_v4();
    let (status, body, _) = get(
        &c,
        &mut jar,
        &format!("{base}/admin/invoices/{unknown}/factur-x.pdf"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NOT_FOUND"));
    let (status, _, location) = get(
        &c,
        &mut Jar::default(),
        &format!("{base}/admin/invoices/{unknown}/factur-x.pdf"),
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin/login")));

    // Log-out ends the session for good (its cookie no longer opens anything).
    let stolen = jar.clone();
    let (status, _, _) = post(
        &c,
        &mut jar,
        &format!("{base}/admin/logout"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, location) =
        get(&c, &mut stolen.clone(), &format!("{base}/admin/markets")).await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin/login")));

    // `etal admin revoke` ends every session of a person.
    let mut again = session(&api, &admin, "market_admin").await;
    let (code, _, err) = etal_tests::run_etal(&api.db.url, &["admin", "revoke", "--user", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 session"), "{err}");
    let (status, _, _) = get(&c, &mut again, &format!("{base}/admin/markets")).await;
    assert_eq!(status, 303);

    // A customer cannot be given a link.
    let (code, _, err) = etal_tests::run_etal(
        &api.db.url,
        &["admin", "link", "--user", &admin, "--role", "customer"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("back office"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_failed_log_ins_from_one_address_are_limited() {
    let api = Api::start(&[("ETAL_LOGIN_RATE_PER_MINUTE", "10")]).await;
    let c = client();
    let base = &api.base;
    let mut jar = Jar::default();
    let (_, page, _) = get(&c, &mut jar, &format!("{base}/admin/login")).await;
    let csrf = csrf_of(&page);
    // Without the log-in form's token: refused before anything is looked up.
    let (status, page, _) = post(
        &c,
        &mut Jar::default(),
        &format!("{base}/admin/login"),
        &[("email", "a@b.c"), ("csrf", "x")],
    )
    .await;
    assert_eq!(status, 403, "{page}");
    let mut codes = Vec::new();
    for i in 0..100 {
        // Guessed links and unknown addresses, in turn.
        let (status, _, _) = if i % 2 == 0 {
            get(&c, &mut jar, &format!("{base}/admin/login/{:064x}", i)).await
        } else {
            post(
                &c,
                &mut jar,
                &format!("{base}/admin/login"),
                &[
                    ("email", &format!("nobody{i}@exemple.test")),
                    ("csrf", &csrf),
                ],
            )
            .await
        };
        codes.push(status);
    }
    let limited = codes.iter().filter(|c| **c == 429).count();
    let refused = codes.iter().filter(|c| **c == 403).count();
    let answered = codes.iter().filter(|c| **c == 200).count();
    eprintln!("100 attempts: {refused} bad links, {answered} answered, {limited} limited");
    // The first (at most 10 a minute, from the token bucket) pass, the rest are limited.
    assert!(limited >= 85, "{codes:?}");
    assert_eq!(limited + refused + answered, 100, "{codes:?}");
    // Nothing was sent to anyone, no session opened.
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_login_links")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_sessions")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    assert_eq!((links, sessions), (0, 0));
    // The API itself is not limited by it.
    let who = api.who(Role::Customer);
    api.ok(&who, "{ health }", json!({})).await;
}
