//! Producer accounts, products and stock (R-ACC, R-STK).

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject};
use etal_domain::account::{ProducerAccount, Product, ProductDetails};
use etal_domain::config::PlanKind;
use etal_domain::ids::{ProducerId, ProductId, UserId};
use etal_domain::stock::Stock;
use etal_domain::{Actor, Role};
use uuid::Uuid;

use super::common::{
    actor, app, app_ctx, forbidden, paginate, read_your_writes, OrCoded, RoleGuard,
};
use super::scalars::{Decimal, Money, VatRate};
use etal_app::AppError;

/// A producer's plan (R-ACC-3).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::config::PlanKind")]
pub enum Plan {
    Discovery,
    Pro,
    Member,
    Flexible,
    Engaged,
}

/// How a plan's subscription is billed (R-ACC-3): every month (Pro: 39 EUR excl. VAT a month)
/// or a year at once (Pro: 12 x 29 EUR excl. VAT).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "etal_domain::config::SubscriptionBilling")]
pub enum SubscriptionBilling {
    Monthly,
    Yearly,
}

/// Reads a producer account for the caller: its owner or a collaborator, an auditor, or a
/// platform administrator (plans are configuration). Others: FORBIDDEN.
pub async fn producer_for_read(
    ctx: &Context<'_>,
    id: ProducerId,
) -> Result<(ProducerAccount, Actor)> {
    let a = actor(ctx)?;
    let app = app(ctx);
    match a.role {
        Role::Producer => Ok((app.producer_access(a, id).await.coded()?.0, a)),
        Role::Auditor | Role::PlatformAdmin => {
            let (acc, v) = app.load::<ProducerAccount>(id).await.coded()?;
            if v == 0 {
                return Err(super::common::app_error(AppError::not_found(
                    "producer", id,
                )));
            }
            Ok((acc, a))
        }
        _ => Err(forbidden("you do not act for this producer")),
    }
}

/// Whether the viewer may see the account's stock and money: its people and auditors.
fn sees_stock(viewer: Actor) -> bool {
    matches!(viewer.role, Role::Producer | Role::Auditor)
}

/// A producer account.
pub struct ProducerView {
    pub id: ProducerId,
    pub account: ProducerAccount,
    pub viewer: Actor,
}

#[Object(name = "Producer")]
impl ProducerView {
    async fn id(&self) -> Uuid {
        self.id.0
    }
    async fn owner(&self) -> Option<Uuid> {
        self.account.owner().map(|u| u.0)
    }
    /// Whether the caller is the owner.
    async fn you_own_it(&self) -> bool {
        self.account.owner() == Some(self.viewer.user)
    }
    async fn plan(&self) -> Plan {
        self.account.plan().into()
    }
    /// R-PAY-4: the bank details payouts go to (the account's people; auditors without the
    /// holder's name): the IBAN masked, and whether a recent change holds the next payout.
    async fn bank_details(&self, ctx: &Context<'_>) -> Result<Option<BankDetailsGql>> {
        if !sees_stock(self.viewer) {
            return Err(super::common::coded(
                "FORBIDDEN",
                "only the producer's people and auditors see where payouts go",
            ));
        }
        let Some(d) = app(ctx).bank_details(self.id).await.coded()? else {
            return Ok(None);
        };
        let summary = self.account.bank_details();
        Ok(Some(BankDetailsGql {
            holder: (self.viewer.role == Role::Producer).then_some(d.holder),
            masked_iban: d.masked_iban,
            bic: d.bic,
            changed_at: d.changed_at,
            confirmed: summary.is_some_and(|s| s.confirmed),
            holds_payouts_until: summary
                .filter(|s| !s.confirmed)
                .map(|s| s.changed_at + etal_domain::account::BANK_DETAILS_HOLD),
        }))
    }
    /// R-PAY-4: the Stripe Connect account payouts go to (the account's people and auditors).
    async fn payout_account(&self) -> Result<Option<&str>> {
        if !sees_stock(self.viewer) {
            return Err(super::common::coded(
                "FORBIDDEN",
                "only the producer's people and auditors see where payouts go",
            ));
        }
        Ok(self.account.payout_account())
    }
    /// How the plan's subscription is billed (plans without one: MONTHLY, nothing billed).
    /// Billing starts with the first whole month of the plan, on the 1st at 05:00 Paris time.
    async fn subscription_billing(&self) -> SubscriptionBilling {
        self.account.subscription_billing().into()
    }
    async fn charter_version(&self) -> Option<&str> {
        self.account.charter().map(|c| c.version.as_str())
    }
    async fn charter_accepted_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.account.charter().map(|c| c.at)
    }
    async fn open(&self) -> bool {
        self.account.is_open()
    }
    /// R-ACC-3: the date by which the next training must be completed to keep the plan (an
    /// Engaged account moves to the Flexible terms the day after); null when none is needed.
    async fn training_due(&self) -> Option<super::scalars::Date> {
        self.account.training_due().map(super::scalars::Date)
    }
    /// R-ACC-3: the date of the last training recorded.
    async fn last_training(&self) -> Option<super::scalars::Date> {
        self.account.last_training().map(super::scalars::Date)
    }
    /// The account's products (archived ones with `includeArchived`): its people and auditors.
    async fn products(
        &self,
        #[graphql(default = false)] include_archived: bool,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Connection<usize, ProductView, EmptyFields, EmptyFields>> {
        self.products_visible()?;
        let items = self
            .account
            .products()
            .filter(|p| include_archived || !p.archived)
            .map(|p| ProductView {
                product: p.clone(),
                viewer: self.viewer,
            })
            .collect();
        paginate(items, after, before, first, last).await
    }
    async fn product(&self, id: Uuid) -> Result<Option<ProductView>> {
        self.products_visible()?;
        Ok(self.account.product(ProductId(id)).map(|p| ProductView {
            product: p.clone(),
            viewer: self.viewer,
        }))
    }
}

impl ProducerView {
    /// Platform administrators see the account's plan and charter (configuration), not its
    /// products.
    fn products_visible(&self) -> Result<()> {
        if sees_stock(self.viewer) {
            Ok(())
        } else {
            Err(forbidden("only the producer's people see the products"))
        }
    }
}

/// A product of an account (R-ACC-5).
pub struct ProductView {
    pub product: Product,
    pub viewer: Actor,
}

#[Object(name = "Product")]
impl ProductView {
    async fn id(&self) -> Uuid {
        self.product.id.0
    }
    async fn name(&self) -> &str {
        &self.product.details.name
    }
    async fn unit(&self) -> &str {
        &self.product.details.unit
    }
    async fn price_incl_vat(&self) -> Money {
        Money(self.product.details.price_incl_vat)
    }
    async fn vat_rate(&self) -> VatRate {
        VatRate(self.product.details.vat)
    }
    async fn variable_weight(&self) -> bool {
        self.product.details.variable_weight
    }
    async fn estimated_weight_kg(&self) -> Option<Decimal> {
        self.product.details.estimated_weight_kg.map(Decimal)
    }
    async fn packaging_multiple(&self) -> Option<u32> {
        self.product.details.packaging_multiple
    }
    async fn archived(&self) -> bool {
        self.product.archived
    }
    /// The stock level (R-STK-2); the account's people and auditors only.
    async fn stock(&self, ctx: &Context<'_>) -> Result<StockLevel> {
        if !sees_stock(self.viewer) {
            return Err(forbidden("only the producer's people see the stock"));
        }
        stock_level(ctx, self.product.id).await
    }
}

/// A product's stock: real stock, units ordered and not delivered, available (R-STK-2).
#[derive(SimpleObject)]
pub struct StockLevel {
    pub product: Uuid,
    /// Null: unlimited.
    pub real: Option<i64>,
    pub ordered: i64,
    /// Null: unlimited.
    pub available: Option<i64>,
}

pub async fn stock_level(ctx: &Context<'_>, product: ProductId) -> Result<StockLevel> {
    let (s, _) = app(ctx).load::<Stock>(product).await.coded()?;
    Ok(StockLevel {
        product: product.0,
        real: s.real(),
        ordered: s.ordered(),
        available: s.available(),
    })
}

#[derive(Default)]
pub struct ProducerQuery;

#[Object]
impl ProducerQuery {
    /// A producer account: its owner and collaborators, auditors, platform administrators.
    async fn producer(&self, ctx: &Context<'_>, id: Uuid) -> Result<ProducerView> {
        let (account, viewer) = producer_for_read(ctx, ProducerId(id)).await?;
        Ok(ProducerView {
            id: ProducerId(id),
            account,
            viewer,
        })
    }

    /// A product's stock level: the producer's people and auditors.
    #[graphql(guard = "RoleGuard(&[Role::Producer, Role::Auditor])")]
    async fn stock_level(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        product_id: Uuid,
    ) -> Result<StockLevel> {
        let (account, _) = producer_for_read(ctx, ProducerId(producer_id)).await?;
        if account.product(ProductId(product_id)).is_none() {
            return Err(super::common::app_error(AppError::not_found(
                "product", product_id,
            )));
        }
        stock_level(ctx, ProductId(product_id)).await
    }
    // EXTENSION POINT (read side): `stockLevels(producerId, ...)` and `annualSales(producerId,
    // year)` backed by the stock-level and annual-sales projections; `ledger(producerId)` and
    // `payouts(producerId)` from the money branch. Scope them with `producer_for_read`.
}

/// What a mutation on an account returns.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProducerPayload {
    pub producer_id: Uuid,
    /// Global position written (read-your-writes); null when nothing was written.
    pub position: Option<String>,
}

#[ComplexObject]
impl ProducerPayload {
    async fn producer(&self, ctx: &Context<'_>) -> Result<ProducerView> {
        ProducerQuery.producer(ctx, self.producer_id).await
    }
}

/// What a mutation on a product returns.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProductPayload {
    pub producer_id: Uuid,
    pub product_id: Uuid,
    pub position: Option<String>,
}

#[ComplexObject]
impl ProductPayload {
    async fn product(&self, ctx: &Context<'_>) -> Result<Option<ProductView>> {
        let (account, viewer) = producer_for_read(ctx, ProducerId(self.producer_id)).await?;
        Ok(account
            .product(ProductId(self.product_id))
            .map(|p| ProductView {
                product: p.clone(),
                viewer,
            }))
    }
    async fn stock(&self, ctx: &Context<'_>) -> Result<StockLevel> {
        ProducerQuery
            .stock_level(ctx, self.producer_id, self.product_id)
            .await
    }
}

/// A product as the producer describes it.
#[derive(InputObject)]
pub struct ProductInput {
    #[graphql(validator(max_length = 200))]
    pub name: String,
    /// e.g. "kg", "piece", "bottle".
    #[graphql(validator(max_length = 40))]
    pub unit: String,
    pub price_incl_vat: Money,
    #[graphql(default_with = "VatRate(etal_domain::VatRate::Reduced5_5)")]
    pub vat_rate: VatRate,
    #[graphql(default = false)]
    pub variable_weight: bool,
    pub estimated_weight_kg: Option<Decimal>,
    pub packaging_multiple: Option<u32>,
}

impl From<ProductInput> for ProductDetails {
    fn from(p: ProductInput) -> Self {
        ProductDetails {
            name: p.name,
            unit: p.unit,
            price_incl_vat: p.price_incl_vat.0,
            vat: p.vat_rate.0,
            variable_weight: p.variable_weight,
            estimated_weight_kg: p.estimated_weight_kg.map(|d| d.0),
            packaging_multiple: p.packaging_multiple,
        }
    }
}

#[derive(Default)]
pub struct ProducerMutation;

const PRODUCER: RoleGuard = RoleGuard(&[Role::Producer]);

#[Object]
impl ProducerMutation {
    /// R-ACC-1: a producer opens their own account, accepting the current charter.
    #[graphql(guard = "PRODUCER")]
    async fn open_account(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_length = 40))] accepted_charter: String,
        #[graphql(default_with = "Plan::Discovery")] plan: Plan,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .open_account(&c, &accepted_charter, PlanKind::from(plan))
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id: done.value.0,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ACC-2: the owner gives a collaborator access.
    #[graphql(guard = "PRODUCER")]
    async fn grant_access(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        user_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .grant_access(&c, ProducerId(producer_id), UserId(user_id))
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-PAY-4: the owner names the producer's Stripe Connect account (`acct_...`) that payouts
    /// are transferred to (absent: none).
    #[graphql(guard = "PRODUCER")]
    async fn set_payout_account(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        #[graphql(validator(max_length = 64))] account: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_payout_account(&c, ProducerId(producer_id), account)
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-PAY-4: the owner sets the producer's bank details (holder, IBAN, BIC; checked). A
    /// change within 7 days before a payout holds it until `confirmBankDetails`.
    #[graphql(guard = "PRODUCER")]
    async fn set_bank_details(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        #[graphql(validator(max_length = 200))] holder: String,
        #[graphql(validator(max_length = 64))] iban: String,
        #[graphql(validator(max_length = 16))] bic: String,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_bank_details(&c, ProducerId(producer_id), &holder, &iban, &bic)
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-PAY-4: the owner confirms the latest bank details; a payout they held is paid now.
    #[graphql(guard = "PRODUCER")]
    async fn confirm_bank_details(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .confirm_bank_details(&c, ProducerId(producer_id))
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ACC-2: the owner takes a collaborator's access back.
    #[graphql(guard = "PRODUCER")]
    async fn revoke_access(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        user_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .revoke_access(&c, ProducerId(producer_id), UserId(user_id))
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ACC-3: a platform administrator records a training the producer completed on
    /// `completedOn` (default today, Europe/Paris; never a future date). It makes the Member
    /// plan reachable (`changePlan`) and renews an Engaged account's training.
    async fn record_training(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        completed_on: Option<super::scalars::Date>,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let app = app(ctx);
        let on = completed_on
            .map(|d| d.0)
            .unwrap_or_else(|| etal_domain::calendar::paris_date(app.now()));
        let done = app
            .record_training(&c, ProducerId(producer_id), on)
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ACC-3: a new plan on today's terms; `billing` chooses how its subscription is billed
    /// (the same plan with another billing is a change too).
    #[graphql(guard = "PRODUCER")]
    async fn change_plan(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        plan: Plan,
        #[graphql(default_with = "SubscriptionBilling::Monthly")] billing: SubscriptionBilling,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .change_plan(&c, ProducerId(producer_id), plan.into(), billing.into())
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ACC-6: the owner closes the account.
    #[graphql(guard = "PRODUCER")]
    async fn close_account(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<ProducerPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .close_account(&c, ProducerId(producer_id))
            .await
            .coded()?;
        Ok(ProducerPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ACC-5
    #[graphql(guard = "PRODUCER")]
    async fn add_product(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        product: ProductInput,
        idempotency_key: Option<String>,
    ) -> Result<ProductPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .add_product(&c, ProducerId(producer_id), product.into())
            .await
            .coded()?;
        Ok(ProductPayload {
            producer_id,
            product_id: done.value.0,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ACC-5
    #[graphql(guard = "PRODUCER")]
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        product_id: Uuid,
        product: ProductInput,
        idempotency_key: Option<String>,
    ) -> Result<ProductPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .update_product(
                &c,
                ProducerId(producer_id),
                ProductId(product_id),
                product.into(),
            )
            .await
            .coded()?;
        Ok(ProductPayload {
            producer_id,
            product_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-ACC-5: archiving removes the product from every catalog; `archived: false` restores it.
    #[graphql(guard = "PRODUCER")]
    async fn archive_product(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        product_id: Uuid,
        #[graphql(default = true)] archived: bool,
        idempotency_key: Option<String>,
    ) -> Result<ProductPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .archive_product(&c, ProducerId(producer_id), ProductId(product_id), archived)
            .await
            .coded()?;
        Ok(ProductPayload {
            producer_id,
            product_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-STK-1, R-STK-5: the real stock of a product (null: unlimited).
    #[graphql(guard = "PRODUCER")]
    async fn set_stock(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        product_id: Uuid,
        #[graphql(validator(minimum = 0, maximum = 1000000000))] real: Option<i64>,
        idempotency_key: Option<String>,
    ) -> Result<ProductPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_stock(&c, ProducerId(producer_id), ProductId(product_id), real)
            .await
            .coded()?;
        Ok(ProductPayload {
            producer_id,
            product_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }
}

/// R-PAY-4: where a producer's payouts go.
#[derive(SimpleObject)]
pub struct BankDetailsGql {
    /// The account holder (the producer's people only).
    pub holder: Option<String>,
    /// e.g. `FR76 **** **** 0189`.
    pub masked_iban: String,
    pub bic: String,
    pub changed_at: chrono::DateTime<chrono::Utc>,
    /// The owner confirmed the latest change.
    pub confirmed: bool,
    /// Until then, a payout waits for the owner's confirmation (none: nothing held).
    pub holds_payouts_until: Option<chrono::DateTime<chrono::Utc>>,
}
