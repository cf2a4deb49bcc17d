//! A CNC mill on GRBL, against the project's virtual GRBL in spindle mode (`$32=0`) on a
//! pseudo-terminal: a two-tool file is checked whole, then cut part by part; at each `M6`
//! the job pauses with the spindle and the coolant off until a trainer at the machine says
//! the tool is in, and the panel jogs meanwhile. A cancel at a tool change ends the job
//! cancelled; a file the mill cannot run is refused in words before anything moves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, spawn_app, unescaped};
use fabrique_controller::domain::job::{Job, JobId, JobState};
use fabrique_controller::domain::{
    Connection, Machine, MachineInput, MachineKind, MachineProfile, MachineState, Role, User,
};
use fabrique_machines::sim::grbl::{Record, SimConfig, VirtualGrbl};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Two tools, as CAM software writes them: a pocket with a 6 mm end mill under flood
/// coolant, then holes with a drill.
const TWO_TOOLS: &str = "(plaque de fixation)
G90 G94 G17
G21
G54
T1 M6
S12000 M3
M8
G0 Z5
G0 X10 Y10
G1 Z-2 F300
G1 X40 Y10 F800
G1 X40 Y30
G0 Z5
M9
M5
T2 M6 (foret 3 mm)
S18000 M3
G0 X20 Y20
G1 Z-4 F150
G0 Z5
M5
M30
";

/// A 600 × 400 × 80 mm mill homed to its positive end, the work origin on the material's
/// top; `laser_mode` sets `$32`.
async fn mill(
    app: &TestApp,
    manager: &User,
    coolant: &str,
    laser_mode: bool,
) -> (Machine, CancellationToken, JoinHandle<VirtualGrbl>) {
    let sim = SimConfig {
        time_scale: 0.0,
        work_offset: Some([-550.0, -380.0, -40.0]),
        settings: vec![
            (30, 24000.0),
            (32, f64::from(u8::from(laser_mode))),
            (130, 600.0),
            (131, 400.0),
            (132, 80.0),
        ],
        ..SimConfig::default()
    };
    let profile = MachineProfile::parse(["600", "400", "80"], "", "", "", "", "")
        .unwrap()
        .with_cutting(coolant, false)
        .unwrap();
    let input = MachineInput::new(
        "Fraiseuse",
        MachineKind::CncMill,
        Connection::Manual,
        profile,
        "",
        "",
    )
    .unwrap();
    app.add_virtual_grbl(manager, input, sim).await
}

/// Waits until the job is in one of `states` (at most a minute).
async fn wait_until(app: &TestApp, job: JobId, states: &[JobState]) -> JobState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = app.lab.store().job(job).await.unwrap().state;
        if states.contains(&state) || tokio::time::Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the job's history holds `note` (at most a minute).
async fn wait_for_note(app: &TestApp, job: JobId, note: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let events = app.lab.store().job_events(job).await.unwrap();
        if events.iter().any(|e| e.note == note) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {note:?} in {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Presses the board's start (or "tool in") for `job`; returns the status.
async fn board_start(app: &TestApp, who: &reqwest::Client, machine: &Machine, job: JobId) -> u16 {
    let token = app.page_csrf(who, "/board").await;
    who.post(app.url(&format!("/board/{}/start", machine.id.0)))
        .form(&[("csrf_token", token), ("job", job.0.to_string())])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn board(app: &TestApp, who: &reqwest::Client) -> String {
    unescaped(
        &who.get(app.url("/board"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
}

/// The lines the virtual GRBL took, as sent.
fn lines(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Line(l) => Some(l.as_str()),
            _ => None,
        })
        .collect()
}

/// The lines sent after the last check mode: the cut.
fn after_check<'a>(sent: &'a [&'a str]) -> &'a [&'a str] {
    let from = sent
        .iter()
        .rposition(|l| *l == "$C")
        .expect("checked first");
    &sent[from + 1..]
}

/// `expected` appears in `sent` in this order, other lines between.
fn assert_in_order(sent: &[&str], expected: &[&str]) {
    let mut rest = sent.iter();
    for want in expected {
        assert!(
            rest.any(|l| l == want),
            "{want} missing or out of order in {sent:?}"
        );
    }
}

#[tokio::test]
async fn a_mill_job_pauses_at_each_tool_change_until_a_person_says_the_tool_is_in() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let (machine, stop, served) = mill(&app, &manager, "flood", false).await;
    let job = app
        .submit_file(&maker, Some(machine.id), "plaque.nc", TWO_TOOLS.as_bytes())
        .await;
    assert_eq!(job.state, JobState::Queued, "{}", job.state_reason);
    let (karim, _) = app.signed_in("karim", Role::Trainer).await;

    assert_eq!(board_start(&app, &karim, &machine, job.id).await, 303);
    // The file begins with T1 M6: the first tool is asked for before anything turns.
    assert_eq!(
        wait_until(&app, job.id, &[JobState::Paused]).await,
        JobState::Paused
    );
    let html = board(&app, &karim).await;
    assert!(
        html.contains("Changement d'outil (ligne 5)") && html.contains("Mettez l'outil T1"),
        "{html}"
    );
    assert!(html.contains("Outil en place, reprendre"), "{html}");
    assert!(
        !html.contains("/board/1/resume") && !html.contains(">Reprendre<"),
        "a tool change goes on only by a person's start: {html}"
    );
    assert_eq!(board_start(&app, &karim, &machine, job.id).await, 303);

    // The pocket is cut; at T2 the job waits again, spindle and coolant off.
    wait_for_note(&app, job.id, "changement d'outil T2 (ligne 16)").await;
    assert_eq!(
        app.lab.store().job(job.id).await.unwrap().state,
        JobState::Paused
    );
    let events = app.lab.store().job_events(job.id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.note == "outil T1 en place" && e.actor_name.as_deref() == Some("karim")),
        "who said the tool was in is kept: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.note == "changement d'outil T2 (ligne 16)"),
        "{events:?}"
    );
    // The panel works meanwhile: Z up to change the tool.
    let path = format!("/machines/{}/panel", machine.id.0);
    let token = app.page_csrf(&karim, &path).await;
    let response = karim
        .post(app.url(&path))
        .form(&[
            ("csrf_token", token.as_str()),
            ("action", "jog"),
            ("move", "z+"),
            ("step", "10"),
            ("feed", "500"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    // The new tool touched off on the material: Z zero here.
    let html = unescaped(
        &karim
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(html.contains("Zéro Z ici"), "{html}");
    let token = app.page_csrf(&karim, &path).await;
    let response = karim
        .post(app.url(&path))
        .form(&[("csrf_token", token.as_str()), ("action", "set_origin_z")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let log = app.lab.store().panel_log(machine.id, 10).await.unwrap();
    assert!(
        log.iter().any(|e| e.sent.starts_with("$J=G91G21Z10")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|e| e.sent == "G10L20P1Z0" && e.answer.ends_with("ok")),
        "{log:?}"
    );

    assert_eq!(board_start(&app, &karim, &machine, job.id).await, 303);
    let end = wait_until(&app, job.id, &[JobState::Done, JobState::Failed]).await;
    let done = app.lab.store().job(job.id).await.unwrap();
    assert_eq!(end, JobState::Done, "{}", done.state_reason);
    assert_eq!(
        app.lab.machine(machine.id).await.unwrap().state,
        MachineState::ToCheck
    );

    stop.cancel();
    let sim = served.await.unwrap();
    let records = sim.records();
    let sent = lines(records);
    assert!(
        sent.iter().all(|l| !l.contains("M6")),
        "GRBL refuses M6: {sent:?}"
    );
    // Checked whole in check mode first, then cut.
    assert_eq!(sent.iter().filter(|l| **l == "$C").count(), 2, "{sent:?}");
    // Each part ends with the spindle and the coolant off (the file's M5, Fabrique's M5 and
    // M9); after the tool change the file's state is put back before its next line, since
    // the panel's move could have been a probe.
    let cut = after_check(&sent);
    assert_in_order(
        cut,
        &[
            "T1",
            "M5",
            "M9",
            "G17G21G90G54G94",
            "G0",
            "S12000M3",
            "M8",
            "G1Z-2F300",
            "M9",
            "M5",
            "T2",
            "M5",
            "M9",
            "$J=G91G21Z10.000F500",
            "G10L20P1Z0",
            "G17G21G90G54G94",
            "G0F800",
            "S18000M3",
            "G1Z-4F150",
            "M30",
        ],
    );
    // The spindle turned at the file's speed, and was off when the tool was changed.
    let spindle: Vec<(bool, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Laser { on, power } => Some((*on, *power)),
            _ => None,
        })
        .collect();
    assert_eq!(
        spindle,
        [(true, 12000.0), (false, 0.0), (true, 18000.0), (false, 0.0)],
        "{records:?}"
    );
    assert!(records.contains(&Record::Coolant {
        flood: true,
        mist: false
    }));
    assert!(!sim.laser_on(), "the spindle ends off");
}

#[tokio::test]
async fn a_cancel_at_a_tool_change_ends_the_job_cancelled_with_the_spindle_off() {
    let Started {
        app,
        machine,
        job,
        karim,
        stop,
        served,
    } = started("flood", false).await;
    assert_eq!(
        wait_until(&app, job.id, &[JobState::Paused]).await,
        JobState::Paused
    );
    assert_eq!(board_start(&app, &karim, &machine, job.id).await, 303);
    // At T2 the job is cancelled from the board.
    wait_for_note(&app, job.id, "changement d'outil T2 (ligne 16)").await;
    let token = app.page_csrf(&karim, "/board").await;
    let response = karim
        .post(app.url(&format!("/board/{}/cancel", machine.id.0)))
        .form(&[("csrf_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let end = wait_until(&app, job.id, &[JobState::Cancelled, JobState::Done]).await;
    let cancelled = app.lab.store().job(job.id).await.unwrap();
    assert_eq!(end, JobState::Cancelled);
    assert_eq!(
        cancelled.state_reason,
        "annulé pendant le changement d'outil"
    );
    stop.cancel();
    let sim = served.await.unwrap();
    assert!(!sim.laser_on());
    let sent = lines(sim.records());
    assert!(
        !after_check(&sent).contains(&"S18000M3"),
        "nothing after the tool change was cut: {sent:?}"
    );
}

#[tokio::test]
async fn a_mill_unplugged_at_a_tool_change_fails_the_job_without_waiting_for_anyone() {
    let Started {
        app,
        machine,
        job,
        stop,
        served,
        ..
    } = started("flood", false).await;
    wait_for_note(&app, job.id, "changement d'outil T1 (ligne 5)").await;
    // The cable is pulled: the virtual GRBL's pseudo-terminal goes away.
    stop.cancel();
    served.await.unwrap();
    let end = wait_until(&app, job.id, &[JobState::Failed, JobState::Done]).await;
    let failed = app.lab.store().job(job.id).await.unwrap();
    assert_eq!(end, JobState::Failed);
    assert!(
        failed
            .state_reason
            .contains("liaison perdue pendant le changement d'outil"),
        "{}",
        failed.state_reason
    );
    assert_eq!(
        app.lab.machine(machine.id).await.unwrap().state,
        MachineState::Offline
    );
}

/// The two-tool file sent by a manager for a mill with this coolant and `$32`, and started
/// from the board by a trainer.
struct Started {
    app: TestApp,
    machine: Machine,
    job: Job,
    karim: reqwest::Client,
    stop: CancellationToken,
    served: JoinHandle<VirtualGrbl>,
}

async fn started(coolant: &str, laser_mode: bool) -> Started {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let (machine, stop, served) = mill(&app, &manager, coolant, laser_mode).await;
    let job = app
        .submit_file(
            &manager,
            Some(machine.id),
            "plaque.nc",
            TWO_TOOLS.as_bytes(),
        )
        .await;
    let (karim, _) = app.signed_in("karim", Role::Trainer).await;
    assert_eq!(board_start(&app, &karim, &machine, job.id).await, 303);
    Started {
        app,
        machine,
        job,
        karim,
        stop,
        served,
    }
}

/// The two-tool file started on a mill with this coolant and `$32`: the job's end, its
/// reason, and the lines the virtual GRBL took.
async fn refused(coolant: &str, laser_mode: bool) -> (JobState, String, Vec<String>) {
    let Started {
        app,
        job,
        stop,
        served,
        ..
    } = started(coolant, laser_mode).await;
    wait_until(&app, job.id, &[JobState::Failed, JobState::Done]).await;
    let failed = app.lab.store().job(job.id).await.unwrap();
    stop.cancel();
    let sim = served.await.unwrap();
    let sent = lines(sim.records()).into_iter().map(String::from).collect();
    (failed.state, failed.state_reason, sent)
}

#[tokio::test]
async fn a_file_the_mill_cannot_run_is_refused_in_words_before_anything_moves() {
    // No coolant on this mill: the file's M8 is refused by name and line.
    let (state, reason, sent) = refused("none", false).await;
    assert_eq!(state, JobState::Failed);
    assert!(
        reason.contains("La ligne 7 demande l'arrosage (M8)"),
        "{reason}"
    );
    assert!(
        !sent.iter().any(|l| l == "$C"),
        "refused before the check mode: {sent:?}"
    );
    // Laser mode left on: the spindle would stop at every rapid.
    let (state, reason, sent) = refused("flood", true).await;
    assert_eq!(state, JobState::Failed);
    assert!(
        reason.contains("Le mode laser ($32=1) est activé sur une fraiseuse"),
        "{reason}"
    );
    assert!(!sent.iter().any(|l| l == "$C"), "{sent:?}");
}
