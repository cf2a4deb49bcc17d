//! Throughput and memory of the G-code analysis on a file of at least 200 MB.
//!
//! The file is made in a temporary folder by stacking copies of the visor fixture, each
//! copy raised above the previous one (its Z values shifted), so that it reads as one tall
//! print. Figures: analysis MB/s (summary only, then with preview and thumbnail) beside a
//! plain line count of the same file (a `BufRead` counting newlines), and the peak resident
//! memory (`VmHWM`) before and after. Nothing is asserted: this prints figures.
//!
//! `cargo bench -p fabrique-machines --bench gcode_analyze` (`GCODE_BENCH_MB=500` for a
//! bigger file).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use fabrique_machines::files::gcode::{self, Options, PreviewOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Time this thread spent on a CPU, s (`/proc/self/schedstat`): unlike the wall clock, it
/// does not count the time other processes had the cores.
fn cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// "X s, Y MB/s (Z MB/s per CPU second)".
fn rate(mb: f64, wall: f64, cpu: Option<f64>) -> String {
    match cpu {
        Some(c) if c > 0.0 => format!(
            "{wall:.2} s, {:.0} MB/s ({:.0} MB/s per CPU second)",
            mb / wall,
            mb / c
        ),
        _ => format!("{wall:.2} s, {:.0} MB/s", mb / wall),
    }
}

fn shift_z(line: &str, dz: f64) -> String {
    let Some(rest) = line.strip_prefix("G1 ") else {
        return line.to_string();
    };
    let mut out = String::from("G1");
    for word in rest.split(' ') {
        out.push(' ');
        match word.strip_prefix('Z').and_then(|v| v.parse::<f64>().ok()) {
            Some(z) => out.push_str(&format!("Z{:.3}", z + dz)),
            None => out.push_str(word),
        }
    }
    out
}

fn main() {
    let target_mb: u64 = std::env::var("GCODE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/mk3_visor.gcode"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tall.gcode");
    let started = Instant::now();
    {
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
        let mut written = 0u64;
        let mut copy = 0u32;
        while written < target_mb * 1_000_000 {
            let dz = f64::from(copy) * 3.0;
            for line in fixture.lines() {
                let l = if copy == 0 {
                    line.to_string()
                } else {
                    shift_z(line, dz)
                };
                out.write_all(l.as_bytes()).unwrap();
                out.write_all(b"\n").unwrap();
                written += l.len() as u64 + 1;
            }
            copy += 1;
        }
        out.flush().unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    let mb = size as f64 / 1e6;
    println!(
        "file: {mb:.0} MB ({} copies of mk3_visor), made in {:.1} s",
        size / fixture.len() as u64,
        started.elapsed().as_secs_f64()
    );
    let before = vm_hwm_kb();

    // Warm the page cache so that every run reads from memory.
    let mut lines = 0u64;
    for round in 0..2 {
        let t = Instant::now();
        let c = cpu_s();
        let mut reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(&path).unwrap());
        lines = 0;
        loop {
            let buf = reader.fill_buf().unwrap();
            if buf.is_empty() {
                break;
            }
            lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
            let n = buf.len();
            reader.consume(n);
        }
        if round == 1 {
            let s = t.elapsed().as_secs_f64();
            let c = cpu_s().zip(c).map(|(b, a)| b - a);
            println!("line count: {lines} lines, {}", rate(mb, s, c));
        }
    }

    let t = Instant::now();
    let c = cpu_s();
    let summary = gcode::analyze(std::fs::File::open(&path).unwrap(), None).unwrap();
    let s = t.elapsed().as_secs_f64();
    let c = cpu_s().zip(c).map(|(b, a)| b - a);
    println!(
        "analysis: {} ({} lines, {} layers, estimate {:.1} h, filament {:.0} m)",
        rate(mb, s, c),
        summary.lines,
        summary.layers,
        summary.time.total_s / 3600.0,
        summary.filament_mm / 1000.0
    );
    assert_eq!(summary.lines, lines);
    let after_summary = vm_hwm_kb();

    let t = Instant::now();
    let c = cpu_s();
    let full = gcode::analyze_with(
        std::fs::File::open(&path).unwrap(),
        None,
        &Options {
            preview: Some(PreviewOptions::default()),
            thumbnail: true,
            ..Options::default()
        },
    )
    .unwrap();
    let s = t.elapsed().as_secs_f64();
    let c = cpu_s().zip(c).map(|(b, a)| b - a);
    println!(
        "analysis with preview and thumbnail: {} (preview {} bytes)",
        rate(mb, s, c),
        full.preview_svg.as_ref().map_or(0, String::len)
    );
    let after_full = vm_hwm_kb();
    let kb = |v: Option<u64>| v.map_or("?".into(), |k| format!("{:.1} MB", k as f64 / 1024.0));
    println!(
        "peak memory (VmHWM): {} before, {} after the analysis, {} after the one with preview",
        kb(before),
        kb(after_summary),
        kb(after_full)
    );
}
