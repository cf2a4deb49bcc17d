//! Brother PES and PEC.
//!
//! A PES file starts with `#PES` and a four-digit version, then a little-endian u32: the
//! offset of its PEC block, which is what Brother machines sew. (The PES part between holds
//! the editing data of Brother's software; Fabrique does not need it.) A PEC file is
//! `#PEC0001` then the PEC block.
//!
//! The PEC block, from its start: `LA:` and a 16-byte label at 0; at 48 the number of colour
//! changes (`0xFF`: no colour table), then one byte per colour block, an index into the
//! Brother chart; the stitch section at 512 (its length as a 24-bit integer at 514), whose
//! records start at 528. Each coordinate is x then y, y down, either one byte (7-bit signed)
//! or, when its high bit is set, two bytes: 12-bit signed with a jump flag (0x10) and a trim
//! flag (0x20) in the first. `FE B0 xx` is a colour change, `FF` the end. After the stitches
//! come the small monochrome thumbnails, which Fabrique does not read.

use super::travel::{Builder, TrimRule};
use super::{Design, EmbroideryError, Format, Part, Problem, Thread, label, palette, u32_le};

const COLOR_COUNT_AT: usize = 48;
const STITCHES_AT: usize = 528;
const FLAG_LONG: u8 = 0x80;
const FLAG_JUMP: u8 = 0x10;
const FLAG_TRIM: u8 = 0x20;

pub(super) fn read_pes(bytes: &[u8]) -> Result<Design, EmbroideryError> {
    let format = Format::Pes;
    if !bytes.starts_with(b"#PES") {
        return Err(EmbroideryError::WrongMagic {
            format,
            expected: "#PES",
        });
    }
    let pec = u32_le(bytes, 8).ok_or(EmbroideryError::Truncated {
        format,
        offset: bytes.len(),
        missing: Part::Header,
    })?;
    let start = usize::try_from(pec)
        .ok()
        .filter(|s| *s < bytes.len())
        .ok_or(EmbroideryError::Invalid {
            format,
            offset: 8,
            problem: Problem::PecOffsetOutsideFile(u64::from(pec)),
        })?;
    read_pec(bytes, start, format)
}

pub(super) fn read_pec_file(bytes: &[u8]) -> Result<Design, EmbroideryError> {
    let format = Format::Pec;
    if !bytes.starts_with(b"#PEC") {
        return Err(EmbroideryError::WrongMagic {
            format,
            expected: "#PEC0001",
        });
    }
    read_pec(bytes, 8, format)
}

fn signed7(b: u8) -> i32 {
    if b > 63 {
        i32::from(b) - 128
    } else {
        i32::from(b)
    }
}

fn signed12(hi: u8, lo: u8) -> i32 {
    let v = (i32::from(hi & 0x0F) << 8) | i32::from(lo);
    if v > 0x7FF { v - 0x1000 } else { v }
}

fn read_pec(bytes: &[u8], start: usize, format: Format) -> Result<Design, EmbroideryError> {
    // A PEC file shorter than its own `#PEC0001` has no block at all (found by fuzzing:
    // `#PEC` alone panicked here).
    let Some(block) = bytes.get(start..) else {
        return Err(EmbroideryError::Truncated {
            format,
            offset: bytes.len(),
            missing: Part::Header,
        });
    };
    if !block.starts_with(b"LA:") {
        return Err(EmbroideryError::Invalid {
            format,
            offset: start,
            problem: Problem::NoPecBlock,
        });
    }
    if block.len() < STITCHES_AT {
        return Err(EmbroideryError::Truncated {
            format,
            offset: bytes.len(),
            missing: Part::Header,
        });
    }
    let name = label(&block[3..19]);
    let changes = block[COLOR_COUNT_AT];
    let threads: Vec<Thread> = if changes == 0xFF {
        Vec::new()
    } else {
        // At most 256 bytes from 49: inside the 528 bytes checked above.
        let table = &block[COLOR_COUNT_AT + 1..COLOR_COUNT_AT + 2 + usize::from(changes)];
        table
            .iter()
            .enumerate()
            .map(|(i, &index)| {
                palette::brother(index).unwrap_or_else(|| {
                    Thread::new(super::FALLBACK_COLORS[i % super::FALLBACK_COLORS.len()])
                })
            })
            .collect()
    };

    let mut b = Builder::new(TrimRule::Explicit);
    let mut i = start + STITCHES_AT;
    let byte = |at: usize, missing: Part| {
        bytes.get(at).copied().ok_or(EmbroideryError::Truncated {
            format,
            offset: bytes.len(),
            missing,
        })
    };
    loop {
        let record = i;
        let first = byte(i, Part::EndMarker)?;
        if first == 0xFF {
            break;
        }
        if first == 0xFE && byte(i + 1, Part::Record)? == 0xB0 {
            byte(i + 2, Part::Record)?;
            b.color_change(0, 0)
                .map_err(|_| EmbroideryError::OutOfRange { format, offset: i })?;
            i += 3;
            continue;
        }
        let mut flags = 0u8;
        let mut coordinate = |at: &mut usize| -> Result<i32, EmbroideryError> {
            let hi = byte(*at, Part::Record)?;
            if hi & FLAG_LONG != 0 {
                let lo = byte(*at + 1, Part::Record)?;
                flags |= hi;
                *at += 2;
                Ok(signed12(hi, lo))
            } else {
                *at += 1;
                Ok(signed7(hi))
            }
        };
        let dx = coordinate(&mut i)?;
        let dy = coordinate(&mut i)?;
        let out_of_range = |_| EmbroideryError::OutOfRange {
            format,
            offset: record,
        };
        if flags & FLAG_JUMP != 0 {
            b.jump(dx, dy).map_err(out_of_range)?;
        } else if flags & FLAG_TRIM != 0 {
            b.trim();
            b.jump(dx, dy).map_err(out_of_range)?;
        } else {
            b.stitch(dx, dy).map_err(out_of_range)?;
        }
    }
    Ok(Design {
        format: Some(format),
        name,
        commands: b.commands,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::embroidery::{Counts, Kind, read_bytes};

    /// A PEC block with the given colour indices and stitch bytes.
    fn pec_block(colors: &[u8], stitches: &[u8]) -> Vec<u8> {
        let mut b = b"LA:rose            \r".to_vec();
        b.resize(COLOR_COUNT_AT, b' ');
        if colors.is_empty() {
            b.push(0xFF);
        } else {
            b.push(colors.len() as u8 - 1);
            b.extend_from_slice(colors);
        }
        b.resize(STITCHES_AT, b' ');
        b.extend_from_slice(stitches);
        b
    }

    fn pes(block: &[u8]) -> Vec<u8> {
        let mut f = b"#PES0001".to_vec();
        f.extend_from_slice(&22u32.to_le_bytes());
        f.resize(22, 0);
        f.extend_from_slice(block);
        f
    }

    #[test]
    fn short_and_long_coordinates_flags_and_colour_changes_are_read() {
        let stitches = [
            0x0A, 0x05, // stitch +10 +5
            0x7F, 0x40, // stitch -1 -64
            0x90, 0x64, 0x80, 0x00, // jump +100 0 (long, jump flag)
            0xFE, 0xB0, 0x02, // colour change
            0xAF, 0x9C, 0xA0, 0x00, // trim then jump -100 0 (long, trim flag)
            0x05, 0x00, // stitch +5 0
            0xFF,
        ];
        let d = read_bytes(&pes(&pec_block(&[20, 5], &stitches)), Format::Pes).unwrap();
        assert_eq!(d.name.as_deref(), Some("rose"));
        assert_eq!(
            d.counts(),
            Counts {
                stitches: 3,
                jumps: 2,
                trims: 1,
                color_changes: 1
            }
        );
        let kinds: Vec<Kind> = d.commands.iter().map(|c| c.kind).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [Stitch, Stitch, Jump, ColorChange, Trim, Jump, Stitch]
        );
        assert_eq!(d.extent_units(), Some([9, -59, 109, 5]));
        let hex: Vec<String> = d.threads.iter().map(Thread::hex).collect();
        assert_eq!(hex, ["#000000", "#ed171f"]);
        assert_eq!(d.threads[1].name.as_deref(), Some("Red"));
    }

    #[test]
    fn a_pec_file_is_read_the_same_way() {
        let mut f = b"#PEC0001".to_vec();
        f.extend_from_slice(&pec_block(&[], &[0x01, 0x01, 0xFF]));
        let d = read_bytes(&f, Format::Pec).unwrap();
        assert_eq!(d.counts().stitches, 1);
        assert!(d.threads.is_empty());
    }

    #[test]
    fn a_pes_pointing_beyond_its_end_is_damage() {
        let mut f = b"#PES0060".to_vec();
        f.extend_from_slice(&9_999u32.to_le_bytes());
        let err = read_bytes(&f, Format::Pes).unwrap_err();
        assert!(matches!(
            err,
            EmbroideryError::Invalid {
                problem: Problem::PecOffsetOutsideFile(9_999),
                ..
            }
        ));
    }

    #[test]
    fn a_pes_whose_pec_block_is_not_there_is_damage() {
        let mut f = pes(&pec_block(&[1], &[0xFF]));
        f[22] = b'X';
        assert!(matches!(
            read_bytes(&f, Format::Pes),
            Err(EmbroideryError::Invalid {
                problem: Problem::NoPecBlock,
                ..
            })
        ));
    }

    #[test]
    fn a_pes_cut_in_a_long_coordinate_is_truncated() {
        let f = pes(&pec_block(&[1], &[0x0A, 0x90]));
        assert!(matches!(
            read_bytes(&f, Format::Pes),
            Err(EmbroideryError::Truncated {
                missing: Part::Record,
                ..
            })
        ));
        let f = pes(&pec_block(&[1], &[0x0A, 0x01]));
        assert!(matches!(
            read_bytes(&f, Format::Pes),
            Err(EmbroideryError::Truncated {
                missing: Part::EndMarker,
                ..
            })
        ));
    }

    #[test]
    fn a_pec_file_cut_in_its_signature_is_truncated() {
        for f in [&b"#PEC"[..], b"#PEC000"] {
            assert!(matches!(
                read_bytes(f, Format::Pec),
                Err(EmbroideryError::Truncated {
                    missing: Part::Header,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_file_without_pes_magic_is_not_a_pes() {
        let err = read_bytes(b"PK\x03\x04 zip", Format::Pes).unwrap_err();
        assert!(matches!(err, EmbroideryError::WrongMagic { .. }));
    }
}
