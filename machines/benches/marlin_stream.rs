//! Streaming figures for the Marlin host, printed (not asserted).
//!
//! (a) lines per second to the virtual Marlin with instant moves over a pseudo-terminal,
//!     beside a raw write of the same numbered bytes to the same kind of pty;
//! (b) link utilisation when the virtual printer paces its reads at 115200 and 250000 baud:
//!     bytes per second achieved divided by baud/10, for a stock Marlin (128-byte receive
//!     buffer, no ADVANCED_OK) with the grown byte window and with one line in flight (as
//!     OctoPrint sends), and for ADVANCED_OK; with the resend requests and the bytes the
//!     printer lost;
//! (c) host CPU time per line in the sans-I/O protocol alone.
//!
//! Run: `cargo bench -p fabrique-machines --features sim --bench marlin_stream`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fabrique_machines::driver::marlin::{JobFile, JobOptions, MarlinConnection};
use fabrique_machines::protocol::marlin::{
    Event, Marlin, MarlinConfig, Origin, clean_line, numbered,
};
use fabrique_machines::sim::marlin::{SimConfig, VirtualMarlin, VirtualPrinter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mk3_visor.gcode")
}

fn commands(path: &Path, limit: usize) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(clean_line)
        .take(limit)
        .map(str::to_string)
        .collect()
}

struct Figure {
    lines: u64,
    bytes: u64,
    elapsed: Duration,
    resend_requests: u64,
    rx_overflows: u64,
}

/// The host modes compared: the default (grown byte window, or what ADVANCED_OK says), and
/// one line at a time.
fn host(one_line: bool) -> MarlinConfig {
    MarlinConfig {
        window_lines: one_line.then_some(1),
        ..MarlinConfig::default()
    }
}

async fn stream(cfg: SimConfig, host: MarlinConfig, path: &Path) -> Figure {
    let printer = VirtualPrinter::new(cfg);
    let cancel = CancellationToken::new();
    let io = printer.connect_pty(cancel.clone()).unwrap();
    let mut conn = MarlinConnection::connect(io, host, Duration::from_secs(10), &cancel)
        .await
        .unwrap();
    let mut file = JobFile::open(path).await.unwrap();
    let before = printer.state().bytes_received;
    let start = Instant::now();
    let outcome = conn
        .run_job(&mut file, &JobOptions::default(), None, |_| {}, &cancel)
        .await;
    let elapsed = start.elapsed();
    assert!(outcome.is_done(), "{outcome}");
    let bytes = printer.state().bytes_received - before;
    cancel.cancel();
    Figure {
        lines: outcome.stats().lines_acked,
        bytes,
        elapsed,
        resend_requests: outcome.stats().resend_requests,
        rx_overflows: printer.state().rx_overflows,
    }
}

async fn raw_write(wire: &[u8]) -> Duration {
    let (mut master, mut slave) = tokio_serial::SerialStream::pair().unwrap();
    let total = wire.len();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut got = 0;
        while got < total {
            got += master.read(&mut buf).await.unwrap();
        }
    });
    let start = Instant::now();
    slave.write_all(wire).await.unwrap();
    reader.await.unwrap();
    start.elapsed()
}

fn subset(path: &Path, lines: usize, dir: &Path) -> PathBuf {
    let text: String = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| clean_line(l).is_some())
        .take(lines)
        .map(|l| format!("{l}\n"))
        .collect();
    let out = dir.join(format!("subset_{lines}.gcode"));
    std::fs::write(&out, text).unwrap();
    out
}

/// The host protocol alone against the sans-I/O printer; returns host time per line.
fn host_cpu_per_line(cmds: &[String]) -> (Duration, Duration) {
    let t0 = Instant::now();
    let now = t0;
    let mut sim = VirtualMarlin::new(
        SimConfig {
            time_scale: 0.0,
            advanced_ok: true,
            ..SimConfig::default()
        },
        now,
    );
    let mut host = Marlin::new(MarlinConfig::default(), now);
    let mut host_time = Duration::ZERO;
    let mut next = 0;
    let mut acked = 0;
    let wall = Instant::now();
    while acked < cmds.len() {
        let t = Instant::now();
        while host.is_ready() && next < cmds.len() && host.queued() < 16 {
            host.enqueue(
                &cmds[next],
                Origin::Job {
                    line: next as u64,
                    end_offset: 0,
                },
            );
            next += 1;
        }
        let mut wire = Vec::new();
        while let Some(b) = host.poll_transmit(now) {
            wire.extend_from_slice(&b);
        }
        host_time += t.elapsed();
        sim.receive(&wire, now);
        sim.step(now);
        let out = sim.take_output();
        let t = Instant::now();
        host.receive(&out, now);
        while let Some(e) = host.poll_event() {
            if let Event::Acked(Origin::Job { .. }) = e {
                acked += 1;
            }
        }
        host.tick(now);
        host_time += t.elapsed();
        if out.is_empty() && wire.is_empty() && !host.is_ready() {
            // Handshake: the virtual printer's banner is already out; nothing else to do.
            host.tick(now + Duration::from_secs(10));
        }
    }
    (host_time / cmds.len() as u32, wall.elapsed())
}

async fn run() {
    let path = fixture();
    let all = commands(&path, usize::MAX);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "Marlin streaming figures ({} commands of {})",
        all.len(),
        path.display()
    );
    println!();

    // (a) Throughput with instant moves.
    let mut wire = Vec::new();
    for (i, c) in all.iter().enumerate() {
        wire.extend_from_slice(&numbered(i as u32 + 1, c));
    }
    let raw = raw_write(&wire).await;
    println!(
        "(a) raw write of the same {} numbered bytes to a pty: {:>9.0} lines/s ({:.1} MB/s)",
        wire.len(),
        all.len() as f64 / raw.as_secs_f64(),
        wire.len() as f64 / raw.as_secs_f64() / 1e6
    );
    for (name, advanced_ok, one_line) in [
        ("stock Marlin, grown byte window", false, false),
        ("stock Marlin, 1 line in flight", false, true),
        ("ADVANCED_OK window", true, false),
    ] {
        let f = stream(
            SimConfig {
                time_scale: 0.0,
                advanced_ok,
                ..SimConfig::default()
            },
            host(one_line),
            &path,
        )
        .await;
        println!(
            "    stream, {name:<34} {:>9.0} lines/s ({:.0} kB/s, {:.2} s)",
            f.lines as f64 / f.elapsed.as_secs_f64(),
            f.bytes as f64 / f.elapsed.as_secs_f64() / 1e3,
            f.elapsed.as_secs_f64()
        );
    }
    println!();

    // (b) Link utilisation at real baud rates.
    for (baud, lines) in [(115_200u32, 2_500usize), (250_000, 5_000)] {
        let file = subset(&path, lines, dir.path());
        for (name, advanced_ok, one_line) in [
            ("stock, grown byte window", false, false),
            ("stock, 1 line in flight", false, true),
            ("ADVANCED_OK window", true, false),
        ] {
            let f = stream(
                SimConfig {
                    time_scale: 0.0,
                    advanced_ok,
                    baud: Some(baud),
                    ..SimConfig::default()
                },
                host(one_line),
                &file,
            )
            .await;
            let rate = f.bytes as f64 / f.elapsed.as_secs_f64();
            println!(
                "(b) {baud:>6} baud, {name:<25} {:>7.0} B/s of {:>6.0} = {:>5.1} % ({:.0} lines/s, {} resend requests, {} overflows)",
                rate,
                f64::from(baud) / 10.0,
                100.0 * rate / (f64::from(baud) / 10.0),
                f.lines as f64 / f.elapsed.as_secs_f64(),
                f.resend_requests,
                f.rx_overflows
            );
        }
    }
    println!();

    // (c) Host CPU per line.
    let (per_line, wall) = host_cpu_per_line(&all);
    println!(
        "(c) host protocol CPU per line: {:.2} µs (target < 50 µs); {} lines through host + virtual printer in {:.2} s",
        per_line.as_secs_f64() * 1e6,
        all.len(),
        wall.as_secs_f64()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
