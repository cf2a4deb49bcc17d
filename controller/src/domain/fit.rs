//! The one rule that says whether a job may run on a machine, and if not, why.
//!
//! Everything that puts a job on a machine asks [`check`]: the planner when it places a job
//! ([`Start::Plan`]) and when it starts one by itself ([`Start::Automatic`]), the workshop
//! board's list of jobs to start and a person's start ([`Start::Person`]), the API, and the
//! runtime once more just before the first byte goes out. The rule, in the order it decides:
//!
//! 1. the job names this machine, or none (then any machine of the kind it asks for);
//! 2. its file was read ([`Refusal::Unreadable`] otherwise);
//! 3. the file fits the machine ([`misfits`]): the kind of machine and its firmware, the
//!    work area, the hotend and bed temperatures, the laser power and laser mode, the hoop,
//!    the filament types loaded;
//! 4. what a manager must look at was approved: the file's own findings (commands a member
//!    may not send, unreadable lines) and, on a laser, a constant-power `M3`;
//! 5. the owner holds a valid badge of a training that unlocks the machine, or a manager
//!    approved the job for a supervised run and a trainer or manager starts it;
//! 6. a laser, a mill and a machine without a data link start only by a person at them.
//!
//! Pure: the caller loads the job, the machine and what it knows of the owner.

use super::job::{Job, JobState};
use super::{Connection, Machine, MachineKind, MachineState, Role};
use fabrique_machines::files::FileSummary;
use fabrique_machines::files::embroidery::{EmbroiderySummary, fit_hoops};
use fabrique_machines::files::gcode::GcodeSummary;
use fabrique_machines::files::hpgl::HpglSummary;

/// Who or what starts the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Placing it in the plan: who will press start does not matter yet.
    Plan,
    /// The planner starting it with nobody at the machine.
    Automatic,
    /// A person at the machine, signed in with this role.
    Person(Role),
}

/// What the rule needs to know of the job's owner on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub role: Role,
    /// `None` when the owner holds a valid badge for the machine, or it needs none;
    /// otherwise the name of a training that would unlock it.
    pub missing_training: Option<String>,
}

/// Why a job may not run on a machine. [`Refusal::code`] is stable; [`Refusal::args`] fill
/// the sentence of the catalogue (`fit.<code>`).
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The job names another machine.
    OtherMachine,
    /// The file could not be read: nothing can run it.
    Unreadable,
    /// An embroidery design for a machine that does not embroider, G-code for one that
    /// takes none, or another kind than the job asks for.
    WrongKind {
        file: &'static str,
        machine: MachineKind,
    },
    /// Heating or extrusion, for a machine that does not print.
    PrinterFile {
        line: u64,
        command: String,
    },
    /// `M3`/`M4`, for a 3D printer.
    LaserFile {
        line: u64,
        command: String,
    },
    /// A GRBL `$` line, for Marlin or Klipper.
    GrblCommands {
        line: u64,
        command: String,
    },
    /// A Klipper macro, for Marlin or GRBL.
    KlipperMacros {
        line: u64,
        command: String,
    },
    /// The file reaches beyond the work area on an axis.
    TooLarge {
        axis: char,
        need: f64,
        have: f64,
    },
    /// The file draws below 0 on an axis: outside the bed.
    BelowZero {
        axis: char,
        at: f64,
    },
    HotendTooHot {
        need: f64,
        max: f64,
    },
    BedTooHot {
        need: f64,
        max: f64,
    },
    LaserTooStrong {
        need: f64,
        max: f64,
    },
    /// `$32=0` turns GRBL's laser mode off: the machine stops at every power change.
    LaserModeOff,
    /// `M3` on a laser: constant power burns corners. A manager may approve it.
    ConstantPower {
        line: u64,
    },
    /// No hoop of the machine takes the design, even turned.
    HoopTooSmall {
        width: f64,
        height: f64,
    },
    /// The file was sliced for filaments the machine does not hold.
    MaterialMissing {
        needed: String,
        loaded: String,
    },
    /// Findings a manager has not approved (their codes).
    ApprovalNeeded {
        codes: Vec<String>,
    },
    /// The owner has no valid badge for the machine.
    BadgeRequired {
        training: String,
    },
    /// Approved for a supervised run: a trainer or manager starts it at the machine.
    SupervisorNeeded,
    /// A laser, a mill or a machine without a data link: a person starts it.
    PersonNeeded,
    /// At the start: the machine is not free (working, offline, to check...).
    MachineNotFree {
        state: MachineState,
    },
    /// At the start: the job is no longer waiting in the queue.
    NotQueued {
        state: JobState,
    },
}

impl Refusal {
    /// Every code, for the catalogue's test.
    pub const CODES: &'static [&'static str] = &[
        "other_machine",
        "file_unreadable",
        "wrong_kind",
        "printer_file",
        "laser_file",
        "grbl_commands",
        "klipper_macros",
        "too_large",
        "below_zero",
        "hotend_too_hot",
        "bed_too_hot",
        "laser_too_strong",
        "laser_mode_off",
        "constant_power",
        "hoop_too_small",
        "material_missing",
        "approval_needed",
        "badge_required",
        "supervisor_needed",
        "person_needed",
        "machine_not_free",
        "job_not_queued",
    ];

    pub fn code(&self) -> &'static str {
        match self {
            Refusal::OtherMachine => "other_machine",
            Refusal::Unreadable => "file_unreadable",
            Refusal::WrongKind { .. } => "wrong_kind",
            Refusal::PrinterFile { .. } => "printer_file",
            Refusal::LaserFile { .. } => "laser_file",
            Refusal::GrblCommands { .. } => "grbl_commands",
            Refusal::KlipperMacros { .. } => "klipper_macros",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::BelowZero { .. } => "below_zero",
            Refusal::HotendTooHot { .. } => "hotend_too_hot",
            Refusal::BedTooHot { .. } => "bed_too_hot",
            Refusal::LaserTooStrong { .. } => "laser_too_strong",
            Refusal::LaserModeOff => "laser_mode_off",
            Refusal::ConstantPower { .. } => "constant_power",
            Refusal::HoopTooSmall { .. } => "hoop_too_small",
            Refusal::MaterialMissing { .. } => "material_missing",
            Refusal::ApprovalNeeded { .. } => "approval_needed",
            Refusal::BadgeRequired { .. } => "badge_required",
            Refusal::SupervisorNeeded => "supervisor_needed",
            Refusal::PersonNeeded => "person_needed",
            Refusal::MachineNotFree { .. } => "machine_not_free",
            Refusal::NotQueued { .. } => "job_not_queued",
        }
    }

    /// The sentence's placeholders. Numbers are written as a person reads them (`450`,
    /// `232,5` is left to the catalogue's language: the dot stays).
    pub fn args(&self) -> Vec<(&'static str, String)> {
        let n = |v: f64| format!("{v:.0}");
        match self {
            Refusal::WrongKind { file, machine } => {
                vec![
                    ("file", (*file).into()),
                    ("machine", machine.as_str().into()),
                ]
            }
            Refusal::PrinterFile { line, command }
            | Refusal::LaserFile { line, command }
            | Refusal::GrblCommands { line, command }
            | Refusal::KlipperMacros { line, command } => {
                vec![("line", line.to_string()), ("command", command.clone())]
            }
            Refusal::TooLarge { axis, need, have } => vec![
                ("axis", axis.to_string()),
                ("need", n(*need)),
                ("have", n(*have)),
            ],
            Refusal::BelowZero { axis, at } => {
                vec![("axis", axis.to_string()), ("at", format!("{at:.1}"))]
            }
            Refusal::HotendTooHot { need, max }
            | Refusal::BedTooHot { need, max }
            | Refusal::LaserTooStrong { need, max } => vec![("need", n(*need)), ("max", n(*max))],
            Refusal::ConstantPower { line } => vec![("line", line.to_string())],
            Refusal::HoopTooSmall { width, height } => vec![
                ("width", format!("{width:.0}")),
                ("height", format!("{height:.0}")),
            ],
            Refusal::MaterialMissing { needed, loaded } => {
                vec![("needed", needed.clone()), ("loaded", loaded.clone())]
            }
            Refusal::ApprovalNeeded { codes } => vec![("codes", codes.join(", "))],
            Refusal::BadgeRequired { training } => vec![("training", training.clone())],
            Refusal::MachineNotFree { state } => vec![("state", state.as_str().into())],
            Refusal::NotQueued { state } => vec![("state", state.as_str().into())],
            Refusal::OtherMachine
            | Refusal::Unreadable
            | Refusal::LaserModeOff
            | Refusal::SupervisorNeeded
            | Refusal::PersonNeeded => Vec::new(),
        }
    }

    /// Whether a manager's approval lifts it (the others hold whoever approves).
    pub fn approvable(&self) -> bool {
        matches!(
            self,
            Refusal::ConstantPower { .. }
                | Refusal::ApprovalNeeded { .. }
                | Refusal::BadgeRequired { .. }
        )
    }
}

/// The firmware a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Firmware {
    Marlin,
    Grbl,
    Klipper,
    /// A cutter's HP-GL: G-code never goes to it (the kind rule refuses it first).
    Hpgl,
    /// No data link: the operator carries the file.
    Unknown,
}

fn firmware(connection: &Connection) -> Firmware {
    match connection {
        Connection::SerialMarlin { .. } | Connection::OctoPrint { .. } => Firmware::Marlin,
        Connection::SerialGrbl { .. } => Firmware::Grbl,
        Connection::SerialHpgl { .. } => Firmware::Hpgl,
        Connection::Moonraker { .. } => Firmware::Klipper,
        Connection::Manual => Firmware::Unknown,
    }
}

/// What a file asks of `machine` that it cannot give, first to last in the order a person
/// would fix them. Empty: the file fits.
pub fn misfits(file: &FileSummary, machine: &Machine) -> Vec<Refusal> {
    match file {
        FileSummary::Gcode(g) => gcode_misfits(g, machine),
        FileSummary::Embroidery(e) => embroidery_misfits(e, machine),
        FileSummary::Hpgl(h) => hpgl_misfits(h, machine),
    }
}

/// A cutting file runs on a vinyl cutter only, and its cuts must lie on the media: the
/// profile's work area, X along the feed (0: a roll, as long as needed) and Y across the
/// width (0: not checked), from the origin the cutter sets after loading.
fn hpgl_misfits(h: &HpglSummary, machine: &Machine) -> Vec<Refusal> {
    if machine.kind != MachineKind::VinylCutter {
        return vec![Refusal::WrongKind {
            file: "hpgl",
            machine: machine.kind,
        }];
    }
    let Some(e) = h.extent else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let area = machine.profile.work_area_mm;
    for (axis, lo, hi, have) in [
        ('X', e.min_x_mm, e.max_x_mm, area[0]),
        ('Y', e.min_y_mm, e.max_y_mm, area[1]),
    ] {
        if have > 0.0 && hi > have + 0.01 {
            out.push(Refusal::TooLarge {
                axis,
                need: hi,
                have,
            });
        } else if lo < -0.01 {
            out.push(Refusal::BelowZero { axis, at: lo });
        }
    }
    out
}

fn embroidery_misfits(e: &EmbroiderySummary, machine: &Machine) -> Vec<Refusal> {
    if machine.kind != MachineKind::Embroidery {
        return vec![Refusal::WrongKind {
            file: "embroidery",
            machine: machine.kind,
        }];
    }
    let hoops = &machine.profile.hoops_mm;
    if !hoops.is_empty() && fit_hoops(e.width_mm, e.height_mm, hoops).fits.is_empty() {
        return vec![Refusal::HoopTooSmall {
            width: e.width_mm,
            height: e.height_mm,
        }];
    }
    Vec::new()
}

fn gcode_misfits(g: &GcodeSummary, machine: &Machine) -> Vec<Refusal> {
    let kind = machine.kind;
    if !matches!(
        kind,
        MachineKind::FdmPrinter | MachineKind::LaserCutter | MachineKind::CncMill
    ) {
        return vec![Refusal::WrongKind {
            file: "gcode",
            machine: kind,
        }];
    }
    let p = &machine.profile;
    let fw = firmware(&machine.connection);
    let mut out = Vec::new();
    let prints = kind == MachineKind::FdmPrinter;
    if let Some(u) = g.uses.printer.as_ref().filter(|_| !prints) {
        out.push(Refusal::PrinterFile {
            line: u.line,
            command: u.command.clone(),
        });
    }
    if let Some(u) = g.uses.laser.as_ref().filter(|_| prints) {
        out.push(Refusal::LaserFile {
            line: u.line,
            command: u.command.clone(),
        });
    }
    if let Some(u) = g
        .uses
        .grbl_system
        .as_ref()
        .filter(|_| matches!(fw, Firmware::Marlin | Firmware::Klipper))
    {
        out.push(Refusal::GrblCommands {
            line: u.line,
            command: u.command.clone(),
        });
    }
    if let Some(u) = g
        .uses
        .klipper_macro
        .as_ref()
        .filter(|_| matches!(fw, Firmware::Marlin | Firmware::Grbl))
    {
        out.push(Refusal::KlipperMacros {
            line: u.line,
            command: u.command.clone(),
        });
    }
    // The drawn extent (extrusions, or the beam on) must lie on the bed; the height of every
    // move under the gantry. 0 on an axis of the profile: not checked.
    let drawn = g.bbox;
    let axes = [('X', 0), ('Y', 1), ('Z', 2)];
    for (axis, i) in axes {
        let have = p.work_area_mm[i];
        let (lo, hi) = match (i, drawn, g.moves_bbox) {
            (0, Some(b), _) => (b.min_x, b.max_x),
            (1, Some(b), _) => (b.min_y, b.max_y),
            (2, _, Some(m)) => (0.0, m.max_z),
            _ => continue,
        };
        if have > 0.0 && hi > have + 0.01 {
            out.push(Refusal::TooLarge {
                axis,
                need: hi,
                have,
            });
        } else if i < 2 && have > 0.0 && lo < -0.01 {
            out.push(Refusal::BelowZero { axis, at: lo });
        }
    }
    if p.max_hotend_c > 0.0 && g.max_hotend_c > p.max_hotend_c {
        out.push(Refusal::HotendTooHot {
            need: g.max_hotend_c,
            max: p.max_hotend_c,
        });
    }
    if p.max_bed_c > 0.0 && g.max_bed_c > p.max_bed_c {
        out.push(Refusal::BedTooHot {
            need: g.max_bed_c,
            max: p.max_bed_c,
        });
    }
    if kind == MachineKind::LaserCutter {
        if p.max_laser_power > 0.0 && g.max_laser_power > p.max_laser_power {
            out.push(Refusal::LaserTooStrong {
                need: g.max_laser_power,
                max: p.max_laser_power,
            });
        }
        if g.laser.as_ref().and_then(|l| l.grbl_laser_mode) == Some(false) {
            out.push(Refusal::LaserModeOff);
        }
        if let Some(u) = &g.uses.constant_power {
            out.push(Refusal::ConstantPower { line: u.line });
        }
    }
    if prints && !p.materials.is_empty() {
        let needed = g.slicer.as_ref().map_or(&[][..], |s| &s.materials[..]);
        let missing: Vec<&str> = needed
            .iter()
            .filter(|m| !p.materials.iter().any(|have| have.eq_ignore_ascii_case(m)))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            out.push(Refusal::MaterialMissing {
                needed: missing.join(", "),
                loaded: p.materials.join(", "),
            });
        }
    }
    out
}

/// Whether a machine may start a job with nobody at it: a 3D printer with a data link.
pub fn starts_by_itself(machine: &Machine) -> bool {
    machine.kind == MachineKind::FdmPrinter && !matches!(machine.connection, Connection::Manual)
}

/// What a manager's approval must cover for the job to run on `machine`: the file's own
/// findings and the approvable misfits (their codes, each once).
pub fn concerns(file: &FileSummary, machine: &Machine) -> Vec<String> {
    let mut codes: Vec<String> = file.issues().iter().map(|f| f.code.clone()).collect();
    codes.extend(
        misfits(file, machine)
            .iter()
            .filter(|m| m.approvable())
            .map(|m| m.code().to_string()),
    );
    codes.sort();
    codes.dedup();
    codes
}

/// The rule. `Ok` when `job` may run on `machine`, started as `start`, for an owner known
/// as `owner`; otherwise the first reason it may not, in the order of the module's list.
pub fn check(job: &Job, machine: &Machine, owner: &Owner, start: Start) -> Result<(), Refusal> {
    if job.target_machine.is_some_and(|t| t != machine.id) {
        return Err(Refusal::OtherMachine);
    }
    let Some(file) = &job.analysis else {
        return Err(Refusal::Unreadable);
    };
    if let Some(kind) = job.target_kind.filter(|k| *k != machine.kind) {
        return Err(Refusal::WrongKind {
            file: kind.as_str(),
            machine: machine.kind,
        });
    }
    if let Some(blocking) = misfits(file, machine).into_iter().find(|m| !m.approvable()) {
        return Err(blocking);
    }
    let seen = job.approval.as_ref().map_or(&[][..], |a| &a.seen[..]);
    let unapproved: Vec<String> = concerns(file, machine)
        .into_iter()
        .filter(|c| !seen.contains(c))
        .collect();
    if !unapproved.is_empty() {
        return Err(Refusal::ApprovalNeeded { codes: unapproved });
    }
    let supervised = job.approval.as_ref().is_some_and(|a| a.supervised);
    if let Some(training) = &owner.missing_training
        && !owner.role.at_least(Role::Manager)
    {
        if !supervised {
            return Err(Refusal::BadgeRequired {
                training: training.clone(),
            });
        }
        match start {
            Start::Plan => {}
            Start::Person(role) if role.at_least(Role::Trainer) => {}
            Start::Automatic | Start::Person(_) => return Err(Refusal::SupervisorNeeded),
        }
    }
    if start == Start::Automatic && !starts_by_itself(machine) {
        return Err(Refusal::PersonNeeded);
    }
    Ok(())
}

/// Why a job waits: no machine of the lab may run it yet, in the rule's words.
#[derive(Debug, Clone, PartialEq)]
pub enum Waiting {
    /// The machine the job names refuses it.
    OnMachine { machine: String, refusal: Refusal },
    /// No machine of the lab takes this kind of file (an embroidery design and no
    /// embroidery machine).
    NoMachineOfKind,
    /// Every machine of its kind refuses it for the same reason; the figures are those of
    /// the nearest machine ("aucune machine du fablab ne chauffe à 450 °C").
    NoMachine(Refusal),
    /// The machines of its kind refuse it for different reasons, each named.
    Several(Vec<(String, Refusal)>),
    /// It fits machines that are out of service now (offline, in maintenance, to check).
    Unavailable,
    /// It fits, but no free time within the planner's horizon.
    NoRoom,
}

impl Waiting {
    /// The codes of the waits that are not a refusal's, for the catalogue's test.
    pub const CODES: &'static [&'static str] = &[
        "no_machine_of_kind",
        "several_reasons",
        "machine_unavailable",
        "no_room",
    ];

    /// Whether a manager's approval is what the job waits for (on at least one machine).
    pub fn approvable(&self) -> bool {
        match self {
            Waiting::OnMachine { refusal, .. } | Waiting::NoMachine(refusal) => {
                refusal.approvable()
            }
            Waiting::Several(list) => list.iter().any(|(_, r)| r.approvable()),
            Waiting::NoMachineOfKind | Waiting::Unavailable | Waiting::NoRoom => false,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Waiting::OnMachine { refusal, .. } | Waiting::NoMachine(refusal) => refusal.code(),
            Waiting::NoMachineOfKind => "no_machine_of_kind",
            Waiting::Several(_) => "several_reasons",
            Waiting::Unavailable => "machine_unavailable",
            Waiting::NoRoom => "no_room",
        }
    }
}

/// Whether the refusal says the machine is of another kind than the file asks for: such a
/// machine is not one of its candidates.
fn other_kind(r: &Refusal) -> bool {
    matches!(
        r,
        Refusal::WrongKind { .. } | Refusal::PrinterFile { .. } | Refusal::LaserFile { .. }
    )
}

/// Why `job` may run on none of `machines` (each with what the rule knows of its owner
/// there), as the planner would place it; `None` when one of them may run it.
pub fn waiting(job: &Job, machines: &[(&Machine, Owner)]) -> Option<Waiting> {
    let verdicts: Vec<(&Machine, Result<(), Refusal>)> = machines
        .iter()
        .filter(|(m, _)| job.target_machine.is_none_or(|t| t == m.id))
        .map(|(m, owner)| (*m, check(job, m, owner, Start::Plan)))
        .collect();
    if verdicts.iter().any(|(_, r)| r.is_ok()) {
        return None;
    }
    if job.target_machine.is_some() {
        return Some(match verdicts.into_iter().next() {
            Some((m, Err(refusal))) => Waiting::OnMachine {
                machine: m.name.clone(),
                refusal,
            },
            // The machine it names is out of service.
            _ => Waiting::Unavailable,
        });
    }
    if let Some(Err(Refusal::Unreadable)) = verdicts.first().map(|(_, r)| r.clone()) {
        return Some(Waiting::NoMachine(Refusal::Unreadable));
    }
    let candidates: Vec<(String, Refusal)> = verdicts
        .into_iter()
        .filter_map(|(m, r)| r.err().map(|r| (m.name.clone(), r)))
        .filter(|(_, r)| !other_kind(r))
        .collect();
    let Some((_, first)) = candidates.first() else {
        return Some(Waiting::NoMachineOfKind);
    };
    if candidates
        .iter()
        .all(|(_, r)| std::mem::discriminant(r) == std::mem::discriminant(first))
    {
        // The nearest machine: the one that comes closest to what the file asks.
        let nearest = candidates
            .iter()
            .map(|(_, r)| r)
            .max_by(|a, b| reach(a).total_cmp(&reach(b)))
            .unwrap_or(first);
        return Some(Waiting::NoMachine(nearest.clone()));
    }
    Some(Waiting::Several(candidates))
}

/// How far a machine goes, for the refusals that compare a figure with a limit.
fn reach(r: &Refusal) -> f64 {
    match r {
        Refusal::TooLarge { have, .. } => *have,
        Refusal::HotendTooHot { max, .. }
        | Refusal::BedTooHot { max, .. }
        | Refusal::LaserTooStrong { max, .. } => *max,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests;
