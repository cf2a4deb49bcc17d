//! Findings that hold whatever the machine: commands a member may not send and lines that
//! are not G-code, each with its line and a plain message in French and English. Whether a
//! file suits a machine (size, temperatures, power, dialect) is the controller's fit rule.
//!
//! Codes are stable (`snake_case`), the messages say what to do. A file of a million bad
//! lines must not make a million findings: each code keeps its first [`PER_CODE`] findings
//! and one last finding counts the rest.

use super::{Finding, Message};

/// Findings kept per code before the rest are only counted.
pub(crate) const PER_CODE: usize = 20;

pub const FORBIDDEN_COMMAND: &str = "forbidden_command";
pub const UNPARSABLE_LINE: &str = "unparsable_line";

const CODES: [&str; 2] = [FORBIDDEN_COMMAND, UNPARSABLE_LINE];

#[derive(Default)]
pub(crate) struct Findings {
    kept: Vec<Finding>,
    /// Per code: how many were dropped, and the line of the first one dropped.
    dropped: [(u64, u64); CODES.len()],
}

impl Findings {
    pub(crate) fn push(&mut self, line: u64, code: &'static str, fr: String, en: String) {
        let k = CODES.iter().position(|c| *c == code).unwrap_or(0);
        let count = self.kept.iter().filter(|f| f.code == code).count();
        if count >= PER_CODE {
            let d = &mut self.dropped[k];
            if d.0 == 0 {
                d.1 = line;
            }
            d.0 += 1;
            return;
        }
        self.kept.push(Finding {
            line,
            code: code.to_string(),
            message: Message { fr, en },
        });
    }

    pub(crate) fn finish(mut self) -> Vec<Finding> {
        for (k, &(count, first)) in self.dropped.iter().enumerate() {
            if count > 0 {
                self.kept.push(Finding {
                    line: first,
                    code: CODES[k].to_string(),
                    message: Message {
                        fr: format!(
                            "Et {count} autres lignes du même genre, à partir de la ligne {first}."
                        ),
                        en: format!("And {count} more lines of the same kind, from line {first}."),
                    },
                });
            }
        }
        self.kept.sort_by_key(|f| f.line);
        self.kept
    }
}

/// Member-forbidden commands, with the reason in French and English.
pub(crate) fn forbidden(letter: u8, code: u32) -> Option<(&'static str, &'static str)> {
    if letter != b'M' {
        return None;
    }
    match code {
        5000 | 5020 => Some((
            "écrit dans la mémoire permanente de la machine (EEPROM)",
            "writes the machine's permanent memory (EEPROM)",
        )),
        9970 => Some((
            "met à jour le micrologiciel de la machine",
            "updates the machine's firmware",
        )),
        920 | 3010 | 3030 | 3040 | 8510 => Some((
            "change l'étalonnage de la machine",
            "changes the machine's calibration",
        )),
        _ => None,
    }
}

pub(crate) fn forbidden_message(line: u64, what: &str, fr: &str, en: &str) -> (String, String) {
    (
        format!(
            "Ligne {line} : {what} {fr}. Un membre ne peut pas l'envoyer ; retirez cette ligne ou demandez à un responsable."
        ),
        format!(
            "Line {line}: {what} {en}. Members may not send it; remove the line or ask a manager."
        ),
    )
}

/// Shows a bad line in a message: its first 40 characters, readable whatever its bytes.
pub(crate) fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(40)
        .collect();
    if text.trim().chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_bad_lines_is_kept_short_and_counted() {
        let mut f = Findings::default();
        for line in 1..=1000 {
            f.push(line, UNPARSABLE_LINE, "x".into(), "x".into());
        }
        f.push(5, FORBIDDEN_COMMAND, "y".into(), "y".into());
        let out = f.finish();
        assert_eq!(out.len(), PER_CODE + 2);
        let last = out.iter().find(|f| f.line == 21).unwrap();
        assert!(
            last.message.en.contains("980 more lines"),
            "{}",
            last.message.en
        );
    }

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(excerpt(b"  hello\x07 world  "), "hello world");
        assert_eq!(excerpt(&[b'x'; 50]).chars().count(), 41);
    }
}
