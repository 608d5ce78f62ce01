//! The back office's log-in (ADR 0016): a one-time link by e-mail, then a session kept on the
//! server. Only hashes of the secrets are stored (a link's token, a session's cookie), so a reader
//! of the database cannot log in with what it reads there... except a link not used yet, whose
//! message waits in `system_messages` until sent (15 minutes at most).
//!
//! - [`App::request_login_links`]: a person known by their e-mail address, not erased, gets one
//!   link per role they hold (the markets they administer: `market_admin`; the producer accounts
//!   they work for: `producer`). Customers get none: the back office is not for them. The answer
//!   never says whether the address is known.
//! - [`App::login_link`]: an operator's link for anyone in any role (`etal admin link`): auditors
//!   and platform administrators, who hold no such rows.
//! - [`App::open_session`] consumes a link (once, before it expires) and opens a session of 12 h,
//!   with its own CSRF token. [`App::session`] reads it back (None: unknown, expired or revoked);
//!   [`App::revoke_sessions`] ends every session of a person.

use chrono::{DateTime, Duration, Utc};
use etal_domain::ids::UserId;
use etal_domain::Role;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::{App, AppError};

/// How long a log-in link may be used.
pub const LINK_TTL: Duration = Duration::minutes(15);
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::hours(12);

/// A session of the back office.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: UserId,
    pub role: Role,
    /// The token forms must send back.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
    /// A message for the next page, taken once.
    pub flash: Option<String>,
}

/// A new random secret (32 bytes, hex) and its hash.
fn secret() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = hash(&token);
    (token, hash)
}

/// How secrets are stored.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn role_of(name: &str) -> Option<Role> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Only the roles the back office serves.
pub fn serves(role: Role) -> bool {
    matches!(
        role,
        Role::Producer | Role::MarketAdmin | Role::Auditor | Role::PlatformAdmin
    )
}

impl App {
    /// Sends `email`'s owner a log-in link per back-office role they hold; how many were sent
    /// (0 for an unknown, erased or customer-only address: the caller says the same either way).
    pub async fn request_login_links(&self, email: &str) -> Result<usize, AppError> {
        let email = email.trim().to_lowercase();
        if email.is_empty() || email.len() > 320 || !email.contains('@') {
            return Err(AppError::bad_input("email", "an e-mail address"));
        }
        let person: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM people WHERE lower(email) = $1 AND erased_at IS NULL \
             ORDER BY created_at LIMIT 1",
        )
        .bind(&email)
        .fetch_optional(&self.pool)
        .await?;
        let Some(user) = person else {
            return Ok(0);
        };
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT kind FROM user_roles WHERE user_id = $1 AND kind IN ('producer', 'market')",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let mut roles: Vec<Role> = kinds
            .iter()
            .map(|k| match k.as_str() {
                "market" => Role::MarketAdmin,
                _ => Role::Producer,
            })
            .collect();
        roles.sort_by_key(|r| role_name(*r));
        if roles.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let mut links = Vec::new();
        let mut tx = self.pool.begin().await?;
        for role in &roles {
            let (token, hash) = secret();
            sqlx::query(
                "INSERT INTO admin_login_links (token_hash, user_id, role, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&hash)
            .bind(user)
            .bind(role_name(*role))
            .bind(now)
            .bind(now + LINK_TTL)
            .execute(&mut *tx)
            .await?;
            links.push(json!({
                "role": role_name(*role),
                "url": format!("{}/admin/login/{token}", self.settings.mail.public_url.trim_end_matches('/')),
            }));
        }
        // The message commits with the links; the sender delivers it (R-NOT-1).
        let message = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO system_messages (message_id, recipient_kind, recipient, kind, context, created_at) \
             VALUES ($1, 'user', $2, 'login_link', $3, $4)",
        )
        .bind(message)
        .bind(user)
        .bind(json!({ "links": links, "minutes": LINK_TTL.num_minutes() }))
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
        tx.commit().await?;
        Ok(links.len())
    }

    /// A log-in link for `user` in `role`, valid for `ttl` (an operator's: `etal admin link`).
    pub async fn login_link(
        &self,
        user: UserId,
        role: Role,
        ttl: Duration,
    ) -> Result<String, AppError> {
        if !serves(role) {
            return Err(AppError::bad_input(
                "role",
                "the back office serves producers, market administrators, auditors and platform administrators",
            ));
        }
        let (token, hash) = secret();
        let now = self.now();
        sqlx::query(
            "INSERT INTO admin_login_links (token_hash, user_id, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&hash)
        .bind(user.0)
        .bind(role_name(role))
        .bind(now)
        .bind(now + ttl)
        .execute(&self.pool)
        .await?;
        Ok(format!(
            "{}/admin/login/{token}",
            self.settings.mail.public_url.trim_end_matches('/')
        ))
    }

    /// Whether `token` is a link that can still be used, and for whom.
    pub async fn login_link_holder(&self, token: &str) -> Result<Option<(UserId, Role)>, AppError> {
        let row = sqlx::query(
            "SELECT user_id, role FROM admin_login_links WHERE token_hash = $1 \
             AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash(token))
        .bind(self.now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => role_of(&r.try_get::<String, _>("role")?)
                .map(|role| Ok::<_, AppError>((UserId(r.try_get("user_id")?), role)))
                .transpose()?,
            None => None,
        })
    }

    /// Uses the link `token` (once) and opens a session: its cookie's secret and the session.
    /// None: the link is unknown, used or expired.
    pub async fn open_session(&self, token: &str) -> Result<Option<(String, Session)>, AppError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE admin_login_links SET used_at = $2 WHERE token_hash = $1 \
             AND used_at IS NULL AND expires_at > $2 RETURNING user_id, role",
        )
        .bind(hash(token))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user: Uuid = row.try_get("user_id")?;
        let role_text: String = row.try_get("role")?;
        let Some(role) = role_of(&role_text) else {
            return Ok(None);
        };
        let (cookie, cookie_hash) = secret();
        let (csrf, _) = secret();
        sqlx::query(
            "INSERT INTO admin_sessions (session_hash, user_id, role, csrf, created_at, expires_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $5)",
        )
        .bind(&cookie_hash)
        .bind(user)
        .bind(&role_text)
        .bind(&csrf)
        .bind(now)
        .bind(now + SESSION_TTL)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((
            cookie,
            Session {
                user: UserId(user),
                role,
                csrf,
                expires_at: now + SESSION_TTL,
                flash: None,
            },
        )))
    }

    /// The session of the cookie `secret`, its flash message taken (None: unknown, expired or
    /// revoked).
    pub async fn session(&self, secret: &str) -> Result<Option<Session>, AppError> {
        let row = sqlx::query(
            "UPDATE admin_sessions s SET last_seen_at = $2, flash = NULL \
             FROM (SELECT session_hash, flash FROM admin_sessions WHERE session_hash = $1 FOR UPDATE) old \
             WHERE s.session_hash = old.session_hash AND s.revoked_at IS NULL AND s.expires_at > $2 \
             RETURNING s.user_id, s.role, s.csrf, s.expires_at, old.flash",
        )
        .bind(hash(secret))
        .bind(self.now())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(role) = role_of(&row.try_get::<String, _>("role")?) else {
            return Ok(None);
        };
        Ok(Some(Session {
            user: UserId(row.try_get("user_id")?),
            role,
            csrf: row.try_get("csrf")?,
            expires_at: row.try_get("expires_at")?,
            flash: row.try_get("flash")?,
        }))
    }

    /// Leaves `message` for the session's next page.
    pub async fn set_flash(&self, secret: &str, message: &str) -> Result<(), AppError> {
        sqlx::query("UPDATE admin_sessions SET flash = $2 WHERE session_hash = $1")
            .bind(hash(secret))
            .bind(message.chars().take(500).collect::<String>())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends the session of the cookie `secret` (log-out).
    pub async fn end_session(&self, secret: &str) -> Result<(), AppError> {
        sqlx::query(
            "UPDATE admin_sessions SET revoked_at = $2 WHERE session_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash(secret))
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends every session of `user` (`etal admin revoke`); how many were open.
    pub async fn revoke_sessions(&self, user: UserId) -> Result<u64, AppError> {
        let now = self.now();
        Ok(sqlx::query(
            "UPDATE admin_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > $2",
        )
        .bind(user.0)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
