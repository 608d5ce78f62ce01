//! `etal serve` as an operator runs it, over real sockets and a real PostgreSQL: one JSON log
//! line per request with its id, Prometheus metrics that promtool accepts (behind their token),
//! header and idle timeouts, the websocket cap and the 4408 init timeout, documents refused
//! before parsing, the standard introspection query, `nbf`, bad settings refused with exit 2,
//! rate limits per token and per address, CORS, and `/health` when the database goes away.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etal_api::auth::{mint, JwtKey};
use etal_domain::ids::UserId;
use etal_domain::{Actor, Role, SystemClock};
use etal_store::{CommandBus, CommandContext};
use etal_tests::tally::{Tally, TallyCommand};
use etal_tests::{etal_bin, free_port, project_root, PrivateCluster, TestDb};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "operations-tests-secret-0123456789abcdef";

/// The settings a test does not give are not taken from the environment the tests run in.
fn scrubbed(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("ETAL_") || k == "DATABASE_URL" || k == "RUST_LOG" || k == "DEMO" {
            cmd.env_remove(k);
        }
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

/// Reads a child's pipe into lines (lossy UTF-8) until it closes (then the thread ends).
fn collect_lines(pipe: impl Read + Send + 'static) -> (Lines, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    sink.lock()
                        .unwrap()
                        .push(line.trim_end_matches(['\n', '\r']).to_string());
                }
            }
        }
    });
    (lines, reader)
}

/// `etal serve` started by the test: JSON logs at info on a pipe the test reads, a signing key,
/// a free port; killed when dropped.
struct Serve {
    child: Child,
    base: String,
    addr: String,
    lines: Lines,
}

impl Serve {
    async fn start(database_url: &str, env: &[(&str, &str)]) -> Serve {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(etal_bin());
        scrubbed(&mut cmd);
        cmd.arg("serve")
            .env("DATABASE_URL", database_url)
            .env("ETAL_LISTEN", &addr)
            .env("RUST_LOG", "info")
            .env("ETAL_LOG_FORMAT", "json")
            .env("ETAL_JWT_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn etal serve");
        let (lines, _) = collect_lines(child.stderr.take().expect("stderr"));
        let mut serve = Serve {
            child,
            base: format!("http://{addr}"),
            addr,
            lines,
        };
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = probe.get(format!("{}/health", serve.base)).send().await {
                if r.status() == 200 {
                    return serve;
                }
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("etal serve exited ({status}):\n{}", serve.logs());
            }
            assert!(
                Instant::now() < deadline,
                "etal serve did not become healthy on {}:\n{}",
                serve.base,
                serve.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn logs(&self) -> String {
        self.lines().join("\n")
    }

    /// The `etal::http` request lines logged so far, parsed.
    fn request_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "etal::http")
            .collect()
    }

    /// Waits (5 s at most) for a request line that `matches`.
    async fn wait_request_line(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self.request_lines().into_iter().find(|l| matches(l)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no etal::http line for {what}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log line's request id: a field of the event, or of its span (`with_current_span`).
fn request_id(line: &Value) -> Option<&str> {
    line["request_id"]
        .as_str()
        .or_else(|| line["span"]["request_id"].as_str())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn token(role: Role) -> String {
    mint(
        &JwtKey::new(SECRET.into()).unwrap(),
        UserId::new(),
        role,
        Duration::from_secs(3600),
    )
    .unwrap()
}

/// POSTs a GraphQL request; returns (status, headers, body).
async fn post(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http.post(format!("{base}/graphql")).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gets_one_json_log_line_with_its_id_operation_role_status_and_latency() {
    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[]).await;
    let http = client();
    let producer = token(Role::Producer);

    let (status, headers, body) = post(
        &http,
        &serve.base,
        Some(&producer),
        &[("X-Request-Id", "test-req-1")],
        &json!({"query": "query Ping { health }", "operationName": "Ping"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["health"], "ok", "{body}");
    assert_eq!(header(&headers, "x-request-id"), Some("test-req-1"));

    // No id, or one that is not a sane token: a new UUID, returned.
    let mut generated = Vec::new();
    for given in [None, Some("not a sane id; <script>")] {
        let extra: Vec<(&str, &str)> = given.map(|g| ("X-Request-Id", g)).into_iter().collect();
        let (status, headers, body) = post(
            &http,
            &serve.base,
            None,
            &extra,
            &json!({"query": "{ health }"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let id = header(&headers, "x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id for {given:?}: {headers:?}"))
            .to_string();
        uuid::Uuid::parse_str(&id)
            .unwrap_or_else(|e| panic!("x-request-id {id:?} for {given:?} is not a UUID: {e}"));
        generated.push(id);
    }
    assert_ne!(generated[0], generated[1], "each request gets its own id");
    for id in &generated {
        let line = serve
            .wait_request_line(id, |l| request_id(l) == Some(id.as_str()))
            .await;
        assert_eq!(line["role"], "anonymous", "{line}");
    }

    // The later requests' lines are written: the first request's line is alone.
    let mine: Vec<Value> = serve
        .request_lines()
        .into_iter()
        .filter(|l| request_id(l) == Some("test-req-1"))
        .collect();
    assert_eq!(mine.len(), 1, "one line per request:\n{}", serve.logs());
    let line = &mine[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["path"], "/graphql", "{line}");
    assert_eq!(line["operation"], "query:health", "{line}");
    assert_eq!(line["operation_name"], "Ping", "{line}");
    assert_eq!(line["role"], "producer", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    let latency = line["latency_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("latency_ms is a number: {line}"));
    assert!((0.0..30_000.0).contains(&latency), "{line}");
    eprintln!("request line: {line}");

    for l in serve.lines() {
        assert!(!l.contains("\u{1b}["), "an ANSI escape in the logs: {l:?}");
    }
}

/// ETAL_LOG_FORMAT=json (or stderr off a terminal): stderr is a stream of JSON lines a log
/// shipper can parse, the start-up messages included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_json_mode_every_line_on_stderr_is_a_json_object() {
    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[]).await;
    let (status, _, body) = post(
        &client(),
        &serve.base,
        None,
        &[("X-Request-Id", "json-only")],
        &json!({"query": "{ health }"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serve
        .wait_request_line("json-only", |l| request_id(l) == Some("json-only"))
        .await;
    let lines = serve.lines();
    let not_json: Vec<&String> = lines
        .iter()
        .filter(|l| !serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()))
        .collect();
    assert!(
        not_json.is_empty(),
        "{} of {} stderr lines are not JSON: {not_json:#?}",
        not_json.len(),
        lines.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_show_latency_commits_lag_backlog_and_pool_behind_their_token() {
    let db = TestDb::new(5).await;
    let bus = CommandBus::new(db.pool.clone(), Arc::new(SystemClock));
    bus.execute::<Tally>(
        "ops",
        TallyCommand::AddMany {
            tag: "x".into(),
            count: 3,
        },
        &(),
        &CommandContext::new(Actor::system()),
    )
    .await
    .unwrap();
    let serve = Serve::start(&db.url, &[("ETAL_METRICS_TOKEN", "s3cret")]).await;
    let http = client();
    for _ in 0..3 {
        let (status, _, body) = post(
            &http,
            &serve.base,
            None,
            &[],
            &json!({"query": "{ health }"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // A commit through the server's own bus.
    let producer = token(Role::Producer);
    let (_, _, body) = post(
        &http,
        &serve.base,
        Some(&producer),
        &[],
        &json!({"query": "mutation { openAccount(acceptedCharter: \"v2\", plan: PRO, idempotencyKey: \"ops-1\") { producerId } }"}),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");

    let metrics = |auth: Option<&'static str>| {
        let (http, url) = (http.clone(), format!("{}/metrics", serve.base));
        async move {
            let mut req = http.get(url);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic s3cret"),
        Some("Bearer s3cret-and-more"),
    ] {
        let (status, body) = metrics(auth).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(!body.contains("etal_"), "{auth:?} sees no metrics: {body}");
    }
    let (status, body) = metrics(Some("Bearer s3cret")).await;
    assert_eq!(status, 200, "{body}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/tools.sh installs it)");
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().unwrap();
        stdin.write_all(body.as_bytes()).unwrap();
    }
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: {} {said}", out.status);
    assert!(
        out.status.success(),
        "promtool check metrics ({}):\n{said}\n--- the exposition:\n{body}",
        out.status
    );

    let has_line = |prefix: &str, also: &str| {
        body.lines()
            .any(|l| l.starts_with(prefix) && l.contains(also))
    };
    for (prefix, also) in [
        (
            "etal_http_request_duration_seconds_bucket{",
            "operation=\"query:health\"",
        ),
        (
            "etal_projection_lag_events{projection=\"event_counts\"}",
            "",
        ),
        ("etal_outbox_backlog{queue=\"outbox\"}", ""),
        ("etal_db_pool_connections{state=\"open\"}", ""),
        ("etal_db_pool_connections{state=\"max\"} 16", ""),
        ("etal_commands_total{", "outcome=\"committed\""),
    ] {
        assert!(
            has_line(prefix, also),
            "no line {prefix}...{also} in:\n{body}"
        );
    }
}

/// Reads until the server closes the connection (Ok(0) or an error) or `deadline`; returns
/// what was read and whether it was closed.
async fn read_until_closed(
    stream: &mut TcpStream,
    deadline: tokio::time::Instant,
) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_and_idle_kept_alive_connections_are_closed_after_the_header_timeout() {
    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[("ETAL_HEADER_TIMEOUT_SECONDS", "1")]).await;

    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(&serve.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push((s, Instant::now()));
    }
    // Meanwhile the server serves.
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/health", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let health = started.elapsed();
    eprintln!("/health beside 10 slow heads: {health:?}");
    assert!(health < Duration::from_secs(1), "{health:?}");

    let mut closed_after = Vec::new();
    for (mut s, written) in slow {
        let deadline = tokio::time::Instant::from_std(written + Duration::from_secs(3));
        let (got, closed) = read_until_closed(&mut s, deadline).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            closed || text.starts_with("HTTP/1.1 408"),
            "a connection with an unfinished head still open after 3 s (read {text:?})"
        );
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 408"),
            "answered something else than 408: {text:?}"
        );
        closed_after.push(written.elapsed());
    }
    eprintln!("unfinished heads closed after {closed_after:?}");
    for d in &closed_after {
        assert!(
            *d >= Duration::from_millis(500),
            "closed before the timeout could have passed ({d:?}): not the header timeout"
        );
    }

    // One request answered, then silence: closed too.
    let mut s = TcpStream::connect(&serve.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = loop {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.contains("\r\n\r\n") && text.ends_with("ok\n") {
            break Instant::now();
        }
    };
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("connection: close"),
        "kept alive: {text}"
    );
    let (more, closed) = read_until_closed(
        &mut s,
        tokio::time::Instant::from_std(answered + Duration::from_secs(3)),
    )
    .await;
    let idle = answered.elapsed();
    eprintln!("idle kept-alive connection closed: {closed} after {idle:?}");
    assert!(
        closed,
        "an idle kept-alive connection is still open 3 s after its answer (read {:?})",
        String::from_utf8_lossy(&more)
    );
    assert!(idle >= Duration::from_millis(500), "{idle:?}");
}

/// hyper-util's `auto` builder (HTTP/1 or HTTP/2) reads the first bytes to tell the version
/// before the HTTP/1 header timeout starts: a connection that sends nothing must be closed all
/// the same, or ETAL_MAX_CONNECTIONS of them lock the server out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_are_closed_after_the_header_timeout_and_do_not_lock_out_the_server(
) {
    let db = TestDb::new(5).await;
    let serve = Serve::start(
        &db.url,
        &[
            ("ETAL_HEADER_TIMEOUT_SECONDS", "1"),
            ("ETAL_MAX_CONNECTIONS", "4"),
        ],
    )
    .await;
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(&serve.addr).await.unwrap());
    }
    let base = serve.base.clone();
    let health = tokio::spawn(async move {
        let started = Instant::now();
        let r = reqwest::Client::builder()
            .timeout(Duration::from_secs(6))
            .build()
            .unwrap()
            .get(format!("{base}/health"))
            .send()
            .await;
        (r.map(|r| r.status().as_u16()), started.elapsed())
    });
    let deadline = tokio::time::Instant::from_std(opened + Duration::from_secs(3));
    let mut closed = Vec::new();
    for s in &mut silent {
        let (_, c) = read_until_closed(s, deadline).await;
        closed.push(c.then(|| opened.elapsed()));
    }
    let (health, waited) = health.await.unwrap();
    eprintln!("silent connections closed after {closed:?}; /health beside them: {health:?} after {waited:?}");
    assert!(
        closed.iter().all(Option::is_some),
        "connections that sent nothing still open 3 s later ({closed:?}); /health meanwhile: \
         {health:?} after {waited:?}"
    );
    assert_eq!(
        health.as_ref().ok(),
        Some(&200),
        "/health with 4 silent connections open: {health:?} after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(serve: &Serve) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://{}/graphql", serve.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The next text message as JSON, or the close frame's code (0 without a frame), or None when
/// nothing comes in `wait`.
async fn ws_next(ws: &mut Ws, wait: Duration) -> Option<Result<Value, u16>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()? {
            Some(Ok(Message::Text(t))) => {
                return Some(Ok(serde_json::from_str(t.as_str()).unwrap()))
            }
            Some(Ok(Message::Close(frame))) => {
                return Some(Err(frame.map(|f| u16::from(f.code)).unwrap_or(0)))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Some(Err(0)),
        }
    }
}

async fn ws_send(ws: &mut Ws, msg: Value) {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

async fn ws_init(ws: &mut Ws) {
    ws_send(ws, json!({"type": "connection_init", "payload": {}})).await;
    let ack = ws_next(ws, Duration::from_secs(5)).await;
    assert_eq!(
        ack.as_ref()
            .and_then(|m| m.as_ref().ok())
            .map(|m| &m["type"]),
        Some(&json!("connection_ack")),
        "{ack:?}"
    );
}

/// Sends a graphql-ws ping and expects the pong: the socket is open and served.
async fn ws_alive(ws: &mut Ws) -> bool {
    ws_send(ws, json!({"type": "ping"})).await;
    matches!(ws_next(ws, Duration::from_secs(3)).await, Some(Ok(m)) if m["type"] == "pong")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_is_closed_with_4408_and_sockets_past_the_cap_are_refused_with_503() {
    let db = TestDb::new(5).await;
    let serve = Serve::start(
        &db.url,
        &[
            ("ETAL_MAX_WEBSOCKETS", "2"),
            ("ETAL_WS_INIT_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;

    // (a) No connection_init: closed with 4408 after the init timeout.
    let mut silent = ws_connect(&serve).await.expect("upgrade");
    let started = Instant::now();
    let first = ws_next(&mut silent, Duration::from_secs(3)).await;
    let after = started.elapsed();
    eprintln!("silent websocket: {first:?} after {after:?}");
    assert_eq!(first, Some(Err(4408)), "after {after:?}");
    assert!(after >= Duration::from_millis(500), "{after:?}");
    // The server's side is gone once the stream ends (its permit with it).
    while let Some(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), silent.next())
        .await
        .expect("the silent socket ends")
    {}

    // (b) Two initialised sockets stay open past the init timeout; a third is refused.
    let mut one = ws_connect(&serve).await.expect("first socket");
    ws_init(&mut one).await;
    let mut two = ws_connect(&serve).await.expect("second socket");
    ws_init(&mut two).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(ws_alive(&mut one).await, "the first socket was closed");
    assert!(ws_alive(&mut two).await, "the second socket was closed");
    match ws_connect(&serve).await {
        Ok(_) => panic!("a third websocket was accepted past ETAL_MAX_WEBSOCKETS=2"),
        Err(tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 503, "{res:?}");
            let body = res
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            assert!(body.contains("TOO_MANY_WEBSOCKETS"), "{body}");
            assert!(res.headers().get("retry-after").is_some(), "{res:?}");
        }
        Err(e) => panic!("the third upgrade failed otherwise than with 503: {e:?}"),
    }

    // Closing one frees its place (released when the server's side ends: retried briefly).
    one.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(3), one.next()).await {}
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut attempts = 0;
    let mut three = loop {
        attempts += 1;
        match ws_connect(&serve).await {
            Ok(ws) => break ws,
            Err(tungstenite::Error::Http(res))
                if res.status().as_u16() == 503 && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("no new websocket after one was closed: {e:?}"),
        }
    };
    eprintln!("a new websocket accepted after {attempts} attempt(s)");
    ws_init(&mut three).await;
    assert!(ws_alive(&mut three).await);
    assert!(ws_alive(&mut two).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_too_large_in_bytes_or_tokens_are_refused_before_parsing() {
    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[]).await;
    let http = client();
    let aliases = |n: usize| {
        format!(
            "{{ {} }}",
            (0..n)
                .map(|i| format!("a{i}: health"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };

    let huge = aliases(50_000);
    let body = json!({ "query": huge });
    assert!(body.to_string().len() < 1024 * 1024, "under the body limit");
    let started = Instant::now();
    let (status, _, answer) = post(&http, &serve.base, None, &[], &body).await;
    let huge_took = started.elapsed();
    eprintln!(
        "50,000 aliases ({} bytes) refused in {huge_took:?}",
        huge.len()
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(code(&answer), Some("QUERY_TOO_LARGE"), "{answer}");
    assert!(answer.get("data").is_none(), "{answer}");
    assert!(huge_took < Duration::from_secs(1), "{huge_took:?}");
    // The graphql-response media type: 400, as for any request that never executed.
    let (status, headers, answer) = post(
        &http,
        &serve.base,
        None,
        &[("accept", "application/graphql-response+json")],
        &body,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(code(&answer), Some("QUERY_TOO_LARGE"), "{answer}");
    assert!(
        header(&headers, "content-type")
            .is_some_and(|c| c.starts_with("application/graphql-response+json")),
        "{headers:?}"
    );

    // Under ETAL_MAX_QUERY_BYTES (100,000), over ETAL_MAX_QUERY_TOKENS (10,000).
    let mut n = 1000;
    while aliases(n + 100).len() < 90_000 {
        n += 100;
    }
    let many = aliases(n);
    assert!((80_000..100_000).contains(&many.len()), "{}", many.len());
    let started = Instant::now();
    let (status, _, answer) = post(&http, &serve.base, None, &[], &json!({ "query": many })).await;
    let many_took = started.elapsed();
    eprintln!(
        "{n} aliases ({} bytes, {} tokens) refused in {many_took:?}",
        many.len(),
        3 * n + 2
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(code(&answer), Some("QUERY_TOO_LARGE"), "{answer}");
    assert!(many_took < Duration::from_secs(1), "{many_took:?}");

    let (status, _, answer) = post(
        &http,
        &serve.base,
        None,
        &[],
        &json!({"query": "{ a0: health a1: health }"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"], json!({"a0": "ok", "a1": "ok"}), "{answer}");
    // The refusal is logged with its code.
    serve
        .wait_request_line("QUERY_TOO_LARGE", |l| l["error_code"] == "QUERY_TOO_LARGE")
        .await;
}

/// graphql-js's SDL from the answer to its standard introspection query, and from
/// docs/schema.graphql, both sorted.
const TO_SDL: &str = r#"
const fs = require('fs');
const g = require('graphql');
const answer = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const fromServer = g.printSchema(g.lexicographicSortSchema(g.buildClientSchema(answer.data)));
const fromDocs = g.printSchema(g.lexicographicSortSchema(g.buildSchema(fs.readFileSync(process.argv[3], 'utf8'))));
process.stdout.write(JSON.stringify({ fromServer, fromDocs }));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_introspection_query_is_answered_with_the_schema_of_the_docs() {
    let web = project_root().join("web");
    let modules = web.join("node_modules");
    assert!(
        modules.join("graphql").exists(),
        "{} is missing graphql-js: run `npm ci` in web/ (scripts/tools.sh does)",
        modules.display()
    );
    let out = Command::new("node")
        .args([
            "-e",
            "process.stdout.write(require('graphql').getIntrospectionQuery())",
        ])
        .current_dir(&web)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let introspection = String::from_utf8(out.stdout).unwrap();
    assert!(
        introspection.contains("query IntrospectionQuery"),
        "{introspection}"
    );

    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[]).await;
    let (status, _, answer) = post(
        &client(),
        &serve.base,
        None,
        &[],
        &json!({"query": introspection, "operationName": "IntrospectionQuery"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");
    assert!(answer["data"]["__schema"]["types"].is_array(), "{answer}");

    let dir = std::env::temp_dir().join(format!("etal-introspection-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (script, result) = (dir.join("to-sdl.js"), dir.join("answer.json"));
    std::fs::write(&script, TO_SDL).unwrap();
    std::fs::write(&result, answer.to_string()).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(&result)
        .arg(project_root().join("docs/schema.graphql"))
        .env("NODE_PATH", &modules)
        .output()
        .expect("node");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sdl: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (from_server, from_docs) = (
        sdl["fromServer"].as_str().unwrap(),
        sdl["fromDocs"].as_str().unwrap(),
    );
    if from_server != from_docs {
        let server: std::collections::BTreeSet<&str> = from_server.lines().collect();
        let docs: std::collections::BTreeSet<&str> = from_docs.lines().collect();
        let only_server: Vec<&&str> = server.difference(&docs).take(40).collect();
        let only_docs: Vec<&&str> = docs.difference(&server).take(40).collect();
        panic!(
            "the introspected schema differs from docs/schema.graphql\n\
             only in the introspection: {only_server:#?}\nonly in the docs: {only_docs:#?}"
        );
    }
    assert!(from_server.contains("type Query"), "{from_server}");
    eprintln!(
        "introspected SDL = docs/schema.graphql: {} lines",
        from_server.lines().count()
    );
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An HS256 JWT signed with the server's key, made by hand.
fn hs256(claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    let signing = format!(
        "{}.{}",
        base64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        base64url(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(signing.as_bytes());
    format!("{signing}.{}", base64url(&mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_valid_before_an_hour_from_now_is_refused_with_401() {
    assert_eq!(base64url(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw");
    assert_eq!(base64url(b"any carnal pleasu"), "YW55IGNhcm5hbCBwbGVhc3U");
    assert_eq!(base64url(b"\xfb\xff"), "-_8");
    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[]).await;
    let http = client();
    let now = chrono::Utc::now().timestamp();
    let claims = |nbf: i64| json!({"sub": UserId::new().to_string(), "role": "producer", "iat": now, "exp": now + 7200, "nbf": nbf});

    // The same hand-made token, valid since a minute: accepted (the test's JWT is sound).
    let (status, _, body) = post(
        &http,
        &serve.base,
        Some(&hs256(&claims(now - 60))),
        &[],
        &json!({"query": "{ health }"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["health"], "ok", "{body}");

    let (status, headers, body) = post(
        &http,
        &serve.base,
        Some(&hs256(&claims(now + 3600))),
        &[],
        &json!({"query": "{ health }"}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body), Some("UNAUTHENTICATED"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not valid yet")),
        "{body}"
    );
    assert!(
        header(&headers, "www-authenticate").is_some(),
        "{headers:?}"
    );
}

/// Runs `etal` (its environment scrubbed, then `env`), 30 s at most; (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(etal_bin());
    scrubbed(&mut cmd);
    cmd.args(args)
        .env("ETAL_LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run etal");
    let (out, out_reader) = collect_lines(child.stdout.take().unwrap());
    let (err, err_reader) = collect_lines(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "etal {args:?} still running after 30 s:\n{}",
                err.lock().unwrap().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipes close with the process: their readers finish.
    out_reader.join().unwrap();
    err_reader.join().unwrap();
    let text = |l: &Lines| l.lock().unwrap().join("\n");
    (status.code().unwrap_or(-1), text(&out), text(&err))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_exit_2_naming_them_and_serve_help_lists_every_variable() {
    let db = TestDb::new(2).await;
    let url = db.url.clone();
    let secret = ("ETAL_JWT_SECRET", SECRET);
    tokio::task::spawn_blocking(move || {
        let (code, _, err) = run(&["serve"], &[("DATABASE_URL", &url), ("ETAL_DB_POOL", "0")]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("ETAL_DB_POOL") || err.contains("--db-pool"),
            "{err}"
        );

        let (code, out, err) = run(
            &["token", "--role", "producer", "--ttl-hours", "99999999999"],
            &[secret],
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--ttl-hours"), "{err}");
        assert!(out.is_empty(), "no token printed: {out}");

        let (code, _, err) = run(
            &["serve"],
            &[
                ("DATABASE_URL", &url),
                ("ETAL_PLANS", "/nonexistent/plans.json"),
            ],
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("/nonexistent/plans.json"), "{err}");

        let (code, help, err) = run(&["serve", "--help"], &[]);
        assert_eq!(code, 0, "{err}");
        // Every variable of ServeArgs and HttpArgs, and those the logging reads.
        let settings = [
            "DATABASE_URL",
            "ETAL_LISTEN",
            "ETAL_DB_POOL",
            "ETAL_DB_ACQUIRE_TIMEOUT_MS",
            "ETAL_PROJECTORS",
            "ETAL_SCHEDULER",
            "ETAL_SCHEDULER_INTERVAL_MS",
            "ETAL_READ_YOUR_WRITES_MS",
            "ETAL_DELIVERY_DELAY_MINUTES",
            "ETAL_SALES_HORIZON_WEEKS",
            "ETAL_OUTBOX",
            "ETAL_OUTBOX_INTERVAL_MS",
            "ETAL_OUTBOX_INLINE",
            "ETAL_SIM_FAIL",
            "ETAL_PAYMENTS",
            "ETAL_STRIPE_SECRET_KEY",
            "ETAL_STRIPE_API_BASE",
            "ETAL_STRIPE_API_VERSION",
            "ETAL_STRIPE_WEBHOOK_SECRET",
            "ETAL_PAYMENT_TIMEOUT_SECONDS",
            "ETAL_PAYOUTS",
            "ETAL_SEPA_DEBTOR_NAME",
            "ETAL_SEPA_DEBTOR_IBAN",
            "ETAL_SEPA_DEBTOR_BIC",
            "ETAL_PLATFORM_LEGAL_NAME",
            "ETAL_PLATFORM_SIREN",
            "ETAL_PLATFORM_VAT_NUMBER",
            "ETAL_PLATFORM_ADDRESS",
            "ETAL_PLATFORM_POSTCODE",
            "ETAL_PLATFORM_CITY",
            "ETAL_SMTP_URL",
            "ETAL_MAIL_DIR",
            "ETAL_MAIL_FROM",
            "ETAL_PUBLIC_URL",
            "ETAL_NOTIFY_INTERVAL_MS",
            "ETAL_WEBHOOKS_ALLOW_INSECURE",
            "ETAL_PLANS",
            "ETAL_FEES",
            "ETAL_FEE_SCHEDULE",
            "DEMO",
            "ETAL_JWT_SECRET",
            "ETAL_RATE_LIMIT_PER_SECOND",
            "ETAL_RATE_LIMIT_BURST",
            "ETAL_LOGIN_RATE_PER_MINUTE",
            "ETAL_TRUST_FORWARDED_FOR",
            "ETAL_METRICS_TOKEN",
            "ETAL_CORS_ORIGINS",
            "ETAL_HEADER_TIMEOUT_SECONDS",
            "ETAL_BODY_TIMEOUT_SECONDS",
            "ETAL_MAX_CONNECTIONS",
            "ETAL_MAX_WEBSOCKETS",
            "ETAL_WS_INIT_TIMEOUT_SECONDS",
            "ETAL_MAX_QUERY_BYTES",
            "ETAL_MAX_QUERY_TOKENS",
        ];
        let listed = |name: &str| {
            help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]"))
        };
        let missing: Vec<&str> = settings.into_iter().filter(|n| !listed(n)).collect();
        assert!(
            missing.is_empty(),
            "`etal serve --help` does not list {missing:?}:\n{help}"
        );
    })
    .await
    .unwrap();
}

/// The two variables the logging set-up reads before the arguments are parsed (observe.rs):
/// `etal serve` reads them too, so its help names them.
#[test]
fn serve_help_names_the_logging_variables_too() {
    let (code, help, err) = run(&["serve", "--help"], &[]);
    assert_eq!(code, 0, "{err}");
    let missing: Vec<&str> = ["RUST_LOG", "ETAL_LOG_FORMAT"]
        .into_iter()
        .filter(|n| !help.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "`etal serve --help` does not name {missing:?}, which `etal serve` reads:\n{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_are_limited_per_address_and_token_holders_per_token() {
    let db = TestDb::new(5).await;
    let limits = [
        ("ETAL_RATE_LIMIT_PER_SECOND", "1"),
        ("ETAL_RATE_LIMIT_BURST", "3"),
    ];
    let serve = Serve::start(&db.url, &limits).await;
    let http = client();
    let health = json!({"query": "{ health }"});
    for i in 0..3 {
        let (status, _, body) = post(&http, &serve.base, None, &[], &health).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let (status, headers, body) = post(&http, &serve.base, None, &[], &health).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(code(&body), Some("RATE_LIMITED"), "{body}");
    let retry: u64 = header(&headers, "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // X-Forwarded-For is not trusted by default: no way around the limit.
    let (status, _, body) = post(
        &http,
        &serve.base,
        None,
        &[("x-forwarded-for", "10.9.9.9")],
        &health,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    // A token has its own bucket.
    let producer = token(Role::Producer);
    for i in 0..3 {
        let (status, _, body) = post(&http, &serve.base, Some(&producer), &[], &health).await;
        assert_eq!(status, 200, "token request {i}: {body}");
    }
    drop(serve);

    let db = TestDb::new(5).await;
    let mut env = limits.to_vec();
    env.push(("ETAL_TRUST_FORWARDED_FOR", "true"));
    let serve = Serve::start(&db.url, &env).await;
    let from = |xff: &'static str| {
        let (http, base, health) = (http.clone(), serve.base.clone(), health.clone());
        async move {
            post(&http, &base, None, &[("x-forwarded-for", xff)], &health)
                .await
                .0
        }
    };
    for i in 0..3 {
        assert_eq!(from("10.0.0.1").await, 200, "request {i} from 10.0.0.1");
    }
    assert_eq!(from("10.0.0.1").await, 429);
    assert_eq!(
        from("10.0.0.2").await,
        200,
        "another address, another bucket"
    );
    // The last entry is the caller (the proxy's own addition).
    assert_eq!(from("10.0.0.1, 10.0.0.3").await, 200);
    assert_eq!(from("10.0.0.3, 10.0.0.1").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_configured_origins_only() {
    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[("ETAL_CORS_ORIGINS", "https://app.example.org")]).await;
    let http = client();
    let preflight = |base: String, origin: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .request(reqwest::Method::OPTIONS, format!("{base}/graphql"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().clone())
        }
    };
    let (status, h) = preflight(serve.base.clone(), "https://app.example.org").await;
    assert!((200..300).contains(&status), "{status} {h:?}");
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.example.org"),
        "{h:?}"
    );
    assert!(
        header(&h, "access-control-allow-methods").is_some_and(|m| m.contains("POST")),
        "{h:?}"
    );
    assert!(
        header(&h, "access-control-allow-headers")
            .is_some_and(|m| m.to_ascii_lowercase().contains("authorization")),
        "{h:?}"
    );
    let (status, h, _) = post(
        &http,
        &serve.base,
        None,
        &[("origin", "https://app.example.org")],
        &json!({"query": "{ health }"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.example.org"),
        "{h:?}"
    );
    assert!(
        header(&h, "access-control-expose-headers")
            .is_some_and(|e| e.to_ascii_lowercase().contains("x-request-id")),
        "{h:?}"
    );

    let (_, h) = preflight(serve.base.clone(), "https://evil.example").await;
    assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
    let (_, h, _) = post(
        &http,
        &serve.base,
        None,
        &[("origin", "https://evil.example")],
        &json!({"query": "{ health }"}),
    )
    .await;
    assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
    drop(serve);

    // Without the setting: no origin is allowed.
    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[]).await;
    let (_, pre) = preflight(serve.base.clone(), "https://app.example.org").await;
    assert!(pre.get("access-control-allow-origin").is_none(), "{pre:?}");
    let (_, h, _) = post(
        &http,
        &serve.base,
        None,
        &[("origin", "https://app.example.org")],
        &json!({"query": "{ health }"}),
    )
    .await;
    assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
}

/// Without ETAL_CORS_ORIGINS the service is same-origin only: it says nothing of CORS, a
/// preflight included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_origins_no_cors_header_is_sent() {
    let db = TestDb::new(5).await;
    let serve = Serve::start(&db.url, &[]).await;
    let http = client();
    let pre = http
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", serve.base))
        .header("origin", "https://app.example.org")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    eprintln!(
        "preflight without ETAL_CORS_ORIGINS: {} {:?}",
        pre.status(),
        pre.headers()
    );
    let pre = pre.headers().clone();
    let (_, h, _) = post(
        &http,
        &serve.base,
        None,
        &[("origin", "https://app.example.org")],
        &json!({"query": "{ health }"}),
    )
    .await;
    for (what, h) in [("preflight", &pre), ("POST", &h)] {
        let cors: Vec<_> = h
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("access-control-"))
            .collect();
        assert!(
            cors.is_empty(),
            "{what} without ETAL_CORS_ORIGINS: {cors:?}"
        );
    }
}

/// Stops a private cluster's server (fast: connections are closed).
fn stop(cluster: &PrivateCluster) {
    let bindir = Command::new(project_root().join("scripts/pg.sh"))
        .arg("bindir")
        .output()
        .expect("scripts/pg.sh bindir");
    let pg_ctl = format!("{}/pg_ctl", String::from_utf8_lossy(&bindir.stdout).trim());
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &pg_ctl]);
        c
    } else {
        Command::new(&pg_ctl)
    };
    let out = cmd
        .arg("-D")
        .arg(cluster.dir.join("data"))
        .args(["-m", "fast", "-w", "-t", "60", "stop"])
        .output()
        .expect("pg_ctl stop");
    assert!(
        out.status.success(),
        "pg_ctl stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_503_within_a_second_while_postgres_is_down() {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let admin = etal_store::db::connect(&cluster.url("postgres"), 1)
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE etal")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let serve = Serve::start(&cluster.url("etal"), &[]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let probe = || {
        let (http, url) = (http.clone(), format!("{}/health", serve.base));
        async move {
            let started = Instant::now();
            let status = http.get(url).send().await.map(|r| r.status().as_u16());
            (status, started.elapsed())
        }
    };
    assert_eq!(probe().await.0.ok(), Some(200));

    let c = &cluster;
    tokio::task::block_in_place(|| stop(c));
    let mut answers = Vec::new();
    for _ in 0..10 {
        let (status, took) = probe().await;
        let status = status.unwrap_or_else(|e| {
            panic!(
                "the server stopped answering /health: {e}\n{}",
                serve.logs()
            )
        });
        answers.push((status, took));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("/health while PostgreSQL is down: {answers:?}");
    for l in serve
        .lines()
        .iter()
        .filter(|l| l.contains("health check"))
        .take(2)
    {
        eprintln!("server: {l}");
    }
    assert_eq!(answers[0].0, 503, "{answers:?}");
    for (status, took) in &answers {
        assert_eq!(*status, 503, "{answers:?}");
        assert!(*took <= Duration::from_millis(1500), "{answers:?}");
    }

    // And 200 again once it is back.
    tokio::task::block_in_place(|| c.restart());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = probe().await;
        if status.as_ref().ok() == Some(&200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/health still {status:?} 20 s after PostgreSQL came back:\n{}",
            serve.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
