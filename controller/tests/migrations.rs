//! The two migration folders must stay in step: same versions, same names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn names(folder: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("migrations")
        .join(folder);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn sqlite_and_postgres_migrations_have_the_same_versions_and_names() {
    let sqlite = names("sqlite");
    let postgres = names("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
    for name in &sqlite {
        let (version, rest) = name.split_once('_').expect("VERSION_name.sql");
        assert!(
            version.chars().all(|c| c.is_ascii_digit()),
            "{name}: version must be digits"
        );
        assert!(rest.ends_with(".sql"), "{name}: must end in .sql");
    }
}

/// Migration 10 rebuilds the machines table on SQLite (a CHECK constraint cannot change in
/// place): a lab's bookings, jobs and panel log, which refer to machines and cascade on
/// their deletion, must all be there after it, and the new connection kinds accepted.
#[tokio::test]
async fn the_machines_rebuild_keeps_what_refers_to_machines() {
    use sqlx::Executor;
    use sqlx::any::AnyPoolOptions;
    let dir = tempfile::tempdir().unwrap();
    let url = fabrique_controller::testing::fresh_database_url(dir.path())
        .await
        .unwrap();
    let postgres = url.starts_with("postgres");
    sqlx::any::install_default_drivers();
    let url_rwc = if postgres {
        url.clone()
    } else {
        format!("{url}?mode=rwc")
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                if conn.backend_name() == "SQLite" {
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                }
                Ok(())
            })
        })
        .connect(&url_rwc)
        .await
        .unwrap();
    let mut before = if postgres {
        sqlx::migrate!("../migrations/postgres")
    } else {
        sqlx::migrate!("../migrations/sqlite")
    };
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 10)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    for sql in [
        "INSERT INTO users (id, username, display_name, role, credential_kind, secret_hash, created_at, updated_at) \
         VALUES (1, 'nadia', 'Nadia', 'manager', 'password', 'x', 0, 0)",
        "INSERT INTO bookings (machine_id, user_id, kind, starts_at, ends_at, created_by, created_at) \
         VALUES (1, 1, 'booking', 100, 200, 1, 0)",
        "INSERT INTO machine_panel_log (machine_id, user_id, user_name, action, sent, answer, at) \
         VALUES (1, 1, 'Nadia', 'home', '$H', 'ok', 0)",
    ] {
        if sql.starts_with("INSERT INTO bookings") {
            let profile =
                serde_json::to_string(&fabrique_controller::domain::MachineProfile::default())
                    .unwrap();
            sqlx::query(
                "INSERT INTO machines (id, name, kind, connection, serial_port, baud, profile, state, \
                 created_at, updated_at) VALUES (1, 'Découpeuse laser', 'laser_cutter', 'serial_grbl', \
                 '/dev/ttyUSB0', 115200, $1, 'idle', 0, 0)",
            )
            .bind(profile)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.execute(sql).await.unwrap();
    }
    pool.close().await;

    let store = fabrique_controller::Store::open(&url).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        fabrique_controller::Store::latest_migration(store.backend())
    );
    let machine = fabrique_controller::domain::MachineId(1);
    assert_eq!(store.panel_log(machine, 10).await.unwrap().len(), 1);
    assert_eq!(
        store.machine(machine).await.unwrap().name,
        "Découpeuse laser"
    );
    let second = |s| jiff::Timestamp::from_second(s).unwrap();
    let bookings = store
        .bookings_between(Some(machine), second(0), second(1000))
        .await
        .unwrap();
    assert_eq!(bookings.len(), 1, "the booking survived the rebuild");
    store.close().await;
}
