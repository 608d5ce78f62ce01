//! The payment-provider port, its deterministic simulator (tests and `make run`) and, in
//! [`crate::stripe`], the Stripe adapter.

use std::collections::HashSet;
use std::sync::Mutex;

use etal_domain::ids::{OrderId, PaymentId};
use etal_domain::Money;
use sha2::{Digest, Sha256};

/// Why a provider call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct PaymentFailure {
    pub reason: String,
    /// The provider could not be reached or answered with a server error: the same call is
    /// made again later (with the same idempotency key). Otherwise the provider refused.
    pub transient: bool,
}

impl PaymentFailure {
    /// The provider refused (a declined card, an invalid request).
    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: false,
        }
    }
    /// The provider could not answer now.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: true,
        }
    }
}

/// A charge of an online order's customer.
#[derive(Debug, Clone, Copy)]
pub struct ChargeRequest<'a> {
    /// The provider's idempotency key (derived from the outbox row).
    pub key: &'a str,
    pub amount: Money,
    pub order: OrderId,
    pub payment: PaymentId,
}

/// A payout's transfer to a producer.
#[derive(Debug, Clone, Copy)]
pub struct TransferRequest<'a> {
    pub key: &'a str,
    pub amount: Money,
    pub producer: etal_domain::ids::ProducerId,
    pub payout: etal_domain::payout::PayoutId,
    /// The producer's account at the provider (Stripe Connect), if any.
    pub destination: Option<&'a str>,
}

/// What the provider did with a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// Taken at once (the simulator): the provider's reference.
    Paid { provider_ref: String },
    /// Waiting for the customer to confirm it in their client (a Stripe PaymentIntent): its
    /// id, and the secret the customer's client confirms it with.
    Awaiting {
        provider_ref: String,
        client_secret: String,
    },
}

/// What the service asks of a payment provider. Every call carries an idempotency key: the
/// provider returns the first result for a key it has seen (as real providers do).
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Charges the customer.
    async fn charge(&self, request: &ChargeRequest<'_>) -> Result<Charged, PaymentFailure>;
    /// Gives up a charge still awaiting the customer (its order expired or was cancelled).
    async fn cancel_charge(&self, key: &str, provider_ref: &str) -> Result<(), PaymentFailure>;
    /// Refunds part of a charge; returns the refund's reference.
    async fn refund(
        &self,
        key: &str,
        charge_ref: &str,
        amount: Money,
    ) -> Result<String, PaymentFailure>;
    /// Transfers money to a producer (`destination`: their account at the provider, if the
    /// provider needs one); returns the transfer's reference.
    async fn transfer(&self, request: &TransferRequest<'_>) -> Result<String, PaymentFailure>;
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
                return Err(PaymentFailure::refused(format!("simulated {kind} failure")));
            }
        }
        {
            let mut next = self.fail_next.lock().unwrap_or_else(|p| p.into_inner());
            if *next > 0 {
                *next -= 1;
                return Err(PaymentFailure::refused(format!("simulated {kind} failure")));
            }
        }
        let failing = self.failing_keys.lock().unwrap_or_else(|p| p.into_inner());
        let named = format!("{kind}:{key}");
        if failing
            .iter()
            .any(|p| key.starts_with(p.as_str()) || named.starts_with(p.as_str()))
        {
            return Err(PaymentFailure::refused(format!("simulated {kind} failure")));
        }
        if amount.is_negative() || amount.is_zero() {
            return Err(PaymentFailure::refused(format!(
                "{kind} of {amount} refused"
            )));
        }
        let digest = Sha256::digest(format!("{kind}:{key}").as_bytes());
        Ok(format!("sim_{kind}_{}", &hex::encode(digest)[..16]))
    }
}

#[async_trait::async_trait]
impl PaymentProvider for Simulator {
    async fn charge(&self, request: &ChargeRequest<'_>) -> Result<Charged, PaymentFailure> {
        let provider_ref = self.outcome("charge", request.key, request.amount)?;
        Ok(Charged::Paid { provider_ref })
    }

    async fn cancel_charge(&self, key: &str, _provider_ref: &str) -> Result<(), PaymentFailure> {
        self.outcome("cancel", key, Money::from_cents(1))
            .map(|_| ())
    }

    async fn refund(
        &self,
        key: &str,
        _charge_ref: &str,
        amount: Money,
    ) -> Result<String, PaymentFailure> {
        self.outcome("refund", key, amount)
    }

    async fn transfer(&self, request: &TransferRequest<'_>) -> Result<String, PaymentFailure> {
        self.outcome("transfer", request.key, request.amount)
    }
}
