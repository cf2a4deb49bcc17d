//! GRBL 1.1 (and 0.9) over a serial link, without I/O: bytes in, writes and events out, with
//! the time passed in.
//!
//! GRBL acknowledges every line it takes from its 128-byte receive buffer with `ok` or
//! `error:N`, in order (gnea/grbl `doc/markdown/interface.md`). A host that waits for each
//! reply before the next line ("send-response") starves the planner on the short segments of
//! a laser engraving; the "character counting" mode keeps the receive buffer full instead:
//! the host sums the bytes of the lines not yet acknowledged, newline included, never lets
//! the sum pass the buffer size, and frees the oldest line's count on each reply. That is
//! what [`CharCounter`] does. Real-time bytes (`?`, `!`, `~`, Ctrl-X, overrides) are picked
//! off by GRBL as they arrive and never enter the buffer, so they are never counted.
//!
//! Laser safety lives here too, where it can be tested without a machine: a cut starts only
//! with a [`PersonAtMachine`], with laser mode on (`$32=1`), every `S` at most `$30` and
//! every position inside the work area and `$130`/`$131`; any error, alarm, unexpected reset,
//! lost link or cancel stops the job with a feed hold and then a soft reset, which turns the
//! laser off.
//!
//! # Layout
//!
//! - [`codes`]: every `error:N` and `ALARM:N` explained in French and English.
//! - Parsing: [`parse_response`] (one line from GRBL), [`parse_status`], [`parse_banner`],
//!   [`parse_setting`], [`clean_line`] and [`parse_words`] (one line of G-code).
//! - [`Program`] and [`Extent`]: a job file made ready to stream, and where it goes and how
//!   hard it fires, for the safety checks.
//! - [`CharCounter`]: the receive-buffer accounting.
//! - [`Session`]: start-up, settings, status polling, jobs, dry runs, pause, cancel.

pub mod codes;

pub use codes::{CodeInfo, CodeKind, Lang};

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// GRBL's serial receive buffer (`RX_BUFFER_SIZE` in `grbl/serial.h`).
pub const DEFAULT_RX_BUFFER: usize = 128;
/// GRBL's line buffer (`LINE_BUFFER_SIZE` in `grbl/protocol.h`): longer lines are refused
/// with `error:11`, so a file line must fit in 79 characters.
pub const MAX_LINE_CHARS: usize = 79;

// ---------------------------------------------------------------------------------------
// Real-time commands

/// A real-time command: one byte, no newline, acted on at once and never counted
/// (`doc/markdown/commands.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realtime {
    /// `?`: ask for a status report.
    StatusQuery,
    /// `!`: feed hold; in laser mode the laser is off while held.
    FeedHold,
    /// `~`: cycle start / resume.
    CycleStart,
    /// Ctrl-X (0x18): soft reset; stops everything, laser off, clears the buffers.
    SoftReset,
    /// 0x84: safety door.
    SafetyDoor,
    /// 0x85: cancel a jog.
    JogCancel,
    /// 0x90: feed override back to 100 %.
    FeedReset,
    /// 0x91: feed override +10 %.
    FeedPlus10,
    /// 0x92: feed override -10 %.
    FeedMinus10,
    /// 0x93: feed override +1 %.
    FeedPlus1,
    /// 0x94: feed override -1 %.
    FeedMinus1,
    /// 0x95: rapid override 100 %.
    RapidFull,
    /// 0x96: rapid override 50 %.
    RapidHalf,
    /// 0x97: rapid override 25 %.
    RapidQuarter,
    /// 0x99: spindle (laser power) override back to 100 %.
    PowerReset,
    /// 0x9A: power override +10 %.
    PowerPlus10,
    /// 0x9B: power override -10 %.
    PowerMinus10,
    /// 0x9C: power override +1 %.
    PowerPlus1,
    /// 0x9D: power override -1 %.
    PowerMinus1,
    /// 0x9E: spindle (laser) stop, only honoured in a hold.
    SpindleStop,
}

const REALTIME_BYTES: [(Realtime, u8); 20] = [
    (Realtime::StatusQuery, b'?'),
    (Realtime::FeedHold, b'!'),
    (Realtime::CycleStart, b'~'),
    (Realtime::SoftReset, 0x18),
    (Realtime::SafetyDoor, 0x84),
    (Realtime::JogCancel, 0x85),
    (Realtime::FeedReset, 0x90),
    (Realtime::FeedPlus10, 0x91),
    (Realtime::FeedMinus10, 0x92),
    (Realtime::FeedPlus1, 0x93),
    (Realtime::FeedMinus1, 0x94),
    (Realtime::RapidFull, 0x95),
    (Realtime::RapidHalf, 0x96),
    (Realtime::RapidQuarter, 0x97),
    (Realtime::PowerReset, 0x99),
    (Realtime::PowerPlus10, 0x9A),
    (Realtime::PowerMinus10, 0x9B),
    (Realtime::PowerPlus1, 0x9C),
    (Realtime::PowerMinus1, 0x9D),
    (Realtime::SpindleStop, 0x9E),
];

impl Realtime {
    /// The byte sent on the wire.
    pub fn byte(self) -> u8 {
        REALTIME_BYTES
            .iter()
            .find(|(r, _)| *r == self)
            .map_or(b'?', |(_, b)| *b)
    }

    /// The command a byte stands for, if it is a real-time byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        REALTIME_BYTES
            .iter()
            .find(|(_, b)| *b == byte)
            .map(|(r, _)| *r)
    }
}

// ---------------------------------------------------------------------------------------
// G-code lines

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
    lines: Vec<ProgramLine>,
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
    /// The tool changes (`M6`) of a mill's file, in order.
    pub fn tool_changes(&self) -> Vec<ToolChange> {
        self.split_at_tool_changes()
            .into_iter()
            .filter_map(|s| s.after)
            .collect()
    }

    /// Splits a mill's file at its tool changes. The `M6` words go (GRBL refuses them);
    /// what else their lines say stays at the end of the part before. One part when the
    /// file changes no tool.
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
            segments.push(current);
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

// ---------------------------------------------------------------------------------------
// Replies from GRBL

/// A firmware version from the start-up banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// 1 in `1.1h`.
    pub major: u8,
    /// 1 in `1.1h`.
    pub minor: u8,
    /// `h` in `1.1h`.
    pub letter: Option<char>,
}

impl Version {
    /// GRBL 0.9 and 1.x are understood; 1.1 is what a laser needs (laser mode `$32`).
    pub fn is_supported(&self) -> bool {
        (self.major == 0 && self.minor == 9) || self.major == 1
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(l) = self.letter {
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

/// Reads a start-up banner such as `Grbl 1.1h ['$' for help]` or `Grbl 0.9j ['$' for help]`.
/// GRBL prints it after power-up and after every soft reset (`grbl/main.c`).
pub fn parse_banner(line: &str) -> Option<Version> {
    let rest = line
        .strip_prefix("Grbl ")
        .or_else(|| line.strip_prefix("GrblHAL "))?;
    let token = rest.split_whitespace().next()?;
    let (major, rest) = token.split_once('.')?;
    let major = major.parse().ok()?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let minor = digits.parse().ok()?;
    let letter = rest[digits.len()..]
        .chars()
        .next()
        .filter(char::is_ascii_alphabetic);
    Some(Version {
        major,
        minor,
        letter,
    })
}

/// Reads the version from `$I`'s first line, `[VER:1.1h.20190825:]` (GRBL 1.1); GRBL 0.9
/// prints `[0.9j.20160726:]`.
pub fn parse_build_info(line: &str) -> Option<Version> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix("VER:").unwrap_or(inner);
    let token = inner.split(':').next()?;
    // `1.1h.20190825`: the version is what comes before the build date.
    let version = match token.rsplit_once('.') {
        Some((v, date)) if date.len() >= 6 && date.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => token,
    };
    parse_banner(&format!("Grbl {version}"))
}

/// Reads a `$$` line: `$30=1000` (1.1) or `$30=1000 (spindle max, rpm)` (0.9).
pub fn parse_setting(line: &str) -> Option<(u16, f64)> {
    let rest = line.strip_prefix('$')?;
    let (n, v) = rest.split_once('=')?;
    let n = n.parse().ok()?;
    let v = v.split_whitespace().next()?.parse().ok()?;
    Some((n, v))
}

/// GRBL's settings as read with `$$`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    values: BTreeMap<u16, f64>,
}

impl Settings {
    /// Setting `$n`, if read.
    pub fn get(&self, n: u16) -> Option<f64> {
        self.values.get(&n).copied()
    }

    /// Records `$n=v`.
    pub fn set(&mut self, n: u16, v: f64) {
        self.values.insert(n, v);
    }

    /// All settings, by number.
    pub fn iter(&self) -> impl Iterator<Item = (u16, f64)> + '_ {
        self.values.iter().map(|(k, v)| (*k, *v))
    }

    /// `$30`: the `S` value that means full power.
    pub fn max_power(&self) -> Option<f64> {
        self.get(30)
    }

    /// `$32`: laser mode (GRBL 1.1 only).
    pub fn laser_mode(&self) -> Option<bool> {
        self.get(32).map(|v| v != 0.0)
    }

    /// `$20`: soft limits.
    pub fn soft_limits(&self) -> Option<bool> {
        self.get(20).map(|v| v != 0.0)
    }

    /// `$110`-`$112`: maximum rate of X, Y, Z (0, 1, 2) in mm/min.
    pub fn max_rate(&self, axis: usize) -> Option<f64> {
        self.axis_setting(110, axis)
    }

    /// `$120`-`$122`: acceleration of X, Y, Z in mm/s².
    pub fn acceleration(&self, axis: usize) -> Option<f64> {
        self.axis_setting(120, axis)
    }

    /// `$130`-`$132`: maximum travel of X, Y, Z in mm.
    pub fn max_travel(&self, axis: usize) -> Option<f64> {
        self.axis_setting(130, axis)
    }

    /// `$22`: the homing cycle. Only with it do machine coordinates mean a place on the
    /// machine: without it they start wherever the head stood at power-up.
    pub fn homing(&self) -> Option<bool> {
        self.get(22).map(|v| v != 0.0)
    }

    /// Where machine coordinates of an axis can go once homed, mm: `-$13x..=0`. GRBL
    /// (0.9 and 1.1 as built by default) gives the homed corner the position 0, less the
    /// pull-off, whichever end `$23` homes to, so its machine space is negative
    /// (`system_check_travel_limits` in `grbl/system.c`); a machine homed to the positive
    /// end (`$23=0`, the default) has its work origin at a negative machine position.
    /// `None` without homing or without a travel for the axis.
    pub fn machine_space(&self, axis: usize) -> Option<(f64, f64)> {
        if self.homing() != Some(true) {
            return None;
        }
        self.max_travel(axis)
            .filter(|t| *t > 0.0)
            .map(|t| (-t, 0.0))
    }

    fn axis_setting(&self, base: u16, axis: usize) -> Option<f64> {
        u16::try_from(axis)
            .ok()
            .filter(|a| *a < 3)
            .and_then(|a| self.get(base + a))
    }
}

/// The machine state at the head of a status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// Ready, nothing moving.
    Idle,
    /// Running a job or a move.
    Run,
    /// Feed hold; sub-state 0 means stopped, 1 still slowing down.
    Hold(u8),
    /// Jogging.
    Jog,
    /// Locked by an alarm.
    Alarm,
    /// Safety door open; sub-state as GRBL reports it.
    Door(u8),
    /// Check mode (`$C`): lines are parsed, nothing moves.
    Check,
    /// Homing.
    Home,
    /// Sleeping.
    Sleep,
    /// A state this host does not know.
    Unknown,
}

impl MachineState {
    fn parse(s: &str) -> Self {
        let (name, sub) = match s.split_once(':') {
            Some((n, sub)) => (n, sub.parse().unwrap_or(0)),
            None => (s, 0),
        };
        match name.to_ascii_lowercase().as_str() {
            "idle" => MachineState::Idle,
            "run" => MachineState::Run,
            "hold" | "queue" => MachineState::Hold(sub),
            "jog" => MachineState::Jog,
            "alarm" => MachineState::Alarm,
            "door" => MachineState::Door(sub),
            "check" => MachineState::Check,
            "home" => MachineState::Home,
            "sleep" => MachineState::Sleep,
            _ => MachineState::Unknown,
        }
    }

    /// The state in words, for a sentence: "en alarme", "in alarm".
    pub fn words(self, lang: Lang) -> &'static str {
        use MachineState as S;
        match (self, lang) {
            (S::Idle, Lang::Fr) => "au repos",
            (S::Idle, Lang::En) => "idle",
            (S::Run, Lang::Fr) => "en mouvement",
            (S::Run, Lang::En) => "moving",
            (S::Hold(_), Lang::Fr) => "en pause",
            (S::Hold(_), Lang::En) => "on hold",
            (S::Jog, Lang::Fr) => "en déplacement manuel",
            (S::Jog, Lang::En) => "jogging",
            (S::Alarm, Lang::Fr) => "en alarme",
            (S::Alarm, Lang::En) => "in alarm",
            (S::Door(_), Lang::Fr) => "porte ouverte",
            (S::Door(_), Lang::En) => "with its door open",
            (S::Check, Lang::Fr) => "en mode vérification",
            (S::Check, Lang::En) => "in check mode",
            (S::Home, Lang::Fr) => "en prise d'origine",
            (S::Home, Lang::En) => "homing",
            (S::Sleep, Lang::Fr) => "en veille",
            (S::Sleep, Lang::En) => "asleep",
            (S::Unknown, Lang::Fr) => "dans un état inconnu",
            (S::Unknown, Lang::En) => "in an unknown state",
        }
    }

    /// Whether the machine is standing still and ready to be reset without losing its
    /// position (a reset during motion raises `ALARM:3`, `grbl/main.c`).
    pub fn is_still(self) -> bool {
        matches!(
            self,
            MachineState::Idle
                | MachineState::Hold(0)
                | MachineState::Alarm
                | MachineState::Check
                | MachineState::Door(_)
                | MachineState::Sleep
        )
    }
}

/// A status report, the reply to `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// The machine state.
    pub state: MachineState,
    /// Machine position (`MPos`).
    pub mpos: Option<[f64; 3]>,
    /// Work position (`WPos`).
    pub wpos: Option<[f64; 3]>,
    /// Work coordinate offset (`WCO`); work position = machine position - offset.
    pub wco: Option<[f64; 3]>,
    /// Current feed (`FS:feed,speed` or `F:feed`).
    pub feed: Option<f64>,
    /// Current spindle speed or laser power (`FS`).
    pub power: Option<f64>,
    /// `Bf:blocks,bytes` free in the planner and the receive buffer. Stale by the time it
    /// arrives: for display only, never to steer streaming (`interface.md`).
    pub buffer: Option<(u16, u16)>,
    /// `Ov:feed,rapid,spindle` overrides in percent.
    pub overrides: Option<[u16; 3]>,
    /// `Ln:` the line number being executed.
    pub line: Option<u32>,
}

fn coords(values: &[&str]) -> Option<[f64; 3]> {
    let mut out = [0.0; 3];
    if values.is_empty() {
        return None;
    }
    for (o, v) in out.iter_mut().zip(values) {
        *o = v.trim().parse().ok()?;
    }
    Some(out)
}

/// Reads a status report: GRBL 1.1 `<Idle|MPos:0.000,0.000,0.000|FS:0,0|Bf:15,128>` or
/// GRBL 0.9 `<Idle,MPos:0.000,0.000,0.000,WPos:0.000,0.000,0.000>`. Unknown fields are
/// skipped; a field that does not parse is left out rather than failing the report.
pub fn parse_status(line: &str) -> Option<StatusReport> {
    let inner = line.strip_prefix('<')?.strip_suffix('>')?;
    // Group into (name, values): 1.1 separates fields with `|`; 0.9 uses `,` for both
    // fields and values, and a field starts wherever a token holds a `:`.
    let mut fields: Vec<(&str, Vec<&str>)> = Vec::new();
    let state_text;
    if inner.contains('|') {
        let mut parts = inner.split('|');
        state_text = parts.next()?;
        for p in parts {
            let (name, values) = p.split_once(':').unwrap_or((p, ""));
            fields.push((name, values.split(',').collect()));
        }
    } else {
        let mut parts = inner.split(',');
        state_text = parts.next()?;
        for p in parts {
            match p.split_once(':') {
                Some((name, first)) => fields.push((name, vec![first])),
                None => {
                    if let Some(last) = fields.last_mut() {
                        last.1.push(p);
                    }
                }
            }
        }
    }
    let mut report = StatusReport {
        state: MachineState::parse(state_text),
        mpos: None,
        wpos: None,
        wco: None,
        feed: None,
        power: None,
        buffer: None,
        overrides: None,
        line: None,
    };
    let num = |v: Option<&&str>| v.and_then(|s| s.trim().parse::<f64>().ok());
    for (name, values) in &fields {
        match *name {
            "MPos" => report.mpos = coords(values),
            "WPos" => report.wpos = coords(values),
            "WCO" => report.wco = coords(values),
            "FS" => {
                report.feed = num(values.first());
                report.power = num(values.get(1));
            }
            "F" => report.feed = num(values.first()),
            "Bf" => {
                let b = values.first().and_then(|s| s.trim().parse().ok());
                let r = values.get(1).and_then(|s| s.trim().parse().ok());
                report.buffer = b.zip(r);
            }
            // 0.9 reports the receive buffer as `Buf:n,RX:n`.
            "Ln" => report.line = values.first().and_then(|s| s.trim().parse().ok()),
            "Ov" => {
                let o: Vec<u16> = values
                    .iter()
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
                if let [f, r, s] = o[..] {
                    report.overrides = Some([f, r, s]);
                }
            }
            _ => {}
        }
    }
    Some(report)
}

/// One line from GRBL.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// `ok`: the oldest unacknowledged line was taken.
    Ok,
    /// `error:N`: the oldest unacknowledged line was refused (0 when a 0.9 text is unknown).
    Error(u8),
    /// `ALARM:N`: the machine locked itself (0 when a 0.9 text is unknown).
    Alarm(u8),
    /// The start-up banner: GRBL has just (re)started.
    Banner(Version),
    /// A status report.
    Status(StatusReport),
    /// A `$$` line.
    Setting(u16, f64),
    /// `[MSG:...]`.
    Message(String),
    /// Any other `[...]` or `>...` feedback (`[GC:...]`, `[VER:...]`, start-up lines).
    Feedback(String),
    /// Anything else, kept for the log.
    Other(String),
}

fn code_after(rest: &str, kind: CodeKind) -> u8 {
    let rest = rest.trim();
    if let Ok(n) = rest.parse() {
        return n;
    }
    // GRBL 1.0 printed `error:Invalid gcode ID:24`.
    if let Some(n) = rest
        .rsplit_once(':')
        .and_then(|(_, n)| n.trim().parse().ok())
    {
        return n;
    }
    codes::code_from_text(kind, rest).unwrap_or(0)
}

/// Reads one line (without its line ending) sent by GRBL.
pub fn parse_response(line: &str) -> Response {
    let line = line.trim();
    if line == "ok" {
        return Response::Ok;
    }
    if let Some(rest) = line.strip_prefix("error:") {
        return Response::Error(code_after(rest, CodeKind::Error));
    }
    if let Some(rest) = line.strip_prefix("ALARM:") {
        return Response::Alarm(code_after(rest, CodeKind::Alarm));
    }
    if let Some(v) = parse_banner(line) {
        return Response::Banner(v);
    }
    if line.starts_with('<')
        && let Some(s) = parse_status(line)
    {
        return Response::Status(s);
    }
    if line.starts_with('$')
        && let Some((n, v)) = parse_setting(line)
    {
        return Response::Setting(n, v);
    }
    if let Some(m) = line.strip_prefix("[MSG:").and_then(|m| m.strip_suffix(']')) {
        return Response::Message(m.to_string());
    }
    if line.starts_with('[') || line.starts_with('>') {
        return Response::Feedback(line.to_string());
    }
    Response::Other(line.to_string())
}

// ---------------------------------------------------------------------------------------
// Character counting

/// How lines are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// Keep the receive buffer full: the GRBL-recommended mode for jobs.
    CharCounting,
    /// One line at a time, each waiting for its reply: slow, kept for comparison and for
    /// firmware with unknown buffers.
    SendResponse,
}

/// Receive-buffer accounting: which lines are in GRBL's buffer, and whether another fits.
///
/// Each entry holds a line's byte count, newline included. A reply frees the oldest entry:
/// GRBL answers strictly in order. A line that writes EEPROM ([`is_eeprom_write`]) is sent
/// only into an empty buffer and nothing follows it until its reply.
#[derive(Debug, Clone)]
pub struct CharCounter<T> {
    capacity: usize,
    mode: StreamMode,
    in_flight: VecDeque<(T, usize, bool)>,
    bytes: usize,
}

impl<T> CharCounter<T> {
    /// A counter for a buffer of `capacity` bytes.
    pub fn new(capacity: usize, mode: StreamMode) -> Self {
        CharCounter {
            capacity,
            mode,
            in_flight: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Whether a line of `len` bytes (newline included) may be sent now.
    pub fn can_send(&self, len: usize, sync: bool) -> bool {
        if self.in_flight.back().is_some_and(|(_, _, s)| *s) {
            return false;
        }
        if sync || self.mode == StreamMode::SendResponse {
            return self.in_flight.is_empty();
        }
        self.bytes + len <= self.capacity
    }

    /// Records a line of `len` bytes as sent.
    pub fn sent(&mut self, tag: T, len: usize, sync: bool) {
        self.bytes += len;
        self.in_flight.push_back((tag, len, sync));
    }

    /// Frees the oldest line on a reply and returns its tag; `None` when nothing was in
    /// flight (a reply nobody asked for).
    pub fn acked(&mut self) -> Option<T> {
        let (tag, len, _) = self.in_flight.pop_front()?;
        self.bytes -= len;
        Some(tag)
    }

    /// Forgets every line (GRBL cleared its buffer in a reset), oldest first.
    pub fn clear(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.in_flight.drain(..).map(|(t, _, _)| t).collect()
    }

    /// Bytes in GRBL's buffer by this count.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lines awaiting a reply.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether nothing awaits a reply.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// Safety

/// Proof that a person is at the machine and asked for this laser job to start.
///
/// A laser never starts by itself: the only way to start a cut is
/// [`Session::start_cut`], and it takes this token by value, so each start needs its own
/// confirmation. Construct it **only** in an interactive start path: the start button on
/// the machine's page pressed by a signed-in, trained person standing at the machine, or
/// the `fabrique stream` command when a person answers its terminal prompt or passes
/// `--i-am-at-the-machine`. Schedulers, queues and remote API calls must never build one.
/// The token is not `Clone`, `Default` or deserialisable, and it goes stale after
/// [`Config::confirmation_ttl`], so a confirmation cannot be stored and replayed later.
/// The workspace's `clippy.toml` can list [`PersonAtMachine::confirmed_at_the_machine`]
/// under `disallowed-methods`, so that every sanctioned call site carries an explicit
/// `#[allow(clippy::disallowed_methods)]` a reviewer can see.
#[derive(Debug)]
pub struct PersonAtMachine {
    who: String,
    confirmed_at: Instant,
}

impl PersonAtMachine {
    /// `who` confirmed, at `at`, that they stand at the machine and start this job.
    pub fn confirmed_at_the_machine(who: impl Into<String>, at: Instant) -> Self {
        PersonAtMachine {
            who: who.into(),
            confirmed_at: at,
        }
    }

    /// Who confirmed.
    pub fn who(&self) -> &str {
        &self.who
    }
}

/// The work area of the machine's profile, with its origin at the lower-left corner, as
/// laser senders place jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkArea {
    /// Usable width along X, mm.
    pub width: f64,
    /// Usable depth along Y, mm.
    pub height: f64,
}

/// Why a job was not started. Nothing was sent to the machine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The link is not ready (start-up or settings not finished, or closed).
    #[error("the machine is not connected and ready")]
    NotReady,
    /// A job or command is still running.
    #[error("the machine is busy")]
    Busy,
    /// The machine is not idle (alarm, door, hold...).
    #[error("the machine is not idle ({0:?})")]
    NotIdle(Option<MachineState>),
    /// `$32` is 0, or missing (GRBL 0.9 has no laser mode).
    #[error("laser mode ($32) is off")]
    LaserModeOff,
    /// `$30` was not read.
    #[error("the maximum power ($30) is unknown")]
    MaxPowerUnknown,
    /// An `S` value above `$30`.
    #[error("line {line} asks for power S{power}, above the maximum $30={max}")]
    PowerTooHigh {
        /// File line.
        line: usize,
        /// The `S` asked.
        power: f64,
        /// `$30`.
        max: f64,
    },
    /// A position outside the work area or the travel.
    #[error("line {line} goes to {axis}={value:.1} mm, outside 0..{limit:.1} mm")]
    OutOfBounds {
        /// File line.
        line: usize,
        /// 'X' or 'Y'.
        axis: char,
        /// Where it goes.
        value: f64,
        /// The usable length of that axis.
        limit: f64,
    },
    /// A position that, with the machine's work offset, leaves its travel.
    #[error("line {line} goes to machine {axis}={value:.1} mm, outside {min:.1}..{max:.1} mm")]
    OutsideTravel {
        /// File line.
        line: usize,
        /// 'X' or 'Y'.
        axis: char,
        /// Where it goes, in machine coordinates.
        value: f64,
        /// The machine space of that axis.
        min: f64,
        max: f64,
    },
    /// `$32` is 1 on a mill: GRBL would stop the spindle on every rapid move and start
    /// cutting before it is back up to speed.
    #[error("laser mode ($32) is on, on a mill")]
    LaserModeOnMill,
    /// `$30` was not read, on a mill.
    #[error("the maximum spindle speed ($30) is unknown")]
    MaxSpeedUnknown,
    /// An `S` value above `$30`, on a mill.
    #[error("line {line} asks for S{speed} rpm, above the maximum $30={max}")]
    SpindleTooFast {
        /// File line.
        line: usize,
        /// The `S` asked.
        speed: f64,
        /// `$30`.
        max: f64,
    },
    /// `M7` or `M8` on a mill that has no such coolant.
    #[error("line {line} turns on coolant the machine does not have")]
    NoCoolant {
        /// File line.
        line: usize,
        /// `M7` rather than `M8`.
        mist: bool,
    },
    /// A mill's file goes deeper, from its highest to its lowest Z, than the Z travel.
    #[error("line {line} makes the Z span {span:.1} mm, more than the travel {travel:.1} mm")]
    DepthTooLarge {
        /// The file line of the lowest Z.
        line: usize,
        /// Highest Z − lowest Z.
        span: f64,
        /// `$132`, or the profile's height.
        travel: f64,
    },
    /// The file moves somewhere this check cannot know.
    #[error("line {0} changes coordinates (G92/G10/G28/G30/G53); bounds cannot be checked")]
    UnknowableBounds(usize),
    /// A `$` system command inside the job (it could turn laser mode off or change limits
    /// mid-job).
    #[error("line {0} is a `$` system command, not allowed in a job")]
    SystemCommand(usize),
    /// The confirmation is older than allowed.
    #[error("the confirmation that a person is at the machine is too old")]
    StaleConfirmation,
    /// The program has no lines.
    #[error("the file is empty")]
    Empty,
}

impl Refusal {
    /// What happened and what to do, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        use Refusal as R;
        match (self, lang) {
            (R::NotReady, Lang::Fr) => "La machine n'est pas connectée ou pas prête. Vérifiez le câble et l'alimentation, puis reconnectez.".into(),
            (R::NotReady, Lang::En) => "The machine is not connected or not ready. Check the cable and power, then connect again.".into(),
            (R::Busy, Lang::Fr) => "La machine est déjà occupée. Attendez la fin du travail en cours.".into(),
            (R::Busy, Lang::En) => "The machine is already busy. Wait for the current job to end.".into(),
            (R::NotIdle(Some(MachineState::Alarm)), Lang::Fr) => "La machine est en alarme (après sa mise sous tension, une fin de course ou un arrêt) : elle ne bouge plus tant qu'on ne fait pas sa prise d'origine ($H) ou qu'on ne la déverrouille pas ($X). Vérifiez la tête et la pièce, puis faites-le depuis la machine.".into(),
            (R::NotIdle(Some(MachineState::Alarm)), Lang::En) => "The machine is in alarm (after power-up, a limit switch or a stop): it will not move until it is homed ($H) or unlocked ($X). Check the head and the work piece, then do it at the machine.".into(),
            (R::NotIdle(Some(s)), Lang::Fr) => format!("La machine n'est pas au repos : elle est {}. Attendez qu'elle le soit, ou reprenez-la depuis la machine, avant de lancer.", s.words(Lang::Fr)),
            (R::NotIdle(Some(s)), Lang::En) => format!("The machine is not idle: it is {}. Wait until it is, or take it back at the machine, before starting.", s.words(Lang::En)),
            (R::NotIdle(None), Lang::Fr) => "La machine n'a pas encore donné son état. Attendez quelques secondes et relancez.".into(),
            (R::NotIdle(None), Lang::En) => "The machine has not reported its state yet. Wait a few seconds and start again.".into(),
            (R::LaserModeOff, Lang::Fr) => "Le mode laser ($32=1) n'est pas activé : le laser resterait allumé aux arrêts et brûlerait le matériau. Demandez au responsable de régler $32=1.".into(),
            (R::LaserModeOff, Lang::En) => "Laser mode ($32=1) is off: the laser would stay on at every stop and burn the material. Ask the fab manager to set $32=1.".into(),
            (R::MaxPowerUnknown, Lang::Fr) => "La puissance maximale ($30) de la machine est inconnue ; impossible de vérifier le fichier. Reconnectez la machine.".into(),
            (R::MaxPowerUnknown, Lang::En) => "The machine's maximum power ($30) is unknown, so the file cannot be checked. Connect the machine again.".into(),
            (R::PowerTooHigh { line, power, max }, Lang::Fr) => format!("La ligne {line} demande une puissance S{power}, plus que le maximum de la machine ($30={max}). Réglez la puissance dans le logiciel de découpe."),
            (R::PowerTooHigh { line, power, max }, Lang::En) => format!("Line {line} asks for power S{power}, more than the machine's maximum ($30={max}). Set the power in the cutting software."),
            (R::OutOfBounds { line, axis, value, limit }, Lang::Fr) => format!("Le dessin sort de la zone de travail : la ligne {line} va à {axis}={value:.1} mm, alors que la zone va de 0 à {limit:.1} mm. Replacez le dessin dans la zone."),
            (R::OutOfBounds { line, axis, value, limit }, Lang::En) => format!("The drawing leaves the work area: line {line} goes to {axis}={value:.1} mm, while the area spans 0 to {limit:.1} mm. Move the drawing into the area."),
            (R::OutsideTravel { line, axis, value, min, max }, Lang::Fr) => format!("Avec l'origine de travail réglée sur la machine, le dessin sort de sa course : la ligne {line} l'envoie à {axis}={value:.1} mm en coordonnées machine, alors qu'elle va de {min:.1} à {max:.1} mm. Placez l'origine ailleurs sur le matériau ou déplacez le dessin."),
            (R::OutsideTravel { line, axis, value, min, max }, Lang::En) => format!("With the work origin set on the machine, the drawing leaves its travel: line {line} sends it to {axis}={value:.1} mm in machine coordinates, while the machine spans {min:.1} to {max:.1} mm. Set the origin elsewhere on the material or move the drawing."),
            (R::LaserModeOnMill, Lang::Fr) => "Le mode laser ($32=1) est activé sur une fraiseuse : la broche s'arrêterait à chaque déplacement rapide et l'outil entrerait dans la matière avant d'avoir repris sa vitesse. Demandez au responsable de régler $32=0.".into(),
            (R::LaserModeOnMill, Lang::En) => "Laser mode ($32=1) is on, on a mill: the spindle would stop at every rapid move and the tool would enter the material before it is back up to speed. Ask the fab manager to set $32=0.".into(),
            (R::MaxSpeedUnknown, Lang::Fr) => "La vitesse maximale de la broche ($30) est inconnue ; impossible de vérifier le fichier. Reconnectez la machine.".into(),
            (R::MaxSpeedUnknown, Lang::En) => "The spindle's maximum speed ($30) is unknown, so the file cannot be checked. Connect the machine again.".into(),
            (R::SpindleTooFast { line, speed, max }, Lang::Fr) => format!("La ligne {line} demande une broche à S{speed} tr/min, plus que le maximum de la machine ($30={max}). Réglez la vitesse dans le logiciel de FAO."),
            (R::SpindleTooFast { line, speed, max }, Lang::En) => format!("Line {line} asks for the spindle at S{speed} rpm, more than the machine's maximum ($30={max}). Set the speed in the CAM software."),
            (R::NoCoolant { line, mist: true }, Lang::Fr) => format!("La ligne {line} demande l'arrosage par brouillard (M7), que cette machine n'a pas. Réexportez sans arrosage, ou demandez au responsable."),
            (R::NoCoolant { line, mist: true }, Lang::En) => format!("Line {line} asks for mist coolant (M7), which this machine does not have. Export again without coolant, or ask the fab manager."),
            (R::NoCoolant { line, mist: false }, Lang::Fr) => format!("La ligne {line} demande l'arrosage (M8), que cette machine n'a pas. Réexportez sans arrosage, ou demandez au responsable."),
            (R::NoCoolant { line, mist: false }, Lang::En) => format!("Line {line} asks for flood coolant (M8), which this machine does not have. Export again without coolant, or ask the fab manager."),
            (R::DepthTooLarge { line, span, travel }, Lang::Fr) => format!("Le fichier monte et descend de {span:.1} mm en Z (ligne {line}), plus que la course de la machine ({travel:.1} mm). Vérifiez la profondeur et la hauteur de dégagement dans le logiciel de FAO."),
            (R::DepthTooLarge { line, span, travel }, Lang::En) => format!("The file spans {span:.1} mm in Z (line {line}), more than the machine's travel ({travel:.1} mm). Check the depth and the clearance height in the CAM software."),
            (R::UnknowableBounds(line), Lang::Fr) => format!("La ligne {line} change le repère de la machine (G92, G10, G28, G30 ou G53) : Fabrique ne peut pas vérifier que le dessin reste dans la zone. Réexportez sans ces commandes."),
            (R::UnknowableBounds(line), Lang::En) => format!("Line {line} changes the machine's coordinates (G92, G10, G28, G30 or G53): Fabrique cannot check that the drawing stays in the area. Export again without them."),
            (R::SystemCommand(line), Lang::Fr) => format!("La ligne {line} est une commande de réglage « $ » : elle pourrait changer la machine pendant la découpe. Retirez-la du fichier."),
            (R::SystemCommand(line), Lang::En) => format!("Line {line} is a '$' settings command: it could change the machine during the cut. Remove it from the file."),
            (R::StaleConfirmation, Lang::Fr) => "La confirmation de présence devant la machine est trop ancienne. Appuyez de nouveau sur Démarrer, devant la machine.".into(),
            (R::StaleConfirmation, Lang::En) => "The confirmation that you are at the machine is too old. Press Start again, at the machine.".into(),
            (R::Empty, Lang::Fr) => "Le fichier ne contient aucune commande.".into(),
            (R::Empty, Lang::En) => "The file holds no commands.".into(),
        }
    }
}

/// What a GRBL machine's head carries: it decides how a job is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tool {
    /// A laser: `$32=1`, `S` is power.
    #[default]
    Laser,
    /// A mill's spindle: `$32=0`, `S` is speed in rpm; `M6` is a tool change.
    Spindle {
        /// The coolant the machine has.
        coolant: Coolant,
    },
}

/// The coolant a mill has, as its profile says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coolant {
    /// None: a file that asks for it is refused.
    #[default]
    None,
    /// Flood (`M8`).
    Flood,
    /// Flood and mist (`M8`, `M7`).
    FloodAndMist,
}

/// Checks a job for a machine carrying `tool`: [`check_laser_job`] or [`check_mill_job`].
pub fn check_job(
    program: &Program,
    settings: &Settings,
    area: WorkArea,
    work_offset: Option<[f64; 3]>,
    tool: Tool,
) -> Result<(), Refusal> {
    match tool {
        Tool::Laser => check_laser_job(program, settings, area, work_offset),
        Tool::Spindle { coolant } => check_mill_job(program, settings, area, work_offset, coolant),
    }
}

/// Checks a laser job against the machine's settings and work area: laser mode on, every
/// `S` at most `$30`, and every position inside the machine (see [`check_bounds`]).
pub fn check_laser_job(
    program: &Program,
    settings: &Settings,
    area: WorkArea,
    work_offset: Option<[f64; 3]>,
) -> Result<(), Refusal> {
    if program.lines().is_empty() {
        return Err(Refusal::Empty);
    }
    // Without laser mode GRBL stops and keeps the laser on at each change of S between moves
    // and fires at rest with M3 (`doc/markdown/laser_mode.md`).
    if settings.laser_mode() != Some(true) {
        return Err(Refusal::LaserModeOff);
    }
    if let Some(l) = program.lines().iter().find(|l| l.text.starts_with('$')) {
        return Err(Refusal::SystemCommand(l.number));
    }
    let max = settings.max_power().ok_or(Refusal::MaxPowerUnknown)?;
    let ext = program.extent();
    if let Some((power, line)) = ext.max_power
        && power > max
    {
        return Err(Refusal::PowerTooHigh { line, power, max });
    }
    check_bounds(&ext, settings, area, work_offset, false)
}

/// Checks a mill's job (all its parts, tool changes included): laser mode off, every `S`
/// at most `$30` rpm, coolant only if the machine has it, and every position inside the
/// machine, Z included (see [`check_bounds`]).
pub fn check_mill_job(
    program: &Program,
    settings: &Settings,
    area: WorkArea,
    work_offset: Option<[f64; 3]>,
    coolant: Coolant,
) -> Result<(), Refusal> {
    if program.lines().is_empty() {
        return Err(Refusal::Empty);
    }
    if settings.laser_mode() == Some(true) {
        return Err(Refusal::LaserModeOnMill);
    }
    if let Some(l) = program.lines().iter().find(|l| l.text.starts_with('$')) {
        return Err(Refusal::SystemCommand(l.number));
    }
    let max = settings.max_power().ok_or(Refusal::MaxSpeedUnknown)?;
    let ext = program.extent();
    if let Some((speed, line)) = ext.max_power
        && speed > max
    {
        return Err(Refusal::SpindleTooFast { line, speed, max });
    }
    let [mist, flood] = ext.coolant;
    if let Some(line) = mist.filter(|_| coolant != Coolant::FloodAndMist) {
        return Err(Refusal::NoCoolant { line, mist: true });
    }
    if let Some(line) = flood.filter(|_| coolant == Coolant::None) {
        return Err(Refusal::NoCoolant { line, mist: false });
    }
    check_bounds(&ext, settings, area, work_offset, true)
}

/// Every position inside the machine. With homing on and the work offset known (`WCO`,
/// GRBL's work position = machine position − offset), positions are checked where they
/// land in machine space ([`Settings::machine_space`]), wherever the work origin was set;
/// otherwise X and Y against the profile's work area and `$130`/`$131` from a work origin
/// at the lower-left corner, and (`with_z`, a mill) Z's span against `$132`: the origin is
/// on the material's top, wherever that is.
fn check_bounds(
    ext: &Extent,
    settings: &Settings,
    area: WorkArea,
    work_offset: Option<[f64; 3]>,
    with_z: bool,
) -> Result<(), Refusal> {
    if let Some(line) = ext.unknowable {
        return Err(Refusal::UnknowableBounds(line));
    }
    const EPS: f64 = 1e-6;
    let axes: &[(usize, char)] = if with_z {
        &[(0, 'X'), (1, 'Y'), (2, 'Z')]
    } else {
        &[(0, 'X'), (1, 'Y')]
    };
    let machine = |a: usize| Some((settings.machine_space(a)?, work_offset?[a]));
    if axes.iter().all(|(a, _)| machine(*a).is_some()) {
        for &(a, axis) in axes {
            let Some(((min, max), offset)) = machine(a) else {
                continue;
            };
            let outside = [ext.min[a], ext.max[a]]
                .into_iter()
                .flatten()
                .map(|(value, line)| (value + offset, line))
                .find(|(value, _)| *value < min - EPS || *value > max + EPS);
            if let Some((value, line)) = outside {
                return Err(Refusal::OutsideTravel {
                    line,
                    axis,
                    value,
                    min,
                    max,
                });
            }
        }
        return Ok(());
    }
    for (a, axis, area_len) in [(0, 'X', area.width), (1, 'Y', area.height)] {
        let limit = settings.max_travel(a).map_or(area_len, |t| t.min(area_len));
        if let Some((value, line)) = ext.min[a]
            && value < -EPS
        {
            return Err(Refusal::OutOfBounds {
                line,
                axis,
                value,
                limit,
            });
        }
        if let Some((value, line)) = ext.max[a]
            && value > limit + EPS
        {
            return Err(Refusal::OutOfBounds {
                line,
                axis,
                value,
                limit,
            });
        }
    }
    if with_z
        && let (Some((low, line)), Some((high, _)), Some(travel)) = (
            ext.min[2],
            ext.max[2],
            settings.max_travel(2).filter(|t| *t > 0.0),
        )
        && high - low > travel + EPS
    {
        return Err(Refusal::DepthTooLarge {
            line,
            span: high - low,
            travel,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Session

/// After the last `ok` of a cut, how long before an `Idle` report means the end.
const DRAIN_GUARD: Duration = Duration::from_millis(50);

/// Tunables of a [`Session`].
#[derive(Debug, Clone)]
pub struct Config {
    /// GRBL's receive buffer, 128 on an Uno.
    pub rx_buffer: usize,
    /// How job lines are paced.
    pub mode: StreamMode,
    /// How often `?` is sent. bCNC uses 125 ms, UGS 200 ms; GRBL advises at most 5-10 Hz.
    pub status_interval: Duration,
    /// How long to wait for the banner after a reset.
    pub banner_timeout: Duration,
    /// How long to wait, after a feed hold, for the machine to stand still before the
    /// soft reset (a reset while moving loses the position, `ALARM:3`).
    pub hold_settle: Duration,
    /// How long the machine may stay idle while lines still await their reply before the
    /// reply is declared lost (LaserGRBL uses 10 s).
    pub stuck_after: Duration,
    /// How long a job may go without progress (neither the position nor the acknowledged
    /// lines change) while the machine says `Run` or `Hold` nobody asked for, or says
    /// nothing, before it counts as stuck: held, reset, and the job failed.
    pub stall_after: Duration,
    /// How old a [`PersonAtMachine`] may be when the cut starts.
    pub confirmation_ttl: Duration,
    /// What the head carries, for the checks before a cut.
    pub tool: Tool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rx_buffer: DEFAULT_RX_BUFFER,
            mode: StreamMode::CharCounting,
            status_interval: Duration::from_millis(200),
            banner_timeout: Duration::from_secs(5),
            hold_settle: Duration::from_secs(1),
            stuck_after: Duration::from_secs(10),
            stall_after: Duration::from_secs(30),
            confirmation_ttl: Duration::from_secs(120),
            tool: Tool::Laser,
        }
    }
}

/// A cut or a check-mode dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The laser cuts.
    Cut,
    /// `$C` check mode: GRBL parses every line without moving or firing.
    DryRun,
}

/// How one job line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// `ok`.
    Ok,
    /// `error:N`.
    Error(u8),
    /// Sent, but the reply never came: the job stopped first (reset, lost link).
    Unconfirmed,
}

/// A line GRBL refused, by its place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineError {
    /// 1-based file line.
    pub line: usize,
    /// GRBL error code.
    pub code: u8,
}

impl LineError {
    /// `Line N: what to do`, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        let what = codes::message(CodeKind::Error, self.code, lang);
        match lang {
            Lang::Fr => format!("Ligne {} (erreur {}) : {what}", self.line, self.code),
            Lang::En => format!("Line {} (error {}): {what}", self.line, self.code),
        }
    }
}

/// A job that ran to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// Cut or dry run.
    pub kind: JobKind,
    /// Lines sent and acknowledged.
    pub lines: usize,
    /// Lines GRBL refused (a dry run goes on past them; a cut never has any here).
    pub errors: Vec<LineError>,
}

/// Why a job stopped before its end. The machine was held then reset: laser off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// GRBL refused a line.
    Error(LineError),
    /// GRBL raised `ALARM:N`.
    Alarm(u8),
    /// GRBL restarted by itself (its banner arrived mid-job).
    UnexpectedReset,
    /// The link closed or failed.
    Disconnected,
    /// A person cancelled.
    Cancelled,
    /// The machine sat idle while a line never got its reply.
    ReplyLost {
        /// File line of the oldest unacknowledged line.
        line: usize,
    },
    /// The machine made no progress for [`Config::stall_after`] while it said `Run` or
    /// `Hold` (or stopped reporting): no move, no line acknowledged.
    Stalled {
        /// The state it last reported; `None` when it stopped reporting.
        state: Option<MachineState>,
        /// File line of the oldest unacknowledged line, or the last line.
        line: usize,
    },
}

impl FailReason {
    /// What happened and what to do, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (FailReason::Error(e), _) => e.message(lang),
            (FailReason::Alarm(n), Lang::Fr) => format!(
                "Alarme {n} : {}",
                codes::message(CodeKind::Alarm, *n, lang)
            ),
            (FailReason::Alarm(n), Lang::En) => format!(
                "Alarm {n}: {}",
                codes::message(CodeKind::Alarm, *n, lang)
            ),
            (FailReason::UnexpectedReset, Lang::Fr) => "La machine a redémarré toute seule pendant le travail (coupure, câble, parasite). Le travail est arrêté ; vérifiez la pièce et le câble USB avant de relancer.".into(),
            (FailReason::UnexpectedReset, Lang::En) => "The machine restarted by itself during the job (power, cable, interference). The job is stopped; check the work piece and the USB cable before starting again.".into(),
            (FailReason::Disconnected, Lang::Fr) => "La liaison avec la machine est perdue. Vérifiez que le laser ou la broche est arrêté, puis le câble USB.".into(),
            (FailReason::Disconnected, Lang::En) => "The link to the machine was lost. Check the laser or the spindle is off, then the USB cable.".into(),
            (FailReason::Cancelled, Lang::Fr) => "Travail annulé ; la machine est arrêtée, laser ou broche éteint.".into(),
            (FailReason::Cancelled, Lang::En) => "Job cancelled; the machine is stopped, laser or spindle off.".into(),
            (FailReason::ReplyLost { line }, Lang::Fr) => format!("La machine n'a jamais confirmé la ligne {line} et reste immobile. Le travail est arrêté ; vérifiez le câble USB."),
            (FailReason::ReplyLost { line }, Lang::En) => format!("The machine never confirmed line {line} and stands still. The job is stopped; check the USB cable."),
            (FailReason::Stalled { state, line }, Lang::Fr) => format!("La machine n'avance plus depuis la ligne {line} ({}). Le travail est arrêté et la machine remise à zéro, laser ou broche éteint ; vérifiez la pièce et la machine avant de relancer.", stalled_state(*state, lang)),
            (FailReason::Stalled { state, line }, Lang::En) => format!("The machine has made no progress since line {line} ({}). The job is stopped and the machine reset, laser or spindle off; check the work piece and the machine before starting again.", stalled_state(*state, lang)),
        }
    }
}

fn stalled_state(state: Option<MachineState>, lang: Lang) -> &'static str {
    match (state, lang) {
        (Some(MachineState::Hold(_)), Lang::Fr) => "en pause sans que personne ne l'ait demandé",
        (Some(MachineState::Hold(_)), Lang::En) => "held without anyone asking",
        (None, Lang::Fr) => "elle ne donne plus son état",
        (None, Lang::En) => "it stopped reporting its state",
        (_, Lang::Fr) => "en marche sans bouger",
        (_, Lang::En) => "running without moving",
    }
}

/// Where a job last made progress: the position and acknowledged lines seen, and since when.
#[derive(Debug, Clone, Copy)]
struct LastProgress {
    /// `None` right after a resume: the clock restarts at the next tick.
    since: Option<Instant>,
    position: Option<[f64; 3]>,
    acked: usize,
}

/// Something the owner of a [`Session`] should know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The banner arrived after the first reset.
    Connected(Version),
    /// `$$` finished; the session is ready.
    Settings(Settings),
    /// A status report.
    Status(StatusReport),
    /// A job line ended.
    Line {
        /// Index in the program.
        index: usize,
        /// 1-based file line.
        number: usize,
        /// How.
        outcome: LineOutcome,
    },
    /// A command sent with [`Session::send_command`] ended.
    Command {
        /// The command.
        text: String,
        /// How.
        outcome: LineOutcome,
    },
    /// `ALARM:N`.
    Alarm(u8),
    /// `[MSG:...]`.
    Message(String),
    /// Other feedback, or a line the session did not understand.
    Feedback(String),
    /// A reply arrived when no line awaited one: logged, ignored.
    UnexpectedReply(String),
    /// The banner after a reset the session asked for.
    Reset,
    /// A banner nobody asked for.
    UnexpectedReset,
    /// A job ran to its end.
    JobDone(JobSummary),
    /// A job stopped early; the hold and the soft reset were written before this event.
    JobFailed(FailReason),
    /// Start-up failed: no banner, or a version this host does not speak.
    ConnectFailed(ConnectFailure),
    /// The link is gone; the session is closed.
    LinkLost,
}

/// Why start-up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No banner within [`Config::banner_timeout`].
    NoBanner,
    /// A banner of a version this host does not speak.
    Unsupported(Version),
    /// `$$` went unanswered, even after a second soft reset.
    NoSettings,
}

/// What the session wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Bytes to write to the machine, in this order.
    Write(Vec<u8>),
    /// Something to tell the owner.
    Event(Event),
}

#[derive(Debug, Clone, PartialEq)]
enum Tag {
    Job(usize),
    Command(String),
    ReadSettings,
    EnterCheck,
    LeaveCheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    AwaitBanner { deadline: Instant, first: bool },
    ReadingSettings,
    Ready,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Streaming,
    /// Every line acknowledged; waiting for the machine to finish moving.
    Draining {
        since: Instant,
    },
    /// Held; waiting to stand still before the reset.
    Stopping {
        reason: FailReason,
        deadline: Instant,
    },
    /// Dry run: `$C` sent again to leave check mode; GRBL resets after it.
    LeavingCheck,
}

#[derive(Debug)]
struct Job {
    kind: JobKind,
    lines: Vec<ProgramLine>,
    next: usize,
    acked: usize,
    errors: Vec<LineError>,
    stage: Stage,
}

/// One connection to a GRBL machine, without I/O.
///
/// Feed it what the machine sent with [`receive`](Self::receive), call
/// [`tick`](Self::tick) at [`next_deadline`](Self::next_deadline), and perform every
/// [`Output`] from [`poll_output`](Self::poll_output) in order.
#[derive(Debug)]
pub struct Session {
    config: Config,
    phase: Phase,
    counter: CharCounter<Tag>,
    queue: VecDeque<(Tag, String)>,
    job: Option<Job>,
    settings: Settings,
    version: Option<Version>,
    status: Option<StatusReport>,
    /// The work offset (`WCO`) last reported since the last reset: GRBL 1.1 sends it in the
    /// first report after a reset and every 10 to 30 reports; 0.9 reports both positions.
    work_offset: Option<[f64; 3]>,
    status_since_reset: bool,
    next_status: Option<Instant>,
    idle_since: Option<Instant>,
    progress: LastProgress,
    last_reply: Option<Instant>,
    settings_deadline: Option<Instant>,
    settings_retried: bool,
    paused: bool,
    partial: Vec<u8>,
    out: VecDeque<Output>,
}

impl Session {
    /// A session that has not started yet; call [`start`](Self::start).
    pub fn new(config: Config) -> Self {
        let counter = CharCounter::new(config.rx_buffer, config.mode);
        Session {
            config,
            phase: Phase::New,
            counter,
            queue: VecDeque::new(),
            job: None,
            settings: Settings::default(),
            version: None,
            status: None,
            work_offset: None,
            status_since_reset: false,
            next_status: None,
            idle_since: None,
            progress: LastProgress {
                since: None,
                position: None,
                acked: 0,
            },
            last_reply: None,
            settings_deadline: None,
            settings_retried: false,
            paused: false,
            partial: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Settings read with `$$`.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Firmware version from the banner.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The latest status report.
    pub fn status(&self) -> Option<&StatusReport> {
        self.status.as_ref()
    }

    /// The work offset last reported: work position = machine position − offset.
    pub fn work_offset(&self) -> Option<[f64; 3]> {
        self.work_offset
    }

    /// Whether start-up and `$$` are done and the link is open.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Whether the session is closed (link lost or start-up failed).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether a job (or its stop sequence) is under way.
    pub fn job_running(&self) -> bool {
        self.job.is_some()
    }

    /// Whether a soft reset was sent and its banner not yet received.
    pub fn awaiting_reset(&self) -> bool {
        matches!(self.phase, Phase::AwaitBanner { .. })
    }

    /// Whether a status report arrived since the last banner.
    pub fn has_fresh_status(&self) -> bool {
        self.status_since_reset
    }

    /// Whether commands sent with [`send_command`](Self::send_command) still await replies.
    pub fn commands_pending(&self) -> bool {
        !self.queue.is_empty() || !self.counter.is_empty()
    }

    /// Bytes in GRBL's receive buffer by the count.
    pub fn in_flight_bytes(&self) -> usize {
        self.counter.bytes()
    }

    /// The next thing the session must write or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn write(&mut self, bytes: Vec<u8>) {
        self.out.push_back(Output::Write(bytes));
    }

    fn write_realtime(&mut self, r: Realtime) {
        self.write(vec![r.byte()]);
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    /// Opens the session: a soft reset, so GRBL starts from a known state and prints its
    /// banner (`grbl/main.c`). Boards that reset when the port opens print a banner too;
    /// either is accepted.
    pub fn start(&mut self, now: Instant) {
        self.write_realtime(Realtime::SoftReset);
        self.phase = Phase::AwaitBanner {
            deadline: now + self.config.banner_timeout,
            first: true,
        };
    }

    /// When [`tick`](Self::tick) must next run.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut add = |t: Instant| d = Some(d.map_or(t, |d| d.min(t)));
        match self.phase {
            Phase::AwaitBanner { deadline, .. } => add(deadline),
            Phase::ReadingSettings | Phase::Ready => {
                if let Some(t) = self.next_status {
                    add(t);
                }
                if self.phase == Phase::ReadingSettings
                    && let Some(t) = self.settings_deadline
                {
                    add(t);
                }
            }
            Phase::New | Phase::Closed => {}
        }
        if let Some(job) = &self.job {
            if let Stage::Stopping { deadline, .. } = job.stage {
                add(deadline);
            }
            if let (Stage::Streaming, Some(idle)) = (job.stage, self.idle_since) {
                let from = self.last_reply.map_or(idle, |r| r.max(idle));
                add(from + self.config.stuck_after);
            }
            if self.stall_watched()
                && let Some(since) = self.progress.since
            {
                add(since + self.config.stall_after);
            }
        }
        d
    }

    /// Whether a lack of progress would now be a fault: a cut or dry run under way, not
    /// paused by a person, the machine saying `Run`, `Hold`, `Jog` or something unknown,
    /// or nothing at all. An idle machine waiting for a reply has its own guard
    /// ([`Config::stuck_after`]); an alarm fails the job by itself; an open door waits for
    /// the person at the machine.
    fn stall_watched(&self) -> bool {
        let Some(job) = &self.job else {
            return false;
        };
        if self.paused || !matches!(job.stage, Stage::Streaming | Stage::Draining { .. }) {
            return false;
        }
        match self.status.as_ref().map(|s| s.state) {
            None => true,
            Some(state) => matches!(
                state,
                MachineState::Run
                    | MachineState::Hold(_)
                    | MachineState::Jog
                    | MachineState::Unknown
            ),
        }
    }

    /// Records what the machine says of its progress; any change restarts the clock.
    fn note_progress(&mut self, position: Option<[f64; 3]>, now: Instant) {
        let acked = self.job.as_ref().map_or(0, |j| j.acked);
        let p = self.progress;
        let moved = position.is_some() && position != p.position;
        if moved || acked != p.acked || p.since.is_none() {
            self.progress = LastProgress {
                since: Some(now),
                position: position.or(p.position),
                acked,
            };
        }
    }

    /// Runs timers: status polling, reset and hold time-outs, lost replies.
    pub fn tick(&mut self, now: Instant) {
        if let Phase::AwaitBanner { deadline, first } = self.phase
            && now >= deadline
        {
            if first {
                self.phase = Phase::Closed;
                self.emit(Event::ConnectFailed(ConnectFailure::NoBanner));
            } else {
                // A reset we asked for went unanswered; keep talking, the next status
                // report says where the machine stands.
                self.emit(Event::Feedback("no banner after soft reset".into()));
                self.phase = Phase::Ready;
                self.next_status = Some(now);
                self.finish_dry_run();
            }
        }
        if self.phase == Phase::ReadingSettings && self.settings_deadline.is_some_and(|t| now >= t)
        {
            self.settings_unanswered(now);
        }
        if matches!(self.phase, Phase::ReadingSettings | Phase::Ready)
            && self.next_status.is_some_and(|t| now >= t)
        {
            self.write_realtime(Realtime::StatusQuery);
            self.next_status = Some(now + self.config.status_interval);
        }
        if self.job.is_some() && self.progress.since.is_none() {
            self.note_progress(None, now);
        }
        let mut stalled = None;
        if self.stall_watched()
            && let (Some(job), Some(since)) = (&self.job, self.progress.since)
            && now >= since + self.config.stall_after
        {
            let index = job.acked.min(job.lines.len().saturating_sub(1));
            stalled = Some(FailReason::Stalled {
                state: self.status.as_ref().map(|s| s.state),
                line: job.lines.get(index).map_or(0, |l| l.number),
            });
        }
        let mut stuck = None;
        let mut settle = false;
        if let Some(job) = &self.job {
            match job.stage {
                Stage::Stopping { deadline, .. } if now >= deadline => settle = true,
                Stage::Streaming => {
                    if let Some(idle) = self.idle_since {
                        let from = self.last_reply.map_or(idle, |r| r.max(idle));
                        if !self.paused
                            && !self.counter.is_empty()
                            && now >= from + self.config.stuck_after
                        {
                            stuck = job.lines.get(job.acked).map(|l| l.number);
                        }
                    }
                }
                _ => {}
            }
        }
        if settle {
            self.reset_after_hold(now);
        }
        if let Some(line) = stuck {
            self.fail(FailReason::ReplyLost { line }, now);
        }
        if let Some(reason) = stalled {
            self.fail(reason, now);
        }
        self.pump(now);
    }

    /// Feeds bytes read from the machine.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                if !self.partial.is_empty() {
                    let line = String::from_utf8_lossy(&self.partial).into_owned();
                    self.partial.clear();
                    self.handle_line(&line, now);
                }
            } else if self.partial.len() < 1024 {
                self.partial.push(b);
            }
            // Past 1 KiB without a line end the rest is noise; the line will not parse.
        }
        self.pump(now);
    }

    /// The link closed or failed. A running job fails; the hold and reset are still
    /// written in case the link half-works.
    pub fn link_lost(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.job.is_some() {
            self.fail(FailReason::Disconnected, now);
        }
        self.phase = Phase::Closed;
        self.emit(Event::LinkLost);
    }

    /// Feed hold: motion slows to a stop; in laser mode the laser is off while held.
    pub fn pause(&mut self) {
        self.paused = true;
        self.write_realtime(Realtime::FeedHold);
    }

    /// Cycle start: resumes after [`pause`](Self::pause).
    pub fn resume(&mut self) {
        self.paused = false;
        // Time held does not count towards a stall.
        self.progress.since = None;
        self.write_realtime(Realtime::CycleStart);
    }

    /// Sends an override or other real-time byte. A soft reset asked this way is handled
    /// as [`cancel`](Self::cancel) during a job.
    pub fn realtime(&mut self, r: Realtime, now: Instant) {
        match r {
            Realtime::SoftReset => {
                if self.job.is_some() {
                    self.cancel(now);
                } else {
                    self.soft_reset(now);
                }
            }
            Realtime::FeedHold => self.pause(),
            Realtime::CycleStart => self.resume(),
            r => self.write_realtime(r),
        }
    }

    /// Cancels the running job: hold, then soft reset (laser off).
    pub fn cancel(&mut self, now: Instant) {
        if self.job.is_some() {
            self.fail(FailReason::Cancelled, now);
        }
    }

    /// Soft reset outside a job (for example to leave an alarm screen).
    pub fn soft_reset(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.job.is_some() {
            self.cancel(now);
            return;
        }
        self.write_realtime(Realtime::SoftReset);
        self.forget_in_flight();
        self.queue.clear();
        self.phase = Phase::AwaitBanner {
            deadline: now + self.config.banner_timeout,
            first: false,
        };
    }

    /// Queues a command line (`$H`, `$X`, `$G`, `$$`, `$32=1`, a jog...) outside a job.
    /// EEPROM writes go alone, in send-response mode.
    pub fn send_command(&mut self, text: &str, now: Instant) -> Result<(), Refusal> {
        if self.phase != Phase::Ready {
            return Err(Refusal::NotReady);
        }
        if self.job.is_some() {
            return Err(Refusal::Busy);
        }
        let text = clean_line(text);
        self.queue.push_back((Tag::Command(text.clone()), text));
        self.pump(now);
        Ok(())
    }

    fn check_can_start(&self) -> Result<(), Refusal> {
        if self.phase != Phase::Ready {
            return Err(Refusal::NotReady);
        }
        if self.job.is_some() || self.commands_pending() {
            return Err(Refusal::Busy);
        }
        let state = self.status.as_ref().map(|s| s.state);
        if !self.status_since_reset || state != Some(MachineState::Idle) {
            return Err(Refusal::NotIdle(state));
        }
        Ok(())
    }

    /// Checks `program` against this machine as it stands now: its settings, its work
    /// offset and the tool it carries ([`check_job`]).
    pub fn check(&self, program: &Program, area: WorkArea) -> Result<(), Refusal> {
        check_job(
            program,
            &self.settings,
            area,
            self.work_offset,
            self.config.tool,
        )
    }

    /// Starts a cut. Refused, with nothing sent, unless the machine is ready and idle, the
    /// confirmation is fresh, and [`check_job`] passes.
    pub fn start_cut(
        &mut self,
        program: Program,
        area: WorkArea,
        person: PersonAtMachine,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.check_can_start()?;
        if now.saturating_duration_since(person.confirmed_at) > self.config.confirmation_ttl {
            return Err(Refusal::StaleConfirmation);
        }
        self.check(&program, area)?;
        self.begin(JobKind::Cut, program, now);
        Ok(())
    }

    /// Starts a dry run: `$C` check mode, every line, `$C` again. Nothing moves or fires,
    /// so no person needs to be present; errors are collected by line, and GRBL resets when
    /// it leaves check mode.
    pub fn start_dry_run(&mut self, program: Program, now: Instant) -> Result<(), Refusal> {
        self.check_can_start()?;
        if program.lines().is_empty() {
            return Err(Refusal::Empty);
        }
        self.queue.push_back((Tag::EnterCheck, "$C".into()));
        self.begin(JobKind::DryRun, program, now);
        Ok(())
    }

    fn begin(&mut self, kind: JobKind, program: Program, now: Instant) {
        self.paused = false;
        self.idle_since = None;
        self.progress = LastProgress {
            since: Some(now),
            position: self.status.as_ref().and_then(|s| s.mpos.or(s.wpos)),
            acked: 0,
        };
        self.last_reply = Some(now);
        self.job = Some(Job {
            kind,
            lines: program.lines,
            next: 0,
            acked: 0,
            errors: Vec::new(),
            stage: Stage::Streaming,
        });
        self.pump(now);
    }

    /// Sends whatever fits: queued commands first, then job lines.
    fn pump(&mut self, _now: Instant) {
        if !matches!(self.phase, Phase::ReadingSettings | Phase::Ready) {
            return;
        }
        loop {
            if let Some((_, text)) = self.queue.front() {
                let len = text.len() + 1;
                let sync = is_eeprom_write(text);
                if !self.counter.can_send(len, sync) {
                    return;
                }
                if let Some((tag, text)) = self.queue.pop_front() {
                    let mut bytes = text.into_bytes();
                    bytes.push(b'\n');
                    self.counter.sent(tag, len, sync);
                    self.write(bytes);
                }
                continue;
            }
            if self.phase != Phase::Ready {
                return;
            }
            let Some(job) = self.job.as_mut() else {
                return;
            };
            if job.stage != Stage::Streaming {
                return;
            }
            // A dry run waits for `$C` to be accepted before its lines go.
            if job.kind == JobKind::DryRun && !self.counter.is_empty() && job.next == 0 {
                return;
            }
            let Some(line) = job.lines.get(job.next) else {
                return;
            };
            let len = line.text.len() + 1;
            let sync = is_eeprom_write(&line.text);
            if !self.counter.can_send(len, sync) {
                return;
            }
            let mut bytes = Vec::with_capacity(len);
            bytes.extend_from_slice(line.text.as_bytes());
            bytes.push(b'\n');
            let index = job.next;
            job.next += 1;
            self.counter.sent(Tag::Job(index), len, sync);
            self.write(bytes);
        }
    }

    fn handle_line(&mut self, line: &str, now: Instant) {
        match parse_response(line) {
            Response::Ok => self.reply(None, line, now),
            Response::Error(code) => self.reply(Some(code), line, now),
            Response::Banner(v) => self.banner(v, now),
            Response::Alarm(code) => {
                self.emit(Event::Alarm(code));
                if self.job.is_some() {
                    self.fail(FailReason::Alarm(code), now);
                } else if self.phase == Phase::ReadingSettings {
                    // A critical alarm (hard or soft limit) drops GRBL's buffers and waits
                    // for a reset (`grbl/protocol.c`): `$$` will never be answered.
                    self.settings_unanswered(now);
                }
            }
            Response::Status(s) => self.status_report(s, now),
            Response::Setting(n, v) => {
                self.settings.set(n, v);
                // Outside start-up, a `$$` someone asked for: they want to read it.
                if self.phase == Phase::Ready {
                    self.emit(Event::Feedback(line.trim().to_string()));
                }
            }
            Response::Message(m) => self.emit(Event::Message(m)),
            Response::Feedback(f) | Response::Other(f) => self.emit(Event::Feedback(f)),
        }
    }

    fn status_report(&mut self, s: StatusReport, now: Instant) {
        if s.state == MachineState::Idle {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        let state = s.state;
        if self.job.is_some() {
            self.note_progress(s.mpos.or(s.wpos), now);
        }
        let reported = match (s.wco, s.mpos, s.wpos) {
            (Some(wco), _, _) => Some(wco),
            (None, Some(m), Some(w)) => Some([m[0] - w[0], m[1] - w[1], m[2] - w[2]]),
            _ => None,
        };
        if reported.is_some() {
            self.work_offset = reported;
        }
        self.status = Some(s.clone());
        self.status_since_reset = true;
        self.emit(Event::Status(s));
        let Some(job) = &self.job else {
            return;
        };
        match job.stage {
            Stage::Draining { since }
                if state == MachineState::Idle && now >= since + DRAIN_GUARD =>
            {
                let summary = JobSummary {
                    kind: job.kind,
                    lines: job.acked,
                    errors: job.errors.clone(),
                };
                self.job = None;
                self.emit(Event::JobDone(summary));
            }
            Stage::Stopping { .. } if state.is_still() => self.reset_after_hold(now),
            _ => {}
        }
    }

    fn reply(&mut self, error: Option<u8>, line: &str, now: Instant) {
        self.last_reply = Some(now);
        let outcome = error.map_or(LineOutcome::Ok, LineOutcome::Error);
        let Some(tag) = self.counter.acked() else {
            self.emit(Event::UnexpectedReply(line.to_string()));
            return;
        };
        match tag {
            Tag::Job(index) => self.job_reply(index, outcome, now),
            Tag::Command(text) => self.emit(Event::Command { text, outcome }),
            Tag::ReadSettings => {
                if self.phase == Phase::ReadingSettings {
                    self.phase = Phase::Ready;
                    self.next_status = Some(now);
                    self.emit(Event::Settings(self.settings.clone()));
                }
            }
            Tag::EnterCheck => {
                if let Some(code) = error {
                    // Check mode refused (e.g. `error:8`, not idle): nothing was sent yet.
                    self.job = None;
                    self.emit(Event::JobFailed(FailReason::Error(LineError {
                        line: 0,
                        code,
                    })));
                }
            }
            Tag::LeaveCheck => {
                // GRBL soft-resets on leaving check mode and prints its banner.
                self.forget_in_flight();
                self.phase = Phase::AwaitBanner {
                    deadline: now + self.config.banner_timeout,
                    first: false,
                };
            }
        }
    }

    fn job_reply(&mut self, index: usize, outcome: LineOutcome, now: Instant) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let number = job.lines.get(index).map_or(0, |l| l.number);
        job.acked = index + 1;
        self.note_progress(None, now);
        self.emit(Event::Line {
            index,
            number,
            outcome,
        });
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if let LineOutcome::Error(code) = outcome {
            let e = LineError { line: number, code };
            match job.kind {
                // GRBL keeps running what it already buffered after an error
                // (`interface.md`; gnea/grbl#1178): stop everything now.
                JobKind::Cut => {
                    self.fail(FailReason::Error(e), now);
                    return;
                }
                JobKind::DryRun => job.errors.push(e),
            }
        }
        if job.stage == Stage::Streaming && job.acked == job.lines.len() {
            match job.kind {
                JobKind::Cut => {
                    // All lines planned; done when the machine stands idle again. GRBL
                    // starts the cycle only once its receive buffer is empty
                    // (`protocol_auto_cycle_start` in `grbl/protocol.c`), so a report made
                    // just after the last `ok` may still say Idle with blocks queued: only
                    // a report asked for a little later counts.
                    job.stage = Stage::Draining { since: now };
                    self.idle_since = None;
                    self.next_status = Some(now + DRAIN_GUARD);
                }
                JobKind::DryRun => {
                    job.stage = Stage::LeavingCheck;
                    self.queue.push_back((Tag::LeaveCheck, "$C".into()));
                }
            }
        }
    }

    fn banner(&mut self, v: Version, now: Instant) {
        self.status_since_reset = false;
        // A reset clears G92 and reloads G54 from EEPROM: the next report says the offset.
        self.work_offset = None;
        self.idle_since = None;
        if !v.is_supported() {
            self.phase = Phase::Closed;
            self.emit(Event::ConnectFailed(ConnectFailure::Unsupported(v)));
            return;
        }
        self.version = Some(v);
        match self.phase {
            Phase::AwaitBanner { first: true, .. } | Phase::ReadingSettings => {
                // First banner, or a second one from a board that also reset on open:
                // (re)read the settings.
                self.forget_in_flight();
                self.queue.clear();
                if matches!(self.phase, Phase::AwaitBanner { .. }) {
                    self.emit(Event::Connected(v));
                }
                self.phase = Phase::ReadingSettings;
                self.settings_deadline = Some(now + self.config.banner_timeout);
                self.settings = Settings::default();
                self.queue.push_back((Tag::ReadSettings, "$$".into()));
                self.next_status = Some(now + self.config.status_interval);
            }
            Phase::AwaitBanner { first: false, .. } => {
                self.phase = Phase::Ready;
                self.next_status = Some(now);
                self.emit(Event::Reset);
                self.finish_dry_run();
            }
            Phase::Ready => {
                // GRBL restarted by itself: whatever was in its buffers is gone
                // (`grbl/main.c` clears them). Never continue blind.
                self.emit(Event::UnexpectedReset);
                if self.job.is_some() {
                    self.fail(FailReason::UnexpectedReset, now);
                } else {
                    self.forget_in_flight();
                    self.next_status = Some(now);
                }
            }
            Phase::New | Phase::Closed => {}
        }
    }

    /// `$$` will not be answered: soft-reset and read again once; then give up.
    fn settings_unanswered(&mut self, now: Instant) {
        if self.settings_retried {
            self.phase = Phase::Closed;
            self.emit(Event::ConnectFailed(ConnectFailure::NoSettings));
            return;
        }
        self.settings_retried = true;
        self.forget_in_flight();
        self.queue.clear();
        self.write_realtime(Realtime::SoftReset);
        self.phase = Phase::AwaitBanner {
            deadline: now + self.config.banner_timeout,
            first: true,
        };
    }

    /// Ends a dry run that has left check mode.
    fn finish_dry_run(&mut self) {
        if let Some(job) = &self.job
            && job.stage == Stage::LeavingCheck
        {
            let summary = JobSummary {
                kind: job.kind,
                lines: job.acked,
                errors: job.errors.clone(),
            };
            self.job = None;
            self.emit(Event::JobDone(summary));
        }
    }

    /// Reports every line still awaiting a reply as unconfirmed, oldest first.
    fn forget_in_flight(&mut self) {
        for tag in self.counter.clear() {
            match tag {
                Tag::Job(index) => {
                    let number = self
                        .job
                        .as_ref()
                        .and_then(|j| j.lines.get(index))
                        .map_or(0, |l| l.number);
                    self.emit(Event::Line {
                        index,
                        number,
                        outcome: LineOutcome::Unconfirmed,
                    });
                }
                Tag::Command(text) => self.emit(Event::Command {
                    text,
                    outcome: LineOutcome::Unconfirmed,
                }),
                Tag::ReadSettings | Tag::EnterCheck | Tag::LeaveCheck => {}
            }
        }
    }

    /// Stops the job: feed hold first (laser off in laser mode, position kept), then a soft
    /// reset once the machine stands still or [`Config::hold_settle`] passes. After an alarm,
    /// an unexpected reset or a lost link the machine is already stopped (or unreachable),
    /// so the reset follows at once.
    fn fail(&mut self, reason: FailReason, now: Instant) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if matches!(job.stage, Stage::Stopping { .. }) {
            return; // the first reason stands
        }
        job.stage = Stage::Stopping {
            reason,
            deadline: now + self.config.hold_settle,
        };
        self.queue.clear();
        self.write_realtime(Realtime::FeedHold);
        match reason {
            FailReason::Alarm(_) | FailReason::UnexpectedReset | FailReason::Disconnected => {
                self.reset_after_hold(now);
            }
            _ => self.write_realtime(Realtime::StatusQuery),
        }
    }

    fn reset_after_hold(&mut self, now: Instant) {
        let Some(job) = self.job.as_ref() else {
            return;
        };
        let Stage::Stopping { reason, .. } = job.stage else {
            return;
        };
        self.write_realtime(Realtime::SoftReset);
        self.forget_in_flight();
        self.job = None;
        self.paused = false;
        self.queue.clear();
        if self.phase != Phase::Closed {
            self.phase = Phase::AwaitBanner {
                deadline: now + self.config.banner_timeout,
                first: false,
            };
        }
        self.emit(Event::JobFailed(reason));
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests stand in for the person at the machine
mod tests {
    use super::*;

    #[test]
    fn cleaning_drops_comments_spaces_and_case() {
        assert_eq!(clean_line("g1 x10 (move) y2 ; done"), "G1X10Y2");
        assert_eq!(clean_line("M4 S0;svg > path"), "M4S0");
        assert_eq!(clean_line("%"), "");
    }

    #[test]
    fn words_parse_and_report_grbl_codes() {
        let w = parse_words("G1X-1.5Y.5F1200").unwrap();
        assert_eq!(w.len(), 4);
        assert_eq!(w[1].value, -1.5);
        assert_eq!(w[2].value, 0.5);
        assert_eq!(parse_words("G1X").unwrap_err().code(), 2);
        assert_eq!(parse_words("12").unwrap_err().code(), 1);
    }

    #[test]
    fn eeprom_writes_are_recognised() {
        for l in [
            "$32=1",
            "$N0=G20",
            "$RST=*",
            "$I=ABC",
            "G10L2P1X0",
            "G10L20P1X0",
            "G28.1",
            "G30.1",
        ] {
            assert!(is_eeprom_write(l), "{l}");
        }
        for l in [
            "$$",
            "$H",
            "$X",
            "$C",
            "G1X10",
            "G28",
            "$J=G91X1F100",
            "G10P1",
        ] {
            assert!(!is_eeprom_write(l), "{l}");
        }
    }

    #[test]
    fn banners_of_1_1_and_0_9_are_read() {
        let v = parse_banner("Grbl 1.1h ['$' for help]").unwrap();
        assert_eq!((v.major, v.minor, v.letter), (1, 1, Some('h')));
        assert!(v.is_supported());
        let v = parse_banner("Grbl 0.9j ['$' for help]").unwrap();
        assert_eq!((v.major, v.minor), (0, 9));
        assert!(v.is_supported());
        assert!(
            !parse_banner("Grbl 0.8c ['$' for help]")
                .unwrap()
                .is_supported()
        );
        assert!(parse_banner("Marlin 2.1").is_none());
    }

    #[test]
    fn status_reports_of_1_1_are_read() {
        let s = parse_status(
            "<Run|MPos:10.000,20.500,0.000|FS:1200,800|Bf:12,96|Ov:100,100,90|WCO:1.000,2.000,0.000>",
        )
        .unwrap();
        assert_eq!(s.state, MachineState::Run);
        assert_eq!(s.mpos, Some([10.0, 20.5, 0.0]));
        assert_eq!(s.feed, Some(1200.0));
        assert_eq!(s.power, Some(800.0));
        assert_eq!(s.buffer, Some((12, 96)));
        assert_eq!(s.overrides, Some([100, 100, 90]));
        assert_eq!(s.wco, Some([1.0, 2.0, 0.0]));
        assert_eq!(
            parse_status("<Hold:1|MPos:0,0,0>").unwrap().state,
            MachineState::Hold(1)
        );
    }

    #[test]
    fn status_reports_of_0_9_are_read() {
        let s = parse_status("<Idle,MPos:1.000,2.000,3.000,WPos:0.000,0.500,0.000>").unwrap();
        assert_eq!(s.state, MachineState::Idle);
        assert_eq!(s.mpos, Some([1.0, 2.0, 3.0]));
        assert_eq!(s.wpos, Some([0.0, 0.5, 0.0]));
    }

    #[test]
    fn responses_of_both_versions_are_read() {
        assert_eq!(parse_response("ok"), Response::Ok);
        assert_eq!(parse_response("error:24"), Response::Error(24));
        assert_eq!(
            parse_response("error: Bad number format"),
            Response::Error(2)
        );
        assert_eq!(
            parse_response("error:Invalid gcode ID:33"),
            Response::Error(33)
        );
        assert_eq!(parse_response("ALARM:2"), Response::Alarm(2));
        assert_eq!(parse_response("ALARM: Hard limit"), Response::Alarm(1));
        assert_eq!(
            parse_response("$30=1000.000"),
            Response::Setting(30, 1000.0)
        );
        assert_eq!(
            parse_response("$130=200.000 (x max travel, mm)"),
            Response::Setting(130, 200.0)
        );
        assert_eq!(
            parse_response("[MSG:Enabled]"),
            Response::Message("Enabled".into())
        );
        assert!(matches!(
            parse_response("[GC:G0 G54]"),
            Response::Feedback(_)
        ));
        assert!(matches!(
            parse_response("garbage \u{1}"),
            Response::Other(_)
        ));
    }

    #[test]
    fn the_counter_never_overfills_and_frees_in_order() {
        let mut c = CharCounter::new(128, StreamMode::CharCounting);
        assert!(c.can_send(100, false));
        c.sent(1, 100, false);
        assert!(!c.can_send(29, false));
        assert!(c.can_send(28, false));
        c.sent(2, 28, false);
        assert_eq!(c.bytes(), 128);
        assert_eq!(c.acked(), Some(1));
        assert_eq!(c.bytes(), 28);
        assert!(
            !c.can_send(5, true),
            "an EEPROM write waits for an empty buffer"
        );
        assert_eq!(c.acked(), Some(2));
        assert!(c.can_send(5, true));
        c.sent(3, 5, true);
        assert!(
            !c.can_send(1, false),
            "nothing follows an EEPROM write until its reply"
        );
        assert_eq!(c.acked(), Some(3));
        assert_eq!(c.acked(), None);
    }

    #[test]
    fn send_response_keeps_one_line_in_flight() {
        let mut c = CharCounter::new(128, StreamMode::SendResponse);
        c.sent(1, 10, false);
        assert!(!c.can_send(10, false));
    }

    #[test]
    fn extent_follows_relative_moves_inches_and_arcs() {
        let p = Program::parse(
            "G21 G90\nG0 X10 Y10\nG91\nG1 X5 Y-2 F100 S300\nG90 G2 X20 Y8 I0 J5\nG20 G0 X1",
            128,
        )
        .unwrap();
        let e = p.extent();
        assert_eq!(e.max[0].map(|m| m.0), Some(25.4));
        assert_eq!(e.min[1].map(|m| m.0), Some(8.0));
        assert_eq!(e.max[1].map(|m| m.0), Some(18.0));
        assert_eq!(e.max_power, Some((300.0, 4)));
        assert_eq!(e.unknowable, None);
    }

    fn laser_settings() -> Settings {
        let mut s = Settings::default();
        for (n, v) in [(30, 1000.0), (32, 1.0), (130, 300.0), (131, 200.0)] {
            s.set(n, v);
        }
        s
    }

    const AREA: WorkArea = WorkArea {
        width: 400.0,
        height: 400.0,
    };

    /// A machine homed to its positive end (`$23=0`): machine space runs from -400 to 0 in
    /// X and -300 to 0 in Y, and where the drawing lands depends on the work origin set on
    /// the material, not on a lower-left corner the profile assumes.
    #[test]
    fn with_homing_the_check_is_in_machine_space_from_the_work_offset() {
        let mut homed = laser_settings();
        for (n, v) in [(22, 1.0), (23, 0.0), (130, 400.0), (131, 300.0)] {
            homed.set(n, v);
        }
        let drawing = Program::parse("G0X0Y0\nG1X100Y80F600S500\nG0X0Y0", 128).unwrap();
        let check = |offset| check_laser_job(&drawing, &homed, AREA, offset);
        // Origin at the lower-left corner of the bed: machine (-400, -300).
        assert_eq!(check(Some([-400.0, -300.0, 0.0])), Ok(()));
        // Origin set 50 mm from the home corner: 100 mm to the right leaves the machine.
        assert_eq!(
            check(Some([-50.0, -200.0, 0.0])),
            Err(Refusal::OutsideTravel {
                line: 2,
                axis: 'X',
                value: 50.0,
                min: -400.0,
                max: 0.0
            })
        );
        // The profile's lower-left view would accept it: that was the wrong answer.
        assert_eq!(check(None), Ok(()));
        // Without homing machine coordinates mean nothing: the profile's area decides.
        let mut unhomed = homed.clone();
        unhomed.set(22, 0.0);
        assert_eq!(unhomed.machine_space(0), None);
        assert_eq!(
            check_laser_job(&drawing, &unhomed, AREA, Some([-50.0, -200.0, 0.0])),
            Ok(())
        );
        let message = Refusal::OutsideTravel {
            line: 2,
            axis: 'X',
            value: 50.0,
            min: -400.0,
            max: 0.0,
        }
        .message(Lang::Fr);
        assert!(
            message.contains("X=50.0 mm en coordonnées machine"),
            "{message}"
        );
        assert!(message.contains("de -400.0 à 0.0 mm"), "{message}");
    }

    fn mill_settings() -> Settings {
        let mut s = Settings::default();
        for (n, v) in [
            (30, 24000.0),
            (32, 0.0),
            (130, 600.0),
            (131, 400.0),
            (132, 80.0),
        ] {
            s.set(n, v);
        }
        s
    }

    /// A two-tool file as CAM software writes it: the spindle stopped before the change, a
    /// new tool and speed after it.
    const TWO_TOOLS: &str = "G90 G94 G17\nG21\nG54\nT1 M6\nS12000 M3\nG0 Z5\nG1 Z-2 F300\n\
        G1 X40 Y30 F800\nG0 Z5\nM5\nT2 M6 (drill)\nS18000 M3\nG0 X10 Y10\nG1 Z-4 F150\nG0 Z5\nM5\nM30\n";

    #[test]
    fn a_mill_file_splits_at_its_tool_changes_and_each_part_restores_the_state() {
        let program = Program::parse(TWO_TOOLS, 128).unwrap();
        let parts = program.split_at_tool_changes();
        assert_eq!(parts.len(), 3, "{parts:#?}");
        let texts = |i: usize| -> Vec<String> {
            parts[i]
                .program
                .lines()
                .iter()
                .map(|l| l.text.clone())
                .collect()
        };
        assert_eq!(parts[0].after, None);
        // The `M6` goes; the `T1` on its line stays, GRBL takes it.
        assert_eq!(texts(0), ["G90G94G17", "G21", "G54", "T1"]);
        assert_eq!(
            parts[1].after,
            Some(ToolChange {
                line: 4,
                tool: Some(1)
            })
        );
        assert_eq!(texts(1)[..2], ["G17G21G90G54G94", "G0"]);
        assert_eq!(texts(1)[2], "S12000M3");
        assert_eq!(
            parts[2].after,
            Some(ToolChange {
                line: 11,
                tool: Some(2)
            })
        );
        // After the first part the feed is known and the spindle was stopped by the file.
        assert_eq!(texts(2)[..2], ["G17G21G90G54G94", "G0F800"]);
        assert_eq!(texts(2)[2], "S18000M3");
        assert!(
            parts[1]
                .program
                .lines()
                .iter()
                .all(|l| !l.text.contains("M6")),
            "GRBL refuses M6"
        );
        // Restoring lines carry the M6's line number, for messages.
        assert_eq!(parts[2].program.lines()[0].number, 11);
        assert_eq!(program.tool_changes().len(), 2);
        // Every part, in order, is what a dry run checks: the file without its M6 words.
        let joined = Program::joined(&parts);
        assert!(joined.lines().iter().all(|l| !l.text.contains("M6")));
        assert!(joined.lines().len() > program.lines().len());
    }

    #[test]
    fn a_tool_change_with_the_spindle_on_restarts_it_and_waits_for_its_speed() {
        let program = Program::parse("G20G91\nM3S9000\nM8\nG1X1F40\nT3M6\nX1\nM5M9", 128).unwrap();
        let parts = program.split_at_tool_changes();
        let restore: Vec<&str> = parts[1]
            .program
            .lines()
            .iter()
            .map(|l| l.text.as_str())
            .take(5)
            .collect();
        assert_eq!(
            restore,
            [
                "G17G20G91G54G94",
                "G1F40",
                "M3S9000",
                &format!("G4P{SPIN_UP_S}"),
                "M8"
            ]
        );
    }

    #[test]
    fn mill_checks_refuse_with_the_offending_line() {
        let check = |src: &str, coolant| {
            check_mill_job(
                &Program::parse(src, 128).unwrap(),
                &mill_settings(),
                AREA,
                None,
                coolant,
            )
        };
        assert_eq!(check(TWO_TOOLS, Coolant::None), Ok(()));
        let mut laser = mill_settings();
        laser.set(32, 1.0);
        assert_eq!(
            check_mill_job(
                &Program::parse(TWO_TOOLS, 128).unwrap(),
                &laser,
                AREA,
                None,
                Coolant::None
            ),
            Err(Refusal::LaserModeOnMill)
        );
        assert_eq!(
            check("M3S30000\nG1X1F100", Coolant::None),
            Err(Refusal::SpindleTooFast {
                line: 1,
                speed: 30000.0,
                max: 24000.0
            })
        );
        assert_eq!(
            check("M3S10000\nM8\nG1X1F100", Coolant::None),
            Err(Refusal::NoCoolant {
                line: 2,
                mist: false
            })
        );
        assert_eq!(check("M3S10000\nM8\nG1X1F100", Coolant::Flood), Ok(()));
        assert_eq!(
            check("M7\nG1X1F100", Coolant::Flood),
            Err(Refusal::NoCoolant {
                line: 1,
                mist: true
            })
        );
        assert_eq!(check("M7\nG1X1F100", Coolant::FloodAndMist), Ok(()));
        // Without homing, Z is checked by its span: clearance to the deepest cut.
        assert_eq!(
            check("G0Z40\nG1Z-45F100", Coolant::None),
            Err(Refusal::DepthTooLarge {
                line: 2,
                span: 85.0,
                travel: 80.0
            })
        );
        // Relative Z from an unknown height says nothing of the span.
        assert_eq!(check("G91\nG1Z-70F100\nG1Z-70", Coolant::None), Ok(()));
        assert_eq!(
            check("G1X700F100", Coolant::None),
            Err(Refusal::OutOfBounds {
                line: 1,
                axis: 'X',
                value: 700.0,
                limit: 400.0
            })
        );
        for r in [
            Refusal::LaserModeOnMill,
            Refusal::MaxSpeedUnknown,
            Refusal::NoCoolant {
                line: 2,
                mist: true,
            },
            Refusal::DepthTooLarge {
                line: 2,
                span: 85.0,
                travel: 80.0,
            },
        ] {
            for lang in [Lang::Fr, Lang::En] {
                let text = r.message(lang);
                assert!(text.len() > 40 && !text.contains('{'), "{text}");
            }
        }
    }

    /// Homed, the work origin set on the material's top: the file's Z lands in machine
    /// space from the offset, and a clearance height above the top of the travel is refused.
    #[test]
    fn a_homed_mill_checks_z_in_machine_space() {
        let mut homed = mill_settings();
        homed.set(22, 1.0);
        let program = Program::parse("G0Z10\nG1Z-5F100\nG1X50Y50\nG0Z10", 128).unwrap();
        let check = |offset| check_mill_job(&program, &homed, AREA, Some(offset), Coolant::None);
        assert_eq!(check([-500.0, -350.0, -40.0]), Ok(()));
        assert_eq!(
            check([-500.0, -350.0, -5.0]),
            Err(Refusal::OutsideTravel {
                line: 1,
                axis: 'Z',
                value: 5.0,
                min: -80.0,
                max: 0.0
            })
        );
        assert_eq!(
            check([-500.0, -350.0, -77.0]),
            Err(Refusal::OutsideTravel {
                line: 2,
                axis: 'Z',
                value: -82.0,
                min: -80.0,
                max: 0.0
            })
        );
    }

    #[test]
    fn a_machine_not_idle_is_told_in_words() {
        let alarm = Refusal::NotIdle(Some(MachineState::Alarm)).message(Lang::Fr);
        assert!(
            alarm.contains("en alarme") && alarm.contains("($H)"),
            "{alarm}"
        );
        let held = Refusal::NotIdle(Some(MachineState::Hold(0))).message(Lang::En);
        assert!(held.contains("it is on hold"), "{held}");
        for state in [
            MachineState::Run,
            MachineState::Door(1),
            MachineState::Check,
            MachineState::Unknown,
        ] {
            for lang in [Lang::Fr, Lang::En] {
                let text = Refusal::NotIdle(Some(state)).message(lang);
                assert!(!text.contains("Some(") && !text.contains('{'), "{text}");
            }
        }
        assert!(!Refusal::NotIdle(None).message(Lang::Fr).contains("None"));
    }

    #[test]
    fn laser_checks_refuse_with_the_offending_line() {
        let check = |src: &str| {
            check_laser_job(
                &Program::parse(src, 128).unwrap(),
                &laser_settings(),
                AREA,
                None,
            )
        };
        assert_eq!(
            check(
                "G1X10Y10F100M4S1000
M5"
            ),
            Ok(())
        );
        assert_eq!(
            check(
                "G21
G1X10F100M4S1001"
            ),
            Err(Refusal::PowerTooHigh {
                line: 2,
                power: 1001.0,
                max: 1000.0
            })
        );
        assert!(matches!(
            check("G0X301"),
            Err(Refusal::OutOfBounds {
                axis: 'X',
                line: 1,
                ..
            })
        ));
        assert!(matches!(
            check(
                "G0Y10
G91
G0Y195"
            ),
            Err(Refusal::OutOfBounds {
                axis: 'Y',
                line: 3,
                ..
            })
        ));
        assert_eq!(
            check(
                "G0X1
$32=0
G1X2F100S10"
            ),
            Err(Refusal::SystemCommand(2))
        );
        assert_eq!(
            check(
                "G92X0
G0X1"
            ),
            Err(Refusal::UnknowableBounds(1))
        );
        assert_eq!(
            check(
                "; nothing
"
            ),
            Err(Refusal::Empty)
        );
        let mut off = laser_settings();
        off.set(32, 0.0);
        let p = Program::parse("G0X1", 128).unwrap();
        assert_eq!(
            check_laser_job(&p, &off, AREA, None),
            Err(Refusal::LaserModeOff)
        );
        assert_eq!(
            check_laser_job(&p, &Settings::default(), AREA, None),
            Err(Refusal::LaserModeOff)
        );
    }

    fn drain(s: &mut Session) -> (Vec<u8>, Vec<Event>) {
        let (mut w, mut e) = (Vec::new(), Vec::new());
        while let Some(o) = s.poll_output() {
            match o {
                Output::Write(b) => w.extend(b),
                Output::Event(ev) => e.push(ev),
            }
        }
        (w, e)
    }

    fn ready_session(t: Instant) -> Session {
        let mut s = Session::new(Config::default());
        s.start(t);
        assert_eq!(drain(&mut s).0, vec![0x18]);
        s.receive(b"\r\nGrbl 1.1h ['$' for help]\r\n", t);
        assert_eq!(drain(&mut s).0, b"$$\n");
        s.receive(b"$30=1000\r\n$32=1\r\n$130=400\r\n$131=300\r\nok\r\n", t);
        let (_, ev) = drain(&mut s);
        assert!(ev.iter().any(|e| matches!(e, Event::Settings(_))));
        s.tick(t);
        assert_eq!(drain(&mut s).0, b"?");
        s.receive(b"<Idle|MPos:0,0,0|FS:0,0>\r\n", t);
        drain(&mut s);
        assert!(s.is_ready() && s.has_fresh_status());
        s
    }

    #[test]
    fn status_is_polled_at_the_configured_rate() {
        let t = Instant::now();
        let mut s = ready_session(t);
        s.tick(t + Duration::from_millis(100));
        assert!(drain(&mut s).0.is_empty());
        s.tick(t + Duration::from_millis(200));
        assert_eq!(drain(&mut s).0, b"?");
    }

    #[test]
    fn an_error_holds_first_and_resets_once_the_machine_stands_still() {
        let t = Instant::now();
        let mut s = ready_session(t);
        let p = Program::parse("G1X1F100M4S10\nG1X2\nG1X3\n", 128).unwrap();
        let person = PersonAtMachine::confirmed_at_the_machine("t", t);
        s.start_cut(
            p,
            WorkArea {
                width: 400.0,
                height: 300.0,
            },
            person,
            t,
        )
        .unwrap();
        assert_eq!(drain(&mut s).0, b"G1X1F100M4S10\nG1X2\nG1X3\n");
        s.receive(b"ok\r\nerror:33\r\n", t);
        let (w, ev) = drain(&mut s);
        assert_eq!(w, b"!?", "hold, then ask whether it stopped");
        assert!(!ev.iter().any(|e| matches!(e, Event::JobFailed(_))));
        s.receive(b"<Hold:1|MPos:1,0,0>\r\n", t);
        assert!(drain(&mut s).0.is_empty(), "still decelerating");
        s.receive(b"<Hold:0|MPos:1.5,0,0>\r\n", t);
        let (w, ev) = drain(&mut s);
        assert_eq!(w, vec![0x18]);
        let lines: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Line { index, outcome, .. } => Some((*index, *outcome)),
                _ => None,
            })
            .collect();
        assert_eq!(lines, vec![(2, LineOutcome::Unconfirmed)]);
        assert_eq!(
            ev.last(),
            Some(&Event::JobFailed(FailReason::Error(LineError {
                line: 2,
                code: 33
            })))
        );
        // The banner after our reset is expected, not a new failure.
        s.receive(b"Grbl 1.1h ['$' for help]\r\n", t);
        let (_, ev) = drain(&mut s);
        assert_eq!(ev, vec![Event::Reset]);
    }

    #[test]
    fn a_hold_that_never_settles_is_reset_after_the_timeout() {
        let t = Instant::now();
        let mut s = ready_session(t);
        let p = Program::parse("G1X1F100M4S10\n", 128).unwrap();
        let person = PersonAtMachine::confirmed_at_the_machine("t", t);
        s.start_cut(
            p,
            WorkArea {
                width: 400.0,
                height: 300.0,
            },
            person,
            t,
        )
        .unwrap();
        drain(&mut s);
        s.cancel(t);
        assert_eq!(drain(&mut s).0, b"!?");
        s.tick(t + Duration::from_millis(999));
        assert!(!drain(&mut s).0.contains(&0x18));
        s.tick(t + Duration::from_secs(1));
        let (w, ev) = drain(&mut s);
        assert!(w.contains(&0x18));
        assert_eq!(ev.last(), Some(&Event::JobFailed(FailReason::Cancelled)));
    }

    #[test]
    fn a_cut_ends_on_an_idle_report_asked_after_the_last_reply() {
        let t = Instant::now();
        let mut s = ready_session(t);
        let p = Program::parse("G1X1F100M4S10\n", 128).unwrap();
        let person = PersonAtMachine::confirmed_at_the_machine("t", t);
        s.start_cut(
            p,
            WorkArea {
                width: 400.0,
                height: 300.0,
            },
            person,
            t,
        )
        .unwrap();
        drain(&mut s);
        s.receive(b"ok\r\n<Idle|MPos:0,0,0>\r\n", t);
        let (_, ev) = drain(&mut s);
        assert!(
            !ev.iter().any(|e| matches!(e, Event::JobDone(_))),
            "too early to trust"
        );
        s.tick(t + DRAIN_GUARD);
        assert_eq!(drain(&mut s).0, b"?");
        let later = t + DRAIN_GUARD + Duration::from_millis(5);
        s.receive(b"<Run|MPos:0.5,0,0>\r\n", later);
        assert!(
            !drain(&mut s)
                .1
                .iter()
                .any(|e| matches!(e, Event::JobDone(_)))
        );
        s.receive(b"<Idle|MPos:1,0,0>\r\n", later);
        let (_, ev) = drain(&mut s);
        assert!(matches!(
            ev.last(),
            Some(Event::JobDone(JobSummary { lines: 1, .. }))
        ));
    }

    #[test]
    fn an_eeprom_line_in_a_stream_waits_for_an_empty_buffer_and_goes_alone() {
        let t = Instant::now();
        let mut s = ready_session(t);
        let p = Program::parse("G0X1\nG0X2\nG28.1\nG0X3\n", 128).unwrap();
        s.start_dry_run(p, t).unwrap();
        assert_eq!(drain(&mut s).0, b"$C\n");
        s.receive(b"[MSG:Enabled]\r\nok\r\n", t);
        assert_eq!(
            drain(&mut s).0,
            b"G0X1\nG0X2\n",
            "G28.1 waits for an empty buffer"
        );
        s.receive(b"ok\r\n", t);
        assert!(drain(&mut s).0.is_empty());
        s.receive(b"ok\r\n", t);
        assert_eq!(drain(&mut s).0, b"G28.1\n");
        assert!(
            drain(&mut s).0.is_empty(),
            "nothing follows until its reply"
        );
        s.receive(b"ok\r\n", t);
        assert_eq!(drain(&mut s).0, b"G0X3\n");
    }

    #[test]
    fn a_critical_alarm_during_start_up_is_reset_and_settings_read_again() {
        let t = Instant::now();
        let mut s = Session::new(Config::default());
        s.start(t);
        drain(&mut s);
        s.receive(b"Grbl 1.1h ['$' for help]\r\n", t);
        assert_eq!(drain(&mut s).0, b"$$\n");
        s.receive(b"ALARM:1\r\n[MSG:Reset to continue]\r\n", t);
        assert_eq!(drain(&mut s).0, vec![0x18]);
        s.receive(
            b"Grbl 1.1h ['$' for help]\r\n[MSG:'$H'|'$X' to unlock]\r\n",
            t,
        );
        assert_eq!(drain(&mut s).0, b"$$\n");
        s.receive(b"$32=1\r\nok\r\n", t);
        assert!(
            drain(&mut s)
                .1
                .iter()
                .any(|e| matches!(e, Event::Settings(_)))
        );
        assert!(s.is_ready());
    }

    #[test]
    fn unanswered_settings_fail_the_connection_after_one_retry() {
        let t = Instant::now();
        let mut s = Session::new(Config::default());
        s.start(t);
        s.receive(b"Grbl 1.1h ['$' for help]\r\n", t);
        drain(&mut s);
        s.tick(t + Duration::from_secs(5));
        assert!(drain(&mut s).0.contains(&0x18));
        s.receive(b"Grbl 1.1h ['$' for help]\r\n", t + Duration::from_secs(5));
        drain(&mut s);
        s.tick(t + Duration::from_secs(10));
        let (_, ev) = drain(&mut s);
        assert_eq!(
            ev.last(),
            Some(&Event::ConnectFailed(ConnectFailure::NoSettings))
        );
        assert!(s.is_closed());
    }

    #[test]
    fn a_banner_mid_job_fails_it_at_once() {
        let t = Instant::now();
        let mut s = ready_session(t);
        let p = Program::parse("G1X1F100M4S10\nG1X2\n", 128).unwrap();
        let person = PersonAtMachine::confirmed_at_the_machine("t", t);
        s.start_cut(
            p,
            WorkArea {
                width: 400.0,
                height: 300.0,
            },
            person,
            t,
        )
        .unwrap();
        drain(&mut s);
        s.receive(b"ok\r\n\r\nGrbl 1.1h ['$' for help]\r\nok\r\n", t);
        let (w, ev) = drain(&mut s);
        assert_eq!(w, vec![b'!', 0x18]);
        assert!(ev.contains(&Event::UnexpectedReset));
        assert!(ev.contains(&Event::JobFailed(FailReason::UnexpectedReset)));
        assert!(
            ev.iter().any(|e| matches!(e, Event::UnexpectedReply(_))),
            "an ok after the reset matches no line"
        );
    }

    #[test]
    fn nonsense_from_the_machine_never_panics_or_loses_a_line() {
        let t = Instant::now();
        let mut s = ready_session(t);
        s.receive(
            &[
                0xff, 0xfe, b'<', b'|', b'>', b'\n', b'e', b'r', b'r', b'o', b'r', b':', b'\n',
            ],
            t,
        );
        s.receive(&[b'x'; 5000], t);
        s.receive(b"\nALARM:\n<Idle|MPos:a,b>\n", t);
        let (_, ev) = drain(&mut s);
        assert!(ev.iter().any(|e| matches!(e, Event::UnexpectedReply(_))));
        assert!(s.is_ready());
    }

    #[test]
    fn too_long_lines_are_refused_with_their_number() {
        let long = format!("G1X{}", "1".repeat(90));
        let err = Program::parse(&format!("G21\n\n{long}"), 128).unwrap_err();
        assert_eq!(
            err,
            ProgramError::LineTooLong {
                line: 3,
                len: 93,
                max: 79
            }
        );
    }
}
