//! What a person sees: every page in headless Chromium, checked by axe-core in French and
//! English, on a desktop, at 200% zoom and on a phone, with a keyboard-only login. The
//! browser side is `tests/browser/check.mjs`; it needs Debian's `chromium` and
//! `npm ci --prefix web/tests/browser` (both done by `.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_accessible_in_french_and_english() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/axe-core").exists()
            && dir.join("node_modules/playwright-core").exists(),
        "the browser checks need their npm packages: run `npm ci --prefix web/tests/browser`"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the browser checks need Chromium at {chromium}: `apt-get install chromium`"
    );

    let app = common::spawn_app().await;
    let accounts = fabrique_web::demo::seed(&app.lab).await.unwrap();
    let config = fabrique_web::config::Config::build(&[(
        "test",
        fabrique_web::config::Layer {
            data_dir: Some(app.dir.path().to_path_buf()),
            ..Default::default()
        },
    )])
    .unwrap();
    fabrique_web::demo::submit_sample_job(&app.lab, &config)
        .await
        .unwrap();
    fabrique_web::demo::seed_campaign(&app.lab, &config)
        .await
        .unwrap();
    // The laser answers on a virtual GRBL, for its operator panel.
    let stop = tokio_util::sync::CancellationToken::new();
    let link = app.dir.path().join("laser");
    let (at, stop_serving) = (link.clone(), stop.clone());
    let laser_sim = fabrique_machines::sim::grbl::VirtualGrbl::new(Default::default());
    tokio::spawn(async move {
        fabrique_machines::sim::grbl::serve_at(&at, laser_sim, Default::default(), stop_serving)
            .await
    });
    while !link.exists() {
        tokio::task::yield_now().await;
    }
    let laser = app
        .lab
        .machines()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.name == "Découpeuse laser")
        .unwrap();
    let mut input = fabrique_controller::domain::MachineInput::new(
        &laser.name,
        laser.kind,
        laser.connection.clone(),
        laser.profile.clone(),
        &laser.location,
        &laser.required_training,
    )
    .unwrap();
    input.connection = fabrique_controller::domain::Connection::SerialGrbl {
        port: link.display().to_string(),
        baud: 115_200,
    };
    app.lab
        .store()
        .update_machine(laser.id, &input, fabrique_controller::lab::now())
        .await
        .unwrap();
    app.runtime.refresh(laser.id).await;
    let password = |name: &str| {
        accounts
            .iter()
            .find(|(u, _, _)| u == name)
            .unwrap()
            .2
            .clone()
    };
    let output = tokio::process::Command::new("node")
        .arg(dir.join("check.mjs"))
        .args([&app.base, &password("manager"), &password("member")])
        .output()
        .await
        .expect("node is needed for the browser checks");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all pages clean"));
    assert!(stdout.contains("operator panel: checked"), "{stdout}");
    stop.cancel();
    assert!(
        stdout
            .lines()
            .filter(|l| l.contains("axe violation"))
            .count()
            >= 40,
        "too few pages checked:\n{stdout}"
    );
}
