//! Support for the test suites of this workspace: a fresh database per test.
//!
//! Tests run on a new SQLite file by default, and on a new PostgreSQL database created for
//! the test when `FABRIQUE_TEST_POSTGRES_URL` points at a server (for example
//! `postgres://postgres@127.0.0.1:5432/test`). CI runs the suites both ways.

use crate::store::StoreResult;
use sqlx::{Connection, Executor, PgConnection};
use std::path::Path;

pub const POSTGRES_ENV: &str = "FABRIQUE_TEST_POSTGRES_URL";

/// A URL of an empty database for one test: a SQLite file in `dir`, or a PostgreSQL
/// database named `fabrique_t_<random>` on the server of `FABRIQUE_TEST_POSTGRES_URL`.
pub async fn fresh_database_url(dir: &Path) -> StoreResult<String> {
    let Ok(server) = std::env::var(POSTGRES_ENV) else {
        return Ok(format!("sqlite://{}", dir.join("fabrique.db").display()));
    };
    let token = crate::secrets::random_token()
        .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let name = format!("fabrique_t_{}", &token[..16]);
    let mut admin = PgConnection::connect(&server).await?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    admin.close().await?;
    let base = match server.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &server[..slash],
        _ => server.as_str(),
    };
    Ok(format!("{base}/{name}"))
}

/// Whether the suites run against PostgreSQL this time.
pub fn on_postgres() -> bool {
    std::env::var(POSTGRES_ENV).is_ok()
}
