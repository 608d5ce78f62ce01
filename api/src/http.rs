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

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::{verify, AuthError, JwtKey, Principal, RateLimiter};
use crate::graphql::EtalSchema;

/// HTTP-level settings, from the environment.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// ETAL_JWT_SECRET: the HS256 key (unset: every token is refused, requests are anonymous).
    pub jwt: Option<JwtKey>,
    /// ETAL_RATE_LIMIT_PER_SECOND: sustained requests per second per token (default 50).
    pub rate_per_second: u32,
    /// ETAL_RATE_LIMIT_BURST: bucket size per token (default 200).
    pub rate_burst: u32,
}

impl HttpSettings {
    pub fn from_env() -> anyhow::Result<HttpSettings> {
        let num = |name: &str, default: u32| -> anyhow::Result<u32> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{name} is invalid: {e}")),
                _ => Ok(default),
            }
        };
        Ok(HttpSettings {
            jwt: JwtKey::from_env()?,
            rate_per_second: num("ETAL_RATE_LIMIT_PER_SECOND", 50)?,
            rate_burst: num("ETAL_RATE_LIMIT_BURST", 200)?,
        })
    }
}

/// What the GraphQL handlers share.
#[derive(Clone)]
pub struct GraphqlState {
    pub schema: EtalSchema,
    pub jwt: Option<Arc<JwtKey>>,
    pub limiter: Arc<RateLimiter>,
}

impl GraphqlState {
    pub fn new(schema: EtalSchema, settings: &HttpSettings) -> Self {
        Self {
            schema,
            jwt: settings.jwt.clone().map(Arc::new),
            limiter: Arc::new(RateLimiter::new(
                settings.rate_per_second,
                settings.rate_burst,
            )),
        }
    }
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
    let key = match principal {
        Principal::Anonymous => "anonymous".to_string(),
        Principal::User(a) => format!("{:?}:{}", a.role, a.user),
    };
    if let Err(wait) = state.limiter.check(&key) {
        let mut r = respond(
            StatusCode::TOO_MANY_REQUESTS,
            media,
            &error_body(
                "RATE_LIMITED",
                "too many requests for this token; retry later",
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
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
    let principal = match admit(&state, &headers, media) {
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
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !query.contains_key("query") && wants_html {
        return Html(GraphiQLSource::build().endpoint("/graphql").finish()).into_response();
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
    let principal = match admit(&state, &headers, media) {
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
    let query = p.query.clone();
    let mut request = async_graphql::Request::new(p.query).data(principal);
    if let Some(name) = p.operation_name {
        request = request.operation_name(name);
    }
    if let Some(vars) = p.variables {
        request = request.variables(async_graphql::Variables::from_json(Value::Object(vars)));
    }
    let response = state.schema.execute(request).await;
    if response.errors.is_empty() {
        // The common case: written straight from the response, without an intermediate
        // `serde_json::Value` tree (large recaps), fields in the order asked.
        if let Ok(body) = serde_json::to_string(&response) {
            return respond_text(StatusCode::OK, media, body);
        }
    }
    // Told apart only for errors: a second parse costs every request otherwise.
    let parse_failed = async_graphql::parser::parse_query(&query).is_err();
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
    }
    let status = if request_error {
        if let Value::Object(m) = &mut body {
            m.remove("data");
        }
        match media {
            Media::GraphqlResponse => StatusCode::BAD_REQUEST,
            Media::Json => StatusCode::OK,
        }
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
    headers: HeaderMap,
) -> Response {
    let principal = match admit(&state.graphql, &headers, Media::Json) {
        Ok(p) => p,
        Err(r) => return *r,
    };
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
    let (body, content_type): (Vec<u8>, &'static str) = match file.as_str() {
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
    headers: HeaderMap,
) -> Response {
    let principal = match admit(&state.graphql, &headers, Media::Json) {
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
