//! Fabrique's web pages, JSON API and command line.
//!
//! # Layout
//!
//! - [`config`]: layered settings (defaults, `fabrique.toml`, `FABRIQUE_*`, flags).
//! - [`app`]: state, router, and the middleware that resolves the account, the language and
//!   CSRF, and renders errors.
//! - [`pages`] (askama templates in `templates/`) and [`api`] (JSON under `/api/v1`, with its
//!   OpenAPI document).
//! - [`i18n`]: the French and English catalogue every visible string comes from.
//! - [`demo`]: the small lab `fabrique serve --demo` seeds.
//! - [`announce`]: the lab and its printers announced on the network (mDNS), for slicers.

pub mod announce;
pub mod api;
pub mod app;
pub mod backups;
pub mod baking;
pub mod config;
pub mod csv;
pub mod ctx;
pub mod demo;
pub mod error;
pub mod i18n;
pub mod jobs;
pub mod pages;
pub mod ufp;
pub mod upload;

use app::AppState;
use config::Config;
use fabrique_controller::{Lab, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Opens the database (creating the SQLite file and its folder on first start) and runs
/// the migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data folder {}: {e}",
                config.data_dir.display()
            )
        })?;
    }
    Store::open(&config.database_url()).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database {}: {e}",
            config::redact_url(&config.database_url())
        )
    })
}

/// The application state, with the machine runtime started (one task per machine). The
/// lab is this node's: the one `lab_name` names (added to the database on first use).
pub async fn state(lab: Lab, config: Config) -> anyhow::Result<AppState> {
    let lab = lab
        .at_lab(&config.lab_name, fabrique_controller::lab::now())
        .await?;
    let catalog =
        i18n::Catalog::embedded().map_err(|e| anyhow::anyhow!("message catalogue: {e}"))?;
    if config.public_url.is_none() {
        tracing::warn!(
            links = %config.public_base(),
            "public_url is not set: links in badge credentials, calendar feeds, follow links \
             and slicer replies point at this address; set public_url to the lab's address"
        );
    }
    // The badge signing key is made at first start, so that the lab's DID document is
    // published before its first badge.
    let keys = fabrique_controller::badge_keys::KeyRing::load_or_create(
        &config.data_dir,
        fabrique_controller::lab::now(),
    )
    .map_err(|e| anyhow::anyhow!("badge signing keys: {e}"))?;
    tracing::debug!(kid = keys.current_kid(), "badge signing key");
    // What a kill during an upload left in the jobs folder goes before anything runs.
    let swept = lab.sweep_job_files(&config.jobs_dir()).await?;
    if swept.files > 0 {
        tracing::info!(
            files = swept.files,
            bytes = swept.bytes,
            "removed job files left by an interrupted upload"
        );
    }
    let runtime = fabrique_controller::runtime::Runtime::start(
        lab.clone(),
        config.jobs_dir(),
        config.job_retention_days,
    )
    .await?;
    Ok(AppState {
        lab,
        runtime,
        catalog: Arc::new(catalog),
        config: Arc::new(config),
    })
}

/// Serves Fabrique on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
