//! Authentication (bearer JWT, HS256) and the per-token rate limit.
//!
//! A token's claims are `sub` (the user's UUID), `role` (producer, market_admin, customer,
//! auditor, platform_admin) and `exp`. The signing key comes from `ETAL_JWT_SECRET` and is held
//! in a [`JwtKey`] that never prints. `etal token --user ID --role ROLE` mints one.

use std::time::Duration;

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
    /// Not before (checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
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
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
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
        nbf: None,
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
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(key.0.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
        jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
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

/// Requests allowed per key (a token's subject and role, or the address of an anonymous caller),
/// with governor's GCRA: `per_second` sustained, `burst` at once. In this process only: several
/// API replicas each allow the full rate (README, "Rate limits").
pub struct RateLimiter {
    inner: governor::DefaultKeyedRateLimiter<String>,
    clock: governor::clock::DefaultClock,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let per_second = std::num::NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = std::num::NonZeroU32::new(burst.max(1)).expect("at least 1");
        let quota = governor::Quota::per_second(per_second).allow_burst(burst);
        Self {
            inner: governor::RateLimiter::keyed(quota),
            clock: governor::clock::DefaultClock::default(),
        }
    }

    /// `per_minute` at most, `per_minute` at once (log-in attempts).
    pub fn per_minute(per_minute: u32) -> Self {
        let n = std::num::NonZeroU32::new(per_minute.max(1)).expect("at least 1");
        Self {
            inner: governor::RateLimiter::keyed(governor::Quota::per_minute(n)),
            clock: governor::clock::DefaultClock::default(),
        }
    }

    /// Takes one request for `key`; `Err(wait)` when the key has none left.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        use governor::clock::Clock;
        if self.inner.len() > 10_000 {
            // Keys whose bucket refilled hold nothing worth keeping.
            self.inner.retain_recent();
        }
        self.inner
            .check_key(&key.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
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
            nbf: None,
        };
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key().0.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(&key(), &t), Err(AuthError::Expired));
        // Not valid before an hour from now.
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: UserId::new().to_string(),
            role: Role::Customer,
            exp: now + 7200,
            iat: now,
            nbf: Some(now + 3600),
        };
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key().0.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(&key(), &t), Err(AuthError::NotYetValid));
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
        let slow = RateLimiter::new(1, 1);
        assert!(slow.check("c").is_ok());
        let wait = slow.check("c").unwrap_err();
        assert!(
            wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }
}
