//! What happened to a market.

use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{CatalogId, MarketId, ProducerId, SaleId, UserId};
use crate::money::Money;

use super::commands::{Location, PaymentMode, Slot, Visibility};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MarketEvent {
    MarketCreated {
        market: MarketId,
        name: String,
        place: String,
        slots: Vec<Slot>,
        administrators: Vec<UserId>,
        payment_mode: PaymentMode,
        visibility: Visibility,
        amap: bool,
        created_by: UserId,
    },
    SlotAdded {
        slot: Slot,
    },
    SlotRemoved {
        slot: Slot,
    },
    AdministratorAdded {
        user: UserId,
    },
    AdministratorRemoved {
        user: UserId,
    },
    ReferentSet {
        user: UserId,
    },
    ReferentRemoved {
        user: UserId,
    },
    PaymentModeSet {
        payment_mode: PaymentMode,
    },
    CatalogLinked {
        catalog: CatalogId,
        producer: ProducerId,
        linked_by: UserId,
    },
    CatalogUnlinked {
        catalog: CatalogId,
        producer: ProducerId,
    },
    /// R-SAL-7: membership of a members-only market.
    MembershipRequested {
        user: UserId,
    },
    MemberApproved {
        user: UserId,
        by: UserId,
    },
    MembershipRefused {
        user: UserId,
        by: UserId,
    },
    MemberRemoved {
        user: UserId,
        by: UserId,
    },
    VisibilitySet {
        visibility: Visibility,
        by: UserId,
    },
    /// R-SAL-2: the catalog takes part in every sale generated from now on.
    RecurringParticipationStarted {
        catalog: CatalogId,
        producer: ProducerId,
        opens_hours_before: i64,
        closes_hours_before: i64,
        by: UserId,
    },
    RecurringParticipationStopped {
        catalog: CatalogId,
        by: UserId,
    },
    /// R-SAL-8
    LocationSet {
        location: Location,
        by: UserId,
    },
    AmapSet {
        amap: bool,
        by: UserId,
    },
    /// R-ORD-7
    MinimumOrderSet {
        amount: Option<Money>,
        by: UserId,
    },
    /// R-ORD-6: the market's home delivery (none: no longer offered).
    DeliverySet {
        offer: Option<crate::catalog::DeliveryOffer>,
        by: UserId,
    },
    SaleRegistered {
        sale: SaleId,
        date: NaiveDate,
        number: u32,
    },
    /// R-FEE-5: sales of this market on `from` or later use `schedule` (until a later choice).
    FeeScheduleAssigned {
        schedule: String,
        from: NaiveDate,
        assigned_by: UserId,
    },
}

impl DomainEvent for MarketEvent {
    fn event_type(&self) -> String {
        match self {
            MarketEvent::MarketCreated { .. } => "MarketCreated",
            MarketEvent::SlotAdded { .. } => "SlotAdded",
            MarketEvent::SlotRemoved { .. } => "SlotRemoved",
            MarketEvent::AdministratorAdded { .. } => "AdministratorAdded",
            MarketEvent::AdministratorRemoved { .. } => "AdministratorRemoved",
            MarketEvent::ReferentSet { .. } => "ReferentSet",
            MarketEvent::ReferentRemoved { .. } => "ReferentRemoved",
            MarketEvent::PaymentModeSet { .. } => "PaymentModeSet",
            MarketEvent::CatalogLinked { .. } => "CatalogLinked",
            MarketEvent::CatalogUnlinked { .. } => "CatalogUnlinked",
            MarketEvent::RecurringParticipationStarted { .. } => "RecurringParticipationStarted",
            MarketEvent::MembershipRequested { .. } => "MembershipRequested",
            MarketEvent::MemberApproved { .. } => "MemberApproved",
            MarketEvent::MembershipRefused { .. } => "MembershipRefused",
            MarketEvent::MemberRemoved { .. } => "MemberRemoved",
            MarketEvent::VisibilitySet { .. } => "VisibilitySet",
            MarketEvent::RecurringParticipationStopped { .. } => "RecurringParticipationStopped",
            MarketEvent::LocationSet { .. } => "LocationSet",
            MarketEvent::AmapSet { .. } => "AmapSet",
            MarketEvent::MinimumOrderSet { .. } => "MinimumOrderSet",
            MarketEvent::DeliverySet { .. } => "DeliverySet",
            MarketEvent::SaleRegistered { .. } => "SaleRegistered",
            MarketEvent::FeeScheduleAssigned { .. } => "FeeScheduleAssigned",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
