//! Property tests of the embroidery readers and the DST writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod embroidery_support;

use embroidery_support::{any_design, dst_exact_design};
use fabrique_machines::files::embroidery::{
    EmbroideryMachine, Format, analyze, preview_svg, read_bytes, write_dst,
};
use proptest::prelude::*;

fn dst_bytes(d: &fabrique_machines::files::embroidery::Design) -> Vec<u8> {
    let mut out = Vec::new();
    write_dst(d, &mut out).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_design_dst_says_exactly_reads_back_with_the_same_commands(seed in any::<u64>()) {
        let d = dst_exact_design(seed);
        let back = read_bytes(&dst_bytes(&d), Format::Dst).unwrap();
        prop_assert_eq!(back.counts(), d.counts());
        prop_assert_eq!(back.extent_units(), d.extent_units());
        prop_assert_eq!(&back.commands, &d.commands);
        prop_assert_eq!(back.name, d.name);
    }

    #[test]
    fn any_design_written_as_dst_keeps_its_stitches_colours_end_and_extent(seed in any::<u64>()) {
        let d = any_design(seed);
        let bytes = dst_bytes(&d);
        let back = read_bytes(&bytes, Format::Dst).unwrap();
        let (c, b) = (d.counts(), back.counts());
        prop_assert_eq!(b.stitches, c.stitches);
        prop_assert_eq!(b.color_changes, c.color_changes);
        // Records end where the design ends (a trailing trim or colour change adds no move).
        prop_assert_eq!(back.position(), d.position());
        // Long moves are split along their straight line and trim wiggles are dropped:
        // nothing reaches outside the design's own extent.
        if let (Some(e), Some(f)) = (d.extent_units(), back.extent_units()) {
            prop_assert!(f[0] >= e[0].min(0) && f[1] >= e[1].min(0), "{:?} in {:?}", f, e);
            prop_assert!(f[2] <= e[2].max(0) && f[3] <= e[3].max(0), "{:?} in {:?}", f, e);
        }
        // Every record holds at most 121 units per axis, a header's worth before them.
        prop_assert_eq!((bytes.len() - 512) % 3, 0);
    }

    #[test]
    fn random_bytes_never_panic_in_any_reader(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        for format in Format::ALL {
            let _ = read_bytes(&bytes, format);
        }
    }

    #[test]
    fn random_bytes_behind_a_valid_signature_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        offset in 0u32..2000,
        colors in 0u32..40,
    ) {
        let mut dst = b"LA:random".to_vec();
        dst.resize(512, b' ');
        dst.extend_from_slice(&body);
        let _ = read_bytes(&dst, Format::Dst);

        for magic in [&b"#PES0001"[..], b"#PES0060"] {
            let mut pes = magic.to_vec();
            pes.extend_from_slice(&offset.to_le_bytes());
            pes.extend_from_slice(b"LA:");
            pes.extend_from_slice(&body);
            let _ = read_bytes(&pes, Format::Pes);
            // Straight to a PEC block, so the stitch reader sees random bytes.
            let mut pes = magic.to_vec();
            pes.extend_from_slice(&12u32.to_le_bytes());
            pes.extend_from_slice(b"LA:");
            pes.resize(12 + 528, b' ');
            pes.extend_from_slice(&body);
            let _ = read_bytes(&pes, Format::Pes);
        }
        let mut pec = b"#PEC0001LA:".to_vec();
        pec.extend_from_slice(&body);
        let _ = read_bytes(&pec, Format::Pec);

        let mut jef = (116 + 8 * colors).to_le_bytes().to_vec();
        jef.resize(24, 0);
        jef.extend_from_slice(&colors.to_le_bytes());
        jef.resize(116 + 8 * colors as usize, 0);
        jef.extend_from_slice(&body);
        let _ = read_bytes(&jef, Format::Jef);

        let _ = read_bytes(&body, Format::Exp);
    }

    #[test]
    fn summaries_and_previews_of_any_design_never_panic(seed in any::<u64>()) {
        let d = any_design(seed);
        let machine = EmbroideryMachine {
            hoops_mm: vec![[100.0, 100.0], [130.0, 180.0]],
            ..EmbroideryMachine::default()
        };
        let s = analyze(&d, &machine);
        prop_assert!(s.estimate_s >= 0.0 && s.width_mm >= 0.0 && s.height_mm >= 0.0);
        let svg = preview_svg(&d, "aperçu");
        prop_assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
    }
}
