//! Fuzz targets for the file readers, run as plain tests within a time budget.
//!
//! - `embroidery_dst`, `_pes`, `_pec`, `_exp`, `_jef`: bytes into each embroidery reader
//!   (valid files of random designs, mutated; random bytes), then what was read through the
//!   summary, the preview and the DST writer;
//! - `gcode_bytes`: bytes into the G-code analysis (pieces of the real files in
//!   `tests/data/` mutated byte by byte; random bytes);
//! - `gcode_lines`: near-valid G-code, the real files' lines with odd numbers, extra words,
//!   repeated arcs and dwells, thumbnail blocks, overlong lines;
//! - `hpgl`: bytes into the cutter-file analysis and preview, and through the SVG to
//!   HP-GL conversion (HP-GL and SVG seeds, mutated; random bytes);
//! - `job_file`: any of those as an upload, under any of the names it may come with, into
//!   `read_job_file` (format detection, the binary check, then the reader).
//!
//! Each runs for `FABRIQUE_FUZZ_SECONDS` (default 10) and fails on the first input that
//! panics, breaks a property (see `embroidery::check` and `gcode::check`) or takes far more
//! time than its size warrants; `regressions` replays, every run, each input kept in
//! `tests/fuzz/regressions/<target>/`. See docs/fuzzing.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod embroidery;
#[path = "../embroidery_support/mod.rs"]
mod embroidery_support;
mod engine;
mod gcode;
mod hpgl;
mod job_file;

use fabrique_machines::files::embroidery::Format;
use std::path::Path;

/// Every target by the name of its regression folder.
const TARGETS: [(&str, engine::Target); 9] = [
    ("embroidery_dst", embroidery::dst),
    ("embroidery_pes", embroidery::pes),
    ("embroidery_pec", embroidery::pec),
    ("embroidery_exp", embroidery::exp),
    ("embroidery_jef", embroidery::jef),
    ("gcode_bytes", gcode::check),
    ("gcode_lines", gcode::check),
    ("hpgl", hpgl::check),
    ("job_file", job_file::check),
];

fn fuzz_embroidery(name: &str, target: engine::Target, format: Format) {
    engine::run(name, target, embroidery::source(format), embroidery::BOUND);
}

#[test]
fn embroidery_dst() {
    fuzz_embroidery("embroidery_dst", embroidery::dst, Format::Dst);
}

#[test]
fn embroidery_pes() {
    fuzz_embroidery("embroidery_pes", embroidery::pes, Format::Pes);
}

#[test]
fn embroidery_pec() {
    fuzz_embroidery("embroidery_pec", embroidery::pec, Format::Pec);
}

#[test]
fn embroidery_exp() {
    fuzz_embroidery("embroidery_exp", embroidery::exp, Format::Exp);
}

#[test]
fn embroidery_jef() {
    fuzz_embroidery("embroidery_jef", embroidery::jef, Format::Jef);
}

#[test]
fn gcode_bytes() {
    engine::run(
        "gcode_bytes",
        gcode::check,
        gcode::bytes_source(),
        gcode::BOUND,
    );
}

#[test]
fn gcode_lines() {
    engine::run(
        "gcode_lines",
        gcode::check,
        gcode::lines_source(),
        gcode::BOUND,
    );
}

#[test]
fn hpgl() {
    engine::run("hpgl", hpgl::check, hpgl::source(), hpgl::BOUND);
}

#[test]
fn job_file() {
    engine::run(
        "job_file",
        job_file::check,
        job_file::source(),
        gcode::BOUND,
    );
}

/// Every input a fuzz run found, kept once fixed: each must pass its target again, within
/// its time bound. Runs on every test run, whatever the budget.
#[test]
fn regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (_, target) = TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{}: no target of that name", dir.display()));
        let bound = if name.starts_with("gcode") {
            gcode::BOUND
        } else {
            embroidery::BOUND
        };
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let input = std::fs::read(&file).unwrap();
            let started = std::time::Instant::now();
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "{} fails {name} again", file.display());
            let spent = started.elapsed();
            // Wall clock here, where the fuzz runs count CPU time: four times the bound.
            assert!(
                spent <= bound.for_len(input.len()) * 4,
                "{} took {spent:?}",
                file.display()
            );
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} kept inputs");
}
