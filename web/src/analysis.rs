//! The analysis run on every job file at upload, in a blocking task. It reads the file
//! incrementally (a 500 MB file is never loaded whole) with `fabrique_machines::files`.

use fabrique_controller::domain::MachineProfile;
use fabrique_machines::files::gcode::{self, Limits};
use serde_json::{Value, json};
use std::io::{BufReader, Read};
use std::path::Path;

/// What the job needs from an analysis: the JSON kept with the job, the time estimate,
/// and how many findings need a manager's look. `Err` is why the file cannot be used.
pub type Outcome = Result<(Value, Option<i64>, usize), String>;

/// The limits of the machine a job targets, for the checks.
pub fn limits(profile: &MachineProfile) -> Limits {
    Limits {
        volume_mm: profile.work_area_mm,
        max_hotend_c: profile.max_hotend_c,
        max_bed_c: profile.max_bed_c,
        max_laser_power: profile.max_laser_power,
        ..Limits::default()
    }
}

pub fn analyse(path: &Path, limits: Option<&Limits>) -> Outcome {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut file = std::fs::File::open(path).map_err(|e| format!("fichier illisible : {e}"))?;
    if matches!(extension.as_str(), "dst" | "pes" | "exp" | "jef") {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        return Ok((
            json!({"kind": "embroidery", "format": extension, "size_bytes": size}),
            None,
            0,
        ));
    }
    // A binary file renamed .gcode: refuse it before reading it all.
    let mut head = [0u8; 4096];
    let n = file
        .read(&mut head)
        .map_err(|e| format!("fichier illisible : {e}"))?;
    if head[..n].contains(&0) {
        return Err(String::from(
            "ce n'est pas un fichier G-code (contenu binaire)",
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("fichier illisible : {e}"))?;
    let summary = gcode::analyze(BufReader::with_capacity(256 * 1024, file), limits)
        .map_err(|e| format!("fichier illisible : {e}"))?;
    if summary.commands == 0 {
        return Err(String::from(
            "le fichier ne contient aucune commande G-code",
        ));
    }
    let findings = summary.issues.len();
    let estimate = (summary.estimate_s > 0).then_some(summary.estimate_s);
    let value = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
    Ok((value, estimate, findings))
}
