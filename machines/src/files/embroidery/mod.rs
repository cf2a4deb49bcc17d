//! Embroidery files: read DST (Tajima), PES and PEC (Brother), EXP (Melco) and JEF (Janome);
//! summarise a design (stitches, jumps, trims, colour changes, threads, size, hoop fit,
//! sewing time); draw it as a small SVG; write it back as DST.
//!
//! Embroidery machines mostly take their files on a USB stick, so Fabrique's part is to read
//! the file, check it against the machine's hoops, show it in its thread colours, estimate
//! how long it sews, and convert it to Tajima DST (which every machine brand reads).
//!
//! # Coordinates
//!
//! Every format stores relative moves in tenths of a millimetre ("units"). A [`Design`] keeps
//! absolute positions in units from the start point, x to the right and **y down** (the SVG
//! convention, and pyembroidery's). DST, EXP and JEF store y up, so their readers flip it;
//! PEC stores y down already.
//!
//! # What a count means
//!
//! The counts follow what the machine does, and on the formats' own conventions they agree
//! with pyembroidery's readers (the peer test checks it):
//!
//! - a **stitch** is a needle penetration (a record that moves and sews);
//! - a **jump** is a frame move without sewing (DST and PEC long moves are several jumps);
//! - a **trim** is a thread cut before a travel. PEC flags it on the jump records and EXP has
//!   a code for it; trim signals that follow one another with only jumps between them are one
//!   trim. DST and JEF have no trim code: the cut is written as jumps. A DST run of three or
//!   more jumps after sewing is a trim (the Tajima convention pyembroidery reads by; Tajima
//!   machines have a setting for how many jump codes make a cut); a JEF run of jumps that moves more than 3 mm along an axis after
//!   sewing is a trim (the rule pyembroidery reads JEF by). In those two formats a run of
//!   jumps that comes back to where it started is the trim signal itself (DST writers wiggle
//!   ±0.2 mm three times), not travel: it adds no jump and no extent;
//! - a **colour change** is a machine stop for the operator to change thread (JEF's "stop, same
//!   thread" and PES's change to the same colour are stops as well: pyembroidery calls those
//!   `STOP` and the others `COLOR_CHANGE`).
//!
//! # Bounded reading
//!
//! A design is read whole into memory, but never more than [`MAX_FILE_BYTES`] (embroidery
//! files are tens or hundreds of kilobytes); no length field of a file is trusted to size an
//! allocation; every offset and count is checked against the bytes really there. Bad input is
//! an [`EmbroideryError`] that says why, never a panic.
//!
//! # Layout
//!
//! - `dst`, `pec` (PES and PEC), `exp`, `jef`: one module per format.
//! - `travel`: the jump and trim conventions shared by the readers.
//! - `palette`: Brother's and Janome's thread charts (RGB, name, catalogue number).
//! - `summary`: counts, size, hoop fit, sewing time, the JSON of `fabrique analyze`.
//! - `preview`: the SVG top view.

mod dst;
mod exp;
mod jef;
mod palette;
mod pec;
mod preview;
mod summary;
mod travel;

use std::fmt;
use std::io::Read;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

pub use dst::{DstHeader, write_dst};
pub use preview::{PREVIEW_MAX_POINTS, preview_svg};
pub use summary::{
    EmbroideryMachine, EmbroiderySummary, Extent, Hoop, HoopFit, Message, SewingTime, analyze,
    fit_hoops,
};

/// The most Fabrique reads of one embroidery file: 32 MiB. Real designs are well under 1 MiB
/// (100 000 stitches of DST are 300 kB).
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;

/// Units per millimetre: every format here counts in tenths of a millimetre.
pub const UNITS_PER_MM: f64 = 10.0;

/// An embroidery file format Fabrique reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Tajima DST.
    Dst,
    /// Brother PES (a PES header, then the PEC block the machine sews from).
    Pes,
    /// Brother PEC on its own (`#PEC0001`).
    Pec,
    /// Melco EXP.
    Exp,
    /// Janome JEF.
    Jef,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Dst,
        Format::Pes,
        Format::Pec,
        Format::Exp,
        Format::Jef,
    ];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Dst => "dst",
            Format::Pes => "pes",
            Format::Pec => "pec",
            Format::Exp => "exp",
            Format::Jef => "jef",
        }
    }

    /// The format a file name's extension names, in any case (`ROSE.DST`).
    pub fn from_file_name(name: &str) -> Option<Format> {
        let (_, ext) = name.rsplit_once('.')?;
        Format::ALL
            .into_iter()
            .find(|f| f.extension().eq_ignore_ascii_case(ext))
    }

    /// The format the first bytes announce, for the formats that announce one: PES (`#PES`),
    /// PEC (`#PEC`) and DST (its header starts with `LA:`). EXP and JEF have no signature.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"#PES") {
            Some(Format::Pes)
        } else if head.starts_with(b"#PEC") {
            Some(Format::Pec)
        } else if head.starts_with(b"LA:") {
            Some(Format::Dst)
        } else {
            None
        }
    }

    /// The format of a file: a signature wins (a PES named `.dst` is still a PES), then the
    /// extension.
    pub fn detect(file_name: Option<&str>, head: &[u8]) -> Option<Format> {
        Format::sniff(head).or_else(|| file_name.and_then(Format::from_file_name))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Dst => "DST",
            Format::Pes => "PES",
            Format::Pec => "PEC",
            Format::Exp => "EXP",
            Format::Jef => "JEF",
        })
    }
}

/// What a command does at its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Move and sew: the needle goes down at the position.
    Stitch,
    /// Move the frame without sewing.
    Jump,
    /// Cut the thread (no move).
    Trim,
    /// Stop for a thread change (no move in the design; a DST colour-change record may carry
    /// one).
    ColorChange,
}

/// One command of a design, with the absolute position it leaves the needle at, in units
/// (0.1 mm) from the start point, y down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub kind: Kind,
    pub x: i32,
    pub y: i32,
}

/// A thread colour, from the file or from a palette.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub rgb: [u8; 3],
    pub name: Option<String>,
    /// The catalogue number in the brand's chart ("20" for Brother black).
    pub catalog: Option<String>,
}

impl Thread {
    pub fn new(rgb: [u8; 3]) -> Self {
        Self {
            rgb,
            name: None,
            catalog: None,
        }
    }

    /// `#rrggbb`.
    pub fn hex(&self) -> String {
        let [r, g, b] = self.rgb;
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

impl Serialize for Thread {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Thread", 3)?;
        st.serialize_field("hex", &self.hex())?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("catalog", &self.catalog)?;
        st.end()
    }
}

/// Read back from a stored analysis: `{"hex": "#rrggbb", "name", "catalog"}`.
impl<'de> Deserialize<'de> for Thread {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            hex: String,
            name: Option<String>,
            catalog: Option<String>,
        }
        let stored = Stored::deserialize(d)?;
        let digits = stored.hex.strip_prefix('#').unwrap_or(&stored.hex);
        let channel = |i: usize| {
            digits
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| serde::de::Error::custom("a colour is written #rrggbb"))
        };
        Ok(Thread {
            rgb: [channel(0)?, channel(2)?, channel(4)?],
            name: stored.name,
            catalog: stored.catalog,
        })
    }
}

/// Colours for designs whose file names none (DST, EXP): distinct and visible on a light
/// background, so the blocks of a preview can be told apart.
const FALLBACK_COLORS: [[u8; 3]; 8] = [
    [0x1f, 0x4e, 0x9c],
    [0xc0, 0x39, 0x2b],
    [0x1e, 0x84, 0x49],
    [0xd6, 0x8a, 0x00],
    [0x7d, 0x3c, 0x98],
    [0x11, 0x7a, 0x8b],
    [0x4d, 0x4d, 0x4d],
    [0xc2, 0x18, 0x7a],
];

/// An embroidery design: its commands and the threads of its colour blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Design {
    /// The format it was read from (`None` for a design built in code).
    pub format: Option<Format>,
    /// The design's label (DST `LA:`, PEC `LA:`), trimmed.
    pub name: Option<String>,
    pub commands: Vec<Command>,
    /// The thread of each colour block as the file gives it, first block first. DST and EXP
    /// carry none; a file may list fewer threads than it has blocks.
    pub threads: Vec<Thread>,
}

/// How many of each command a design has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub stitches: u64,
    pub jumps: u64,
    pub trims: u64,
    pub color_changes: u64,
}

impl Design {
    /// An empty design, to be built with [`Design::stitch`] and the others.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the last command left the needle (the start point, 0 0, before any).
    pub fn position(&self) -> (i32, i32) {
        self.commands.last().map_or((0, 0), |c| (c.x, c.y))
    }

    fn push(&mut self, kind: Kind, x: i32, y: i32) -> &mut Self {
        self.commands.push(Command { kind, x, y });
        self
    }

    /// Sews to `x`, `y` (units, absolute).
    pub fn stitch(&mut self, x: i32, y: i32) -> &mut Self {
        self.push(Kind::Stitch, x, y)
    }

    /// Moves the frame to `x`, `y` (units, absolute) without sewing.
    pub fn jump(&mut self, x: i32, y: i32) -> &mut Self {
        self.push(Kind::Jump, x, y)
    }

    /// Cuts the thread where the needle is.
    pub fn trim(&mut self) -> &mut Self {
        let (x, y) = self.position();
        self.push(Kind::Trim, x, y)
    }

    /// Stops for the next thread, where the needle is.
    pub fn color_change(&mut self) -> &mut Self {
        let (x, y) = self.position();
        self.push(Kind::ColorChange, x, y)
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for cmd in &self.commands {
            match cmd.kind {
                Kind::Stitch => c.stitches += 1,
                Kind::Jump => c.jumps += 1,
                Kind::Trim => c.trims += 1,
                Kind::ColorChange => c.color_changes += 1,
            }
        }
        c
    }

    /// The smallest box holding every position the design moves the needle to (stitches and
    /// jumps), in units; `None` for a design without commands. Like pyembroidery's
    /// `extents()`, the start point counts only if a command is there.
    pub fn extent_units(&self) -> Option<[i32; 4]> {
        let first = self.commands.first()?;
        let mut e = [first.x, first.y, first.x, first.y];
        for c in &self.commands {
            e[0] = e[0].min(c.x);
            e[1] = e[1].min(c.y);
            e[2] = e[2].max(c.x);
            e[3] = e[3].max(c.y);
        }
        Some(e)
    }

    /// One thread per colour block (colour changes + 1): the file's where it names one, else
    /// a distinct stand-in colour with no name.
    pub fn block_threads(&self) -> Vec<Thread> {
        let blocks = self.counts().color_changes as usize + 1;
        (0..blocks)
            .map(|i| {
                self.threads
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| Thread::new(FALLBACK_COLORS[i % FALLBACK_COLORS.len()]))
            })
            .collect()
    }

    /// Whether the file named the thread of every block.
    pub fn threads_from_file(&self) -> bool {
        self.threads.len() > self.counts().color_changes as usize
    }
}

/// Reads a design from `reader`, at most [`MAX_FILE_BYTES`].
pub fn read<R: Read>(reader: R, format: Format) -> Result<Design, EmbroideryError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    read_bytes(&bytes, format)
}

/// Reads a design already in memory.
pub fn read_bytes(bytes: &[u8], format: Format) -> Result<Design, EmbroideryError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(EmbroideryError::TooLarge {
            max_mib: MAX_FILE_BYTES / (1024 * 1024),
        });
    }
    if bytes.is_empty() {
        return Err(EmbroideryError::Empty);
    }
    let mut design = match format {
        Format::Dst => dst::read(bytes)?,
        Format::Pes => pec::read_pes(bytes)?,
        Format::Pec => pec::read_pec_file(bytes)?,
        Format::Exp => exp::read(bytes)?,
        Format::Jef => jef::read(bytes)?,
    };
    design.format = Some(format);
    Ok(design)
}

/// The part of a file that was missing when it ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    ColorTable,
    Record,
    EndMarker,
}

impl Part {
    fn en(self) -> &'static str {
        match self {
            Part::Header => "the header",
            Part::ColorTable => "the colour table",
            Part::Record => "the rest of a stitch record",
            Part::EndMarker => "the end-of-design marker",
        }
    }

    fn fr(self) -> &'static str {
        match self {
            Part::Header => "l'en-tête",
            Part::ColorTable => "la table des couleurs",
            Part::Record => "la fin d'un point",
            Part::EndMarker => "la marque de fin du motif",
        }
    }
}

/// Why a file's content cannot be a design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A DST record without the two low bits every Tajima record sets in its third byte.
    NotATajimaRecord,
    /// The PES header points to a PEC block beyond the end of the file.
    PecOffsetOutsideFile(u64),
    /// Where the PES header points there is no PEC block (`LA:`).
    NoPecBlock,
    /// An escape (0x80) followed by a control code the format does not have.
    UnknownControl(u8),
    /// The JEF header puts the stitches before the end of its own header or beyond the file.
    StitchOffsetOutsideFile(u64),
    /// The JEF header announces more colours than its header has room for.
    TooManyColors(u64),
}

impl Problem {
    fn en(self) -> String {
        match self {
            Problem::NotATajimaRecord => {
                "a stitch record lacks the two bits every Tajima record sets".into()
            }
            Problem::PecOffsetOutsideFile(o) => {
                format!("the header points to a PEC block at byte {o}, beyond the end of the file")
            }
            Problem::NoPecBlock => "there is no PEC block where the header points".into(),
            Problem::UnknownControl(c) => format!("unknown control code 0x{c:02X}"),
            Problem::StitchOffsetOutsideFile(o) => {
                format!("the header puts the stitches at byte {o}, outside the file")
            }
            Problem::TooManyColors(n) => format!("the header announces {n} colours"),
        }
    }

    fn fr(self) -> String {
        match self {
            Problem::NotATajimaRecord => {
                "un point n'a pas les deux bits que tout point Tajima porte".into()
            }
            Problem::PecOffsetOutsideFile(o) => {
                format!("l'en-tête désigne un bloc PEC à l'octet {o}, après la fin du fichier")
            }
            Problem::NoPecBlock => "il n'y a pas de bloc PEC là où l'en-tête l'indique".into(),
            Problem::UnknownControl(c) => format!("code de commande inconnu 0x{c:02X}"),
            Problem::StitchOffsetOutsideFile(o) => {
                format!("l'en-tête place les points à l'octet {o}, hors du fichier")
            }
            Problem::TooManyColors(n) => format!("l'en-tête annonce {n} couleurs"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.en())
    }
}

/// Why a file could not be read as a design.
#[derive(Debug, thiserror::Error)]
pub enum EmbroideryError {
    #[error("could not read the embroidery file")]
    Io(#[from] std::io::Error),
    #[error("the file is larger than {max_mib} MiB, far more than any embroidery design")]
    TooLarge { max_mib: usize },
    #[error("the file is empty")]
    Empty,
    #[error("not a {format} file: it does not start with “{expected}”")]
    WrongMagic {
        format: Format,
        expected: &'static str,
    },
    #[error("the {format} file is cut short: {} is missing (byte {offset})", .missing.en())]
    Truncated {
        format: Format,
        offset: usize,
        missing: Part,
    },
    #[error("the {format} file is damaged at byte {offset}: {problem}")]
    Invalid {
        format: Format,
        offset: usize,
        problem: Problem,
    },
    #[error("the {format} design moves more than 200 m from its start (byte {offset})")]
    OutOfRange { format: Format, offset: usize },
}

impl EmbroideryError {
    /// What to tell the member, in French and English.
    pub fn message(&self) -> Message {
        let (fr, en) = match self {
            EmbroideryError::Io(_) => (
                "Le fichier n'a pas pu être lu. Réessayez de l'envoyer.".to_string(),
                "The file could not be read. Try sending it again.".to_string(),
            ),
            EmbroideryError::TooLarge { max_mib } => (
                format!(
                    "Le fichier dépasse {max_mib} Mo : ce n'est pas un motif de broderie. \
                     Vérifiez le fichier choisi."
                ),
                format!(
                    "The file is over {max_mib} MiB: it is not an embroidery design. \
                     Check the file you chose."
                ),
            ),
            EmbroideryError::Empty => (
                "Le fichier est vide. Exportez à nouveau le motif.".to_string(),
                "The file is empty. Export the design again.".to_string(),
            ),
            EmbroideryError::WrongMagic { format, expected } => (
                format!(
                    "Ce n'est pas un fichier {format} : il ne commence pas par « {expected} ». \
                     Vérifiez l'extension ou exportez à nouveau le motif."
                ),
                format!(
                    "This is not a {format} file: it does not start with “{expected}”. \
                     Check the extension or export the design again."
                ),
            ),
            EmbroideryError::Truncated {
                format, missing, ..
            } => (
                format!(
                    "Le fichier {format} est coupé : il manque {}. Il a sans doute été mal \
                     copié ; exportez-le à nouveau.",
                    missing.fr()
                ),
                format!(
                    "The {format} file is cut short: {} is missing. It was probably copied \
                     badly; export it again.",
                    missing.en()
                ),
            ),
            EmbroideryError::Invalid {
                format,
                offset,
                problem,
            } => (
                format!(
                    "Le fichier {format} est abîmé (octet {offset}) : {}. Exportez à nouveau \
                     le motif.",
                    problem.fr()
                ),
                format!(
                    "The {format} file is damaged (byte {offset}): {}. Export the design again.",
                    problem.en()
                ),
            ),
            EmbroideryError::OutOfRange { format, .. } => (
                format!(
                    "Le motif {format} s'étend sur plus de 200 m : le fichier est abîmé. \
                     Exportez à nouveau le motif."
                ),
                format!(
                    "The {format} design spans more than 200 m: the file is damaged. \
                     Export the design again."
                ),
            ),
        };
        Message { fr, en }
    }
}

/// Reads a little-endian u32 at `at`, if the bytes are there.
fn u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The printable label of a header field: trimmed, without NULs, `None` when empty.
fn label(raw: &[u8]) -> Option<String> {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_comes_from_the_signature_before_the_extension() {
        assert_eq!(
            Format::detect(Some("rose.dst"), b"#PES0001"),
            Some(Format::Pes)
        );
        assert_eq!(
            Format::detect(Some("ROSE.JEF"), &[0x74, 0, 0, 0]),
            Some(Format::Jef)
        );
        assert_eq!(Format::detect(None, b"LA:rose"), Some(Format::Dst));
        assert_eq!(Format::detect(Some("rose.svg"), b"<svg"), None);
    }

    #[test]
    fn a_file_above_the_cap_is_refused_before_it_is_parsed() {
        let big = std::io::repeat(0).take(MAX_FILE_BYTES as u64 + 10);
        let err = read(big, Format::Exp).unwrap_err();
        assert!(matches!(err, EmbroideryError::TooLarge { max_mib: 32 }));
    }

    #[test]
    fn an_empty_file_is_an_error_in_every_format() {
        for f in Format::ALL {
            assert!(matches!(read_bytes(&[], f), Err(EmbroideryError::Empty)));
        }
    }

    #[test]
    fn blocks_without_a_thread_in_the_file_get_distinct_stand_in_colours() {
        let mut d = Design::new();
        d.stitch(10, 0).color_change().stitch(20, 0);
        let threads = d.block_threads();
        assert_eq!(threads.len(), 2);
        assert_ne!(threads[0].rgb, threads[1].rgb);
        assert!(!d.threads_from_file());
    }

    #[test]
    fn every_error_has_a_french_and_an_english_message() {
        let errors = [
            EmbroideryError::Empty,
            EmbroideryError::TooLarge { max_mib: 32 },
            EmbroideryError::WrongMagic {
                format: Format::Dst,
                expected: "LA:",
            },
            EmbroideryError::Truncated {
                format: Format::Jef,
                offset: 10,
                missing: Part::EndMarker,
            },
            EmbroideryError::Invalid {
                format: Format::Exp,
                offset: 4,
                problem: Problem::UnknownControl(0x33),
            },
        ];
        for e in errors {
            let m = e.message();
            assert!(!m.fr.is_empty() && !m.en.is_empty() && m.fr != m.en, "{e}");
        }
    }
}
