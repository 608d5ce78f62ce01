//! R-SAL-7 over HTTP against `etal serve`: a members-only market shows its sales' offers to its
//! members only and takes their orders only (NOT_A_MEMBER). A customer asks to join; an
//! administrator approves, refuses or removes; the membership history is in the log. An AMAP
//! market is members-only by default.

use crate::graphql_common;

use etal_domain::Role;
use graphql_common::{code, fixture, Api, PLACE_ORDER};
use serde_json::json;

const OFFERS: &str =
    "query($s: UUID!) { sale(id: $s) { participations { offers { productId } } } }";
const ANSWER: &str = "mutation($m: UUID!, $u: UUID!, $a: MembershipAnswer!) { answerMembership(marketId: $m, userId: $u, answer: $a) { marketId } }";
const REQUEST: &str = "mutation($m: UUID!) { requestMembership(marketId: $m) { marketId } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_sal_7_a_members_only_market_serves_its_members_only() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    api.ok(
        &f.admin,
        "mutation($m: UUID!) { setVisibility(marketId: $m, visibility: MEMBERS_ONLY) { marketId } }",
        json!({"m": f.market_id}),
    )
    .await;
    let offers = |who: &graphql_common::Who| {
        let (api, who, sale) = (&api, who.clone(), f.sale_id.clone());
        async move {
            let d = api.ok(&who, OFFERS, json!({"s": sale})).await;
            d["sale"]["participations"][0]["offers"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0)
        }
    };
    let order = |key: &str| {
        json!({"s": f.sale_id, "k": key, "lines": [
            {"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}]})
    };
    // A non-member sees the market and its sale, not the offers, and cannot order.
    assert_eq!(offers(&f.customer).await, 0);
    assert_eq!(
        offers(&f.producer).await,
        2,
        "the producer still sees its offers"
    );
    let refused = api.call(&f.customer, PLACE_ORDER, order("o-1")).await;
    assert_eq!(code(&refused).as_deref(), Some("NOT_A_MEMBER"), "{refused}");

    // Asking is not enough; a producer cannot ask.
    api.ok(&f.customer, REQUEST, json!({"m": f.market_id}))
        .await;
    let again = api
        .call(&f.customer, REQUEST, json!({"m": f.market_id}))
        .await;
    assert_eq!(
        code(&again).as_deref(),
        Some("MEMBERSHIP_ALREADY_REQUESTED"),
        "{again}"
    );
    let producer_asks = api
        .call(&f.producer, REQUEST, json!({"m": f.market_id}))
        .await;
    assert_eq!(
        code(&producer_asks).as_deref(),
        Some("FORBIDDEN"),
        "{producer_asks}"
    );
    let members_q = "query($m: UUID!) { market(id: $m) { members pendingMembers } }";
    let d = api.ok(&f.admin, members_q, json!({"m": f.market_id})).await;
    assert_eq!(
        d["market"],
        json!({"members": [], "pendingMembers": [f.customer.user.0]})
    );
    // The administrators see who asks (the back office's list): the name, not only the id.
    api.ok(
        &f.customer,
        "mutation { registerPerson(displayName: \"Jeanne Membre\") { userId } }",
        json!({}),
    )
    .await;
    let d = api
        .ok(
            &f.admin,
            "query($m: UUID!) { market(id: $m) { pendingMemberRequests { userId displayName } } }",
            json!({"m": f.market_id}),
        )
        .await;
    assert_eq!(
        d["market"]["pendingMemberRequests"],
        json!([{"userId": f.customer.user.0, "displayName": "Jeanne Membre"}])
    );
    let refused = api.call(&f.customer, PLACE_ORDER, order("o-2")).await;
    assert_eq!(code(&refused).as_deref(), Some("NOT_A_MEMBER"), "{refused}");
    // Only an administrator answers.
    let by_customer = api
        .call(
            &f.customer,
            ANSWER,
            json!({"m": f.market_id, "u": f.customer.user.0, "a": "APPROVE"}),
        )
        .await;
    assert_eq!(
        code(&by_customer).as_deref(),
        Some("FORBIDDEN"),
        "{by_customer}"
    );

    // Approved: the offers and the order.
    api.ok(
        &f.admin,
        ANSWER,
        json!({"m": f.market_id, "u": f.customer.user.0, "a": "APPROVE"}),
    )
    .await;
    assert_eq!(offers(&f.customer).await, 2);
    let d = api.ok(&f.customer, PLACE_ORDER, order("o-3")).await;
    assert_eq!(d["placeOrder"]["order"]["total"], "8.50", "{d}");
    let d = api.ok(&f.admin, members_q, json!({"m": f.market_id})).await;
    assert_eq!(
        d["market"],
        json!({"members": [f.customer.user.0], "pendingMembers": []})
    );

    // Removed: refused again (another customer, never admitted, neither).
    api.ok(
        &f.admin,
        ANSWER,
        json!({"m": f.market_id, "u": f.customer.user.0, "a": "REMOVE"}),
    )
    .await;
    assert_eq!(offers(&f.customer).await, 0);
    let stranger = api.who(Role::Customer);
    for who in [&f.customer, &stranger] {
        let refused = api.call(who, PLACE_ORDER, order("o-4")).await;
        assert_eq!(code(&refused).as_deref(), Some("NOT_A_MEMBER"), "{refused}");
    }
    // The history is in the log.
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'market' AND aggregate_id = $1 \
         AND event_type IN ('VisibilitySet', 'MembershipRequested', 'MemberApproved', 'MemberRemoved') \
         ORDER BY sequence",
    )
    .bind(&f.market_id)
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            "VisibilitySet",
            "MembershipRequested",
            "MemberApproved",
            "MemberRemoved"
        ]
    );

    // An AMAP is members-only unless said otherwise.
    let d = api
        .ok(
            &f.admin,
            "mutation($m: MarketInput!) { createMarket(market: $m) { market { visibility amap } } }",
            json!({"m": {"name": "AMAP du Bourg", "place": "Grange", "paymentMode": "ON_SITE", "amap": true,
                "slots": [{"weekday": "THU", "start": "18:00", "end": "19:00", "anchor": "2026-12-03"}]}}),
        )
        .await;
    assert_eq!(
        d["createMarket"]["market"],
        json!({"visibility": "MEMBERS_ONLY", "amap": true})
    );
}

/// R-SAL-7 as clients retry: the same `requestMembership` sent 10 times at once with one
/// idempotency key, then again after they answered, all answer the same and one request is
/// recorded; an administrator's approval retried with its key answers the same, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_sal_7_membership_requests_and_answers_retried_are_recorded_once() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    let keyed = "mutation($m: UUID!, $k: String) { requestMembership(marketId: $m, idempotencyKey: $k) { marketId position } }";
    let vars = json!({"m": f.market_id, "k": "join-1"});
    let answers =
        futures::future::join_all((0..10).map(|_| api.call(&f.customer, keyed, vars.clone())))
            .await;
    let first = api.call(&f.customer, keyed, vars.clone()).await;
    assert!(first.get("errors").is_none(), "{first}");
    for a in &answers {
        assert_eq!(a, &first, "every copy answers the first outcome");
    }
    let answer_keyed = "mutation($m: UUID!, $u: UUID!, $k: String) { answerMembership(marketId: $m, userId: $u, answer: APPROVE, idempotencyKey: $k) { marketId position } }";
    let vars = json!({"m": f.market_id, "u": f.customer.user.0, "k": "approve-1"});
    let approved = api.call(&f.admin, answer_keyed, vars.clone()).await;
    let again = api.call(&f.admin, answer_keyed, vars).await;
    assert!(approved.get("errors").is_none(), "{approved}");
    assert_eq!(again, approved, "a retried approval answers the same");
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 \
         AND event_type IN ('MembershipRequested', 'MemberApproved') ORDER BY sequence",
    )
    .bind(&f.market_id)
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(kinds, ["MembershipRequested", "MemberApproved"]);
}

/// R-SAL-7: invited by e-mail address (kept outside the events), the person joins once signed in
/// with that address registered; the admission is the inviting administrator's, in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_sal_7_an_invited_person_joins_a_members_only_market() {
    let api = Api::start(&[]).await;
    let f = fixture(&api).await;
    api.ok(
        &f.admin,
        "mutation($m: UUID!) { setVisibility(marketId: $m, visibility: MEMBERS_ONLY) { marketId } }",
        json!({"m": f.market_id}),
    )
    .await;
    const INVITE: &str = "mutation($m: UUID!, $e: String!) { inviteMember(marketId: $m, email: $e) { invitationId } }";
    const ACCEPT: &str = "mutation($m: UUID!, $k: String) { acceptInvitation(marketId: $m, idempotencyKey: $k) { marketId } }";
    for (who, email, want) in [
        (&f.admin, "pas une adresse", "BAD_USER_INPUT"),
        (&f.customer, "jeanne@example.org", "FORBIDDEN"),
        (&f.producer, "jeanne@example.org", "FORBIDDEN"),
    ] {
        let r = api
            .call(who, INVITE, json!({"m": f.market_id, "e": email}))
            .await;
        assert_eq!(code(&r).as_deref(), Some(want), "{r}");
    }
    let d = api
        .ok(
            &f.admin,
            INVITE,
            json!({"m": f.market_id, "e": " Jeanne@Example.org "}),
        )
        .await;
    let invitation = d["inviteMember"]["invitationId"].clone();
    let again = api
        .ok(
            &f.admin,
            INVITE,
            json!({"m": f.market_id, "e": "jeanne@example.org"}),
        )
        .await;
    assert_eq!(
        again["inviteMember"]["invitationId"], invitation,
        "one invitation per address"
    );
    let events_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text ILIKE '%jeanne%'")
            .fetch_one(&api.db.pool)
            .await
            .unwrap();
    assert_eq!(events_before, 0, "the address is in no event");
    // Not yet registered with that address: no invitation for them.
    let r = api
        .call(&f.customer, ACCEPT, json!({"m": f.market_id}))
        .await;
    assert_eq!(code(&r).as_deref(), Some("NOT_FOUND"), "{r}");
    api.ok(
        &f.customer,
        "mutation { registerPerson(displayName: \"Jeanne\", email: \"jeanne@example.org\") { userId } }",
        json!({}),
    )
    .await;
    api.ok(&f.customer, ACCEPT, json!({"m": f.market_id, "k": "join"}))
        .await;
    let approved: Vec<String> = sqlx::query_scalar(
        "SELECT payload -> 'MemberApproved' ->> 'by' FROM events WHERE aggregate_id = $1 AND event_type = 'MemberApproved'",
    )
    .bind(&f.market_id)
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(
        approved,
        vec![f.admin.user.0.to_string()],
        "admitted by the inviter"
    );
    let d = api
        .ok(&f.admin, "query($m: UUID!) { market(id: $m) { members } invitations(marketId: $m) { email acceptedBy } }", json!({"m": f.market_id}))
        .await;
    assert_eq!(d["market"]["members"], json!([f.customer.user.0]));
    assert_eq!(
        d["invitations"],
        json!([{"email": null, "acceptedBy": f.customer.user.0}])
    );
    let d = api
        .ok(
            &f.customer,
            PLACE_ORDER,
            json!({"s": f.sale_id, "k": "member", "lines": [{"catalogId": f.catalog_id, "productId": f.product_id, "quantity": 1}]}),
        )
        .await;
    assert_eq!(d["placeOrder"]["order"]["total"], "8.50");
    // Used: another person with the same address later finds nothing.
    let other = api.who(Role::Customer);
    api.ok(
        &other,
        "mutation { registerPerson(displayName: \"Autre\", email: \"jeanne@example.org\") { userId } }",
        json!({}),
    )
    .await;
    let r = api.call(&other, ACCEPT, json!({"m": f.market_id})).await;
    assert_eq!(code(&r).as_deref(), Some("NOT_FOUND"), "{r}");
}
