//! The outbox: every call to the payment provider is a row committed with the change that makes
//! it owed (design property 5b). It is delivered after the commit, right away by the flow that
//! owed it and otherwise by the worker ([`App::deliver_outbox`], run by `etal serve`), with the
//! provider idempotency key `etal-<row id>`, so a second delivery of the same row is the same
//! call to the provider. The provider's answer is recorded as events in the transaction that
//! settles the row: a crash between the call and the record delivers again, and the provider
//! gives the first answer back. Failed refunds are retried with backoff until acknowledged; a
//! declined charge cancels the order (all its streams, in one commit).

use std::sync::Arc;
use std::time::Duration;

use etal_domain::ids::{OrderId, PaymentId, ProducerId};
use etal_domain::order::{Canceller, Order, OrderCommand, PaymentMethod};
use etal_domain::payout::{PayoutId, ProducerBalance, ProducerBalanceCommand};
use etal_domain::{Actor, Money, Role};
use etal_store::log::Position;
use etal_store::{Changes, CommandContext, CommitError, OutboxMessage, Stream};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::schedule::kinds as schedules;
use super::{App, AppError};

/// The kinds of outbox messages.
pub mod kinds {
    /// Charge an online order's total (payload [`super::ChargeMessage`]).
    pub const CHARGE: &str = "charge";
    /// Refund part of an online payment (payload [`super::RefundMessage`]).
    pub const REFUND: &str = "refund";
    /// Pay a payout to the producer's bank account (payload [`super::TransferMessage`]).
    pub const TRANSFER: &str = "transfer";
    /// Give up a charge the customer never confirmed (payload [`super::CancelChargeMessage`]).
    pub const CANCEL_CHARGE: &str = "cancel_charge";
}

/// Give up, at the provider, a payment an expired or cancelled order still awaits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelChargeMessage {
    pub order: OrderId,
    pub payment: PaymentId,
    pub provider_ref: String,
}

/// Charge the customer of an online order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeMessage {
    pub order: OrderId,
    pub payment: PaymentId,
    pub amount: Money,
    /// The extra of a heavier weighing (R-ORD-4): declined, it stays due at pick-up and the
    /// order stands.
    #[serde(default)]
    pub extra: bool,
}

/// Give back part of an online payment (a `RefundRequested` of the order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundMessage {
    pub order: OrderId,
    pub refund: Uuid,
    pub payment: PaymentId,
    pub amount: Money,
    pub charge_ref: String,
}

/// Pay one attempt of a payout's bank transfer (R-PAY-2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferMessage {
    pub producer: ProducerId,
    pub payout: PayoutId,
    pub attempt: u32,
    pub amount: Money,
    /// The bank's idempotency key of this attempt ([`crate::money::transfer_key`]).
    pub provider_key: String,
}

/// What a delivery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxReport {
    /// Acknowledged by the provider and recorded.
    pub delivered: usize,
    /// Settled without success (a declined charge: the order was cancelled).
    pub failed: usize,
    /// Attempts that failed and will be retried.
    pub retried: usize,
}

struct Claimed {
    id: Uuid,
    kind: String,
    payload: serde_json::Value,
    attempts: i32,
}

enum Delivery {
    /// With the last position the settlement wrote.
    Delivered(Option<Position>),
    /// Settled without success, and why.
    Failed(Option<Position>, String),
    Retry(String),
}

/// How long a flow's own messages are held from the worker while the flow delivers them (after
/// a crash between the commit and the delivery, the worker delivers them this much later).
pub const LEASE: chrono::Duration = chrono::Duration::seconds(5);

/// The transaction that holds an outbox row while it is delivered.
type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

type Timestamp = chrono::DateTime<chrono::Utc>;

/// Who holds a message while it is delivered.
enum Hold<'a> {
    /// A transaction holding the message's advisory lock (the worker, or a flow's retry).
    Locked(&'a mut Tx),
    /// The flow that committed it, within its lease: settled by one statement, if pending.
    Leased,
}

/// What [`App::deliver_now`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveredNow {
    /// The last position the settlements wrote.
    pub position: Option<Position>,
    /// Why a message was settled without success (a declined charge).
    pub failed: Option<String>,
}

fn claimed(row: &sqlx::postgres::PgRow) -> Result<Claimed, sqlx::Error> {
    Ok(Claimed {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        attempts: row.try_get("attempts")?,
    })
}

/// The pause after the `attempts`-th failed attempt of a message: 2 s, doubling, at most an
/// hour.
pub fn retry_delay(attempts: i32) -> chrono::Duration {
    let secs = 1i64 << attempts.clamp(0, 12);
    chrono::Duration::seconds(secs.min(3600))
}

impl App {
    /// The outbox message owing the charge of an online order's total.
    pub(crate) fn charge_message(order: OrderId, total: Money) -> OutboxMessage {
        let payment = Self::online_payment_id(order);
        OutboxMessage::new(
            super::derived_id(&format!("outbox:charge:{order}")),
            kinds::CHARGE,
            serde_json::json!(ChargeMessage {
                order,
                payment,
                amount: total,
                extra: false,
            }),
        )
    }

    /// The outbox message owing the extra of a heavier weighing (R-ORD-4), one per change of
    /// the order (`version`: the order's version after it).
    pub(crate) fn extra_charge_message(
        order: OrderId,
        version: i64,
        amount: Money,
    ) -> OutboxMessage {
        let payment = PaymentId(super::derived_id(&format!(
            "payment:{order}:extra:{version}"
        )));
        OutboxMessage::new(
            super::derived_id(&format!("outbox:charge:{order}:extra:{version}")),
            kinds::CHARGE,
            serde_json::json!(ChargeMessage {
                order,
                payment,
                amount,
                extra: true,
            }),
        )
    }

    /// The outbox message owing one attempt of a payout's transfer.
    pub(crate) fn transfer_message(
        producer: ProducerId,
        payout: PayoutId,
        attempt: u32,
        amount: Money,
    ) -> OutboxMessage {
        let provider_key = crate::money::transfer_key(payout, attempt);
        OutboxMessage::new(
            super::derived_id(&format!("outbox:{provider_key}")),
            kinds::TRANSFER,
            serde_json::json!(TransferMessage {
                producer,
                payout,
                attempt,
                amount,
                provider_key,
            }),
        )
    }

    /// The outbox message giving up, at the provider, a payment a cancelled order awaited.
    pub(crate) fn cancel_charge_message(
        order: OrderId,
        payment: PaymentId,
        provider_ref: String,
    ) -> OutboxMessage {
        OutboxMessage::new(
            super::derived_id(&format!("outbox:cancel:{payment}")),
            kinds::CANCEL_CHARGE,
            serde_json::json!(CancelChargeMessage {
                order,
                payment,
                provider_ref,
            }),
        )
    }

    /// The id of an online order's payment.
    pub(crate) fn online_payment_id(order: OrderId) -> PaymentId {
        PaymentId(super::derived_id(&format!("payment:{order}:online")))
    }

    /// Asks the order for the refunds it owes on its online payments and adds each as an
    /// outbox message (R-ORD-4, R-ORD-5: decided with the change that makes them owed).
    pub(crate) fn request_refunds(
        &self,
        order: &mut Stream<Order>,
        changes: &mut Changes,
    ) -> Result<(), AppError> {
        let id = order.state.id().ok_or(AppError::Internal(
            "refunds of an order never placed".into(),
        ))?;
        let events = order
            .decide(|o| o.decide(OrderCommand::RequestRefunds { at: self.now() }))
            .map_err(rejected)?
            .to_vec();
        for e in events {
            if let etal_domain::order::OrderEvent::RefundRequested {
                refund,
                payment,
                amount,
                ..
            } = e
            {
                let charge_ref = match order.state.payments().get(&payment).map(|p| &p.method) {
                    Some(PaymentMethod::Online { provider_ref }) => provider_ref.clone(),
                    _ => continue,
                };
                changes.send(OutboxMessage::new(
                    refund,
                    kinds::REFUND,
                    serde_json::json!(RefundMessage {
                        order: id,
                        refund,
                        payment,
                        amount,
                        charge_ref,
                    }),
                ));
            }
        }
        Ok(())
    }

    /// Delivers the messages a flow just committed (best effort: what fails stays owed, and
    /// the worker takes it once the flow's hold on it passed). A message being delivered by
    /// another deliverer is left to it.
    pub async fn deliver_now(&self, ids: &[Uuid], owed: &[OutboxMessage]) -> DeliveredNow {
        let mut done = DeliveredNow::default();
        if !self.settings.deliver_inline {
            return done;
        }
        for id in ids {
            // Just committed by this flow: leased to it; else (a replay) claimed.
            let delivery = match owed.iter().find(|m| m.id == *id) {
                Some(m) => self.deliver_leased(m).await.map(Some),
                None => self.claim_and_deliver(Some(*id)).await,
            };
            match delivery {
                Ok(Some(Delivery::Delivered(p))) => done.position = done.position.max(p),
                Ok(Some(Delivery::Failed(p, why))) => {
                    done.position = done.position.max(p);
                    done.failed = Some(why);
                }
                Ok(Some(Delivery::Retry(_))) | Ok(None) => {}
                Err(e) => {
                    tracing::warn!(outbox = %id, error = %e, "delivery failed; the worker retries")
                }
            }
        }
        done
    }

    /// Delivers every message that is due (by the injected clock), one at a time.
    pub async fn deliver_outbox(&self) -> Result<OutboxReport, AppError> {
        let mut report = OutboxReport::default();
        while let Some(d) = self.claim_and_deliver(None).await? {
            match d {
                Delivery::Delivered(_) => report.delivered += 1,
                Delivery::Failed(..) => report.failed += 1,
                Delivery::Retry(_) => report.retried += 1,
            }
        }
        Ok(report)
    }

    /// Runs [`App::deliver_outbox`] every `interval` until `stop` resolves.
    pub async fn run_outbox(
        &self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.deliver_outbox().await {
                tracing::warn!(error = %e, "outbox round failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// True while the message is owed.
    async fn outbox_pending(&self, id: Uuid) -> Result<bool, AppError> {
        Ok(sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE id = $1 AND status = 'pending')",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Messages not yet settled (for `etal audit check` and tests).
    pub async fn pending_outbox(&self) -> Result<i64, AppError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Takes a due message (or the one named, if due), locking it for the delivery: the provider
    /// call and the settlement happen while the transaction holds the lock, so no two claimers
    /// call the provider for one message, and a deliverer that dies lets it go (rolled back:
    /// neither the attempt nor its record happened, and the next one uses the same provider
    /// key). A message still leased to the flow that committed it ([`LEASE`]) is not due: that
    /// flow delivers it.
    async fn claim_and_deliver(&self, id: Option<Uuid>) -> Result<Option<Delivery>, AppError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        // The message is held with a transaction-scoped advisory lock, not a row lock: the
        // transaction writes nothing (and holds no transaction id, so no reader's watermark)
        // until the provider answered; the lock goes with the transaction, a crash included.
        let candidate: Option<Uuid> = sqlx::query_scalar(
            "WITH c AS (SELECT id, next_attempt_at FROM outbox \
                        WHERE status = 'pending' \
                          AND ($1::uuid IS NULL OR id = $1) AND next_attempt_at <= $2 \
                        ORDER BY next_attempt_at LIMIT 16) \
             SELECT id FROM c WHERE pg_try_advisory_xact_lock(hashtextextended('outbox:' || id::text, 0)) \
             ORDER BY next_attempt_at LIMIT 1",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(candidate) = candidate else {
            return Ok(None);
        };
        // Read again under the lock: another deliverer may have settled it just before.
        let row = sqlx::query(
            "SELECT id, kind, payload, attempts + 1 AS attempts FROM outbox \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(candidate)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let m = claimed(&row)?;
        let outcome = self.deliver(&mut Hold::Locked(&mut tx), &m, now).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// Delivers a message the calling flow has just committed, within the lease it was
    /// committed with ([`LEASE`]: the worker leaves it alone until then): no claim, one
    /// statement settles it if it is still pending. Past the lease the worker may deliver it
    /// too; both use the same provider key, so the provider answers both with the one call,
    /// and only one settlement commits.
    async fn deliver_leased(&self, message: &OutboxMessage) -> Result<Delivery, AppError> {
        let m = Claimed {
            id: message.id,
            kind: message.kind.clone(),
            payload: message.payload.clone(),
            attempts: 1,
        };
        self.deliver(&mut Hold::Leased, &m, self.now()).await
    }

    /// Calls the provider for a held message and records its answer (a failure to record is
    /// a retry: nothing of it was written, and the next attempt asks the provider again with
    /// the same key).
    async fn deliver(
        &self,
        hold: &mut Hold<'_>,
        m: &Claimed,
        now: Timestamp,
    ) -> Result<Delivery, AppError> {
        let outcome = match m.kind.as_str() {
            kinds::CHARGE => self.deliver_charge(hold, m).await,
            kinds::REFUND => self.deliver_refund(hold, m).await,
            kinds::TRANSFER => self.deliver_transfer(hold, m).await,
            kinds::CANCEL_CHARGE => self.deliver_cancel_charge(hold, m).await,
            other => Ok(Delivery::Retry(format!("unknown outbox kind {other}"))),
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e @ (AppError::Retryable(_) | AppError::Internal(_))) => {
                // The record could not be written (database down, lost races): rolled back;
                // the next attempt calls the provider again with the same key, which gives the
                // same answer.
                tracing::info!(outbox = %m.id, kind = m.kind, error = %e, "recording failed; will be retried");
                return Ok(Delivery::Retry(format!("recording failed: {e}")));
            }
            Err(e) => Delivery::Retry(format!("recording refused: {e}")),
        };
        if let Delivery::Retry(why) = &outcome {
            tracing::info!(outbox = %m.id, kind = m.kind, attempts = m.attempts, why, "delivery will be retried");
            let retry = sqlx::query(
                "WITH o AS (UPDATE outbox SET last_error = $2, next_attempt_at = $3, attempts = $4 \
                            WHERE id = $1 AND status = 'pending' RETURNING id) \
                 INSERT INTO outbox_attempts (outbox_id, attempt, at, ok, detail) \
                 SELECT id, $4, $5, false, $2 FROM o \
                 ON CONFLICT (outbox_id, attempt) DO UPDATE SET detail = $2, at = $5",
            )
            .bind(m.id)
            .bind(why)
            .bind(now + retry_delay(m.attempts))
            .bind(m.attempts)
            .bind(now);
            match hold {
                Hold::Locked(tx) => retry.execute(&mut ***tx).await?,
                Hold::Leased => retry.execute(&self.pool).await?,
            };
        }
        Ok(outcome)
    }

    /// Settles the message with nothing else to record.
    async fn settle_only(
        &self,
        tx: &mut Hold<'_>,
        m: &Claimed,
        delivered: bool,
        result: serde_json::Value,
    ) -> Result<Option<Position>, AppError> {
        self.settle(tx, m, delivered, result, || {
            Box::pin(async { Ok(Changes::new()) })
        })
        .await
    }

    /// Commits `decide`'s changes with the message's settlement, deciding again on conflicts.
    async fn settle<F>(
        &self,
        tx: &mut Hold<'_>,
        m: &Claimed,
        delivered: bool,
        result: serde_json::Value,
        mut decide: F,
    ) -> Result<Option<Position>, AppError>
    where
        F: FnMut() -> futures::future::BoxFuture<'static, Result<Changes, AppError>>,
    {
        let id = m.id;
        let cc = CommandContext::new(Actor::system()).caused_by(format!("outbox:{id}"));
        for attempt in 1..=self.bus.max_attempts() {
            let mut changes = decide().await?;
            changes.settle_outbox(id, m.attempts, delivered, result.clone());
            // The streams this settlement writes: states this process kept are not trusted.
            let written: Vec<String> = changes.streams().map(|(t, i)| format!("{t}:{i}")).collect();
            self.locks.forget(&written);
            let Hold::Locked(tx) = tx else {
                // Leased: one statement, which commits only while the message is pending.
                match self
                    .bus
                    .commit(&changes, &cc, &serde_json::Value::Null)
                    .await
                {
                    Ok(c) => return Ok(c.last_position()),
                    Err(CommitError::Conflict) | Err(CommitError::KeyTaken) => {
                        if !self.outbox_pending(id).await? {
                            return Err(AppError::Retryable(
                                "the message was settled by another deliverer".into(),
                            ));
                        }
                        etal_store::bus::backoff(attempt).await;
                        continue;
                    }
                    Err(CommitError::Store(e)) => return Err(e.into()),
                }
            };
            // A savepoint: a stream that moved meanwhile is decided again, the row still held.
            let mut sp = sqlx::Acquire::begin(&mut ***tx).await?;
            match self
                .bus
                .commit_on(&mut sp, &changes, &cc, &serde_json::Value::Null)
                .await
            {
                Ok(c) => {
                    sp.commit().await?;
                    return Ok(c.last_position());
                }
                Err(CommitError::Conflict) | Err(CommitError::KeyTaken) => {
                    sp.rollback().await?;
                    etal_store::bus::backoff(attempt).await;
                }
                Err(CommitError::Store(e)) => return Err(e.into()),
            }
        }
        Err(AppError::Retryable(
            "settling an outbox message kept conflicting".into(),
        ))
    }

    async fn deliver_charge(&self, tx: &mut Hold<'_>, m: &Claimed) -> Result<Delivery, AppError> {
        let msg: ChargeMessage = serde_json::from_value(m.payload.clone())
            .map_err(|e| AppError::Internal(format!("charge message: {e}")))?;
        let order = self
            .bus
            .load_stream::<Order>(&msg.order.to_string())
            .await?;
        if order.state.payments().contains_key(&msg.payment) {
            let p = self
                .settle_only(tx, m, true, serde_json::json!({ "already": "recorded" }))
                .await?;
            return Ok(Delivery::Delivered(p));
        }
        if !order.exists() || order.state.is_cancelled() {
            let p = self
                .settle_only(
                    tx,
                    m,
                    false,
                    serde_json::json!({ "skipped": "order cancelled before the charge" }),
                )
                .await?;
            return Ok(Delivery::Failed(
                p,
                "order cancelled before the charge".into(),
            ));
        }
        let key = OutboxMessage::provider_key(m.id);
        let request = crate::payments::ChargeRequest {
            key: &key,
            amount: msg.amount,
            order: msg.order,
            payment: msg.payment,
        };
        match self.payments.charge(&request).await {
            Ok(crate::payments::Charged::Awaiting {
                provider_ref,
                client_secret,
            }) => {
                // The customer confirms it in their client: the order waits for the
                // provider's word (a webhook), until its time limit.
                let app = self.clone();
                let r = provider_ref.clone();
                let request = m.id;
                let p = self
                    .settle(
                        tx,
                        m,
                        true,
                        serde_json::json!({ "provider_ref": provider_ref, "client_secret": client_secret, "awaiting": true }),
                        move || {
                            let app = app.clone();
                            let msg = msg.clone();
                            let r = r.clone();
                            Box::pin(async move { app.record_awaited(&msg, r, request).await })
                        },
                    )
                    .await?;
                Ok(Delivery::Delivered(p))
            }
            Err(failure) if failure.transient => Ok(Delivery::Retry(failure.reason)),
            Ok(crate::payments::Charged::Paid { provider_ref }) => {
                let app = self.clone();
                let r = provider_ref.clone();
                // The first decision is on the order just read; a conflict reads it again.
                let first = Arc::new(std::sync::Mutex::new(Some(order)));
                let p = self
                    .settle(
                        tx,
                        m,
                        true,
                        serde_json::json!({ "provider_ref": provider_ref }),
                        move || {
                            let app = app.clone();
                            let msg = msg.clone();
                            let r = r.clone();
                            let read = first.lock().unwrap_or_else(|p| p.into_inner()).take();
                            Box::pin(async move { app.record_charge(&msg, r, read).await })
                        },
                    )
                    .await?;
                Ok(Delivery::Delivered(p))
            }
            Err(failure) if msg.extra => {
                // A declined extra: the order stands, the extra stays due at pick-up.
                let p = self
                    .settle_only(
                        tx,
                        m,
                        false,
                        serde_json::json!({ "declined": failure.reason }),
                    )
                    .await?;
                tracing::info!(order = %msg.order, reason = %failure.reason, "extra charge declined: due at pick-up");
                Ok(Delivery::Failed(p, failure.reason))
            }
            Err(failure) => {
                // A declined charge: the order is cancelled, its stock and caps released.
                let app = self.clone();
                let why = failure.reason.clone();
                let p = self
                    .settle(
                        tx,
                        m,
                        false,
                        serde_json::json!({ "declined": why }),
                        move || {
                            let app = app.clone();
                            let order = msg.order;
                            Box::pin(async move { app.cancel_unpaid(order).await })
                        },
                    )
                    .await?;
                tracing::info!(order = %msg.order, reason = %failure.reason, "charge declined: order cancelled");
                Ok(Delivery::Failed(p, failure.reason))
            }
        }
    }

    async fn record_charge(
        &self,
        msg: &ChargeMessage,
        provider_ref: String,
        read: Option<Stream<Order>>,
    ) -> Result<Changes, AppError> {
        let mut order = match read {
            Some(o) => o,
            None => {
                self.bus
                    .load_stream::<Order>(&msg.order.to_string())
                    .await?
            }
        };
        let customer = Actor::new(order.state.customer(), Role::Customer);
        order
            .decide(|o| {
                o.decide(OrderCommand::RecordPayment {
                    payment: msg.payment,
                    method: PaymentMethod::Online { provider_ref },
                    amount: msg.amount,
                    actor: customer,
                    market_access: None,
                    at: self.now(),
                })
            })
            .map_err(rejected)?;
        let mut changes = Changes::new();
        // Taken after a cancellation: owed back at once.
        if order.state.is_cancelled() {
            self.request_refunds(&mut order, &mut changes)?;
        }
        changes.stream(&order)?;
        Ok(changes)
    }

    /// The order whose charge was declined is cancelled with everything it held.
    async fn cancel_unpaid(&self, order_id: OrderId) -> Result<Changes, AppError> {
        let mut order = self.bus.load_stream::<Order>(&order_id.to_string()).await?;
        let mut changes = Changes::new();
        if order.state.is_cancelled() {
            return Ok(changes);
        }
        let customer = Actor::new(order.state.customer(), Role::Customer);
        self.decide_cancellation(
            &mut order,
            Canceller::Customer(customer),
            true,
            &mut changes,
        )
        .await?;
        changes.stream(&order)?;
        Ok(changes)
    }

    async fn deliver_refund(&self, tx: &mut Hold<'_>, m: &Claimed) -> Result<Delivery, AppError> {
        let msg: RefundMessage = serde_json::from_value(m.payload.clone())
            .map_err(|e| AppError::Internal(format!("refund message: {e}")))?;
        let order = self
            .bus
            .load_stream::<Order>(&msg.order.to_string())
            .await?;
        if !order.state.pending_refunds().contains_key(&msg.refund) {
            let p = self
                .settle_only(tx, m, true, serde_json::json!({ "already": "recorded" }))
                .await?;
            return Ok(Delivery::Delivered(p));
        }
        let key = OutboxMessage::provider_key(m.id);
        match self
            .payments
            .refund(&key, &msg.charge_ref, msg.amount)
            .await
        {
            Ok(provider_ref) => {
                let app = self.clone();
                let r = provider_ref.clone();
                let p = self
                    .settle(
                        tx,
                        m,
                        true,
                        serde_json::json!({ "provider_ref": provider_ref }),
                        move || {
                            let app = app.clone();
                            let msg = msg.clone();
                            let r = r.clone();
                            Box::pin(async move { app.record_refund(&msg, r).await })
                        },
                    )
                    .await?;
                Ok(Delivery::Delivered(p))
            }
            // Never lost: retried with backoff until the provider acknowledges it.
            Err(failure) => Ok(Delivery::Retry(failure.reason)),
        }
    }

    async fn deliver_transfer(&self, tx: &mut Hold<'_>, m: &Claimed) -> Result<Delivery, AppError> {
        let msg: TransferMessage = serde_json::from_value(m.payload.clone())
            .map_err(|e| AppError::Internal(format!("transfer message: {e}")))?;
        let (balance, _) = self.load::<ProducerBalance>(msg.producer).await?;
        let in_flight = balance.payout(msg.payout).is_some_and(|r| {
            r.status == etal_domain::payout::PayoutStatus::InFlight && r.attempts == msg.attempt
        });
        if !in_flight {
            let p = self
                .settle_only(tx, m, true, serde_json::json!({ "already": "recorded" }))
                .await?;
            return Ok(Delivery::Delivered(p));
        }
        // The bank's answer, success or failure, is the outcome recorded on the balance: a
        // failed transfer is retried by the next Monday's run, or returned (R-PAY-2). A
        // provider that could not answer is asked again (same key).
        let outcome = match &self.settings.payouts {
            // R-PAY-5: queued into today's credit transfer file (idempotent per attempt).
            crate::payouts::PayoutRail::Sepa(_) => self
                .queue_sepa_transfer(msg.producer, msg.payout, msg.attempt, msg.amount)
                .await?
                .map_err(crate::payments::PaymentFailure::refused),
            crate::payouts::PayoutRail::Provider => {
                let (account, _) = self
                    .load::<etal_domain::account::ProducerAccount>(msg.producer)
                    .await?;
                self.payments
                    .transfer(&crate::payments::TransferRequest {
                        key: &msg.provider_key,
                        amount: msg.amount,
                        producer: msg.producer,
                        payout: msg.payout,
                        destination: account.payout_account(),
                    })
                    .await
            }
        };
        if let Err(f) = &outcome {
            if f.transient {
                return Ok(Delivery::Retry(f.reason.clone()));
            }
        }
        let result = match &outcome {
            Ok(r) => serde_json::json!({ "provider_ref": r }),
            Err(f) => serde_json::json!({ "failed": f.reason }),
        };
        let app = self.clone();
        let p = self
            .settle(tx, m, true, result, move || {
                let app = app.clone();
                let msg = msg.clone();
                let outcome = outcome.clone();
                Box::pin(async move {
                    let mut balance = app
                        .bus
                        .load_stream::<ProducerBalance>(&msg.producer.to_string())
                        .await?;
                    let command = match outcome {
                        Ok(provider_ref) => ProducerBalanceCommand::RecordTransferSucceeded {
                            payout: msg.payout,
                            provider_ref,
                            at: app.now(),
                        },
                        Err(failure) => ProducerBalanceCommand::RecordTransferFailed {
                            payout: msg.payout,
                            reason: failure.reason,
                            at: app.now(),
                        },
                    };
                    balance.decide(|b| b.decide(command)).map_err(rejected)?;
                    let mut changes = Changes::new();
                    changes.stream(&balance)?;
                    Ok(changes)
                })
            })
            .await?;
        Ok(Delivery::Delivered(p))
    }

    /// Records the payment the provider holds for the customer to confirm, and schedules the
    /// order's expiry at its time limit (R-PAY-1).
    async fn record_awaited(
        &self,
        msg: &ChargeMessage,
        provider_ref: String,
        request: Uuid,
    ) -> Result<Changes, AppError> {
        let mut order = self
            .bus
            .load_stream::<Order>(&msg.order.to_string())
            .await?;
        let mut changes = Changes::new();
        if order.state.payments().contains_key(&msg.payment) {
            // Confirmed already (its webhook came first).
            return Ok(changes);
        }
        if order.state.is_cancelled() {
            // Cancelled meanwhile: nothing to wait for, and the provider gives it up (one paid
            // anyway is recorded and owed back).
            changes.send(Self::cancel_charge_message(
                msg.order,
                msg.payment,
                provider_ref,
            ));
            return Ok(changes);
        }
        let now = self.now();
        let expires_at = now + self.settings.payment_timeout;
        order
            .decide(|o| {
                o.decide(OrderCommand::AwaitPayment {
                    payment: msg.payment,
                    amount: msg.amount,
                    provider_ref,
                    request,
                    expires_at,
                    at: now,
                })
            })
            .map_err(rejected)?;
        changes.stream(&order)?;
        changes.schedule(
            schedules::EXPIRE_PAYMENT,
            &format!("expire:{}", msg.payment),
            serde_json::json!({ "order": msg.order, "payment": msg.payment }),
            expires_at,
        );
        Ok(changes)
    }

    /// R-PAY-1: an order whose payment the customer did not confirm in time is cancelled with
    /// everything it held (stock, caps) in one commit, and the provider is told to give the
    /// payment up. Returns whether it expired (false: paid, or cancelled, meanwhile).
    pub async fn expire_payment(
        &self,
        order_id: OrderId,
        payment: PaymentId,
    ) -> Result<bool, AppError> {
        let cc = CommandContext::new(Actor::system())
            .with_idempotency(format!("expire:{payment}"), format!("expire:{payment}"));
        let flowed = self
            .run_flow(&cc, vec![format!("order:{order_id}")], || async move {
                let order = self.bus.load_stream::<Order>(&order_id.to_string()).await?;
                let Some(awaited) = order.state.awaiting().get(&payment) else {
                    return Ok(super::flow::Decided::new(Changes::new(), false));
                };
                if order.state.is_cancelled() || awaited.expires_at > self.now() {
                    return Ok(super::flow::Decided::new(Changes::new(), false));
                }
                let changes = self.cancel_unpaid(order_id).await?;
                tracing::info!(order = %order_id, "payment not confirmed in time: order cancelled");
                Ok(super::flow::Decided::new(changes, true))
            })
            .await?;
        self.deliver_now(&flowed.outbox, &flowed.owed).await;
        Ok(flowed.value)
    }

    async fn deliver_cancel_charge(
        &self,
        tx: &mut Hold<'_>,
        m: &Claimed,
    ) -> Result<Delivery, AppError> {
        let msg: CancelChargeMessage = serde_json::from_value(m.payload.clone())
            .map_err(|e| AppError::Internal(format!("cancel message: {e}")))?;
        let key = OutboxMessage::provider_key(m.id);
        match self.payments.cancel_charge(&key, &msg.provider_ref).await {
            Ok(()) => {
                let p = self
                    .settle_only(tx, m, true, serde_json::json!({ "cancelled": true }))
                    .await?;
                Ok(Delivery::Delivered(p))
            }
            Err(f) if f.transient => Ok(Delivery::Retry(f.reason)),
            // Refused: it succeeded meanwhile, and its webhook records the payment, which the
            // cancelled order then owes back.
            Err(f) => {
                let p = self
                    .settle_only(tx, m, false, serde_json::json!({ "refused": f.reason }))
                    .await?;
                Ok(Delivery::Failed(p, f.reason))
            }
        }
    }

    async fn record_refund(
        &self,
        msg: &RefundMessage,
        provider_ref: String,
    ) -> Result<Changes, AppError> {
        let mut order = self
            .bus
            .load_stream::<Order>(&msg.order.to_string())
            .await?;
        order
            .decide(|o| {
                o.decide(OrderCommand::RecordRefund {
                    payment: msg.payment,
                    amount: msg.amount,
                    provider_ref,
                    at: self.now(),
                    refund: Some(msg.refund),
                })
            })
            .map_err(rejected)?;
        let mut changes = Changes::new();
        changes.stream(&order)?;
        // A refund after the sale was validated is debited from the producers' balances. Always
        // scheduled on an online market: the handler does nothing before validation, and waits
        // for a crediting that may have read the orders before this refund.
        if order.state.payment_mode() == etal_domain::market::PaymentMode::Online {
            changes.schedule(
                schedules::DEBIT_REFUNDS,
                &format!("debit:refund:{}", msg.refund),
                serde_json::json!({ "sale": order.state.sale(), "order": msg.order }),
                self.now(),
            );
        }
        Ok(changes)
    }
}

/// A domain refusal as the application's error.
pub(crate) fn rejected<E: super::Coded>(e: E) -> AppError {
    AppError::Rejected {
        code: e.error_code(),
        message: e.to_string(),
    }
}
