//! The Moonraker driver against a stand-in that behaves as Moonraker and Klipper do in their
//! source (`moonraker_standin.py`: Moonraker itself needs Klipper and is not on PyPI; what it
//! reproduces and where each behaviour was read is in docs/print-servers.md). The stand-in
//! checks the upload's SHA-256, runs a print in real time with its file read ahead of the
//! moves, takes a cancel at once and carries it out a second later, shuts "Klipper" down on
//! an emergency stop from any client, and can be made to shut down by itself, restart, or
//! refuse a command as a user's macro would.
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
        Self::start_with(seconds, &[]).await
    }

    /// The same, with more arguments for the stand-in (`--without heater_bed`).
    async fn start_with(seconds: f64, args: &[&str]) -> StandIn {
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moonraker_standin.py");
        let child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(seconds.to_string())
            .args(args)
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

    /// One of the stand-in's control endpoints (`/standin/...`), as another client or the
    /// printer itself would act.
    async fn control(&self, what: &str) {
        let answer = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/standin/{what}", self.port))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{what}: {answer:?}");
    }

    /// The printer objects as Klipper holds them, whatever the driver makes of them.
    async fn raw(&self) -> serde_json::Value {
        reqwest::get(format!("http://127.0.0.1:{}/standin/raw", self.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
    // Klipper is shut down: Moonraker still answers 200, and says so in webhooks.
    let status = printer.status().await.unwrap();
    assert!(
        matches!(&status.state, RemoteState::Error(why) if why.starts_with("Shutdown due to webhooks request")),
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
    // Someone started another print at the printer: Klipper refuses ours, in its words
    // (virtual_sdcard's SDCARD_PRINT_FILE while a file prints).
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path());
    printer.upload(&file, "theirs.gcode").await.unwrap();
    printer.start("theirs.gcode").await.unwrap();
    let (outcome, _) = run(&printer, &file, false, &CancellationToken::new(), |_| None).await;
    assert!(
        matches!(&outcome, RemoteOutcome::Failed(why) if why.contains("a refusé de lancer l'impression (400) : SD busy")),
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

/// Follows a job to its end, or panics after `limit`: a driver that waits for ever fails.
async fn run_for(
    limit: Duration,
    printer: &Moonraker,
    file: &Path,
    steer: impl FnMut(&RemoteEvent) -> Option<Control>,
) -> (RemoteOutcome, Vec<RemoteEvent>) {
    let cancel = CancellationToken::new();
    match tokio::time::timeout(limit, run(printer, file, false, &cancel, steer)).await {
        Ok(ended) => ended,
        Err(_) => panic!("the job was still followed after {limit:?}"),
    }
}

fn failed_with(outcome: &RemoteOutcome, words: &str) -> bool {
    matches!(outcome, RemoteOutcome::Failed(why) if why.contains(words))
}

#[tokio::test]
async fn done_only_when_klipper_says_complete_not_when_the_file_is_read() {
    let standin = StandIn::start(3.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path());
    let follow = run_for(Duration::from_secs(20), &printer, &file, |_| None);
    // Meanwhile, what Klipper itself says: its file is read to the end before the print ends.
    let watch = async {
        let mut read_while_printing = false;
        for _ in 0..400 {
            let raw = standin.raw().await;
            read_while_printing |= raw["print_stats"]["state"] == "printing"
                && raw["virtual_sdcard"]["progress"].as_f64() == Some(1.0);
            if raw["print_stats"]["state"] == "complete" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        read_while_printing
    };
    let ((outcome, events), read_while_printing) = tokio::join!(follow, watch);
    assert!(read_while_printing, "the stand-in reads ahead of the moves");
    assert_eq!(outcome, RemoteOutcome::Done, "{events:?}");
    let statuses: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RemoteEvent::Status(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(
        statuses
            .iter()
            .filter(|s| s.state == RemoteState::Printing)
            .all(|s| s.progress.is_some_and(|p| p < 1.0)),
        "100 % said while Klipper still printed: {statuses:?}"
    );
    assert_eq!(statuses.last().unwrap().state, RemoteState::Complete);
    assert_eq!(statuses.last().unwrap().progress, Some(1.0));
}

#[tokio::test]
async fn an_emergency_stop_from_another_client_fails_the_job_with_klippers_words() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let file = job_file(dir.path());
    let follow = run_for(Duration::from_secs(20), &printer, &file, move |e| {
        let _ = tx.send(e.clone());
        None
    });
    // Another client (Mainsail's button) stops the printer while Fabrique follows it.
    let other = async {
        while let Some(e) = rx.recv().await {
            if state(&e) == Some(RemoteState::Printing) {
                standin.client(standin.port).emergency_stop().await.unwrap();
                break;
            }
        }
        while rx.recv().await.is_some() {}
    };
    let ((outcome, events), ()) = tokio::join!(follow, other);
    assert!(
        failed_with(&outcome, "Moonraker : Shutdown due to webhooks request"),
        "{outcome:?} {events:?}"
    );
    // Klipper kept print_stats at "paused": only webhooks said it had shut down.
    let raw = standin.raw().await;
    assert_eq!(raw["print_stats"]["state"], "paused");
    assert_eq!(raw["webhooks"]["state"], "shutdown");
}

#[tokio::test]
async fn a_shutdown_while_paused_fails_the_job_with_klippers_words() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let file = job_file(dir.path());
    let mut paused = false;
    let follow = run_for(Duration::from_secs(20), &printer, &file, move |e| {
        let _ = tx.send(e.clone());
        (state(e) == Some(RemoteState::Printing) && !std::mem::replace(&mut paused, true))
            .then_some(Control::Pause)
    });
    // While the print waits, the MCU shuts Klipper down by itself.
    let fault = async {
        while let Some(e) = rx.recv().await {
            if state(&e) == Some(RemoteState::Paused) {
                standin
                    .control("shutdown?message=MCU%20%27mcu%27%20shutdown%3A%20Timer%20too%20close")
                    .await;
                break;
            }
        }
        while rx.recv().await.is_some() {}
    };
    let ((outcome, events), ()) = tokio::join!(follow, fault);
    assert!(
        failed_with(&outcome, "MCU 'mcu' shutdown: Timer too close"),
        "{outcome:?} {events:?}"
    );
    // The board is not told the printer waits: the fault shows as the job's end.
    assert!(failed_with(&outcome, "FIRMWARE_RESTART"), "{outcome:?}");
}

#[tokio::test]
async fn a_cancel_the_server_refuses_is_reported_in_its_words_and_the_print_goes_on() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    // The lab's CANCEL_PRINT macro fails once, as a macro with a typo does.
    standin
        .control("macro_error?command=CANCEL_PRINT&message=Error%20evaluating%20%27gcode_macro%20CANCEL_PRINT%3Agcode%27%3A%20UndefinedError")
        .await;
    let mut step = 0;
    let (outcome, events) = run_for(
        Duration::from_secs(20),
        &printer,
        &job_file(dir.path()),
        |e| match step {
            0 if state(e) == Some(RemoteState::Printing) => {
                step = 1;
                Some(Control::Cancel)
            }
            // Told the cancel was refused, the person asks again.
            1 if format!("{e:?}").contains("a refusé l'annulation") => {
                step = 2;
                Some(Control::Cancel)
            }
            _ => None,
        },
    )
    .await;
    let said = format!("{events:?}");
    assert!(
        said.contains(
            "Moonraker a refusé l'annulation (400) : Error evaluating 'gcode_macro CANCEL_PRINT:gcode': UndefinedError"
        ),
        "{outcome:?} {said}"
    );
    assert!(!said.contains("ne répondait pas"), "{said}");
    assert_eq!(outcome, RemoteOutcome::Cancelled { by_server: false });
}

#[tokio::test]
async fn a_cancel_is_done_when_klipper_says_cancelled_and_one_never_carried_out_fails_the_job() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path());
    let mut sent = false;
    let (outcome, events) = run_for(Duration::from_secs(20), &printer, &file, |e| {
        (state(e) == Some(RemoteState::Printing) && !std::mem::replace(&mut sent, true))
            .then_some(Control::Cancel)
    })
    .await;
    assert_eq!(outcome, RemoteOutcome::Cancelled { by_server: false });
    // The cancel was taken at once, the state came seconds later: it was waited for.
    let after_cancel: Vec<_> = events
        .iter()
        .filter_map(state)
        .skip_while(|s| *s != RemoteState::Printing)
        .collect();
    assert!(
        after_cancel
            .iter()
            .filter(|s| **s == RemoteState::Printing)
            .count()
            >= 3,
        "{after_cancel:?}"
    );
    assert_eq!(after_cancel.last(), Some(&RemoteState::Cancelled));
    let raw = standin.raw().await;
    assert_eq!(raw["virtual_sdcard"]["file_path"], serde_json::Value::Null);
    assert_eq!(raw["virtual_sdcard"]["progress"], 0.0);
    // A cancel answered "ok" that the printer never carries out: the job does not wait for
    // ever, and does not say cancelled.
    standin.control("ignore_next_cancel").await;
    let mut sent = false;
    let (outcome, events) = run_for(Duration::from_secs(20), &printer, &file, |e| {
        (state(e) == Some(RemoteState::Printing) && !std::mem::replace(&mut sent, true))
            .then_some(Control::Cancel)
    })
    .await;
    assert!(
        failed_with(&outcome, "imprime encore"),
        "{outcome:?} {events:?}"
    );
}

#[tokio::test]
async fn a_file_damaged_on_the_way_fails_with_moonrakers_words_not_its_status_phrase() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    standin.control("corrupt_next_upload").await;
    let (outcome, _) = run_for(
        Duration::from_secs(20),
        &printer,
        &job_file(dir.path()),
        |_| None,
    )
    .await;
    assert!(
        failed_with(
            &outcome,
            "Moonraker a refusé le fichier (422) : Unprocessable Entity (File checksum mismatch: expected "
        ),
        "{outcome:?}"
    );
    assert_eq!(printer.status().await.unwrap().state, RemoteState::Ready);
}

#[tokio::test]
async fn sending_again_the_file_being_printed_is_refused_in_moonrakers_words() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path());
    // The job's own file is printing (sent by a Fabrique that stopped before recording it).
    printer.upload(&file, "fabrique-job-3.gcode").await.unwrap();
    printer.start("fabrique-job-3.gcode").await.unwrap();
    let (outcome, _) = run_for(Duration::from_secs(20), &printer, &file, |_| None).await;
    assert!(
        failed_with(
            &outcome,
            "Moonraker a refusé le fichier (403) : Forbidden (File is loaded, upload not permitted)"
        ),
        "{outcome:?}"
    );
    // The print it refused to overwrite goes on.
    assert_eq!(printer.status().await.unwrap().state, RemoteState::Printing);
}

#[tokio::test]
async fn a_file_gone_before_the_start_is_refused_in_klippers_words() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    // Someone deletes the file between the upload and the start.
    standin.control("lose_next_upload").await;
    let (outcome, _) = run_for(
        Duration::from_secs(20),
        &printer,
        &job_file(dir.path()),
        |_| None,
    )
    .await;
    assert!(
        failed_with(
            &outcome,
            "Moonraker a refusé de lancer l'impression (400) : Unable to open file"
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_klipper_restart_is_waited_through_then_the_lost_print_is_interrupted() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let file = job_file(dir.path());
    let follow = run_for(Duration::from_secs(20), &printer, &file, move |e| {
        let _ = tx.send(e.clone());
        None
    });
    // Klipper restarts mid-print: 503 while it is away, then 200 "startup" while it
    // connects to its MCU, then ready with nothing loaded.
    let restart = async {
        while let Some(e) = rx.recv().await {
            if state(&e) == Some(RemoteState::Printing) {
                standin.control("restart?disconnected=1&startup=2").await;
                break;
            }
        }
        while rx.recv().await.is_some() {}
    };
    let ((outcome, events), ()) = tokio::join!(follow, restart);
    let waited: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            RemoteEvent::Unreachable(why) => Some(why),
            _ => None,
        })
        .collect();
    assert!(
        waited
            .iter()
            .any(|w| w.contains("503 Klippy Host not connected")),
        "{events:?}"
    );
    assert!(
        waited.iter().any(|w| w.contains("Klipper : startup")),
        "{events:?}"
    );
    assert_eq!(
        outcome,
        RemoteOutcome::Interrupted("Moonraker ne connaît plus ce travail (redémarré ?)".into()),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_job_for_a_klipper_that_is_away_is_not_sent_and_a_printer_without_bed_is_followed() {
    let standin = StandIn::start_with(1.5, &["--without", "heater_bed"]).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let file = job_file(dir.path());
    standin.control("restart?disconnected=3&startup=1").await;
    let (outcome, _) = run_for(Duration::from_secs(20), &printer, &file, |_| None).await;
    // Moonraker took the file but Klipper was not there to start it: nothing printed.
    assert!(
        matches!(&outcome, RemoteOutcome::NotSent(why) if why.contains("503 Klippy Host not connected")),
        "{outcome:?}"
    );
    // Once Klipper is back, the job runs; the bed the printer does not have reads as `{}`.
    for _ in 0..100 {
        if printer
            .status()
            .await
            .is_ok_and(|s| s.state == RemoteState::Ready)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (outcome, events) = run_for(Duration::from_secs(20), &printer, &file, |_| None).await;
    assert_eq!(outcome, RemoteOutcome::Done, "{events:?}");
    assert!(events.iter().any(|e| matches!(e,
        RemoteEvent::Status(s) if s.state == RemoteState::Printing && s.bed.is_none() && s.hotend.is_some())));
}

#[tokio::test]
async fn a_line_klipper_refuses_fails_the_job_with_its_words() {
    let standin = StandIn::start(30.0).await;
    let printer = standin.client(standin.port);
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let file = job_file(dir.path());
    let follow = run_for(Duration::from_secs(20), &printer, &file, move |e| {
        let _ = tx.send(e.clone());
        None
    });
    let fault = async {
        while let Some(e) = rx.recv().await {
            if state(&e) == Some(RemoteState::Printing) {
                standin
                    .control("gcode_error?message=Move%20out%20of%20range%3A%20250.000%200.000%200.200%20%5B0.000%5D")
                    .await;
                break;
            }
        }
        while rx.recv().await.is_some() {}
    };
    let ((outcome, events), ()) = tokio::join!(follow, fault);
    assert_eq!(
        outcome,
        RemoteOutcome::Failed("Moonraker : Move out of range: 250.000 0.000 0.200 [0.000]".into()),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_cancel_that_gets_no_answer_leaves_the_printer_to_check() {
    let standin = StandIn::start(30.0).await;
    let proxy = Proxy::start(standin.port).await;
    let printer = standin.client(proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let mut sent = false;
    let (outcome, events) = run_for(
        Duration::from_secs(20),
        &printer,
        &job_file(dir.path()),
        |e| {
            // The network goes just as the person cancels.
            (state(e) == Some(RemoteState::Printing) && !std::mem::replace(&mut sent, true)).then(
                || {
                    proxy.cut();
                    Control::Cancel
                },
            )
        },
    )
    .await;
    assert!(
        matches!(&outcome, RemoteOutcome::Interrupted(why)
            if why.starts_with("annulé alors que Moonraker ne répondait pas (Moonraker injoignable : ")),
        "{outcome:?} {events:?}"
    );
}
