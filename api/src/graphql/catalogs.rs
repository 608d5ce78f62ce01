//! Catalogs and their offers (R-CAT).

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject};
use etal_domain::account::ProducerAccount;
use etal_domain::catalog::{Catalog, Modulation, OfferTerms};
use etal_domain::ids::{CatalogId, ProducerId, ProductId};
use etal_domain::Role;
use uuid::Uuid;

use super::common::{
    actor, app, app_ctx, app_error, bad_input, forbidden, paginate, read_your_writes, OrCoded,
    RoleGuard,
};
use super::scalars::{Decimal, Money, VatRate};
use etal_app::AppError;

/// Reads a catalog: its producer's people, auditors, and market administrators (who link
/// catalogs to their markets, R-CAT-4). Customers see offers through a sale.
pub async fn catalog_for_read(ctx: &Context<'_>, id: CatalogId) -> Result<Catalog> {
    let a = actor(ctx)?;
    let app = app(ctx);
    match a.role {
        Role::Producer => {
            let c = etal_app::Ctx::new(a);
            Ok(app.catalog_access(&c, id).await.coded()?.0)
        }
        Role::Auditor | Role::MarketAdmin => {
            let (c, v) = app.load::<Catalog>(id).await.coded()?;
            if v == 0 || c.producer().is_none() {
                return Err(app_error(AppError::not_found("catalog", id)));
            }
            Ok(c)
        }
        _ => Err(forbidden("you do not see this catalog")),
    }
}

/// R-ORD-6: a producer's home delivery.
#[derive(SimpleObject)]
pub struct DeliveryOfferView {
    pub fee: Money,
    /// Orders of at least this amount are delivered free.
    pub free_above: Option<Money>,
    /// A delivered order needs at least this amount.
    pub minimum: Option<Money>,
}

#[derive(async_graphql::InputObject)]
pub struct DeliveryOfferInput {
    pub fee: Money,
    pub free_above: Option<Money>,
    pub minimum: Option<Money>,
}

/// A producer's catalog (R-CAT-1).
pub struct CatalogView {
    pub id: CatalogId,
    pub catalog: Catalog,
}

#[Object(name = "Catalog")]
impl CatalogView {
    async fn id(&self) -> Uuid {
        self.id.0
    }
    async fn name(&self) -> Option<&str> {
        self.catalog.name()
    }
    async fn producer_id(&self) -> Option<Uuid> {
        self.catalog.producer().map(|p| p.0)
    }
    /// R-ORD-6: the home delivery the producer offers for this catalog's lines (none: pick-up
    /// only).
    async fn delivery(&self) -> Option<DeliveryOfferView> {
        self.catalog
            .order_terms()
            .delivery
            .map(|d| DeliveryOfferView {
                fee: Money(d.fee),
                free_above: d.free_above.map(Money),
                minimum: d.minimum.map(Money),
            })
    }
    /// R-ORD-7: the least an order's lines of this catalog may amount to.
    async fn minimum_order(&self) -> Option<Money> {
        self.catalog.order_terms().minimum_order.map(Money)
    }
    /// R-CAT-2: the online payment fee is included in customer prices.
    async fn includes_payment_fee(&self) -> bool {
        self.catalog.fee_options().include_payment_fee
    }
    /// R-CAT-2: the platform service fee is included in customer prices.
    async fn includes_service_fee(&self) -> bool {
        self.catalog.fee_options().include_service_fee
    }
    /// R-ORD-8: the professional customers' own prices (the next sale gets them); the
    /// producer's people and auditors only.
    async fn price_lists(&self, ctx: &Context<'_>) -> Result<Vec<PriceListView>> {
        let a = actor(ctx)?;
        if !matches!(a.role, Role::Producer | Role::Auditor) {
            return Err(forbidden(
                "a price list is the producer's and its customer's",
            ));
        }
        Ok(self
            .catalog
            .price_lists()
            .iter()
            .map(|(customer, list)| PriceListView {
                customer_id: customer.0,
                prices: list
                    .iter()
                    .map(|(product, price)| ListPriceView {
                        product_id: product.0,
                        price_incl_vat: Money(*price),
                    })
                    .collect(),
            })
            .collect())
    }
    /// The current offers (the terms the next sale gets, R-CAT-3); offers of archived products
    /// are left out until the product is unarchived (R-ACC-5).
    async fn offers(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Connection<usize, OfferView, EmptyFields, EmptyFields>> {
        let account = match self.catalog.producer() {
            Some(p) => Some(app(ctx).load::<ProducerAccount>(p).await.coded()?.0),
            None => None,
        };
        let items = self
            .catalog
            .offers()
            .filter(|o| {
                account
                    .as_ref()
                    .is_some_and(|a| a.is_orderable(o.product.product))
            })
            .filter_map(|o| self.catalog.current_terms(o.product.product))
            .map(|t| OfferView(t, None))
            .collect();
        paginate(items, after, before, first, last).await
    }
}

/// R-ORD-8: a professional customer's own prices in a catalog.
#[derive(SimpleObject)]
pub struct PriceListView {
    pub customer_id: Uuid,
    pub prices: Vec<ListPriceView>,
}

#[derive(SimpleObject)]
pub struct ListPriceView {
    pub product_id: Uuid,
    pub price_incl_vat: Money,
}

#[derive(async_graphql::InputObject)]
pub struct ListPriceInput {
    pub product_id: Uuid,
    /// The customer's unit price, VAT included (per kg for variable weight).
    pub price_incl_vat: Money,
}

/// A product offered at a price.
/// An offer's terms, and what a customer pays for it in a sale (`None` outside a sale).
pub struct OfferView(pub OfferTerms, pub Option<etal_domain::Money>);

#[Object(name = "Offer")]
impl OfferView {
    async fn product_id(&self) -> Uuid {
        self.0.product.0
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn unit(&self) -> &str {
        &self.0.unit
    }
    /// The producer's unit price, VAT included (per kg for variable weight).
    async fn price_incl_vat(&self) -> Money {
        Money(self.0.price_incl_vat)
    }
    /// R-CAT-2: what a customer pays per unit in this sale: the producer's price, with the
    /// fees added when the catalog chose so (on a sale's offers; elsewhere the producer's price
    /// with the fees of the default schedule is not known: null).
    async fn customer_price_incl_vat(&self) -> Option<Money> {
        self.1.map(Money)
    }
    /// R-CAT-2: whether the catalog adds the online payment fee and the service fee into the
    /// customer's price.
    async fn includes_payment_fee(&self) -> bool {
        self.0.fees.include_payment_fee
    }
    async fn includes_service_fee(&self) -> bool {
        self.0.fees.include_service_fee
    }
    async fn vat_rate(&self) -> VatRate {
        VatRate(self.0.vat)
    }
    async fn variable_weight(&self) -> bool {
        self.0.variable_weight
    }
    async fn estimated_weight_kg(&self) -> Option<Decimal> {
        self.0.estimated_weight_kg.map(Decimal)
    }
    async fn packaging_multiple(&self) -> Option<u32> {
        self.0.packaging_multiple
    }
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// A catalog: its producer's people, auditors, market administrators.
    async fn catalog(&self, ctx: &Context<'_>, id: Uuid) -> Result<CatalogView> {
        let catalog = catalog_for_read(ctx, CatalogId(id)).await?;
        Ok(CatalogView {
            id: CatalogId(id),
            catalog,
        })
    }
}

/// What a mutation on a catalog returns.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct CatalogPayload {
    pub catalog_id: Uuid,
    pub position: Option<String>,
}

#[ComplexObject]
impl CatalogPayload {
    async fn catalog(&self, ctx: &Context<'_>) -> Result<CatalogView> {
        CatalogQuery.catalog(ctx, self.catalog_id).await
    }
}

#[derive(Default)]
pub struct CatalogMutation;

const PRODUCER: RoleGuard = RoleGuard(&[Role::Producer]);

impl CatalogMutation {
    async fn payload(
        ctx: &Context<'_>,
        catalog: Uuid,
        done: Result<etal_app::Done<()>, AppError>,
    ) -> Result<CatalogPayload> {
        let done = done.coded()?;
        Ok(CatalogPayload {
            catalog_id: catalog,
            position: read_your_writes(ctx, done.position).await,
        })
    }
}

#[Object]
impl CatalogMutation {
    /// R-CAT-1: a new catalog for a producer.
    #[graphql(guard = "PRODUCER")]
    async fn create_catalog(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        #[graphql(validator(max_length = 200))] name: String,
        idempotency_key: Option<String>,
    ) -> Result<CatalogPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .create_catalog(&c, ProducerId(producer_id), &name)
            .await
            .coded()?;
        Ok(CatalogPayload {
            catalog_id: done.value.0,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-CAT-1: offers one of the producer's products at a price.
    #[graphql(guard = "PRODUCER")]
    async fn add_offer(
        &self,
        ctx: &Context<'_>,
        catalog_id: Uuid,
        product_id: Uuid,
        price_incl_vat: Money,
        idempotency_key: Option<String>,
    ) -> Result<CatalogPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .add_offer(
                &c,
                CatalogId(catalog_id),
                ProductId(product_id),
                price_incl_vat.0,
            )
            .await;
        Self::payload(ctx, catalog_id, done).await
    }

    /// R-CAT-1: the offer leaves the catalog (a sale whose prices were frozen keeps them).
    #[graphql(guard = "PRODUCER")]
    async fn remove_offer(
        &self,
        ctx: &Context<'_>,
        catalog_id: Uuid,
        product_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<CatalogPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .remove_offer(&c, CatalogId(catalog_id), ProductId(product_id))
            .await;
        Self::payload(ctx, catalog_id, done).await
    }

    /// R-CAT-2, R-CAT-3: a new price for one offer, from the next sale on.
    #[graphql(guard = "PRODUCER")]
    async fn set_offer_price(
        &self,
        ctx: &Context<'_>,
        catalog_id: Uuid,
        product_id: Uuid,
        price_incl_vat: Money,
        idempotency_key: Option<String>,
    ) -> Result<CatalogPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_offer_price(
                &c,
                CatalogId(catalog_id),
                ProductId(product_id),
                price_incl_vat.0,
            )
            .await;
        Self::payload(ctx, catalog_id, done).await
    }

    /// R-CAT-2: every offer by a percentage (`percent: "10"`) or an amount (`amount: "-0.50"`);
    /// exactly one of them.
    #[graphql(guard = "PRODUCER")]
    async fn modulate_prices(
        &self,
        ctx: &Context<'_>,
        catalog_id: Uuid,
        percent: Option<Decimal>,
        amount: Option<Money>,
        idempotency_key: Option<String>,
    ) -> Result<CatalogPayload> {
        let modulation = match (percent, amount) {
            (Some(p), None) => Modulation::Percent(p.0),
            (None, Some(a)) => Modulation::Amount(a.0),
            _ => {
                return Err(bad_input(
                    "percent",
                    "give exactly one of percent and amount",
                ))
            }
        };
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .modulate_prices(&c, CatalogId(catalog_id), modulation)
            .await;
        Self::payload(ctx, catalog_id, done).await
    }

    /// R-ORD-6/7: the catalog's home delivery (a fee, free above an amount, a minimum for a
    /// delivery; absent: pick-up only) and minimum order, for orders placed from now on.
    #[graphql(guard = "PRODUCER")]
    async fn set_order_terms(
        &self,
        ctx: &Context<'_>,
        catalog_id: Uuid,
        delivery: Option<DeliveryOfferInput>,
        minimum_order: Option<Money>,
        idempotency_key: Option<String>,
    ) -> Result<CatalogPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let terms = etal_domain::catalog::OrderTerms {
            delivery: delivery.map(|d| etal_domain::catalog::DeliveryOffer {
                fee: d.fee.0,
                free_above: d.free_above.map(|m| m.0),
                minimum: d.minimum.map(|m| m.0),
            }),
            minimum_order: minimum_order.map(|m| m.0),
        };
        let done = app(ctx)
            .set_order_terms(&c, CatalogId(catalog_id), terms)
            .await;
        Self::payload(ctx, catalog_id, done).await
    }

    /// R-ORD-8: gives a professional customer its own prices for some offers of the catalog
    /// (replacing its list; an empty list removes it). Sales whose order period is open keep
    /// the prices they opened with (R-CAT-3).
    #[graphql(guard = "PRODUCER")]
    async fn set_price_list(
        &self,
        ctx: &Context<'_>,
        catalog_id: Uuid,
        customer_id: Uuid,
        #[graphql(validator(max_items = 1000))] prices: Vec<ListPriceInput>,
        idempotency_key: Option<String>,
    ) -> Result<CatalogPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let prices = prices
            .into_iter()
            .map(|p| (ProductId(p.product_id), p.price_incl_vat.0))
            .collect();
        let done = app(ctx)
            .set_price_list(
                &c,
                CatalogId(catalog_id),
                etal_domain::ids::UserId(customer_id),
                prices,
            )
            .await;
        Self::payload(ctx, catalog_id, done).await
    }

    /// R-CAT-2: include the online payment fee and/or the service fee in customer prices.
    #[graphql(guard = "PRODUCER")]
    async fn set_fee_options(
        &self,
        ctx: &Context<'_>,
        catalog_id: Uuid,
        payment_fee: bool,
        service_fee: bool,
        idempotency_key: Option<String>,
    ) -> Result<CatalogPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_fee_options(&c, CatalogId(catalog_id), payment_fee, service_fee)
            .await;
        Self::payload(ctx, catalog_id, done).await
    }
}
