//! GraphQL over HTTP (the graphql-over-http spec): POST and GET on `/graphql` with content
//! negotiation, bearer authentication and a per-token rate limit.
//!
//! - `Accept: application/graphql-response+json` gets that media type, and 400 for requests that
//!   never executed (unparsable JSON, bad parameters, GraphQL parse or validation errors, limits)
//!   without a `data` entry. `application/json` (or no Accept, or `*/*`) gets `application/json`
//!   and 200 for GraphQL errors of a well-formed request. Anything else: 406.
//! - GET runs queries only (mutations: 405); without a `query` parameter it serves GraphiQL.
//! - A bad or expired token: 401. Too many requests for one token: 429 with Retry-After.
//!   The rate limit is per process: N replicas allow N times the rate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::{verify, AuthError, JwtKey, Principal, RateLimiter};
use crate::graphql::EtalSchema;

/// The HTTP server's settings (flags or environment variables of `etal serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// The HS256 key tokens are signed with (unset: every token is refused).
    #[arg(long, env = "ETAL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Sustained requests per second per token, and per address for anonymous callers.
    #[arg(long, env = "ETAL_RATE_LIMIT_PER_SECOND", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_per_second: u32,
    /// Requests at once per token or address (the bucket's size).
    #[arg(long, env = "ETAL_RATE_LIMIT_BURST", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,
    /// Log-in attempts per minute per address on the back office.
    #[arg(long, env = "ETAL_LOGIN_RATE_PER_MINUTE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_rate_per_minute: u32,
    /// Take the caller's address from the last `X-Forwarded-For` entry (behind a proxy only).
    #[arg(long, env = "ETAL_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,
    /// A bearer token `/metrics` asks for (unset: open, for a scraper on a private network).
    #[arg(long, env = "ETAL_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Origins browsers may call the API from (comma separated, or `*`; unset: none).
    #[arg(long, env = "ETAL_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Seconds a client has to send a request's headers (also a kept-alive connection's next
    /// request); then the connection is closed.
    #[arg(long, env = "ETAL_HEADER_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub header_timeout_seconds: u64,
    /// Seconds a client has to send a request's body (408 after).
    #[arg(long, env = "ETAL_BODY_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub body_timeout_seconds: u64,
    /// Open connections at most; more wait to be accepted.
    #[arg(long, env = "ETAL_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Open websockets (subscriptions) at most; more are answered 503.
    #[arg(long, env = "ETAL_MAX_WEBSOCKETS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_websockets: u32,
    /// Seconds a websocket has to send `connection_init` (then closed with 4408).
    #[arg(long, env = "ETAL_WS_INIT_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub ws_init_timeout_seconds: u64,
    /// Bytes of a GraphQL document at most (refused before it is parsed).
    #[arg(long, env = "ETAL_MAX_QUERY_BYTES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(100..))]
    pub max_query_bytes: u32,
    /// Tokens of a GraphQL document at most (refused before it is parsed).
    #[arg(long, env = "ETAL_MAX_QUERY_TOKENS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(10..))]
    pub max_query_tokens: u32,
}

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The HS256 key (None: every token is refused, requests are anonymous).
    pub jwt: Option<JwtKey>,
    pub rate_per_second: u32,
    pub rate_burst: u32,
    pub login_per_minute: u32,
    pub trust_forwarded_for: bool,
    pub metrics_token: Option<String>,
    pub cors_origins: Vec<String>,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_websockets: usize,
    pub ws_init_timeout: Duration,
    pub max_query_bytes: usize,
    pub max_query_tokens: usize,
}

impl HttpSettings {
    pub fn from_args(a: &HttpArgs) -> anyhow::Result<HttpSettings> {
        let jwt = match a.jwt_secret.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(JwtKey::new(s.to_string())?),
            _ => None,
        };
        Ok(HttpSettings {
            jwt,
            rate_per_second: a.rate_limit_per_second,
            rate_burst: a.rate_limit_burst,
            login_per_minute: a.login_rate_per_minute,
            trust_forwarded_for: a.trust_forwarded_for,
            metrics_token: a.metrics_token.clone().filter(|t| !t.trim().is_empty()),
            cors_origins: a
                .cors_origins
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            header_timeout: Duration::from_secs(a.header_timeout_seconds),
            body_timeout: Duration::from_secs(a.body_timeout_seconds),
            max_connections: a.max_connections as usize,
            max_websockets: a.max_websockets as usize,
            ws_init_timeout: Duration::from_secs(a.ws_init_timeout_seconds),
            max_query_bytes: a.max_query_bytes as usize,
            max_query_tokens: a.max_query_tokens as usize,
        })
    }
}

/// What the GraphQL handlers share.
#[derive(Clone)]
pub struct GraphqlState {
    pub schema: EtalSchema,
    /// The same schema without the depth and complexity limits, for documents that only
    /// introspect (GraphiQL's and graphql-js's introspection query nest deeper than 12).
    pub introspection: EtalSchema,
    pub jwt: Option<Arc<JwtKey>>,
    pub limiter: Arc<RateLimiter>,
    pub trust_forwarded_for: bool,
    pub max_query_bytes: usize,
    pub max_query_tokens: usize,
    /// Open websockets, at most `max_websockets`.
    pub websockets: Arc<tokio::sync::Semaphore>,
    pub max_websockets: usize,
    pub ws_init_timeout: Duration,
}

impl GraphqlState {
    pub fn new(schema: EtalSchema, introspection: EtalSchema, settings: &HttpSettings) -> Self {
        Self {
            schema,
            introspection,
            jwt: settings.jwt.clone().map(Arc::new),
            limiter: Arc::new(RateLimiter::new(
                settings.rate_per_second,
                settings.rate_burst,
            )),
            trust_forwarded_for: settings.trust_forwarded_for,
            max_query_bytes: settings.max_query_bytes,
            max_query_tokens: settings.max_query_tokens,
            websockets: Arc::new(tokio::sync::Semaphore::new(settings.max_websockets)),
            max_websockets: settings.max_websockets,
            ws_init_timeout: settings.ws_init_timeout,
        }
    }
}

/// The caller's address: the connection's peer, or the last `X-Forwarded-For` entry when the
/// service is told to trust it (behind a proxy).
pub(crate) fn client_ip(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    trust_forwarded_for: bool,
) -> Option<std::net::IpAddr> {
    if trust_forwarded_for {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The role a principal is logged and counted as.
pub(crate) fn role_label(p: &Principal) -> &'static str {
    match p {
        Principal::Anonymous => "anonymous",
        Principal::User(a) => crate::graphql::common::role_name(a.role),
    }
}

/// The status of an answer to a request that never executed: 400 for the GraphQL response media
/// type, 200 for plain JSON (graphql-over-http).
fn request_error_status(media: Media) -> StatusCode {
    match media {
        Media::GraphqlResponse => StatusCode::BAD_REQUEST,
        Media::Json => StatusCode::OK,
    }
}

/// Counts a GraphQL document's tokens (names, numbers, strings, punctuators; commas,
/// whitespace and comments are ignored, as the grammar ignores them) in one pass, stopping at
/// `limit`: a document over the limit is refused before the parser sees it.
pub(crate) fn count_tokens(doc: &str, limit: usize) -> usize {
    let b = doc.as_bytes();
    let (mut i, mut n) = (0usize, 0usize);
    while i < b.len() && n <= limit {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            0xEF if b[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => i += 3,
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                    i += if b[i] == b'\\' && b[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
                n += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                n += 1;
            }
            b'.' if b[i..].starts_with(b"...") => {
                i += 3;
                n += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_.+-".contains(&b[i])) {
                    i += 1;
                }
                n += 1;
            }
            _ => {
                i += 1;
                n += 1;
            }
        }
    }
    n
}

/// What an operation is: its label for logs and metrics, whether it only introspects, and
/// whether its introspection is of a sane shape.
pub(crate) struct OperationFacts {
    /// `query:orderRecap`: its type and root fields (sorted, at most three shown).
    pub label: String,
    /// Only `__schema`, `__type` and `__typename` at the root.
    pub introspection_only: bool,
    /// Introspection nests at most [`MAX_INTROSPECTION_LISTS`] lists of the schema (`types`
    /// then `fields` then `args`, as the standard introspection query does) and
    /// [`MAX_INTROSPECTION_DEPTH`] levels: `fields { type { fields { type { ... } } } }` would
    /// multiply the answer by the schema's size at each level.
    pub introspection_bounded: bool,
}

/// See [`OperationFacts::introspection_bounded`].
pub(crate) const MAX_INTROSPECTION_LISTS: usize = 3;
pub(crate) const MAX_INTROSPECTION_DEPTH: usize = 24;

/// The [`OperationFacts`] of the operation `operation_name` picks (None: it names none, or
/// a fragment is missing: the executor will say so).
pub(crate) fn describe_operation(
    doc: &async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<OperationFacts> {
    use async_graphql::parser::types::{DocumentOperations, Selection, SelectionSet};
    const LISTS: [&str; 8] = [
        "types",
        "fields",
        "args",
        "inputFields",
        "interfaces",
        "possibleTypes",
        "enumValues",
        "directives",
    ];
    let op = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        _ => return None,
    };
    let ty = match op.node.ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    };
    let mut roots = Vec::new();
    let mut introspection_only = true;
    let mut bounded = true;
    // (selection set, depth, inside introspection, lists nested)
    let mut pending: Vec<(&SelectionSet, usize, bool, usize)> =
        vec![(&op.node.selection_set.node, 0, false, 0)];
    let mut steps = 0usize;
    while let Some((set, depth, inside, lists)) = pending.pop() {
        for item in &set.items {
            steps += 1;
            if steps > 100_000 {
                return None;
            }
            match &item.node {
                Selection::Field(f) => {
                    let name = f.node.name.node.as_str();
                    if depth == 0 {
                        if !name.starts_with("__") {
                            introspection_only = false;
                        }
                        if name != "__typename" {
                            roots.push(name.to_string());
                        }
                    }
                    let inside = inside || name == "__schema" || name == "__type";
                    let lists = lists + usize::from(inside && LISTS.contains(&name));
                    if inside
                        && (lists > MAX_INTROSPECTION_LISTS || depth + 1 > MAX_INTROSPECTION_DEPTH)
                    {
                        bounded = false;
                    }
                    if bounded {
                        pending.push((&f.node.selection_set.node, depth + 1, inside, lists));
                    }
                }
                Selection::InlineFragment(f) => {
                    pending.push((&f.node.selection_set.node, depth, inside, lists))
                }
                Selection::FragmentSpread(s) => match doc.fragments.get(&s.node.fragment_name.node)
                {
                    Some(frag) => {
                        pending.push((&frag.node.selection_set.node, depth, inside, lists))
                    }
                    None => return None,
                },
            }
        }
    }
    roots.sort();
    roots.dedup();
    if roots.is_empty() {
        roots.push("__typename".into());
    }
    let shown: Vec<&str> = roots.iter().take(3).map(String::as_str).collect();
    let more = if roots.len() > 3 { "+..." } else { "" };
    Some(OperationFacts {
        label: format!("{ty}:{}{more}", shown.join("+")),
        introspection_only,
        introspection_bounded: bounded,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Media {
    GraphqlResponse,
    Json,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        }
    }
}

/// Picks the response media type from Accept (None: nothing acceptable).
fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Media::Json);
    };
    if accept.trim().is_empty() {
        return Some(Media::Json);
    }
    let mut best: Option<(f32, Media)> = None;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let mt = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut charset_ok = true;
        for p in it {
            let p = p.trim().to_ascii_lowercase();
            if let Some(v) = p.strip_prefix("q=") {
                q = v.parse().unwrap_or(0.0);
            } else if let Some(v) = p.strip_prefix("charset=") {
                charset_ok = v == "utf-8" || v == "utf8";
            }
        }
        let media = match mt.as_str() {
            "application/graphql-response+json" => Media::GraphqlResponse,
            "application/json" | "application/*" | "*/*" => Media::Json,
            _ => continue,
        };
        if q <= 0.0 || !charset_ok {
            continue;
        }
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, media));
        }
    }
    best.map(|(_, m)| m)
}

fn error_body(code: &str, message: &str) -> Value {
    json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}

fn respond(status: StatusCode, media: Media, body: &Value) -> Response {
    respond_text(status, media, body.to_string())
}

fn respond_text(status: StatusCode, media: Media, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    r
}

/// Authenticates and rate-limits; Err is the response to send.
pub(crate) fn admit(
    state: &GraphqlState,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
    media: Media,
) -> Result<Principal, Box<Response>> {
    let principal = match headers.get(header::AUTHORIZATION) {
        None => Principal::Anonymous,
        Some(v) => {
            let outcome = v
                .to_str()
                .ok()
                .and_then(|s| {
                    let (scheme, token) = s.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .ok_or(AuthError::Malformed)
                .and_then(|token| match &state.jwt {
                    None => Err(AuthError::NoKey),
                    Some(key) => verify(key, token),
                });
            match outcome {
                Ok(actor) => Principal::User(actor),
                Err(e) => {
                    let mut r = respond(
                        StatusCode::UNAUTHORIZED,
                        media,
                        &error_body("UNAUTHENTICATED", &e.to_string()),
                    );
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                    return Err(Box::new(r));
                }
            }
        }
    };
    // Per token; anonymous callers per address (all of them in one bucket when the address
    // is unknown, e.g. a test's in-process router).
    let key = match principal {
        Principal::Anonymous => match ip {
            Some(ip) => format!("ip:{ip}"),
            None => "anonymous".to_string(),
        },
        Principal::User(a) => format!("{:?}:{}", a.role, a.user),
    };
    if let Err(wait) = state.limiter.check(&key) {
        let mut r = respond(
            StatusCode::TOO_MANY_REQUESTS,
            media,
            &error_body(
                "RATE_LIMITED",
                "too many requests for this caller; retry later",
            ),
        );
        let secs = wait.max(Duration::from_secs(1)).as_secs().to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(Box::new(r));
    }
    Ok(principal)
}

/// The parameters of a GraphQL request, checked.
struct Params {
    query: String,
    operation_name: Option<String>,
    variables: Option<serde_json::Map<String, Value>>,
}

fn params_from_json(body: Value) -> Result<Params, &'static str> {
    let Value::Object(mut map) = body else {
        return Err("the request body must be a JSON object");
    };
    let query = match map.remove("query") {
        Some(Value::String(q)) => q,
        Some(_) => return Err("{query} must be a string"),
        None => return Err("the {query} parameter is missing"),
    };
    let operation_name = match map.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err("{operationName} must be a string"),
    };
    let variables = match map.remove("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err("{variables} must be a map"),
    };
    match map.remove("extensions") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err("{extensions} must be a map"),
    }
    Ok(Params {
        query,
        operation_name,
        variables,
    })
}

/// POST /graphql
pub async fn graphql_post(
    State(state): State<GraphqlState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = client_ip(&extensions, &headers, state.trust_forwarded_for);
    let Some(media) = negotiate(&headers) else {
        return respond(
            StatusCode::NOT_ACCEPTABLE,
            Media::Json,
            &error_body(
                "NOT_ACCEPTABLE",
                "accept application/graphql-response+json or application/json",
            ),
        );
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut ct = content_type.split(';');
    let json_body = ct.next().map(str::trim) == Some("application/json")
        && ct.all(|p| {
            let p = p.trim();
            !p.starts_with("charset=") || p == "charset=utf-8" || p == "charset=utf8"
        });
    if !json_body {
        return respond(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            &error_body(
                "BAD_REQUEST",
                "send the request as application/json (utf-8)",
            ),
        );
    }
    let principal = match admit(&state, &headers, ip, media) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let parsed = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => v,
        Err(_) => {
            return respond(
                StatusCode::BAD_REQUEST,
                media,
                &error_body("BAD_REQUEST", "the request body is not valid JSON"),
            )
        }
    };
    match params_from_json(parsed) {
        Ok(p) => execute(&state, principal, media, p).await,
        Err(m) => respond(
            StatusCode::BAD_REQUEST,
            media,
            &error_body("BAD_REQUEST", m),
        ),
    }
}

/// GET /graphql: queries as URL parameters, or GraphiQL for a browser.
pub async fn graphql_get(
    State(state): State<GraphqlState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let ip = client_ip(&extensions, &headers, state.trust_forwarded_for);
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !query.contains_key("query") && wants_html {
        return crate::assets::graphiql_page().into_response();
    }
    let Some(media) = negotiate(&headers) else {
        return respond(
            StatusCode::NOT_ACCEPTABLE,
            Media::Json,
            &error_body(
                "NOT_ACCEPTABLE",
                "accept application/graphql-response+json or application/json",
            ),
        );
    };
    let principal = match admit(&state, &headers, ip, media) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut body = serde_json::Map::new();
    for (k, v) in query {
        let value = match k.as_str() {
            "variables" | "extensions" => match serde_json::from_str::<Value>(&v) {
                Ok(v) => v,
                Err(_) => {
                    return respond(
                        StatusCode::BAD_REQUEST,
                        media,
                        &error_body("BAD_REQUEST", "{variables} and {extensions} must be JSON"),
                    )
                }
            },
            _ => Value::String(v),
        };
        body.insert(k, value);
    }
    let params = match params_from_json(Value::Object(body)) {
        Ok(p) => p,
        Err(m) => {
            return respond(
                StatusCode::BAD_REQUEST,
                media,
                &error_body("BAD_REQUEST", m),
            )
        }
    };
    // Mutations only over POST.
    if let Ok(doc) = async_graphql::parser::parse_query(&params.query) {
        let op = match &params.operation_name {
            Some(name) => doc
                .operations
                .iter()
                .find(|(n, _)| n.map(|n| n.as_str()) == Some(name.as_str()))
                .map(|(_, o)| o.node.ty),
            None => doc.operations.iter().next().map(|(_, o)| o.node.ty),
        };
        if op == Some(OperationType::Mutation) {
            let mut r = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                media,
                &error_body("BAD_REQUEST", "mutations are sent with POST"),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
    }
    execute(&state, principal, media, params).await
}

async fn execute(state: &GraphqlState, principal: Principal, media: Media, p: Params) -> Response {
    let mut facts = crate::observe::RequestFacts {
        operation_name: p.operation_name.clone(),
        role: Some(role_label(&principal).to_string()),
        ..Default::default()
    };
    let mut response = execute_counted(state, principal, media, p, &mut facts).await;
    if let Some(code) = &facts.error_code {
        metrics::counter!(
            "etal_graphql_errors_total",
            "operation" => facts.operation.clone().unwrap_or_else(|| "unparsed".into()),
            "code" => code.clone(),
        )
        .increment(1);
    }
    response.extensions_mut().insert(facts);
    response
}

async fn execute_counted(
    state: &GraphqlState,
    principal: Principal,
    media: Media,
    p: Params,
    facts: &mut crate::observe::RequestFacts,
) -> Response {
    // Bounded before parsing: a document of 50,000 aliases costs the parser and the validator
    // a third of a second of CPU; its size and token count cost microseconds.
    if p.query.len() > state.max_query_bytes
        || count_tokens(&p.query, state.max_query_tokens) > state.max_query_tokens
    {
        facts.error_code = Some("QUERY_TOO_LARGE".into());
        return respond(
            request_error_status(media),
            media,
            &error_body(
                "QUERY_TOO_LARGE",
                &format!(
                    "the document is larger than {} bytes or {} tokens",
                    state.max_query_bytes, state.max_query_tokens
                ),
            ),
        );
    }
    let parsed = async_graphql::parser::parse_query(&p.query);
    let parse_failed = parsed.is_err();
    let mut schema = &state.schema;
    let mut request = async_graphql::Request::new(p.query).data(principal);
    if let Ok(doc) = parsed {
        if let Some(op) = describe_operation(&doc, p.operation_name.as_deref()) {
            facts.operation = Some(op.label);
            if !op.introspection_bounded {
                facts.error_code = Some("QUERY_TOO_COMPLEX".into());
                return respond(
                    request_error_status(media),
                    media,
                    &error_body(
                        "QUERY_TOO_COMPLEX",
                        &format!(
                            "introspection nests more than {MAX_INTROSPECTION_LISTS} lists or \
                             {MAX_INTROSPECTION_DEPTH} levels"
                        ),
                    ),
                );
            }
            if op.introspection_only {
                schema = &state.introspection;
            }
        }
        request.set_parsed_query(doc);
    }
    if let Some(name) = p.operation_name {
        request = request.operation_name(name);
    }
    if let Some(vars) = p.variables {
        request = request.variables(async_graphql::Variables::from_json(Value::Object(vars)));
    }
    let response = schema.execute(request).await;
    if response.errors.is_empty() {
        // The common case: written straight from the response, without an intermediate
        // `serde_json::Value` tree (large recaps), fields in the order asked.
        if let Ok(body) = serde_json::to_string(&response) {
            return respond_text(StatusCode::OK, media, body);
        }
    }
    let mut body = serde_json::to_value(&response)
        .unwrap_or_else(|_| error_body("INTERNAL", "internal error"));
    // A request that never executed: no data, errors without a path.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    if let Some(Value::Array(errors)) = body.get_mut("errors") {
        for e in errors.iter_mut() {
            classify(e, parse_failed);
        }
        facts.error_code = errors
            .first()
            .and_then(|e| e["extensions"]["code"].as_str())
            .map(str::to_string);
    }
    let status = if request_error {
        if let Value::Object(m) = &mut body {
            m.remove("data");
        }
        request_error_status(media)
    } else {
        StatusCode::OK
    };
    respond(status, media, &body)
}

/// Gives an error without a code (parse, validation, limits, coercion) the code it deserves.
fn classify(error: &mut Value, parse_failed: bool) {
    let Value::Object(e) = error else { return };
    let has_code = e.get("extensions").and_then(|x| x.get("code")).is_some();
    if has_code {
        return;
    }
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut ext = serde_json::Map::new();
    let code = if parse_failed {
        "GRAPHQL_PARSE_FAILED"
    } else if message.contains("nested too deep") || message.contains("too complex") {
        "QUERY_TOO_COMPLEX"
    } else if let Some(field) = argument_of(&message) {
        ext.insert("field".into(), Value::String(field));
        "BAD_USER_INPUT"
    } else if message.starts_with("Failed to parse") || message.contains("Invalid value for") {
        // An argument refused while resolving: name the field it belongs to.
        if let Some(Value::String(f)) = e.get("path").and_then(|p| p.as_array()?.last().cloned()) {
            ext.insert("field".into(), Value::String(f));
        }
        "BAD_USER_INPUT"
    } else {
        "GRAPHQL_VALIDATION_FAILED"
    };
    ext.insert("code".into(), Value::String(code.into()));
    match e.get_mut("extensions") {
        Some(Value::Object(m)) => m.extend(ext),
        _ => {
            e.insert("extensions".into(), Value::Object(ext));
        }
    }
}

/// The argument or variable an async-graphql coercion message names
/// (`Invalid value for argument "product.priceInclVat", ...`).
fn argument_of(message: &str) -> Option<String> {
    for marker in [
        "Invalid value for argument \"",
        "Variable \"$",
        "variable \"$",
    ] {
        if let Some(rest) = message.split_once(marker).map(|(_, r)| r) {
            if let Some((name, _)) = rest.split_once('"') {
                return Some(name.to_string());
            }
        }
    }
    None
}

/// R-INV-5: an issued document as a download: its Factur-X CII XML
/// (`/invoices/{id}/factur-x.xml`) or its Factur-X PDF/A-3 (`/invoices/{id}/factur-x.pdf`), to
/// its issuer's people, its customer and auditors, with the same bearer token and rate limit as
/// GraphQL; 404 for anyone else, as for a document that does not exist.
pub async fn invoice_file(
    axum::extract::State(state): axum::extract::State<crate::server::AppState>,
    axum::extract::Path((id, file)): axum::extract::Path<(uuid::Uuid, String)>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    let ip = client_ip(&extensions, &headers, state.graphql.trust_forwarded_for);
    let principal = match admit(&state.graphql, &headers, ip, Media::Json) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    invoice_file_as(&state, principal, id, &file).await
}

/// An invoice's file for `principal` (a bearer token's, or a back-office session's).
pub(crate) async fn invoice_file_as(
    state: &crate::server::AppState,
    principal: Principal,
    id: uuid::Uuid,
    file: &str,
) -> Response {
    let not_found = || {
        respond(
            StatusCode::NOT_FOUND,
            Media::Json,
            &error_body("NOT_FOUND", &format!("invoice {id} has no {file}")),
        )
    };
    let unavailable = || {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            Media::Json,
            &error_body("RETRYABLE", "database unavailable"),
        )
    };
    let Some(actor) = principal.actor() else {
        return respond(
            StatusCode::UNAUTHORIZED,
            Media::Json,
            &error_body("UNAUTHENTICATED", "a bearer token is required"),
        );
    };
    let invoice = etal_domain::invoice::InvoiceId(id);
    let record = match state.app.invoice_record(invoice).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(_) => return unavailable(),
    };
    if !state.app.may_read_invoice(actor, &record).await {
        return not_found();
    }
    let (body, content_type): (Vec<u8>, &'static str) = match file {
        "factur-x.xml" => (record.cii_xml.into_bytes(), "text/xml; charset=utf-8"),
        "factur-x.pdf" => match state.app.invoice_pdf(invoice).await {
            Ok(Some(pdf)) => (pdf, "application/pdf"),
            Ok(None) => return not_found(),
            Err(_) => return unavailable(),
        },
        _ => return not_found(),
    };
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}-{file}\"",
        record.number
    )) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// The books of a year as a FEC download (`/books/fec/{platform|producer id}/{year}`), to
/// whoever `fec` answers (404 for anyone else).
pub async fn fec_file(
    axum::extract::State(state): axum::extract::State<crate::server::AppState>,
    axum::extract::Path((books, year)): axum::extract::Path<(String, i32)>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    let ip = client_ip(&extensions, &headers, state.graphql.trust_forwarded_for);
    let principal = match admit(&state.graphql, &headers, ip, Media::Json) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let Some(actor) = principal.actor() else {
        return respond(
            StatusCode::UNAUTHORIZED,
            Media::Json,
            &error_body("UNAUTHENTICATED", "a bearer token is required"),
        );
    };
    let not_found = || {
        respond(
            StatusCode::NOT_FOUND,
            Media::Json,
            &error_body("NOT_FOUND", &format!("no books {books} for {year}")),
        )
    };
    let Some(which) = etal_app::books::Books::parse(&books) else {
        return not_found();
    };
    if !state.app.may_read_books(actor, which).await {
        return not_found();
    }
    let file = match state.app.fec(which, year).await {
        Ok(f) => f,
        Err(e @ (etal_app::AppError::Rejected { .. } | etal_app::AppError::BadInput { .. })) => {
            return respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                Media::Json,
                &error_body(e.code(), &e.to_string()),
            )
        }
        Err(_) => {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                Media::Json,
                &error_body("RETRYABLE", "database unavailable"),
            )
        }
    };
    let mut r = file.bytes.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=iso-8859-15"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file.file_name)) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiation_prefers_what_the_client_ranks_higher() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(negotiate(&accept("*/*")), Some(Media::Json));
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json, application/json;q=0.9"
            )),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json;q=0.5, application/json"
            )),
            Some(Media::Json)
        );
        assert_eq!(negotiate(&accept("text/html")), None);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(params_from_json(json!({"query": 1})).is_err());
        assert!(params_from_json(json!({"query": "{a}", "variables": "x"})).is_err());
        assert!(params_from_json(json!({"query": "{a}", "extensions": []})).is_err());
        assert!(
            params_from_json(json!({"query": "{a}", "variables": {}, "extensions": {}})).is_ok()
        );
    }

    #[test]
    fn coercion_messages_name_their_argument() {
        assert_eq!(
            argument_of(
                "Invalid value for argument \"product.priceInclVat\", expected type \"Money\""
            ),
            Some("product.priceInclVat".into())
        );
    }
}
