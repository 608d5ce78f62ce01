//! People: personal data kept outside the events (design property 10, R-ACC-6).

use async_graphql::{Context, Object, Result, SimpleObject};
use etal_domain::ids::UserId;
use etal_domain::Role;
use uuid::Uuid;

use super::common::{actor, app, forbidden, role_name, OrCoded};
use etal_app::people::PersonalData;

/// Who the token speaks for.
#[derive(SimpleObject)]
pub struct Me {
    pub user_id: Uuid,
    /// producer, market_admin, customer, auditor or platform_admin.
    pub role: String,
    pub display_name: String,
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
