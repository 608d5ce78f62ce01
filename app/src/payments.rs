//! The payment-provider port and its deterministic simulator (no real provider is reachable).

use std::collections::HashSet;
use std::sync::Mutex;

use etal_domain::Money;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PaymentFailure(pub String);

/// What the service asks of a payment provider. Every call carries an idempotency key: the
/// provider returns the first result for a key it has seen (as real providers do).
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Charges the customer; returns the provider's reference.
    async fn charge(&self, key: &str, amount: Money) -> Result<String, PaymentFailure>;
    /// Refunds part of a charge; returns the refund's reference.
    async fn refund(
        &self,
        key: &str,
        charge_ref: &str,
        amount: Money,
    ) -> Result<String, PaymentFailure>;
    /// Transfers money to a producer's bank account; returns the transfer's reference.
    async fn transfer(&self, key: &str, amount: Money) -> Result<String, PaymentFailure>;
}

/// A deterministic provider: references derive from the idempotency key, and failures are
/// injected by key prefix or for the next N calls.
#[derive(Default)]
pub struct Simulator {
    failing_keys: Mutex<HashSet<String>>,
    fail_next: Mutex<u32>,
    fail_kind: Mutex<std::collections::HashMap<String, u32>>,
    calls: Mutex<std::collections::HashMap<String, u32>>,
}

impl Simulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call whose key, or `kind:key`, starts with `prefix` fails.
    pub fn fail_keys_starting_with(&self, prefix: &str) {
        self.failing_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(prefix.to_string());
    }

    /// The next `n` calls fail.
    pub fn fail_next(&self, n: u32) {
        *self.fail_next.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }

    /// The next `n` calls of `kind` ("charge", "refund", "transfer") fail.
    pub fn fail_next_of(&self, kind: &str, n: u32) {
        self.fail_kind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind.to_string(), n);
    }

    /// How many calls of `kind` were made (failed ones included).
    pub fn calls(&self, kind: &str) -> u32 {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    fn outcome(&self, kind: &str, key: &str, amount: Money) -> Result<String, PaymentFailure> {
        *self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind.to_string())
            .or_default() += 1;
        {
            let mut by_kind = self.fail_kind.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = by_kind.get_mut(kind).filter(|n| **n > 0) {
                *n -= 1;
                return Err(PaymentFailure(format!("simulated {kind} failure")));
            }
        }
        {
            let mut next = self.fail_next.lock().unwrap_or_else(|p| p.into_inner());
            if *next > 0 {
                *next -= 1;
                return Err(PaymentFailure(format!("simulated {kind} failure")));
            }
        }
        let failing = self.failing_keys.lock().unwrap_or_else(|p| p.into_inner());
        let named = format!("{kind}:{key}");
        if failing
            .iter()
            .any(|p| key.starts_with(p.as_str()) || named.starts_with(p.as_str()))
        {
            return Err(PaymentFailure(format!("simulated {kind} failure")));
        }
        if amount.is_negative() || amount.is_zero() {
            return Err(PaymentFailure(format!("{kind} of {amount} refused")));
        }
        let digest = Sha256::digest(format!("{kind}:{key}").as_bytes());
        Ok(format!("sim_{kind}_{}", &hex::encode(digest)[..16]))
    }
}

#[async_trait::async_trait]
impl PaymentProvider for Simulator {
    async fn charge(&self, key: &str, amount: Money) -> Result<String, PaymentFailure> {
        self.outcome("charge", key, amount)
    }

    async fn refund(
        &self,
        key: &str,
        _charge_ref: &str,
        amount: Money,
    ) -> Result<String, PaymentFailure> {
        self.outcome("refund", key, amount)
    }

    async fn transfer(&self, key: &str, amount: Money) -> Result<String, PaymentFailure> {
        self.outcome("transfer", key, amount)
    }
}
