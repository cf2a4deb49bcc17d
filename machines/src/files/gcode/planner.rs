//! The motion model behind the time estimate: a look-ahead planner of trapezoidal moves, as
//! Marlin's `planner.cpp` and GRBL's `planner.c` plan them and as PrusaSlicer's
//! `GCodeProcessor` emulates them.
//!
//! Each move becomes a block with a cruise speed (the requested feed rate cut by every axis'
//! maximum speed), an acceleration (print, travel or retract, cut by every axis' maximum
//! acceleration) and a highest entry speed allowed at its junction with the previous block:
//!
//! - classic jerk (Marlin 1, Marlin 2 with `CLASSIC_JERK`, Prusa firmware): each axis may
//!   change speed instantly by at most its jerk (`M205 X Y Z E`); a block may also start
//!   and stop at its "safe speed", the speed whose axis components are all within jerk;
//! - junction deviation (Marlin 2 `M205 J`, GRBL `$11`): the corner speed of a circle of
//!   deviation `J` tangent to both moves, `v² = a·J·sin(θ/2) / (1 − sin(θ/2))`, from rest;
//! - Klipper's square corner velocity, which is junction deviation with
//!   `J = scv²·(√2 − 1) / a`.
//!
//! Blocks wait in a buffer. When it is full, a backward pass lowers each entry speed to what
//! the block can brake from by its end, a forward pass lowers it to what the previous block
//! can reach, and the oldest blocks, now fixed, are timed and dropped: the newest
//! [`LOOKAHEAD`] stay to be planned with what comes next. A dwell, a heat-up wait or a tool
//! change empties the buffer (the machine stops), as the firmware's `synchronize` does.
//!
//! Klipper adds its minimum cruise ratio: beside the real speeds, the same passes plan
//! "smoothed" speeds at `accel × (1 − ratio)`, and a move cruises at most at the mean of its
//! smoothed entry and exit plus what that acceleration gains over half its length
//! (`toolhead.py`'s `peak_cruise_v2`); zig-zags of short moves then never reach their feed
//! rate. Klipper also carries that peak back over a run of accelerating moves; here each
//! move is capped on its own.

use super::{FirmwareLimits, Junction};

/// Blocks kept for look-ahead when the buffer is planned (PrusaSlicer plans 64).
pub(crate) const LOOKAHEAD: usize = 64;
const CAPACITY: usize = 256;
/// Per-layer times kept; later layers add to the last entry.
pub(crate) const MAX_LAYERS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveKind {
    /// Moves with extrusion.
    Print,
    /// Moves without extrusion (and every move of a laser or a mill).
    Travel,
    /// Extruder-only moves (retract, unretract, prime).
    Retract,
}

/// A straight move handed to the planner, in millimetres.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Move {
    pub(crate) delta: [f64; 4],
    pub(crate) feed_mm_s: f64,
    pub(crate) kind: MoveKind,
    pub(crate) layer: u32,
    /// Laser or spindle on: its time counts as cutting time.
    pub(crate) beam: bool,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    distance: f64,
    nominal: f64,
    accel: f64,
    max_entry: f64,
    entry: f64,
    safe: f64,
    /// Klipper's smoothing acceleration (`accel × (1 − minimum_cruise_ratio)`), or the
    /// acceleration itself when there is none.
    smooth_accel: f64,
    /// The smoothed entry speed, and its highest value (the junction's).
    smooth: f64,
    max_smooth: f64,
    layer: u32,
    beam: bool,
}

#[derive(Debug, Clone, Copy)]
struct Previous {
    nominal: f64,
    safe: f64,
    axis_v: [f64; 4],
    unit: [f64; 4],
}

/// What the timed blocks add up to.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals {
    pub(crate) moves_s: f64,
    pub(crate) beam_s: f64,
    pub(crate) layer_s: Vec<f64>,
}

impl Totals {
    pub(crate) fn add_to_layer(&mut self, layer: u32, seconds: f64) {
        let i = (layer as usize).min(MAX_LAYERS - 1);
        if self.layer_s.len() <= i {
            self.layer_s.resize(i + 1, 0.0);
        }
        self.layer_s[i] += seconds;
    }
}

pub(crate) struct Planner {
    blocks: Vec<Block>,
    previous: Option<Previous>,
    pub(crate) totals: Totals,
}

impl Planner {
    pub(crate) fn new() -> Self {
        Self {
            blocks: Vec::with_capacity(CAPACITY),
            previous: None,
            totals: Totals::default(),
        }
    }

    /// Plans one straight move under `fw`.
    pub(crate) fn push(&mut self, m: &Move, fw: &FirmwareLimits) {
        let d = m.delta;
        let xyz = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let distance = if xyz > 1e-9 { xyz } else { d[3].abs() };
        if distance.is_nan() || distance <= 1e-9 || !distance.is_finite() {
            return;
        }
        let inv = 1.0 / distance;
        let mut v = m.feed_mm_s.max(match m.kind {
            MoveKind::Travel => fw.min_travel_feedrate_mm_s,
            _ => fw.min_feedrate_mm_s,
        });
        if fw.max_velocity_mm_s > 0.0 && xyz > 1e-9 {
            v = v.min(fw.max_velocity_mm_s);
        }
        if v.is_nan() || v <= 0.0 {
            return;
        }
        let mut axis_v = [0.0; 4];
        let mut factor: f64 = 1.0;
        for a in 0..4 {
            axis_v[a] = v * d[a] * inv;
            let max = fw.max_feedrate_mm_s[a];
            if max > 0.0 && axis_v[a].abs() > max {
                factor = factor.min(max / axis_v[a].abs());
            }
        }
        let nominal = v * factor;
        for x in &mut axis_v {
            *x *= factor;
        }
        let mut accel = match m.kind {
            MoveKind::Print => fw.print_acceleration_mm_s2,
            MoveKind::Travel => fw.travel_acceleration_mm_s2,
            MoveKind::Retract => fw.retract_acceleration_mm_s2,
        };
        for (a, &delta) in d.iter().enumerate() {
            let scale = delta.abs() * inv;
            let max = fw.max_acceleration_mm_s2[a];
            if scale > 0.0 && max > 0.0 && accel * scale > max {
                accel = max / scale;
            }
        }
        if accel.is_nan() || accel <= 0.0 {
            accel = f64::INFINITY;
        }
        let unit = if xyz > 1e-9 {
            [d[0] * inv, d[1] * inv, d[2] * inv, 0.0]
        } else {
            [0.0, 0.0, 0.0, d[3].signum()]
        };
        let (safe, max_entry) = match fw.junction {
            Junction::Jerk { mm_s } => {
                let safe = safe_speed(nominal, &axis_v, &mm_s);
                let entry = match &self.previous {
                    Some(p) => jerk_junction(p, nominal, safe, &axis_v, &mm_s),
                    None => safe,
                };
                (safe, entry)
            }
            Junction::Deviation { mm } => {
                let entry = match &self.previous {
                    Some(p) => deviation_junction(p, nominal, &unit, accel * mm),
                    None => 0.0,
                };
                (0.0, entry)
            }
            Junction::SquareCorner { mm_s } => {
                // J·a with J = scv²(√2 − 1)/a: the acceleration cancels out.
                let ja = mm_s * mm_s * (std::f64::consts::SQRT_2 - 1.0);
                let entry = match &self.previous {
                    Some(p) => deviation_junction(p, nominal, &unit, ja),
                    None => 0.0,
                };
                (0.0, entry)
            }
        };
        self.previous = Some(Previous {
            nominal,
            safe,
            axis_v,
            unit,
        });
        let ratio = fw.min_cruise_ratio;
        let smooth_accel = if ratio > 0.0 && ratio < 1.0 {
            accel * (1.0 - ratio)
        } else {
            accel
        };
        self.blocks.push(Block {
            distance,
            nominal,
            accel,
            max_entry: max_entry.min(nominal),
            entry: 0.0,
            safe: safe.min(nominal),
            smooth_accel,
            smooth: 0.0,
            max_smooth: max_entry.min(nominal),
            layer: m.layer,
            beam: m.beam,
        });
        if self.blocks.len() >= CAPACITY {
            self.plan(CAPACITY - LOOKAHEAD);
        }
    }

    /// Times every waiting block, the last one ending at its safe speed: the machine stops.
    pub(crate) fn synchronize(&mut self) {
        let n = self.blocks.len();
        if n > 0 {
            self.plan(n);
        }
        self.previous = None;
    }

    /// Plans the whole buffer and times its first `fixed` blocks.
    fn plan(&mut self, fixed: usize) {
        let blocks = &mut self.blocks;
        let n = blocks.len();
        // Backward: each block must be able to brake to the next entry (or to its safe
        // speed at the end of the buffer).
        // (Squares are compared first: most entries are capped by their junction, and the
        // square root is only needed when braking is what limits them.)
        let mut next = blocks[n - 1].safe;
        for b in blocks.iter_mut().rev() {
            let brake2 = next * next + 2.0 * b.accel * b.distance;
            let v = if b.max_entry * b.max_entry <= brake2 {
                b.max_entry
            } else {
                brake2.sqrt()
            };
            b.entry = v;
            next = v;
        }
        // Forward: each entry must be reachable from the previous one.
        for i in 1..n {
            let p = blocks[i - 1];
            let reach2 = p.entry * p.entry + 2.0 * p.accel * p.distance;
            if blocks[i].entry * blocks[i].entry > reach2 {
                blocks[i].entry = reach2.sqrt();
            }
        }
        let smoothing = blocks.iter().any(|b| b.smooth_accel < b.accel);
        if smoothing {
            // Klipper's smoothed speeds: the same two passes at the smoothing acceleration.
            let mut next = blocks[n - 1].safe;
            for b in blocks.iter_mut().rev() {
                let brake2 = next * next + 2.0 * b.smooth_accel * b.distance;
                b.smooth = b.max_smooth.min(brake2.sqrt());
                next = b.smooth;
            }
            for i in 1..n {
                let p = blocks[i - 1];
                let reach2 = p.smooth * p.smooth + 2.0 * p.smooth_accel * p.distance;
                if blocks[i].smooth * blocks[i].smooth > reach2 {
                    blocks[i].smooth = reach2.sqrt();
                }
            }
        }
        for i in 0..fixed.min(n) {
            let b = blocks[i];
            let exit = if i + 1 < n {
                blocks[i + 1].entry
            } else {
                b.safe
                    .min((b.entry * b.entry + 2.0 * b.accel * b.distance).sqrt())
            };
            let cruise = if smoothing && b.smooth_accel < b.accel {
                let smooth_exit = if i + 1 < n {
                    blocks[i + 1].smooth
                } else {
                    b.safe
                };
                let peak2 = (b.smooth * b.smooth + smooth_exit * smooth_exit) / 2.0
                    + b.distance * b.smooth_accel;
                b.nominal.min(peak2.sqrt())
            } else {
                b.nominal
            };
            let t = trapezoid_time(b.distance, b.entry, exit, cruise, b.accel);
            self.totals.moves_s += t;
            if b.beam {
                self.totals.beam_s += t;
            }
            self.totals.add_to_layer(b.layer, t);
        }
        blocks.drain(..fixed.min(n));
        // The entry of the new first block is now fixed: its predecessor left at that speed.
        if let Some(first) = blocks.first_mut() {
            first.max_entry = first.entry;
            first.max_smooth = first.smooth;
        }
    }
}

/// Marlin's safe speed: the speed at which a block may start from rest or stop dead, the
/// first axis over its jerk setting the speed to that jerk, the others scaling it down.
fn safe_speed(nominal: f64, axis_v: &[f64; 4], jerk: &[f64; 4]) -> f64 {
    let mut safe = nominal;
    let mut limited = false;
    for a in 0..4 {
        let v = axis_v[a].abs();
        let max = jerk[a];
        if v > max {
            if limited {
                if v * safe > max * nominal {
                    safe = max * nominal / v;
                }
            } else {
                limited = true;
                safe = max;
            }
        }
    }
    safe
}

/// Marlin's classic-jerk junction: the largest common speed at which no axis changes speed
/// by more than its jerk, telling coasting from reversal.
fn jerk_junction(p: &Previous, nominal: f64, safe: f64, axis_v: &[f64; 4], jerk: &[f64; 4]) -> f64 {
    if p.nominal.is_nan() || p.nominal <= 1e-4 {
        return safe;
    }
    let prev_larger = p.nominal > nominal;
    let smaller = if prev_larger {
        nominal / p.nominal
    } else {
        p.nominal / nominal
    };
    let mut vmax = if prev_larger { nominal } else { p.nominal };
    let mut v_factor = 1.0;
    let mut limited = false;
    for a in 0..4 {
        let mut v_exit = p.axis_v[a];
        let mut v_entry = axis_v[a];
        if prev_larger {
            v_exit *= smaller;
        }
        if limited {
            v_exit *= v_factor;
            v_entry *= v_factor;
        }
        let j = if v_exit > v_entry {
            if v_entry > 0.0 || v_exit < 0.0 {
                v_exit - v_entry
            } else {
                v_exit.max(-v_entry)
            }
        } else if v_entry < 0.0 || v_exit > 0.0 {
            v_entry - v_exit
        } else {
            (-v_exit).max(v_entry)
        };
        if j > jerk[a] {
            v_factor *= jerk[a] / j;
            limited = true;
        }
    }
    if limited {
        vmax *= v_factor;
    }
    // Not coasting: the machine may as well start this block afresh at its safe speed.
    let threshold = vmax * 0.99;
    if p.safe > threshold && safe > threshold {
        vmax = safe;
    }
    vmax
}

/// Junction deviation: `v² = a·J·sin(θ/2)/(1 − sin(θ/2))`, `ja` being `a·J`.
fn deviation_junction(p: &Previous, nominal: f64, unit: &[f64; 4], ja: f64) -> f64 {
    let dot: f64 = (0..4).map(|a| p.unit[a] * unit[a]).sum();
    let cos = -dot;
    let v = if cos > 0.999_999 {
        0.0
    } else if cos < -0.999_999 {
        f64::INFINITY
    } else {
        let sin_half = (0.5 * (1.0 - cos)).sqrt();
        (ja * sin_half / (1.0 - sin_half)).sqrt()
    };
    v.min(p.nominal).min(nominal)
}

/// Time of a trapezoid (or triangle) from `v0` to `v1` over `d`, cruising at most at `vc`.
pub(crate) fn trapezoid_time(d: f64, v0: f64, v1: f64, vc: f64, a: f64) -> f64 {
    if !a.is_finite() {
        return d / vc;
    }
    let v0 = v0.min(vc);
    let v1 = v1.min(vc);
    let accel_d = (vc * vc - v0 * v0) / (2.0 * a);
    let decel_d = (vc * vc - v1 * v1) / (2.0 * a);
    if accel_d + decel_d <= d {
        (vc - v0) / a + (vc - v1) / a + (d - accel_d - decel_d) / vc
    } else {
        let peak = ((2.0 * a * d + v0 * v0 + v1 * v1) / 2.0)
            .sqrt()
            .max(v0)
            .max(v1);
        (peak - v0) / a + (peak - v1) / a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw(junction: Junction) -> FirmwareLimits {
        FirmwareLimits {
            junction,
            ..FirmwareLimits::default()
        }
    }

    fn line(planner: &mut Planner, fw: &FirmwareLimits, dx: f64, dy: f64, feed: f64) {
        planner.push(
            &Move {
                delta: [dx, dy, 0.0, 0.0],
                feed_mm_s: feed,
                kind: MoveKind::Travel,
                layer: 0,
                beam: false,
            },
            fw,
        );
    }

    /// A zig-zag of `n` moves of `mm` at 300 mm/s, square corners, on a Klipper with `ratio`.
    fn zigzag(ratio: f64, mm: f64, n: usize) -> f64 {
        let fw = FirmwareLimits {
            min_cruise_ratio: ratio,
            ..FirmwareLimits::for_dialect(super::super::Dialect::Klipper)
        };
        let mut p = Planner::new();
        for i in 0..n {
            let (dx, dy) = if i % 2 == 0 { (mm, 0.0) } else { (0.0, mm) };
            line(&mut p, &fw, dx, dy, 300.0);
        }
        p.synchronize();
        p.totals.moves_s
    }

    #[test]
    fn klippers_minimum_cruise_ratio_slows_short_moves_not_long_ones() {
        // One 2 mm move from rest to rest at 1500 mm/s²: without a ratio, a triangle peaking
        // at sqrt(2·1500) ≈ 54.8 mm/s; with 0.5, peak² = d·a·(1 − r) = 1500 mm²/s², about
        // 38.7 mm/s, then it cruises.
        let one = zigzag(0.5, 2.0, 1);
        let peak = (2.0f64 * 1500.0 * 0.5).sqrt();
        let expected = trapezoid_time(2.0, 0.0, 0.0, peak, 1500.0);
        assert!((one - expected).abs() < 1e-9, "{one} against {expected}");
        assert!(one > zigzag(0.0, 2.0, 1) * 1.05);
        // Short zig-zags lose a lot; long moves almost nothing.
        let short = zigzag(0.5, 2.0, 200) / zigzag(0.0, 2.0, 200);
        let long = zigzag(0.5, 200.0, 20) / zigzag(0.0, 200.0, 20);
        assert!(short > 1.05, "{short}");
        assert!(long < 1.02, "{long}");
        assert!(long >= 1.0, "{long}");
    }

    #[test]
    fn a_long_move_takes_its_length_over_its_speed_plus_the_ramps() {
        // 100 mm at 50 mm/s, 1000 mm/s²: ramps of 1.25 mm from and to zero each take 0.05 s.
        let t = trapezoid_time(100.0, 0.0, 0.0, 50.0, 1000.0);
        assert!((t - (0.1 + 97.5 / 50.0)).abs() < 1e-9);
    }

    #[test]
    fn a_short_move_never_reaches_its_cruise_speed() {
        // 1 mm from rest to rest at 1000 mm/s²: a triangle peaking at sqrt(1000) mm/s.
        let t = trapezoid_time(1.0, 0.0, 0.0, 500.0, 1000.0);
        assert!((t - 2.0 * 1000f64.sqrt() / 1000.0).abs() < 1e-9);
    }

    #[test]
    fn moves_in_line_keep_their_speed_through_the_junction() {
        let fw = fw(Junction::Deviation { mm: 0.013 });
        let mut p = Planner::new();
        for _ in 0..100 {
            line(&mut p, &fw, 1.0, 0.0, 50.0);
        }
        p.synchronize();
        let single = trapezoid_time(100.0, 0.0, 0.0, 50.0, fw.travel_acceleration_mm_s2);
        assert!(
            (p.totals.moves_s - single).abs() < 1e-6,
            "{}",
            p.totals.moves_s
        );
    }

    #[test]
    fn a_reversal_stops_the_machine_and_a_right_angle_slows_it() {
        for junction in [
            Junction::Jerk {
                mm_s: [10.0, 10.0, 0.2, 2.5],
            },
            Junction::Deviation { mm: 0.05 },
            Junction::SquareCorner { mm_s: 5.0 },
        ] {
            let fw = fw(junction);
            let time = |second: (f64, f64)| {
                let mut p = Planner::new();
                line(&mut p, &fw, 50.0, 0.0, 100.0);
                line(&mut p, &fw, second.0, second.1, 100.0);
                p.synchronize();
                p.totals.moves_s
            };
            let (straight, corner, back) =
                (time((50.0, 0.0)), time((0.0, 50.0)), time((-50.0, 0.0)));
            assert!(
                straight < corner && corner <= back,
                "{junction:?}: {straight} {corner} {back}"
            );
        }
    }

    #[test]
    fn a_long_run_is_timed_the_same_whether_planned_in_pieces_or_at_once() {
        let fw = fw(Junction::Jerk {
            mm_s: [10.0, 10.0, 0.2, 2.5],
        });
        let mut p = Planner::new();
        let mut expected = 0.0;
        for i in 0..10_000 {
            let a = f64::from(i) * 0.1;
            line(&mut p, &fw, a.cos() * 2.0, a.sin() * 2.0, 60.0);
            expected += 2.0 / 60.0;
        }
        p.synchronize();
        assert!(p.blocks.is_empty());
        // Gentle turns at 60 mm/s: close to the cruise time.
        assert!((p.totals.moves_s - expected).abs() / expected < 0.05);
        assert!((p.totals.layer_s[0] - p.totals.moves_s).abs() < 1e-9);
    }
}
