//! Backups: a consistent copy of a lab while it runs, and putting one back.
//!
//! A backup is a folder:
//!
//! - `fabrique.db`: the SQLite database, copied by `VACUUM INTO` (one read transaction: a
//!   snapshot, taken while bookings and uploads go on), or `fabrique.sql` from `pg_dump` for
//!   PostgreSQL (also a snapshot);
//! - `jobs/`: the job files with their previews and thumbnails (not the uploads under way,
//!   `*.part`), copied after the snapshot: a file sent meanwhile is copied too and is simply
//!   not referred to;
//! - `keys/`: the lab's keys, when the data folder has them;
//! - `manifest.json`: what made it, when, and the schema version, so that a backup is never
//!   put back under an older Fabrique that does not know its schema.
//!
//! It is written under `<out>.partial` and renamed when whole: a backup folder that exists is
//! complete.

use crate::store::{Backend, Store, StoreError};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The version of Fabrique that made it.
    pub fabrique: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    pub schema_version: i64,
    /// Unix seconds.
    pub made_at: i64,
    /// Files copied beside the database.
    pub files: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists: choose a new folder")]
    Exists(PathBuf),
    #[error("{0} is not a Fabrique backup (no readable manifest.json)")]
    NotABackup(PathBuf),
    #[error(
        "this backup has schema version {backup}, newer than this Fabrique knows ({known}): install the newer Fabrique first"
    )]
    NewerSchema { backup: i64, known: i64 },
    #[error("this backup is of a {backup} database; the lab is set up for {target}")]
    OtherDatabase { backup: String, target: String },
    #[error(
        "the lab's database already holds data: restore into an empty one, or pass --force to replace it (the SQLite file is kept aside)"
    )]
    NotEmpty,
    #[error("{program} failed: {detail}")]
    Tool {
        program: &'static str,
        detail: String,
    },
    #[error("{what} {path}: {error}")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + use<> {
    let path = path.to_path_buf();
    move |error| BackupError::Io { what, path, error }
}

fn database_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// Copies `from` into `to` (created), file by file, leaving out uploads under way. Returns
/// how many files were copied.
fn copy_tree(from: &Path, to: &Path) -> Result<u64, BackupError> {
    if !from.is_dir() {
        return Ok(0);
    }
    std::fs::create_dir_all(to).map_err(io("cannot create", to))?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from).map_err(io("cannot read", from))? {
        let entry = entry.map_err(io("cannot read", from))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io("cannot read", &path))?;
        if kind.is_dir() {
            copied += copy_tree(&path, &target)?;
        } else if kind.is_file() && path.extension().is_none_or(|e| e != "part") {
            match std::fs::copy(&path, &target) {
                Ok(_) => copied += 1,
                // Removed meanwhile (an old job file cleaned up): nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("cannot copy", &path)(e)),
            }
        }
    }
    Ok(copied)
}

async fn run(program: &'static str, args: &[&str]) -> Result<(), BackupError> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| BackupError::Tool {
            program,
            detail: format!("{e} (is the PostgreSQL client installed?)"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BackupError::Tool {
            program,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Makes a backup of the lab whose database is `store` (at `database_url`) and whose files
/// are in `data_dir`, into the new folder `out`.
pub async fn make(
    store: &Store,
    database_url: &str,
    data_dir: &Path,
    out: &Path,
    now: i64,
) -> Result<Manifest, BackupError> {
    if out.exists() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let partial = out.with_extension("partial");
    if partial.exists() {
        // What an interrupted backup left.
        std::fs::remove_dir_all(&partial).map_err(io("cannot remove", &partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io("cannot create", &partial))?;
    let made = async {
        match store.backend() {
            Backend::Sqlite => store.copy_sqlite_into(&partial.join("fabrique.db")).await?,
            Backend::Postgres => {
                let dump = partial.join("fabrique.sql");
                run(
                    "pg_dump",
                    &[
                        "--no-owner",
                        "--clean",
                        "--if-exists",
                        "--file",
                        &dump.display().to_string(),
                        database_url,
                    ],
                )
                .await?;
            }
        }
        let (from, to) = (data_dir.to_path_buf(), partial.clone());
        let files = tokio::task::spawn_blocking(move || -> Result<u64, BackupError> {
            Ok(copy_tree(&from.join("jobs"), &to.join("jobs"))?
                + copy_tree(&from.join("keys"), &to.join("keys"))?)
        })
        .await
        .map_err(|e| BackupError::Tool {
            program: "copy",
            detail: e.to_string(),
        })??;
        let manifest = Manifest {
            fabrique: env!("CARGO_PKG_VERSION").to_string(),
            database: database_name(store.backend()).to_string(),
            schema_version: store.schema_version().await?,
            made_at: now,
            files,
        };
        let path = partial.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        std::fs::write(&path, text).map_err(io("cannot write", &path))?;
        std::fs::rename(&partial, out).map_err(io("cannot rename", &partial))?;
        Ok(manifest)
    }
    .await;
    if made.is_err() {
        let _cleaned = std::fs::remove_dir_all(&partial);
    }
    made
}

/// Reads a backup's manifest.
pub fn manifest(backup: &Path) -> Result<Manifest, BackupError> {
    std::fs::read_to_string(backup.join("manifest.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| BackupError::NotABackup(backup.to_path_buf()))
}

/// Puts the backup at `backup` back as the lab's database (`database_url`) and files
/// (`data_dir`), refusing a schema newer than this Fabrique knows, and a database that
/// holds data unless `force` (a SQLite file replaced is kept aside as
/// `fabrique.db.before-restore-<time>`). The database is then brought up to this version's
/// schema.
pub async fn restore(
    backup: &Path,
    database_url: &str,
    data_dir: &Path,
    force: bool,
    now: i64,
) -> Result<Manifest, BackupError> {
    let manifest = manifest(backup)?;
    let target = Store::connect(database_url).await?;
    let backend = target.backend();
    if manifest.database != database_name(backend) {
        return Err(BackupError::OtherDatabase {
            backup: manifest.database,
            target: database_name(backend).into(),
        });
    }
    let known = Store::latest_migration(backend);
    if manifest.schema_version > known {
        return Err(BackupError::NewerSchema {
            backup: manifest.schema_version,
            known,
        });
    }
    let holds_data = target.schema_version().await? > 0;
    if holds_data && !force {
        return Err(BackupError::NotEmpty);
    }
    match backend {
        Backend::Sqlite => {
            target.close().await;
            let db = data_dir.join("fabrique.db");
            if db.exists() {
                let aside = data_dir.join(format!("fabrique.db.before-restore-{now}"));
                std::fs::rename(&db, &aside).map_err(io("cannot move aside", &db))?;
            }
            for stale in ["fabrique.db-wal", "fabrique.db-shm"] {
                let path = data_dir.join(stale);
                if path.exists() {
                    std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
                }
            }
            let from = backup.join("fabrique.db");
            std::fs::copy(&from, &db).map_err(io("cannot copy", &from))?;
        }
        Backend::Postgres => {
            target.close().await;
            let dump = backup.join("fabrique.sql");
            run(
                "psql",
                &[
                    "--quiet",
                    "--set",
                    "ON_ERROR_STOP=1",
                    "--file",
                    &dump.display().to_string(),
                    database_url,
                ],
            )
            .await?;
        }
    }
    let (from, to) = (backup.to_path_buf(), data_dir.to_path_buf());
    tokio::task::spawn_blocking(move || -> Result<u64, BackupError> {
        Ok(copy_tree(&from.join("jobs"), &to.join("jobs"))?
            + copy_tree(&from.join("keys"), &to.join("keys"))?)
    })
    .await
    .map_err(|e| BackupError::Tool {
        program: "copy",
        detail: e.to_string(),
    })??;
    // Brings the restored database to this version's schema.
    Store::open(database_url).await?.close().await;
    Ok(manifest)
}

/// The backups `dir` holds (folders with a manifest), oldest first.
pub fn list(dir: &Path) -> Vec<(PathBuf, Manifest)> {
    let mut found: Vec<(PathBuf, Manifest)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| manifest(&p).ok().map(|m| (p, m)))
        .collect();
    found.sort_by_key(|(p, m)| (m.made_at, p.clone()));
    found
}

/// Removes the oldest backups of `dir` beyond the `keep` newest. Returns those removed.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let all = list(dir);
    let excess = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (path, _) in all.into_iter().take(excess) {
        std::fs::remove_dir_all(&path).map_err(io("cannot remove", &path))?;
        removed.push(path);
    }
    Ok(removed)
}
