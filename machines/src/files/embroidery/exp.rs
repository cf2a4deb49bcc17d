//! Melco EXP: no header, no colours, no end marker; two signed bytes per stitch (x, then y
//! up), or `0x80` and a control code followed by two more bytes: `04` jump (by those bytes),
//! `01` colour change (then a jump if they are not zero), `80` trim (they are ignored,
//! usually `07 00`), `02` a stitch (rare). The file ends where the records end.

use super::travel::{Builder, TrimRule};
use super::{Design, EmbroideryError, Format, Part, Problem};

fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

pub(super) fn read(bytes: &[u8]) -> Result<Design, EmbroideryError> {
    let format = Format::Exp;
    let mut b = Builder::new(TrimRule::Explicit);
    let mut i = 0;
    let truncated = EmbroideryError::Truncated {
        format,
        offset: bytes.len(),
        missing: Part::Record,
    };
    while i < bytes.len() {
        let offset = i;
        let out_of_range = |_| EmbroideryError::OutOfRange { format, offset };
        let Some(&[b0, b1]) = bytes.get(i..i + 2) else {
            return Err(truncated);
        };
        i += 2;
        if b0 != 0x80 {
            b.stitch(signed(b0), -signed(b1)).map_err(out_of_range)?;
            continue;
        }
        let Some(&[x, y]) = bytes.get(i..i + 2) else {
            return Err(truncated);
        };
        i += 2;
        let (dx, dy) = (signed(x), -signed(y));
        match b1 {
            0x04 => b.jump(dx, dy).map_err(out_of_range)?,
            0x01 => {
                b.color_change(0, 0).map_err(out_of_range)?;
                if (dx, dy) != (0, 0) {
                    b.jump(dx, dy).map_err(out_of_range)?;
                }
            }
            0x80 => b.trim(),
            0x02 => b.stitch(dx, dy).map_err(out_of_range)?,
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
        threads: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::embroidery::{Counts, read_bytes};

    #[test]
    fn stitches_jumps_trims_and_colour_changes_are_read_with_y_down() {
        let bytes = [
            0x0A, 0x0A, // stitch +10, 10 up
            0x80, 0x80, 0x07, 0x00, // trim
            0x80, 0x04, 0x64, 0x9C, // jump +100, 100 down
            0x05, 0x00, // stitch
            0x80, 0x01, 0x00, 0x00, // colour change
            0xFB, 0x00, // stitch -5
        ];
        let d = read_bytes(&bytes, Format::Exp).unwrap();
        assert_eq!(
            d.counts(),
            Counts {
                stitches: 3,
                jumps: 1,
                trims: 1,
                color_changes: 1
            }
        );
        assert_eq!(d.extent_units(), Some([10, -10, 115, 90]));
    }

    #[test]
    fn a_colour_change_that_moves_adds_a_jump() {
        let d = read_bytes(&[0x80, 0x01, 0x10, 0x00, 0x01, 0x01], Format::Exp).unwrap();
        assert_eq!(d.counts().jumps, 1);
        assert_eq!(d.position(), (17, -1));
    }

    #[test]
    fn an_odd_last_byte_or_a_cut_escape_is_truncated() {
        for bytes in [&[0x01, 0x01, 0x02][..], &[0x80, 0x04, 0x01]] {
            assert!(matches!(
                read_bytes(bytes, Format::Exp),
                Err(EmbroideryError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn an_unknown_control_code_is_damage_with_its_offset() {
        let err = read_bytes(&[0x01, 0x01, 0x80, 0x33, 0, 0], Format::Exp).unwrap_err();
        assert!(matches!(
            err,
            EmbroideryError::Invalid {
                offset: 2,
                problem: Problem::UnknownControl(0x33),
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "the EXP file is damaged at byte 2: unknown control code 0x33"
        );
    }
}
