//! The annual sales aggregate.

use imbl::OrdMap;

use chrono::{DateTime, Datelike, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::calendar::paris_date;
use crate::ids::{OrderId, ProducerId};
use crate::money::Money;

use super::{AnnualSalesCommand, AnnualSalesError, AnnualSalesEvent};

/// The aggregate id of a producer's sales of a calendar year: `"{producer}:{year}"`.
///
/// The year is the calendar year of the sale's distribution date in Europe/Paris (R-ACC-4), not
/// of the order date: the caller computes it with [`sales_year`] and picks the stream.
pub fn annual_sales_id(producer: ProducerId, year: i32) -> String {
    format!("{producer}:{year}")
}

/// The calendar year (Europe/Paris) of a distribution instant: a distribution at 23:30 UTC on
/// 31 December is on 1 January in Paris and counts for the next year.
pub fn sales_year(distribution: DateTime<Utc>) -> i32 {
    paris_date(distribution).year()
}

/// One order's amount for this producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub amount: Money,
    pub amap: bool,
    pub confirmed: bool,
}

/// A producer's sales of one calendar year, id = [`annual_sales_id`].
///
/// Committed non-AMAP amount = confirmed orders + pending reservations, outside AMAP markets.
/// A reservation that would push it above the cap is refused (R-ACC-4). Released orders leave
/// the state; the stream is bounded by the year.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnualSales {
    reservations: OrdMap<OrderId, Reservation>,
}

impl AnnualSales {
    /// The orders holding an amount.
    pub fn orders(&self) -> impl Iterator<Item = OrderId> + '_ {
        self.reservations.keys().copied()
    }

    pub fn reservation(&self, order: OrderId) -> Option<&Reservation> {
        self.reservations.get(&order)
    }

    fn sum(&self, keep: impl Fn(&Reservation) -> bool) -> Money {
        self.reservations
            .values()
            .filter(|r| keep(r))
            .map(|r| r.amount)
            .sum()
    }

    /// Confirmed plus pending, outside AMAP markets: what counts against the cap.
    pub fn committed_non_amap(&self) -> Money {
        self.sum(|r| !r.amap)
    }

    pub fn confirmed_non_amap(&self) -> Money {
        self.sum(|r| !r.amap && r.confirmed)
    }

    pub fn pending_non_amap(&self) -> Money {
        self.sum(|r| !r.amap && !r.confirmed)
    }

    /// Sales in AMAP markets (confirmed and pending): recorded, never capped.
    pub fn amap_total(&self) -> Money {
        self.sum(|r| r.amap)
    }

    /// Room left under `cap` (never negative); `None` when there is no cap.
    pub fn left(&self, cap: Option<Money>) -> Option<Money> {
        cap.map(|c| (c - self.committed_non_amap()).max(Money::ZERO))
    }

    fn known(&self, order: OrderId) -> Result<&Reservation, AnnualSalesError> {
        self.reservations
            .get(&order)
            .ok_or(AnnualSalesError::UnknownOrder { order })
    }

    pub fn decide(
        &self,
        command: AnnualSalesCommand,
    ) -> Result<Vec<AnnualSalesEvent>, AnnualSalesError> {
        use AnnualSalesCommand as C;
        use AnnualSalesEvent as E;
        match command {
            C::Reserve {
                order,
                amount,
                amap,
                cap,
                at,
            } => {
                if amount <= Money::ZERO {
                    return Err(AnnualSalesError::NonPositiveAmount);
                }
                if self.reservations.contains_key(&order) {
                    return Err(AnnualSalesError::AlreadyReserved { order });
                }
                let left_after = match (amap, cap) {
                    (false, Some(cap)) => {
                        let left = (cap - self.committed_non_amap()).max(Money::ZERO);
                        if amount > left {
                            return Err(AnnualSalesError::CapExceeded { cap, left });
                        }
                        Some(left - amount)
                    }
                    _ => self.left(cap),
                };
                Ok(vec![E::Reserved {
                    order,
                    amount,
                    amap,
                    cap,
                    left_after,
                    at,
                }])
            }
            C::Confirm { order } => {
                if self.known(order)?.confirmed {
                    return Err(AnnualSalesError::AlreadyConfirmed { order });
                }
                Ok(vec![E::Confirmed { order }])
            }
            C::Release { order } => {
                let amount = self.known(order)?.amount;
                Ok(vec![E::Released { order, amount }])
            }
            C::Reduce { order, new_amount } => {
                let current = self.known(order)?.amount;
                if new_amount >= current || new_amount.is_negative() {
                    return Err(AnnualSalesError::NotAReduction { order, current });
                }
                Ok(vec![E::Reduced {
                    order,
                    from: current,
                    to: new_amount,
                }])
            }
            C::Raise {
                order,
                new_amount,
                cap,
            } => {
                let r = *self.known(order)?;
                if new_amount <= r.amount {
                    return Err(AnnualSalesError::NotARaise {
                        order,
                        current: r.amount,
                    });
                }
                if let (false, Some(cap)) = (r.amap, cap) {
                    let left = (cap - self.committed_non_amap()).max(Money::ZERO);
                    if new_amount - r.amount > left {
                        return Err(AnnualSalesError::CapExceeded { cap, left });
                    }
                }
                Ok(vec![E::Raised {
                    order,
                    from: r.amount,
                    to: new_amount,
                }])
            }
        }
    }
}

impl Aggregate for AnnualSales {
    const TYPE: &'static str = "annual_sales";
    type Command = AnnualSalesCommand;
    type Event = AnnualSalesEvent;
    type Error = AnnualSalesError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        // Decide everything first: a refused command writes nothing.
        let events = self.decide(command)?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use AnnualSalesEvent as E;
        match event {
            E::Reserved {
                order,
                amount,
                amap,
                ..
            } => {
                self.reservations.insert(
                    order,
                    Reservation {
                        amount,
                        amap,
                        confirmed: false,
                    },
                );
            }
            E::Confirmed { order } => {
                if let Some(r) = self.reservations.get_mut(&order) {
                    r.confirmed = true;
                }
            }
            E::Released { order, .. } => {
                self.reservations.remove(&order);
            }
            E::Reduced { order, to, .. } | E::Raised { order, to, .. } => {
                if let Some(r) = self.reservations.get_mut(&order) {
                    r.amount = to;
                }
            }
        }
    }
}
