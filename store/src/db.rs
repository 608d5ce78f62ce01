//! Connections and migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// The SQL migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pool to `url`, with statement logging quieted to debug level; a connection is waited for
/// 10 s at most.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    connect_with_timeout(url, max_connections, Duration::from_secs(10)).await
}

/// [`connect`], waiting `acquire_timeout` at most for a connection (then the request fails as
/// retryable: the service's answer while PostgreSQL is down).
pub async fn connect_with_timeout(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_millis(500));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
}

/// The role `etal serve` works as (R-AUD-1): it may only SELECT and INSERT the history.
pub const SERVICE_ROLE: &str = "etal_service";

/// Applies pending migrations, then gives the service's role its rights on every table
/// (`etal_grant_service`, in the migrations): tables added by a migration get them too.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await?;
    sqlx::query("SELECT etal_grant_service()")
        .execute(pool)
        .await?;
    Ok(())
}

/// [`connect_with_timeout`], each connection then working as `role` (`SET ROLE`): the service
/// connects with the operator's login and works with the rights of its role only. The login
/// must be a member of the role (a superuser is).
pub async fn connect_as(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    role: &str,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_millis(500));
    let set_role = format!("SET ROLE \"{}\"", role.replace('"', "\"\""));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _| {
            let set_role = set_role.clone();
            Box::pin(async move {
                use sqlx::Executor;
                conn.execute(set_role.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
}

/// True when `err` is a unique violation on the named constraint.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint)
        }
        _ => false,
    }
}

/// True when the error means the database is unreachable or restarting (worth a retry later).
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // admin shutdown, crash shutdown, cannot connect now, serialization, deadlock
            Some("57P01") | Some("57P02") | Some("57P03") | Some("40001") | Some("40P01")
        ),
        sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}
