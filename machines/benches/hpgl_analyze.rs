//! Throughput and memory of the HP-GL analysis, and the time of an SVG conversion.
//!
//! A file of `HPGL_BENCH_MB` MB (200 by default) is written to a temporary folder: rows of
//! small circles, each a `PU` and a `PD` of 32 points, as a drawing program writes them.
//! Figures: MB/s on one core (CPU time, summary only, then with the preview), beside a plain
//! byte count of the same file; peak resident memory (`VmHWM`) before and after; then an SVG
//! of 2000 circles and curves converted to HP-GL. Nothing is asserted: this prints figures.
//!
//! `cargo bench -p fabrique-machines --bench hpgl_analyze`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use fabrique_machines::files::hpgl::{self, CutterSettings, PreviewOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Time this thread spent on a CPU, s (other processes' time on the cores not counted).
fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

fn main() {
    let mb: u64 = std::env::var("HPGL_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.plt");
    let mut w = BufWriter::new(std::fs::File::create(&path).unwrap());
    w.write_all(b"IN;SP1;VS30;FS80;\n").unwrap();
    let mut written = 0u64;
    let mut i = 0u64;
    while written < mb * 1_000_000 {
        let (cx, cy) = ((i % 500) as f64 * 400.0, (i / 500 % 400) as f64 * 400.0);
        let mut line = format!("PU{},{};PD", cx + 150.0, cy);
        for k in 1..=32 {
            let a = f64::from(k) * std::f64::consts::TAU / 32.0;
            let sep = if k == 1 { "" } else { "," };
            line.push_str(&format!(
                "{sep}{:.0},{:.0}",
                cx + 150.0 * a.cos(),
                cy + 150.0 * a.sin()
            ));
        }
        line.push_str(";\n");
        w.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        i += 1;
    }
    w.write_all(b"PU0,0;SP0;\n").unwrap();
    drop(w);
    let size = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
    println!("file: {size:.0} MB, {i} circles");
    println!("peak memory before: {:?} kB", vm_hwm_kb());

    let t = cpu_s();
    let mut r = BufReader::with_capacity(256 * 1024, std::fs::File::open(&path).unwrap());
    let mut bytes = 0usize;
    loop {
        let n = r.fill_buf().unwrap().len();
        if n == 0 {
            break;
        }
        bytes += n;
        r.consume(n);
    }
    let dt = cpu_s() - t;
    println!("plain read: {:.0} MB/s ({bytes} bytes)", size / dt);

    for preview in [None, Some(PreviewOptions::default())] {
        let t = cpu_s();
        let file = std::fs::File::open(&path).unwrap();
        let a = hpgl::analyze(
            BufReader::with_capacity(256 * 1024, file),
            &CutterSettings::default(),
            preview.as_ref(),
        )
        .unwrap();
        let dt = cpu_s() - t;
        println!(
            "analysis{}: {:.0} MB/s, {} strokes, {:.0} m cut, estimate {:.0} s, preview {} kB",
            if preview.is_some() { " + preview" } else { "" },
            size / dt,
            a.summary.strokes,
            a.summary.cut_mm / 1000.0,
            a.summary.estimate_s,
            a.preview_svg.map_or(0, |s| s.len() / 1024)
        );
    }
    println!("peak memory after: {:?} kB", vm_hwm_kb());

    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="500mm" height="500mm" viewBox="0 0 500 500">"#,
    );
    for k in 0..2000 {
        let (x, y) = ((k % 50) as f64 * 10.0 + 5.0, (k / 50) as f64 * 12.0 + 5.0);
        svg.push_str(&format!(
            r#"<g transform="rotate({} {x} {y})"><circle cx="{x}" cy="{y}" r="4"/><path d="M{} {y} C {x} {} {} {} {} {y}"/></g>"#,
            k % 90,
            x - 4.0,
            y - 6.0,
            x + 2.0,
            y + 6.0,
            x + 4.0
        ));
    }
    svg.push_str("</svg>");
    let t = Instant::now();
    let c = hpgl::svg::svg_to_hpgl(svg.as_bytes()).unwrap();
    println!(
        "SVG of {} kB, 4000 outlines: {:?} to {} kB of HP-GL ({} outlines)",
        svg.len() / 1024,
        t.elapsed(),
        c.hpgl.len() / 1024,
        c.outlines
    );
}
