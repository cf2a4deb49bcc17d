//! One snapshot per fixture: what Fabrique reads in each real file, with the motion limits
//! of the machine it was made for, compared with `tests/snapshots/<fixture>.json`. A change shows
//! as a diff; `BLESS=1 cargo test --test gcode_fixtures` accepts the new summaries.
//!
//! Beside the snapshots: the laser fixture's figures against an independent count, the
//! slicer's filament figure against ours, and the preview's size and form.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_machines::files::FileSummary;
use fabrique_machines::files::gcode::{self, Dialect, Limits, Options, PreviewOptions};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(root().join("data").join(name)).unwrap()
}

fn mk3() -> Limits {
    Limits {
        dialect: Dialect::Marlin,
        ..Limits::default()
    }
}

fn ender() -> Limits {
    Limits {
        dialect: Dialect::Marlin,
        ..Limits::default()
    }
}

fn laser() -> Limits {
    Limits {
        dialect: Dialect::Grbl,
        ..Limits::default()
    }
}

/// Compares `actual` with the stored snapshot, or stores it when `BLESS` is set.
fn snapshot(name: &str, actual: &str) {
    let path = root().join("snapshots").join(format!("{name}.json"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}: run with BLESS=1 to write it",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let mut diff = String::new();
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut shown = 0;
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i).copied(), a.get(i).copied());
        if x != y && shown < 40 {
            diff.push_str(&format!(
                "line {}:\n  - {}\n  + {}\n",
                i + 1,
                x.unwrap_or("(none)"),
                y.unwrap_or("(none)")
            ));
            shown += 1;
        }
    }
    panic!(
        "{name}: the summary differs from {} (BLESS=1 to accept):\n{diff}",
        path.display()
    );
}

fn check(name: &str, limits: &Limits) {
    // As a job keeps it: with its kind, and read back as the same summary.
    let s = FileSummary::Gcode(Box::new(
        gcode::analyze(&data(name)[..], Some(limits)).unwrap(),
    ));
    let json = serde_json::to_string_pretty(&s).unwrap() + "\n";
    assert_eq!(serde_json::from_str::<FileSummary>(&json).unwrap(), s);
    snapshot(name.trim_end_matches(".gcode"), &json);
}

#[test]
fn the_visor_summary_matches_its_snapshot() {
    check("mk3_visor.gcode", &mk3());
}

#[test]
fn the_keychain_summary_matches_its_snapshot() {
    check("mk3_keychain.gcode", &mk3());
}

#[test]
fn the_hook_summary_matches_its_snapshot() {
    check("ender_hook.gcode", &ender());
}

#[test]
fn the_laser_shield_summary_matches_its_snapshot() {
    check("laser_shield.gcode", &laser());
}

#[test]
fn our_filament_figure_agrees_with_the_slicers() {
    for name in ["mk3_visor.gcode", "mk3_keychain.gcode", "ender_hook.gcode"] {
        let s = gcode::analyze(&data(name)[..], None).unwrap();
        let theirs = s.slicer.unwrap().filament_mm.unwrap();
        assert!(
            (s.filament_mm - theirs).abs() / theirs < 0.001,
            "{name}: {} mm against {theirs} mm",
            s.filament_mm
        );
    }
}

#[test]
fn the_laser_shield_cut_is_measured_like_an_independent_count() {
    // Independent count: every G1 while M4 S800 is on, straight from the text.
    let text = String::from_utf8(data("laser_shield.gcode")).unwrap();
    let (mut on, mut x, mut y, mut path, mut cut_time) = (false, 0.0f64, 0.0f64, 0.0, 0.0);
    for line in text.lines() {
        let code = line.split(';').next().unwrap().trim();
        let mut words = code.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let (mut nx, mut ny, mut f) = (x, y, 0.0);
        for w in words {
            let v: f64 = w[1..].parse().unwrap_or(0.0);
            match &w[..1] {
                "X" => nx = v,
                "Y" => ny = v,
                "F" => f = v / 60.0,
                "S" if cmd == "M4" => on = v > 0.0,
                _ => {}
            }
        }
        match cmd {
            "M5" => on = false,
            "G1" if on => {
                let d = (nx - x).hypot(ny - y);
                path += d;
                cut_time += d / f;
            }
            _ => {}
        }
        if cmd == "G0" || cmd == "G1" {
            (x, y) = (nx, ny);
        }
    }
    let s = gcode::analyze(text.as_bytes(), Some(&laser())).unwrap();
    let l = s.laser.unwrap();
    assert!(
        (l.path_mm - path).abs() < 0.2,
        "{} against {path}",
        l.path_mm
    );
    assert_eq!(l.max_power, 800.0);
    assert_eq!(l.mode, gcode::PowerMode::Dynamic);
    assert_eq!(l.passes, 1, "each contour is cut once");
    // At least the time at the programmed feed, and little more: the corners are gentle.
    assert!(
        l.on_time_s >= cut_time - 0.1 && l.on_time_s < cut_time * 1.05,
        "{} s against {cut_time} s at the programmed feed",
        l.on_time_s
    );
    assert!(s.issues.is_empty(), "{:?}", s.issues);
    assert!(s.time.total_s > l.on_time_s);
}

#[test]
fn the_visor_preview_is_small_titled_and_in_millimetres() {
    let a = gcode::analyze_with(
        &data("mk3_visor.gcode")[..],
        None,
        &Options {
            preview: Some(PreviewOptions::default()),
            thumbnail: true,
            ..Options::default()
        },
    )
    .unwrap();
    let svg = a.preview_svg.unwrap();
    println!("mk3_visor preview: {} bytes", svg.len());
    assert!(svg.len() < 60_000, "{} bytes", svg.len());
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\""));
    assert!(svg.contains("<title id=\"preview-title\">"));
    assert!(!svg.contains("<script") && !svg.contains("onload"));
    // The viewBox is the extrusions' extent in mm, with a 1 mm margin.
    let b = a.summary.bbox.unwrap();
    let w = b.max_x - b.min_x + 2.0;
    assert!(svg.contains(&format!(" {:.2}", w).trim_end_matches('0').to_string()));
    // The gradient runs from the first layer's colour to the last's.
    assert!(svg.contains("#1d4ed8") && svg.contains("#ea580c"));
    assert!(a.thumbnail.is_none(), "the fixtures carry no thumbnail");
}

/// A mill's file (spindle on with M3, depths below the material's top, two tools): the
/// preview draws the cuts, the figures count the spindle's time and path.
#[test]
fn a_mill_file_is_previewed_from_its_cuts() {
    let text = "G90 G94 G17\nG21\nT1 M6\nS12000 M3\nG0 Z5\nG0 X10 Y10\nG1 Z-2 F300\n\
                G1 X40 Y10 F800\nG1 X40 Y30\nG1 X10 Y30\nG1 X10 Y10\nG0 Z5\nM5\nT2 M6\n\
                S18000 M3\nG0 X25 Y20\nG1 Z-4 F150\nG0 Z5\nM5\nM30\n";
    let a = gcode::analyze_with(
        text.as_bytes(),
        None,
        &Options {
            preview: Some(PreviewOptions::default()),
            ..Options::default()
        },
    )
    .unwrap();
    let svg = a.preview_svg.expect("a preview");
    assert!(svg.contains("<path"), "{svg}");
    let b = a.summary.bbox.unwrap();
    assert_eq!(
        (b.min_x, b.max_x, b.min_y, b.max_y),
        (10.0, 40.0, 10.0, 30.0)
    );
    let l = a.summary.laser.expect("spindle figures");
    assert_eq!(l.max_power, 18000.0);
    assert!(l.path_mm > 100.0, "{}", l.path_mm);
}

#[test]
fn a_cura_file_with_a_thumbnail_and_a_bad_end_line_is_read_to_the_end() {
    use base64::Engine as _;
    let png = b"\x89PNG\r\n\x1a\n0123456789abcdef".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let text = format!(
        ";FLAVOR:Marlin\n;TIME:120\n;Filament used: 0.01m\n;Layer height: 0.2\n;Generated with Cura_SteamEngine 5.2.1\n\
         ; thumbnail begin 32x32 {}\n; {b64}\n; thumbnail end\n\
         M82\nG92 E0\n;LAYER:0\nG0 F3000 X10 Y10 Z0.2\nG1 F1200 X20 Y10 E1\n;LAYER:1\nG0 Z0.4\nG1 X20 Y20 E2\nM84 X Y E\n",
        b64.len()
    );
    let a = gcode::analyze_with(
        text.as_bytes(),
        Some(&ender()),
        &Options {
            preview: None,
            thumbnail: true,
            ..Options::default()
        },
    )
    .unwrap();
    let s = a.summary;
    assert!(s.issues.is_empty(), "{:?}", s.issues);
    assert_eq!(s.layers, 2);
    let slicer = s.slicer.unwrap();
    assert_eq!(
        (slicer.name.as_str(), slicer.estimate_s),
        ("Cura", Some(120))
    );
    assert_eq!(a.thumbnail.unwrap().png, png);
    assert_eq!(s.thumbnails.len(), 1);
}

#[test]
fn each_fixture_says_what_it_asks_of_a_machine() {
    let s = gcode::analyze(&data("mk3_visor.gcode")[..], Some(&mk3())).unwrap();
    let printer = s.uses.printer.unwrap();
    assert_eq!((printer.line, printer.command.as_str()), (18, "M104"));
    assert!(s.uses.laser.is_none());
    let b = s.bbox.unwrap();
    assert!(b.max_x > 210.0 && b.max_x < 250.0, "{b:?}");
    let s = gcode::analyze(&data("laser_shield.gcode")[..], Some(&laser())).unwrap();
    assert_eq!(s.uses.laser.as_ref().map(|u| u.line), Some(5));
    assert!(s.uses.printer.is_none());
    assert!(s.bbox.unwrap().max_x > 250.0);
    let s = gcode::analyze(&data("ender_hook.gcode")[..], Some(&ender())).unwrap();
    assert_eq!((s.max_hotend_c, s.max_bed_c), (200.0, 0.0));
    assert_eq!(s.uses.printer.map(|u| u.line), Some(13));
}
