//! Building a design from relative records, with the formats' jump and trim conventions.
//!
//! PEC and EXP say where the thread is cut ([`TrimRule::Explicit`]); several trim signals
//! in one travel (PEC flags every jump record of it) are one cut. DST and JEF have no trim
//! code, the cut is read from the jumps:
//!
//! - a run of jumps after sewing is a trim once it reaches three records (DST,
//!   [`TrimRule::AfterJumps`]) or once its sum moves more than 3 mm along an axis (JEF,
//!   [`TrimRule::Beyond`]); no trim is counted before the first stitch or right after a
//!   colour change, where there is no thread to cut;
//! - whenever the jumps of a run so far come back to where the run started, they are the
//!   trim signal (a wiggle), not travel, and are dropped.
//!
//! These are the rules pyembroidery's readers apply (`interpolate_trims` with its defaults
//! for each format), so counts and extents agree with it.

use super::{Command, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrimRule {
    /// The format has a trim code.
    Explicit,
    /// A run of this many jumps after sewing is a trim.
    AfterJumps(u32),
    /// A run of jumps moving more than this many units along an axis after sewing is a trim.
    Beyond(i64),
}

#[derive(Debug, Clone, Copy)]
struct Run {
    /// Index in `commands` of the first jump of the run still kept.
    start: usize,
    /// Where the needle was before the run.
    from: (i32, i32),
    count: u32,
    sum: (i64, i64),
}

/// The position would leave the range of `i32` units (±214 km): the file is garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutOfRange;

pub(super) struct Builder {
    rule: TrimRule,
    pub(super) commands: Vec<Command>,
    pos: (i32, i32),
    /// No thread to cut: at the start, after a colour change, after a trim.
    thread_cut: bool,
    /// A trim is already counted in the current travel.
    trimmed_in_travel: bool,
    run: Option<Run>,
}

impl Builder {
    pub(super) fn new(rule: TrimRule) -> Self {
        Self {
            rule,
            commands: Vec::new(),
            pos: (0, 0),
            thread_cut: true,
            trimmed_in_travel: false,
            run: None,
        }
    }

    fn moved(&mut self, dx: i32, dy: i32) -> Result<(i32, i32), OutOfRange> {
        let x = self.pos.0.checked_add(dx).ok_or(OutOfRange)?;
        let y = self.pos.1.checked_add(dy).ok_or(OutOfRange)?;
        // Past ±200 m nothing is an embroidery design; keeping the bound far below i32::MAX
        // leaves every difference of two positions inside i32 as well.
        if x.unsigned_abs() > 2_000_000 || y.unsigned_abs() > 2_000_000 {
            return Err(OutOfRange);
        }
        self.pos = (x, y);
        Ok(self.pos)
    }

    fn push(&mut self, kind: Kind) {
        let (x, y) = self.pos;
        self.commands.push(Command { kind, x, y });
    }

    pub(super) fn stitch(&mut self, dx: i32, dy: i32) -> Result<(), OutOfRange> {
        self.moved(dx, dy)?;
        self.push(Kind::Stitch);
        self.thread_cut = false;
        self.trimmed_in_travel = false;
        self.run = None;
        Ok(())
    }

    pub(super) fn color_change(&mut self, dx: i32, dy: i32) -> Result<(), OutOfRange> {
        self.moved(dx, dy)?;
        self.push(Kind::ColorChange);
        self.thread_cut = true;
        self.trimmed_in_travel = false;
        self.run = None;
        Ok(())
    }

    /// A trim the file says (PEC flag, EXP code); one per travel.
    pub(super) fn trim(&mut self) {
        if !self.trimmed_in_travel {
            self.push(Kind::Trim);
            self.trimmed_in_travel = true;
        }
        self.thread_cut = true;
        self.run = None;
    }

    pub(super) fn jump(&mut self, dx: i32, dy: i32) -> Result<(), OutOfRange> {
        let from = self.pos;
        self.moved(dx, dy)?;
        let start = self.commands.len();
        let run = self.run.get_or_insert(Run {
            start,
            from,
            count: 0,
            sum: (0, 0),
        });
        run.count += 1;
        run.sum.0 += i64::from(dx);
        run.sum.1 += i64::from(dy);
        let run = *run;
        self.push(Kind::Jump);
        if self.rule == TrimRule::Explicit {
            return Ok(());
        }
        let cut = match self.rule {
            TrimRule::Explicit => false,
            TrimRule::AfterJumps(n) => run.count >= n,
            TrimRule::Beyond(d) => run.sum.0.abs() > d || run.sum.1.abs() > d,
        };
        if cut && !self.thread_cut {
            let (x, y) = run.from;
            self.commands.insert(
                run.start,
                Command {
                    kind: Kind::Trim,
                    x,
                    y,
                },
            );
            self.thread_cut = true;
            if let Some(r) = self.run.as_mut() {
                r.start += 1;
            }
        }
        if run.sum == (0, 0)
            && let Some(r) = self.run
        {
            self.commands.truncate(r.start);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(b: &Builder) -> Vec<Kind> {
        b.commands.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn three_jumps_after_sewing_are_a_dst_trim() {
        let mut b = Builder::new(TrimRule::AfterJumps(3));
        b.stitch(10, 0).unwrap();
        for _ in 0..3 {
            b.jump(100, 0).unwrap();
        }
        b.stitch(10, 0).unwrap();
        use Kind::*;
        assert_eq!(kinds(&b), [Stitch, Trim, Jump, Jump, Jump, Stitch]);
        assert_eq!((b.commands[1].x, b.commands[1].y), (10, 0));
    }

    #[test]
    fn two_jumps_after_sewing_are_only_travel() {
        let mut b = Builder::new(TrimRule::AfterJumps(3));
        b.stitch(10, 0).unwrap();
        b.jump(100, 0).unwrap();
        b.jump(100, 0).unwrap();
        b.stitch(10, 0).unwrap();
        assert!(!kinds(&b).contains(&Kind::Trim));
    }

    #[test]
    fn a_wiggle_of_jumps_back_to_the_start_is_a_trim_and_no_travel() {
        let mut b = Builder::new(TrimRule::AfterJumps(3));
        b.stitch(10, 0).unwrap();
        b.jump(2, 2).unwrap();
        b.jump(-4, -4).unwrap();
        b.jump(2, 2).unwrap();
        b.jump(50, 0).unwrap();
        use Kind::*;
        assert_eq!(kinds(&b), [Stitch, Trim, Jump]);
        assert_eq!(b.commands[2].x, 60);
    }

    #[test]
    fn jumps_before_the_first_stitch_cut_nothing() {
        let mut b = Builder::new(TrimRule::AfterJumps(3));
        for _ in 0..5 {
            b.jump(100, 0).unwrap();
        }
        b.stitch(1, 1).unwrap();
        assert_eq!(b.commands.len(), 6);
        assert!(!kinds(&b).contains(&Kind::Trim));
    }

    #[test]
    fn a_jef_travel_longer_than_3_mm_is_a_trim() {
        let mut b = Builder::new(TrimRule::Beyond(30));
        b.stitch(10, 0).unwrap();
        b.jump(20, 0).unwrap();
        assert!(!kinds(&b).contains(&Kind::Trim));
        b.jump(11, 0).unwrap();
        use Kind::*;
        assert_eq!(kinds(&b), [Stitch, Trim, Jump, Jump]);
    }

    #[test]
    fn pec_trim_flags_on_every_jump_of_a_travel_are_one_trim() {
        let mut b = Builder::new(TrimRule::Explicit);
        b.stitch(10, 0).unwrap();
        for _ in 0..4 {
            b.trim();
            b.jump(500, 0).unwrap();
        }
        b.stitch(10, 0).unwrap();
        b.trim();
        b.jump(5, 0).unwrap();
        let k = kinds(&b);
        assert_eq!(k.iter().filter(|k| **k == Kind::Trim).count(), 2);
        assert_eq!(k.iter().filter(|k| **k == Kind::Jump).count(), 5);
    }

    #[test]
    fn positions_beyond_200_m_are_refused() {
        let mut b = Builder::new(TrimRule::Explicit);
        for _ in 0..977 {
            b.jump(2047, 0).unwrap();
        }
        assert_eq!(b.jump(2047, 0), Err(OutOfRange));
    }
}
