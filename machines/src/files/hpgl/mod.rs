//! HP-GL for vinyl cutters: the subset Roland CAMM-GL and Graphtec cutters accept (`IN`,
//! `PU`, `PD`, `PA`, `PR`, `SP`, `VS`, `FS`), read in one pass in constant memory.
//!
//! Coordinates are plotter units of 0.025 mm (40 per mm). The analysis gives the extent of
//! the cuts, the length cut and travelled, the pen-down strokes, a time at the speed the file
//! sets (`VS`, cm/s) or the cutter's, whether the cuts stay on the media, and findings for
//! what the reader skipped (unknown instructions, labels, bad numbers, junk bytes).
//!
//! # Layout
//!
//! - `scan`: the tokenizer (bytes to mnemonics and numbers).
//! - [`analyze`] and [`HpglSummary`]: the plotter's state followed over the file.
//! - [`preview`]: the cuts (and dashed travels) as a small SVG, in bounded memory.
//! - [`svg`]: an SVG drawing turned into HP-GL at the cutter's resolution.

pub mod preview;
mod scan;
pub mod svg;

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

pub use preview::PreviewOptions;

use super::gcode::{Finding, Message};
use scan::Token;

/// Plotter units per millimetre (one unit is 0.025 mm).
pub const UNITS_PER_MM: f64 = 40.0;
/// Each finding code keeps this many findings; the rest are counted in one more.
const FINDINGS_PER_CODE: u32 = 20;

/// What the analysis assumes of the cutter where the file says nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutterSettings {
    /// Cutting speed before any `VS`, cm/s.
    pub cut_speed_cm_s: f64,
    /// Speed of moves with the blade up, cm/s. Cutters move up at their top speed whatever
    /// `VS` says (Roland's "up speed").
    pub travel_speed_cm_s: f64,
    /// Time to lower or lift the blade, seconds.
    pub pen_change_s: f64,
    /// The media loaded, if the caller knows it.
    pub media: Option<Media>,
}

impl Default for CutterSettings {
    fn default() -> Self {
        CutterSettings {
            cut_speed_cm_s: 20.0,
            travel_speed_cm_s: 50.0,
            pen_change_s: 0.05,
            media: None,
        }
    }
}

/// The usable media. X runs along the feed (the roll's length), Y across the width, from the
/// origin the cutter sets after loading (as Roland and Graphtec roll cutters do).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Media {
    pub width_mm: f64,
    /// `None`: a roll, as long as needed.
    pub length_mm: Option<f64>,
}

/// A rectangle in millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Extent {
    pub min_x_mm: f64,
    pub min_y_mm: f64,
    pub max_x_mm: f64,
    pub max_y_mm: f64,
}

/// Whether the cuts stay on the media.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaFit {
    pub media: Media,
    pub fits: bool,
    /// How far the cuts go past each edge, mm (0 where they stay inside).
    pub past_left_mm: f64,
    pub past_right_mm: f64,
    pub past_bottom_mm: f64,
    pub past_top_mm: f64,
}

/// The time estimate, split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CutTime {
    pub cutting_s: f64,
    pub travel_s: f64,
    pub pen_changes_s: f64,
}

/// The analysis of an HP-GL file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HpglSummary {
    /// Instructions read (known or not).
    pub commands: u64,
    /// Runs of cuts between a blade down and the next blade up.
    pub strokes: u64,
    pub cut_mm: f64,
    pub travel_mm: f64,
    /// Extent of the cuts; `None` when nothing is cut.
    pub extent: Option<Extent>,
    pub width_mm: f64,
    pub height_mm: f64,
    /// The speeds the file sets (`VS`), cm/s, first and last.
    pub speeds_cm_s: Vec<f64>,
    /// The highest force the file sets (`FS`), in the cutter's own unit (grams on Graphtec,
    /// a level on Roland).
    pub max_force: Option<f64>,
    /// Pens (tools) selected by `SP`, in the order first used.
    pub pens: Vec<u32>,
    /// Seconds, with the split below.
    pub estimate_s: f64,
    pub time: CutTime,
    /// `None` when the caller gave no media.
    pub media_fit: Option<MediaFit>,
    /// What the reader skipped or could not use.
    pub issues: Vec<Finding>,
}

/// An analysis and its preview.
#[derive(Debug)]
pub struct Analysis {
    pub summary: HpglSummary,
    pub preview_svg: Option<String>,
}

/// Whether `head` (the start of a file) looks like HP-GL: after blanks and optional
/// device-control sequences, `IN`, `DF`, `PU`, `PA`, `SP` or `PD` then a separator or a digit.
pub fn looks_like_hpgl(head: &[u8]) -> bool {
    let mut i = 0;
    loop {
        // Not `;`: a G-code comment starts with one.
        while i < head.len() && matches!(head[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if head.get(i) == Some(&0x1b) {
            match head[i..].iter().position(|&b| b == b':') {
                Some(end) if end < 64 => i += end + 1,
                _ => return false,
            }
        } else {
            break;
        }
    }
    let Some(m) = head.get(i..i + 2) else {
        return false;
    };
    let m = [m[0].to_ascii_uppercase(), m[1].to_ascii_uppercase()];
    let known = matches!(&m, b"IN" | b"DF" | b"PU" | b"PA" | b"SP" | b"PD");
    let next = head.get(i + 2).copied();
    known
        && next.is_none_or(|b| {
            b.is_ascii_digit() || matches!(b, b';' | b'\n' | b'\r' | b' ' | b',' | b'-')
        })
        && !head.contains(&0)
}

/// Reads HP-GL from `r` and analyses it with `settings`; a preview is drawn when `preview`
/// is given. Only an I/O error fails: anything in the file itself is a finding.
pub fn analyze<R: BufRead>(
    r: R,
    settings: &CutterSettings,
    preview: Option<&PreviewOptions>,
) -> io::Result<Analysis> {
    let mut plotter = Plotter::new(settings, preview.cloned());
    scan::scan(r, &mut |t| plotter.token(t))?;
    Ok(plotter.finish())
}

/// How the instruction being read uses its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Current {
    /// `PU`, `PD`, `PA`, `PR`: coordinate pairs, each a move.
    Moves,
    /// `SP`, `VS`, `FS`: the first parameter only.
    Setting([u8; 2]),
    /// Anything else: parameters ignored.
    Ignored,
}

struct Plotter<'a> {
    settings: &'a CutterSettings,
    commands: u64,
    line: u64,
    current: Current,
    /// First half of a coordinate pair.
    pending_x: Option<f64>,
    got_param: bool,
    pos: [f64; 2],
    down: bool,
    absolute: bool,
    speed_cm_s: f64,
    strokes: u64,
    /// Whether the current stroke has cut anything yet.
    stroke_cut: bool,
    cut_units: f64,
    travel_units: f64,
    cut_s: f64,
    travel_s: f64,
    pen_changes: u64,
    min: [f64; 2],
    max: [f64; 2],
    speeds: Vec<f64>,
    max_force: Option<f64>,
    pens: Vec<u32>,
    issues: Vec<Finding>,
    counts: Vec<(&'static str, u32)>,
    preview: Option<preview::PreviewBuilder>,
}

impl<'a> Plotter<'a> {
    fn new(settings: &'a CutterSettings, preview: Option<PreviewOptions>) -> Self {
        Plotter {
            settings,
            commands: 0,
            line: 1,
            current: Current::Ignored,
            pending_x: None,
            got_param: false,
            pos: [0.0; 2],
            down: false,
            absolute: true,
            speed_cm_s: settings.cut_speed_cm_s,
            strokes: 0,
            stroke_cut: false,
            cut_units: 0.0,
            travel_units: 0.0,
            cut_s: 0.0,
            travel_s: 0.0,
            pen_changes: 0,
            min: [f64::MAX; 2],
            max: [f64::MIN; 2],
            speeds: Vec::new(),
            max_force: None,
            pens: Vec::new(),
            issues: Vec::new(),
            counts: Vec::new(),
            preview: preview.map(preview::PreviewBuilder::new),
        }
    }

    fn token(&mut self, t: Token) {
        match t {
            Token::Start(m, line) => self.start(m, line),
            Token::Param(v) => self.param(v),
            Token::BadParam => {
                self.find(
                    "unparsable_number",
                    "un nombre illisible ou hors de portée du traceur a été ignoré",
                    "a number that cannot be read or is beyond the plotter's range was skipped",
                );
                // The pair it belonged to is lost; the next number starts a new one.
                self.pending_x = None;
            }
            Token::End => self.end(),
            Token::Label(line) => {
                self.line = line;
                self.find(
                    "label",
                    "un texte (LB) n'est pas découpé : convertissez-le en tracés",
                    "a text label (LB) is not cut: convert it to outlines",
                );
            }
            Token::DeviceControl(_) => {}
            Token::Junk(_, line) => {
                self.line = line;
                self.find(
                    "unexpected_byte",
                    "un octet qui n'est pas du HP-GL a été ignoré",
                    "a byte that is not HP-GL was skipped",
                );
            }
        }
    }

    fn start(&mut self, m: [u8; 2], line: u64) {
        self.commands += 1;
        self.line = line;
        self.pending_x = None;
        self.got_param = false;
        self.current = match &m {
            b"PU" => {
                self.pen(false);
                Current::Moves
            }
            b"PD" => {
                self.pen(true);
                Current::Moves
            }
            b"PA" => {
                self.absolute = true;
                Current::Moves
            }
            b"PR" => {
                self.absolute = false;
                Current::Moves
            }
            b"IN" => {
                // Initialise: blade up, absolute coordinates, the cutter's own speed.
                self.pen(false);
                self.absolute = true;
                self.speed_cm_s = self.settings.cut_speed_cm_s;
                Current::Ignored
            }
            b"SP" | b"VS" | b"FS" => Current::Setting(m),
            // Harmless for a cutter: defaults, line type, plot size, pen width, the
            // terminator of labels, which the reader does not use.
            b"DF" | b"LT" | b"PS" | b"PW" | b"DT" | b"CO" | b"LB" => Current::Ignored,
            _ => {
                let name = String::from_utf8_lossy(&m).into_owned();
                self.find(
                    "unsupported_command",
                    &format!("l'instruction {name} n'est pas suivie : ce qu'elle trace manque"),
                    &format!("the {name} instruction is not followed: what it draws is missing"),
                );
                Current::Ignored
            }
        };
    }

    fn param(&mut self, v: f64) {
        let first = !self.got_param;
        self.got_param = true;
        match self.current {
            Current::Moves => match self.pending_x.take() {
                None => self.pending_x = Some(v),
                Some(x) => self.move_to(x, v),
            },
            Current::Setting(m) if first => self.setting(m, v),
            _ => {}
        }
    }

    fn setting(&mut self, m: [u8; 2], v: f64) {
        match &m {
            b"VS" if v > 0.0 => {
                self.speed_cm_s = v;
                if self.speeds.last() != Some(&v) && self.speeds.len() < 32 {
                    self.speeds.push(v);
                }
            }
            b"VS" => self.find(
                "bad_speed",
                "une vitesse (VS) nulle ou négative a été ignorée",
                "a zero or negative speed (VS) was skipped",
            ),
            b"FS" => self.max_force = Some(self.max_force.map_or(v, |f: f64| f.max(v))),
            b"SP" => {
                let pen = v.max(0.0) as u32;
                if pen > 0 && !self.pens.contains(&pen) && self.pens.len() < 32 {
                    self.pens.push(pen);
                }
            }
            _ => {}
        }
    }

    fn end(&mut self) {
        if self.current == Current::Moves && self.pending_x.is_some() {
            self.find(
                "odd_coordinates",
                "une coordonnée sans sa paire a été ignorée",
                "a coordinate without its pair was skipped",
            );
        }
        // `SP;` with no number puts the pen away.
        self.current = Current::Ignored;
        self.pending_x = None;
    }

    fn pen(&mut self, down: bool) {
        if down != self.down {
            self.pen_changes += 1;
            self.down = down;
            if down {
                self.stroke_cut = false;
            }
        }
    }

    fn move_to(&mut self, x: f64, y: f64) {
        let to = if self.absolute {
            [x, y]
        } else {
            [self.pos[0] + x, self.pos[1] + y]
        };
        // A relative move may walk past the plotter's range; clamp rather than overflow.
        let to = to.map(|c| c.clamp(-scan::MAX_COORDINATE, scan::MAX_COORDINATE));
        let from = self.pos;
        let length = (to[0] - from[0]).hypot(to[1] - from[1]);
        if self.down {
            if !self.stroke_cut {
                self.stroke_cut = true;
                self.strokes += 1;
            }
            self.cut_units += length;
            self.cut_s += length / UNITS_PER_MM / (self.speed_cm_s * 10.0);
            for p in [from, to] {
                self.min = [self.min[0].min(p[0]), self.min[1].min(p[1])];
                self.max = [self.max[0].max(p[0]), self.max[1].max(p[1])];
            }
        } else {
            self.travel_units += length;
            self.travel_s +=
                length / UNITS_PER_MM / (self.settings.travel_speed_cm_s.max(0.1) * 10.0);
        }
        if let Some(p) = &mut self.preview {
            p.segment(mm(from), mm(to), self.down);
        }
        self.pos = to;
    }

    fn find(&mut self, code: &'static str, fr: &str, en: &str) {
        let count = match self.counts.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => n,
            None => {
                self.counts.push((code, 0));
                let last = self.counts.len() - 1;
                &mut self.counts[last].1
            }
        };
        *count += 1;
        if *count <= FINDINGS_PER_CODE {
            self.issues.push(Finding {
                line: self.line,
                code: code.into(),
                message: Message {
                    fr: fr.into(),
                    en: en.into(),
                },
            });
        }
    }

    fn finish(mut self) -> Analysis {
        for (code, n) in &self.counts {
            if *n > FINDINGS_PER_CODE {
                let more = n - FINDINGS_PER_CODE;
                self.issues.push(Finding {
                    line: 0,
                    code: (*code).into(),
                    message: Message {
                        fr: format!("et {more} de plus du même genre"),
                        en: format!("and {more} more of the same kind"),
                    },
                });
            }
        }
        let extent = (self.min[0] <= self.max[0]).then(|| Extent {
            min_x_mm: round3(self.min[0] / UNITS_PER_MM),
            min_y_mm: round3(self.min[1] / UNITS_PER_MM),
            max_x_mm: round3(self.max[0] / UNITS_PER_MM),
            max_y_mm: round3(self.max[1] / UNITS_PER_MM),
        });
        let (width_mm, height_mm) = extent.map_or((0.0, 0.0), |e| {
            (
                round3(e.max_x_mm - e.min_x_mm),
                round3(e.max_y_mm - e.min_y_mm),
            )
        });
        let time = CutTime {
            cutting_s: round1(self.cut_s),
            travel_s: round1(self.travel_s),
            pen_changes_s: round1(self.pen_changes as f64 * self.settings.pen_change_s),
        };
        let estimate_s = round1((self.cut_s + self.travel_s + time.pen_changes_s).min(1e9));
        let media_fit = self.settings.media.map(|media| media_fit(media, extent));
        let preview_svg = self.preview.take().map(|p| p.finish());
        Analysis {
            summary: HpglSummary {
                commands: self.commands,
                strokes: self.strokes,
                cut_mm: round1(self.cut_units / UNITS_PER_MM),
                travel_mm: round1(self.travel_units / UNITS_PER_MM),
                extent,
                width_mm,
                height_mm,
                speeds_cm_s: self.speeds,
                max_force: self.max_force,
                pens: self.pens,
                estimate_s,
                time,
                media_fit,
                issues: self.issues,
            },
            preview_svg,
        }
    }
}

fn media_fit(media: Media, extent: Option<Extent>) -> MediaFit {
    let Some(e) = extent else {
        return MediaFit {
            media,
            fits: true,
            past_left_mm: 0.0,
            past_right_mm: 0.0,
            past_bottom_mm: 0.0,
            past_top_mm: 0.0,
        };
    };
    let past = |v: f64| round3(v.max(0.0));
    let past_left_mm = past(-e.min_x_mm);
    let past_right_mm = media.length_mm.map_or(0.0, |l| past(e.max_x_mm - l));
    let past_bottom_mm = past(-e.min_y_mm);
    let past_top_mm = past(e.max_y_mm - media.width_mm);
    MediaFit {
        media,
        fits: [past_left_mm, past_right_mm, past_bottom_mm, past_top_mm]
            .iter()
            .all(|&p| p == 0.0),
        past_left_mm,
        past_right_mm,
        past_bottom_mm,
        past_top_mm,
    }
}

fn mm(p: [f64; 2]) -> [f64; 2] {
    [p[0] / UNITS_PER_MM, p[1] / UNITS_PER_MM]
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests;
