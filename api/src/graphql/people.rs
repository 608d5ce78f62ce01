//! People: personal data kept outside the events (design property 10, R-ACC-6).

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use etal_domain::ids::UserId;
use etal_domain::Role;
use uuid::Uuid;

use super::common::{actor, app, forbidden, paginate, role_name, OrCoded};
use super::scalars::Money;
use etal_app::people::PersonalData;
use etal_app::professional::ProfessionalProfile;

/// Who the token speaks for, and what they act for (as the `directory` projection knows it).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Me {
    pub user_id: Uuid,
    /// producer, market_admin, customer, auditor or platform_admin.
    pub role: String,
    pub display_name: String,
}

/// R-ORD-8: a customer buying as a business, as its invoices name it.
#[derive(SimpleObject)]
pub struct ProfessionalProfileView {
    pub company_name: String,
    pub siren: String,
    pub vat_number: Option<String>,
    pub address_line: String,
    pub postcode: String,
    pub city: String,
    pub country: String,
}

impl From<ProfessionalProfile> for ProfessionalProfileView {
    fn from(p: ProfessionalProfile) -> Self {
        ProfessionalProfileView {
            company_name: p.company_name,
            siren: p.siren,
            vat_number: p.vat_number,
            address_line: p.address_line,
            postcode: p.postcode,
            city: p.city,
            country: p.country,
        }
    }
}

#[derive(async_graphql::InputObject)]
pub struct ProfessionalProfileInput {
    #[graphql(validator(max_length = 200))]
    pub company_name: String,
    /// 9 digits, Luhn key checked.
    #[graphql(validator(max_length = 20))]
    pub siren: String,
    /// FR + key + SIREN, when the business has one.
    #[graphql(validator(max_length = 20))]
    pub vat_number: Option<String>,
    #[graphql(validator(max_length = 200))]
    pub address_line: String,
    #[graphql(validator(max_length = 20))]
    pub postcode: String,
    #[graphql(validator(max_length = 100))]
    pub city: String,
    #[graphql(default = "FR", validator(max_length = 2))]
    pub country: String,
}

#[derive(SimpleObject)]
pub struct MyProducer {
    pub producer_id: Uuid,
    /// False for a collaborator.
    pub you_own_it: bool,
}

#[derive(SimpleObject)]
pub struct MyCatalog {
    pub catalog_id: Uuid,
    pub producer_id: Uuid,
    pub name: String,
}

#[derive(SimpleObject)]
pub struct MyMarket {
    pub market_id: Uuid,
    pub name: String,
}

#[derive(SimpleObject)]
pub struct MyOrderView {
    pub order_id: Uuid,
    pub sale_id: Uuid,
    pub market_id: Uuid,
    pub number: String,
    pub total: Money,
    pub cancelled: bool,
    pub placed_at: DateTime<Utc>,
}

type Page<T> = Connection<usize, T, EmptyFields, EmptyFields>;

/// R-NOT: a kind of message and whether the caller gets it.
#[derive(SimpleObject)]
pub struct NotificationPreference {
    /// recap_ready, payout_statement, order_placed, order_changed, order_weighed,
    /// order_cancelled, order_refunded.
    pub kind: String,
    pub enabled: bool,
    /// Always sent (receipts, changes, refunds, statements): cannot be turned off.
    pub legal: bool,
}

#[ComplexObject]
impl Me {
    /// R-NOT: which messages the caller gets.
    async fn notification_preferences(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<NotificationPreference>> {
        use etal_projections::notifications::kinds;
        let off: Vec<String> = sqlx::query_scalar(
            "SELECT kind FROM notification_preferences WHERE user_id = $1 AND NOT enabled",
        )
        .bind(self.user_id)
        .fetch_all(&app(ctx).pool)
        .await
        .map_err(|e| super::common::app_error(etal_app::AppError::from(e)))?;
        Ok(kinds::ALL
            .iter()
            .map(|k| NotificationPreference {
                kind: k.to_string(),
                enabled: !off.iter().any(|o| o == k),
                legal: kinds::LEGAL.contains(k),
            })
            .collect())
    }
    /// R-ORD-8: the caller's identity as a professional customer, if it recorded one.
    async fn professional(&self, ctx: &Context<'_>) -> Result<Option<ProfessionalProfileView>> {
        Ok(app(ctx)
            .professional_profile(UserId(self.user_id))
            .await
            .coded()?
            .map(Into::into))
    }
    /// The producer accounts the caller owns or works on as a collaborator.
    async fn producer_accounts(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<MyProducer>> {
        let mine = app(ctx).mine(UserId(self.user_id)).await.coded()?;
        let items = mine
            .producers
            .into_iter()
            .map(|(p, own)| MyProducer {
                producer_id: p.0,
                you_own_it: own,
            })
            .collect();
        paginate(items, after, before, first, last).await
    }

    /// The catalogs of those accounts.
    async fn catalogs(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<MyCatalog>> {
        let mine = app(ctx).mine(UserId(self.user_id)).await.coded()?;
        let items = mine
            .catalogs
            .into_iter()
            .map(|(c, p, name)| MyCatalog {
                catalog_id: c.0,
                producer_id: p.0,
                name,
            })
            .collect();
        paginate(items, after, before, first, last).await
    }

    /// The markets the caller administers.
    async fn markets_administered(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<MyMarket>> {
        let mine = app(ctx).mine(UserId(self.user_id)).await.coded()?;
        let items = mine.markets.into_iter().map(my_market).collect();
        paginate(items, after, before, first, last).await
    }

    /// The members-only markets the caller is a member of (R-SAL-7).
    async fn memberships(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<MyMarket>> {
        let mine = app(ctx).mine(UserId(self.user_id)).await.coded()?;
        let items = mine.memberships.into_iter().map(my_market).collect();
        paginate(items, after, before, first, last).await
    }

    /// The caller's orders, latest first.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Page<MyOrderView>> {
        let orders = app(ctx).my_orders(UserId(self.user_id)).await.coded()?;
        let items = orders
            .into_iter()
            .map(|o| MyOrderView {
                order_id: o.order.0,
                sale_id: o.sale.0,
                market_id: o.market.0,
                number: o.number,
                total: Money(o.total),
                cancelled: o.cancelled,
                placed_at: o.placed_at,
            })
            .collect();
        paginate(items, after, before, first, last).await
    }
}

fn my_market((m, name): (etal_domain::ids::MarketId, String)) -> MyMarket {
    MyMarket {
        market_id: m.0,
        name,
    }
}

#[derive(SimpleObject)]
pub struct PersonPayload {
    pub user_id: Uuid,
    pub display_name: String,
    /// Personal data is not an event: always null.
    pub position: Option<String>,
}

#[derive(SimpleObject)]
pub struct AddressPayload {
    /// The reference orders use for home delivery.
    pub address_ref: Uuid,
    pub position: Option<String>,
}

#[derive(Default)]
pub struct PeopleQuery;

#[Object]
impl PeopleQuery {
    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> Result<Me> {
        let a = actor(ctx)?;
        Ok(Me {
            user_id: a.user.0,
            role: role_name(a.role).to_string(),
            display_name: app(ctx).display_name(a.user).await.coded()?,
        })
    }

    /// A person's display name: themselves, auditors and platform administrators.
    async fn display_name(&self, ctx: &Context<'_>, user_id: Uuid) -> Result<String> {
        let a = actor(ctx)?;
        if a.user.0 != user_id && !matches!(a.role, Role::Auditor | Role::PlatformAdmin) {
            return Err(forbidden("you see your own personal data only"));
        }
        app(ctx).display_name(UserId(user_id)).await.coded()
    }
}

#[derive(Default)]
pub struct PeopleMutation;

#[Object]
impl PeopleMutation {
    /// Records (or replaces) the caller's personal data.
    async fn register_person(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_length = 200))] display_name: String,
        #[graphql(validator(max_length = 320))] email: Option<String>,
        #[graphql(validator(max_length = 40))] phone: Option<String>,
        #[graphql(validator(max_length = 200))] idempotency_key: Option<String>,
    ) -> Result<PersonPayload> {
        let _ = idempotency_key; // Replacing personal data is idempotent by nature.
        let a = actor(ctx)?;
        let data = PersonalData {
            display_name,
            email,
            phone,
        };
        app(ctx).register_person(a.user, &data).await.coded()?;
        Ok(PersonPayload {
            user_id: a.user.0,
            display_name: app(ctx).display_name(a.user).await.coded()?,
            position: None,
        })
    }

    /// R-ORD-8: the caller (a customer) buys as a business: its company name, SIREN, VAT
    /// number and billing address, for the invoices of its orders; given again, replaced.
    async fn set_professional_profile(
        &self,
        ctx: &Context<'_>,
        profile: ProfessionalProfileInput,
        #[graphql(validator(max_length = 200))] idempotency_key: Option<String>,
    ) -> Result<ProfessionalProfileView> {
        let _ = idempotency_key; // Replacing the profile is idempotent by nature.
        let a = actor(ctx)?;
        let saved = app(ctx)
            .set_professional_profile(
                &etal_app::Ctx::new(a),
                ProfessionalProfile {
                    company_name: profile.company_name,
                    siren: profile.siren,
                    vat_number: profile.vat_number,
                    address_line: profile.address_line,
                    postcode: profile.postcode,
                    city: profile.city,
                    country: profile.country,
                },
            )
            .await
            .coded()?;
        Ok(saved.into())
    }

    /// R-NOT: the caller turns a kind of message on or off (the legal ones always go:
    /// NOTIFICATION_REQUIRED).
    async fn set_notification_preference(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_length = 40))] kind: String,
        enabled: bool,
    ) -> Result<bool> {
        let a = actor(ctx)?;
        app(ctx)
            .set_notification_preference(a.user, &kind, enabled)
            .await
            .coded()?;
        Ok(enabled)
    }

    /// Stores a delivery address for the caller (R-ORD-6).
    async fn add_address(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_length = 1000))] address: String,
        #[graphql(validator(max_length = 200))] idempotency_key: Option<String>,
    ) -> Result<AddressPayload> {
        let _ = idempotency_key;
        let a = actor(ctx)?;
        let address_ref = app(ctx).add_address(a.user, &address).await.coded()?;
        Ok(AddressPayload {
            address_ref,
            position: None,
        })
    }

    /// R-ACC-6: erases a person's personal data for good (themselves or a platform
    /// administrator); orders and money history stay whole.
    async fn erase_person(
        &self,
        ctx: &Context<'_>,
        user_id: Uuid,
        #[graphql(validator(max_length = 200))] idempotency_key: Option<String>,
    ) -> Result<PersonPayload> {
        let _ = idempotency_key;
        let a = actor(ctx)?;
        if a.user.0 != user_id && a.role != Role::PlatformAdmin {
            return Err(forbidden(
                "only the person or a platform administrator erases personal data",
            ));
        }
        app(ctx).erase_person(UserId(user_id)).await.coded()?;
        Ok(PersonPayload {
            user_id,
            display_name: app(ctx).display_name(UserId(user_id)).await.coded()?,
            position: None,
        })
    }
}
