//! The back office under `/admin/` (ADR 0016): pages rendered on the server, each a GraphQL
//! query of api/admin/pages/ run on the same schema, with the same authorization, as the API
//! (the session's person in its role), and a MiniJinja template of api/admin/templates/; forms
//! post to `/admin/actions/<name>`, each a mutation of api/admin/actions/.
//!
//! - Log-in: an e-mail address gets a one-time link per role ([`etal_app::backoffice`]); the
//!   link's page asks for a click (a mail scanner that opens links does not use it up), which
//!   opens a session: a random secret in an `HttpOnly`, `SameSite=Lax` cookie scoped to
//!   `/admin` (`Secure` when ETAL_PUBLIC_URL is https), 12 h, revocable.
//! - CSRF: the forms of a session carry its token; the log-in forms carry a token that is also a
//!   `SameSite=Strict` cookie (double submit). A form without the right token changes nothing (403).
//! - Log-in attempts are limited per address (ETAL_LOGIN_RATE_PER_MINUTE): asking for links,
//!   opening one, using one.
//! - A page of something the person may not see answers 403 with the API's error, as the API
//!   does; customers have no back office.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use async_graphql::parser::types::{BaseType, ExecutableDocument};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{Datelike, Months, NaiveDate};
use etal_app::backoffice::{serves, Session};
use etal_domain::{Actor, Role};
use serde_json::{json, Value};

use crate::auth::{Principal, RateLimiter};
use crate::graphql::common::role_name;
use crate::http::{client_ip, HttpSettings};
use crate::server::AppState;

mod files {
    include!(concat!(env!("OUT_DIR"), "/admin_files.rs"));
}

const SESSION_COOKIE: &str = "etal_session";
const LOGIN_COOKIE: &str = "etal_login";

/// What the back office's handlers share besides the API's state.
#[derive(Clone)]
pub struct AdminState {
    /// Log-in attempts per address.
    pub login_limiter: Arc<RateLimiter>,
}

impl AdminState {
    pub fn new(http: &HttpSettings) -> Self {
        Self {
            login_limiter: Arc::new(RateLimiter::per_minute(http.login_per_minute)),
        }
    }
}

/// The back office's routes.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/", get(home))
        .route("/admin/login", get(login_page).post(login_request))
        .route("/admin/login/{token}", get(link_page).post(link_use))
        .route("/admin/logout", post(logout))
        .route("/admin/actions/{action}", post(action))
        .route("/admin/invoices/{id}/{file}", get(invoice_file))
        .route("/admin/assets/{file}", get(crate::assets::serve_asset));
    for (path, page) in PAGES {
        r = r.route(
            path,
            get(
                move |state: State<AppState>,
                      params: Path<HashMap<String, String>>,
                      query: Query<Vec<(String, String)>>,
                      headers: HeaderMap| async move {
                    render_page(page, state, params, query, headers).await
                },
            ),
        );
    }
    r
}

/// URL patterns and the page each shows.
const PAGES: [(&str, &str); 13] = [
    ("/admin/markets", "markets"),
    ("/admin/markets/{marketId}", "market"),
    ("/admin/sales/{saleId}", "sale"),
    ("/admin/producers", "producers"),
    ("/admin/producers/{producerId}", "producer"),
    (
        "/admin/producers/{producerId}/markets/{marketId}",
        "producer_market",
    ),
    ("/admin/producers/{producerId}/day", "day_recap"),
    ("/admin/recaps/{saleId}", "recap"),
    ("/admin/recaps/{saleId}/{catalogId}", "recap"),
    ("/admin/audit", "audit"),
    ("/admin/history", "history"),
    ("/admin/history/{aggregateType}/{aggregateId}", "history"),
    ("/admin/system", "system"),
];

/// The templates, with the filters they use.
fn environment() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for (name, text) in files::TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("the template {name} does not parse: {e}"));
        }
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        // A field a query could not give (null parts of an answer) reads as nothing.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        // The exact sum of a money field over rows ("12.30" strings): never floats.
        env.add_filter(
            "sum_money",
            |rows: minijinja::Value, field: String| -> String {
                let mut total = rust_decimal::Decimal::ZERO;
                if let Ok(items) = rows.try_iter() {
                    for row in items {
                        let value = row.get_attr(&field).unwrap_or_default();
                        if let Some(d) = value
                            .as_str()
                            .and_then(|t| t.parse::<rust_decimal::Decimal>().ok())
                        {
                            total += d;
                        }
                    }
                }
                total.rescale(2);
                total.to_string()
            },
        );
        env.add_filter("length", |v: minijinja::Value| -> usize {
            if v.is_undefined() || v.is_none() {
                0
            } else {
                v.len().unwrap_or(0)
            }
        });
        // "1234.5" -> "1 234,50 €", as on invoices and e-mails.
        env.add_filter("euros", |v: minijinja::Value| -> String {
            let text = v.to_string();
            etal_app::notify::euros(&text)
        });
        // A date or an instant -> "16/03/2026" (instants in Europe/Paris).
        env.add_filter("date", |v: minijinja::Value| -> String {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            if let Ok(d) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
                return d.format("%d/%m/%Y").to_string();
            }
            match chrono::DateTime::parse_from_rfc3339(&text) {
                Ok(t) => t
                    .with_timezone(&chrono_tz::Europe::Paris)
                    .format("%d/%m/%Y")
                    .to_string(),
                Err(_) => text,
            }
        });
        // An instant -> "16/03/2026 17:30" in Europe/Paris.
        env.add_filter("datetime", |v: minijinja::Value| -> String {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            match chrono::DateTime::parse_from_rfc3339(&text) {
                Ok(t) => t
                    .with_timezone(&chrono_tz::Europe::Paris)
                    .format("%d/%m/%Y %H:%M")
                    .to_string(),
                Err(_) => text,
            }
        });
        env
    })
}

fn file(list: &'static [(&'static str, &'static str)], name: &str) -> Option<&'static str> {
    list.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A template rendered, or a plain error page if it fails (a defect of ours, logged).
fn render(status: StatusCode, template: &str, context: Value) -> Response {
    let html = environment()
        .get_template(template)
        .and_then(|t| t.render(minijinja::Value::from_serialize(&context)));
    match html {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            security_headers(r.headers_mut());
            r
        }
        Err(e) => {
            tracing::error!(template, error = %e, "a back-office template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<p>Erreur interne : la page n'a pas pu être affichée.</p>".to_string()),
            )
                .into_response()
        }
    }
}

/// No framing by other sites, no sniffing, scripts and styles from here only.
fn security_headers(h: &mut HeaderMap) {
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn secure(state: &AppState) -> &'static str {
    if state.app.settings.mail.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

fn set_cookie(r: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Compares secrets in constant time (by digest).
fn same(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// The session of the request's cookie, with its secret.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let secret = cookie(headers, SESSION_COOKIE)?;
    match state.app.session(&secret).await {
        Ok(Some(s)) => Some((secret, s)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the back office could not read a session");
            None
        }
    }
}

async fn display_name(state: &AppState, session: &Session) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT display_name FROM people WHERE user_id = $1 AND erased_at IS NULL",
    )
    .bind(session.user.0)
    .fetch_optional(&state.pool)
    .await
    .ok()
    .flatten()
    .flatten()
}

/// Where a person lands.
fn home_of(role: Role) -> &'static str {
    match role {
        Role::MarketAdmin => "/admin/markets",
        Role::Producer => "/admin/producers",
        Role::Auditor => "/admin/audit",
        _ => "/admin/system",
    }
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session_of(&state, &headers).await {
        Some((_, s)) if serves(s.role) => Redirect::to(home_of(s.role)).into_response(),
        Some(_) => refused_role(),
        None => Redirect::to("/admin/login").into_response(),
    }
}

fn refused_role() -> Response {
    render(
        StatusCode::FORBIDDEN,
        "login.html",
        json!({"csrf": "", "message": null, "errors": [{
            "message": "Le back office est réservé aux producteurs, aux administrateurs de marché et aux auditeurs.",
            "code": "FORBIDDEN"}]}),
    )
}

/// A log-in form's token: the cookie's when it has one, else a new one to set.
fn login_token(headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, LOGIN_COOKIE) {
        Some(t) => (t, None),
        None => {
            let t = uuid::Uuid::new_v4().simple().to_string();
            (t.clone(), Some(t))
        }
    }
}

fn with_login_cookie(state: &AppState, mut r: Response, new: Option<String>) -> Response {
    if let Some(t) = new {
        set_cookie(
            &mut r,
            format!(
                "{LOGIN_COOKIE}={t}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=3600{}",
                secure(state)
            ),
        );
    }
    r
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (csrf, new) = login_token(&headers);
    let r = render(
        StatusCode::OK,
        "login.html",
        json!({"csrf": csrf, "message": null, "errors": []}),
    );
    with_login_cookie(&state, r, new)
}

/// Takes one log-in attempt for the caller's address; the page to answer when none is left.
fn limited(
    state: &AppState,
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
) -> Option<Response> {
    let ip = client_ip(extensions, headers, state.graphql.trust_forwarded_for);
    let key = format!("login:{}", ip.map(|i| i.to_string()).unwrap_or_default());
    let wait = state.admin.login_limiter.check(&key).err()?;
    tracing::warn!(ip = ?ip, "back-office log-in attempts limited");
    let mut r = render(
        StatusCode::TOO_MANY_REQUESTS,
        "login.html",
        json!({"csrf": "", "message": null, "errors": [{
            "message": "Trop de tentatives de connexion depuis cette adresse : réessayez dans une minute.",
            "code": "RATE_LIMITED"}]}),
    );
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(r)
}

fn bad_csrf() -> Response {
    render(
        StatusCode::FORBIDDEN,
        "login.html",
        json!({"csrf": "", "message": null, "errors": [{
            "message": "Formulaire expiré ou venu d'ailleurs : rechargez la page et recommencez.",
            "code": "CSRF"}]}),
    )
}

async fn login_request(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = limited(&state, &extensions, &headers) {
        return r;
    }
    let expected = cookie(&headers, LOGIN_COOKIE);
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if !expected.is_some_and(|e| same(&e, given)) {
        return bad_csrf();
    }
    let email = form.get("email").map(String::as_str).unwrap_or("");
    // The roles are read from the directory projection: as any read, after what was committed.
    crate::graphql::fresh::settle_committed(&state.app, state.api).await;
    match state.app.request_login_links(email).await {
        Ok(n) => {
            tracing::info!(links = n, "back-office log-in asked for");
            render(
                StatusCode::OK,
                "login_sent.html",
                json!({"csrf": given, "message": null, "errors": []}),
            )
        }
        Err(etal_app::AppError::BadInput { .. }) => render(
            StatusCode::BAD_REQUEST,
            "login.html",
            json!({"csrf": given, "message": null, "errors": [{
                "message": "Saisissez une adresse e-mail.", "code": "BAD_USER_INPUT"}]}),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "log-in links could not be made");
            render(
                StatusCode::SERVICE_UNAVAILABLE,
                "login.html",
                json!({"csrf": given, "message": null, "errors": [{
                    "message": "Service momentanément indisponible : réessayez.", "code": "RETRYABLE"}]}),
            )
        }
    }
}

fn bad_link() -> Response {
    render(
        StatusCode::FORBIDDEN,
        "login.html",
        json!({"csrf": "", "message": null, "errors": [{
            "message": "Ce lien de connexion est inconnu, déjà utilisé ou expiré : demandez-en un autre.",
            "code": "LINK_INVALID"}]}),
    )
}

/// GET /admin/login/{token}: the button that uses the link (a GET changes nothing).
async fn link_page(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if let Some(r) = limited(&state, &extensions, &headers) {
        return r;
    }
    match state.app.login_link_holder(&token).await {
        Ok(Some((_, role))) => {
            let (csrf, new) = login_token(&headers);
            let r = render(
                StatusCode::OK,
                "login.html",
                json!({"csrf": csrf, "errors": [], "link": {"action": format!("/admin/login/{token}"), "role": role_name(role)},
                       "message": "Cliquez pour ouvrir votre session."}),
            );
            with_login_cookie(&state, r, new)
        }
        Ok(None) => bad_link(),
        Err(e) => {
            tracing::warn!(error = %e, "a log-in link could not be read");
            bad_link()
        }
    }
}

/// POST /admin/login/{token}: uses the link, opens the session.
async fn link_use(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = limited(&state, &extensions, &headers) {
        return r;
    }
    let expected = cookie(&headers, LOGIN_COOKIE);
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if !expected.is_some_and(|e| same(&e, given)) {
        return bad_csrf();
    }
    match state.app.open_session(&token).await {
        Ok(Some((secret, session))) => {
            tracing::info!(user = %session.user.0, role = %role_name(session.role), "back-office session opened");
            let mut r = Redirect::to(home_of(session.role)).into_response();
            set_cookie(
                &mut r,
                format!(
                    "{SESSION_COOKIE}={secret}; Path=/admin; HttpOnly; SameSite=Lax; Max-Age={}{}",
                    etal_app::backoffice::SESSION_TTL.num_seconds(),
                    secure(&state)
                ),
            );
            r
        }
        Ok(None) => bad_link(),
        Err(e) => {
            tracing::warn!(error = %e, "a session could not be opened");
            bad_link()
        }
    }
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some((secret, session)) = session_of(&state, &headers).await else {
        return Redirect::to("/admin/login").into_response();
    };
    if !same(
        &session.csrf,
        form.get("csrf").map(String::as_str).unwrap_or(""),
    ) {
        return bad_csrf();
    }
    if let Err(e) = state.app.end_session(&secret).await {
        tracing::warn!(error = %e, "a session could not be ended");
    }
    let mut r = Redirect::to("/admin/login").into_response();
    set_cookie(
        &mut r,
        format!("{SESSION_COOKIE}=; Path=/admin; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    r
}

/// The declared variables of an operation: name -> (base type name, nullable).
fn variables_of(doc: &ExecutableDocument) -> Vec<(String, String, bool)> {
    doc.operations
        .iter()
        .flat_map(|(_, op)| op.node.variable_definitions.clone())
        .map(|v| {
            let ty = &v.node.var_type.node;
            let base = match &ty.base {
                BaseType::Named(n) => n.to_string(),
                BaseType::List(_) => "List".to_string(),
            };
            (v.node.name.node.to_string(), base, ty.nullable)
        })
        .collect()
}

/// `# @defaults from=-3m to=0d`: dates relative to today (Europe/Paris).
fn defaults_of(text: &str, today: NaiveDate) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("# @defaults") else {
            continue;
        };
        for pair in rest.split_whitespace() {
            let Some((name, offset)) = pair.split_once('=') else {
                continue;
            };
            if let Some(d) = shift(today, offset) {
                out.insert(name.to_string(), d.to_string());
            }
        }
    }
    out
}

fn shift(today: NaiveDate, offset: &str) -> Option<NaiveDate> {
    let (number, unit) = offset.split_at(offset.len().checked_sub(1)?);
    let n: i64 = number.trim_start_matches('+').parse().ok()?;
    match unit {
        "d" => today.checked_add_signed(chrono::Duration::days(n)),
        "w" => today.checked_add_signed(chrono::Duration::weeks(n)),
        "m" | "y" => {
            let months = u32::try_from(n.unsigned_abs() * if unit == "y" { 12 } else { 1 }).ok()?;
            if n < 0 {
                today.checked_sub_months(Months::new(months))
            } else {
                today.checked_add_months(Months::new(months))
            }
        }
        _ => None,
    }
}

/// Turns text fields into the operation's variables; Err names a field that does not fit.
fn coerce(
    declared: &[(String, String, bool)],
    given: &BTreeMap<String, String>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut vars = serde_json::Map::new();
    for (name, ty, nullable) in declared {
        let Some(text) = given.get(name) else {
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            if *nullable {
                vars.insert(name.clone(), Value::Null);
            }
            continue;
        }
        let value = match ty.as_str() {
            "Int" => Value::from(
                text.parse::<i64>()
                    .map_err(|_| format!("{name} : un nombre entier est attendu"))?,
            ),
            "Boolean" => Value::Bool(matches!(text, "true" | "on" | "1")),
            _ => Value::String(text.to_string()),
        };
        vars.insert(name.clone(), value);
    }
    Ok(vars)
}

/// Runs `document` as the session's person; (data, errors as `{message, code}`).
async fn run(
    state: &AppState,
    session: &Session,
    document: &str,
    variables: serde_json::Map<String, Value>,
) -> (Value, Vec<Value>) {
    let request = async_graphql::Request::new(document)
        .variables(async_graphql::Variables::from_json(Value::Object(
            variables,
        )))
        .data(Principal::User(Actor::new(session.user, session.role)));
    let response = state.graphql.schema.execute(request).await;
    let errors = response
        .errors
        .iter()
        .map(|e| {
            json!({
                "message": e.message,
                "code": e.extensions.as_ref().and_then(|x| x.get("code")).map(|c| c.to_string().trim_matches('"').to_string()),
                "path": e.path.iter().map(|p| match p {
                    async_graphql::PathSegment::Field(f) => f.clone(),
                    async_graphql::PathSegment::Index(i) => i.to_string(),
                }).collect::<Vec<_>>().join("."),
            })
        })
        .collect();
    let data = response.data.into_json().unwrap_or(Value::Null);
    (data, errors)
}

async fn render_page(
    page: &'static str,
    State(state): State<AppState>,
    Path(path): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let Some((_, session)) = session_of(&state, &headers).await else {
        return Redirect::to("/admin/login").into_response();
    };
    if !serves(session.role) {
        return refused_role();
    }
    let (Some(document), Some(_)) = (
        file(files::PAGES, &format!("{page}.graphql")),
        file(files::TEMPLATES, &format!("{page}.html")),
    ) else {
        return (StatusCode::NOT_FOUND, "no such page\n").into_response();
    };
    let today = etal_domain::calendar::paris_date(state.app.now());
    let mut params = defaults_of(document, today);
    for (k, v) in query.into_iter().chain(path) {
        params.insert(k, v);
    }
    let doc = match async_graphql::parser::parse_query(document) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(page, error = %e, "a back-office query does not parse");
            return (StatusCode::INTERNAL_SERVER_ERROR, "page unavailable\n").into_response();
        }
    };
    let (data, errors, status) = match coerce(&variables_of(&doc), &params) {
        Ok(vars) => {
            let (data, errors) = run(&state, &session, document, vars).await;
            let code = |c: &str| errors.iter().any(|e| e["code"] == c);
            // Part of the page refused is the page refused: a page shows all of what it is
            // about or nothing (another market's page, another producer's recap).
            let status = if code("FORBIDDEN") {
                StatusCode::FORBIDDEN
            } else if data.is_null() && code("NOT_FOUND") {
                StatusCode::NOT_FOUND
            } else if data.is_null() && !errors.is_empty() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (data, errors, status)
        }
        Err(message) => (
            Value::Null,
            vec![json!({"message": message, "code": "BAD_USER_INPUT"})],
            StatusCode::BAD_REQUEST,
        ),
    };
    let name = display_name(&state, &session).await;
    let context = json!({
        "data": data,
        "errors": errors,
        "params": params,
        "session": {
            "role": role_name(session.role),
            "user": session.user.0,
            "name": name,
            "csrf": session.csrf,
        },
        "flash": session.flash,
        "today": today.to_string(),
        "year": today.year(),
        "status": status.as_u16(),
    });
    // Nothing to show: the errors alone (a page of something the person may not see).
    let template = if context["data"].is_null() || status == StatusCode::FORBIDDEN {
        "error.html".to_string()
    } else {
        format!("{page}.html")
    };
    render(status, &template, context)
}

/// GET /admin/invoices/{id}/{file}: an invoice's Factur-X PDF or XML for the session's person,
/// as `/invoices/{id}/{file}` gives it to a bearer token (404 for anyone else).
async fn invoice_file(
    State(state): State<AppState>,
    Path((id, file)): Path<(uuid::Uuid, String)>,
    headers: HeaderMap,
) -> Response {
    let Some((_, session)) = session_of(&state, &headers).await else {
        return Redirect::to("/admin/login").into_response();
    };
    let principal = Principal::User(Actor::new(session.user, session.role));
    crate::http::invoice_file_as(&state, principal, id, &file).await
}

/// Where an action's form says to go back to: a back-office path only.
fn back_to(form: &BTreeMap<String, String>, role: Role) -> String {
    match form.get("back") {
        Some(b) if b.starts_with("/admin/") && !b.contains("//") && !b.contains('\\') => b.clone(),
        _ => home_of(role).to_string(),
    }
}

/// What each action says when it worked.
fn done_message(action: &str) -> &'static str {
    match action {
        "validate_sale" => "Vente validée.",
        "answer_membership" => "Demande d'adhésion traitée.",
        "record_payment" => "Paiement enregistré.",
        "cancel_order" => "Commande annulée.",
        "adjust_quantity" => "Quantité modifiée.",
        "record_weight" => "Poids enregistré.",
        "participate" => "Participation enregistrée.",
        "withdraw" => "Catalogue retiré de la vente.",
        "set_stock" => "Stock mis à jour.",
        _ => "C'est fait.",
    }
}

/// POST /admin/actions/{action}: the form's mutation, as the session's person; back to the
/// page it came from with what happened.
async fn action(
    State(state): State<AppState>,
    Path(action): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let Some((secret, session)) = session_of(&state, &headers).await else {
        return Redirect::to("/admin/login").into_response();
    };
    if !serves(session.role) {
        return refused_role();
    }
    let form: BTreeMap<String, String> = form.into_iter().collect();
    if !same(
        &session.csrf,
        form.get("csrf").map(String::as_str).unwrap_or(""),
    ) {
        tracing::warn!(action, user = %session.user.0, "a back-office form without its CSRF token was refused");
        return bad_csrf();
    }
    let Some(document) = file(files::ACTIONS, &format!("{action}.graphql")) else {
        return (StatusCode::NOT_FOUND, "no such action\n").into_response();
    };
    let doc = match async_graphql::parser::parse_query(document) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(action, error = %e, "a back-office mutation does not parse");
            return (StatusCode::INTERNAL_SERVER_ERROR, "action unavailable\n").into_response();
        }
    };
    let message = match coerce(&variables_of(&doc), &form) {
        Ok(vars) => {
            let (_, errors) = run(&state, &session, document, vars).await;
            match errors.first() {
                None => done_message(&action).to_string(),
                Some(e) => format!(
                    "Refusé : {} ({})",
                    e["message"].as_str().unwrap_or(""),
                    e["code"].as_str().unwrap_or("ERROR")
                ),
            }
        }
        Err(m) => format!("Refusé : {m}"),
    };
    if let Err(e) = state.app.set_flash(&secret, &message).await {
        tracing::warn!(error = %e, "a flash message could not be kept");
    }
    Redirect::to(&back_to(&form, session.role)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_and_action_parses_and_every_template_loads() {
        for (name, text) in files::PAGES.iter().chain(files::ACTIONS) {
            let doc =
                async_graphql::parser::parse_query(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(doc.operations.iter().count(), 1, "{name}: one operation");
        }
        for (_, page) in PAGES {
            assert!(
                file(files::PAGES, &format!("{page}.graphql")).is_some(),
                "{page}"
            );
            assert!(
                environment().get_template(&format!("{page}.html")).is_ok(),
                "{page}.html"
            );
        }
        assert!(environment().get_template("login.html").is_ok());
        assert!(environment().get_template("login_sent.html").is_ok());
    }

    #[test]
    fn money_sums_are_exact() {
        let t = environment()
            .template_from_str("{{ rows | sum_money('a') }}")
            .unwrap();
        let out = t
            .render(minijinja::context! { rows => vec![
            serde_json::json!({"a": "0.10"}), serde_json::json!({"a": "0.20"}),
            serde_json::json!({"a": "1234567.01"}), serde_json::json!({"b": "9"})] })
            .unwrap();
        // 0.1 + 0.2 in floats is 0.30000000000000004.
        assert_eq!(out, "1234567.31");
    }

    #[test]
    fn defaults_are_dates_relative_to_today() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        let d = defaults_of(
            "# @defaults from=-3m to=0d next=+8w last=-1y bad=3x\nquery Q { health }",
            today,
        );
        assert_eq!(d["from"], "2025-12-31");
        assert_eq!(d["to"], "2026-03-31");
        assert_eq!(d["next"], "2026-05-26");
        assert_eq!(d["last"], "2025-03-31");
        assert!(!d.contains_key("bad"));
    }

    #[test]
    fn fields_become_variables_of_their_declared_types() {
        let declared = vec![
            ("line".to_string(), "Int".to_string(), false),
            ("real".to_string(), "Int".to_string(), true),
            ("orderId".to_string(), "UUID".to_string(), false),
        ];
        let mut given = BTreeMap::new();
        given.insert("line".to_string(), "2".to_string());
        given.insert("real".to_string(), "".to_string());
        given.insert("orderId".to_string(), "abc".to_string());
        given.insert("csrf".to_string(), "x".to_string());
        let vars = coerce(&declared, &given).unwrap();
        assert_eq!(vars["line"], json!(2));
        assert_eq!(vars["real"], Value::Null);
        assert_eq!(vars["orderId"], json!("abc"));
        assert!(!vars.contains_key("csrf"));
        given.insert("line".to_string(), "two".to_string());
        assert!(coerce(&declared, &given).unwrap_err().contains("line"));
    }

    #[test]
    fn back_goes_to_the_back_office_only() {
        let mut f = BTreeMap::new();
        f.insert("back".to_string(), "https://evil.example/".to_string());
        assert_eq!(back_to(&f, Role::MarketAdmin), "/admin/markets");
        f.insert("back".to_string(), "/admin//evil.example".to_string());
        assert_eq!(back_to(&f, Role::Producer), "/admin/producers");
        f.insert("back".to_string(), "/admin/sales/1".to_string());
        assert_eq!(back_to(&f, Role::Producer), "/admin/sales/1");
    }
}
