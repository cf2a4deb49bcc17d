//! A small mutational fuzzer that runs as a plain test on a stable toolchain.
//!
//! Each target is a function of bytes that panics when a property fails. [`run`] feeds it,
//! for a wall-clock budget, inputs made by a [`Source`] (random bytes, seeds mutated, or a
//! structured generator), on a worker thread so that an input that never returns is caught
//! too. It fails the test on the first input that panics or that takes longer than its time
//! bound, after shrinking it and saving it to a file ready to become a regression.
//!
//! Everything an input depends on comes from one seed: a failing run says its seed, and
//! `FABRIQUE_FUZZ_SEED=<seed>` replays the same inputs in the same order (even when the
//! process itself died, which a panic hook cannot catch, e.g. on an allocation failure).

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Seconds each target runs, unless `FABRIQUE_FUZZ_SECONDS` says otherwise (`0` runs the
/// seeds and a handful of inputs only).
pub const DEFAULT_SECONDS: f64 = 10.0;
/// The most the test process may hold at its peak, KiB.
const MAX_PEAK_KIB: u64 = 1024 * 1024;
/// An input that has not returned after this long is a hang, whatever its size.
const HANG: Duration = Duration::from_secs(20);

/// splitmix64: fast, and one `u64` of state, so a seed is all there is to replay.
#[derive(Clone)]
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

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length with small ones more likely: uniform up to a random power of two.
    pub fn len(&mut self, max: usize) -> usize {
        let bits = self.below(usize::BITS as usize - max.leading_zeros() as usize + 1);
        self.below((1usize << bits).min(max) + 1)
    }
}

/// The budget of one target, from `FABRIQUE_FUZZ_SECONDS`.
pub fn budget() -> Duration {
    let seconds = std::env::var("FABRIQUE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_SECONDS);
    Duration::from_secs_f64(seconds)
}

/// `FABRIQUE_FUZZ_SEED` when set (decimal or 0x-hex), else one from the clock.
fn seed() -> u64 {
    if let Ok(s) = std::env::var("FABRIQUE_FUZZ_SEED") {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        };
        if let Some(seed) = parsed {
            return seed;
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Rng::new(now.as_nanos() as u64 ^ u64::from(std::process::id())).next()
}

/// A target: panics when a property fails for the input.
pub type Target = fn(&[u8]);

/// Makes an input from the seed's random numbers and the seeds.
pub type Make = fn(&mut Rng, &[Vec<u8>]) -> Vec<u8>;

/// Where inputs come from: seeds run first, as they are, then `make` is asked for more.
pub struct Source {
    pub seeds: Vec<Vec<u8>>,
    pub make: Make,
}

/// How long an input of `len` bytes may take, on the thread's CPU: `base` plus `per_kib`
/// for each KiB. Generous (about a hundred times what the code needs in a debug build):
/// it is there to catch work that grows faster than the input, not to time anything.
#[derive(Clone, Copy)]
pub struct TimeBound {
    pub base: Duration,
    pub per_kib: Duration,
}

impl TimeBound {
    pub fn for_len(self, len: usize) -> Duration {
        self.base + self.per_kib.mul_f64(len as f64 / 1024.0)
    }
}

/// What went wrong with one input.
#[derive(Debug, Clone)]
enum Failure {
    Panic(String),
    Slow(Duration),
}

/// The CPU time of the calling thread (`/proc/thread-self/schedstat`), or the wall clock
/// where that file is missing: unlike the wall clock, it does not count the time the other
/// tests had the two cores.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn measure(target: Target, input: &[u8], bound: TimeBound) -> Result<(), Failure> {
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| target(input)));
    let spent = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall0.elapsed(),
    };
    match outcome {
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            Err(Failure::Panic(message))
        }
        Ok(()) if spent > bound.for_len(input.len()) => Err(Failure::Slow(spent)),
        Ok(()) => Ok(()),
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The panic hook prints every panic, and the worker's are caught and reported once:
/// quiet on the workers, the usual hook everywhere else (other tests of the process too).
fn quiet_panics_on_workers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let usual = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                usual(info);
            }
        }));
    });
}

/// One input on the worker thread, or a hang when it does not come back.
struct Worker {
    to: mpsc::Sender<Vec<u8>>,
    from: mpsc::Receiver<Result<(), Failure>>,
}

impl Worker {
    fn start(target: Target, bound: TimeBound) -> Self {
        let (to, inputs) = mpsc::channel::<Vec<u8>>();
        let (results, from) = mpsc::channel();
        std::thread::spawn(move || {
            QUIET.with(|q| q.set(true));
            for input in inputs {
                if results.send(measure(target, &input, bound)).is_err() {
                    break;
                }
            }
        });
        Self { to, from }
    }

    /// `None`: the input has not returned within [`HANG`].
    fn try_input(&self, input: &[u8]) -> Option<Result<(), Failure>> {
        self.to.send(input.to_vec()).ok()?;
        self.from.recv_timeout(HANG).ok()
    }
}

/// Runs `target` for the budget. On a failure: shrinks the input, saves it under the
/// test's temporary folder and panics with what to do with it.
pub fn run(name: &str, target: Target, mut source: Source, bound: TimeBound) {
    let seed = seed();
    let budget = budget();
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    quiet_panics_on_workers();
    let worker = Worker::start(target, bound);
    let mut runs = 0u64;
    let mut failed: Option<(Vec<u8>, Option<Failure>)> = None;
    let seeds = std::mem::take(&mut source.seeds);
    for input in &seeds {
        runs += 1;
        match worker.try_input(input) {
            Some(Ok(())) => {}
            Some(Err(f)) => {
                failed = Some((input.clone(), Some(f)));
                break;
            }
            None => {
                failed = Some((input.clone(), None));
                break;
            }
        }
    }
    // At least a few generated inputs, even with a budget of 0.
    while failed.is_none() && (runs < seeds.len() as u64 + 16 || started.elapsed() < budget) {
        let input = (source.make)(&mut rng, &seeds);
        runs += 1;
        match worker.try_input(&input) {
            Some(Ok(())) => {}
            Some(Err(f)) => failed = Some((input, Some(f))),
            None => failed = Some((input, None)),
        }
    }
    let elapsed = started.elapsed();
    let Some((input, failure)) = failed else {
        let peak = peak_rss_kib();
        eprintln!(
            "fuzz {name}: {runs} inputs in {:.1} s, no failure, peak memory {} MiB (seed {seed:#x})",
            elapsed.as_secs_f64(),
            peak.map_or("?".into(), |k| (k / 1024).to_string()),
        );
        // Inputs are at most 64 KiB: a process that grew past this was handed a header's
        // claim instead of the file's size.
        assert!(
            peak.is_none_or(|k| k < MAX_PEAK_KIB),
            "fuzz {name}: the process grew to {} MiB (seed {seed:#x})",
            peak.unwrap_or(0) / 1024
        );
        return;
    };
    let (input, failure) = match failure {
        // A hang cannot be shrunk: the worker is stuck in it.
        None => (input, "did not return within 20 s".to_string()),
        Some(f) => {
            let input = shrink(&worker, input, &f);
            // Say how the shrunk input fails (its panic message may differ).
            let f = match worker.try_input(&input) {
                Some(Err(again)) => again,
                _ => f,
            };
            let failure = match f {
                Failure::Panic(m) => format!("panicked: {m}"),
                Failure::Slow(t) => format!("took {:.2} s of CPU", t.as_secs_f64()),
            };
            (input, failure)
        }
    };
    let path = save(name, &input);
    panic!(
        "fuzz {name}: an input of {} bytes {failure} (seed {seed:#x}, after {runs} inputs).\n\
         Saved as {}.\n\
         Once fixed, keep it: copy it to machines/tests/fuzz/regressions/{name}/ under a name \
         that says what it is.\n\
         Replay the run: FABRIQUE_FUZZ_SEED={seed:#x} cargo nextest run -p fabrique-machines \
         --test fuzz {name}\n{}",
        input.len(),
        path.display(),
        preview(&input)
    );
}

/// Smaller inputs that fail the same way (a panic stays a panic, slow stays slow): cuts
/// chunks out, halving their size down to single bytes, for at most 2000 tries and a
/// minute (slow inputs are slow to try).
fn shrink(worker: &Worker, mut input: Vec<u8>, failure: &Failure) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let same = |f: &Failure| {
        matches!(
            (f, failure),
            (Failure::Panic(_), Failure::Panic(_)) | (Failure::Slow(_), Failure::Slow(_))
        )
    };
    let mut tries = 0;
    let mut chunk = input.len() / 2;
    while chunk > 0 && tries < 2000 && Instant::now() < deadline {
        let mut at = 0;
        while at + chunk <= input.len() && tries < 2000 && Instant::now() < deadline {
            let mut candidate = input.clone();
            candidate.drain(at..at + chunk);
            tries += 1;
            match worker.try_input(&candidate) {
                Some(Err(f)) if same(&f) => input = candidate,
                // A hang while shrinking: keep what we have, the worker is stuck.
                None => return input,
                _ => at += chunk,
            }
        }
        chunk /= 2;
    }
    input
}

fn save(name: &str, input: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-found");
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for b in input {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    let path = dir.join(format!("{name}-{hash:016x}.bin"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        eprintln!("could not save the input to {}: {e}", path.display());
    }
    path
}

/// The input as Rust bytes, for short ones (the saved file may be gone with the CI machine).
fn preview(input: &[u8]) -> String {
    if input.len() > 2048 {
        return String::new();
    }
    format!("Input: b\"{}\"", input.escape_ascii())
}

/// Peak resident memory of the test process, KiB (`VmHWM`), where Linux says it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// --- Mutations -------------------------------------------------------------------------

/// Byte values that mean something in one of the formats (escapes, flags, ends, newlines).
const INTERESTING_BYTES: [u8; 16] = [
    0x00, 0x01, 0x03, 0x0A, 0x0D, 0x10, 0x1A, 0x20, 0x3B, 0x7F, 0x80, 0x81, 0xB0, 0xC3, 0xF3, 0xFE,
];

/// 32-bit values a length, count or offset field should survive.
fn interesting_u32(rng: &mut Rng, len: usize) -> u32 {
    let len = len as u32;
    *rng.pick(&[
        0,
        1,
        2,
        0x7F,
        0xFF,
        0xFFFF,
        0x7FFF_FFFF,
        0x8000_0000,
        0xFFFF_FFFF,
        len,
        len.wrapping_sub(1),
        len.wrapping_add(1),
        len / 2,
        116,
        512,
        528,
    ])
}

/// Applies one to eight random byte-level mutations, keeping the input under `max` bytes.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, others: &[Vec<u8>], max: usize) {
    for _ in 0..1 + rng.below(8) {
        let len = input.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = *rng.pick(&INTERESTING_BYTES);
            }
            3 => {
                let at = rng.below(len + 1);
                let n = rng.len(64);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = rng.len(len - at).max(1);
                input.drain(at..at + n);
            }
            5 if len > 0 => {
                // Repeat a chunk, up to many times: counts that grow with the input.
                let at = rng.below(len);
                let n = rng.len((len - at).min(256)).max(1);
                let chunk = input[at..at + n].to_vec();
                let times = 1 + rng.len(64);
                let to = rng.below(len + 1);
                input.splice(to..to, chunk.iter().copied().cycle().take(n * times));
            }
            6 if len >= 4 => {
                // Headers keep their counts and offsets in aligned 32-bit fields near the
                // start: half the time, one of those.
                let at = if rng.chance(50) {
                    (rng.below(len.min(160) / 4) * 4).min(len - 4)
                } else {
                    rng.below(len - 3)
                };
                let v = interesting_u32(rng, len);
                input[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            7 if len > 0 => input.truncate(rng.below(len)),
            8 if !others.is_empty() => {
                // Splice a piece of another seed in.
                let other = rng.pick(others);
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = rng.len(other.len() - from).max(1);
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            9 if len > 0 => {
                // Fill a range with one value (runs of 0x80, of zeros...).
                let at = rng.below(len);
                let n = rng.len(len - at).max(1);
                let v = *rng.pick(&INTERESTING_BYTES);
                input[at..at + n].fill(v);
            }
            _ => {
                let at = rng.below(len + 1);
                let v = *rng.pick(&INTERESTING_BYTES);
                input.insert(at, v);
            }
        }
        input.truncate(max);
    }
}

/// Random bytes, up to `max`.
pub fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let n = rng.len(max);
    (0..n).map(|_| rng.next() as u8).collect()
}
