//! A virtual Marlin printer that misbehaves on purpose.
//!
//! The printer itself ([`VirtualMarlin`]) is sans I/O like the protocol: bytes in with
//! [`VirtualMarlin::receive`], time in with [`VirtualMarlin::step`], bytes out with
//! [`VirtualMarlin::take_output`]. Tests can therefore drive host and printer against each
//! other with a virtual clock. [`VirtualPrinter`] serves it over any `AsyncRead + AsyncWrite`
//! (an in-memory duplex for paused-clock tests, a pseudo-terminal for the real thing).
//!
//! # Layout
//!
//! - [`SimConfig`], [`Faults`]: buffers, time scale, ADVANCED_OK, fault injection.
//! - [`VirtualMarlin`]: receive buffer in bytes, command queue of `BUFSIZE` entries, a
//!   planner of timed moves, heaters with a first-order heating curve, the messages Marlin
//!   prints (`Marlin/src/core/language.h`, `gcode/queue.cpp`).
//! - [`VirtualPrinter`]: shared handle, connection serving with optional baud pacing, pty
//!   helpers (`connect_pty`, `run_at_path`).

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::protocol::marlin::checksum;

/// Silence the printer for `duration` once it receives line `at_line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    pub at_line: u32,
    pub duration: Duration,
}

/// Faults to inject. The `every` counts are 1-based: `Some(10)` hits the 10th, 20th...
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Treat every Nth numbered line received as corrupted (checksum mismatch).
    pub checksum_error_every: Option<u64>,
    /// Do not send every Nth `ok`.
    pub drop_ok_every: Option<u64>,
    /// Send every Nth `ok` twice.
    pub double_ok_every: Option<u64>,
    /// Print a line of garbage bytes before every Nth `ok`.
    pub garbage_every: Option<u64>,
    pub silence: Option<Silence>,
    /// Drop the connection when this line number arrives (the line is lost).
    pub disconnect_at_line: Option<u32>,
    /// Reset the board (print `start`, lose all state) when this line number arrives.
    pub reset_at_line: Option<u32>,
    /// Thermal runaway this long after the printer started.
    pub thermal_runaway_at: Option<Duration>,
    /// Explicit faults for property tests: received-line counts to corrupt, `ok` counts to
    /// drop or double.
    pub corrupt_received: BTreeSet<u64>,
    pub drop_oks: BTreeSet<u64>,
    pub double_oks: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Command queue entries (Marlin `BUFSIZE`, default 4).
    pub bufsize: usize,
    /// Receive buffer in bytes (`RX_BUFFER_SIZE`); bytes arriving when it is full are lost.
    pub rx_buffer: usize,
    /// Planner moves (`BLOCK_BUFFER_SIZE`, default 16).
    pub planner_blocks: usize,
    /// Real seconds per machine second: 1.0 real time, 0.01 a hundred times faster, 0.0
    /// instant moves and heating.
    pub time_scale: f64,
    /// `ok N<n> P<planner free> B<queue free>` (Marlin `ADVANCED_OK`).
    pub advanced_ok: bool,
    /// Print `ok` after `Resend:` (Marlin 2.x does).
    pub ok_after_resend: bool,
    /// Announce `Cap:AUTOREPORT_TEMP:1` and honour `M155`.
    pub autoreport_temp: bool,
    /// Print `start` again on every new connection (a board reset by DTR).
    pub reset_on_connect: bool,
    /// Pace reads at this baud rate (10 bits per byte); `None` reads as fast as possible.
    pub baud: Option<u32>,
    pub faults: Faults,
    /// What the printer answers to `M503` (its settings report); `None`: a firmware built
    /// without it, which answers `ok` alone.
    pub m503: Option<String>,
}

/// A Marlin 2.1 built with junction deviation, as it reports its settings.
pub const MARLIN_2_M503: &str = "echo:; Linear Units:
echo:  G21 ; (mm)
echo:; Steps per unit:
echo: M92 X80.00 Y80.00 Z400.00 E93.00
echo:; Max feedrates (units/s):
echo:  M203 X300.00 Y300.00 Z5.00 E25.00
echo:; Max Acceleration (units/s2):
echo:  M201 X2000.00 Y2000.00 Z100.00 E5000.00
echo:; Acceleration (units/s2) (P<print-accel> R<retract-accel> T<travel-accel>):
echo:  M204 P1000.00 R1000.00 T2000.00
echo:; Advanced (B<min_segment_time_us> S<min_feedrate> T<min_travel_feedrate> J<junc_dev>):
echo:  M205 B20000.00 S0.00 T0.00 J0.02
";

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bufsize: 4,
            rx_buffer: 128,
            planner_blocks: 16,
            time_scale: 1.0,
            advanced_ok: false,
            ok_after_resend: true,
            autoreport_temp: true,
            reset_on_connect: false,
            baud: None,
            faults: Faults::default(),
            m503: Some(MARLIN_2_M503.to_string()),
        }
    }
}

const AMBIENT: f64 = 21.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heater {
    pub actual: f64,
    pub target: f64,
    /// Time constant of the first-order heating curve, in machine seconds.
    tau: f64,
}

impl Heater {
    fn new(tau: f64) -> Self {
        Self {
            actual: AMBIENT,
            target: 0.0,
            tau,
        }
    }

    /// Approach the target (or ambient when off) along `1 - e^(-t/tau)`, aiming a little
    /// past the target so it is actually reached, as a PID overshoot does.
    fn advance(&mut self, machine_dt: f64) {
        let (goal, heating) = if self.target > 0.0 {
            (self.target + 10.0, self.actual < self.target)
        } else {
            (AMBIENT, false)
        };
        if machine_dt.is_infinite() {
            self.actual = if self.target > 0.0 {
                self.target
            } else {
                AMBIENT
            };
            return;
        }
        self.actual += (goal - self.actual) * (1.0 - (-machine_dt / self.tau).exp());
        if heating && self.actual > self.target {
            self.actual = self.target;
        } else if self.target > 0.0 && !heating {
            // Regulated: hold at the target.
            self.actual = self.target;
        }
    }

    fn report(&self) -> String {
        format!("{:.2} /{:.2}", self.actual, self.target)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Hotend,
    Bed,
}

/// A snapshot of the printer, for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct SimState {
    pub hotend: Heater,
    pub bed: Heater,
    pub fan: u8,
    pub motors_on: bool,
    /// X, Y, Z, E.
    pub position: [f64; 4],
    pub killed: Option<String>,
    pub rx_overflows: u64,
    pub errors: u64,
    /// Bytes that arrived on the wire since the start.
    pub bytes_received: u64,
    /// Bytes in the receive buffer not yet part of a whole line (what a previous program
    /// left there, for instance).
    pub rx_pending: usize,
    /// `ok`s the printer meant to send so far (dropped ones included).
    pub oks: u64,
}

/// The virtual printer. See the module docs.
#[derive(Debug)]
pub struct VirtualMarlin {
    cfg: SimConfig,
    started: Instant,
    last_step: Instant,
    rx: Vec<u8>,
    /// Commands read, with their line number when they had one (the `N` of an ADVANCED_OK).
    queue: VecDeque<(Option<u32>, String)>,
    /// Real instants at which the queued moves end.
    planner: VecDeque<Instant>,
    last_n: u32,
    received_lines: u64,
    oks: u64,
    out: Vec<u8>,
    executed: Vec<String>,
    hotend: Heater,
    bed: Heater,
    fan: u8,
    motors_on: bool,
    pos: [f64; 4],
    feedrate: f64,
    relative: bool,
    relative_e: bool,
    waiting: Option<Wait>,
    dwell_until: Option<Instant>,
    next_wait_report: Instant,
    next_keepalive: Instant,
    keepalive: Duration,
    autoreport: Option<Duration>,
    next_autoreport: Instant,
    silent_until: Option<Instant>,
    silence_done: bool,
    disconnect: bool,
    disconnect_done: bool,
    reset_done: bool,
    killed: Option<String>,
    /// The last bytes received, so that an `M112` split between two reads is still seen.
    emergency_tail: Vec<u8>,
    rx_overflows: u64,
    errors: u64,
    bytes_received: u64,
    garbage_seed: u32,
}

/// Seconds from a number a host sent: never negative, NaN or beyond a day, so that nonsense
/// (`G4 S1e300`, `G1 F0.0000001`) cannot overflow a clock.
fn secs(x: f64) -> Duration {
    Duration::from_secs_f64(if x.is_finite() {
        x.clamp(0.0, 86_400.0)
    } else {
        0.0
    })
}

fn word(text: &str, letter: char) -> Option<f64> {
    text.split_whitespace()
        .skip(1)
        .find_map(|w| w.strip_prefix(letter).and_then(|v| v.parse().ok()))
}

impl VirtualMarlin {
    pub fn new(cfg: SimConfig, now: Instant) -> Self {
        let mut sim = Self {
            cfg,
            started: now,
            last_step: now,
            rx: Vec::new(),
            queue: VecDeque::new(),
            planner: VecDeque::new(),
            last_n: 0,
            received_lines: 0,
            oks: 0,
            out: Vec::new(),
            executed: Vec::new(),
            hotend: Heater::new(25.0),
            bed: Heater::new(60.0),
            fan: 0,
            motors_on: false,
            pos: [0.0; 4],
            feedrate: 1500.0,
            relative: false,
            relative_e: false,
            waiting: None,
            dwell_until: None,
            next_wait_report: now,
            next_keepalive: now,
            keepalive: Duration::from_secs(2),
            autoreport: None,
            next_autoreport: now,
            silent_until: None,
            silence_done: false,
            disconnect: false,
            disconnect_done: false,
            reset_done: false,
            killed: None,
            emergency_tail: Vec::new(),
            rx_overflows: 0,
            errors: 0,
            bytes_received: 0,
            garbage_seed: 0x9e37_79b9,
        };
        sim.banner();
        sim
    }

    fn banner(&mut self) {
        self.out.extend_from_slice(
            b"start\necho:Marlin 2.1.2.1 (Fabrique virtual printer)\necho: Last Updated: 2026-11-24\necho:Free Memory: 2048  PlannerBufferBytes: 1216\n",
        );
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Commands executed so far, in order, without line numbers and checksums.
    pub fn executed(&self) -> &[String] {
        &self.executed
    }

    pub fn state(&self) -> SimState {
        SimState {
            hotend: self.hotend,
            bed: self.bed,
            fan: self.fan,
            motors_on: self.motors_on,
            position: self.pos,
            killed: self.killed.clone(),
            rx_overflows: self.rx_overflows,
            errors: self.errors,
            bytes_received: self.bytes_received,
            rx_pending: self.rx.len(),
            oks: self.oks,
        }
    }

    /// Free bytes in the receive buffer.
    pub fn rx_free(&self) -> usize {
        self.cfg.rx_buffer.saturating_sub(self.rx.len())
    }

    /// Bytes arriving on the wire. Bytes that do not fit are lost, as on a real UART.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.killed.is_some() {
            return;
        }
        // EMERGENCY_PARSER: M112 acts as soon as it is read, queue full or not, even when
        // the UART delivered it in two pieces.
        let mut seen = std::mem::take(&mut self.emergency_tail);
        seen.extend_from_slice(bytes);
        let emergency = seen.windows(4).any(|w| w == b"M112");
        self.emergency_tail = seen[seen.len().saturating_sub(3)..].to_vec();
        if emergency {
            self.kill("Printer halted. kill() called!", now);
            return;
        }
        self.bytes_received += bytes.len() as u64;
        let free = self.rx_free();
        if bytes.len() > free {
            self.rx_overflows += 1;
        }
        self.rx.extend_from_slice(&bytes[..bytes.len().min(free)]);
    }

    /// The connection was dropped by the disconnect fault; the runner closes the link.
    pub fn take_disconnect(&mut self) -> bool {
        std::mem::take(&mut self.disconnect)
    }

    /// A new connection: a board reset by DTR prints its banner again.
    pub fn connected(&mut self, now: Instant) {
        // A new USB session. The board itself did not restart: what reached its UART before
        // stays in the receive buffer, and the next line starts with it (a probe's stray
        // byte, half a line cut by an unplugged cable). Only a reset empties it.
        self.emergency_tail.clear();
        if self.cfg.reset_on_connect {
            self.reset(now);
        }
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn machine_dt(&self, real: Duration) -> f64 {
        if self.cfg.time_scale <= 0.0 {
            f64::INFINITY
        } else {
            real.as_secs_f64() / self.cfg.time_scale
        }
    }

    fn real(&self, machine_secs: f64) -> Duration {
        secs(machine_secs * self.cfg.time_scale)
    }

    /// When [`VirtualMarlin::step`] next has something to do by itself.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        if self.killed.is_some() {
            return None;
        }
        if let Some(until) = self.silent_until {
            return Some(until);
        }
        let mut t: Vec<Instant> = Vec::new();
        if let Some(at) = self.cfg.faults.thermal_runaway_at {
            t.push(self.started + at);
        }
        if self.autoreport.is_some() {
            t.push(self.next_autoreport);
        }
        if let Some(end) = self.planner.front() {
            t.push(*end);
        }
        if let Some(d) = self.dwell_until {
            t.push(d);
        }
        if self.waiting.is_some() {
            t.push(self.next_keepalive.min(self.next_wait_report));
            t.push(now + Duration::from_millis(50));
        }
        t.into_iter().min()
    }

    /// Advance to `now`: heaters, faults, parsing and executing commands.
    pub fn step(&mut self, now: Instant) {
        if self.killed.is_some() {
            return;
        }
        let dt = self.machine_dt(now.saturating_duration_since(self.last_step));
        self.last_step = now;
        self.hotend.advance(dt);
        self.bed.advance(dt);
        if let Some(at) = self.cfg.faults.thermal_runaway_at
            && now >= self.started + at
        {
            // Marlin's thermal protection: message, then kill() (temperature.cpp).
            self.out
                .extend_from_slice(b"Error:Thermal Runaway, system stopped! Heater_ID: 0\n");
            self.kill("Printer halted. kill() called!", now);
            return;
        }
        if let Some(until) = self.silent_until {
            if now < until {
                return;
            }
            self.silent_until = None;
        }
        while self.planner.front().is_some_and(|end| *end <= now) {
            self.planner.pop_front();
        }
        if let Some(every) = self.autoreport
            && now >= self.next_autoreport
        {
            self.next_autoreport = now + every;
            let line = format!(
                " T:{} B:{} @:0 B@:0\n",
                self.hotend.report(),
                self.bed.report()
            );
            self.out.extend_from_slice(line.as_bytes());
        }
        loop {
            self.parse_lines(now);
            if self.killed.is_some() || self.silent_until.is_some() || self.disconnect {
                return;
            }
            if !self.execute_front(now) {
                break;
            }
        }
    }

    /// Move complete lines from the receive buffer to the command queue while it has room
    /// (Marlin reads serial only when the ring has a free slot, `queue.cpp`).
    fn parse_lines(&mut self, now: Instant) {
        while self.queue.len() < self.cfg.bufsize && self.silent_until.is_none() && !self.disconnect
        {
            let Some(pos) = self.rx.iter().position(|&b| b == b'\n' || b == b'\r') else {
                return;
            };
            let raw: Vec<u8> = self.rx.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&raw[..raw.len() - 1])
                .trim()
                .to_string();
            if line.is_empty() {
                continue;
            }
            self.accept_line(&line, now);
            if self.killed.is_some() {
                return;
            }
        }
    }

    fn line_error(&mut self, message: &str) {
        // gcode_line_error: print the error with the last good line, drop what is in the
        // receive buffer and ask for the next line again (flush_and_request_resend).
        self.errors += 1;
        let last = self.last_n;
        self.out
            .extend_from_slice(format!("Error:{message}, Last Line: {last}\n").as_bytes());
        self.rx.clear();
        self.out
            .extend_from_slice(format!("Resend: {}\n", last + 1).as_bytes());
        if self.cfg.ok_after_resend {
            self.out.extend_from_slice(b"ok\n");
        }
    }

    fn accept_line(&mut self, line: &str, now: Instant) {
        let Some(rest) = line.strip_prefix('N') else {
            if line.contains('*') {
                self.line_error("No Line Number with checksum");
                return;
            }
            self.queue.push_back((None, line.to_string()));
            return;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(n) = digits.parse::<u32>() else {
            self.line_error("Line Number is not Last Line Number+1");
            return;
        };
        self.received_lines += 1;
        let count = self.received_lines;
        let Some(star) = line.rfind('*') else {
            self.line_error("No Checksum with line number");
            return;
        };
        let sum_ok = line[star + 1..]
            .trim()
            .parse::<u8>()
            .is_ok_and(|s| s == checksum(&line.as_bytes()[..star]));
        let injected = self
            .cfg
            .faults
            .checksum_error_every
            .is_some_and(|e| count.is_multiple_of(e))
            || self.cfg.faults.corrupt_received.contains(&count);
        if !sum_ok || injected {
            self.line_error("checksum mismatch");
            return;
        }
        let command = line[1 + digits.len()..star].trim().to_string();
        let is_m110 = command.split_whitespace().next() == Some("M110");
        if !is_m110 && n != self.last_n + 1 {
            self.line_error("Line Number is not Last Line Number+1");
            return;
        }
        if let Some(s) = self.cfg.faults.silence
            && s.at_line == n
            && !self.silence_done
        {
            self.silence_done = true;
            self.silent_until = Some(now + s.duration);
            // The line itself is read later, when the printer wakes up.
            self.received_lines -= 1;
            let mut back = line.as_bytes().to_vec();
            back.push(b'\n');
            back.extend_from_slice(&self.rx);
            self.rx = back;
            return;
        }
        if self.cfg.faults.disconnect_at_line == Some(n) && !self.disconnect_done {
            self.disconnect_done = true;
            self.disconnect = true;
            self.rx.clear();
            return;
        }
        if self.cfg.faults.reset_at_line == Some(n) && !self.reset_done {
            self.reset_done = true;
            self.reset(now);
            return;
        }
        self.last_n = n;
        if is_m110 {
            self.last_n = word(&command, 'N').map(|v| v as u32).unwrap_or(n);
        }
        self.queue.push_back((Some(n), command));
    }

    fn reset(&mut self, now: Instant) {
        self.rx.clear();
        self.queue.clear();
        self.planner.clear();
        self.last_n = 0;
        self.hotend.target = 0.0;
        self.bed.target = 0.0;
        self.fan = 0;
        self.waiting = None;
        self.dwell_until = None;
        self.autoreport = None;
        self.motors_on = false;
        self.last_step = now;
        self.banner();
    }

    fn kill(&mut self, why: &str, _now: Instant) {
        // kill(): heaters and steppers off, message, then an endless loop deaf to serial.
        self.hotend.target = 0.0;
        self.bed.target = 0.0;
        self.fan = 0;
        self.motors_on = false;
        self.queue.clear();
        self.planner.clear();
        self.out
            .extend_from_slice(format!("Error:{why}\n").as_bytes());
        self.killed = Some(why.to_string());
    }

    /// The `ok` of the command numbered `n` (if it was numbered). With ADVANCED_OK, Marlin
    /// prints that command's own number (`ok_to_send` in `queue.cpp`), then the free planner
    /// blocks and command slots.
    fn send_ok(&mut self, n: Option<u32>, extra: &str) {
        self.oks += 1;
        let k = self.oks;
        let f = &self.cfg.faults;
        let drop = f.drop_ok_every.is_some_and(|e| k.is_multiple_of(e)) || f.drop_oks.contains(&k);
        let double =
            f.double_ok_every.is_some_and(|e| k.is_multiple_of(e)) || f.double_oks.contains(&k);
        let garbage = f.garbage_every.is_some_and(|e| k.is_multiple_of(e));
        if garbage {
            let mut g = Vec::new();
            for _ in 0..12 {
                self.garbage_seed = self
                    .garbage_seed
                    .wrapping_mul(1_103_515_245)
                    .wrapping_add(12345);
                let b = (self.garbage_seed >> 16) as u8;
                // Keep the line boundary: noise inside a line, not a fake end of line.
                g.push(if b == b'\n' || b == b'\r' { 0xfe } else { b });
            }
            g.push(b'\n');
            self.out.extend_from_slice(&g);
        }
        if drop {
            return;
        }
        let line = if self.cfg.advanced_ok {
            let planner_free = self.cfg.planner_blocks.saturating_sub(self.planner.len());
            let queue_free = self.cfg.bufsize.saturating_sub(self.queue.len());
            let number = n.map(|n| format!(" N{n}")).unwrap_or_default();
            format!("ok{number} P{planner_free} B{queue_free}{extra}\n")
        } else {
            format!("ok{extra}\n")
        };
        self.out.extend_from_slice(line.as_bytes());
        if double {
            self.out.extend_from_slice(line.as_bytes());
        }
    }

    fn planner_full(&self) -> bool {
        self.planner.len() >= self.cfg.planner_blocks
    }

    fn plan(&mut self, machine_secs: f64, now: Instant) {
        let start = self.planner.back().copied().unwrap_or(now).max(now);
        let end = start + self.real(machine_secs);
        if end > now {
            self.planner.push_back(end);
        }
    }

    fn temps_line(&self) -> String {
        format!(
            " T:{} B:{} @:0 B@:0",
            self.hotend.report(),
            self.bed.report()
        )
    }

    /// Execute the command at the front of the queue if it can run now. `false` when it must
    /// wait (planner full, heating, dwell) or the queue is empty.
    fn execute_front(&mut self, now: Instant) -> bool {
        let Some(cmd) = self.queue.front().map(|(_, c)| c.clone()) else {
            return false;
        };
        let code = cmd.split_whitespace().next().unwrap_or("").to_string();
        if let Some(d) = self.dwell_until {
            if now < d {
                return false;
            }
            self.dwell_until = None;
            self.finish(cmd, "");
            return true;
        }
        if let Some(wait) = self.waiting {
            let (heater, name) = match wait {
                Wait::Hotend => (self.hotend, "T"),
                Wait::Bed => (self.bed, "B"),
            };
            let _ = name;
            let reached = heater.target <= 0.0 || (heater.actual - heater.target).abs() <= 1.0;
            if !reached {
                if now >= self.next_wait_report {
                    // M109/M190 print the temperatures every second while waiting.
                    self.next_wait_report = now + Duration::from_secs(1);
                    let line = format!("{} W:?\n", self.temps_line().trim_start());
                    self.out.extend_from_slice(line.as_bytes());
                }
                if now >= self.next_keepalive {
                    // HOST_KEEPALIVE_FEATURE: busy every 2 s (M113).
                    self.next_keepalive = now + self.keepalive;
                    self.out.extend_from_slice(b"echo:busy: processing\n");
                }
                return false;
            }
            self.waiting = None;
            self.finish(cmd, "");
            return true;
        }
        match code.as_str() {
            "G0" | "G1" | "G2" | "G3" => {
                if self.planner_full() {
                    return false;
                }
                let mut target = self.pos;
                for (i, axis) in ['X', 'Y', 'Z', 'E'].iter().enumerate() {
                    if let Some(v) = word(&cmd, *axis) {
                        let relative = if i == 3 {
                            self.relative_e || self.relative
                        } else {
                            self.relative
                        };
                        target[i] = if relative { self.pos[i] + v } else { v };
                    }
                }
                if let Some(f) = word(&cmd, 'F').filter(|f| *f > 0.0) {
                    self.feedrate = f;
                }
                let d = (0..3)
                    .map(|i| (target[i] - self.pos[i]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let d = if d == 0.0 {
                    (target[3] - self.pos[3]).abs()
                } else {
                    d
                };
                self.pos = target;
                self.motors_on = true;
                self.plan(d / (self.feedrate / 60.0), now);
                self.finish(cmd, "");
            }
            "G28" | "G29" | "M400" => {
                if !self.planner.is_empty() {
                    return false;
                }
                if code == "G28" {
                    let all = !['X', 'Y', 'Z'].iter().any(|a| cmd.contains(*a));
                    for (i, a) in ['X', 'Y', 'Z'].iter().enumerate() {
                        if all || cmd.contains(*a) {
                            self.pos[i] = 0.0;
                        }
                    }
                    self.motors_on = true;
                    self.plan(2.0, now);
                }
                self.finish(cmd, "");
            }
            "G4" => {
                if !self.planner.is_empty() {
                    return false;
                }
                let secs = word(&cmd, 'S').unwrap_or(0.0) + word(&cmd, 'P').unwrap_or(0.0) / 1000.0;
                let until = now + self.real(secs);
                if until > now {
                    self.dwell_until = Some(until);
                    return false;
                }
                self.finish(cmd, "");
            }
            "G90" => {
                self.relative = false;
                self.relative_e = false;
                self.finish(cmd, "");
            }
            "G91" => {
                self.relative = true;
                self.finish(cmd, "");
            }
            "M82" => {
                self.relative_e = false;
                self.finish(cmd, "");
            }
            "M83" => {
                self.relative_e = true;
                self.finish(cmd, "");
            }
            "G92" => {
                for (i, axis) in ['X', 'Y', 'Z', 'E'].iter().enumerate() {
                    if let Some(v) = word(&cmd, *axis) {
                        self.pos[i] = v;
                    }
                }
                self.finish(cmd, "");
            }
            "M104" | "M109" => {
                let target = word(&cmd, 'S').or_else(|| word(&cmd, 'R')).unwrap_or(0.0);
                self.hotend.target = target;
                if code == "M109" && target > 0.0 {
                    self.start_wait(Wait::Hotend, now);
                    return true;
                }
                self.finish(cmd, "");
            }
            "M140" | "M190" => {
                let target = word(&cmd, 'S').or_else(|| word(&cmd, 'R')).unwrap_or(0.0);
                self.bed.target = target;
                if code == "M190" && target > 0.0 {
                    self.start_wait(Wait::Bed, now);
                    return true;
                }
                self.finish(cmd, "");
            }
            "M105" => {
                let t = self.temps_line();
                self.finish(cmd, &t);
            }
            "M106" => {
                self.fan = word(&cmd, 'S').unwrap_or(255.0).clamp(0.0, 255.0) as u8;
                self.finish(cmd, "");
            }
            "M107" => {
                self.fan = 0;
                self.finish(cmd, "");
            }
            "M84" | "M18" => {
                self.motors_on = false;
                self.finish(cmd, "");
            }
            "M113" => {
                if let Some(s) = word(&cmd, 'S') {
                    self.keepalive = secs(s.max(1.0));
                }
                self.finish(cmd, "");
            }
            "M114" => {
                let [x, y, z, e] = self.pos;
                let line = format!(
                    "X:{x:.2} Y:{y:.2} Z:{z:.2} E:{e:.2} Count X:{} Y:{} Z:{}\n",
                    (x * 80.0) as i64,
                    (y * 80.0) as i64,
                    (z * 400.0) as i64
                );
                self.out.extend_from_slice(line.as_bytes());
                self.finish(cmd, "");
            }
            "M115" => {
                let cap = |name: &str, on: bool| format!("Cap:{name}:{}\n", u8::from(on));
                let mut text = String::from(
                    "FIRMWARE_NAME:Marlin 2.1.2.1 (Fabrique virtual printer) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Fabrique Virtual EXTRUDER_COUNT:1 UUID:00000000-0000-0000-0000-000000000000\n",
                );
                text += &cap("SERIAL_XON_XOFF", false);
                text += &cap("EEPROM", false);
                text += &cap("AUTOREPORT_TEMP", self.cfg.autoreport_temp);
                text += &cap("PROGRESS", false);
                text += &cap("EMERGENCY_PARSER", true);
                text += &cap("HOST_ACTION_COMMANDS", true);
                text += &cap("BUSY_PROTOCOL", true);
                self.out.extend_from_slice(text.as_bytes());
                self.finish(cmd, "");
            }
            "M155" => {
                if self.cfg.autoreport_temp {
                    let s = word(&cmd, 'S').unwrap_or(0.0);
                    self.autoreport = (s > 0.0).then(|| secs(s.max(0.1)));
                    self.next_autoreport = now + secs(s);
                }
                self.finish(cmd, "");
            }
            "M600" => {
                // Filament change: tell the host, then carry on (the sim has no user to wait for).
                self.out
                    .extend_from_slice(b"//action:paused\necho:busy: paused for user\n");
                self.finish(cmd, "");
            }
            "M999" => {
                self.finish(cmd, "");
            }
            "M503" => {
                if let Some(report) = &self.cfg.m503 {
                    self.out.extend_from_slice(report.as_bytes());
                }
                self.finish(cmd, "");
            }
            _ => {
                if !code.starts_with(['G', 'M', 'T']) {
                    self.out
                        .extend_from_slice(format!("echo:Unknown command: \"{cmd}\"\n").as_bytes());
                }
                self.finish(cmd, "");
            }
        }
        true
    }

    fn start_wait(&mut self, wait: Wait, now: Instant) {
        self.waiting = Some(wait);
        self.next_wait_report = now + Duration::from_secs(1);
        self.next_keepalive = now + self.keepalive;
    }

    fn finish(&mut self, cmd: String, extra: &str) {
        let n = self.queue.pop_front().and_then(|(n, _)| n);
        self.executed.push(cmd);
        self.send_ok(n, extra);
    }
}

/// How a served connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd {
    /// The disconnect fault dropped the link.
    Disconnected,
    /// The host closed its side.
    HostClosed,
    Cancelled,
}

/// A shared handle on one virtual printer, serving connections one at a time.
#[derive(Debug, Clone)]
pub struct VirtualPrinter {
    inner: Arc<Mutex<VirtualMarlin>>,
}

impl VirtualPrinter {
    pub fn new(cfg: SimConfig) -> Self {
        let now = tokio::time::Instant::now().into_std();
        Self {
            inner: Arc::new(Mutex::new(VirtualMarlin::new(cfg, now))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VirtualMarlin> {
        // A panic while holding the lock only happens in a failing test; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn executed(&self) -> Vec<String> {
        self.lock().executed().to_vec()
    }

    pub fn state(&self) -> SimState {
        self.lock().state()
    }

    /// Serve one connection until it ends. The printer's state outlives the connection, as
    /// a real board's does when only the USB cable goes.
    pub async fn serve<IO>(&self, io: IO, cancel: CancellationToken) -> io::Result<ServeEnd>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut reader, mut writer) = tokio::io::split(io);
        let baud = self.lock().config().baud;
        let mut buf = vec![0u8; 4096];
        // Baud pacing: bytes read from the pty are handed to the printer only when the wire
        // would have carried them, chunk after chunk at baud/10 bytes per second. An idle
        // wire stores no capacity: a chunk that was not already waiting starts its
        // transmission when it is read.
        let rate = baud.map(|b| f64::from(b.max(10)) / 10.0);
        const CHUNK: usize = 32;
        let mut pending: Option<(tokio::time::Instant, usize)> = None;
        let mut wire_free_at = tokio::time::Instant::now();
        {
            let now = tokio::time::Instant::now().into_std();
            self.lock().connected(now);
        }
        loop {
            let now = tokio::time::Instant::now();
            let (out, disconnect, wake) = {
                let mut sim = self.lock();
                sim.step(now.into_std());
                (
                    sim.take_output(),
                    sim.take_disconnect(),
                    sim.next_wakeup(now.into_std()),
                )
            };
            if !out.is_empty() {
                tracing::trace!(target: "fabrique::sim", ">> {}", String::from_utf8_lossy(&out).trim_end());
                if let Err(e) = async {
                    writer.write_all(&out).await?;
                    writer.flush().await
                }
                .await
                {
                    // The host hung up, but what it wrote before going still reached the
                    // board's UART: a real printer acts on a last `M112` whether or not its
                    // own replies can still be sent.
                    self.drain(&mut reader, &mut buf).await;
                    return match e.kind() {
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                            Ok(ServeEnd::HostClosed)
                        }
                        _ => Err(e),
                    };
                }
            }
            if disconnect {
                return Ok(ServeEnd::Disconnected);
            }
            let wake = wake
                .map(tokio::time::Instant::from_std)
                .unwrap_or(now + Duration::from_secs(3600));
            let chunk = if rate.is_some() { CHUNK } else { buf.len() };
            if let (Some(rate), Some((arrival, n))) = (rate, pending) {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(ServeEnd::Cancelled),
                    _ = tokio::time::sleep_until(arrival) => {
                        pending = None;
                        self.lock().receive(&buf[..n], tokio::time::Instant::now().into_std());
                        // Bytes already waiting continue the transmission back to back.
                        if let Ok(r) = tokio::time::timeout(Duration::ZERO, reader.read(&mut buf[..chunk])).await {
                            let n = r?;
                            if n == 0 {
                                return Ok(ServeEnd::HostClosed);
                            }
                            let at = wire_free_at + Duration::from_secs_f64(n as f64 / rate);
                            wire_free_at = at;
                            pending = Some((at, n));
                        }
                    }
                    _ = tokio::time::sleep_until(wake) => {}
                }
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(ServeEnd::Cancelled),
                r = reader.read(&mut buf[..chunk]) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(ServeEnd::HostClosed);
                    }
                    let now = tokio::time::Instant::now();
                    match rate {
                        None => self.lock().receive(&buf[..n], now.into_std()),
                        Some(rate) => {
                            let at = now.max(wire_free_at) + Duration::from_secs_f64(n as f64 / rate);
                            wire_free_at = at;
                            pending = Some((at, n));
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Hands the bytes still waiting on a closed link to the printer (for a second at most).
    async fn drain<R: AsyncRead + Unpin>(&self, reader: &mut R, buf: &mut [u8]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, reader.read(buf)).await {
            if n == 0 {
                break;
            }
            let now = tokio::time::Instant::now().into_std();
            self.lock().receive(&buf[..n], now);
        }
    }

    /// An in-memory link served in a task, for paused-clock tests.
    pub fn connect_duplex(&self, cancel: CancellationToken) -> tokio::io::DuplexStream {
        let (host, printer) = tokio::io::duplex(4096);
        let sim = self.clone();
        tokio::spawn(async move {
            if let Err(e) = sim.serve(printer, cancel).await {
                tracing::debug!(error = %e, "virtual printer link closed");
            }
        });
        host
    }

    /// A pseudo-terminal served in a task; returns the host's end.
    pub fn connect_pty(&self, cancel: CancellationToken) -> io::Result<tokio_serial::SerialStream> {
        let (master, slave) = tokio_serial::SerialStream::pair().map_err(io::Error::other)?;
        let sim = self.clone();
        tokio::spawn(async move {
            if let Err(e) = sim.serve(master, cancel).await {
                tracing::debug!(error = %e, "virtual printer pty closed");
            }
        });
        Ok(slave)
    }

    /// Serve on a pseudo-terminal reachable at `path` (a symlink to the pty), until
    /// cancelled. After a disconnect fault a fresh pty is linked at the same path, as a
    /// re-plugged USB printer reappears.
    pub async fn run_at_path(&self, path: &Path, cancel: CancellationToken) -> io::Result<()> {
        loop {
            // The slave end from `pair()` carries no lock, so a host can open it by path
            // (do not call `set_exclusive(false)`: it takes a shared flock that blocks hosts
            // opening the port exclusively, as tokio-serial does by default).
            let (master, slave) = tokio_serial::SerialStream::pair().map_err(io::Error::other)?;
            let name = tokio_serial::SerialPort::name(&slave)
                .ok_or_else(|| io::Error::other("pty without a name"))?;
            // Keep a slave end open so a host closing its end does not hang up the master,
            // through a plain open: the serial library's own handle holds an advisory lock
            // (flock) that would stop a host in this same process from opening the port.
            let keep = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&name)?;
            drop(slave);
            link(Path::new(&name), path)?;
            tracing::info!(pty = %name, link = %path.display(), "virtual Marlin listening");
            let end = self.serve(master, cancel.clone()).await?;
            drop(keep);
            match end {
                ServeEnd::Cancelled => {
                    let _ = std::fs::remove_file(path);
                    return Ok(());
                }
                ServeEnd::Disconnected | ServeEnd::HostClosed => {
                    tracing::info!("virtual Marlin link dropped; re-linking");
                }
            }
        }
    }
}

fn link(target: &Path, at: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(at) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::remove_file(at)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a symlink", at.display()),
            ));
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, at)
}

/// Where the `--link` pty of the CLI goes when none is given.
pub fn default_link() -> PathBuf {
    std::env::temp_dir().join("fabrique-marlin")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::marlin::numbered;

    fn feed(sim: &mut VirtualMarlin, n: u32, cmd: &str, now: Instant) -> String {
        sim.receive(&numbered(n, cmd), now);
        sim.step(now);
        String::from_utf8(sim.take_output()).unwrap()
    }

    #[test]
    fn a_bad_checksum_gets_marlins_message_and_a_resend() {
        let now = Instant::now();
        let mut sim = VirtualMarlin::new(
            SimConfig {
                time_scale: 0.0,
                ..SimConfig::default()
            },
            now,
        );
        sim.take_output();
        assert_eq!(feed(&mut sim, 1, "G28", now), "ok\n");
        sim.receive(b"N2 G1 X1*0\n", now);
        sim.step(now);
        assert_eq!(
            String::from_utf8(sim.take_output()).unwrap(),
            "Error:checksum mismatch, Last Line: 1\nResend: 2\nok\n"
        );
        assert_eq!(
            feed(&mut sim, 3, "G1 X1", now),
            "Error:Line Number is not Last Line Number+1, Last Line: 1\nResend: 2\nok\n"
        );
        assert_eq!(sim.executed(), ["G28"]);
    }

    #[test]
    fn m109_waits_printing_temperatures_and_busy_until_the_heater_is_hot() {
        let t0 = Instant::now();
        let mut sim = VirtualMarlin::new(
            SimConfig {
                time_scale: 1.0,
                ..SimConfig::default()
            },
            t0,
        );
        sim.take_output();
        let out = feed(&mut sim, 1, "M109 S200", t0);
        assert!(out.is_empty());
        let mut all = String::new();
        let mut t = t0;
        while !all.contains("ok") {
            t += Duration::from_millis(250);
            sim.step(t);
            all += &String::from_utf8(sim.take_output()).unwrap();
            assert!(t < t0 + Duration::from_secs(300));
        }
        assert!(all.contains("W:?"));
        assert!(all.contains("echo:busy: processing"));
        // The curve takes time: a 25 s time constant cannot reach 200 °C in under 20 s.
        assert!(t > t0 + Duration::from_secs(20));
        assert!((sim.state().hotend.actual - 200.0).abs() <= 1.0);
    }

    #[test]
    fn moves_take_time_at_their_feedrate_and_m114_reports_the_position() {
        let t0 = Instant::now();
        let mut sim = VirtualMarlin::new(
            SimConfig {
                bufsize: 1,
                planner_blocks: 1,
                ..SimConfig::default()
            },
            t0,
        );
        sim.take_output();
        assert_eq!(feed(&mut sim, 1, "G1 X100 F6000", t0), "ok\n");
        // 100 mm at 100 mm/s: the planner is busy for one second.
        assert_eq!(feed(&mut sim, 2, "G1 X0", t0), "");
        sim.step(t0 + Duration::from_millis(999));
        assert_eq!(sim.take_output(), b"");
        sim.step(t0 + Duration::from_millis(1000));
        assert_eq!(sim.take_output(), b"ok\n");
        let out = feed(&mut sim, 3, "M114", t0 + Duration::from_secs(3));
        assert!(out.starts_with("X:0.00 Y:0.00 Z:0.00 E:0.00"), "{out}");
    }

    #[test]
    fn nonsense_numbers_do_not_break_the_clock() {
        let now = Instant::now();
        let mut sim = VirtualMarlin::new(SimConfig::default(), now);
        sim.take_output();
        for (n, cmd) in [
            "G4 S1e300",
            "G1 X1e308 F0.0000001",
            "M155 SNaN",
            "M113 Sinf",
            "G4 P-5",
        ]
        .iter()
        .enumerate()
        {
            sim.receive(&numbered(n as u32 + 1, cmd), now);
            sim.step(now);
        }
        sim.step(now + Duration::from_secs(100_000));
        sim.step(now + Duration::from_secs(300_000));
        assert_eq!(sim.executed().len(), 5);
    }

    #[test]
    fn bytes_beyond_the_receive_buffer_are_lost() {
        let now = Instant::now();
        let mut sim = VirtualMarlin::new(
            SimConfig {
                rx_buffer: 8,
                ..SimConfig::default()
            },
            now,
        );
        sim.receive(b"0123456789", now);
        assert_eq!(sim.state().rx_overflows, 1);
        assert_eq!(sim.rx_free(), 0);
    }
}
