//! The G-code targets: bytes, and near-valid G-code made from the real files in
//! `tests/data/`, into the reader, the analysis and the estimate.

use super::engine::{self, Rng, Source, TimeBound};
use fabrique_machines::files::gcode::{
    self, Analysis, Dialect, FirmwareLimits, GcodeSummary, Junction, JunctionRule, Limits, Options,
    PreviewOptions,
};
use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

pub const MAX_INPUT: usize = 64 * 1024;

/// Debug build, other tests on the other core: a hundred times what a plain file needs.
pub const BOUND: TimeBound = TimeBound {
    base: Duration::from_millis(250),
    per_kib: Duration::from_millis(25),
};

/// A reader that hands its bytes out in pieces of random sizes (from a seed of its own),
/// as a socket or a slow disk may: a line cut anywhere must read as the same line.
struct Pieces<'a> {
    bytes: &'a [u8],
    rng: Rng,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (1 + self.rng.len(9000))
            .min(buf.len())
            .min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The machine the file is checked for, chosen by the input (so a saved input replays
/// alone): none, each dialect's defaults, or a profile with odd but valid limits.
fn limits(h: u64) -> Option<Limits> {
    let dialect = [
        Dialect::Marlin,
        Dialect::Grbl,
        Dialect::Klipper,
        Dialect::Unknown,
    ][(h % 4) as usize];
    match (h >> 2) % 4 {
        0 => None,
        1 => Some(Limits {
            dialect,
            ..Limits::default()
        }),
        2 => Some(Limits {
            dialect,
            firmware: Some(FirmwareLimits {
                max_feedrate_mm_s: [0.0, 0.0, 0.0, 0.0],
                max_acceleration_mm_s2: [0.0, 0.0, 0.0, 0.0],
                junction: Junction::Deviation { mm: 0.0 },
                ..FirmwareLimits::for_dialect(dialect)
            }),
            ..Limits::default()
        }),
        _ => Some(Limits {
            dialect,
            firmware: Some(FirmwareLimits {
                junction: Junction::SquareCorner { mm_s: 0.0 },
                max_velocity_mm_s: 1.0,
                ..FirmwareLimits::for_dialect(dialect)
            }),
            hotend_heating_c_per_s: Some(1e-3),
            bed_heating_c_per_s: Some(1e3),
            filament_diameter_mm: Some(2.85),
            filament_density_g_cm3: Some(0.9),
            junction_rule: Some(JunctionRule::JunctionDeviation),
            silent_mode: true,
        }),
    }
}

fn finite(v: f64, what: &str, s: &GcodeSummary) {
    assert!(v.is_finite() && v >= 0.0, "{what} = {v} in {s:?}");
}

/// The properties:
/// - the analysis never panics and never fails on bytes in memory;
/// - the same bytes read in pieces of any size give the same analysis (the line reader's
///   buffer boundaries do not show);
/// - every time, length, volume and weight is finite and not negative, `estimate_s` is the
///   rounded total, and what the summary keeps is bounded (findings, layers, thumbnails,
///   the preview, the PNG);
/// - the summary reads back from its JSON as the same summary (it is stored as JSON).
pub fn check(bytes: &[u8]) {
    let h = hash(bytes);
    let limits = limits(h);
    // The slicer's block is read from the tail first, as uploads are.
    let slicer_limits = gcode::slicer_config::read(&mut std::io::Cursor::new(bytes), h % 2 == 1)
        .expect("bytes in memory");
    let options = Options {
        slicer_limits,
        preview: Some(PreviewOptions::default()),
        thumbnail: true,
    };
    let whole: Analysis =
        gcode::analyze_with(bytes, limits.as_ref(), &options).expect("bytes in memory");
    let pieces = Pieces {
        bytes,
        rng: Rng::new(h),
    };
    let cut = gcode::analyze_with(pieces, limits.as_ref(), &options).expect("bytes in memory");
    let s = &whole.summary;
    assert_eq!(&cut.summary, s, "read in pieces");
    assert_eq!(cut.preview_svg, whole.preview_svg, "preview read in pieces");
    assert_eq!(cut.thumbnail, whole.thumbnail, "thumbnail read in pieces");

    // Every line counts once, cut or not; a last line without its newline too.
    let newlines = bytes.iter().filter(|b| **b == b'\n').count();
    let lines = newlines + usize::from(bytes.last().is_some_and(|b| *b != b'\n'));
    assert_eq!(s.lines, lines as u64, "lines");
    assert!(
        s.commands <= s.lines,
        "{} commands on {} lines",
        s.commands,
        s.lines
    );

    let t = &s.time;
    for (v, what) in [
        (t.moves_s, "moves_s"),
        (t.dwell_s, "dwell_s"),
        (t.heating_s, "heating_s"),
        (t.total_s, "total_s"),
        (s.filament_mm, "filament_mm"),
        (s.filament_cm3, "filament_cm3"),
        (s.filament_g, "filament_g"),
        (s.max_hotend_c, "max_hotend_c"),
        (s.max_bed_c, "max_bed_c"),
        (s.max_laser_power, "max_laser_power"),
    ] {
        finite(v, what, s);
    }
    // Ours is the total, rounded, up to the cap; the slicer's is a figure read from a
    // comment. Both take part in integer arithmetic (an end time, a member's hours).
    let expected = t.total_s.min(gcode::MAX_ESTIMATE_S as f64);
    assert!(
        (s.estimate_s as f64 - expected).abs() <= 1.0,
        "estimate {} s for a total of {} s",
        s.estimate_s,
        t.total_s
    );
    if let Some(e) = s.slicer.as_ref().and_then(|sl| sl.estimate_s) {
        assert!(
            (0..=gcode::MAX_ESTIMATE_S).contains(&e),
            "slicer estimate {e} s"
        );
    }
    for l in &s.layer_times_s {
        finite(*l, "a layer's time", s);
    }
    assert!(
        s.layer_times_s.len() <= 20_000,
        "{} layers",
        s.layer_times_s.len()
    );
    assert!(s.issues.len() <= 2 * 21, "{} findings", s.issues.len());
    assert!(
        s.thumbnails.len() <= 16,
        "{} thumbnails",
        s.thumbnails.len()
    );
    if let Some(png) = &whole.thumbnail {
        assert!(png.png.len() <= gcode::metadata::MAX_THUMBNAIL_BYTES);
    }
    if let Some(svg) = &whole.preview_svg {
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.len() < 1_000_000, "an SVG of {} bytes", svg.len());
    }
    let json = serde_json::to_string(s).expect("a summary is JSON");
    let back: GcodeSummary = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the stored summary does not read back: {e}\n{json}"));
    let again = serde_json::to_value(&back).expect("a summary is JSON");
    let first = serde_json::to_value(s).expect("a summary is JSON");
    assert!(
        same_json(&first, &again),
        "the stored summary reads back otherwise:\n{first}\n{again}"
    );
}

/// JSON values equal, numbers to 1e-12 relative: serde_json (without its
/// `float_roundtrip` feature) may read a float back one unit in the last place off.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The lines of the real files, read once.
fn fixtures() -> &'static [Vec<Vec<u8>>] {
    static LINES: OnceLock<Vec<Vec<Vec<u8>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        [
            "mk3_keychain.gcode",
            "ender_hook.gcode",
            "laser_shield.gcode",
            "mk3_visor.gcode",
        ]
        .iter()
        .map(|name| {
            let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
        })
        .collect()
    })
}

/// Numbers a word should survive: zero both ways, tiny, huge, past `u32` and `f64`,
/// half-written.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "0.0000001",
    "-0.0000001",
    "1e308",
    "99999999999999999999",
    "4294967295",
    "4294967296",
    "2147483648",
    "-2147483649",
    "1.7976931348623157",
    "179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "-179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    ".",
    "-",
    "+",
    "1.",
    ".5",
    "1e",
    "NaN",
    "inf",
    "1000000",
    "-1000000",
    "0.001",
    "12.5.3",
];

/// Whole lines that move the estimate's state somewhere unusual.
const LINES: &[&str] = &[
    "G2 X10 Y10 I1000000 J0",
    "G3 X0 Y0 I-1000000 J1000000 F1",
    "G2 X1 Y1 R0.0001",
    "G3 X100000 Y0 R-1",
    "G2 I5 J5 F60000",
    "G3 X1 Y1 I0 J0",
    "M201 X0 Y0 Z0 E0",
    "M203 X0 Y0 Z0 E0",
    "M204 S0 P0 R0 T0",
    "M205 X0 Y0 Z0 E0 J0 S0 T0",
    "M205 J1000000",
    "M220 S0",
    "M220 S1000000",
    "M221 S0",
    "G20",
    "G21",
    "G90",
    "G91",
    "M82",
    "M83",
    "G92 E0",
    "G92 X-1000000 Y1000000 Z0 E-1000000",
    "G10",
    "G11",
    "M207 S1000000 F0",
    "M208 S-1 F1000000",
    "G4 P1000000000000",
    "G4 S-1",
    "G4 S0.0000001",
    "M109 S1000000",
    "M109 R-1000000",
    "M190 S1000000",
    "M104 S1e308",
    "M140 S-0",
    "SET_VELOCITY_LIMIT VELOCITY=0 ACCEL=0 SQUARE_CORNER_VELOCITY=1000000",
    "SET_VELOCITY_LIMIT ACCEL_TO_DECEL=-1 MINIMUM_CRUISE_RATIO=5",
    "PRINT_START BED=60 EXTRUDER=215",
    "$H",
    "$J=G91 X1000000 F0",
    "$32=0",
    "$32=1",
    "M3 S1000000",
    "M4 S0",
    "M5",
    "T4294967295",
    "T7",
    "M600",
    "M0",
    "M601",
    "G28",
    "G28 X0",
    "G29",
    "M73 P101 R-5",
    ";LAYER_CHANGE",
    ";LAYER:-1",
    "; CHANGE_LAYER",
    "; layer 3, Z = 0.6",
    ";Z:1000000",
    ";HEIGHT:-1",
    ";TIME:99999999999999999999",
    ";PRINT.TIME:-5",
    "; estimated printing time (normal mode) = 99999999d 99h 99m 99s",
    "; total estimated time: 1h 2m 3s",
    ";Generated with Cura_SteamEngine 5.2.1",
    "; generated by PrusaSlicer 2.5.0 on 2026-11-24 at 02:14:37 UTC",
    "; G-Code generated by Simplify3D(R) Version 4.1.2",
    ";Sliced by ideaMaker 4.2.3, Windows",
    "; BambuStudio 01.07.03.50",
    "; printer_model = MK3S",
    "; layer_height = 0",
    ";Layer height: -0.2",
    "; filament_type = PLA;PETG;PLA",
    "; total filament length [mm] : 1e308,2",
    "; thumbnail begin 4294967295x4294967295 999999999999",
    "; thumbnail_QOI begin 16x16 904",
    "; thumbnail end",
    "; thumbnail_QOI end",
    "N10 G1 X1 Y1*57",
    "G1 X1 (a comment",
    "G1 X1 ; a comment (with a paren",
    "G0 X0 Y0 Z0",
    "G1 X0 Y0 E1000000 F1",
    "G1 E-1000000",
    "G1 Z1000000 F60000",
    "G1 F0",
    "G1 F-100",
    "G1 X1e5",
    "M84 X Y E",
    "G1 XYZ",
    "G53 G0 X0",
    "M117 Hello \u{0}",
    "G1 X\u{fffd}1",
];

/// A thumbnail block: a header, base64 of a PNG (valid start, random rest, at times cut
/// or damaged) in lines of 78 characters, and usually its end.
fn thumbnail(rng: &mut Rng) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..rng.len(3000)).map(|_| rng.next() as u8));
    let mut b64 = base64::engine::general_purpose::STANDARD
        .encode(&png)
        .into_bytes();
    if rng.chance(20) {
        b64.truncate(rng.below(b64.len()));
    }
    if rng.chance(10) && !b64.is_empty() {
        let i = rng.below(b64.len());
        b64[i] = b'!';
    }
    let (w, h) = (1 + rng.below(400), 1 + rng.below(400));
    let len = if rng.chance(80) {
        b64.len()
    } else {
        rng.below(1 << 24)
    };
    let mut lines = vec![format!("; thumbnail begin {w}x{h} {len}").into_bytes()];
    for chunk in b64.chunks(78) {
        let mut line = b"; ".to_vec();
        line.extend_from_slice(chunk);
        lines.push(line);
    }
    if rng.chance(85) {
        lines.push(b"; thumbnail end".to_vec());
    }
    lines
}

/// The positions of the numbers in a line (after a letter or `=`).
fn numbers_in(line: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let starts = (line[i].is_ascii_alphabetic() || line[i] == b'=')
            && line
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'+'));
        if starts {
            let from = i + 1;
            let mut to = from + 1;
            while to < line.len() && (line[to].is_ascii_digit() || line[to] == b'.') {
                to += 1;
            }
            out.push((from, to));
            i = to;
        } else {
            i += 1;
        }
    }
    out
}

/// Mutates lines: numbers swapped for odd ones, words and lines added, lines repeated,
/// dropped, swapped, cut, joined, or made overlong.
fn mutate_lines(rng: &mut Rng, lines: &mut Vec<Vec<u8>>) {
    for _ in 0..1 + rng.below(12) {
        let n = lines.len();
        match rng.below(10) {
            0 | 1 if n > 0 => {
                let i = rng.below(n);
                let spots = numbers_in(&lines[i]);
                if !spots.is_empty() {
                    let (from, to) = *rng.pick(&spots);
                    let number = rng.pick(NUMBERS).as_bytes().to_vec();
                    lines[i].splice(from..to, number);
                }
            }
            2 if n > 0 => {
                let i = rng.below(n);
                let letter = *rng.pick(b"XYZEFIJRSPTKL");
                let word = format!(" {}{}", letter as char, rng.pick(NUMBERS));
                lines[i].extend_from_slice(word.as_bytes());
            }
            3 | 4 => {
                let at = rng.below(n + 1);
                lines.insert(at, rng.pick(LINES).as_bytes().to_vec());
            }
            5 if n > 0 => {
                // A line or a short run repeated: arcs, dwells or layers by the hundred.
                let at = rng.below(n);
                let len = (1 + rng.below(4)).min(n - at);
                let run: Vec<Vec<u8>> = lines[at..at + len].to_vec();
                let times = 1 + rng.len(300);
                for _ in 0..times {
                    lines.splice(at..at, run.iter().cloned());
                }
            }
            6 if n > 0 => {
                let at = rng.below(n);
                let len = rng.len(n - at).max(1);
                lines.drain(at..at + len);
            }
            7 if n > 1 => {
                let (a, b) = (rng.below(n), rng.below(n));
                lines.swap(a, b);
            }
            8 => {
                let at = rng.below(n + 1);
                let block = thumbnail(rng);
                lines.splice(at..at, block);
            }
            _ if n > 0 => {
                let i = rng.below(n);
                match rng.below(4) {
                    0 => {
                        let len = lines[i].len();
                        lines[i].truncate(rng.below(len + 1));
                    }
                    1 if i + 1 < n => {
                        let next = lines.remove(i + 1);
                        lines[i].extend_from_slice(&next);
                    }
                    2 => lines[i].push(b'\r'),
                    _ => {
                        // Around the scanner's longest line (16 KiB).
                        let len = *rng.pick(&[16_383, 16_384, 16_385, 16_386, 32_768]);
                        let fill = *rng.pick(b"G1X0 ;");
                        let line = &mut lines[i];
                        line.resize(len.max(line.len()), fill);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Consecutive lines of a real file: its start (where the settings and the heating are)
/// a quarter of the time, else anywhere.
fn window(rng: &mut Rng) -> Vec<Vec<u8>> {
    let file = rng.pick(fixtures());
    let len = 1 + rng.len(600);
    let from = if rng.chance(25) {
        0
    } else {
        rng.below(file.len().saturating_sub(len))
    };
    file[from..(from + len).min(file.len())].to_vec()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out.truncate(MAX_INPUT);
    out
}

/// The first 400 lines of each real file.
pub fn bytes_seeds() -> Vec<Vec<u8>> {
    fixtures()
        .iter()
        .map(|lines| join(&lines[..lines.len().min(400)]))
        .collect()
}

/// Raw bytes: random ones a tenth of the time, else pieces of the real files mutated
/// byte by byte.
pub fn make_bytes(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.chance(10) {
        return engine::random_bytes(rng, 8192);
    }
    let mut input = join(&window(rng));
    engine::mutate(rng, &mut input, seeds, MAX_INPUT);
    input
}

/// Near-valid G-code: windows of the real files with their lines mutated.
pub fn make_lines(rng: &mut Rng, _: &[Vec<u8>]) -> Vec<u8> {
    let mut lines = window(rng);
    mutate_lines(rng, &mut lines);
    join(&lines)
}

pub fn bytes_source() -> Source {
    Source {
        seeds: bytes_seeds(),
        make: make_bytes,
    }
}

/// Seeds: each of the odd lines alone.
pub fn lines_source() -> Source {
    Source {
        seeds: LINES
            .iter()
            .map(|l| format!("{l}\n").into_bytes())
            .collect(),
        make: make_lines,
    }
}
