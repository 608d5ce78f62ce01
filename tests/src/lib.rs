//! Support for etal's end-to-end tests: a tiny aggregate to drive the foundation, the `etal`
//! binary, and throw-away PostgreSQL clusters.

pub mod bench;
pub mod tally;
pub mod world;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use etal_store::testkit::TestDb;

/// The project's root folder.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `etal` binary built with the workspace (cargo builds it for `cargo test --workspace` and
/// nextest; ETAL_BIN overrides).
pub fn etal_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ETAL_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test exe> -> target/<profile>/etal
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = profile_dir.join("etal");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "etal-api", "--bin", "etal"])
            .current_dir(project_root())
            .status()
            .expect("cargo build etal");
        assert!(status.success(), "building the etal binary failed");
    }
    bin
}

/// Asserts that `xml` is valid against the XSD at `schema` (a path from the project's root,
/// e.g. `app/schemas/pain.001.001.09.xsd`), with `xmllint --schema` (libxml2-utils, which
/// `make test` installs).
pub fn assert_valid_xml(schema: &str, xml: &str) {
    let path = std::env::temp_dir().join(format!("etal-{}.xml", uuid::Uuid::new_v4()));
    std::fs::write(&path, xml).expect("write the XML");
    let out = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(project_root().join(schema))
        .arg(&path)
        .output()
        .expect("xmllint (make test installs libxml2-utils)");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{schema}: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `etal` with `args` against `database_url` and returns (exit code, stdout, stderr).
pub fn run_etal(database_url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(etal_bin())
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run etal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run_etal`] with more environment variables.
pub fn run_etal_env(
    database_url: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = Command::new(etal_bin());
    cmd.args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run etal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the independent verifier of the sealed history (tests/scripts/verify_log.py, Python's
/// hashlib on RFC 6962's formulas) with `args`: (exit code, stdout, stderr).
pub fn run_python_verifier(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let script = project_root().join("tests/scripts/verify_log.py");
    let python = if project_root().join(".venv/bin/python").exists() {
        project_root().join(".venv/bin/python")
    } else {
        PathBuf::from("python3")
    };
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("the verifier");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `etal` with `args` in the background.
pub fn spawn_etal(database_url: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(etal_bin());
    cmd.args(args)
        .env("DATABASE_URL", database_url)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().expect("spawn etal"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `etal serve` on a free port and waits until /health answers 200.
pub async fn spawn_server(database_url: &str, extra_env: &[(&str, &str)]) -> (Proc, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut env = vec![("ETAL_LISTEN", listen.as_str())];
    env.extend_from_slice(extra_env);
    let proc = spawn_etal(database_url, &["serve"], &env);
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            if r.status().is_success() {
                return (proc, base);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("etal serve did not become healthy on {base}");
}

/// A PostgreSQL cluster of a test's own (for tests that restart the server), removed on drop.
pub struct PrivateCluster {
    pub dir: PathBuf,
    pub port: u16,
    pub base_url: String,
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("etal-pg-{}", uuid::Uuid::now_v7().simple()));
        let out = Command::new(project_root().join("scripts/pg.sh"))
            .args([
                "cluster",
                dir.to_str().expect("utf-8 path"),
                &port.to_string(),
            ])
            .output()
            .expect("run scripts/pg.sh");
        assert!(
            out.status.success(),
            "starting a private cluster failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let base_url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        PrivateCluster {
            dir,
            port,
            base_url,
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let bindir = Command::new(project_root().join("scripts/pg.sh"))
            .arg("bindir")
            .output()
            .expect("bindir");
        let bindir = String::from_utf8_lossy(&bindir.stdout).trim().to_string();
        let pg_ctl = format!("{bindir}/pg_ctl");
        let data = self.dir.join("data");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &pg_ctl]);
            c
        } else {
            Command::new(&pg_ctl)
        };
        cmd.arg("-D").arg(&data).args(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd.status().map(|s| s.success()).unwrap_or(false)
    }

    /// Restarts the server (fast shutdown: running transactions are rolled back).
    pub fn restart(&self) {
        assert!(
            self.pg_ctl(&["-m", "fast", "-w", "-t", "60", "restart"]),
            "pg_ctl restart failed"
        );
    }

    pub fn url(&self, db: &str) -> String {
        format!("{}/{}", self.base_url, db)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Applies every committed event to `projection` in batches of `batch`, however long other
/// databases' transactions hold the cluster-wide watermark back (tests run side by side).
pub async fn catch_up_all(
    pool: &sqlx::PgPool,
    projection: &dyn etal_projections::Projection,
    batch: i64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        etal_projections::catch_up_in_batches(pool, projection, None, None, batch, &|_| {})
            .await
            .expect("catch up");
        if passed_every_event(pool, projection.name()).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never passed the last event",
            projection.name()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a running projector has passed every committed event.
pub async fn wait_all_applied(pool: &sqlx::PgPool, projection: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if passed_every_event(pool, projection).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the projection's checkpoint is at or past the last committed event (projections skip
/// the events of types they do not read, so positions, not counts, tell).
pub async fn passed_every_event(pool: &sqlx::PgPool, projection: &str) -> bool {
    let last: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .expect("last event");
    let Some(last) = last else { return true };
    let checkpoint: Option<(i64, i64)> = sqlx::query_as(
        "SELECT last_txid, last_position FROM projector_checkpoints WHERE projection = $1",
    )
    .bind(projection)
    .fetch_optional(pool)
    .await
    .expect("checkpoint");
    checkpoint.is_some_and(|c| c >= last)
}

/// A back-office session for `user` in `role`, opened as a browser opens one from an operator's
/// link (`etal admin link`, then the button of the link's page, with its log-in cookie and CSRF
/// token): (the link, the `etal_session=...` cookie pair).
pub async fn back_office_session(
    database_url: &str,
    base: &str,
    user: &str,
    role: &str,
) -> anyhow::Result<(String, String)> {
    let (code, out, err) = run_etal(
        database_url,
        &["admin", "link", "--user", user, "--role", role],
    );
    anyhow::ensure!(code == 0, "etal admin link failed: {err}");
    // The link names the default public address; the test's server is elsewhere.
    let link = out.trim().replace("http://127.0.0.1:8080", base);
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie_of = |r: &reqwest::Response, name: &str| -> Option<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    };
    let page = c.get(&link).send().await?;
    anyhow::ensure!(page.status() == 200, "the link's page: {}", page.status());
    let login = cookie_of(&page, "etal_login").unwrap_or_default();
    let html = page.text().await?;
    let at = html
        .find("name=\"csrf\" value=\"")
        .ok_or_else(|| anyhow::anyhow!("no log-in form at {link}"))?
        + 19;
    let csrf = &html[at..at + html[at..].find('"').unwrap_or(0)];
    let opened = c
        .post(&link)
        .header("cookie", &login)
        .form(&[("csrf", csrf)])
        .send()
        .await?;
    anyhow::ensure!(
        opened.status() == 303,
        "opening the session: {}",
        opened.status()
    );
    let location = opened
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    anyhow::ensure!(location.starts_with("/admin/"), "sent to {location}");
    let session =
        cookie_of(&opened, "etal_session").ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    Ok((link, session))
}
