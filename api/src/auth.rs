//! Authentication (bearer JWT, HS256) and the per-token rate limit.
//!
//! A token's claims are `sub` (the user's UUID), `role` (producer, market_admin, customer,
//! auditor, platform_admin) and `exp`. The signing key comes from `ETAL_JWT_SECRET` and is held
//! in a [`JwtKey`] that never prints. `etal token --user ID --role ROLE` mints one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etal_domain::ids::UserId;
use etal_domain::{Actor, Role};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The HS256 signing key. Its Debug form hides it.
#[derive(Clone)]
pub struct JwtKey(String);

impl JwtKey {
    /// The key from `ETAL_JWT_SECRET` (None when unset or blank).
    pub fn from_env() -> Result<Option<JwtKey>, AuthError> {
        match std::env::var("ETAL_JWT_SECRET") {
            Ok(s) if !s.trim().is_empty() => JwtKey::new(s).map(Some),
            _ => Ok(None),
        }
    }

    /// A key of at least 16 bytes (HS256 wants 32; shorter keys are refused outright).
    pub fn new(secret: String) -> Result<JwtKey, AuthError> {
        if secret.len() < 16 {
            return Err(AuthError::WeakKey);
        }
        Ok(JwtKey(secret))
    }
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(***)")
    }
}

/// The claims of an etal token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// The role the token acts in (snake_case, as [`Role`] serializes).
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    #[serde(default)]
    pub iat: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("ETAL_JWT_SECRET must hold at least 16 bytes")]
    WeakKey,
    #[error("tokens are not accepted: ETAL_JWT_SECRET is not set on the server")]
    NoKey,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
    #[error("the system role cannot be given to a token")]
    SystemRole,
}

/// Mints a token for `user` in `role`, valid for `ttl`.
pub fn mint(key: &JwtKey, user: UserId, role: Role, ttl: Duration) -> Result<String, AuthError> {
    if role == Role::System {
        return Err(AuthError::SystemRole);
    }
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user.to_string(),
        role,
        exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        iat: now,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key.0.as_bytes()),
    )
    .map_err(|_| AuthError::Invalid)
}

/// Verifies a token and returns who it speaks for.
pub fn verify(key: &JwtKey, token: &str) -> Result<Actor, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(key.0.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
        _ => AuthError::Invalid,
    })?;
    if data.claims.role == Role::System {
        return Err(AuthError::SystemRole);
    }
    let user: UserId = data.claims.sub.parse().map_err(|_| AuthError::Invalid)?;
    Ok(Actor::new(user, data.claims.role))
}

/// Parses a role as written on the command line or in a token (`market_admin` or
/// `market-admin`).
pub fn parse_role(s: &str) -> Result<Role, String> {
    let norm = s.trim().to_ascii_lowercase().replace('-', "_");
    serde_json::from_value::<Role>(serde_json::Value::String(norm))
        .ok()
        .filter(|r| *r != Role::System)
        .ok_or_else(|| {
            format!(
                "'{s}' is not a role (producer, market_admin, customer, auditor, platform_admin)"
            )
        })
}

/// Who calls: the actor of a verified token, or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User(Actor),
}

impl Principal {
    pub fn actor(&self) -> Option<Actor> {
        match self {
            Principal::Anonymous => None,
            Principal::User(a) => Some(*a),
        }
    }
}

/// A token bucket per key (a token's subject and role, or "anonymous"), in this process only:
/// several API replicas each allow the full rate. Buckets that are full are forgotten when the
/// map grows large.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `Err(wait)` when the bucket is empty.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 10_000 {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> JwtKey {
        JwtKey::new("0123456789abcdef0123456789abcdef".into()).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_to_its_actor() {
        let user = UserId::new();
        let t = mint(&key(), user, Role::MarketAdmin, Duration::from_secs(60)).unwrap();
        assert_eq!(
            verify(&key(), &t).unwrap(),
            Actor::new(user, Role::MarketAdmin)
        );
    }

    #[test]
    fn a_token_signed_with_another_key_or_expired_is_refused() {
        let other = JwtKey::new("another key of enough length!!".into()).unwrap();
        let t = mint(
            &other,
            UserId::new(),
            Role::Customer,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(verify(&key(), &t), Err(AuthError::Invalid));
        let claims = Claims {
            sub: UserId::new().to_string(),
            role: Role::Customer,
            exp: chrono::Utc::now().timestamp() - 3600,
            iat: 0,
        };
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key().0.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(&key(), &t), Err(AuthError::Expired));
    }

    #[test]
    fn the_key_never_prints() {
        assert_eq!(format!("{:?}", key()), "JwtKey(***)");
    }

    #[test]
    fn roles_parse_in_both_spellings_and_system_is_refused() {
        assert_eq!(parse_role("market-admin"), Ok(Role::MarketAdmin));
        assert_eq!(parse_role("platform_admin"), Ok(Role::PlatformAdmin));
        assert!(parse_role("system").is_err());
    }

    #[test]
    fn the_bucket_empties_then_refills() {
        let l = RateLimiter::new(1000, 2);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_err());
        assert!(l.check("b").is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.check("a").is_ok());
    }
}
