//! R-NOT-1..4: the sender of the messages the `notifications` projection writes. It takes new
//! messages in (a cursor over the projection's order), and delivers each due one by e-mail
//! (SMTP with lettre, or `.eml` files in a folder for developers), as the outbox delivers its
//! messages (ADR 0015): a message is claimed with a transaction-scoped advisory lock, sent, and its
//! outcome written with its attempt in the same transaction. The Message-ID is the message's
//! id, so a receiver can tell a copy; a sender killed between the server's acceptance and that
//! commit sends the message again (the only window), a rebuild of the projection never does
//! (deliveries are the sender's own rows, keyed by the message id the rebuild derives again).
//!
//! Erased people and addresses that bounced get nothing; a person may turn off the messages
//! that are not legal ones (receipts, changes, refunds and statements always go). Transient
//! failures are retried with exponential backoff (2 s doubling, at most an hour apart, 16
//! attempts), permanent ones mark the address bounced.

use std::path::PathBuf;
use std::time::Duration;

use etal_domain::account::ProducerAccount;
use etal_domain::catalog::Catalog;
use etal_domain::ids::{CatalogId, MarketId, ProducerId, SaleId, UserId};
use etal_domain::market::Market;
use etal_projections::notifications::kinds;
use etal_projections::order_recaps::{self, Scope};
use etal_store::log::Position;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

use crate::{App, AppError};

/// Where messages go.
#[derive(Debug, Clone, Default)]
pub enum MailTransport {
    /// Nowhere: messages stay pending (a service without mail settings, and the tests that do
    /// not look at mail).
    #[default]
    Off,
    /// An SMTP server (`ETAL_SMTP_URL`, e.g. `smtp://127.0.0.1:2525` or
    /// `smtps://user:pass@smtp.example.org`).
    Smtp(String),
    /// `.eml` files in a folder (`make run` without SMTP settings).
    Folder(PathBuf),
}

/// The mail settings of the service.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub transport: MailTransport,
    /// The sender (`ETAL_MAIL_FROM`).
    pub from: String,
    /// Where links in messages point (`ETAL_PUBLIC_URL`).
    pub public_url: String,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            transport: MailTransport::Off,
            from: "etal <ne-pas-repondre@etal.local>".into(),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

/// What a round of the sender did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NotifyReport {
    pub taken_in: usize,
    pub sent: usize,
    pub skipped: usize,
    pub retried: usize,
    pub failed: usize,
}

/// Attempts before a message is given up.
const MAX_ATTEMPTS: i32 = 16;

/// The wait before attempt `n + 1` (n attempts made): 2 s doubling, at most an hour.
fn backoff(attempts: i32) -> chrono::Duration {
    let secs = 2i64.saturating_pow(attempts.clamp(1, 20) as u32).min(3600);
    chrono::Duration::seconds(secs)
}

/// A message as rendered.
struct Rendered {
    subject: String,
    text: String,
    html: String,
    /// Files attached: (name, content type, bytes).
    attachments: Vec<(String, &'static str, Vec<u8>)>,
}

enum Outcome {
    Sent,
    Skipped(&'static str),
    /// Not yet (the read models behind it are behind the message): no attempt counted.
    NotYet,
    /// Not before this time (a reminder): no attempt counted.
    Later(chrono::DateTime<chrono::Utc>),
    Transient(String),
    /// Refused for good; with the address when it bounced (nothing more goes to it).
    Permanent(String, Option<String>),
}

fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    macro_rules! add {
        ($($name:literal),*) => {
            $(env.add_template($name, include_str!(concat!("../../config/templates/notifications/", $name)))
                .expect("a notification template");)*
        };
    }
    add!(
        "layout.html",
        "recap_ready.txt",
        "recap_ready.html",
        "payout_statement.txt",
        "payout_statement.html",
        "order_placed.txt",
        "order_placed.html",
        "order_changed.txt",
        "order_changed.html",
        "order_weighed.txt",
        "order_weighed.html",
        "order_cancelled.txt",
        "order_cancelled.html",
        "order_refunded.txt",
        "order_refunded.html",
        "pickup_reminder.txt",
        "pickup_reminder.html",
        "join_request.txt",
        "join_request.html",
        "participation_withdrawn.txt",
        "participation_withdrawn.html",
        "sale_to_validate.txt",
        "sale_to_validate.html",
        "webhook_disabled.txt",
        "webhook_disabled.html",
        "login_link.txt",
        "login_link.html",
        "checkpoint_signed.txt",
        "checkpoint_signed.html",
        "subjects.txt"
    );
    env.add_filter("euros", |v: String| -> String { euros(&v) });
    // `2026-03-16` -> `16/03/2026`.
    env.add_filter("date", |v: String| -> String {
        chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d")
            .map(|d| d.format("%d/%m/%Y").to_string())
            .unwrap_or(v)
    });
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env
}

/// `1234.5` -> `1 234,50 €` (as on invoices); what is not an amount is left as it is.
pub fn euros(amount: &str) -> String {
    match amount.trim().parse::<rust_decimal::Decimal>() {
        Ok(d) => crate::invoices::euros(d),
        Err(_) => amount.to_string(),
    }
}

impl App {
    /// One round: takes new messages in, then delivers the due ones.
    pub async fn deliver_notifications(&self) -> Result<NotifyReport, AppError> {
        let mut report = NotifyReport {
            taken_in: self.take_in_notifications().await?,
            ..Default::default()
        };
        if matches!(self.settings.mail.transport, MailTransport::Off) {
            return Ok(report);
        }
        let due: Vec<Uuid> = sqlx::query_scalar(
            "SELECT message_id FROM notification_deliveries WHERE status = 'pending' \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at, message_id LIMIT 100",
        )
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
        // One SMTP transport per round: its pooled connection carries the round's messages (no
        // QUIT between a message's acceptance and the record of it).
        let smtp = match &self.settings.mail.transport {
            MailTransport::Smtp(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| AppError::Internal(format!("ETAL_SMTP_URL: {e}")))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
            _ => None,
        };
        for id in due {
            match self.claim_and_send(id, smtp.as_ref()).await? {
                Some(Outcome::Sent) => report.sent += 1,
                Some(Outcome::Skipped(_)) => report.skipped += 1,
                Some(Outcome::Transient(_)) => report.retried += 1,
                Some(Outcome::Permanent(..)) => report.failed += 1,
                Some(Outcome::NotYet) | Some(Outcome::Later(_)) | None => {}
            }
        }
        Ok(report)
    }

    /// Runs [`App::deliver_notifications`] and [`App::deliver_webhooks`] every `interval` until
    /// `stop` resolves.
    pub async fn run_notifications(
        &self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.deliver_webhooks().await {
                tracing::warn!(error = %e, "webhooks round failed");
            }
            match self.deliver_notifications().await {
                Ok(r) if r.sent + r.failed + r.retried > 0 => {
                    tracing::info!(
                        sent = r.sent,
                        retried = r.retried,
                        failed = r.failed,
                        skipped = r.skipped,
                        "notifications round"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "notifications round failed"),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Gives every message the projection wrote since the cursor a pending delivery (once:
    /// keyed by the message id), and moves the cursor, in one transaction.
    async fn take_in_notifications(&self) -> Result<usize, AppError> {
        let mut tx = self.pool.begin().await?;
        let (txid, position): (i64, i64) = sqlx::query_as(
            "SELECT txid, position FROM notification_cursor WHERE id = 1 FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT message_id, txid, position FROM notifications WHERE (txid, position) > ($1, $2) \
             ORDER BY txid, position LIMIT 1000",
        )
        .bind(txid)
        .bind(position)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else {
            tx.rollback().await?;
            return Ok(0);
        };
        let (last_txid, last_position): (i64, i64) =
            (last.try_get("txid")?, last.try_get("position")?);
        // Every message of the last position, also those beyond the limit.
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT message_id FROM notifications WHERE (txid, position) > ($1, $2) \
             AND (txid, position) <= ($3, $4)",
        )
        .bind(txid)
        .bind(position)
        .bind(last_txid)
        .bind(last_position)
        .fetch_all(&mut *tx)
        .await?;
        let now = self.now();
        let n = sqlx::query(
            "INSERT INTO notification_deliveries (message_id, status, next_attempt_at, updated_at) \
             SELECT id, 'pending', $2, $2 FROM UNNEST($1::uuid[]) AS id ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE notification_cursor SET txid = $1, position = $2 WHERE id = 1")
            .bind(last_txid)
            .bind(last_position)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n as usize)
    }

    /// Claims a due message with an advisory lock (the transaction writes nothing until the
    /// server answered, so it holds no transaction id the projectors would wait for), sends it,
    /// and records the outcome and the attempt. None: another sender has it, or it is no
    /// longer due.
    async fn claim_and_send(
        &self,
        id: Uuid,
        smtp: Option<&AsyncSmtpTransport<Tokio1Executor>>,
    ) -> Result<Option<Outcome>, AppError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7))")
                .bind(format!("notification:{id}"))
                .fetch_one(&mut *tx)
                .await?;
        if !locked {
            return Ok(None);
        }
        let now = self.now();
        let row = sqlx::query(
            "SELECT d.attempts, coalesce(n.recipient_kind, s.recipient_kind) AS recipient_kind, \
             coalesce(n.recipient, s.recipient) AS recipient, coalesce(n.kind, s.kind) AS kind, \
             coalesce(n.context, s.context) AS context, coalesce(n.txid, 0) AS txid, \
             coalesce(n.position, 0) AS position \
             FROM notification_deliveries d LEFT JOIN notifications n ON n.message_id = d.message_id \
             LEFT JOIN system_messages s ON s.message_id = d.message_id \
             WHERE d.message_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 \
             AND (n.message_id IS NOT NULL OR s.message_id IS NOT NULL)",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let attempts: i32 = row.try_get("attempts")?;
        let kind: String = row.try_get("kind")?;
        let context: Value = row.try_get("context")?;
        let at = Position {
            txid: row.try_get("txid")?,
            position: row.try_get("position")?,
        };
        let (outcome, address) = self
            .send_one(
                smtp,
                id,
                row.try_get::<String, _>("recipient_kind")?.as_str(),
                row.try_get("recipient")?,
                &kind,
                context,
                at,
            )
            .await?;
        if let Outcome::Later(at) = outcome {
            sqlx::query(
                "UPDATE notification_deliveries SET next_attempt_at = $2, updated_at = $3 WHERE message_id = $1",
            )
            .bind(id)
            .bind(at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Some(Outcome::Later(at)));
        }
        let (status, error, next) = match &outcome {
            Outcome::NotYet | Outcome::Later(_) => return Ok(Some(Outcome::NotYet)),
            Outcome::Sent => ("sent", None, now),
            Outcome::Skipped(why) => ("skipped", Some(why.to_string()), now),
            Outcome::Transient(e) if attempts + 1 >= MAX_ATTEMPTS => {
                ("failed", Some(e.clone()), now)
            }
            Outcome::Transient(e) => ("pending", Some(e.clone()), now + backoff(attempts + 1)),
            Outcome::Permanent(e, _) => ("failed", Some(e.clone()), now),
        };
        if let Outcome::Permanent(reason, Some(address)) = &outcome {
            sqlx::query(
                "INSERT INTO email_bounces (address, at, reason) VALUES ($1, $2, $3) ON CONFLICT (address) DO NOTHING",
            )
            .bind(address)
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE notification_deliveries SET status = $2, attempts = attempts + 1, next_attempt_at = $3, \
             address = coalesce($4, address), last_error = $5, \
             sent_at = CASE WHEN $2 = 'sent' THEN $6 ELSE sent_at END, updated_at = $6 WHERE message_id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(next)
        .bind(&address)
        .bind(&error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO notification_attempts (message_id, attempt, at, outcome, error) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(attempts + 1)
        .bind(now)
        .bind(status)
        .bind(&error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if status == "failed" {
            tracing::warn!(message = %id, kind, error = error.as_deref().unwrap_or(""), "notification given up");
        }
        Ok(Some(outcome))
    }

    /// Whether `address` bounced before (nothing more goes to it).
    async fn bounced(&self, address: &str) -> Result<bool, AppError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM email_bounces WHERE address = $1)")
                .bind(address)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Resolves the recipient, renders and sends one message.
    #[allow(clippy::too_many_arguments)]
    async fn send_one(
        &self,
        smtp: Option<&AsyncSmtpTransport<Tokio1Executor>>,
        id: Uuid,
        recipient_kind: &str,
        recipient: Uuid,
        kind: &str,
        context: Value,
        at: Position,
    ) -> Result<(Outcome, Option<String>), AppError> {
        // The people to write to: a person, a producer's owner, or a market's administrators.
        let users: Vec<UserId> = match recipient_kind {
            "producer" => {
                let (account, _) = self.load::<ProducerAccount>(ProducerId(recipient)).await?;
                account.owner().into_iter().collect()
            }
            "market" => {
                let (market, _) = self.load::<Market>(MarketId(recipient)).await?;
                market.administrators().iter().copied().collect()
            }
            "address" => Vec::new(),
            _ => vec![UserId(recipient)],
        };
        let mut to: Vec<(UserId, Option<String>, String)> = Vec::new();
        let mut why_not = "no such recipient";
        if recipient_kind == "address" {
            // R-AUD-3: an address from the configuration (the auditors'), not a person here.
            if let Some(address) = context["address"].as_str() {
                let address = address.trim().to_lowercase();
                if self.bounced(&address).await? {
                    why_not = "the address bounced";
                } else {
                    to.push((UserId(recipient), None, address));
                }
            }
        }
        for user in users {
            let person = sqlx::query(
                "SELECT display_name, email FROM people WHERE user_id = $1 AND erased_at IS NULL",
            )
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await?;
            let Some(person) = person else {
                why_not = "no personal data (erased or never given)";
                continue;
            };
            let Some(address) = person.try_get::<Option<String>, _>("email")? else {
                why_not = "no e-mail address";
                continue;
            };
            let address = address.trim().to_lowercase();
            if self.bounced(&address).await? {
                why_not = "the address bounced";
                continue;
            }
            if !kinds::LEGAL.contains(&kind) {
                let enabled: Option<bool> = sqlx::query_scalar(
                    "SELECT enabled FROM notification_preferences WHERE user_id = $1 AND kind = $2",
                )
                .bind(user.0)
                .bind(kind)
                .fetch_optional(&self.pool)
                .await?;
                if enabled == Some(false) {
                    why_not = "turned off by the recipient";
                    continue;
                }
            }
            to.push((user, person.try_get("display_name")?, address));
        }
        if to.is_empty() {
            return Ok((Outcome::Skipped(why_not), None));
        }
        let address = to
            .iter()
            .map(|(_, _, a)| a.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if kind == kinds::PICKUP_REMINDER {
            // The day before the sale starts, if the order stands.
            let order = context["order"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok());
            let sale = context["sale"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok());
            let (Some(order), Some(sale)) = (order, sale) else {
                return Err(AppError::Internal("a reminder without its order".into()));
            };
            let (o, _) = self
                .load::<etal_domain::order::Order>(etal_domain::ids::OrderId(order))
                .await?;
            if o.is_cancelled() {
                return Ok((Outcome::Skipped("the order was cancelled"), Some(address)));
            }
            let (s, _) = self.load::<etal_domain::sale::Sale>(SaleId(sale)).await?;
            let Some(starts) = s.starts_at() else {
                return Ok((Outcome::Skipped("the sale has no date"), Some(address)));
            };
            let now = self.now();
            if now >= starts {
                return Ok((Outcome::Skipped("the pick-up has passed"), Some(address)));
            }
            if now < starts - chrono::Duration::days(1) {
                return Ok((Outcome::Later(starts - chrono::Duration::days(1)), None));
            }
        }
        let name = if to.len() == 1 {
            to[0].1.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let Some(rendered) = self.render(kind, context, name, at).await? else {
            return Ok((Outcome::NotYet, None));
        };
        let mut mailboxes = Vec::new();
        for (_, _, a) in &to {
            match a.parse::<Mailbox>() {
                Ok(m) => mailboxes.push(m),
                Err(e) => {
                    return Ok((
                        Outcome::Permanent(format!("not an address: {e}"), Some(a.clone())),
                        Some(address),
                    ))
                }
            }
        }
        let from: Mailbox = self
            .settings
            .mail
            .from
            .parse()
            .map_err(|e| AppError::Internal(format!("ETAL_MAIL_FROM: {e}")))?;
        let alternative = MultiPart::alternative()
            .singlepart(SinglePart::plain(rendered.text))
            .singlepart(SinglePart::html(rendered.html));
        let body = if rendered.attachments.is_empty() {
            alternative
        } else {
            let mut mixed = MultiPart::mixed().multipart(alternative);
            for (file, content_type, bytes) in rendered.attachments {
                mixed = mixed.singlepart(Attachment::new(file).body(
                    bytes,
                    ContentType::parse(content_type).expect("a content type"),
                ));
            }
            mixed
        };
        let mut builder = Message::builder().from(from);
        for m in mailboxes {
            builder = builder.to(m);
        }
        let message = builder
            .subject(rendered.subject)
            .message_id(Some(format!("<{id}@etal>")))
            .multipart(body)
            .map_err(|e| AppError::Internal(format!("building message {id}: {e}")))?;
        let outcome = match &self.settings.mail.transport {
            MailTransport::Off => Outcome::NotYet,
            MailTransport::Folder(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| AppError::Internal(format!("{}: {e}", dir.display())))?;
                match AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                {
                    Ok(_) => Outcome::Sent,
                    Err(e) => Outcome::Transient(e.to_string()),
                }
            }
            MailTransport::Smtp(_) => {
                let Some(transport) = smtp else {
                    return Ok((Outcome::NotYet, None));
                };
                match transport.send(message).await {
                    Ok(_) => Outcome::Sent,
                    Err(e) if e.is_permanent() => {
                        // 550, 551, 553: the mailbox does not exist or is refused (a bounce);
                        // any other permanent refusal gives the message up only.
                        let bounce = e
                            .status()
                            .map(|c| ["550", "551", "553"].contains(&c.to_string().as_str()))
                            .unwrap_or(false);
                        Outcome::Permanent(
                            e.to_string(),
                            (bounce && to.len() == 1).then(|| address.clone()),
                        )
                    }
                    Err(e) => Outcome::Transient(e.to_string()),
                }
            }
        };
        Ok((outcome, Some(address)))
    }

    /// The message of `kind` from its facts and the names it shows; None while the recap it
    /// shows is not caught up with its cause.
    async fn render(
        &self,
        kind: &str,
        mut context: Value,
        recipient_name: String,
        at: Position,
    ) -> Result<Option<Rendered>, AppError> {
        let uuid = |v: &Value| v.as_str().and_then(|s| s.parse::<Uuid>().ok());
        let mut extra =
            json!({"recipient_name": recipient_name, "public_url": self.settings.mail.public_url});
        if let Some(m) = uuid(&context["market"]) {
            let (market, _) = self.load::<Market>(MarketId(m)).await?;
            extra["market_name"] = json!(market.name());
            extra["place"] = json!(market.place());
        }
        if let Some(c) = uuid(&context["catalog"]) {
            let (catalog, _) = self.load::<Catalog>(CatalogId(c)).await?;
            extra["catalog_name"] = json!(catalog.name().unwrap_or_default());
        }
        if let Some(sale) = uuid(&context["sale"]) {
            let (s, _) = self.load::<etal_domain::sale::Sale>(SaleId(sale)).await?;
            extra["date"] = json!(s.date().map(|d| d.format("%d/%m/%Y").to_string()));
        }
        if kind == kinds::PICKUP_REMINDER {
            if let Some(sale) = uuid(&context["sale"]) {
                let (s, _) = self.load::<etal_domain::sale::Sale>(SaleId(sale)).await?;
                if let Some(starts) = s.starts_at() {
                    let local = starts.with_timezone(&chrono_tz::Europe::Paris);
                    extra["when"] = json!(local.format("%d/%m/%Y à %H:%M").to_string());
                }
            }
        }
        let mut attachments = Vec::new();
        if kind == kinds::RECAP_READY {
            let caught = etal_projections::wait_until(
                &self.pool,
                "order_recaps",
                at,
                Duration::from_millis(0),
            )
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
            if !caught {
                return Ok(None);
            }
            let (Some(sale), Some(catalog)) = (uuid(&context["sale"]), uuid(&context["catalog"]))
            else {
                return Err(AppError::Internal(
                    "a recap message without its sale".into(),
                ));
            };
            let scopes = [Scope {
                sale: SaleId(sale),
                catalog: CatalogId(catalog),
            }];
            let products = order_recaps::recap_by_product(&self.pool, &scopes).await?;
            let customers = order_recaps::recap_by_customer(&self.pool, &scopes).await?;
            let (c, _) = self.load::<Catalog>(CatalogId(catalog)).await?;
            let (s, _) = self.load::<etal_domain::sale::Sale>(SaleId(sale)).await?;
            let (market, _) = self.load::<Market>(s.market()).await?;
            extra["market_name"] = json!(market.name());
            extra["catalog_name"] = json!(c.name().unwrap_or_default());
            extra["date"] = json!(s.date().map(|d| d.format("%d/%m/%Y").to_string()));
            extra["by_product"] = products
                .iter()
                .map(|p| {
                    json!({"name": p.name, "unit": p.unit, "quantity": p.quantity,
                           "amount": p.amount_incl_vat.to_string()})
                })
                .collect();
            let mut csv = csv::Writer::from_writer(Vec::new());
            csv.write_record(["commande", "client", "produit", "quantite", "montant_ttc"])
                .map_err(|e| AppError::Internal(e.to_string()))?;
            let mut by_customer = Vec::new();
            for o in &customers {
                let mut lines = Vec::new();
                for l in &o.lines {
                    csv.write_record([
                        o.number.as_str(),
                        o.customer.as_str(),
                        l.name.as_str(),
                        &l.quantity.to_string(),
                        &l.amount_incl_vat.to_string(),
                    ])
                    .map_err(|e| AppError::Internal(e.to_string()))?;
                    lines.push(json!({"name": l.name, "quantity": l.quantity,
                                      "amount": l.amount_incl_vat.to_string()}));
                }
                by_customer.push(json!({"number": o.number, "customer": o.customer,
                                        "lines": lines, "total": o.amount_incl_vat.to_string()}));
            }
            extra["by_customer"] = json!(by_customer);
            extra["link"] = json!(format!(
                "{}/?recap={sale}&catalog={catalog}",
                self.settings.mail.public_url
            ));
            let bytes = csv
                .into_inner()
                .map_err(|e| AppError::Internal(e.to_string()))?;
            attachments.push((
                format!("recapitulatif-{sale}-{catalog}.csv"),
                "text/csv; charset=utf-8",
                bytes,
            ));
        }
        if kind == "checkpoint_signed" {
            if let (Some(note), Some(size)) =
                (context["note"].as_str(), context["tree_size"].as_u64())
            {
                let file = crate::seal::checkpoint_file_name(size);
                extra["file"] = json!(file);
                attachments.push((file, "text/plain; charset=utf-8", note.as_bytes().to_vec()));
            }
        }
        if kind == kinds::PAYOUT_STATEMENT {
            // R-AUD-3: the latest signed checkpoint of the history goes with each statement, a
            // copy outside the database (`etal audit verify --checkpoint` checks it).
            if let Some(cp) = self.latest_checkpoint().await? {
                extra["checkpoint_size"] = json!(cp.tree_size);
                attachments.push((
                    crate::seal::checkpoint_file_name(cp.tree_size),
                    "text/plain; charset=utf-8",
                    cp.note.into_bytes(),
                ));
            }
            if let Some(lines) = context["lines"].as_array_mut() {
                for l in lines {
                    if let Some(m) = uuid(&l["market"]) {
                        let (market, _) = self.load::<Market>(MarketId(m)).await?;
                        l["market_name"] = json!(market.name());
                    }
                }
            }
        }
        if let (Some(c), Some(e)) = (context.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let env = templates();
        let render = |name: &str| -> Result<String, AppError> {
            env.get_template(name)
                .and_then(|t| t.render(&context))
                .map_err(|e| AppError::Internal(format!("template {name}: {e}")))
        };
        let subjects = render("subjects.txt")?;
        let subject = subjects
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{kind}: ")))
            .unwrap_or("etal")
            .trim()
            .to_string();
        Ok(Some(Rendered {
            subject,
            text: render(&format!("{kind}.txt"))?,
            html: render(&format!("{kind}.html"))?,
            attachments,
        }))
    }

    /// A person turns a kind of message on or off (legal ones cannot be turned off).
    pub async fn set_notification_preference(
        &self,
        user: UserId,
        kind: &str,
        enabled: bool,
    ) -> Result<(), AppError> {
        if !kinds::ALL.contains(&kind) {
            return Err(AppError::bad_input(
                "kind",
                format!("one of {}", kinds::ALL.join(", ")),
            ));
        }
        if kinds::LEGAL.contains(&kind) && !enabled {
            return Err(AppError::Rejected {
                code: "NOTIFICATION_REQUIRED",
                message: format!(
                    "{kind} messages always go (receipts, changes, refunds, statements)"
                ),
            });
        }
        sqlx::query(
            "INSERT INTO notification_preferences (user_id, kind, enabled) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, kind) DO UPDATE SET enabled = $3",
        )
        .bind(user.0)
        .bind(kind)
        .bind(enabled)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Messages still owed (for tests and the back office).
    pub async fn notifications_pending(&self) -> Result<i64, AppError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM notification_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
