//! The Stripe adapter of the payment port (`ETAL_PAYMENTS=stripe`), over Stripe's documented
//! HTTP API with reqwest and thin types of our own (ADR 0012), and the verification and
//! application of Stripe's webhooks (R-PAY-1, R-ORD-5).
//!
//! - A charge creates a PaymentIntent (amount in cents, EUR, the order and payment ids as
//!   metadata) that the customer's client confirms with its client secret; the order awaits
//!   `payment_intent.succeeded`.
//! - Refunds and transfers to producers' connected accounts carry the outbox row's
//!   `Idempotency-Key`, so a retry is the same call.
//! - Every call is traced (kind, key, status, latency, outcome); the secret key never is.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use etal_domain::ids::{OrderId, PaymentId};
use etal_domain::order::{Order, OrderCommand, PaymentMethod};
use etal_domain::{Actor, Money, Role};
use etal_store::{Changes, CommandContext};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::flow::Decided;
use crate::outbox::rejected;
use crate::payments::{ChargeRequest, Charged, PaymentFailure, PaymentProvider, TransferRequest};
use crate::{App, AppError};

/// Where and how to reach Stripe. The secret key is kept out of `Debug`.
#[derive(Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com` (a local fake in tests).
    pub api_base: String,
    pub secret_key: String,
    /// Sent as `Stripe-Version` when set (else the account's default version).
    pub api_version: Option<String>,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("secret_key", &"<redacted>")
            .field("api_version", &self.api_version)
            .finish()
    }
}

/// The payment port over Stripe's API.
pub struct StripeProvider {
    config: StripeConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct StripeObject {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

#[derive(Deserialize)]
struct StripeErrorBody {
    error: StripeErrorDetail,
}

#[derive(Deserialize)]
struct StripeErrorDetail {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl StripeProvider {
    pub fn new(config: StripeConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { config, http })
    }

    /// One POST with a form body and an idempotency key; a 2xx answer's object, a refusal
    /// (4xx but 429), or an unavailable provider (network, 429, 5xx: asked again later).
    async fn post(
        &self,
        kind: &'static str,
        path: &str,
        key: &str,
        form: &[(&str, String)],
    ) -> Result<StripeObject, PaymentFailure> {
        let started = Instant::now();
        let mut request = self
            .http
            .post(format!(
                "{}{path}",
                self.config.api_base.trim_end_matches('/')
            ))
            .bearer_auth(&self.config.secret_key)
            .header("Idempotency-Key", key)
            .form(form);
        if let Some(v) = &self.config.api_version {
            request = request.header("Stripe-Version", v);
        }
        let response = request.send().await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let e = e.without_url();
                tracing::info!(provider = "stripe", call = kind, key, latency_ms, outcome = "unreachable", error = %e, "stripe call");
                return Err(PaymentFailure::unavailable(format!(
                    "stripe unreachable: {e}"
                )));
            }
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            return match serde_json::from_slice::<StripeObject>(&body) {
                Ok(o) => {
                    tracing::info!(provider = "stripe", call = kind, key, status = status.as_u16(), latency_ms, id = %o.id, outcome = "ok", "stripe call");
                    Ok(o)
                }
                Err(e) => {
                    tracing::warn!(provider = "stripe", call = kind, key, status = status.as_u16(), latency_ms, outcome = "unreadable", error = %e, "stripe call");
                    Err(PaymentFailure::unavailable(format!(
                        "stripe answered {status} with an unreadable body"
                    )))
                }
            };
        }
        let detail = serde_json::from_slice::<StripeErrorBody>(&body)
            .map(|b| b.error)
            .ok();
        let describe = detail
            .as_ref()
            .map(|d| {
                format!(
                    "{} ({})",
                    d.message.clone().unwrap_or_default(),
                    d.code
                        .clone()
                        .or_else(|| d.kind.clone())
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let transient = status.is_server_error() || status.as_u16() == 429;
        tracing::info!(provider = "stripe", call = kind, key, status = status.as_u16(), latency_ms, outcome = if transient { "retry" } else { "refused" }, detail = %describe, "stripe call");
        let reason = format!("stripe {kind}: {status}: {describe}");
        Err(if transient {
            PaymentFailure::unavailable(reason)
        } else {
            PaymentFailure::refused(reason)
        })
    }
}

/// Euros to Stripe's integer cents.
fn cents(amount: Money) -> String {
    amount.cents().to_string()
}

#[async_trait::async_trait]
impl PaymentProvider for StripeProvider {
    async fn charge(&self, request: &ChargeRequest<'_>) -> Result<Charged, PaymentFailure> {
        let intent = self
            .post(
                "payment_intent",
                "/v1/payment_intents",
                request.key,
                &[
                    ("amount", cents(request.amount)),
                    ("currency", "eur".into()),
                    ("automatic_payment_methods[enabled]", "true".into()),
                    ("metadata[order_id]", request.order.to_string()),
                    ("metadata[payment_id]", request.payment.0.to_string()),
                ],
            )
            .await?;
        if intent.status.as_deref() == Some("succeeded") {
            return Ok(Charged::Paid {
                provider_ref: intent.id,
            });
        }
        let client_secret = intent.client_secret.ok_or_else(|| {
            PaymentFailure::unavailable("stripe returned a PaymentIntent without client_secret")
        })?;
        Ok(Charged::Awaiting {
            provider_ref: intent.id,
            client_secret,
        })
    }

    async fn cancel_charge(&self, key: &str, provider_ref: &str) -> Result<(), PaymentFailure> {
        self.post(
            "cancel_payment_intent",
            &format!("/v1/payment_intents/{provider_ref}/cancel"),
            key,
            &[("cancellation_reason", "abandoned".into())],
        )
        .await
        .map(|_| ())
    }

    async fn refund(
        &self,
        key: &str,
        charge_ref: &str,
        amount: Money,
    ) -> Result<String, PaymentFailure> {
        let refund = self
            .post(
                "refund",
                "/v1/refunds",
                key,
                &[
                    ("payment_intent", charge_ref.to_string()),
                    ("amount", cents(amount)),
                ],
            )
            .await?;
        if refund.status.as_deref() == Some("failed") {
            return Err(PaymentFailure::refused(format!(
                "stripe refund {} failed",
                refund.id
            )));
        }
        Ok(refund.id)
    }

    async fn transfer(&self, request: &TransferRequest<'_>) -> Result<String, PaymentFailure> {
        let Some(destination) = request.destination else {
            return Err(PaymentFailure::refused(
                "the producer has no Stripe account to transfer to (setPayoutAccount)",
            ));
        };
        let transfer = self
            .post(
                "transfer",
                "/v1/transfers",
                request.key,
                &[
                    ("amount", cents(request.amount)),
                    ("currency", "eur".into()),
                    ("destination", destination.to_string()),
                    ("metadata[producer_id]", request.producer.to_string()),
                    ("metadata[payout_id]", request.payout.0.to_string()),
                ],
            )
            .await?;
        Ok(transfer.id)
    }
}

/// Why a webhook was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// How far a webhook's timestamp may be from now.
pub const WEBHOOK_TOLERANCE: chrono::Duration = chrono::Duration::minutes(5);

/// Verifies a `Stripe-Signature` header (`t=...,v1=...[,v1=...]`): an HMAC-SHA256, with one of
/// the endpoint's secrets, of `"{t}.{payload}"`, hex-encoded, equal to one of the `v1` values
/// (compared in constant time), and `t` within `tolerance` of `now`.
pub fn verify_signature(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[String],
    now: DateTime<Utc>,
    tolerance: chrono::Duration,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => timestamp = v.parse().ok(),
            "v1" => {
                if let Ok(bytes) = hex::decode(v) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let at = DateTime::<Utc>::from_timestamp(t, 0).ok_or(SignatureError::Malformed)?;
    if (now - at).abs() > tolerance {
        return Err(SignatureError::Stale);
    }
    for secret in secrets {
        for signature in &signatures {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                continue;
            };
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(payload);
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// The part of a Stripe event this service reads.
#[derive(Debug, Clone, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: StripeEventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StripeEventData {
    pub object: serde_json::Value,
}

/// What applying a webhook did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// Recorded (the event's effect is in the log, once).
    Applied,
    /// Nothing to record: a duplicate, an event already reflected, or a type etal does not use.
    Ignored { why: String },
}

fn metadata_id(object: &serde_json::Value, field: &str) -> Option<uuid::Uuid> {
    object["metadata"][field].as_str()?.parse().ok()
}

impl App {
    /// Applies one verified Stripe event, exactly once per event id (the flow's idempotency
    /// record is committed with its effect): a duplicate returns the first outcome and writes
    /// nothing. Unknown types are acknowledged and ignored.
    pub async fn apply_stripe_event(
        &self,
        event: &StripeEvent,
    ) -> Result<WebhookOutcome, AppError> {
        let object = &event.data.object;
        match event.kind.as_str() {
            "payment_intent.succeeded" | "payment_intent.payment_failed" => {
                let (Some(order), Some(payment)) = (
                    metadata_id(object, "order_id").map(OrderId),
                    metadata_id(object, "payment_id").map(PaymentId),
                ) else {
                    return Ok(WebhookOutcome::Ignored {
                        why: "a PaymentIntent etal did not create".into(),
                    });
                };
                let intent = object["id"].as_str().unwrap_or_default().to_string();
                let succeeded = event.kind == "payment_intent.succeeded";
                let received = object["amount_received"]
                    .as_i64()
                    .or_else(|| object["amount"].as_i64())
                    .unwrap_or(0);
                let reason = object["last_payment_error"]["message"]
                    .as_str()
                    .unwrap_or("payment failed")
                    .to_string();
                let cc = CommandContext::new(Actor::system()).with_idempotency(
                    format!("stripe:{}", event.id),
                    format!("stripe:{}:{}", event.kind, event.id),
                );
                let flowed = self
                    .run_flow(&cc, vec![format!("order:{order}")], || {
                        let (intent, reason) = (intent.clone(), reason.clone());
                        async move {
                            let mut order_stream =
                                self.bus.load_stream::<Order>(&order.to_string()).await?;
                            if !order_stream.exists() {
                                return Ok(Decided::new(
                                    Changes::new(),
                                    WebhookOutcome::Ignored {
                                        why: format!("no order {order}"),
                                    },
                                ));
                            }
                            let now = self.now();
                            let command = if succeeded {
                                OrderCommand::RecordPayment {
                                    payment,
                                    method: PaymentMethod::Online {
                                        provider_ref: intent,
                                    },
                                    amount: Money::from_cents(received),
                                    actor: Actor::new(
                                        order_stream.state.customer(),
                                        Role::Customer,
                                    ),
                                    market_access: None,
                                    at: now,
                                }
                            } else {
                                OrderCommand::RecordPaymentFailure {
                                    payment,
                                    reason,
                                    at: now,
                                }
                            };
                            let events = order_stream
                                .decide(|o| o.decide(command))
                                .map_err(rejected)?
                                .len();
                            let mut changes = Changes::new();
                            // Paid after a cancellation (an expiry), or more than the order
                            // owes now: owed back at once.
                            if succeeded
                                && (order_stream.state.is_cancelled()
                                    || order_stream.state.paid() - order_stream.state.refunded()
                                        > order_stream.state.total())
                            {
                                self.request_refunds(&mut order_stream, &mut changes)?;
                            }
                            changes.stream(&order_stream)?;
                            let outcome = if events == 0 {
                                WebhookOutcome::Ignored {
                                    why: "already recorded".into(),
                                }
                            } else {
                                WebhookOutcome::Applied
                            };
                            Ok(Decided::new(changes, outcome))
                        }
                    })
                    .await?;
                self.deliver_now(&flowed.outbox, &flowed.owed).await;
                Ok(flowed.value)
            }
            // A transfer to a connected account reversed: the payout is the producer's balance
            // again (R-PAY-2, as a bank return), once.
            "transfer.reversed" => {
                let (Some(producer), Some(payout)) = (
                    metadata_id(object, "producer_id").map(etal_domain::ids::ProducerId),
                    metadata_id(object, "payout_id").map(etal_domain::payout::PayoutId),
                ) else {
                    return Ok(WebhookOutcome::Ignored {
                        why: "a transfer etal did not make".into(),
                    });
                };
                let ctx = crate::Ctx::system().with_key(format!("stripe:{}", event.id));
                self.record_bank_return(&ctx, producer, payout, "transfer reversed at Stripe")
                    .await?;
                Ok(WebhookOutcome::Applied)
            }
            // Refunds and transfers are recorded when Stripe answers their call (the outbox);
            // these confirm them.
            "charge.refunded" | "refund.updated" | "transfer.created" | "transfer.updated"
            | "payout.paid" | "payout.failed" => Ok(WebhookOutcome::Ignored {
                why: "recorded when the call was answered".into(),
            }),
            other => Ok(WebhookOutcome::Ignored {
                why: format!("event type {other} is not used"),
            }),
        }
    }
}
