//! The OctoPrint driver against a real OctoPrint (`pip install octoprint`): each test starts
//! `octoprint serve` on 127.0.0.1 with a generated configuration (its virtual printer on,
//! a user with a known API key), uploads, starts and follows jobs through the same code the
//! runtime uses, and reads OctoPrint's own answers to check what happened.
//!
//! Outages are made by a proxy between the driver and OctoPrint that the test cuts and
//! restores, so the print goes on while Fabrique cannot see it.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Proxy;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fabrique_machines::driver::remote::{
    Control, RemoteEvent, RemoteJob, RemoteOptions, RemoteOutcome, RemoteState, run_job,
};
use fabrique_machines::sim::octoprint::OctoPrintServer;
use fabrique_machines::transport::octoprint::OctoPrint;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Server {
    octoprint: OctoPrintServer,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let octoprint = OctoPrintServer::start(dir.path()).await.unwrap();
        Server {
            port: octoprint.port,
            octoprint,
            _dir: dir,
        }
    }

    fn client(&self, port: u16) -> OctoPrint {
        self.octoprint.client(port).unwrap()
    }

    /// OctoPrint's own view of the job, straight from its API.
    async fn job(&self) -> serde_json::Value {
        self.octoprint.job().await.unwrap()
    }
}

/// A G-code file whose print takes about `dwell_s` seconds on OctoPrint's virtual printer
/// (it honours `G4`), with a few moves around the dwells.
fn job_file(dir: &Path, dwell_s: u32) -> PathBuf {
    let mut text = String::from("; a test job\nG28\nG90\nM83\n");
    for i in 0..(dwell_s * 4) {
        text += &format!(
            "G1 X{} Y{} E0.05 F3000\nG4 P250\n",
            10 + i % 100,
            20 + i % 50
        );
    }
    text += "G1 X0 Y0 F3000\nM84\n";
    let path = dir.join("job.gcode");
    std::fs::write(&path, text).unwrap();
    path
}

fn options() -> RemoteOptions {
    RemoteOptions {
        poll: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        start_polls: 25,
    }
}

/// Runs a job, handing every event to `steer`, which may answer with controls.
async fn run(
    printer: &OctoPrint,
    file: &Path,
    name: &str,
    reattach: bool,
    cancel: &CancellationToken,
    mut steer: impl FnMut(&RemoteEvent) -> Option<Control>,
) -> (RemoteOutcome, Vec<RemoteEvent>) {
    let (tx, mut rx) = mpsc::channel(8);
    let mut events = Vec::new();
    let outcome = run_job(
        printer,
        RemoteJob {
            file,
            name,
            reattach,
        },
        &options(),
        Some(&mut rx),
        |e| {
            events.push(e.clone());
            if let Some(c) = steer(e) {
                let _ = tx.try_send(c);
            }
        },
        cancel,
    )
    .await;
    (outcome, events)
}

fn printing(e: &RemoteEvent) -> bool {
    matches!(e, RemoteEvent::Status(s) if s.state == RemoteState::Printing)
}

#[tokio::test]
async fn a_job_is_uploaded_started_and_followed_to_its_end() {
    let server = Server::start().await;
    let printer = server.client(server.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), 3);
    let (outcome, events) = run(
        &printer,
        &file,
        "fabrique-job-7.gcode",
        false,
        &CancellationToken::new(),
        |_| None,
    )
    .await;
    assert_eq!(outcome, RemoteOutcome::Done, "{events:?}");
    assert!(events.iter().any(printing), "{events:?}");
    // Temperatures and progress came from OctoPrint while it printed.
    assert!(events.iter().any(
        |e| matches!(e, RemoteEvent::Status(s) if s.hotend.is_some() && s.progress.is_some())
    ));
    let job = server.job().await;
    assert_eq!(job["job"]["file"]["name"], "fabrique-job-7.gcode");
    assert_eq!(job["progress"]["completion"], 100.0);
    assert_eq!(job["state"], "Operational");
}

#[tokio::test]
async fn pause_resume_and_cancel_reach_octoprint() {
    let server = Server::start().await;
    let printer = server.client(server.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), 20);
    let mut step = 0;
    let (outcome, events) = run(
        &printer,
        &file,
        "fabrique-job-8.gcode",
        false,
        &CancellationToken::new(),
        |e| {
            let state = match e {
                RemoteEvent::Status(s) => Some(s.state.clone()),
                _ => None,
            };
            match (step, state) {
                (0, Some(RemoteState::Printing)) => {
                    step = 1;
                    Some(Control::Pause)
                }
                (1, Some(RemoteState::Paused)) => {
                    step = 2;
                    Some(Control::Resume)
                }
                (2, Some(RemoteState::Printing)) => {
                    step = 3;
                    Some(Control::Cancel)
                }
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(step, 3, "{events:?}");
    assert_eq!(
        outcome,
        RemoteOutcome::Cancelled { by_server: false },
        "{events:?}"
    );
    assert!(events.contains(&RemoteEvent::Paused));
    assert!(events.contains(&RemoteEvent::Resumed));
    let job = server.job().await;
    assert_eq!(job["state"], "Operational");
    // OctoPrint forgets the progress of a cancelled print.
    assert!(
        job["progress"]["completion"]
            .as_f64()
            .is_none_or(|c| c < 100.0),
        "{job}"
    );
}

#[tokio::test]
async fn an_emergency_stop_reaches_the_printer_and_ends_the_job() {
    let server = Server::start().await;
    let printer = server.client(server.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), 20);
    let mut sent = false;
    let (outcome, events) = run(
        &printer,
        &file,
        "fabrique-job-9.gcode",
        false,
        &CancellationToken::new(),
        |e| (printing(e) && !std::mem::replace(&mut sent, true)).then_some(Control::EmergencyStop),
    )
    .await;
    assert_eq!(outcome, RemoteOutcome::EmergencyStop, "{events:?}");
    // The print no longer runs on OctoPrint.
    for _ in 0..50 {
        if server.job().await["state"] != "Printing" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("OctoPrint still prints after the emergency stop");
}

#[tokio::test]
async fn an_outage_of_the_server_loses_nothing_and_the_job_ends_when_it_answers_again() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.port).await;
    let printer = server.client(proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), 4);
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = async {
        let (controls_tx, mut controls) = mpsc::channel(1);
        let outcome = run_job(
            &printer,
            RemoteJob {
                file: &file,
                name: "fabrique-job-10.gcode",
                reattach: false,
            },
            &options(),
            Some(&mut controls),
            |e| {
                let _ = tx.send(e.clone());
            },
            &cancel,
        )
        .await;
        drop(controls_tx);
        outcome
    };
    let outage = async {
        let mut unreachable = 0;
        while let Some(e) = rx.recv().await {
            if printing(&e) {
                proxy.cut();
                break;
            }
        }
        // The print runs on while Fabrique cannot see it: it finishes during the outage.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(RemoteEvent::Unreachable(_))) =
                tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
            {
                unreachable += 1;
            }
        }
        assert_eq!(server.job().await["progress"]["completion"], 100.0);
        proxy.restore();
        unreachable
    };
    let (outcome, unreachable) = tokio::join!(driver, outage);
    assert!(unreachable >= 2, "the outage was not seen");
    assert_eq!(outcome, RemoteOutcome::Done);
}

#[tokio::test]
async fn a_restarted_fabrique_follows_the_print_that_kept_running() {
    let server = Server::start().await;
    let printer = server.client(server.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path(), 5);
    // Fabrique stops while the print runs: the driver lets go, the print goes on.
    let stop = CancellationToken::new();
    let s = stop.clone();
    let (outcome, _) = run(
        &printer,
        &file,
        "fabrique-job-11.gcode",
        false,
        &stop,
        |e| {
            if printing(e) {
                s.cancel();
            }
            None
        },
    )
    .await;
    assert_eq!(outcome, RemoteOutcome::Detached);
    assert_eq!(server.job().await["state"], "Printing");
    // At the next start, the job is followed again to its end.
    let (outcome, events) = run(
        &printer,
        &file,
        "fabrique-job-11.gcode",
        true,
        &CancellationToken::new(),
        |_| None,
    )
    .await;
    assert_eq!(outcome, RemoteOutcome::Done, "{events:?}");
    // A print the server no longer knows (another file printed since) is interrupted, not
    // silently taken for done.
    let (outcome, _) = run(
        &printer,
        &file,
        "fabrique-job-12.gcode",
        true,
        &CancellationToken::new(),
        |_| None,
    )
    .await;
    assert!(
        matches!(outcome, RemoteOutcome::Interrupted(_)),
        "{outcome:?}"
    );
}
