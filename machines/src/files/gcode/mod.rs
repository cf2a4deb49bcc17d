//! G-code analysis: one pass, in constant memory, over a file for a printer, a laser or a
//! mill. It returns what a fab manager needs before scheduling a job:
//!
//! - **our own time estimate** from a motion model ([`planner`]): trapezoidal acceleration
//!   with look-ahead, classic jerk or junction deviation, the file's `M201`/`M203`/`M204`/
//!   `M205` (and Klipper's `SET_VELOCITY_LIMIT`) over the machine's [`FirmwareLimits`]
//!   (from the lab's profile, else the slicer's configuration block, else defaults: the
//!   summary says which, [`LimitsUsed`]),
//!   dwells, heat-up waits with a linear heating model, arcs, firmware retraction and the
//!   feed-rate override; in total and per layer;
//! - filament length, volume and weight, the extent of the extrusions and of every move,
//!   layers and layer heights, highest temperatures, tool and filament changes;
//! - for lasers and mills: beam-on time and path, highest power, passes, laser mode;
//! - the slicer's name, version, printer, layer height, its own estimate (shown beside
//!   ours, never used as ours) and its PNG thumbnail ([`metadata`]);
//! - findings that hold whatever the machine (commands a member may not send, lines that
//!   are not G-code), each with its line and a French and English message saying what to
//!   change ([`checks`]);
//! - what the file asks of a machine, for the controller's fit rule: its extents, highest
//!   temperatures and power, and the first line of each kind of command ([`Uses`]): printer,
//!   laser, GRBL `$` lines, Klipper macros. Whether a file may run on a machine is decided
//!   there, once, never here;
//! - optionally an SVG top view of the toolpath ([`preview`]).
//!
//! # Why a scanner of our own, not the `gcode` crate
//!
//! The `gcode` crate 0.7 parses a whole program at once and gives it up on the first bad
//! line (Cura's end line `M84 X Y E` is enough), reads numbers as `f32` (a 300 mm bed loses
//! the third decimal), and runs at about 45 MB/s. A job check must go on past a bad line,
//! say which line it was, and read a 500 MB file faster than the member can upload it. The
//! [`scan`] module splits lines eight bytes at a time in a fixed buffer and reads words into
//! a reused table, with no allocation per line and numbers parsed by hand into `f64`.
//!
//! # What the estimate leaves out
//!
//! Slicer estimates and `M73` progress lines are never read for it. Homing (`G28`) counts
//! as a move to zero at the current feed rate, as PrusaSlicer counts it. Klipper macros
//! (`PRINT_START`), filament changes (`M600`) and pauses (`M0`, `M1`) count 0 s: they wait
//! for a person or run code Fabrique cannot see. Heating is counted from 20 °C at the
//! profile's rates (defaults 2 °C/s for a nozzle, 0.5 °C/s for a bed) and reported apart
//! (`time.heating_s`), since slicers do not count it.
//!
//! # Layout
//!
//! - [`scan`]: lines and words out of bytes;
//! - [`planner`]: the motion model;
//! - [`metadata`]: slicer comments and thumbnails;
//! - [`slicer_config`]: the machine limits in a slicer's configuration block;
//! - [`checks`]: findings and their messages;
//! - [`preview`]: the SVG top view.

pub mod checks;
pub mod metadata;
pub mod planner;
pub mod preview;
pub mod report;
pub mod scan;
pub mod slicer_config;

use checks::Findings;
use metadata::{Metadata, Tag};
use planner::{Move, MoveKind, Planner};
use preview::PreviewBuilder;
pub use preview::PreviewOptions;
pub use report::ReportedLimits;
use scan::{Kind, LineReader, Words};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};

/// The firmware a machine runs, for what `G0` and `G4 P` mean and its motion defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Marlin,
    Grbl,
    Klipper,
    /// Not known: Marlin's meaning of words, GRBL's for a file that only cuts.
    #[default]
    Unknown,
}

/// How corners are taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Junction {
    /// Classic jerk, per axis X Y Z E, mm/s (`M205 X Y Z E`).
    Jerk { mm_s: [f64; 4] },
    /// Junction deviation, mm (Marlin 2 `M205 J`, GRBL `$11`).
    Deviation { mm: f64 },
    /// Klipper's square corner velocity, mm/s.
    SquareCorner { mm_s: f64 },
}

/// A machine's motion limits, as its firmware holds them. Axes are X, Y, Z, E.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirmwareLimits {
    /// `M203`, mm/s (0: no limit).
    pub max_feedrate_mm_s: [f64; 4],
    /// `M201`, mm/s² (0: no limit).
    pub max_acceleration_mm_s2: [f64; 4],
    /// `M204 P` (or `S`): moves that extrude.
    pub print_acceleration_mm_s2: f64,
    /// `M204 R`: extruder-only moves.
    pub retract_acceleration_mm_s2: f64,
    /// `M204 T` (or `S`): moves that do not extrude.
    pub travel_acceleration_mm_s2: f64,
    pub junction: Junction,
    /// `M205 S`, mm/s.
    pub min_feedrate_mm_s: f64,
    /// `M205 T`, mm/s.
    pub min_travel_feedrate_mm_s: f64,
    /// Klipper's `max_velocity` on the XYZ path, mm/s (0: none).
    pub max_velocity_mm_s: f64,
    /// Klipper's `minimum_cruise_ratio` (0 to 1; 0: none, Klipper's default 0.5): a move
    /// cruises for at least that part of its length, as if it sped up and slowed down at
    /// `accel × (1 − ratio)` (the older `max_accel_to_decel`) to reach its top speed.
    pub min_cruise_ratio: f64,
}

impl Default for FirmwareLimits {
    /// PrusaSlicer's default machine limits (`PrintConfig.cpp`), which it uses for its own
    /// estimate when a file carries none: 500/500/12/120 mm/s, 9000/9000/500/10000 mm/s²,
    /// 1500 mm/s² to print, retract and travel (legacy Marlin travels at the print
    /// acceleration), jerk 10/10/0.2/2.5 mm/s, no minimum feed rate.
    fn default() -> Self {
        Self {
            max_feedrate_mm_s: [500.0, 500.0, 12.0, 120.0],
            max_acceleration_mm_s2: [9000.0, 9000.0, 500.0, 10_000.0],
            print_acceleration_mm_s2: 1500.0,
            retract_acceleration_mm_s2: 1500.0,
            travel_acceleration_mm_s2: 1500.0,
            junction: Junction::Jerk {
                mm_s: [10.0, 10.0, 0.2, 2.5],
            },
            min_feedrate_mm_s: 0.0,
            min_travel_feedrate_mm_s: 0.0,
            max_velocity_mm_s: 0.0,
            min_cruise_ratio: 0.0,
        }
    }
}

impl FirmwareLimits {
    /// Limits assumed for a dialect when the machine profile gives none.
    pub fn for_dialect(dialect: Dialect) -> Self {
        match dialect {
            // A diode or CO2 laser on GRBL 1.1: 8000 mm/min, 1000 mm/s², `$11` = 0.010 mm.
            Dialect::Grbl => Self {
                max_feedrate_mm_s: [8000.0 / 60.0, 8000.0 / 60.0, 10.0, 0.0],
                max_acceleration_mm_s2: [1000.0, 1000.0, 100.0, 0.0],
                print_acceleration_mm_s2: 1000.0,
                retract_acceleration_mm_s2: 1000.0,
                travel_acceleration_mm_s2: 1000.0,
                junction: Junction::Deviation { mm: 0.01 },
                ..Self::default()
            },
            // Klipper's default square corner velocity and minimum cruise ratio.
            Dialect::Klipper => Self {
                junction: Junction::SquareCorner { mm_s: 5.0 },
                min_cruise_ratio: 0.5,
                ..Self::default()
            },
            Dialect::Marlin | Dialect::Unknown => Self::default(),
        }
    }
}

/// How a Marlin firmware was built to slow down at corners: it takes either `M205 X/Y`
/// (classic jerk) or `M205 J` (junction deviation) and ignores the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JunctionRule {
    ClassicJerk,
    JunctionDeviation,
}

impl JunctionRule {
    pub const ALL: [JunctionRule; 2] = [JunctionRule::ClassicJerk, JunctionRule::JunctionDeviation];

    /// Its name in forms and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JunctionRule::ClassicJerk => "classic_jerk",
            JunctionRule::JunctionDeviation => "junction_deviation",
        }
    }
}

/// What the estimate needs to know of the machine. Nothing here is checked against the file:
/// the fit rule of the controller compares the summary with the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub dialect: Dialect,
    /// Motion limits the lab knows for the machine (its profile); `None`: the slicer's
    /// configuration block ([`Options::slicer_limits`]), else
    /// [`FirmwareLimits::for_dialect`]. The file's own `M201`/`M203`/`M204`/`M205` override
    /// them as they come, as the firmware applies them.
    pub firmware: Option<FirmwareLimits>,
    /// Which of `M205 X/Y` and `M205 J` the firmware takes; `None`: whichever comes last.
    pub junction_rule: Option<JunctionRule>,
    /// The printer runs in silent (stealth) mode: the slicer's second values.
    pub silent_mode: bool,
    /// Nozzle heating rate, °C/s (default 2).
    pub hotend_heating_c_per_s: Option<f64>,
    /// Bed heating rate, °C/s (default 0.5).
    pub bed_heating_c_per_s: Option<f64>,
    /// Filament diameter, mm (default 1.75).
    pub filament_diameter_mm: Option<f64>,
    /// Filament density, g/cm³ (default 1.24, PLA).
    pub filament_density_g_cm3: Option<f64>,
}

/// The longest estimate a summary gives, ours or the slicer's: 10⁹ s, about 31 years. A
/// file that claims or takes longer is broken (`X134787800780071157` is a 135-billion-km
/// move), and the figure goes into integer arithmetic elsewhere (a job's end time, the hours
/// a member has planned) that must stay far from overflow. `time.total_s` keeps the real
/// figure.
pub const MAX_ESTIMATE_S: i64 = 1_000_000_000;

/// Chords any file's arcs may be cut into, then [`ARC_CHORDS_PER_LINE`] more for each line
/// read. An arc is cut in chords of at most 2 mm, up to 100 000 for one arc: without a
/// budget, a 20-byte line (`G3 X100000 Y0 R-1`, a 157 m half-circle) was 78 000 moves, and
/// a few hundred such lines took minutes (found by fuzzing). Real files stay far inside it
/// (an arc of a print is a few chords).
const ARC_CHORDS_FREE: u64 = 100_000;
const ARC_CHORDS_PER_LINE: u64 = 64;

const DEFAULT_HOTEND_RATE: f64 = 2.0;
const DEFAULT_BED_RATE: f64 = 0.5;
const AMBIENT_C: f64 = 20.0;
/// Marlin's feed rate before any `F`: 1500 mm/min.
const DEFAULT_FEED_MM_S: f64 = 25.0;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub fr: String,
    pub en: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub line: u64,
    /// `forbidden_command` or `unparsable_line`.
    pub code: String,
    pub message: Message,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct BoundingBox {
    pub min_x: f64,
    pub min_y: f64,
    pub min_z: f64,
    pub max_x: f64,
    pub max_y: f64,
    pub max_z: f64,
}

impl BoundingBox {
    fn empty() -> Self {
        Self {
            min_x: f64::MAX,
            min_y: f64::MAX,
            min_z: f64::MAX,
            max_x: f64::MIN,
            max_y: f64::MIN,
            max_z: f64::MIN,
        }
    }

    fn add(&mut self, p: [f64; 4]) {
        self.min_x = self.min_x.min(p[0]);
        self.min_y = self.min_y.min(p[1]);
        self.min_z = self.min_z.min(p[2]);
        self.max_x = self.max_x.max(p[0]);
        self.max_y = self.max_y.max(p[1]);
        self.max_z = self.max_z.max(p[2]);
    }

    fn is_empty(&self) -> bool {
        self.min_x > self.max_x
    }

    fn rounded(self) -> Self {
        Self {
            min_x: round(self.min_x, 3),
            min_y: round(self.min_y, 3),
            min_z: round(self.min_z, 3),
            max_x: round(self.max_x, 3),
            max_y: round(self.max_y, 3),
            max_z: round(self.max_z, 3),
        }
    }
}

/// What the slicer says of its own work.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slicer {
    pub name: String,
    pub version: Option<String>,
    pub printer_model: Option<String>,
    pub layer_height_mm: Option<f64>,
    /// The slicer's own estimate, seconds: shown beside ours, never used as ours.
    pub estimate_s: Option<i64>,
    /// The slicer's own filament figure, mm.
    pub filament_mm: Option<f64>,
    /// Filament types the slicer was set for (`filament_type`), each once: `["PLA"]`,
    /// or `["PLA", "PETG"]` for two extruders. Cura does not write them.
    #[serde(default)]
    pub materials: Vec<String>,
}

/// A thumbnail the file carries (only PNG ones are decoded).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThumbnailInfo {
    pub width: u32,
    pub height: u32,
    /// `png`, `jpg` or `qoi`.
    pub format: String,
}

/// The largest PNG thumbnail of a file, decoded.
#[derive(Clone, PartialEq)]
pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    pub png: Vec<u8>,
}

impl std::fmt::Debug for Thumbnail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Thumbnail({}x{}, {} bytes)",
            self.width,
            self.height,
            self.png.len()
        )
    }
}

/// Where the time goes, seconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Time {
    /// Moves, from the motion model.
    pub moves_s: f64,
    /// `G4` dwells.
    pub dwell_s: f64,
    /// Waiting for the nozzle and the bed to heat (`M109`, `M190`).
    pub heating_s: f64,
    pub total_s: f64,
}

/// How a laser's power is set: `M4` (power follows speed), `M3` (constant), or both.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PowerMode {
    Dynamic,
    Constant,
    Mixed,
}

/// For a laser (or a mill, where the "beam" is the spindle): cutting figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LaserSummary {
    /// Time of the moves with the beam on, s.
    pub on_time_s: f64,
    /// Length of the moves with the beam on, mm.
    pub path_mm: f64,
    /// Highest `S` with the beam on.
    pub max_power: f64,
    /// How many times the cut leaves again the point where the first cut began: a contour
    /// cut three times, or a whole job repeated three times, gives 3.
    pub passes: u32,
    pub mode: PowerMode,
    /// GRBL's `$32` if the file sets it (`false`: laser mode off).
    pub grbl_laser_mode: Option<bool>,
}

/// A command of a kind that only some machines take, where it first appears.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Use {
    pub line: u64,
    /// The command as a person would name it: `M104`, `E`, `M4`, `$H`, `PRINT_START`.
    pub command: String,
}

/// The first line of each kind of command that ties a file to a kind of machine or firmware.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Uses {
    /// Heating, extrusion or an extrusion mode: a 3D printer's file.
    pub printer: Option<Use>,
    /// `M3`/`M4`: a laser's beam or a mill's spindle.
    pub laser: Option<Use>,
    /// `M3`: a laser at constant power burns corners and starts.
    pub constant_power: Option<Use>,
    /// A GRBL `$` line: homing, jogging, settings.
    pub grbl_system: Option<Use>,
    /// A Klipper extended command (`PRINT_START`, `SET_VELOCITY_LIMIT`).
    pub klipper_macro: Option<Use>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GcodeSummary {
    pub lines: u64,
    pub commands: u64,
    /// Our estimate, seconds: `time.total_s` rounded, at most [`MAX_ESTIMATE_S`].
    pub estimate_s: i64,
    pub time: Time,
    /// Where the motion limits came from (absent from analyses stored before it was
    /// recorded: defaults).
    #[serde(default)]
    pub limits: LimitsUsed,
    /// Extent of the extrusions (or, for a laser, of the moves with the beam on).
    pub bbox: Option<BoundingBox>,
    /// Extent of every move.
    pub moves_bbox: Option<BoundingBox>,
    pub filament_mm: f64,
    pub filament_cm3: f64,
    pub filament_g: f64,
    pub layers: u64,
    pub first_layer_height_mm: Option<f64>,
    /// The most common layer height after the first.
    pub layer_height_mm: Option<f64>,
    /// Time of each layer, s (the start G-code counts with the first layer).
    pub layer_times_s: Vec<f64>,
    pub max_hotend_c: f64,
    pub max_bed_c: f64,
    pub max_laser_power: f64,
    /// `M600` filament changes.
    pub filament_changes: u64,
    /// `T` commands that select another tool.
    pub tool_changes: u64,
    /// Tools used, in order of first use.
    pub tools: Vec<u32>,
    /// `M0`, `M1`, `M601`: stops waiting for a person.
    pub pauses: u64,
    pub laser: Option<LaserSummary>,
    pub slicer: Option<Slicer>,
    pub thumbnails: Vec<ThumbnailInfo>,
    /// What the file asks of a machine's firmware (absent from analyses stored before it
    /// was read: nothing seen).
    #[serde(default)]
    pub uses: Uses,
    /// Findings whatever the machine: a manager approves them before the job runs.
    pub issues: Vec<Finding>,
}

/// Where the motion limits of the estimate came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitsSource {
    /// The machine's profile in the lab.
    Profile,
    /// The slicer's configuration block at the end of the file.
    Slicer,
    /// The firmware's usual defaults (PrusaSlicer's for a printer).
    #[default]
    Defaults,
}

impl LimitsSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitsSource::Profile => "profile",
            LimitsSource::Slicer => "slicer",
            LimitsSource::Defaults => "defaults",
        }
    }
}

/// The limits the estimate used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsUsed {
    pub source: LimitsSource,
    /// The file changed them with its own `M201`-`M205` or `SET_VELOCITY_LIMIT`.
    pub file_commands: bool,
}

/// What to build beside the summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// The slicer's limits, read first from the file's tail ([`slicer_config::read`]);
    /// used when the machine's profile has none.
    pub slicer_limits: Option<FirmwareLimits>,
    /// Build the SVG top view.
    pub preview: Option<PreviewOptions>,
    /// Decode the largest PNG thumbnail.
    pub thumbnail: bool,
}

/// The summary, and what is kept out of its JSON.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub summary: GcodeSummary,
    pub thumbnail: Option<Thumbnail>,
    pub preview_svg: Option<String>,
}

/// Reads a G-code file, with the motion limits of `limits` for the estimate when given.
pub fn analyze<R: Read>(reader: R, limits: Option<&Limits>) -> io::Result<GcodeSummary> {
    analyze_with(reader, limits, &Options::default()).map(|a| a.summary)
}

/// [`analyze`], with the preview and the thumbnail when `options` asks for them.
pub fn analyze_with<R: Read>(
    reader: R,
    limits: Option<&Limits>,
    options: &Options,
) -> io::Result<Analysis> {
    let mut lines = LineReader::new(reader);
    let mut words = Words::new();
    let mut a = Analyzer::new(limits, options);
    while let Some(line) = lines.next_line()? {
        a.line(line.text, line.cut, &mut words);
    }
    Ok(a.finish())
}

#[derive(Debug, Clone, Copy)]
struct Heater {
    target: f64,
    from: f64,
    since: f64,
}

impl Heater {
    fn cold() -> Self {
        Self {
            target: 0.0,
            from: AMBIENT_C,
            since: 0.0,
        }
    }

    /// Linear heating at `rate`, cooling at half of it, never below the room.
    fn temperature(&self, now: f64, rate: f64) -> f64 {
        let goal = self.target.max(AMBIENT_C);
        let dt = (now - self.since).max(0.0);
        if goal >= self.from {
            (self.from + rate * dt).min(goal)
        } else {
            (self.from - 0.5 * rate * dt).max(goal)
        }
    }

    fn set(&mut self, target: f64, now: f64, rate: f64) {
        self.from = self.temperature(now, rate);
        self.since = now;
        self.target = target;
    }

    /// Seconds until the target is reached (`both`: cooling too, as `M109 R` waits).
    fn wait(&mut self, now: f64, rate: f64, both: bool) -> f64 {
        let t = self.temperature(now, rate);
        let goal = self.target.max(AMBIENT_C);
        let wait = if goal > t {
            (goal - t) / rate
        } else if both && goal < t {
            (t - goal) / (0.5 * rate)
        } else {
            0.0
        };
        if wait > 0.0 {
            self.from = goal;
            self.since = now + wait;
        }
        wait
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaserMode {
    Off,
    Constant,
    Dynamic,
}

struct Analyzer<'l> {
    limits: Option<&'l Limits>,
    dialect: Dialect,
    fw: FirmwareLimits,
    limits_used: LimitsUsed,
    junction_rule: Option<JunctionRule>,
    jerk: [f64; 4],
    planner: Planner,
    findings: Findings,
    meta: Metadata,
    preview: Option<PreviewBuilder>,
    line_no: u64,
    /// Chords the arcs were cut into so far (see [`ARC_CHORDS_FREE`]).
    arc_chords: u64,
    commands: u64,

    pos: [f64; 4],
    absolute: bool,
    relative_e: bool,
    inches: bool,
    motion: u32,
    feed_mm_s: f64,
    feed_factor: f64,
    saved_feed_factor: f64,

    retract_mm: f64,
    retract_feed_mm_s: f64,
    recover_mm: f64,
    recover_feed_mm_s: f64,
    retract_z_mm: f64,
    retracted: bool,

    filament_mm: f64,
    retracted_mm: f64,
    extrusions: BoundingBox,
    moves: BoundingBox,

    layers: u64,
    layer_z: f64,
    tags_seen: bool,
    tag_pending: bool,
    first_layer_z: Option<f64>,
    heights: Vec<(u32, u32)>,

    max_hotend_c: f64,
    max_bed_c: f64,
    hotends: [Heater; 8],
    bed: Heater,
    dwell_s: f64,
    heating_s: f64,
    tool: u32,
    tools: Vec<u32>,
    tool_changes: u64,
    filament_changes: u64,
    pauses: u64,

    laser_mode: LaserMode,
    power: f64,
    max_power: f64,
    laser_seen: bool,
    printer_seen: bool,
    beam_path_mm: f64,
    used_constant: bool,
    used_dynamic: bool,
    first_cut: Option<[f64; 2]>,
    armed: bool,
    passes: u32,
    grbl_laser_mode: Option<bool>,

    uses: Uses,
}

impl<'l> Analyzer<'l> {
    fn new(limits: Option<&'l Limits>, options: &Options) -> Self {
        let dialect = limits.map_or(Dialect::Unknown, |l| l.dialect);
        let (fw, source) = match (limits.and_then(|l| l.firmware), options.slicer_limits) {
            (Some(fw), _) => (fw, LimitsSource::Profile),
            (None, Some(fw)) => (fw, LimitsSource::Slicer),
            (None, None) => (FirmwareLimits::for_dialect(dialect), LimitsSource::Defaults),
        };
        let jerk = match fw.junction {
            Junction::Jerk { mm_s } => mm_s,
            _ => [10.0, 10.0, 0.2, 2.5],
        };
        Self {
            limits,
            dialect,
            fw,
            limits_used: LimitsUsed {
                source,
                file_commands: false,
            },
            junction_rule: limits.and_then(|l| l.junction_rule),
            jerk,
            planner: Planner::new(),
            findings: Findings::default(),
            meta: Metadata::new(options.thumbnail),
            preview: options.preview.clone().map(PreviewBuilder::new),
            line_no: 0,
            arc_chords: 0,
            commands: 0,
            pos: [0.0; 4],
            absolute: true,
            relative_e: false,
            inches: false,
            motion: 0,
            feed_mm_s: DEFAULT_FEED_MM_S,
            feed_factor: 1.0,
            saved_feed_factor: 1.0,
            // Marlin's firmware-retraction defaults (`RETRACT_LENGTH` 3 mm at 45 mm/s,
            // recovered at 8 mm/s).
            retract_mm: 3.0,
            retract_feed_mm_s: 45.0,
            recover_mm: 0.0,
            recover_feed_mm_s: 8.0,
            retract_z_mm: 0.0,
            retracted: false,
            filament_mm: 0.0,
            retracted_mm: 0.0,
            extrusions: BoundingBox::empty(),
            moves: BoundingBox::empty(),
            layers: 0,
            layer_z: f64::NEG_INFINITY,
            tags_seen: false,
            tag_pending: false,
            first_layer_z: None,
            heights: Vec::new(),
            max_hotend_c: 0.0,
            max_bed_c: 0.0,
            hotends: [Heater::cold(); 8],
            bed: Heater::cold(),
            dwell_s: 0.0,
            heating_s: 0.0,
            tool: 0,
            tools: Vec::new(),
            tool_changes: 0,
            filament_changes: 0,
            pauses: 0,
            laser_mode: LaserMode::Off,
            power: 0.0,
            max_power: 0.0,
            laser_seen: false,
            printer_seen: false,
            beam_path_mm: 0.0,
            used_constant: false,
            used_dynamic: false,
            first_cut: None,
            armed: false,
            passes: 0,
            grbl_laser_mode: None,
            uses: Uses::default(),
        }
    }

    /// GRBL meanings: `G0` at the machine's top speed, `G4 P` in seconds.
    fn grbl_like(&self) -> bool {
        self.dialect == Dialect::Grbl
            || (self.dialect == Dialect::Unknown && self.laser_seen && !self.printer_seen)
    }

    fn now(&self) -> f64 {
        self.planner.totals.moves_s + self.dwell_s + self.heating_s
    }

    fn layer_index(&self) -> u32 {
        u32::try_from(self.layers.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Notes the first line of a kind of command (`slot` picks which).
    fn note_use(&mut self, slot: fn(&mut Uses) -> &mut Option<Use>, command: &str) {
        let line = self.line_no;
        slot(&mut self.uses).get_or_insert_with(|| Use {
            line,
            command: command.to_string(),
        });
    }

    // ----- lines -----

    fn line(&mut self, text: &[u8], cut: bool, words: &mut Words) {
        self.line_no += 1;
        if cut {
            self.commands += 1;
            self.unparsable(text);
            return;
        }
        let (kind, comment) = scan::scan(text, words);
        if let Some(c) = comment
            && self.meta.comment(c) == Tag::LayerChange
        {
            self.tags_seen = true;
            self.tag_pending = true;
        }
        match kind {
            Kind::Empty => {}
            Kind::Words => {
                self.commands += 1;
                self.words(words);
            }
            Kind::Bad(_) => {
                self.commands += 1;
                self.unparsable(text);
            }
            Kind::Text(_) => self.commands += 1,
            Kind::System(body) => {
                self.commands += 1;
                self.system(body);
            }
            Kind::Extended { name, args } => {
                self.commands += 1;
                self.extended(name, args);
            }
        }
    }

    fn unparsable(&mut self, text: &[u8]) {
        let n = self.line_no;
        let shown = checks::excerpt(text.split(|b| *b == b';').next().unwrap_or(text));
        self.findings.push(
            n,
            checks::UNPARSABLE_LINE,
            format!("La ligne {n} n'est pas du G-code lisible : « {shown} »."),
            format!("Line {n} is not readable G-code: \"{shown}\"."),
        );
    }

    /// GRBL `$` lines: settings, homing, jogging.
    fn system(&mut self, body: &[u8]) {
        let shown = format!("${}", checks::excerpt(body));
        self.note_use(|u| &mut u.grbl_system, &shown);
        let Some(eq) = body.iter().position(|&b| b == b'=') else {
            return;
        };
        let key = &body[..eq];
        let value = &body[eq + 1..];
        if key == b"32" {
            let on = scan::parse_number(value, 0).is_some_and(|(v, _)| v != 0.0);
            self.grbl_laser_mode = Some(on);
        }
        // `$N=…`, `$RST=…`, `$N0=…`, `$I=…` write GRBL's settings or startup lines (EEPROM).
        let writes = key.first().is_some_and(u8::is_ascii_digit)
            || key == b"RST"
            || key == b"I"
            || (key.first() == Some(&b'N') && key.len() > 1);
        if writes {
            let (fr, en) = checks::forbidden_message(
                self.line_no,
                &shown,
                "change un réglage permanent de la machine (EEPROM de GRBL)",
                "changes a permanent setting of the machine (GRBL's EEPROM)",
            );
            self.findings
                .push(self.line_no, checks::FORBIDDEN_COMMAND, fr, en);
        }
    }

    /// Klipper extended commands.
    fn extended(&mut self, name: &[u8], args: &[u8]) {
        let upper = String::from_utf8_lossy(name).to_ascii_uppercase();
        self.note_use(|u| &mut u.klipper_macro, &upper);
        match upper.as_str() {
            "SET_VELOCITY_LIMIT" => {
                for pair in args.split(|b| *b == b' ' || *b == b'\t') {
                    let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                        continue;
                    };
                    let key = String::from_utf8_lossy(&pair[..eq]).to_ascii_uppercase();
                    let Some((v, _)) = scan::parse_number(&pair[eq + 1..], 0) else {
                        continue;
                    };
                    if !(v.is_finite() && v >= 0.0) {
                        continue;
                    }
                    self.planner.synchronize();
                    self.limits_used.file_commands = true;
                    match key.as_str() {
                        "VELOCITY" => self.fw.max_velocity_mm_s = v,
                        "ACCEL" if v > 0.0 => {
                            self.fw.print_acceleration_mm_s2 = v;
                            self.fw.travel_acceleration_mm_s2 = v;
                            self.fw.retract_acceleration_mm_s2 = v;
                        }
                        "SQUARE_CORNER_VELOCITY" => {
                            self.fw.junction = Junction::SquareCorner { mm_s: v };
                        }
                        "MINIMUM_CRUISE_RATIO" if v < 1.0 => self.fw.min_cruise_ratio = v,
                        // The older setting, an acceleration: the ratio it makes now.
                        "ACCEL_TO_DECEL" => {
                            let accel = self.fw.print_acceleration_mm_s2;
                            if accel > 0.0 {
                                self.fw.min_cruise_ratio = (1.0 - v / accel).clamp(0.0, 0.99);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "SAVE_CONFIG" => {
                let (fr, en) = checks::forbidden_message(
                    self.line_no,
                    "SAVE_CONFIG",
                    "écrit la configuration permanente de la machine",
                    "writes the machine's permanent configuration",
                );
                self.findings
                    .push(self.line_no, checks::FORBIDDEN_COMMAND, fr, en);
            }
            _ => {}
        }
    }

    fn words(&mut self, w: &Words) {
        let scale = if self.inches { 25.4 } else { 1.0 };
        for &m in w.m_codes() {
            if let Some((fr, en)) = checks::forbidden(b'M', m) {
                let what = code_name('M', m);
                let (fr, en) = checks::forbidden_message(self.line_no, &what, fr, en);
                self.findings
                    .push(self.line_no, checks::FORBIDDEN_COMMAND, fr, en);
            }
        }
        let mut motion: Option<u32> = None;
        let mut axes_taken = false;
        for &g in w.g_codes() {
            match g {
                0 | 10 | 20 | 30 => motion = Some(g),
                40 => {
                    axes_taken = true;
                    self.dwell(w);
                }
                100 => {
                    axes_taken = true;
                    self.g10(w, scale);
                }
                110 => self.g11(),
                200 => self.inches = true,
                210 => self.inches = false,
                280 => {
                    axes_taken = true;
                    self.home(w);
                }
                900 => self.absolute = true,
                910 => self.absolute = false,
                920 => {
                    axes_taken = true;
                    self.set_position(w, scale);
                }
                // Probing, coordinate systems, planes, offsets: no motion we can time.
                _ => {
                    if w.has_any(b"XYZ") {
                        axes_taken = true;
                    }
                }
            }
        }
        let scale = if self.inches { 25.4 } else { 1.0 };
        for &m in w.m_codes() {
            axes_taken = true;
            self.m_code(m, w);
        }
        let tool_word = w.get(b'T');
        if let Some(t) = tool_word
            && (w.m_len == 0 || w.m_codes().contains(&60))
            && w.g_len == 0
        {
            self.select_tool(t);
            return;
        }
        if let Some(g) = motion {
            self.motion = g;
        }
        let is_motion = motion.is_some() || (!axes_taken && w.g_len == 0 && tool_word.is_none());
        if !is_motion {
            return;
        }
        if let Some(f) = w.get(b'F')
            && f > 0.0
            && f.is_finite()
        {
            self.feed_mm_s = f * scale / 60.0;
        }
        if let Some(s) = w.get(b'S')
            && s.is_finite()
        {
            self.power = s;
            if self.laser_mode != LaserMode::Off {
                self.note_power();
            }
        }
        if !w.has_any(b"XYZE") {
            return;
        }
        let mut target = self.pos;
        for (i, axis) in [b'X', b'Y', b'Z'].into_iter().enumerate() {
            if let Some(v) = w.get(axis) {
                target[i] = if self.absolute {
                    v * scale
                } else {
                    self.pos[i] + v * scale
                };
            }
        }
        if let Some(v) = w.get(b'E') {
            target[3] = if self.absolute && !self.relative_e {
                v * scale
            } else {
                self.pos[3] + v * scale
            };
        }
        if !target.iter().all(|v| v.is_finite()) {
            return;
        }
        match self.motion {
            20 | 30 => self.arc(w, target, self.motion == 20, scale),
            g => self.move_to(target, g == 0),
        }
    }

    fn note_power(&mut self) {
        self.max_power = self.max_power.max(self.power);
    }

    fn m_code(&mut self, m: u32, w: &Words) {
        match m {
            30 | 40 => {
                self.laser_seen = true;
                self.laser_mode = if m == 30 {
                    LaserMode::Constant
                } else {
                    LaserMode::Dynamic
                };
                let name = code_name('M', m);
                if m == 30 {
                    self.note_use(|u| &mut u.constant_power, &name);
                }
                if let Some(s) = w.get(b'S') {
                    self.power = s;
                }
                self.note_power();
                self.note_use(|u| &mut u.laser, &name);
            }
            50 => self.laser_mode = LaserMode::Off,
            0 | 10 | 6010 => {
                self.planner.synchronize();
                self.pauses += 1;
            }
            4000 => self.planner.synchronize(),
            6000 => {
                self.planner.synchronize();
                self.filament_changes += 1;
            }
            820 | 830 => {
                self.relative_e = m == 830;
                self.note_printer(m);
            }
            1040 | 1090 | 1400 | 1900 => self.temperature(m, w),
            2010 => {
                self.planner.synchronize();
                self.limits_used.file_commands = true;
                for (i, axis) in b"XYZE".iter().enumerate() {
                    if let Some(v) = w.get(*axis).filter(|v| v.is_finite() && *v >= 0.0) {
                        self.fw.max_acceleration_mm_s2[i] = v;
                    }
                }
            }
            2030 => {
                self.planner.synchronize();
                self.limits_used.file_commands = true;
                for (i, axis) in b"XYZE".iter().enumerate() {
                    if let Some(v) = w.get(*axis).filter(|v| v.is_finite() && *v >= 0.0) {
                        self.fw.max_feedrate_mm_s[i] = v;
                    }
                }
            }
            2040 => {
                self.planner.synchronize();
                self.limits_used.file_commands = true;
                let ok = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
                if let Some(s) = ok(w.get(b'S')) {
                    self.fw.print_acceleration_mm_s2 = s;
                    self.fw.travel_acceleration_mm_s2 = s;
                }
                if let Some(p) = ok(w.get(b'P')) {
                    self.fw.print_acceleration_mm_s2 = p;
                }
                if let Some(r) = ok(w.get(b'R')) {
                    self.fw.retract_acceleration_mm_s2 = r;
                }
                if let Some(t) = ok(w.get(b'T')) {
                    self.fw.travel_acceleration_mm_s2 = t;
                }
            }
            2050 => {
                self.planner.synchronize();
                self.limits_used.file_commands = true;
                let ok = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
                // A firmware built for one corner rule ignores the other's words.
                let rule = self.junction_rule;
                let mut jerk_set = false;
                if rule != Some(JunctionRule::JunctionDeviation) {
                    for (i, axis) in b"XYZE".iter().enumerate() {
                        if let Some(v) = ok(w.get(*axis)) {
                            self.jerk[i] = v;
                            jerk_set = true;
                        }
                    }
                }
                if jerk_set {
                    self.fw.junction = Junction::Jerk { mm_s: self.jerk };
                }
                if rule != Some(JunctionRule::ClassicJerk)
                    && let Some(j) = ok(w.get(b'J')).filter(|j| *j > 0.0)
                {
                    self.fw.junction = Junction::Deviation { mm: j };
                }
                if let Some(s) = ok(w.get(b'S')) {
                    self.fw.min_feedrate_mm_s = s;
                }
                if let Some(t) = ok(w.get(b'T')) {
                    self.fw.min_travel_feedrate_mm_s = t;
                }
            }
            2070 => {
                let scale = if self.inches { 25.4 } else { 1.0 };
                if let Some(s) = w.get(b'S').filter(|v| v.is_finite() && *v >= 0.0) {
                    self.retract_mm = s * scale;
                }
                if let Some(f) = w.get(b'F').filter(|v| v.is_finite() && *v > 0.0) {
                    self.retract_feed_mm_s = f * scale / 60.0;
                }
                if let Some(z) = w.get(b'Z').filter(|v| v.is_finite() && *v >= 0.0) {
                    self.retract_z_mm = z * scale;
                }
            }
            2080 => {
                let scale = if self.inches { 25.4 } else { 1.0 };
                if let Some(s) = w.get(b'S').filter(|v| v.is_finite() && *v >= 0.0) {
                    self.recover_mm = s * scale;
                }
                if let Some(f) = w.get(b'F').filter(|v| v.is_finite() && *v > 0.0) {
                    self.recover_feed_mm_s = f * scale / 60.0;
                }
            }
            2200 => {
                if w.has(b'B') {
                    self.saved_feed_factor = self.feed_factor;
                }
                if let Some(s) = w.get(b'S').filter(|s| s.is_finite() && *s > 0.0) {
                    self.feed_factor = s / 100.0;
                }
                if w.has(b'R') {
                    self.feed_factor = self.saved_feed_factor;
                }
            }
            _ => {}
        }
    }

    fn note_printer(&mut self, m: u32) {
        self.printer_seen = true;
        self.note_use(|u| &mut u.printer, &code_name('M', m));
    }

    fn temperature(&mut self, m: u32, w: &Words) {
        self.note_printer(m);
        let target = w.get(b'S').or_else(|| w.get(b'R')).unwrap_or(0.0);
        if !target.is_finite() {
            return;
        }
        let bed = m == 1400 || m == 1900;
        let wait = m == 1090 || m == 1900;
        if bed {
            self.max_bed_c = self.max_bed_c.max(target);
        } else {
            self.max_hotend_c = self.max_hotend_c.max(target);
        }
        // The heating model needs the time now: let the queued moves finish first.
        self.planner.synchronize();
        let now = self.now();
        let rate = if bed {
            self.limits
                .and_then(|l| l.bed_heating_c_per_s)
                .unwrap_or(DEFAULT_BED_RATE)
        } else {
            self.limits
                .and_then(|l| l.hotend_heating_c_per_s)
                .unwrap_or(DEFAULT_HOTEND_RATE)
        }
        .max(0.01);
        let heater = if bed {
            &mut self.bed
        } else {
            let t = w
                .get(b'T')
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map_or(self.tool, |t| t as u32);
            &mut self.hotends[(t as usize).min(7)]
        };
        heater.set(target, now, rate);
        if wait {
            let both = w.get(b'R').is_some();
            let seconds = heater.wait(now, rate, both);
            self.heating_s += seconds;
            let layer = self.layer_index();
            self.planner.totals.add_to_layer(layer, seconds);
        }
    }

    fn select_tool(&mut self, t: f64) {
        if !(t.is_finite() && (0.0..256.0).contains(&t)) {
            return;
        }
        let t = t as u32;
        self.planner.synchronize();
        if t != self.tool {
            self.tool_changes += 1;
        }
        self.tool = t;
        if !self.tools.contains(&t) && self.tools.len() < 64 {
            self.tools.push(t);
        }
    }

    fn dwell(&mut self, w: &Words) {
        self.planner.synchronize();
        let seconds = match (w.get(b'S'), w.get(b'P')) {
            (Some(s), _) => s,
            (None, Some(p)) if self.grbl_like() => p,
            (None, Some(p)) => p / 1000.0,
            (None, None) => 0.0,
        };
        if seconds.is_finite() && seconds > 0.0 {
            self.dwell_s += seconds;
            let layer = self.layer_index();
            self.planner.totals.add_to_layer(layer, seconds);
        }
    }

    fn home(&mut self, w: &Words) {
        let mut target = self.pos;
        let any = w.has(b'X') || w.has(b'Y') || w.has(b'Z');
        for (i, axis) in [b'X', b'Y', b'Z'].into_iter().enumerate() {
            if !any || w.has(axis) {
                target[i] = 0.0;
            }
        }
        self.move_to(target, false);
        self.planner.synchronize();
    }

    fn set_position(&mut self, w: &Words, scale: f64) {
        self.planner.synchronize();
        for (i, axis) in b"XYZE".iter().enumerate() {
            if let Some(v) = w.get(*axis).filter(|v| v.is_finite()) {
                self.pos[i] = v * scale;
            }
        }
    }

    /// `G10`: firmware retraction, unless it sets offsets (`L`, `P`: RS274, RepRapFirmware).
    fn g10(&mut self, w: &Words, scale: f64) {
        if w.has(b'L') || w.has(b'P') {
            if w.get(b'L') == Some(20.0) {
                self.set_position(w, scale);
            }
            return;
        }
        if self.retracted {
            return;
        }
        self.retracted = true;
        let saved = self.feed_mm_s;
        self.feed_mm_s = self.retract_feed_mm_s;
        let mut target = self.pos;
        target[3] -= self.retract_mm;
        self.move_to(target, false);
        if self.retract_z_mm > 0.0 {
            let mut up = self.pos;
            up[2] += self.retract_z_mm;
            self.move_to(up, false);
        }
        self.feed_mm_s = saved;
    }

    fn g11(&mut self) {
        if !self.retracted {
            return;
        }
        self.retracted = false;
        let saved = self.feed_mm_s;
        if self.retract_z_mm > 0.0 {
            let mut down = self.pos;
            down[2] -= self.retract_z_mm;
            self.move_to(down, false);
        }
        self.feed_mm_s = self.recover_feed_mm_s;
        let mut target = self.pos;
        target[3] += self.retract_mm + self.recover_mm;
        self.move_to(target, false);
        self.feed_mm_s = saved;
    }

    /// `G2` (clockwise) and `G3`, by centre offset `I J` or radius `R`, cut into chords of
    /// at most 2 mm (Marlin 2's `MAX_ARC_SEGMENT_MM`; shorter on tight arcs and slow feeds,
    /// 50 segments a second).
    fn arc(&mut self, w: &Words, target: [f64; 4], clockwise: bool, scale: f64) {
        let start = [self.pos[0], self.pos[1]];
        let end = [target[0], target[1]];
        let centre = if let Some(r) = w.get(b'R').map(|r| r * scale) {
            let (dx, dy) = (end[0] - start[0], end[1] - start[1]);
            let d = dx.hypot(dy);
            if d.is_nan() || d <= 1e-9 || !r.is_finite() || r == 0.0 {
                return self.move_to(target, false);
            }
            let h = (r * r - d * d / 4.0).max(0.0).sqrt();
            // Left normal of the chord; the centre is on the right for a short clockwise
            // arc, on the left for a short counter-clockwise one, the other way for R < 0.
            let (nx, ny) = (-dy / d, dx / d);
            let side = if clockwise { -1.0 } else { 1.0 } * r.signum();
            [
                (start[0] + end[0]) / 2.0 + side * h * nx,
                (start[1] + end[1]) / 2.0 + side * h * ny,
            ]
        } else if w.has_any(b"IJ") {
            [
                start[0] + w.get(b'I').unwrap_or(0.0) * scale,
                start[1] + w.get(b'J').unwrap_or(0.0) * scale,
            ]
        } else {
            return self.move_to(target, false);
        };
        if !(centre[0].is_finite() && centre[1].is_finite()) {
            return;
        }
        let (sx, sy) = (start[0] - centre[0], start[1] - centre[1]);
        let (ex, ey) = (end[0] - centre[0], end[1] - centre[1]);
        let r0 = sx.hypot(sy);
        let r1 = ex.hypot(ey);
        if r0.is_nan() || r0 <= 1e-6 {
            return self.move_to(target, false);
        }
        let mut angle = (sx * ey - sy * ex).atan2(sx * ex + sy * ey);
        if clockwise {
            if angle >= -1e-12 {
                angle -= std::f64::consts::TAU;
            }
        } else if angle <= 1e-12 {
            angle += std::f64::consts::TAU;
        }
        let length = angle.abs() * r0;
        let feed = self.feed_mm_s * self.feed_factor;
        let segment = (8.0 * r0 * 0.02).sqrt().min(feed / 50.0).clamp(0.1, 2.0);
        let fine = ((length / segment).ceil() as usize).clamp(1, 100_000);
        // Past the budget, an arc is cut in sixteenths of a turn: the time stays close (the
        // corners between chords are then 22.5°) and the work stays in proportion to the file.
        let budget = ARC_CHORDS_FREE + ARC_CHORDS_PER_LINE * self.line_no;
        let n = if self.arc_chords + fine as u64 <= budget {
            fine
        } else {
            ((angle.abs() / (std::f64::consts::TAU / 16.0)).ceil() as usize).clamp(1, fine)
        };
        self.arc_chords += n as u64;
        let a0 = sy.atan2(sx);
        let from = self.pos;
        for k in 1..=n {
            let f = k as f64 / n as f64;
            let point = if k == n {
                target
            } else {
                let a = a0 + angle * f;
                let r = r0 + (r1 - r0) * f;
                [
                    centre[0] + r * a.cos(),
                    centre[1] + r * a.sin(),
                    from[2] + (target[2] - from[2]) * f,
                    from[3] + (target[3] - from[3]) * f,
                ]
            };
            self.move_to(point, false);
        }
    }

    /// One straight move to `target` (X Y Z E, mm).
    fn move_to(&mut self, target: [f64; 4], rapid: bool) {
        let from = self.pos;
        let delta = [
            target[0] - from[0],
            target[1] - from[1],
            target[2] - from[2],
            target[3] - from[3],
        ];
        if delta.iter().all(|d| *d == 0.0) {
            return;
        }
        let xy_moves = delta[0] != 0.0 || delta[1] != 0.0;
        let xyz_moves = xy_moves || delta[2] != 0.0;
        let extruding = delta[3] > 0.0 && xy_moves;
        if delta[3] != 0.0 {
            self.printer_seen = true;
            self.note_use(|u| &mut u.printer, "E");
        }
        let beam = self.laser_mode != LaserMode::Off
            && self.power > 0.0
            && !rapid
            && delta[3] == 0.0
            && xyz_moves;
        let kind = if delta[3] != 0.0 {
            if xyz_moves {
                MoveKind::Print
            } else {
                MoveKind::Retract
            }
        } else {
            MoveKind::Travel
        };
        // Filament: a retraction is paid back by the next push before it counts again.
        if delta[3] > 0.0 {
            let back = delta[3].min(self.retracted_mm);
            self.retracted_mm -= back;
            self.filament_mm += delta[3] - back;
        } else if delta[3] < 0.0 {
            self.retracted_mm -= delta[3];
        }
        if extruding {
            let z = target[2];
            let new_layer = if self.tags_seen {
                self.tag_pending
            } else {
                self.layers == 0 || z > self.layer_z + 1e-4
            };
            if new_layer {
                self.start_layer(z);
            }
        }
        let layer = if self.laser_seen && !self.printer_seen {
            self.passes.saturating_sub(1)
        } else {
            self.layer_index()
        };
        let feed = if rapid && self.grbl_like() {
            1e6
        } else {
            self.feed_mm_s * self.feed_factor
        };
        self.planner.push(
            &Move {
                delta,
                feed_mm_s: feed,
                kind,
                layer,
                beam,
            },
            &self.fw,
        );
        self.moves.add(target);
        if extruding || beam {
            self.extrusions.add(from);
            self.extrusions.add(target);
        }
        if beam {
            self.cut(from, target, delta);
        } else if let Some(p) = self.first_cut
            && !near(p, [target[0], target[1]])
        {
            self.armed = true;
        }
        if let Some(preview) = self.preview.as_mut()
            && (extruding || beam)
        {
            let l = if beam {
                self.passes.saturating_sub(1)
            } else {
                layer
            };
            preview.segment(l, [from[0], from[1]], [target[0], target[1]]);
        }
        self.pos = target;
    }

    fn start_layer(&mut self, z: f64) {
        self.layers += 1;
        if self.layers == 1 {
            self.first_layer_z = Some(z);
        } else {
            let dz = z - self.layer_z;
            if dz > 0.0 && dz < 100.0 {
                let key = (dz * 1000.0).round() as u32;
                if let Some(entry) = self.heights.iter_mut().find(|(k, _)| *k == key) {
                    entry.1 += 1;
                } else if self.heights.len() < 256 {
                    self.heights.push((key, 1));
                }
            }
        }
        self.layer_z = z;
        self.tag_pending = false;
    }

    fn cut(&mut self, from: [f64; 4], to: [f64; 4], delta: [f64; 4]) {
        self.beam_path_mm +=
            (delta[0] * delta[0] + delta[1] * delta[1] + delta[2] * delta[2]).sqrt();
        match self.laser_mode {
            LaserMode::Constant => self.used_constant = true,
            LaserMode::Dynamic => self.used_dynamic = true,
            LaserMode::Off => {}
        }
        let start = [from[0], from[1]];
        match self.first_cut {
            None => {
                self.first_cut = Some(start);
                self.passes = 1;
                self.armed = false;
            }
            Some(p) if self.armed && near(p, start) => {
                self.passes += 1;
                self.armed = false;
            }
            _ => {}
        }
        if let Some(p) = self.first_cut
            && !near(p, [to[0], to[1]])
        {
            self.armed = true;
        }
    }

    fn finish(mut self) -> Analysis {
        self.planner.synchronize();
        let moves_s = self.planner.totals.moves_s;
        let total = moves_s + self.dwell_s + self.heating_s;
        let diameter = self
            .limits
            .and_then(|l| l.filament_diameter_mm)
            .unwrap_or(1.75);
        let density = self
            .limits
            .and_then(|l| l.filament_density_g_cm3)
            .unwrap_or(1.24);
        let cm3 = self.filament_mm * std::f64::consts::PI * (diameter / 2.0).powi(2) / 1000.0;
        let layer_height = self
            .heights
            .iter()
            .max_by_key(|(k, n)| (*n, u32::MAX - *k))
            .map(|(k, _)| f64::from(*k) / 1000.0);
        let layers = usize::try_from(self.layers).unwrap_or(usize::MAX);
        let mut layer_times: Vec<f64> = self
            .planner
            .totals
            .layer_s
            .iter()
            .take(if self.layers > 0 { layers } else { 0 })
            .map(|t| round(*t, 1))
            .collect();
        layer_times.shrink_to_fit();
        let laser = (self.laser_seen || self.passes > 0).then(|| LaserSummary {
            on_time_s: round(self.planner.totals.beam_s, 1),
            path_mm: round(self.beam_path_mm, 1),
            max_power: self.max_power,
            passes: self.passes,
            mode: match (self.used_constant, self.used_dynamic) {
                (true, true) => PowerMode::Mixed,
                (true, false) => PowerMode::Constant,
                _ => PowerMode::Dynamic,
            },
            grbl_laser_mode: self.grbl_laser_mode,
        });
        let (slicer, thumbnail, thumbnails) = self.meta.finish();
        let preview_svg = self.preview.take().and_then(PreviewBuilder::finish);
        let summary = GcodeSummary {
            lines: self.line_no,
            commands: self.commands,
            estimate_s: total.round().min(MAX_ESTIMATE_S as f64) as i64,
            time: Time {
                moves_s: round(moves_s, 1),
                dwell_s: round(self.dwell_s, 1),
                heating_s: round(self.heating_s, 1),
                total_s: round(total, 1),
            },
            limits: self.limits_used,
            bbox: (!self.extrusions.is_empty()).then(|| self.extrusions.rounded()),
            moves_bbox: (!self.moves.is_empty()).then(|| self.moves.rounded()),
            filament_mm: round(self.filament_mm, 2),
            filament_cm3: round(cm3, 2),
            filament_g: round(cm3 * density, 2),
            layers: self.layers,
            first_layer_height_mm: self.first_layer_z.map(|z| round(z, 3)),
            layer_height_mm: layer_height.or(self.first_layer_z.map(|z| round(z, 3))),
            layer_times_s: layer_times,
            max_hotend_c: self.max_hotend_c,
            max_bed_c: self.max_bed_c,
            max_laser_power: self.max_power,
            filament_changes: self.filament_changes,
            tool_changes: self.tool_changes,
            tools: if self.tools.is_empty() && self.filament_mm > 0.0 {
                vec![0]
            } else {
                self.tools
            },
            pauses: self.pauses,
            laser,
            slicer,
            thumbnails,
            uses: self.uses,
            issues: self.findings.finish(),
        };
        Analysis {
            summary,
            thumbnail,
            preview_svg,
        }
    }
}

fn near(a: [f64; 2], b: [f64; 2]) -> bool {
    (a[0] - b[0]).abs() <= 0.05 && (a[1] - b[1]).abs() <= 0.05
}

fn round(v: f64, decimals: i32) -> f64 {
    let q = 10f64.powi(decimals);
    let r = (v * q).round() / q;
    if r == 0.0 { 0.0 } else { r }
}

fn code_name(letter: char, code: u32) -> String {
    if code.is_multiple_of(10) {
        format!("{letter}{}", code / 10)
    } else {
        format!("{letter}{}.{}", code / 10, code % 10)
    }
}

#[cfg(test)]
mod tests;
