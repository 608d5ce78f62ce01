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
}

impl Simulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call whose key starts with `prefix` fails.
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

    fn outcome(&self, kind: &str, key: &str, amount: Money) -> Result<String, PaymentFailure> {
        {
            let mut next = self.fail_next.lock().unwrap_or_else(|p| p.into_inner());
            if *next > 0 {
                *next -= 1;
                return Err(PaymentFailure(format!("simulated {kind} failure")));
            }
        }
        let failing = self.failing_keys.lock().unwrap_or_else(|p| p.into_inner());
        if failing.iter().any(|p| key.starts_with(p.as_str())) {
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
