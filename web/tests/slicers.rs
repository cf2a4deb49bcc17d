//! Fabrique as the OctoPrint that slicers and apps talk to, checked with clients no one here
//! wrote: OctoRest (PyPI `octorest`), OctoPrint's own `octoprint client`, the PyPI
//! `zeroconf` package browsing the network as PrusaSlicer and Cura do, and the requests of
//! Cura's OctoPrint Connection plugin (fieldOfView/Cura-OctoPrintPlugin,
//! `OctoPrintOutputDevice.py`) replayed in the order that source sends them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{self, Server, command};
use common::{TestApp, client, spawn_app};
use fabrique_controller::domain::job::{JobId, JobState};
use fabrique_controller::domain::{
    Connection, CredentialKind, Lang, Machine, MachineInput, MachineKind, MachineProfile, NewUser,
    Role, Secret, User,
};
use fabrique_controller::lab::now;
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, Store};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::process::Command;

const GCODE: &[u8] = include_bytes!("data/mk3_keychain.gcode");

struct Slicers {
    app: TestApp,
    key: String,
    maker: User,
    prusa: Machine,
    ender: Machine,
    laser: Machine,
}

fn input(name: &str, kind: MachineKind) -> MachineInput {
    let profile =
        MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", "PLA").unwrap();
    MachineInput::new(name, kind, Connection::Manual, profile, "Atelier", "").unwrap()
}

/// A lab with two printers and a laser (all without a data link, so jobs wait in the
/// queue), and a maker with a personal API key.
async fn slicers() -> Slicers {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "Cura", now()).await.unwrap();
    let prusa = app
        .add_idle_machine(&manager, &input("Prusa MK3S", MachineKind::FdmPrinter))
        .await;
    let ender = app
        .add_idle_machine(&manager, &input("Ender 3 Pro", MachineKind::FdmPrinter))
        .await;
    let laser = app
        .add_idle_machine(&manager, &input("Découpe laser", MachineKind::LaserCutter))
        .await;
    Slicers {
        app,
        key,
        maker,
        prusa,
        ender,
        laser,
    }
}

/// Runs a Python program with the test's peers (`.venv` first on `PATH`), giving it `env`;
/// it prints one JSON value.
async fn python(program: &str, env: &[(&str, &str)]) -> Value {
    let output = Command::new("python3")
        .args(["-c", program])
        .envs(env.iter().copied())
        .output()
        .await
        .expect("python3 (the test command puts .venv/bin first on PATH)");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&output.stdout));
    })
}

fn port_of(app: &TestApp) -> String {
    app.base.rsplit(':').next().unwrap().to_string()
}

#[tokio::test]
async fn octorest_reads_the_lab_as_it_reads_an_octoprint() {
    let lab = slicers().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("visière.gcode");
    std::fs::write(&file, GCODE).unwrap();
    let out = python(
        r#"
import json, os
from octorest import OctoRest
c = OctoRest(url=os.environ["URL"], apikey=os.environ["KEY"])
out = {"version": c.version}
out["upload"] = c.upload(os.environ["FILE"])
name = out["upload"]["files"]["local"]["name"]
out["files"] = c.files()
out["local"] = c.files("local")
out["info"] = c.files_info("local", name)
out["job"] = c.job_info()
out["printer"] = c.printer()
out["profiles"] = c.printer_profiles()
for attempt, call in (("gcode", lambda: c.gcode("G28")), ("cancel", c.cancel), ("connect", c.connect)):
    try:
        call()
        out[attempt] = "accepted"
    except RuntimeError as e:
        out[attempt] = str(e)
c.delete(name)
out["after_delete"] = c.files()
print(json.dumps(out))
"#,
        &[
            ("URL", &lab.app.base),
            ("KEY", &lab.key),
            ("FILE", file.to_str().unwrap()),
        ],
    )
    .await;

    assert!(
        out["version"]["text"]
            .as_str()
            .unwrap()
            .starts_with("OctoPrint")
    );
    assert_eq!(out["upload"]["done"], true);
    let name = out["upload"]["files"]["local"]["name"].as_str().unwrap();
    let id: i64 = name.split('-').next().unwrap().parse().unwrap();
    assert_eq!(name, format!("{id}-visière.gcode"));

    // The file list is the maker's queue: the job, its analysis, links that work.
    let files = out["files"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(out["local"]["files"], out["files"]["files"]);
    let entry = &files[0];
    assert_eq!(entry["display"], "visière.gcode");
    assert_eq!(entry["origin"], "local");
    assert_eq!(entry["type"], "machinecode");
    assert_eq!(entry["size"], GCODE.len());
    assert_eq!(entry["fabrique"]["state"], "queued");
    assert!(
        entry["gcodeAnalysis"]["estimatedPrintTime"]
            .as_i64()
            .unwrap()
            > 60
    );
    assert!(
        entry["gcodeAnalysis"]["filament"]["tool0"]["length"]
            .as_f64()
            .unwrap()
            > 100.0
    );
    assert_eq!(out["info"]["name"], entry["name"], "{}", out["info"]);
    assert_eq!(out["info"]["display"], "visière.gcode");
    let download = client()
        .get(entry["refs"]["download"].as_str().unwrap())
        .header("x-api-key", &lab.key)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), GCODE);
    // The resource is the file's own address (the file is deleted below, at the end of the
    // Python program, so it is read there: `info`).
    assert_eq!(
        entry["refs"]["resource"],
        lab.app
            .url(&format!("/api/files/local/{id}-visi%C3%A8re.gcode"))
    );

    // The job: the maker's, waiting, with no progress; not "Printing".
    assert_eq!(out["job"]["job"]["file"]["display"], "visière.gcode");
    assert_eq!(out["job"]["job"]["user"], "amina");
    assert_eq!(out["job"]["state"], "Operational");
    assert_eq!(out["job"]["progress"]["completion"], Value::Null);
    assert_eq!(out["job"]["fabrique"]["state"], "queued");
    assert!(out["job"]["job"]["estimatedPrintTime"].as_i64().unwrap() > 60);

    // No printer runs it yet: the lab as a whole, which has idle printers.
    assert_eq!(out["printer"]["state"]["text"], "Operational");
    assert_eq!(out["printer"]["state"]["flags"]["ready"], true);
    let profiles = out["profiles"]["profiles"].as_object().unwrap();
    assert!(profiles.contains_key(&format!("{}-prusa-mk3s", lab.prusa.id.0)));
    assert!(profiles.contains_key(&format!("{}-ender-3-pro", lab.ender.id.0)));
    assert!(
        !profiles.keys().any(|k| k.contains("laser")),
        "{profiles:?}"
    );
    assert_eq!(profiles["_default"]["current"], true);

    // What a member may not do on a shared printer: 403, in OctoPrint's shape, in words.
    for attempt in ["gcode", "cancel", "connect"] {
        let said = out[attempt].as_str().unwrap();
        assert!(said.contains("(403)"), "{attempt}: {said}");
        assert!(
            said.contains("\"error\": \"") || said.contains("\"error\":\""),
            "{said}"
        );
        assert!(said.contains("atelier"), "{attempt}: {said}");
    }

    // Deleting the file withdraws the job.
    assert_eq!(out["after_delete"]["files"], json!([]));
    let job = lab.app.lab.store().job(JobId(id)).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.owner, lab.maker.id);
}

#[tokio::test]
async fn octoprint_client_sends_to_one_printer_at_its_own_address() {
    let lab = slicers().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crochet.gcode");
    std::fs::write(&file, GCODE).unwrap();
    let prefix = format!("/octoprint/{}-ender-3-pro", lab.ender.id.0);
    let port = port_of(&lab.app);
    let client_command = async |args: &[&str]| {
        let output = Command::new("octoprint")
            .args(["client", "--host", "127.0.0.1", "--port", &port])
            .args(["--apikey", &lab.key, "--prefix", &prefix])
            .args(args)
            .output()
            .await
            .expect("octoprint (pip install octoprint, in .venv)");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let said = client_command(&["upload", "/api/files/local", file.to_str().unwrap()]).await;
    assert!(said.contains("201"), "{said}");

    let jobs = lab.app.lab.own_jobs(&lab.maker).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].target_machine, Some(lab.ender.id));
    assert_eq!(jobs[0].file_name, "crochet.gcode");

    // The printer's own answers: its name, its profile, its state.
    let printer = client_command(&["get", "/api/printer"]).await;
    let printer: Value = serde_json::from_str(printer.lines().last().unwrap()).unwrap();
    assert_eq!(printer["state"]["text"], "Operational", "{printer}");
    let profiles = client_command(&["get", "/api/printerprofiles"]).await;
    assert!(profiles.contains("Ender 3 Pro"), "{profiles}");
    assert!(!profiles.contains("Prusa"), "{profiles}");
    let files = client_command(&["get", "/api/files"]).await;
    assert!(files.contains("crochet.gcode"), "{files}");

    // Another member's key finds no such file, and cannot withdraw it.
    let other = lab.app.add_user("bilal", Role::Member).await;
    let other_key = lab
        .app
        .lab
        .create_api_key(&other, "k", now())
        .await
        .unwrap();
    let file_url = lab.app.url(&format!(
        "{prefix}/api/files/local/{}-crochet.gcode",
        jobs[0].id.0
    ));
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = client()
            .request(method.clone(), &file_url)
            .header("x-api-key", &other_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method}");
    }
    let still = lab.app.lab.store().job(jobs[0].id).await.unwrap();
    assert_eq!(still.state, JobState::Queued);
    // Under another printer, the file is not there either.
    let elsewhere = lab.app.url(&format!(
        "/octoprint/{}/api/files/local/{}-crochet.gcode",
        lab.prusa.id.0, jobs[0].id.0
    ));
    let response = client()
        .get(elsewhere)
        .header("x-api-key", &lab.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // The name alone finds the printer too; a laser, or no such printer, is not there.
    let get = |path: String| {
        let key = lab.key.clone();
        async move {
            let response = client()
                .get(path)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = get(lab.app.url("/octoprint/ender-3-pro/api/version")).await;
    assert_eq!(status, 200);
    let laser = format!("/octoprint/{}-decoupe-laser/api/version", lab.laser.id.0);
    let (status, body) = get(lab.app.url(&laser)).await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string(), "{body}");
    let (status, _) = get(lab.app.url("/octoprint/9999/api/version")).await;
    assert_eq!(status, 404);

    // Without a key: 401, in OctoPrint's shape.
    let response = client()
        .get(lab.app.url(&format!("{prefix}/api/job")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
}

/// A PNG of 1×1 pixel.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A package laid out as Cura's UFPWriter (libCharon's OPC writer) lays it out, written by
/// Python's `zipfile` with deflate, as Charon writes it.
async fn ufp(dir: &std::path::Path, gcode: &[u8]) -> Vec<u8> {
    let path = dir.join("visiere.ufp");
    std::fs::write(dir.join("model.gcode"), gcode).unwrap();
    std::fs::write(dir.join("thumbnail.png"), PNG).unwrap();
    python(
        r#"
import json, os, zipfile
d = os.environ["DIR"]
with zipfile.ZipFile(os.path.join(d, "visiere.ufp"), "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("[Content_Types].xml", '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="gcode" ContentType="text/x-gcode"/><Default Extension="png" ContentType="image/png"/><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/></Types>')
    z.writestr("_rels/.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Target="/3D/model.gcode" Type="http://schemas.ultimaker.org/package/2018/relationships/gcode" Id="rel0"/><Relationship Target="/Metadata/thumbnail.png" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/thumbnail" Id="rel1"/></Relationships>')
    z.write(os.path.join(d, "model.gcode"), "/3D/model.gcode")
    z.write(os.path.join(d, "thumbnail.png"), "/Metadata/thumbnail.png")
print(json.dumps(sorted(zipfile.ZipFile(os.path.join(d, "visiere.ufp")).namelist())))
"#,
        &[("DIR", dir.to_str().unwrap())],
    )
    .await;
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn curas_octoprint_plugin_connects_monitors_and_sends_a_package() {
    let lab = slicers().await;
    // Cura's "instance" is the printer's own address.
    let base = lab
        .app
        .url(&format!("/octoprint/{}-prusa-mk3s/", lab.prusa.id.0));
    let api = format!("{base}api/");
    let http = client();
    let get = |target: &str| {
        http.get(format!("{api}{target}"))
            .header("x-api-key", &lab.key)
            .header("user-agent", "Cura-OctoPrintPlugin")
            .send()
    };

    // connect(): settings, then getAdditionalData(): version, passive login, profiles.
    let settings: Value = get("settings").await.unwrap().json().await.unwrap();
    assert_eq!(settings["feature"]["sdSupport"], false);
    assert!(settings.get("webcam").is_none(), "no webcam: {settings}");
    let ufp_plugin = &settings["plugins"]["UltimakerFormatPackage"];
    assert!(ufp_plugin["installed_version"].is_string(), "{settings}");
    let version: Value = get("version").await.unwrap().json().await.unwrap();
    assert!(version["server"].is_string());
    let login = http
        .post(format!("{api}login"))
        .header("x-api-key", &lab.key)
        .json(&json!({ "passive": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(login.json::<Value>().await.unwrap()["name"], "amina");
    let profiles: Value = get("printerprofiles").await.unwrap().json().await.unwrap();
    let current: Vec<&Value> = profiles["profiles"]
        .as_object()
        .unwrap()
        .values()
        .filter(|p| p["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "{profiles}");
    assert_eq!(current[0]["name"], "Prusa MK3S");
    for axis in ["x", "y", "z", "e"] {
        assert!(current[0]["axes"][axis]["speed"].is_number(), "{axis}");
        assert!(current[0]["axes"][axis]["inverted"].is_boolean(), "{axis}");
    }

    // The polling: /printer then /job, as the plugin reads them.
    let printer = get("printer").await.unwrap();
    assert_eq!(printer.status(), 200);
    let printer: Value = printer.json().await.unwrap();
    let flags = &printer["state"]["flags"];
    for flag in [
        "error",
        "closedOrError",
        "paused",
        "pausing",
        "printing",
        "cancelling",
        "ready",
        "operational",
    ] {
        assert!(flags[flag].is_boolean(), "{flag}: {printer}");
    }
    let job: Value = get("job").await.unwrap().json().await.unwrap();
    assert!(job["state"].is_string());
    assert!(job["job"]["file"].get("name").is_some());

    // The upload of a .ufp: fields `path` and `file`; select and print come after, at the
    // Location the answer gives, with `.ufp` read as `.gcode` (plugin version 0.1.7+).
    let dir = tempfile::tempdir().unwrap();
    let package = ufp(dir.path(), GCODE).await;
    let form = reqwest::multipart::Form::new().text("path", "").part(
        "file",
        reqwest::multipart::Part::bytes(package)
            .file_name("visiere.ufp")
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    let upload = http
        .post(format!("{api}files/local"))
        .header("x-api-key", &lab.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let location = upload.headers()["location"].to_str().unwrap().to_string();
    let mut end_point = location.split_once("api/").unwrap().1.to_string();
    if end_point.ends_with(".ufp") {
        end_point = format!("{}gcode", &end_point[..end_point.len() - 3]);
    }
    let select = http
        .post(format!("{api}{end_point}"))
        .header("x-api-key", &lab.key)
        .json(&json!({ "command": "select", "print": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(select.status(), 204, "{end_point}");

    // The job is the G-code inside, for this printer, with the package's picture.
    let jobs = lab.app.lab.own_jobs(&lab.maker).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.file_name, "visiere.gcode");
    assert_eq!(job.target_machine, Some(lab.prusa.id));
    assert_eq!(job.size_bytes, i64::try_from(GCODE.len()).unwrap());
    assert_eq!(job.state, JobState::Queued, "{}", job.state_reason);
    let stored = std::fs::read(lab.app.jobs_dir().join(&job.stored_name)).unwrap();
    assert_eq!(stored, GCODE);
    let thumbnail = http
        .get(lab.app.url(&format!("/jobs/{}/thumbnail.png", job.id.0)))
        .header("x-api-key", &lab.key)
        .send()
        .await
        .unwrap();
    assert_eq!(thumbnail.status(), 200);
    assert_eq!(thumbnail.bytes().await.unwrap().as_ref(), PNG);
    let leftovers: Vec<String> = std::fs::read_dir(lab.app.jobs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".ufp") || n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let job_answer: Value = get("job").await.unwrap().json().await.unwrap();
    assert_eq!(job_answer["job"]["file"]["display"], "visiere.gcode");
    assert_eq!(job_answer["state"], "Operational");

    // The plugin's controls are the workshop's: 403 with OctoPrint's `error`.
    for (target, body) in [
        ("printer/command", json!({ "commands": ["M104 S215"] })),
        ("job", json!({ "command": "pause", "action": "pause" })),
        ("connection", json!({ "command": "connect" })),
    ] {
        let response = http
            .post(format!("{api}{target}"))
            .header("x-api-key", &lab.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{target}");
        let said: Value = response.json().await.unwrap();
        assert!(
            said["error"].as_str().unwrap().contains("atelier"),
            "{said}"
        );
    }
}

#[tokio::test]
async fn a_broken_package_is_refused_in_words_and_leaves_nothing() {
    let lab = slicers().await;
    let http = client();
    let send = |name: &'static str, bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
        http.post(lab.app.url("/api/files/local"))
            .header("x-api-key", &lab.key)
            .multipart(form)
            .send()
    };
    let response = send("visiere.ufp", b"PK\x03\x04 this is no zip".to_vec())
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let said: Value = response.json().await.unwrap();
    assert!(said["error"].as_str().unwrap().contains(".ufp"), "{said}");

    // A package with no G-code in it.
    let dir = tempfile::tempdir().unwrap();
    python(
        r#"
import json, os, zipfile
with zipfile.ZipFile(os.path.join(os.environ["DIR"], "empty.ufp"), "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("Metadata/thumbnail.png", b"\x89PNG")
print("null")
"#,
        &[("DIR", dir.path().to_str().unwrap())],
    )
    .await;
    let response = send(
        "vide.ufp",
        std::fs::read(dir.path().join("empty.ufp")).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 422);

    assert!(
        lab.app.lab.own_jobs(&lab.maker).await.unwrap().is_empty(),
        "no job recorded"
    );
    let left: Vec<_> = std::fs::read_dir(lab.app.jobs_dir())
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// The real `fabrique serve` on every interface, for the network to see it.
async fn serve_on_the_network(
    dir: &std::path::Path,
    url: &str,
    lab_name: &str,
    env: &[(&str, &str)],
) -> (Server, u16) {
    let port = process::free_port();
    let listen = format!("0.0.0.0:{port}");
    let mut serve = command(dir, url, &["--listen", &listen, "serve"]);
    serve
        .env("FABRIQUE_LOG", "warn")
        .env("FABRIQUE_LAB_NAME", lab_name)
        .envs(env.iter().copied());
    (process::serve(serve, port).await, port)
}

/// A lab's database with one printer, before its server starts.
async fn lab_with_a_printer(dir: &std::path::Path, lab_name: &str) -> (String, Machine) {
    let url = fresh_database_url(dir).await.unwrap();
    let lab = Lab::new(Store::open(&url).await.unwrap())
        .unwrap()
        .at_lab(lab_name, now())
        .await
        .unwrap();
    let new = NewUser::parse(
        "nadia",
        "",
        "",
        Role::Manager,
        Lang::Fr,
        CredentialKind::Password,
        Secret::new("a long password"),
    )
    .unwrap();
    let manager = lab.create_user_unchecked(&new, now()).await.unwrap();
    let printer = lab
        .create_machine(
            &manager,
            &input("Prusa MK4", MachineKind::FdmPrinter),
            now(),
        )
        .await
        .unwrap();
    lab.store().close().await;
    (url, printer)
}

#[tokio::test]
async fn zeroconf_finds_the_lab_and_each_printer_unless_told_not_to() {
    let unique = std::process::id();
    let (shown, hidden) = (
        format!("Fablab Nord {unique}"),
        format!("Fablab Sud {unique}"),
    );
    let (dir_shown, dir_hidden) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (url, printer) = lab_with_a_printer(dir_shown.path(), &shown).await;
    let (_server, port) = serve_on_the_network(dir_shown.path(), &url, &shown, &[]).await;
    let (url_hidden, _) = lab_with_a_printer(dir_hidden.path(), &hidden).await;
    let (_quiet, _) = serve_on_the_network(
        dir_hidden.path(),
        &url_hidden,
        &hidden,
        &[("FABRIQUE_ANNOUNCE", "false")],
    )
    .await;

    // Browsing as PrusaSlicer's "Browse" and Cura's plugin do, for a few seconds.
    let found = python(
        r#"
import json, time
from zeroconf import ServiceBrowser, ServiceListener, Zeroconf
found = {}
class Listener(ServiceListener):
    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, timeout=3000)
        if info:
            found[name] = {
                "type": type_,
                "port": info.port,
                "addresses": info.parsed_addresses(),
                "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
            }
    def update_service(self, zc, type_, name):
        self.add_service(zc, type_, name)
    def remove_service(self, zc, type_, name):
        pass
zc = Zeroconf()
listener = Listener()
browsers = [ServiceBrowser(zc, t, listener) for t in ("_octoprint._tcp.local.", "_http._tcp.local.")]
time.sleep(6)
zc.close()
print(json.dumps(found))
"#,
        &[],
    )
    .await;
    let found = found.as_object().unwrap();
    let ours = |needle: &str, ty: &str| -> Vec<(&String, &Value)> {
        found
            .iter()
            .filter(|(name, v)| name.contains(needle) && v["type"] == ty)
            .collect()
    };
    let octoprint = ours(&shown, "_octoprint._tcp.local.");
    assert_eq!(octoprint.len(), 2, "{found:?}");
    let lab_entry = octoprint
        .iter()
        .find(|(name, _)| name.starts_with(&format!("{shown}.")))
        .expect("the lab itself")
        .1;
    assert_eq!(lab_entry["port"], port);
    assert_eq!(lab_entry["txt"]["path"], "/");
    assert_eq!(lab_entry["txt"]["api"], "0.1");
    assert!(
        lab_entry["txt"]["version"]
            .as_str()
            .unwrap()
            .starts_with('1')
    );
    assert!(!lab_entry["addresses"].as_array().unwrap().is_empty());
    let printer_entry = octoprint
        .iter()
        .find(|(name, _)| name.starts_with("Prusa MK4"))
        .expect("the printer")
        .1;
    assert_eq!(
        printer_entry["txt"]["path"],
        format!("/octoprint/{}-prusa-mk4/", printer.id.0)
    );
    assert_eq!(printer_entry["txt"]["model"], "Prusa MK4");
    assert_eq!(ours(&shown, "_http._tcp.local.").len(), 2, "{found:?}");

    // The path a slicer found answers as OctoPrint at that address.
    let version = reqwest::get(format!(
        "http://127.0.0.1:{port}{}api/version",
        printer_entry["txt"]["path"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(
        version.status(),
        401,
        "an address that answers, asking for a key"
    );

    assert!(
        ours(&hidden, "_octoprint._tcp.local.").is_empty(),
        "{found:?}"
    );
    assert!(ours(&hidden, "_http._tcp.local.").is_empty(), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sees_printing_only_while_the_makers_job_prints_with_the_boards_temperatures() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "Cura", now()).await.unwrap();
    app.let_printers_run_unattended(&manager).await;
    let stop = tokio_util::sync::CancellationToken::new();
    // Twenty times faster than real time: the dwell below lasts about 3 s.
    let config = fabrique_machines::sim::marlin::SimConfig {
        time_scale: 0.05,
        ..Default::default()
    };
    let (prusa, _printer) = app.add_virtual_marlin(&manager, config, &stop).await;
    let api = app.url(&format!("/octoprint/{}/api/", prusa.id.0));
    let get = async |target: &str| -> Value {
        client()
            .get(format!("{api}{target}"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let idle = get("job").await;
    assert_eq!(idle["state"], "Operational", "{idle}");
    assert_eq!(idle["job"]["file"]["name"], Value::Null);

    let gcode =
        b"M104 S205\nM140 S60\nG28\nG1 Z0.2 F3000\nG1 X50 Y50 E2 F1200\nG4 S60\nG1 X60 Y60 E3\n";
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(gcode.to_vec()).file_name("chauffe.gcode"),
    );
    let sent = client()
        .post(format!("{api}files/local"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    app.runtime.wake();

    // While it prints: "Printing", the file, the time it has run; the board's heaters with
    // the targets the file set.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (job, printer) = loop {
        let job = get("job").await;
        let printer = get("printer").await;
        if job["state"] == "Printing" && printer["temperature"]["bed"]["target"] == 60.0 {
            break (job, printer);
        }
        assert!(Instant::now() < deadline, "never printing: {job} {printer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["job"]["file"]["display"], "chauffe.gcode");
    assert_eq!(job["fabrique"]["state"], "running");
    assert!(job["progress"]["completion"].as_f64().unwrap() < 100.0);
    assert!(job["progress"]["printTime"].is_i64(), "{job}");
    assert_eq!(printer["state"]["flags"]["printing"], true);
    assert_eq!(
        printer["temperature"]["tool0"]["target"], 205.0,
        "{printer}"
    );
    assert!(printer["temperature"]["tool0"]["actual"].is_number());

    // Someone else looking at this printer sees it busy, but no job of theirs printing.
    let other = app.add_user("bilal", Role::Member).await;
    let other_key = app.lab.create_api_key(&other, "Cura", now()).await.unwrap();
    let theirs: Value = client()
        .get(format!("{api}job"))
        .header("x-api-key", &other_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["state"], "Operational", "{theirs}");
    assert_eq!(
        theirs["job"]["file"]["name"],
        Value::Null,
        "no one else's file"
    );

    // Done only when the printer finished it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let job = get("job").await;
        if job["fabrique"]["state"] == "done" {
            break job;
        }
        assert_ne!(job["fabrique"]["state"], "failed", "{job}");
        assert!(Instant::now() < deadline, "never done: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["state"], "Operational", "{done}");
    assert_eq!(done["progress"]["completion"], 100.0);
    let files = get("files").await;
    assert_eq!(
        files["files"][0]["prints"]["last"]["success"], true,
        "{files}"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_printers_page_gives_the_address_to_paste_in_a_slicer() {
    let lab = slicers().await;
    let member = client();
    let response = lab.app.login(&member, "amina", common::PASSWORD).await;
    assert_eq!(response.status(), 303);
    let page = |id: i64| {
        let member = member.clone();
        let url = lab.app.url(&format!("/machines/{id}"));
        async move { member.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let prusa = page(lab.prusa.id.0).await;
    let address = lab
        .app
        .url(&format!("/octoprint/{}-prusa-mk3s/", lab.prusa.id.0));
    assert!(
        prusa.contains(&format!("<code>{address}</code>")),
        "{prusa}"
    );
    assert!(prusa.contains("PrusaSlicer"));
    let laser = page(lab.laser.id.0).await;
    assert!(
        !laser.contains("/octoprint/"),
        "a laser is no slicer's target"
    );
}

#[tokio::test]
async fn a_small_package_holding_a_huge_gcode_is_refused_past_the_upload_limit() {
    let app = common::spawn_app_with(fabrique_web::config::Layer {
        max_upload_mb: Some(1),
        ..Default::default()
    })
    .await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "Cura", now()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 3 MB of moves, a few kilobytes once deflated.
    python(
        r#"
import os, zipfile
with zipfile.ZipFile(os.path.join(os.environ["DIR"], "bombe.ufp"), "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("3D/model.gcode", "G1 X10 Y10 E0.1\n" * 200000)
print("null")
"#,
        &[("DIR", dir.path().to_str().unwrap())],
    )
    .await;
    let package = std::fs::read(dir.path().join("bombe.ufp")).unwrap();
    assert!(package.len() < 100_000, "{} bytes", package.len());
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(package).file_name("bombe.ufp"),
    );
    let response = client()
        .post(app.url("/api/files/local"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let said: Value = response.json().await.unwrap();
    assert!(
        said["error"].as_str().unwrap().contains("1 Mo")
            || said["error"].as_str().unwrap().contains("1 MB"),
        "{said}"
    );
    assert!(app.lab.own_jobs(&maker).await.unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(app.jobs_dir())
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn the_job_a_monitor_shows_is_the_one_that_comes_next_then_the_latest() {
    let lab = slicers().await;
    let first = lab
        .app
        .submit_file(&lab.maker, Some(lab.prusa.id), "premier.gcode", GCODE)
        .await;
    let second = lab
        .app
        .submit_file(&lab.maker, Some(lab.ender.id), "second.gcode", GCODE)
        .await;
    let shown = async |path: &str| -> Value {
        let job: Value = client()
            .get(lab.app.url(path))
            .header("x-api-key", &lab.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        job["job"]["file"]["display"].clone()
    };
    // Both wait: the one waiting longest comes next.
    assert_eq!(shown("/api/job").await, "premier.gcode");
    // Each printer shows the job sent to it.
    let ender = format!("/octoprint/{}/api/job", lab.ender.id.0);
    assert_eq!(shown(&ender).await, "second.gcode");
    // Withdrawn, the first is no longer shown anywhere.
    lab.app
        .lab
        .cancel_job(&lab.maker, first.id, now())
        .await
        .unwrap();
    assert_eq!(shown("/api/job").await, "second.gcode");
    let prusa = format!("/octoprint/{}/api/job", lab.prusa.id.0);
    assert_eq!(shown(&prusa).await, Value::Null);
    assert_eq!(second.state, JobState::Queued);
}

#[tokio::test]
async fn a_refused_command_leaves_the_connection_usable_for_the_next_request() {
    // One kept-alive connection, as OctoRest's `requests` session keeps it: a 403 answered
    // before its body was read used to close it, and the next POST on it failed with
    // "Remote end closed connection without response" (requests does not retry a POST).
    let lab = slicers().await;
    let out = python(
        r#"
import json, os, requests
s = requests.Session()
s.headers["X-Api-Key"] = os.environ["KEY"]
url = os.environ["URL"]
statuses = []
for _ in range(40):
    for path, body in (("/api/printer/command", {"commands": ["M104 S215"]}),
                       ("/api/job", {"command": "cancel"}),
                       ("/api/login", {"passive": True})):
        statuses.append(s.post(url + path, json=body, timeout=10).status_code)
print(json.dumps(sorted(set(statuses))))
"#,
        &[("URL", &lab.app.base), ("KEY", &lab.key)],
    )
    .await;
    assert_eq!(out, json!([200, 403]));
}
