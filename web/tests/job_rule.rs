//! One rule decides whether a job may run on a machine, and nobody gets round it: each case
//! found by trying the project as a member, a maker and a trainer would, over HTTP, against
//! a virtual Marlin printer on a pseudo-terminal where a job could really start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, client, spawn_app, unescaped};
use fabrique_controller::domain::job::{JobId, JobState};
use fabrique_controller::domain::training::TrainingInput;
use fabrique_controller::domain::{
    Connection, Machine, MachineInput, MachineKind, MachineProfile, MachineState, Role, User,
};
use fabrique_controller::lab::now;
use fabrique_machines::sim::marlin::{SimConfig, VirtualPrinter};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const HOT: &[u8] = b"M104 S450\nM140 S60\nG28\nG1 Z0.2 F3000\nG1 X50 Y50 E2 F1200\n";
const FINE: &[u8] = b"M104 S210\nM140 S60\nG28\nG1 Z0.2 F3000\nG1 X50 Y50 E2 F1200\n";

/// A lab with a manager, printers allowed to run unattended (so the planner would start a
/// job at once, whatever the hour), and a Prusa on a virtual Marlin printer.
struct Lab {
    app: TestApp,
    manager: User,
    prusa: Machine,
    printer: VirtualPrinter,
    stop: CancellationToken,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn lab() -> Lab {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    app.let_printers_run_unattended(&manager).await;
    let stop = CancellationToken::new();
    let config = SimConfig {
        time_scale: 0.0,
        ..SimConfig::default()
    };
    let (prusa, printer) = app.add_virtual_marlin(&manager, config, &stop).await;
    Lab {
        app,
        manager,
        prusa,
        printer,
        stop,
    }
}

fn file(name: &str, bytes: &[u8]) -> Form {
    Form::new().part(
        "file",
        Part::bytes(bytes.to_vec())
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .unwrap(),
    )
}

/// A JSON call with an API key.
async fn call(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, app.url(path))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn upload(app: &TestApp, key: &str, path: &str, form: Form) -> Value {
    let response = client()
        .post(app.url(path))
        .header("x-api-key", key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    if path == "/api/files/local" {
        // OctoPrint's name of the file: the job's number, then its name.
        let id = body["files"]["local"]["name"]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_string();
        return call(
            app,
            key,
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{id}"),
            None,
        )
        .await
        .1;
    }
    body
}

/// Lets the planner act as it would after an upload, then gives the job as it is.
async fn after_planning(lab: &Lab, id: i64) -> fabrique_controller::domain::job::Job {
    lab.app.runtime.plan_once().await.unwrap();
    // The Prusa's task takes commands in order: once it has answered a start of a job that
    // does not exist, any start the planner asked for before has been decided and recorded.
    let probe = lab
        .app
        .runtime
        .start_job(lab.prusa.id, JobId(0), &lab.manager)
        .await;
    assert!(probe.is_err());
    lab.app.lab.store().job(JobId(id)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_findings_cancelled_and_queued_again_waits_for_a_manager_again() {
    let lab = lab().await;
    let app = &lab.app;
    let member = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&member, "k", now()).await.unwrap();
    let form = file("chaud.gcode", HOT).text("machine_id", lab.prusa.id.0.to_string());
    let job = upload(app, &key, "/api/v1/jobs", form).await;
    assert_eq!(job["state"], "needs_approval", "{job}");
    assert_eq!(job["waiting"]["code"], "hotend_too_hot");
    let id = job["id"].as_i64().unwrap();
    let (status, cancelled) = call(
        app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!(
        (status, cancelled["state"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, again) = call(
        app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/requeue"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        again["state"], "needs_approval",
        "queued again, it waits again: {again}"
    );
    assert_eq!(
        after_planning(&lab, id).await.state,
        JobState::NeedsApproval
    );

    // A manager approves it: queued, but the Prusa still cannot heat to 450 °C.
    let manager_key = app
        .lab
        .create_api_key(&lab.manager, "m", now())
        .await
        .unwrap();
    let (status, approved) = call(
        app,
        &manager_key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/approve"),
        None,
    )
    .await;
    assert_eq!((status, approved["state"].as_str()), (200, Some("queued")));
    assert_eq!(approved["approval"]["by_name"], "nadia");
    assert!(
        approved["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("La buse doit chauffer à 450 °C\u{202f}; cette machine va jusqu'à 300 °C"),
        "{approved}"
    );
    assert_eq!(after_planning(&lab, id).await.state, JobState::Queued);
    assert!(
        lab.printer.executed().is_empty(),
        "nothing reached the printer"
    );

    // The approval is in the history, and does not carry over to the next run.
    let history = app.lab.store().job_events(JobId(id)).await.unwrap();
    let approval = history
        .iter()
        .find(|e| e.note.starts_with("approuvé"))
        .expect("the approval is in the history");
    assert_eq!(approval.actor_name.as_deref(), Some("nadia"));
    call(
        app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
    )
    .await;
    let (_, again) = call(
        app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/requeue"),
        None,
    )
    .await;
    assert_eq!(again["state"], "needs_approval");
    assert_eq!(again["approval"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_names_what_the_manager_saw_and_a_file_that_cannot_be_read_is_never_queued() {
    let lab = lab().await;
    let app = &lab.app;
    let member = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&member, "k", now()).await.unwrap();
    let eeprom = b"M104 S210\nG1 Z0.2\nG1 X50 Y50 E2 F1200\nM500\n";
    let job = upload(app, &key, "/api/v1/jobs", file("reglages.gcode", eeprom)).await;
    assert_eq!(job["state"], "needs_approval");
    let id = job["id"].as_i64().unwrap();
    let (page, _) = app.signed_in("chef", Role::Manager).await;
    let token = app.page_csrf(&page, &format!("/jobs/{id}")).await;
    let response = page
        .post(app.url(&format!("/jobs/{id}/approve")))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let html = page
        .get(app.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let html = unescaped(&html);
    assert!(html.contains("Approuvé par chef"), "{html}");
    assert!(
        html.contains("Points vus\u{a0}: une commande qu'un membre ne peut pas envoyer"),
        "{html}"
    );
    // Approved, it prints by itself.
    let job = after_planning(&lab, id).await;
    assert_ne!(job.state, JobState::Queued, "{job:?}");
    assert_eq!(job.machine, Some(lab.prusa.id));

    // Binary garbage fails, and cannot be queued again by anyone.
    let garbage: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 256) as u8).collect();
    let job = upload(app, &key, "/api/v1/jobs", file("casse.gcode", &garbage)).await;
    assert_eq!(job["state"], "failed", "{job}");
    let id = job["id"].as_i64().unwrap();
    let (status, refused) = call(
        app,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/requeue"),
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(refused["error"]["code"], "file_unreadable");
    let manager_key = app
        .lab
        .create_api_key(&lab.manager, "m", now())
        .await
        .unwrap();
    let (status, _) = call(
        app,
        &manager_key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/requeue"),
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        app.lab.store().job(JobId(id)).await.unwrap().state,
        JobState::Failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slicer_upload_is_checked_against_the_machines_that_would_run_it() {
    let lab = lab().await;
    let app = &lab.app;
    let member = app.add_user("amina", Role::Member).await;
    let key = app
        .lab
        .create_api_key(&member, "PrusaSlicer", now())
        .await
        .unwrap();
    let form = file("chaud.gcode", HOT).text("print", "true");
    let job = upload(app, &key, "/api/files/local", form).await;
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["waiting"]["code"], "hotend_too_hot");
    assert_eq!(
        job["waiting"]["message"],
        "Aucune machine du fablab ne chauffe à 450 °C (la plus chaude va jusqu'à 300 °C). Choisissez une température plus basse dans le trancheur."
    );
    let id = job["id"].as_i64().unwrap();
    assert_eq!(after_planning(&lab, id).await.state, JobState::Queued);
    assert!(
        lab.printer.executed().is_empty(),
        "nothing reached the printer"
    );
    let planned = app.runtime.plan().await.unwrap();
    assert!(planned.plan.placements.iter().all(|p| p.job != id));
    // The member reads why on the job page and in the list, in both languages.
    let page = client();
    let response = app.login(&page, "amina", common::PASSWORD).await;
    assert_eq!(response.status(), 303);
    for path in [format!("/jobs/{id}"), "/jobs".to_string()] {
        let html = page
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            unescaped(&html).contains("Aucune machine du fablab ne chauffe à 450 °C"),
            "{path}: {html}"
        );
    }
    // The same file at 210 °C is planned and printed by itself.
    let job = upload(app, &key, "/api/files/local", file("tiede.gcode", FINE)).await;
    assert_eq!(job["waiting"], Value::Null, "{job}");
    let job = after_planning(&lab, job["id"].as_i64().unwrap()).await;
    assert_eq!(job.machine, Some(lab.prusa.id), "{job:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_the_badge_gets_no_job_started_unless_a_trainer_starts_an_approved_one() {
    let lab = lab().await;
    let app = &lab.app;
    let training = TrainingInput::parse("Impression 3D", "", "24", "", vec![lab.prusa.id]).unwrap();
    let training = app
        .lab
        .save_training(&lab.manager, None, &training, now())
        .await
        .unwrap();
    let member = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&member, "k", now()).await.unwrap();
    let job = upload(
        app,
        &key,
        "/api/files/local",
        file("porte-cles.gcode", FINE),
    )
    .await;
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["waiting"]["code"], "badge_required");
    let message = job["waiting"]["message"].as_str().unwrap();
    assert!(
        message.contains("inscrivez-vous à la formation Impression 3D, ou demandez au responsable"),
        "{message}"
    );
    let id = job["id"].as_i64().unwrap();
    assert_eq!(after_planning(&lab, id).await.state, JobState::Queued);
    assert!(lab.printer.executed().is_empty());

    // The board does not offer it, and a trainer cannot start it either.
    let (board, _) = app.signed_in("karim", Role::Trainer).await;
    let html = board
        .get(app.url("/board"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("porte-cles.gcode"), "{html}");
    let karim = app
        .lab
        .store()
        .user_by_username(&fabrique_controller::domain::Username::parse("karim").unwrap())
        .await
        .unwrap();
    let trainer_key = app.lab.create_api_key(&karim, "t", now()).await.unwrap();
    let (status, refused) = call(
        app,
        &trainer_key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/start"),
        Some(serde_json::json!({ "machine_id": lab.prusa.id.0 })),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "badge_required");

    // A manager approves it for a supervised run: still not started by the planner...
    let manager_key = app
        .lab
        .create_api_key(&lab.manager, "m", now())
        .await
        .unwrap();
    let (status, approved) = call(
        app,
        &manager_key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["approval"]["supervised"], true);
    assert_eq!(after_planning(&lab, id).await.state, JobState::Queued);
    // ...but offered on the board to the trainer, who starts it.
    let html = board
        .get(app.url("/board"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("porte-cles.gcode"), "{html}");
    let (status, started) = call(
        app,
        &trainer_key,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{id}/start"),
        Some(serde_json::json!({ "machine_id": lab.prusa.id.0 })),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_ne!(started["state"], "queued");

    // Once trained, the member's next job starts by itself.
    app.lab
        .award_badge(&lab.manager, member.id, training.id, None, now())
        .await
        .unwrap();
    let job = upload(app, &key, "/api/files/local", file("deuxieme.gcode", FINE)).await;
    assert_eq!(job["waiting"], Value::Null, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_offers_the_laser_only_what_it_may_cut_and_refuses_a_printer_file() {
    let lab = lab().await;
    let app = &lab.app;
    // The printer is away: the headband waits in the queue for it.
    app.lab
        .set_machine_state(
            &lab.manager,
            lab.prusa.id,
            MachineState::Maintenance,
            "",
            now(),
        )
        .await
        .unwrap();
    app.runtime.refresh(lab.prusa.id).await;
    let profile = MachineProfile::parse(["400", "300", ""], "", "", "1000", "", "").unwrap();
    let input = MachineInput::new(
        "Découpeuse laser",
        MachineKind::LaserCutter,
        Connection::SerialGrbl {
            port: app.dir.path().join("no-laser-here").display().to_string(),
            baud: 115_200,
        },
        profile,
        "",
        "",
    )
    .unwrap();
    let laser = app.add_idle_machine(&lab.manager, &input).await;
    app.runtime.refresh(laser.id).await;
    // The PLA headband of a campaign's visor, and a shield outline for the laser.
    let member = app.add_user("amina", Role::Member).await;
    let headband = app.submit_file(&member, None, "bandeau.gcode", FINE).await;
    let shield = app
        .submit_file(
            &member,
            None,
            "ecran.gcode",
            b"M4 S500\nG1 X10 Y10 F600\nG1 X20\nM5\n",
        )
        .await;
    let (board, _) = app.signed_in("karim", Role::Trainer).await;
    let html = board
        .get(app.url("/board"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let laser_tile = html
        .split("<li id=\"machine-")
        .find(|tile| tile.contains("Découpeuse laser"))
        .expect("a tile for the laser");
    assert!(laser_tile.contains("ecran.gcode"), "{laser_tile}");
    assert!(!laser_tile.contains("bandeau.gcode"), "{laser_tile}");

    // Sent by hand, the start is refused with the reason; nothing changes.
    let token = app.page_csrf(&board, "/board").await;
    let response = board
        .post(app.url(&format!("/board/{}/start", laser.id.0)))
        .form(&[("csrf_token", token), ("job", headband.id.0.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let html = unescaped(&response.text().await.unwrap());
    assert!(
        html.contains(
            "ce fichier est fait pour une imprimante 3D (M104), mais cette machine n'imprime pas"
        ),
        "{html}"
    );
    let store = app.lab.store();
    assert_eq!(
        store.job(headband.id).await.unwrap().state,
        JobState::Queued
    );
    assert_eq!(
        store.machine(laser.id).await.unwrap().state,
        MachineState::Idle
    );
    assert_eq!(store.job(shield.id).await.unwrap().state, JobState::Queued);
}
