//! The stock aggregate: one per product.

use imbl::OrdMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, ProducerId, ProductId, SaleId};

use super::commands::StockCommand;
use super::error::StockError;
use super::events::StockEvent;

/// Units held for one order of one sale, not yet delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub sale: SaleId,
    pub quantity: i64,
    pub confirmed: bool,
    pub expires_at: DateTime<Utc>,
}

/// A product's stock (R-STK-1: shared by every catalog and market selling the product).
///
/// Only live reservations are kept: released, expired and delivered ones leave the state, so it
/// stays bounded by the orders of the sales not yet distributed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stock {
    product: Option<ProductId>,
    producer: Option<ProducerId>,
    /// `None`: unlimited.
    real: Option<i64>,
    reservations: OrdMap<OrderId, Reservation>,
}

impl Stock {
    pub fn product(&self) -> Option<ProductId> {
        self.product
    }

    /// The real stock; `None` when unlimited.
    pub fn real(&self) -> Option<i64> {
        self.real
    }

    /// Units ordered and not yet delivered: every live reservation, pending or confirmed (R-STK-2).
    pub fn ordered(&self) -> i64 {
        self.reservations
            .values()
            .fold(0i64, |sum, r| sum.saturating_add(r.quantity))
    }

    /// available = real - ordered (R-STK-2); `None` when unlimited.
    pub fn available(&self) -> Option<i64> {
        self.real.map(|real| real.saturating_sub(self.ordered()))
    }

    pub fn reservation(&self, reservation: OrderId) -> Option<&Reservation> {
        self.reservations.get(&reservation)
    }

    pub fn reservations(&self) -> &OrdMap<OrderId, Reservation> {
        &self.reservations
    }

    fn check_product(&self, product: ProductId) -> Result<(), StockError> {
        match self.product {
            Some(expected) if expected != product => Err(StockError::WrongProduct {
                expected,
                got: product,
            }),
            _ => Ok(()),
        }
    }

    /// Decides the events of a command, without changing anything.
    pub fn decide(&self, command: StockCommand) -> Result<Vec<StockEvent>, StockError> {
        use StockCommand as C;
        use StockEvent as E;
        match command {
            C::SetStock {
                product,
                access,
                real,
            } => {
                self.check_product(product)?;
                if let Some(owner) = self.producer {
                    if owner != access.producer {
                        return Err(StockError::NotYourProduct { owner });
                    }
                }
                let ordered = self.ordered();
                if let Some(real) = real {
                    if real < 0 {
                        return Err(StockError::NegativeStock { real });
                    }
                    if real < ordered {
                        return Err(StockError::BelowOrdered { real, ordered });
                    }
                }
                if self.producer.is_some() && self.real == real {
                    return Ok(vec![]);
                }
                Ok(vec![E::StockSet {
                    product,
                    producer: access.producer,
                    real,
                    ordered,
                }])
            }
            C::Reserve {
                product,
                reservation,
                sale,
                quantity,
                expires_at,
            } => {
                self.check_product(product)?;
                if quantity <= 0 {
                    return Err(StockError::QuantityNotPositive { quantity });
                }
                if let Some(existing) = self.reservations.get(&reservation) {
                    // A retried reservation with the same terms changes nothing.
                    if existing.sale == sale && existing.quantity == quantity {
                        return Ok(vec![]);
                    }
                    return Err(StockError::ReservationConflict { reservation });
                }
                let available = match self.available() {
                    Some(available) if quantity > available => {
                        return Err(StockError::StockExhausted {
                            product,
                            available: available.max(0),
                        })
                    }
                    Some(available) => Some(available - quantity),
                    None => None,
                };
                Ok(vec![E::StockReserved {
                    product,
                    reservation,
                    sale,
                    quantity,
                    expires_at,
                    available,
                }])
            }
            C::Confirm { reservation } => {
                let r = self
                    .reservations
                    .get(&reservation)
                    .ok_or(StockError::UnknownReservation { reservation })?;
                if r.confirmed {
                    return Ok(vec![]);
                }
                Ok(vec![E::ReservationConfirmed { reservation }])
            }
            C::Release { reservation } => Ok(self
                .reservations
                .get(&reservation)
                .map(|r| E::ReservationReleased {
                    reservation,
                    quantity: r.quantity,
                })
                .into_iter()
                .collect()),
            C::ExpireReservations { at } => Ok(self
                .reservations
                .iter()
                .filter(|(_, r)| !r.confirmed && r.expires_at <= at)
                .map(|(id, r)| E::ReservationExpired {
                    reservation: *id,
                    quantity: r.quantity,
                })
                .collect()),
            C::AdjustReservation {
                reservation,
                quantity,
            } => {
                let r = self
                    .reservations
                    .get(&reservation)
                    .ok_or(StockError::UnknownReservation { reservation })?;
                if quantity < 0 {
                    return Err(StockError::QuantityNotPositive { quantity });
                }
                if quantity > r.quantity {
                    return Err(StockError::CannotRaise {
                        reservation,
                        current: r.quantity,
                        requested: quantity,
                    });
                }
                if quantity == r.quantity {
                    return Ok(vec![]);
                }
                if quantity == 0 {
                    return Ok(vec![E::ReservationReleased {
                        reservation,
                        quantity: r.quantity,
                    }]);
                }
                Ok(vec![E::ReservationAdjusted {
                    reservation,
                    old_quantity: r.quantity,
                    new_quantity: quantity,
                }])
            }
            C::Deliver { sale, at } => {
                let delivered: Vec<(OrderId, i64)> = self
                    .reservations
                    .iter()
                    .filter(|(_, r)| r.sale == sale && r.confirmed)
                    .map(|(id, r)| (*id, r.quantity))
                    .collect();
                if delivered.is_empty() {
                    return Ok(vec![]);
                }
                let quantity = delivered
                    .iter()
                    .fold(0i64, |s, (_, q)| s.saturating_add(*q));
                Ok(vec![E::StockDelivered {
                    sale,
                    reservations: delivered.into_iter().map(|(id, _)| id).collect(),
                    quantity,
                    real: self.real.map(|real| real.saturating_sub(quantity)),
                    at,
                }])
            }
        }
    }
}

impl Aggregate for Stock {
    const TYPE: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;
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
        use StockEvent as E;
        match event {
            E::StockSet {
                product,
                producer,
                real,
                ..
            } => {
                self.product = Some(product);
                self.producer = Some(producer);
                self.real = real;
            }
            E::StockReserved {
                product,
                reservation,
                sale,
                quantity,
                expires_at,
                ..
            } => {
                self.product = Some(product);
                self.reservations.insert(
                    reservation,
                    Reservation {
                        sale,
                        quantity,
                        confirmed: false,
                        expires_at,
                    },
                );
            }
            E::ReservationConfirmed { reservation } => {
                if let Some(r) = self.reservations.get_mut(&reservation) {
                    r.confirmed = true;
                }
            }
            E::ReservationReleased { reservation, .. }
            | E::ReservationExpired { reservation, .. } => {
                self.reservations.remove(&reservation);
            }
            E::ReservationAdjusted {
                reservation,
                new_quantity,
                ..
            } => {
                if let Some(r) = self.reservations.get_mut(&reservation) {
                    r.quantity = new_quantity;
                }
            }
            E::StockDelivered {
                reservations, real, ..
            } => {
                for id in reservations {
                    self.reservations.remove(&id);
                }
                self.real = real;
            }
        }
    }
}
