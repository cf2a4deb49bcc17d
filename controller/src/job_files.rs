//! A job's file on disk: read with what Fabrique knows of the machine it is sent to (its
//! firmware for the meaning of `G0` and `G4`, its speeds for the estimate, its filament for
//! the weight, its hoops for the advice), and the preview and thumbnail kept beside it.

use crate::domain::{Connection, Machine, MachineKind, MachineProfile};
use fabrique_machines::files::embroidery::{self, EmbroideryMachine};
use fabrique_machines::files::gcode::{Dialect, FirmwareLimits, Junction, Limits};
use fabrique_machines::files::{self, JobFile, Unreadable, hpgl};
use std::path::{Path, PathBuf};

/// The firmware a connection speaks, for the motion defaults and what words mean.
fn dialect(connection: &Connection) -> Dialect {
    match connection {
        Connection::SerialMarlin { .. } | Connection::OctoPrint { .. } => Dialect::Marlin,
        Connection::SerialGrbl { .. } => Dialect::Grbl,
        Connection::Moonraker { .. } => Dialect::Klipper,
        Connection::Manual | Connection::SerialHpgl { .. } => Dialect::Unknown,
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

/// What the G-code estimate takes from a machine's profile.
pub fn gcode_limits(machine: &Machine) -> Limits {
    let p = &machine.profile;
    let dialect = dialect(&machine.connection);
    // The firmware's own figures when a manager adopted them (the form's top speed and
    // acceleration then mirror them), else the form's over the firmware's defaults.
    let firmware = match &p.firmware_limits {
        Some(reported) => reported.firmware_limits(),
        None => {
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
            if dialect == Dialect::Klipper {
                if p.square_corner_velocity_mm_s > 0.0 {
                    firmware.junction = Junction::SquareCorner {
                        mm_s: p.square_corner_velocity_mm_s,
                    };
                }
                if let Some(ratio) = p.minimum_cruise_ratio {
                    firmware.min_cruise_ratio = ratio;
                }
            }
            firmware
        }
    };
    Limits {
        dialect,
        // Only limits the lab gave: otherwise the slicer's own, else the firmware's defaults.
        firmware: p.has_motion_limits().then_some(firmware),
        junction_rule: p.junction_rule,
        silent_mode: p.silent_mode,
        filament_density_g_cm3: density(p),
        ..Limits::default()
    }
}

/// What the embroidery summary takes from a machine's profile.
pub fn embroidery_machine(machine: Option<&Machine>) -> EmbroideryMachine {
    let Some(p) = machine.map(|m| &m.profile) else {
        return EmbroideryMachine::default();
    };
    EmbroideryMachine {
        hoops_mm: p.hoops_mm.clone(),
        stitches_per_minute: if p.stitches_per_minute > 0.0 {
            p.stitches_per_minute
        } else {
            EmbroideryMachine::DEFAULT_STITCHES_PER_MINUTE
        },
        ..EmbroideryMachine::default()
    }
}

/// What the HP-GL analysis takes from a vinyl cutter's profile: its speed before any `VS`
/// (the profile's top speed, mm/s), and the media: the work area's Y is the roll's width,
/// its X the length of a sheet (0: a roll, as long as needed).
pub fn cutter_settings(machine: Option<&Machine>) -> hpgl::CutterSettings {
    let defaults = hpgl::CutterSettings::default();
    let Some(p) = machine
        .filter(|m| m.kind == MachineKind::VinylCutter)
        .map(|m| &m.profile)
    else {
        return defaults;
    };
    let [length, width, _] = p.work_area_mm;
    hpgl::CutterSettings {
        cut_speed_cm_s: if p.max_speed_mm_s > 0.0 {
            p.max_speed_mm_s / 10.0
        } else {
            defaults.cut_speed_cm_s
        },
        media: (width > 0.0).then_some(hpgl::Media {
            width_mm: width,
            length_mm: (length > 0.0).then_some(length),
        }),
        ..defaults
    }
}

/// Reads the file at `path` (sent as `file_name`), for `machine` when the job names one.
/// Blocking: call it from a blocking task.
pub fn read(
    path: &Path,
    file_name: &str,
    machine: Option<&Machine>,
) -> Result<JobFile, Unreadable> {
    let limits = machine.map(gcode_limits);
    files::read_job_file(
        path,
        file_name,
        limits.as_ref(),
        &embroidery_machine(machine),
        &cutter_settings(machine),
        file_name,
    )
}

/// Where a job's preview and thumbnail are kept, beside its file.
pub fn preview_path(jobs_dir: &Path, stored_name: &str) -> PathBuf {
    jobs_dir.join(format!("{stored_name}.preview.svg"))
}

pub fn thumbnail_path(jobs_dir: &Path, stored_name: &str) -> PathBuf {
    jobs_dir.join(format!("{stored_name}.thumbnail.png"))
}

/// Keeps the preview and thumbnail of a file beside it. They are only pictures: failing to
/// write one is logged, never a failed job.
pub fn keep_pictures(jobs_dir: &Path, stored_name: &str, file: &JobFile) {
    let pictures = [
        (
            preview_path(jobs_dir, stored_name),
            file.preview_svg.as_ref().map(String::as_bytes),
        ),
        (
            thumbnail_path(jobs_dir, stored_name),
            file.thumbnail_png.as_deref(),
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

/// Where the DST copy of an embroidery design in another format is kept, beside it.
pub fn dst_copy_path(jobs_dir: &Path, stored_name: &str) -> PathBuf {
    jobs_dir.join(format!("{stored_name}.design.dst"))
}

/// The files kept beside a job's file: its preview, its thumbnail, its DST copy.
pub fn beside(jobs_dir: &Path, stored_name: &str) -> [PathBuf; 3] {
    [
        preview_path(jobs_dir, stored_name),
        thumbnail_path(jobs_dir, stored_name),
        dst_copy_path(jobs_dir, stored_name),
    ]
}

/// The endings of the files kept beside a job's file, for telling them apart in the folder.
pub const BESIDE_ENDINGS: [&str; 3] = [".preview.svg", ".thumbnail.png", ".design.dst"];

/// The embroidery format of a job's file, from its name and first bytes; `None` for
/// anything else (G-code). Blocking.
pub fn embroidery_format(path: &Path, file_name: &str) -> Option<embroidery::Format> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    embroidery::Format::detect(Some(file_name), &head[..n])
}

/// The file to send for "download as DST": the design itself when it is a DST, else its
/// DST copy, written once (under `.part`, then renamed) and kept beside it. `None` when the
/// file is not an embroidery design or cannot be read. Blocking.
pub fn dst_file(jobs_dir: &Path, stored_name: &str, file_name: &str) -> Option<PathBuf> {
    let path = jobs_dir.join(stored_name);
    let format = embroidery_format(&path, file_name)?;
    if format == embroidery::Format::Dst {
        return Some(path);
    }
    let copy = dst_copy_path(jobs_dir, stored_name);
    if copy.exists() {
        return Some(copy);
    }
    let write = || -> std::io::Result<()> {
        let reader = std::io::BufReader::new(std::fs::File::open(&path)?);
        let design =
            embroidery::read(reader, format).map_err(|e| std::io::Error::other(e.message().en))?;
        let part = jobs_dir.join(format!("{stored_name}.design.dst.part"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&part)?);
        embroidery::write_dst(&design, &mut out)?;
        std::io::Write::flush(&mut out)?;
        drop(out);
        std::fs::rename(&part, &copy)
    };
    match write() {
        Ok(()) => Some(copy),
        Err(e) => {
            tracing::warn!(file = stored_name, error = %e, "could not write a DST copy");
            None
        }
    }
}

/// Removes a job's file and what is kept beside it (a job that could not be recorded, or
/// whose file is past its retention).
pub async fn remove(jobs_dir: &Path, stored_name: &str) {
    let [preview, thumbnail, dst] = beside(jobs_dir, stored_name);
    for path in [jobs_dir.join(stored_name), preview, thumbnail, dst] {
        if let Err(e) = tokio::fs::remove_file(&path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a job file");
        }
    }
}
