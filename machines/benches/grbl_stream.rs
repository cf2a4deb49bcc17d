//! Streams a generated raster engraving to the virtual GRBL over a simulated 115200-baud
//! link, with character counting and with send-and-wait, and prints the link utilisation of
//! each and their ratio.
//!
//! The link is modelled, not real: bytes reach the virtual GRBL at baud/10 bytes per second,
//! its replies come back at the same pace after a USB-serial latency, it spends a short parse
//! time on each line, and moves execute instantly so the link is the bottleneck. Time is
//! tokio's paused clock, so the figures are the model's and do not depend on this computer's
//! load. Utilisation counts the job's G-code bytes (newlines included) against what the
//! link could carry in the elapsed time.
//!
//! Run: `cargo bench -p fabrique-machines --features sim --bench grbl_stream`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests and benchmarks stand in for the person at the machine.
#![allow(clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::time::Duration;

use fabrique_machines::driver::grbl::{
    Config, GrblDriver, PersonAtMachine, Program, StreamMode, WorkArea,
};
use fabrique_machines::sim::grbl::{LinkConfig, SimConfig, VirtualGrbl, serve};
use tokio_util::sync::CancellationToken;

const BAUD: u32 = 115_200;

/// A grey-scale raster: rows 0.1 mm apart, segments of 0.15-0.45 mm, power varying along
/// the row, as LaserGRBL and LightBurn emit (modal G1, `X..S..` lines).
fn raster(min_segments: usize) -> (String, usize) {
    let mut s = String::from("G21\nG90\nG1 F3000 M4 S0\n");
    let mut segments = 0;
    let mut row = 0usize;
    while segments < min_segments {
        let y = 10.0 + row as f64 * 0.1;
        let _ = writeln!(s, "G0 X10 Y{y:.1}");
        let mut x = 10.0f64;
        for i in 0..120 {
            let step = 0.15 + 0.3 * (((i * 7 + row * 3) % 10) as f64 / 10.0);
            x += step;
            let power = (500.0 + 450.0 * ((x * 0.7).sin() * (y * 0.3).cos())).round();
            let _ = writeln!(s, "X{x:.2}S{power}");
            segments += 1;
        }
        row += 1;
    }
    s.push_str("M5\nG0 X0 Y0\n");
    (s, segments)
}

struct Run {
    elapsed: Duration,
    bytes: usize,
    lines: usize,
}

fn stream(source: &str, mode: StreamMode, latency: Duration) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (host, machine) = tokio::io::duplex(1 << 16);
        let stop = CancellationToken::new();
        let sim = VirtualGrbl::new(SimConfig {
            time_scale: 0.0,
            line_time: Duration::from_micros(300),
            ..SimConfig::default()
        });
        let link = LinkConfig {
            baud: Some(BAUD),
            reply_latency: latency,
        };
        let task = tokio::spawn(serve(machine, sim, link, stop.clone()));
        let config = Config {
            mode,
            ..Config::default()
        };
        let mut driver = GrblDriver::connect(host, config, &mut |_| {})
            .await
            .unwrap();
        let program = Program::parse(source, 128).unwrap();
        let lines = program.lines().len();
        let person = PersonAtMachine::confirmed_at_the_machine(
            "bench",
            tokio::time::Instant::now().into_std(),
        );
        let area = WorkArea {
            width: 400.0,
            height: 300.0,
        };
        let report = driver
            .cut(program, area, person, None, &mut |_| {})
            .await
            .unwrap();
        stop.cancel();
        drop(driver);
        let _ = task.await;
        Run {
            elapsed: report.elapsed,
            bytes: report.bytes,
            lines,
        }
    })
}

fn utilisation(r: &Run) -> f64 {
    let capacity = f64::from(BAUD) / 10.0 * r.elapsed.as_secs_f64();
    r.bytes as f64 / capacity
}

fn main() {
    let (source, segments) = raster(20_000);
    let program = Program::parse(&source, 128).unwrap();
    println!(
        "raster: {segments} segments of 0.15-0.45 mm, {} lines, {} bytes; link {BAUD} baud ({} bytes/s); parse 0.3 ms/line; moves instant",
        program.lines().len(),
        program.bytes(),
        BAUD / 10
    );
    println!(
        "{:>10} | {:>26} | {:>26} | {:>6}",
        "latency", "character counting", "send-and-wait", "ratio"
    );
    for ms in [1u64, 4, 16] {
        let latency = Duration::from_millis(ms);
        let cc = stream(&source, StreamMode::CharCounting, latency);
        let sw = stream(&source, StreamMode::SendResponse, latency);
        let (ucc, usw) = (utilisation(&cc), utilisation(&sw));
        println!(
            "{:>8} ms | {:>5.1} % {:>6.0} lines/s {:>5.1} s | {:>5.1} % {:>6.0} lines/s {:>5.1} s | {:>5.2}x",
            ms,
            ucc * 100.0,
            cc.lines as f64 / cc.elapsed.as_secs_f64(),
            cc.elapsed.as_secs_f64(),
            usw * 100.0,
            sw.lines as f64 / sw.elapsed.as_secs_f64(),
            sw.elapsed.as_secs_f64(),
            ucc / usw
        );
    }
    println!("targets: character counting >= 90 % of the link and >= 3x send-and-wait");
}
