//! Backups: made while the lab works (bookings and uploads during the copy), put back into
//! a new place, whole and consistent; and the command line's refusals. On SQLite files, or
//! PostgreSQL (`pg_dump`, `psql`) with FABRIQUE_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client, spawn_app};
use fabrique_controller::backup::{self, BackupError};
use fabrique_controller::domain::{Connection, MachineInput, MachineKind, MachineProfile, Role};
use fabrique_controller::lab::now;
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, Store};
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use std::process::{Command, Stdio};

fn upload_form(n: usize) -> Form {
    let body = format!("M104 S210\nG28\nG1 Z0.2\nG1 X{} Y10 E1 F1200\n", 10 + n);
    Form::new().part(
        "file",
        Part::bytes(body.into_bytes())
            .file_name(format!("piece-{n}.gcode"))
            .mime_str("application/octet-stream")
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_while_the_lab_works_restores_whole_elsewhere() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let member = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&member, "k", now()).await.unwrap();
    let input = MachineInput::new(
        "Brodeuse",
        MachineKind::Embroidery,
        Connection::Manual,
        MachineProfile::default(),
        "",
        "",
    )
    .unwrap();
    let machine = app.add_idle_machine(&manager, &input).await;
    for n in 0..3 {
        let response = client()
            .post(app.url("/api/v1/jobs"))
            .header("x-api-key", &key)
            .multipart(upload_form(n))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    // Bookings and uploads go on during the backup.
    let hour = 3600;
    let start = (now() / hour + 48) * hour;
    let (lab, app_url) = (app.lab.clone(), app.url("/api/v1/jobs"));
    let (manager_b, member_b, key_b) = (manager.clone(), member.clone(), key.clone());
    let load = tokio::spawn(async move {
        for n in 0..20i64 {
            let at = |s| jiff::Timestamp::from_second(s).unwrap();
            let from = start + n * hour;
            lab.book(
                &manager_b,
                machine.id,
                member_b.id,
                at(from),
                at(from + hour),
                false,
                "",
                now(),
            )
            .await
            .unwrap();
            if n % 4 == 0 {
                let response = client()
                    .post(&app_url)
                    .header("x-api-key", &key_b)
                    .multipart(upload_form(100 + n as usize))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        }
    });
    let out = app.dir.path().join("sauvegardes").join("b1");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let manifest = backup::make(
        app.lab.store(),
        &app.database_url,
        app.dir.path(),
        &out,
        now(),
    )
    .await
    .unwrap();
    load.await.unwrap();
    assert!(manifest.files >= 3, "{manifest:?}");
    assert_eq!(
        manifest.schema_version,
        Store::latest_migration(app.lab.store().backend())
    );
    assert!(!out.with_extension("partial").exists());
    assert!(matches!(
        backup::make(
            app.lab.store(),
            &app.database_url,
            app.dir.path(),
            &out,
            now()
        )
        .await,
        Err(BackupError::Exists(_))
    ));

    // Put back into a new place: every job of the copy has its file, byte for byte.
    let elsewhere = tempfile::tempdir().unwrap();
    let url = fresh_database_url(elsewhere.path()).await.unwrap();
    backup::restore(&out, &url, elsewhere.path(), false, now())
        .await
        .unwrap();
    let restored = Lab::new(Store::open(&url).await.unwrap()).unwrap();
    let jobs = restored.jobs_for(&manager).await.unwrap();
    assert!(jobs.len() >= 3, "{}", jobs.len());
    for job in &jobs {
        let bytes = std::fs::read(elsewhere.path().join("jobs").join(&job.stored_name))
            .unwrap_or_else(|e| panic!("{}: {e}", job.stored_name));
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, job.sha256, "{}", job.file_name);
    }
    let now_ts = jiff::Timestamp::from_second(now()).unwrap();
    let later = jiff::Timestamp::from_second(start + 30 * hour).unwrap();
    let bookings = restored
        .bookings_between(Some(machine.id), now_ts, later, now())
        .await
        .unwrap();
    let live = app
        .lab
        .bookings_between(Some(machine.id), now_ts, later, now())
        .await
        .unwrap();
    assert!(bookings.len() <= live.len() && live.len() == 20);
    // The restored lab is a working lab: a new booking goes in.
    let at = |s| jiff::Timestamp::from_second(s).unwrap();
    restored
        .book(
            &manager,
            machine.id,
            member.id,
            at(start + 40 * hour),
            at(start + 41 * hour),
            false,
            "",
            now(),
        )
        .await
        .unwrap();
    restored.store().close().await;

    // Into a lab that holds data, only when asked; never a schema from a newer Fabrique.
    assert!(matches!(
        backup::restore(&out, &url, elsewhere.path(), false, now()).await,
        Err(BackupError::NotEmpty)
    ));
    backup::restore(&out, &url, elsewhere.path(), true, now())
        .await
        .unwrap();
    let manifest_path = out.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(&text).unwrap();
    newer["schema_version"] = serde_json::json!(99_999_999_999i64);
    std::fs::write(&manifest_path, newer.to_string()).unwrap();
    assert!(matches!(
        backup::restore(&out, &url, elsewhere.path(), true, now()).await,
        Err(BackupError::NewerSchema { .. })
    ));

    // Daily backups keep the number set.
    let dir = app.dir.path().join("daily");
    for n in 0..4 {
        backup::make(
            app.lab.store(),
            &app.database_url,
            app.dir.path(),
            &dir.join(format!("d{n}")),
            now() + n,
        )
        .await
        .unwrap();
    }
    let removed = backup::prune(&dir, 2).unwrap();
    assert_eq!(removed, vec![dir.join("d0"), dir.join("d1")]);
    assert_eq!(backup::list(&dir).len(), 2);
}

#[tokio::test]
async fn the_command_line_backs_up_and_says_why_it_will_not_restore() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await.unwrap();
    Store::open(&url).await.unwrap().close().await;
    let fabrique = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fabrique"));
        command
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(args)
            .current_dir(dir.path())
            .env_remove("FABRIQUE_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if url.starts_with("postgres") {
            command.env("FABRIQUE_DATABASE_URL", &url);
        }
        command.output().unwrap()
    };
    let out = fabrique(&["backup", "copie"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Sauvegarde faite"));
    assert!(dir.path().join("copie/manifest.json").exists());
    let out = fabrique(&["restore", "copie"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fabrique(&["restore", "nulle-part"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Fabrique backup"));
    // Without a folder, a dated one in the data folder's backups/.
    let out = fabrique(&["backup"]);
    assert!(out.status.success());
    assert_eq!(backup::list(&dir.path().join("backups")).len(), 1);
}
