//! Janome JEF: a little-endian header, then two signed bytes per stitch (x, then y up), or
//! `0x80` and a control code: `02` jump and `01` colour change, each followed by two bytes of
//! move, and `10` the end.
//!
//! The header: the offset of the stitches (u32 at 0), flags, the date, the number of colours
//! (u32 at 24), the number of records (28), the hoop code (32: 0 is 110 × 110 mm, 1 is
//! 50 × 50, 2 is 140 × 200, 3 is 126 × 110, 4 is 200 × 200), the design's extents and its
//! distances to the hoops' edges (36 to 116), then one Janome chart index (i32) per colour
//! block and one thread type per colour. Index 0 is a stop with the same thread.
//!
//! JEF has no magic: a header whose stitch offset or colour table does not fit the file is
//! refused as not a JEF. There is no trim code either: the machine cuts before long jumps,
//! which Fabrique reads as pyembroidery does (a travel of more than 3 mm after sewing).

use super::travel::{Builder, TrimRule};
use super::{Design, EmbroideryError, Format, Part, Problem, Thread, palette, u32_le};

const HEADER_LEN: usize = 116;
const COLOR_COUNT_AT: usize = 24;

fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

pub(super) fn read(bytes: &[u8]) -> Result<Design, EmbroideryError> {
    let format = Format::Jef;
    if bytes.len() < HEADER_LEN {
        return Err(EmbroideryError::Truncated {
            format,
            offset: bytes.len(),
            missing: Part::Header,
        });
    }
    let header_u32 = |at| {
        u32_le(bytes, at).ok_or(EmbroideryError::Truncated {
            format,
            offset: bytes.len(),
            missing: Part::Header,
        })
    };
    let stitch_offset = header_u32(0)?;
    let start = usize::try_from(stitch_offset)
        .ok()
        .filter(|s| (HEADER_LEN..=bytes.len()).contains(s))
        .ok_or(EmbroideryError::Invalid {
            format,
            offset: 0,
            problem: Problem::StitchOffsetOutsideFile(u64::from(stitch_offset)),
        })?;
    let colors = header_u32(COLOR_COUNT_AT)?;
    let table_end = HEADER_LEN as u64 + 4 * u64::from(colors);
    if table_end > start as u64 {
        return Err(EmbroideryError::Invalid {
            format,
            offset: COLOR_COUNT_AT,
            problem: Problem::TooManyColors(u64::from(colors)),
        });
    }
    // `colors` entries fit before `start`, itself inside the file: the loop is bounded by
    // the file's size.
    let mut threads: Vec<Thread> = Vec::new();
    for k in 0..colors as usize {
        let index = header_u32(HEADER_LEN + 4 * k)? as i32;
        let thread = palette::janome(index)
            .or_else(|| threads.last().cloned())
            .unwrap_or_else(|| Thread::new(super::FALLBACK_COLORS[0]));
        threads.push(thread);
    }

    let mut b = Builder::new(TrimRule::Beyond(30));
    let mut i = start;
    loop {
        let offset = i;
        let out_of_range = |_| EmbroideryError::OutOfRange { format, offset };
        let truncated = |missing| EmbroideryError::Truncated {
            format,
            offset: bytes.len(),
            missing,
        };
        let Some(&[b0, b1]) = bytes.get(i..i + 2) else {
            return Err(truncated(if i < bytes.len() {
                Part::Record
            } else {
                Part::EndMarker
            }));
        };
        i += 2;
        if b0 != 0x80 {
            b.stitch(signed(b0), -signed(b1)).map_err(out_of_range)?;
            continue;
        }
        if b1 == 0x10 {
            break;
        }
        let Some(&[x, y]) = bytes.get(i..i + 2) else {
            return Err(truncated(Part::Record));
        };
        i += 2;
        match b1 {
            0x02 => b.jump(signed(x), -signed(y)).map_err(out_of_range)?,
            // The move of a colour-change record is not applied, as pyembroidery reads it;
            // writers put none there.
            0x01 => b.color_change(0, 0).map_err(out_of_range)?,
            other => {
                return Err(EmbroideryError::Invalid {
                    format,
                    offset,
                    problem: Problem::UnknownControl(other),
                });
            }
        }
    }
    Ok(Design {
        format: Some(format),
        name: None,
        commands: b.commands,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::embroidery::{Counts, read_bytes};

    fn jef(colors: &[i32], stitches: &[u8]) -> Vec<u8> {
        let offset = HEADER_LEN + 8 * colors.len();
        let mut f = (offset as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&0x14u32.to_le_bytes());
        f.extend_from_slice(b"20250101120000\0\0");
        f.extend_from_slice(&(colors.len() as u32).to_le_bytes());
        f.resize(HEADER_LEN, 0);
        for c in colors {
            f.extend_from_slice(&c.to_le_bytes());
        }
        for _ in colors {
            f.extend_from_slice(&13u32.to_le_bytes());
        }
        f.extend_from_slice(stitches);
        f
    }

    #[test]
    fn stitches_jumps_colour_changes_and_janome_threads_are_read() {
        let stitches = [
            0x0A, 0x00, // stitch +10
            0x80, 0x02, 0x14, 0x00, // jump +20 (2 mm: no trim)
            0x0A, 0x0A, // stitch +10, 10 up
            0x80, 0x02, 0x28, 0x00, // jump +40 (4 mm: a trim)
            0x80, 0x01, 0x00, 0x00, // colour change
            0x01, 0x01, // stitch
            0x80, 0x10,
        ];
        let d = read_bytes(&jef(&[2, 10], &stitches), Format::Jef).unwrap();
        assert_eq!(
            d.counts(),
            Counts {
                stitches: 3,
                jumps: 2,
                trims: 1,
                color_changes: 1
            }
        );
        assert_eq!(d.extent_units(), Some([10, -11, 81, 0]));
        let names: Vec<_> = d.threads.iter().map(|t| t.name.as_deref()).collect();
        assert_eq!(names, [Some("White"), Some("Red")]);
    }

    #[test]
    fn a_stop_with_index_0_keeps_the_previous_thread() {
        let d = read_bytes(
            &jef(
                &[10, 0],
                &[0x01, 0x01, 0x80, 0x01, 0, 0, 0x01, 0x01, 0x80, 0x10],
            ),
            Format::Jef,
        )
        .unwrap();
        assert_eq!(d.threads[0], d.threads[1]);
        assert_eq!(d.counts().color_changes, 1);
    }

    #[test]
    fn a_header_pointing_outside_the_file_is_not_a_jef() {
        let mut f = jef(&[1], &[0x80, 0x10]);
        f[0..4].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(matches!(
            read_bytes(&f, Format::Jef),
            Err(EmbroideryError::Invalid {
                problem: Problem::StitchOffsetOutsideFile(100_000),
                ..
            })
        ));
    }

    #[test]
    fn a_colour_count_larger_than_the_header_is_refused_without_allocating() {
        let mut f = jef(&[1], &[0x80, 0x10]);
        f[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_bytes(&f, Format::Jef),
            Err(EmbroideryError::Invalid {
                problem: Problem::TooManyColors(_),
                ..
            })
        ));
    }

    #[test]
    fn a_jef_without_its_end_code_is_truncated() {
        let f = jef(&[1], &[0x01, 0x01]);
        assert!(matches!(
            read_bytes(&f, Format::Jef),
            Err(EmbroideryError::Truncated {
                missing: Part::EndMarker,
                ..
            })
        ));
    }
}
