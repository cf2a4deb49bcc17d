//! Each PrusaSlicer fixture streamed to the virtual Marlin over a real pseudo-terminal with
//! instant moves: the job is done and the printer executed exactly the file's commands, in
//! order.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use fabrique_machines::driver::marlin::{Progress, StreamOptions, stream_file};
use fabrique_machines::protocol::marlin::clean_line;
use fabrique_machines::sim::marlin::{SimConfig, VirtualPrinter};
use tokio_util::sync::CancellationToken;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

async fn stream_fixture(name: &str, advanced_ok: bool) {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let expected: Vec<String> = text
        .lines()
        .filter_map(clean_line)
        .map(str::to_string)
        .collect();
    let printer = VirtualPrinter::new(SimConfig {
        time_scale: 0.0,
        advanced_ok,
        ..SimConfig::default()
    });
    let links = CancellationToken::new();
    let p = printer.clone();
    let l = links.clone();
    let connect = move || {
        let io = p.connect_pty(l.child_token());
        async move { io }
    };
    let mut reports = 0;
    let mut limits = None;
    let outcome = stream_file(
        connect,
        &path,
        &StreamOptions::default(),
        None,
        |p: &Progress| {
            reports += 1;
            limits = p.reported_limits;
        },
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    links.cancel();
    assert!(outcome.is_done(), "{name}: {outcome}");
    assert_eq!(outcome.stats().lines_acked as usize, expected.len());
    assert_eq!(outcome.stats().bytes_acked, text.len() as u64);
    assert!(reports >= 1);
    // What the firmware said of its limits came with the progress.
    let limits = limits.expect("the M503 report");
    assert_eq!(limits.max_feedrate_mm_s, [300.0, 300.0, 5.0, 25.0]);
    assert_eq!(limits.junction_deviation_mm, Some(0.02));
    let executed = printer.executed();
    // The handshake's M110, M115 and M155 come first, then the settings report M503 (the
    // firmware's limits), then the file, exactly.
    assert_eq!(executed[..4], ["M110 N0", "M115", "M155 S2", "M503"]);
    let job = &executed[4..];
    assert_eq!(job.len(), expected.len(), "{name}: executed count");
    if let Some(i) = job.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!(
            "{name}: command {i} differs: executed {:?}, file {:?}",
            job[i], expected[i]
        );
    }
    assert_eq!(printer.state().rx_overflows, 0);
}

#[tokio::test]
async fn ender_hook_streams_exactly() {
    stream_fixture("ender_hook.gcode", false).await;
}

#[tokio::test]
async fn mk3_keychain_streams_exactly() {
    stream_fixture("mk3_keychain.gcode", false).await;
}

#[tokio::test]
async fn mk3_visor_streams_exactly_with_an_advanced_ok_window() {
    stream_fixture("mk3_visor.gcode", true).await;
}

#[tokio::test]
async fn a_printer_linked_at_a_path_is_reached_again_after_a_disconnect_and_left_safe() {
    use fabrique_machines::driver::marlin::{JobOutcome, stream_file_to_port};
    use fabrique_machines::sim::marlin::Faults;

    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("printer");
    let printer = VirtualPrinter::new(SimConfig {
        time_scale: 0.0,
        faults: Faults {
            disconnect_at_line: Some(300),
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let stop = CancellationToken::new();
    let p = printer.clone();
    let (l, s) = (link.clone(), stop.clone());
    let server = tokio::spawn(async move { p.run_at_path(&l, s).await });
    // The link appears once the pty exists.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::symlink_metadata(&link).is_err() {
        assert!(std::time::Instant::now() < deadline, "no pty linked");
        tokio::task::yield_now().await;
    }
    let outcome = stream_file_to_port(
        link.to_str().unwrap(),
        115_200,
        &fixture("ender_hook.gcode"),
        &StreamOptions::default(),
        None,
        |_: &Progress| {},
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    match &outcome {
        JobOutcome::Interrupted { stats, .. } => assert!(stats.last_acked_line > 0, "{stats:?}"),
        other => panic!("unexpected outcome {other}"),
    }
    // The host came back through the same path and turned everything off.
    let executed = printer.executed();
    assert_eq!(
        executed[executed.len() - 4..],
        ["M104 S0", "M140 S0", "M107", "M84"]
    );
    let state = printer.state();
    assert_eq!((state.hotend.target, state.bed.target), (0.0, 0.0));
    stop.cancel();
    server.await.unwrap().unwrap();
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the link is removed on exit"
    );
}
