//! R-PAY-4 over HTTP: the owner sets the producer's bank details; invalid IBANs, BICs of the
//! wrong country and collaborators are refused with clear codes and write nothing; the IBAN is
//! shown masked, the holder to the producer's people only, and never enters the log; a change
//! holds the next payouts for 7 days until the owner confirms it.

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{code, fixture, Api};
use serde_json::json;

const SET: &str = "mutation($p: UUID!, $h: String!, $i: String!, $b: String!) { setBankDetails(producerId: $p, holder: $h, iban: $i, bic: $b) { position } }";
const READ: &str = "query($p: UUID!) { producer(id: $p) { bankDetails { holder maskedIban bic confirmed holdsPayoutsUntil changedAt } } }";

async fn writes(api: &Api) -> (i64, i64) {
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bank_accounts")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    (events, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_pay_4_bank_details_are_checked_masked_and_kept_out_of_the_log() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let collab = api.who(Role::Producer);
    api.ok(
        &f.producer,
        "mutation($p: UUID!, $u: UUID!) { grantAccess(producerId: $p, userId: $u) { position } }",
        json!({"p": f.producer_id, "u": collab.user.0}),
    )
    .await;
    let before = writes(&api).await;
    for (holder, iban, bic, expected) in [
        (
            "Léa Bouvier",
            "FR7630006000011234567890188",
            "AGRIFRPP882",
            "INVALID_IBAN",
        ),
        (
            "Léa Bouvier",
            "FR76 3000 6000 0112 3456 7890 189",
            "DEUTDEFF",
            "BIC_COUNTRY_MISMATCH",
        ),
        (
            "Léa Bouvier",
            "FR7630006000011234567890189",
            "AGRI",
            "INVALID_BIC",
        ),
        (
            "   ",
            "FR7630006000011234567890189",
            "AGRIFRPP882",
            "INVALID_HOLDER",
        ),
    ] {
        let r = api
            .call(
                &f.producer,
                SET,
                json!({"p": f.producer_id, "h": holder, "i": iban, "b": bic}),
            )
            .await;
        assert_eq!(code(&r).as_deref(), Some(expected), "{iban} {bic}: {r}");
        assert!(r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let valid = json!({"p": f.producer_id, "h": "Léa Bouvier", "i": "fr76 3000 6000 0112 3456 7890 189", "b": "agrifrpp882"});
    let r = api.call(&collab, SET, valid.clone()).await;
    assert_eq!(code(&r).as_deref(), Some("NOT_THE_OWNER"), "{r}");
    assert_eq!(writes(&api).await, before, "refusals write nothing");

    api.ok(&f.producer, SET, valid.clone()).await;
    let d = api.ok(&collab, READ, json!({"p": f.producer_id})).await;
    let b = &d["producer"]["bankDetails"];
    assert_eq!(b["holder"], "Léa Bouvier");
    assert_eq!(b["maskedIban"], "FR76 **** **** 0189");
    assert_eq!(b["bic"], "AGRIFRPP882");
    assert_eq!(b["confirmed"], false);
    let changed = graphql_common::instant(&b["changedAt"]);
    let until = graphql_common::instant(&b["holdsPayoutsUntil"]);
    assert_eq!(until - changed, chrono::Duration::days(7));
    // An auditor sees where payouts go, not who holds the account.
    let auditor = api.who(Role::Auditor);
    let d = api.ok(&auditor, READ, json!({"p": f.producer_id})).await;
    assert_eq!(
        d["producer"]["bankDetails"]["holder"],
        serde_json::Value::Null
    );
    assert_eq!(
        d["producer"]["bankDetails"]["maskedIban"],
        "FR76 **** **** 0189"
    );
    // The log: the masked IBAN only.
    let logged: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE event_type = 'BankDetailsChanged'",
    )
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(logged.len(), 1);
    assert!(
        !logged[0].contains("1234567890189") && !logged[0].contains("Bouvier"),
        "{}",
        logged[0]
    );
    // The same request again changes nothing.
    let after = writes(&api).await;
    api.ok(&f.producer, SET, valid).await;
    assert_eq!(writes(&api).await.1, after.1);

    api.ok(
        &f.producer,
        "mutation($p: UUID!) { confirmBankDetails(producerId: $p) { position } }",
        json!({"p": f.producer_id}),
    )
    .await;
    let d = api.ok(&f.producer, READ, json!({"p": f.producer_id})).await;
    assert_eq!(d["producer"]["bankDetails"]["confirmed"], true);
    assert_eq!(
        d["producer"]["bankDetails"]["holdsPayoutsUntil"],
        serde_json::Value::Null
    );
}
