//! The order aggregate.

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{CatalogId, MarketId, OrderId, PaymentId, ProducerId, ProductId, SaleId, UserId};
use crate::market::PaymentMode;
use crate::money::Money;
use crate::vat::VatRate;

use super::commands::{Canceller, Delivery, LineInput, OrderCommand, PaymentMethod};
use super::error::OrderError;
use super::events::OrderEvent;

/// Most units on one line (keeps every computation far from decimal overflow).
pub const MAX_QUANTITY: i64 = 100_000;
/// Heaviest weight accepted, in kg.
const MAX_WEIGHT_KG: Decimal = Decimal::from_parts(100_000, 0, 0, false, 0);

/// One order line: frozen terms and computed amounts (rounded half away from zero per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub line: u32,
    pub producer: ProducerId,
    pub catalog: CatalogId,
    pub product: ProductId,
    pub name: String,
    pub unit: String,
    pub unit_price_incl_vat: Money,
    /// R-CAT-2: the producer's price beside the customer's, when fees were added into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_unit_price_incl_vat: Option<Money>,
    pub vat: VatRate,
    pub variable_weight: bool,
    pub estimated_weight_kg: Option<Decimal>,
    pub packaging_multiple: Option<u32>,
    pub quantity: i64,
    /// Actual total weight once weighed (variable weight).
    pub weight_kg: Option<Decimal>,
    pub amount_incl_vat: Money,
    pub amount_excl_vat: Money,
    pub vat_amount: Money,
}

impl Line {
    /// The line amount incl. VAT for a quantity and an actual weight.
    fn amount_for(&self, quantity: i64, weight_kg: Option<Decimal>) -> Money {
        let price = self.unit_price_incl_vat;
        if quantity <= 0 {
            return Money::ZERO;
        }
        match (self.variable_weight, weight_kg, self.estimated_weight_kg) {
            (true, Some(w), _) => price.times(w),
            (true, None, Some(est)) => price.times(est * Decimal::from(quantity)),
            _ => price.times(Decimal::from(quantity)),
        }
    }

    /// Splits an amount incl. VAT: excl. VAT rounded, VAT = the rest, so they add up exactly.
    fn split(vat: VatRate, amount: Money) -> (Money, Money) {
        let excl = vat.excl_vat(amount);
        (excl, amount - excl)
    }
}

/// A payment recorded on the order and what was refunded on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub method: PaymentMethod,
    pub amount: Money,
    pub refunded: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    id: Option<OrderId>,
    sale: SaleId,
    market: MarketId,
    customer: UserId,
    number: String,
    lines: Vec<Line>,
    payment_mode: PaymentMode,
    delivery: Delivery,
    total: Money,
    paid: Money,
    refunded: Money,
    payments: BTreeMap<PaymentId, PaymentRecord>,
    cancelled: bool,
    /// Refunds decided and not yet acknowledged by the provider (R-ORD-4: owed once).
    #[serde(default)]
    pending_refunds: BTreeMap<Uuid, PendingRefund>,
    /// How many refunds were ever requested (names the next one).
    #[serde(default)]
    refund_requests: u32,
    /// Online payments asked of the provider and not confirmed yet (R-PAY-1).
    #[serde(default)]
    awaiting: BTreeMap<PaymentId, AwaitedPayment>,
}

/// An online payment the customer has to confirm with the provider (R-PAY-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitedPayment {
    pub amount: Money,
    pub provider_ref: String,
    /// The outbox message that asked the provider for it.
    pub request: Uuid,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Failed attempts the provider reported, and the last one's reason.
    pub failures: u32,
    pub last_failure: Option<String>,
}

/// A refund decided with the change that made it owed, waiting for the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRefund {
    pub payment: PaymentId,
    pub amount: Money,
}

impl Default for Order {
    fn default() -> Self {
        Self {
            id: None,
            sale: SaleId::default(),
            market: MarketId::default(),
            customer: UserId::default(),
            number: String::new(),
            lines: Vec::new(),
            payment_mode: PaymentMode::Online,
            delivery: Delivery::PickUp,
            total: Money::ZERO,
            paid: Money::ZERO,
            refunded: Money::ZERO,
            payments: BTreeMap::new(),
            cancelled: false,
            pending_refunds: BTreeMap::new(),
            refund_requests: 0,
            awaiting: BTreeMap::new(),
        }
    }
}

fn valid_weight(weight: Decimal) -> bool {
    weight > Decimal::ZERO && weight <= MAX_WEIGHT_KG && weight.normalize().scale() <= 3
}

impl Order {
    /// The lines an order with these inputs would have, with their amounts, or the first refusal:
    /// what the order flow checks (caps, packaging) before anything is reserved.
    pub fn price_lines(inputs: Vec<LineInput>) -> Result<Vec<Line>, OrderError> {
        inputs.into_iter().map(Self::build_line).collect()
    }

    pub fn id(&self) -> Option<OrderId> {
        self.id
    }
    pub fn sale(&self) -> SaleId {
        self.sale
    }
    pub fn market(&self) -> MarketId {
        self.market
    }
    pub fn customer(&self) -> UserId {
        self.customer
    }
    pub fn number(&self) -> &str {
        &self.number
    }
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }
    pub fn payment_mode(&self) -> PaymentMode {
        self.payment_mode
    }
    pub fn payments(&self) -> &BTreeMap<PaymentId, PaymentRecord> {
        &self.payments
    }
    /// What the customer owes for the order: lines plus delivery fee; zero once cancelled.
    pub fn total(&self) -> Money {
        self.total
    }
    pub fn paid(&self) -> Money {
        self.paid
    }
    pub fn refunded(&self) -> Money {
        self.refunded
    }
    /// What was received and not refunded beyond the total, refunds already requested apart.
    pub fn refund_owed(&self) -> Money {
        self.refund_owed_with(self.total)
    }
    /// Refunds requested and not yet acknowledged by the provider.
    /// Online payments the customer has still to confirm with the provider (R-PAY-1).
    pub fn awaiting(&self) -> &BTreeMap<PaymentId, AwaitedPayment> {
        &self.awaiting
    }
    pub fn pending_refunds(&self) -> &BTreeMap<Uuid, PendingRefund> {
        &self.pending_refunds
    }
    /// The sum of [`Order::pending_refunds`].
    pub fn refund_pending(&self) -> Money {
        self.pending_refunds.values().map(|r| r.amount).sum()
    }
    /// What the customer still has to pay.
    pub fn balance_due(&self) -> Money {
        (self.total - (self.paid - self.refunded)).max(Money::ZERO)
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }
    /// Catalogs with at least one unit ordered (none once cancelled).
    pub fn catalogs(&self) -> BTreeSet<CatalogId> {
        if self.cancelled {
            return BTreeSet::new();
        }
        self.lines
            .iter()
            .filter(|l| l.quantity > 0)
            .map(|l| l.catalog)
            .collect()
    }
    /// Producers with at least one line in the order.
    pub fn producers(&self) -> BTreeSet<ProducerId> {
        self.lines.iter().map(|l| l.producer).collect()
    }
    pub fn quantity_of(&self, product: ProductId) -> i64 {
        if self.cancelled {
            return 0;
        }
        self.lines
            .iter()
            .filter(|l| l.product == product)
            .map(|l| l.quantity)
            .sum()
    }

    fn extra_due_with(&self, total: Money) -> Money {
        if self.paid.is_zero() {
            Money::ZERO
        } else {
            (total - (self.paid - self.refunded)).max(Money::ZERO)
        }
    }

    fn refund_owed_with(&self, total: Money) -> Money {
        (self.paid - self.refunded - self.refund_pending() - total).max(Money::ZERO)
    }

    fn require_live(&self) -> Result<(), OrderError> {
        if self.id.is_none() {
            return Err(OrderError::NotPlaced);
        }
        if self.cancelled {
            return Err(OrderError::Cancelled);
        }
        Ok(())
    }

    fn own_line(&self, line: u32, producer: ProducerId) -> Result<&Line, OrderError> {
        let l = self
            .lines
            .iter()
            .find(|l| l.line == line)
            .ok_or(OrderError::UnknownLine { line })?;
        if l.producer != producer {
            return Err(OrderError::NotYourLine { line });
        }
        Ok(l)
    }

    fn build_line(input: LineInput) -> Result<Line, OrderError> {
        let line = input.line;
        if input.quantity <= 0 {
            return Err(OrderError::QuantityNotPositive {
                line,
                quantity: input.quantity,
            });
        }
        if input.quantity > MAX_QUANTITY {
            return Err(OrderError::QuantityTooLarge {
                line,
                max: MAX_QUANTITY,
            });
        }
        if let Some(multiple) = input.packaging_multiple {
            if multiple > 1 && input.quantity % i64::from(multiple) != 0 {
                return Err(OrderError::NotAPackagingMultiple { line, multiple });
            }
        }
        if input.unit_price_incl_vat.is_negative() {
            return Err(OrderError::NegativePrice { line });
        }
        let estimated_weight_kg = if input.variable_weight {
            let est = input
                .estimated_weight_kg
                .ok_or(OrderError::EstimatedWeightMissing { line })?;
            if !valid_weight(est) {
                return Err(OrderError::InvalidWeight {
                    line,
                    weight_kg: est,
                });
            }
            Some(est)
        } else {
            None
        };
        let mut l = Line {
            line,
            producer: input.producer,
            catalog: input.catalog,
            product: input.product,
            name: input.name,
            unit: input.unit,
            unit_price_incl_vat: input.unit_price_incl_vat,
            producer_unit_price_incl_vat: input.producer_unit_price_incl_vat,
            vat: input.vat,
            variable_weight: input.variable_weight,
            estimated_weight_kg,
            packaging_multiple: input.packaging_multiple,
            quantity: input.quantity,
            weight_kg: None,
            amount_incl_vat: Money::ZERO,
            amount_excl_vat: Money::ZERO,
            vat_amount: Money::ZERO,
        };
        l.amount_incl_vat = l.amount_for(l.quantity, None);
        (l.amount_excl_vat, l.vat_amount) = Line::split(l.vat, l.amount_incl_vat);
        Ok(l)
    }

    /// Decides the events of a command, without changing anything.
    pub fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderCommand as C;
        use OrderEvent as E;
        match command {
            C::PlaceOrder {
                order,
                sale,
                market,
                customer,
                number,
                lines,
                payment_mode,
                delivery,
                at,
                actor,
            } => {
                if self.id.is_some() {
                    return Err(OrderError::AlreadyPlaced);
                }
                if actor.user != customer && !actor.is_system() {
                    return Err(OrderError::NotTheCustomer);
                }
                if number.trim().is_empty() {
                    return Err(OrderError::NumberMissing);
                }
                if lines.is_empty() {
                    return Err(OrderError::NoLine);
                }
                let mut built: Vec<Line> = Vec::with_capacity(lines.len());
                for input in lines {
                    if built.iter().any(|l| l.line == input.line) {
                        return Err(OrderError::DuplicateLine { line: input.line });
                    }
                    if built.iter().any(|l| l.product == input.product) {
                        return Err(OrderError::DuplicateProduct {
                            line: input.line,
                            product: input.product,
                        });
                    }
                    built.push(Self::build_line(input)?);
                }
                let fee = match delivery {
                    Delivery::PickUp => Money::ZERO,
                    Delivery::Home { fee, .. } if fee.is_negative() => {
                        return Err(OrderError::NegativeDeliveryFee)
                    }
                    Delivery::Home { fee, .. } => fee,
                };
                let total = built.iter().map(|l| l.amount_incl_vat).sum::<Money>() + fee;
                Ok(vec![E::OrderPlaced {
                    order,
                    sale,
                    market,
                    customer,
                    number,
                    lines: built,
                    payment_mode,
                    delivery,
                    total,
                    at,
                }])
            }
            C::AdjustQuantity {
                line,
                quantity,
                access,
                at,
            } => {
                self.require_live()?;
                let l = self.own_line(line, access.producer)?;
                if quantity < 0 {
                    return Err(OrderError::QuantityNotPositive { line, quantity });
                }
                if quantity > l.quantity {
                    return Err(OrderError::CannotRaise {
                        line,
                        current: l.quantity,
                    });
                }
                if quantity == l.quantity {
                    return Ok(vec![]);
                }
                let new_amount = l.amount_for(quantity, l.weight_kg);
                let (amount_excl_vat, vat_amount) = Line::split(l.vat, new_amount);
                let delta = new_amount - l.amount_incl_vat;
                let total = self.total + delta;
                Ok(vec![E::QuantityAdjusted {
                    line,
                    old_quantity: l.quantity,
                    new_quantity: quantity,
                    old_amount: l.amount_incl_vat,
                    new_amount,
                    amount_excl_vat,
                    vat_amount,
                    delta,
                    total,
                    refund_owed: self.refund_owed_with(total),
                    extra_due: self.extra_due_with(total),
                    by: access.actor.user,
                    at,
                }])
            }
            C::RecordWeight {
                line,
                weight_kg,
                access,
                at,
            } => {
                self.require_live()?;
                let l = self.own_line(line, access.producer)?;
                if !l.variable_weight {
                    return Err(OrderError::NotVariableWeight { line });
                }
                if !valid_weight(weight_kg) {
                    return Err(OrderError::InvalidWeight { line, weight_kg });
                }
                if l.quantity == 0 {
                    return Err(OrderError::QuantityNotPositive { line, quantity: 0 });
                }
                let new_amount = l.amount_for(l.quantity, Some(weight_kg));
                let (amount_excl_vat, vat_amount) = Line::split(l.vat, new_amount);
                let delta = new_amount - l.amount_incl_vat;
                let total = self.total + delta;
                Ok(vec![E::WeightRecorded {
                    line,
                    weight_kg: weight_kg.normalize(),
                    old_amount: l.amount_incl_vat,
                    new_amount,
                    amount_excl_vat,
                    vat_amount,
                    delta,
                    total,
                    refund_owed: self.refund_owed_with(total),
                    extra_due: self.extra_due_with(total),
                    by: access.actor.user,
                    at,
                }])
            }
            C::RecordPayment {
                payment,
                method,
                amount,
                actor,
                market_access,
                at,
            } => {
                // A charge the provider took after the order was cancelled is still recorded:
                // the flow then owes it back (RequestRefunds). So is one the customer
                // confirmed for an amount the order no longer owes (it changed meanwhile).
                let late_charge =
                    method.is_online() && (self.cancelled || self.awaiting.contains_key(&payment));
                if !late_charge {
                    self.require_live()?;
                }
                if let Some(existing) = self.payments.get(&payment) {
                    if existing.method == method && existing.amount == amount {
                        return Ok(vec![]);
                    }
                    return Err(OrderError::PaymentConflict { payment });
                }
                if amount.is_zero() || amount.is_negative() {
                    return Err(OrderError::AmountNotPositive);
                }
                if !method.is_online() {
                    let allowed = market_access.is_some_and(|a| {
                        a.market == self.market && a.administrator && a.actor.user == actor.user
                    });
                    if !allowed {
                        return Err(OrderError::NotAMarketAdministrator);
                    }
                }
                let due = if late_charge {
                    amount
                } else {
                    self.balance_due()
                };
                if amount > due {
                    return Err(OrderError::PaymentExceedsDue { due });
                }
                Ok(vec![E::PaymentRecorded {
                    payment,
                    method,
                    amount,
                    by: actor.user,
                    at,
                    paid: self.paid + amount,
                    balance_due: due - amount,
                }])
            }
            C::AwaitPayment {
                payment,
                amount,
                provider_ref,
                request,
                expires_at,
                at,
            } => {
                self.require_live()?;
                if self.payments.contains_key(&payment) {
                    // Confirmed before its request was recorded: nothing to wait for.
                    return Ok(vec![]);
                }
                if let Some(a) = self.awaiting.get(&payment) {
                    if a.provider_ref == provider_ref && a.amount == amount {
                        return Ok(vec![]);
                    }
                    return Err(OrderError::PaymentConflict { payment });
                }
                if amount.is_zero() || amount.is_negative() {
                    return Err(OrderError::AmountNotPositive);
                }
                Ok(vec![E::PaymentAwaited {
                    payment,
                    amount,
                    provider_ref,
                    request,
                    expires_at,
                    at,
                }])
            }
            C::RecordPaymentFailure {
                payment,
                reason,
                at,
            } => {
                if !self.awaiting.contains_key(&payment) {
                    // Paid since, or never asked: the report changes nothing.
                    return Ok(vec![]);
                }
                Ok(vec![E::PaymentFailed {
                    payment,
                    reason,
                    at,
                }])
            }
            C::RecordRefund {
                payment,
                amount,
                provider_ref,
                at,
                refund,
            } => {
                if self.id.is_none() {
                    return Err(OrderError::NotPlaced);
                }
                let p = self
                    .payments
                    .get(&payment)
                    .ok_or(OrderError::UnknownPayment { payment })?;
                if amount.is_zero() || amount.is_negative() {
                    return Err(OrderError::AmountNotPositive);
                }
                match refund {
                    // The provider acknowledged a refund requested earlier: exactly its terms.
                    Some(id) => {
                        let pending = self
                            .pending_refunds
                            .get(&id)
                            .ok_or(OrderError::UnknownRefund { refund: id })?;
                        if pending.payment != payment || pending.amount != amount {
                            return Err(OrderError::RefundExceedsOwed {
                                owed: pending.amount,
                            });
                        }
                    }
                    None => {
                        let owed = self.refund_owed().min(p.amount - p.refunded);
                        if amount > owed {
                            return Err(OrderError::RefundExceedsOwed { owed });
                        }
                    }
                }
                let still_owed = if refund.is_some() {
                    self.refund_owed()
                } else {
                    self.refund_owed() - amount
                };
                Ok(vec![E::RefundRecorded {
                    payment,
                    amount,
                    provider_ref,
                    at,
                    refunded: self.refunded + amount,
                    refund_owed: still_owed,
                    refund,
                }])
            }
            C::RequestRefunds { at } => {
                if self.id.is_none() {
                    return Err(OrderError::NotPlaced);
                }
                let mut owed = self.refund_owed();
                let mut events = Vec::new();
                let mut n = self.refund_requests;
                for (payment, record) in &self.payments {
                    if owed.is_zero() {
                        break;
                    }
                    if !record.method.is_online() {
                        continue;
                    }
                    let pending: Money = self
                        .pending_refunds
                        .values()
                        .filter(|r| r.payment == *payment)
                        .map(|r| r.amount)
                        .sum();
                    let refundable = (record.amount - record.refunded - pending).min(owed);
                    if refundable.is_zero() || refundable.is_negative() {
                        continue;
                    }
                    n += 1;
                    let order = self.id.map(|o| o.0).unwrap_or_default();
                    events.push(E::RefundRequested {
                        refund: Uuid::new_v5(&order, format!("refund:{n}").as_bytes()),
                        payment: *payment,
                        amount: refundable,
                        at,
                    });
                    owed -= refundable;
                }
                Ok(events)
            }
            C::Cancel {
                by,
                at,
                period_open,
            } => {
                // Who may cancel first, so a stranger learns nothing of the order's state.
                let user = match by {
                    Canceller::Customer(actor) => {
                        if actor.user != self.customer {
                            return Err(OrderError::NotAllowedToCancel);
                        }
                        self.require_live()?;
                        if !period_open {
                            return Err(OrderError::CancellationClosed);
                        }
                        actor.user
                    }
                    Canceller::Producer(access) => {
                        if !self.producers().contains(&access.producer) {
                            return Err(OrderError::NotAllowedToCancel);
                        }
                        access.actor.user
                    }
                    Canceller::MarketAdministrator(access) => {
                        if access.market != self.market || !access.administrator {
                            return Err(OrderError::NotAllowedToCancel);
                        }
                        access.actor.user
                    }
                };
                self.require_live()?;
                Ok(vec![E::OrderCancelled {
                    by: user,
                    at,
                    previous_total: self.total,
                    refund_owed: self.refund_owed_with(Money::ZERO),
                }])
            }
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use OrderEvent as E;
        match event {
            E::OrderPlaced {
                order,
                sale,
                market,
                customer,
                number,
                lines,
                payment_mode,
                delivery,
                total,
                ..
            } => {
                self.id = Some(order);
                self.sale = sale;
                self.market = market;
                self.customer = customer;
                self.number = number;
                self.lines = lines;
                self.payment_mode = payment_mode;
                self.delivery = delivery;
                self.total = total;
            }
            E::QuantityAdjusted {
                line,
                new_quantity,
                new_amount,
                amount_excl_vat,
                vat_amount,
                total,
                ..
            } => {
                if let Some(l) = self.lines.iter_mut().find(|l| l.line == line) {
                    l.quantity = new_quantity;
                    l.amount_incl_vat = new_amount;
                    l.amount_excl_vat = amount_excl_vat;
                    l.vat_amount = vat_amount;
                }
                self.total = total;
            }
            E::WeightRecorded {
                line,
                weight_kg,
                new_amount,
                amount_excl_vat,
                vat_amount,
                total,
                ..
            } => {
                if let Some(l) = self.lines.iter_mut().find(|l| l.line == line) {
                    l.weight_kg = Some(weight_kg);
                    l.amount_incl_vat = new_amount;
                    l.amount_excl_vat = amount_excl_vat;
                    l.vat_amount = vat_amount;
                }
                self.total = total;
            }
            E::PaymentRecorded {
                payment,
                method,
                amount,
                ..
            } => {
                self.paid += amount;
                self.awaiting.remove(&payment);
                self.payments.insert(
                    payment,
                    PaymentRecord {
                        method,
                        amount,
                        refunded: Money::ZERO,
                    },
                );
            }
            E::PaymentAwaited {
                payment,
                amount,
                provider_ref,
                request,
                expires_at,
                ..
            } => {
                self.awaiting.insert(
                    payment,
                    AwaitedPayment {
                        amount,
                        provider_ref,
                        request,
                        expires_at,
                        failures: 0,
                        last_failure: None,
                    },
                );
            }
            E::PaymentFailed {
                payment, reason, ..
            } => {
                if let Some(a) = self.awaiting.get_mut(&payment) {
                    a.failures += 1;
                    a.last_failure = Some(reason);
                }
            }
            E::RefundRequested {
                refund,
                payment,
                amount,
                ..
            } => {
                self.refund_requests += 1;
                self.pending_refunds
                    .insert(refund, PendingRefund { payment, amount });
            }
            E::RefundRecorded {
                payment,
                amount,
                refund,
                ..
            } => {
                if let Some(id) = refund {
                    self.pending_refunds.remove(&id);
                }
                self.refunded += amount;
                if let Some(p) = self.payments.get_mut(&payment) {
                    p.refunded += amount;
                }
            }
            E::OrderCancelled { .. } => {
                self.cancelled = true;
                self.total = Money::ZERO;
                // Nothing is awaited of a cancelled order (a payment confirmed anyway is
                // recorded, then owed back).
                self.awaiting.clear();
            }
        }
    }
}
