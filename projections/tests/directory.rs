//! The `directory` projection (R-SAL-8, R-CAT-5, `me`): places, links, customers, proposals and
//! what each person acts for, folded batch by batch as the aggregates decided them, and equal to
//! a rebuild from the events alone.

mod common;

use common::*;
use etal_domain::account::{AccountEvent, ProducerAccount};
use etal_domain::catalog::{Catalog, CatalogEvent};
use etal_domain::ids::{CatalogId, MarketId, ProducerId, ProposalId, UserId};
use etal_domain::market::{Location, Market, MarketEvent};
use etal_domain::proposal::{Proposal, ProposalEvent, Side};
use rust_decimal::Decimal;

#[tokio::test]
async fn the_directory_folds_places_links_proposals_and_roles_and_rebuilds_equal() {
    let db = TestDb::new(4).await;
    let (market, producer, catalog) = (MarketId::new(), ProducerId::new(), CatalogId::new());
    let (owner, colleague, admin, member) =
        (UserId::new(), UserId::new(), UserId::new(), UserId::new());
    let t = at(2026, 12, 1, 9);
    append_events::<ProducerAccount>(
        &db.pool,
        &producer.to_string(),
        &[
            AccountEvent::AccessGranted { user: colleague },
            AccountEvent::AccessGranted { user: owner },
            AccountEvent::AccessRevoked { user: colleague },
        ],
        t,
    )
    .await;
    append_events::<Catalog>(
        &db.pool,
        &catalog.to_string(),
        &[CatalogEvent::CatalogCreated {
            catalog,
            producer,
            name: "Oeufs".into(),
        }],
        t,
    )
    .await;
    let at_first = Location {
        lat: Decimal::new(452, 1),
        lon: Decimal::new(43, 2),
        commune: "Segonzac".into(),
    };
    append_events::<Market>(
        &db.pool,
        &market.to_string(),
        &[
            MarketEvent::AdministratorAdded { user: admin },
            MarketEvent::LocationSet {
                location: at_first,
                by: admin,
            },
            MarketEvent::MemberApproved {
                user: member,
                by: admin,
            },
        ],
        t,
    )
    .await;
    let proposal = ProposalId::new();
    append_events::<Proposal>(
        &db.pool,
        &proposal.to_string(),
        &[ProposalEvent::ProposalSent {
            proposal,
            market,
            catalog,
            producer,
            author: owner,
            message: "Bonjour".into(),
            at: t,
        }],
        t,
    )
    .await;
    // A first batch, then the rest: the fold must agree with one pass over everything.
    catch_up(&db.pool, "directory").await;
    append_events::<Proposal>(
        &db.pool,
        &proposal.to_string(),
        &[
            ProposalEvent::MessagePosted {
                author: admin,
                side: Side::Market,
                message: "Oui".into(),
                at: t,
            },
            ProposalEvent::ProposalAccepted { by: admin, at: t },
        ],
        t,
    )
    .await;
    append_events::<Market>(
        &db.pool,
        &market.to_string(),
        &[
            MarketEvent::CatalogLinked {
                catalog,
                producer,
                linked_by: admin,
            },
            MarketEvent::LocationSet {
                location: Location {
                    lat: Decimal::new(4521, 2),
                    lon: Decimal::new(44, 2),
                    commune: "Saint-Astier".into(),
                },
                by: admin,
            },
            MarketEvent::MemberRemoved {
                user: member,
                by: admin,
            },
        ],
        t,
    )
    .await;
    catch_up(&db.pool, "directory").await;

    let roles: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT user_id, kind FROM user_roles ORDER BY kind, user_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        roles,
        vec![(admin.0, "market".into()), (owner.0, "producer".into())],
        "the revoked colleague and the removed member are gone"
    );
    let place: (f64, String) =
        sqlx::query_as("SELECT lat, commune_key FROM market_places WHERE market_id = $1")
            .bind(market.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(place, (45.21, "saint astier".into()), "the last location");
    let row: (String, i32) =
        sqlx::query_as("SELECT status, messages FROM proposals WHERE proposal_id = $1")
            .bind(proposal.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(row, ("accepted".into(), 2));
    let links: i64 =
        sqlx::query_scalar("SELECT count(*) FROM catalog_links WHERE producer_id = $1")
            .bind(producer.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(links, 1);

    let report = verify(&db.pool, "directory").await;
    assert!(report.diffs.is_empty(), "{:?}", report.diffs);
    assert!(report.rows_compared >= 5);
    rebuild(&db.pool, "directory").await;
    let report = verify(&db.pool, "directory").await;
    assert!(report.diffs.is_empty(), "{:?}", report.diffs);
}
