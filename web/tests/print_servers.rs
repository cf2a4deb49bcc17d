//! Printers behind a real OctoPrint (started by the tests, `pip install octoprint`): a file
//! a maker sends is planned, uploaded to OctoPrint, printed by its virtual printer and done;
//! a restart of Fabrique in the middle of the print follows it again to its end; an
//! OctoPrint that cannot be reached makes the machine offline and keeps the job queued.
//! Printers behind Moonraker (the stand-in of `machines/tests/moonraker_standin.py`, which
//! behaves as Moonraker and Klipper do in their source): a Klipper shutdown no one in the lab
//! asked for fails the job with Klipper's words, and the machine is in error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, client, spawn_app};
use fabrique_controller::domain::job::{JobId, JobState};
use fabrique_controller::domain::{
    Connection, Machine, MachineInput, MachineKind, MachineProfile, MachineState, Role, Secret,
};
use fabrique_controller::lab::now;
use fabrique_controller::runtime::Runtime;
use fabrique_machines::sim::octoprint::{API_KEY, OctoPrintServer};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::time::Duration;

/// A G-code file of about `seconds` on OctoPrint's virtual printer (it honours `G4`).
fn gcode(seconds: u32) -> Vec<u8> {
    let mut text = String::from("; a test print\nM104 S200\nG28\nG90\nM83\n");
    for i in 0..(seconds * 4) {
        text += &format!(
            "G1 X{} Y{} E0.05 F3000\nG4 P250\n",
            10 + i % 100,
            20 + i % 50
        );
    }
    text += "M104 S0\nM84\n";
    text.into_bytes()
}

/// A lab whose printers may run at any hour, with one idle printer behind `url`.
async fn lab_with_printer(app: &TestApp, url: &str) -> Machine {
    lab_with(
        app,
        Connection::OctoPrint {
            url: url.to_string(),
            api_key: Secret::new(API_KEY),
        },
    )
    .await
}

/// The same, with the printer reached through `connection`.
async fn lab_with(app: &TestApp, connection: Connection) -> Machine {
    let manager = app.add_user("nadia", Role::Manager).await;
    app.let_printers_run_unattended(&manager).await;
    let input = MachineInput::new(
        "Prusa sur serveur d'impression",
        MachineKind::FdmPrinter,
        connection,
        MachineProfile::parse(["250", "210", "210"], "300", "120", "", "", "PLA").unwrap(),
        "Atelier",
        "",
    )
    .unwrap();
    let machine = app.add_idle_machine(&manager, &input).await;
    app.runtime.refresh(machine.id).await;
    machine
}

/// Sends a file the way PrusaSlicer's "send to OctoPrint" does; returns the job's id.
async fn send(app: &TestApp, key: &str, bytes: Vec<u8>) -> JobId {
    let form = Form::new().text("print", "true").part(
        "file",
        Part::bytes(bytes)
            .file_name("support.gcode")
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    let response = client()
        .post(app.url("/api/files/local"))
        .header("x-api-key", key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let job: Value = client()
        .get(&location)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // OctoPrint's file entry, with Fabrique's job number.
    JobId(job["fabrique"]["job"].as_i64().unwrap())
}

async fn job_reaches(app: &TestApp, job: JobId, state: JobState, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let current = app.lab.store().job(job).await.unwrap();
        if current.state == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never became {state}: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The machine's state once the runtime has recorded the end of its job (it writes the job,
/// then the machine).
async fn machine_reaches(app: &TestApp, machine: &Machine, state: MachineState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let current = app.lab.store().machine(machine.id).await.unwrap().state;
        if current == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "machine stayed {current}, never {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn octoprint_job(server: &OctoPrintServer) -> Value {
    server.job().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_a_slicer_is_printed_through_octoprint_and_done() {
    let dir = tempfile::tempdir().unwrap();
    let server = OctoPrintServer::start(dir.path()).await.unwrap();
    let app = spawn_app().await;
    let machine = lab_with_printer(&app, &server.url()).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app
        .lab
        .create_api_key(&maker, "PrusaSlicer", now())
        .await
        .unwrap();

    let job = send(&app, &key, gcode(2)).await;
    job_reaches(&app, job, JobState::Done, Duration::from_secs(60)).await;
    let record = app.lab.store().job(job).await.unwrap();
    assert_eq!(record.machine, Some(machine.id));
    machine_reaches(&app, &machine, MachineState::ToCheck).await;
    // OctoPrint printed our file to its end.
    let printed = octoprint_job(&server).await;
    assert_eq!(
        printed["job"]["file"]["name"],
        format!("fabrique-job-{}.gcode", job.0)
    );
    assert_eq!(printed["progress"]["completion"], 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_octoprint_print_follows_it_again_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = OctoPrintServer::start(dir.path()).await.unwrap();
    let app = spawn_app().await;
    let machine = lab_with_printer(&app, &server.url()).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app
        .lab
        .create_api_key(&maker, "PrusaSlicer", now())
        .await
        .unwrap();

    let job = send(&app, &key, gcode(8)).await;
    job_reaches(&app, job, JobState::Running, Duration::from_secs(30)).await;
    // Wait for OctoPrint to print it, then stop Fabrique: the print goes on.
    for _ in 0..100 {
        if octoprint_job(&server).await["state"] == "Printing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.runtime.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        app.lab.store().job(job).await.unwrap().state,
        JobState::Running
    );
    assert_eq!(octoprint_job(&server).await["state"], "Printing");

    // Fabrique starts again and follows the print to its end.
    let restarted = Runtime::start(app.lab.clone(), app.dir.path().join("jobs"), 30)
        .await
        .unwrap();
    job_reaches(&app, job, JobState::Done, Duration::from_secs(60)).await;
    let events = app.lab.store().job_events(job).await.unwrap();
    assert!(
        !events.iter().any(|e| e.to == JobState::Interrupted),
        "{events:?}"
    );
    machine_reaches(&app, &machine, MachineState::ToCheck).await;
    restarted.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_octoprint_that_cannot_be_reached_keeps_the_job_queued_and_the_machine_offline() {
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = spawn_app().await;
    let machine = lab_with_printer(&app, &format!("http://127.0.0.1:{port}")).await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app
        .lab
        .create_api_key(&maker, "PrusaSlicer", now())
        .await
        .unwrap();
    let job = send(&app, &key, gcode(1)).await;
    // The planner tries it, the upload finds nobody: the machine goes offline...
    machine_reaches(&app, &machine, MachineState::Offline).await;
    // ...and the job waits in the queue, with what happened in its history.
    job_reaches(&app, job, JobState::Queued, Duration::from_secs(10)).await;
    let events = app.lab.store().job_events(job).await.unwrap();
    let states: Vec<JobState> = events.iter().map(|e| e.to).collect();
    assert_eq!(
        states,
        vec![
            JobState::Submitted,
            JobState::Queued,
            JobState::Running,
            JobState::Interrupted,
            JobState::Queued
        ]
    );
    let machine = app.lab.store().machine(machine.id).await.unwrap();
    assert!(
        machine.state_reason.contains("OctoPrint injoignable"),
        "{}",
        machine.state_reason
    );
}

/// The Moonraker stand-in on a free port, its prints taking `seconds`.
struct MoonrakerStandIn {
    _child: tokio::process::Child,
    url: String,
}

impl MoonrakerStandIn {
    async fn start(seconds: f64) -> MoonrakerStandIn {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../machines/tests/moonraker_standin.py");
        let child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(seconds.to_string())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 is needed for the Moonraker stand-in");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{url}/server/info")).await.is_ok() {
                return MoonrakerStandIn { _child: child, url };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the Moonraker stand-in did not start");
    }

    /// The print job as Klipper holds it.
    async fn print_state(&self) -> String {
        let raw: Value = reqwest::get(format!("{}/standin/raw", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        raw["print_stats"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// One of its control endpoints, as another client or the printer itself would act.
    async fn control(&self, what: &str) {
        let answer = client()
            .post(format!("{}/standin/{what}", self.url))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{what}: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_klipper_shutdown_during_a_moonraker_print_fails_the_job_with_its_words() {
    let server = MoonrakerStandIn::start(30.0).await;
    let app = spawn_app().await;
    let machine = lab_with(
        &app,
        Connection::Moonraker {
            url: server.url.clone(),
        },
    )
    .await;
    let maker = app.add_user("amina", Role::Member).await;
    let key = app
        .lab
        .create_api_key(&maker, "PrusaSlicer", now())
        .await
        .unwrap();
    let job = send(&app, &key, gcode(30)).await;
    job_reaches(&app, job, JobState::Running, Duration::from_secs(30)).await;
    for _ in 0..100 {
        if server.print_state().await == "printing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.print_state().await, "printing");

    // A thermal fault shuts Klipper down: Moonraker still says the print is "paused".
    server
        .control("shutdown?message=Heater%20extruder%20not%20heating%20at%20expected%20rate")
        .await;
    assert_eq!(server.print_state().await, "paused");
    job_reaches(&app, job, JobState::Failed, Duration::from_secs(20)).await;
    let record = app.lab.store().job(job).await.unwrap();
    assert!(
        record
            .state_reason
            .contains("Heater extruder not heating at expected rate"),
        "{}",
        record.state_reason
    );
    machine_reaches(&app, &machine, MachineState::Error).await;
    let machine = app.lab.store().machine(machine.id).await.unwrap();
    assert!(
        machine
            .state_reason
            .contains("Heater extruder not heating at expected rate"),
        "{}",
        machine.state_reason
    );
}
