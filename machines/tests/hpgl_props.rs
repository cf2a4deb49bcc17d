//! Properties of the HP-GL reader, the SVG conversion and the sender: whatever the bytes,
//! no panic and finite figures; what the reader measures matches what was written.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use fabrique_machines::files::hpgl::{self, CutterSettings, Media, PreviewOptions};
use fabrique_machines::protocol::hpgl::{Config, Sender};
use proptest::prelude::*;

fn settings() -> CutterSettings {
    CutterSettings {
        media: Some(Media {
            width_mm: 600.0,
            length_mm: Some(1000.0),
        }),
        ..CutterSettings::default()
    }
}

/// Bytes that look like HP-GL often enough to reach deep into the reader.
fn hpgl_ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"IN;".to_vec()),
        Just(b"PU".to_vec()),
        Just(b"PD".to_vec()),
        Just(b"PR".to_vec()),
        Just(b"PA".to_vec()),
        Just(b"VS".to_vec()),
        Just(b"LB".to_vec()),
        Just(vec![0x1b, b'.']),
        Just(vec![0x03]),
        "-?[0-9]{1,30}(\\.[0-9]{0,5})?".prop_map(String::into_bytes),
        Just(b",".to_vec()),
        Just(b";".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 0..200).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_and_give_finite_figures(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let a = hpgl::analyze(&bytes[..], &settings(), Some(&PreviewOptions::default())).unwrap();
        let s = a.summary;
        prop_assert!(s.cut_mm.is_finite() && s.travel_mm.is_finite() && s.estimate_s.is_finite());
        prop_assert!(s.estimate_s >= 0.0);
        prop_assert!(a.preview_svg.unwrap().ends_with("</svg>"));
        let _ = hpgl::looks_like_hpgl(&bytes);
        let _ = hpgl::svg::svg_to_hpgl(&bytes);
    }

    #[test]
    fn hpgl_like_input_never_panics(bytes in hpgl_ish()) {
        let a = hpgl::analyze(&bytes[..], &settings(), Some(&PreviewOptions::default())).unwrap();
        prop_assert!(a.summary.cut_mm.is_finite());
        prop_assert!(a.summary.issues.len() <= 20 * 8 + 8);
        if let Some(e) = a.summary.extent {
            prop_assert!(e.min_x_mm <= e.max_x_mm && e.min_y_mm <= e.max_y_mm);
        }
    }

    #[test]
    fn the_cut_length_is_the_sum_of_the_strokes_written(
        strokes in prop::collection::vec(prop::collection::vec((0i32..40_000, 0i32..40_000), 2..8), 1..20)
    ) {
        let mut text = String::from("IN;SP1;");
        let mut expected = 0.0f64;
        for s in &strokes {
            text.push_str(&format!("PU{},{};PD", s[0].0, s[0].1));
            let pairs: Vec<String> = s[1..].iter().map(|(x, y)| format!("{x},{y}")).collect();
            text.push_str(&pairs.join(","));
            text.push(';');
            for w in s.windows(2) {
                expected += f64::from(w[1].0 - w[0].0).hypot(f64::from(w[1].1 - w[0].1)) / 40.0;
            }
        }
        let s = hpgl::analyze(text.as_bytes(), &settings(), None).unwrap().summary;
        prop_assert!((s.cut_mm - expected).abs() <= 0.05 + expected * 1e-9, "{} {}", s.cut_mm, expected);
        prop_assert!(s.issues.is_empty());
    }

    #[test]
    fn the_sender_survives_any_answer(
        input in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..50),
        file in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let t = Instant::now();
        let mut s = Sender::new(Config { pace_baud: Some(9600), ..Config::default() });
        let mut fed = 0;
        for (i, bytes) in input.iter().enumerate() {
            let now = t + Duration::from_millis(i as u64 * 50);
            let want = s.wants().min(file.len() - fed);
            s.feed(&file[fed..fed + want]);
            fed += want;
            if fed == file.len() {
                s.end_of_input();
            }
            if let Some(c) = s.next_chunk(now) {
                s.wrote(c.len(), now);
            }
            s.receive(bytes, now);
            s.tick(now);
            let _ = s.deadline();
            let _ = s.take_events();
        }
        prop_assert!(s.written() <= file.len() as u64);
    }
}
