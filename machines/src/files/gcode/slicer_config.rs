//! The machine limits a slicer keeps in the configuration block at the end of its file.
//!
//! PrusaSlicer, SuperSlicer and OrcaSlicer end their G-code with their whole configuration
//! as comments (`; machine_max_acceleration_x = 9000,1000`: normal mode, then silent mode).
//! With `machine_limits_usage = time_estimate_only` PrusaSlicer writes no `M201`-`M205`,
//! yet its own estimate uses these values; so must ours. The block comes after the moves,
//! so it is read first, from the file's tail, before the one pass of the analysis.
//!
//! PrusaSlicer (`GCodeProcessor::apply_config`) uses them for the Marlin (legacy and 2),
//! RepRapFirmware and Klipper flavours unless the usage is `ignore`; legacy Marlin has no
//! travel acceleration of its own and travels at the printing one.

use super::{FirmwareLimits, Junction};
use std::io::{self, Read, Seek, SeekFrom};

/// How much of the end of a file is searched for the block (PrusaSlicer's is 20-60 kB).
const TAIL_BYTES: u64 = 512 * 1024;

/// Where the block begins, by slicer.
const BEGIN_MARKERS: [&str; 3] = [
    "; prusaslicer_config = begin",
    "; superslicer_config = begin",
    "; config_block_start",
];

/// The slicer's machine limits for the estimate, read from the end of `file`: `None` when
/// the file has no configuration block, when it says its limits are to be ignored, or when
/// its firmware flavour takes none. `silent`: the second value of each pair (the printer
/// runs in silent / stealth mode).
pub fn read<R: Read + Seek>(file: &mut R, silent: bool) -> io::Result<Option<FirmwareLimits>> {
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.take(TAIL_BYTES).read_to_end(&mut tail)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(parse(&String::from_utf8_lossy(&tail), silent))
}

/// [`read`] on the text of a file's tail.
pub fn parse(tail: &str, silent: bool) -> Option<FirmwareLimits> {
    let lower = tail.to_ascii_lowercase();
    let begin = BEGIN_MARKERS.iter().filter_map(|m| lower.rfind(m)).max()?;
    let block = &tail[begin..];
    let value = |key: &str| -> Option<&str> {
        block.lines().find_map(|line| {
            let (k, v) = line.trim().strip_prefix(';')?.split_once('=')?;
            (k.trim() == key).then_some(v.trim())
        })
    };
    // The normal-mode or silent-mode value of a pair (a single value serves both).
    let number = |key: &str| -> Option<f64> {
        let raw = value(key)?;
        let mut parts = raw.split(',').map(str::trim);
        let normal = parts.next()?;
        let chosen = if silent {
            parts.next().unwrap_or(normal)
        } else {
            normal
        };
        chosen
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if value("machine_limits_usage") == Some("ignore") {
        return None;
    }
    let flavour = value("gcode_flavor").unwrap_or("marlin2");
    let legacy_marlin = match flavour {
        "marlin" => true,
        "marlin2" | "marlinfirmware" | "reprapfirmware" | "klipper" => false,
        _ => return None,
    };
    let axes = |prefix: &str| -> Option<[f64; 4]> {
        let mut out = [0.0; 4];
        for (i, axis) in ["x", "y", "z", "e"].iter().enumerate() {
            out[i] = number(&format!("{prefix}{axis}"))?;
        }
        Some(out)
    };
    let max_feedrate_mm_s = axes("machine_max_feedrate_")?;
    let max_acceleration_mm_s2 = axes("machine_max_acceleration_")?;
    let defaults = FirmwareLimits::default();
    let print = number("machine_max_acceleration_extruding")
        .filter(|a| *a > 0.0)
        .unwrap_or(defaults.print_acceleration_mm_s2);
    let travel = if legacy_marlin {
        print
    } else {
        number("machine_max_acceleration_travel")
            .filter(|a| *a > 0.0)
            .unwrap_or(print)
    };
    let junction = match axes("machine_max_jerk_") {
        Some(mm_s) => Junction::Jerk { mm_s },
        None => defaults.junction,
    };
    Some(FirmwareLimits {
        max_feedrate_mm_s,
        max_acceleration_mm_s2,
        print_acceleration_mm_s2: print,
        retract_acceleration_mm_s2: number("machine_max_acceleration_retracting")
            .filter(|a| *a > 0.0)
            .unwrap_or(print),
        travel_acceleration_mm_s2: travel,
        junction,
        min_feedrate_mm_s: number("machine_min_extruding_rate").unwrap_or(0.0),
        min_travel_feedrate_mm_s: number("machine_min_travel_rate").unwrap_or(0.0),
        max_velocity_mm_s: 0.0,
        min_cruise_ratio: defaults.min_cruise_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "G1 X1\n; estimated printing time (normal mode) = 11m 3s\n\
        ; prusaslicer_config = begin\n\
        ; gcode_flavor = marlin\n\
        ; machine_limits_usage = time_estimate_only\n\
        ; machine_max_acceleration_e = 10000,5000\n\
        ; machine_max_acceleration_extruding = 2500,960\n\
        ; machine_max_acceleration_retracting = 1500,1250\n\
        ; machine_max_acceleration_travel = 3000,960\n\
        ; machine_max_acceleration_x = 2500,960\n\
        ; machine_max_acceleration_y = 2500,960\n\
        ; machine_max_acceleration_z = 500,200\n\
        ; machine_max_feedrate_e = 120,120\n\
        ; machine_max_feedrate_x = 250,100\n\
        ; machine_max_feedrate_y = 250,100\n\
        ; machine_max_feedrate_z = 12,12\n\
        ; machine_max_jerk_e = 2.5,2.5\n\
        ; machine_max_jerk_x = 12,8\n\
        ; machine_max_jerk_y = 12,8\n\
        ; machine_max_jerk_z = 0.2,0.4\n\
        ; machine_min_extruding_rate = 0,0\n\
        ; machine_min_travel_rate = 0,0\n\
        ; prusaslicer_config = end\n";

    #[test]
    fn normal_and_silent_values_are_read_from_the_block() {
        let normal = parse(BLOCK, false).unwrap();
        assert_eq!(normal.max_feedrate_mm_s, [250.0, 250.0, 12.0, 120.0]);
        assert_eq!(
            normal.max_acceleration_mm_s2,
            [2500.0, 2500.0, 500.0, 10000.0]
        );
        assert_eq!(normal.print_acceleration_mm_s2, 2500.0);
        assert_eq!(normal.retract_acceleration_mm_s2, 1500.0);
        // Legacy Marlin travels at the printing acceleration.
        assert_eq!(normal.travel_acceleration_mm_s2, 2500.0);
        assert_eq!(
            normal.junction,
            Junction::Jerk {
                mm_s: [12.0, 12.0, 0.2, 2.5]
            }
        );
        let silent = parse(BLOCK, true).unwrap();
        assert_eq!(silent.max_feedrate_mm_s, [100.0, 100.0, 12.0, 120.0]);
        assert_eq!(silent.print_acceleration_mm_s2, 960.0);
        assert_eq!(
            silent.junction,
            Junction::Jerk {
                mm_s: [8.0, 8.0, 0.4, 2.5]
            }
        );
    }

    #[test]
    fn marlin_2_has_its_own_travel_acceleration() {
        let text = BLOCK.replace("gcode_flavor = marlin\n", "gcode_flavor = marlin2\n");
        assert_eq!(
            parse(&text, false).unwrap().travel_acceleration_mm_s2,
            3000.0
        );
    }

    #[test]
    fn ignored_limits_other_flavours_and_files_without_a_block_give_none() {
        let ignored = BLOCK.replace("time_estimate_only", "ignore");
        assert_eq!(parse(&ignored, false), None);
        let sprinter = BLOCK.replace("gcode_flavor = marlin\n", "gcode_flavor = reprap\n");
        assert_eq!(parse(&sprinter, false), None);
        assert_eq!(
            parse("G1 X1\n; machine_max_feedrate_x = 250,100\n", false),
            None
        );
        let incomplete = BLOCK.replace("; machine_max_feedrate_z = 12,12\n", "");
        assert_eq!(parse(&incomplete, false), None);
    }

    #[test]
    fn orcaslicer_blocks_are_read_too() {
        let text = BLOCK
            .replace("; prusaslicer_config = begin", "; CONFIG_BLOCK_START")
            .replace("; machine_limits_usage = time_estimate_only\n", "")
            .replace("gcode_flavor = marlin\n", "gcode_flavor = klipper\n");
        let limits = parse(&text, false).unwrap();
        assert_eq!(limits.travel_acceleration_mm_s2, 3000.0);
    }

    #[test]
    fn the_tail_is_read_and_the_file_rewound() {
        let mut text = "G1 X1 Y1\n".repeat(100_000);
        text.push_str(BLOCK);
        let mut file = io::Cursor::new(text.into_bytes());
        assert!(read(&mut file, false).unwrap().is_some());
        assert_eq!(file.position(), 0);
    }
}
