//! Joining a market (R-SAL-8, R-CAT-5): the market directory and its public cards, proposals of
//! catalogs with their messages, and the markets a producer's catalogs are linked to.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use etal_app::directory::{Around, MarketCard, MarketSearch, ProposalSummary};
use etal_domain::ids::{CatalogId, MarketId, ProducerId, ProposalId};
use etal_domain::market::Location;
use etal_domain::Role;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::common::{actor, app, app_ctx, bad_input, read_your_writes, OrCoded, RoleGuard};
use super::markets::{market_payload, MarketPayload, SlotView, Visibility, Weekday};
use super::scalars::Money;

const ADMIN: RoleGuard = RoleGuard(&[Role::MarketAdmin, Role::PlatformAdmin]);
const PRODUCER: RoleGuard = RoleGuard(&[Role::Producer]);
const EITHER: RoleGuard = RoleGuard(&[Role::Producer, Role::MarketAdmin, Role::PlatformAdmin]);

/// A place on the map (WGS 84 degrees).
#[derive(InputObject)]
pub struct NearInput {
    pub lat: f64,
    pub lon: f64,
}

#[derive(SimpleObject)]
pub struct LocationView {
    pub lat: f64,
    pub lon: f64,
    pub commune: String,
}

/// The administrator to contact.
#[derive(SimpleObject)]
pub struct Contact {
    pub user_id: Uuid,
    pub display_name: String,
}

/// A producer selling on the market (their name as the erasure rules allow, R-ACC-6).
#[derive(SimpleObject)]
pub struct Seller {
    pub producer_id: Uuid,
    pub name: String,
}

/// A market's public card (R-SAL-8).
#[derive(SimpleObject)]
pub struct MarketCardView {
    pub market_id: Uuid,
    pub name: String,
    pub place: String,
    pub location: Option<LocationView>,
    /// From the search's centre, rounded to 0.1 km.
    pub distance_km: Option<f64>,
    pub slots: Vec<SlotView>,
    pub visibility: Option<Visibility>,
    /// People who ordered on the market.
    pub customers_count: i64,
    pub contact: Option<Contact>,
    pub producers: Vec<Seller>,
}

impl From<MarketCard> for MarketCardView {
    fn from(c: MarketCard) -> Self {
        MarketCardView {
            market_id: c.market.0,
            name: c.name,
            place: c.place,
            location: c.location.map(|l| LocationView {
                lat: l.lat.to_f64().unwrap_or_default(),
                lon: l.lon.to_f64().unwrap_or_default(),
                commune: l.commune,
            }),
            distance_km: c.distance_km,
            slots: c.slots.iter().map(SlotView::of).collect(),
            visibility: c.visibility.map(Into::into),
            customers_count: c.customers,
            contact: c.contact.map(|(u, n)| Contact {
                user_id: u.0,
                display_name: n,
            }),
            producers: c
                .producers
                .into_iter()
                .map(|s| Seller {
                    producer_id: s.producer.0,
                    name: s.name,
                })
                .collect(),
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::proposal::ProposalStatus")]
pub enum ProposalStatusView {
    Open,
    Accepted,
    Declined,
    Withdrawn,
}

/// Who a message speaks for.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::proposal::Side")]
pub enum ProposalSide {
    Producer,
    Market,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_app::directory::ProposalAnswer")]
pub enum ProposalAnswerInput {
    Accept,
    Decline,
}

#[derive(SimpleObject)]
pub struct ProposalMessage {
    pub author_id: Uuid,
    pub side: ProposalSide,
    pub text: String,
    pub at: DateTime<Utc>,
}

/// A proposal of a catalog to a market, with its conversation (R-CAT-5).
#[derive(SimpleObject)]
pub struct ProposalView {
    pub id: Uuid,
    pub market_id: Uuid,
    pub catalog_id: Uuid,
    pub producer_id: Uuid,
    pub status: ProposalStatusView,
    /// The side the caller speaks for.
    pub your_side: ProposalSide,
    pub messages: Vec<ProposalMessage>,
}

/// A proposal as listed.
#[derive(SimpleObject)]
pub struct ProposalSummaryView {
    pub id: Uuid,
    pub market_id: Uuid,
    pub catalog_id: Uuid,
    pub producer_id: Uuid,
    /// open, accepted, declined or withdrawn.
    pub status: String,
    pub messages_count: i32,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProposalSummary> for ProposalSummaryView {
    fn from(p: ProposalSummary) -> Self {
        ProposalSummaryView {
            id: p.proposal.0,
            market_id: p.market.0,
            catalog_id: p.catalog.0,
            producer_id: p.producer.0,
            status: p.status,
            messages_count: p.messages,
            opened_at: p.opened_at,
            updated_at: p.updated_at,
        }
    }
}

/// A market a producer's catalogs are linked to.
#[derive(SimpleObject)]
pub struct LinkedMarket {
    pub market_id: Uuid,
    pub name: String,
    pub catalog_ids: Vec<Uuid>,
}

#[derive(SimpleObject)]
pub struct ProposalPayload {
    pub proposal_id: Uuid,
    pub position: Option<String>,
}

#[derive(SimpleObject)]
pub struct InvitationPayload {
    pub invitation_id: Uuid,
    pub market_id: Uuid,
}

/// An invitation to a members-only market (R-SAL-7).
#[derive(SimpleObject)]
pub struct InvitationView {
    pub id: Uuid,
    /// Null once accepted or erased.
    pub email: Option<String>,
    pub invited_by: Uuid,
    pub invited_at: DateTime<Utc>,
    pub accepted_by: Option<Uuid>,
}

#[derive(Default)]
pub struct DirectoryQuery;

#[Object]
impl DirectoryQuery {
    /// R-SAL-8: the markets within `withinKm` of a place (`near`, or the centre of the markets
    /// located in `commune`), nearest first; with `weekday`, only those with a slot that day.
    #[allow(clippy::too_many_arguments)]
    async fn markets(
        &self,
        ctx: &Context<'_>,
        near: Option<NearInput>,
        commune: Option<String>,
        #[graphql(default = 20.0)] within_km: f64,
        weekday: Option<Weekday>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
    ) -> Result<Vec<MarketCardView>> {
        actor(ctx)?;
        let around = match (near, commune) {
            (Some(n), None) => Around::Point {
                lat: n.lat,
                lon: n.lon,
            },
            (None, Some(c)) if !c.trim().is_empty() => Around::Commune(c),
            _ => return Err(bad_input("near", "give either near or commune")),
        };
        let search = MarketSearch {
            around,
            within_km,
            weekday: weekday.map(Into::into),
            first: first as usize,
        };
        let cards = app(ctx).search_markets(&search).await.coded()?;
        Ok(cards.into_iter().map(Into::into).collect())
    }

    /// R-SAL-8: a market's public card.
    async fn market_card(&self, ctx: &Context<'_>, market_id: Uuid) -> Result<MarketCardView> {
        actor(ctx)?;
        Ok(app(ctx)
            .market_card(MarketId(market_id))
            .await
            .coded()?
            .into())
    }

    /// R-CAT-5: a proposal and its messages (the market's administrators, the producer's
    /// people).
    #[graphql(guard = "EITHER")]
    async fn proposal(&self, ctx: &Context<'_>, id: Uuid) -> Result<ProposalView> {
        let c = app_ctx(ctx, None)?;
        let (p, side) = app(ctx).proposal(&c, ProposalId(id)).await.coded()?;
        Ok(ProposalView {
            id,
            market_id: p.market().0,
            catalog_id: p.catalog().0,
            producer_id: p.producer().0,
            status: p.status().into(),
            your_side: side.into(),
            messages: p
                .messages()
                .iter()
                .map(|m| ProposalMessage {
                    author_id: m.author.0,
                    side: m.side.into(),
                    text: m.text.clone(),
                    at: m.at,
                })
                .collect(),
        })
    }

    /// R-CAT-5: the proposals made to a market (`marketId`, its administrators) or by a producer
    /// (`producerId`, its people), latest activity first.
    #[graphql(guard = "EITHER")]
    async fn proposals(
        &self,
        ctx: &Context<'_>,
        market_id: Option<Uuid>,
        producer_id: Option<Uuid>,
    ) -> Result<Vec<ProposalSummaryView>> {
        let c = app_ctx(ctx, None)?;
        let list = match (market_id, producer_id) {
            (Some(m), None) => app(ctx).market_proposals(&c, MarketId(m)).await,
            (None, Some(p)) => app(ctx).producer_proposals(&c, ProducerId(p)).await,
            _ => return Err(bad_input("marketId", "give either marketId or producerId")),
        }
        .coded()?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// R-SAL-7: a market's invitations (its administrators).
    #[graphql(guard = "ADMIN")]
    async fn invitations(&self, ctx: &Context<'_>, market_id: Uuid) -> Result<Vec<InvitationView>> {
        let c = app_ctx(ctx, None)?;
        let list = app(ctx)
            .invitations(&c, MarketId(market_id))
            .await
            .coded()?;
        Ok(list
            .into_iter()
            .map(|i| InvitationView {
                id: i.id,
                email: i.email,
                invited_by: i.invited_by.0,
                invited_at: i.invited_at,
                accepted_by: i.accepted_by.map(|u| u.0),
            })
            .collect())
    }

    /// R-CAT-5: the markets a producer's catalogs are linked to ("my markets").
    #[graphql(guard = "PRODUCER")]
    async fn linked_markets(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
    ) -> Result<Vec<LinkedMarket>> {
        let c = app_ctx(ctx, None)?;
        let app = app(ctx);
        let linked = app
            .producer_markets(&c, ProducerId(producer_id))
            .await
            .coded()?;
        let mut out = Vec::with_capacity(linked.len());
        for (market, catalogs) in linked {
            let card = app.market_card(market).await.coded()?;
            out.push(LinkedMarket {
                market_id: market.0,
                name: card.name,
                catalog_ids: catalogs.into_iter().map(|c| c.0).collect(),
            });
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct DirectoryMutation;

async fn proposal_payload(
    ctx: &Context<'_>,
    id: Uuid,
    done: std::result::Result<etal_app::Done<()>, etal_app::AppError>,
) -> Result<ProposalPayload> {
    let done = done.coded()?;
    Ok(ProposalPayload {
        proposal_id: id,
        position: read_your_writes(ctx, done.position).await,
    })
}

#[Object]
impl DirectoryMutation {
    /// R-SAL-8: where the market is: WGS 84 degrees and its commune (an administrator).
    #[graphql(guard = "ADMIN")]
    async fn set_market_location(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        lat: f64,
        lon: f64,
        commune: String,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        // Degrees from a GraphQL Float, kept exact to 7 places (about a centimetre).
        let degrees = |field: &str, v: f64| {
            Decimal::from_f64(v)
                .map(|d| d.round_dp(7))
                .ok_or_else(|| bad_input(field, "a finite number of degrees"))
        };
        let location = Location {
            lat: degrees("lat", lat)?,
            lon: degrees("lon", lon)?,
            commune,
        };
        let done = app(ctx)
            .set_location(&c, MarketId(market_id), location)
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-ORD-7: the least an order of this market may amount to (absent: no minimum), for
    /// orders placed from now on (an administrator).
    #[graphql(guard = "ADMIN")]
    async fn set_minimum_order(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        amount: Option<Money>,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_minimum_order(&c, MarketId(market_id), amount.map(|m| m.0))
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-ORD-6/7: home delivery run by the market (a fee, free above an amount, a minimum for a
    /// delivery; absent: none), for orders placed from now on (an administrator). An order
    /// of one catalog whose producer delivers is delivered by the producer; any other order
    /// asking for delivery, by the market, and its fee is the market's.
    #[graphql(guard = "ADMIN")]
    async fn set_market_delivery(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        delivery: Option<super::catalogs::DeliveryOfferInput>,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let offer = delivery.map(|d| etal_domain::catalog::DeliveryOffer {
            fee: d.fee.0,
            free_above: d.free_above.map(|m| m.0),
            minimum: d.minimum.map(|m| m.0),
        });
        let done = app(ctx)
            .set_market_delivery(&c, MarketId(market_id), offer)
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-1: the AMAP flag (an administrator); sales generated from now on carry it.
    #[graphql(guard = "ADMIN")]
    async fn set_amap(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        amap: bool,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx).set_amap(&c, MarketId(market_id), amap).await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-7: an administrator invites a person to the market by e-mail address (kept outside
    /// the events); the person joins with `acceptInvitation` once signed in with that address
    /// registered.
    #[graphql(guard = "ADMIN")]
    async fn invite_member(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        #[graphql(validator(max_length = 320))] email: String,
    ) -> Result<InvitationPayload> {
        let c = app_ctx(ctx, None)?;
        let id = app(ctx)
            .invite_member(&c, MarketId(market_id), &email)
            .await
            .coded()?;
        Ok(InvitationPayload {
            invitation_id: id,
            market_id,
        })
    }

    /// R-SAL-7: the invited person joins the market (admitted by the administrator who invited).
    async fn accept_invitation(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx).accept_invitation(&c, MarketId(market_id)).await;
        market_payload(ctx, market_id, done).await
    }

    /// R-CAT-5: the producer proposes one of their catalogs to a market, with a message.
    #[graphql(guard = "PRODUCER")]
    async fn propose_catalog(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        catalog_id: Uuid,
        message: String,
        idempotency_key: Option<String>,
    ) -> Result<ProposalPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .propose_catalog(&c, MarketId(market_id), CatalogId(catalog_id), &message)
            .await
            .coded()?;
        Ok(ProposalPayload {
            proposal_id: done.value.0,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-CAT-5: a message on an open proposal, from the producer's people or the market's
    /// administrators.
    #[graphql(guard = "EITHER")]
    async fn post_proposal_message(
        &self,
        ctx: &Context<'_>,
        proposal_id: Uuid,
        message: String,
        idempotency_key: Option<String>,
    ) -> Result<ProposalPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .post_proposal_message(&c, ProposalId(proposal_id), &message)
            .await;
        proposal_payload(ctx, proposal_id, done).await
    }

    /// R-CAT-5: an administrator accepts (the catalog is linked, R-CAT-4) or declines.
    #[graphql(guard = "ADMIN")]
    async fn answer_proposal(
        &self,
        ctx: &Context<'_>,
        proposal_id: Uuid,
        answer: ProposalAnswerInput,
        message: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<ProposalPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .answer_proposal(
                &c,
                ProposalId(proposal_id),
                answer.into(),
                message.as_deref(),
            )
            .await;
        proposal_payload(ctx, proposal_id, done).await
    }

    /// R-CAT-5: the producer takes back an open proposal.
    #[graphql(guard = "PRODUCER")]
    async fn withdraw_proposal(
        &self,
        ctx: &Context<'_>,
        proposal_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<ProposalPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .withdraw_proposal(&c, ProposalId(proposal_id))
            .await;
        proposal_payload(ctx, proposal_id, done).await
    }
}
