//! Machines of the lab: what they are, how Fabrique reaches them, what they can take, and
//! the state they are in.

use super::account::{Secret, parse_text};
use super::{Invalid, text_enum};
pub use fabrique_machines::files::gcode::{JunctionRule, ReportedLimits};
use std::fmt;

text_enum! {
    MachineKind {
        FdmPrinter = "fdm_printer",
        LaserCutter = "laser_cutter",
        Embroidery = "embroidery",
        CncMill = "cnc_mill",
        VinylCutter = "vinyl_cutter",
        Other = "other",
    }
}

text_enum! {
    /// The coolant a CNC mill has: a file that turns on one it lacks is refused.
    MillCoolant {
        None = "none",
        Flood = "flood",
        FloodAndMist = "flood_and_mist",
    }
}

// `text_enum!` takes no attribute on a variant, so no `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for MillCoolant {
    fn default() -> Self {
        MillCoolant::None
    }
}

text_enum! {
    /// The states of a machine. `ToCheck` means used and waiting for someone to check
    /// and clean it before the next member.
    MachineState {
        Offline = "offline",
        Idle = "idle",
        Busy = "busy",
        Paused = "paused",
        Error = "error",
        ToCheck = "to_check",
        Maintenance = "maintenance",
        Disabled = "disabled",
    }
}

impl MachineState {
    /// A state a manager may set by hand. Busy and paused belong to a running job, offline
    /// and error to the link; those come from the machine runtime, not from a form.
    pub fn settable_by_manager(self) -> bool {
        matches!(
            self,
            MachineState::Idle
                | MachineState::ToCheck
                | MachineState::Maintenance
                | MachineState::Disabled
        )
    }

    /// Moves to `next` when a manager asks for it. A machine with a job running must be
    /// stopped from the workshop board first, so nobody disables a printer mid-print.
    pub fn manual_transition(self, next: MachineState) -> Result<MachineState, Invalid> {
        if !next.settable_by_manager() {
            return Err(Invalid::new("state", "state_not_settable"));
        }
        if matches!(self, MachineState::Busy | MachineState::Paused) && next != self {
            return Err(Invalid::new("state", "machine_running"));
        }
        Ok(next)
    }
}

text_enum! {
    ConnectionKind {
        SerialMarlin = "serial_marlin",
        SerialGrbl = "serial_grbl",
        SerialHpgl = "serial_hpgl",
        SerialHpglRtsCts = "serial_hpgl_rts_cts",
        OctoPrint = "octoprint",
        Moonraker = "moonraker",
        Manual = "manual",
    }
}

/// How Fabrique reaches a machine. `Manual` means no data link: the operator marks start
/// and end (embroidery machines fed by USB stick, vinyl cutters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    SerialMarlin {
        port: String,
        baud: u32,
    },
    SerialGrbl {
        port: String,
        baud: u32,
    },
    /// A cutter or plotter speaking HP-GL (Roland CAMM-GL, Graphtec), with XON/XOFF flow
    /// control, or the RTS/CTS lines when `hardware_flow`.
    SerialHpgl {
        port: String,
        baud: u32,
        hardware_flow: bool,
    },
    OctoPrint {
        url: String,
        api_key: Secret,
    },
    Moonraker {
        url: String,
    },
    Manual,
}

impl Connection {
    /// OctoPrint or Moonraker: the server streams the file and keeps printing without us.
    pub fn is_print_server(&self) -> bool {
        matches!(
            self,
            Connection::OctoPrint { .. } | Connection::Moonraker { .. }
        )
    }

    pub fn kind(&self) -> ConnectionKind {
        match self {
            Connection::SerialMarlin { .. } => ConnectionKind::SerialMarlin,
            Connection::SerialGrbl { .. } => ConnectionKind::SerialGrbl,
            Connection::SerialHpgl {
                hardware_flow: false,
                ..
            } => ConnectionKind::SerialHpgl,
            Connection::SerialHpgl {
                hardware_flow: true,
                ..
            } => ConnectionKind::SerialHpglRtsCts,
            Connection::OctoPrint { .. } => ConnectionKind::OctoPrint,
            Connection::Moonraker { .. } => ConnectionKind::Moonraker,
            Connection::Manual => ConnectionKind::Manual,
        }
    }

    /// Builds a connection from the fields of a form or JSON body. `keep_api_key` is the key
    /// already stored, used when the form leaves the (never shown back) key field empty.
    pub fn parse(
        kind: ConnectionKind,
        port: &str,
        baud: &str,
        url: &str,
        api_key: &str,
        keep_api_key: Option<&Secret>,
    ) -> Result<Self, Invalid> {
        let serial = || -> Result<(String, u32), Invalid> {
            let port = parse_text("serial_port", port, 200)?;
            let baud = if baud.trim().is_empty() {
                115_200
            } else {
                baud.trim()
                    .parse::<u32>()
                    .map_err(|_| Invalid::new("baud", "baud"))?
            };
            if !BAUD_RATES.contains(&baud) {
                return Err(Invalid::new("baud", "baud"));
            }
            Ok((port, baud))
        };
        Ok(match kind {
            ConnectionKind::SerialMarlin => {
                let (port, baud) = serial()?;
                Connection::SerialMarlin { port, baud }
            }
            ConnectionKind::SerialGrbl => {
                let (port, baud) = serial()?;
                Connection::SerialGrbl { port, baud }
            }
            ConnectionKind::SerialHpgl | ConnectionKind::SerialHpglRtsCts => {
                let (port, baud) = serial()?;
                Connection::SerialHpgl {
                    port,
                    baud,
                    hardware_flow: kind == ConnectionKind::SerialHpglRtsCts,
                }
            }
            ConnectionKind::OctoPrint => {
                let url = parse_url(url)?;
                let api_key = match (api_key.trim(), keep_api_key) {
                    ("", Some(kept)) => kept.clone(),
                    ("", None) => return Err(Invalid::new("api_key", "required")),
                    (key, _) => Secret::new(parse_text("api_key", key, 200)?),
                };
                Connection::OctoPrint { url, api_key }
            }
            ConnectionKind::Moonraker => Connection::Moonraker {
                url: parse_url(url)?,
            },
            ConnectionKind::Manual => Connection::Manual,
        })
    }
}

/// Baud rates Marlin and GRBL boards use.
pub const BAUD_RATES: &[u32] = &[
    9_600, 19_200, 38_400, 57_600, 115_200, 250_000, 500_000, 1_000_000,
];

fn parse_url(raw: &str) -> Result<String, Invalid> {
    let url = parse_text("url", raw, 300)?;
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or(Invalid::new("url", "url"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(Invalid::new("url", "url"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// What a machine can take: its work area, temperature and power limits, hoops, materials.
/// Zero means "not applicable" (a laser has no hotend).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MachineProfile {
    /// Build volume or work area, in millimetres (X, Y, Z; Z is 0 for flat machines).
    pub work_area_mm: [f64; 3],
    pub max_hotend_c: f64,
    pub max_bed_c: f64,
    /// Maximum laser power as the firmware's `S` value (GRBL `$30`).
    pub max_laser_power: f64,
    /// Embroidery hoops, width × height in millimetres.
    pub hoops_mm: Vec<[f64; 2]>,
    pub materials: Vec<String>,
    /// For time estimates when a file carries no limits of its own: the firmware's top
    /// speed on X and Y (mm/s) and its printing acceleration (mm/s²). Zero: the usual
    /// defaults of the machine's firmware.
    #[serde(default)]
    pub max_speed_mm_s: f64,
    #[serde(default)]
    pub max_accel_mm_s2: f64,
    /// An embroidery machine's sewing speed, stitches per minute (zero: 600).
    #[serde(default)]
    pub stitches_per_minute: f64,
    /// Which of `M205 X/Y` (classic jerk) and `M205 J` (junction deviation) a Marlin
    /// firmware takes; `None`: not known, whichever the file sends last.
    #[serde(default)]
    pub junction_rule: Option<JunctionRule>,
    /// The printer runs in silent (stealth) mode: the slicer's silent-mode limits apply.
    #[serde(default)]
    pub silent_mode: bool,
    /// Every motion limit of the firmware, as the printer reported them (`M503`) and a
    /// manager adopted them; the estimate then starts from these rather than from defaults.
    #[serde(default)]
    pub firmware_limits: Option<ReportedLimits>,
    /// Klipper's `square_corner_velocity`, mm/s (0: Klipper's 5).
    #[serde(default)]
    pub square_corner_velocity_mm_s: f64,
    /// Klipper's `minimum_cruise_ratio`, 0 to 0.99 (`None`: Klipper's 0.5). The older
    /// `max_accel_to_decel` is `accel × (1 − ratio)`.
    #[serde(default)]
    pub minimum_cruise_ratio: Option<f64>,
    /// A CNC mill's coolant (`M8` flood, `M7` mist).
    #[serde(default)]
    pub coolant: MillCoolant,
    /// A vinyl cutter wired one way: it cannot answer `OA;`, so a job ends with its last
    /// byte sent rather than with the cutter's word that it read everything.
    #[serde(default)]
    pub one_way: bool,
}

/// A number of a form: blank is 0; a comma may stand for the decimal point.
fn parse_number(field: &'static str, raw: &str, max: f64) -> Result<f64, Invalid> {
    let raw = raw.trim().replace(',', ".");
    if raw.is_empty() {
        return Ok(0.0);
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(v),
        _ => Err(Invalid::new(field, "number_range")),
    }
}

impl MachineProfile {
    /// Parses the profile fields of a form. Hoops are written "100x100, 130x180"; materials
    /// are separated by commas.
    pub fn parse(
        work_area: [&str; 3],
        max_hotend: &str,
        max_bed: &str,
        max_laser_power: &str,
        hoops: &str,
        materials: &str,
    ) -> Result<Self, Invalid> {
        let number = parse_number;
        let work_area_mm = [
            number("work_x", work_area[0], 5_000.0)?,
            number("work_y", work_area[1], 5_000.0)?,
            number("work_z", work_area[2], 5_000.0)?,
        ];
        let mut hoops_mm = Vec::new();
        for hoop in hoops.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let (w, h) = hoop
                .to_lowercase()
                .split_once(['x', '×'])
                .map(|(w, h)| (w.trim().to_string(), h.trim().to_string()))
                .ok_or(Invalid::new("hoops", "hoops"))?;
            let w = number("hoops", &w, 2_000.0)?;
            let h = number("hoops", &h, 2_000.0)?;
            if w == 0.0 || h == 0.0 {
                return Err(Invalid::new("hoops", "hoops"));
            }
            hoops_mm.push([w, h]);
        }
        let mut list = Vec::new();
        for material in materials
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            list.push(parse_text("materials", material, 40)?);
        }
        Ok(Self {
            work_area_mm,
            max_hotend_c: number("max_hotend", max_hotend, 500.0)?,
            max_bed_c: number("max_bed", max_bed, 200.0)?,
            max_laser_power: number("max_laser_power", max_laser_power, 100_000.0)?,
            hoops_mm,
            materials: list,
            ..Self::default()
        })
    }

    /// Adds the figures of the time estimates: top speed (mm/s), printing acceleration
    /// (mm/s²) and, for embroidery, stitches per minute. Blank fields keep the defaults.
    pub fn with_speeds(
        self,
        max_speed: &str,
        max_accel: &str,
        stitches_per_minute: &str,
    ) -> Result<Self, Invalid> {
        Ok(Self {
            max_speed_mm_s: parse_number("max_speed", max_speed, 2_000.0)?,
            max_accel_mm_s2: parse_number("max_accel", max_accel, 100_000.0)?,
            stitches_per_minute: parse_number("stitches_per_minute", stitches_per_minute, 3_000.0)?,
            ..self
        })
    }

    /// Adds Klipper's corner and cruise settings: `square_corner_velocity` (mm/s, blank for
    /// Klipper's 5) and `minimum_cruise_ratio` (0 to 0.99, blank for Klipper's 0.5).
    pub fn with_klipper(
        self,
        square_corner_velocity: &str,
        minimum_cruise_ratio: &str,
    ) -> Result<Self, Invalid> {
        let ratio = match minimum_cruise_ratio.trim() {
            "" => None,
            raw => Some(parse_number("minimum_cruise_ratio", raw, 0.99)?),
        };
        Ok(Self {
            square_corner_velocity_mm_s: parse_number(
                "square_corner_velocity",
                square_corner_velocity,
                1_000.0,
            )?,
            minimum_cruise_ratio: ratio,
            ..self
        })
    }

    /// Adds how the firmware moves: its corner rule (`""`, `classic_jerk` or
    /// `junction_deviation`) and whether it runs in silent mode.
    pub fn with_motion(self, junction_rule: &str, silent_mode: bool) -> Result<Self, Invalid> {
        let junction_rule = match junction_rule.trim() {
            "" => None,
            name => Some(
                JunctionRule::ALL
                    .into_iter()
                    .find(|r| r.as_str() == name)
                    .ok_or(Invalid::new("junction_rule", "choice"))?,
            ),
        };
        Ok(Self {
            junction_rule,
            silent_mode,
            ..self
        })
    }

    /// Adds a mill's coolant (`none` or blank, `flood`, `flood_and_mist`) and whether a
    /// vinyl cutter is wired one way.
    pub fn with_cutting(self, coolant: &str, one_way: bool) -> Result<Self, Invalid> {
        let coolant = match coolant.trim() {
            "" => MillCoolant::None,
            name => name
                .parse()
                .map_err(|()| Invalid::new("coolant", "choice"))?,
        };
        Ok(Self {
            coolant,
            one_way,
            ..self
        })
    }

    /// Whether the lab gave any motion limit of the machine's own (else the estimate takes
    /// the slicer's, or the firmware's defaults).
    pub fn has_motion_limits(&self) -> bool {
        self.max_speed_mm_s > 0.0
            || self.max_accel_mm_s2 > 0.0
            || self.firmware_limits.is_some()
            || self.square_corner_velocity_mm_s > 0.0
            || self.minimum_cruise_ratio.is_some()
    }

    /// The profile with a firmware's reported limits adopted: all of them for the estimate,
    /// its corner rule, and the top speed and printing acceleration in the form's fields.
    pub fn adopting(self, reported: ReportedLimits) -> Self {
        let [x, y, ..] = reported.max_feedrate_mm_s;
        Self {
            max_speed_mm_s: x.min(y),
            max_accel_mm_s2: reported.print_acceleration_mm_s2,
            junction_rule: Some(reported.junction_rule()),
            firmware_limits: Some(reported),
            ..self
        }
    }

    /// The profile a manager's form gives, keeping the adopted firmware limits as long as
    /// the form's top speed and acceleration still say what they said (a changed figure is
    /// the manager's, and replaces them).
    pub fn keeping_adopted(self, before: &MachineProfile) -> Self {
        let unchanged = self.max_speed_mm_s == before.max_speed_mm_s
            && self.max_accel_mm_s2 == before.max_accel_mm_s2;
        Self {
            firmware_limits: if unchanged {
                before.firmware_limits
            } else {
                None
            },
            ..self
        }
    }

    pub fn hoops_text(&self) -> String {
        self.hoops_mm
            .iter()
            .map(|[w, h]| format!("{w}x{h}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct MachineId(pub i64);

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub id: MachineId,
    pub name: String,
    pub kind: MachineKind,
    pub connection: Connection,
    pub profile: MachineProfile,
    pub location: String,
    /// The training a member needs before using the machine. A free-text name until the
    /// trainings catalogue exists.
    pub required_training: String,
    pub state: MachineState,
    /// Why the machine is in its state, in the words of whoever set it ("buse bouchée").
    pub state_reason: String,
}

/// The fields of a machine as a manager edits them, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineInput {
    pub name: String,
    pub kind: MachineKind,
    pub connection: Connection,
    pub profile: MachineProfile,
    pub location: String,
    pub required_training: String,
}

impl MachineInput {
    pub fn new(
        name: &str,
        kind: MachineKind,
        connection: Connection,
        profile: MachineProfile,
        location: &str,
        required_training: &str,
    ) -> Result<Self, Invalid> {
        let optional = |field, raw: &str| {
            if raw.trim().is_empty() {
                Ok(String::new())
            } else {
                parse_text(field, raw, 120)
            }
        };
        Ok(Self {
            name: parse_text("name", name, 80)?,
            kind,
            connection,
            profile,
            location: optional("location", location)?,
            required_training: optional("required_training", required_training)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopted_firmware_limits_stay_until_the_manager_changes_speed_or_acceleration() {
        let report = ReportedLimits::from_m503(&[
            "M203 X200 Y180 Z12 E120",
            "M201 X1000 Y1000 Z200 E5000",
            "M204 P1250 R1250 T1500",
            "M205 X8 Y8 Z0.4 E4.5",
        ])
        .unwrap();
        let adopted = MachineProfile::default().adopting(report);
        assert_eq!(adopted.max_speed_mm_s, 180.0);
        assert_eq!(adopted.max_accel_mm_s2, 1250.0);
        assert_eq!(adopted.junction_rule, Some(JunctionRule::ClassicJerk));
        assert!(adopted.has_motion_limits());
        // The form sends the same figures (it knows nothing of the report): kept.
        let form = MachineProfile {
            firmware_limits: None,
            ..adopted.clone()
        };
        assert_eq!(
            form.clone().keeping_adopted(&adopted).firmware_limits,
            Some(report)
        );
        // A new acceleration is the manager's: the report no longer applies.
        let changed = MachineProfile {
            max_accel_mm_s2: 800.0,
            ..form
        };
        assert_eq!(changed.keeping_adopted(&adopted).firmware_limits, None);
    }

    #[test]
    fn octoprint_key_left_empty_keeps_the_stored_one() {
        let kept = Secret::new("stored-key");
        let c = Connection::parse(
            ConnectionKind::OctoPrint,
            "",
            "",
            "http://octopi.local/",
            "",
            Some(&kept),
        )
        .unwrap();
        assert_eq!(
            c,
            Connection::OctoPrint {
                url: "http://octopi.local".into(),
                api_key: kept
            }
        );
        let err = Connection::parse(
            ConnectionKind::OctoPrint,
            "",
            "",
            "http://octopi.local",
            "",
            None,
        )
        .unwrap_err();
        assert_eq!(err, Invalid::new("api_key", "required"));
    }

    #[test]
    fn serial_connections_need_a_port_and_a_known_baud_rate() {
        assert_eq!(
            Connection::parse(ConnectionKind::SerialGrbl, "/dev/ttyUSB0", "", "", "", None)
                .unwrap(),
            Connection::SerialGrbl {
                port: "/dev/ttyUSB0".into(),
                baud: 115_200
            }
        );
        assert_eq!(
            Connection::parse(
                ConnectionKind::SerialMarlin,
                "/dev/ttyACM0",
                "12345",
                "",
                "",
                None
            )
            .unwrap_err()
            .code,
            "baud"
        );
        assert!(Connection::parse(ConnectionKind::Moonraker, "", "", "ftp://x", "", None).is_err());
    }

    #[test]
    fn profile_parses_hoops_and_decimal_commas() {
        let p = MachineProfile::parse(
            ["250", "210", "210,5"],
            "300",
            "120",
            "",
            "100x100, 130×180",
            "PLA, PETG",
        )
        .unwrap();
        assert_eq!(p.work_area_mm, [250.0, 210.0, 210.5]);
        assert_eq!(p.hoops_mm, vec![[100.0, 100.0], [130.0, 180.0]]);
        assert_eq!(p.materials, vec!["PLA", "PETG"]);
        assert_eq!(p.hoops_text(), "100x100, 130x180");
        assert!(MachineProfile::parse(["-1", "0", "0"], "", "", "", "", "").is_err());
        assert!(MachineProfile::parse(["1", "1", "1"], "", "", "", "10 by 10", "").is_err());
        let p = p.with_speeds("200", "1250,5", "").unwrap();
        assert_eq!(
            (p.max_speed_mm_s, p.max_accel_mm_s2, p.stitches_per_minute),
            (200.0, 1250.5, 0.0)
        );
        assert_eq!(
            p.with_speeds("", "", "99999").unwrap_err().field,
            "stitches_per_minute"
        );
    }

    #[test]
    fn a_running_machine_cannot_be_put_in_maintenance_by_hand() {
        assert_eq!(
            MachineState::Busy
                .manual_transition(MachineState::Maintenance)
                .unwrap_err()
                .code,
            "machine_running"
        );
        assert_eq!(
            MachineState::ToCheck
                .manual_transition(MachineState::Idle)
                .unwrap(),
            MachineState::Idle
        );
        assert!(
            MachineState::Idle
                .manual_transition(MachineState::Busy)
                .is_err()
        );
    }
}
