//! A virtual GRBL 1.1 laser, for tests, benchmarks and demos without a machine.
//!
//! It behaves as the firmware does where a host can tell the difference: a receive buffer of
//! 128 bytes whose overflow is lost (as on the AVR, `grbl/serial.c`), real-time bytes picked
//! off as they arrive and never buffered, an `ok` only once a line's block is in a planner of
//! 15 blocks (a full planner holds the next line back in the receive buffer), moves that take
//! time at their feed, status reports, `$$` and `$x=` settings, `$C` check mode (leaving it
//! resets), soft limits that raise `ALARM:2` and lock until a reset, laser mode semantics
//! (`$32=1`: the laser fires only during G1/G2/G3 moves and never while held), and faults on
//! demand. Everything it executed is recorded, in order, for tests to inspect.
//!
//! Simplifications: no acceleration (a block lasts its length over its feed, times the time
//! scale), a hold stops at once (`Hold:0`), arcs are timed as their chord, homing is instant,
//! and the machine space is `0..$130` by `0..$131` with the origin at the lower-left corner.
//!
//! # Layout
//!
//! - [`SimConfig`] and [`Faults`]: what to simulate.
//! - [`VirtualGrbl`]: the firmware without I/O (bytes in, bytes out, time passed in).
//! - [`serve`]: runs a [`VirtualGrbl`] over any byte stream, pacing the link at a baud rate.
//! - [`PtyLink`]: a pseudo-terminal whose other end a host opens as a serial port.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::protocol::grbl::{MAX_LINE_CHARS, Realtime, Word, clean_line, parse_words};

/// Faults to inject. Line numbers count every line the virtual GRBL takes from its receive
/// buffer, 1-based, commands included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Answer `error:code` to this line instead of running it.
    pub error_on_line: Option<(u64, u8)>,
    /// Raise `ALARM:code` this long after start (1 and 2 lock until a reset, as the
    /// firmware's critical alarms do).
    pub alarm_at: Option<(Duration, u8)>,
    /// Close the link this long after start.
    pub disconnect_at: Option<Duration>,
    /// Close the link on taking this line.
    pub disconnect_on_line: Option<u64>,
    /// Restart (as after a brown-out) on taking this line: buffers cleared, banner printed.
    pub reset_on_line: Option<u64>,
    /// Run this line but never answer it.
    pub drop_ok_on_line: Option<u64>,
    /// On taking this line, freeze in `Run`: no move goes on, no further line is read (a
    /// stepper fault, a firmware stuck in motion). A soft reset clears it.
    pub stall_on_line: Option<u64>,
    /// On taking this line, go into `Hold` by itself (a feed-hold button, a sensor), and
    /// stay there until a cycle start.
    pub hold_on_line: Option<u64>,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Receive buffer in bytes; GRBL on an Uno has 128.
    pub rx_buffer: usize,
    /// Planner blocks; GRBL has 16, 15 usable with line numbers.
    pub planner_blocks: usize,
    /// Move durations are multiplied by this: 1.0 is real time, 0 instant.
    pub time_scale: f64,
    /// Time to parse and plan one line before the next is taken.
    pub line_time: Duration,
    /// The start-up banner.
    pub banner: String,
    /// Settings, `$n=v`, replacing the defaults where given.
    pub settings: Vec<(u16, f64)>,
    /// Starts locked in alarm, as a machine with homing enabled does at power-up.
    pub start_locked: bool,
    /// Machine coordinates as GRBL keeps them: `Some(G54)` puts the work origin at that
    /// machine position (`[-400, -300, 0]`: the lower-left corner of a machine homed to its
    /// positive end); status reports then give `MPos` and `WCO`, `$#` the offset,
    /// `G10 L2/L20 P1` set it, `$H` homes towards the end `$23` says, and soft limits
    /// hold machine space at `-$13x..0`. `None`: machine and work coordinates are one, with
    /// soft limits at `0..$13x`, and no `WCO` is reported.
    pub work_offset: Option<[f64; 3]>,
    /// A `G38.2` probe touches at this machine Z (the top of the work piece, or the plate on
    /// it); `None`: it never touches, and the probe fails with `ALARM:5`.
    pub probe_contact_z: Option<f64>,
    /// Built with `ENABLE_M7` (mist coolant); GRBL 1.1h's default build refuses `M7` with
    /// `error:20`.
    pub mist_coolant: bool,
    /// Faults.
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            rx_buffer: 128,
            planner_blocks: 15,
            time_scale: 1.0,
            line_time: Duration::ZERO,
            banner: "Grbl 1.1h ['$' for help]".into(),
            settings: Vec::new(),
            start_locked: false,
            work_offset: None,
            probe_contact_z: None,
            mist_coolant: false,
            faults: Faults::default(),
        }
    }
}

/// Default settings: a 400 × 300 mm diode laser, laser mode on, soft limits on.
const DEFAULT_SETTINGS: [(u16, f64); 34] = [
    (0, 10.0),
    (1, 25.0),
    (2, 0.0),
    (3, 0.0),
    (4, 0.0),
    (5, 0.0),
    (6, 0.0),
    (10, 1.0),
    (11, 0.010),
    (12, 0.002),
    (13, 0.0),
    (20, 1.0),
    (21, 0.0),
    (22, 1.0),
    (23, 0.0),
    (24, 25.0),
    (25, 500.0),
    (26, 250.0),
    (27, 1.0),
    (30, 1000.0),
    (31, 0.0),
    (32, 1.0),
    (100, 80.0),
    (101, 80.0),
    (102, 250.0),
    (110, 6000.0),
    (111, 6000.0),
    (112, 500.0),
    (120, 1000.0),
    (121, 1000.0),
    (122, 10.0),
    (130, 400.0),
    (131, 300.0),
    (132, 50.0),
];

/// Spindle (laser) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spindle {
    /// M5: off.
    Off,
    /// M3: constant power.
    Constant,
    /// M4: dynamic power (scaled with speed in laser mode).
    Dynamic,
}

/// One thing the virtual GRBL did, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A line taken from the receive buffer, as received.
    Line(String),
    /// A real-time byte acted on.
    Realtime(Realtime),
    /// A soft reset (or a spontaneous restart) completed; the laser is off.
    Reset,
    /// The laser output changed: on with this `S`, or off.
    Laser {
        /// Whether it emits.
        on: bool,
        /// `S` while on.
        power: f64,
    },
    /// The coolant outputs changed.
    Coolant {
        /// `M8`.
        flood: bool,
        /// `M7`.
        mist: bool,
    },
    /// `ALARM:N` raised.
    Alarm(u8),
    /// Bytes lost because the receive buffer was full.
    Overflow(usize),
    /// The link was closed by a fault.
    Disconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Run,
    Hold,
    Alarm,
    Check,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    target: [f64; 3],
    remaining: Duration,
    /// Laser power while this block runs; 0 for rapids.
    power: f64,
    /// A `$J=` jog, which the jog cancel byte stops.
    jog: bool,
}

/// The virtual firmware, without I/O.
#[derive(Debug)]
pub struct VirtualGrbl {
    config: SimConfig,
    settings: Vec<(u16, f64)>,
    rx: VecDeque<u8>,
    state: State,
    /// A critical alarm (hard or soft limit): nothing but a reset is heard.
    critical: bool,
    planner: VecDeque<Block>,
    pos: [f64; 3],
    absolute: bool,
    inches: bool,
    /// The G54 work offset when machine coordinates are simulated; `pos` is in work
    /// coordinates, the machine position is `pos + offset`.
    offset: Option<[f64; 3]>,
    motion: u8,
    feed: Option<f64>,
    spindle: Spindle,
    power: f64,
    /// Flood and mist coolant outputs.
    coolant: (bool, bool),
    overrides: [u16; 3],
    laser: (bool, f64),
    lines_taken: u64,
    started: Option<Instant>,
    last_tick: Option<Instant>,
    busy_until: Option<Instant>,
    alarm_fired: bool,
    disconnected: bool,
    /// Frozen in `Run` by the stall fault.
    stalled: bool,
    out: Vec<u8>,
    records: Vec<Record>,
}

impl VirtualGrbl {
    /// A machine just powered on; it prints its banner on the first [`tick`](Self::tick).
    pub fn new(config: SimConfig) -> Self {
        let mut settings: Vec<(u16, f64)> = DEFAULT_SETTINGS.to_vec();
        for (n, v) in &config.settings {
            match settings.iter_mut().find(|(k, _)| k == n) {
                Some(s) => s.1 = *v,
                None => settings.push((*n, *v)),
            }
        }
        settings.sort_by_key(|(k, _)| *k);
        let state = if config.start_locked {
            State::Alarm
        } else {
            State::Idle
        };
        VirtualGrbl {
            offset: config.work_offset,
            config,
            settings,
            rx: VecDeque::new(),
            state,
            critical: false,
            planner: VecDeque::new(),
            pos: [0.0; 3],
            absolute: true,
            inches: false,
            motion: 0,
            feed: None,
            spindle: Spindle::Off,
            power: 0.0,
            coolant: (false, false),
            overrides: [100; 3],
            laser: (false, 0.0),
            lines_taken: 0,
            started: None,
            last_tick: None,
            busy_until: None,
            alarm_fired: false,
            disconnected: false,
            stalled: false,
            out: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Everything done so far, in order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Whether the laser emits now.
    pub fn laser_on(&self) -> bool {
        self.laser.0
    }

    /// The head's position (end of the last finished block).
    pub fn position(&self) -> [f64; 3] {
        self.pos
    }

    /// Whether a fault closed the link.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    /// Whether the machine is locked in alarm.
    pub fn is_alarmed(&self) -> bool {
        self.state == State::Alarm
    }

    /// Setting `$n`.
    pub fn setting(&self, n: u16) -> Option<f64> {
        self.settings.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
    }

    /// Bytes to send to the host, emptied.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn say(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn laser_mode(&self) -> bool {
        self.setting(32).is_some_and(|v| v != 0.0)
    }

    fn is_v09(&self) -> bool {
        self.config.banner.starts_with("Grbl 0.9")
    }

    /// When [`tick`](Self::tick) must next run, if anything is pending.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.disconnected {
            return None;
        }
        let mut d: Option<Instant> = None;
        let mut add = |t: Instant| d = Some(d.map_or(t, |d| d.min(t)));
        if self.started.is_none() {
            add(now);
        }
        if let Some(start) = self.started {
            if let (Some((t, _)), false) = (self.config.faults.alarm_at, self.alarm_fired)
                && let Some(at) = start.checked_add(t)
            {
                add(at);
            }
            if let Some(at) = self
                .config
                .faults
                .disconnect_at
                .and_then(|t| start.checked_add(t))
            {
                add(at);
            }
        }
        if self.stalled {
            // Frozen: nothing moves and nothing is read until a reset arrives.
            return d;
        }
        if self.state == State::Run
            && let Some(b) = self.planner.front()
        {
            add(now + b.remaining);
        }
        // A line waiting for planner room wakes with the end of the running block instead.
        if !self.critical
            && self.planner.len() < self.config.planner_blocks
            && self.rx.contains(&b'\n')
        {
            add(self.busy_until.map_or(now, |b| b.max(now)));
        }
        d
    }

    /// Takes bytes from the link. Real-time bytes act at once; others go to the receive
    /// buffer, and what does not fit is lost.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.disconnected {
            return;
        }
        if self.started.is_some() {
            self.advance(now);
        }
        let mut lost = 0;
        for &b in bytes {
            if let Some(r) = Realtime::from_byte(b) {
                self.realtime(r, now);
            } else if self.rx.len() < self.config.rx_buffer {
                self.rx.push_back(b);
            } else {
                lost += 1;
            }
        }
        if lost > 0 {
            self.records.push(Record::Overflow(lost));
        }
    }

    fn realtime(&mut self, r: Realtime, now: Instant) {
        if r != Realtime::StatusQuery {
            self.records.push(Record::Realtime(r));
        }
        match r {
            Realtime::StatusQuery => self.status_report(),
            Realtime::FeedHold => {
                if matches!(self.state, State::Run | State::Idle) {
                    self.state = State::Hold;
                }
            }
            Realtime::CycleStart => {
                if self.state == State::Hold {
                    self.state = if self.planner.is_empty() {
                        State::Idle
                    } else {
                        State::Run
                    };
                }
            }
            Realtime::SoftReset => self.reset(now, false),
            Realtime::FeedReset => self.overrides[0] = 100,
            Realtime::FeedPlus10 => self.overrides[0] = (self.overrides[0] + 10).min(200),
            Realtime::FeedMinus10 => {
                self.overrides[0] = self.overrides[0].saturating_sub(10).max(10)
            }
            Realtime::FeedPlus1 => self.overrides[0] = (self.overrides[0] + 1).min(200),
            Realtime::FeedMinus1 => self.overrides[0] = self.overrides[0].saturating_sub(1).max(10),
            Realtime::RapidFull => self.overrides[1] = 100,
            Realtime::RapidHalf => self.overrides[1] = 50,
            Realtime::RapidQuarter => self.overrides[1] = 25,
            Realtime::PowerReset => self.overrides[2] = 100,
            Realtime::PowerPlus10 => self.overrides[2] = (self.overrides[2] + 10).min(200),
            Realtime::PowerMinus10 => {
                self.overrides[2] = self.overrides[2].saturating_sub(10).max(10)
            }
            Realtime::PowerPlus1 => self.overrides[2] = (self.overrides[2] + 1).min(200),
            Realtime::PowerMinus1 => {
                self.overrides[2] = self.overrides[2].saturating_sub(1).max(10)
            }
            Realtime::JogCancel => {
                // Stops a jog where it is (the sim has no deceleration: at the end of the
                // block in progress) and drops the jogs queued; any other motion goes on.
                if self.state == State::Run && self.planner.front().is_some_and(|b| b.jog) {
                    self.planner.retain(|b| !b.jog);
                    if self.planner.is_empty() {
                        self.state = State::Idle;
                    }
                }
            }
            Realtime::SafetyDoor | Realtime::SpindleStop => {}
        }
        self.update_laser();
    }

    /// The machine position of a work position.
    fn machine(&self, p: [f64; 3]) -> [f64; 3] {
        let o = self.offset.unwrap_or([0.0; 3]);
        [p[0] + o[0], p[1] + o[1], p[2] + o[2]]
    }

    fn status_report(&mut self) {
        let w = self.pos;
        let p = self.machine(w);
        let jogging = self.planner.front().is_some_and(|b| b.jog);
        let state = match self.state {
            State::Idle => "Idle",
            State::Run if jogging => "Jog",
            State::Run => "Run",
            State::Hold => "Hold:0",
            State::Alarm => "Alarm",
            State::Check => "Check",
        };
        let line = if self.is_v09() {
            let state = state.trim_end_matches(":0");
            format!(
                "<{state},MPos:{:.3},{:.3},{:.3},WPos:{:.3},{:.3},{:.3}>",
                p[0], p[1], p[2], w[0], w[1], w[2]
            )
        } else {
            let blocks_free = self
                .config
                .planner_blocks
                .saturating_sub(self.planner.len());
            let rx_free = self.config.rx_buffer.saturating_sub(self.rx.len());
            let feed = self.feed.unwrap_or(0.0);
            let [fo, ro, so] = self.overrides;
            // GRBL sends WCO every 10 to 30 reports; this one in each.
            let wco = self.offset.map_or(String::new(), |o| {
                format!("|WCO:{:.3},{:.3},{:.3}", o[0], o[1], o[2])
            });
            format!(
                "<{state}|MPos:{:.3},{:.3},{:.3}|FS:{feed:.0},{:.0}|Bf:{blocks_free},{rx_free}|Ov:{fo},{ro},{so}{wco}>",
                p[0], p[1], p[2], self.laser.1
            )
        };
        self.say(&line);
    }

    /// A soft reset (`spontaneous` = a brown-out or a glitch: same effect, no request).
    fn reset(&mut self, _now: Instant, spontaneous: bool) {
        self.stalled = false;
        // A reset while moving loses steps: GRBL raises ALARM:3 and stays locked.
        let moving = self.state == State::Run && !self.planner.is_empty();
        if moving && !spontaneous {
            self.say("ALARM:3");
            self.records.push(Record::Alarm(3));
        }
        let locked = moving || self.state == State::Alarm;
        self.rx.clear();
        self.planner.clear();
        self.critical = false;
        self.spindle = Spindle::Off;
        self.power = 0.0;
        self.set_coolant((false, false));
        self.motion = 0;
        self.absolute = true;
        self.inches = false;
        self.overrides = [100; 3];
        self.busy_until = None;
        self.state = if locked { State::Alarm } else { State::Idle };
        self.update_laser();
        self.records.push(Record::Reset);
        self.out.extend_from_slice(b"\r\n");
        let banner = self.config.banner.clone();
        self.say(&banner);
        if locked {
            self.say("[MSG:'$H'|'$X' to unlock]");
        }
    }

    fn raise_alarm(&mut self, code: u8) {
        // Critical alarms: motion stops dead, the laser goes off, the buffers are dropped
        // and nothing but a reset is heard (`grbl/protocol.c`).
        self.planner.clear();
        self.rx.clear();
        self.state = State::Alarm;
        self.critical = code <= 2;
        self.update_laser();
        self.say(&format!("ALARM:{code}"));
        self.records.push(Record::Alarm(code));
        if self.critical {
            self.say("[MSG:Reset to continue]");
        }
    }

    fn update_laser(&mut self) {
        let running = self.state == State::Run && !self.planner.is_empty();
        let now_on = if self.laser_mode() {
            // Laser mode: power only while a cutting block runs; off at rest and in a hold.
            running && self.planner.front().is_some_and(|b| b.power > 0.0)
        } else {
            // Spindle semantics: M3/M4 with S>0 is on, moving or not (which is why a laser
            // job needs $32=1).
            // Check mode parses without firing (`spindle_sync` returns in STATE_CHECK_MODE).
            self.spindle != Spindle::Off
                && self.power > 0.0
                && !matches!(self.state, State::Alarm | State::Check)
        };
        let power = if now_on {
            if self.laser_mode() {
                self.planner.front().map_or(0.0, |b| b.power)
            } else {
                self.power
            }
        } else {
            0.0
        };
        if (now_on, power) != self.laser {
            self.laser = (now_on, power);
            self.records.push(Record::Laser { on: now_on, power });
        }
    }

    /// Runs the machine up to `now`: faults, motion, then lines from the receive buffer.
    pub fn tick(&mut self, now: Instant) {
        if self.disconnected {
            return;
        }
        let start = *self.started.get_or_insert_with(|| {
            self.out.extend_from_slice(b"\r\n");
            let banner = self.config.banner.clone();
            self.out.extend_from_slice(banner.as_bytes());
            self.out.extend_from_slice(b"\r\n");
            if self.config.start_locked {
                self.out.extend_from_slice(b"[MSG:'$H'|'$X' to unlock]\r\n");
            }
            now
        });
        if let Some(t) = self.config.faults.disconnect_at
            && start.checked_add(t).is_some_and(|at| now >= at)
        {
            self.disconnect();
            return;
        }
        if let (Some((t, code)), false) = (self.config.faults.alarm_at, self.alarm_fired)
            && start.checked_add(t).is_some_and(|at| now >= at)
        {
            self.alarm_fired = true;
            self.raise_alarm(code);
        }
        self.advance(now);
        while !self.critical && !self.disconnected && !self.stalled {
            if self.busy_until.is_some_and(|b| now < b) {
                break;
            }
            let Some(end) = self.rx.iter().position(|b| *b == b'\n') else {
                break;
            };
            let raw: Vec<u8> = self.rx.iter().take(end).copied().collect();
            let text = clean_line(&String::from_utf8_lossy(&raw));
            // GRBL waits, with the line still in its buffer, while the planner is full; and,
            // out of laser mode, until it is empty before it changes the spindle or the
            // coolant (`spindle_sync`, `coolant_sync` in grbl 1.1h).
            if self.planner.len() >= self.config.planner_blocks && self.would_move(&text)
                || !self.planner.is_empty() && self.synchronizes(&text)
            {
                break;
            }
            self.rx.drain(..=end);
            self.busy_until = Some(now + self.config.line_time);
            self.take_line(&String::from_utf8_lossy(&raw), &text, now);
        }
        if self.state == State::Idle && !self.planner.is_empty() {
            self.state = State::Run;
        }
        self.update_laser();
    }

    /// Runs the moves in the planner up to `now`.
    fn advance(&mut self, now: Instant) {
        let mut dt = now.saturating_duration_since(self.last_tick.unwrap_or(now));
        self.last_tick = Some(now);
        if self.stalled {
            if self.state == State::Idle {
                self.state = State::Run;
            }
            return;
        }
        while self.state == State::Run {
            let Some(block) = self.planner.front_mut() else {
                self.state = State::Idle;
                break;
            };
            if block.remaining > dt {
                block.remaining -= dt;
                break;
            }
            dt -= block.remaining;
            self.pos = block.target;
            self.planner.pop_front();
            self.update_laser();
        }
        if self.state == State::Run && self.planner.is_empty() {
            self.state = State::Idle;
        }
        self.update_laser();
    }

    fn disconnect(&mut self) {
        self.disconnected = true;
        self.planner.clear();
        self.state = State::Idle;
        self.update_laser();
        self.records.push(Record::Disconnected);
    }

    fn would_move(&self, text: &str) -> bool {
        if self.state == State::Check || text.starts_with('$') && !text.starts_with("$J=") {
            return false;
        }
        parse_words(text.trim_start_matches("$J="))
            .is_ok_and(|w| w.iter().any(|w| matches!(w.letter, 'X' | 'Y' | 'Z')))
    }

    /// Whether a line changes the spindle or the coolant, which a spindle (not a laser)
    /// does only once the moves before it are done.
    fn synchronizes(&self, text: &str) -> bool {
        if self.laser_mode() || self.state == State::Check || text.starts_with('$') {
            return false;
        }
        parse_words(text).is_ok_and(|words| {
            words.iter().any(|w| {
                (w.letter == 'M' && matches!(w.value.round() as i64, 3 | 4 | 5 | 7 | 8 | 9))
                    || (w.letter == 'S' && self.spindle != Spindle::Off)
            })
        })
    }

    fn set_coolant(&mut self, coolant: (bool, bool)) {
        if coolant != self.coolant {
            self.coolant = coolant;
            self.records.push(Record::Coolant {
                flood: coolant.0,
                mist: coolant.1,
            });
        }
    }

    fn take_line(&mut self, raw: &str, text: &str, now: Instant) {
        self.records
            .push(Record::Line(raw.trim_end_matches('\r').to_string()));
        self.lines_taken += 1;
        let n = self.lines_taken;
        let f = self.config.faults.clone();
        if f.disconnect_on_line == Some(n) {
            self.disconnect();
            return;
        }
        if f.reset_on_line == Some(n) {
            self.reset(now, true);
            return;
        }
        if f.stall_on_line == Some(n) {
            self.stalled = true;
            self.state = State::Run;
        }
        if f.hold_on_line == Some(n) {
            self.state = State::Hold;
        }
        if let Some((line, code)) = f.error_on_line
            && line == n
        {
            self.say(&format!("error:{code}"));
            return;
        }
        let reply = if text.is_empty() {
            Ok(())
        } else if text.len() > MAX_LINE_CHARS {
            Err(11)
        } else if let Some(cmd) = text.strip_prefix('$') {
            self.system(cmd, now)
        } else if self.state == State::Alarm {
            Err(9)
        } else {
            self.gcode(text)
        };
        if self.critical || f.drop_ok_on_line == Some(n) {
            return; // a critical alarm answers nothing more; a dropped ok is the fault
        }
        match reply {
            Ok(()) => self.say("ok"),
            Err(0) => {} // answered already (leaving check mode)
            Err(code) => self.say(&format!("error:{code}")),
        }
    }

    /// A `$` command (`cmd` is what follows the `$`). `Err(0)` means "already answered".
    fn system(&mut self, cmd: &str, now: Instant) -> Result<(), u8> {
        match cmd {
            "" => {
                self.say("[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]");
                Ok(())
            }
            "$" => {
                // GRBL 0.9 has no $30-$32 (no laser mode) and prints a description after
                // each value.
                let v09 = self.is_v09();
                let lines: Vec<String> = self
                    .settings
                    .iter()
                    .filter(|(n, _)| !(v09 && (30..=32).contains(n)))
                    .map(|(n, v)| {
                        if v09 {
                            format!("${n}={v:.3} (setting)")
                        } else {
                            format!("${n}={v:.3}")
                        }
                    })
                    .collect();
                for l in lines {
                    self.say(&l);
                }
                Ok(())
            }
            _ => self.system_other(cmd, now),
        }
    }

    fn system_other(&mut self, cmd: &str, now: Instant) -> Result<(), u8> {
        match cmd {
            "C" => match self.state {
                State::Check => {
                    // Leaving check mode resets, as GRBL does (`grbl/system.c`).
                    self.say("[MSG:Disabled]");
                    self.say("ok");
                    self.state = State::Idle;
                    self.reset(now, false);
                    self.rx.clear();
                    Err(0)
                }
                State::Idle => {
                    self.state = State::Check;
                    self.say("[MSG:Enabled]");
                    Ok(())
                }
                _ => Err(8),
            },
            "X" => {
                if self.state == State::Alarm {
                    self.state = State::Idle;
                    self.say("[MSG:Caution: Unlocked]");
                }
                Ok(())
            }
            "H" => {
                if self.setting(22).is_none_or(|v| v == 0.0) {
                    return Err(5);
                }
                if !matches!(self.state, State::Idle | State::Alarm) {
                    return Err(8);
                }
                self.pos = [0.0; 3];
                if let Some(o) = self.offset {
                    // Homed to the end `$23` says (a set bit: the negative end); GRBL gives
                    // the homed corner 0 or -travel, so machine space stays negative.
                    let mask = self.setting(23).unwrap_or(0.0) as u32;
                    self.pos = [0u16, 1, 2].map(|a| {
                        let travel = self.setting(130 + a).unwrap_or(0.0);
                        let home = if mask & (1 << a) != 0 { -travel } else { 0.0 };
                        home - o[usize::from(a)]
                    });
                }
                self.state = State::Idle;
                Ok(())
            }
            "G" => {
                let m = match self.spindle {
                    Spindle::Off => "M5",
                    Spindle::Constant => "M3",
                    Spindle::Dynamic => "M4",
                };
                let g = if self.absolute { "G90" } else { "G91" };
                let u = if self.inches { "G20" } else { "G21" };
                let line = format!(
                    "[GC:G{} G54 G17 {u} {g} G94 {m} M9 T0 F{} S{}]",
                    self.motion,
                    self.feed.unwrap_or(0.0),
                    self.power
                );
                self.say(&line);
                Ok(())
            }
            "I" => {
                self.say("[VER:1.1h.20190825:Fabrique virtual GRBL]");
                let opt = format!(
                    "[OPT:V,{},{}]",
                    self.config.planner_blocks, self.config.rx_buffer
                );
                self.say(&opt);
                Ok(())
            }
            "#" => {
                let o = self.offset.unwrap_or([0.0; 3]);
                let g54 = format!("[G54:{:.3},{:.3},{:.3}]", o[0], o[1], o[2]);
                self.say(&g54);
                self.say("[G92:0.000,0.000,0.000]");
                Ok(())
            }
            _ if cmd.starts_with("J=") => {
                // Jogs queue behind jogs, as GRBL lets a sender stream them.
                let jogging = self.state == State::Run && self.planner.iter().all(|b| b.jog);
                if self.state != State::Idle && !jogging {
                    return Err(8);
                }
                let planned = self.planner.len();
                // A jog past the soft limits is refused (`error:15`), not an alarm.
                if self.setting(20).is_some_and(|v| v != 0.0) && self.jog_leaves_travel(&cmd[2..]) {
                    return Err(15);
                }
                // A jog's G90/G91, G20/G21 and feed are its own: the parser state stays.
                let modal = (self.absolute, self.inches, self.motion, self.feed);
                let jogged = self.gcode(&format!("G1{}", &cmd[2..]));
                (self.absolute, self.inches, self.motion, self.feed) = modal;
                jogged?;
                // GRBL keeps the spindle as it is during a jog: a laser left on fires.
                for block in self.planner.iter_mut().skip(planned) {
                    block.jog = true;
                }
                Ok(())
            }
            _ => {
                let Some((n, v)) = cmd.split_once('=') else {
                    return Err(3);
                };
                let n: u16 = n.parse().map_err(|_| 3u8)?;
                let v: f64 = v.parse().map_err(|_| 2u8)?;
                if !matches!(self.state, State::Idle | State::Alarm) {
                    return Err(8);
                }
                if v < 0.0 {
                    return Err(4);
                }
                match self.settings.iter_mut().find(|(k, _)| *k == n) {
                    Some(s) => s.1 = v,
                    None => return Err(3),
                }
                Ok(())
            }
        }
    }

    fn gcode(&mut self, text: &str) -> Result<(), u8> {
        let words = parse_words(text).map_err(|e| e.code())?;
        let mut motion = None;
        let mut target: [Option<f64>; 3] = [None; 3];
        let mut seen = Vec::new();
        let mut absolute = self.absolute;
        let mut inches = self.inches;
        let mut spindle = None;
        let mut coolant = None;
        let mut dwell = false;
        let mut feed = None;
        let mut power = None;
        let mut non_modal_axis = false;
        let mut g10 = false;
        let mut probe = false;
        let (mut l_word, mut p_word, mut p_seconds) = (None, None, None);
        for Word { letter, value } in &words {
            let letter = *letter;
            if letter != 'G' && letter != 'M' {
                if seen.contains(&letter) {
                    return Err(25);
                }
                seen.push(letter);
            }
            match letter {
                'G' => {
                    let code = (value * 10.0).round() as i64;
                    match code {
                        0 | 10 | 20 | 30 => {
                            if motion.is_some() {
                                return Err(21);
                            }
                            motion = Some((code / 10) as u8);
                        }
                        200 => inches = true,
                        210 => inches = false,
                        900 => absolute = true,
                        910 => absolute = false,
                        40 => dwell = true,
                        170 | 180 | 190 | 940 | 540 | 550 | 560 | 570 | 580 | 590 | 800 | 911
                        | 921 | 490 | 430 | 491 => {}
                        100 => {
                            g10 = true;
                            non_modal_axis = true;
                        }
                        280 | 300 | 530 | 920 | 281 | 301 => non_modal_axis = true,
                        382 => probe = true,
                        _ => return Err(20),
                    }
                }
                'M' => match value.round() as i64 {
                    3 => spindle = Some(Spindle::Constant),
                    4 => spindle = Some(Spindle::Dynamic),
                    5 | 2 | 30 => {
                        spindle = Some(Spindle::Off);
                        if *value != 5.0 {
                            coolant = Some((false, false));
                        }
                    }
                    7 if self.config.mist_coolant => {
                        coolant = Some((coolant.unwrap_or(self.coolant).0, true));
                    }
                    8 => coolant = Some((true, coolant.unwrap_or(self.coolant).1)),
                    9 => coolant = Some((false, false)),
                    0 | 1 => {}
                    _ => return Err(20),
                },
                'X' => target[0] = Some(*value),
                'Y' => target[1] = Some(*value),
                'Z' => target[2] = Some(*value),
                'F' => feed = Some(*value),
                'S' => {
                    if *value < 0.0 {
                        return Err(4);
                    }
                    power = Some(*value);
                }
                'L' => l_word = Some(value.round() as i64),
                'P' => {
                    p_word = Some(value.round() as i64);
                    p_seconds = Some(*value);
                }
                'I' | 'J' | 'K' | 'R' | 'N' | 'T' => {}
                _ => return Err(20),
            }
        }
        let has_axis = target.iter().any(Option::is_some);
        if g10 {
            return self.set_work_offset(l_word, p_word, target);
        }
        if probe {
            return self.probe_z(target[2], absolute, inches, feed.or(self.feed));
        }
        let motion = motion.unwrap_or(self.motion);
        let new_feed = feed.or(self.feed);
        if has_axis && !non_modal_axis && motion != 0 && new_feed.is_none_or(|f| f <= 0.0) {
            return Err(22);
        }
        let scale = if inches { 25.4 } else { 1.0 };
        let mut dest = self.planned_end();
        for a in 0..3 {
            if let Some(v) = target[a] {
                dest[a] = if absolute {
                    v * scale
                } else {
                    dest[a] + v * scale
                };
            }
        }
        if has_axis && !non_modal_axis && self.soft_limited(dest) {
            self.raise_alarm(2);
            return Err(0);
        }
        // The line is good: commit its modal state.
        self.absolute = absolute;
        self.inches = inches;
        self.motion = motion;
        self.feed = new_feed;
        if let Some(p) = power {
            self.power = p;
        }
        if let Some(s) = spindle {
            self.spindle = s;
        }
        if let Some(c) = coolant.filter(|_| self.state != State::Check) {
            self.set_coolant(c);
        }
        if dwell && self.state != State::Check {
            // G4 P seconds: a block that holds the planner where the head stands.
            let secs = p_seconds.unwrap_or(0.0).max(0.0) * self.config.time_scale;
            self.planner.push_back(Block {
                target: self.planned_end(),
                remaining: Duration::from_secs_f64(secs.min(86_400.0)),
                power: 0.0,
                jog: false,
            });
            self.update_laser();
            return Ok(());
        }
        if !has_axis || non_modal_axis || self.state == State::Check {
            if self.state == State::Check && has_axis {
                self.pos = dest;
            }
            self.update_laser();
            return Ok(());
        }
        let start = self.planned_end();
        let dist = ((dest[0] - start[0]).powi(2)
            + (dest[1] - start[1]).powi(2)
            + (dest[2] - start[2]).powi(2))
        .sqrt();
        let rate = if motion == 0 {
            let max = self
                .setting(110)
                .unwrap_or(6000.0)
                .min(self.setting(111).unwrap_or(6000.0));
            max * f64::from(self.overrides[1]) / 100.0
        } else {
            new_feed.unwrap_or(1.0) * f64::from(self.overrides[0]) / 100.0
        };
        let secs = if rate > 0.0 { dist / rate * 60.0 } else { 0.0 };
        // Absurd feeds or distances (F0.0000001, 70-digit numbers) must not overflow.
        let secs = secs * self.config.time_scale;
        let secs = if secs.is_finite() {
            secs.clamp(0.0, 86_400.0)
        } else {
            0.0
        };
        let fires = motion != 0 && self.spindle != Spindle::Off;
        let block_power = if fires {
            (self.power * f64::from(self.overrides[2]) / 100.0)
                .min(self.setting(30).unwrap_or(1000.0))
        } else {
            0.0
        };
        self.planner.push_back(Block {
            target: dest,
            remaining: Duration::from_secs_f64(secs),
            power: block_power,
            jog: false,
        });
        if self.state == State::Idle {
            self.state = State::Run;
        }
        self.update_laser();
        Ok(())
    }

    /// `G10 L2 P1` (the G54 offset itself) or `G10 L20 P1` (the offset that makes the
    /// current position the given work coordinates), for the axes given. Only G54 (`P0` or
    /// `P1`) is simulated; nothing moves.
    fn set_work_offset(
        &mut self,
        l: Option<i64>,
        p: Option<i64>,
        target: [Option<f64>; 3],
    ) -> Result<(), u8> {
        let Some(mut offset) = self.offset else {
            return Ok(());
        };
        if !matches!(p, Some(0 | 1)) {
            return Err(29);
        }
        let old = offset;
        // GRBL takes the position where the moves already planned end.
        let machine = self.machine(self.planned_end());
        for (a, v) in target.iter().enumerate() {
            let Some(v) = v else { continue };
            offset[a] = match l {
                Some(2) => *v,
                Some(20) => machine[a] - v,
                _ => return Err(20),
            };
        }
        self.offset = Some(offset);
        // Positions are kept in work coordinates: move them to the new frame, so that the
        // machine positions, planned or reached, stay where they are.
        let shift = |p: [f64; 3]| [0, 1, 2].map(|a| p[a] + old[a] - offset[a]);
        self.pos = shift(self.pos);
        for block in &mut self.planner {
            block.target = shift(block.target);
        }
        Ok(())
    }

    /// `G38.2` along Z, instantly: the head stops where the probe touches and GRBL reports
    /// `[PRB:x,y,z:1]`; without a contact on the way, `ALARM:5`, `[PRB:...:0]`, then `ok`. The
    /// parser's modes are those of the line (GRBL keeps its G91 after it, as here).
    fn probe_z(
        &mut self,
        z: Option<f64>,
        absolute: bool,
        inches: bool,
        feed: Option<f64>,
    ) -> Result<(), u8> {
        let Some(z) = z else {
            return Err(26);
        };
        if feed.is_none_or(|f| f <= 0.0) {
            return Err(22);
        }
        self.absolute = absolute;
        self.inches = inches;
        self.feed = feed;
        let scale = if inches { 25.4 } else { 1.0 };
        let start = self.planned_end();
        let target = if absolute {
            z * scale
        } else {
            start[2] + z * scale
        };
        let machine = self.machine(start);
        let offset = machine[2] - start[2];
        let (low, high) = (target.min(start[2]), target.max(start[2]));
        let touch = self
            .config
            .probe_contact_z
            .map(|m| m - offset)
            .filter(|w| (low..=high).contains(w));
        let report = |p: [f64; 3], ok: u8, sim: &Self| {
            let m = sim.machine(p);
            format!("[PRB:{:.3},{:.3},{:.3}:{ok}]", m[0], m[1], m[2])
        };
        match touch {
            Some(w) => {
                self.pos = [start[0], start[1], w];
                let line = report(self.pos, 1, self);
                self.say(&line);
                Ok(())
            }
            None => {
                self.pos = [start[0], start[1], target];
                let line = report(self.pos, 0, self);
                // Not a critical alarm: GRBL still answers the line.
                self.raise_alarm(5);
                self.say(&line);
                Ok(())
            }
        }
    }

    fn planned_end(&self) -> [f64; 3] {
        self.planner.back().map_or(self.pos, |b| b.target)
    }

    /// Whether a jog's target leaves the travel (the jog's own `G90`/`G91`, millimetres).
    fn jog_leaves_travel(&self, text: &str) -> bool {
        let Ok(words) = parse_words(text) else {
            return false;
        };
        let relative = words
            .iter()
            .any(|w| w.letter == 'G' && (w.value * 10.0).round() as i64 == 910);
        let mut dest = self.planned_end();
        for w in &words {
            let axis = match w.letter {
                'X' => 0,
                'Y' => 1,
                'Z' => 2,
                _ => continue,
            };
            dest[axis] = if relative {
                dest[axis] + w.value
            } else {
                w.value
            };
        }
        self.soft_limited(dest)
    }

    fn soft_limited(&self, p: [f64; 3]) -> bool {
        if self.setting(20).is_none_or(|v| v == 0.0) {
            return false;
        }
        let t = |n| self.setting(n).unwrap_or(f64::MAX);
        let eps = 1e-6;
        if self.offset.is_some() {
            let m = self.machine(p);
            return (0..3).any(|a| m[a] > eps || m[a] < -t(130 + a as u16) - eps);
        }
        p[0] < -eps
            || p[0] > t(130) + eps
            || p[1] < -eps
            || p[1] > t(131) + eps
            || p[2].abs() > t(132) + eps
    }
}

/// How the link between host and virtual GRBL behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Bits per second; each byte takes 10 bits (8N1). `None`: unlimited.
    pub baud: Option<u32>,
    /// Delay before the host sees what GRBL sends, as a USB-serial adapter's latency
    /// timer and USB frames add.
    pub reply_latency: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            baud: None,
            reply_latency: Duration::ZERO,
        }
    }
}

fn std_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs `sim` over `io` until `stop` is cancelled, the host closes the link, or a fault
/// disconnects it; returns the machine for inspection. Bytes from the host reach the
/// virtual GRBL at `baud / 10` bytes per second; its replies are paced the same way after
/// `reply_latency`. Timing uses tokio's clock, so a paused test clock drives it.
pub async fn serve<S>(
    io: S,
    mut sim: VirtualGrbl,
    link: LinkConfig,
    stop: CancellationToken,
) -> VirtualGrbl
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let byte_time = link
        .baud
        .map(|b| Duration::from_secs_f64(10.0 / f64::from(b.max(1))));
    let mut wire_in: VecDeque<u8> = VecDeque::new();
    let mut in_clock = std_now();
    let mut wire_out: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut out_clock = std_now();
    let mut buf = vec![0u8; 4096];
    let mut host_open = true;
    loop {
        let now = std_now();
        // Bytes finish crossing the wire one byte time apart.
        let mut arrived = Vec::new();
        match byte_time {
            None => arrived.extend(wire_in.drain(..)),
            Some(bt) => {
                while !wire_in.is_empty() && in_clock <= now {
                    if let Some(b) = wire_in.pop_front() {
                        arrived.push(b);
                    }
                    if !wire_in.is_empty() {
                        in_clock += bt;
                    }
                }
            }
        }
        if !arrived.is_empty() {
            sim.receive(&arrived, now);
        }
        sim.tick(now);
        let out = sim.take_output();
        if !out.is_empty() {
            let wire = byte_time.map_or(Duration::ZERO, |bt| bt * out.len() as u32);
            out_clock = out_clock.max(now.checked_add(link.reply_latency).unwrap_or(now)) + wire;
            wire_out.push_back((out_clock, out));
        }
        while wire_out.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, bytes)) = wire_out.pop_front()
                && (wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err())
            {
                return sim;
            }
        }
        if sim.is_disconnected() || !host_open {
            return sim;
        }
        let mut next = sim.next_deadline(now);
        let mut add = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if !wire_in.is_empty() {
            add(in_clock);
        }
        if let Some((due, _)) = wire_out.front() {
            add(*due);
        }
        let sleep_to = next.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        tokio::select! {
            // Stop when asked.
            () = stop.cancelled() => return sim,
            // Wake for the next wire byte, reply, move end or fault.
            () = tokio::time::sleep_until(sleep_to) => {}
            // Bytes from the host join the wire; the first starts crossing now.
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => host_open = false,
                Ok(n) => {
                    let t = std_now();
                    if wire_in.is_empty() {
                        in_clock = in_clock.max(t) + byte_time.unwrap_or(Duration::ZERO);
                    }
                    wire_in.extend(&buf[..n]);
                }
            },
        }
    }
}

/// A pseudo-terminal for the virtual GRBL: the simulator keeps the master side; hosts open
/// the slave side by its path, as they would a USB serial port.
#[derive(Debug)]
pub struct PtyLink {
    master: Option<tokio_serial::SerialStream>,
    /// Kept open so the master never sees a hang-up between two hosts.
    slave: tokio_serial::SerialStream,
    slave_path: PathBuf,
    link_path: Option<PathBuf>,
}

impl PtyLink {
    /// A new pseudo-terminal, in raw mode (no echo, no line editing, control bytes such as
    /// Ctrl-X passed through).
    pub fn open() -> std::io::Result<Self> {
        use tokio_serial::SerialPort as _;
        let (master, slave) =
            tokio_serial::SerialStream::pair().map_err(|e| std::io::Error::other(e.to_string()))?;
        let slave_path = slave
            .name()
            .map(PathBuf::from)
            .ok_or_else(|| std::io::Error::other("the pseudo-terminal has no name"))?;
        Ok(PtyLink {
            master: Some(master),
            slave,
            slave_path,
            link_path: None,
        })
    }

    /// A new pseudo-terminal reachable at `path` (a symbolic link, replaced if it exists).
    pub fn open_at(path: &Path) -> std::io::Result<Self> {
        let mut link = PtyLink::open()?;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(path)?;
        }
        std::os::unix::fs::symlink(&link.slave_path, path)?;
        link.link_path = Some(path.to_path_buf());
        Ok(link)
    }

    /// Takes the simulator's end, to hand to [`serve`]; the link stays reachable while
    /// this value lives.
    pub fn take_master(&mut self) -> Option<tokio_serial::SerialStream> {
        self.master.take()
    }

    /// The path a host opens.
    pub fn path(&self) -> &Path {
        self.link_path.as_deref().unwrap_or(&self.slave_path)
    }

    /// Takes the host's end as an already-open stream (for tests in one process).
    pub fn host_stream(&self) -> std::io::Result<tokio_serial::SerialStream> {
        use tokio_serial::SerialPortBuilderExt as _;
        let _ = &self.slave;
        tokio_serial::new(self.slave_path.to_string_lossy(), 115_200)
            .open_native_async()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Serves `sim` on a new pseudo-terminal reachable at `path` until `stop` is cancelled or a
/// fault disconnects it; hosts may come and go meanwhile, as with a real machine on a USB
/// port. Returns the machine for inspection.
pub async fn serve_at(
    path: &Path,
    sim: VirtualGrbl,
    link: LinkConfig,
    stop: CancellationToken,
) -> std::io::Result<VirtualGrbl> {
    let mut pty = PtyLink::open_at(path)?;
    let master = pty
        .take_master()
        .ok_or_else(|| std::io::Error::other("the pseudo-terminal has no master"))?;
    let sim = serve(master, sim, link, stop).await;
    drop(pty);
    Ok(sim)
}

impl Drop for PtyLink {
    fn drop(&mut self) {
        if let Some(p) = &self.link_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sim: &mut VirtualGrbl, t: Instant, input: &str) -> String {
        sim.receive(input.as_bytes(), t);
        sim.tick(t);
        String::from_utf8_lossy(&sim.take_output()).into_owned()
    }

    #[test]
    fn prints_its_banner_and_settings() {
        let mut sim = VirtualGrbl::new(SimConfig::default());
        let t = Instant::now();
        let out = run(&mut sim, t, "$$\n");
        assert!(out.contains("Grbl 1.1h ['$' for help]"));
        assert!(out.contains("$32=1"));
        assert!(out.trim_end().ends_with("ok"));
    }

    #[test]
    fn bytes_past_the_receive_buffer_are_lost() {
        let mut sim = VirtualGrbl::new(SimConfig::default());
        let t = Instant::now();
        sim.tick(t);
        sim.receive(&[b'G'; 200], t);
        assert_eq!(sim.records().last(), Some(&Record::Overflow(72)));
    }

    #[test]
    fn a_full_planner_holds_lines_back_and_moves_take_time() {
        let mut sim = VirtualGrbl::new(SimConfig::default());
        let t = Instant::now();
        sim.tick(t);
        sim.take_output();
        let mut text = String::from("G1F600M4S500\n");
        for i in 1..=20 {
            text.push_str(&format!("X{i}\n"));
        }
        let out = run(&mut sim, t, &text);
        assert_eq!(out.matches("ok").count(), 16, "1 modal line + 15 blocks");
        assert!(sim.laser_on());
        // Each 1 mm at 600 mm/min takes 100 ms.
        let out = run(&mut sim, t + Duration::from_millis(250), "");
        assert_eq!(out.matches("ok").count(), 2);
        run(&mut sim, t + Duration::from_secs(10), "");
        let out = run(&mut sim, t + Duration::from_secs(20), "?");
        assert!(out.contains("<Idle|MPos:20.000"), "{out}");
        assert!(!sim.laser_on());
    }

    /// Out of laser mode a spindle waits for the moves before it: GRBL synchronises M3,
    /// M5 and the coolant with the planner; a dwell holds it; check mode fires nothing;
    /// the default build has no mist coolant.
    #[test]
    fn a_spindle_changes_only_once_the_moves_before_it_are_done() {
        let mut sim = VirtualGrbl::new(SimConfig {
            settings: vec![(32, 0.0), (30, 24000.0)],
            ..SimConfig::default()
        });
        let t = Instant::now();
        sim.tick(t);
        sim.take_output();
        let out = run(&mut sim, t, "M3S10000\nM8\nG1X10F600\nM5\nM9\n");
        assert_eq!(out.matches("ok").count(), 3, "M5 waits for the move: {out}");
        assert!(sim.laser_on(), "the spindle turns during the move");
        // 10 mm at 600 mm/min: one second.
        let out = run(&mut sim, t + Duration::from_secs(2), "");
        assert_eq!(out.matches("ok").count(), 2, "{out}");
        assert!(!sim.laser_on());
        assert!(sim.records().contains(&Record::Coolant {
            flood: false,
            mist: false
        }));
        // G4 P2: the next line waits two seconds.
        let t = t + Duration::from_secs(3);
        let out = run(&mut sim, t, "G4P2\nM3S100\n");
        assert_eq!(out.matches("ok").count(), 1, "{out}");
        let out = run(&mut sim, t + Duration::from_secs(3), "");
        assert_eq!(out.matches("ok").count(), 1, "{out}");
        let t = t + Duration::from_secs(4);
        assert!(run(&mut sim, t, "M7\n").contains("error:20"));
        let out = run(&mut sim, t, "M5\n$C\nM3S5000\nM8\n");
        assert!(!out.contains("error"), "{out}");
        assert!(!sim.laser_on(), "check mode turns nothing on");
    }

    #[test]
    fn a_move_beyond_the_travel_raises_a_soft_limit_and_locks() {
        let mut sim = VirtualGrbl::new(SimConfig::default());
        let t = Instant::now();
        sim.tick(t);
        let out = run(&mut sim, t, "G0X500\nG0X1\n");
        assert!(out.contains("ALARM:2"));
        assert!(!out.contains("ok"));
        let out = run(&mut sim, t, "\u{18}");
        assert!(out.contains("Grbl 1.1h"));
        let out = run(&mut sim, t, "G0X1\n$X\nG0X1\n");
        assert_eq!(out.matches("error:9").count(), 1);
        assert!(out.contains("Unlocked"));
    }

    #[test]
    fn homing_needs_it_enabled_and_unlock_clears_an_alarm() {
        let mut sim = VirtualGrbl::new(SimConfig {
            start_locked: true,
            ..SimConfig::default()
        });
        let t = Instant::now();
        let out = run(&mut sim, t, "G0X1\n$H\n");
        assert!(out.contains("'$H'|'$X' to unlock"));
        assert!(out.contains("error:9"));
        assert!(out.trim_end().ends_with("ok"));
        assert!(!sim.is_alarmed());
        let mut sim = VirtualGrbl::new(SimConfig {
            settings: vec![(22, 0.0)],
            ..SimConfig::default()
        });
        let out = run(&mut sim, t, "$H\n$X\n");
        assert!(out.contains("error:5"));
    }

    #[test]
    fn absurd_numbers_never_panic() {
        let mut sim = VirtualGrbl::new(SimConfig::default());
        let t = Instant::now();
        let big = "9".repeat(70);
        let out = run(
            &mut sim,
            t,
            &format!("G1X1F0.0000001\nG1X{big}\nG0Y-{big}\n"),
        );
        assert!(out.contains("ok"));
        run(&mut sim, t + Duration::from_secs(100_000), "?");
    }

    #[test]
    fn without_laser_mode_m3_fires_at_rest() {
        let cfg = SimConfig {
            settings: vec![(32, 0.0)],
            ..SimConfig::default()
        };
        let mut sim = VirtualGrbl::new(cfg);
        let t = Instant::now();
        run(&mut sim, t, "M3S100\n");
        assert!(sim.laser_on());
        run(&mut sim, t, "\u{18}");
        assert!(!sim.laser_on());
    }

    #[test]
    fn check_mode_parses_without_moving_and_leaving_it_resets() {
        let mut sim = VirtualGrbl::new(SimConfig::default());
        let t = Instant::now();
        sim.tick(t);
        sim.take_output();
        let out = run(&mut sim, t, "$C\nG1X10F100S500M3\nG5\n$C\n");
        assert_eq!(out.matches("ok").count(), 3, "{out}");
        assert!(out.contains("error:20"));
        assert!(out.contains("[MSG:Disabled]"));
        assert!(out.trim_end().ends_with("['$' for help]"), "{out}");
        assert_eq!(sim.position(), [10.0, 0.0, 0.0]);
        assert!(
            !sim.records()
                .iter()
                .any(|r| matches!(r, Record::Laser { on: true, .. }))
        );
    }
}
