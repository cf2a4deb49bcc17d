//! Sending files: the JSON API, the web form, and the OctoPrint-compatible upload that
//! slicers use. Files are stored whole or not at all, and analysed on arrival.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client, spawn_app, spawn_app_with, unescaped};
use fabrique_controller::domain::Role;
use fabrique_controller::lab::now;
use fabrique_web::config::Layer;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const KEYCHAIN: &[u8] = include_bytes!("data/mk3_keychain.gcode");

fn file_form(name: &str, bytes: Vec<u8>) -> Form {
    Form::new().part(
        "file",
        Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .unwrap(),
    )
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn a_slicer_sends_a_file_the_way_prusaslicer_does() {
    let app = spawn_app().await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app
        .lab
        .create_api_key(&maker, "PrusaSlicer", now())
        .await
        .unwrap();

    // PrusaSlicer's connection test.
    let version: Value = client()
        .get(app.url("/api/version"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(version["text"].as_str().unwrap().starts_with("OctoPrint"));
    assert!(version["api"].is_string());
    assert_eq!(
        client()
            .get(app.url("/api/version"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client()
            .get(app.url("/api/version"))
            .header("x-api-key", "nope")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // PrusaSlicer's upload: fields `print`, `path` and `file`.
    let form = Form::new().text("print", "false").text("path", "").part(
        "file",
        Part::bytes(KEYCHAIN.to_vec())
            .file_name("mk3_keychain.gcode")
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    let response = client()
        .post(app.url("/api/files/local"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["done"], true);
    assert_eq!(body["files"]["local"]["display"], "mk3_keychain.gcode");
    let name = body["files"]["local"]["name"].as_str().unwrap();
    let (id, rest) = name.split_once('-').unwrap();
    assert_eq!(rest, "mk3_keychain.gcode");
    // The Location is the file's OctoPrint address, as Cura reads it.
    assert_eq!(location, app.url(&format!("/api/files/local/{name}")));

    // The job is in the maker's queue, analysed.
    let job: Value = client()
        .get(app.url(&format!("/api/v1/jobs/{id}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["owner_id"], maker.id.0);
    assert_eq!(job["size_bytes"], KEYCHAIN.len());
    assert_eq!(job["analysis"]["kind"], "gcode");
    let stored = app
        .lab
        .store()
        .job(fabrique_controller::domain::job::JobId(
            job["id"].as_i64().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(stored.sha256.len(), 64);
}

#[tokio::test]
async fn uploads_that_go_wrong_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Layer {
        max_upload_mb: Some(1),
        data_dir: Some(dir.path().to_path_buf()),
        ..Layer::default()
    })
    .await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "k", now()).await.unwrap();
    let jobs_dir = dir.path().join("jobs");
    let post = |form: Form| {
        client()
            .post(app.url("/api/v1/jobs"))
            .header("x-api-key", &key)
            .multipart(form)
            .send()
    };

    let response = post(file_form("photo.jpg", vec![1, 2, 3])).await.unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "file_type");

    let big = vec![b'G'; 2 * 1_048_576];
    let response = post(file_form("big.gcode", big)).await.unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "file_too_large");
    assert_eq!(
        body["error"]["message"],
        "Le fichier est trop gros (au plus 1 Mo)."
    );

    let response = post(file_form("empty.gcode", Vec::new())).await.unwrap();
    assert_eq!(response.status(), 422);
    let response = post(Form::new().text("machine_id", "1")).await.unwrap();
    assert_eq!(response.status(), 422);
    let response =
        post(file_form("../../../etc/x.gcode", KEYCHAIN.to_vec()).text("machine_id", "999"))
            .await
            .unwrap();
    assert_eq!(response.status(), 404, "an unknown machine is refused");

    assert!(
        app.lab.store().jobs(None, 10).await.unwrap().is_empty(),
        "no job recorded"
    );
    assert_eq!(
        files_in(&jobs_dir),
        0,
        "no file, whole or partial, left on disk"
    );
}

#[tokio::test]
async fn a_file_that_is_not_gcode_fails_with_the_reason() {
    let app = spawn_app().await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "k", now()).await.unwrap();
    let response = client()
        .post(app.url("/api/v1/jobs"))
        .header("x-api-key", &key)
        .multipart(file_form("photo.gcode", vec![0, 159, 146, 150, 0, 1]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["state"], "failed");
    assert!(
        job["state_reason"].as_str().unwrap().contains("G-code"),
        "{job}"
    );
}

#[tokio::test]
async fn the_web_form_uploads_and_the_owner_or_a_manager_act_on_the_job() {
    let app = spawn_app().await;
    let (maker, _) = app.signed_in("amina", Role::Member).await;
    let (other, _) = app.signed_in("bruno", Role::Member).await;
    let (manager, _) = app.signed_in("nadia", Role::Manager).await;
    let token = app.page_csrf(&maker, "/jobs").await;
    let without = maker
        .post(app.url("/jobs"))
        .multipart(file_form("key.gcode", KEYCHAIN.to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 403, "the form's CSRF token is required");
    let response = maker
        .post(app.url(&format!("/jobs?csrf_token={token}")))
        .multipart(file_form("key.gcode", KEYCHAIN.to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let page = response.headers()["location"].to_str().unwrap().to_string();
    let id: i64 = page.rsplit('/').next().unwrap().parse().unwrap();
    let html = maker
        .get(app.url(&page))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("key.gcode") && html.contains("en attente"));

    // Another member neither sees nor cancels it.
    assert_eq!(
        other.get(app.url(&page)).send().await.unwrap().status(),
        403
    );
    let other_token = app.page_csrf(&other, "/jobs").await;
    let response = other
        .post(app.url(&format!("/jobs/{id}/cancel")))
        .form(&[("csrf_token", other_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // The owner cancels; a manager queues it again.
    let response = maker
        .post(app.url(&format!("/jobs/{id}/cancel")))
        .form(&[("csrf_token", token.clone())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let manager_token = app.page_csrf(&manager, "/jobs").await;
    let response = manager
        .post(app.url(&format!("/jobs/{id}/requeue")))
        .form(&[("csrf_token", manager_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let history = app
        .lab
        .store()
        .job_events(fabrique_controller::domain::job::JobId(id))
        .await
        .unwrap();
    let states: Vec<&str> = history.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(states, vec!["submitted", "queued", "cancelled", "queued"]);
    assert_eq!(history[2].actor_name.as_deref(), Some("amina"));
    assert_eq!(history[3].actor_name.as_deref(), Some("nadia"));
}

#[tokio::test]
async fn safety_findings_send_the_job_to_a_manager_for_approval() {
    let app = spawn_app().await;
    let (manager_client, manager) = app.signed_in("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "k", now()).await.unwrap();
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
    let machine = app
        .lab
        .create_machine(&manager, &input, now())
        .await
        .unwrap();
    let risky = b"M104 S290\nG90\nM82\nG1 X230 Y10 E5\nM500\n".to_vec();
    let form = file_form("risky.gcode", risky).text("machine_id", machine.id.0.to_string());
    let job: Value = client()
        .post(app.url("/api/v1/jobs"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "needs_approval", "{job}");
    let codes: Vec<&str> = job["analysis"]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["forbidden_command"], "the file's own findings");
    // What the machine named refuses, in the rule's words.
    assert_eq!(job["waiting"]["code"], "too_large", "{job}");
    assert_eq!(
        job["waiting"]["message"],
        "Ender 3\u{a0}: La machine est trop petite pour ce fichier\u{a0}: 230 mm demandés en X, 210 mm disponibles."
    );
    // The job page says what to check, in plain words, with the line.
    let html = manager_client
        .get(app.url(&format!("/jobs/{}", job["id"])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        common::unescaped(&html).contains(
            "La machine est trop petite pour ce fichier\u{a0}: 230 mm demandés en X, 210 mm disponibles"
        ),
        "{html}"
    );
    assert!(
        common::unescaped(&html).contains("Ligne 5 : M500"),
        "{html}"
    );
    // The maker cannot approve it; a manager can.
    let response = client()
        .post(app.url(&format!("/api/v1/jobs/{}/approve", job["id"])))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let manager_key = app.lab.create_api_key(&manager, "m", now()).await.unwrap();
    let approved: Value = client()
        .post(app.url(&format!("/api/v1/jobs/{}/approve", job["id"])))
        .header("x-api-key", &manager_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(approved["state"], "queued");
    assert_eq!(approved["approval"]["by_name"], "nadia");
    assert_eq!(
        approved["approval"]["seen"],
        serde_json::json!(["forbidden_command"])
    );
    // Approved, it still never goes on a machine it does not fit.
    assert_eq!(approved["waiting"]["code"], "too_large");
    let plan = app.runtime.plan_once().await.unwrap();
    assert!(
        plan.placements
            .iter()
            .all(|p| p.job != job["id"].as_i64().unwrap())
    );
}

/// A DST design of `w` × `h` mm: the outline stitched in two colours, 2 mm stitches.
fn design(w_mm: i32, h_mm: i32) -> Vec<u8> {
    use fabrique_machines::files::embroidery::{Design, write_dst};
    let (w, h) = (w_mm * 10, h_mm * 10);
    let mut d = Design::new();
    for x in (0..=w).step_by(20) {
        d.stitch(x, 0);
    }
    d.color_change();
    for y in (0..=h).step_by(20) {
        d.stitch(w, y);
    }
    let mut bytes = Vec::new();
    write_dst(&d, &mut bytes).unwrap();
    bytes
}

#[tokio::test]
async fn embroidery_designs_are_read_checked_against_the_hoops_and_previewed() {
    let app = spawn_app().await;
    let (manager_client, manager) = app.signed_in("nadia", Role::Manager).await;
    let (maker_client, maker) = app.signed_in("amina", Role::Member).await;
    let (other, _) = app.signed_in("bruno", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "k", now()).await.unwrap();
    let profile = fabrique_controller::domain::MachineProfile::parse(
        ["", "", ""],
        "",
        "",
        "",
        "100x100, 130x180",
        "",
    )
    .unwrap()
    .with_speeds("", "", "800")
    .unwrap();
    let input = fabrique_controller::domain::MachineInput::new(
        "Brodeuse",
        fabrique_controller::domain::MachineKind::Embroidery,
        fabrique_controller::domain::Connection::Manual,
        profile,
        "",
        "",
    )
    .unwrap();
    let machine = app
        .lab
        .create_machine(&manager, &input, now())
        .await
        .unwrap();
    let send = |name: &str, bytes: Vec<u8>| {
        client()
            .post(app.url("/api/v1/jobs"))
            .header("x-api-key", &key)
            .multipart(file_form(name, bytes).text("machine_id", machine.id.0.to_string()))
            .send()
    };

    // A design that fits the big hoop only once turned: queued, with the hoop to use.
    let job: Value = send("ecusson.dst", design(150, 120))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "queued", "{job}");
    let a = &job["analysis"];
    assert_eq!(a["kind"], "embroidery");
    assert_eq!(a["format"], "dst");
    assert_eq!(a["stitches"], 76 + 61);
    assert_eq!(a["color_changes"], 1);
    assert_eq!(a["width_mm"], 150.0);
    assert_eq!(a["height_mm"], 120.0);
    assert_eq!(a["hoop_fit"]["smallest"]["width_mm"], 130.0);
    assert_eq!(a["hoop_fit"]["smallest"]["rotated"], true);
    // 137 stitches at 800 a minute, one colour change of 30 s.
    let estimate = job["estimate_s"].as_i64().unwrap();
    assert!((40..=42).contains(&estimate), "{estimate}");

    // The preview, in the threads' colours, to the owner (and managers), nobody else.
    let preview = maker_client
        .get(app.url(&format!("/jobs/{}/preview.svg", job["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), 200);
    assert_eq!(preview.headers()["content-type"], "image/svg+xml");
    assert_eq!(preview.headers()["x-content-type-options"], "nosniff");
    let svg = preview.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<title"), "{svg}");
    assert!(!svg.contains("<script"));
    let status = other
        .get(app.url(&format!("/jobs/{}/preview.svg", job["id"])))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status == 403 || status == 404, "{status}");
    let html = maker_client
        .get(app.url(&format!("/jobs/{}", job["id"])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("/jobs/{}/preview.svg", job["id"])));
    assert!(html.contains("130 × 180 mm"), "{html}");
    // The file for the USB stick: as sent, and as DST for any machine.
    let id = job["id"].as_i64().unwrap();
    let original = maker_client
        .get(app.url(&format!("/jobs/{id}/file")))
        .send()
        .await
        .unwrap();
    assert!(
        original.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("ecusson.dst")
    );
    assert_eq!(original.bytes().await.unwrap().as_ref(), design(150, 120));
    let dst = maker_client
        .get(app.url(&format!("/jobs/{id}/design.dst")))
        .send()
        .await
        .unwrap();
    assert_eq!(dst.status(), 200);
    assert!(dst.bytes().await.unwrap().starts_with(b"LA:"));
    let status = other
        .get(app.url(&format!("/jobs/{id}/file")))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status == 403 || status == 404, "{status}");

    // A design no hoop can take waits for a manager, who reads why.
    let job: Value = send("drapeau.dst", design(200, 150))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "needs_approval", "{job}");
    let html = manager_client
        .get(app.url(&format!("/jobs/{}", job["id"])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(job["waiting"]["code"], "hoop_too_small");
    assert!(
        common::unescaped(&html).contains(
            "Brodeuse\u{a0}: Aucun cadre de cette machine ne prend ce motif de 200 × 150 mm, même tourné."
        ),
        "{html}"
    );

    // A file named .dst that is not one fails with the reason.
    let job: Value = send("faux.dst", b"LA:not really a design".to_vec())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "failed", "{job}");
    assert!(!job["state_reason"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn a_cutting_file_goes_to_the_vinyl_cutter_with_its_size_and_preview() {
    use fabrique_controller::domain::{Connection, MachineInput, MachineKind, MachineProfile};
    let app = spawn_app().await;
    let (_, manager) = app.signed_in("nadia", Role::Manager).await;
    let (maker_client, maker) = app.signed_in("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "k", now()).await.unwrap();
    // A 600 mm roll: no length, 600 mm across.
    let profile = MachineProfile::parse(["", "600", ""], "", "", "", "", "").unwrap();
    let input = MachineInput::new(
        "Roland",
        MachineKind::VinylCutter,
        Connection::Manual,
        profile,
        "",
        "",
    )
    .unwrap();
    let cutter = app
        .lab
        .create_machine(&manager, &input, now())
        .await
        .unwrap();
    let send = |name: &str, bytes: &[u8]| {
        client()
            .post(app.url("/api/v1/jobs"))
            .header("x-api-key", &key)
            .multipart(file_form(name, bytes.to_vec()).text("machine_id", cutter.id.0.to_string()))
            .send()
    };

    // A 100 × 50 mm sticker at 10 cm/s.
    let job: Value = send(
        "sticker.plt",
        b"IN;SP1;VS10;PU0,0;PD4000,0,4000,2000,0,2000,0,0;PU;SP0;",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_ne!(job["state"], "failed", "{job}");
    let a = &job["analysis"];
    assert_eq!(a["kind"], "hpgl");
    assert_eq!(
        (a["width_mm"].as_f64(), a["height_mm"].as_f64()),
        (Some(100.0), Some(50.0))
    );
    assert_eq!(a["cut_mm"], 300.0);
    assert_eq!(a["strokes"], 1);
    // 300 mm at 100 mm/s, and two blade changes.
    assert_eq!(job["estimate_s"], 3);
    let svg = maker_client
        .get(app.url(&format!("/jobs/{}/preview.svg", job["id"])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("class=\"cut\""),
        "{svg}"
    );
    let html = maker_client
        .get(app.url(&format!("/jobs/{}", job["id"])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("100.0 × 50.0 mm"), "{html}");

    // 700 mm across a 600 mm roll: refused with the sizes.
    let job: Value = send("banner.hpgl", b"IN;PU0,0;PD0,28000;PU;")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(job["state"], "queued", "{job}");
    assert_eq!(job["waiting"]["code"], "too_large", "{job}");
}

#[tokio::test]
async fn a_gcode_file_gets_our_estimate_a_preview_and_the_slicers_thumbnail() {
    let app = spawn_app().await;
    let (maker_client, maker) = app.signed_in("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "k", now()).await.unwrap();
    let mut file =
        b"; thumbnail begin 16x16 28\n; iVBORw0KGgpzbWFsbCBwaWN0dXJl\n; thumbnail end\n".to_vec();
    file.extend_from_slice(KEYCHAIN);
    let job: Value = client()
        .post(app.url("/api/v1/jobs"))
        .header("x-api-key", &key)
        .multipart(file_form("porte-cles.gcode", file))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // PrusaSlicer said 14 min 15 s of motion; ours adds the heating.
    let estimate = job["estimate_s"].as_i64().unwrap();
    assert!((855..=1_000).contains(&estimate), "{estimate}");
    assert_eq!(job["analysis"]["slicer"]["estimate_s"], 855);
    let preview = maker_client
        .get(app.url(&format!("/jobs/{}/preview.svg", job["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), 200);
    let thumbnail = maker_client
        .get(app.url(&format!("/jobs/{}/thumbnail.png", job["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(thumbnail.status(), 200);
    assert_eq!(thumbnail.headers()["content-type"], "image/png");
    assert_eq!(
        thumbnail.bytes().await.unwrap().as_ref(),
        b"\x89PNG\r\n\x1a\nsmall picture"
    );
    let html = maker_client
        .get(app.url("/jobs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("/jobs/{}/preview.svg", job["id"])));
    // The job page names the filament the slicer was set for, beside the figure.
    let html = maker_client
        .get(app.url(&format!("/jobs/{}", job["id"])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("PLA, 0.70 m"), "{html}");
}

/// A machine whose profile says how its firmware moves (silent mode, junction deviation):
/// set from the form, shown back, in the API; a file with its limits only in the slicer's
/// block is estimated with the silent values, and the job page says where the time goes
/// and whose limits were used.
#[tokio::test]
async fn the_profile_says_how_the_firmware_moves_and_the_job_page_says_whose_limits() {
    let app = spawn_app().await;
    let (manager, _) = app.signed_in("nadia", Role::Manager).await;
    let token = app.page_csrf(&manager, "/admin/machines/new").await;
    let form = |rule: &'static str| {
        vec![
            ("csrf_token", token.clone()),
            ("name", "Prusa silencieuse".into()),
            ("kind", "fdm_printer".into()),
            ("connection", "manual".into()),
            ("work_x", "250".into()),
            ("work_y", "210".into()),
            ("work_z", "210".into()),
            ("max_hotend", "300".into()),
            ("max_bed", "120".into()),
            ("materials", "PLA".into()),
            ("junction_rule", rule.into()),
            ("silent_mode", "1".into()),
        ]
    };
    let refused = manager
        .post(app.url("/admin/machines/new"))
        .form(&form("sideways"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    assert!(app.lab.machines().await.unwrap().is_empty());
    let created = manager
        .post(app.url("/admin/machines/new"))
        .form(&form("junction_deviation"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303, "{}", created.text().await.unwrap());
    let machine = app.lab.machines().await.unwrap().remove(0);
    let edit = manager
        .get(app.url(&format!("/admin/machines/{}", machine.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        edit.contains(r#"<option value="junction_deviation" selected>"#),
        "{edit}"
    );
    assert!(
        edit.contains(r#"name="silent_mode" value="1" checked"#),
        "{edit}"
    );
    let api: Value = manager
        .get(app.url(&format!("/api/v1/machines/{}", machine.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["profile"]["junction_rule"], "junction_deviation");
    assert_eq!(api["profile"]["silent_mode"], true);

    let member = app.add_user("amina", Role::Member).await;
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../machines/tests/data/ender_hook_limits_in_footer.gcode"
    ))
    .unwrap();
    let job = app
        .submit_file(&member, Some(machine.id), "hook.gcode", &file)
        .await;
    let Some(fabrique_machines::files::FileSummary::Gcode(summary)) = &job.analysis else {
        panic!("{:?}", job.analysis)
    };
    assert_eq!(
        summary.limits.source,
        fabrique_machines::files::gcode::LimitsSource::Slicer
    );
    // PrusaSlicer's silent-mode figure is 29 min 9 s, the normal one 28 min 13 s.
    let motion = summary.time.moves_s;
    assert!((motion - 1749.0).abs() < 1749.0 * 0.01, "{motion} s");
    let page = unescaped(
        &manager
            .get(app.url(&format!("/jobs/{}", job.id.0)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(page.contains("mouvements 29 min"), "{page}");
    assert!(
        page.contains("celles du trancheur (fin du fichier)"),
        "{page}"
    );
}

/// A Klipper printer's profile carries its square corner velocity and minimum cruise ratio:
/// set from the form, shown back, in the API, and used by the estimate.
#[tokio::test]
async fn a_klipper_profile_carries_its_corner_velocity_and_cruise_ratio() {
    let app = spawn_app().await;
    let (manager, manager_user) = app.signed_in("nadia", Role::Manager).await;
    let token = app.page_csrf(&manager, "/admin/machines/new").await;
    let form = |name: &'static str, scv: &'static str, ratio: &'static str| {
        vec![
            ("csrf_token", token.clone()),
            ("name", name.to_string()),
            ("kind", "fdm_printer".into()),
            ("connection", "moonraker".into()),
            ("url", "http://127.0.0.1:9".into()),
            ("work_x", "250".into()),
            ("work_y", "210".into()),
            ("work_z", "210".into()),
            ("max_hotend", "300".into()),
            ("max_bed", "120".into()),
            ("materials", "PLA".into()),
            ("square_corner_velocity", scv.into()),
            ("minimum_cruise_ratio", ratio.into()),
        ]
    };
    let post = async |fields: Vec<(&str, String)>| {
        manager
            .post(app.url("/admin/machines/new"))
            .form(&fields)
            .send()
            .await
            .unwrap()
    };
    let refused = post(form("Voron", "8", "1.5")).await;
    assert_eq!(refused.status(), 422);
    assert!(
        unescaped(&refused.text().await.unwrap()).contains("Part minimale de vitesse de croisière")
    );
    assert_eq!(post(form("Voron", "8", "0")).await.status(), 303);
    assert_eq!(post(form("Voron défaut", "", "")).await.status(), 303);
    let machines = app.lab.machines().await.unwrap();
    let voron = machines.iter().find(|m| m.name == "Voron").unwrap();
    let default = machines.iter().find(|m| m.name == "Voron défaut").unwrap();
    assert_eq!(voron.profile.square_corner_velocity_mm_s, 8.0);
    assert_eq!(voron.profile.minimum_cruise_ratio, Some(0.0));
    assert_eq!(default.profile.minimum_cruise_ratio, None);
    let edit = manager
        .get(app.url(&format!("/admin/machines/{}", voron.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        edit.contains(r#"name="minimum_cruise_ratio" inputmode="decimal" value="0""#),
        "{edit}"
    );
    let api: Value = manager
        .get(app.url(&format!("/api/v1/machines/{}", voron.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["profile"]["square_corner_velocity_mm_s"], 8.0);
    assert_eq!(api["profile"]["minimum_cruise_ratio"], 0.0);

    // Short zig-zags: Klipper's default ratio (0.5) keeps them from their feed rate; with 0
    // and a wider corner they go faster. Both estimates use the profile.
    let mut zigzag = String::from("G90\nG1 X0 Y0 F18000\n");
    for i in 0..300 {
        let y = if i % 2 == 0 { 0 } else { 2 };
        zigzag.push_str(&format!("G1 X{} Y{y}\n", 2 * (i / 2 + 1)));
    }
    let estimate = async |machine: &fabrique_controller::domain::Machine| {
        let job = app
            .submit_file(
                &manager_user,
                Some(machine.id),
                "zigzag.gcode",
                zigzag.as_bytes(),
            )
            .await;
        let Some(fabrique_machines::files::FileSummary::Gcode(summary)) = &job.analysis else {
            panic!("{:?}", job.analysis)
        };
        (summary.time.moves_s, summary.limits.source)
    };
    let (fast, source) = estimate(voron).await;
    let (slow, default_source) = estimate(default).await;
    assert_eq!(
        source,
        fabrique_machines::files::gcode::LimitsSource::Profile
    );
    assert_eq!(
        default_source,
        fabrique_machines::files::gcode::LimitsSource::Defaults
    );
    assert!(slow > fast * 1.05, "{slow} against {fast}");
}
