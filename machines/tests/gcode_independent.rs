//! Our G-code scanner against an independent reading: the `gcode` crate (0.7) parses each
//! real PrusaSlicer fixture whole, a few lines here follow its moves, and the figures must
//! agree with our analysis: commands, highest temperatures, the extent of the extrusions.
//! The crate is not our reader (it gives a whole program up on one bad line and reads
//! `f32`; see docs/files.md), but on clean files it is a second opinion no one here wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_machines::files::gcode as ours;
use gcode::{Code, Value};

/// What the independent reading finds.
#[derive(Debug, Default)]
struct Reading {
    /// Lines holding a G, M or T code.
    lines_with_codes: usize,
    max_hotend: f64,
    max_bed: f64,
    /// Extent of the moves that extrude: min X, max X, min Y, max Y.
    extent: [f64; 4],
}

fn read(text: &str) -> Reading {
    let program = gcode::parse(text).expect("a clean slicer file parses whole");
    let mut r = Reading {
        extent: [f64::MAX, f64::MIN, f64::MAX, f64::MIN],
        ..Reading::default()
    };
    let (mut x, mut y, mut e) = (0.0f64, 0.0f64, 0.0f64);
    let mut relative_e = false;
    for block in &program.blocks {
        r.lines_with_codes += usize::from(!block.codes.is_empty());
        for code in &block.codes {
            let arg = |args: &[gcode::Argument], letter: char| {
                args.iter()
                    .find(|a| a.letter == letter)
                    .and_then(|a| match a.value {
                        Value::Literal(v) => Some(f64::from(v)),
                        _ => None,
                    })
            };
            match code {
                Code::Miscellaneous(m) => match m.number.major() {
                    82 => relative_e = false,
                    83 => relative_e = true,
                    104 | 109 => r.max_hotend = r.max_hotend.max(arg(&m.args, 'S').unwrap_or(0.0)),
                    140 | 190 => r.max_bed = r.max_bed.max(arg(&m.args, 'S').unwrap_or(0.0)),
                    _ => {}
                },
                Code::General(g) if matches!(g.number.major(), 0 | 1) => {
                    let (from_x, from_y) = (x, y);
                    x = arg(&g.args, 'X').unwrap_or(x);
                    y = arg(&g.args, 'Y').unwrap_or(y);
                    let pushed = match arg(&g.args, 'E') {
                        Some(v) if relative_e => v,
                        Some(v) => {
                            let d = v - e;
                            e = v;
                            d
                        }
                        None => 0.0,
                    };
                    if pushed > 0.0 && (x != from_x || y != from_y) {
                        for (px, py) in [(from_x, from_y), (x, y)] {
                            r.extent[0] = r.extent[0].min(px);
                            r.extent[1] = r.extent[1].max(px);
                            r.extent[2] = r.extent[2].min(py);
                            r.extent[3] = r.extent[3].max(py);
                        }
                    }
                }
                Code::General(g) if g.number.major() == 92 => {
                    if let Some(v) = arg(&g.args, 'E') {
                        e = v;
                    }
                }
                _ => {}
            }
        }
    }
    r
}

#[test]
fn our_reading_of_each_fixture_agrees_with_the_gcode_crate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for name in ["mk3_visor.gcode", "mk3_keychain.gcode", "ender_hook.gcode"] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        let theirs = read(&text);
        let s = ours::analyze(text.as_bytes(), None).unwrap();
        assert!(theirs.lines_with_codes > 1000, "{name}: {theirs:?}");
        // Lines, not codes: the crate reads the `T` of `M205 S0 T0` as a tool change.
        assert_eq!(theirs.lines_with_codes as u64, s.commands, "{name}");
        assert_eq!(
            (theirs.max_hotend, theirs.max_bed),
            (s.max_hotend_c, s.max_bed_c),
            "{name}"
        );
        let b = s.bbox.unwrap();
        // f32 on their side: a 250 mm coordinate keeps about 0.02 mm.
        for (theirs, ours) in theirs
            .extent
            .iter()
            .zip([b.min_x, b.max_x, b.min_y, b.max_y])
        {
            assert!((theirs - ours).abs() < 0.02, "{name}: {theirs} vs {ours}");
        }
    }
}
