//! The HP-GL target: bytes into the cutter-file analysis (with its preview and a media to
//! fit), and the same bytes, when they parse as SVG, through the SVG to HP-GL conversion
//! and back into the analysis.

use super::engine::{self, Rng, Source, TimeBound};
use fabrique_machines::files::hpgl::{self, CutterSettings, Media, PreviewOptions};
use std::time::Duration;

const MAX_INPUT: usize = 64 * 1024;

/// Debug build, other tests on the other core: a hundred times what a plain file needs.
pub const BOUND: TimeBound = TimeBound {
    base: Duration::from_millis(250),
    per_kib: Duration::from_millis(25),
};

/// Properties: no panic; figures finite and not negative; the findings bounded; a preview
/// under 1 MB; the summary reads back from its JSON; a converted drawing reads without a
/// finding.
pub fn check(input: &[u8]) {
    let settings = CutterSettings {
        media: Some(Media {
            width_mm: 610.0,
            length_mm: None,
        }),
        ..CutterSettings::default()
    };
    let a = hpgl::analyze(input, &settings, Some(&PreviewOptions::default()))
        .expect("reading from memory does not fail");
    let s = &a.summary;
    for v in [s.cut_mm, s.travel_mm, s.estimate_s, s.width_mm, s.height_mm] {
        assert!(v.is_finite() && v >= 0.0, "{v}");
    }
    assert!(s.issues.len() <= 6 * 21, "{} findings", s.issues.len());
    assert!(a.preview_svg.as_ref().is_some_and(|p| p.len() < 1 << 20));
    let json = serde_json::to_string(s).expect("a summary is JSON");
    let back: hpgl::HpglSummary = serde_json::from_str(&json).expect("it reads back");
    assert_eq!(back.strokes, s.strokes);
    if let Ok(c) = hpgl::svg::svg_to_hpgl(input) {
        let again = hpgl::analyze(c.hpgl.as_bytes(), &settings, None).expect("in memory");
        assert!(
            again.summary.issues.is_empty(),
            "{:?}",
            again.summary.issues
        );
    }
}

/// HP-GL as drawing programs write it, and small SVG drawings.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        b"IN;SP1;VS30;FS80;PU0,0;PD4000,0,4000,4000,0,4000,0,0;PU;SP0;".to_vec(),
        b"\x1b.@;0:\x1b.N;19:IN;PA;PU100,100;PR400,0,0,400,-400,0,0,-400;PU;".to_vec(),
        b"IN\nSP1\nPU 0 0\nPD 10 10 20 0\nLBHELLO\x03\nPU\n".to_vec(),
        br#"<svg xmlns="http://www.w3.org/2000/svg" width="50mm" height="40mm" viewBox="0 0 50 40"><g transform="rotate(10 25 20)"><circle cx="25" cy="20" r="12"/><path d="M2 2 Q 25 -10 48 2 Z" fill="none" stroke="black"/></g></svg>"#.to_vec(),
    ];
    if let Ok(c) = hpgl::svg::svg_to_hpgl(&seeds[3]) {
        seeds.push(c.hpgl.into_bytes());
    }
    seeds
}

pub fn source() -> Source {
    Source {
        seeds: seeds(),
        make: |rng: &mut Rng, seeds: &[Vec<u8>]| {
            if rng.chance(10) {
                return engine::random_bytes(rng, MAX_INPUT);
            }
            let mut input = rng.pick(seeds).clone();
            engine::mutate(rng, &mut input, seeds, MAX_INPUT);
            input
        },
    }
}
