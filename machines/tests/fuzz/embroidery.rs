//! The embroidery targets: bytes into each reader, then whatever was read through the
//! summary, the preview and the DST writer.

use super::embroidery_support::any_design;
use super::engine::{self, Rng, Source, TimeBound};
use fabrique_machines::files::embroidery::{
    Design, EmbroideryMachine, Format, Kind, analyze, preview_svg, read_bytes, write_dst,
};

/// Inputs up to 64 KiB: enough for every header and thousands of records.
pub const MAX_INPUT: usize = 64 * 1024;

/// Debug build, other tests on the other core: ample.
pub const BOUND: TimeBound = TimeBound {
    base: std::time::Duration::from_millis(200),
    per_kib: std::time::Duration::from_millis(20),
};

/// The properties, for one format:
/// - reading never panics, and an error has its message in both languages;
/// - what is read is bounded by the file: no more commands, threads or capacity than the
///   file has bytes, whatever a header claims;
/// - the summary's figures are finite and not negative, the preview is a bounded SVG;
/// - the design can be written as DST (what the lab hands out for the USB stick) and reads
///   back with its stitches, colour changes and end point.
pub fn check(bytes: &[u8], format: Format) {
    let design = match read_bytes(bytes, format) {
        Ok(d) => d,
        Err(e) => {
            let m = e.message();
            assert!(!m.fr.is_empty() && !m.en.is_empty() && !e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(design.format, Some(format));
    let n = bytes.len();
    assert!(
        design.commands.len() <= n,
        "{} commands from {n} bytes",
        design.commands.len()
    );
    assert!(
        design.commands.capacity() <= 2 * n + 16,
        "room for {} commands from {n} bytes",
        design.commands.capacity()
    );
    assert!(
        design.threads.len() <= n,
        "{} threads from {n} bytes",
        design.threads.len()
    );

    let machine = EmbroideryMachine {
        hoops_mm: vec![[100.0, 100.0], [200.0, 300.0]],
        ..EmbroideryMachine::default()
    };
    let s = analyze(&design, &machine);
    for v in [s.estimate_s, s.width_mm, s.height_mm] {
        assert!(v.is_finite() && v >= 0.0, "{s:?}");
    }
    // One thread per colour block, each with its name and catalogue number.
    let blocks = design.counts().color_changes as usize + 1;
    let json = serde_json::to_string(&s).expect("the summary is JSON");
    assert!(
        json.len() < 4096 + 300 * blocks,
        "{} bytes of JSON",
        json.len()
    );

    let svg = preview_svg(&design, "fuzz");
    assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
    assert!(
        svg.len() < 400_000 + 200 * blocks,
        "an SVG of {} bytes",
        svg.len()
    );

    let mut dst = Vec::new();
    write_dst(&design, &mut dst).expect("writing to memory");
    let back = read_bytes(&dst, Format::Dst).expect("our own DST reads back");
    let (a, b) = (design.counts(), back.counts());
    assert_eq!(
        (b.stitches, b.color_changes),
        (a.stitches, a.color_changes),
        "DST copy"
    );
    assert_eq!(
        back.position(),
        design.position(),
        "DST copy ends elsewhere"
    );
}

pub fn dst(bytes: &[u8]) {
    check(bytes, Format::Dst);
}
pub fn pes(bytes: &[u8]) {
    check(bytes, Format::Pes);
}
pub fn pec(bytes: &[u8]) {
    check(bytes, Format::Pec);
}
pub fn exp(bytes: &[u8]) {
    check(bytes, Format::Exp);
}
pub fn jef(bytes: &[u8]) {
    check(bytes, Format::Jef);
}

/// Relative moves of a random design, small and large, with its travels and stops.
fn moves(design: &Design) -> Vec<(Kind, i32, i32)> {
    let (mut x, mut y) = (0, 0);
    design
        .commands
        .iter()
        .map(|c| {
            let m = (c.kind, c.x - x, c.y - y);
            (x, y) = (c.x, c.y);
            m
        })
        .collect()
}

/// Splits a move into steps of at most `max` per axis.
fn steps(dx: i32, dy: i32, max: i32) -> Vec<(i32, i32)> {
    let n = (dx.abs().max(dy.abs()) + max - 1) / max;
    let n = n.max(1);
    let mut out = Vec::new();
    let (mut px, mut py) = (0, 0);
    for i in 1..=n {
        let (tx, ty) = (dx * i / n, dy * i / n);
        out.push((tx - px, ty - py));
        (px, py) = (tx, ty);
    }
    out
}

/// A valid file of `format` for a random design (the seeds the mutations start from).
pub fn valid_file(format: Format, seed: u64) -> Vec<u8> {
    let design = any_design(seed);
    match format {
        Format::Dst => {
            let mut out = Vec::new();
            write_dst(&design, &mut out).expect("writing to memory");
            out
        }
        Format::Pes | Format::Pec => {
            let mut block = format!("LA:fuzz{seed:<13}\r").into_bytes();
            block.resize(48, b' ');
            let changes = design.counts().color_changes.min(200) as u8;
            block.push(changes);
            for i in 0..=changes {
                block.push(i % 65);
            }
            block.resize(528, b' ');
            let long = |v: i32, flag: u8| {
                let v = (v & 0x0FFF) as u16;
                [0x80 | flag | (v >> 8) as u8, v as u8]
            };
            let mut trim = false;
            for (kind, dx, dy) in moves(&design) {
                match kind {
                    Kind::ColorChange => block.extend_from_slice(&[0xFE, 0xB0, 0x02]),
                    Kind::Trim => trim = true,
                    Kind::Stitch | Kind::Jump => {
                        for (sx, sy) in steps(dx, dy, 2047) {
                            if kind == Kind::Stitch && sx.abs() < 63 && sy.abs() < 63 {
                                block.push((sx & 0x7F) as u8);
                                block.push((sy & 0x7F) as u8);
                            } else {
                                let flag = if trim { 0x20 } else { 0x10 };
                                block.extend_from_slice(&long(sx, flag));
                                block.extend_from_slice(&long(sy, 0));
                                trim = false;
                            }
                        }
                    }
                }
            }
            block.push(0xFF);
            // The thumbnails that follow the stitches: bytes the reader skips.
            block.extend(std::iter::repeat_n(0x55, 64));
            if format == Format::Pec {
                let mut f = b"#PEC0001".to_vec();
                f.extend_from_slice(&block);
                f
            } else {
                let mut f = b"#PES0001".to_vec();
                let at = 64u32;
                f.extend_from_slice(&at.to_le_bytes());
                f.resize(at as usize, 0);
                f.extend_from_slice(&block);
                f
            }
        }
        Format::Exp | Format::Jef => {
            let mut body = Vec::new();
            let jump = if format == Format::Exp { 0x04 } else { 0x02 };
            for (kind, dx, dy) in moves(&design) {
                match kind {
                    Kind::ColorChange => body.extend_from_slice(&[0x80, 0x01, 0, 0]),
                    Kind::Trim if format == Format::Exp => {
                        body.extend_from_slice(&[0x80, 0x80, 0x07, 0x00]);
                    }
                    Kind::Trim => {}
                    Kind::Stitch | Kind::Jump => {
                        for (sx, sy) in steps(dx, -dy, 127) {
                            let (bx, by) = (sx as i8 as u8, sy as i8 as u8);
                            if kind == Kind::Jump || bx == 0x80 {
                                body.extend_from_slice(&[0x80, jump, bx, by]);
                            } else {
                                body.extend_from_slice(&[bx, by]);
                            }
                        }
                    }
                }
            }
            if format == Format::Exp {
                return body;
            }
            body.extend_from_slice(&[0x80, 0x10]);
            let colors = design.counts().color_changes as u32 + 1;
            let offset = 116 + 8 * colors;
            let mut f = offset.to_le_bytes().to_vec();
            f.extend_from_slice(&0x14u32.to_le_bytes());
            f.extend_from_slice(b"20250101120000\0\0");
            f.extend_from_slice(&colors.to_le_bytes());
            f.extend_from_slice(&(body.len() as u32 / 2).to_le_bytes());
            f.resize(116, 0);
            for c in 0..colors {
                f.extend_from_slice(&(c % 79).to_le_bytes());
            }
            for _ in 0..colors {
                f.extend_from_slice(&13u32.to_le_bytes());
            }
            f.extend_from_slice(&body);
            f
        }
    }
}

/// A tenth random bytes, the rest mutated seeds (now and then a header field set to a
/// huge count).
pub fn make(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.chance(10) || seeds.is_empty() {
        return engine::random_bytes(rng, 4096);
    }
    let mut input = rng.pick(seeds).clone();
    engine::mutate(rng, &mut input, seeds, MAX_INPUT);
    input
}

/// Valid files of 24 random designs, then [`make`].
pub fn source(format: Format) -> Source {
    Source {
        seeds: (0..24).map(|s| valid_file(format, s)).collect(),
        make,
    }
}
