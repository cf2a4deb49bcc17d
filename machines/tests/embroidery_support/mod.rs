//! Random designs for the embroidery tests, from a seed (splitmix64), so a failing case is
//! one number to replay.
#![allow(dead_code)]

use fabrique_machines::files::embroidery::Design;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        let span = (i64::from(hi) - i64::from(lo) + 1) as u64;
        (i64::from(lo) + (self.next() % span) as i64) as i32
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn sign(&mut self) -> i32 {
        if self.chance(50) { 1 } else { -1 }
    }
}

/// A random design that DST says exactly, so that writing it and reading it back gives the
/// same commands: every stitch and jump within one record (±121 units), the jumps of a
/// travel all in one quadrant (a travel never comes back to its start, which DST readers
/// take for a trim signal), a trim only where there is thread to cut, and one before every
/// travel of three jumps or more after sewing (DST's own trim signal).
pub fn dst_exact_design(seed: u64) -> Design {
    let mut rng = Rng::new(seed);
    let mut d = Design::new();
    d.name = Some(format!("fab{}", seed % 100_000));
    let (mut x, mut y) = (0i32, 0i32);
    let mut thread_cut = true;
    for block in 0..rng.range(1, 4) {
        if block > 0 {
            d.color_change();
            thread_cut = true;
        }
        for run in 0..rng.range(1, 4) {
            if run > 0 || rng.chance(50) {
                let jumps = rng.range(1, 6);
                if !thread_cut && (jumps >= 3 || rng.chance(50)) {
                    d.trim();
                    thread_cut = true;
                }
                let (sx, sy) = (rng.sign(), rng.sign());
                for _ in 0..jumps {
                    x += sx * rng.range(1, 121);
                    y += sy * rng.range(0, 121);
                    d.jump(x, y);
                }
            }
            for _ in 0..rng.range(1, 60) {
                x += rng.range(-121, 121);
                y += rng.range(-121, 121);
                d.stitch(x, y);
                thread_cut = false;
            }
        }
    }
    d
}

/// A random design with anything in it: stitches up to 40 mm, jumps up to 300 mm, trims
/// and colour changes anywhere.
pub fn any_design(seed: u64) -> Design {
    let mut rng = Rng::new(seed);
    let mut d = Design::new();
    let (mut x, mut y) = (0i32, 0i32);
    for _ in 0..rng.range(0, 300) {
        match rng.range(0, 99) {
            0..=69 => {
                x += rng.range(-400, 400);
                y += rng.range(-400, 400);
                d.stitch(x, y);
            }
            70..=84 => {
                x += rng.range(-3000, 3000);
                y += rng.range(-3000, 3000);
                d.jump(x, y);
            }
            85..=94 => {
                d.trim();
            }
            _ => {
                d.color_change();
            }
        }
    }
    d
}
