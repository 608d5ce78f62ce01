//! The real `etal serve` process over HTTP: GraphiQL, GraphQL, /health, /metrics.

use std::sync::Arc;
use std::time::Duration;

use etal_domain::{Actor, SystemClock};
use etal_store::{CommandBus, CommandContext};
use etal_tests::tally::{Tally, TallyCommand};
use etal_tests::{spawn_server, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_graphiql_graphql_health_and_metrics() {
    let db = TestDb::new(5).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    bus.execute::<Tally>(
        "m",
        TallyCommand::AddMany {
            tag: "x".into(),
            count: 4,
        },
        &(),
        &CommandContext::new(Actor::system()),
    )
    .await
    .unwrap();
    let (_server, base) = spawn_server(&db.url, &[]).await;
    let http = reqwest::Client::new();

    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert!(page.status().is_success());
    assert!(page
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("graphiql"));

    assert_eq!(
        http.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok\n"
    );

    // The projector runs in the server: the metrics catch up with the 4 events.
    let mut metrics = String::new();
    for _ in 0..400 {
        metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("etal_events_total{aggregate_type=\"tally\",event_type=\"Added\"} 4") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("# TYPE etal_events_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("etal_events_total{aggregate_type=\"tally\",event_type=\"Added\"} 4"),
        "{metrics}"
    );

    let body: serde_json::Value = http
        .post(format!("{base}/graphql"))
        .json(&serde_json::json!({"query": "{ health eventCounts { aggregateType eventType events } projections { name eventsApplied } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["health"], "ok", "{body}");
    assert_eq!(body["data"]["eventCounts"][0]["events"], "4", "{body}");
    assert_eq!(body["data"]["projections"][0]["name"], "event_counts");

    // A body over the limit is refused, not processed.
    let huge = "x".repeat(2 * 1024 * 1024);
    let r = http
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .body(format!("{{\"query\": \"{huge}\"}}"))
        .send()
        .await;
    // The server answers 413 as soon as the declared length is over the limit and may close
    // the connection while the client still writes: either way nothing is processed.
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    // A new connection: the one the 413 was sent on may have been closed by the server while
    // the pool kept it.
    let fresh = reqwest::Client::new();
    assert_eq!(
        fresh
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200,
        "the server still serves"
    );
}

/// `DEMO=1` seeds the worked example on an empty store: markets, producers, sales, orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_seeds_the_worked_example_once() {
    let db = TestDb::new(5).await;
    let (_server, _base) = spawn_server(&db.url, &[("DEMO", "1")]).await;
    let count = |t: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE event_type = $1")
                .bind(t)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("MarketCreated").await, 3);
    assert_eq!(count("AccountOpened").await, 14);
    assert!(count("SalePlanned").await >= 4);
    let people: i64 = sqlx::query_scalar("SELECT count(*) FROM people")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    // 3 market administrators and 14 producers (with the demo addresses), 60 customers.
    assert_eq!(people, 77);
    // What seeding writes (the scheduler's own work, such as the sales it generates ahead
    // each day, may go on between the two starts).
    let seeded = || {
        let pool = db.pool.clone();
        async move {
            let events: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM events WHERE event_type IN \
                 ('MarketCreated', 'AccountOpened', 'ProductAdded', 'OrderPlaced')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            let people: i64 = sqlx::query_scalar("SELECT count(*) FROM people")
                .fetch_one(&pool)
                .await
                .unwrap();
            (events, people)
        }
    };
    let before = seeded().await;
    drop(_server);
    let (_again, _) = spawn_server(&db.url, &[("DEMO", "1")]).await;
    assert_eq!(seeded().await, before, "a second start seeds nothing");
}
