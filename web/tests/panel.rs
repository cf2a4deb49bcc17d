//! The operator panel of a GRBL laser, against the project's virtual GRBL on a
//! pseudo-terminal: a machine powered up in alarm is homed, jogged, given a work origin,
//! framed and cut through the one link the panel holds; every action is logged; members,
//! other machines and a second trainer are refused in words.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, client, spawn_app, unescaped};
use fabrique_controller::domain::job::{JobId, JobState};
use fabrique_controller::domain::{
    Connection, Machine, MachineInput, MachineKind, MachineProfile, MachineState, Role, User,
};
use fabrique_controller::lab::now;
use fabrique_machines::protocol::grbl::Realtime;
use fabrique_machines::sim::grbl::{Record, SimConfig, VirtualGrbl};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SHIELD: &[u8] = include_bytes!("data/laser_shield.gcode");

/// A 400 × 300 mm laser homed to its positive end (GRBL's default), powered up locked in
/// alarm as a machine with homing is, with machine coordinates and soft limits.
async fn laser(
    app: &TestApp,
    manager: &User,
) -> (Machine, CancellationToken, JoinHandle<VirtualGrbl>) {
    let profile = MachineProfile::parse(["400", "300", ""], "", "", "1000", "", "").unwrap();
    let input = MachineInput::new(
        "Découpeuse laser",
        MachineKind::LaserCutter,
        Connection::Manual,
        profile,
        "",
        "",
    )
    .unwrap();
    let sim = SimConfig {
        time_scale: 0.0,
        start_locked: true,
        work_offset: Some([-400.0, -300.0, 0.0]),
        ..SimConfig::default()
    };
    app.add_virtual_grbl(manager, input, sim).await
}

/// Presses a panel button as the page's form does; returns the status and where it leads.
async fn press(
    app: &TestApp,
    who: &reqwest::Client,
    machine: &Machine,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let path = format!("/machines/{}/panel", machine.id.0);
    let token = app.page_csrf(who, &path).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    let response = who.post(app.url(&path)).form(&form).send().await.unwrap();
    let status = response.status().as_u16();
    let body = unescaped(&response.text().await.unwrap());
    (status, body)
}

async fn page(app: &TestApp, who: &reqwest::Client, machine: &Machine) -> String {
    let path = format!("/machines/{}/panel", machine.id.0);
    unescaped(
        &who.get(app.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
}

async fn api_panel(app: &TestApp, key: &str, machine: &Machine) -> Value {
    client()
        .get(app.url(&format!("/api/v1/machines/{}/panel", machine.id.0)))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn api_act(app: &TestApp, key: &str, machine: &Machine, body: Value) -> (u16, Value) {
    let response = client()
        .post(app.url(&format!("/api/v1/machines/{}/panel", machine.id.0)))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn wait_for_job(app: &TestApp, job: JobId) -> JobState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = app.lab.store().job(job).await.unwrap().state;
        if !matches!(state, JobState::Queued | JobState::Running)
            || tokio::time::Instant::now() > deadline
        {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_trainer_homes_jogs_sets_the_origin_frames_and_cuts_through_the_held_link() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let (machine, stop, served) = laser(&app, &manager).await;
    let job = app
        .submit_file(&maker, Some(machine.id), "ecran.gcode", SHIELD)
        .await;
    assert_eq!(job.state, JobState::Queued, "{}", job.state_reason);

    let (karim, trainer) = app.signed_in("karim", Role::Trainer).await;
    let key = app.lab.create_api_key(&trainer, "k", now()).await.unwrap();
    let html = page(&app, &karim, &machine).await;
    assert!(
        html.contains("personne (liaison fermée)") && html.contains("Prendre la main"),
        "{html}"
    );

    // Taken: the link opens and stays; the machine woke up locked, and the page says why.
    let (status, _) = press(&app, &karim, &machine, &[("action", "take")]).await;
    assert_eq!(status, 303);
    let html = page(&app, &karim, &machine).await;
    assert!(
        html.contains("en alarme") && html.contains("faites la prise d'origine"),
        "{html}"
    );
    assert!(
        html.contains("Prise d'origine ($H)") && html.contains("Envoyé"),
        "{html}"
    );

    let (status, _) = press(&app, &karim, &machine, &[("action", "home")]).await;
    assert_eq!(status, 303);
    // Homed at the positive end: a step further right leaves the machine, GRBL says so.
    let (status, _) = press(
        &app,
        &karim,
        &machine,
        &[
            ("action", "jog"),
            ("move", "x+"),
            ("step", "10"),
            ("feed", "2000"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let html = page(&app, &karim, &machine).await;
    assert!(
        html.contains("La machine a refusé") && html.contains("error:15"),
        "{html}"
    );
    // To the corner of the material, by the API as an app would; then the origin there.
    for (axis, distance) in [("x", -395.0), ("y", -295.0)] {
        let (status, answer) = api_act(
            &app,
            &key,
            &machine,
            json!({"action": "jog", "axis": axis, "distance": distance, "feed": 3000}),
        )
        .await;
        assert_eq!((status, &answer["ok"]), (200, &json!(true)), "{answer}");
    }
    let (status, _) = press(&app, &karim, &machine, &[("action", "set_origin")]).await;
    assert_eq!(status, 303);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let panel = api_panel(&app, &key, &machine).await;
    assert_eq!(panel["held_by"], "karim", "{panel}");
    assert_eq!(
        panel["machine_position"],
        json!([-395.0, -295.0, 0.0]),
        "{panel}"
    );
    assert_eq!(panel["work_position"], json!([0.0, 0.0, 0.0]), "{panel}");

    // The console: reports come back; a line that would fire is refused before sending.
    let (status, answer) = api_act(
        &app,
        &key,
        &machine,
        json!({"action": "console", "command": "$#"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        answer["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "[G54:-395.000,-295.000,0.000]"),
        "{answer}"
    );
    let (status, html) = press(
        &app,
        &karim,
        &machine,
        &[("action", "console"), ("command", "M3 S1000")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("allumerait le laser"), "{html}");
    assert!(
        html.contains("value=\"M3 S1000\""),
        "the line typed is kept: {html}"
    );

    // Framing the job traces its outline by jogs, laser off.
    let (status, _) = press(
        &app,
        &karim,
        &machine,
        &[("action", "frame"), ("job", &job.id.0.to_string())],
    )
    .await;
    assert_eq!(status, 303);
    let html = page(&app, &karim, &machine).await;
    assert!(
        html.contains("cadrage") && html.contains("$J=G90G21X"),
        "{html}"
    );

    // The cut goes through the same link: no new connection, the origin holds.
    let token = app.page_csrf(&karim, "/board").await;
    let response = karim
        .post(app.url(&format!("/board/{}/start", machine.id.0)))
        .form(&[("csrf_token", token), ("job", job.id.0.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let ended = wait_for_job(&app, job.id).await;
    let done = app.lab.store().job(job.id).await.unwrap();
    assert_eq!(ended, JobState::Done, "{}", done.state_reason);
    let panel = api_panel(&app, &key, &machine).await;
    assert_eq!(
        panel["held_by"], "karim",
        "still held after the job: {panel}"
    );

    // Given back: the link closes.
    let (status, _) = press(&app, &karim, &machine, &[("action", "release")]).await;
    assert_eq!(status, 303);
    let panel = api_panel(&app, &key, &machine).await;
    assert_eq!(panel["open"], false, "{panel}");
    // Everything is in the log, with who did it.
    let log = panel["log"].as_array().unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in [
        "take",
        "home",
        "jog",
        "set_origin",
        "console",
        "frame",
        "release",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(log.iter().all(|e| e["who"] == "karim"), "{panel}");

    stop.cancel();
    let sim = served.await.unwrap();
    // Each link begins with a soft reset; the job's check mode ends in GRBL's own reset.
    let connects = sim
        .records()
        .iter()
        .filter(|r| matches!(r, Record::Realtime(Realtime::SoftReset)))
        .count();
    assert_eq!(connects, 1, "one link for the panel and the job");
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, Record::Line(l) if l.contains("M3 S1000"))),
        "the refused console line never reached the machine"
    );
    assert!(!sim.laser_on(), "the laser ends off");
}

#[tokio::test]
async fn the_panel_is_for_trainers_at_a_grbl_machine_held_by_one_person_at_a_time() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let (machine, stop, served) = laser(&app, &manager).await;
    let (member, _) = app.signed_in("amina", Role::Member).await;
    let path = format!("/machines/{}/panel", machine.id.0);
    let response = member.get(app.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 403);

    let (karim, _) = app.signed_in("karim", Role::Trainer).await;
    let (status, _) = press(&app, &karim, &machine, &[("action", "take")]).await;
    assert_eq!(status, 303);
    // A second trainer is told who has the machine, and may take it over at the machine.
    let (awa, awa_user) = app.signed_in("awa", Role::Trainer).await;
    let (status, html) = press(&app, &awa, &machine, &[("action", "home")]).await;
    assert_eq!(status, 409);
    assert!(html.contains("karim a la main sur la machine"), "{html}");
    let (status, _) = press(&app, &awa, &machine, &[("action", "take")]).await;
    assert_eq!(status, 303);
    let key = app.lab.create_api_key(&awa_user, "k", now()).await.unwrap();
    assert_eq!(api_panel(&app, &key, &machine).await["held_by"], "awa");

    // A jog button's move the page never offers is a field error, never a crash.
    let (status, _) = press(
        &app,
        &awa,
        &machine,
        &[("action", "jog"), ("move", "é+"), ("step", "10")],
    )
    .await;
    assert_eq!(status, 422);
    // A bad field is refused in words, in English too.
    let (status, body) = client()
        .post(app.url(&format!("/api/v1/machines/{}/panel", machine.id.0)))
        .header("x-api-key", &key)
        .header("accept-language", "en")
        .json(&json!({"action": "jog", "axis": "w", "distance": 1}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 422);
    let body: Value = body.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_input", "{body}");

    // A printer has no panel.
    let printer = MachineInput::new(
        "Brodeuse",
        MachineKind::Embroidery,
        Connection::Manual,
        MachineProfile::default(),
        "",
        "",
    )
    .unwrap();
    let printer = app.add_idle_machine(&manager, &printer).await;
    app.runtime.refresh(printer.id).await;
    let (status, body) = api_act(&app, &key, &printer, json!({"action": "take"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("panel_not_grbl")),
        "{body}"
    );
    let html = page(&app, &awa, &machine).await;
    assert!(html.contains("awa"), "{html}");
    let board = unescaped(
        &awa.get(app.url("/board"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        board.contains(&format!("/machines/{}/panel", machine.id.0))
            && board.contains("pris en main par awa"),
        "{board}"
    );
    stop.cancel();
    let _ = served.await;
    assert_eq!(
        app.lab.store().machine(machine.id).await.unwrap().state,
        MachineState::Idle
    );
}

/// A mill's Z zero: the tool goes down until it touches the plate on the work piece, the
/// top of the piece becomes Z 0 (the plate's thickness above the contact), the tool goes
/// back up; a probe that touches nothing ends in GRBL's alarm, said in words.
#[tokio::test]
async fn a_mill_finds_its_z_zero_with_the_probe_and_a_missed_probe_is_said() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let profile = MachineProfile::parse(["200", "150", "50"], "", "", "", "", "").unwrap();
    let input = MachineInput::new(
        "Fraiseuse",
        MachineKind::CncMill,
        Connection::Manual,
        profile,
        "",
        "",
    )
    .unwrap();
    let sim = SimConfig {
        time_scale: 0.0,
        work_offset: Some([-200.0, -150.0, 0.0]),
        // The plate's top, 12.5 mm below where the spindle stands at power-up.
        probe_contact_z: Some(-12.5),
        settings: vec![(32, 0.0)],
        ..SimConfig::default()
    };
    let (mill, stop, served) = app.add_virtual_grbl(&manager, input, sim).await;
    let (karim, trainer) = app.signed_in("karim", Role::Trainer).await;
    let key = app.lab.create_api_key(&trainer, "k", now()).await.unwrap();
    let (status, _) = press(&app, &karim, &mill, &[("action", "take")]).await;
    assert_eq!(status, 303);
    let html = page(&app, &karim, &mill).await;
    assert!(html.contains("Zéro Z au palpeur"), "{html}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, html) = press(
        &app,
        &karim,
        &mill,
        &[("action", "probe_z"), ("plate", "1.5"), ("depth", "30")],
    )
    .await;
    assert_eq!(status, 303, "{html}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let panel = api_panel(&app, &key, &mill).await;
    // Touched at machine Z -12.5 with a 1.5 mm plate: the piece's top (Z 0) is machine
    // -14.0, and the tool stands 5 mm above the contact.
    assert_eq!(panel["machine_position"][2], json!(-7.5), "{panel}");
    assert_eq!(panel["work_position"][2], json!(6.5), "{panel}");
    let log = panel["log"].as_array().unwrap();
    assert!(
        log[0]["sent"].as_str().unwrap().starts_with("G38.2G90Z"),
        "{panel}"
    );
    assert!(
        log[0]["answer"]
            .as_str()
            .unwrap()
            .contains("[PRB:-200.000,-150.000,-12.500:1]"),
        "{panel}"
    );

    // Too short a way down: the probe touches nothing, GRBL locks, the panel says why.
    let (status, answer) =
        api_act(&app, &key, &mill, json!({"action": "probe_z", "depth": 1})).await;
    assert_eq!(status, 200);
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["refused"].as_str().unwrap().contains("rien touché"),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let html = page(&app, &karim, &mill).await;
    assert!(
        html.contains("en alarme") && html.contains("Alarme 5"),
        "{html}"
    );
    stop.cancel();
    let _ = served.await;
}
