//! Markets, their sales, participations and the sale's lifecycle (R-SAL, R-CAT-4).

use crate::graphql::scalars::Money;
use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveTime, Utc};
use etal_domain::catalog::Catalog;
use etal_domain::ids::{CatalogId, MarketId, SaleId, UserId};
use etal_domain::market::{Market, Slot};
use etal_domain::sale::{Participation, Sale};
use etal_domain::{Actor, Role};
use uuid::Uuid;

use super::catalogs::OfferView;
use super::common::{
    actor, app, app_ctx, app_error, bad_input, forbidden, paginate, read_your_writes, OrCoded,
    RoleGuard,
};
use super::orders::OrderView;
use super::scalars::Date;
use etal_app::market::{NewMarket, PeriodRule};
use etal_app::AppError;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::market::PaymentMode")]
pub enum PaymentMode {
    Online,
    OnSite,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::market::Visibility")]
pub enum Visibility {
    Public,
    MembersOnly,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "chrono::Weekday")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::sale::SaleStatus")]
pub enum SaleStatus {
    Unplanned,
    Planned,
    Open,
    Closed,
    Distributed,
    Validated,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::sale::PeriodState")]
pub enum PeriodState {
    NotOpen,
    Open,
    Closed,
}

/// The answer of a mutation on a market: its id and the position it wrote, once the projections
/// passed it (read-your-writes).
pub(crate) async fn market_payload<T>(
    ctx: &Context<'_>,
    market_id: Uuid,
    done: std::result::Result<etal_app::Done<T>, etal_app::AppError>,
) -> Result<MarketPayload> {
    let done = done.coded()?;
    Ok(MarketPayload {
        market_id,
        position: read_your_writes(ctx, done.position).await,
    })
}

/// An administrator's answer to a membership (R-SAL-7).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_app::market::MembershipAnswer")]
pub enum MembershipAnswer {
    Approve,
    Refuse,
    Remove,
}

/// A catalog taking part in every sale of a market generated from now on (R-SAL-2).
#[derive(SimpleObject)]
pub struct RecurringParticipation {
    pub catalog_id: Uuid,
    pub producer_id: Uuid,
    pub opens_hours_before: i64,
    pub closes_hours_before: i64,
}

/// A recurring pick-up slot, in Europe/Paris wall-clock time.
#[derive(SimpleObject)]
pub struct SlotView {
    pub weekday: Weekday,
    /// "18:00"
    pub start: String,
    pub end: String,
    /// 1: every week; 2: every other week.
    pub every_weeks: u32,
    /// One date of the series.
    pub anchor: Date,
}

impl SlotView {
    pub(crate) fn of(s: &Slot) -> Self {
        SlotView {
            weekday: s.weekday.into(),
            start: s.start.format("%H:%M").to_string(),
            end: s.end.format("%H:%M").to_string(),
            every_weeks: s.every_weeks,
            anchor: Date(s.anchor),
        }
    }
}

#[derive(InputObject)]
pub struct SlotInput {
    pub weekday: Weekday,
    /// "18:00" (Europe/Paris)
    pub start: String,
    pub end: String,
    #[graphql(default = 1, validator(minimum = 1, maximum = 4))]
    pub every_weeks: u32,
    pub anchor: Date,
}

/// A slot from its input; `field` names it in a BAD_USER_INPUT error.
fn slot_of(field: &str, s: &SlotInput) -> Result<Slot> {
    Ok(Slot {
        weekday: s.weekday.into(),
        start: time(&format!("{field}.start"), &s.start)?,
        end: time(&format!("{field}.end"), &s.end)?,
        every_weeks: s.every_weeks,
        anchor: s.anchor.0,
    })
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn time(field: &str, s: &str) -> Result<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
        .map_err(|_| bad_input(field, "a time of day such as \"18:00\""))
}

#[derive(InputObject)]
pub struct MarketInput {
    #[graphql(validator(max_length = 200))]
    pub name: String,
    #[graphql(validator(max_length = 500))]
    pub place: String,
    #[graphql(validator(max_items = 20))]
    pub slots: Vec<SlotInput>,
    pub payment_mode: PaymentMode,
    /// Default: MEMBERS_ONLY for an AMAP, PUBLIC otherwise (R-SAL-7).
    pub visibility: Option<Visibility>,
    #[graphql(default = false)]
    pub amap: bool,
}

/// Whether `viewer` administers (or is referent of) `market`, or audits.
pub(crate) fn sees_market_internals(market: &Market, viewer: Actor) -> bool {
    match viewer.role {
        Role::Auditor | Role::PlatformAdmin => true,
        Role::MarketAdmin => {
            let a = market.access(viewer);
            a.administrator || a.referent
        }
        _ => false,
    }
}

pub(crate) async fn load_market(ctx: &Context<'_>, id: MarketId) -> Result<Market> {
    actor(ctx)?;
    let (m, v) = app(ctx).load::<Market>(id).await.coded()?;
    if v == 0 {
        return Err(app_error(AppError::not_found("market", id)));
    }
    Ok(m)
}

pub(crate) async fn load_sale(ctx: &Context<'_>, id: SaleId) -> Result<Sale> {
    actor(ctx)?;
    let (s, v) = app(ctx).load::<Sale>(id).await.coded()?;
    if v == 0 || s.id().is_none() {
        return Err(app_error(AppError::not_found("sale", id)));
    }
    Ok(s)
}

/// A market (R-SAL-1). Its public face is open to every signed-in user; its people and links
/// to its administrators, referents and auditors.
pub struct MarketView {
    pub id: MarketId,
    pub market: Market,
    pub viewer: Actor,
}

#[Object(name = "Market")]
impl MarketView {
    async fn id(&self) -> Uuid {
        self.id.0
    }
    async fn name(&self) -> &str {
        self.market.name()
    }
    async fn place(&self) -> &str {
        self.market.place()
    }
    async fn slots(&self) -> Vec<SlotView> {
        self.market.slots().iter().map(SlotView::of).collect()
    }
    async fn payment_mode(&self) -> Option<PaymentMode> {
        self.market.payment_mode().map(Into::into)
    }
    async fn visibility(&self) -> Option<Visibility> {
        self.market.visibility().map(Into::into)
    }
    async fn amap(&self) -> bool {
        self.market.amap()
    }
    /// R-ORD-7: the least an order of this market may amount to (lines incl. VAT).
    async fn minimum_order(&self) -> Option<Money> {
        self.market.minimum_order().map(Money)
    }
    /// R-ORD-6: the home delivery the market runs (none: only producers' own, if any).
    async fn delivery(&self) -> Option<super::catalogs::DeliveryOfferView> {
        self.market
            .delivery()
            .map(|d| super::catalogs::DeliveryOfferView {
                fee: Money(d.fee),
                free_above: d.free_above.map(Money),
                minimum: d.minimum.map(Money),
            })
    }
    /// R-ORD-6: the delivery fees of this market's orders that the platform holds for it
    /// (paid online, net of refunds), from the ledger; its people and auditors.
    async fn delivery_fees_held(&self, ctx: &Context<'_>) -> Result<Money> {
        self.internals()?;
        super::fresh::settled(ctx, "ledger").await;
        let held = etal_projections::ledger::held_for(&app(ctx).pool, "MarketPayable", self.id.0)
            .await
            .map_err(|_| super::common::coded("RETRYABLE", "database unavailable"))?;
        Ok(Money(held))
    }
    /// Whether the caller administers this market.
    async fn you_administer(&self) -> bool {
        self.market.access(self.viewer).administrator
    }
    async fn administrators(&self) -> Result<Vec<Uuid>> {
        self.internals()?;
        Ok(self.market.administrators().iter().map(|u| u.0).collect())
    }
    async fn referents(&self) -> Result<Vec<Uuid>> {
        self.internals()?;
        Ok(self.market.referents().iter().map(|u| u.0).collect())
    }
    /// Catalogs linked to the market (R-CAT-4).
    async fn linked_catalogs(&self) -> Result<Vec<LinkedCatalog>> {
        self.internals()?;
        Ok(self
            .market
            .linked_catalogs()
            .iter()
            .map(|(c, p)| LinkedCatalog {
                catalog_id: c.0,
                producer_id: p.0,
            })
            .collect())
    }
    /// R-FEE-5: the fee schedules chosen for this market, by the date each applies from
    /// (none: the service's default schedule).
    /// R-SAL-2: the catalogs taking part in every sale generated from now on, with their
    /// default order period.
    async fn recurring_participations(&self) -> Result<Vec<RecurringParticipation>> {
        self.internals()?;
        Ok(self
            .market
            .recurring()
            .iter()
            .map(|(c, r)| RecurringParticipation {
                catalog_id: c.0,
                producer_id: r.producer.0,
                opens_hours_before: r.opens_hours_before,
                closes_hours_before: r.closes_hours_before,
            })
            .collect())
    }
    /// R-SAL-7: the market's members and the requests waiting for an answer (its people).
    async fn members(&self) -> Result<Vec<Uuid>> {
        self.internals()?;
        Ok(self.market.members().iter().map(|u| u.0).collect())
    }
    async fn pending_members(&self) -> Result<Vec<Uuid>> {
        self.internals()?;
        Ok(self.market.pending_members().iter().map(|u| u.0).collect())
    }
    /// R-SAL-7: the people waiting for the administrators' answer, with their display names
    /// (what an administrator needs to answer; "erased customer" once erased).
    async fn pending_member_requests(&self, ctx: &Context<'_>) -> Result<Vec<MemberRequest>> {
        self.internals()?;
        let ids: Vec<UserId> = self.market.pending_members().iter().copied().collect();
        let loader = ctx
            .data_unchecked::<async_graphql::dataloader::DataLoader<super::orders::PeopleLoader>>();
        let names = loader.load_many(ids.iter().copied()).await.map_err(|e| {
            tracing::error!(error = %e, "people loader");
            super::common::coded("INTERNAL", "internal error")
        })?;
        Ok(ids
            .into_iter()
            .map(|u| MemberRequest {
                user_id: u.0,
                display_name: names
                    .get(&u)
                    .cloned()
                    .unwrap_or_else(|| etal_app::people::ERASED.to_string()),
            })
            .collect())
    }
    async fn fee_schedules(&self) -> Result<Vec<FeeScheduleAssignment>> {
        self.internals()?;
        Ok(self
            .market
            .fee_schedules()
            .iter()
            .map(|(from, schedule)| FeeScheduleAssignment {
                schedule: schedule.clone(),
                from: Date(*from),
            })
            .collect())
    }
    /// The market's sales between two dates (inclusive, at most a year).
    #[allow(clippy::too_many_arguments)]
    async fn sales(
        &self,
        ctx: &Context<'_>,
        from: Date,
        to: Date,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Connection<usize, SaleView, EmptyFields, EmptyFields>> {
        if to.0 < from.0 || (to.0 - from.0).num_days() > 366 {
            return Err(bad_input(
                "to",
                "the range must be ordered and at most a year",
            ));
        }
        let ids = app(ctx).market_sales(self.id, from.0, to.0).await.coded()?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            items.push(SaleView {
                id,
                sale: load_sale(ctx, id).await?,
                viewer: self.viewer,
            });
        }
        paginate(items, after, before, first, last).await
    }
}

impl MarketView {
    fn internals(&self) -> Result<()> {
        if sees_market_internals(&self.market, self.viewer) {
            Ok(())
        } else {
            Err(forbidden("only the market's administrators see this"))
        }
    }
}

/// A fee schedule chosen for a market from a date (R-FEE-5).
#[derive(SimpleObject)]
pub struct FeeScheduleAssignment {
    pub schedule: String,
    pub from: Date,
}

/// What `assignFeeSchedule` did.
#[derive(SimpleObject)]
pub struct FeeScheduleAssigned {
    pub market_id: Uuid,
    pub schedule: String,
    pub from: Date,
    pub position: Option<String>,
}

/// A fee schedule the service loaded (R-FEE-3, R-FEE-5).
#[derive(SimpleObject)]
pub struct FeeScheduleInfo {
    pub name: String,
    pub description: String,
    pub rules: Vec<FeeRuleInfo>,
}

/// One dated, versioned rule of a fee schedule.
#[derive(SimpleObject)]
pub struct FeeRuleInfo {
    pub id: String,
    pub version: u32,
    pub valid_from: Date,
    pub valid_until: Option<Date>,
    pub label: String,
    /// What the rate applies to: "incl_vat" or "excl_vat".
    pub base: String,
    pub rate: super::scalars::Decimal,
    /// "online_payment", "all_sales" or "subscription".
    pub applies_to: String,
    /// The rule as configured (JSON), fixed parts, splits, periods, floor and cap included.
    pub definition: String,
}

#[derive(SimpleObject)]
pub struct LinkedCatalog {
    pub catalog_id: Uuid,
    pub producer_id: Uuid,
}

/// One dated pick-up of a market.
pub struct SaleView {
    pub id: SaleId,
    pub sale: Sale,
    pub viewer: Actor,
}

#[Object(name = "Sale")]
impl SaleView {
    async fn id(&self) -> Uuid {
        self.id.0
    }
    async fn market_id(&self) -> Uuid {
        self.sale.market().0
    }
    async fn number(&self) -> u32 {
        self.sale.number()
    }
    async fn date(&self) -> Option<Date> {
        self.sale.date().map(Date)
    }
    async fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.sale.starts_at()
    }
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.sale.ends_at()
    }
    async fn status(&self) -> SaleStatus {
        self.sale.status().into()
    }
    async fn amap(&self) -> bool {
        self.sale.amap()
    }
    async fn payment_mode(&self) -> PaymentMode {
        self.sale.payment_mode().into()
    }
    /// The catalogs taking part, with their order periods (R-SAL-2, R-SAL-3).
    async fn participations(&self) -> Vec<ParticipationView> {
        self.sale
            .participations()
            .iter()
            .map(|(c, p)| ParticipationView {
                sale: self.id,
                catalog: *c,
                p: *p,
            })
            .collect()
    }
    /// The orders of the sale: its market's administrators and auditors.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Connection<usize, OrderView, EmptyFields, EmptyFields>> {
        let market = load_market(ctx, self.sale.market()).await?;
        if !sees_market_internals(&market, self.viewer) {
            return Err(forbidden(
                "only the market's administrators list its orders",
            ));
        }
        let ids: Vec<_> = self.sale.orders().keys().copied().collect();
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            items.push(super::orders::order_for_read(ctx, id).await?);
        }
        paginate(items, after, before, first, last).await
    }
    /// The caller's own order in this sale (customers).
    async fn my_order(&self, ctx: &Context<'_>) -> Result<Option<OrderView>> {
        match self.sale.order_of(self.viewer.user) {
            Some(id) if self.viewer.role == Role::Customer => {
                Ok(Some(super::orders::order_for_read(ctx, id).await?))
            }
            _ => Ok(None),
        }
    }
}

/// A catalog's participation in a sale.
pub struct ParticipationView {
    sale: SaleId,
    catalog: CatalogId,
    p: Participation,
}

#[Object(name = "Participation")]
impl ParticipationView {
    async fn catalog_id(&self) -> Uuid {
        self.catalog.0
    }
    async fn producer_id(&self) -> Uuid {
        self.p.producer.0
    }
    async fn opens_at(&self) -> DateTime<Utc> {
        self.p.opens_at
    }
    async fn closes_at(&self) -> DateTime<Utc> {
        self.p.closes_at
    }
    /// From the clock and the period (R-ORD-3): OPEN from `opensAt` to `closesAt`, whether or
    /// not the scheduled opening has run (the first order opens it).
    async fn period(&self, ctx: &Context<'_>) -> PeriodState {
        self.p.period_at(app(ctx).now()).into()
    }
    /// What customers can order in this sale from this catalog, at this sale's terms (R-CAT-3);
    /// a professional customer sees its own prices (R-ORD-8); archived products are left out
    /// (R-ACC-5).
    async fn offers(&self, ctx: &Context<'_>) -> Result<Vec<OfferView>> {
        let app = app(ctx);
        let (c, _) = app.load::<Catalog>(self.catalog).await.coded()?;
        let (sale, _) = app.load::<Sale>(self.sale).await.coded()?;
        let (market, _) = app.load::<Market>(sale.market()).await.coded()?;
        // R-SAL-7: a members-only market shows its offers to its members (and to the people
        // who run it or sell in it) only.
        let viewer = super::common::actor(ctx)?;
        if viewer.role == Role::Customer && !market.admits(viewer.user) {
            return Ok(Vec::new());
        }
        let (account, _) = app
            .load::<etal_domain::account::ProducerAccount>(self.p.producer)
            .await
            .coded()?;
        let mut offers = Vec::new();
        for terms in c
            .offers()
            .filter(|o| account.is_orderable(o.product.product))
            .filter_map(|o| c.terms_for_customer(self.sale, o.product.product, viewer.user))
        {
            let customer = app.customer_unit_price(&sale, &market, &terms).coded()?;
            offers.push(OfferView(terms, Some(customer)));
        }
        Ok(offers)
    }
}

#[derive(Default)]
pub struct MarketQuery;

#[Object]
impl MarketQuery {
    /// R-FEE-3, R-FEE-5: the fee schedules this service loaded (any signed-in user).
    async fn fee_schedules(&self, ctx: &Context<'_>) -> Result<Vec<FeeScheduleInfo>> {
        actor(ctx)?;
        Ok(app(ctx)
            .fee_schedules()
            .schedules
            .iter()
            .map(|s| FeeScheduleInfo {
                name: s.name.clone(),
                description: s.description.clone(),
                rules: s
                    .rules
                    .iter()
                    .map(|r| FeeRuleInfo {
                        id: r.id.clone(),
                        version: r.version,
                        valid_from: Date(r.valid_from),
                        valid_until: r.valid_until.map(Date),
                        label: r.label.clone(),
                        base: super::reads::tag(&r.base),
                        rate: super::scalars::Decimal(r.rate),
                        applies_to: super::reads::tag(&r.applies_to),
                        definition: serde_json::to_string(r).unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect())
    }

    /// A market (any signed-in user; internals for its administrators and auditors).
    async fn market(&self, ctx: &Context<'_>, id: Uuid) -> Result<MarketView> {
        let viewer = actor(ctx)?;
        Ok(MarketView {
            id: MarketId(id),
            market: load_market(ctx, MarketId(id)).await?,
            viewer,
        })
    }

    /// A sale with its participations and order periods (any signed-in user).
    async fn sale(&self, ctx: &Context<'_>, id: Uuid) -> Result<SaleView> {
        let viewer = actor(ctx)?;
        Ok(SaleView {
            id: SaleId(id),
            sale: load_sale(ctx, SaleId(id)).await?,
            viewer,
        })
    }
    // EXTENSION POINT (read side): `orderRecap(saleId, catalogId)` (R-SAL-5) and
    // `saleStatistics(marketId, ...)` backed by projections; scope them with the market's
    // access (`sees_market_internals`) or the catalog's (`catalog_for_read`).
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct MarketPayload {
    pub market_id: Uuid,
    pub position: Option<String>,
}

#[ComplexObject]
impl MarketPayload {
    async fn market(&self, ctx: &Context<'_>) -> Result<MarketView> {
        MarketQuery.market(ctx, self.market_id).await
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct SalesPayload {
    pub sale_ids: Vec<Uuid>,
    pub position: Option<String>,
}

#[ComplexObject]
impl SalesPayload {
    async fn sales(&self, ctx: &Context<'_>) -> Result<Vec<SaleView>> {
        let mut out = Vec::new();
        for id in &self.sale_ids {
            out.push(MarketQuery.sale(ctx, *id).await?);
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct MarketMutation;

const ADMIN: RoleGuard = RoleGuard(&[Role::MarketAdmin, Role::PlatformAdmin]);
const PRODUCER: RoleGuard = RoleGuard(&[Role::Producer]);

fn sales_payload(ids: Vec<Uuid>, position: Option<String>) -> SalesPayload {
    SalesPayload {
        sale_ids: ids,
        position,
    }
}

#[Object]
impl MarketMutation {
    /// R-SAL-1: a market administrator creates a market and administers it.
    #[graphql(guard = "ADMIN")]
    async fn create_market(
        &self,
        ctx: &Context<'_>,
        market: MarketInput,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let mut slots = Vec::new();
        for (i, s) in market.slots.iter().enumerate() {
            slots.push(slot_of(&format!("market.slots[{i}]"), s)?);
        }
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .create_market(
                &c,
                NewMarket {
                    name: market.name,
                    place: market.place,
                    slots,
                    payment_mode: market.payment_mode.into(),
                    visibility: market
                        .visibility
                        .unwrap_or(if market.amap {
                            Visibility::MembersOnly
                        } else {
                            Visibility::Public
                        })
                        .into(),
                    amap: market.amap,
                },
            )
            .await
            .coded()?;
        Ok(MarketPayload {
            market_id: done.value.0,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-FEE-5: a platform administrator chooses the market's fee schedule for its sales
    /// from `from` (today or later, Europe/Paris); fees already computed never change.
    async fn assign_fee_schedule(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        schedule: String,
        from: Date,
        idempotency_key: Option<String>,
    ) -> Result<FeeScheduleAssigned> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .assign_fee_schedule(&c, MarketId(market_id), &schedule, from.0)
            .await
            .coded()?;
        Ok(FeeScheduleAssigned {
            market_id,
            schedule,
            from,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// Adds an administrator, or a referent (who validates sales, R-SAL-6).
    #[graphql(guard = "ADMIN")]
    async fn add_market_role(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        user_id: Uuid,
        #[graphql(default = false)] referent: bool,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .add_market_role(&c, MarketId(market_id), UserId(user_id), referent)
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-CAT-4: the market's administrator links a producer's catalog.
    #[graphql(guard = "ADMIN")]
    async fn link_catalog(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        catalog_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .link_catalog(&c, MarketId(market_id), CatalogId(catalog_id))
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-CAT-4: the market's administrator unlinks a catalog; refused while a sale of the
    /// market not validated yet has orders for it (CATALOG_HAS_ORDERS).
    #[graphql(guard = "ADMIN")]
    async fn unlink_catalog(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        catalog_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .unlink_catalog(&c, MarketId(market_id), CatalogId(catalog_id))
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-1: a new recurring slot of the market (sales are generated from it from now on).
    #[graphql(guard = "ADMIN")]
    async fn add_slot(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        slot: SlotInput,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let slot = slot_of("slot", &slot)?;
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx).add_slot(&c, MarketId(market_id), slot).await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-1: removes a slot (the sales already generated from it stay).
    #[graphql(guard = "ADMIN")]
    async fn remove_slot(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        slot: SlotInput,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let slot = slot_of("slot", &slot)?;
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx).remove_slot(&c, MarketId(market_id), slot).await;
        market_payload(ctx, market_id, done).await
    }

    /// The market's payment mode for the sales generated from now on (each sale keeps the mode
    /// it was generated with).
    #[graphql(guard = "ADMIN")]
    async fn set_payment_mode(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        payment_mode: PaymentMode,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_payment_mode(&c, MarketId(market_id), payment_mode.into())
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-1: generates the market's sales from its slots between two dates (inclusive).
    #[graphql(guard = "ADMIN")]
    async fn generate_sales(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        from: Date,
        to: Date,
        idempotency_key: Option<String>,
    ) -> Result<SalesPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .generate_sales(&c, MarketId(market_id), from.0, to.0)
            .await
            .coded()?;
        let ids = done.value.iter().map(|s| s.0).collect();
        Ok(sales_payload(
            ids,
            read_your_writes(ctx, done.position).await,
        ))
    }

    /// R-SAL-2, R-SAL-3: a producer takes part in sales with a linked catalog. Orders open
    /// `opensHoursBefore` and close `closesHoursBefore` hours before each sale starts.
    #[graphql(guard = "PRODUCER")]
    async fn participate(
        &self,
        ctx: &Context<'_>,
        catalog_id: Uuid,
        #[graphql(validator(min_items = 1, max_items = 200))] sale_ids: Vec<Uuid>,
        #[graphql(default = 168, validator(minimum = 0, maximum = 8760))] opens_hours_before: i64,
        #[graphql(default = 24, validator(minimum = 0, maximum = 8760))] closes_hours_before: i64,
        idempotency_key: Option<String>,
    ) -> Result<SalesPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let sales: Vec<SaleId> = sale_ids.iter().map(|s| SaleId(*s)).collect();
        let done = app(ctx)
            .participate(
                &c,
                CatalogId(catalog_id),
                &sales,
                PeriodRule {
                    opens_hours_before,
                    closes_hours_before,
                },
            )
            .await
            .coded()?;
        Ok(sales_payload(
            sale_ids,
            read_your_writes(ctx, done.position).await,
        ))
    }

    /// R-SAL-2: the producer takes part with a linked catalog in every sale of the market
    /// generated from now on (by `generateSales` or the scheduler's daily generation ahead),
    /// orders opening `opensHoursBefore` and closing `closesHoursBefore` hours before each
    /// sale; the sales already generated are joined with `participate`; `withdraw` opts out of
    /// one date. The same again replaces the period.
    #[graphql(guard = "PRODUCER")]
    async fn participate_in_recurring_sales(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        catalog_id: Uuid,
        #[graphql(default = 168, validator(minimum = 0, maximum = 8760))] opens_hours_before: i64,
        #[graphql(default = 24, validator(minimum = 0, maximum = 8760))] closes_hours_before: i64,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .participate_in_recurring_sales(
                &c,
                MarketId(market_id),
                CatalogId(catalog_id),
                PeriodRule {
                    opens_hours_before,
                    closes_hours_before,
                },
            )
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-7: a customer asks to join a members-only market; an administrator answers.
    async fn request_membership(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx).request_membership(&c, MarketId(market_id)).await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-7: an administrator approves (`APPROVE`, also admits someone who did not ask),
    /// refuses a request (`REFUSE`) or removes a member (`REMOVE`).
    #[graphql(guard = "ADMIN")]
    async fn answer_membership(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        user_id: Uuid,
        answer: MembershipAnswer,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .answer_membership(&c, MarketId(market_id), UserId(user_id), answer.into())
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-7: who may see the market's offers and order (PUBLIC or MEMBERS_ONLY).
    #[graphql(guard = "ADMIN")]
    async fn set_visibility(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        visibility: Visibility,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_visibility(&c, MarketId(market_id), visibility.into())
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-2: the producer stops taking part in the sales generated from now on.
    #[graphql(guard = "PRODUCER")]
    async fn stop_recurring_participation(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        catalog_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<MarketPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .stop_recurring_participation(&c, MarketId(market_id), CatalogId(catalog_id))
            .await;
        market_payload(ctx, market_id, done).await
    }

    /// R-SAL-3: the producer overrides one sale's order period for a catalog.
    #[graphql(guard = "PRODUCER")]
    async fn override_period(
        &self,
        ctx: &Context<'_>,
        sale_id: Uuid,
        catalog_id: Uuid,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
        idempotency_key: Option<String>,
    ) -> Result<SalesPayload> {
        // Whole seconds: the scheduler stores due times in microseconds and recognises a
        // period's opening by its exact time.
        let (opens_at, closes_at) = (whole_seconds(opens_at), whole_seconds(closes_at));
        if closes_at <= opens_at {
            return Err(bad_input("closesAt", "must be after opensAt"));
        }
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .override_period(
                &c,
                SaleId(sale_id),
                CatalogId(catalog_id),
                opens_at,
                closes_at,
            )
            .await
            .coded()?;
        Ok(sales_payload(
            vec![sale_id],
            read_your_writes(ctx, done.position).await,
        ))
    }

    /// R-SAL-4: withdraws a catalog from a sale (refused while it has orders).
    #[graphql(guard = "PRODUCER")]
    async fn withdraw(
        &self,
        ctx: &Context<'_>,
        sale_id: Uuid,
        catalog_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<SalesPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .withdraw(&c, SaleId(sale_id), CatalogId(catalog_id))
            .await
            .coded()?;
        Ok(sales_payload(
            vec![sale_id],
            read_your_writes(ctx, done.position).await,
        ))
    }

    /// R-SAL-6: the market's referent (or an administrator) validates the distributed sale.
    #[graphql(guard = "RoleGuard(&[Role::MarketAdmin])")]
    async fn validate_sale(
        &self,
        ctx: &Context<'_>,
        sale_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<SalesPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx).validate_sale(&c, SaleId(sale_id)).await.coded()?;
        Ok(sales_payload(
            vec![sale_id],
            read_your_writes(ctx, done.position).await,
        ))
    }
}

/// A person waiting to become a member of a market.
#[derive(SimpleObject)]
pub struct MemberRequest {
    pub user_id: Uuid,
    pub display_name: String,
}
