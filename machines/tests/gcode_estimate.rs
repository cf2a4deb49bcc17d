//! Our print-time estimate against PrusaSlicer's own, on files PrusaSlicer 2.5.0 sliced.
//!
//! The slicer's estimate comments and any `M73` progress lines are removed before the
//! analysis, so the estimator cannot have read them; the reference figure is read from the
//! original file. PrusaSlicer does not count heating, so neither does the comparison: it
//! takes our moves and dwells (`time.total_s - time.heating_s`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_machines::files::gcode::{self, GcodeSummary};

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The file without the slicer's estimates and progress lines.
fn stripped(original: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(original);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let lower = t.to_ascii_lowercase();
        if t.starts_with("M73")
            || lower.contains("estimated printing time")
            || lower.contains("estimated first layer")
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

fn compare(name: &str, expected: &str, expected_s: i64) -> f64 {
    let original = data(name);
    let reference = gcode::analyze(&original[..], None).unwrap();
    let slicer = reference.slicer.clone().unwrap();
    assert_eq!(
        slicer.estimate_s,
        Some(expected_s),
        "{name}: {expected} in the original"
    );
    let input = stripped(&original);
    assert!(!String::from_utf8_lossy(&input).contains("estimated printing time"));
    let s: GcodeSummary = gcode::analyze(&input[..], None).unwrap();
    assert_eq!(s.slicer.as_ref().and_then(|s| s.estimate_s), None);
    let ours = s.time.total_s - s.time.heating_s;
    let error = (ours - expected_s as f64) / expected_s as f64 * 100.0;
    println!(
        "{name}: ours {ours:.0} s (moves {:.0} s, heating {:.0} s apart), PrusaSlicer {expected_s} s ({expected}): {error:+.2} %",
        s.time.moves_s, s.time.heating_s
    );
    error
}

#[test]
fn the_visor_estimate_is_within_five_percent_of_prusaslicer() {
    let e = compare("mk3_visor.gcode", "1h 43m 14s", 6194);
    assert!(e.abs() < 5.0, "{e:+.2} %");
}

#[test]
fn the_keychain_estimate_is_within_five_percent_of_prusaslicer() {
    let e = compare("mk3_keychain.gcode", "14m 15s", 855);
    assert!(e.abs() < 5.0, "{e:+.2} %");
}

#[test]
fn the_hook_estimate_with_default_limits_is_within_five_percent_of_prusaslicer() {
    let e = compare("ender_hook.gcode", "25m 51s", 1551);
    assert!(e.abs() < 5.0, "{e:+.2} %");
}
