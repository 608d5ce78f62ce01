//! The sale aggregate.

use imbl::OrdMap;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::ids::{CatalogId, MarketId, OrderId, ProducerId, SaleId, UserId};
use crate::market::PaymentMode;

use super::commands::SaleCommand;
use super::error::SaleError;
use super::events::SaleEvent;

/// Where a sale is in its life: planned -> open -> closed -> distributed -> validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    /// Not planned yet (no `SalePlanned`).
    Unplanned,
    /// No order period open yet.
    Planned,
    /// At least one catalog's order period is open.
    Open,
    /// Every participating catalog's order period is closed.
    Closed,
    Distributed,
    Validated,
}

/// Where one catalog's order period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodState {
    NotOpen,
    Open,
    Closed,
}

/// A producer's participation with one catalog (R-SAL-2) and its order period (R-SAL-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participation {
    pub producer: ProducerId,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub period: PeriodState,
}

impl Participation {
    /// The period's state at `at`, from the clock and the period (R-ORD-3): open from
    /// `opens_at` until `closes_at` unless closed already, whether or not the scheduled opening
    /// and closing have run.
    pub fn period_at(&self, at: DateTime<Utc>) -> PeriodState {
        if self.period == PeriodState::Closed || at >= self.closes_at {
            PeriodState::Closed
        } else if at >= self.opens_at {
            PeriodState::Open
        } else {
            PeriodState::NotOpen
        }
    }

    /// Due to open at `at` and not opened yet: the first order opens it (in its commit).
    pub fn opening_due(&self, at: DateTime<Utc>) -> bool {
        self.period == PeriodState::NotOpen && self.period_at(at) == PeriodState::Open
    }
}

/// An order attached to the sale, with its number and the catalogs it has lines for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedOrder {
    pub customer: UserId,
    pub number: String,
    pub catalogs: BTreeSet<CatalogId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    id: Option<SaleId>,
    market: MarketId,
    number: u32,
    date: Option<NaiveDate>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    amap: bool,
    payment_mode: PaymentMode,
    participations: BTreeMap<CatalogId, Participation>,
    orders: OrdMap<OrderId, AttachedOrder>,
    /// Orders numbered so far; never decreases, so numbers are never reused.
    numbered: u32,
    distributed: bool,
    validated: bool,
}

impl Default for Sale {
    fn default() -> Self {
        Self {
            id: None,
            market: MarketId::default(),
            number: 0,
            date: None,
            starts_at: None,
            ends_at: None,
            amap: false,
            payment_mode: PaymentMode::Online,
            participations: BTreeMap::new(),
            orders: OrdMap::new(),
            numbered: 0,
            distributed: false,
            validated: false,
        }
    }
}

impl Sale {
    pub fn id(&self) -> Option<SaleId> {
        self.id
    }
    pub fn market(&self) -> MarketId {
        self.market
    }
    pub fn number(&self) -> u32 {
        self.number
    }
    pub fn date(&self) -> Option<NaiveDate> {
        self.date
    }
    pub fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.starts_at
    }
    pub fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.ends_at
    }
    pub fn amap(&self) -> bool {
        self.amap
    }
    pub fn payment_mode(&self) -> PaymentMode {
        self.payment_mode
    }
    pub fn participations(&self) -> &BTreeMap<CatalogId, Participation> {
        &self.participations
    }
    pub fn orders(&self) -> &OrdMap<OrderId, AttachedOrder> {
        &self.orders
    }
    /// The order a customer already has in this sale (R-ORD-1).
    pub fn order_of(&self, customer: UserId) -> Option<OrderId> {
        self.orders
            .iter()
            .find(|(_, o)| o.customer == customer)
            .map(|(id, _)| *id)
    }
    /// The number of an attached order (R-ORD-2).
    pub fn order_number(&self, order: OrderId) -> Option<&str> {
        self.orders.get(&order).map(|o| o.number.as_str())
    }
    /// How many attached orders have lines for the catalog.
    pub fn orders_for(&self, catalog: CatalogId) -> u32 {
        let n = self
            .orders
            .values()
            .filter(|o| o.catalogs.contains(&catalog))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn status(&self) -> SaleStatus {
        if self.id.is_none() {
            SaleStatus::Unplanned
        } else if self.validated {
            SaleStatus::Validated
        } else if self.distributed {
            SaleStatus::Distributed
        } else if self
            .participations
            .values()
            .any(|p| p.period == PeriodState::Open)
        {
            SaleStatus::Open
        } else if !self.participations.is_empty()
            && self
                .participations
                .values()
                .all(|p| p.period == PeriodState::Closed)
        {
            SaleStatus::Closed
        } else {
            SaleStatus::Planned
        }
    }

    /// Whether customers can order from the catalog at `at`: its period was opened, is not
    /// closed, and `at` lies in [opens_at, closes_at) (R-ORD-3).
    pub fn period_open(&self, catalog: CatalogId, at: DateTime<Utc>) -> bool {
        self.participations
            .get(&catalog)
            .is_some_and(|p| p.period == PeriodState::Open && p.opens_at <= at && at < p.closes_at)
    }

    fn require_planned(&self) -> Result<(), SaleError> {
        if self.id.is_none() {
            Err(SaleError::NotPlanned)
        } else {
            Ok(())
        }
    }

    fn require_before_distribution(&self) -> Result<(), SaleError> {
        self.require_planned()?;
        match self.status() {
            s @ (SaleStatus::Distributed | SaleStatus::Validated) => {
                Err(SaleError::WrongStatus { status: s })
            }
            _ => Ok(()),
        }
    }

    fn check_period(
        &self,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    ) -> Result<(), SaleError> {
        let starts_at = self.starts_at.ok_or(SaleError::NotPlanned)?;
        if opens_at >= closes_at || closes_at > starts_at {
            return Err(SaleError::InvalidOrderPeriod { starts_at });
        }
        Ok(())
    }

    fn own_participation(
        &self,
        catalog: CatalogId,
        producer: ProducerId,
    ) -> Result<&Participation, SaleError> {
        let p = self
            .participations
            .get(&catalog)
            .ok_or(SaleError::NotParticipating { catalog })?;
        if p.producer != producer {
            return Err(SaleError::NotYourCatalog {
                catalog,
                producer: p.producer,
            });
        }
        Ok(p)
    }

    /// Decides the events of a command, without changing anything.
    pub fn decide(&self, command: SaleCommand) -> Result<Vec<SaleEvent>, SaleError> {
        use SaleCommand as C;
        use SaleEvent as E;
        match command {
            C::PlanSale {
                sale,
                market,
                number,
                date,
                starts_at,
                ends_at,
                amap,
                payment_mode,
            } => {
                if self.id.is_some() {
                    return Err(SaleError::AlreadyPlanned);
                }
                if number == 0 {
                    return Err(SaleError::InvalidNumber);
                }
                if ends_at <= starts_at {
                    return Err(SaleError::InvalidTimes);
                }
                Ok(vec![E::SalePlanned {
                    sale,
                    market,
                    number,
                    date,
                    starts_at,
                    ends_at,
                    amap,
                    payment_mode,
                }])
            }
            C::Participate {
                access,
                catalog,
                catalog_linked,
                opens_at,
                closes_at,
            } => {
                self.require_before_distribution()?;
                if !catalog_linked {
                    return Err(SaleError::CatalogNotLinked { catalog });
                }
                if self.participations.contains_key(&catalog) {
                    return Err(SaleError::AlreadyParticipating { catalog });
                }
                self.check_period(opens_at, closes_at)?;
                Ok(vec![E::ProducerParticipated {
                    producer: access.producer,
                    catalog,
                    opens_at,
                    closes_at,
                    by: access.actor.user,
                }])
            }
            C::OverrideOrderPeriod {
                access,
                catalog,
                opens_at,
                closes_at,
            } => {
                self.require_before_distribution()?;
                let p = self.own_participation(catalog, access.producer)?;
                if p.period == PeriodState::Closed {
                    return Err(SaleError::PeriodAlreadyStarted {
                        catalog,
                        state: "closed",
                    });
                }
                self.check_period(opens_at, closes_at)?;
                Ok(vec![E::OrderPeriodOverridden {
                    catalog,
                    opens_at,
                    closes_at,
                    by: access.actor.user,
                }])
            }
            C::Withdraw { access, catalog } => {
                self.require_before_distribution()?;
                self.own_participation(catalog, access.producer)?;
                let orders = self.orders_for(catalog);
                if orders > 0 {
                    return Err(SaleError::HasOrders { catalog, orders });
                }
                Ok(vec![E::ParticipationWithdrawn {
                    producer: access.producer,
                    catalog,
                    by: access.actor.user,
                }])
            }
            C::OpenOrderPeriod { catalog, at } => {
                self.require_before_distribution()?;
                let p = self
                    .participations
                    .get(&catalog)
                    .ok_or(SaleError::NotParticipating { catalog })?;
                match p.period {
                    PeriodState::Open => Ok(vec![]),
                    PeriodState::Closed => Err(SaleError::PeriodAlreadyStarted {
                        catalog,
                        state: "closed",
                    }),
                    PeriodState::NotOpen if at < p.opens_at => Err(SaleError::OrderPeriodNotOpen {
                        catalog,
                        opens_at: p.opens_at,
                    }),
                    PeriodState::NotOpen => Ok(vec![E::OrderPeriodOpened { catalog, at }]),
                }
            }
            C::CloseOrderPeriod { catalog, at } => {
                self.require_before_distribution()?;
                let p = self
                    .participations
                    .get(&catalog)
                    .ok_or(SaleError::NotParticipating { catalog })?;
                if p.period == PeriodState::Closed {
                    return Ok(vec![]);
                }
                if at < p.closes_at {
                    return Err(SaleError::PeriodNotOver {
                        catalog,
                        closes_at: p.closes_at,
                    });
                }
                Ok(vec![
                    E::OrderPeriodClosed { catalog, at },
                    E::RecapReady {
                        catalog,
                        producer: p.producer,
                        orders: self.orders_for(catalog),
                    },
                ])
            }
            C::AttachOrder {
                order,
                customer,
                catalogs,
                at,
            } => {
                self.require_planned()?;
                if catalogs.is_empty() {
                    return Err(SaleError::NoCatalog);
                }
                let existing = self.orders.get(&order);
                match existing {
                    Some(o) if o.customer != customer => {
                        return Err(SaleError::OrderOfAnotherCustomer { order })
                    }
                    None => {
                        if let Some(existing) = self.order_of(customer) {
                            return Err(SaleError::CustomerAlreadyOrdered { existing });
                        }
                    }
                    Some(_) => {}
                }
                let mut new = Vec::new();
                for catalog in catalogs {
                    if existing.is_some_and(|o| o.catalogs.contains(&catalog))
                        || new.contains(&catalog)
                    {
                        continue;
                    }
                    let p = self
                        .participations
                        .get(&catalog)
                        .ok_or(SaleError::NotParticipating { catalog })?;
                    if !self.period_open(catalog, at) {
                        return Err(if p.period == PeriodState::Closed || at >= p.closes_at {
                            SaleError::OrderPeriodClosed {
                                catalog,
                                closes_at: p.closes_at,
                            }
                        } else {
                            SaleError::OrderPeriodNotOpen {
                                catalog,
                                opens_at: p.opens_at,
                            }
                        });
                    }
                    new.push(catalog);
                }
                if new.is_empty() {
                    return Ok(vec![]);
                }
                let number = match existing {
                    Some(o) => o.number.clone(),
                    None => format!("{}-{:03}", self.number, self.numbered.saturating_add(1)),
                };
                Ok(vec![E::OrderAttached {
                    order,
                    customer,
                    number,
                    catalogs: new,
                    at,
                }])
            }
            C::DetachCatalogs { order, catalogs } => {
                self.require_planned()?;
                let Some(attached) = self.orders.get(&order) else {
                    return Ok(vec![]);
                };
                let mut gone: Vec<CatalogId> = Vec::new();
                for c in catalogs {
                    if attached.catalogs.contains(&c) && !gone.contains(&c) {
                        gone.push(c);
                    }
                }
                if gone.is_empty() {
                    return Ok(vec![]);
                }
                let order_detached = attached.catalogs.len() == gone.len();
                Ok(vec![E::CatalogsDetached {
                    order,
                    catalogs: gone,
                    order_detached,
                }])
            }
            C::EndDistribution { at } => {
                self.require_before_distribution()?;
                let ends_at = self.ends_at.ok_or(SaleError::NotPlanned)?;
                if at < ends_at {
                    return Err(SaleError::DistributionNotOver { ends_at });
                }
                if let Some((catalog, _)) = self
                    .participations
                    .iter()
                    .find(|(_, p)| p.period != PeriodState::Closed)
                {
                    return Err(SaleError::PeriodsStillOpen { catalog: *catalog });
                }
                Ok(vec![E::DistributionEnded { at }])
            }
            C::Validate { access, at } => {
                self.require_planned()?;
                if access.market != self.market {
                    return Err(SaleError::WrongMarket);
                }
                if !(access.referent || access.administrator) {
                    return Err(SaleError::NotAReferent);
                }
                match self.status() {
                    SaleStatus::Distributed => Ok(vec![E::SaleValidated {
                        by: access.actor.user,
                        at,
                    }]),
                    status => Err(SaleError::WrongStatus { status }),
                }
            }
        }
    }
}

impl Aggregate for Sale {
    const TYPE: &'static str = "sale";
    type Command = SaleCommand;
    type Event = SaleEvent;
    type Error = SaleError;
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
        use SaleEvent as E;
        match event {
            E::SalePlanned {
                sale,
                market,
                number,
                date,
                starts_at,
                ends_at,
                amap,
                payment_mode,
            } => {
                self.id = Some(sale);
                self.market = market;
                self.number = number;
                self.date = Some(date);
                self.starts_at = Some(starts_at);
                self.ends_at = Some(ends_at);
                self.amap = amap;
                self.payment_mode = payment_mode;
            }
            E::ProducerParticipated {
                producer,
                catalog,
                opens_at,
                closes_at,
                ..
            } => {
                self.participations.insert(
                    catalog,
                    Participation {
                        producer,
                        opens_at,
                        closes_at,
                        period: PeriodState::NotOpen,
                    },
                );
            }
            E::OrderPeriodOverridden {
                catalog,
                opens_at,
                closes_at,
                ..
            } => {
                if let Some(p) = self.participations.get_mut(&catalog) {
                    p.opens_at = opens_at;
                    p.closes_at = closes_at;
                }
            }
            E::ParticipationWithdrawn { catalog, .. } => {
                self.participations.remove(&catalog);
            }
            E::OrderPeriodOpened { catalog, .. } => {
                if let Some(p) = self.participations.get_mut(&catalog) {
                    p.period = PeriodState::Open;
                }
            }
            E::OrderPeriodClosed { catalog, .. } => {
                if let Some(p) = self.participations.get_mut(&catalog) {
                    p.period = PeriodState::Closed;
                }
            }
            E::RecapReady { .. } => {}
            E::OrderAttached {
                order,
                customer,
                number,
                catalogs,
                ..
            } => {
                let numbered = &mut self.numbered;
                let entry = self.orders.entry(order).or_insert_with(|| {
                    *numbered = numbered.saturating_add(1);
                    AttachedOrder {
                        customer,
                        number,
                        catalogs: BTreeSet::new(),
                    }
                });
                entry.catalogs.extend(catalogs);
            }
            E::CatalogsDetached {
                order, catalogs, ..
            } => {
                if let Some(o) = self.orders.get_mut(&order) {
                    for c in &catalogs {
                        o.catalogs.remove(c);
                    }
                    if o.catalogs.is_empty() {
                        self.orders.remove(&order);
                    }
                }
            }
            E::DistributionEnded { .. } => self.distributed = true,
            E::SaleValidated { .. } => self.validated = true,
        }
    }
}
