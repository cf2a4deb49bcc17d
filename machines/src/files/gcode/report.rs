//! A Marlin firmware's own motion limits, read from its `M503` report:
//!
//! ```text
//! echo:; Max feedrates (units/s):
//! echo:  M203 X500.00 Y500.00 Z5.00 E25.00
//! echo:; Max Acceleration (units/s2):
//! echo:  M201 X500.00 Y500.00 Z100.00 E5000.00
//! echo:; Acceleration (units/s2) (P<print-accel> R<retract-accel> T<travel-accel>):
//! echo:  M204 P500.00 R500.00 T1000.00
//! echo:; Advanced (B<min_segment_time_us> S<min_feedrate> T<min_travel_feedrate> J<junc_dev>):
//! echo:  M205 B20000.00 S0.00 T0.00 J0.01
//! ```
//!
//! A firmware built with junction deviation reports `M205 J`; one built with classic jerk
//! reports `M205 X Y Z E` (Prusa's firmware, Marlin 1.1, Marlin 2 with `CLASSIC_JERK`). That
//! is how Fabrique learns which rule a printer follows.

use super::{FirmwareLimits, Junction, JunctionRule};
use serde::{Deserialize, Serialize};

/// What a printer reported of its limits. Axes are X, Y, Z, E.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReportedLimits {
    /// `M203`, mm/s.
    pub max_feedrate_mm_s: [f64; 4],
    /// `M201`, mm/s².
    pub max_acceleration_mm_s2: [f64; 4],
    /// `M204 P`, `R`, `T` (or `S` for printing and travel, on older firmwares).
    pub print_acceleration_mm_s2: f64,
    pub retract_acceleration_mm_s2: f64,
    pub travel_acceleration_mm_s2: f64,
    /// `M205 J`, mm: the firmware takes corners by junction deviation.
    pub junction_deviation_mm: Option<f64>,
    /// `M205 X Y Z E`, mm/s: the firmware takes corners by classic jerk.
    pub jerk_mm_s: Option<[f64; 4]>,
    /// `M205 S` and `T`, mm/s.
    pub min_feedrate_mm_s: f64,
    pub min_travel_feedrate_mm_s: f64,
}

impl ReportedLimits {
    /// Reads the lines a printer answered to `M503` (with or without `echo:`). `None` when
    /// the report lacks the feed rates, the accelerations or the corner rule: a firmware
    /// built without `M503`, or a report cut short, teaches nothing.
    pub fn from_m503<S: AsRef<str>>(lines: &[S]) -> Option<Self> {
        let mut feed = None;
        let mut accel = None;
        let mut moves: Option<(f64, f64, f64)> = None;
        let mut deviation = None;
        let mut jerk = None;
        let mut min = (0.0, 0.0);
        for line in lines {
            let text = line.as_ref().trim();
            let text = text.strip_prefix("echo:").unwrap_or(text);
            let text = text.split(';').next().unwrap_or("").trim();
            let mut words = text.split_whitespace();
            let Some(command) = words.next() else {
                continue;
            };
            let values: Vec<(char, f64)> = words
                .filter_map(|w| {
                    let mut chars = w.chars();
                    let letter = chars.next()?.to_ascii_uppercase();
                    let value: f64 = chars.as_str().parse().ok()?;
                    (value.is_finite() && value >= 0.0).then_some((letter, value))
                })
                .collect();
            let get = |letter: char| values.iter().find(|(l, _)| *l == letter).map(|(_, v)| *v);
            let axes = || [get('X'), get('Y'), get('Z'), get('E')];
            match command.to_ascii_uppercase().as_str() {
                "M203" => feed = all(axes()),
                "M201" => accel = all(axes()),
                "M204" => {
                    let both = get('S');
                    let print = get('P').or(both);
                    let travel = get('T').or(both).or(print);
                    if let (Some(print), Some(travel)) = (print, travel) {
                        moves = Some((print, get('R').unwrap_or(print), travel));
                    }
                }
                "M205" => {
                    deviation = get('J').filter(|j| *j > 0.0);
                    jerk = all(axes());
                    min = (get('S').unwrap_or(0.0), get('T').unwrap_or(0.0));
                }
                _ => {}
            }
        }
        let (print, retract, travel) = moves?;
        if deviation.is_none() && jerk.is_none() {
            return None;
        }
        Some(Self {
            max_feedrate_mm_s: feed?,
            max_acceleration_mm_s2: accel?,
            print_acceleration_mm_s2: print,
            retract_acceleration_mm_s2: retract,
            travel_acceleration_mm_s2: travel,
            // A firmware reporting both (some Marlin 2 builds print the jerk it ignores)
            // follows junction deviation.
            jerk_mm_s: if deviation.is_some() { None } else { jerk },
            junction_deviation_mm: deviation,
            min_feedrate_mm_s: min.0,
            min_travel_feedrate_mm_s: min.1,
        })
    }

    /// Which corner rule the firmware follows.
    pub fn junction_rule(&self) -> JunctionRule {
        if self.junction_deviation_mm.is_some() {
            JunctionRule::JunctionDeviation
        } else {
            JunctionRule::ClassicJerk
        }
    }

    /// The limits as the estimate takes them.
    pub fn firmware_limits(&self) -> FirmwareLimits {
        let junction = match (self.junction_deviation_mm, self.jerk_mm_s) {
            (Some(mm), _) => Junction::Deviation { mm },
            (None, Some(mm_s)) => Junction::Jerk { mm_s },
            (None, None) => FirmwareLimits::default().junction,
        };
        FirmwareLimits {
            max_feedrate_mm_s: self.max_feedrate_mm_s,
            max_acceleration_mm_s2: self.max_acceleration_mm_s2,
            print_acceleration_mm_s2: self.print_acceleration_mm_s2,
            retract_acceleration_mm_s2: self.retract_acceleration_mm_s2,
            travel_acceleration_mm_s2: self.travel_acceleration_mm_s2,
            junction,
            min_feedrate_mm_s: self.min_feedrate_mm_s,
            min_travel_feedrate_mm_s: self.min_travel_feedrate_mm_s,
            max_velocity_mm_s: 0.0,
            min_cruise_ratio: 0.0,
        }
    }
}

/// All four axes, or nothing.
fn all(axes: [Option<f64>; 4]) -> Option<[f64; 4]> {
    let [x, y, z, e] = axes;
    Some([x?, y?, z?, e?])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Marlin 2.1 built with junction deviation (an Ender 3 V2), as it answers `M503`.
    const MARLIN_2: &str = "echo:; Linear Units:
echo:  G21 ; (mm)
echo:; Steps per unit:
echo: M92 X80.00 Y80.00 Z400.00 E93.00
echo:; Max feedrates (units/s):
echo:  M203 X500.00 Y500.00 Z5.00 E25.00
echo:; Max Acceleration (units/s2):
echo:  M201 X500.00 Y500.00 Z100.00 E5000.00
echo:; Acceleration (units/s2) (P<print-accel> R<retract-accel> T<travel-accel>):
echo:  M204 P500.00 R500.00 T1000.00
echo:; Advanced (B<min_segment_time_us> S<min_feedrate> T<min_travel_feedrate> J<junc_dev>):
echo:  M205 B20000.00 S0.00 T0.00 J0.08";

    /// Prusa's firmware on an MK3S: classic jerk, its own headings.
    const PRUSA: &str = "echo:Steps per unit:
echo:  M92 X100.00 Y100.00 Z400.00 E280.00
echo:Maximum feedrates (mm/s):
echo:  M203 X200.00 Y200.00 Z12.00 E120.00
echo:Maximum Acceleration (mm/s2):
echo:  M201 X1000 Y1000 Z200 E5000
echo:Acceleration: P=print, R=retract, T=travel
echo:  M204 P1250.00 R1250.00 T1250.00
echo:Advanced variables: S=Min feedrate (mm/s), T=Min travel feedrate (mm/s), B=minimum segment time (us), X=maximum XY jerk (mm/s),  Z=maximum Z jerk (mm/s),  E=maximum E jerk (mm/s)
echo:  M205 S0.00 T0.00 B20000 X8.00 Y8.00 Z0.40 E4.50";

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn a_marlin_2_report_gives_its_limits_and_junction_deviation() {
        let r = ReportedLimits::from_m503(&lines(MARLIN_2)).unwrap();
        assert_eq!(r.max_feedrate_mm_s, [500.0, 500.0, 5.0, 25.0]);
        assert_eq!(r.max_acceleration_mm_s2, [500.0, 500.0, 100.0, 5000.0]);
        assert_eq!(
            (
                r.print_acceleration_mm_s2,
                r.retract_acceleration_mm_s2,
                r.travel_acceleration_mm_s2
            ),
            (500.0, 500.0, 1000.0)
        );
        assert_eq!(r.junction_rule(), JunctionRule::JunctionDeviation);
        assert_eq!(
            r.firmware_limits().junction,
            Junction::Deviation { mm: 0.08 }
        );
    }

    #[test]
    fn prusas_report_gives_classic_jerk() {
        let r = ReportedLimits::from_m503(&lines(PRUSA)).unwrap();
        assert_eq!(r.max_feedrate_mm_s, [200.0, 200.0, 12.0, 120.0]);
        assert_eq!(r.print_acceleration_mm_s2, 1250.0);
        assert_eq!(r.junction_rule(), JunctionRule::ClassicJerk);
        assert_eq!(
            r.firmware_limits().junction,
            Junction::Jerk {
                mm_s: [8.0, 8.0, 0.4, 4.5]
            }
        );
    }

    #[test]
    fn an_old_m204_s_sets_print_and_travel() {
        let text = "M203 X300 Y300 Z5 E25\nM201 X3000 Y3000 Z100 E10000\nM204 S800 R1000\nM205 X10 Y10 Z0.3 E5";
        let r = ReportedLimits::from_m503(&lines(text)).unwrap();
        assert_eq!(r.print_acceleration_mm_s2, 800.0);
        assert_eq!(r.travel_acceleration_mm_s2, 800.0);
        assert_eq!(r.retract_acceleration_mm_s2, 1000.0);
    }

    #[test]
    fn a_report_cut_short_or_refused_teaches_nothing() {
        let cut: Vec<&str> = lines(MARLIN_2).into_iter().take(8).collect();
        assert_eq!(ReportedLimits::from_m503(&cut), None);
        assert_eq!(
            ReportedLimits::from_m503(&["echo:Unknown command: \"M503\""]),
            None
        );
        assert_eq!(
            ReportedLimits::from_m503(&[
                "M203 X-5 Y500 Z5 E25",
                "M201 X1 Y1 Z1 E1",
                "M204 P1",
                "M205 J0.1"
            ]),
            None,
            "a negative speed is no limit"
        );
    }
}
