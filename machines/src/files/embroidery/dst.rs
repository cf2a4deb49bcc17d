//! Tajima DST: a 512-byte text header, then 3-byte records, each a move of up to ±121 units
//! on each axis written in balanced ternary (digits of weight 1, 3, 9, 27, 81, each +, - or
//! nothing, one bit per sign), the third byte also saying jump (bit 7), colour change (bits 7
//! and 6) or end (`F3`). Bits 0 and 1 of the third byte are always set. Y is up.
//!
//! The header fields are `LA:` (label), `ST:` (records), `CO:` (colour changes), `+X:` `-X:`
//! `+Y:` `-Y:` (extents from the start point, tenths of a millimetre, as magnitudes), `AX:`
//! `AY:` (where the needle ends), `MX:` `MY:` `PD:` (multi-file designs), each ended by CR;
//! then `0x1A` and spaces. Machines trust the records, not the header.

use std::io::{self, Write};

use super::travel::{Builder, TrimRule};
use super::{Design, EmbroideryError, Format, Kind, Part, Problem, label};

const HEADER_LEN: usize = 512;
/// The longest move one record holds: 1 + 3 + 9 + 27 + 81 units.
pub(super) const MAX_STEP: i64 = 121;

/// Bits of (byte, bit) for +1 +3 +9 +27 +81 and -1 -3 -9 -27 -81 of x and of y (y up).
const X_PLUS: [(usize, u8); 5] = [(0, 0), (1, 0), (0, 2), (1, 2), (2, 2)];
const X_MINUS: [(usize, u8); 5] = [(0, 1), (1, 1), (0, 3), (1, 3), (2, 3)];
const Y_PLUS: [(usize, u8); 5] = [(0, 7), (1, 7), (0, 5), (1, 5), (2, 5)];
const Y_MINUS: [(usize, u8); 5] = [(0, 6), (1, 6), (0, 4), (1, 4), (2, 4)];
const WEIGHTS: [i32; 5] = [1, 3, 9, 27, 81];

fn decode_axis(rec: [u8; 3], plus: &[(usize, u8); 5], minus: &[(usize, u8); 5]) -> i32 {
    let mut v = 0;
    for i in 0..5 {
        let (pb, pbit) = plus[i];
        let (mb, mbit) = minus[i];
        if rec[pb] >> pbit & 1 == 1 {
            v += WEIGHTS[i];
        }
        if rec[mb] >> mbit & 1 == 1 {
            v -= WEIGHTS[i];
        }
    }
    v
}

fn encode_axis(mut v: i64, plus: &[(usize, u8); 5], minus: &[(usize, u8); 5], rec: &mut [u8; 3]) {
    for i in 0..5 {
        match v.rem_euclid(3) {
            1 => {
                rec[plus[i].0] |= 1 << plus[i].1;
                v = (v - 1) / 3;
            }
            2 => {
                rec[minus[i].0] |= 1 << minus[i].1;
                v = (v + 1) / 3;
            }
            _ => v /= 3,
        }
    }
    debug_assert_eq!(v, 0, "a DST step is at most 121 units");
}

/// A stitch or jump record moving `dx` right and `dy` down (units, each within ±121).
fn record(dx: i64, dy: i64, jump: bool) -> [u8; 3] {
    let mut rec = [0, 0, 0b0000_0011];
    if jump {
        rec[2] |= 0b1000_0000;
    }
    encode_axis(dx, &X_PLUS, &X_MINUS, &mut rec);
    encode_axis(-dy, &Y_PLUS, &Y_MINUS, &mut rec);
    rec
}

const COLOR_CHANGE: [u8; 3] = [0, 0, 0b1100_0011];
const END: [u8; 3] = [0, 0, 0b1111_0011];

pub(super) fn read(bytes: &[u8]) -> Result<Design, EmbroideryError> {
    let format = Format::Dst;
    if !bytes.starts_with(b"LA:") {
        return Err(EmbroideryError::WrongMagic {
            format,
            expected: "LA:",
        });
    }
    let header = bytes.get(..HEADER_LEN).ok_or(EmbroideryError::Truncated {
        format,
        offset: bytes.len(),
        missing: Part::Header,
    })?;
    let name = DstHeader::parse(header).label;
    let mut b = Builder::new(TrimRule::AfterJumps(3));
    let mut sequin_mode = false;
    let mut offset = HEADER_LEN;
    loop {
        let rec: [u8; 3] = match bytes.get(offset..offset + 3) {
            Some(r) => [r[0], r[1], r[2]],
            None => {
                return Err(EmbroideryError::Truncated {
                    format,
                    offset: bytes.len(),
                    missing: if offset < bytes.len() {
                        Part::Record
                    } else {
                        Part::EndMarker
                    },
                });
            }
        };
        let flags = rec[2];
        if flags & 0b1111_0011 == 0b1111_0011 {
            break;
        }
        let dx = decode_axis(rec, &X_PLUS, &X_MINUS);
        let dy = -decode_axis(rec, &Y_PLUS, &Y_MINUS);
        let out_of_range = |_| EmbroideryError::OutOfRange { format, offset };
        if flags & 0b1100_0011 == 0b1100_0011 {
            b.color_change(dx, dy).map_err(out_of_range)?;
        } else if flags & 0b0100_0011 == 0b0100_0011 {
            // Sequin mode on or off: in it, a jump record drops a sequin (a needle
            // penetration, counted as a stitch).
            sequin_mode = !sequin_mode;
            if (dx, dy) != (0, 0) {
                b.jump(dx, dy).map_err(out_of_range)?;
            }
        } else if flags & 0b1000_0011 == 0b1000_0011 {
            if sequin_mode {
                b.stitch(dx, dy).map_err(out_of_range)?;
            } else {
                b.jump(dx, dy).map_err(out_of_range)?;
            }
        } else if flags & 0b0000_0011 == 0b0000_0011 {
            b.stitch(dx, dy).map_err(out_of_range)?;
        } else {
            return Err(EmbroideryError::Invalid {
                format,
                offset,
                problem: Problem::NotATajimaRecord,
            });
        }
        offset += 3;
    }
    Ok(Design {
        format: Some(format),
        name,
        commands: b.commands,
        threads: Vec::new(),
    })
}

/// The fields of a DST header (informative: machines sew the records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DstHeader {
    pub label: Option<String>,
    /// `ST:`: the records after the header, end record included.
    pub records: Option<i64>,
    /// `CO:`: colour changes.
    pub color_changes: Option<i64>,
    /// `+X:`, `-X:`, `+Y:`, `-Y:`: how far the design reaches right, left, up and down of the
    /// start point, in units, as magnitudes.
    pub plus_x: Option<i64>,
    pub minus_x: Option<i64>,
    pub plus_y: Option<i64>,
    pub minus_y: Option<i64>,
    /// `AX:`, `AY:`: where the needle ends, from the start, y up.
    pub end_x: Option<i64>,
    pub end_y: Option<i64>,
}

impl DstHeader {
    /// Reads the fields it finds; a missing or unreadable field is `None`.
    pub fn parse(header: &[u8]) -> Self {
        let mut h = DstHeader::default();
        let text = header.split(|b| *b == 0x1A).next().unwrap_or_default();
        for field in text.split(|b| *b == b'\r' || *b == b'\n') {
            let Some((key, value)) = field.get(..3).zip(field.get(3..)) else {
                continue;
            };
            let number = || -> Option<i64> {
                let s: String = String::from_utf8_lossy(value)
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                s.strip_prefix('+').unwrap_or(&s).parse().ok()
            };
            match key {
                b"LA:" => h.label = label(value),
                b"ST:" => h.records = number(),
                b"CO:" => h.color_changes = number(),
                b"+X:" => h.plus_x = number(),
                b"-X:" => h.minus_x = number(),
                b"+Y:" => h.plus_y = number(),
                b"-Y:" => h.minus_y = number(),
                b"AX:" => h.end_x = number(),
                b"AY:" => h.end_y = number(),
                _ => {}
            }
        }
        h
    }
}

/// Rounds `num / den` to the nearest integer, halves up (`den` > 0).
fn round_div(num: i64, den: i64) -> i64 {
    (2 * num + den).div_euclid(2 * den)
}

struct Encoder {
    records: Vec<[u8; 3]>,
    /// Position in units, y down.
    pos: (i64, i64),
    min: (i64, i64),
    max: (i64, i64),
    color_changes: i64,
}

impl Encoder {
    fn step(&mut self, dx: i64, dy: i64, jump: bool) {
        self.records.push(record(dx, dy, jump));
        self.pos.0 += dx;
        self.pos.1 += dy;
        self.min = (self.min.0.min(self.pos.0), self.min.1.min(self.pos.1));
        self.max = (self.max.0.max(self.pos.0), self.max.1.max(self.pos.1));
    }

    /// Goes to `to` in records of at most 121 units per axis; all jumps, except the last
    /// record when `sew` (a stitch longer than a record becomes jumps then one stitch).
    fn go(&mut self, to: (i64, i64), sew: bool) {
        let (dx, dy) = (to.0 - self.pos.0, to.1 - self.pos.1);
        let longest = dx.abs().max(dy.abs());
        let steps = ((longest + MAX_STEP - 1) / MAX_STEP).max(1);
        let from = self.pos;
        for i in 1..=steps {
            let target = (
                from.0 + round_div(dx * i, steps),
                from.1 + round_div(dy * i, steps),
            );
            let last = i == steps;
            self.step(target.0 - self.pos.0, target.1 - self.pos.1, !(sew && last));
        }
    }
}

/// Writes `design` as Tajima DST and returns the header it wrote.
///
/// Moves longer than one record (12.1 mm on an axis) are split into jumps of at most 121
/// units, as Tajima machines require; a stitch longer than that becomes jumps then one
/// stitch. DST has no trim code: a trim is written as three jumps that wiggle ±0.2 mm and
/// come back, the signal Tajima machines cut on (and readers, Fabrique's and pyembroidery's,
/// read back as one trim). The trim of a travel is written at its start, before its jumps; a
/// trim where there is no thread to cut (before the first stitch, right after a colour
/// change or another trim) is not written. A travel of three or more jumps after sewing reads
/// back as trimmed whether or not the design said so: that is what it means in DST.
pub fn write_dst<W: Write>(design: &Design, mut out: W) -> io::Result<DstHeader> {
    let mut enc = Encoder {
        records: Vec::with_capacity(design.commands.len() + 1),
        pos: (0, 0),
        min: (0, 0),
        max: (0, 0),
        color_changes: 0,
    };
    let mut thread_cut = true;
    let commands = &design.commands;
    let mut i = 0;
    while i < commands.len() {
        let c = commands[i];
        let to = (i64::from(c.x), i64::from(c.y));
        match c.kind {
            Kind::Stitch => {
                enc.go(to, true);
                thread_cut = false;
                i += 1;
            }
            Kind::ColorChange => {
                enc.go(to, false);
                enc.records.push(COLOR_CHANGE);
                enc.color_changes += 1;
                thread_cut = true;
                i += 1;
            }
            Kind::Jump | Kind::Trim => {
                // A travel: the jumps and trims up to the next stitch or colour change.
                let end = commands[i..]
                    .iter()
                    .position(|c| matches!(c.kind, Kind::Stitch | Kind::ColorChange))
                    .map_or(commands.len(), |n| i + n);
                let travel = &commands[i..end];
                if !thread_cut && travel.iter().any(|c| c.kind == Kind::Trim) {
                    for (dx, dy) in [(2, 2), (-4, -4), (2, 2)] {
                        enc.step(dx, dy, true);
                    }
                    thread_cut = true;
                }
                for j in travel.iter().filter(|c| c.kind == Kind::Jump) {
                    enc.go((i64::from(j.x), i64::from(j.y)), false);
                }
                i = end;
            }
        }
    }
    enc.records.push(END);

    let name: String = design
        .name
        .as_deref()
        .unwrap_or("Fabrique")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .take(16)
        .collect();
    let h = DstHeader {
        label: Some(name.trim().to_string()).filter(|n| !n.is_empty()),
        records: Some(enc.records.len() as i64),
        color_changes: Some(enc.color_changes),
        plus_x: Some(enc.max.0),
        minus_x: Some(-enc.min.0),
        // Y is up in the file: the design's top (smallest y down) is `+Y`.
        plus_y: Some(-enc.min.1),
        minus_y: Some(enc.max.1),
        end_x: Some(enc.pos.0),
        end_y: Some(-enc.pos.1),
    };
    let signed = |v: i64| format!("{}{:5}", if v < 0 { '-' } else { '+' }, v.abs());
    let mut text = String::new();
    text.push_str(&format!("LA:{name:<16}\r"));
    text.push_str(&format!("ST:{:7}\r", enc.records.len()));
    text.push_str(&format!("CO:{:3}\r", enc.color_changes));
    text.push_str(&format!("+X:{:5}\r", enc.max.0));
    text.push_str(&format!("-X:{:5}\r", -enc.min.0));
    text.push_str(&format!("+Y:{:5}\r", -enc.min.1));
    text.push_str(&format!("-Y:{:5}\r", enc.max.1));
    text.push_str(&format!("AX:{}\r", signed(enc.pos.0)));
    text.push_str(&format!("AY:{}\r", signed(-enc.pos.1)));
    text.push_str("MX:+    0\rMY:+    0\rPD:******\r");
    let mut header = text.into_bytes();
    header.push(0x1A);
    header.resize(HEADER_LEN.max(header.len()), b' ');
    out.write_all(&header)?;
    let body: Vec<u8> = enc.records.iter().flatten().copied().collect();
    out.write_all(&body)?;
    out.flush()?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::embroidery::{Counts, read_bytes};

    fn dst(records: &[[u8; 3]]) -> Vec<u8> {
        let mut bytes = b"LA:test            \r".to_vec();
        bytes.resize(HEADER_LEN, b' ');
        for r in records {
            bytes.extend_from_slice(r);
        }
        bytes
    }

    #[test]
    fn every_step_from_minus_121_to_121_encodes_and_decodes_to_itself() {
        for dx in -121..=121 {
            for dy in [-121, -40, -1, 0, 1, 13, 121] {
                let rec = record(dx, dy, false);
                assert_eq!(i64::from(decode_axis(rec, &X_PLUS, &X_MINUS)), dx);
                assert_eq!(i64::from(-decode_axis(rec, &Y_PLUS, &Y_MINUS)), dy);
                assert_eq!(rec[2] & 0b11, 0b11);
            }
        }
    }

    #[test]
    fn the_achatina_example_record_is_y_plus_64_x_minus_12() {
        // "A8 12 23: y+64 x-12" from the DST description at achatina.de (y up).
        let rec = [0xA8, 0x12, 0x23];
        assert_eq!(decode_axis(rec, &X_PLUS, &X_MINUS), -12);
        assert_eq!(decode_axis(rec, &Y_PLUS, &Y_MINUS), 64);
    }

    #[test]
    fn stitches_jumps_and_a_colour_change_are_read_with_y_down() {
        let bytes = dst(&[
            record(10, 0, false),
            record(0, 20, false),
            record(50, 50, true),
            COLOR_CHANGE,
            record(-5, -5, false),
            END,
        ]);
        let d = read_bytes(&bytes, Format::Dst).unwrap();
        assert_eq!(d.name.as_deref(), Some("test"));
        assert_eq!(
            d.counts(),
            Counts {
                stitches: 3,
                jumps: 1,
                trims: 0,
                color_changes: 1
            }
        );
        assert_eq!(d.extent_units(), Some([10, 0, 60, 70]));
    }

    #[test]
    fn a_file_without_its_end_record_is_truncated() {
        let bytes = dst(&[record(10, 0, false)]);
        let err = read_bytes(&bytes, Format::Dst).unwrap_err();
        assert!(
            matches!(
                err,
                EmbroideryError::Truncated {
                    missing: Part::EndMarker,
                    ..
                }
            ),
            "{err}"
        );
        let mut cut = dst(&[record(10, 0, false), END]);
        cut.truncate(cut.len() - 1);
        assert!(matches!(
            read_bytes(&cut, Format::Dst),
            Err(EmbroideryError::Truncated {
                missing: Part::Record,
                ..
            })
        ));
    }

    #[test]
    fn a_header_shorter_than_512_bytes_is_truncated() {
        let err = read_bytes(b"LA:rose\r", Format::Dst).unwrap_err();
        assert!(matches!(
            err,
            EmbroideryError::Truncated {
                missing: Part::Header,
                ..
            }
        ));
    }

    #[test]
    fn a_file_without_la_is_not_a_dst() {
        let err = read_bytes(&[0u8; 600], Format::Dst).unwrap_err();
        assert!(matches!(err, EmbroideryError::WrongMagic { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "not a DST file: it does not start with “LA:”"
        );
    }

    #[test]
    fn a_record_without_its_two_low_bits_is_damage() {
        let bytes = dst(&[record(1, 1, false), [0, 0, 0], END]);
        let err = read_bytes(&bytes, Format::Dst).unwrap_err();
        assert!(matches!(
            err,
            EmbroideryError::Invalid {
                offset: 515,
                problem: Problem::NotATajimaRecord,
                ..
            }
        ));
    }

    #[test]
    fn a_long_jump_is_split_into_records_of_at_most_121_units() {
        let mut d = Design::new();
        d.stitch(0, 0).jump(500, -130).stitch(510, -130);
        let mut bytes = Vec::new();
        let h = write_dst(&d, &mut bytes).unwrap();
        // 1 stitch, 5 jumps (500 / 121 rounded up), 1 stitch, end.
        assert_eq!(h.records, Some(8));
        let back = read_bytes(&bytes, Format::Dst).unwrap();
        assert_eq!(back.counts().jumps, 5);
        assert_eq!(back.counts().trims, 1, "five jumps after sewing are a trim");
        assert_eq!(back.position(), (510, -130));
        for r in bytes[HEADER_LEN..].chunks(3) {
            let rec = [r[0], r[1], r[2]];
            assert!(decode_axis(rec, &X_PLUS, &X_MINUS).abs() <= 121);
        }
    }

    #[test]
    fn a_stitch_longer_than_a_record_becomes_jumps_then_one_stitch() {
        let mut d = Design::new();
        d.stitch(300, 0);
        let mut bytes = Vec::new();
        write_dst(&d, &mut bytes).unwrap();
        let back = read_bytes(&bytes, Format::Dst).unwrap();
        assert_eq!(back.counts().stitches, 1);
        assert_eq!(back.counts().jumps, 2);
        assert_eq!(back.position(), (300, 0));
    }

    #[test]
    fn a_trim_is_written_as_a_wiggle_and_read_back_as_one_trim() {
        let mut d = Design::new();
        d.stitch(10, 10)
            .stitch(20, 10)
            .trim()
            .jump(80, 40)
            .stitch(85, 40);
        let mut bytes = Vec::new();
        write_dst(&d, &mut bytes).unwrap();
        let back = read_bytes(&bytes, Format::Dst).unwrap();
        assert_eq!(back.counts(), d.counts());
        assert_eq!(back.extent_units(), d.extent_units());
    }

    #[test]
    fn the_header_holds_the_counts_and_extents_written() {
        let mut d = Design::new();
        d.name = Some("Visière EHPAD".into());
        d.stitch(-100, -50)
            .stitch(200, -50)
            .color_change()
            .stitch(200, 80);
        let mut bytes = Vec::new();
        let written = write_dst(&d, &mut bytes).unwrap();
        assert_eq!(
            bytes.len(),
            HEADER_LEN + 3 * written.records.unwrap() as usize
        );
        let h = DstHeader::parse(&bytes[..HEADER_LEN]);
        assert_eq!(h, written);
        assert_eq!(h.label.as_deref(), Some("Visi_re EHPAD"));
        assert_eq!(h.color_changes, Some(1));
        assert_eq!((h.plus_x, h.minus_x), (Some(200), Some(100)));
        // y down in the design: -50 is up (+Y), 80 is down (-Y).
        assert_eq!((h.plus_y, h.minus_y), (Some(50), Some(80)));
        assert_eq!((h.end_x, h.end_y), (Some(200), Some(-80)));
    }
}
