//! What every area shares: the caller, coded errors, role guards, read-your-writes, paging.

use std::time::Duration;

use async_graphql::connection::{query, Connection, Edge, EmptyFields};
use async_graphql::{Context, ErrorExtensions, Guard, OutputType};
use etal_domain::{Actor, Role};
use etal_store::log::Position;

use crate::auth::Principal;
use etal_app::{App, AppError};

/// Per-schema settings the resolvers read.
#[derive(Debug, Clone, Copy)]
pub struct ApiSettings {
    /// How long a read waits for the projections to pass what was committed before it.
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
        AppError::MinimumNotReached {
            minimum, missing, ..
        } => coded("MINIMUM_ORDER_NOT_REACHED", e.to_string()).extend_with(move |_, ext| {
            ext.set("minimum", minimum.to_string());
            ext.set("missing", missing.to_string());
        }),
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
pub fn app_ctx(ctx: &Context<'_>, key: Option<String>) -> async_graphql::Result<etal_app::Ctx> {
    let actor = actor(ctx)?;
    let mut c = etal_app::Ctx::new(actor);
    if let Some(k) = key {
        let k = k.trim().to_string();
        if k.is_empty() || k.chars().count() > 200 || k.chars().any(|c| c.is_control()) {
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

/// The position a mutation wrote, in text form, recorded for the request: the projectors are
/// not waited for (reads wait, see [`super::fresh`]; a payload field that reads a projection
/// calls [`super::fresh::settled`]).
pub async fn read_your_writes(ctx: &Context<'_>, position: Option<Position>) -> Option<String> {
    let position = position?;
    if let Some(w) = ctx.data_opt::<super::fresh::Written>() {
        w.record(position);
    }
    Some(position.to_string())
}

/// The window `[start, end)` of a list of `len` items that Relay arguments select (offset
/// cursors: `after`/`before` are indices; at most [`MAX_PAGE`] without `first`/`last`).
fn window(
    len: usize,
    after: Option<usize>,
    before: Option<usize>,
    first: Option<usize>,
    last: Option<usize>,
) -> (usize, usize) {
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
    (start, end)
}

fn check_page_sizes(first: Option<i32>, last: Option<i32>) -> async_graphql::Result<()> {
    for (name, n) in [("first", first), ("last", last)] {
        if let Some(n) = n {
            if n < 0 || n as usize > MAX_PAGE {
                return Err(bad_input(name, format!("between 0 and {MAX_PAGE}")));
            }
        }
    }
    Ok(())
}

fn page_error(e: async_graphql::Error) -> async_graphql::Error {
    if e.extensions.is_none() {
        coded("BAD_USER_INPUT", e.message)
    } else {
        e
    }
}

/// A page of `items` as a Relay connection (opaque offset cursors; at most [`MAX_PAGE`]).
pub async fn paginate<T: OutputType>(
    items: Vec<T>,
    after: Option<String>,
    before: Option<String>,
    first: Option<i32>,
    last: Option<i32>,
) -> async_graphql::Result<Connection<usize, T, EmptyFields, EmptyFields>> {
    check_page_sizes(first, last)?;
    query(
        after,
        before,
        first,
        last,
        |after: Option<usize>, before: Option<usize>, first, last| async move {
            let len = items.len();
            let (start, end) = window(len, after, before, first, last);
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
    .map_err(page_error)
}

/// The same page as [`paginate`] (same cursors, same `pageInfo`) of a list the database pages:
/// `fetch(offset, limit)` returns the items from `offset` on, at most `limit`; `count()` their
/// number. Paging forward (`first`, or neither) fetches one item more than the page to know
/// whether a next page exists, and counts nothing (unless the page is past the end); `last`
/// counts first, as the window then hangs from the end of the list.
pub async fn paginate_with<T, C, CF, F, FF>(
    after: Option<String>,
    before: Option<String>,
    first: Option<i32>,
    last: Option<i32>,
    count: C,
    fetch: F,
) -> async_graphql::Result<Connection<usize, T, EmptyFields, EmptyFields>>
where
    T: OutputType,
    C: FnOnce() -> CF,
    CF: std::future::Future<Output = async_graphql::Result<usize>>,
    F: FnOnce(usize, usize) -> FF,
    FF: std::future::Future<Output = async_graphql::Result<Vec<T>>>,
{
    check_page_sizes(first, last)?;
    query(
        after,
        before,
        first,
        last,
        |after: Option<usize>, before: Option<usize>, first, last| async move {
            let edges = |start: usize, items: Vec<T>| {
                items
                    .into_iter()
                    .enumerate()
                    .map(move |(i, t)| Edge::new(start + i, t))
            };
            if last.is_some() {
                let len = count().await?;
                let (start, end) = window(len, after, before, first, last);
                let items = if end > start {
                    fetch(start, end - start).await?
                } else {
                    Vec::new()
                };
                let mut c = Connection::new(start > 0, end < len);
                c.edges.extend(edges(start, items).take(end - start));
                return Ok::<_, async_graphql::Error>(c);
            }
            // Forward: the window does not depend on the length, unless it starts past it.
            let mut start = after.map(|a| a + 1).unwrap_or(0);
            if let Some(b) = before {
                start = start.min(b);
            }
            let mut end = start + first.unwrap_or(MAX_PAGE);
            if let Some(b) = before {
                end = end.min(b);
            }
            let mut items = fetch(start, end - start + 1).await?;
            if items.is_empty() && start > 0 {
                // Past the end: an empty page; `paginate` clamps the start to the length.
                let len = count().await?;
                let (start, end) = window(len, after, before, first, last);
                return Ok(Connection::new(start > 0, end < len));
            }
            let has_next = items.len() > end - start;
            items.truncate(end - start);
            let mut c = Connection::new(start > 0, has_next);
            c.edges.extend(edges(start, items));
            Ok(c)
        },
    )
    .await
    .map_err(page_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Page = Connection<usize, u32, EmptyFields, EmptyFields>;

    fn shape(c: &Page) -> (bool, bool, Vec<(usize, u32)>) {
        (
            c.has_previous_page,
            c.has_next_page,
            c.edges.iter().map(|e| (e.cursor, e.node)).collect(),
        )
    }

    /// `paginate_with` over a database-like source answers exactly what `paginate` answers
    /// over the whole list, for every combination of arguments around the list's bounds.
    #[tokio::test]
    async fn paging_in_the_database_equals_paging_in_memory() {
        use async_graphql::connection::CursorType;
        let cursors: Vec<Option<String>> = std::iter::once(None)
            .chain((0..8usize).map(|i| Some(i.encode_cursor())))
            .collect();
        let sizes: Vec<Option<i32>> = std::iter::once(None).chain((0..5).map(Some)).collect();
        let mut checked = 0;
        for len in [0u32, 1, 3, 5, 150] {
            let items: Vec<u32> = (0..len).collect();
            for after in &cursors {
                for before in &cursors {
                    for first in &sizes {
                        for last in &sizes {
                            let want = paginate(
                                items.clone(),
                                after.clone(),
                                before.clone(),
                                *first,
                                *last,
                            )
                            .await
                            .map(|c| shape(&c))
                            .map_err(|e| e.message);
                            let items = &items;
                            let got = paginate_with(
                                after.clone(),
                                before.clone(),
                                *first,
                                *last,
                                || async move { Ok(items.len()) },
                                |offset, limit| async move {
                                    Ok(items.iter().copied().skip(offset).take(limit).collect())
                                },
                            )
                            .await
                            .map(|c| shape(&c))
                            .map_err(|e| e.message);
                            assert_eq!(
                                got, want,
                                "len {len} after {after:?} before {before:?} first {first:?} last {last:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 1000);
    }
}
