//! The lab running: a file sent the way PrusaSlicer sends it is analysed, planned, streamed
//! to a virtual Marlin printer on a pseudo-terminal and done, seen on the board and in the
//! API; a restart in the middle of a job leaves it interrupted with its last line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client, spawn_app};
use fabrique_controller::domain::calendar::CalendarSettings;
use fabrique_controller::domain::job::{JobId, JobState};
use fabrique_controller::domain::{
    Connection, MachineInput, MachineKind, MachineProfile, MachineState, Role,
};
use fabrique_controller::lab::now;
use fabrique_controller::runtime::Runtime;
use fabrique_controller::scheduler::Unplaced;
use fabrique_machines::sim::marlin::SimConfig;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const KEYCHAIN: &[u8] = include_bytes!("data/mk3_keychain.gcode");

fn new_job(
    owner: &fabrique_controller::domain::User,
    machine: Option<fabrique_controller::domain::MachineId>,
    name: &str,
) -> fabrique_controller::store::NewJob {
    fabrique_controller::store::NewJob {
        owner: owner.id,
        file_name: name.into(),
        stored_name: name.into(),
        size_bytes: 1000,
        sha256: "0".repeat(64),
        target_machine: machine,
        target_kind: None,
    }
}

/// Waits for the runtime to report `state` on `machine`, at most `limit`.
async fn machine_reaches(runtime: &Runtime, machine: i64, state: MachineState, limit: Duration) {
    let mut events = runtime.subscribe();
    let wait = async {
        loop {
            if runtime
                .live()
                .iter()
                .any(|l| l.machine == machine && l.state == state)
            {
                return;
            }
            let _ = events.recv().await;
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
        panic!(
            "machine {machine} never became {state}: {:?}",
            runtime.live()
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_a_slicer_is_planned_streamed_and_done() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app
        .lab
        .create_api_key(&maker, "PrusaSlicer", now())
        .await
        .unwrap();
    // The lab lets printers finish after hours, so the test runs at any time of day.
    app.let_printers_run_unattended(&manager).await;

    let cancel = CancellationToken::new();
    let config = SimConfig {
        time_scale: 0.0,
        ..SimConfig::default()
    };
    let (machine, printer) = app.add_virtual_marlin(&manager, config, &cancel).await;

    // PrusaSlicer's "send to OctoPrint".
    let form = Form::new().text("print", "true").text("path", "").part(
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

    machine_reaches(
        &app.runtime,
        machine.id.0,
        MachineState::ToCheck,
        Duration::from_secs(120),
    )
    .await;
    // The Location is OctoPrint's file entry; the job itself is in Fabrique's API.
    let file: Value = client()
        .get(&location)
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(file["fabrique"]["state"], "done", "{file}");
    assert_eq!(file["prints"]["last"]["success"], true, "{file}");
    let job: Value = client()
        .get(app.url(&format!("/api/v1/jobs/{}", file["fabrique"]["job"])))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["machine_id"], machine.id.0);
    assert_eq!(job["progress_percent"], 100.0);
    let commands = job["analysis"]["commands"].as_i64().unwrap();
    assert_eq!(
        job["lines_acked"].as_i64().unwrap(),
        commands,
        "every command acknowledged"
    );
    let executed = printer.executed();
    assert!(
        executed.len() as i64 >= commands,
        "the printer executed the whole file: {} of {commands}",
        executed.len()
    );

    // The board shows the machine waiting for a check, and the history says who did what.
    let (board, _) = app.signed_in("karim", Role::Trainer).await;
    let html = board
        .get(app.url("/board"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Prusa MK3S")
            && html.contains("À vérifier")
            && html.contains("Vérifiée et propre")
    );
    let events = app
        .lab
        .store()
        .job_events(JobId(job["id"].as_i64().unwrap()))
        .await
        .unwrap();
    let states: Vec<JobState> = events.iter().map(|e| e.to).collect();
    assert_eq!(
        states,
        vec![
            JobState::Submitted,
            JobState::Queued,
            JobState::Running,
            JobState::Done
        ]
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_job_leaves_it_interrupted_with_its_last_line() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let input = MachineInput::new(
        "Ender 3",
        MachineKind::FdmPrinter,
        Connection::Manual,
        MachineProfile::default(),
        "",
        "",
    )
    .unwrap();
    let machine = app
        .lab
        .create_machine(&manager, &input, now())
        .await
        .unwrap();
    let job = app
        .submit_file(
            &maker,
            Some(machine.id),
            "hook.gcode",
            b"M104 S200\nG1 X10 Y10 E1\n",
        )
        .await;
    assert_eq!(job.state, JobState::Queued);
    let store = app.lab.store();
    store
        .start_job(job.id, machine.id, None, "", now())
        .await
        .unwrap();
    store
        .set_job_progress(job.id, 120, 400, now())
        .await
        .unwrap();

    // Fabrique starts again: the job that was running is not silently lost.
    let restarted = Runtime::start(app.lab.clone(), app.dir.path().join("jobs"), 30)
        .await
        .unwrap();
    let job = store.job(job.id).await.unwrap();
    assert_eq!(job.state, JobState::Interrupted);
    assert!(job.state_reason.contains("120"), "{}", job.state_reason);
    assert_eq!(
        store.machine(machine.id).await.unwrap().state,
        MachineState::ToCheck
    );
    // And it can be queued again.
    let again = app.lab.requeue_job(&maker, job.id, now()).await.unwrap();
    assert_eq!(again.state, JobState::Queued);
    restarted.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn finished_job_files_are_kept_for_the_set_number_of_days() {
    let app = spawn_app().await;
    let maker = app.add_user("amina", Role::Member).await;
    let jobs_dir = app.dir.path().join("jobs");
    std::fs::create_dir_all(&jobs_dir).unwrap();
    std::fs::write(jobs_dir.join("old.gcode"), b"G1 X1\n").unwrap();
    let new = fabrique_controller::store::NewJob {
        size_bytes: 6,
        target_machine: None,
        ..new_job(&maker, None, "old.gcode")
    };
    let forty_days_ago = now() - 40 * 86_400;
    let id = app
        .lab
        .store()
        .insert_job(&new, None, JobState::Cancelled, "", forty_days_ago)
        .await
        .unwrap();
    assert_eq!(
        app.lab.clean_job_files(&jobs_dir, 60, now()).await.unwrap(),
        0,
        "kept within 60 days"
    );
    assert_eq!(
        app.lab.clean_job_files(&jobs_dir, 30, now()).await.unwrap(),
        1
    );
    assert!(!jobs_dir.join("old.gcode").exists());
    let job = app.lab.store().job(id).await.unwrap();
    assert!(job.file_deleted);
    assert!(
        app.lab.requeue_job(&maker, id, now()).await.is_err(),
        "no file, no new run"
    );
}

#[tokio::test]
async fn a_file_sliced_for_pla_waits_for_a_printer_that_takes_pla() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "k", now()).await.unwrap();
    let mut printers = Vec::new();
    for (name, materials) in [("Ender PETG", "PETG"), ("Prusa PLA", "PLA, PETG")] {
        let profile =
            MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", materials).unwrap();
        let input = MachineInput::new(
            name,
            MachineKind::FdmPrinter,
            Connection::Manual,
            profile,
            "",
            "",
        )
        .unwrap();
        printers.push(app.add_idle_machine(&manager, &input).await);
    }
    let form = Form::new().part(
        "file",
        Part::bytes(KEYCHAIN.to_vec())
            .file_name("mk3_keychain.gcode")
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    let response = client()
        .post(app.url("/api/v1/jobs"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    assert_eq!(
        job["analysis"]["slicer"]["materials"],
        serde_json::json!(["PLA"])
    );
    let job = job["id"].as_i64().unwrap();

    let plan = app.runtime.plan_once().await.unwrap();
    let placed: Vec<i64> = plan
        .placements
        .iter()
        .filter(|p| p.job == job)
        .map(|p| p.machine)
        .collect();
    assert_eq!(placed, [printers[1].id.0], "only the printer with PLA");
    // Without it, the job is not put on the PETG printer: it waits, and the plan says why.
    app.lab
        .set_machine_state(
            &manager,
            printers[1].id,
            MachineState::Maintenance,
            "",
            now(),
        )
        .await
        .unwrap();
    let plan = app.runtime.plan_once().await.unwrap();
    assert!(plan.placements.iter().all(|p| p.job != job));
    assert!(plan.unplaced.contains(&(job, Unplaced::NoMachine)));
}

#[tokio::test]
async fn a_laser_never_starts_by_itself() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    app.let_printers_run_unattended(&manager).await;
    let connection = Connection::SerialGrbl {
        port: "/dev/null".into(),
        baud: 115_200,
    };
    let input = MachineInput::new(
        "Laser",
        MachineKind::LaserCutter,
        connection,
        MachineProfile::default(),
        "",
        "",
    )
    .unwrap();
    let machine = app.add_idle_machine(&manager, &input).await;
    let job = app
        .submit_file(
            &maker,
            Some(machine.id),
            "shield.gcode",
            b"M4 S500\nG1 X10 Y10 F600\nM5\n",
        )
        .await;
    assert_eq!(job.state, JobState::Queued);
    let plan = app.runtime.plan_once().await.unwrap();
    assert!(
        plan.placements
            .iter()
            .all(|p| p.machine != machine.id.0 || p.job == job.id.0)
    );
    // Planned or not, nobody started it: it waits for a person at the machine.
    assert_eq!(
        app.lab.store().job(job.id).await.unwrap().state,
        JobState::Queued
    );
    assert_eq!(
        app.lab.store().machine(machine.id).await.unwrap().state,
        MachineState::Idle
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_starts_the_laser_from_the_board_and_it_ends_safe() {
    use fabrique_machines::sim::grbl::SimConfig as GrblConfig;
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app.lab.create_api_key(&maker, "k", now()).await.unwrap();

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
    let sim = GrblConfig {
        time_scale: 0.0,
        ..GrblConfig::default()
    };
    let (machine, stop, served) = app.add_virtual_grbl(&manager, input, sim).await;

    let form = Form::new()
        .text("machine_id", machine.id.0.to_string())
        .part(
            "file",
            Part::bytes(include_bytes!("data/laser_shield.gcode").to_vec())
                .file_name("shield.gcode")
                .mime_str("application/octet-stream")
                .unwrap(),
        );
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
    assert_eq!(job["state"], "queued", "{job}");
    // The planner never starts it; a person at the workshop PC does.
    app.runtime.plan_once().await.unwrap();
    assert_eq!(
        app.lab.store().machine(machine.id).await.unwrap().state,
        MachineState::Idle
    );
    let (board, _) = app.signed_in("karim", Role::Trainer).await;
    let token = app.page_csrf(&board, "/board").await;
    let response = board
        .post(app.url(&format!("/board/{}/start", machine.id.0)))
        .form(&[("csrf_token", token), ("job", job["id"].to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    machine_reaches(
        &app.runtime,
        machine.id.0,
        MachineState::ToCheck,
        Duration::from_secs(120),
    )
    .await;
    let done = app
        .lab
        .store()
        .job(JobId(job["id"].as_i64().unwrap()))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Done, "{}", done.state_reason);
    let events = app.lab.store().job_events(done.id).await.unwrap();
    assert_eq!(
        events
            .iter()
            .find(|e| e.to == JobState::Running)
            .and_then(|e| e.actor_name.clone())
            .as_deref(),
        Some("karim"),
        "the person who started it is recorded"
    );
    stop.cancel();
    let sim = served.await.unwrap();
    assert!(!sim.laser_on(), "the laser ends off");
}

#[tokio::test]
async fn the_plan_page_shows_planned_jobs_and_managers_set_priorities() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let maker = app.add_user("amina", Role::Member).await;
    app.let_printers_run_unattended(&manager).await;
    let input = MachineInput::new(
        "Brodeuse",
        MachineKind::Embroidery,
        Connection::Manual,
        MachineProfile::default(),
        "",
        "",
    )
    .unwrap();
    let machine = app
        .lab
        .create_machine(&manager, &input, now())
        .await
        .unwrap();
    let mut design = fabrique_machines::files::embroidery::Design::new();
    design.stitch(0, 0).stitch(200, 100);
    let mut dst = Vec::new();
    fabrique_machines::files::embroidery::write_dst(&design, &mut dst).unwrap();
    let job = app
        .submit_file(&maker, Some(machine.id), "ecusson.dst", &dst)
        .await;
    assert_eq!(job.state, JobState::Queued);
    let (page, _) = app.signed_in("chef", Role::Manager).await;
    let html = page
        .get(app.url("/plan"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Brodeuse") && html.contains("ecusson.dst (amina)"),
        "{html}"
    );
    // A manual machine is planned but never started by the planner.
    assert_eq!(
        app.lab.store().job(job.id).await.unwrap().state,
        JobState::Queued
    );
    let token = app.page_csrf(&page, &format!("/jobs/{}", job.id.0)).await;
    let response = page
        .post(app.url(&format!("/jobs/{}/priority", job.id.0)))
        .form(&[("csrf_token", token.as_str()), ("priority", "5")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(app.lab.store().job(job.id).await.unwrap().priority, 5);
    let (member, _) = app.signed_in("bruno", Role::Member).await;
    assert_eq!(
        member.get(app.url("/plan")).send().await.unwrap().status(),
        403
    );
}

/// Prusa's firmware on an MK3S answering `M503`: classic jerk, its own figures.
const PRUSA_M503: &str = "echo:Maximum feedrates (mm/s):
echo:  M203 X200.00 Y200.00 Z12.00 E120.00
echo:Maximum Acceleration (mm/s2):
echo:  M201 X1000 Y1000 Z200 E5000
echo:Acceleration: P=print, R=retract, T=travel
echo:  M204 P1250.00 R1250.00 T1250.00
echo:Advanced variables: S=Min feedrate (mm/s), T=Min travel feedrate (mm/s), B=minimum segment time (us), X=maximum XY jerk (mm/s),  Z=maximum Z jerk (mm/s),  E=maximum E jerk (mm/s)
echo:  M205 S0.00 T0.00 B20000 X8.00 Y8.00 Z0.40 E4.50
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_a_printer_reports_are_offered_to_the_manager_and_used_once_adopted() {
    let app = spawn_app().await;
    let (manager_client, manager) = app.signed_in("nadia", Role::Manager).await;
    app.let_printers_run_unattended(&manager).await;
    let cancel = CancellationToken::new();
    let config = SimConfig {
        time_scale: 0.0,
        m503: Some(PRUSA_M503.into()),
        ..SimConfig::default()
    };
    let (machine, _printer) = app.add_virtual_marlin(&manager, config, &cancel).await;
    // A file with no limits of its own: the estimate takes the profile's, else defaults.
    let mut moves = String::from("G28\nG90\nM83\n");
    for i in 0..400 {
        let (x, y) = if i % 2 == 0 { (20, 180) } else { (180, 20) };
        moves.push_str(&format!("G1 X{x} Y{y} E0.5 F9000\nG1 X{y} Y{y} E0.5\n"));
    }
    let before = app
        .submit_file(
            &manager,
            Some(machine.id),
            "aller-retour.gcode",
            moves.as_bytes(),
        )
        .await;
    let analysis = |job: &fabrique_controller::domain::job::Job| {
        serde_json::to_value(job.analysis.as_ref().unwrap()).unwrap()
    };
    assert_eq!(analysis(&before)["limits"]["source"], "defaults");
    app.runtime.wake();
    machine_reaches(
        &app.runtime,
        machine.id.0,
        MachineState::ToCheck,
        Duration::from_secs(60),
    )
    .await;

    // The machine's page offers what the firmware said.
    let page_url = app.url(&format!("/machines/{}", machine.id.0));
    let page = manager_client
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let text = common::unescaped(&page);
    assert!(
        text.contains("Limites annoncées par l'imprimante"),
        "{text}"
    );
    assert!(text.contains("X 200 · Y 200 · Z 12 · E 120 mm/s"), "{text}");
    assert!(
        text.contains("jerk classique X 8 · Y 8 · Z 0.4 · E 4.5 mm/s"),
        "{text}"
    );
    assert!(text.contains("Utiliser ces limites pour les estimations"));
    // A member sees none of it.
    let (member_client, _) = app.signed_in("amina", Role::Member).await;
    let theirs = member_client
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!theirs.contains("adopt-limits"));

    let token = common::csrf_in(&page);
    let adopted = manager_client
        .post(app.url(&format!("/machines/{}/adopt-limits", machine.id.0)))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(adopted.status(), 303);
    let profile = app.lab.machine(machine.id).await.unwrap().profile;
    assert_eq!(profile.max_speed_mm_s, 200.0);
    assert_eq!(profile.max_accel_mm_s2, 1250.0);
    assert_eq!(
        profile.junction_rule,
        Some(fabrique_controller::domain::machine::JunctionRule::ClassicJerk)
    );
    let page = manager_client
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(common::unescaped(&page).contains("Le profil de la machine utilise ces limites"));

    // The next job is estimated with the printer's own figures: slower than the defaults'
    // 1500 mm/s² and 10 mm/s jerk.
    let after = app
        .submit_file(
            &manager,
            Some(machine.id),
            "aller-retour.gcode",
            moves.as_bytes(),
        )
        .await;
    assert_eq!(analysis(&after)["limits"]["source"], "profile");
    assert!(
        after.estimate_s.unwrap() > before.estimate_s.unwrap(),
        "{:?} then {:?}",
        before.estimate_s,
        after.estimate_s
    );
    cancel.cancel();
}

/// A queued job's page says its place in the queue, its planned start and why it has not
/// started, in words; and it follows the job live by server-sent events.
#[tokio::test]
async fn a_queued_jobs_page_says_its_place_its_start_and_why_and_follows_it_live() {
    let app = spawn_app().await;
    let manager = app.add_user("nadia", Role::Manager).await;
    let (page, maker) = app.signed_in("amina", Role::Member).await;
    // Open all day, every day: the laser may be planned now, whatever the hour of the test.
    let settings = CalendarSettings {
        timezone: "UTC".into(),
        opening_hours: std::array::from_fn(|_| vec![(0, 24 * 60)]),
        ..CalendarSettings::default()
    };
    app.lab
        .set_calendar_settings(&manager, &settings)
        .await
        .unwrap();
    let connection = Connection::SerialGrbl {
        port: "/dev/null".into(),
        baud: 115_200,
    };
    let input = MachineInput::new(
        "Laser",
        MachineKind::LaserCutter,
        connection,
        MachineProfile::default(),
        "",
        "",
    )
    .unwrap();
    let machine = app.add_idle_machine(&manager, &input).await;
    // As the machines pages do after a change: the runtime gives the machine its task.
    app.runtime.refresh(machine.id).await;
    // About two minutes and a half of cutting: the second job starts after the first.
    let cut = b"M4 S500\nG1 X10 Y10 F6\nM5\n";
    let first = app
        .submit_file(&maker, Some(machine.id), "shield.gcode", cut)
        .await;
    let second = app
        .submit_file(&maker, Some(machine.id), "badge.gcode", cut)
        .await;
    let html = |id: i64| {
        let page = page.clone();
        let url = app.url(&format!("/jobs/{id}"));
        async move { common::unescaped(&page.get(url).send().await.unwrap().text().await.unwrap()) }
    };
    let text = html(first.id.0).await;
    assert!(
        text.contains("Place dans la file\u{a0}: 1 sur 2."),
        "{text}"
    );
    assert!(
        text.contains("Début prévu\u{a0}: ") && text.contains(", sur Laser."),
        "{text}"
    );
    assert!(
        text.contains(
            "Il attend qu'une personne formée appuie sur «\u{202f}Démarrer\u{202f}» à la machine."
        ),
        "{text}"
    );
    assert!(text.contains("/static/job.js") && text.contains(">Actualiser</a>"));
    let text = html(second.id.0).await;
    assert!(
        text.contains("Place dans la file\u{a0}: 2 sur 2."),
        "{text}"
    );
    assert!(
        text.contains("La machine est occupée ou réservée d'ici là\u{a0}: il passe à son tour."),
        "{text}"
    );

    // Live: the page's stream says when the job changes.
    let mut stream = page
        .get(app.url(&format!("/jobs/{}/events", first.id.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    app.lab.cancel_job(&maker, first.id, now()).await.unwrap();
    app.runtime.refresh(machine.id).await;
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = String::new();
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"state\":\"cancelled\"") {
                return seen;
            }
        }
        seen
    })
    .await
    .expect("an event for the cancelled job");
    assert!(event.contains("event: job"), "{event}");
    // Someone else's job is not theirs to follow.
    let (other, _) = app.signed_in("bruno", Role::Member).await;
    let response = other
        .get(app.url(&format!("/jobs/{}/events", second.id.0)))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(response.status().as_u16(), 403 | 404),
        "{}",
        response.status()
    );
}
