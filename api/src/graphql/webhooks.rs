//! Webhooks for integrators: endpoints of a producer or a market, their deliveries, replays.

use async_graphql::{Context, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use etal_app::webhooks::{Endpoint, Owner, WebhookDelivery};
use etal_domain::ids::{MarketId, ProducerId};
use uuid::Uuid;

use super::common::{actor, app, bad_input, OrCoded};

#[derive(SimpleObject)]
pub struct WebhookEndpoint {
    pub endpoint_id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why it was disabled (failing for 24 h).
    pub disabled_reason: Option<String>,
}

impl From<Endpoint> for WebhookEndpoint {
    fn from(e: Endpoint) -> Self {
        WebhookEndpoint {
            endpoint_id: e.id,
            url: e.url,
            event_types: e.event_types,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
        }
    }
}

/// What registering answers: the endpoint and its signing secret, shown this once.
#[derive(SimpleObject)]
pub struct WebhookRegistration {
    pub endpoint: WebhookEndpoint,
    /// HMAC-SHA256 key of the `Etal-Signature` header (`t=<unix time>,v1=<hex of "t.body">`).
    pub secret: String,
}

#[derive(SimpleObject)]
pub struct WebhookDeliveryView {
    /// `<aggregate type>:<id>:<sequence>`, as in the body's `id`.
    pub event_id: String,
    pub event_type: String,
    /// pending, delivered or failed.
    pub status: String,
    pub attempts: i32,
    /// The receiver's last HTTP status.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<WebhookDelivery> for WebhookDeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        WebhookDeliveryView {
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
        }
    }
}

fn owner(producer_id: Option<Uuid>, market_id: Option<Uuid>) -> Result<Owner> {
    match (producer_id, market_id) {
        (Some(p), None) => Ok(Owner::Producer(ProducerId(p))),
        (None, Some(m)) => Ok(Owner::Market(MarketId(m))),
        _ => Err(bad_input(
            "producerId",
            "exactly one of producerId and marketId",
        )),
    }
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// The webhook endpoints of a producer (its people) or a market (its administrators).
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        producer_id: Option<Uuid>,
        market_id: Option<Uuid>,
    ) -> Result<Vec<WebhookEndpoint>> {
        let c = etal_app::Ctx::new(actor(ctx)?);
        Ok(app(ctx)
            .webhook_endpoints(&c, owner(producer_id, market_id)?)
            .await
            .coded()?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// An endpoint's deliveries, newest first, with their status.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Uuid,
    ) -> Result<Vec<WebhookDeliveryView>> {
        let c = etal_app::Ctx::new(actor(ctx)?);
        Ok(app(ctx)
            .webhook_deliveries(&c, endpoint_id)
            .await
            .coded()?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Registers an HTTPS endpoint for a producer's or a market's events (of the types named:
    /// OrderPlaced, QuantityAdjusted, WeightRecorded, PaymentRecorded, RefundRecorded,
    /// OrderCancelled, RecapReady, PayoutStarted). Refused: a URL that is not https://
    /// (WEBHOOK_URL_NOT_HTTPS) or not a public address (WEBHOOK_URL_NOT_PUBLIC).
    async fn register_webhook(
        &self,
        ctx: &Context<'_>,
        producer_id: Option<Uuid>,
        market_id: Option<Uuid>,
        #[graphql(validator(max_length = 2000))] url: String,
        #[graphql(validator(max_items = 20))] event_types: Vec<String>,
    ) -> Result<WebhookRegistration> {
        let c = etal_app::Ctx::new(actor(ctx)?);
        let (endpoint, secret) = app(ctx)
            .register_webhook(&c, owner(producer_id, market_id)?, &url, event_types)
            .await
            .coded()?;
        Ok(WebhookRegistration {
            endpoint: endpoint.into(),
            secret,
        })
    }

    /// Sends an event to an endpoint again (and enables a disabled endpoint).
    async fn replay_webhook(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Uuid,
        #[graphql(validator(max_length = 200))] event_id: String,
    ) -> Result<bool> {
        let c = etal_app::Ctx::new(actor(ctx)?);
        app(ctx)
            .replay_webhook(&c, endpoint_id, &event_id)
            .await
            .coded()?;
        Ok(true)
    }
}
