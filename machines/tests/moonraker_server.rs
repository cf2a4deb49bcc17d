//! The Moonraker driver against a stand-in that serves Moonraker's documented HTTP API
//! (`moonraker_standin.py`: Moonraker itself needs Klipper and is not on PyPI). The
//! stand-in checks the upload's SHA-256 as Moonraker does, runs a print in real time, and
//! shuts "Klipper" down on an emergency stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::Proxy;
use fabrique_machines::driver::remote::{
    Control, RemoteEvent, RemoteJob, RemoteOptions, RemoteOutcome, RemotePrinter, RemoteState,
    run_job,
};
use fabrique_machines::transport::moonraker::Moonraker;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct StandIn {
    child: tokio::process::Child,
    port: u16,
}

impl StandIn {
    /// A stand-in whose prints take `seconds`.
    async fn start(seconds: f64) -> StandIn {
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moonraker_standin.py");
        let child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(seconds.to_string())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 is needed for the Moonraker stand-in");
        let client = Moonraker::new(&format!("http://127.0.0.1:{port}")).unwrap();
        for _ in 0..100 {
            if client.status().await.is_ok() {
                return StandIn { child, port };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the Moonraker stand-in did not start");
    }

    fn client(&self, port: u16) -> Moonraker {
        Moonraker::new(&format!("http://127.0.0.1:{port}/")).unwrap()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn job_file(dir: &Path) -> PathBuf {
    let path = dir.join("job.gcode");
    let mut text = String::from("G28\nG90\nM83\n");
    for i in 0..2000 {
        text += &format!("G1 X{} Y{} E0.05 F3000\n", 10 + i % 100, 20 + i % 50);
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn options() -> RemoteOptions {
    RemoteOptions {
        poll: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        start_polls: 10,
    }
}

async fn run(
    printer: &Moonraker,
    file: &Path,
    reattach: bool,
    cancel: &CancellationToken,
    mut steer: impl FnMut(&RemoteEvent) -> Option<Control>,
) -> (RemoteOutcome, Vec<RemoteEvent>) {
    let (tx, mut rx) = mpsc::channel(8);
    let mut events = Vec::new();
    let job = RemoteJob {
        file,
        name: "fabrique-job-3.gcode",
        reattach,
    };
    let outcome = run_job(
        printer,
        job,
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

fn state(e: &RemoteEvent) -> Option<RemoteState> {
    match e {
        RemoteEvent::Status(s) => Some(s.state.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn a_job_is_uploaded_with_its_checksum_started_and_followed_to_its_end() {
    let standin = StandIn::start(1.5).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let (outcome, events) = run(
        &printer,
        &job_file(dir.path()),
        false,
        &CancellationToken::new(),
        |_| None,
    )
    .await;
    assert_eq!(outcome, RemoteOutcome::Done, "{events:?}");
    let printing: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RemoteEvent::Status(s) if s.state == RemoteState::Printing => Some(s),
            _ => None,
        })
        .collect();
    assert!(!printing.is_empty());
    assert!(
        printing
            .iter()
            .all(|s| s.hotend == Some((214.8, Some(215.0))))
    );
    // Time left is extrapolated from the time printed so far.
    assert!(printing.iter().any(|s| s.remaining_s.is_some()));
}

#[tokio::test]
async fn pause_resume_and_cancel_reach_klipper() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let mut step = 0;
    let (outcome, events) = run(
        &printer,
        &job_file(dir.path()),
        false,
        &CancellationToken::new(),
        |e| match (step, state(e)) {
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
        },
    )
    .await;
    assert_eq!(step, 3, "{events:?}");
    assert_eq!(outcome, RemoteOutcome::Cancelled { by_server: false });
}

#[tokio::test]
async fn an_emergency_stop_shuts_klipper_down() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let mut sent = false;
    let (outcome, _) = run(
        &printer,
        &job_file(dir.path()),
        false,
        &CancellationToken::new(),
        |e| {
            (state(e) == Some(RemoteState::Printing) && !std::mem::replace(&mut sent, true))
                .then_some(Control::EmergencyStop)
        },
    )
    .await;
    assert_eq!(outcome, RemoteOutcome::EmergencyStop);
    let status = printer.status().await.unwrap();
    assert_eq!(
        status.state,
        RemoteState::Error("Klipper : shutdown".into()),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_print_cancelled_on_the_printer_itself_is_marked_so() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let other = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let mut done = false;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let file = job_file(dir.path());
    let cancel = CancellationToken::new();
    let follow = run(&printer, &file, false, &cancel, move |e| {
        let _ = tx.send(e.clone());
        None
    });
    let someone_else = async {
        while let Some(e) = rx.recv().await {
            if state(&e) == Some(RemoteState::Printing) && !done {
                done = true;
                other.cancel().await.unwrap();
            }
        }
    };
    let ((outcome, _), ()) = tokio::join!(follow, someone_else);
    assert_eq!(outcome, RemoteOutcome::Cancelled { by_server: true });
}

#[tokio::test]
async fn an_outage_keeps_the_job_and_a_restart_reattaches() {
    let standin = StandIn::start(3.0).await;
    let proxy = Proxy::start(standin.port).await;
    let printer = standin.client(proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path());
    // Fabrique stops mid-print: the print goes on.
    let stop = CancellationToken::new();
    let (outcome, _) = run(&printer, &file, false, &stop, |e| {
        if state(e) == Some(RemoteState::Printing) {
            stop.cancel();
        }
        None
    })
    .await;
    assert_eq!(outcome, RemoteOutcome::Detached);
    // It starts again while the server cannot be reached, and follows the print once it
    // can: the print ended meanwhile.
    proxy.cut();
    let restore = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        proxy.restore();
    };
    let again = CancellationToken::new();
    let ((outcome, events), ()) =
        tokio::join!(run(&printer, &file, true, &again, |_| None), restore);
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, RemoteEvent::Unreachable(_)))
            .count()
            >= 2,
        "{events:?}"
    );
    assert_eq!(outcome, RemoteOutcome::Done, "{events:?}");
}

#[tokio::test]
async fn a_job_the_server_refuses_fails_with_its_words_and_a_missing_file_prints_nothing() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let (outcome, _) = run(
        &printer,
        Path::new("/nonexistent/job.gcode"),
        false,
        &CancellationToken::new(),
        |_| None,
    )
    .await;
    assert!(
        matches!(&outcome, RemoteOutcome::Failed(why) if why.contains("illisible")),
        "{outcome:?}"
    );
    assert_eq!(printer.status().await.unwrap().state, RemoteState::Ready);
    // Someone started another print at the printer: Klipper refuses ours, in its words.
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path());
    printer.upload(&file, "theirs.gcode").await.unwrap();
    printer.start("theirs.gcode").await.unwrap();
    let (outcome, _) = run(&printer, &file, false, &CancellationToken::new(), |_| None).await;
    assert!(
        matches!(&outcome, RemoteOutcome::Failed(why) if why.contains("Print already in progress")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_gets_nothing_and_the_job_is_not_sent() {
    let standin = StandIn::start(1.0).await;
    let proxy = Proxy::start(standin.port).await;
    proxy.cut();
    let printer = standin.client(proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let (outcome, _) = run(
        &printer,
        &job_file(dir.path()),
        false,
        &CancellationToken::new(),
        |_| None,
    )
    .await;
    assert!(matches!(outcome, RemoteOutcome::NotSent(_)), "{outcome:?}");
    let direct = standin.client(standin.port);
    assert_eq!(direct.status().await.unwrap().state, RemoteState::Ready);
}
