//! Our print-time estimate against PrusaSlicer's own, on files PrusaSlicer 2.5.0 sliced.
//!
//! The slicer's estimate comments and any `M73` progress lines are removed before the
//! analysis, so the estimator cannot have read them; the reference figure is read from the
//! original file. PrusaSlicer does not count heating, so neither does the comparison: it
//! takes our moves and dwells (`time.total_s - time.heating_s`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_machines::files::gcode::{self, GcodeSummary, LimitsSource, Options};
use std::io::Cursor;

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
    compare_in(name, expected, expected_s, Mode::Defaults)
}

/// Where the estimate takes its limits from, in a comparison.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Only what the file's commands say, over the defaults (no tail read).
    Defaults,
    /// The slicer's configuration block too, in normal or silent mode.
    SlicerBlock { silent: bool },
}

fn compare_in(name: &str, expected: &str, expected_s: i64, mode: Mode) -> f64 {
    let original = data(name);
    let silent = mode == Mode::SlicerBlock { silent: true };
    let heading = format!(
        "; estimated printing time ({} mode) = {expected}",
        if silent { "silent" } else { "normal" }
    );
    assert!(
        String::from_utf8_lossy(&original).contains(&heading),
        "{name}: {expected} in the original"
    );
    if !silent {
        let reference = gcode::analyze(&original[..], None).unwrap();
        assert_eq!(reference.slicer.unwrap().estimate_s, Some(expected_s));
    }
    let input = stripped(&original);
    assert!(!String::from_utf8_lossy(&input).contains("estimated printing time"));
    let options = Options {
        slicer_limits: match mode {
            Mode::Defaults => None,
            Mode::SlicerBlock { silent } => {
                gcode::slicer_config::read(&mut Cursor::new(&input), silent).unwrap()
            }
        },
        ..Options::default()
    };
    let s: GcodeSummary = gcode::analyze_with(&input[..], None, &options)
        .unwrap()
        .summary;
    let source = if options.slicer_limits.is_some() {
        LimitsSource::Slicer
    } else {
        LimitsSource::Defaults
    };
    assert_eq!(s.limits.source, source);
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

/// Files sliced with `machine_limits_usage = time_estimate_only`: PrusaSlicer writes no
/// `M201`-`M205`, and its estimate uses the limits of its configuration block.
#[test]
fn limits_only_in_the_slicers_block_are_used_in_normal_and_silent_mode() {
    for (name, mode, expected, expected_s) in [
        ("mk3_keychain_limits_in_footer.gcode", false, "11m 3s", 663),
        ("mk3_keychain_limits_in_footer.gcode", true, "11m 35s", 695),
        ("ender_hook_limits_in_footer.gcode", false, "28m 13s", 1693),
        ("ender_hook_limits_in_footer.gcode", true, "29m 9s", 1749),
    ] {
        let e = compare_in(
            name,
            expected,
            expected_s,
            Mode::SlicerBlock { silent: mode },
        );
        assert!(e.abs() < 3.0, "{name} (silent {mode}): {e:+.2} %");
    }
}

/// Without the block, the same files are estimated with the defaults, and off.
#[test]
fn without_the_slicers_block_the_defaults_are_off_on_such_files() {
    let keychain = compare("mk3_keychain_limits_in_footer.gcode", "11m 3s", 663);
    let hook = compare("ender_hook_limits_in_footer.gcode", "28m 13s", 1693);
    assert!(
        keychain.abs().max(hook.abs()) > 5.0,
        "{keychain:+.2} % {hook:+.2} %"
    );
}
