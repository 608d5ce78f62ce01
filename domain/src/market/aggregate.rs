//! The market aggregate.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, MarketAccess};
use crate::calendar::paris_instant;
use crate::ids::{CatalogId, MarketId, ProducerId, UserId};
use crate::money::Money;
use rust_decimal::Decimal;

use super::commands::{Location, MarketCommand, PaymentMode, Slot, Visibility};
use super::error::MarketError;
use super::events::MarketEvent;

/// Longest name or place accepted, in characters.
const MAX_TEXT: usize = 200;

/// One occurrence of a slot: a business date and its UTC start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotOccurrence {
    pub date: NaiveDate,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Market {
    id: Option<MarketId>,
    name: String,
    place: String,
    slots: Vec<Slot>,
    administrators: BTreeSet<UserId>,
    referents: BTreeSet<UserId>,
    payment_mode: Option<PaymentMode>,
    visibility: Option<Visibility>,
    amap: bool,
    /// Linked catalogs and their producer (R-CAT-4).
    linked: BTreeMap<CatalogId, ProducerId>,
    /// Number of sales registered so far; the next sale gets `sales + 1`.
    sales: u32,
    /// R-FEE-5: the fee schedule chosen from each date (none: the service's default).
    #[serde(default)]
    fee_schedules: BTreeMap<NaiveDate, String>,
    /// R-SAL-2: catalogs taking part in every sale generated from now on.
    #[serde(default)]
    recurring: BTreeMap<CatalogId, Recurring>,
    /// R-SAL-7: the members of a members-only market, and the requests waiting for an answer.
    #[serde(default)]
    members: BTreeSet<UserId>,
    #[serde(default)]
    pending: BTreeSet<UserId>,
    /// R-SAL-8: where it is, once an administrator said.
    #[serde(default)]
    location: Option<Location>,
    /// R-ORD-7
    #[serde(default)]
    minimum_order: Option<Money>,
    /// R-ORD-6: home delivery run by the market.
    #[serde(default)]
    delivery: Option<crate::catalog::DeliveryOffer>,
}

/// A catalog's standing participation in a market's sales (R-SAL-2), with its default order
/// period (R-SAL-3), in hours before each sale's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurring {
    pub producer: ProducerId,
    pub opens_hours_before: i64,
    pub closes_hours_before: i64,
}

fn check_slot(slot: &Slot) -> Result<(), MarketError> {
    if slot.every_weeks != 1 && slot.every_weeks != 2 {
        return Err(MarketError::InvalidSlot {
            reason: "a slot repeats every week or every other week",
        });
    }
    if slot.end <= slot.start {
        return Err(MarketError::InvalidSlot {
            reason: "a slot must end after it starts",
        });
    }
    if slot.anchor.weekday() != slot.weekday {
        return Err(MarketError::InvalidSlot {
            reason: "the slot's first date must fall on its weekday",
        });
    }
    Ok(())
}

impl Market {
    pub fn id(&self) -> Option<MarketId> {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn place(&self) -> &str {
        &self.place
    }
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }
    pub fn administrators(&self) -> &BTreeSet<UserId> {
        &self.administrators
    }
    pub fn referents(&self) -> &BTreeSet<UserId> {
        &self.referents
    }
    pub fn payment_mode(&self) -> Option<PaymentMode> {
        self.payment_mode
    }
    pub fn visibility(&self) -> Option<Visibility> {
        self.visibility
    }
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }
    /// R-ORD-7: the least an order may amount to (lines incl. VAT).
    pub fn minimum_order(&self) -> Option<Money> {
        self.minimum_order
    }
    /// R-ORD-6: the home delivery the market runs, if any.
    pub fn delivery(&self) -> Option<crate::catalog::DeliveryOffer> {
        self.delivery
    }
    pub fn amap(&self) -> bool {
        self.amap
    }
    pub fn sale_count(&self) -> u32 {
        self.sales
    }
    pub fn is_administrator(&self, user: UserId) -> bool {
        self.administrators.contains(&user)
    }
    /// R-SAL-7: whether `user` may see the market's offers and order: anyone on a public
    /// market; on a members-only one, its members and administrators.
    pub fn admits(&self, user: UserId) -> bool {
        self.visibility != Some(Visibility::MembersOnly)
            || self.members.contains(&user)
            || self.administrators.contains(&user)
    }
    pub fn members(&self) -> &BTreeSet<UserId> {
        &self.members
    }
    /// Membership requests waiting for an administrator's answer.
    pub fn pending_members(&self) -> &BTreeSet<UserId> {
        &self.pending
    }
    /// R-CAT-4: whether the catalog is linked to this market.
    pub fn is_linked(&self, catalog: CatalogId) -> bool {
        self.linked.contains_key(&catalog)
    }
    /// R-SAL-2: the catalogs taking part in every sale generated from now on.
    pub fn recurring(&self) -> &BTreeMap<CatalogId, Recurring> {
        &self.recurring
    }
    /// The producer of a linked catalog.
    pub fn linked_producer(&self, catalog: CatalogId) -> Option<ProducerId> {
        self.linked.get(&catalog).copied()
    }
    pub fn linked_catalogs(&self) -> &BTreeMap<CatalogId, ProducerId> {
        &self.linked
    }

    /// R-FEE-5: the fee schedules chosen, by the date they apply from.
    pub fn fee_schedules(&self) -> &BTreeMap<NaiveDate, String> {
        &self.fee_schedules
    }

    /// R-FEE-5: the fee schedule chosen for a sale on `date` (the latest choice from `date` or
    /// before); `None`: the service's default.
    pub fn fee_schedule_on(&self, date: NaiveDate) -> Option<&str> {
        self.fee_schedules
            .range(..=date)
            .next_back()
            .map(|(_, s)| s.as_str())
    }

    /// What `actor` may do on this market (put into commands on sales).
    pub fn access(&self, actor: Actor) -> MarketAccess {
        MarketAccess {
            market: self.id.unwrap_or_default(),
            actor,
            administrator: self.id.is_some() && self.administrators.contains(&actor.user),
            referent: self.id.is_some() && self.referents.contains(&actor.user),
        }
    }

    /// Every occurrence of every slot between `from` and `to` (both included), in Europe/Paris
    /// wall-clock time converted to UTC (DST handled by [`paris_instant`]), sorted by start.
    pub fn sale_dates(&self, from: NaiveDate, to: NaiveDate) -> Vec<SlotOccurrence> {
        let mut out = Vec::new();
        if to < from {
            return out;
        }
        for slot in &self.slots {
            // First date on or after `from` with the slot's weekday.
            let shift = (i64::from(slot.weekday.num_days_from_monday())
                - i64::from(from.weekday().num_days_from_monday()))
            .rem_euclid(7);
            let mut date = from + Duration::days(shift);
            while date <= to {
                if slot.falls_on(date) {
                    out.push(SlotOccurrence {
                        date,
                        starts_at: paris_instant(date, slot.start),
                        ends_at: paris_instant(date, slot.end),
                    });
                }
                date += Duration::days(7);
            }
        }
        out.sort_by_key(|o| (o.starts_at, o.ends_at));
        out.dedup();
        out
    }

    fn require_created(&self) -> Result<MarketId, MarketError> {
        self.id.ok_or(MarketError::NotCreated)
    }

    fn require_admin(&self, actor: &Actor) -> Result<(), MarketError> {
        self.require_created()?;
        if self.administrators.contains(&actor.user) {
            Ok(())
        } else {
            Err(MarketError::NotAnAdministrator)
        }
    }

    /// An access is trusted only for what this market's own state confirms.
    fn require_admin_access(&self, access: &MarketAccess) -> Result<(), MarketError> {
        let id = self.require_created()?;
        if access.market != id {
            return Err(MarketError::WrongMarket);
        }
        self.require_admin(&access.actor)
    }

    /// Decides the events of a command, without changing anything.
    pub fn decide(&self, command: MarketCommand) -> Result<Vec<MarketEvent>, MarketError> {
        use MarketCommand as C;
        use MarketEvent as E;
        match command {
            C::CreateMarket {
                market,
                name,
                place,
                slots,
                administrators,
                payment_mode,
                visibility,
                amap,
                actor,
            } => {
                if self.id.is_some() {
                    return Err(MarketError::AlreadyCreated);
                }
                let name = name.trim().to_string();
                if name.is_empty() || name.chars().count() > MAX_TEXT {
                    return Err(MarketError::NameMissing);
                }
                let place = place.trim().to_string();
                if place.is_empty() || place.chars().count() > MAX_TEXT {
                    return Err(MarketError::InvalidPlace);
                }
                if slots.is_empty() {
                    return Err(MarketError::NoSlot);
                }
                let mut unique = Vec::new();
                for slot in slots {
                    check_slot(&slot)?;
                    if unique.contains(&slot) {
                        return Err(MarketError::DuplicateSlot);
                    }
                    unique.push(slot);
                }
                let mut admins = Vec::new();
                for a in administrators {
                    if !admins.contains(&a) {
                        admins.push(a);
                    }
                }
                if admins.is_empty() {
                    return Err(MarketError::NoAdministrator);
                }
                Ok(vec![E::MarketCreated {
                    market,
                    name,
                    place,
                    slots: unique,
                    administrators: admins,
                    payment_mode,
                    visibility,
                    amap,
                    created_by: actor.user,
                }])
            }
            C::AddSlot { slot, actor } => {
                self.require_admin(&actor)?;
                check_slot(&slot)?;
                if self.slots.contains(&slot) {
                    return Err(MarketError::DuplicateSlot);
                }
                Ok(vec![E::SlotAdded { slot }])
            }
            C::RemoveSlot { slot, actor } => {
                self.require_admin(&actor)?;
                if !self.slots.contains(&slot) {
                    return Err(MarketError::UnknownSlot { slot });
                }
                if self.slots.len() == 1 {
                    return Err(MarketError::LastSlot);
                }
                Ok(vec![E::SlotRemoved { slot }])
            }
            C::AddAdministrator { user, actor } => {
                self.require_admin(&actor)?;
                if self.administrators.contains(&user) {
                    return Ok(vec![]);
                }
                Ok(vec![E::AdministratorAdded { user }])
            }
            C::RemoveAdministrator { user, actor } => {
                self.require_admin(&actor)?;
                if !self.administrators.contains(&user) {
                    return Err(MarketError::UnknownAdministrator { user });
                }
                if self.administrators.len() == 1 {
                    return Err(MarketError::LastAdministrator);
                }
                Ok(vec![E::AdministratorRemoved { user }])
            }
            C::SetReferent { user, actor } => {
                self.require_admin(&actor)?;
                if self.referents.contains(&user) {
                    return Ok(vec![]);
                }
                Ok(vec![E::ReferentSet { user }])
            }
            C::RemoveReferent { user, actor } => {
                self.require_admin(&actor)?;
                if !self.referents.contains(&user) {
                    return Err(MarketError::UnknownReferent { user });
                }
                Ok(vec![E::ReferentRemoved { user }])
            }
            C::SetPaymentMode {
                payment_mode,
                actor,
            } => {
                self.require_admin(&actor)?;
                if self.payment_mode == Some(payment_mode) {
                    return Ok(vec![]);
                }
                Ok(vec![E::PaymentModeSet { payment_mode }])
            }
            C::AssignFeeSchedule {
                schedule,
                from,
                today,
                actor,
            } => {
                self.require_created()?;
                if actor.role != crate::Role::PlatformAdmin {
                    return Err(MarketError::NotPlatformAdministrator);
                }
                let schedule = schedule.trim().to_string();
                if schedule.is_empty()
                    || schedule.chars().count() > 64
                    || !schedule
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(MarketError::InvalidFeeSchedule);
                }
                if from < today {
                    return Err(MarketError::FeeScheduleDatePast { from });
                }
                if self.fee_schedules.get(&from) == Some(&schedule) {
                    return Ok(vec![]);
                }
                Ok(vec![E::FeeScheduleAssigned {
                    schedule,
                    from,
                    assigned_by: actor.user,
                }])
            }
            C::LinkCatalog {
                catalog,
                producer,
                access,
            } => {
                self.require_admin_access(&access)?;
                if self.linked.contains_key(&catalog) {
                    return Err(MarketError::AlreadyLinked { catalog });
                }
                Ok(vec![E::CatalogLinked {
                    catalog,
                    producer,
                    linked_by: access.actor.user,
                }])
            }
            C::UnlinkCatalog { catalog, access } => {
                self.require_admin_access(&access)?;
                let producer = self
                    .linked
                    .get(&catalog)
                    .copied()
                    .ok_or(MarketError::NotLinked { catalog })?;
                Ok(vec![E::CatalogUnlinked { catalog, producer }])
            }
            C::StartRecurringParticipation {
                catalog,
                opens_hours_before,
                closes_hours_before,
                access,
            } => {
                self.require_created()?;
                match self.linked.get(&catalog) {
                    None => return Err(MarketError::NotLinked { catalog }),
                    Some(p) if *p != access.producer => {
                        return Err(MarketError::NotYourCatalog { catalog })
                    }
                    Some(_) => {}
                }
                if opens_hours_before <= closes_hours_before
                    || closes_hours_before < 0
                    || opens_hours_before > 366 * 24
                {
                    return Err(MarketError::InvalidRecurringPeriod);
                }
                Ok(vec![E::RecurringParticipationStarted {
                    catalog,
                    producer: access.producer,
                    opens_hours_before,
                    closes_hours_before,
                    by: access.actor.user,
                }])
            }
            C::RequestMembership { actor } => {
                self.require_created()?;
                if actor.role != crate::actor::Role::Customer {
                    return Err(MarketError::CustomersOnly);
                }
                if self.members.contains(&actor.user) {
                    return Err(MarketError::AlreadyMember { user: actor.user });
                }
                if self.pending.contains(&actor.user) {
                    return Err(MarketError::AlreadyRequested { user: actor.user });
                }
                Ok(vec![E::MembershipRequested { user: actor.user }])
            }
            C::ApproveMember { user, actor } => {
                self.require_admin(&actor)?;
                if self.members.contains(&user) {
                    return Err(MarketError::AlreadyMember { user });
                }
                Ok(vec![E::MemberApproved {
                    user,
                    by: actor.user,
                }])
            }
            C::RefuseMember { user, actor } => {
                self.require_admin(&actor)?;
                if !self.pending.contains(&user) {
                    return Err(MarketError::NoRequest { user });
                }
                Ok(vec![E::MembershipRefused {
                    user,
                    by: actor.user,
                }])
            }
            C::RemoveMember { user, actor } => {
                self.require_admin(&actor)?;
                if !self.members.contains(&user) {
                    return Err(MarketError::NotAMember { user });
                }
                Ok(vec![E::MemberRemoved {
                    user,
                    by: actor.user,
                }])
            }
            C::SetVisibility { visibility, actor } => {
                self.require_admin(&actor)?;
                if self.visibility == Some(visibility) {
                    return Ok(vec![]);
                }
                Ok(vec![E::VisibilitySet {
                    visibility,
                    by: actor.user,
                }])
            }
            C::SetLocation { location, actor } => {
                self.require_admin(&actor)?;
                let commune = location.commune.trim().to_string();
                let (lat, lon) = (Decimal::from(90), Decimal::from(180));
                let valid = (-lat..=lat).contains(&location.lat)
                    && (-lon..=lon).contains(&location.lon)
                    && !commune.is_empty()
                    && commune.chars().count() <= 100;
                if !valid {
                    return Err(MarketError::InvalidLocation);
                }
                let location = Location {
                    commune,
                    ..location
                };
                if self.location.as_ref() == Some(&location) {
                    return Ok(vec![]);
                }
                Ok(vec![E::LocationSet {
                    location,
                    by: actor.user,
                }])
            }
            C::SetMinimumOrder { amount, actor } => {
                self.require_admin(&actor)?;
                if amount.is_some_and(|a| a <= Money::ZERO) {
                    return Err(MarketError::InvalidMinimumOrder);
                }
                if self.minimum_order == amount {
                    return Ok(vec![]);
                }
                Ok(vec![E::MinimumOrderSet {
                    amount,
                    by: actor.user,
                }])
            }
            C::SetDelivery { offer, actor } => {
                self.require_admin(&actor)?;
                let positive = |m: Option<Money>| m.is_none_or(|m| m > Money::ZERO);
                if offer.is_some_and(|d| {
                    d.fee.is_negative() || !positive(d.free_above) || !positive(d.minimum)
                }) {
                    return Err(MarketError::InvalidDeliveryOffer);
                }
                if self.delivery == offer {
                    return Ok(vec![]);
                }
                Ok(vec![E::DeliverySet {
                    offer,
                    by: actor.user,
                }])
            }
            C::SetAmap { amap, actor } => {
                self.require_admin(&actor)?;
                if self.amap == amap {
                    return Ok(vec![]);
                }
                Ok(vec![E::AmapSet {
                    amap,
                    by: actor.user,
                }])
            }
            C::StopRecurringParticipation { catalog, access } => {
                self.require_created()?;
                match self.recurring.get(&catalog) {
                    None => Err(MarketError::NotRecurring { catalog }),
                    Some(r) if r.producer != access.producer => {
                        Err(MarketError::NotYourCatalog { catalog })
                    }
                    Some(_) => Ok(vec![E::RecurringParticipationStopped {
                        catalog,
                        by: access.actor.user,
                    }]),
                }
            }
            C::RegisterSale { sale, date } => {
                self.require_created()?;
                Ok(vec![E::SaleRegistered {
                    sale,
                    date,
                    number: self.sales.saturating_add(1),
                }])
            }
        }
    }
}

impl Aggregate for Market {
    const TYPE: &'static str = "market";
    type Command = MarketCommand;
    type Event = MarketEvent;
    type Error = MarketError;
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
        use MarketEvent as E;
        match event {
            E::MarketCreated {
                market,
                name,
                place,
                slots,
                administrators,
                payment_mode,
                visibility,
                amap,
                created_by: _,
            } => {
                self.id = Some(market);
                self.name = name;
                self.place = place;
                self.slots = slots;
                self.administrators = administrators.into_iter().collect();
                self.payment_mode = Some(payment_mode);
                self.visibility = Some(visibility);
                self.amap = amap;
            }
            E::SlotAdded { slot } => self.slots.push(slot),
            E::SlotRemoved { slot } => self.slots.retain(|s| *s != slot),
            E::AdministratorAdded { user } => {
                self.administrators.insert(user);
            }
            E::AdministratorRemoved { user } => {
                self.administrators.remove(&user);
            }
            E::ReferentSet { user } => {
                self.referents.insert(user);
            }
            E::ReferentRemoved { user } => {
                self.referents.remove(&user);
            }
            E::PaymentModeSet { payment_mode } => self.payment_mode = Some(payment_mode),
            E::CatalogLinked {
                catalog, producer, ..
            } => {
                self.linked.insert(catalog, producer);
            }
            E::CatalogUnlinked { catalog, .. } => {
                self.linked.remove(&catalog);
                self.recurring.remove(&catalog);
            }
            E::RecurringParticipationStarted {
                catalog,
                producer,
                opens_hours_before,
                closes_hours_before,
                ..
            } => {
                self.recurring.insert(
                    catalog,
                    Recurring {
                        producer,
                        opens_hours_before,
                        closes_hours_before,
                    },
                );
            }
            E::RecurringParticipationStopped { catalog, .. } => {
                self.recurring.remove(&catalog);
            }
            E::MembershipRequested { user } => {
                self.pending.insert(user);
            }
            E::MemberApproved { user, .. } => {
                self.pending.remove(&user);
                self.members.insert(user);
            }
            E::MembershipRefused { user, .. } => {
                self.pending.remove(&user);
            }
            E::MemberRemoved { user, .. } => {
                self.members.remove(&user);
            }
            E::VisibilitySet { visibility, .. } => self.visibility = Some(visibility),
            E::LocationSet { location, .. } => self.location = Some(location),
            E::AmapSet { amap, .. } => self.amap = amap,
            E::MinimumOrderSet { amount, .. } => self.minimum_order = amount,
            E::DeliverySet { offer, .. } => self.delivery = offer,
            E::SaleRegistered { number, .. } => self.sales = self.sales.max(number),
            E::FeeScheduleAssigned { schedule, from, .. } => {
                self.fee_schedules.insert(from, schedule);
            }
        }
    }
}
