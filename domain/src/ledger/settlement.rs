//! From orders to money movements: who a customer payment and a refund belong to, the journal
//! entries of order and producer balance events, and what a validated sale credits each
//! producer (R-SAL-6, R-FEE-1..4, R-PAY-2). Pure: the API (crediting a sale), the ledger
//! projection and the auditor's replay all run this same code over the same events.
//!
//! # Attribution
//! An order is paid once for all its producers (R-ORD-1). [`OrderMoney`] folds the order's
//! events and attributes each online payment and each refund to producers:
//! * a payment first covers what each producer is still owed (current line amounts minus what
//!   they already received net of refunds), in producer id order; then a delivery fee the
//!   market set, which is the market's (R-ORD-6); any rest (a producer's delivery fee) goes to
//!   the producer with the largest amount;
//! * a refund is first taken from producers who received more than their current amount (a
//!   shortage, a weighing, a cancellation), in producer id order, then from the market if it
//!   received more than its fee now (a cancellation), then from what the producers hold, then
//!   from what the market holds; never more than anyone received.
//!
//! Payments taken on site never reach the platform: they move no money in the ledger.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::calendar::paris_date;
use crate::fees::{
    recompute, refund_fee_line, Beneficiary, FeeError, FeeLine, FeeRefund, FeeSchedule,
    ProducerShare,
};
use crate::ids::{MarketId, OrderId, PaymentId, ProducerId, SaleId};
use crate::market::PaymentMode;
use crate::money::Money;
use crate::order::{Deliverer, Delivery, OrderEvent};
use crate::payout::ProducerBalanceEvent;

use super::entries::{
    entry_id, fees_charged, fees_given_back, fees_owed, fees_refunded, payment_received,
    payout_entries, period_billed, refund_paid,
};
use super::{Account, JournalEntry};

/// One producer's lines in an order, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProducerPart {
    pub amount_incl_vat: Money,
    pub amount_excl_vat: Money,
    pub items: i64,
    /// Received from online payments (attributed).
    pub paid: Money,
    /// Refunded to the customer (attributed).
    pub refunded: Money,
}

impl ProducerPart {
    /// What the producer keeps of the customer's payments.
    pub fn kept(&self) -> Money {
        self.paid - self.refunded
    }
}

/// The money of one order, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OrderMoney {
    pub order: Option<OrderId>,
    pub sale: Option<SaleId>,
    pub market: Option<MarketId>,
    pub online_market: bool,
    /// line number -> (producer, amount incl. VAT, amount excl. VAT, quantity)
    lines: BTreeMap<u32, (ProducerId, Money, Money, i64)>,
    paid: BTreeMap<ProducerId, Money>,
    refunded: BTreeMap<ProducerId, Money>,
    online_payments: BTreeSet<PaymentId>,
    /// R-ORD-6: the delivery fee the market set (zero once the order is cancelled), what the
    /// market received of the customer's payments and what was refunded of it.
    #[serde(default)]
    market_fee: Money,
    #[serde(default)]
    market_paid: Money,
    #[serde(default)]
    market_refunded: Money,
}

/// Who an online payment or refund belongs to: producers, and the market for a delivery fee
/// it set (R-ORD-6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shares {
    pub producers: Vec<(ProducerId, Money)>,
    pub market: Money,
}

impl Shares {
    pub fn total(&self) -> Money {
        self.producers.iter().map(|(_, m)| *m).sum::<Money>() + self.market
    }
}

/// What an order event moved, attributed to producers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderMovement {
    None,
    /// An online payment received.
    Payment(Shares),
    /// An online refund sent back.
    Refund(Shares),
}

impl OrderMoney {
    /// Each producer's part now (producers with a line).
    pub fn parts(&self) -> BTreeMap<ProducerId, ProducerPart> {
        let mut parts: BTreeMap<ProducerId, ProducerPart> = BTreeMap::new();
        for (producer, incl, excl, quantity) in self.lines.values() {
            let p = parts.entry(*producer).or_default();
            p.amount_incl_vat += *incl;
            p.amount_excl_vat += *excl;
            p.items += *quantity;
        }
        for (producer, paid) in &self.paid {
            parts.entry(*producer).or_default().paid = *paid;
        }
        for (producer, refunded) in &self.refunded {
            parts.entry(*producer).or_default().refunded = *refunded;
        }
        parts
    }

    fn largest(&self, by: impl Fn(&ProducerPart) -> Money) -> Option<ProducerId> {
        let mut best: Option<(ProducerId, Money)> = None;
        for (producer, part) in self.parts() {
            let v = by(&part);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((producer, v));
            }
        }
        best.map(|(p, _)| p)
    }

    /// What the market keeps of the customer's payments (its delivery fee, R-ORD-6).
    pub fn market_kept(&self) -> Money {
        self.market_paid - self.market_refunded
    }

    /// The delivery fee owed to the market now (zero when the market does not deliver).
    pub fn market_fee(&self) -> Money {
        self.market_fee
    }

    fn attribute_payment(&self, amount: Money) -> Shares {
        let mut left = amount;
        let mut shares: BTreeMap<ProducerId, Money> = BTreeMap::new();
        for (producer, part) in self.parts() {
            let due = (part.amount_incl_vat - part.kept()).max(Money::ZERO);
            let take = due.min(left);
            if !take.is_zero() {
                *shares.entry(producer).or_default() += take;
                left -= take;
            }
        }
        let market = (self.market_fee - self.market_kept())
            .max(Money::ZERO)
            .min(left);
        left -= market;
        if !left.is_zero() {
            if let Some(p) = self.largest(|p| p.amount_incl_vat) {
                *shares.entry(p).or_default() += left;
            }
        }
        Shares {
            producers: shares.into_iter().filter(|(_, m)| !m.is_zero()).collect(),
            market,
        }
    }

    fn attribute_refund(&self, amount: Money) -> Shares {
        let parts = self.parts();
        let mut left = amount;
        let mut shares: BTreeMap<ProducerId, Money> = BTreeMap::new();
        let take_from = |left: &mut Money, room: Money| {
            let take = room.max(Money::ZERO).min(*left);
            *left -= take;
            take
        };
        // First from those who received more than they sell now...
        for (producer, part) in &parts {
            let take = take_from(&mut left, part.kept() - part.amount_incl_vat);
            if !take.is_zero() {
                *shares.entry(*producer).or_default() += take;
            }
        }
        let mut market = take_from(&mut left, self.market_kept() - self.market_fee);
        // ...then from what the others still hold.
        for (producer, part) in &parts {
            if left.is_zero() {
                break;
            }
            let taken = shares.get(producer).copied().unwrap_or(Money::ZERO);
            let take = take_from(&mut left, part.kept() - taken);
            if !take.is_zero() {
                *shares.entry(*producer).or_default() += take;
            }
        }
        market += take_from(&mut left, self.market_kept() - market);
        Shares {
            producers: shares.into_iter().filter(|(_, m)| !m.is_zero()).collect(),
            market,
        }
    }

    /// Folds one event of the order and says what money it moved.
    pub fn apply(&mut self, event: &OrderEvent) -> OrderMovement {
        match event {
            OrderEvent::OrderPlaced {
                order,
                sale,
                market,
                lines,
                payment_mode,
                delivery,
                ..
            } => {
                self.order = Some(*order);
                self.sale = Some(*sale);
                self.market = Some(*market);
                self.online_market = *payment_mode == PaymentMode::Online;
                if let Delivery::Home {
                    fee,
                    by: Deliverer::Market,
                    ..
                } = delivery
                {
                    self.market_fee = *fee;
                }
                for l in lines {
                    self.lines.insert(
                        l.line,
                        (l.producer, l.amount_incl_vat, l.amount_excl_vat, l.quantity),
                    );
                }
                OrderMovement::None
            }
            OrderEvent::QuantityAdjusted {
                line,
                new_quantity,
                new_amount,
                amount_excl_vat,
                ..
            } => {
                if let Some(l) = self.lines.get_mut(line) {
                    l.1 = *new_amount;
                    l.2 = *amount_excl_vat;
                    l.3 = *new_quantity;
                }
                OrderMovement::None
            }
            OrderEvent::WeightRecorded {
                line,
                new_amount,
                amount_excl_vat,
                ..
            } => {
                if let Some(l) = self.lines.get_mut(line) {
                    l.1 = *new_amount;
                    l.2 = *amount_excl_vat;
                }
                OrderMovement::None
            }
            // Money moves when the provider acknowledges the refund (RefundRecorded).
            OrderEvent::RefundRequested { .. }
            | OrderEvent::PaymentAwaited { .. }
            | OrderEvent::PaymentFailed { .. } => OrderMovement::None,
            OrderEvent::OrderCancelled { .. } => {
                for l in self.lines.values_mut() {
                    l.1 = Money::ZERO;
                    l.2 = Money::ZERO;
                    l.3 = 0;
                }
                self.market_fee = Money::ZERO;
                OrderMovement::None
            }
            OrderEvent::PaymentRecorded {
                payment,
                method,
                amount,
                ..
            } => {
                if !method.is_online() {
                    return OrderMovement::None;
                }
                self.online_payments.insert(*payment);
                let shares = self.attribute_payment(*amount);
                for (p, m) in &shares.producers {
                    *self.paid.entry(*p).or_default() += *m;
                }
                self.market_paid += shares.market;
                OrderMovement::Payment(shares)
            }
            OrderEvent::RefundRecorded {
                payment, amount, ..
            } => {
                if !self.online_payments.contains(payment) {
                    return OrderMovement::None;
                }
                let shares = self.attribute_refund(*amount);
                for (p, m) in &shares.producers {
                    *self.refunded.entry(*p).or_default() += *m;
                }
                self.market_refunded += shares.market;
                OrderMovement::Refund(shares)
            }
        }
    }
}

/// The journal entries of one order event (stream "order", `sequence` = the event's sequence),
/// folding it into `state`: a payment received (one entry, a credit per producer) or a refund
/// paid (one entry per producer, part = the producer's id).
pub fn order_entries(
    state: &mut OrderMoney,
    order: &str,
    sequence: u64,
    event: &OrderEvent,
) -> Vec<JournalEntry> {
    let at = match event {
        OrderEvent::PaymentRecorded { at, .. } | OrderEvent::RefundRecorded { at, .. } => *at,
        _ => {
            state.apply(event);
            return vec![];
        }
    };
    let date = paris_date(at);
    match state.apply(event) {
        OrderMovement::None => vec![],
        OrderMovement::Payment(shares) => vec![payment_received(
            entry_id("order", order, sequence, ""),
            date,
            &shares,
            state.market.unwrap_or_default(),
        )],
        OrderMovement::Refund(shares) => {
            let mut entries: Vec<JournalEntry> = shares
                .producers
                .iter()
                .map(|(p, m)| {
                    refund_paid(
                        entry_id("order", order, sequence, &p.to_string()),
                        date,
                        Account::ProducerPayable(*p),
                        *m,
                    )
                })
                .collect();
            if !shares.market.is_zero() {
                entries.push(refund_paid(
                    entry_id("order", order, sequence, "market"),
                    date,
                    Account::MarketPayable(state.market.unwrap_or_default()),
                    shares.market,
                ));
            }
            entries
        }
    }
}

/// The journal entries of one producer balance event: fees charged when a sale is credited
/// (R-FEE-1, R-FEE-2), then the payout movements of [`payout_entries`].
pub fn balance_entries(
    producer: ProducerId,
    sequence: u64,
    event: &ProducerBalanceEvent,
) -> Vec<JournalEntry> {
    match event {
        ProducerBalanceEvent::SaleCredited {
            market,
            fees,
            fee_refunds,
            available_on,
            at,
            ..
        } => {
            let mut entries = Vec::new();
            if !fees.is_empty() {
                entries.push(fees_charged(
                    entry_id("producer_balance", producer, sequence, ""),
                    paris_date(*at),
                    Some(*available_on),
                    producer,
                    *market,
                    fees,
                ));
            }
            if !fee_refunds.is_empty() {
                let mut back = fees_refunded(
                    entry_id("producer_balance", producer, sequence, "back"),
                    paris_date(*at),
                    producer,
                    *market,
                    fee_refunds,
                );
                back.available_on = Some(*available_on);
                entries.push(back);
            }
            entries
        }
        ProducerBalanceEvent::SaleSettledOnSite {
            market, fees, at, ..
        } => {
            if fees.is_empty() {
                return vec![];
            }
            vec![fees_owed(
                entry_id("producer_balance", producer, sequence, ""),
                paris_date(*at),
                producer,
                *market,
                fees,
            )]
        }
        ProducerBalanceEvent::RefundDebited {
            market,
            fees_before,
            fees_after,
            fee_refunds,
            at,
            ..
        } => {
            // The refund itself is posted from the order's event; here the fees are given back
            // in proportion (R-FEE-4), or, in older events, recomputed on what is kept.
            let date = paris_date(*at);
            let mut entries = Vec::new();
            if !fees_before.is_empty() {
                entries.push(fees_given_back(
                    entry_id("producer_balance", producer, sequence, "back"),
                    date,
                    producer,
                    *market,
                    fees_before,
                ));
            }
            if !fees_after.is_empty() {
                entries.push(fees_charged(
                    entry_id("producer_balance", producer, sequence, "charged"),
                    date,
                    None,
                    producer,
                    *market,
                    fees_after,
                ));
            }
            if !fee_refunds.is_empty() {
                entries.push(fees_refunded(
                    entry_id("producer_balance", producer, sequence, "refunded"),
                    date,
                    producer,
                    *market,
                    fee_refunds,
                ));
            }
            entries
        }
        ProducerBalanceEvent::PeriodBilled {
            market, lines, at, ..
        } => vec![period_billed(
            entry_id("producer_balance", producer, sequence, ""),
            paris_date(*at),
            producer,
            market.unwrap_or_default(),
            lines,
        )],
        other => payout_entries(producer, sequence, other),
    }
}

/// The service fee of every producer of a validated sale paid on site (R-FEE-2, R-SAL-6):
/// the schedule's non-online rules in force on `on`, order by order, on what each producer's
/// customers were charged (their current line amounts), merged per rule and beneficiary.
/// Returns (what the producer's customers were charged incl. VAT, fee lines) per producer
/// with something sold.
pub fn on_site_fees(
    schedule: &FeeSchedule,
    on: NaiveDate,
    orders: &[OrderMoney],
) -> Result<BTreeMap<ProducerId, (Money, Vec<FeeLine>)>, FeeError> {
    let mut out: BTreeMap<ProducerId, (Money, Vec<FeeLine>)> = BTreeMap::new();
    for order in orders {
        let shares: Vec<ProducerShare> = order
            .parts()
            .into_iter()
            .filter(|(_, part)| part.amount_incl_vat > Money::ZERO)
            .map(|(producer, part)| ProducerShare {
                producer,
                amount_incl_vat: part.amount_incl_vat,
                amount_excl_vat: part.amount_excl_vat,
                items: u32::try_from(part.items.max(0)).unwrap_or(u32::MAX),
                orders: 1,
            })
            .collect();
        if shares.is_empty() {
            continue;
        }
        for s in &shares {
            out.entry(s.producer).or_default().0 += s.amount_incl_vat;
        }
        for pf in schedule.fees_for_payment(on, false, &shares)? {
            out.entry(pf.producer).or_default().1.extend(pf.lines);
        }
    }
    Ok(out
        .into_iter()
        .map(|(p, (sold, lines))| (p, (sold, merge_lines(lines))))
        .collect())
}

/// What a validated sale credits one producer (the `CreditSale` command's figures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleCredit {
    /// Online payments received for the producer's lines, incl. VAT.
    pub gross_incl_vat: Money,
    /// Refunded to customers from the producer's share.
    pub refunds: Money,
    /// The fees charged on what was paid (R-FEE-1, R-FEE-2), one line per rule and beneficiary.
    pub fees: Vec<FeeLine>,
    /// The fees given back for `refunds` (R-FEE-4), one per charged line (empty without
    /// refunds).
    pub fee_refunds: Vec<FeeRefund>,
    /// Per charged line ([`fee_key`]), the fixed parts of the orders whose share is wholly
    /// refunded: what a later refund compares with to give a fixed part back once.
    pub fixed_back: BTreeMap<String, Money>,
    /// `gross - refunds - fees incl. VAT + fees given back incl. VAT`.
    pub net: Money,
}

/// The key of a fee line among a producer's lines of one sale: rule, version, beneficiary.
pub fn fee_key(rule_id: &str, rule_version: u32, beneficiary: Beneficiary) -> String {
    format!("{rule_id}@{rule_version}:{beneficiary:?}")
}

/// Merges lines of the same rule version and beneficiary into one line on the summed base and
/// fixed part, recomputed (one fee line per rule and beneficiary on the statement).
fn merge_lines(lines: Vec<FeeLine>) -> Vec<FeeLine> {
    let mut merged: BTreeMap<(String, u32, String), FeeLine> = BTreeMap::new();
    for line in lines {
        let key = (
            line.rule_id.clone(),
            line.rule_version,
            format!("{:?}", line.beneficiary),
        );
        match merged.get_mut(&key) {
            Some(m) => {
                m.base_amount += line.base_amount;
                m.fixed_part += line.fixed_part;
            }
            None => {
                merged.insert(key, line);
            }
        }
    }
    merged.into_values().map(|l| recompute(&l)).collect()
}

/// The credit of every producer of a validated sale paid online (R-SAL-6, R-PAY-2): the
/// payments each received and the refunds taken from them (see the attribution above), the
/// fees of `schedule` in force on `on` (the validation's Paris date) on what was paid, payment
/// by payment, so a fixed part per payment is split across the producers of each order
/// (R-FEE-1), and the fees given back for the refunds so far (R-FEE-4): the variable part in
/// proportion to what was refunded, the fixed part of each order whose share is wholly
/// refunded. Lines of one rule and beneficiary are merged across orders. Producers with
/// nothing paid are left out.
///
/// Markets paid on site settle outside the platform: nothing is credited (see docs).
pub fn sale_credits(
    schedule: &FeeSchedule,
    on: NaiveDate,
    orders: &[OrderMoney],
) -> Result<BTreeMap<ProducerId, SaleCredit>, FeeError> {
    let mut gross: BTreeMap<ProducerId, (Money, Money)> = BTreeMap::new();
    let mut fees: BTreeMap<ProducerId, Vec<FeeLine>> = BTreeMap::new();
    let mut fixed_back: BTreeMap<ProducerId, BTreeMap<String, Money>> = BTreeMap::new();
    for order in orders {
        let parts = order.parts();
        let mut shares = Vec::new();
        for (producer, part) in &parts {
            if part.paid.is_zero() && part.refunded.is_zero() {
                continue;
            }
            let g = gross.entry(*producer).or_default();
            g.0 += part.paid;
            g.1 += part.refunded;
            if part.paid <= Money::ZERO {
                continue;
            }
            // The excl. VAT part of what was paid, in the proportion of the lines now (a
            // cancelled order has no lines left: its payment is taken as is).
            let excl = if part.amount_incl_vat.is_zero() {
                part.paid
            } else {
                Money::round(
                    part.amount_excl_vat.amount() * part.paid.amount()
                        / part.amount_incl_vat.amount(),
                )
                .min(part.paid)
            };
            shares.push(ProducerShare {
                producer: *producer,
                amount_incl_vat: part.paid,
                amount_excl_vat: excl,
                items: u32::try_from(part.items.max(0)).unwrap_or(u32::MAX),
                orders: 1,
            });
        }
        if shares.is_empty() {
            continue;
        }
        for pf in schedule.fees_for_payment(on, true, &shares)? {
            let wholly = parts
                .get(&pf.producer)
                .is_some_and(|p| p.refunded >= p.paid && p.paid > Money::ZERO);
            if wholly {
                let back = fixed_back.entry(pf.producer).or_default();
                for l in &pf.lines {
                    if !l.fixed_part.is_zero() {
                        *back
                            .entry(fee_key(&l.rule_id, l.rule_version, l.beneficiary))
                            .or_default() += l.fixed_part;
                    }
                }
            }
            fees.entry(pf.producer).or_default().extend(pf.lines);
        }
    }
    gross
        .into_iter()
        .map(|(producer, (paid, refunded))| {
            let lines = merge_lines(fees.remove(&producer).unwrap_or_default());
            let back = fixed_back.remove(&producer).unwrap_or_default();
            let mut fee_refunds = Vec::new();
            if !refunded.is_zero() {
                for l in &lines {
                    let key = fee_key(&l.rule_id, l.rule_version, l.beneficiary);
                    let fixed = back.get(&key).copied().unwrap_or_default();
                    fee_refunds.push(refund_fee_line(
                        l,
                        "before-credit",
                        paid,
                        Money::ZERO,
                        refunded.min(paid),
                        Money::ZERO,
                        fixed,
                    )?);
                }
            }
            let charged: Money = lines.iter().map(|l| l.amount_incl_vat).sum();
            let given_back: Money = fee_refunds.iter().map(|r| r.amount_incl_vat).sum();
            Ok((
                producer,
                SaleCredit {
                    gross_incl_vat: paid,
                    refunds: refunded,
                    net: paid - refunded - charged + given_back,
                    fees: lines,
                    fee_refunds,
                    fixed_back: back,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{Delivery, Line, PaymentMethod};
    use crate::vat::VatRate;
    use chrono::{TimeZone, Utc};

    fn m(s: &str) -> Money {
        s.parse().expect("money")
    }

    fn line(n: u32, producer: ProducerId, amount: &str) -> Line {
        let vat: VatRate = "5.5".parse().expect("vat");
        let amount = m(amount);
        let excl = vat.excl_vat(amount);
        Line {
            line: n,
            producer,
            catalog: Default::default(),
            product: Default::default(),
            name: "x".into(),
            unit: "piece".into(),
            unit_price_incl_vat: amount,
            producer_unit_price_incl_vat: None,
            vat,
            variable_weight: false,
            estimated_weight_kg: None,
            packaging_multiple: None,
            quantity: 1,
            weight_kg: None,
            amount_incl_vat: amount,
            amount_excl_vat: excl,
            vat_amount: amount - excl,
        }
    }

    fn placed(lines: Vec<Line>) -> OrderEvent {
        let total = lines.iter().map(|l| l.amount_incl_vat).sum();
        OrderEvent::OrderPlaced {
            order: OrderId::default(),
            sale: SaleId::default(),
            market: MarketId::default(),
            customer: Default::default(),
            number: "1".into(),
            lines,
            payment_mode: PaymentMode::Online,
            delivery: Delivery::PickUp,
            total,
            at: Utc.with_ymd_and_hms(2023, 9, 1, 10, 0, 0).unwrap(),
        }
    }

    fn paid(amount: &str) -> OrderEvent {
        OrderEvent::PaymentRecorded {
            payment: PaymentId::default(),
            method: PaymentMethod::Online {
                provider_ref: "p".into(),
            },
            amount: m(amount),
            by: Default::default(),
            at: Utc.with_ymd_and_hms(2023, 9, 1, 10, 0, 0).unwrap(),
            paid: m(amount),
            balance_due: Money::ZERO,
        }
    }

    fn cagette() -> FeeSchedule {
        crate::fees::FeeSchedules::from_json(include_str!("../../../config/fees/cagette.json"))
            .expect("cagette")
            .get("cagette")
            .expect("schedule")
            .clone()
    }

    /// R-FEE-1, R-FEE-2, R-PAY-2: one payment for two producers; each is credited its share
    /// minus 3 % + 6 % excl. VAT (+20 % VAT) of it.
    #[test]
    fn r_fee_1_a_payment_is_attributed_to_its_producers_and_charged_nine_percent() {
        let (a, b) = (ProducerId::new(), ProducerId::new());
        let mut o = OrderMoney::default();
        o.apply(&placed(vec![line(0, a, "100.00"), line(1, b, "50.00")]));
        let moved = o.apply(&paid("150.00"));
        assert!(
            matches!(moved, OrderMovement::Payment(ref s) if s.producers.len() == 2 && s.market.is_zero())
        );
        let credits = sale_credits(
            &cagette(),
            NaiveDate::from_ymd_opt(2023, 9, 9).unwrap(),
            &[o],
        )
        .expect("credits");
        let ca = &credits[&a];
        assert_eq!(ca.gross_incl_vat, m("100.00"));
        // 3.00 + 6.00 excl. VAT, 10.80 incl. VAT.
        assert_eq!(ca.net, m("89.20"));
        assert_eq!(credits[&b].net, m("44.60"));
    }

    /// R-ORD-6: a delivery fee the market set is the market's. The payment covers the
    /// producers' lines, then the market's fee; crediting gives each producer their lines only
    /// (minus fees); a refund of a cut line is the producer's; a cancellation gives the
    /// market's fee back too; every entry balances and the money is conserved.
    #[test]
    fn r_ord_6_a_market_delivery_fee_is_held_for_the_market_not_a_producer() {
        let (a, b) = (ProducerId::new(), ProducerId::new());
        let market = MarketId::new();
        let mut placed_event = placed(vec![line(0, a, "20.00"), line(1, b, "10.00")]);
        if let OrderEvent::OrderPlaced {
            delivery,
            total,
            market: m_,
            ..
        } = &mut placed_event
        {
            *delivery = Delivery::Home {
                fee: m("6.00"),
                address_ref: uuid::Uuid::nil(),
                by: Deliverer::Market,
            };
            *total = m("36.00");
            *m_ = market;
        }
        let mut o = OrderMoney::default();
        let mut ledger = super::super::Ledger::default();
        let mut post = |o: &mut OrderMoney, seq: u64, e: &OrderEvent| {
            for entry in order_entries(o, "o1", seq, e) {
                assert!(entry.is_balanced(), "{entry:?}");
                ledger.post(entry).expect("post");
            }
        };
        post(&mut o, 1, &placed_event);
        let moved = o.clone().apply(&paid("36.00"));
        let OrderMovement::Payment(shares) = moved else {
            panic!("a payment: {moved:?}")
        };
        let mut expected = vec![(a, m("20.00")), (b, m("10.00"))];
        expected.sort();
        assert_eq!(shares.producers, expected);
        assert_eq!(shares.market, m("6.00"));
        post(&mut o, 2, &paid("36.00"));
        assert_eq!(o.market_kept(), m("6.00"));
        let credits = sale_credits(
            &cagette(),
            NaiveDate::from_ymd_opt(2023, 9, 9).unwrap(),
            std::slice::from_ref(&o),
        )
        .expect("credits");
        assert_eq!(credits[&a].gross_incl_vat, m("20.00"));
        assert_eq!(credits[&b].gross_incl_vat, m("10.00"));
        // A refund of 4.00 after a cut of b's line: b's, not the market's.
        let cut = OrderEvent::QuantityAdjusted {
            line: 1,
            old_quantity: 1,
            new_quantity: 1,
            old_amount: m("10.00"),
            new_amount: m("6.00"),
            amount_excl_vat: m("6.00"),
            vat_amount: Money::ZERO,
            delta: m("-4.00"),
            total: m("32.00"),
            refund_owed: m("4.00"),
            extra_due: Money::ZERO,
            by: Default::default(),
            at: Utc.with_ymd_and_hms(2023, 9, 1, 11, 0, 0).unwrap(),
        };
        post(&mut o, 3, &cut);
        let refund = |amount: &str| OrderEvent::RefundRecorded {
            payment: PaymentId::default(),
            amount: m(amount),
            provider_ref: "r".into(),
            at: Utc.with_ymd_and_hms(2023, 9, 1, 12, 0, 0).unwrap(),
            refunded: m(amount),
            refund_owed: Money::ZERO,
            refund: None,
        };
        let moved = o.clone().apply(&refund("4.00"));
        assert!(
            matches!(&moved, OrderMovement::Refund(s) if s.producers == vec![(b, m("4.00"))] && s.market.is_zero()),
            "{moved:?}"
        );
        post(&mut o, 4, &refund("4.00"));
        // Cancelled: the other 32.00 come back, 6.00 of them from the market.
        let cancelled = OrderEvent::OrderCancelled {
            by: Default::default(),
            at: Utc.with_ymd_and_hms(2023, 9, 1, 13, 0, 0).unwrap(),
            previous_total: m("32.00"),
            refund_owed: m("32.00"),
        };
        post(&mut o, 5, &cancelled);
        let moved = o.clone().apply(&refund("32.00"));
        assert!(
            matches!(&moved, OrderMovement::Refund(s) if s.market == m("6.00") && s.total() == m("32.00")),
            "{moved:?}"
        );
        post(&mut o, 6, &refund("32.00"));
        let day = NaiveDate::from_ymd_opt(2023, 9, 30).unwrap();
        assert_eq!(
            ledger.credit_balance(&Account::MarketPayable(market), day),
            Money::ZERO
        );
        let c = ledger.conservation(day);
        assert_eq!(
            (c.payments, c.refunds, c.held),
            (m("36.00"), m("36.00"), Money::ZERO)
        );
    }
}
