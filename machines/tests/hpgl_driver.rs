//! The HP-GL driver against the virtual cutter over a pseudo-terminal: a whole job cut in
//! order through the holds, XOFF honoured, a cutter that never resumes, one that falls
//! silent, noise on the line, and a cancel that leaves the blade up.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fabrique_machines::driver::hpgl::{
    Config, Control, FailReason, HpglError, Lang, Progress, stream_file,
};
use fabrique_machines::sim::cutter::{Faults, Record, SimConfig, VirtualCutter, serve};
use fabrique_machines::sim::grbl::PtyLink;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A job of `n` small squares, one instruction per `;`, and its instructions.
fn job(n: u32) -> (String, Vec<String>) {
    let mut cmds = vec!["IN".to_string(), "SP1".into(), "VS20".into()];
    for i in 0..n {
        let (x, y) = (i * 40, (i % 7) * 40);
        cmds.push(format!("PU{x},{y}"));
        cmds.push(format!(
            "PD{},{},{},{},{},{},{x},{y}",
            x + 30,
            y,
            x + 30,
            y + 30,
            x,
            y + 30
        ));
    }
    cmds.push("PU0,0".into());
    cmds.push("SP0".into());
    let text: String = cmds.iter().map(|c| format!("{c};")).collect();
    (text, cmds)
}

/// The virtual cutter on a pseudo-terminal, and the host's end of it.
struct Rig {
    _pty: PtyLink,
    stop: CancellationToken,
    cutter: JoinHandle<VirtualCutter>,
}

impl Rig {
    fn new(config: SimConfig) -> (Rig, tokio_serial::SerialStream) {
        let mut pty = PtyLink::open().unwrap();
        let master = pty.take_master().unwrap();
        let host = pty.host_stream().unwrap();
        let stop = CancellationToken::new();
        let cutter = tokio::spawn(serve(master, VirtualCutter::new(config), stop.clone()));
        (
            Rig {
                _pty: pty,
                stop,
                cutter,
            },
            host,
        )
    }

    /// Lets the cutter take what reached it, then stops it.
    async fn finish(self, settle: Duration) -> VirtualCutter {
        tokio::time::sleep(settle).await;
        self.stop.cancel();
        self.cutter.await.unwrap()
    }
}

/// A 2 KB buffer that holds the flow at 512 bytes: the slack covers what is on its way.
fn cutter(faults: Faults) -> SimConfig {
    SimConfig {
        buffer: 2048,
        xoff_at: 512,
        xon_at: 128,
        // Slower than the line (115200 baud, 87 µs a byte): the buffer fills.
        byte_time: Duration::from_micros(200),
        faults,
    }
}

const CHUNK: usize = 32;

fn config() -> Config {
    Config {
        chunk_bytes: CHUNK,
        // The pty has no line rate of its own: pace as a fast USB serial link.
        pace_baud: Some(115_200),
        silence: Duration::from_millis(800),
        end_timeout: Duration::from_secs(3),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_job_is_cut_in_order_through_the_holds() {
    let (text, cmds) = job(150);
    let (rig, host) = Rig::new(cutter(Faults::default()));
    let cancel = CancellationToken::new();
    let mut progress: Vec<Progress> = Vec::new();
    let mut on_progress = |p: &Progress| progress.push(*p);
    let report = stream_file(
        host,
        text.as_bytes(),
        text.len() as u64,
        &config(),
        None,
        &mut on_progress,
        &cancel,
    )
    .await;
    let sim = rig.finish(Duration::ZERO).await;
    let report = report.unwrap();
    let mut expected: Vec<&str> = cmds.iter().map(String::as_str).collect();
    expected.push("OA");
    assert_eq!(sim.instructions(), expected);
    assert_eq!(report.bytes, text.len() as u64);
    assert_eq!(report.end_position, Some((0, 0)));
    assert!(
        report.holds > 0,
        "a {} byte job fills the buffer",
        text.len()
    );
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, Record::Overflow(_)))
    );
    assert!(!sim.blade_down());
    assert_eq!(progress.last().unwrap().written, text.len() as u64);
    println!(
        "{} bytes, {} holds, at most {} bytes arrived after an XOFF, in {:?}",
        report.bytes,
        report.holds,
        sim.arrived_while_held(),
        report.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_while_the_cutter_holds_the_flow() {
    let (text, _) = job(150);
    let (rig, host) = Rig::new(cutter(Faults {
        never_xon: true,
        ..Faults::default()
    }));
    let cancel = CancellationToken::new();
    let mut last = 0;
    let e = stream_file(
        host,
        text.as_bytes(),
        text.len() as u64,
        &config(),
        None,
        &mut |p| last = p.written,
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, HpglError::JobFailed(FailReason::NeverResumed)),
        "{e:?}"
    );
    assert!(e.message(Lang::Fr).contains("XOFF"));
    assert!(e.message(Lang::En).contains("never resumed"));
    assert!(last < text.len() as u64 / 2, "{last}");
    let sim = rig.finish(Duration::from_millis(50)).await;
    // What was already on its way arrives just after the XOFF; then nothing until the safe
    // stop, sent when the hold had lasted the whole silence (800 ms).
    let late: Vec<_> = sim
        .arrivals_while_held()
        .iter()
        .filter(|(after, _)| *after > Duration::from_millis(400))
        .collect();
    assert_eq!(
        late.iter().map(|(_, n)| n).sum::<usize>(),
        6,
        "only ESC.K and PU; after the hold began: {:?}",
        sim.arrivals_while_held()
    );
    assert!(late[0].0 >= Duration::from_millis(800));
    assert!(!sim.blade_down());
    assert!(sim.records().contains(&Record::DeviceControl('K')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutter_that_falls_silent_fails_the_job_with_a_clear_message() {
    let (text, _) = job(10);
    let (rig, host) = Rig::new(cutter(Faults {
        silent_after_bytes: Some(100),
        ..Faults::default()
    }));
    let cancel = CancellationToken::new();
    let e = stream_file(
        host,
        text.as_bytes(),
        text.len() as u64,
        &config(),
        None,
        &mut |_| {},
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, HpglError::JobFailed(FailReason::Silent)),
        "{e:?}"
    );
    assert!(e.message(Lang::Fr).contains("ne répond plus"));
    assert!(e.message(Lang::En).contains("no longer answers"));
    let sim = rig.finish(Duration::ZERO).await;
    assert_eq!(sim.received(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_from_the_cutter_is_tolerated_then_called_a_garbled_link() {
    let (text, cmds) = job(20);
    let (rig, host) = Rig::new(cutter(Faults {
        garbage_every: Some((200, b"\xfe".to_vec())),
        ..Faults::default()
    }));
    let cancel = CancellationToken::new();
    let report = stream_file(
        host,
        text.as_bytes(),
        text.len() as u64,
        &config(),
        None,
        &mut |_| {},
        &cancel,
    )
    .await
    .unwrap();
    assert!(report.garbage > 0);
    let sim = rig.finish(Duration::ZERO).await;
    assert_eq!(sim.instructions().len(), cmds.len() + 1);

    let (text, _) = job(200);
    let (rig, host) = Rig::new(cutter(Faults {
        garbage_every: Some((10, vec![0xaa; 8])),
        ..Faults::default()
    }));
    let e = stream_file(
        host,
        text.as_bytes(),
        text.len() as u64,
        &config(),
        None,
        &mut |_| {},
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, HpglError::JobFailed(FailReason::Garbled)),
        "{e:?}"
    );
    assert!(e.message(Lang::En).contains("baud"));
    rig.finish(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_drops_the_cutters_buffer_and_ends_with_the_blade_up() {
    let (text, cmds) = job(400);
    // A slow cutter: the job would take seconds.
    let (rig, host) = Rig::new(SimConfig {
        byte_time: Duration::from_micros(400),
        ..cutter(Faults::default())
    });
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(4);
    let mut sent_cancel = false;
    let e = stream_file(
        host,
        text.as_bytes(),
        text.len() as u64,
        &config(),
        Some(&mut rx),
        &mut |p| {
            if p.written > 2000 && !sent_cancel {
                sent_cancel = true;
                tx.try_send(Control::Cancel).unwrap();
            }
        },
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, HpglError::Cancelled), "{e:?}");
    assert!(e.message(Lang::Fr).contains("lame a été relevée"));
    let sim = rig.finish(Duration::from_millis(200)).await;
    let done = sim.instructions();
    assert_eq!(
        done.last(),
        Some(&"PU"),
        "{:?}",
        &done[done.len().saturating_sub(3)..]
    );
    assert!(done.len() < cmds.len() / 2);
    assert!(!sim.blade_down());
    assert!(sim.records().contains(&Record::DeviceControl('K')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_file_goes_through_a_serial_port_opened_by_its_path() {
    use fabrique_machines::driver::hpgl::stream_file_to_port;
    use fabrique_machines::transport::{FlowControl, SerialOptions};
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyCUTTER");
    let mut pty = PtyLink::open_at(&link).unwrap();
    let master = pty.take_master().unwrap();
    let stop = CancellationToken::new();
    let sim = tokio::spawn(serve(
        master,
        VirtualCutter::new(cutter(Faults::default())),
        stop.clone(),
    ));
    let (text, cmds) = job(30);
    let file = dir.path().join("sticker.plt");
    std::fs::write(&file, &text).unwrap();
    let options = SerialOptions {
        port: link.to_string_lossy().into_owned(),
        baud: 115_200,
        flow: FlowControl::Software,
    };
    let report = stream_file_to_port(
        &options,
        &file,
        &config(),
        None,
        &mut |_| {},
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.bytes, text.len() as u64);
    stop.cancel();
    let sim = sim.await.unwrap();
    assert_eq!(sim.instructions().len(), cmds.len() + 1);
    drop(pty);
}
