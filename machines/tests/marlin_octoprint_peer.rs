//! The independent peer: OctoPrint's own virtual printer (`pip install octoprint`), bridged
//! to a pseudo-terminal by `tests/octoprint_peer.py`. With its stock scripted errors (a
//! resend, a resend left unanswered, a line refused without a resend, a checksum error) the
//! job must end done and the position the peer reports (`M114`) must be the file's last
//! position. With its `resend_ratio`, which drops a line it accepted and asks for the next
//! one (no host can recover the dropped line), the job must fail, never end "done".
//!
//! This test needs `python3` with the `octoprint` package; it fails (never skips) when they
//! are missing.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fabrique_machines::driver::marlin::{
    JobFailure, JobFile, JobOptions, JobOutcome, MarlinConnection, open_serial,
};
use fabrique_machines::protocol::marlin::{FailReason, MarlinConfig, clean_line};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// The first lines of the Ender fixture: start G-code, heating, homing and the first layers.
const LINES: usize = 2000;

/// The peer's receive buffer (its `rxBuffer` setting, 64 bytes by default); what does not
/// fit is lost, as on a UART.
const PEER_RX_BUFFER: usize = 64;

fn word(cmd: &str, letter: char) -> Option<f64> {
    cmd.split_whitespace()
        .skip(1)
        .find_map(|w| w.strip_prefix(letter)?.parse().ok())
}

/// The last X, Y, Z the file moves to (absolute positioning, as PrusaSlicer writes).
fn last_position(commands: &[String]) -> [f64; 3] {
    let mut pos = [0.0; 3];
    for c in commands {
        match c.split_whitespace().next() {
            Some("G0" | "G1" | "G92") => {
                for (i, a) in ['X', 'Y', 'Z'].into_iter().enumerate() {
                    if let Some(v) = word(c, a) {
                        pos[i] = v;
                    }
                }
            }
            Some("G28") => pos = [0.0; 3],
            Some("G91") => panic!("the peer test expects absolute positioning"),
            _ => {}
        }
    }
    pos
}

/// Starts the peer with `args`; returns it and the path of its pty.
async fn peer(args: &[&str]) -> (tokio::process::Child, String) {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("tests/octoprint_peer.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 is required for the OctoPrint peer test (and `pip install octoprint`)");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await
        .expect("the OctoPrint peer did not start within 60 s")
        .unwrap()
        .unwrap_or_default();
    assert!(
        !first.starts_with("MISSING"),
        "the OctoPrint peer test needs the octoprint package: `pip install octoprint` ({first})"
    );
    let pty = first
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("unexpected line from the peer: {first:?}"))
        .to_string();
    (child, pty)
}

/// The first lines of the Ender fixture, sped up a hundredfold; with its commands.
fn hook_start() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fixture = std::fs::read_to_string(manifest.join("tests/data/ender_hook.gcode")).unwrap();
    // The peer plays moves in real time (a tenth of their duration); M220/M221 speed it up
    // a hundredfold so the test takes seconds, not minutes.
    let text: String = ["M220 S10000", "M221 S10000"]
        .into_iter()
        .chain(fixture.lines().take(LINES))
        .map(|l| format!("{l}\n"))
        .collect();
    let commands: Vec<String> = text
        .lines()
        .filter_map(clean_line)
        .map(str::to_string)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hook_start.gcode");
    std::fs::write(&path, &text).unwrap();
    (dir, path, commands)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octoprint_virtual_printer_with_its_scripted_errors_ends_at_the_files_last_position() {
    let (mut child, pty) = peer(&[]).await;
    let (_dir, path, commands) = hook_start();
    let want = last_position(&commands);

    let cancel = CancellationToken::new();
    let io = open_serial(&pty, 115_200).await.unwrap();
    // The peer's scripted `resend_with_timeout` error leaves one line unanswered on purpose:
    // a short communication timeout keeps the nudge that recovers it quick.
    let cfg = MarlinConfig {
        comm_timeout: Duration::from_secs(3),
        rx_buffer: PEER_RX_BUFFER,
        ..MarlinConfig::default()
    };
    let mut conn = MarlinConnection::connect(io, cfg, Duration::from_secs(30), &cancel)
        .await
        .unwrap();
    assert!(
        conn.firmware()
            .name
            .as_deref()
            .unwrap_or("")
            .contains("Virtual Marlin")
    );
    let mut file = JobFile::open(&path).await.unwrap();
    let outcome = conn
        .run_job(&mut file, &JobOptions::default(), None, |_| {}, &cancel)
        .await;
    assert!(outcome.is_done(), "{outcome}");
    let stats = outcome.stats();
    assert_eq!(stats.lines_acked as usize, commands.len());
    // The peer's scripted errors at lines 100-115: it asked again, and was answered.
    assert!(stats.resend_requests >= 3, "{stats:?}");
    assert!(stats.resends >= 2, "{stats:?}");

    // Every line is acknowledged once planned, not once moved: the peer's moves wait in its
    // command buffer (its M114 answers at once, with where the head is now), so wait for
    // them first, as a host that reads the position must (under load they lag seconds).
    conn.query("M400", Duration::from_secs(60), &cancel)
        .await
        .unwrap()
        .unwrap();
    let lines = conn
        .query("M114", Duration::from_secs(30), &cancel)
        .await
        .unwrap()
        .unwrap();
    let report = lines
        .iter()
        .find(|l| l.starts_with("X:"))
        .unwrap_or_else(|| panic!("no position in {lines:?}"));
    let got: Vec<f64> = ["X:", "Y:", "Z:"]
        .iter()
        .map(|k| {
            report
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.parse::<f64>().ok())
                .unwrap()
        })
        .collect();
    for i in 0..3 {
        assert!(
            (got[i] - want[i]).abs() < 1e-3,
            "peer at {got:?}, file ends at {want:?}"
        );
    }
    drop(child.stdin.take());
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octoprint_resend_ratio_dropping_accepted_lines_fails_the_job_never_done() {
    let (mut child, pty) = peer(&["--resend-ratio", "10"]).await;
    let (_dir, path, _commands) = hook_start();
    let cancel = CancellationToken::new();
    let io = open_serial(&pty, 115_200).await.unwrap();
    let cfg = MarlinConfig {
        rx_buffer: PEER_RX_BUFFER,
        ..MarlinConfig::default()
    };
    let mut conn = MarlinConnection::connect(io, cfg, Duration::from_secs(30), &cancel)
        .await
        .unwrap();
    let mut file = JobFile::open(&path).await.unwrap();
    let outcome = conn
        .run_job(&mut file, &JobOptions::default(), None, |_| {}, &cancel)
        .await;
    match &outcome {
        JobOutcome::Failed {
            reason: JobFailure::Printer(FailReason::LineOutOfStep { asked, last_sent }),
            ..
        } => assert_eq!(asked, &(last_sent + 1)),
        other => panic!("expected a line-count error, got {other}"),
    }
    drop(child.stdin.take());
    let _ = child.kill().await;
}
