//! What every area shares: the caller, coded errors, role guards, read-your-writes, paging.

use std::time::Duration;

use async_graphql::connection::{query, Connection, Edge, EmptyFields};
use async_graphql::{Context, ErrorExtensions, Guard, OutputType};
use etal_domain::{Actor, Role};
use etal_store::log::Position;

use crate::app::{App, AppError};
use crate::auth::Principal;

/// Per-schema settings the resolvers read.
#[derive(Debug, Clone, Copy)]
pub struct ApiSettings {
    /// How long a mutation waits for the projections to pass what it wrote.
    pub read_your_writes: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            read_your_writes: Duration::from_secs(2),
        }
    }
}

/// Largest page of a connection.
pub const MAX_PAGE: usize = 100;

/// An error with `extensions.code` (and more extensions when given).
pub fn coded(code: &str, message: impl Into<String>) -> async_graphql::Error {
    let code = code.to_string();
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code.clone()))
}

pub fn unauthenticated() -> async_graphql::Error {
    coded(
        "UNAUTHENTICATED",
        "authentication required: send `Authorization: Bearer <token>`",
    )
}

pub fn forbidden(message: impl Into<String>) -> async_graphql::Error {
    coded("FORBIDDEN", message)
}

pub fn bad_input(field: &str, reason: impl Into<String>) -> async_graphql::Error {
    let field = field.to_string();
    coded("BAD_USER_INPUT", format!("{field}: {}", reason.into()))
        .extend_with(|_, e| e.set("field", field.clone()))
}

/// An application error as a GraphQL error: the domain's code for refusals, the refused lines
/// of an order, the field of bad input; never internals.
pub fn app_error(e: AppError) -> async_graphql::Error {
    match e {
        AppError::BadInput { field, reason } => bad_input(&field, reason),
        AppError::OrderRefused { ref lines } => {
            let lines = lines.clone();
            coded("ORDER_REFUSED", e.to_string()).extend_with(move |_, ext| {
                let list: Vec<async_graphql::Value> = lines
                    .iter()
                    .map(|l| {
                        let mut m = async_graphql::indexmap::IndexMap::new();
                        m.insert(
                            async_graphql::Name::new("line"),
                            async_graphql::Value::from(l.line),
                        );
                        m.insert(
                            async_graphql::Name::new("product"),
                            async_graphql::Value::from(l.product.clone()),
                        );
                        m.insert(
                            async_graphql::Name::new("code"),
                            async_graphql::Value::from(l.code),
                        );
                        m.insert(
                            async_graphql::Name::new("message"),
                            async_graphql::Value::from(l.message.clone()),
                        );
                        async_graphql::Value::Object(m)
                    })
                    .collect();
                ext.set("lines", async_graphql::Value::List(list));
            })
        }
        AppError::IdempotencyKeyReused(_) => coded("CONFLICT", e.to_string())
            .extend_with(|_, ext| ext.set("reason", "IDEMPOTENCY_KEY_REUSED")),
        AppError::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            coded("INTERNAL", "internal error")
        }
        other => coded(other.code(), other.to_string()),
    }
}

/// `?`-friendly conversion of application results.
pub trait OrCoded<T> {
    fn coded(self) -> async_graphql::Result<T>;
}

impl<T> OrCoded<T> for Result<T, AppError> {
    fn coded(self) -> async_graphql::Result<T> {
        self.map_err(app_error)
    }
}

pub fn app<'a>(ctx: &Context<'a>) -> &'a App {
    ctx.data_unchecked::<App>()
}

/// The authenticated caller, or UNAUTHENTICATED.
pub fn actor(ctx: &Context<'_>) -> async_graphql::Result<Actor> {
    ctx.data_opt::<Principal>()
        .and_then(|p| p.actor())
        .ok_or_else(unauthenticated)
}

/// The application context of a request: the caller and the idempotency key.
pub fn app_ctx(ctx: &Context<'_>, key: Option<String>) -> async_graphql::Result<crate::app::Ctx> {
    let actor = actor(ctx)?;
    let mut c = crate::app::Ctx::new(actor);
    if let Some(k) = key {
        let k = k.trim().to_string();
        if k.is_empty() || k.len() > 200 || k.chars().any(|c| c.is_control()) {
            return Err(bad_input("idempotencyKey", "1 to 200 printable characters"));
        }
        c = c.with_key(k);
    }
    Ok(c)
}

/// Allows the listed roles only (UNAUTHENTICATED without a token, FORBIDDEN for other roles).
pub struct RoleGuard(pub &'static [Role]);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let a = actor(ctx)?;
        if self.0.contains(&a.role) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "the {} role may not do this",
                role_name(a.role)
            )))
        }
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Producer => "producer",
        Role::MarketAdmin => "market_admin",
        Role::Customer => "customer",
        Role::Auditor => "auditor",
        Role::PlatformAdmin => "platform_admin",
        Role::System => "system",
    }
}

/// Roles that read everything (auditors) or the configuration (platform administrators).
pub fn reads_everything(actor: Actor) -> bool {
    actor.role == Role::Auditor
}

/// Waits (bounded) until every projection has applied `position`; returns its text form.
pub async fn read_your_writes(ctx: &Context<'_>, position: Option<Position>) -> Option<String> {
    let position = position?;
    let settings = ctx.data_opt::<ApiSettings>().copied().unwrap_or_default();
    let app = app(ctx);
    let deadline = tokio::time::Instant::now() + settings.read_your_writes;
    for p in etal_projections::all() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match etal_projections::runtime::wait_until(&app.pool, p.name(), position, left).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(projection = p.name(), %position, "read-your-writes timed out");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "read-your-writes: checkpoint unreadable");
                break;
            }
        }
    }
    Some(position.to_string())
}

/// A page of `items` as a Relay connection (opaque offset cursors; at most [`MAX_PAGE`]).
pub async fn paginate<T: OutputType>(
    items: Vec<T>,
    after: Option<String>,
    before: Option<String>,
    first: Option<i32>,
    last: Option<i32>,
) -> async_graphql::Result<Connection<usize, T, EmptyFields, EmptyFields>> {
    for (name, n) in [("first", first), ("last", last)] {
        if let Some(n) = n {
            if n < 0 || n as usize > MAX_PAGE {
                return Err(bad_input(name, format!("between 0 and {MAX_PAGE}")));
            }
        }
    }
    query(
        after,
        before,
        first,
        last,
        |after: Option<usize>, before: Option<usize>, first, last| async move {
            let len = items.len();
            let mut start = after.map(|a| a + 1).unwrap_or(0).min(len);
            let mut end = before.unwrap_or(len).min(len);
            if start > end {
                start = end;
            }
            if let Some(f) = first {
                end = (start + f).min(end);
            }
            if let Some(l) = last {
                start = end.saturating_sub(l).max(start);
            }
            if first.is_none() && last.is_none() {
                end = (start + MAX_PAGE).min(end);
            }
            let mut c = Connection::new(start > 0, end < len);
            c.edges.extend(
                items
                    .into_iter()
                    .enumerate()
                    .skip(start)
                    .take(end - start)
                    .map(|(i, t)| Edge::new(i, t)),
            );
            Ok::<_, async_graphql::Error>(c)
        },
    )
    .await
    .map_err(|e| {
        if e.extensions.is_none() {
            coded("BAD_USER_INPUT", e.message)
        } else {
            e
        }
    })
}
