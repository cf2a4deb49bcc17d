//! Properties of the G-code analysis that hold for any file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_machines::files::gcode::{self, Dialect, Limits, Options, PreviewOptions};
use proptest::prelude::*;

fn path(points: &[(f64, f64, u32)], feed_scale: f64) -> String {
    let mut text = String::from("G90\nM83\n");
    for (x, y, f) in points {
        let f = f64::from(*f) * feed_scale;
        text.push_str(&format!("G1 X{x:.3} Y{y:.3} E0.1 F{f:.1}\n"));
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_box_holds_every_extrusion(points in prop::collection::vec((-50.0..250.0f64, -50.0..250.0f64, 300..9000u32), 1..60)) {
        let s = gcode::analyze(path(&points, 1.0).as_bytes(), None).unwrap();
        let b = s.bbox.unwrap();
        for (x, y, _) in points {
            let (x, y) = (format!("{x:.3}").parse::<f64>().unwrap(), format!("{y:.3}").parse::<f64>().unwrap());
            prop_assert!(b.min_x <= x && x <= b.max_x && b.min_y <= y && y <= b.max_y);
        }
    }

    #[test]
    fn the_estimate_grows_when_feedrates_decrease(
        points in prop::collection::vec((0.0..200.0f64, 0.0..200.0f64, 300..12000u32), 2..80),
        slower in 0.2..0.95f64,
        jd in prop::bool::ANY,
    ) {
        let limits = Limits {
            dialect: if jd { Dialect::Grbl } else { Dialect::Marlin },
            ..Limits::default()
        };
        let fast = gcode::analyze(path(&points, 1.0).as_bytes(), Some(&limits)).unwrap();
        let slow = gcode::analyze(path(&points, slower).as_bytes(), Some(&limits)).unwrap();
        prop_assert!(slow.time.moves_s >= fast.time.moves_s - 1e-6,
            "{} s at full feed, {} s at {slower}", fast.time.moves_s, slow.time.moves_s);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..20_000)) {
        let limits = Limits { dialect: Dialect::Marlin, ..Limits::default() };
        let a = gcode::analyze_with(&bytes[..], Some(&limits), &Options { preview: Some(PreviewOptions::default()), thumbnail: true, ..Options::default() }).unwrap();
        prop_assert!(a.summary.time.total_s.is_finite());
        prop_assert!(a.summary.issues.len() <= 2 * 21);
    }

    #[test]
    fn gcode_shaped_noise_never_panics_and_times_stay_finite(
        lines in prop::collection::vec("(G0|G1|G2|G3|G4|G28|G92|G10|G11|M3|M4|M5|M104|M109|M190|M201|M203|M204|M205|M220|T1|;LAYER_CHANGE|\\$32=0|PRINT_START)( [XYZEFIJRSPT]-?[0-9]{1,4}(\\.[0-9]{1,3})?){0,5}", 0..200),
    ) {
        let text = lines.join("\n");
        for limits in [None, Some(Limits { dialect: Dialect::Grbl, ..Limits::default() })] {
            let s = gcode::analyze(text.as_bytes(), limits.as_ref()).unwrap();
            prop_assert!(s.time.total_s.is_finite() && s.time.total_s >= 0.0);
            prop_assert!(s.filament_mm.is_finite() && s.filament_mm >= 0.0);
        }
    }
}
