//! What can be asked of a market.

use chrono::{Datelike, NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, MarketAccess, ProducerAccess};
use crate::ids::{CatalogId, MarketId, ProducerId, SaleId, UserId};
use crate::money::Money;
use rust_decimal::Decimal;

/// How customers of a market pay (R-SAL-1), chosen by its administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMode {
    /// Paid online when ordering.
    Online,
    /// Paid at pick-up by cash, cheque or card terminal; settled outside the platform.
    OnSite,
}

/// Who can see a market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    MembersOnly,
}

/// A recurring pick-up time slot, in Europe/Paris wall-clock time.
///
/// `every_weeks` is 1 (every week) or 2 (every other week); `anchor` is one date of the
/// series (it must fall on `weekday`), which fixes the parity of a fortnightly slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slot {
    pub weekday: Weekday,
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub every_weeks: u32,
    pub anchor: NaiveDate,
}

impl Slot {
    /// Whether `date` is a date of this slot's series.
    pub fn falls_on(&self, date: NaiveDate) -> bool {
        if date.weekday() != self.weekday || self.every_weeks == 0 {
            return false;
        }
        let weeks = (date - self.anchor).num_days().div_euclid(7);
        weeks.rem_euclid(i64::from(self.every_weeks)) == 0
    }
}

/// Where a market is, for producers looking for markets near them (R-SAL-8): WGS 84 degrees,
/// exact as given (the search's geometry converts them), and the commune's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub lat: Decimal,
    pub lon: Decimal,
    pub commune: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MarketCommand {
    /// R-SAL-1
    CreateMarket {
        market: MarketId,
        name: String,
        place: String,
        slots: Vec<Slot>,
        administrators: Vec<UserId>,
        payment_mode: PaymentMode,
        visibility: Visibility,
        amap: bool,
        actor: Actor,
    },
    AddSlot {
        slot: Slot,
        actor: Actor,
    },
    RemoveSlot {
        slot: Slot,
        actor: Actor,
    },
    AddAdministrator {
        user: UserId,
        actor: Actor,
    },
    /// Never the last administrator.
    RemoveAdministrator {
        user: UserId,
        actor: Actor,
    },
    /// Referents validate sales after distribution (R-SAL-6).
    SetReferent {
        user: UserId,
        actor: Actor,
    },
    RemoveReferent {
        user: UserId,
        actor: Actor,
    },
    SetPaymentMode {
        payment_mode: PaymentMode,
        actor: Actor,
    },
    /// R-CAT-4: only an administrator of this market links a catalog.
    LinkCatalog {
        catalog: CatalogId,
        producer: ProducerId,
        access: MarketAccess,
    },
    UnlinkCatalog {
        catalog: CatalogId,
        access: MarketAccess,
    },
    /// R-SAL-2: the producer takes part in every sale of the market generated from now on
    /// with a linked catalog, its order period `opens_hours_before` / `closes_hours_before`
    /// the sale's start (R-SAL-3); the same again replaces the period.
    StartRecurringParticipation {
        catalog: CatalogId,
        opens_hours_before: i64,
        closes_hours_before: i64,
        access: ProducerAccess,
    },
    /// R-SAL-7: a customer asks to join a members-only market.
    RequestMembership {
        actor: Actor,
    },
    /// R-SAL-7: an administrator approves a request (or admits a person directly).
    ApproveMember {
        user: UserId,
        actor: Actor,
    },
    /// R-SAL-7: an administrator refuses a pending request.
    RefuseMember {
        user: UserId,
        actor: Actor,
    },
    /// R-SAL-7: an administrator removes a member.
    RemoveMember {
        user: UserId,
        actor: Actor,
    },
    /// R-SAL-7: who may see the market's offers and order.
    SetVisibility {
        visibility: Visibility,
        actor: Actor,
    },
    /// R-SAL-8: where the market is (an administrator).
    SetLocation {
        location: Location,
        actor: Actor,
    },
    /// R-ORD-7: the least an order of this market may amount to (lines incl. VAT; none: no
    /// minimum), for the orders placed from now on (an administrator).
    SetMinimumOrder {
        amount: Option<Money>,
        actor: Actor,
    },
    /// R-ORD-6/7: home delivery run by the market for its orders (a fee, free above an amount,
    /// a minimum for a delivery; none: no delivery by the market), from now on (an
    /// administrator).
    SetDelivery {
        offer: Option<crate::catalog::DeliveryOffer>,
        actor: Actor,
    },
    /// R-SAL-1: the AMAP flag (an administrator); sales generated from now on carry it.
    SetAmap {
        amap: bool,
        actor: Actor,
    },
    /// R-SAL-2: the producer stops taking part in the sales generated from now on.
    StopRecurringParticipation {
        catalog: CatalogId,
        access: ProducerAccess,
    },
    /// R-FEE-5: the platform administrator chooses the market's fee schedule from a date (the
    /// business date `today` or later; the same date again replaces that choice). The service
    /// checks the schedule exists.
    AssignFeeSchedule {
        schedule: String,
        from: NaiveDate,
        today: NaiveDate,
        actor: Actor,
    },
    /// Allocates the market's next sale number (1, 2, ...), used in order numbers (R-ORD-2).
    RegisterSale {
        sale: SaleId,
        date: NaiveDate,
    },
}
