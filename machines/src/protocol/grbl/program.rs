//! G-code lines: a job file cleaned and made ready to stream, its words, its extent, and
//! a mill's file split at its tool changes.

use super::*;

/// One line of a job file as GRBL should receive it: comments (`(...)` and `;...`) and
/// whitespace removed, upper case, as gnea/grbl `doc/script/stream.py` prepares lines; this
/// keeps each line short, which is what the receive buffer counts. `%` markers vanish.
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_paren = false;
    for c in raw.chars() {
        match c {
            _ if in_paren => in_paren = c != ')',
            '(' => in_paren = true,
            ';' => break,
            '%' => {}
            c if c.is_whitespace() || c.is_control() => {}
            c => out.push(c.to_ascii_uppercase()),
        }
    }
    out
}

/// A G-code word: a letter and its number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Word {
    /// Upper-case letter.
    pub letter: char,
    /// The number after it.
    pub value: f64,
}

/// Why a cleaned line is not a sequence of words; the GRBL error it would get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    /// A character where a letter was expected (GRBL `error:1`).
    #[error("a value without a command letter")]
    MissingLetter,
    /// A letter without a valid number after it (GRBL `error:2`).
    #[error("the value after {0} is missing or malformed")]
    BadNumber(char),
}

impl WordError {
    /// The GRBL error code this fault earns.
    pub fn code(self) -> u8 {
        match self {
            WordError::MissingLetter => 1,
            WordError::BadNumber(_) => 2,
        }
    }
}

/// Splits a cleaned line (see [`clean_line`]) into words.
pub fn parse_words(line: &str) -> Result<Vec<Word>, WordError> {
    let bytes = line.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let letter = bytes[i] as char;
        if !letter.is_ascii_alphabetic() {
            return Err(WordError::MissingLetter);
        }
        let letter = letter.to_ascii_uppercase();
        i += 1;
        let start = i;
        if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
            i += 1;
        }
        let mut digits = 0;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            digits += usize::from(bytes[i].is_ascii_digit());
            i += 1;
        }
        if digits == 0 {
            return Err(WordError::BadNumber(letter));
        }
        let value: f64 = line[start..i]
            .parse()
            .map_err(|_| WordError::BadNumber(letter))?;
        words.push(Word { letter, value });
    }
    Ok(words)
}

/// Whether a cleaned line writes GRBL's EEPROM and so must be sent alone, in send-response
/// mode: the AVR turns its receive interrupt off while it writes, and bytes that arrive
/// then are lost (`interface.md`, "EEPROM Issues"). These are `$x=`, `$N...`, `$I=`,
/// `$RST=`, `G10 L2`/`G10 L20`, `G28.1` and `G30.1`.
pub fn is_eeprom_write(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix('$') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        return (digits > 0 && rest.as_bytes().get(digits) == Some(&b'='))
            || rest.starts_with('N')
            || rest.starts_with("I=")
            || rest.starts_with("RST=");
    }
    let Ok(words) = parse_words(line) else {
        return false;
    };
    let has_g = |v: f64| {
        words
            .iter()
            .any(|w| w.letter == 'G' && (w.value - v).abs() < 1e-6)
    };
    let has_l = |v: f64| {
        words
            .iter()
            .any(|w| w.letter == 'L' && (w.value - v).abs() < 1e-6)
    };
    (has_g(10.0) && (has_l(2.0) || has_l(20.0))) || has_g(28.1) || has_g(30.1)
}

/// One line of a job: where it was in the file and what is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramLine {
    /// 1-based line number in the source file, for messages.
    pub number: usize,
    /// The cleaned text, without newline.
    pub text: String,
}

/// Why a file cannot become a [`Program`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// A line longer than GRBL's line buffer (it would get `error:11`) or than the receive
    /// buffer (it could never be sent under character counting).
    #[error("line {line} is {len} characters long; at most {max} fit")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// Its cleaned length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
}

impl ProgramError {
    /// What to do, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (ProgramError::LineTooLong { line, len, max }, Lang::Fr) => format!(
                "La ligne {line} fait {len} caractères ; la machine en accepte {max} au plus. Réexportez avec moins de décimales."
            ),
            (ProgramError::LineTooLong { line, len, max }, Lang::En) => format!(
                "Line {line} is {len} characters long; the machine takes at most {max}. Export again with fewer decimals."
            ),
        }
    }
}

/// A job file made ready to stream: cleaned, blank lines dropped, lengths checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    pub(super) lines: Vec<ProgramLine>,
}

impl Program {
    /// Cleans every line of `source`; a line must fit in GRBL's line buffer and, with its
    /// newline, in `rx_buffer`.
    pub fn parse(source: &str, rx_buffer: usize) -> Result<Self, ProgramError> {
        let max = MAX_LINE_CHARS.min(rx_buffer.saturating_sub(1));
        let mut lines = Vec::new();
        for (i, raw) in source.lines().enumerate() {
            let text = clean_line(raw);
            if text.is_empty() {
                continue;
            }
            if text.len() > max {
                return Err(ProgramError::LineTooLong {
                    line: i + 1,
                    len: text.len(),
                    max,
                });
            }
            lines.push(ProgramLine {
                number: i + 1,
                text,
            });
        }
        Ok(Program { lines })
    }

    /// The lines to send.
    pub fn lines(&self) -> &[ProgramLine] {
        &self.lines
    }

    /// Bytes on the wire, newlines included.
    pub fn bytes(&self) -> usize {
        self.lines.iter().map(|l| l.text.len() + 1).sum()
    }

    /// Where the program goes and how hard it fires.
    pub fn extent(&self) -> Extent {
        Extent::of(self)
    }
}

/// A mill's tool change: GRBL refuses `M6` (`error:20`), so the job stops there, spindle and
/// coolant off, until a person has put the tool in and says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolChange {
    /// The file line of the `M6`.
    pub line: usize,
    /// The tool it asks for (`T2`), on that line or earlier.
    pub tool: Option<u32>,
}

/// A part of a mill's job between tool changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The tool change before this part; `None` for the first.
    pub after: Option<ToolChange>,
    /// Its lines: for a part after a tool change, first the lines that put back the state
    /// the file had set (units, plane, distance mode, work coordinates, feed, spindle and
    /// coolant), numbered with the `M6`'s line; the panel may have changed it meanwhile.
    pub program: Program,
}

/// The modal state a file has set, line by line, as far as a tool change must put it back.
#[derive(Debug, Clone, Copy)]
struct Modal {
    /// G0 or G1 (0, 1); arcs (2, 3) are put back as G0, since a bare G2 is refused.
    motion: u8,
    plane: i64,
    inches: bool,
    relative: bool,
    /// G54..G59 as 540..590.
    coordinates: i64,
    inverse_time: bool,
    feed: Option<f64>,
    /// M3, M4 or M5.
    spindle: u8,
    speed: Option<f64>,
    mist: bool,
    flood: bool,
    tool: Option<u32>,
}

impl Modal {
    const AT_RESET: Modal = Modal {
        motion: 0,
        plane: 170,
        inches: false,
        relative: false,
        coordinates: 540,
        inverse_time: false,
        feed: None,
        spindle: 5,
        speed: None,
        mist: false,
        flood: false,
        tool: None,
    };

    fn apply(&mut self, words: &[Word]) {
        for w in words {
            match (w.letter, (w.value * 10.0).round() as i64) {
                ('G', c @ (0 | 10 | 20 | 30)) => self.motion = (c / 10) as u8,
                ('G', c @ (170 | 180 | 190)) => self.plane = c,
                ('G', 200) => self.inches = true,
                ('G', 210) => self.inches = false,
                ('G', 900) => self.relative = false,
                ('G', 910) => self.relative = true,
                ('G', c @ 540..=590) if c % 10 == 0 => self.coordinates = c,
                ('G', 930) => self.inverse_time = true,
                ('G', 940) => self.inverse_time = false,
                ('F', _) => self.feed = Some(w.value),
                ('S', _) => self.speed = Some(w.value),
                ('M', 30 | 40) => self.spindle = (w.value.round()) as u8,
                ('M', 50) => self.spindle = 5,
                ('M', 70) => self.mist = true,
                ('M', 80) => self.flood = true,
                ('M', 90) => (self.mist, self.flood) = (false, false),
                // A program end resets the parser as GRBL does.
                ('M', 20 | 300) => *self = Modal::AT_RESET,
                ('T', _) => self.tool = u32::try_from(w.value.round() as i64).ok(),
                _ => {}
            }
        }
    }

    /// The lines that put this state back on a machine whose parser may have been changed
    /// (a jog keeps it, a Z probe does not).
    fn restore(&self) -> Vec<String> {
        let g = |c: i64| {
            if c % 10 == 0 {
                format!("G{}", c / 10)
            } else {
                format!("G{}.{}", c / 10, c % 10)
            }
        };
        let mut lines = vec![format!(
            "{}{}{}{}{}",
            g(self.plane),
            if self.inches { "G20" } else { "G21" },
            if self.relative { "G91" } else { "G90" },
            g(self.coordinates),
            if self.inverse_time { "G93" } else { "G94" },
        )];
        let feed = self.feed.filter(|_| !self.inverse_time);
        match (self.motion, feed) {
            (1, Some(f)) => lines.push(format!("G1F{}", number(f))),
            (_, Some(f)) => lines.push(format!("G0F{}", number(f))),
            _ => lines.push("G0".into()),
        }
        if self.spindle != 5 {
            let speed = self
                .speed
                .map_or(String::new(), |s| format!("S{}", number(s)));
            lines.push(format!("M{}{speed}", self.spindle));
            // Up to speed before the tool touches the material.
            lines.push(format!("G4P{}", SPIN_UP_S));
        }
        if self.mist {
            lines.push("M7".into());
        }
        if self.flood {
            lines.push("M8".into());
        }
        lines
    }
}

/// Seconds the spindle is given to come up to speed when a part after a tool change
/// restarts it.
pub const SPIN_UP_S: u32 = 4;

/// A number as G-code writes it: no exponent, no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn is_m6(w: &Word) -> bool {
    w.letter == 'M' && (w.value - 6.0).abs() < 1e-6
}

impl Program {
    /// Splits a mill's file at its tool changes. The `M6` words go (GRBL refuses them);
    /// what else their lines say stays at the end of the part before. One part when the
    /// file changes no tool; no part is empty (a file that opens with `M6` begins with the
    /// tool change).
    pub fn split_at_tool_changes(&self) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut current = Segment {
            after: None,
            program: Program { lines: Vec::new() },
        };
        let mut modal = Modal::AT_RESET;
        for line in &self.lines {
            let words = parse_words(&line.text).unwrap_or_default();
            if !words.iter().any(is_m6) {
                modal.apply(&words);
                current.program.lines.push(line.clone());
                continue;
            }
            let rest: Vec<Word> = words.iter().copied().filter(|w| !is_m6(w)).collect();
            modal.apply(&rest);
            if !rest.is_empty() {
                let text = rest
                    .iter()
                    .map(|w| format!("{}{}", w.letter, number(w.value)))
                    .collect();
                current.program.lines.push(ProgramLine {
                    number: line.number,
                    text,
                });
            }
            // A file that opens with its tool change has nothing to cut before it.
            if current.after.is_some() || !current.program.lines.is_empty() {
                segments.push(current);
            }
            let change = ToolChange {
                line: line.number,
                tool: modal.tool,
            };
            current = Segment {
                after: Some(change),
                program: Program {
                    lines: modal
                        .restore()
                        .into_iter()
                        .map(|text| ProgramLine {
                            number: line.number,
                            text,
                        })
                        .collect(),
                },
            };
        }
        segments.push(current);
        segments
    }

    /// Every part's lines, in order: what a dry run of a mill's job checks.
    pub fn joined(segments: &[Segment]) -> Program {
        Program {
            lines: segments
                .iter()
                .flat_map(|s| s.program.lines.iter().cloned())
                .collect(),
        }
    }
}

/// Where a program moves the head, in millimetres of work coordinates, the highest laser
/// power or spindle speed it asks for, and the coolant it turns on.
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    /// Lowest X, Y and Z reached, with the file line that reaches each; `None` without
    /// moves on that axis.
    pub min: [Option<(f64, usize)>; 3],
    /// Highest X, Y and Z reached, with the file line.
    pub max: [Option<(f64, usize)>; 3],
    /// The highest `S` value, with its file line.
    pub max_power: Option<(f64, usize)>,
    /// The first `M7` (mist) and the first `M8` (flood coolant), by file line.
    pub coolant: [Option<usize>; 2],
    /// The first line that moves to a place this analysis cannot know (`G92`, `G28`,
    /// `G30`, `G10`, `G53`), making the bounds check impossible.
    pub unknowable: Option<usize>,
}

impl Extent {
    fn of(program: &Program) -> Self {
        let mut ext = Extent {
            min: [None; 3],
            max: [None; 3],
            max_power: None,
            coolant: [None; 2],
            unknowable: None,
        };
        // Z starts unknown: a laser file need not say it, and the head's height at the start
        // is not the file's.
        let mut pos = [0.0f64, 0.0];
        let mut z = None::<f64>;
        let mut absolute = true;
        let mut scale = 1.0;
        let mut motion = 0u8; // 0 rapid, 1 line, 2/3 arcs
        let reach = |ext: &mut Extent, a: usize, v: f64, line: usize| {
            if ext.min[a].is_none_or(|(m, _)| v < m) {
                ext.min[a] = Some((v, line));
            }
            if ext.max[a].is_none_or(|(m, _)| v > m) {
                ext.max[a] = Some((v, line));
            }
        };
        let include = |ext: &mut Extent, p: [f64; 2], line: usize| {
            reach(ext, 0, p[0], line);
            reach(ext, 1, p[1], line);
        };
        for line in &program.lines {
            let Ok(words) = parse_words(&line.text) else {
                continue; // `$` commands and malformed lines: GRBL refuses or handles them
            };
            let mut target = [None, None];
            let mut target_z = None;
            let mut offset = [0.0, 0.0];
            let mut has_offset = false;
            let mut radius = None;
            for w in &words {
                match w.letter {
                    'G' => match (w.value * 10.0).round() as i64 {
                        0 => motion = 0,
                        10 => motion = 1,
                        20 => motion = 2,
                        30 => motion = 3,
                        200 => scale = 25.4,
                        210 => scale = 1.0,
                        900 => absolute = true,
                        910 => absolute = false,
                        100 | 280 | 300 | 530 | 920 => {
                            ext.unknowable.get_or_insert(line.number);
                        }
                        _ => {}
                    },
                    'X' => target[0] = Some(w.value * scale),
                    'Y' => target[1] = Some(w.value * scale),
                    'Z' => target_z = Some(w.value * scale),
                    'M' if (w.value - 7.0).abs() < 1e-6 => {
                        ext.coolant[0].get_or_insert(line.number);
                    }
                    'M' if (w.value - 8.0).abs() < 1e-6 => {
                        ext.coolant[1].get_or_insert(line.number);
                    }
                    'I' => {
                        offset[0] = w.value * scale;
                        has_offset = true;
                    }
                    'J' => {
                        offset[1] = w.value * scale;
                        has_offset = true;
                    }
                    'R' => radius = Some((w.value * scale).abs()),
                    'S' if ext.max_power.is_none_or(|(v, _)| w.value > v) => {
                        ext.max_power = Some((w.value, line.number));
                    }
                    _ => {}
                }
            }
            if let Some(t) = target_z {
                // Relative from an unknown height: the height stays unknown.
                z = if absolute { Some(t) } else { z.map(|z| z + t) };
                if let Some(v) = z {
                    reach(&mut ext, 2, v, line.number);
                }
            }
            if target[0].is_none() && target[1].is_none() {
                continue;
            }
            let start = pos;
            for a in 0..2 {
                if let Some(v) = target[a] {
                    pos[a] = if absolute { v } else { pos[a] + v };
                }
            }
            include(&mut ext, pos, line.number);
            if motion >= 2 {
                // An arc may bulge past its end points: count its whole circle.
                let (centre, r) = if has_offset {
                    let c = [start[0] + offset[0], start[1] + offset[1]];
                    (c, offset[0].hypot(offset[1]))
                } else {
                    let r = radius.unwrap_or(0.0);
                    ([(start[0] + pos[0]) / 2.0, (start[1] + pos[1]) / 2.0], r)
                };
                include(&mut ext, [centre[0] - r, centre[1] - r], line.number);
                include(&mut ext, [centre[0] + r, centre[1] + r], line.number);
            }
        }
        ext
    }
}
