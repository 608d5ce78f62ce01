//! The market directory (R-SAL-8, R-CAT-5): where markets are, the catalogs linked to them, how
//! many customers ordered there, and the proposals of catalogs to markets; and what each person
//! acts for (`me`: producer accounts, markets administered, memberships, a producer's catalogs). Searched by
//! distance through a GiST index on each market's point (migration 20261201000006).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use etal_domain::account::AccountEvent;
use etal_domain::catalog::CatalogEvent;
use etal_domain::market::MarketEvent;
use etal_domain::proposal::ProposalEvent;
use etal_store::StoredEvent;
use rust_decimal::prelude::ToPrimitive;
use uuid::Uuid;

use crate::support::{aggregate_uuid, bad_event, decode};
use crate::{Projection, ProjectionError};
use sqlx::PgConnection;

const NAME: &str = "directory";

pub struct Directory;

/// A commune as searched: lower case, hyphens and apostrophes as spaces, spaces collapsed.
pub fn commune_key(commune: &str) -> String {
    commune
        .to_lowercase()
        .replace(['-', '\'', '’'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Adds (or, with `holds` false, removes) what a person acts for.
async fn role(
    conn: &mut PgConnection,
    user: Uuid,
    kind: &str,
    target: Uuid,
    holds: bool,
) -> Result<(), ProjectionError> {
    let sql = if holds {
        "INSERT INTO user_roles (user_id, kind, target_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM user_roles WHERE user_id = $1 AND kind = $2 AND target_id = $3"
    };
    sqlx::query(sql)
        .bind(user)
        .bind(kind)
        .bind(target)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What a proposal's row becomes over a batch.
struct ProposalRow {
    sent: Option<(Uuid, Uuid, Uuid, DateTime<Utc>)>,
    status: Option<&'static str>,
    messages: i32,
    updated_at: DateTime<Utc>,
}

#[derive(serde::Deserialize)]
struct Placed {
    market: Uuid,
    customer: Uuid,
}

#[async_trait::async_trait]
impl Projection for Directory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "user_roles",
            "producer_catalogs",
            "catalog_links",
            "market_customers",
            "market_places",
            "proposals",
        ]
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["market", "order", "proposal", "producer_account", "catalog"])
    }

    fn payloads_read(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            (
                "market",
                &[
                    "MarketCreated",
                    "AdministratorAdded",
                    "AdministratorRemoved",
                    "MemberApproved",
                    "MemberRemoved",
                    "LocationSet",
                    "CatalogLinked",
                    "CatalogUnlinked",
                ],
            ),
            ("order", &["OrderPlaced"]),
            (
                "producer_account",
                &["AccountOpened", "AccessGranted", "AccessRevoked"],
            ),
            ("catalog", &["CatalogCreated"]),
        ]
    }

    fn reads_metadata(&self) -> bool {
        false
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut customers: BTreeSet<(Uuid, Uuid)> = BTreeSet::new();
        let mut proposals: BTreeMap<Uuid, ProposalRow> = BTreeMap::new();
        for e in events {
            match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                ("order", "OrderPlaced") => {
                    let placed: Placed = e
                        .payload
                        .get("OrderPlaced")
                        .cloned()
                        .and_then(|p| serde_json::from_value(p).ok())
                        .ok_or_else(|| bad_event(NAME, e, "unreadable OrderPlaced"))?;
                    customers.insert((placed.market, placed.customer));
                }
                ("producer_account", "AccountOpened" | "AccessGranted" | "AccessRevoked") => {
                    let producer = aggregate_uuid(NAME, e)?;
                    match decode::<AccountEvent>(NAME, e)? {
                        AccountEvent::AccountOpened { owner, .. } => {
                            role(conn, owner.0, "producer", producer, true).await?
                        }
                        AccountEvent::AccessGranted { user } => {
                            role(conn, user.0, "producer", producer, true).await?
                        }
                        AccountEvent::AccessRevoked { user } => {
                            role(conn, user.0, "producer", producer, false).await?
                        }
                        _ => {}
                    }
                }
                ("catalog", "CatalogCreated") => {
                    if let CatalogEvent::CatalogCreated {
                        catalog,
                        producer,
                        name,
                    } = decode::<CatalogEvent>(NAME, e)?
                    {
                        sqlx::query(
                            "INSERT INTO producer_catalogs (producer_id, catalog_id, name) VALUES ($1, $2, $3) \
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(producer.0)
                        .bind(catalog.0)
                        .bind(name)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                (
                    "market",
                    "MarketCreated"
                    | "AdministratorAdded"
                    | "AdministratorRemoved"
                    | "MemberApproved"
                    | "MemberRemoved"
                    | "LocationSet"
                    | "CatalogLinked"
                    | "CatalogUnlinked",
                ) => {
                    let market = aggregate_uuid(NAME, e)?;
                    match decode::<MarketEvent>(NAME, e)? {
                        MarketEvent::MarketCreated { administrators, .. } => {
                            for a in administrators {
                                role(conn, a.0, "market", market, true).await?;
                            }
                        }
                        MarketEvent::AdministratorAdded { user } => {
                            role(conn, user.0, "market", market, true).await?
                        }
                        MarketEvent::AdministratorRemoved { user } => {
                            role(conn, user.0, "market", market, false).await?
                        }
                        MarketEvent::MemberApproved { user, .. } => {
                            role(conn, user.0, "member", market, true).await?
                        }
                        MarketEvent::MemberRemoved { user, .. } => {
                            role(conn, user.0, "member", market, false).await?
                        }
                        MarketEvent::LocationSet { location, .. } => {
                            sqlx::query(
                                "INSERT INTO market_places (market_id, lat, lon, commune, commune_key) \
                                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (market_id) DO UPDATE \
                                 SET lat = EXCLUDED.lat, lon = EXCLUDED.lon, commune = EXCLUDED.commune, \
                                     commune_key = EXCLUDED.commune_key",
                            )
                            .bind(market)
                            // The geometry works in floating degrees.
                            .bind(location.lat.to_f64())
                            .bind(location.lon.to_f64())
                            .bind(&location.commune)
                            .bind(commune_key(&location.commune))
                            .execute(&mut *conn)
                            .await?;
                        }
                        MarketEvent::CatalogLinked {
                            catalog, producer, ..
                        } => {
                            sqlx::query(
                                "INSERT INTO catalog_links (market_id, catalog_id, producer_id) \
                                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                            )
                            .bind(market)
                            .bind(catalog.0)
                            .bind(producer.0)
                            .execute(&mut *conn)
                            .await?;
                        }
                        MarketEvent::CatalogUnlinked { catalog, .. } => {
                            sqlx::query(
                                "DELETE FROM catalog_links WHERE market_id = $1 AND catalog_id = $2",
                            )
                            .bind(market)
                            .bind(catalog.0)
                            .execute(&mut *conn)
                            .await?;
                        }
                        _ => {}
                    }
                }
                ("proposal", _) => {
                    let id = aggregate_uuid(NAME, e)?;
                    let row = proposals.entry(id).or_insert(ProposalRow {
                        sent: None,
                        status: None,
                        messages: 0,
                        updated_at: e.recorded_at,
                    });
                    row.updated_at = e.recorded_at;
                    match decode::<ProposalEvent>(NAME, e)? {
                        ProposalEvent::ProposalSent {
                            market,
                            catalog,
                            producer,
                            at,
                            ..
                        } => {
                            row.sent = Some((market.0, catalog.0, producer.0, at));
                            row.status = Some("open");
                            row.messages += 1;
                        }
                        ProposalEvent::MessagePosted { .. } => row.messages += 1,
                        ProposalEvent::ProposalAccepted { .. } => row.status = Some("accepted"),
                        ProposalEvent::ProposalDeclined { .. } => row.status = Some("declined"),
                        ProposalEvent::ProposalWithdrawn { .. } => row.status = Some("withdrawn"),
                    }
                }
                _ => {}
            }
        }
        if !customers.is_empty() {
            let (markets, people): (Vec<Uuid>, Vec<Uuid>) = customers.into_iter().unzip();
            sqlx::query(
                "INSERT INTO market_customers (market_id, customer_id) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING",
            )
            .bind(markets)
            .bind(people)
            .execute(&mut *conn)
            .await?;
        }
        for (id, row) in proposals {
            if let Some((market, catalog, producer, at)) = row.sent {
                sqlx::query(
                    "INSERT INTO proposals (proposal_id, market_id, catalog_id, producer_id, status, \
                                            messages, opened_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(id)
                .bind(market)
                .bind(catalog)
                .bind(producer)
                .bind(row.status.unwrap_or("open"))
                .bind(row.messages)
                .bind(at)
                .bind(row.updated_at)
                .execute(&mut *conn)
                .await?;
            } else {
                let done = sqlx::query(
                    "UPDATE proposals SET status = coalesce($2, status), messages = messages + $3, \
                     updated_at = $4 WHERE proposal_id = $1",
                )
                .bind(id)
                .bind(row.status)
                .bind(row.messages)
                .bind(row.updated_at)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(ProjectionError::Event {
                        projection: NAME,
                        position: 0,
                        reason: format!("proposal {id} changed before it was sent"),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::commune_key;

    #[test]
    fn communes_are_searched_without_case_hyphens_or_apostrophes() {
        assert_eq!(commune_key("Saint-Astier"), "saint astier");
        assert_eq!(commune_key("  saint astier "), "saint astier");
        assert_eq!(commune_key("L'Isle-sur-la-Sorgue"), "l isle sur la sorgue");
    }
}
