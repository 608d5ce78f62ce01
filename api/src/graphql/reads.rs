//! The read side: recaps, stock levels, annual sales, dashboard statistics, the ledger and its
//! journal, fee ledgers, payouts and statements, the event history (all from the projections,
//! except payouts, read from the producer's balance aggregate, and the history, read from the
//! log itself).
//!
//! Authorization (the roles a query allows, then the scope it checks):
//!
//! | query | producer (owner or collaborator) | market admin / referent | auditor | platform admin | customer |
//! |---|---|---|---|---|---|
//! | `orderRecap` | their catalogs in the sale | every catalog of their market's sales | all | no | no |
//! | `producerDayRecap`, `stockLevels`, `annualSales`, `producer*Sales`, `producerMarkets`, `payouts` | their account | no | all | no | no |
//! | `marketWeeklySales`, `ordersPerSale` | no | their market | all | all | no |
//! | `customersPerMarket` | no | no | all | all | no |
//! | `feeLedger` | their account (`producerId` required) | no | all | no | no |
//! | `ledgerBalances`, `journal`, `eventHistory` | no | no | all | no | no |
//!
//! Platform administrators configure the platform: they see cross-market aggregates (counts and
//! turnover, no personal data), never a producer's business, the customers' names, the books or
//! the log. A scope refusal is FORBIDDEN (an unknown id NOT_FOUND): never data.

use std::collections::BTreeSet;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{
    Context, Enum, InputType, Json, Object, Result, ScalarType, SimpleObject, Value,
};
use chrono::{DateTime, NaiveDate, Utc};
use etal_domain::ids::{CatalogId, MarketId, ProducerId, SaleId};
use etal_domain::payout::{PayoutStatus, ProducerBalance};
use etal_domain::{Actor, Role};
use etal_projections::order_recaps::{self, Scope};
use etal_projections::{annual_sales, dashboard, history, ledger, stock_levels};
use etal_store::log::Position;
use uuid::Uuid;

use super::common::{
    actor, app, app_error, bad_input, coded, forbidden, paginate, paginate_with, OrCoded,
    RoleGuard, MAX_PAGE,
};
use super::markets::{load_market, sees_market_internals};
use super::plain::{self, Plain, PlainObject, Sel};
use super::scalars::{Date, Decimal, Money};
use etal_app::AppError;

/// Longest date range a statistic or a fee ledger covers.
pub const MAX_RANGE_DAYS: i64 = 400;

type Page<T> = Connection<usize, T, EmptyFields, EmptyFields>;

fn db(e: sqlx::Error) -> async_graphql::Error {
    tracing::warn!(error = %e, "read side: query failed");
    coded("RETRYABLE", "database unavailable")
}

fn range(from: Date, to: Date) -> Result<(NaiveDate, NaiveDate)> {
    if to.0 < from.0 {
        return Err(bad_input("to", "on or after `from`"));
    }
    if (to.0 - from.0).num_days() > MAX_RANGE_DAYS {
        return Err(bad_input(
            "to",
            format!("at most {MAX_RANGE_DAYS} days after `from`"),
        ));
    }
    Ok((from.0, to.0))
}

/// The producer's people (owner, collaborators) and auditors; FORBIDDEN for others.
async fn producer_scope(ctx: &Context<'_>, id: ProducerId) -> Result<Actor> {
    let a = actor(ctx)?;
    let app = app(ctx);
    match a.role {
        Role::Producer => {
            app.producer_access(a, id).await.coded()?;
            Ok(a)
        }
        Role::Auditor => {
            let (_, v) = app
                .load::<etal_domain::account::ProducerAccount>(id)
                .await
                .coded()?;
            if v == 0 {
                return Err(app_error(AppError::not_found("producer", id)));
            }
            Ok(a)
        }
        _ => Err(forbidden(
            "only the producer's people and auditors see this",
        )),
    }
}

/// The market's administrators and referents, auditors and platform administrators.
async fn market_scope(ctx: &Context<'_>, id: MarketId) -> Result<Actor> {
    let a = actor(ctx)?;
    if !matches!(
        a.role,
        Role::MarketAdmin | Role::Auditor | Role::PlatformAdmin
    ) {
        return Err(forbidden("only the market's administrators see this"));
    }
    let market = load_market(ctx, id).await?;
    if !sees_market_internals(&market, a) {
        return Err(forbidden("you do not administer this market"));
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// Recaps (R-SAL-5)

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_projections::order_recaps::PaymentStatus")]
pub enum PaymentStatus {
    Unpaid,
    PartiallyPaid,
    Paid,
    RefundOwed,
}

/// One product of a recap (one row per VAT rate it was sold at).
#[derive(SimpleObject, Clone)]
pub struct ProductRecap {
    pub product_id: Uuid,
    pub name: String,
    pub unit: String,
    pub vat_rate: Decimal,
    pub quantity: i64,
    pub orders: i64,
    /// Total weighed, kg (null: nothing weighed).
    pub weighed_kg: Option<Decimal>,
    pub lines_to_weigh: i64,
    pub amount_incl_vat: Money,
    pub amount_excl_vat: Money,
    pub vat_amount: Money,
}

impl From<order_recaps::ProductRecap> for ProductRecap {
    fn from(r: order_recaps::ProductRecap) -> Self {
        Self {
            product_id: r.product.0,
            name: r.name,
            unit: r.unit,
            vat_rate: Decimal(r.vat_rate),
            quantity: r.quantity,
            orders: r.orders,
            weighed_kg: r.weighed_kg.map(Decimal),
            lines_to_weigh: r.lines_to_weigh,
            amount_incl_vat: Money(r.amount_incl_vat),
            amount_excl_vat: Money(r.amount_excl_vat),
            vat_amount: Money(r.vat_amount),
        }
    }
}

/// Totals for one VAT rate.
#[derive(SimpleObject)]
pub struct VatTotal {
    pub vat_rate: Decimal,
    pub amount_excl_vat: Money,
    pub vat_amount: Money,
    pub amount_incl_vat: Money,
}

/// One order line in a recap.
#[derive(SimpleObject, Clone)]
pub struct RecapLine {
    pub line: u32,
    pub catalog_id: Uuid,
    pub product_id: Uuid,
    pub name: String,
    pub unit: String,
    pub quantity: i64,
    pub weight_kg: Option<Decimal>,
    /// What the customer pays per unit (fees added in when the catalog chose it, R-CAT-2).
    pub unit_price_incl_vat: Money,
    pub amount_incl_vat: Money,
    /// R-CAT-2: the producer's own unit price, when fees were added into the customer's (null
    /// otherwise: the two are the same).
    pub producer_unit_price_incl_vat: Option<Money>,
}

/// One order of a recap by customer, or a row of the sign-off list (without lines).
#[derive(SimpleObject, Clone)]
pub struct CustomerRecap {
    pub order_id: Uuid,
    pub number: String,
    pub sale_id: Uuid,
    pub customer_id: Uuid,
    /// The display name, or "erased customer".
    pub customer: String,
    pub lines: Vec<RecapLine>,
    /// The lines in scope, incl. VAT.
    pub amount_incl_vat: Money,
    /// The whole order (every producer, delivery fee).
    pub order_total: Money,
    pub paid: Money,
    pub refunded: Money,
    pub payment_status: PaymentStatus,
    pub balance_due: Money,
    /// What to collect at pick-up for this scope.
    pub due_at_pickup: Money,
}

impl From<order_recaps::CustomerRecap> for CustomerRecap {
    fn from(r: order_recaps::CustomerRecap) -> Self {
        Self {
            order_id: r.order.0,
            number: r.number,
            sale_id: r.sale.0,
            customer_id: r.customer_id.0,
            customer: r.customer,
            lines: r
                .lines
                .into_iter()
                .map(|l| RecapLine {
                    line: l.line,
                    catalog_id: l.catalog.0,
                    product_id: l.product.0,
                    name: l.name,
                    unit: l.unit,
                    quantity: l.quantity,
                    weight_kg: l.weight_kg.map(Decimal),
                    unit_price_incl_vat: Money(l.unit_price_incl_vat),
                    amount_incl_vat: Money(l.amount_incl_vat),
                    producer_unit_price_incl_vat: l.producer_unit_price_incl_vat.map(Money),
                })
                .collect(),
            amount_incl_vat: Money(r.amount_incl_vat),
            order_total: Money(r.order_total),
            paid: Money(r.paid),
            refunded: Money(r.refunded),
            payment_status: r.payment_status.into(),
            balance_due: Money(r.balance_due),
            due_at_pickup: Money(r.due_at_pickup),
        }
    }
}

fn scalar<T: ScalarType>(v: &T) -> Value {
    v.to_value()
}

impl PlainObject for ProductRecap {
    fn field_value(&self, name: &str, _: Sel<'_>) -> Option<Value> {
        Some(match name {
            "productId" => scalar(&self.product_id),
            "name" => scalar(&self.name),
            "unit" => scalar(&self.unit),
            "vatRate" => scalar(&self.vat_rate),
            "quantity" => scalar(&self.quantity),
            "orders" => scalar(&self.orders),
            "weighedKg" => self.weighed_kg.as_ref().map_or(Value::Null, scalar),
            "linesToWeigh" => scalar(&self.lines_to_weigh),
            "amountInclVat" => scalar(&self.amount_incl_vat),
            "amountExclVat" => scalar(&self.amount_excl_vat),
            "vatAmount" => scalar(&self.vat_amount),
            _ => return None,
        })
    }
}

impl PlainObject for RecapLine {
    fn field_value(&self, name: &str, _: Sel<'_>) -> Option<Value> {
        Some(match name {
            "line" => Value::from(self.line),
            "catalogId" => scalar(&self.catalog_id),
            "productId" => scalar(&self.product_id),
            "name" => scalar(&self.name),
            "unit" => scalar(&self.unit),
            "quantity" => scalar(&self.quantity),
            "weightKg" => self.weight_kg.as_ref().map_or(Value::Null, scalar),
            "unitPriceInclVat" => scalar(&self.unit_price_incl_vat),
            "amountInclVat" => scalar(&self.amount_incl_vat),
            "producerUnitPriceInclVat" => self
                .producer_unit_price_incl_vat
                .as_ref()
                .map_or(Value::Null, scalar),
            _ => return None,
        })
    }
}

impl PlainObject for CustomerRecap {
    fn field_value(&self, name: &str, sub: Sel<'_>) -> Option<Value> {
        Some(match name {
            "orderId" => scalar(&self.order_id),
            "number" => scalar(&self.number),
            "saleId" => scalar(&self.sale_id),
            "customerId" => scalar(&self.customer_id),
            "customer" => scalar(&self.customer),
            // Infallible: a line's fields are all plain.
            "lines" => plain::list(&self.lines, sub).unwrap_or(Value::Null),
            "amountInclVat" => scalar(&self.amount_incl_vat),
            "orderTotal" => scalar(&self.order_total),
            "paid" => scalar(&self.paid),
            "refunded" => scalar(&self.refunded),
            "paymentStatus" => InputType::to_value(&self.payment_status),
            "balanceDue" => scalar(&self.balance_due),
            "dueAtPickup" => scalar(&self.due_at_pickup),
            _ => return None,
        })
    }
}

/// One catalog in one sale.
#[derive(SimpleObject)]
pub struct RecapScope {
    pub sale_id: Uuid,
    pub catalog_id: Uuid,
}

/// A recap over (sale, catalog) scopes: one catalog of a sale, a whole sale, or a producer's day.
pub struct OrderRecap {
    scopes: Vec<Scope>,
    /// The recap by product, read once per request: `byProduct` and `vatTotals` (the sums of
    /// its rows per rate) share it.
    by_product: tokio::sync::OnceCell<Vec<order_recaps::ProductRecap>>,
}

impl OrderRecap {
    fn new(scopes: Vec<Scope>) -> Self {
        Self {
            scopes,
            by_product: tokio::sync::OnceCell::new(),
        }
    }

    async fn products(&self, ctx: &Context<'_>) -> Result<&[order_recaps::ProductRecap]> {
        let rows = self
            .by_product
            .get_or_try_init(|| async {
                order_recaps::recap_by_product(&app(ctx).pool, &self.scopes)
                    .await
                    .map_err(db)
            })
            .await?;
        Ok(rows)
    }
}

#[Object]
impl OrderRecap {
    /// The (sale, catalog) pairs the recap covers.
    async fn scopes(&self) -> Vec<RecapScope> {
        self.scopes
            .iter()
            .map(|s| RecapScope {
                sale_id: s.sale.0,
                catalog_id: s.catalog.0,
            })
            .collect()
    }
    /// Quantities and amounts per product, by name.
    async fn by_product(&self, ctx: &Context<'_>) -> Result<Vec<Plain<ProductRecap>>> {
        let rows = self.products(ctx).await?;
        Ok(rows.iter().cloned().map(|r| Plain(r.into())).collect())
    }
    /// Totals per VAT rate.
    async fn vat_totals(&self, ctx: &Context<'_>) -> Result<Vec<VatTotal>> {
        let rows = order_recaps::vat_totals_of(self.products(ctx).await?);
        Ok(rows
            .into_iter()
            .map(|r| VatTotal {
                vat_rate: Decimal(r.vat_rate),
                amount_excl_vat: Money(r.amount_excl_vat),
                vat_amount: Money(r.vat_amount),
                amount_incl_vat: Money(r.amount_incl_vat),
            })
            .collect())
    }
    /// The orders with their lines in scope, by order number.
    async fn by_customer(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<Plain<CustomerRecap>>> {
        let (pool, scopes) = (&app(ctx).pool, &self.scopes);
        paginate_with(
            after,
            before,
            first,
            last,
            || async move {
                order_recaps::count_orders_in_scope(pool, scopes)
                    .await
                    .map_err(db)
            },
            |offset, limit| async move {
                let rows = order_recaps::recap_by_customer_page(pool, scopes, offset, limit)
                    .await
                    .map_err(db)?;
                Ok(rows.into_iter().map(|r| Plain(r.into())).collect())
            },
        )
        .await
    }
    /// The sign-off list: one row per order (no lines), by customer name.
    async fn sign_off_list(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<Plain<CustomerRecap>>> {
        let rows = order_recaps::sign_off_list(&app(ctx).pool, &self.scopes)
            .await
            .map_err(db)?;
        paginate(
            rows.into_iter().map(|r| Plain(r.into())).collect(),
            after,
            before,
            first,
            last,
        )
        .await
    }
}

/// The scopes of `sale` the caller may recap: `catalog` (which must take part) or every
/// catalog taking part that the caller may see.
///
/// The sale, its market and the catalogs taking part come from the `order_recaps` projection
/// (`recap_sales`, `recap_participations`), not from the Sale aggregate, whose stream grows
/// with every order: they are as fresh as the recap rows they select (a participation the
/// projector has not applied yet is not listed; a mutation's read-your-writes wait covers the
/// caller's own writes). Who may see them is still decided from the aggregates, never from a
/// projection: a producer's access from their account (owner or collaborator, account open),
/// a market administrator's or referent's from the market, as the command side decides.
async fn recap_scopes(
    ctx: &Context<'_>,
    sale_id: SaleId,
    catalog: Option<CatalogId>,
) -> Result<Vec<Scope>> {
    let a = actor(ctx)?;
    if !matches!(a.role, Role::Producer | Role::MarketAdmin | Role::Auditor) {
        return Err(forbidden(
            "only the sale's producers, its market's administrators and auditors see recaps",
        ));
    }
    let Some((sale_market, participations)) =
        order_recaps::sale_participations(&app(ctx).pool, sale_id)
            .await
            .map_err(db)?
    else {
        return Err(app_error(AppError::not_found("sale", sale_id)));
    };
    let taking_part: Vec<(CatalogId, ProducerId)> = participations
        .into_iter()
        .filter(|(c, _)| catalog.is_none_or(|x| x == *c))
        .collect();
    match a.role {
        Role::Producer => {
            let app = app(ctx);
            let mut mine = Vec::new();
            let producers: BTreeSet<ProducerId> = taking_part.iter().map(|(_, p)| *p).collect();
            let mut allowed = BTreeSet::new();
            for p in producers {
                if app.producer_access(a, p).await.is_ok() {
                    allowed.insert(p);
                }
            }
            for (c, p) in &taking_part {
                if allowed.contains(p) {
                    mine.push(Scope::new(sale_id, *c));
                }
            }
            if mine.is_empty() {
                return Err(forbidden("you have no catalog in this sale"));
            }
            Ok(mine)
        }
        _ => {
            if a.role == Role::MarketAdmin {
                let market = load_market(ctx, sale_market).await?;
                if !sees_market_internals(&market, a) {
                    return Err(forbidden("you do not administer this sale's market"));
                }
            }
            if let Some(c) = catalog {
                if taking_part.is_empty() {
                    return Err(app_error(AppError::not_found("catalog in this sale", c)));
                }
            }
            Ok(taking_part
                .into_iter()
                .map(|(c, _)| Scope::new(sale_id, c))
                .collect())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stock, annual sales

/// A producer's product with its stock (archived ones flagged).
#[derive(SimpleObject)]
pub struct ProductStock {
    pub product_id: Uuid,
    pub name: String,
    pub unit: String,
    pub price_incl_vat: Money,
    pub vat_rate: Decimal,
    pub archived: bool,
    /// Null: unlimited.
    pub real: Option<i64>,
    /// Units ordered and not delivered.
    pub ordered: i64,
    /// Of `ordered`, the confirmed units.
    pub confirmed: i64,
    /// Null: unlimited.
    pub available: Option<i64>,
}

/// A producer's sales of one calendar year (R-ACC-3 caps).
#[derive(SimpleObject)]
pub struct AnnualSales {
    pub producer_id: Uuid,
    pub year: i32,
    pub non_amap_confirmed: Money,
    pub non_amap_pending: Money,
    /// Confirmed and pending outside AMAP markets: what counts against the cap.
    pub non_amap_committed: Money,
    pub amap_confirmed: Money,
    pub amap_pending: Money,
    pub orders: i64,
    /// Null: no cap.
    pub cap: Option<Money>,
    /// Room left under the cap (null: no cap).
    pub left: Option<Money>,
}

impl From<annual_sales::AnnualSalesSummary> for AnnualSales {
    fn from(s: annual_sales::AnnualSalesSummary) -> Self {
        Self {
            producer_id: s.producer.0,
            year: s.year,
            non_amap_confirmed: Money(s.non_amap_confirmed),
            non_amap_pending: Money(s.non_amap_pending),
            non_amap_committed: Money(s.non_amap_committed),
            amap_confirmed: Money(s.amap_confirmed),
            amap_pending: Money(s.amap_pending),
            orders: s.orders,
            cap: s.cap.map(Money),
            left: s.left.map(Money),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboard statistics

#[derive(SimpleObject)]
pub struct WeeklySales {
    pub iso_year: i32,
    pub iso_week: i32,
    pub orders: i64,
    pub customers: i64,
    pub turnover_incl_vat: Money,
    pub turnover_excl_vat: Money,
}

#[derive(SimpleObject)]
pub struct ProductSales {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub orders: i64,
    pub turnover_incl_vat: Money,
    pub turnover_excl_vat: Money,
}

impl From<dashboard::ProductSales> for ProductSales {
    fn from(r: dashboard::ProductSales) -> Self {
        ProductSales {
            product_id: r.product.0,
            name: r.name,
            quantity: r.quantity,
            orders: r.orders,
            turnover_incl_vat: Money(r.turnover_incl_vat),
            turnover_excl_vat: Money(r.turnover_excl_vat),
        }
    }
}

#[derive(SimpleObject)]
pub struct CustomerSales {
    pub customer_id: Uuid,
    pub customer: String,
    pub orders: i64,
    pub turnover_incl_vat: Money,
}

#[derive(SimpleObject)]
pub struct MarketCustomers {
    pub market_id: Uuid,
    pub name: String,
    pub customers: i64,
    pub orders: i64,
    pub turnover_incl_vat: Money,
}

#[derive(SimpleObject)]
pub struct SaleOrders {
    pub sale_id: Uuid,
    pub number: i64,
    pub date: Date,
    pub orders: i64,
    pub customers: i64,
    pub turnover_incl_vat: Money,
}

#[derive(SimpleObject)]
pub struct ProducerMarket {
    pub market_id: Uuid,
    pub name: String,
    pub amap: bool,
    pub sales: i64,
    pub orders: i64,
    pub turnover_incl_vat: Money,
    pub turnover_excl_vat: Money,
}

// ---------------------------------------------------------------------------------------------
// Ledger, journal, fees

/// One account's totals as of a date.
#[derive(SimpleObject)]
pub struct AccountBalance {
    pub account: String,
    /// The producer, market or customer the account belongs to (null: the platform's).
    pub party: Option<Uuid>,
    pub debits: Money,
    pub credits: Money,
    /// Debits minus credits.
    pub balance: Money,
}

/// R-PAY-3 as of a date: payments = refunds + fees + payouts + balances held.
#[derive(SimpleObject)]
pub struct Conservation {
    pub payments: Money,
    pub refunds: Money,
    pub fees: Money,
    pub payouts: Money,
    pub held: Money,
    pub holds: bool,
}

pub struct LedgerBalances {
    as_of: NaiveDate,
}

#[Object]
impl LedgerBalances {
    async fn as_of(&self) -> Date {
        Date(self.as_of)
    }
    /// Every account's debits and credits for entries dated on or before `asOf`.
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<AccountBalance>> {
        let rows = ledger::balances_as_of(&app(ctx).pool, self.as_of)
            .await
            .map_err(db)?;
        let items = rows
            .into_iter()
            .map(|b| AccountBalance {
                balance: Money(b.balance()),
                account: b.account,
                party: b.party,
                debits: Money(b.debits),
                credits: Money(b.credits),
            })
            .collect();
        paginate(items, after, before, first, last).await
    }
    async fn conservation(&self, ctx: &Context<'_>) -> Result<Conservation> {
        let c = ledger::conservation_as_of(&app(ctx).pool, self.as_of)
            .await
            .map_err(db)?;
        Ok(Conservation {
            holds: c.holds(),
            payments: Money(c.payments),
            refunds: Money(c.refunds),
            fees: Money(c.fees),
            payouts: Money(c.payouts),
            held: Money(c.held),
        })
    }
}

#[derive(SimpleObject)]
pub struct Posting {
    pub account: String,
    pub party: Option<Uuid>,
    pub debit: Money,
    pub credit: Money,
}

/// One journal entry with its postings.
#[derive(SimpleObject)]
pub struct JournalEntry {
    pub entry_id: String,
    pub date: Date,
    pub description: String,
    pub postings: Vec<Posting>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_projections::ledger::FeeGrouping")]
pub enum FeeGrouping {
    Producer,
    Market,
    Sale,
    /// Calendar month of the entry (`YYYY-MM`).
    Month,
}

#[derive(SimpleObject)]
pub struct FeeTotal {
    /// The producer, market or sale id, or the month (`YYYY-MM`).
    pub key: String,
    /// "platform" or "market_host".
    pub beneficiary: String,
    pub amount_excl_vat: Money,
    pub vat: Money,
    pub amount_incl_vat: Money,
}

// ---------------------------------------------------------------------------------------------
// Payouts (R-PAY-2)

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::payout::PayoutStatus")]
pub enum PayoutState {
    InFlight,
    Failed,
    Succeeded,
    Returned,
}

#[derive(SimpleObject)]
pub struct FeeLineView {
    /// The fee schedule of the rule (R-FEE-5); null on lines recorded before schedules were
    /// chosen per market (the rule id names it).
    pub schedule: Option<String>,
    pub label: String,
    pub rule_id: String,
    pub rule_version: u32,
    /// "platform" or "market_host".
    pub beneficiary: String,
    /// What the rate applies to: "incl_vat" or "excl_vat".
    pub base_kind: String,
    pub base_amount: Money,
    pub rate: Decimal,
    /// The fixed part in this line (this producer's share of a per-payment part), excl. VAT.
    pub fixed_part: Money,
    /// Billing period, threshold, floor and cap of a per-period line (null otherwise).
    pub period: Option<String>,
    pub threshold: Option<Money>,
    pub floor: Option<Money>,
    pub cap: Option<Money>,
    /// How the line was rounded: "half_away_from_zero_cent" (R-FEE-3):
    /// `amountExclVat = round(baseAmount x rate) + fixedPart`, then threshold, floor and cap.
    pub rounding: String,
    /// VAT on the fee, in percent (`vat = round(amountExclVat x vatRate / 100)`).
    pub vat_rate: Decimal,
    pub amount_excl_vat: Money,
    pub vat: Money,
    pub amount_incl_vat: Money,
}

/// The serde name of a unit enum value ("platform", "incl_vat"...).
pub(crate) fn tag<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

pub(crate) fn fee_lines(fees: &[etal_domain::fees::FeeLine]) -> Vec<FeeLineView> {
    fees.iter()
        .map(|f| FeeLineView {
            schedule: f.schedule.clone(),
            label: f.label.clone(),
            rule_id: f.rule_id.clone(),
            rule_version: f.rule_version,
            beneficiary: tag(&f.beneficiary),
            base_kind: tag(&f.base_kind),
            base_amount: Money(f.base_amount),
            rate: Decimal(f.rate),
            fixed_part: Money(f.fixed_part),
            period: f.period.as_ref().map(tag),
            threshold: f.threshold.map(Money),
            floor: f.floor.map(Money),
            cap: f.cap.map(Money),
            rounding: tag(&f.rounding),
            vat_rate: Decimal(f.vat_rate.percent()),
            amount_excl_vat: Money(f.amount_excl_vat),
            vat: Money(f.vat),
            amount_incl_vat: Money(f.amount_incl_vat),
        })
        .collect()
}

/// A fee given back with a refund (R-FEE-4), with everything needed to recompute it: after
/// `x` of `paid` is refunded, `round((chargedExclVat - chargedFixedPart) x x / paid) +` the
/// fixed parts given back so far (all of the charged line once `x = paid`); this refund gives
/// back the difference between the state after it and before it; VAT likewise on the
/// cumulative amount.
#[derive(SimpleObject)]
pub struct FeeRefundView {
    /// What the refund belongs to: "before-credit" (refunds counted when the sale was
    /// credited) or "order:<order id>:<late refunds of the sale after it>".
    pub refund: String,
    pub schedule: Option<String>,
    pub label: String,
    pub rule_id: String,
    pub rule_version: u32,
    pub beneficiary: String,
    pub rate: Decimal,
    pub vat_rate: Decimal,
    pub charged_excl_vat: Money,
    pub charged_vat: Money,
    pub charged_fixed_part: Money,
    pub paid: Money,
    pub refunded_before: Money,
    pub refunded_now: Money,
    pub fixed_back_before: Money,
    pub fixed_back_now: Money,
    pub rounding: String,
    pub amount_excl_vat: Money,
    pub vat: Money,
    pub amount_incl_vat: Money,
}

pub(crate) fn fee_refunds(refunds: &[etal_domain::fees::FeeRefund]) -> Vec<FeeRefundView> {
    refunds
        .iter()
        .map(|r| FeeRefundView {
            refund: r.refund.clone(),
            schedule: r.schedule.clone(),
            label: r.label.clone(),
            rule_id: r.rule_id.clone(),
            rule_version: r.rule_version,
            beneficiary: tag(&r.beneficiary),
            rate: Decimal(r.rate),
            vat_rate: Decimal(r.vat_rate.percent()),
            charged_excl_vat: Money(r.charged_excl_vat),
            charged_vat: Money(r.charged_vat),
            charged_fixed_part: Money(r.charged_fixed_part),
            paid: Money(r.paid),
            refunded_before: Money(r.refunded_before),
            refunded_now: Money(r.refunded_now),
            fixed_back_before: Money(r.fixed_back_before),
            fixed_back_now: Money(r.fixed_back_now),
            rounding: tag(&r.rounding),
            amount_excl_vat: Money(r.amount_excl_vat),
            vat: Money(r.vat),
            amount_incl_vat: Money(r.amount_incl_vat),
        })
        .collect()
}

/// A debit a payout recovered (R-PAY-2): a fee owed for a sale paid on site, a refund after
/// the sale was credited (net of the fees given back), a period fee or subscription.
#[derive(SimpleObject)]
pub struct DeductionView {
    pub id: String,
    /// "fee_owed", "refund" or "period_fee".
    pub kind: String,
    pub sale_id: Option<Uuid>,
    pub amount: Money,
    /// The fee lines of a subscription or a period fee (empty otherwise).
    pub fees: Vec<FeeLineView>,
}

/// One sale on a statement: gross, refunds, fees, net.
#[derive(SimpleObject)]
pub struct StatementLine {
    pub sale_id: Uuid,
    pub market_id: Uuid,
    pub gross_incl_vat: Money,
    pub refunds: Money,
    /// The fees charged on what was paid.
    pub fees: Vec<FeeLineView>,
    /// The fees given back for the refunds counted at crediting (R-FEE-4).
    pub fee_refunds: Vec<FeeRefundView>,
    /// Fees charged minus fees given back, incl. VAT.
    pub fees_incl_vat: Money,
    pub net: Money,
    pub available_on: Date,
}

#[derive(SimpleObject)]
pub struct Payout {
    pub payout_id: Uuid,
    /// The date the transfer was made (Europe/Paris): confirmed by the bank, else sent by the
    /// Monday payout run.
    pub on: Date,
    /// The cut-off (Europe/Paris): credits available on or before it are in this payout.
    pub cut_off: Date,
    /// When the payout run sent the transfer, and when the bank confirmed it.
    pub sent_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub status: PayoutState,
    pub attempts: u32,
    pub provider_ref: Option<String>,
    pub last_failure: Option<String>,
    pub total: Money,
    /// The statement: every sale the payout pays.
    pub statement: Vec<StatementLine>,
    /// The debits the payout recovered (deducted from the statement's lines).
    pub deductions: Vec<DeductionView>,
}

/// A sale's net credited and not paid yet.
#[derive(SimpleObject)]
pub struct Credit {
    pub sale_id: Uuid,
    pub market_id: Uuid,
    pub gross_incl_vat: Money,
    pub refunds: Money,
    pub fees: Vec<FeeLineView>,
    pub fee_refunds: Vec<FeeRefundView>,
    pub net: Money,
    pub available_on: Date,
    /// The open payout holding it (null: held).
    pub payout_id: Option<Uuid>,
}

/// A producer's balance with the platform and their payouts.
#[derive(SimpleObject)]
pub struct Payouts {
    pub producer_id: Uuid,
    pub credited_total: Money,
    pub paid_total: Money,
    pub balance_held: Money,
    pub in_flight: Money,
    /// Open credits (held or in flight), by sale.
    pub credits: Vec<Credit>,
    /// Debits not recovered yet (fees owed, late refunds, subscriptions and period fees), by
    /// id; deducted from the next payouts.
    pub debits: Vec<DeductionView>,
    /// Open payouts and the 52 most recent settled ones, newest first.
    pub payouts: Vec<Payout>,
}

fn payouts_view(producer: ProducerId, b: &ProducerBalance) -> Payouts {
    Payouts {
        producer_id: producer.0,
        credited_total: Money(b.credited_total()),
        paid_total: Money(b.paid_total()),
        balance_held: Money(b.balance_held()),
        in_flight: Money(b.in_flight()),
        credits: b
            .credits()
            .iter()
            .map(|(sale, c)| Credit {
                sale_id: sale.0,
                market_id: c.market.0,
                gross_incl_vat: Money(c.gross_incl_vat),
                refunds: Money(c.refunds),
                fees: fee_lines(&c.fees),
                fee_refunds: fee_refunds(&c.fee_refunds),
                net: Money(c.net),
                available_on: Date(c.available_on),
                payout_id: c.payout.map(|p| p.0),
            })
            .collect(),
        debits: b
            .debits()
            .iter()
            .filter(|(_, d)| d.payout.is_none())
            .map(|(id, d)| DeductionView {
                id: id.clone(),
                kind: tag(&d.kind),
                sale_id: d.sale.map(|s| s.0),
                amount: Money(d.amount),
                fees: fee_lines(&d.fees),
            })
            .collect(),
        payouts: b
            .payouts()
            .rev()
            .map(|p| Payout {
                payout_id: p.statement.payout.0,
                on: Date(
                    p.paid_at
                        .or(p.started_at)
                        .map(etal_domain::calendar::paris_date)
                        .unwrap_or(p.statement.on + chrono::Duration::days(1)),
                ),
                cut_off: Date(p.statement.on),
                sent_at: p.started_at,
                paid_at: p.paid_at,
                status: match p.status {
                    PayoutStatus::InFlight => PayoutState::InFlight,
                    PayoutStatus::Failed => PayoutState::Failed,
                    PayoutStatus::Succeeded => PayoutState::Succeeded,
                    PayoutStatus::Returned => PayoutState::Returned,
                },
                attempts: p.attempts,
                provider_ref: p.provider_ref.clone(),
                last_failure: p.last_failure.clone(),
                total: Money(p.statement.total),
                statement: p
                    .statement
                    .lines
                    .iter()
                    .map(|l| StatementLine {
                        sale_id: l.sale.0,
                        market_id: l.market.0,
                        gross_incl_vat: Money(l.gross_incl_vat),
                        refunds: Money(l.refunds),
                        fees: fee_lines(&l.fees),
                        fee_refunds: fee_refunds(&l.fee_refunds),
                        fees_incl_vat: Money(l.fees_incl_vat),
                        net: Money(l.net),
                        available_on: Date(l.available_on),
                    })
                    .collect(),
                deductions: p
                    .statement
                    .deductions
                    .iter()
                    .map(|d| DeductionView {
                        id: d.id.clone(),
                        kind: tag(&d.kind),
                        sale_id: d.sale.map(|s| s.0),
                        amount: Money(d.amount),
                        fees: fee_lines(&d.fees),
                    })
                    .collect(),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Event history

/// One event with its metadata spelled out.
#[derive(SimpleObject)]
pub struct HistoryEvent {
    /// Global position ("txid/position").
    pub position: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Json<serde_json::Value>,
    pub recorded_at: DateTime<Utc>,
    /// Who: user and role.
    pub actor: Option<Json<serde_json::Value>>,
    /// When the command ran, by the service's clock.
    pub at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    pub metadata: Json<serde_json::Value>,
}

impl From<history::HistoryEntry> for HistoryEvent {
    fn from(e: history::HistoryEntry) -> Self {
        Self {
            position: e.position.to_string(),
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: Json(e.payload),
            recorded_at: e.recorded_at,
            actor: e.actor.map(Json),
            at: e.at,
            idempotency_key: e.idempotency_key,
            correlation_id: e.correlation_id,
            metadata: Json(e.metadata),
        }
    }
}

fn parse_position(field: &str, s: &str) -> Result<Position> {
    let bad = || bad_input(field, "a position such as \"1234/56\"");
    let (t, p) = s.trim().split_once('/').ok_or_else(bad)?;
    Ok(Position {
        txid: t.parse().map_err(|_| bad())?,
        position: p.parse().map_err(|_| bad())?,
    })
}

fn history_connection<C>(
    page: history::Page<C>,
    had_cursor: bool,
    cursor: impl Fn(&history::HistoryEntry) -> String,
) -> Connection<String, HistoryEvent, EmptyFields, EmptyFields> {
    let mut c = Connection::new(had_cursor, page.next.is_some());
    c.edges.extend(page.entries.into_iter().map(|e| {
        let k = cursor(&e);
        Edge::new(k, HistoryEvent::from(e))
    }));
    c
}

// ---------------------------------------------------------------------------------------------

/// R-AUD-3: a signed checkpoint of the sealed history.
#[derive(SimpleObject)]
pub struct SealCheckpoint {
    /// Leaves (events) the tree holds.
    pub tree_size: String,
    /// The tree's root, hex.
    pub root_hash: String,
    pub origin: String,
    pub key_name: String,
    /// The signed note (C2SP tlog-checkpoint), as published.
    pub note: String,
    pub signed_at: DateTime<Utc>,
}

impl From<etal_app::seal::SignedCheckpoint> for SealCheckpoint {
    fn from(c: etal_app::seal::SignedCheckpoint) -> Self {
        SealCheckpoint {
            tree_size: c.tree_size.to_string(),
            root_hash: hex::encode(c.root),
            origin: c.origin,
            key_name: c.key_name,
            note: c.note,
            signed_at: c.signed_at,
        }
    }
}

/// R-AUD-3: one event of a statement and its proof of inclusion in the checkpoint's tree.
#[derive(SimpleObject)]
pub struct StatementEventProof {
    pub position: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: String,
    pub event_type: String,
    /// The event's payload, JSON.
    pub payload: String,
    /// Null while no signed checkpoint covers the event yet.
    pub proof: Option<InclusionProofView>,
}

/// An RFC 6962 inclusion proof: SHA-256(0x00 || leafData) = leafHash, then `path` (hex, bottom
/// up) leads to the checkpoint's root (RFC 9162 section 2.1.3.2).
#[derive(SimpleObject)]
pub struct InclusionProofView {
    pub leaf_index: String,
    pub tree_size: String,
    /// The canonical JSON (RFC 8785) of the event's columns, its payload and metadata by their
    /// SHA-256.
    pub leaf_data: String,
    pub leaf_hash: String,
    pub path: Vec<String>,
    pub root_hash: String,
}

/// A producer's statement events with their proofs.
#[derive(SimpleObject)]
pub struct StatementProofs {
    /// The checkpoint the proofs lead to (null: none signed yet).
    pub checkpoint: Option<SealCheckpoint>,
    pub events: Vec<StatementEventProof>,
    /// More events follow the last: ask again with its sequence as `afterSequence`.
    pub has_more: bool,
}

#[derive(Default)]
pub struct ReadQuery;

const PRODUCER_OR_AUDITOR: RoleGuard = RoleGuard(&[Role::Producer, Role::Auditor]);
const AUDITOR: RoleGuard = RoleGuard(&[Role::Auditor]);

/// Connections take `after`, `before`, `first`, `last` besides their filters.
#[allow(clippy::too_many_arguments)]
#[Object]
impl ReadQuery {
    /// R-SAL-5: the recap of a sale for one catalog (`catalogId`), or for every catalog the
    /// caller may see (a producer: theirs; the market's administrators and auditors: all).
    async fn order_recap(
        &self,
        ctx: &Context<'_>,
        sale_id: Uuid,
        catalog_id: Option<Uuid>,
    ) -> Result<OrderRecap> {
        let scopes = recap_scopes(ctx, SaleId(sale_id), catalog_id.map(CatalogId)).await?;
        Ok(OrderRecap::new(scopes))
    }

    /// A producer's day: every catalog of theirs in the sales distributed on `date`
    /// (Europe/Paris), across markets.
    #[graphql(guard = "PRODUCER_OR_AUDITOR")]
    async fn producer_day_recap(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        date: Date,
    ) -> Result<OrderRecap> {
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let scopes =
            order_recaps::producer_day_scopes(&app(ctx).pool, ProducerId(producer_id), date.0)
                .await
                .map_err(db)?;
        Ok(OrderRecap::new(scopes))
    }

    /// R-INV-6: the e-reporting of a producer's consumer sales: per distribution day and VAT
    /// rate, the base excl. VAT, the VAT and the number of orders (category goods), and the same
    /// as CSV for the producer's approved platform.
    #[graphql(guard = "PRODUCER_OR_AUDITOR", name = "b2cReport")]
    async fn b2c_report(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        from: Date,
        to: Date,
    ) -> Result<B2cReport> {
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let app = app(ctx);
        let days = app
            .b2c_report(ProducerId(producer_id), from.0, to.0)
            .await
            .coded()?;
        let siren = app
            .billing_identity(ProducerId(producer_id))
            .await
            .coded()?
            .map(|i| i.siren)
            .unwrap_or_default();
        let csv = etal_app::reporting::b2c_csv(&siren, &days).coded()?;
        Ok(B2cReport {
            days: days
                .into_iter()
                .map(|d| B2cDayView {
                    date: Date(d.date),
                    vat_rate: Decimal(d.vat_rate),
                    amount_excl_vat: Money(d.amount_excl_vat),
                    vat_amount: Money(d.vat_amount),
                    amount_incl_vat: Money(d.amount_incl_vat),
                    transactions: d.transactions,
                    category: etal_app::reporting::CATEGORY_GOODS.into(),
                })
                .collect(),
            csv,
        })
    }

    /// Every product of the producer (archived ones flagged) with its stock, by name.
    #[graphql(guard = "PRODUCER_OR_AUDITOR")]
    async fn stock_levels(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        #[graphql(default = false)] include_archived: bool,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<ProductStock>> {
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let rows = stock_levels::producer_stock(&app(ctx).pool, ProducerId(producer_id))
            .await
            .map_err(db)?;
        let items = rows
            .into_iter()
            .filter(|p| include_archived || !p.archived)
            .map(|p| ProductStock {
                product_id: p.stock.product.0,
                name: p.name,
                unit: p.unit,
                price_incl_vat: Money(p.price_incl_vat),
                vat_rate: Decimal(p.vat_rate),
                archived: p.archived,
                real: p.stock.real,
                ordered: p.stock.ordered,
                confirmed: p.stock.confirmed,
                available: p.stock.available,
            })
            .collect();
        paginate(items, after, before, first, last).await
    }

    /// The producer's sales per calendar year (`year`: that year only), oldest first.
    #[graphql(guard = "PRODUCER_OR_AUDITOR")]
    async fn annual_sales(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        year: Option<i32>,
    ) -> Result<Vec<AnnualSales>> {
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let pool = &app(ctx).pool;
        let rows = match year {
            Some(y) => annual_sales::annual_sales(pool, ProducerId(producer_id), y)
                .await
                .map_err(db)?
                .into_iter()
                .collect(),
            None => annual_sales::annual_sales_by_year(pool, ProducerId(producer_id))
                .await
                .map_err(db)?,
        };
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// A market's sales per ISO week (dates inclusive, at most 400 days).
    async fn market_weekly_sales(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        from: Date,
        to: Date,
    ) -> Result<Vec<WeeklySales>> {
        let (from, to) = range(from, to)?;
        market_scope(ctx, MarketId(market_id)).await?;
        let rows = dashboard::market_weekly_sales(&app(ctx).pool, MarketId(market_id), from, to)
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| WeeklySales {
                iso_year: r.iso_year,
                iso_week: r.iso_week,
                orders: r.orders,
                customers: r.customers,
                turnover_incl_vat: Money(r.turnover_incl_vat),
                turnover_excl_vat: Money(r.turnover_excl_vat),
            })
            .collect())
    }

    /// A market's sales with their orders, by date (at most 400 days).
    async fn orders_per_sale(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        from: Date,
        to: Date,
    ) -> Result<Vec<SaleOrders>> {
        let (from, to) = range(from, to)?;
        market_scope(ctx, MarketId(market_id)).await?;
        let rows = dashboard::orders_per_sale(&app(ctx).pool, MarketId(market_id), from, to)
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| SaleOrders {
                sale_id: r.sale.0,
                number: r.number,
                date: Date(r.date),
                orders: r.orders,
                customers: r.customers,
                turnover_incl_vat: Money(r.turnover_incl_vat),
            })
            .collect())
    }

    /// A market's sales per product, largest turnover first (at most 400 days): its top
    /// products, every producer's (the market's administrators and auditors).
    async fn market_product_sales(
        &self,
        ctx: &Context<'_>,
        market_id: Uuid,
        from: Date,
        to: Date,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<ProductSales>> {
        let (from, to) = range(from, to)?;
        market_scope(ctx, MarketId(market_id)).await?;
        let rows = dashboard::market_product_sales(&app(ctx).pool, MarketId(market_id), from, to)
            .await
            .map_err(db)?;
        let items = rows.into_iter().map(ProductSales::from).collect();
        paginate(items, after, before, first, last).await
    }

    /// A producer's sales per product, largest turnover first (at most 400 days).
    #[graphql(guard = "PRODUCER_OR_AUDITOR")]
    async fn producer_product_sales(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        from: Date,
        to: Date,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<ProductSales>> {
        let (from, to) = range(from, to)?;
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let rows =
            dashboard::producer_product_sales(&app(ctx).pool, ProducerId(producer_id), from, to)
                .await
                .map_err(db)?;
        let items = rows.into_iter().map(ProductSales::from).collect();
        paginate(items, after, before, first, last).await
    }

    /// A producer's sales per customer, largest turnover first (at most 400 days).
    #[graphql(guard = "PRODUCER_OR_AUDITOR")]
    async fn producer_customer_sales(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        from: Date,
        to: Date,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<CustomerSales>> {
        let (from, to) = range(from, to)?;
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let rows =
            dashboard::producer_customer_sales(&app(ctx).pool, ProducerId(producer_id), from, to)
                .await
                .map_err(db)?;
        let items = rows
            .into_iter()
            .map(|r| CustomerSales {
                customer_id: r.customer_id.0,
                customer: r.customer,
                orders: r.orders,
                turnover_incl_vat: Money(r.turnover_incl_vat),
            })
            .collect();
        paginate(items, after, before, first, last).await
    }

    /// The markets where a producer sold, largest turnover first (at most 400 days).
    #[graphql(guard = "PRODUCER_OR_AUDITOR")]
    async fn producer_markets(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        from: Date,
        to: Date,
    ) -> Result<Vec<ProducerMarket>> {
        let (from, to) = range(from, to)?;
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let rows = dashboard::producer_markets(&app(ctx).pool, ProducerId(producer_id), from, to)
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| ProducerMarket {
                market_id: r.market.0,
                name: r.name,
                amap: r.amap,
                sales: r.sales,
                orders: r.orders,
                turnover_incl_vat: Money(r.turnover_incl_vat),
                turnover_excl_vat: Money(r.turnover_excl_vat),
            })
            .collect())
    }

    /// Customers, orders and turnover per market, by name (at most 400 days): auditors and
    /// platform administrators see every market, a market administrator the markets they
    /// administer.
    #[graphql(guard = "RoleGuard(&[Role::Auditor, Role::PlatformAdmin, Role::MarketAdmin])")]
    async fn customers_per_market(
        &self,
        ctx: &Context<'_>,
        from: Date,
        to: Date,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<MarketCustomers>> {
        let (from, to) = range(from, to)?;
        let mut rows = dashboard::customers_per_market(&app(ctx).pool, from, to)
            .await
            .map_err(db)?;
        let a = actor(ctx)?;
        if a.role == Role::MarketAdmin {
            // The markets the caller administers, as the markets themselves say.
            let mine = app(ctx).mine(a.user).await.coded()?;
            let mut theirs = std::collections::BTreeSet::new();
            for (market, _) in mine.markets {
                let (_, access) = app(ctx).market_access(a, market).await.coded()?;
                if access.administrator {
                    theirs.insert(market);
                }
            }
            rows.retain(|r| theirs.contains(&r.market));
        }
        let items = rows
            .into_iter()
            .map(|r| MarketCustomers {
                market_id: r.market.0,
                name: r.name,
                customers: r.customers,
                orders: r.orders,
                turnover_incl_vat: Money(r.turnover_incl_vat),
            })
            .collect();
        paginate(items, after, before, first, last).await
    }

    /// The latest runs of `etal audit check` (R-PAY-3), newest first: when, up to which position
    /// of the log, how much was checked and the differences found. Auditors and platform
    /// administrators.
    #[graphql(guard = "RoleGuard(&[Role::Auditor, Role::PlatformAdmin])")]
    async fn audit_checks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
    ) -> Result<Vec<AuditCheck>> {
        if !(1..=100).contains(&first) {
            return Err(bad_input("first", "from 1 to 100"));
        }
        let rows = etal_app::audit::recorded_checks(&app(ctx).pool, i64::from(first))
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| AuditCheck {
                check_id: r.check_id,
                ran_at: r.ran_at,
                head_position: r.head_position,
                events: r.events,
                entries: r.entries,
                fee_lines: r.fee_lines,
                sales: r.sales,
                differences: r.differences,
                first_differences: r.first_differences,
            })
            .collect())
    }

    /// Every account's balance as of `asOf` (inclusive), and R-PAY-3's check: auditors.
    #[graphql(guard = "AUDITOR")]
    async fn ledger_balances(&self, as_of: Date) -> LedgerBalances {
        LedgerBalances { as_of: as_of.0 }
    }

    /// The journal by (date, entry id), entries with their postings, keyset-paginated:
    /// auditors.
    #[graphql(guard = "AUDITOR")]
    async fn journal(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, JournalEntry, EmptyFields, EmptyFields>> {
        if first < 1 || first as usize > MAX_PAGE {
            return Err(bad_input("first", format!("between 1 and {MAX_PAGE}")));
        }
        let cursor = match &after {
            None => None,
            Some(a) => {
                let (d, id) = a
                    .split_once('|')
                    .ok_or_else(|| bad_input("after", "a cursor of this connection"))?;
                let d = NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| bad_input("after", "a cursor of this connection"))?;
                Some((d, id.to_string()))
            }
        };
        let lines = ledger::journal(&app(ctx).pool, cursor, i64::from(first) + 1)
            .await
            .map_err(db)?;
        let mut entries: Vec<JournalEntry> = Vec::new();
        for l in lines {
            let posting = Posting {
                account: l.account,
                party: l.party,
                debit: Money(l.debit),
                credit: Money(l.credit),
            };
            match entries.last_mut() {
                Some(e) if e.entry_id == l.entry_id => e.postings.push(posting),
                _ => entries.push(JournalEntry {
                    entry_id: l.entry_id,
                    date: Date(l.entry_date),
                    description: l.description,
                    postings: vec![posting],
                }),
            }
        }
        let more = entries.len() > first as usize;
        entries.truncate(first as usize);
        let mut c = Connection::new(after.is_some(), more);
        c.edges.extend(entries.into_iter().map(|e| {
            let k = format!("{}|{}", e.date.0, e.entry_id);
            Edge::new(k, e)
        }));
        Ok(c)
    }

    /// Fees charged between `from` and `to` (at most 400 days), grouped: auditors (all, or one
    /// producer's or market's), a producer's people for `producerId` (their fees only), a
    /// market's administrators for `marketId` (the fees of their market's sales only).
    #[allow(clippy::too_many_arguments)]
    async fn fee_ledger(
        &self,
        ctx: &Context<'_>,
        grouping: FeeGrouping,
        from: Date,
        to: Date,
        producer_id: Option<Uuid>,
        market_id: Option<Uuid>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<FeeTotal>> {
        let (from, to) = range(from, to)?;
        let viewer = actor(ctx)?;
        let auditor = viewer.role == Role::Auditor;
        if let Some(p) = producer_id {
            if !auditor {
                producer_scope(ctx, ProducerId(p)).await?;
            }
        }
        if let Some(m) = market_id {
            let (market, v) = app(ctx)
                .load::<etal_domain::market::Market>(etal_domain::ids::MarketId(m))
                .await
                .coded()?;
            if v == 0 {
                return Err(super::common::app_error(etal_app::AppError::not_found(
                    "market", m,
                )));
            }
            if !auditor && !market.is_administrator(viewer.user) {
                return Err(forbidden("only the market's administrators read its fees"));
            }
        }
        if producer_id.is_none() && market_id.is_none() && !auditor {
            return Err(forbidden(
                "only auditors read every producer's fees: give your producerId or marketId",
            ));
        }
        if !matches!(
            viewer.role,
            Role::Producer | Role::Auditor | Role::MarketAdmin
        ) {
            return Err(forbidden(
                "producers, market administrators and auditors read fees",
            ));
        }
        let rows = ledger::fee_ledger_of(
            &app(ctx).pool,
            grouping.into(),
            from,
            to,
            producer_id,
            market_id,
        )
        .await
        .map_err(db)?;
        let items = rows
            .into_iter()
            .map(|r| FeeTotal {
                key: r.key,
                beneficiary: r.beneficiary,
                amount_excl_vat: Money(r.amount_excl_vat),
                vat: Money(r.vat),
                amount_incl_vat: Money(r.amount_incl_vat),
            })
            .collect();
        paginate(items, after, before, first, last).await
    }

    /// R-AUD-3: the events a producer's statements come from (their balance: credits, debits,
    /// payouts), each with its inclusion proof in the latest signed checkpoint of the sealed
    /// history. A proof holds hashes only: nothing of anyone else's events.
    #[graphql(guard = "PRODUCER_OR_AUDITOR")]
    async fn statement_proofs(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        #[graphql(default = 0)] after_sequence: i64,
        #[graphql(default = 50)] first: i32,
    ) -> Result<StatementProofs> {
        if first < 1 || first as usize > MAX_PAGE {
            return Err(bad_input("first", format!("between 1 and {MAX_PAGE}")));
        }
        if after_sequence < 0 {
            return Err(bad_input("afterSequence", "0 or more"));
        }
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let p = app(ctx)
            .statement_proofs(ProducerId(producer_id), after_sequence, first as usize)
            .await
            .coded()?;
        Ok(StatementProofs {
            checkpoint: p.checkpoint.map(Into::into),
            has_more: p.more,
            events: p
                .events
                .into_iter()
                .map(|(e, proof)| StatementEventProof {
                    position: e.position.position.to_string(),
                    aggregate_type: e.aggregate_type,
                    aggregate_id: e.aggregate_id,
                    sequence: e.sequence.to_string(),
                    event_type: e.event_type,
                    payload: e.payload.to_string(),
                    proof: proof.map(|p| InclusionProofView {
                        leaf_index: p.leaf_index.to_string(),
                        tree_size: p.tree_size.to_string(),
                        leaf_data: p.leaf_data,
                        leaf_hash: hex::encode(p.leaf_hash),
                        path: p.path.iter().map(hex::encode).collect(),
                        root_hash: hex::encode(p.root),
                    }),
                })
                .collect(),
        })
    }

    /// R-AUD-3: the latest signed checkpoint of the sealed history (null: none yet).
    async fn latest_checkpoint(&self, ctx: &Context<'_>) -> Result<Option<SealCheckpoint>> {
        Ok(app(ctx).latest_checkpoint().await.coded()?.map(Into::into))
    }

    /// A producer's balance, open credits, payouts and their statements (R-PAY-2).
    #[graphql(guard = "PRODUCER_OR_AUDITOR")]
    async fn payouts(&self, ctx: &Context<'_>, producer_id: Uuid) -> Result<Payouts> {
        producer_scope(ctx, ProducerId(producer_id)).await?;
        let (b, _) = app(ctx)
            .load::<ProducerBalance>(ProducerId(producer_id))
            .await
            .coded()?;
        Ok(payouts_view(ProducerId(producer_id), &b))
    }

    /// The event log with its metadata (who, when, idempotency key), keyset-paginated: one
    /// aggregate's events (`aggregateType` and `aggregateId`), the events recorded in
    /// [`from`, `to`), or else the global log after `afterPosition` up to `untilPosition`
    /// (inclusive), in the order the projections apply them. Auditors.
    #[graphql(guard = "AUDITOR")]
    async fn event_history(
        &self,
        ctx: &Context<'_>,
        aggregate_type: Option<String>,
        aggregate_id: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        after_position: Option<String>,
        until_position: Option<String>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, HistoryEvent, EmptyFields, EmptyFields>> {
        if first < 1 || first as usize > MAX_PAGE {
            return Err(bad_input("first", format!("between 1 and {MAX_PAGE}")));
        }
        let limit = i64::from(first);
        let pool = &app(ctx).pool;
        let bad_cursor = || bad_input("after", "a cursor of this connection");
        let by_aggregate = aggregate_type.is_some() || aggregate_id.is_some();
        let by_time = from.is_some() || to.is_some();
        let by_position = after_position.is_some() || until_position.is_some();
        if [by_aggregate, by_time, by_position]
            .iter()
            .filter(|b| **b)
            .count()
            > 1
        {
            return Err(bad_input(
                "aggregateType",
                "one of: an aggregate, a time range, a position range",
            ));
        }
        if by_aggregate {
            let (Some(t), Some(id)) = (aggregate_type, aggregate_id) else {
                return Err(bad_input(
                    "aggregateId",
                    "give both aggregateType and aggregateId",
                ));
            };
            let seq = match &after {
                None => 0,
                Some(a) => a
                    .strip_prefix("seq:")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad_cursor)?,
            };
            let page = history::by_aggregate(pool, &t, &id, seq, limit)
                .await
                .map_err(db)?;
            return Ok(history_connection(page, after.is_some(), |e| {
                format!("seq:{}", e.sequence)
            }));
        }
        if by_time {
            let (Some(from), Some(to)) = (from, to) else {
                return Err(bad_input("to", "give both from and to"));
            };
            let cursor = match &after {
                None => None,
                Some(a) => {
                    let (t, p) = a
                        .strip_prefix("time:")
                        .and_then(|s| s.rsplit_once('|'))
                        .ok_or_else(bad_cursor)?;
                    Some(history::TimeCursor {
                        recorded_at: DateTime::parse_from_rfc3339(t)
                            .map_err(|_| bad_cursor())?
                            .with_timezone(&Utc),
                        global_position: p.parse().map_err(|_| bad_cursor())?,
                    })
                }
            };
            let page = history::by_time(pool, from, to, cursor, limit)
                .await
                .map_err(db)?;
            return Ok(history_connection(page, after.is_some(), |e| {
                format!(
                    "time:{}|{}",
                    e.recorded_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    e.position.position
                )
            }));
        }
        let start = match (&after, &after_position) {
            (Some(a), _) => {
                parse_position("after", a.strip_prefix("pos:").ok_or_else(bad_cursor)?)?
            }
            (None, Some(p)) => parse_position("afterPosition", p)?,
            (None, None) => Position {
                txid: 0,
                position: 0,
            },
        };
        let until = until_position
            .as_deref()
            .map(|p| parse_position("untilPosition", p))
            .transpose()?;
        let page = history::by_position(pool, start, until, limit)
            .await
            .map_err(db)?;
        Ok(history_connection(page, after.is_some(), |e| {
            format!("pos:{}", e.position)
        }))
    }
}

#[cfg(test)]
mod tests {
    use etal_domain::money::Money as DomainMoney;
    use rust_decimal::Decimal as D;

    use super::*;
    use crate::graphql::plain::tests::assert_same_as_derived;

    fn m(s: &str) -> Money {
        Money(s.parse::<DomainMoney>().expect("money"))
    }

    fn line(n: u32, weighed: bool) -> RecapLine {
        RecapLine {
            line: n,
            catalog_id: Uuid::now_v7(),
            product_id: Uuid::now_v7(),
            name: format!("Tomates \"cœur de bœuf\" {n}"),
            unit: "kg".into(),
            quantity: i64::from(n) + 1,
            weight_kg: weighed.then(|| Decimal(D::new(1250, 3))),
            unit_price_incl_vat: m("4.20"),
            amount_incl_vat: m("5.25"),
            producer_unit_price_incl_vat: weighed.then(|| m("3.98")),
        }
    }

    #[tokio::test]
    async fn recap_lines_resolve_as_the_derived_object_does() {
        assert_same_as_derived(vec![line(1, true), line(2, false)]).await;
    }

    #[tokio::test]
    async fn recap_orders_resolve_as_the_derived_object_does() {
        let order = |lines: Vec<RecapLine>, status: PaymentStatus| CustomerRecap {
            order_id: Uuid::now_v7(),
            number: "12-003".into(),
            sale_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            customer: "erased customer".into(),
            lines,
            amount_incl_vat: m("10.50"),
            order_total: m("12.00"),
            paid: m("12.00"),
            refunded: m("1.50"),
            payment_status: status,
            balance_due: m("0.00"),
            due_at_pickup: m("0.00"),
        };
        assert_same_as_derived(vec![
            order(
                vec![line(1, false), line(2, true)],
                PaymentStatus::RefundOwed,
            ),
            order(Vec::new(), PaymentStatus::Unpaid),
        ])
        .await;
    }

    #[tokio::test]
    async fn recap_products_resolve_as_the_derived_object_does() {
        let product = |weighed: Option<Decimal>| ProductRecap {
            product_id: Uuid::now_v7(),
            name: "Miel".into(),
            unit: "pot".into(),
            vat_rate: Decimal(D::new(55, 1)),
            quantity: 7,
            orders: 3,
            weighed_kg: weighed,
            lines_to_weigh: 1,
            amount_incl_vat: m("21.00"),
            amount_excl_vat: m("19.91"),
            vat_amount: m("1.09"),
        };
        assert_same_as_derived(vec![product(None), product(Some(Decimal(D::new(3, 0))))]).await;
    }
}

/// R-INV-6: one day's consumer sales at one VAT rate.
#[derive(SimpleObject)]
#[graphql(name = "B2cDay")]
pub struct B2cDayView {
    pub date: Date,
    pub vat_rate: Decimal,
    pub amount_excl_vat: Money,
    pub vat_amount: Money,
    pub amount_incl_vat: Money,
    pub transactions: i64,
    /// TLB1: deliveries of goods.
    pub category: String,
}

/// R-INV-6: a period's e-reporting.
#[derive(SimpleObject)]
#[graphql(name = "B2cReport")]
pub struct B2cReport {
    pub days: Vec<B2cDayView>,
    /// The same, as CSV (seller SIREN, date, currency, category, rate, base, VAT, transactions).
    pub csv: String,
}

/// One run of `etal audit check`.
#[derive(SimpleObject)]
pub struct AuditCheck {
    pub check_id: Uuid,
    pub ran_at: chrono::DateTime<chrono::Utc>,
    /// The log's last position when it ran.
    pub head_position: i64,
    pub events: i64,
    pub entries: i64,
    pub fee_lines: i64,
    pub sales: i64,
    /// How many differences it found (0: the history checks out).
    pub differences: i32,
    /// The first 50, as the command printed them.
    pub first_differences: Vec<String>,
}
