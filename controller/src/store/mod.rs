//! All SQL of Fabrique, named for the use case.
//!
//! One pool type (`sqlx::AnyPool`) serves SQLite and PostgreSQL; queries are written once in
//! the SQL both understand (`$1` placeholders, `RETURNING`, times as Unix seconds in 64-bit
//! integers). Where the databases really differ (migrations, locking), each has its own
//! text. Queries are checked at run time, and the whole store test suite runs against both.

mod accounts;
mod calendar;
mod campaigns;
mod jobs;
pub use crate::domain::job::NewJob;
pub use accounts::{AccountEvent, AccountEventKind, ApiKeyInfo, UserUpdate};
pub use calendar::NewBooking;
pub use campaigns::NewPrint;
mod machines;
pub use machines::PanelLogEntry;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique constraint refused the row: `what` names the value already taken.
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    #[error("not found")]
    NotFound,
    /// A row holds a value the code does not know (written by a newer version, or by hand).
    #[error("unreadable row: {0}")]
    Corrupt(String),
    /// A campaign rule checked inside the transaction that writes (stock, parts, items).
    #[error("refused: {0}")]
    Campaign(crate::domain::campaign::CampaignRefusal),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database behind Fabrique. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH` or `postgres://...`), creating a SQLite
    /// file if needed, and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database without touching its schema.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match backend {
            Backend::Postgres => options.max_connections(10).connect(url).await?,
            Backend::Sqlite => {
                // WAL lets pages read while a job's progress is written; foreign keys are off
                // by default in SQLite and must be asked for on every connection; the busy
                // timeout makes concurrent writers wait for the lock instead of failing.
                let url = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                options
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                                 PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
        };
        Ok(Self { pool, backend })
    }

    /// The newest schema version this build of Fabrique knows.
    pub fn latest_migration(backend: Backend) -> i64 {
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("../migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("../migrations/postgres"),
        };
        migrator.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The newest schema version applied to this database (0 for an empty one).
    pub async fn schema_version(&self) -> StoreResult<i64> {
        let exists: i64 = sqlx::query_scalar(match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '_sqlx_migrations'"
            }
        })
        .fetch_one(&self.pool)
        .await?;
        if exists == 0 {
            return Ok(0);
        }
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await?;
        Ok(version.unwrap_or(0))
    }

    /// A consistent copy of the SQLite database into a new file at `path`, while others
    /// read and write (`VACUUM INTO`: one read transaction, so a snapshot).
    pub async fn copy_sqlite_into(&self, path: &std::path::Path) -> StoreResult<()> {
        sqlx::query("VACUUM INTO $1")
            .bind(path.display().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies the migrations of this database's folder that have not run yet.
    ///
    /// SQLite's run on one connection with foreign keys off, as SQLite asks of a migration
    /// that rebuilds a table others refer to (the pragma has no effect inside the
    /// transaction sqlx opens for each migration, so it is set before), and every
    /// reference is checked once they have run.
    pub async fn migrate(&self) -> StoreResult<()> {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = self.pool.acquire().await?;
                sqlx::query("PRAGMA foreign_keys = OFF")
                    .execute(&mut *conn)
                    .await?;
                let ran = sqlx::migrate!("../migrations/sqlite").run(&mut *conn).await;
                let broken = sqlx::query("PRAGMA foreign_key_check")
                    .fetch_all(&mut *conn)
                    .await;
                sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await?;
                ran?;
                if !broken?.is_empty() {
                    return Err(StoreError::Corrupt(
                        "a migration left references to rows that do not exist".into(),
                    ));
                }
            }
            Backend::Postgres => {
                sqlx::migrate!("../migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that will write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads first and writes after fails at once
    /// with "database is locked" when another connection wrote in between (WAL gives it no
    /// way to wait), which a busy lab's PATCH met as a 500 under load. On PostgreSQL, a plain
    /// `BEGIN`: its row locks wait.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Answers when the database does; for `/healthz`.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Turns a unique-constraint violation into `Conflict { what }`, other errors unchanged.
fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { what },
        _ => StoreError::Database(e),
    }
}

/// Reads a text column holding one of a closed set of words.
fn parse_word<T: std::str::FromStr>(column: &str, value: &str) -> StoreResult<T> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} = {value:?}")))
}
