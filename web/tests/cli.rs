//! The `fabrique` command: migrate, user add, user api-key, and settings errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::command;
use fabrique_controller::testing::fresh_database_url;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `fabrique` on a fresh database (SQLite in `dir`, or PostgreSQL in CI).
fn fabrique(dir: &std::path::Path, database_url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = command(dir, database_url, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn user_add_then_api_key_gives_a_working_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await.unwrap();
    let out = fabrique(dir.path(), &url, &["migrate"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    if !url.starts_with("postgres") {
        assert!(
            dir.path().join("fabrique.db").exists(),
            "SQLite file created on first start"
        );
    }
    let out = fabrique(
        dir.path(),
        &url,
        &[
            "user",
            "add",
            "nadia",
            "--role",
            "manager",
            "--password-stdin",
        ],
        "a long password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nadia"));
    let out = fabrique(
        dir.path(),
        &url,
        &[
            "user",
            "add",
            "nadia",
            "--role",
            "manager",
            "--password-stdin",
        ],
        "a long password\n",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("taken"), "{}", text(&out.stderr));
    let out = fabrique(
        dir.path(),
        &url,
        &["user", "add", "josette", "--pin", "--password-stdin"],
        "12345\n",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("PIN"), "{}", text(&out.stderr));

    let out = fabrique(dir.path(), &url, &["user", "api-key", "nadia"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    assert!(key.starts_with("fab_"), "{key}");
    let store = fabrique_controller::Store::open(&url).await.unwrap();
    let lab = fabrique_controller::Lab::new(store).unwrap();
    let user = lab
        .user_by_api_key(&key, 1)
        .await
        .unwrap()
        .expect("the printed key opens the account");
    assert_eq!(user.username.as_str(), "nadia");
    assert_eq!(user.role.as_str(), "manager");
    let out = fabrique(dir.path(), &url, &["user", "api-key", "nobody"], "");
    assert!(!out.status.success());
}

#[test]
fn a_wrong_setting_stops_the_start_with_its_name_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fabrique"))
        .args(["migrate"])
        .current_dir(dir.path())
        .env("FABRIQUE_LISTEN", "everywhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("listen") && err.contains("FABRIQUE_") && err.contains("everywhere"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("fabrique.toml"),
        "database_url = \"mysql://lab:hunter2@db/x\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fabrique"))
        .args(["migrate"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("database_url") && err.contains("fabrique.toml"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "secrets never printed: {err}");
}

/// A virtual machine started with `fabrique sim ...`, stopped when dropped.
struct Sim(std::process::Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim(args: &[&str], link: &std::path::Path) -> Sim {
    let child = Command::new(env!("CARGO_BIN_EXE_fabrique"))
        .arg("sim")
        .args(args)
        .arg("--link")
        .arg(link)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if link.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        link.exists(),
        "the simulator did not link {}",
        link.display()
    );
    Sim(child)
}

fn stream(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fabrique"))
        .arg("stream")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn stream_to_a_virtual_marlin_exits_zero_only_when_every_line_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("printer");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mk3_keychain.gcode");
    let _printer = sim(
        &[
            "marlin",
            "--time-scale",
            "0",
            "--checksum-error-every",
            "500",
        ],
        &link,
    );
    let out = stream(&["--port", link.to_str().unwrap(), file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("10928 lines acknowledged")
            || text(&out.stdout).contains("10928 lines acknowledged")
    );

    let cut = dir.path().join("cut");
    let _unplugged = sim(
        &[
            "marlin",
            "--time-scale",
            "0",
            "--disconnect-at-line",
            "2000",
        ],
        &cut,
    );
    let out = stream(&["--port", cut.to_str().unwrap(), file]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a job that did not complete exits 1"
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("interrupted") && all.contains("last acknowledged line"),
        "{all}"
    );
    assert!(
        all.contains("leave the printer safe"),
        "the printer is reached again to turn its heaters off: {all}"
    );
}

#[test]
fn a_laser_cut_from_the_command_line_needs_a_person_at_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("laser");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/laser_shield.gcode");
    let _laser = sim(&["grbl", "--time-scale", "0", "--baud", "0"], &link);
    let out = stream(&["--port", link.to_str().unwrap(), file]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "no terminal, no --i-am-at-the-machine: refused"
    );
    let out = stream(&[
        "--port",
        link.to_str().unwrap(),
        "--i-am-at-the-machine",
        file,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test]
async fn analyze_reads_a_file_and_checks_it_against_a_machine_of_the_lab() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await.unwrap();
    let keychain = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mk3_keychain.gcode");
    let out = fabrique(dir.path(), &url, &["analyze", keychain], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Trancheur\u{a0}: PrusaSlicer"),
        "{}",
        text(&out.stdout)
    );

    // Where the time goes, and whose limits: this file has them only in its slicer block.
    let hook = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../machines/tests/data/ender_hook_limits_in_footer.gcode"
    );
    let out = fabrique(dir.path(), &url, &["analyze", hook], "");
    let said = text(&out.stdout);
    assert!(
        said.contains("  mouvements 28 min, chauffe 2 min"),
        "{said}"
    );
    assert!(
        said.contains(
            "Limites de vitesse de l'estimation\u{a0}: celles du trancheur (fin du fichier)"
        ),
        "{said}"
    );
    let out = fabrique(dir.path(), &url, &["analyze", "--lang", "en", keychain], "");
    let said = text(&out.stdout);
    assert!(
        said.contains(
            "Speed limits of the estimate: the slicer's (end of the file), changed by the file's own M201-M205"
        ),
        "{said}"
    );

    let lab = fabrique_controller::Lab::new(fabrique_controller::Store::open(&url).await.unwrap())
        .unwrap();
    let new = fabrique_controller::domain::NewUser::parse(
        "nadia",
        "",
        "",
        fabrique_controller::domain::Role::Manager,
        fabrique_controller::domain::Lang::Fr,
        fabrique_controller::domain::CredentialKind::Pin,
        fabrique_controller::domain::Secret::new("123456"),
    )
    .unwrap();
    let manager = lab.create_user_unchecked(&new, 1).await.unwrap();
    let profile = fabrique_controller::domain::MachineProfile::parse(
        ["210", "210", "200"],
        "260",
        "100",
        "",
        "",
        "",
    )
    .unwrap();
    let input = fabrique_controller::domain::MachineInput::new(
        "Ender 3",
        fabrique_controller::domain::MachineKind::FdmPrinter,
        fabrique_controller::domain::Connection::Manual,
        profile,
        "",
        "",
    )
    .unwrap();
    lab.create_machine(&manager, &input, 1).await.unwrap();
    let risky = dir.path().join("risky.gcode");
    std::fs::write(&risky, "G90\nM82\nG1 X230 Y10 E5\n").unwrap();
    let out = fabrique(
        dir.path(),
        &url,
        &["analyze", "--machine", "ender 3", risky.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "something to check: exit 1");
    assert!(
        text(&out.stdout).contains("230 mm demandés en X, 210 mm disponibles"),
        "{}",
        text(&out.stdout)
    );
    let out = fabrique(
        dir.path(),
        &url,
        &[
            "analyze",
            "--json",
            "--machine",
            "Ender 3",
            risky.to_str().unwrap(),
        ],
        "",
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["fit"][0]["code"], "too_large");
    assert_eq!(json["issues"], serde_json::json!([]));
    let out = fabrique(
        dir.path(),
        &url,
        &["analyze", "--machine", "Prusa", risky.to_str().unwrap()],
        "",
    );
    assert!(
        text(&out.stderr).contains("Ender 3"),
        "names the machines the lab has"
    );

    // An embroidery design: read, timed, previewed.
    use fabrique_machines::files::embroidery::{Design, write_dst};
    let mut d = Design::new();
    for x in (0..=600).step_by(25) {
        d.stitch(x, x / 2);
    }
    let dst = dir.path().join("coeur.dst");
    write_dst(&d, std::fs::File::create(&dst).unwrap()).unwrap();
    let svg = dir.path().join("coeur.svg");
    let out = fabrique(
        dir.path(),
        &url,
        &[
            "analyze",
            "--json",
            "--preview",
            svg.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "embroidery");
    assert_eq!(json["stitches"], 25);
    assert_eq!(json["width_mm"], 60.0);
    assert!(json["estimate_s"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let out = fabrique(dir.path(), &url, &["analyze", dst.to_str().unwrap()], "");
    assert!(
        text(&out.stdout).contains("Taille du motif\u{a0}: 60.0 × 30.0 mm"),
        "{}",
        text(&out.stdout)
    );
    // A broken design says why and exits 2 (1 is "something to check").
    let broken = dir.path().join("casse.pes");
    std::fs::write(&broken, b"#PES0001 not really").unwrap();
    let out = fabrique(dir.path(), &url, &["analyze", broken.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("casse.pes"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn analyze_into_a_pipe_closed_early_ends_quietly() {
    // `fabrique analyze file | head -1`: the reader goes away before the summary is written.
    let dir = tempfile::tempdir().unwrap();
    let visor = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../machines/tests/data/mk3_visor.gcode"
    );
    let mut child = command(dir.path(), "", &["analyze", visor])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?} {err}", out.status);
}
