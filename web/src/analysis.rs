//! The analysis run on every job file at upload (in a blocking task) and by
//! `fabrique analyze`: G-code read incrementally (a 500 MB file is never loaded whole) or an
//! embroidery design (DST, PES, EXP, JEF), checked against the machine when there is one,
//! with an SVG preview and the slicer's thumbnail kept beside the job file.

use fabrique_controller::domain::{Connection, Machine, MachineProfile, job};
use fabrique_machines::files::embroidery::{self, EmbroideryMachine, Format};
use fabrique_machines::files::gcode::{
    self, Dialect, FirmwareLimits, Limits, Options, PreviewOptions,
};
use serde_json::Value;
use std::io::{BufReader, Read};
use std::path::Path;

/// What was read in a job file.
#[derive(Debug)]
pub enum FileSummary {
    Gcode(Box<gcode::GcodeSummary>),
    Embroidery(Box<embroidery::EmbroiderySummary>),
}

/// An analysis, and what is kept out of its JSON.
pub struct Analysed {
    pub summary: FileSummary,
    pub preview_svg: Option<String>,
    pub thumbnail_png: Option<Vec<u8>>,
}

impl Analysed {
    /// Findings a manager must look at: the G-code checks, or a design no hoop can take.
    pub fn findings(&self) -> usize {
        match &self.summary {
            FileSummary::Gcode(s) => s.issues.len(),
            FileSummary::Embroidery(s) => {
                usize::from(s.hoop_fit.as_ref().is_some_and(|fit| fit.fits.is_empty()))
            }
        }
    }

    pub fn estimate_s(&self) -> i64 {
        match &self.summary {
            FileSummary::Gcode(s) => s.estimate_s,
            FileSummary::Embroidery(s) => s.estimate_s.round() as i64,
        }
    }

    pub fn json(&self) -> Result<Value, String> {
        match &self.summary {
            FileSummary::Gcode(s) => serde_json::to_value(s),
            FileSummary::Embroidery(s) => serde_json::to_value(s),
        }
        .map_err(|e| e.to_string())
    }
}

/// What the job records of an analysis.
pub fn outcome(analysed: &Result<Analysed, String>) -> job::Analysis {
    let a = analysed.as_ref().map_err(Clone::clone)?;
    Ok((a.json()?, Some(a.estimate_s()), a.findings()))
}

/// What the checks and estimates need to know of a machine.
#[derive(Debug, Clone, Default)]
pub struct MachineLimits {
    pub gcode: Limits,
    pub embroidery: EmbroideryMachine,
}

/// The firmware a connection speaks, for the dialect check and the motion defaults.
fn dialect(connection: &Connection) -> Dialect {
    match connection {
        Connection::SerialMarlin { .. } | Connection::OctoPrint { .. } => Dialect::Marlin,
        Connection::SerialGrbl { .. } => Dialect::Grbl,
        Connection::Moonraker { .. } => Dialect::Klipper,
        Connection::Manual => Dialect::Unknown,
    }
}

/// Filament density from the machine's first material, g/cm³ (PLA when not known).
fn density(profile: &MachineProfile) -> Option<f64> {
    let first = profile.materials.first()?.to_uppercase();
    [
        ("PETG", 1.27),
        ("ABS", 1.04),
        ("ASA", 1.07),
        ("TPU", 1.21),
        ("PLA", 1.24),
    ]
    .iter()
    .find(|(name, _)| first.contains(name))
    .map(|(_, d)| *d)
}

pub fn limits(machine: &Machine) -> MachineLimits {
    let p = &machine.profile;
    let dialect = dialect(&machine.connection);
    let mut firmware = FirmwareLimits::for_dialect(dialect);
    if p.max_speed_mm_s > 0.0 {
        firmware.max_feedrate_mm_s[0] = p.max_speed_mm_s;
        firmware.max_feedrate_mm_s[1] = p.max_speed_mm_s;
    }
    if p.max_accel_mm_s2 > 0.0 {
        firmware.print_acceleration_mm_s2 = p.max_accel_mm_s2;
        firmware.travel_acceleration_mm_s2 = p.max_accel_mm_s2;
        firmware.max_acceleration_mm_s2[0] =
            firmware.max_acceleration_mm_s2[0].max(p.max_accel_mm_s2);
        firmware.max_acceleration_mm_s2[1] =
            firmware.max_acceleration_mm_s2[1].max(p.max_accel_mm_s2);
    }
    MachineLimits {
        gcode: Limits {
            volume_mm: p.work_area_mm,
            max_hotend_c: p.max_hotend_c,
            max_bed_c: p.max_bed_c,
            max_laser_power: p.max_laser_power,
            dialect,
            firmware: Some(firmware),
            filament_density_g_cm3: density(p),
            ..Limits::default()
        },
        embroidery: EmbroideryMachine {
            hoops_mm: p.hoops_mm.clone(),
            stitches_per_minute: if p.stitches_per_minute > 0.0 {
                p.stitches_per_minute
            } else {
                EmbroideryMachine::DEFAULT_STITCHES_PER_MINUTE
            },
            ..EmbroideryMachine::default()
        },
    }
}

fn unreadable(e: impl std::fmt::Display) -> String {
    format!("fichier illisible : {e}")
}

/// Reads the file at `path` (sent as `file_name`) and checks it against `limits` when the
/// job targets a machine. `title` is the preview's accessible name.
pub fn analyse(
    path: &Path,
    file_name: &str,
    limits: Option<&MachineLimits>,
    title: &str,
) -> Result<Analysed, String> {
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut head = [0u8; 4096];
    let n = file.read(&mut head).map_err(unreadable)?;
    if let Some(format) = Format::detect(Some(file_name), &head[..n]) {
        let default = EmbroideryMachine::default();
        let machine = limits.map_or(&default, |l| &l.embroidery);
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let design = embroidery::read(file, format).map_err(|e| e.message().fr)?;
        return Ok(Analysed {
            summary: FileSummary::Embroidery(Box::new(embroidery::analyze(&design, machine))),
            preview_svg: Some(embroidery::preview_svg(&design, title)),
            thumbnail_png: None,
        });
    }
    // A binary file renamed .gcode: refuse it before reading it all.
    if head[..n].contains(&0) {
        return Err(String::from(
            "ce n'est pas un fichier G-code (contenu binaire)",
        ));
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let options = Options {
        preview: Some(PreviewOptions {
            title: title.to_string(),
            ..PreviewOptions::default()
        }),
        thumbnail: true,
    };
    let analysis = gcode::analyze_with(
        BufReader::with_capacity(256 * 1024, file),
        limits.map(|l| &l.gcode),
        &options,
    )
    .map_err(unreadable)?;
    if analysis.summary.commands == 0 {
        return Err(String::from(
            "le fichier ne contient aucune commande G-code",
        ));
    }
    Ok(Analysed {
        summary: FileSummary::Gcode(Box::new(analysis.summary)),
        preview_svg: analysis.preview_svg,
        thumbnail_png: analysis.thumbnail.map(|t| t.png),
    })
}

/// Where a job's preview and thumbnail are kept, beside its file.
pub fn preview_path(jobs_dir: &Path, stored_name: &str) -> std::path::PathBuf {
    jobs_dir.join(format!("{stored_name}.preview.svg"))
}

pub fn thumbnail_path(jobs_dir: &Path, stored_name: &str) -> std::path::PathBuf {
    jobs_dir.join(format!("{stored_name}.thumbnail.png"))
}

/// Keeps the preview and thumbnail of an analysis beside the job file. They are only
/// pictures: failing to write one is logged, never a failed job.
pub fn keep_pictures(jobs_dir: &Path, stored_name: &str, analysed: &Analysed) {
    let pictures = [
        (
            preview_path(jobs_dir, stored_name),
            analysed.preview_svg.as_ref().map(String::as_bytes),
        ),
        (
            thumbnail_path(jobs_dir, stored_name),
            analysed.thumbnail_png.as_deref(),
        ),
    ];
    for (path, bytes) in pictures {
        if let Some(bytes) = bytes
            && let Err(e) = std::fs::write(&path, bytes)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not keep a job picture");
        }
    }
}
