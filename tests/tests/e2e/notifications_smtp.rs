//! R-NOT-1..4 against a real SMTP server (PyPI's aiosmtpd, from the `.venv` that
//! `scripts/tools.sh` makes; messages land in a Maildir the test reads with `mailparse`), on the
//! fake clock: a customer's receipt, the producer's recap at the close of the order period with
//! its CSV attachment compared with the recap read model, a cut with its amounts, the payout
//! statement. Exactly once: the server down for a while (the sender retries with backoff and
//! delivers once it is back), a rebuild of the `notifications` projection (nothing sent again),
//! an erased person (nothing sent), a person's preferences (the legal messages always go).

use crate::smtp_sink;

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc, Weekday};
use etal_app::notify::{MailSettings, MailTransport};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::people::PersonalData;
use etal_app::Ctx;
use etal_domain::ids::{CatalogId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::{Role, VatRate};
use etal_projections::order_recaps::{self, Scope};
use etal_tests::world::{actor, World};
use smtp_sink::{parse, Mail, Smtp};

/// Catches every projection up, then runs the sender once; a message given up fails the test
/// with its error.
async fn round(w: &World) -> etal_app::notify::NotifyReport {
    for p in etal_projections::all() {
        etal_tests::catch_up_all(&w.db.pool, p.as_ref(), 500).await;
    }
    let r = w.app.deliver_notifications().await.expect("a sender round");
    if r.failed > 0 {
        let errors: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT status, last_error FROM notification_deliveries WHERE status = 'failed'",
        )
        .fetch_all(&w.db.pool)
        .await
        .unwrap();
        panic!("messages given up: {errors:?}");
    }
    r
}

/// Messages received, by Message-ID (each must be there once).
fn by_id(smtp: &Smtp) -> BTreeMap<String, Mail> {
    let mut out = BTreeMap::new();
    for raw in smtp.received() {
        let m = parse(&raw);
        let id = m.message_id.clone();
        assert!(out.insert(id.clone(), m).is_none(), "{id} received twice");
    }
    out
}

fn with_subject<'a>(mails: &'a BTreeMap<String, Mail>, needle: &str) -> Vec<&'a Mail> {
    mails
        .values()
        .filter(|m| m.subject.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_not_1_to_4_messages_reach_a_real_smtp_server_once() {
    let mut smtp = Smtp::start().await;
    let mut w = World::at(Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()).await;
    w.app.settings.mail = MailSettings {
        transport: MailTransport::Smtp(smtp.url()),
        from: "etal <ne-pas-repondre@etal.test>".into(),
        public_url: "https://etal.test".into(),
    };
    let register = |name: &str, email: &str| PersonalData {
        display_name: name.into(),
        email: Some(email.into()),
        phone: None,
    };
    // An online market on Wednesdays; a producer with honey (stock 10).
    let (market, admin) = w
        .market(
            "La Cagette de Segonzac",
            Weekday::Wed,
            (18, 0),
            (19, 0),
            1,
            NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(),
            PaymentMode::Online,
            false,
        )
        .await;
    w.app
        .register_person(admin.user, &register("Claire Morel", "claire@cagette.test"))
        .await
        .unwrap();
    let p = w.producer(etal_domain::config::PlanKind::Pro).await;
    w.app
        .register_person(p.actor.user, &register("Miel Bouvier", "miel@ferme.test"))
        .await
        .unwrap();
    let honey = w
        .product(&p, "Miel 500 g", "8.50", VatRate::Reduced5_5)
        .await;
    w.app
        .set_stock(&p.ctx(), p.id, honey, Some(10))
        .await
        .unwrap();
    let catalog: CatalogId = w.catalog(&p, "Le rucher", &[(honey, "8.50")]).await;
    let day = NaiveDate::from_ymd_opt(2026, 3, 11).unwrap();
    let sales: Vec<SaleId> = w
        .app
        .generate_sales(&Ctx::new(admin), market, day, day)
        .await
        .unwrap()
        .value;
    w.join(admin, market, &p, catalog, &sales).await;
    let sale = sales[0];
    // The period opens a week before the sale: two customers order.
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 5, 9, 0, 0).unwrap())
        .await;
    let jeanne = actor(Role::Customer);
    let paul = actor(Role::Customer);
    w.app
        .register_person(
            jeanne.user,
            &register("Jeanne Martin", "jeanne@exemple.test"),
        )
        .await
        .unwrap();
    w.app
        .register_person(paul.user, &register("Paul Durand", "paul@exemple.test"))
        .await
        .unwrap();
    let order = |who: etal_domain::Actor, q: i64| {
        let app = w.app.clone();
        async move {
            app.place_order(
                &Ctx::new(who),
                sale,
                &[LineRequest {
                    catalog,
                    product: honey,
                    quantity: q,
                }],
                DeliveryRequest::PickUp,
            )
            .await
            .expect("order")
            .value
            .order
        }
    };
    let o_jeanne = order(jeanne, 3).await;
    let o_paul = order(paul, 1).await;
    // Another producer asks to join the market: its administrator is told.
    let p2 = w.producer(etal_domain::config::PlanKind::Pro).await;
    let eggs = w
        .product(&p2, "Oeufs x6", "3.20", VatRate::Reduced5_5)
        .await;
    let c2 = w.catalog(&p2, "La basse-cour", &[(eggs, "3.20")]).await;
    w.app
        .propose_catalog(&p2.ctx(), market, c2, "Bonjour, nos oeufs bio ?")
        .await
        .unwrap();
    let r = round(&w).await;
    // Two receipts and the request now; two reminders held until the day before the pick-up.
    assert_eq!((r.taken_in, r.sent), (5, 3), "{r:?}");
    let mails = by_id(&smtp);
    let request = with_subject(&mails, "Demande d'un producteur");
    assert_eq!(request.len(), 1);
    assert!(
        request[0].to.contains("claire@cagette.test")
            && request[0].text.contains("« La basse-cour »")
            && request[0].text.contains("Bonjour, nos oeufs bio ?"),
        "{:?}",
        request[0]
    );
    let mails = by_id(&smtp);
    let receipts = with_subject(&mails, "Votre commande n°");
    assert_eq!(receipts.len(), 2, "{mails:#?}");
    let jeanne_receipt = receipts
        .iter()
        .find(|m| m.to.contains("jeanne@exemple.test"))
        .expect("Jeanne's receipt");
    assert!(
        jeanne_receipt.text.contains("3 x Miel 500 g : 25,50")
            && jeanne_receipt.text.contains("Total : 25,50")
            && jeanne_receipt.subject.contains("La Cagette de Segonzac"),
        "{jeanne_receipt:#?}"
    );
    assert!(jeanne_receipt.html.contains("<strong>25,50"));

    // Paul turns off what he may (nothing of his is optional: receipts are legal).
    let refused = w
        .app
        .set_notification_preference(paul.user, "order_placed", false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "NOTIFICATION_REQUIRED");

    // The day before the pick-up (Wednesday 11, 18:00 in Paris): the reminders.
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 10, 17, 30, 0).unwrap())
        .await;
    let r = round(&w).await;
    // The reminders, and the recap if the period closed already (the default period closes
    // a day before the sale).
    assert!(r.sent >= 2, "{r:?}");
    let mails = by_id(&smtp);
    let reminders = with_subject(&mails, "Demain");
    assert_eq!(reminders.len(), 2);
    assert!(
        reminders[0]
            .text
            .contains("demain, le 11/03/2026 à 18:00, Salle des fêtes, La Cagette de Segonzac"),
        "{}",
        reminders[0].text
    );

    // The close of the period (the sale starts on the 11th at 18:00): the producer's recap.
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 11, 17, 30, 0).unwrap())
        .await;
    round(&w).await;
    let mails = by_id(&smtp);
    let recap = with_subject(&mails, "Récapitulatif");
    assert_eq!(recap.len(), 1);
    let recap = recap[0];
    assert!(recap.to.contains("miel@ferme.test"), "{recap:?}");
    println!("{}\n{}", recap.subject, recap.text);
    assert!(recap.text.contains("Miel 500 g : 4"), "{}", recap.text);
    assert_eq!(recap.attachments.len(), 1, "the CSV");
    let (name, csv_bytes) = &recap.attachments[0];
    assert!(name.ends_with(".csv"));
    // The CSV is the recap by customer of the read model, line for line.
    let mut rows = csv::Reader::from_reader(csv_bytes.as_slice());
    let got: Vec<(String, String, String, i64, String)> =
        rows.deserialize().map(|r| r.expect("a CSV row")).collect();
    let scopes = [Scope { sale, catalog }];
    let expected: Vec<(String, String, String, i64, String)> =
        order_recaps::recap_by_customer(&w.db.pool, &scopes)
            .await
            .unwrap()
            .into_iter()
            .flat_map(|o| {
                o.lines.into_iter().map(move |l| {
                    (
                        o.number.clone(),
                        o.customer.clone(),
                        l.name,
                        l.quantity,
                        l.amount_incl_vat.to_string(),
                    )
                })
            })
            .collect();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 2);

    // A cut: Jeanne gets 2 pots instead of 3, and is told the amounts (and, once the refund
    // is recorded, that too).
    w.app
        .adjust_quantity(&p.ctx(), o_jeanne, 0, 2)
        .await
        .unwrap();
    // The SMTP server is down for a while: the messages wait, retried with backoff.
    smtp.down();
    let r = round(&w).await;
    assert!(r.sent == 0 && r.retried >= 1, "{r:?}");
    let waiting = r.retried;
    let r = round(&w).await;
    assert_eq!(
        (r.sent, r.retried),
        (0, 0),
        "not due before their backoff: {r:?}"
    );
    smtp.up().await;
    w.clock.set(w.now() + chrono::Duration::seconds(3));
    let r = round(&w).await;
    assert_eq!(r.sent, waiting, "{r:?}");
    let mails = by_id(&smtp);
    let changed = with_subject(&mails, "a changé");
    assert_eq!(changed.len(), 1, "once");
    assert!(
        changed[0]
            .text
            .contains("Miel 500 g, 3 -> 2 (25,50 € -> 17,00 €)"),
        "{}",
        changed[0].text
    );
    assert!(
        changed[0].text.contains("remboursé(e) de 8,50"),
        "{}",
        changed[0].text
    );
    let attempts: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT n.kind, d.status, d.attempts FROM notification_deliveries d JOIN notifications n USING (message_id) \
         WHERE n.kind = 'order_changed'",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(attempts, vec![("order_changed".into(), "sent".into(), 2)]);

    // An erased person gets nothing: Paul's pot is cut after he left.
    let before = smtp.received().len();
    w.app.erase_person(paul.user).await.unwrap();
    w.app.adjust_quantity(&p.ctx(), o_paul, 0, 0).await.unwrap();
    let r = round(&w).await;
    assert_eq!(r.sent, 0, "an erased person gets nothing: {r:?}");
    assert!(r.skipped >= 1, "{r:?}");
    assert_eq!(smtp.received().len(), before);

    // Distribution, validation, and the Monday payout: the statement.
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 11, 19, 30, 0).unwrap())
        .await;
    w.app
        .validate_sale(&Ctx::new(admin), sale)
        .await
        .expect("validate");
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 16, 8, 0, 0).unwrap())
        .await;
    // R-AUD-3: a checkpoint of the sealed history is signed before the statement goes out.
    let signer = etal_store::seal::note::CheckpointSigner::generate("etal-test").unwrap();
    w.app.settings.seal.signer = Some(signer.clone());
    while !etal_tests::passed_every_event(&w.db.pool, etal_projections::sealer::NAME).await {
        etal_projections::catch_up(
            &w.db.pool,
            &etal_projections::sealer::Sealer::default(),
            None,
            None,
            &|_| {},
        )
        .await
        .unwrap();
    }
    let checkpoint = w
        .app
        .sign_checkpoint()
        .await
        .unwrap()
        .expect("a checkpoint");
    let r = round(&w).await;
    assert!(r.sent >= 1, "{r:?}");
    let mails = by_id(&smtp);
    // The market's administrator was told the sale was ready to validate.
    let to_validate = with_subject(&mails, "est à valider");
    assert_eq!(to_validate.len(), 1, "{mails:#?}");
    assert!(
        to_validate[0].to.contains("claire@cagette.test")
            && to_validate[0]
                .text
                .contains("La distribution du 11/03/2026 de La Cagette de Segonzac est terminée"),
        "{:?}",
        to_validate[0]
    );
    let statement = with_subject(&mails, "Votre versement");
    assert_eq!(statement.len(), 1, "{mails:#?}");
    println!("{}\n{}", statement[0].subject, statement[0].text);
    // The statement carries that checkpoint, which verifies with the platform's key.
    let file = etal_app::seal::checkpoint_file_name(checkpoint.tree_size);
    let attached = statement[0]
        .attachments
        .iter()
        .find(|(name, _)| *name == file)
        .unwrap_or_else(|| {
            panic!(
                "{file} attached: {:?}",
                statement[0]
                    .attachments
                    .iter()
                    .map(|a| &a.0)
                    .collect::<Vec<_>>()
            )
        });
    let note = String::from_utf8(attached.1.clone()).unwrap();
    let verified = signer.verifier().verify(&note).expect("signed");
    assert_eq!(verified.size, checkpoint.tree_size);
    assert!(
        statement[0].text.contains("point de contrôle signé"),
        "{}",
        statement[0].text
    );
    assert!(
        statement[0].text.contains("Total versé")
            && statement[0].text.contains("La Cagette de Segonzac"),
        "{}",
        statement[0].text
    );

    // A rebuild of the projection sends nothing again.
    let before = smtp.received().len();
    let p_notifications = etal_projections::by_name("notifications").unwrap();
    etal_projections::rebuild(&w.db.pool, p_notifications.as_ref(), &|_| {})
        .await
        .unwrap();
    w.clock.set(w.now() + chrono::Duration::hours(2));
    let r = round(&w).await;
    assert_eq!((r.taken_in, r.sent), (0, 0), "{r:?}");
    // Every message once (by Message-ID), and every delivery settled.
    let mails = by_id(&smtp);
    assert_eq!(mails.len(), before);
    assert_eq!(w.app.notifications_pending().await.unwrap(), 0);
}
