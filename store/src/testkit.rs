//! Test support: a fresh, migrated database per test, cloned from a template.
//!
//! The template `etal_tpl_<hash of the migrations>` is created once (under an advisory lock, so
//! parallel test processes agree) and each test clones it with `CREATE DATABASE ... TEMPLATE`,
//! which takes milliseconds. Point `DATABASE_URL` at the cluster (any database on it); the
//! Makefile does.

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};

use crate::db::{connect, MIGRATOR};

/// A database of its own for one test.
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub url: String,
}

fn base_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run the tests with `make test`, which starts PostgreSQL")
    })
}

/// The URL of database `name` on the cluster of `DATABASE_URL`.
pub fn url_for(name: &str) -> String {
    let base = base_url();
    let (head, tail) = match base.find('?') {
        Some(i) => (&base[..i], &base[i..]),
        None => (base.as_str(), ""),
    };
    let cut = head.rfind('/').map(|i| i + 1).unwrap_or(head.len());
    format!("{}{}{}", &head[..cut], name, tail)
}

fn template_name() -> String {
    let mut h = Sha256::new();
    // How the template is made (bump when `db::migrate` does more than the migrations).
    h.update(b"migrate+grants");
    for m in MIGRATOR.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&*m.checksum);
    }
    format!("etal_tpl_{}", &hex::encode(h.finalize())[..12])
}

async fn admin() -> PgConnection {
    let opts: PgConnectOptions = url_for("postgres")
        .parse()
        .expect("DATABASE_URL is a valid URL");
    opts.log_statements(log::LevelFilter::Trace)
        .connect()
        .await
        .expect("connect to the PostgreSQL cluster of DATABASE_URL")
}

async fn ensure_template(admin: &mut PgConnection) -> String {
    let tpl = template_name();
    admin
        .execute("SELECT pg_advisory_lock(727274)")
        .await
        .expect("template lock");
    let exists: Option<(bool,)> =
        sqlx::query_as("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind(&tpl)
            .fetch_optional(&mut *admin)
            .await
            .expect("look up template");
    if !matches!(exists, Some((true,))) {
        if exists.is_some() {
            admin
                .execute(format!("DROP DATABASE \"{tpl}\" WITH (FORCE)").as_str())
                .await
                .expect("drop half-built template");
        }
        admin
            .execute(format!("CREATE DATABASE \"{tpl}\"").as_str())
            .await
            .expect("create template");
        let pool = connect(&url_for(&tpl), 2).await.expect("connect template");
        crate::db::migrate(&pool).await.expect("migrate template");
        pool.close().await;
        admin
            .execute(
                format!("ALTER DATABASE \"{tpl}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
                    .as_str(),
            )
            .await
            .expect("mark template");
    }
    admin
        .execute("SELECT pg_advisory_unlock(727274)")
        .await
        .expect("template unlock");
    tpl
}

impl TestDb {
    /// A new database for this test, migrated, with a pool of `max_connections`.
    pub async fn new(max_connections: u32) -> TestDb {
        let mut admin = admin().await;
        let tpl = ensure_template(&mut admin).await;
        let name = format!("etal_test_{}", uuid::Uuid::now_v7().simple());
        admin
            .execute(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{tpl}\"").as_str())
            .await
            .expect("clone template");
        let _ = admin.close().await;
        let url = url_for(&name);
        let pool = connect(&url, max_connections)
            .await
            .expect("connect test database");
        TestDb { pool, name, url }
    }
}

/// Appends `events` to the stream `aggregate_id` of `A` after its last sequence, as a command
/// would (for projection tests that start from given events). Returns their positions.
pub async fn append_events<A: cqrs_es::Aggregate>(
    pool: &PgPool,
    aggregate_id: &str,
    events: &[A::Event],
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<crate::log::Position> {
    use cqrs_es::DomainEvent;
    use sqlx::Row;
    let mut tx = pool.begin().await.expect("begin");
    let last: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(A::TYPE)
    .bind(aggregate_id)
    .fetch_one(&mut *tx)
    .await
    .expect("last sequence");
    let mut positions = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let row = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING transaction_id::text::bigint AS txid, global_position",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(last + 1 + i as i64)
        .bind(e.event_type())
        .bind(e.event_version())
        .bind(serde_json::to_value(e).expect("serialize event"))
        .bind(serde_json::json!({"actor": etal_domain::Actor::system(), "at": at}))
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .expect("insert event");
        positions.push(crate::log::Position {
            txid: row.get("txid"),
            position: row.get("global_position"),
        });
    }
    tx.commit().await.expect("commit");
    positions
}
