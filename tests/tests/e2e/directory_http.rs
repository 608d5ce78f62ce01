//! The producer guide's "Je rejoins un marché" over HTTP against `etal serve` (R-SAL-8, R-CAT-5,
//! R-CAT-4): markets of the guide's list around Saint-Astier placed at their communes'
//! (approximate) coordinates; a producer's search within 20 km on Wednesdays returns exactly the
//! Wednesday markets in that radius (computed here by the haversine formula), nearest first,
//! each with its customers count, contact and producers; the producer proposes a catalog with
//! a message, the administrator answers and accepts (the catalog is linked in the same commit),
//! and the producer's participation in the next sale works.

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{caught_up, code, fixture, Api, Who, PLACE_ORDER};
use serde_json::{json, Value};

const LOCATE: &str = "mutation($m: UUID!, $lat: Float!, $lon: Float!, $c: String!) { setMarketLocation(marketId: $m, lat: $lat, lon: $lon, commune: $c) { marketId } }";
const SEARCH: &str = "query($near: NearInput, $commune: String, $km: Float!, $day: Weekday) { markets(near: $near, commune: $commune, withinKm: $km, weekday: $day) { marketId name distanceKm customersCount contact { displayName } producers { name } slots { weekday } location { commune } } }";
const PROPOSE: &str = "mutation($m: UUID!, $c: UUID!, $msg: String!, $k: String) { proposeCatalog(marketId: $m, catalogId: $c, message: $msg, idempotencyKey: $k) { proposalId } }";
const POST: &str = "mutation($p: UUID!, $msg: String!) { postProposalMessage(proposalId: $p, message: $msg) { proposalId } }";
const ANSWER: &str = "mutation($p: UUID!, $a: ProposalAnswerInput!, $msg: String, $k: String) { answerProposal(proposalId: $p, answer: $a, message: $msg, idempotencyKey: $k) { proposalId } }";
const PROPOSAL: &str =
    "query($p: UUID!) { proposal(id: $p) { status yourSide catalogId messages { side text } } }";

/// A market of the guide: name, commune, approximate coordinates, weekday, start, end, weeks.
type GuideMarket = (
    &'static str,
    &'static str,
    f64,
    f64,
    &'static str,
    &'static str,
    &'static str,
    u32,
);

const GUIDE: &[GuideMarket] = &[
    (
        "La Cagette de Saint Médard de Mussidan",
        "Saint-Médard-de-Mussidan",
        45.0333,
        0.3500,
        "FRI",
        "17:30",
        "18:30",
        2,
    ),
    (
        "Marché Paysan Chez Nature et Saveurs",
        "Saint-Astier",
        45.1458,
        0.5286,
        "SAT",
        "11:00",
        "12:00",
        1,
    ),
    (
        "Marché Périgourdin chez Nature & Saveurs - St Astier",
        "Saint-Astier",
        45.1471,
        0.5312,
        "TUE",
        "17:30",
        "18:30",
        1,
    ),
    (
        "la cagette de la virade",
        "Vanxains",
        45.2167,
        0.2833,
        "SAT",
        "09:00",
        "12:00",
        1,
    ),
    (
        "La Dynamo - retrait à la ferme le mercredi",
        "Mensignac",
        45.2250,
        0.5617,
        "WED",
        "17:00",
        "18:30",
        1,
    ),
    (
        "CAGETTE DE LAKANAL",
        "Ribérac",
        45.2503,
        0.3386,
        "TUE",
        "17:00",
        "18:30",
        1,
    ),
    (
        "La Bergerie des Chabannes",
        "Mensignac",
        45.2301,
        0.5702,
        "FRI",
        "16:45",
        "18:00",
        1,
    ),
    (
        "Marché du mercredi de Périgueux",
        "Périgueux",
        45.1847,
        0.7214,
        "WED",
        "16:00",
        "19:00",
        1,
    ),
];
/// La Cagette de Segonzac (the fixture's market, given a Wednesday slot).
const SEGONZAC: (f64, f64) = (45.2006, 0.4286);
/// Where the producer looks from (a farm near Saint-Léon-sur-l'Isle).
const FARM: (f64, f64) = (45.10, 0.42);

fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

async fn named(api: &Api, role: Role, name: &str) -> Who {
    let who = api.who(role);
    api.ok(
        &who,
        "mutation($n: String!) { registerPerson(displayName: $n) { userId } }",
        json!({"n": name}),
    )
    .await;
    who
}

async fn market(
    api: &Api,
    admin: &Who,
    m: &(&str, &str, f64, f64, &str, &str, &str, u32),
) -> String {
    let anchor = next_weekday(m.4);
    let d = api
        .ok(
            admin,
            "mutation($m: MarketInput!) { createMarket(market: $m) { marketId } }",
            json!({"m": {"name": m.0, "place": format!("{} (bourg)", m.1), "paymentMode": "ON_SITE",
                "slots": [{"weekday": m.4, "start": m.5, "end": m.6, "everyWeeks": m.7, "anchor": anchor}]}}),
        )
        .await;
    let id = d["createMarket"]["marketId"].as_str().unwrap().to_string();
    api.ok(
        admin,
        LOCATE,
        json!({"m": id, "lat": m.2, "lon": m.3, "c": m.1}),
    )
    .await;
    id
}

fn next_weekday(code: &str) -> String {
    let mut day = chrono::Utc::now().date_naive() + chrono::Duration::days(1);
    while graphql_common::weekday_code(day) != code {
        day += chrono::Duration::days(1);
    }
    day.to_string()
}

fn names(d: &Value) -> Vec<String> {
    d["markets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_sal_8_r_cat_5_a_producer_finds_a_market_proposes_a_catalog_and_sells_there() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    api.ok(
        &f.admin,
        "mutation { registerPerson(displayName: \"Florian P.\") { userId } }",
        json!({}),
    )
    .await;
    api.ok(
        &f.producer,
        "mutation { registerPerson(displayName: \"Le jardin forêt de Cléopée\") { userId } }",
        json!({}),
    )
    .await;
    // The fixture's market is La Cagette de Segonzac, on Wednesdays too.
    api.ok(
        &f.admin,
        "mutation($m: UUID!, $s: SlotInput!) { addSlot(marketId: $m, slot: $s) { marketId } }",
        json!({"m": f.market_id, "s": {"weekday": "WED", "start": "18:00", "end": "19:00", "everyWeeks": 1, "anchor": next_weekday("WED")}}),
    )
    .await;
    api.ok(
        &f.admin,
        LOCATE,
        json!({"m": f.market_id, "lat": SEGONZAC.0, "lon": SEGONZAC.1, "c": "Segonzac"}),
    )
    .await;
    // Two customers order there: its card counts them.
    for (i, who) in [&f.customer, &api.who(Role::Customer)]
        .into_iter()
        .enumerate()
    {
        api.ok(
            who,
            PLACE_ORDER,
            json!({"s": f.sale_id, "k": format!("seg-{i}"), "lines": [
                {"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}]}),
        )
        .await;
    }
    let mut admins = Vec::new();
    for n in ["Emilie D.", "Matthieu D.", "Christelle B.", "Laura F."] {
        admins.push(named(&api, Role::MarketAdmin, n).await);
    }
    let mut placed = vec![("Segonzac".to_string(), SEGONZAC, true)];
    let mut ids = std::collections::HashMap::new();
    for (i, m) in GUIDE.iter().enumerate() {
        let id = market(&api, &admins[i % admins.len()], m).await;
        ids.insert(m.0, id);
        placed.push((m.0.to_string(), (m.2, m.3), m.4 == "WED"));
    }
    caught_up(&api).await;

    // The search: the Wednesday markets within 20 km, nearest first, by an independent
    // computation of the distances.
    let newcomer = named(&api, Role::Producer, "GAEC des Trois Chênes").await;
    let mut expected: Vec<(String, f64)> = placed
        .iter()
        .filter(|(_, _, wed)| *wed)
        .map(|(n, at, _)| (n.clone(), haversine_km(FARM, *at)))
        .filter(|(_, km)| *km <= 20.0)
        .collect();
    expected.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert!(
        expected.len() >= 2,
        "the geometry has Wednesday markets in range: {expected:?}"
    );
    assert!(
        placed
            .iter()
            .any(|(_, at, wed)| *wed && haversine_km(FARM, *at) > 20.0),
        "and one beyond"
    );
    let d = api
        .ok(
            &newcomer,
            SEARCH,
            json!({"near": {"lat": FARM.0, "lon": FARM.1}, "km": 20.0, "day": "WED"}),
        )
        .await;
    assert_eq!(
        names(&d),
        expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
        "{d}"
    );
    for (card, (_, km)) in d["markets"].as_array().unwrap().iter().zip(&expected) {
        let got = card["distanceKm"].as_f64().unwrap();
        assert!((got - km).abs() <= 0.06, "{got} vs {km}");
        assert!(card["slots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["weekday"] == "WED"));
    }
    let segonzac = d["markets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["marketId"] == f.market_id.as_str())
        .expect("Segonzac is within 20 km")
        .clone();
    assert_eq!(segonzac["customersCount"], 2, "{segonzac}");
    assert_eq!(segonzac["contact"]["displayName"], "Florian P.");
    assert_eq!(
        segonzac["producers"],
        json!([{"name": "Le jardin forêt de Cléopée"}])
    );
    // Every day, wider: all the markets in range, nearest first.
    let d = api
        .ok(
            &newcomer,
            SEARCH,
            json!({"near": {"lat": FARM.0, "lon": FARM.1}, "km": 20.0}),
        )
        .await;
    let mut all: Vec<(String, f64)> = placed
        .iter()
        .map(|(n, at, _)| (n.clone(), haversine_km(FARM, *at)))
        .filter(|(_, km)| *km <= 20.0)
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(
        names(&d),
        all.iter().map(|e| e.0.clone()).collect::<Vec<_>>()
    );
    // By commune: the two markets of Saint-Astier, however it is written.
    let d = api
        .ok(
            &newcomer,
            SEARCH,
            json!({"commune": "saint astier", "km": 1.0}),
        )
        .await;
    let mut got = names(&d);
    got.sort();
    assert_eq!(
        got,
        vec![
            "Marché Paysan Chez Nature et Saveurs",
            "Marché Périgourdin chez Nature & Saveurs - St Astier"
        ]
    );
    // Bad searches: a clear error each.
    for (vars, want) in [
        (
            json!({"near": {"lat": FARM.0, "lon": FARM.1}, "km": 0.0}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"near": {"lat": FARM.0, "lon": FARM.1}, "km": 500.0}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"near": {"lat": 95.0, "lon": 0.0}, "km": 5.0}),
            "BAD_USER_INPUT",
        ),
        (json!({"km": 5.0}), "BAD_USER_INPUT"),
        (json!({"commune": "Atlantis", "km": 5.0}), "NOT_FOUND"),
    ] {
        let r = api.call(&newcomer, SEARCH, vars.clone()).await;
        assert_eq!(code(&r).as_deref(), Some(want), "{vars} -> {r}");
    }
    let bad = api
        .call(
            &f.admin,
            LOCATE,
            json!({"m": f.market_id, "lat": 45.0, "lon": 200.0, "c": "Segonzac"}),
        )
        .await;
    assert_eq!(
        code(&bad).as_deref(),
        Some("MARKET_INVALID_LOCATION"),
        "{bad}"
    );
    let not_admin = api
        .call(
            &admins[0],
            LOCATE,
            json!({"m": f.market_id, "lat": 45.0, "lon": 0.4, "c": "Segonzac"}),
        )
        .await;
    assert_eq!(
        code(&not_admin).as_deref(),
        Some("FORBIDDEN"),
        "{not_admin}"
    );

    // The newcomer's catalog, proposed to Segonzac with a message.
    let d = api
        .ok(
            &newcomer,
            graphql_common::OPEN_ACCOUNT,
            json!({"k": "open-newcomer"}),
        )
        .await;
    let producer_id = d["openAccount"]["producerId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &newcomer,
            "mutation($p: UUID!, $input: ProductInput!) { addProduct(producerId: $p, product: $input) { productId } }",
            json!({"p": producer_id, "input": {"name": "Oeufs x6", "unit": "boîte", "priceInclVat": "3.20"}}),
        )
        .await;
    let eggs = d["addProduct"]["productId"].as_str().unwrap().to_string();
    let d = api
        .ok(
            &newcomer,
            "mutation($p: UUID!) { createCatalog(producerId: $p, name: \"Oeufs\") { catalogId } }",
            json!({"p": producer_id}),
        )
        .await;
    let catalog = d["createCatalog"]["catalogId"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &newcomer,
        "mutation($c: UUID!, $x: UUID!) { addOffer(catalogId: $c, productId: $x, priceInclVat: \"3.20\") { catalogId } }",
        json!({"c": catalog, "x": eggs}),
    )
    .await;
    let propose = json!({"m": f.market_id, "c": catalog, "msg": "Bonjour, je produis des oeufs bio à 12 km.", "k": "p-1"});
    let d = api.ok(&newcomer, PROPOSE, propose.clone()).await;
    let proposal = d["proposeCatalog"]["proposalId"]
        .as_str()
        .unwrap()
        .to_string();
    let again = api.ok(&newcomer, PROPOSE, propose.clone()).await;
    assert_eq!(
        again["proposeCatalog"]["proposalId"], proposal,
        "a retry names the same proposal"
    );
    // Someone else's catalog cannot be proposed; a customer cannot propose.
    let d = api
        .call(
            &newcomer,
            PROPOSE,
            json!({"m": f.market_id, "c": f.catalog_id, "msg": "moi aussi"}),
        )
        .await;
    assert_eq!(code(&d).as_deref(), Some("FORBIDDEN"), "{d}");
    let d = api
        .call(
            &f.customer,
            PROPOSE,
            json!({"m": f.market_id, "c": catalog, "msg": "x"}),
        )
        .await;
    assert_eq!(code(&d).as_deref(), Some("FORBIDDEN"), "{d}");
    // The administrator sees it; strangers do not.
    let list =
        "query($m: UUID!) { proposals(marketId: $m) { id status messagesCount producerId } }";
    let d = api.ok(&f.admin, list, json!({"m": f.market_id})).await;
    assert_eq!(
        d["proposals"],
        json!([{"id": proposal, "status": "open", "messagesCount": 1, "producerId": producer_id}])
    );
    for who in [&admins[0], &f.producer] {
        let d = api.call(who, PROPOSAL, json!({"p": proposal})).await;
        assert_eq!(code(&d).as_deref(), Some("FORBIDDEN"), "{d}");
    }
    // They talk it over.
    api.ok(
        &f.admin,
        POST,
        json!({"p": proposal, "msg": "Quelle quantité par semaine ?"}),
    )
    .await;
    api.ok(
        &newcomer,
        POST,
        json!({"p": proposal, "msg": "Une trentaine de boîtes."}),
    )
    .await;
    let empty = api
        .call(&newcomer, POST, json!({"p": proposal, "msg": "  "}))
        .await;
    assert_eq!(
        code(&empty).as_deref(),
        Some("PROPOSAL_INVALID_MESSAGE"),
        "{empty}"
    );
    // Only the market's administrator answers.
    for who in [&newcomer, &admins[1]] {
        let d = api
            .call(who, ANSWER, json!({"p": proposal, "a": "ACCEPT"}))
            .await;
        assert_eq!(code(&d).as_deref(), Some("FORBIDDEN"), "{d}");
    }
    // Accepted: five copies of the answer with one key link the catalog once.
    let accept = json!({"p": proposal, "a": "ACCEPT", "msg": "Bienvenue !", "k": "accept-1"});
    let copies: Vec<_> = (0..5)
        .map(|_| {
            let (api, admin, v) = (&api, f.admin.clone(), accept.clone());
            async move { api.call(&admin, ANSWER, v).await }
        })
        .collect();
    for r in futures::future::join_all(copies).await {
        assert!(r.get("errors").is_none(), "{r}");
    }
    let links: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'CatalogLinked' \
         AND payload -> 'CatalogLinked' ->> 'catalog' = $2",
    )
    .bind(&f.market_id)
    .bind(&catalog)
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(links, 1);
    let d = api.ok(&newcomer, PROPOSAL, json!({"p": proposal})).await;
    assert_eq!(d["proposal"]["status"], "ACCEPTED");
    assert_eq!(d["proposal"]["yourSide"], "PRODUCER");
    let sides: Vec<&str> = d["proposal"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["side"].as_str().unwrap())
        .collect();
    assert_eq!(sides, vec!["PRODUCER", "MARKET", "PRODUCER", "MARKET"]);
    let late = api
        .call(&f.admin, ANSWER, json!({"p": proposal, "a": "DECLINE"}))
        .await;
    assert_eq!(code(&late).as_deref(), Some("PROPOSAL_CLOSED"), "{late}");
    let d = api
        .call(&newcomer, PROPOSE, propose_with_key(&propose, "p-2"))
        .await;
    assert_eq!(code(&d).as_deref(), Some("CATALOG_ALREADY_LINKED"), "{d}");
    // The producer's dashboard: the market that linked the catalog, and the proposals.
    let d = api
        .ok(
            &newcomer,
            "query($p: UUID!) { linkedMarkets(producerId: $p) { marketId name catalogIds } proposals(producerId: $p) { id status } }",
            json!({"p": producer_id}),
        )
        .await;
    assert_eq!(
        d["linkedMarkets"],
        json!([{"marketId": f.market_id, "name": "Segonzac", "catalogIds": [catalog]}])
    );
    assert_eq!(
        d["proposals"],
        json!([{"id": proposal, "status": "accepted"}])
    );
    // And they take part in the next sale, whose customers order their eggs.
    api.ok(
        &newcomer,
        "mutation($c: UUID!, $s: UUID!) { participate(catalogId: $c, saleIds: [$s]) { position } }",
        json!({"c": catalog, "s": f.sale_id}),
    )
    .await;
    let d = api
        .ok(
            &api.who(Role::Customer),
            PLACE_ORDER,
            json!({"s": f.sale_id, "k": "eggs", "lines": [{"catalogId": catalog, "productId": eggs, "quantity": 2}]}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "6.40", "{d}");
    caught_up(&api).await;
    let d = api
        .ok(
            &newcomer,
            SEARCH,
            json!({"near": {"lat": FARM.0, "lon": FARM.1}, "km": 20.0, "day": "WED"}),
        )
        .await;
    let card = d["markets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["marketId"] == f.market_id.as_str())
        .unwrap()
        .clone();
    let mut sellers: Vec<&str> = card["producers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    sellers.sort();
    assert_eq!(
        sellers,
        vec!["GAEC des Trois Chênes", "Le jardin forêt de Cléopée"]
    );

    // Declined elsewhere: nothing linked. Withdrawn: closed.
    let mensignac = &ids["La Dynamo - retrait à la ferme le mercredi"];
    let d = api
        .ok(
            &newcomer,
            PROPOSE,
            json!({"m": mensignac, "c": catalog, "msg": "Et chez vous ?"}),
        )
        .await;
    let declined = d["proposeCatalog"]["proposalId"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &admins[0],
        ANSWER,
        json!({"p": declined, "a": "DECLINE", "msg": "Complet, désolé."}),
    )
    .await;
    let d = api
        .ok(
            &admins[0],
            "query($m: UUID!) { market(id: $m) { linkedCatalogs { catalogId } } }",
            json!({"m": mensignac}),
        )
        .await;
    assert_eq!(d["market"]["linkedCatalogs"], json!([]));
    let ribérac = &ids["CAGETTE DE LAKANAL"];
    let d = api
        .ok(
            &newcomer,
            PROPOSE,
            json!({"m": ribérac, "c": catalog, "msg": "Bonjour"}),
        )
        .await;
    let withdrawn = d["proposeCatalog"]["proposalId"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &newcomer,
        "mutation($p: UUID!) { withdrawProposal(proposalId: $p) { proposalId } }",
        json!({"p": withdrawn}),
    )
    .await;
    caught_up(&api).await;
    let d = api
        .ok(
            &newcomer,
            "query($p: UUID!) { proposals(producerId: $p) { id status } }",
            json!({"p": producer_id}),
        )
        .await;
    let mut statuses: Vec<(String, String)> = d["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    statuses.sort();
    let mut want = vec![
        (proposal.clone(), "accepted".to_string()),
        (declined, "declined".to_string()),
        (withdrawn, "withdrawn".to_string()),
    ];
    want.sort();
    assert_eq!(statuses, want);

    // R-SAL-1: the AMAP flag, set by an administrator, is carried by the sales generated after.
    let medard = &ids["La Cagette de Saint Médard de Mussidan"];
    let by_other = api
        .call(
            &admins[1],
            "mutation($m: UUID!) { setAmap(marketId: $m, amap: true) { marketId } }",
            json!({"m": medard}),
        )
        .await;
    assert_eq!(code(&by_other).as_deref(), Some("FORBIDDEN"), "{by_other}");
    api.ok(
        &admins[0],
        "mutation($m: UUID!) { setAmap(marketId: $m, amap: true) { marketId market { amap } } }",
        json!({"m": medard}),
    )
    .await;
    let friday = next_weekday("FRI");
    let d = api
        .ok(
            &admins[0],
            "mutation($m: UUID!, $d: Date!) { generateSales(marketId: $m, from: $d, to: $d) { sales { amap } } }",
            json!({"m": medard, "d": friday}),
        )
        .await;
    assert_eq!(d["generateSales"]["sales"], json!([{"amap": true}]), "{d}");

    // R-ACC-6: an erased owner's name leaves the cards.
    api.ok(
        &f.producer,
        "mutation($u: UUID!) { erasePerson(userId: $u) { userId } }",
        json!({"u": f.producer.user.0}),
    )
    .await;
    let d = api
        .ok(
            &newcomer,
            "query($m: UUID!) { marketCard(marketId: $m) { producers { name } } }",
            json!({"m": f.market_id}),
        )
        .await;
    let mut sellers: Vec<&str> = d["marketCard"]["producers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    sellers.sort();
    assert_eq!(sellers, vec!["(name erased)", "GAEC des Trois Chênes"]);
}

fn propose_with_key(v: &Value, key: &str) -> Value {
    let mut v = v.clone();
    v["k"] = json!(key);
    v
}
