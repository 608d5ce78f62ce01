//! Webhooks for integrators (R-NOT): a producer's people or a market's administrator register
//! an HTTPS endpoint and the event types it wants; each event of theirs (an order of their
//! market or with their lines, their recap, their payout; `webhook_events`, written by the
//! `notifications` projection) is POSTed to it once, signed, in the log's order: an endpoint's
//! next delivery waits for the one before. A failure is retried with exponential backoff (1 s
//! doubling, at most 10 min apart) for 24 h, then the delivery fails, the endpoint is disabled
//! and its owner is told by e-mail (a `system_messages` row, delivered by the notifications
//! sender). Deliveries are listed with their status and can be replayed.
//!
//! Signature: header `Etal-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with
//! the endpoint's secret>` (the secret is shown once, at registration).

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etal_domain::ids::{MarketId, ProducerId};
use etal_projections::notifications::WEBHOOK_EVENT_TYPES;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;
use uuid::Uuid;

use crate::{App, AppError, Ctx};

/// Who an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Producer(ProducerId),
    Market(MarketId),
}

impl Owner {
    fn kind(&self) -> &'static str {
        match self {
            Owner::Producer(_) => "producer",
            Owner::Market(_) => "market",
        }
    }
    fn id(&self) -> Uuid {
        match self {
            Owner::Producer(p) => p.0,
            Owner::Market(m) => m.0,
        }
    }
}

/// An endpoint as its owner sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
}

/// One delivery of an event to an endpoint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookDelivery {
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How long a delivery is retried before it fails and its endpoint is disabled.
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);

/// The wait before the next attempt after `attempts` failed ones: 1 s doubling, at most 10 min.
fn backoff(attempts: i32) -> chrono::Duration {
    chrono::Duration::seconds(
        2i64.saturating_pow((attempts.clamp(1, 20) - 1) as u32)
            .clamp(1, 600),
    )
}

/// The signature header of `body` sent at `t`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn coded(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::Rejected {
        code,
        message: message.into(),
    }
}

/// Loopback, private, link-local, unspecified, shared, documentation or multicast: not a
/// public address (SSRF).
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

impl App {
    /// Checks an endpoint's URL: HTTPS with a public host (unless the service allows insecure
    /// endpoints, for tests and local development).
    async fn check_webhook_url(&self, url: &str) -> Result<reqwest::Url, AppError> {
        if url.len() > 2000 {
            return Err(AppError::bad_input("url", "at most 2000 characters"));
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| coded("WEBHOOK_URL_INVALID", format!("not a URL: {e}")))?;
        let insecure = self.settings.webhooks_allow_insecure;
        if parsed.scheme() != "https" && !(insecure && parsed.scheme() == "http") {
            return Err(coded("WEBHOOK_URL_NOT_HTTPS", "a webhook URL is https://"));
        }
        let Some(host) = parsed.host_str() else {
            return Err(coded("WEBHOOK_URL_INVALID", "a webhook URL names a host"));
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(coded(
                "WEBHOOK_URL_INVALID",
                "no credentials in a webhook URL",
            ));
        }
        if !insecure {
            let port = parsed.port_or_known_default().unwrap_or(443);
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|e| coded("WEBHOOK_URL_UNRESOLVED", format!("{host}: {e}")))?
                    .map(|a| a.ip())
                    .collect(),
            };
            if addrs.is_empty() || addrs.iter().any(|ip| is_internal(*ip)) {
                return Err(coded(
                    "WEBHOOK_URL_NOT_PUBLIC",
                    format!("{host} is not a public address"),
                ));
            }
        }
        Ok(parsed)
    }

    /// Whether the caller manages the endpoints of `owner`: a producer's people, a market's
    /// administrators.
    async fn webhook_owner_access(&self, ctx: &Ctx, owner: Owner) -> Result<(), AppError> {
        match owner {
            Owner::Producer(p) => self.producer_access(ctx.actor, p).await.map(|_| ()),
            Owner::Market(m) => self.admin_access(ctx.actor, m).await.map(|_| ()),
        }
    }

    /// Registers an endpoint; returns it and its secret (shown this once).
    pub async fn register_webhook(
        &self,
        ctx: &Ctx,
        owner: Owner,
        url: &str,
        event_types: Vec<String>,
    ) -> Result<(Endpoint, String), AppError> {
        self.webhook_owner_access(ctx, owner).await?;
        if event_types.is_empty() {
            return Err(AppError::bad_input("eventTypes", "at least one event type"));
        }
        if let Some(bad) = event_types
            .iter()
            .find(|t| !WEBHOOK_EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(AppError::bad_input(
                "eventTypes",
                format!("{bad:?} is not one of {}", WEBHOOK_EVENT_TYPES.join(", ")),
            ));
        }
        let url = self.check_webhook_url(url).await?;
        let id = Uuid::now_v7();
        let secret = format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>()));
        // Events from now on: the endpoint starts at the head of what was taken in.
        sqlx::query(
            "INSERT INTO webhook_endpoints (endpoint_id, owner_kind, owner_id, url, secret, event_types, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(owner.kind())
        .bind(owner.id())
        .bind(url.as_str())
        .bind(&secret)
        .bind(&event_types)
        .bind(ctx.actor.user.0)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok((
            Endpoint {
                id,
                url: url.to_string(),
                event_types,
                enabled: true,
                disabled_reason: None,
            },
            secret,
        ))
    }

    /// The endpoints of `owner` (its people).
    pub async fn webhook_endpoints(
        &self,
        ctx: &Ctx,
        owner: Owner,
    ) -> Result<Vec<Endpoint>, AppError> {
        self.webhook_owner_access(ctx, owner).await?;
        let rows = sqlx::query(
            "SELECT endpoint_id, url, event_types, enabled, disabled_reason FROM webhook_endpoints \
             WHERE owner_kind = $1 AND owner_id = $2 ORDER BY created_at",
        )
        .bind(owner.kind())
        .bind(owner.id())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Endpoint {
                    id: r.try_get("endpoint_id")?,
                    url: r.try_get("url")?,
                    event_types: r.try_get("event_types")?,
                    enabled: r.try_get("enabled")?,
                    disabled_reason: r.try_get("disabled_reason")?,
                })
            })
            .collect()
    }

    /// The owner of an endpoint, if it exists.
    async fn endpoint_owner(&self, endpoint: Uuid) -> Result<Option<Owner>, AppError> {
        let row = sqlx::query(
            "SELECT owner_kind, owner_id FROM webhook_endpoints WHERE endpoint_id = $1",
        )
        .bind(endpoint)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => None,
            Some(r) => {
                let id: Uuid = r.try_get("owner_id")?;
                Some(match r.try_get::<String, _>("owner_kind")?.as_str() {
                    "producer" => Owner::Producer(ProducerId(id)),
                    _ => Owner::Market(MarketId(id)),
                })
            }
        })
    }

    /// The deliveries of an endpoint, newest first (its owner's people).
    pub async fn webhook_deliveries(
        &self,
        ctx: &Ctx,
        endpoint: Uuid,
    ) -> Result<Vec<WebhookDelivery>, AppError> {
        let owner = self
            .endpoint_owner(endpoint)
            .await?
            .ok_or_else(|| AppError::not_found("webhook endpoint", endpoint))?;
        self.webhook_owner_access(ctx, owner).await?;
        let rows = sqlx::query(
            "SELECT event_id, event_type, status, attempts, last_status, last_error, delivered_at \
             FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY txid DESC, position DESC LIMIT 500",
        )
        .bind(endpoint)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WebhookDelivery {
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    status: r.try_get("status")?,
                    attempts: r.try_get("attempts")?,
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                    delivered_at: r.try_get("delivered_at")?,
                })
            })
            .collect()
    }

    /// Sends an event to an endpoint again (a replay: delivered or failed, it becomes due now;
    /// a disabled endpoint is enabled again).
    pub async fn replay_webhook(
        &self,
        ctx: &Ctx,
        endpoint: Uuid,
        event_id: &str,
    ) -> Result<(), AppError> {
        let owner = self
            .endpoint_owner(endpoint)
            .await?
            .ok_or_else(|| AppError::not_found("webhook endpoint", endpoint))?;
        self.webhook_owner_access(ctx, owner).await?;
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, first_attempt_at = NULL \
             WHERE endpoint_id = $1 AND event_id = $2",
        )
        .bind(endpoint)
        .bind(event_id)
        .bind(self.now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(AppError::not_found("webhook delivery", event_id));
        }
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = true, disabled_at = NULL, disabled_reason = NULL \
             WHERE endpoint_id = $1",
        )
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One round: fans the new events out to the endpoints that follow them, then delivers the
    /// head of each endpoint's queue. Returns the deliveries made.
    pub async fn deliver_webhooks(&self) -> Result<usize, AppError> {
        self.fan_out_webhooks().await?;
        let endpoints: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT endpoint_id, url, secret FROM webhook_endpoints e WHERE enabled AND EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending')",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut delivered = 0;
        for (endpoint, url, secret) in endpoints {
            delivered += self.deliver_endpoint(endpoint, &url, &secret).await?;
        }
        Ok(delivered)
    }

    async fn fan_out_webhooks(&self) -> Result<(), AppError> {
        let mut tx = self.pool.begin().await?;
        let (txid, position): (i64, i64) =
            sqlx::query_as("SELECT txid, position FROM webhook_cursor WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        let last: Option<(i64, i64)> = sqlx::query_as(
            "SELECT txid, position FROM (SELECT txid, position FROM webhook_events \
             WHERE (txid, position) > ($1, $2) ORDER BY txid, position LIMIT 1000) t \
             ORDER BY txid DESC, position DESC LIMIT 1",
        )
        .bind(txid)
        .bind(position)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((last_txid, last_position)) = last else {
            tx.rollback().await?;
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, txid, position, event_id, event_type, status, next_attempt_at) \
             SELECT e.endpoint_id, w.txid, w.position, w.event_id, w.event_type, 'pending', $5 \
             FROM webhook_events w JOIN webhook_endpoints e ON e.owner_id = ANY (w.owners) \
             AND w.event_type = ANY (e.event_types) AND e.created_at <= w.occurred_at_or_now \
             WHERE (w.txid, w.position) > ($1, $2) AND (w.txid, w.position) <= ($3, $4) \
             ON CONFLICT DO NOTHING"
                .replace("w.occurred_at_or_now", "(w.body->>'occurredAt')::timestamptz")
                .as_str(),
        )
        .bind(txid)
        .bind(position)
        .bind(last_txid)
        .bind(last_position)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE webhook_cursor SET txid = $1, position = $2 WHERE id = 1")
            .bind(last_txid)
            .bind(last_position)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delivers an endpoint's due deliveries in order, stopping at the first that fails.
    async fn deliver_endpoint(
        &self,
        endpoint: Uuid,
        url: &str,
        secret: &str,
    ) -> Result<usize, AppError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let mut delivered = 0;
        for _ in 0..100 {
            let mut tx = self.pool.begin().await?;
            let locked: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 11))")
                    .bind(format!("webhook:{endpoint}"))
                    .fetch_one(&mut *tx)
                    .await?;
            if !locked {
                return Ok(delivered);
            }
            let now = self.now();
            let head = sqlx::query(
                "SELECT d.txid, d.position, d.attempts, d.next_attempt_at, d.first_attempt_at, w.body \
                 FROM webhook_deliveries d JOIN webhook_events w USING (txid, position) \
                 WHERE d.endpoint_id = $1 AND d.status = 'pending' ORDER BY d.txid, d.position LIMIT 1",
            )
            .bind(endpoint)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(head) = head else {
                return Ok(delivered);
            };
            let next: DateTime<Utc> = head.try_get("next_attempt_at")?;
            if next > now {
                return Ok(delivered);
            }
            let (txid, position): (i64, i64) = (head.try_get("txid")?, head.try_get("position")?);
            let attempts: i32 = head.try_get("attempts")?;
            let first: DateTime<Utc> = head
                .try_get::<Option<DateTime<Utc>>, _>("first_attempt_at")?
                .unwrap_or(now);
            let body = serde_json::to_vec(&head.try_get::<serde_json::Value, _>("body")?)
                .map_err(|e| AppError::Internal(e.to_string()))?;
            let sent = client
                .post(url)
                .header("content-type", "application/json")
                .header("etal-signature", signature(secret, now.timestamp(), &body))
                .body(body)
                .send()
                .await;
            let (ok, status, error) = match sent {
                Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16() as i32), None),
                Ok(r) => (
                    false,
                    Some(r.status().as_u16() as i32),
                    Some(format!("HTTP {}", r.status())),
                ),
                Err(e) => (false, None, Some(e.to_string())),
            };
            let give_up = !ok && now - first >= GIVE_UP_AFTER;
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $4, attempts = attempts + 1, last_status = $5, \
                 last_error = $6, first_attempt_at = $7, next_attempt_at = $8, \
                 delivered_at = CASE WHEN $4 = 'delivered' THEN $9 ELSE delivered_at END \
                 WHERE endpoint_id = $1 AND txid = $2 AND position = $3",
            )
            .bind(endpoint)
            .bind(txid)
            .bind(position)
            .bind(if ok { "delivered" } else if give_up { "failed" } else { "pending" })
            .bind(status)
            .bind(&error)
            .bind(first)
            .bind(now + backoff(attempts + 1))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if give_up {
                sqlx::query(
                    "UPDATE webhook_endpoints SET enabled = false, disabled_at = $2, \
                     disabled_reason = $3 WHERE endpoint_id = $1",
                )
                .bind(endpoint)
                .bind(now)
                .bind(format!(
                    "failing for 24 h: {}",
                    error.clone().unwrap_or_default()
                ))
                .execute(&mut *tx)
                .await?;
                // Its owner is told, once: the message and its delivery commit with the change.
                let owner = sqlx::query(
                    "SELECT owner_kind, owner_id FROM webhook_endpoints WHERE endpoint_id = $1",
                )
                .bind(endpoint)
                .fetch_one(&mut *tx)
                .await?;
                let message = Uuid::new_v5(
                    &Uuid::NAMESPACE_OID,
                    format!("webhook_disabled:{endpoint}:{}", now.timestamp_micros()).as_bytes(),
                );
                sqlx::query(
                    "INSERT INTO system_messages (message_id, recipient_kind, recipient, kind, context, created_at) \
                     VALUES ($1, $2, $3, 'webhook_disabled', $4, $5)",
                )
                .bind(message)
                .bind(owner.try_get::<String, _>("owner_kind")?)
                .bind(owner.try_get::<Uuid, _>("owner_id")?)
                .bind(serde_json::json!({"endpoint": endpoint, "url": url, "error": error,
                                         "market": (owner.try_get::<String, _>("owner_kind")? == "market")
                                             .then(|| owner.try_get::<Uuid, _>("owner_id")).transpose()?}))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO notification_deliveries (message_id, status, next_attempt_at, updated_at) \
                     VALUES ($1, 'pending', $2, $2)",
                )
                .bind(message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tracing::warn!(%endpoint, url, "webhook endpoint disabled after failing for 24 h; its owner is told");
            }
            tx.commit().await?;
            if !ok {
                return Ok(delivered);
            }
            delivered += 1;
        }
        Ok(delivered)
    }
}
