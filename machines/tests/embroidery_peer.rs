//! The independent peer: pyembroidery (`python3 -m pip install pyembroidery`), driven by
//! `tests/embroidery_peer.py`.
//!
//! 1. pyembroidery writes random designs as DST, PES (versions 1 and 6), EXP and JEF in a
//!    temporary directory and reads them back; Fabrique reads the same files. Writers split,
//!    add and merge commands (pyembroidery's PES writer flags a trim on every jump after the
//!    first, its JEF writer writes no trim at all, its EXP writer adds a jump onto each
//!    first stitch), so what is compared is what pyembroidery *reads back*:
//!    - Fabrique's `stitches` = pyembroidery's `STITCH` commands,
//!    - `jumps` = `JUMP`,
//!    - `trims` = `TRIM`s counted once per travel (`TRIM_PER_TRAVEL`: a `TRIM` not preceded
//!      by another since the last `STITCH`, `COLOR_CHANGE` or `STOP`),
//!    - `color_changes` = `COLOR_CHANGE` + `STOP` (pyembroidery turns a change to the same
//!      thread into a `STOP`; the machine stops either way),
//!    - the extent in units = pyembroidery's `extents()`,
//!    - for PES version 1 and JEF, the thread colours (consecutive repeats merged on both
//!      sides, as pyembroidery drops a repeated thread).
//! 2. Fabrique writes random designs as DST; pyembroidery reads them with the counts and
//!    extent of the design Fabrique wrote, and with the counts Fabrique reads back.
//!
//! This test needs `python3` with the `pyembroidery` package; it fails (never skips) when
//! they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod embroidery_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use embroidery_support::{any_design, dst_exact_design};
use fabrique_machines::files::embroidery::{Counts, Design, Format, read, write_dst};
use serde_json::Value;

const INSTALL: &str = "python3 -m pip install pyembroidery";

fn peer(args: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/embroidery_peer.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the pyembroidery peer test needs python3 ({e}): install Python 3, then `{INSTALL}`"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("the peer printed no JSON ({e}); stdout: {stdout}; stderr: {stderr}")
    });
    if let Some(missing) = json.get("missing") {
        panic!("the pyembroidery peer test needs {missing}: `{INSTALL}`");
    }
    assert!(out.status.success(), "the peer failed: {stderr}");
    json
}

/// pyembroidery's reading of one file, as Fabrique's counts.
struct PeerReading {
    path: String,
    format: String,
    counts: Counts,
    raw_trims: u64,
    extent: Option<[i32; 4]>,
    threads: Vec<String>,
}

fn readings(json: &Value) -> Vec<PeerReading> {
    json["files"]
        .as_array()
        .expect("a list of files")
        .iter()
        .map(|f| {
            let n = |k: &str| f["counts"][k].as_u64().unwrap();
            PeerReading {
                path: f["path"].as_str().unwrap().to_string(),
                format: f["format"].as_str().unwrap().to_string(),
                counts: Counts {
                    stitches: n("STITCH"),
                    jumps: n("JUMP"),
                    trims: n("TRIM_PER_TRAVEL"),
                    color_changes: n("COLOR_CHANGE") + n("STOP"),
                },
                raw_trims: n("TRIM"),
                extent: f["extents"].as_array().map(|e| {
                    let v: Vec<i32> = e.iter().map(|v| v.as_i64().unwrap() as i32).collect();
                    [v[0], v[1], v[2], v[3]]
                }),
                threads: f["threads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_lowercase())
                    .collect(),
            }
        })
        .collect()
}

fn read_file(path: &Path) -> Design {
    let name = path.to_str().unwrap();
    let format = Format::from_file_name(name).unwrap();
    read(std::fs::File::open(path).unwrap(), format)
        .unwrap_or_else(|e| panic!("Fabrique cannot read {name}: {e}"))
}

fn merged(mut colors: Vec<String>) -> Vec<String> {
    colors.dedup();
    colors
}

#[test]
fn fabrique_reads_what_pyembroidery_writes_with_pyembroidery_s_counts_and_extents() {
    let dir = tempfile::tempdir().unwrap();
    let json = peer(&[
        "write",
        "--seed",
        "1",
        "--count",
        "40",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let files = readings(&json);
    assert_eq!(files.len(), 40 * 5);
    let mut mismatches = Vec::new();
    let mut trims_merged = 0;
    for p in &files {
        let d = read_file(Path::new(&p.path));
        if d.counts() != p.counts {
            mismatches.push(format!(
                "{}: Fabrique {:?}, pyembroidery {:?}",
                p.path,
                d.counts(),
                p.counts
            ));
        }
        if d.extent_units() != p.extent {
            mismatches.push(format!(
                "{}: Fabrique extent {:?}, pyembroidery {:?}",
                p.path,
                d.extent_units(),
                p.extent
            ));
        }
        if p.format == "pes" || p.format == "jef" {
            let ours = merged(d.threads.iter().map(|t| t.hex()).collect());
            if ours != merged(p.threads.clone()) {
                mismatches.push(format!(
                    "{}: Fabrique threads {ours:?}, pyembroidery {:?}",
                    p.path, p.threads
                ));
            }
        }
        trims_merged += p.raw_trims - p.counts.trims;
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} files differ:\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
    // The comparison is not vacuous: the designs have trims, jumps and colour changes.
    let total = |f: fn(&Counts) -> u64| files.iter().map(|p| f(&p.counts)).sum::<u64>();
    assert!(total(|c| c.trims) > 50 && total(|c| c.jumps) > 200);
    assert!(total(|c| c.color_changes) > 40);
    assert!(
        trims_merged > 0,
        "PES flags trims on several jumps of a travel"
    );
}

#[test]
fn pyembroidery_reads_what_fabrique_writes_with_the_same_counts_and_extents() {
    let dir = tempfile::tempdir().unwrap();
    let mut designs = Vec::new();
    for seed in 0..40u64 {
        for (kind, d) in [("exact", dst_exact_design(seed)), ("any", any_design(seed))] {
            let path = dir.path().join(format!("fabrique_{kind}_{seed}.dst"));
            write_dst(&d, std::fs::File::create(&path).unwrap()).unwrap();
            designs.push((kind, d, path));
        }
    }
    let mut args = vec!["read"];
    args.extend(designs.iter().map(|(_, _, p)| p.to_str().unwrap()));
    let files = readings(&peer(&args));
    assert_eq!(files.len(), designs.len());
    let mut mismatches = Vec::new();
    for ((kind, d, path), p) in designs.iter().zip(&files) {
        let ours = read_file(path);
        // Both read the same file the same way...
        if ours.counts() != p.counts || ours.extent_units() != p.extent {
            mismatches.push(format!(
                "{}: Fabrique reads {:?} {:?}, pyembroidery {:?} {:?}",
                p.path,
                ours.counts(),
                ours.extent_units(),
                p.counts,
                p.extent
            ));
        }
        // ...and what they read is the design written: all of it when DST says it exactly,
        // the stitches and colour changes of any design.
        let c = d.counts();
        let same = match *kind {
            "exact" => c == p.counts && d.extent_units() == p.extent,
            _ => c.stitches == p.counts.stitches && c.color_changes == p.counts.color_changes,
        };
        if !same {
            mismatches.push(format!(
                "{}: written {:?} {:?}, pyembroidery reads {:?} {:?}",
                p.path,
                c,
                d.extent_units(),
                p.counts,
                p.extent
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} files differ:\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
}
