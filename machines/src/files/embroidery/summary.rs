//! What a fab manager needs to know of a design: counts, threads, size, which hoops it fits
//! and how long it sews. The JSON of `fabrique analyze --json` for an embroidery file.
//!
//! # Sewing time
//!
//! `estimate_s = (stitches + jumps) × 60 / stitches_per_minute + trims × trim_s
//!  + colour_changes × color_change_s`
//!
//! - a stitch is one turn of the main shaft, at the machine's speed;
//! - a jump is one turn too: the frame moves while the needle stays up, and machines run
//!   jumps at about their sewing speed;
//! - a trim stops the machine, cuts and restarts it: a fixed time (default 4 s);
//! - a colour change is the operator rethreading (a single-needle machine) or the machine
//!   changing needle (a multi-needle one): a fixed time (default 30 s, set it per machine).
//!
//! Machines slow down for long stitches and sew the first stitches of each block slowly; the
//! estimate ignores that, so it is a little short on designs with many small blocks.

use serde::{Deserialize, Serialize};

use super::{Design, Format, Thread, UNITS_PER_MM};

/// A text in French and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub fr: String,
    pub en: String,
}

/// What the analysis needs to know of the embroidery machine (its profile).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbroideryMachine {
    /// The sewing field of each hoop, width × height in millimetres.
    pub hoops_mm: Vec<[f64; 2]>,
    /// Sewing speed (typical: 400 to 850 for home machines, 1000 to 1200 for multi-needle
    /// ones).
    pub stitches_per_minute: f64,
    /// Seconds per colour change.
    pub color_change_s: f64,
    /// Seconds per trim.
    pub trim_s: f64,
}

impl EmbroideryMachine {
    pub const DEFAULT_STITCHES_PER_MINUTE: f64 = 600.0;
    pub const DEFAULT_COLOR_CHANGE_S: f64 = 30.0;
    pub const DEFAULT_TRIM_S: f64 = 4.0;
}

impl Default for EmbroideryMachine {
    fn default() -> Self {
        Self {
            hoops_mm: Vec::new(),
            stitches_per_minute: Self::DEFAULT_STITCHES_PER_MINUTE,
            color_change_s: Self::DEFAULT_COLOR_CHANGE_S,
            trim_s: Self::DEFAULT_TRIM_S,
        }
    }
}

/// Where the design reaches, in millimetres from its start point, y down.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Extent {
    pub min_x_mm: f64,
    pub min_y_mm: f64,
    pub max_x_mm: f64,
    pub max_y_mm: f64,
}

impl Extent {
    pub fn width_mm(&self) -> f64 {
        round1(self.max_x_mm - self.min_x_mm)
    }

    pub fn height_mm(&self) -> f64 {
        round1(self.max_y_mm - self.min_y_mm)
    }
}

/// A hoop the design fits, as the machine profile lists it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hoop {
    pub width_mm: f64,
    pub height_mm: f64,
    /// It fits only with the design turned a quarter turn.
    pub rotated: bool,
}

/// Which of the machine's hoops take the design.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoopFit {
    /// Every hoop the design fits, in the profile's order.
    pub fits: Vec<Hoop>,
    /// The smallest of them (by area), the one to use.
    pub smallest: Option<Hoop>,
    /// When no hoop fits, what to do; when the smallest fits only turned, that.
    pub message: Option<Message>,
}

/// The parts of the estimate, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SewingTime {
    pub stitches_s: f64,
    pub jumps_s: f64,
    pub trims_s: f64,
    pub color_changes_s: f64,
}

/// The analysis of an embroidery file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbroiderySummary {
    pub format: Option<Format>,
    pub name: Option<String>,
    pub stitches: u64,
    pub jumps: u64,
    pub trims: u64,
    pub color_changes: u64,
    /// One thread per colour block, in sewing order.
    pub colors: Vec<Thread>,
    /// Whether the file named these colours (PES, JEF) or they stand in (DST, EXP).
    pub colors_from_file: bool,
    pub extent: Option<Extent>,
    pub width_mm: f64,
    pub height_mm: f64,
    /// Sewing time in seconds, colour changes and trims included.
    pub estimate_s: f64,
    pub time: SewingTime,
    /// `None` when the machine lists no hoop.
    pub hoop_fit: Option<HoopFit>,
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Summarises `design` for `machine`.
pub fn analyze(design: &Design, machine: &EmbroideryMachine) -> EmbroiderySummary {
    let counts = design.counts();
    let extent = design.extent_units().map(|[x0, y0, x1, y1]| Extent {
        min_x_mm: f64::from(x0) / UNITS_PER_MM,
        min_y_mm: f64::from(y0) / UNITS_PER_MM,
        max_x_mm: f64::from(x1) / UNITS_PER_MM,
        max_y_mm: f64::from(y1) / UNITS_PER_MM,
    });
    let (width_mm, height_mm) = extent.map_or((0.0, 0.0), |e| (e.width_mm(), e.height_mm()));
    let spm = if machine.stitches_per_minute.is_finite() && machine.stitches_per_minute > 0.0 {
        machine.stitches_per_minute
    } else {
        EmbroideryMachine::DEFAULT_STITCHES_PER_MINUTE
    };
    let fixed = |v: f64| if v.is_finite() && v >= 0.0 { v } else { 0.0 };
    let time = SewingTime {
        stitches_s: round1(counts.stitches as f64 * 60.0 / spm),
        jumps_s: round1(counts.jumps as f64 * 60.0 / spm),
        trims_s: round1(counts.trims as f64 * fixed(machine.trim_s)),
        color_changes_s: round1(counts.color_changes as f64 * fixed(machine.color_change_s)),
    };
    let estimate_s = round1(time.stitches_s + time.jumps_s + time.trims_s + time.color_changes_s);
    EmbroiderySummary {
        format: design.format,
        name: design.name.clone(),
        stitches: counts.stitches,
        jumps: counts.jumps,
        trims: counts.trims,
        color_changes: counts.color_changes,
        colors: design.block_threads(),
        colors_from_file: design.threads_from_file(),
        extent,
        width_mm,
        height_mm,
        estimate_s,
        time,
        hoop_fit: (!machine.hoops_mm.is_empty())
            .then(|| fit_hoops(width_mm, height_mm, &machine.hoops_mm)),
    }
}

/// A length in millimetres as a French or English reader writes it: "142", "142,5" / "142.5".
fn mm(v: f64, french: bool) -> String {
    let r = round1(v);
    let text = if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    };
    if french { text.replace('.', ",") } else { text }
}

/// The hoops (width × height, mm) a design of `width_mm` × `height_mm` fits, turned a
/// quarter turn if need be, and the smallest of them. A design fits a hoop when it is no
/// larger on either side: machines centre the design in the hoop.
pub fn fit_hoops(width_mm: f64, height_mm: f64, hoops_mm: &[[f64; 2]]) -> HoopFit {
    const EPS: f64 = 1e-9;
    let fits: Vec<Hoop> = hoops_mm
        .iter()
        .filter_map(|&[w, h]| {
            if width_mm <= w + EPS && height_mm <= h + EPS {
                Some(Hoop {
                    width_mm: w,
                    height_mm: h,
                    rotated: false,
                })
            } else if width_mm <= h + EPS && height_mm <= w + EPS {
                Some(Hoop {
                    width_mm: w,
                    height_mm: h,
                    rotated: true,
                })
            } else {
                None
            }
        })
        .collect();
    let smallest = fits
        .iter()
        .copied()
        .min_by(|a, b| (a.width_mm * a.height_mm).total_cmp(&(b.width_mm * b.height_mm)));
    let design = |french| format!("{} × {} mm", mm(width_mm, french), mm(height_mm, french));
    let hoop = |w: f64, h: f64, french| format!("{} × {} mm", mm(w, french), mm(h, french));
    let message = match smallest {
        None => hoops_mm
            .iter()
            .max_by(|a, b| (a[0] * a[1]).total_cmp(&(b[0] * b[1])))
            .map(|&[w, h]| Message {
                fr: format!(
                    "Le motif mesure {} ; le plus grand cadre de la machine fait {}. \
                     Réduisez le motif ou choisissez une autre machine.",
                    design(true),
                    hoop(w, h, true)
                ),
                en: format!(
                    "The design measures {}; the machine's largest hoop is {}. \
                     Scale the design down or choose another machine.",
                    design(false),
                    hoop(w, h, false)
                ),
            }),
        Some(s) if s.rotated => Some(Message {
            fr: format!(
                "Le motif ({}) entre dans le cadre {} tourné d'un quart de tour : faites-le \
                 pivoter sur la machine.",
                design(true),
                hoop(s.width_mm, s.height_mm, true)
            ),
            en: format!(
                "The design ({}) fits the {} hoop turned a quarter turn: rotate it on the \
                 machine.",
                design(false),
                hoop(s.width_mm, s.height_mm, false)
            ),
        }),
        Some(_) => None,
    };
    HoopFit {
        fits,
        smallest,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_design_too_large_for_every_hoop_names_the_largest_one() {
        // 142 × 95 would fit 130 × 180 turned; 142 × 135 fits it neither way.
        let fit = fit_hoops(142.0, 135.0, &[[100.0, 100.0], [130.0, 180.0]]);
        assert!(fit.fits.is_empty() && fit.smallest.is_none());
        let m = fit.message.unwrap();
        assert_eq!(
            m.fr,
            "Le motif mesure 142 × 135 mm ; le plus grand cadre de la machine fait 130 × 180 \
             mm. Réduisez le motif ou choisissez une autre machine."
        );
        assert!(m.en.starts_with(
            "The design measures 142 × 135 mm; the machine's largest hoop is 130 × 180 mm."
        ));
        let turned = fit_hoops(142.0, 95.0, &[[100.0, 100.0], [130.0, 180.0]]);
        assert!(turned.smallest.is_some_and(|h| h.rotated));
    }

    #[test]
    fn the_smallest_hoop_that_fits_is_chosen_and_rotation_is_allowed() {
        let hoops = [[200.0, 200.0], [100.0, 100.0], [130.0, 180.0], [50.0, 50.0]];
        let fit = fit_hoops(170.0, 120.0, &hoops);
        assert_eq!(fit.fits.len(), 2);
        let s = fit.smallest.unwrap();
        assert_eq!((s.width_mm, s.height_mm, s.rotated), (130.0, 180.0, true));
        assert!(fit.message.unwrap().fr.contains("quart de tour"));

        let fit = fit_hoops(90.0, 100.0, &hoops);
        let s = fit.smallest.unwrap();
        assert_eq!((s.width_mm, s.height_mm, s.rotated), (100.0, 100.0, false));
        assert!(fit.message.is_none());
    }

    #[test]
    fn a_design_exactly_the_size_of_the_hoop_fits() {
        let fit = fit_hoops(100.0, 100.0, &[[100.0, 100.0]]);
        assert_eq!(fit.fits.len(), 1);
    }

    #[test]
    fn french_sizes_use_a_decimal_comma() {
        let fit = fit_hoops(142.5, 95.0, &[[100.0, 100.0]]);
        let m = fit.message.unwrap();
        assert!(m.fr.contains("142,5 × 95 mm"), "{}", m.fr);
        assert!(m.en.contains("142.5 × 95 mm"), "{}", m.en);
    }

    #[test]
    fn sewing_time_counts_stitches_jumps_trims_and_colour_changes() {
        let mut d = Design::new();
        for i in 0..600 {
            d.stitch(i % 20, 0);
        }
        d.trim().jump(500, 0).color_change();
        for i in 0..300 {
            d.stitch(500, i % 20);
        }
        let machine = EmbroideryMachine {
            stitches_per_minute: 600.0,
            ..EmbroideryMachine::default()
        };
        let s = analyze(&d, &machine);
        assert_eq!(
            (s.stitches, s.jumps, s.trims, s.color_changes),
            (900, 1, 1, 1)
        );
        assert_eq!(s.time.stitches_s, 90.0);
        assert_eq!(s.time.jumps_s, 0.1);
        assert_eq!(s.estimate_s, 124.1);
        assert!(s.hoop_fit.is_none());
        assert_eq!(s.colors.len(), 2);
    }

    #[test]
    fn the_size_is_the_extent_of_stitches_and_jumps_in_millimetres() {
        let mut d = Design::new();
        d.stitch(-125, 40).jump(300, 40).stitch(300, -360);
        let s = analyze(&d, &EmbroideryMachine::default());
        assert_eq!((s.width_mm, s.height_mm), (42.5, 40.0));
        let e = s.extent.unwrap();
        assert_eq!(
            (e.min_x_mm, e.min_y_mm, e.max_x_mm, e.max_y_mm),
            (-12.5, -36.0, 30.0, 4.0)
        );
    }

    #[test]
    fn an_empty_design_has_no_extent_and_no_time() {
        let s = analyze(&Design::new(), &EmbroideryMachine::default());
        assert!(s.extent.is_none());
        assert_eq!((s.width_mm, s.estimate_s), (0.0, 0.0));
    }
}
