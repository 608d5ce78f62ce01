//! Webhooks on the fake clock: an endpoint that keeps failing is retried with backoff, and
//! after 24 h its delivery fails, the endpoint is disabled and its owner told by e-mail (here
//! written to a folder, read back with mailparse); a replay enables it again and delivers once
//! it answers.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{NaiveDate, TimeZone, Utc, Weekday};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::webhooks::Owner;
use etal_app::Ctx;
use etal_domain::market::PaymentMode;
use etal_domain::{Role, VatRate};
use etal_tests::world::{actor, World};

async fn answer(State(code): State<Arc<AtomicU16>>) -> StatusCode {
    StatusCode::from_u16(code.load(Ordering::SeqCst)).unwrap()
}

async fn round(w: &World) -> usize {
    for p in etal_projections::all() {
        etal_tests::catch_up_all(&w.db.pool, p.as_ref(), 500).await;
    }
    w.app.deliver_webhooks().await.expect("a webhooks round")
}

async fn delivery(w: &World) -> (String, i32) {
    sqlx::query_as("SELECT status, attempts FROM webhook_deliveries")
        .fetch_one(&w.db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_24_hours_is_disabled_and_a_replay_enables_it() {
    let code = Arc::new(AtomicU16::new(503));
    let app = axum::Router::new()
        .route("/hook", post(answer))
        .with_state(code.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut w = World::at(Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()).await;
    w.app.settings.webhooks_allow_insecure = true;
    let mail_dir = std::env::temp_dir().join(format!("etal-mail-{}", uuid::Uuid::new_v4()));
    w.app.settings.mail.transport = etal_app::notify::MailTransport::Folder(mail_dir.clone());
    let (market, admin) = w
        .market(
            "Segonzac",
            Weekday::Wed,
            (18, 0),
            (19, 0),
            1,
            NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(),
            PaymentMode::OnSite,
            false,
        )
        .await;
    let p = w.producer(etal_domain::config::PlanKind::Pro).await;
    let honey = w.product(&p, "Miel", "8.50", VatRate::Reduced5_5).await;
    let catalog = w.catalog(&p, "Le rucher", &[(honey, "8.50")]).await;
    let day = NaiveDate::from_ymd_opt(2026, 3, 11).unwrap();
    let sales = w
        .app
        .generate_sales(&Ctx::new(admin), market, day, day)
        .await
        .unwrap()
        .value;
    w.join(admin, market, &p, catalog, &sales).await;
    w.app
        .register_person(
            admin.user,
            &etal_app::people::PersonalData {
                display_name: "Claire Morel".into(),
                email: Some("claire@cagette.test".into()),
                phone: None,
            },
        )
        .await
        .unwrap();
    // The market's administrator follows its orders.
    let (endpoint, _) = w
        .app
        .register_webhook(
            &Ctx::new(admin),
            Owner::Market(market),
            &url,
            vec!["OrderPlaced".into()],
        )
        .await
        .unwrap();
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 5, 9, 0, 0).unwrap())
        .await;
    w.app
        .place_order(
            &Ctx::new(actor(Role::Customer)),
            sales[0],
            &[LineRequest {
                catalog,
                product: honey,
                quantity: 1,
            }],
            DeliveryRequest::PickUp,
        )
        .await
        .unwrap();
    assert_eq!(round(&w).await, 0);
    assert_eq!(delivery(&w).await, ("pending".into(), 1));
    // Not due again before its backoff; due after it.
    assert_eq!(round(&w).await, 0);
    assert_eq!(delivery(&w).await.1, 1);
    w.clock.set(w.now() + chrono::Duration::seconds(2));
    round(&w).await;
    assert_eq!(delivery(&w).await, ("pending".into(), 2));
    // A day later, still failing: the delivery fails, the endpoint is disabled.
    w.clock.set(w.now() + chrono::Duration::hours(24));
    round(&w).await;
    assert_eq!(delivery(&w).await, ("failed".into(), 3));
    let listed = w
        .app
        .webhook_endpoints(&Ctx::new(admin), Owner::Market(market))
        .await
        .unwrap();
    assert!(!listed[0].enabled, "{listed:?}");
    assert!(listed[0]
        .disabled_reason
        .as_deref()
        .unwrap_or_default()
        .contains("24 h"));
    // Its owner (the market's administrator) is told, once.
    let report = w.app.deliver_notifications().await.unwrap();
    assert!(report.sent >= 1, "{report:?}");
    let told: Vec<String> = std::fs::read_dir(&mail_dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .filter_map(|raw| {
            let m = mailparse::parse_mail(&raw).ok()?;
            let text = m
                .subparts
                .iter()
                .flat_map(|p| std::iter::once(p).chain(p.subparts.iter()))
                .find(|p| p.ctype.mimetype == "text/plain")?
                .get_body()
                .ok()?;
            text.contains("désactivé").then_some(text)
        })
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains(&url) && told[0].contains("Claire Morel"),
        "{}",
        told[0]
    );
    assert_eq!(w.app.deliver_notifications().await.unwrap().sent, 0, "once");
    // Fixed and replayed: delivered.
    code.store(200, Ordering::SeqCst);
    let event_id = w
        .app
        .webhook_deliveries(&Ctx::new(admin), endpoint.id)
        .await
        .unwrap()[0]
        .event_id
        .clone();
    w.app
        .replay_webhook(&Ctx::new(admin), endpoint.id, &event_id)
        .await
        .unwrap();
    assert_eq!(round(&w).await, 1);
    assert_eq!(delivery(&w).await, ("delivered".into(), 4));
    assert!(
        w.app
            .webhook_endpoints(&Ctx::new(admin), Owner::Market(market))
            .await
            .unwrap()[0]
            .enabled
    );
    let _ = std::fs::remove_dir_all(&mail_dir);
}
