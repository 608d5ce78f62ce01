//! Orders: placing, adjusting, weighing, cancelling, payments at pick-up, receipts (R-ORD).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject};
use etal_domain::ids::{OrderId, ProducerId, SaleId, UserId};
use etal_domain::order::{Delivery, Line, Order, PaymentMethod};
use etal_domain::{Actor, Money as DomainMoney, Role};
use rust_decimal::Decimal as RustDecimal;
use uuid::Uuid;

use super::common::{
    actor, app, app_ctx, app_error, forbidden, read_your_writes, OrCoded, RoleGuard,
};
use super::scalars::{Decimal, Money, VatRate};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::people::ERASED;
use etal_app::AppError;

/// Display names of people in one query per request (N+1 on a sale's orders).
pub struct PeopleLoader(pub sqlx::PgPool);

impl Loader<UserId> for PeopleLoader {
    type Value = String;
    type Error = std::sync::Arc<sqlx::Error>;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, String>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows: Vec<(Uuid, Option<String>)> =
            sqlx::query_as("SELECT user_id, display_name FROM people WHERE user_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&self.0)
                .await
                .map_err(std::sync::Arc::new)?;
        let mut out: HashMap<UserId, String> =
            keys.iter().map(|k| (*k, ERASED.to_string())).collect();
        for (id, name) in rows {
            if let Some(n) = name {
                out.insert(UserId(id), n);
            }
        }
        Ok(out)
    }
}

/// How much of an order the viewer sees.
#[derive(Clone)]
enum Scope {
    /// The customer, the market's administrators, auditors.
    Whole,
    /// A producer: only their lines, no payments.
    Producers(BTreeSet<ProducerId>),
}

/// Reads an order: its customer, a producer with lines in it (their lines only), the market's
/// administrators and referents, auditors. Others: FORBIDDEN.
pub async fn order_for_read(ctx: &Context<'_>, id: OrderId) -> Result<OrderView> {
    let a = actor(ctx)?;
    let app = app(ctx);
    let (order, v) = app.load::<Order>(id).await.coded()?;
    if v == 0 || order.id().is_none() {
        return Err(app_error(AppError::not_found("order", id)));
    }
    let scope = match a.role {
        Role::Auditor => Scope::Whole,
        Role::Customer if order.customer() == a.user => Scope::Whole,
        Role::MarketAdmin => {
            let (_, access) = app.market_access(a, order.market()).await.coded()?;
            if !access.administrator && !access.referent {
                return Err(forbidden("this order is not in a market you administer"));
            }
            Scope::Whole
        }
        Role::Producer => {
            let mut mine = BTreeSet::new();
            for p in order.producers() {
                if app.producer_access(a, p).await.is_ok() {
                    mine.insert(p);
                }
            }
            if mine.is_empty() {
                return Err(forbidden("you sell nothing in this order"));
            }
            Scope::Producers(mine)
        }
        _ => return Err(forbidden("this is not your order")),
    };
    Ok(OrderView {
        id,
        order,
        scope,
        viewer: a,
    })
}

/// A customer's order for one sale (R-ORD-1).
pub struct OrderView {
    id: OrderId,
    order: Order,
    scope: Scope,
    viewer: Actor,
}

impl OrderView {
    fn visible_lines(&self) -> Vec<&Line> {
        self.order
            .lines()
            .iter()
            .filter(|l| match &self.scope {
                Scope::Whole => true,
                Scope::Producers(ps) => ps.contains(&l.producer),
            })
            .collect()
    }

    fn whole(&self) -> Result<()> {
        match self.scope {
            Scope::Whole => Ok(()),
            Scope::Producers(_) => Err(forbidden(
                "a producer sees their own lines of an order, not its payments",
            )),
        }
    }
}

#[Object(name = "Order")]
impl OrderView {
    async fn id(&self) -> Uuid {
        self.id.0
    }
    /// The short number producers write on packages (R-ORD-2).
    async fn number(&self) -> &str {
        self.order.number()
    }
    async fn sale_id(&self) -> Uuid {
        self.order.sale().0
    }
    async fn market_id(&self) -> Uuid {
        self.order.market().0
    }
    async fn customer_id(&self) -> Uuid {
        self.order.customer().0
    }
    /// The customer's name ("erased customer" once erased).
    async fn customer_name(&self, ctx: &Context<'_>) -> Result<String> {
        let loader = ctx.data_unchecked::<DataLoader<PeopleLoader>>();
        Ok(loader
            .load_one(self.order.customer())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "people loader");
                super::common::coded("INTERNAL", "internal error")
            })?
            .unwrap_or_else(|| ERASED.to_string()))
    }
    async fn cancelled(&self) -> bool {
        self.order.is_cancelled()
    }
    async fn home_delivery(&self) -> bool {
        matches!(self.order.delivery(), Delivery::Home { .. })
    }
    /// R-ORD-6: who delivers (none: a pick-up): the producer of the order's one catalog, or
    /// the market; the fee is theirs.
    async fn delivered_by(&self) -> Option<DeliveredBy> {
        match self.order.delivery() {
            Delivery::Home { by, .. } => Some(match by {
                etal_domain::order::Deliverer::Producer => DeliveredBy::Producer,
                etal_domain::order::Deliverer::Market => DeliveredBy::Market,
            }),
            Delivery::PickUp => None,
        }
    }
    /// R-ORD-6: the delivery fee, as the deliverer set it (zero for a pick-up).
    async fn delivery_fee(&self) -> Money {
        match self.order.delivery() {
            Delivery::Home { fee, .. } => Money(fee),
            Delivery::PickUp => Money(etal_domain::Money::ZERO),
        }
    }
    /// The lines the caller may see (a producer: their own).
    async fn lines(&self) -> Vec<LineView> {
        self.visible_lines()
            .into_iter()
            .cloned()
            .map(LineView)
            .collect()
    }
    /// What the customer owes, VAT included: the order's total (lines and delivery fee; zero
    /// once cancelled), or, for a producer, the total of their own lines.
    async fn total(&self) -> Money {
        if self.order.is_cancelled() {
            return Money(DomainMoney::ZERO);
        }
        match self.scope {
            Scope::Whole => Money(self.order.total()),
            Scope::Producers(_) => {
                Money(self.visible_lines().iter().map(|l| l.amount_incl_vat).sum())
            }
        }
    }
    async fn paid(&self) -> Result<Money> {
        self.whole()?;
        Ok(Money(self.order.paid()))
    }
    async fn refunded(&self) -> Result<Money> {
        self.whole()?;
        Ok(Money(self.order.refunded()))
    }
    /// What the customer still owes (collected at pick-up or charged).
    async fn balance_due(&self) -> Result<Money> {
        self.whole()?;
        Ok(Money(self.order.balance_due()))
    }
    /// Where the order's payment is: AWAITING_PAYMENT while the customer has to confirm an online
    /// payment (R-PAY-1), then PAID, PARTIALLY_PAID, UNPAID (on site: until pick-up),
    /// REFUND_OWED (more received than owed, a refund on its way) or NOTHING_DUE.
    async fn payment_state(&self) -> Result<OrderPaymentState> {
        self.whole()?;
        let o = &self.order;
        let kept = o.paid() - o.refunded();
        Ok(if !o.awaiting().is_empty() {
            OrderPaymentState::AwaitingPayment
        } else if kept > o.total() {
            OrderPaymentState::RefundOwed
        } else if o.total().is_zero() {
            OrderPaymentState::NothingDue
        } else if kept == o.total() {
            OrderPaymentState::Paid
        } else if kept.is_zero() {
            OrderPaymentState::Unpaid
        } else {
            OrderPaymentState::PartiallyPaid
        })
    }
    /// R-PAY-1: the online payment the customer has to confirm with the provider (none: paid,
    /// on-site, or nothing asked yet). `clientSecret` is the order's customer's only: their
    /// client confirms the payment with it (Stripe.js `confirmPayment`).
    async fn awaiting_payment(&self, ctx: &Context<'_>) -> Result<Option<AwaitingPaymentView>> {
        self.whole()?;
        let Some((id, a)) = self.order.awaiting().iter().next() else {
            return Ok(None);
        };
        let client_secret = if self.order.customer() == self.viewer.user {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT result->>'client_secret' FROM outbox WHERE id = $1",
            )
            .bind(a.request)
            .fetch_optional(&app(ctx).pool)
            .await
            .map_err(|_| super::common::coded("RETRYABLE", "database unavailable"))?
            .flatten()
        } else {
            None
        };
        Ok(Some(AwaitingPaymentView {
            payment_id: id.0,
            amount: Money(a.amount),
            provider_ref: a.provider_ref.clone(),
            expires_at: a.expires_at,
            failures: a.failures as i32,
            last_failure: a.last_failure.clone(),
            client_secret,
        }))
    }
    async fn payments(&self) -> Result<Vec<PaymentView>> {
        self.whole()?;
        Ok(self
            .order
            .payments()
            .iter()
            .map(|(id, r)| PaymentView {
                id: id.0,
                method: match r.method {
                    PaymentMethod::Online { .. } => PaymentKind::Online,
                    PaymentMethod::Cash => PaymentKind::Cash,
                    PaymentMethod::Cheque => PaymentKind::Cheque,
                    PaymentMethod::CardTerminal => PaymentKind::CardTerminal,
                },
                amount: Money(r.amount),
                refunded: Money(r.refunded),
            })
            .collect())
    }
    /// One receipt for the whole order (R-ORD-1): the customer, administrators, auditors.
    async fn receipt(&self) -> Result<Receipt> {
        self.whole()?;
        let mut by_rate: BTreeMap<String, (etal_domain::VatRate, DomainMoney, DomainMoney)> =
            BTreeMap::new();
        // A cancelled order owes nothing: its receipt has no line left.
        let lines: &[Line] = if self.order.is_cancelled() {
            &[]
        } else {
            self.order.lines()
        };
        for l in lines {
            let e = by_rate.entry(l.vat.to_string()).or_insert((
                l.vat,
                DomainMoney::ZERO,
                DomainMoney::ZERO,
            ));
            e.1 += l.amount_excl_vat;
            e.2 += l.vat_amount;
        }
        Ok(Receipt {
            number: self.order.number().to_string(),
            total_incl_vat: Money(self.order.total()),
            total_excl_vat: Money(lines.iter().map(|l| l.amount_excl_vat).sum()),
            vat: by_rate
                .into_values()
                .map(|(rate, base, vat)| VatLine {
                    rate: VatRate(rate),
                    base_excl_vat: Money(base),
                    vat: Money(vat),
                })
                .collect(),
            paid: Money(self.order.paid()),
            refunded: Money(self.order.refunded()),
            balance_due: Money(self.order.balance_due()),
        })
    }
    /// Whether the caller placed this order.
    async fn yours(&self) -> bool {
        self.order.customer() == self.viewer.user
    }
}

/// One line of an order.
pub struct LineView(Line);

#[Object(name = "OrderLine")]
impl LineView {
    /// The line's number in the order (adjustments and weighing name it).
    async fn line(&self) -> u32 {
        self.0.line
    }
    async fn producer_id(&self) -> Uuid {
        self.0.producer.0
    }
    async fn catalog_id(&self) -> Uuid {
        self.0.catalog.0
    }
    async fn product_id(&self) -> Uuid {
        self.0.product.0
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn unit(&self) -> &str {
        &self.0.unit
    }
    /// What the customer pays per unit (per kg for variable weight), VAT included.
    async fn unit_price_incl_vat(&self) -> Money {
        Money(self.0.unit_price_incl_vat)
    }
    /// R-CAT-2: the producer's own unit price, when the catalog adds the fees into the
    /// customer's (null: the same price).
    async fn producer_unit_price_incl_vat(&self) -> Option<Money> {
        self.0.producer_unit_price_incl_vat.map(Money)
    }
    async fn vat_rate(&self) -> VatRate {
        VatRate(self.0.vat)
    }
    async fn quantity(&self) -> i64 {
        self.0.quantity
    }
    async fn variable_weight(&self) -> bool {
        self.0.variable_weight
    }
    /// The weight recorded by the producer (R-ORD-4).
    async fn weight_kg(&self) -> Option<Decimal> {
        self.0.weight_kg.map(Decimal)
    }
    async fn amount_incl_vat(&self) -> Money {
        Money(self.0.amount_incl_vat)
    }
    async fn amount_excl_vat(&self) -> Money {
        Money(self.0.amount_excl_vat)
    }
    async fn vat_amount(&self) -> Money {
        Money(self.0.vat_amount)
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum PaymentKind {
    Online,
    Cash,
    Cheque,
    CardTerminal,
}

#[derive(SimpleObject)]
pub struct PaymentView {
    pub id: Uuid,
    pub method: PaymentKind,
    pub amount: Money,
    pub refunded: Money,
}

#[derive(SimpleObject)]
pub struct VatLine {
    pub rate: VatRate,
    pub base_excl_vat: Money,
    pub vat: Money,
}

/// The customer's receipt for the whole order.
#[derive(SimpleObject)]
pub struct Receipt {
    pub number: String,
    pub total_incl_vat: Money,
    pub total_excl_vat: Money,
    pub vat: Vec<VatLine>,
    pub paid: Money,
    pub refunded: Money,
    pub balance_due: Money,
}

#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// An order: its customer, its producers (their lines), the market's administrators,
    /// auditors.
    async fn order(&self, ctx: &Context<'_>, id: Uuid) -> Result<OrderView> {
        order_for_read(ctx, OrderId(id)).await
    }
    // EXTENSION POINT (read side): `myOrders` (the customer's orders across sales) backed by
    // an order-list projection; scope it to `actor(ctx)?.user`.
}

#[derive(InputObject)]
pub struct LineInput {
    pub catalog_id: Uuid,
    pub product_id: Uuid,
    #[graphql(validator(minimum = 1, maximum = 100000))]
    pub quantity: i64,
}

/// Home delivery to an address the customer registered (R-ORD-6), by the producer of the one
/// catalog the lines are of, at the fee that catalog sets; absent: pick-up.
#[derive(InputObject)]
pub struct DeliveryInput {
    pub address_ref: Uuid,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct OrderPayload {
    pub order_id: Uuid,
    pub position: Option<String>,
}

#[ComplexObject]
impl OrderPayload {
    async fn order(&self, ctx: &Context<'_>) -> Result<OrderView> {
        order_for_read(ctx, OrderId(self.order_id)).await
    }
}

#[derive(InputObject)]
pub struct WeightInput {
    pub order_id: Uuid,
    pub line: u32,
    pub weight_kg: Decimal,
}

/// The outcome of one weighing in a bulk entry.
#[derive(SimpleObject)]
pub struct WeightResult {
    pub order_id: Uuid,
    pub line: u32,
    pub ok: bool,
    /// The error's code when refused.
    pub code: Option<String>,
    pub message: Option<String>,
}

#[derive(SimpleObject)]
pub struct WeightsPayload {
    pub results: Vec<WeightResult>,
    pub position: Option<String>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum OnsiteMethod {
    Cash,
    Cheque,
    CardTerminal,
}

#[derive(Default)]
pub struct OrderMutation;

const CUSTOMER: RoleGuard = RoleGuard(&[Role::Customer]);
const PRODUCER: RoleGuard = RoleGuard(&[Role::Producer]);

async fn order_payload(
    ctx: &Context<'_>,
    order: Uuid,
    done: Result<etal_app::Done<()>, AppError>,
) -> Result<OrderPayload> {
    let done = done.coded()?;
    Ok(OrderPayload {
        order_id: order,
        position: read_your_writes(ctx, done.position).await,
    })
}

#[Object]
impl OrderMutation {
    /// R-ORD-1..3: a customer's order for a sale, all or nothing; ORDER_REFUSED names every
    /// refused line in `extensions.lines` (e.g. STOCK_EXHAUSTED).
    #[graphql(guard = "CUSTOMER")]
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        sale_id: Uuid,
        #[graphql(validator(min_items = 1, max_items = 500))] lines: Vec<LineInput>,
        delivery: Option<DeliveryInput>,
        idempotency_key: Option<String>,
    ) -> Result<OrderPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let lines: Vec<LineRequest> = lines
            .into_iter()
            .map(|l| LineRequest {
                catalog: l.catalog_id.into(),
                product: l.product_id.into(),
                quantity: l.quantity,
            })
            .collect();
        let delivery = match delivery {
            None => DeliveryRequest::PickUp,
            Some(d) => DeliveryRequest::Home {
                address_ref: d.address_ref,
            },
        };
        let done = app(ctx)
            .place_order(&c, SaleId(sale_id), &lines, delivery)
            .await
            .coded()?;
        Ok(OrderPayload {
            order_id: done.value.order.0,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ORD-4: a producer lowers a line after a shortage (refund follows when paid online).
    #[graphql(guard = "PRODUCER")]
    async fn adjust_quantity(
        &self,
        ctx: &Context<'_>,
        order_id: Uuid,
        line: u32,
        #[graphql(validator(minimum = 0, maximum = 100000))] quantity: i64,
        idempotency_key: Option<String>,
    ) -> Result<OrderPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .adjust_quantity(&c, OrderId(order_id), line, quantity)
            .await;
        order_payload(ctx, order_id, done).await
    }

    /// R-ORD-4: the actual weight of a variable-weight line, in kg ("1.250").
    #[graphql(guard = "PRODUCER")]
    async fn record_weight(
        &self,
        ctx: &Context<'_>,
        order_id: Uuid,
        line: u32,
        weight_kg: Decimal,
        idempotency_key: Option<String>,
    ) -> Result<OrderPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .record_weight(&c, OrderId(order_id), line, weight_kg.0)
            .await;
        order_payload(ctx, order_id, done).await
    }

    /// R-ORD-4: weighing in bulk; one result per entry, in order.
    #[graphql(guard = "PRODUCER")]
    async fn record_weights(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(min_items = 1, max_items = 500))] entries: Vec<WeightInput>,
        idempotency_key: Option<String>,
    ) -> Result<WeightsPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let list: Vec<(OrderId, u32, RustDecimal)> = entries
            .iter()
            .map(|e| (OrderId(e.order_id), e.line, e.weight_kg.0))
            .collect();
        let results = app(ctx).record_weights(&c, &list).await;
        let mut position = None;
        let mut out = Vec::with_capacity(results.len());
        for (e, r) in entries.iter().zip(results) {
            match r {
                Ok(done) => {
                    position = position.max(done.position);
                    out.push(WeightResult {
                        order_id: e.order_id,
                        line: e.line,
                        ok: true,
                        code: None,
                        message: None,
                    });
                }
                Err(err) => {
                    let g = app_error(err);
                    let code = g
                        .extensions
                        .as_ref()
                        .and_then(|x| x.get("code"))
                        .and_then(|v| match v {
                            async_graphql::Value::String(s) => Some(s.clone()),
                            _ => None,
                        });
                    out.push(WeightResult {
                        order_id: e.order_id,
                        line: e.line,
                        ok: false,
                        code,
                        message: Some(g.message),
                    });
                }
            }
        }
        Ok(WeightsPayload {
            results: out,
            position: read_your_writes(ctx, position).await,
        })
    }

    /// R-ORD-5: the customer while the period is open; a producer of the order or a market
    /// administrator after.
    #[graphql(guard = "RoleGuard(&[Role::Customer, Role::Producer, Role::MarketAdmin])")]
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        order_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<OrderPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        if c.actor.role == Role::Customer {
            // A customer cancels only their own order.
            order_for_read(ctx, OrderId(order_id)).await?;
        }
        let done = app(ctx).cancel_order(&c, OrderId(order_id)).await;
        order_payload(ctx, order_id, done).await
    }

    /// A market administrator records a payment taken at pick-up.
    #[graphql(guard = "RoleGuard(&[Role::MarketAdmin])")]
    async fn record_onsite_payment(
        &self,
        ctx: &Context<'_>,
        order_id: Uuid,
        method: OnsiteMethod,
        amount: Money,
        idempotency_key: Option<String>,
    ) -> Result<OrderPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let method = match method {
            OnsiteMethod::Cash => PaymentMethod::Cash,
            OnsiteMethod::Cheque => PaymentMethod::Cheque,
            OnsiteMethod::CardTerminal => PaymentMethod::CardTerminal,
        };
        let done = app(ctx)
            .record_onsite_payment(&c, OrderId(order_id), method, amount.0)
            .await;
        order_payload(ctx, order_id, done).await
    }
}

/// R-ORD-6: who delivers a home delivery.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum DeliveredBy {
    Producer,
    Market,
}

/// R-PAY-1: an online payment awaiting the customer's confirmation.
#[derive(async_graphql::SimpleObject)]
pub struct AwaitingPaymentView {
    pub payment_id: Uuid,
    pub amount: Money,
    /// The provider's id of it (a Stripe PaymentIntent, `pi_...`).
    pub provider_ref: String,
    /// When the order is cancelled if the payment is not confirmed.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Failed attempts the provider reported, and the last one's reason.
    pub failures: i32,
    pub last_failure: Option<String>,
    /// For the order's customer only: what their client confirms the payment with.
    pub client_secret: Option<String>,
}

/// Where an order's payment is.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum OrderPaymentState {
    AwaitingPayment,
    Paid,
    PartiallyPaid,
    Unpaid,
    RefundOwed,
    NothingDue,
}
