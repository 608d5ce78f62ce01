//! Joining a market, as the producer guide tells it (R-SAL-8, R-CAT-5): a producer finds the
//! markets near a place (by distance and distribution day), reads each market's public card,
//! proposes a catalog with a message, discusses it with the administrators, who accept it (the
//! catalog is linked in the same commit, R-CAT-4) or decline it; the producer then sees the
//! markets that linked their catalogs.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc, Weekday};
use etal_domain::account::ProducerAccount;
use etal_domain::ids::{CatalogId, MarketId, ProducerId, ProposalId, UserId};
use etal_domain::market::{Location, Market, MarketCommand, Slot, Visibility};
use etal_domain::proposal::{Proposal, ProposalCommand, Side};
use etal_store::Changes;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::flow::Decided;
use super::outbox::rejected;
use super::{fingerprint, App, AppError, Ctx, Done};

/// Shown on a card for a person whose name was erased (R-ACC-6) or never given.
pub const ERASED_NAME: &str = "(name erased)";

/// The widest search, in kilometres.
pub const MAX_KM: f64 = 200.0;
/// Kilometres per degree of latitude (a sphere of 6371 km).
const KM_PER_DEGREE: f64 = 111.194_93;

/// Where a search starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Around {
    Point {
        lat: f64,
        lon: f64,
    },
    /// The centre of the markets located in that commune.
    Commune(String),
}

/// A search of the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketSearch {
    pub around: Around,
    pub within_km: f64,
    pub weekday: Option<Weekday>,
    pub first: usize,
}

/// A producer selling on a market: their owner's name, as the erasure rules allow (R-ACC-6).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seller {
    pub producer: ProducerId,
    pub name: String,
}

/// A market's public card (R-SAL-8).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarketCard {
    pub market: MarketId,
    pub name: String,
    pub place: String,
    pub location: Option<Location>,
    /// From the search's centre, in kilometres (none outside a search).
    pub distance_km: Option<f64>,
    pub slots: Vec<Slot>,
    pub visibility: Option<Visibility>,
    /// People who ordered on the market.
    pub customers: i64,
    /// The administrator to contact and their name.
    pub contact: Option<(UserId, String)>,
    pub producers: Vec<Seller>,
}

/// A proposal as listed (its messages are read from the proposal itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProposalSummary {
    pub proposal: ProposalId,
    pub market: MarketId,
    pub catalog: CatalogId,
    pub producer: ProducerId,
    pub status: String,
    pub messages: i32,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How an administrator answers a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProposalAnswer {
    Accept,
    Decline,
}

fn summary(r: &sqlx::postgres::PgRow) -> Result<ProposalSummary, sqlx::Error> {
    Ok(ProposalSummary {
        proposal: ProposalId(r.try_get("proposal_id")?),
        market: MarketId(r.try_get("market_id")?),
        catalog: CatalogId(r.try_get("catalog_id")?),
        producer: ProducerId(r.try_get("producer_id")?),
        status: r.try_get("status")?,
        messages: r.try_get("messages")?,
        opened_at: r.try_get("opened_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const SUMMARY: &str =
    "SELECT proposal_id, market_id, catalog_id, producer_id, status, messages, opened_at, updated_at \
     FROM proposals";

impl App {
    /// R-SAL-8: where the market is (an administrator).
    pub async fn set_location(
        &self,
        ctx: &Ctx,
        market: MarketId,
        location: Location,
    ) -> Result<Done<()>, AppError> {
        self.admin_access(ctx.actor, market).await?;
        let fp = fingerprint("setMarketLocation", &(market, &location));
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::SetLocation {
                    location,
                    actor: ctx.actor,
                },
                &ctx.step("setMarketLocation", &fp),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-ORD-7: the market's minimum order (none: no minimum), for orders placed from now on.
    pub async fn set_minimum_order(
        &self,
        ctx: &Ctx,
        market: MarketId,
        amount: Option<etal_domain::Money>,
    ) -> Result<Done<()>, AppError> {
        self.admin_access(ctx.actor, market).await?;
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::SetMinimumOrder {
                    amount,
                    actor: ctx.actor,
                },
                &ctx.step(
                    "setMinimumOrder",
                    &fingerprint("setMinimumOrder", &(market, amount)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-ORD-6/7: the home delivery the market runs (none: none), for orders placed from now
    /// on; its fees are the market's.
    pub async fn set_market_delivery(
        &self,
        ctx: &Ctx,
        market: MarketId,
        offer: Option<etal_domain::catalog::DeliveryOffer>,
    ) -> Result<Done<()>, AppError> {
        self.admin_access(ctx.actor, market).await?;
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::SetDelivery {
                    offer,
                    actor: ctx.actor,
                },
                &ctx.step(
                    "setMarketDelivery",
                    &fingerprint("setMarketDelivery", &(market, offer)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-SAL-1: the AMAP flag; the sales generated from now on carry it (a sale keeps the flag it
    /// was generated with, as its caps were counted with it).
    pub async fn set_amap(
        &self,
        ctx: &Ctx,
        market: MarketId,
        amap: bool,
    ) -> Result<Done<()>, AppError> {
        self.admin_access(ctx.actor, market).await?;
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::SetAmap {
                    amap,
                    actor: ctx.actor,
                },
                &ctx.step("setAmap", &fingerprint("setAmap", &(market, amap))),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-SAL-8: the markets within `within_km` of a place, nearest first, those with a slot on
    /// `weekday` only when it is given, each with its public card.
    pub async fn search_markets(&self, search: &MarketSearch) -> Result<Vec<MarketCard>, AppError> {
        if !(search.within_km > 0.0 && search.within_km <= MAX_KM) {
            return Err(AppError::bad_input(
                "withinKm",
                format!("a search reaches more than 0 and at most {MAX_KM} km"),
            ));
        }
        let (lat, lon) = match &search.around {
            Around::Point { lat, lon } => {
                if !((-90.0..=90.0).contains(lat) && (-180.0..=180.0).contains(lon)) {
                    return Err(AppError::bad_input(
                        "near",
                        "a latitude in [-90, 90] and a longitude in [-180, 180]",
                    ));
                }
                (*lat, *lon)
            }
            Around::Commune(name) => {
                let key = etal_projections::directory::commune_key(name);
                let centre: Option<(Option<f64>, Option<f64>)> = sqlx::query_as(
                    "SELECT avg(lat), avg(lon) FROM market_places WHERE commune_key = $1",
                )
                .bind(&key)
                .fetch_optional(&self.pool)
                .await?;
                match centre {
                    Some((Some(lat), Some(lon))) => (lat, lon),
                    _ => return Err(AppError::not_found("commune", name)),
                }
            }
        };
        let dlat = search.within_km / KM_PER_DEGREE;
        let dlon = search.within_km / (KM_PER_DEGREE * lat.to_radians().cos().max(0.01));
        // The box prefilters through the GiST index; then the great-circle distance (haversine,
        // a sphere of 6371 km) of each candidate.
        let rows = sqlx::query(
            "SELECT market_id, km FROM ( \
               SELECT market_id, 2 * 6371.0 * asin(sqrt( \
                        power(sin(radians(lat - $2) / 2), 2) \
                        + cos(radians($2)) * cos(radians(lat)) * power(sin(radians(lon - $1) / 2), 2))) AS km \
               FROM market_places \
               WHERE point(lon, lat) <@ box(point($1 - $4, $2 - $3), point($1 + $4, $2 + $3))) c \
             WHERE km <= $5 ORDER BY km, market_id",
        )
        .bind(lon)
        .bind(lat)
        .bind(dlat)
        .bind(dlon)
        .bind(search.within_km)
        .fetch_all(&self.pool)
        .await?;
        let mut cards = Vec::new();
        for r in rows {
            if cards.len() >= search.first {
                break;
            }
            let market = MarketId(r.try_get("market_id")?);
            let km: f64 = r.try_get("km")?;
            let (state, version) = self.load::<Market>(market).await?;
            if version == 0 {
                continue;
            }
            if let Some(day) = search.weekday {
                if !state.slots().iter().any(|s| s.weekday == day) {
                    continue;
                }
            }
            let mut card = self.card_of(market, &state).await?;
            card.distance_km = Some((km * 10.0).round() / 10.0);
            cards.push(card);
        }
        Ok(cards)
    }

    /// R-SAL-8: a market's public card.
    pub async fn market_card(&self, market: MarketId) -> Result<MarketCard, AppError> {
        let (state, version) = self.load::<Market>(market).await?;
        if version == 0 {
            return Err(AppError::not_found("market", market));
        }
        self.card_of(market, &state).await
    }

    async fn card_of(&self, market: MarketId, state: &Market) -> Result<MarketCard, AppError> {
        let customers: i64 =
            sqlx::query_scalar("SELECT count(*) FROM market_customers WHERE market_id = $1")
                .bind(market.0)
                .fetch_one(&self.pool)
                .await?;
        let contact = match state.administrators().iter().next() {
            Some(admin) => Some((*admin, self.public_name(*admin).await?)),
            None => None,
        };
        let producers: BTreeSet<ProducerId> = state.linked_catalogs().values().copied().collect();
        let mut sellers = Vec::with_capacity(producers.len());
        for p in producers {
            let (account, _) = self.load::<ProducerAccount>(p).await?;
            let name = match account.owner() {
                Some(owner) => self.public_name(owner).await?,
                None => continue,
            };
            sellers.push(Seller { producer: p, name });
        }
        Ok(MarketCard {
            market,
            name: state.name().to_string(),
            place: state.place().to_string(),
            location: state.location().cloned(),
            distance_km: None,
            slots: state.slots().to_vec(),
            visibility: state.visibility(),
            customers,
            contact,
            producers: sellers,
        })
    }

    /// A person's name on a public card: erased (R-ACC-6) or never given, a neutral label.
    async fn public_name(&self, user: UserId) -> Result<String, AppError> {
        let name: Option<Option<String>> =
            sqlx::query_scalar("SELECT display_name FROM people WHERE user_id = $1")
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(name.flatten().unwrap_or_else(|| ERASED_NAME.to_string()))
    }

    /// R-CAT-5: a producer (owner or collaborator) proposes one of their catalogs to a market,
    /// with a message.
    pub async fn propose_catalog(
        &self,
        ctx: &Ctx,
        market: MarketId,
        catalog: CatalogId,
        message: &str,
    ) -> Result<Done<ProposalId>, AppError> {
        let (_, _, access) = self.catalog_access(ctx, catalog).await?;
        let (state, _) = self.market_access(ctx.actor, market).await?;
        if state.is_linked(catalog) {
            return Err(AppError::Rejected {
                code: "CATALOG_ALREADY_LINKED",
                message: format!("catalog {catalog} is linked to market {market} already"),
            });
        }
        let proposal = ProposalId(ctx.new_id("proposal"));
        let out = self
            .exec::<Proposal>(
                proposal,
                ProposalCommand::Propose {
                    proposal,
                    market,
                    catalog,
                    producer: access.producer,
                    author: ctx.actor.user,
                    message: message.to_string(),
                    at: self.now(),
                },
                &ctx.step(
                    "proposeCatalog",
                    &fingerprint("proposeCatalog", &(market, catalog, message)),
                ),
            )
            .await?;
        Ok(Done::new(proposal, out.last_position()))
    }

    /// The proposal and the side the caller speaks for on it (the market's administrators, or
    /// the producer's owner and collaborators); anyone else is refused.
    pub async fn proposal(&self, ctx: &Ctx, id: ProposalId) -> Result<(Proposal, Side), AppError> {
        let (proposal, version) = self.load::<Proposal>(id).await?;
        if version == 0 {
            return Err(AppError::not_found("proposal", id));
        }
        let (_, access) = self.market_access(ctx.actor, proposal.market()).await?;
        if access.administrator {
            return Ok((proposal, Side::Market));
        }
        self.producer_access(ctx.actor, proposal.producer()).await?;
        Ok((proposal, Side::Producer))
    }

    /// R-CAT-5: a message on an open proposal, from either side.
    pub async fn post_proposal_message(
        &self,
        ctx: &Ctx,
        id: ProposalId,
        message: &str,
    ) -> Result<Done<()>, AppError> {
        let (_, side) = self.proposal(ctx, id).await?;
        let out = self
            .exec::<Proposal>(
                id,
                ProposalCommand::PostMessage {
                    author: ctx.actor.user,
                    side,
                    message: message.to_string(),
                    at: self.now(),
                },
                &ctx.step(
                    "postProposalMessage",
                    &fingerprint("postProposalMessage", &(id, message)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-CAT-5: an administrator of the market accepts (the catalog is linked, R-CAT-4, in the
    /// same commit) or declines, with an optional message.
    pub async fn answer_proposal(
        &self,
        ctx: &Ctx,
        id: ProposalId,
        answer: ProposalAnswer,
        message: Option<&str>,
    ) -> Result<Done<()>, AppError> {
        let (_, side) = self.proposal(ctx, id).await?;
        if side != Side::Market {
            return Err(AppError::Forbidden(
                "only an administrator of the market answers a proposal".into(),
            ));
        }
        let cc = ctx.flow(
            "answerProposal",
            &fingerprint("answerProposal", &(id, answer, message)),
        );
        let now = self.now();
        let flowed = self
            .run_flow(&cc, vec![], || async move {
                let mut proposal = self.bus.load_stream::<Proposal>(&id.to_string()).await?;
                let market_id = proposal.state.market();
                let mut market = self
                    .bus
                    .load_stream::<Market>(&market_id.to_string())
                    .await?;
                let access = market.state.access(ctx.actor);
                let message = message.map(str::to_string);
                let command = match answer {
                    ProposalAnswer::Accept => ProposalCommand::Accept {
                        by: ctx.actor.user,
                        message,
                        at: now,
                    },
                    ProposalAnswer::Decline => ProposalCommand::Decline {
                        by: ctx.actor.user,
                        message,
                        at: now,
                    },
                };
                proposal.decide(|p| p.decide(command)).map_err(rejected)?;
                let mut changes = Changes::new();
                // Linked meanwhile by hand: accepted all the same, nothing more to link.
                if answer == ProposalAnswer::Accept
                    && !market.state.is_linked(proposal.state.catalog())
                {
                    market
                        .decide(|m| {
                            m.decide(MarketCommand::LinkCatalog {
                                catalog: proposal.state.catalog(),
                                producer: proposal.state.producer(),
                                access,
                            })
                        })
                        .map_err(rejected)?;
                    changes.stream(&market)?;
                }
                changes.stream(&proposal)?;
                Ok(Decided::new(changes, ()))
            })
            .await?;
        Ok(Done::new((), flowed.position))
    }

    /// R-CAT-5: the producer's side takes back an open proposal.
    pub async fn withdraw_proposal(&self, ctx: &Ctx, id: ProposalId) -> Result<Done<()>, AppError> {
        let (_, side) = self.proposal(ctx, id).await?;
        if side != Side::Producer {
            return Err(AppError::Forbidden(
                "only the producer who proposed withdraws a proposal".into(),
            ));
        }
        let out = self
            .exec::<Proposal>(
                id,
                ProposalCommand::Withdraw {
                    by: ctx.actor.user,
                    at: self.now(),
                },
                &ctx.step("withdrawProposal", &fingerprint("withdrawProposal", &id)),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// The proposals made to a market, latest activity first (its administrators).
    pub async fn market_proposals(
        &self,
        ctx: &Ctx,
        market: MarketId,
    ) -> Result<Vec<ProposalSummary>, AppError> {
        let (_, access) = self.market_access(ctx.actor, market).await?;
        if !access.administrator {
            return Err(AppError::Forbidden(format!(
                "you are not an administrator of market {market}"
            )));
        }
        let rows = sqlx::query(&format!(
            "{SUMMARY} WHERE market_id = $1 ORDER BY updated_at DESC, proposal_id"
        ))
        .bind(market.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(summary).collect::<Result<_, _>>()?)
    }

    /// A producer's proposals, latest activity first (its owner and collaborators).
    pub async fn producer_proposals(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
    ) -> Result<Vec<ProposalSummary>, AppError> {
        self.producer_access(ctx.actor, producer).await?;
        let rows = sqlx::query(&format!(
            "{SUMMARY} WHERE producer_id = $1 ORDER BY updated_at DESC, proposal_id"
        ))
        .bind(producer.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(summary).collect::<Result<_, _>>()?)
    }

    /// R-CAT-5: the markets a producer's catalogs are linked to, with the catalogs.
    pub async fn producer_markets(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
    ) -> Result<Vec<(MarketId, Vec<CatalogId>)>, AppError> {
        self.producer_access(ctx.actor, producer).await?;
        let rows: Vec<(Uuid, Vec<Uuid>)> = sqlx::query_as(
            "SELECT market_id, array_agg(catalog_id ORDER BY catalog_id) FROM catalog_links \
             WHERE producer_id = $1 GROUP BY market_id ORDER BY market_id",
        )
        .bind(producer.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(m, cs)| (MarketId(m), cs.into_iter().map(CatalogId).collect()))
            .collect())
    }
}

/// What a person acts for (`me`), as the `directory` projection knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Mine {
    /// Producer accounts owned or worked on as a collaborator, with whether they own it.
    pub producers: Vec<(ProducerId, bool)>,
    /// The catalogs of those accounts: (catalog, producer, name).
    pub catalogs: Vec<(CatalogId, ProducerId, String)>,
    /// Markets administered, with their names.
    pub markets: Vec<(MarketId, String)>,
    /// Members-only markets the person is a member of.
    pub memberships: Vec<(MarketId, String)>,
}

/// One of a customer's orders, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MyOrder {
    pub order: etal_domain::ids::OrderId,
    pub sale: etal_domain::ids::SaleId,
    pub market: MarketId,
    pub number: String,
    pub total: etal_domain::Money,
    pub cancelled: bool,
    pub placed_at: DateTime<Utc>,
}

impl App {
    /// What `user` acts for: accounts, their catalogs, markets administered, memberships.
    pub async fn mine(&self, user: UserId) -> Result<Mine, AppError> {
        let roles: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT kind, target_id FROM user_roles WHERE user_id = $1 ORDER BY kind, target_id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        let mut mine = Mine::default();
        for (kind, id) in roles {
            match kind.as_str() {
                "producer" => {
                    let (account, _) = self.load::<ProducerAccount>(id).await?;
                    // Only what the account still grants (a revoked collaborator sees nothing).
                    if account.owner() == Some(user) || account.is_collaborator(user) {
                        mine.producers
                            .push((ProducerId(id), account.owner() == Some(user)));
                    }
                }
                "market" | "member" => {
                    let (market, _) = self.load::<Market>(id).await?;
                    let entry = (MarketId(id), market.name().to_string());
                    if kind == "market" {
                        mine.markets.push(entry);
                    } else {
                        mine.memberships.push(entry);
                    }
                }
                _ => {}
            }
        }
        let producers: Vec<Uuid> = mine.producers.iter().map(|p| p.0 .0).collect();
        let catalogs: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT catalog_id, producer_id, name FROM producer_catalogs \
             WHERE producer_id = ANY($1) ORDER BY producer_id, name, catalog_id",
        )
        .bind(&producers)
        .fetch_all(&self.pool)
        .await?;
        mine.catalogs = catalogs
            .into_iter()
            .map(|(c, p, n)| (CatalogId(c), ProducerId(p), n))
            .collect();
        Ok(mine)
    }

    /// A customer's orders, latest first.
    pub async fn my_orders(&self, user: UserId) -> Result<Vec<MyOrder>, AppError> {
        let rows = sqlx::query(
            "SELECT order_id, sale_id, market_id, number, total, cancelled, placed_at FROM recap_orders \
             WHERE customer_id = $1 ORDER BY placed_at DESC, order_id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MyOrder {
                    order: etal_domain::ids::OrderId(r.try_get("order_id")?),
                    sale: etal_domain::ids::SaleId(r.try_get("sale_id")?),
                    market: MarketId(r.try_get("market_id")?),
                    number: r.try_get("number")?,
                    total: etal_domain::Money::round(r.try_get("total")?),
                    cancelled: r.try_get("cancelled")?,
                    placed_at: r.try_get("placed_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

/// An invitation to a members-only market, as its administrators see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invitation {
    pub id: Uuid,
    /// None once accepted or erased.
    pub email: Option<String>,
    pub invited_by: UserId,
    pub invited_at: DateTime<Utc>,
    pub accepted_by: Option<UserId>,
}

fn email_key(email: &str) -> Result<String, AppError> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 320
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'));
    if !valid {
        return Err(AppError::bad_input("email", "an e-mail address"));
    }
    Ok(e)
}

impl App {
    /// R-SAL-7: an administrator invites a person by e-mail address (kept outside the events);
    /// the same address again is the same invitation.
    pub async fn invite_member(
        &self,
        ctx: &Ctx,
        market: MarketId,
        email: &str,
    ) -> Result<Uuid, AppError> {
        self.admin_access(ctx.actor, market).await?;
        let email = email_key(email)?;
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO market_invitations (id, market_id, email, invited_by, invited_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (market_id, email) WHERE email IS NOT NULL DO UPDATE SET email = EXCLUDED.email \
             RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(market.0)
        .bind(&email)
        .bind(ctx.actor.user.0)
        .bind(self.now())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// R-SAL-7: the invited person (signed in, with the invited address registered) joins: the
    /// inviting administrator's admission is recorded (MemberApproved), and the invitation is
    /// used. Without an invitation for the caller's address: NOT_FOUND.
    pub async fn accept_invitation(
        &self,
        ctx: &Ctx,
        market: MarketId,
    ) -> Result<Done<()>, AppError> {
        let found: Option<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT i.id, i.invited_by FROM market_invitations i JOIN people p \
               ON p.user_id = $2 AND p.erased_at IS NULL AND lower(trim(p.email)) = i.email \
             WHERE i.market_id = $1 ORDER BY i.invited_at LIMIT 1",
        )
        .bind(market.0)
        .bind(ctx.actor.user.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some((invitation, inviter)) = found else {
            return Err(AppError::not_found("invitation", market));
        };
        let (state, _) = self.market_access(ctx.actor, market).await?;
        let mut position = None;
        if !state.members().contains(&ctx.actor.user) {
            // Admitted by the administrator who invited (still one of them, or refused).
            let by = etal_domain::Actor::new(UserId(inviter), etal_domain::Role::MarketAdmin);
            let out = self
                .exec::<Market>(
                    market,
                    MarketCommand::ApproveMember {
                        user: ctx.actor.user,
                        actor: by,
                    },
                    &ctx.step(
                        "acceptInvitation",
                        &fingerprint("acceptInvitation", &market),
                    ),
                )
                .await?;
            position = out.last_position();
        }
        sqlx::query(
            "UPDATE market_invitations SET email = NULL, accepted_by = $2, accepted_at = $3 WHERE id = $1",
        )
        .bind(invitation)
        .bind(ctx.actor.user.0)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(Done::new((), position))
    }

    /// The invitations of a market (its administrators).
    pub async fn invitations(
        &self,
        ctx: &Ctx,
        market: MarketId,
    ) -> Result<Vec<Invitation>, AppError> {
        self.admin_access(ctx.actor, market).await?;
        type Row = (Uuid, Option<String>, Uuid, DateTime<Utc>, Option<Uuid>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, email, invited_by, invited_at, accepted_by FROM market_invitations \
             WHERE market_id = $1 ORDER BY invited_at, id",
        )
        .bind(market.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, email, by, at, accepted)| Invitation {
                id,
                email,
                invited_by: UserId(by),
                invited_at: at,
                accepted_by: accepted.map(UserId),
            })
            .collect())
    }
}
