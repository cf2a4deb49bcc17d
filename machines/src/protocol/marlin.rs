//! The Marlin serial protocol as a sans-I/O state machine.
//!
//! Bytes from the printer go in through [`Marlin::receive`], time goes in through
//! [`Marlin::tick`], commands go in through [`Marlin::enqueue`]; bytes to write come out of
//! [`Marlin::poll_transmit`] and events out of [`Marlin::poll_event`]. Nothing here touches a
//! port or a clock: `now` is always passed in, so tests drive it with a virtual clock.
//!
//! # Layout
//!
//! - [`MarlinConfig`]: timeouts, window and history sizes (defaults follow OctoPrint's
//!   serial layer and Marlin's `Configuration_adv.h`).
//! - [`clean_line`], [`checksum`], [`numbered`]: turning a G-code line into what goes on the
//!   wire (`N<n> <cmd>*<xor>`).
//! - [`Marlin`]: handshake, `ok` window, resends, timeouts and nudges, error classification.
//! - [`Event`], [`FailReason`], [`Temperatures`], [`FirmwareInfo`]: what the printer told us.
//!
//! # Accounting
//!
//! Every command we send is numbered and kept in a history, and every numbered line waits
//! in an in-flight list for its `ok`. Marlin answers in order, so each `ok` acknowledges the
//! oldest in-flight line. A `Resend: N` means Marlin dropped line `N` and flushed its receive
//! buffer (`queue.cpp`, `flush_and_request_resend`), so every in-flight line from `N` on is
//! lost and is sent again from the history. The numbering makes duplicates harmless: Marlin
//! refuses a line whose number is not `last + 1` and asks again, so a line is executed
//! exactly once and in order whatever the `ok`s do. The `ok` count only decides the pace.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Timeouts, window and history sizes.
#[derive(Debug, Clone)]
pub struct MarlinConfig {
    /// How long to wait for `start` (or any line) after opening before saying hello anyway;
    /// many boards do not reset when the port opens and say nothing.
    pub handshake_timeout: Duration,
    /// Silence allowed while an answer is owed before the printer is nudged with `M105`.
    /// OctoPrint uses 30 s, and 3 s once `busy:` keepalives were seen.
    pub comm_timeout: Duration,
    /// The shorter timeout used once the firmware was seen sending `busy:` keepalives
    /// (Marlin `HOST_KEEPALIVE_FEATURE`, every 2 s by default).
    pub busy_timeout: Duration,
    /// Silence allowed while a long command (G28, G29, M109, M190, M400, M600, G4...) is the
    /// oldest in flight and the firmware sends no keepalives.
    pub long_command_timeout: Duration,
    /// Nudges without any answer before the link is declared lost.
    pub max_nudges: u32,
    /// How long to wait after `Resend:` for the `ok` some Marlin versions add, when it is not
    /// yet known whether this firmware sends one (OctoPrint `resendOk`, 0.5 s).
    pub resend_ok_grace: Duration,
    /// Quiet time after a `Resend:` when later lines were in flight, so that their tails,
    /// cut by Marlin's receive-buffer flush, arrive and are refused before the line is sent
    /// again (a few line times at 115200 baud).
    pub resend_settle: Duration,
    /// Resend history, in lines. Must be deeper than the window.
    pub history: usize,
    /// Lines in flight declared by the machine profile; `None` means what ADVANCED_OK
    /// reports or, without it, a window that grows while the printer takes every line
    /// (see [`Marlin::window`]).
    pub window_lines: Option<usize>,
    /// The firmware's receive buffer in bytes: never more unacknowledged bytes than this
    /// (Marlin AVR default `RX_BUFFER_SIZE` 128).
    pub rx_buffer: usize,
    /// Consecutive requests for the same line before giving up (OctoPrint: 10).
    pub max_consecutive_resends: u32,
    /// Temperature poll interval when the firmware cannot auto-report.
    pub temperature_interval: Duration,
    /// Auto-report interval asked with `M155 S<n>` when `Cap:AUTOREPORT_TEMP:1`.
    pub autoreport_seconds: u32,
    /// Whether this firmware sends `ok` right after `Resend:`; `None` means learn it.
    pub ok_after_resend: Option<bool>,
}

impl Default for MarlinConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(3),
            comm_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(5),
            long_command_timeout: Duration::from_secs(600),
            max_nudges: 5,
            resend_ok_grace: Duration::from_millis(500),
            resend_settle: Duration::from_millis(30),
            history: 128,
            window_lines: None,
            rx_buffer: 128,
            max_consecutive_resends: 10,
            temperature_interval: Duration::from_secs(5),
            autoreport_seconds: 2,
            ok_after_resend: None,
        }
    }
}

/// Where a command came from: a line of the job file, or the host itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A job line: its 1-based line number in the file and the file offset just after it.
    Job { line: u64, end_offset: u64 },
    /// A command the host added (handshake, scripts, temperature polls).
    Host,
}

/// What the firmware said about itself in its `M115` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareInfo {
    pub name: Option<String>,
    /// `Cap:NAME:0|1` lines, in the order received.
    pub capabilities: Vec<(String, bool)>,
}

impl FirmwareInfo {
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|(name, on)| *on && name == cap)
    }
}

/// A heater's reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub actual: f64,
    pub target: Option<f64>,
}

/// Temperatures from `ok T:`, `M105` answers, `M109`/`M190` waits and `M155` auto-reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Temperatures {
    pub tools: Vec<Reading>,
    pub bed: Option<Reading>,
    pub chamber: Option<Reading>,
}

/// Why a job or a connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// `Error:Printer halted. kill() called!` and other halts.
    Halted(String),
    /// `MAXTEMP triggered`.
    MaxTemp(String),
    /// `MINTEMP triggered`.
    MinTemp(String),
    /// `Thermal Runaway`.
    ThermalRunaway(String),
    /// `Heating failed`.
    HeatingFailed(String),
    /// Any other `Error:` or `!!` line: Marlin stops, so do we.
    FirmwareError(String),
    /// `start` arrived in the middle of a job: the board reset and lost its state.
    PrinterReset,
    /// No answer after every nudge.
    NoAnswer { nudges: u32 },
    /// The firmware asked for a line older than the history.
    ResendOutsideHistory { line: u32 },
    /// The firmware asked for the same line again and again.
    ResendLoop { line: u32, times: u32 },
    /// The firmware never answered the hello.
    HandshakeFailed,
    /// The firmware asked for a line that was never sent: its line counter is not ours, so
    /// nothing it acknowledged can be trusted (a refused `M110`, another host on the port).
    LineOutOfStep { asked: u32, last_sent: u32 },
    /// The last lines were acknowledged only by the answer to a nudge, and the numbered
    /// commands sent to confirm them were not acknowledged either.
    Unconfirmed,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Halted(t) => write!(f, "the printer halted ({t})"),
            Self::MaxTemp(t) => write!(f, "a heater went above its maximum temperature ({t})"),
            Self::MinTemp(t) => write!(
                f,
                "a heater read below its minimum temperature: check the thermistor ({t})"
            ),
            Self::ThermalRunaway(t) => write!(
                f,
                "thermal runaway: a heater did not follow its target, the printer stopped ({t})"
            ),
            Self::HeatingFailed(t) => write!(f, "heating failed ({t})"),
            Self::FirmwareError(t) => write!(f, "the printer reported an error ({t})"),
            Self::PrinterReset => write!(f, "printer reset: it restarted in the middle of the job"),
            Self::NoAnswer { nudges } => {
                write!(
                    f,
                    "the printer stopped answering ({nudges} nudges without answer)"
                )
            }
            Self::ResendOutsideHistory { line } => {
                write!(
                    f,
                    "the printer asked again for line {line}, which is no longer kept"
                )
            }
            Self::ResendLoop { line, times } => {
                write!(
                    f,
                    "the printer asked for line {line} {times} times in a row"
                )
            }
            Self::HandshakeFailed => write!(f, "the printer did not answer the connection hello"),
            Self::LineOutOfStep { asked, last_sent } => write!(
                f,
                "the printer asked for line {asked} but only {last_sent} were sent: its line count is not ours, so what it executed is unknown"
            ),
            Self::Unconfirmed => write!(
                f,
                "the printer did not confirm that it received the last lines of the job"
            ),
        }
    }
}

/// What the protocol tells its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Handshake done: `M110` and `M115` acknowledged.
    Connected(FirmwareInfo),
    /// A command was acknowledged by `ok`.
    Acked(Origin),
    Temperatures(Temperatures),
    /// `//action:<name> <args>` from the firmware (pause, resume, cancel, paused...).
    HostAction(String),
    /// An `M600` filament change was sent to the printer.
    FilamentChange,
    /// `busy:` / `echo:busy:` keepalive.
    Busy(String),
    /// The firmware asked to resend from this line.
    Resend {
        line: u32,
    },
    /// Any other line (`echo:`, warnings, recoverable errors), for the log.
    Message(String),
    /// The printer cannot go on; the job fails.
    Fatal(FailReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `start` or the first line, until this instant.
    Waiting {
        until: Instant,
    },
    /// Hello and `M115` sent, waiting for their answers.
    Handshake,
    Ready,
    /// A fatal error or an emergency stop: nothing more is sent by the window.
    Stopped,
}

#[derive(Debug, Clone)]
struct Queued {
    text: String,
    origin: Origin,
}

#[derive(Debug, Clone)]
struct Sent {
    n: u32,
    wire: Vec<u8>,
    text: String,
    origin: Origin,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    n: u32,
    len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterResend {
    /// Nothing pending.
    No,
    /// The next line, if `ok`, belongs to the `Resend:` and is swallowed.
    Swallow,
    /// Unknown firmware: hold sending until the next line or this instant, then learn.
    Hold { until: Instant, unambiguous: bool },
}

/// The Marlin host protocol. See the module docs.
#[derive(Debug)]
pub struct Marlin {
    cfg: MarlinConfig,
    phase: Phase,
    firmware: FirmwareInfo,
    handshake_lines: u32,
    /// Commands not yet numbered.
    queue: VecDeque<Queued>,
    /// Numbered lines sent (or about to be resent), oldest first.
    history: VecDeque<Sent>,
    /// Line number of the next history entry to (re)send.
    cursor: u32,
    /// Number the next new command gets.
    next_n: u32,
    /// Numbered lines awaiting `ok`, oldest first.
    in_flight: VecDeque<Flight>,
    /// Unnumbered `M105` nudges awaiting their `ok T:`; each remembers the highest line in
    /// flight when it was sent.
    nudges: VecDeque<Option<u32>>,
    nudges_unanswered: u32,
    after_resend: AfterResend,
    settle_until: Option<Instant>,
    ok_after_resend: Option<bool>,
    last_resend: Option<(u32, u32)>,
    /// After a rewind to line `n`: how many more `Resend: n` may still come from the tails
    /// of the lines that were in flight behind it (each raises its own error once Marlin
    /// flushed its buffer in the middle of it). Those are not new requests: `n` is already
    /// being sent again, and rewinding once more would send it twice. Cleared once `n` is
    /// acknowledged.
    stale_resends: Option<(u32, usize)>,
    /// Window learned from ADVANCED_OK (`B` = free command slots).
    advanced_window: Option<usize>,
    /// Without ADVANCED_OK: lines allowed in flight, grown by one after every
    /// [`GROW_AFTER`] lines taken cleanly, halved at the first resend or line error.
    grown: usize,
    clean_acks: u32,
    /// The printer sent an `ok` no line was waiting for: its `ok`s cannot be counted on,
    /// so the grown window stays at one line for the rest of the connection.
    uncounted_ok: bool,
    busy_seen: bool,
    last_answer: Instant,
    next_temperature_poll: Option<Instant>,
    autoreport: bool,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    partial: Vec<u8>,
    highest_acked: i64,
    /// The newest acknowledgement was inferred from the answer to a nudge, not an `ok` that
    /// Marlin prints only after accepting the line's number.
    inferred: bool,
    /// Lines resent so far, for the job's statistics.
    pub resends: u64,
    /// `Resend:` / `rs` requests received so far.
    pub resend_requests: u64,
}

/// Lines taken cleanly before the grown window (no ADVANCED_OK) opens by one more line.
pub const GROW_AFTER: u32 = 8;

/// Bytes of the receive buffer never filled by numbered lines: room for a nudge (`M105`)
/// or an emergency `M112` written outside the window, and the slot a ring buffer keeps
/// empty (Marlin's 128-byte buffer holds 127).
pub const RX_RESERVE: usize = 6;

/// Most lines the grown window reaches; the bytes bound it well before on real files.
const MAX_GROWN: usize = 32;

/// The G-codes that may legitimately keep the firmware silent for long (OctoPrint's
/// `longRunningCommands`).
fn is_long_command(text: &str) -> bool {
    let word = text.split_whitespace().next().unwrap_or("");
    matches!(
        word,
        "G4" | "G28" | "G29" | "G30" | "G32" | "M109" | "M190" | "M191" | "M400" | "M226" | "M600"
    )
}

/// Strip a G-code line of its comment and surrounding blanks; `None` when nothing is left.
///
/// A `;` starts a comment. A `*` is cut too: it would be read by Marlin as the start of a
/// checksum.
pub fn clean_line(line: &str) -> Option<&str> {
    let line = line.split(';').next().unwrap_or("");
    let line = line.split('*').next().unwrap_or("");
    let line = line.trim();
    (!line.is_empty()).then_some(line)
}

/// XOR of every byte, as Marlin computes it over the bytes before `*` (`queue.cpp`).
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// `N<n> <cmd>*<xor>\n`, the form Marlin checks.
pub fn numbered(n: u32, text: &str) -> Vec<u8> {
    let mut line = format!("N{n} {text}").into_bytes();
    let sum = checksum(&line);
    line.extend_from_slice(format!("*{sum}\n").as_bytes());
    line
}

/// Parse a temperature report (`T:210.0 /210.0 B:60.0 /60.0 @:127 B@:0`, `T0:..`, `C:..`).
pub fn parse_temperatures(line: &str) -> Option<Temperatures> {
    // A position report (`X:.. Y:.. Z:.. E:.. Count A:.. B:.. C:..`) is not temperatures.
    if line
        .split_whitespace()
        .any(|w| w.starts_with("X:") || w.starts_with("Count"))
    {
        return None;
    }
    let mut temps = Temperatures::default();
    // Some firmwares (and OctoPrint's virtual printer) write `T:21.30/ 0.00` or `T:21/0`.
    let line = line.replace("/ ", " /").replace('/', " /");
    let mut words = line.split_whitespace().peekable();
    let mut found = false;
    while let Some(word) = words.next() {
        let Some((key, value)) = word.split_once(':') else {
            continue;
        };
        let Ok(actual) = value.parse::<f64>() else {
            continue;
        };
        let target = words
            .peek()
            .and_then(|w| w.strip_prefix('/'))
            .and_then(|t| t.parse::<f64>().ok());
        if target.is_some() {
            words.next();
        }
        let reading = Reading { actual, target };
        match key {
            "T" => {
                if temps.tools.is_empty() {
                    temps.tools.push(reading);
                }
                found = true;
            }
            k if k.len() > 1 && k.starts_with('T') && k[1..].parse::<usize>().is_ok() => {
                let idx = k[1..].parse::<usize>().unwrap_or(0);
                if idx == 0 {
                    temps.tools.clear();
                }
                if temps.tools.len() == idx {
                    temps.tools.push(reading);
                }
                found = true;
            }
            "B" => {
                temps.bed = Some(reading);
                found = true;
            }
            "C" => {
                temps.chamber = Some(reading);
                found = true;
            }
            _ => {}
        }
    }
    found.then_some(temps)
}

/// Classify an `Error:` / `!!` text. `None` for the errors a resend recovers.
fn classify_error(text: &str) -> Option<FailReason> {
    let lower = text.to_ascii_lowercase();
    // Recoverable: Marlin follows these with `Resend:` (queue.cpp `gcode_line_error`).
    const RECOVERABLE: [&str; 8] = [
        "checksum mismatch",
        "line number is not last line number",
        "no checksum with line number",
        "no line number with checksum",
        "missing linenumber",
        "missing checksum",
        "format error",
        "expected line",
    ];
    if RECOVERABLE.iter().any(|r| lower.contains(r)) {
        return None;
    }
    // SD card and unknown-command errors do not stop a streamed job (OctoPrint ignores them).
    if lower.contains("unknown command") || lower.contains("sd card") || lower.contains("sd init") {
        return None;
    }
    let text = text.trim().to_string();
    Some(if lower.contains("thermal runaway") {
        FailReason::ThermalRunaway(text)
    } else if lower.contains("maxtemp") {
        FailReason::MaxTemp(text)
    } else if lower.contains("mintemp") {
        FailReason::MinTemp(text)
    } else if lower.contains("heating failed") {
        FailReason::HeatingFailed(text)
    } else if lower.contains("halted") || lower.contains("kill") {
        FailReason::Halted(text)
    } else {
        FailReason::FirmwareError(text)
    })
}

/// `Resend: 12`, `Resend:12`, `rs N12`, `rs 12`.
fn parse_resend(line: &str) -> Option<u32> {
    let rest = line
        .strip_prefix("Resend:")
        .or_else(|| line.strip_prefix("rs "))?
        .trim();
    let rest = rest.strip_prefix('N').unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Marlin {
    pub fn new(cfg: MarlinConfig, now: Instant) -> Self {
        let ok_after_resend = cfg.ok_after_resend;
        Self {
            phase: Phase::Waiting {
                until: now + cfg.handshake_timeout,
            },
            cfg,
            firmware: FirmwareInfo::default(),
            handshake_lines: 0,
            queue: VecDeque::new(),
            history: VecDeque::new(),
            cursor: 1,
            next_n: 1,
            in_flight: VecDeque::new(),
            nudges: VecDeque::new(),
            nudges_unanswered: 0,
            after_resend: AfterResend::No,
            settle_until: None,
            ok_after_resend,
            last_resend: None,
            stale_resends: None,
            advanced_window: None,
            grown: 1,
            clean_acks: 0,
            uncounted_ok: false,
            busy_seen: false,
            last_answer: now,
            next_temperature_poll: None,
            autoreport: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            partial: Vec::new(),
            highest_acked: -1,
            inferred: false,
            resends: 0,
            resend_requests: 0,
        }
    }

    pub fn firmware(&self) -> &FirmwareInfo {
        &self.firmware
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// Commands waiting to be numbered and sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Nothing queued, nothing to resend and nothing awaiting an `ok`.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.cursor == self.next_n && self.in_flight.is_empty()
    }

    /// Whether the newest acknowledged line was acknowledged by its own `ok` (or named by
    /// ADVANCED_OK), which Marlin prints only once it accepted that line's number, so every
    /// line before it arrived too. `false` when it was inferred from a nudge's answer, which a
    /// line lost on the wire would also get: a numbered command must confirm it.
    pub fn last_ack_proven(&self) -> bool {
        !self.inferred
    }

    /// Lines in flight allowed now: the profile's, or ADVANCED_OK's; otherwise a window
    /// that starts at one line (as OctoPrint sends), grows by one line after every
    /// [`GROW_AFTER`] lines the printer took without a resend or line error, and is halved
    /// at once when one appears. A printer that once sent an `ok` no line was waiting for
    /// (a doubled `ok`) keeps one line in flight: with more, such an `ok` would acknowledge
    /// a line still in its buffer, the bytes in flight would be undercounted and the buffer
    /// overrun. Whatever the window, the bytes in flight never exceed the
    /// receive buffer less [`RX_RESERVE`], so a stock Marlin without ADVANCED_OK keeps its
    /// 128-byte buffer full without losing a byte.
    pub fn window(&self) -> usize {
        self.cfg
            .window_lines
            .or(self.advanced_window)
            .unwrap_or(self.grown)
            .clamp(1, self.cfg.history.saturating_sub(1).max(1))
    }

    /// The firmware refused or lost a line: the grown window is halved.
    fn shrink(&mut self) {
        self.grown = (self.grown / 2).max(1);
        self.clean_acks = 0;
    }

    /// Queue a command. Returns `false` (and queues nothing) when the line is only a comment
    /// or blank.
    pub fn enqueue(&mut self, line: &str, origin: Origin) -> bool {
        match clean_line(line) {
            Some(text) => {
                self.queue.push_back(Queued {
                    text: text.to_string(),
                    origin,
                });
                true
            }
            None => false,
        }
    }

    /// Forget every queued command that was not sent yet (pause, cancel). Lines already
    /// numbered are kept: Marlin may still ask for them again.
    pub fn clear_queue(&mut self) -> Vec<(String, Origin)> {
        self.queue.drain(..).map(|q| (q.text, q.origin)).collect()
    }

    /// `M112` now, outside the window, and stop sending. With `EMERGENCY_PARSER` Marlin acts
    /// on it as soon as it is read; without it, when its line is parsed.
    pub fn emergency_stop(&mut self) {
        self.queue.clear();
        self.phase = Phase::Stopped;
        self.out.push_back(b"M112\n".to_vec());
    }

    /// Write a raw command now, outside numbering and window (used when stopped, to turn
    /// heaters off on a printer whose state is unknown).
    pub fn send_raw(&mut self, text: &str) {
        self.out.push_back(format!("{text}\n").into_bytes());
    }

    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            self.fill(now);
        }
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant at which [`Marlin::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = Vec::new();
        match self.phase {
            Phase::Waiting { until } => deadlines.push(until),
            Phase::Stopped => return None,
            _ => {}
        }
        if let AfterResend::Hold { until, .. } = self.after_resend {
            deadlines.push(until);
        }
        if let Some(t) = self.settle_until {
            deadlines.push(t);
        }
        if self.owes_answer() {
            deadlines.push(self.last_answer + self.current_timeout());
        }
        if let Some(t) = self.next_temperature_poll {
            deadlines.push(t);
        }
        deadlines.into_iter().min()
    }

    fn owes_answer(&self) -> bool {
        !self.in_flight.is_empty() || !self.nudges.is_empty() || self.cursor < self.next_n
    }

    fn current_timeout(&self) -> Duration {
        let oldest_long = self.in_flight.front().is_some_and(|f| {
            self.history
                .iter()
                .find(|s| s.n == f.n)
                .is_some_and(|s| is_long_command(&s.text))
        });
        if oldest_long && !self.busy_seen {
            self.cfg.long_command_timeout
        } else if self.busy_seen || self.autoreport {
            // Keepalives or temperature auto-reports prove the firmware is alive and talking:
            // an `ok` missing for longer than a keepalive period was lost. Those lines never
            // reset this clock (only an `ok`, `busy:` or `Resend:` does).
            self.cfg.busy_timeout
        } else {
            self.cfg.comm_timeout
        }
    }

    /// Let time pass: handshake wait, resend grace, silence nudges, temperature polls.
    pub fn tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Stopped => return,
            Phase::Waiting { until } if now >= until => self.start_handshake(now),
            _ => {}
        }
        if let AfterResend::Hold { until, unambiguous } = self.after_resend
            && now >= until
        {
            // No `ok` came after the `Resend:`: this firmware does not send one.
            if unambiguous {
                self.ok_after_resend = Some(false);
            }
            self.after_resend = AfterResend::No;
        }
        if self.owes_answer() && now >= self.last_answer + self.current_timeout() {
            if self.nudges_unanswered >= self.cfg.max_nudges {
                if self.phase == Phase::Handshake {
                    self.fail(FailReason::HandshakeFailed);
                } else {
                    self.fail(FailReason::NoAnswer {
                        nudges: self.nudges_unanswered,
                    });
                }
                return;
            }
            self.nudge(now);
        }
        if let Some(t) = self.next_temperature_poll
            && now >= t
            && self.phase == Phase::Ready
        {
            self.next_temperature_poll = Some(now + self.cfg.temperature_interval);
            if !self.autoreport {
                self.queue.push_back(Queued {
                    text: "M105".into(),
                    origin: Origin::Host,
                });
            }
        }
    }

    /// Nudge with an unnumbered M105. Its `ok T:` proves every earlier line was processed
    /// (Marlin executes in order), which recovers a lost `ok`; a line lost on the wire is
    /// caught by the numbering of the next numbered line instead.
    fn nudge(&mut self, now: Instant) {
        self.nudges_unanswered += 1;
        self.nudges.push_back(self.in_flight.back().map(|f| f.n));
        self.out.push_back(b"M105\n".to_vec());
        self.last_answer = now;
        tracing::debug!(
            nudge = self.nudges_unanswered,
            "printer silent, nudging with M105"
        );
    }

    fn start_handshake(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Waiting { .. }) {
            return;
        }
        self.phase = Phase::Handshake;
        self.last_answer = now;
        // `M110 N0` makes the line after it number 1 (M110.md); it is numbered itself so it
        // also works on firmwares that insist on checksums.
        self.history.push_back(Sent {
            n: 0,
            wire: numbered(0, "M110 N0"),
            text: "M110 N0".into(),
            origin: Origin::Host,
        });
        self.cursor = 0;
        self.next_n = 1;
        self.queue.push_front(Queued {
            text: "M115".into(),
            origin: Origin::Host,
        });
        self.handshake_lines = 2;
    }

    /// Number queued commands and send what the window allows.
    fn fill(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Waiting { .. } | Phase::Stopped) {
            return;
        }
        if let AfterResend::Hold { .. } = self.after_resend {
            return;
        }
        if let Some(t) = self.settle_until {
            if now < t {
                return;
            }
            self.settle_until = None;
        }
        // After a resend, one line at a time until the requested line is acknowledged.
        let window = if self.last_resend.is_some() {
            1
        } else {
            self.window()
        };
        loop {
            if self.in_flight.len() >= window {
                return;
            }
            if self.cursor == self.next_n {
                // Handshake: hold job lines until `M115` is answered.
                if self.phase == Phase::Handshake && self.handshake_lines == 0 {
                    return;
                }
                if self.phase == Phase::Handshake
                    && self.queue.front().is_none_or(|q| q.text != "M115")
                {
                    return;
                }
                let Some(q) = self.queue.pop_front() else {
                    return;
                };
                let n = self.next_n;
                self.next_n += 1;
                self.history.push_back(Sent {
                    n,
                    wire: numbered(n, &q.text),
                    text: q.text,
                    origin: q.origin,
                });
                while self.history.len() > self.cfg.history {
                    self.history.pop_front();
                }
            }
            let Some(sent) = self.history.iter().find(|s| s.n == self.cursor) else {
                // Cannot happen: the cursor only rewinds to lines found in the history.
                self.cursor = self.next_n;
                return;
            };
            let len = sent.wire.len();
            let bytes_in_flight: usize = self.in_flight.iter().map(|f| f.len).sum();
            let budget = self.cfg.rx_buffer.saturating_sub(RX_RESERVE);
            if !self.in_flight.is_empty() && bytes_in_flight + len > budget {
                return;
            }
            if sent.text.starts_with("M600") {
                self.events.push_back(Event::FilamentChange);
            }
            self.out.push_back(sent.wire.clone());
            self.in_flight.push_back(Flight { n: sent.n, len });
            if self.in_flight.len() == 1 && self.nudges.is_empty() {
                // The answer clock starts when something becomes owed.
                self.last_answer = now;
            }
            self.cursor += 1;
        }
    }

    /// Bytes from the printer.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        self.partial.extend_from_slice(bytes);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.partial.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&raw);
            // Line noise before a message (a reset, a glitch) must not hide an `ok`.
            let line = text
                .trim_start_matches(|c: char| !c.is_ascii_graphic())
                .trim_end();
            if !line.is_empty() {
                self.handle_line(line, now);
            }
        }
        // A line longer than any Marlin message is noise; keep memory bounded.
        if self.partial.len() > 4096 {
            self.partial.clear();
        }
    }

    fn handle_line(&mut self, line: &str, now: Instant) {
        tracing::trace!(target: "fabrique::serial", "<< {line}");
        // Any line proves the link is alive; only an `ok` or `busy:` resets the nudge count.
        let after_resend = self.after_resend;
        if after_resend != AfterResend::No && !line.starts_with("ok") {
            if let AfterResend::Hold {
                unambiguous: true, ..
            } = after_resend
            {
                self.ok_after_resend = Some(false);
            }
            self.after_resend = AfterResend::No;
        }

        if let Phase::Waiting { .. } = self.phase {
            // `start` (or any first line) means the board is listening.
            self.start_handshake(now);
            if line == "start" {
                return;
            }
        }

        if line.starts_with("ok") {
            self.last_answer = now;
            self.nudges_unanswered = 0;
            self.handle_ok(line, after_resend);
            return;
        }
        if line == "start" {
            self.last_answer = now;
            if self.phase == Phase::Ready || self.phase == Phase::Handshake {
                // The board restarted: its line number and buffers are gone (OctoPrint
                // `_on_external_reset`). Never continue blind.
                self.fail(FailReason::PrinterReset);
            }
            return;
        }
        if let Some(n) = parse_resend(line) {
            self.last_answer = now;
            self.handle_resend(n, now);
            return;
        }
        if line == "wait" {
            // Marlin prints `wait` when its command queue is empty and nothing arrived for a
            // while (`NO_TIMEOUTS`): whatever is in flight was lost, or its `ok` was. Nudge at
            // once rather than after the timeout; never take it for an `ok`.
            if self.phase == Phase::Ready && self.nudges.is_empty() && self.owes_answer() {
                self.nudge(now);
            }
            return;
        }
        if line.starts_with("busy:") || line.starts_with("echo:busy") {
            self.last_answer = now;
            self.nudges_unanswered = 0;
            self.busy_seen = true;
            self.events.push_back(Event::Busy(line.to_string()));
            return;
        }
        if let Some(text) = line
            .strip_prefix("Error:")
            .or_else(|| line.strip_prefix("!!"))
        {
            match classify_error(text) {
                Some(reason) => self.fail(reason),
                None => self.events.push_back(Event::Message(line.to_string())),
            }
            return;
        }
        if let Some(action) = line.strip_prefix("//action:") {
            self.events
                .push_back(Event::HostAction(action.trim().to_string()));
            return;
        }
        if self.phase == Phase::Handshake {
            if let Some(rest) = line.strip_prefix("FIRMWARE_NAME:") {
                let name = rest
                    .split(" SOURCE_CODE_URL:")
                    .next()
                    .unwrap_or(rest)
                    .split(" PROTOCOL_VERSION:")
                    .next()
                    .unwrap_or(rest)
                    .trim();
                self.firmware.name = Some(name.to_string());
                return;
            }
            if let Some(rest) = line.strip_prefix("Cap:")
                && let Some((name, value)) = rest.rsplit_once(':')
            {
                self.firmware
                    .capabilities
                    .push((name.trim().to_string(), value.trim() == "1"));
                return;
            }
        }
        if let Some(temps) = parse_temperatures(line)
            && (line.starts_with("T:") || line.starts_with("T0:") || line.starts_with("B:"))
        {
            // Auto-reports and M109/M190 wait reports: alive, not an answer.
            self.events.push_back(Event::Temperatures(temps));
            return;
        }
        self.events.push_back(Event::Message(line.to_string()));
    }

    fn handle_ok(&mut self, line: &str, after_resend: AfterResend) {
        match after_resend {
            AfterResend::Swallow => {
                self.after_resend = AfterResend::No;
                return;
            }
            AfterResend::Hold { unambiguous, .. } => {
                // The `ok` that some Marlin versions print right after `Resend:`.
                if unambiguous {
                    self.ok_after_resend = Some(true);
                }
                self.after_resend = AfterResend::No;
                return;
            }
            AfterResend::No => {}
        }
        let rest = line[2..].trim();
        let temps = parse_temperatures(rest);
        // ADVANCED_OK: `ok N<last line> P<planner free> B<command slots free>`.
        if let Some(b) = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix('B').and_then(|v| v.parse::<usize>().ok()))
            && rest.split_whitespace().any(|w| w.starts_with('P'))
        {
            // Largest free count seen ~ BUFSIZE; keep one slot spare (BufferBuddy, Marlin#16894).
            let window = b.saturating_sub(1).max(1);
            if self.advanced_window.is_none_or(|w| window > w) {
                self.advanced_window = Some(window);
            }
        }
        let advanced = rest.split_whitespace().any(|w| w.starts_with('P'))
            && rest.split_whitespace().any(|w| w.starts_with('B'));
        if temps.is_none() && !advanced && !rest.is_empty() {
            // Output some firmwares put on the `ok` line itself (OctoPrint's virtual printer
            // answers M114 with `ok X:.. Y:..`).
            self.events.push_back(Event::Message(rest.to_string()));
        }
        // ADVANCED_OK names the line it acknowledges (`ok_to_send` prints the command's own
        // `N`): every line up to it was processed, in order. An `ok` naming a line already
        // acknowledged is a doubled or stale one and acknowledges nothing.
        let named = advanced
            .then(|| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix('N').and_then(|v| v.parse::<u32>().ok()))
            })
            .flatten();
        if let Some(temps) = temps.clone() {
            self.events.push_back(Event::Temperatures(temps));
            if let Some(mark) = self.nudges.pop_front() {
                // The answer to a nudge: every line in flight when it was sent was processed,
                // unless it was lost on the wire; only a later numbered line can tell.
                if let Some(mark) = mark.max(named) {
                    let before = self.highest_acked;
                    self.ack_through(mark);
                    if self.highest_acked > before && named != Some(mark) {
                        self.inferred = true;
                    }
                }
                return;
            }
        }
        let before = self.highest_acked;
        match named {
            Some(n) => self.ack_through(n),
            None => self.ack_front(),
        }
        if self.highest_acked > before {
            self.inferred = false;
            if self.phase == Phase::Ready && self.last_resend.is_none() && !self.uncounted_ok {
                self.clean_acks += 1;
                if self.clean_acks >= GROW_AFTER {
                    self.clean_acks = 0;
                    self.grown = (self.grown + 1).min(MAX_GROWN);
                }
            }
        }
    }

    /// Acknowledges every line in flight numbered `n` or less.
    fn ack_through(&mut self, n: u32) {
        while self.in_flight.front().is_some_and(|f| f.n <= n) {
            self.ack_front();
        }
    }

    fn ack_front(&mut self) {
        let Some(flight) = self.in_flight.pop_front() else {
            // An `ok` nobody waits for (a doubled `ok`): it acknowledges nothing, and the
            // printer's `ok`s can no longer be counted on to free room in its buffer.
            if self.phase == Phase::Ready && !self.uncounted_ok {
                tracing::info!("an ok no line waited for: one line in flight from now on");
                self.uncounted_ok = true;
                self.grown = 1;
                self.clean_acks = 0;
            }
            return;
        };
        if let Some((line, _)) = self.last_resend
            && flight.n >= line
        {
            self.last_resend = None;
        }
        if self.stale_resends.is_some_and(|(line, _)| flight.n >= line) {
            self.stale_resends = None;
        }
        let origin = self
            .history
            .iter()
            .find(|s| s.n == flight.n)
            .map(|s| s.origin)
            .unwrap_or(Origin::Host);
        if self.phase == Phase::Handshake {
            self.handshake_lines = self.handshake_lines.saturating_sub(1);
            if self.handshake_lines == 0 {
                self.phase = Phase::Ready;
                self.autoreport = self.firmware.has("AUTOREPORT_TEMP");
                if self.autoreport {
                    // Let the firmware push temperatures (M155) instead of polling.
                    self.queue.push_front(Queued {
                        text: format!("M155 S{}", self.cfg.autoreport_seconds),
                        origin: Origin::Host,
                    });
                }
                self.next_temperature_poll = Some(self.last_answer + self.cfg.temperature_interval);
                self.events
                    .push_back(Event::Connected(self.firmware.clone()));
            }
        }
        // A line acknowledged early by a doubled `ok` and then resent is acknowledged once.
        if i64::from(flight.n) > self.highest_acked {
            self.highest_acked = i64::from(flight.n);
            self.events.push_back(Event::Acked(origin));
        }
    }

    fn handle_resend(&mut self, n: u32, now: Instant) {
        self.events.push_back(Event::Resend { line: n });
        self.resend_requests += 1;
        self.shrink();
        if self.phase == Phase::Stopped {
            return;
        }
        let n = if self.phase == Phase::Handshake && self.highest_acked < 0 {
            // The hello itself was refused (bytes left in the printer's buffer by another
            // program glued to its front, or a checksum error): Marlin asks for its own next
            // line, which says nothing about ours. Send `M110` again until it is taken.
            0
        } else {
            n
        };
        if n >= self.next_n {
            // A line never sent: the printer counts lines differently from us, so its `ok`s
            // cannot be matched to our lines. Never go on blind (and never take it for
            // "everything was accepted": a refused line is answered this way too).
            self.fail(FailReason::LineOutOfStep {
                asked: n,
                last_sent: self.next_n.saturating_sub(1),
            });
            return;
        }
        // Marlin prints `ok` right after `Resend:` (2.x `flush_and_request_resend`); some
        // versions do not. Learn which, and never count that `ok` as an acknowledgement.
        let older_unacked = self.in_flight.iter().any(|f| f.n < n);
        self.after_resend = match self.ok_after_resend {
            Some(true) => AfterResend::Swallow,
            Some(false) => AfterResend::No,
            None => AfterResend::Hold {
                until: now + self.cfg.resend_ok_grace,
                unambiguous: !older_unacked,
            },
        };
        if n > self.cursor {
            // A request for a line not sent yet (we are rewinding already): stale, ignore it.
            return;
        }
        if let Some((line, left)) = self.stale_resends.as_mut()
            && *line == n
            && *left > 0
        {
            *left -= 1;
            return;
        }
        if !self.history.iter().any(|s| s.n == n) {
            self.fail(FailReason::ResendOutsideHistory { line: n });
            return;
        }
        let settling = self.settle_until.is_some_and(|t| now < t);
        // Bytes of later lines may still be on the wire; Marlin flushed its receive buffer
        // in the middle of them, and their tails will each raise another error. Wait for the
        // link to settle before sending line `n` again, or its own head could be flushed by
        // such a tail, again and again. One line in flight never leaves such tails.
        if settling || self.in_flight.iter().any(|f| f.n > n) {
            self.settle_until = Some(now + self.cfg.resend_settle);
        }
        let times = match self.last_resend {
            // Requests raised by those stale tails do not count towards the loop guard.
            Some((line, times)) if line == n && settling => times,
            Some((line, times)) if line == n => times + 1,
            _ => 1,
        };
        if times > self.cfg.max_consecutive_resends {
            self.fail(FailReason::ResendLoop { line: n, times });
            return;
        }
        self.last_resend = Some((n, times));
        // Every line sent after `n` may leave a tail, whether or not an `ok` (a doubled one)
        // seemed to acknowledge it: Marlin just said it took nothing past `n - 1`.
        let tails = self.cursor.saturating_sub(n + 1) as usize;
        self.stale_resends = Some((n, tails));
        // Marlin flushed its receive buffer: every line from `n` on is lost.
        self.in_flight.retain(|f| f.n < n);
        self.resends += u64::from(self.cursor - n);
        self.cursor = n;
    }

    fn fail(&mut self, reason: FailReason) {
        if self.phase == Phase::Stopped {
            return;
        }
        tracing::warn!(%reason, "printer stopped the job");
        self.phase = Phase::Stopped;
        self.queue.clear();
        self.events.push_back(Event::Fatal(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(m: &mut Marlin, now: Instant) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(b) = m.poll_transmit(now) {
            v.push(String::from_utf8(b).unwrap());
        }
        v
    }

    fn connected(now: Instant) -> Marlin {
        let mut m = Marlin::new(MarlinConfig::default(), now);
        m.receive(b"start\n", now);
        assert_eq!(drain(&mut m, now), vec!["N0 M110 N0*125\n"]);
        m.receive(b"ok\n", now);
        assert_eq!(
            drain(&mut m, now),
            vec![String::from_utf8(numbered(1, "M115")).unwrap()]
        );
        m.receive(
            b"FIRMWARE_NAME:Marlin 2.1.2 (Github) SOURCE_CODE_URL:x PROTOCOL_VERSION:1.0\nCap:AUTOREPORT_TEMP:1\nCap:EEPROM:0\nok\n",
            now,
        );
        m
    }

    /// Connected, with `G1 X1` sent as line 3 and awaiting its `ok`.
    fn line_in_flight(now: Instant) -> Marlin {
        let mut m = connected(now);
        drain(&mut m, now);
        m.receive(b"ok\n", now);
        m.enqueue("G1 X1", Origin::Host);
        assert_eq!(
            drain(&mut m, now),
            [String::from_utf8(numbered(3, "G1 X1")).unwrap()]
        );
        m
    }

    #[test]
    fn checksum_is_the_xor_of_the_bytes_before_the_star() {
        assert_eq!(numbered(0, "M110 N0"), b"N0 M110 N0*125\n");
        assert_eq!(checksum(b"N1 G28"), b"N1 G28".iter().fold(0, |a, b| a ^ b));
    }

    #[test]
    fn comments_and_blanks_are_stripped_and_empty_lines_never_queued() {
        assert_eq!(clean_line("G1 X1 ; move"), Some("G1 X1"));
        assert_eq!(clean_line("   ; only a comment"), None);
        assert_eq!(clean_line(""), None);
        assert_eq!(clean_line("M117 hi*12"), Some("M117 hi"));
        let now = Instant::now();
        let mut m = connected(now);
        assert!(!m.enqueue("; nothing", Origin::Host));
    }

    #[test]
    fn handshake_reads_firmware_name_and_capabilities_then_turns_on_autoreport() {
        let now = Instant::now();
        let mut m = connected(now);
        let mut connected_event = None;
        while let Some(e) = m.poll_event() {
            if let Event::Connected(info) = e {
                connected_event = Some(info);
            }
        }
        let info = connected_event.unwrap();
        assert_eq!(info.name.as_deref(), Some("Marlin 2.1.2 (Github)"));
        assert!(info.has("AUTOREPORT_TEMP"));
        assert!(!info.has("EEPROM"));
        assert_eq!(
            drain(&mut m, now),
            vec![String::from_utf8(numbered(2, "M155 S2")).unwrap()]
        );
    }

    #[test]
    fn silent_board_gets_the_hello_after_the_handshake_timeout() {
        let now = Instant::now();
        let mut m = Marlin::new(MarlinConfig::default(), now);
        assert!(drain(&mut m, now).is_empty());
        m.tick(now + Duration::from_secs(3));
        assert_eq!(drain(&mut m, now), vec!["N0 M110 N0*125\n"]);
    }

    #[test]
    fn without_advanced_ok_the_window_starts_at_one_line_grows_and_halves_at_a_resend() {
        let now = Instant::now();
        let mut m = connected(now);
        drain(&mut m, now);
        m.receive(b"ok\n", now);
        for i in 0..200 {
            m.enqueue(&format!("G1 X{i}"), Origin::Host);
        }
        assert_eq!(drain(&mut m, now).len(), 1);
        // Every `ok` lets the next line go; after GROW_AFTER clean ones (the M155 counted),
        // one more is in flight.
        let mut oks = 1;
        while m.window() == 1 {
            assert_eq!(m.in_flight.len(), 1);
            m.receive(b"ok\n", now);
            drain(&mut m, now);
            oks += 1;
        }
        assert!(oks <= GROW_AFTER && m.window() == 2, "{oks} oks");
        assert_eq!(m.in_flight.len(), 2);
        for _ in 0..(GROW_AFTER * 20) {
            m.receive(b"ok\n", now);
            drain(&mut m, now);
        }
        // Bounded by the bytes: `N123 G1 X45*67` lines, never more than the buffer allows.
        let in_flight: usize = m.in_flight.iter().map(|f| f.len).sum();
        assert!(in_flight <= 128 - RX_RESERVE, "{in_flight} bytes in flight");
        assert!(
            m.in_flight.len() >= 6,
            "{} lines in flight",
            m.in_flight.len()
        );
        let wide = m.window();
        let oldest = m.in_flight.front().unwrap().n;
        m.receive(
            format!(
                "Error:checksum mismatch, Last Line: {}\nResend: {oldest}\nok\n",
                oldest - 1
            )
            .as_bytes(),
            now,
        );
        assert_eq!(m.window(), wide / 2);
    }

    #[test]
    fn an_ok_no_line_waits_for_keeps_one_line_in_flight_for_good() {
        let now = Instant::now();
        let mut m = connected(now);
        drain(&mut m, now);
        m.receive(b"ok\n", now);
        for i in 0..400 {
            m.enqueue(&format!("G1 X{i}"), Origin::Host);
        }
        drain(&mut m, now);
        while m.window() < 3 {
            m.receive(b"ok\n", now);
            drain(&mut m, now);
        }
        // Every line in flight acknowledged, then one more `ok`: a doubled one.
        let doubled = "ok\n".repeat(m.in_flight.len() + 1);
        m.receive(doubled.as_bytes(), now);
        assert_eq!(m.window(), 1);
        for _ in 0..(GROW_AFTER * 10) {
            drain(&mut m, now);
            assert!(
                m.in_flight.len() <= 1,
                "{} lines in flight",
                m.in_flight.len()
            );
            m.receive(b"ok\n", now);
        }
        assert_eq!(m.window(), 1);
    }

    #[test]
    fn advanced_ok_opens_the_window_within_the_receive_buffer() {
        let now = Instant::now();
        let mut m = connected(now);
        drain(&mut m, now);
        m.receive(b"ok N2 P15 B4\n", now);
        assert_eq!(m.window(), 3);
        for i in 0..10 {
            m.enqueue(
                &format!("G1 X{i}.000 Y{i}.000 E0.12345 F1800"),
                Origin::Host,
            );
        }
        // 3 lines of ~40 bytes fit in 128 bytes.
        let sent = drain(&mut m, now);
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().map(String::len).sum::<usize>() <= 128);
    }

    #[test]
    fn resend_rewinds_and_the_extra_ok_is_not_counted() {
        let now = Instant::now();
        let cfg = MarlinConfig {
            ok_after_resend: Some(true),
            ..MarlinConfig::default()
        };
        let mut m = Marlin::new(cfg, now);
        m.receive(b"start\n", now);
        drain(&mut m, now);
        m.receive(b"ok\n", now);
        drain(&mut m, now);
        m.receive(b"ok\n", now);
        m.enqueue("G1 X1", Origin::Host);
        m.enqueue("G1 X2", Origin::Host);
        assert_eq!(
            drain(&mut m, now),
            vec![String::from_utf8(numbered(2, "G1 X1")).unwrap()]
        );
        m.receive(
            b"Error:checksum mismatch, Last Line: 1\nResend: 2\nok\n",
            now,
        );
        assert_eq!(
            drain(&mut m, now),
            vec![String::from_utf8(numbered(2, "G1 X1")).unwrap()]
        );
        m.receive(b"ok\n", now);
        assert_eq!(
            drain(&mut m, now),
            vec![String::from_utf8(numbered(3, "G1 X2")).unwrap()]
        );
        assert!(!m.is_stopped());
    }

    #[test]
    fn a_missing_ok_after_resend_is_survived_after_the_grace() {
        let now = Instant::now();
        let mut m = line_in_flight(now);
        m.receive(b"Resend: 3\n", now);
        // Unknown firmware: hold for the grace period.
        assert!(drain(&mut m, now).is_empty());
        let later = now + Duration::from_millis(600);
        m.tick(later);
        assert_eq!(
            drain(&mut m, later),
            vec![String::from_utf8(numbered(3, "G1 X1")).unwrap()]
        );
        assert_eq!(m.ok_after_resend, Some(false));
    }

    #[test]
    fn halting_errors_fail_the_job_with_the_reason_in_words() {
        let now = Instant::now();
        for (text, want) in [
            (
                "Error:Thermal Runaway, system stopped! Heater_ID: 0",
                "thermal runaway",
            ),
            (
                "Error:MAXTEMP triggered, system stopped! Heater_ID: 0",
                "maximum temperature",
            ),
            (
                "Error:MINTEMP triggered, system stopped! Heater_ID: bed",
                "minimum temperature",
            ),
            (
                "Error:Heating failed, system stopped! Heater_ID: 0",
                "heating failed",
            ),
            ("Error:Printer halted. kill() called!", "halted"),
            ("!! something fatal", "reported an error"),
        ] {
            let mut m = connected(now);
            m.receive(format!("{text}\n").as_bytes(), now);
            let fatal = fatal(&mut m).unwrap();
            assert!(fatal.to_string().contains(want), "{fatal} lacks {want}");
            assert!(m.is_stopped());
        }
    }

    #[test]
    fn a_start_line_mid_job_is_a_printer_reset() {
        let now = Instant::now();
        let mut m = connected(now);
        m.receive(b"start\n", now);
        assert!(
            std::iter::from_fn(|| m.poll_event())
                .any(|e| e == Event::Fatal(FailReason::PrinterReset))
        );
    }

    #[test]
    fn silence_is_nudged_with_m105_then_declared_lost() {
        let now = Instant::now();
        let mut m = connected(now);
        drain(&mut m, now);
        let mut t = now;
        for _ in 0..5 {
            t += Duration::from_secs(31);
            m.tick(t);
            assert_eq!(drain(&mut m, t), vec!["M105\n"]);
        }
        t += Duration::from_secs(31);
        m.tick(t);
        assert!(m.is_stopped());
        assert!(
            std::iter::from_fn(|| m.poll_event())
                .any(|e| e == Event::Fatal(FailReason::NoAnswer { nudges: 5 }))
        );
    }

    #[test]
    fn the_answer_to_a_nudge_recovers_a_lost_ok() {
        let now = Instant::now();
        let mut m = connected(now);
        drain(&mut m, now);
        // The ok for M155 was lost.
        let t = now + Duration::from_secs(31);
        m.tick(t);
        assert_eq!(drain(&mut m, t), vec!["M105\n"]);
        m.receive(b"ok T:20.0 /0.0 B:20.0 /0.0 @:0 B@:0\n", t);
        assert!(m.is_idle());
    }

    #[test]
    fn busy_extends_the_timeout() {
        let now = Instant::now();
        let mut m = connected(now);
        drain(&mut m, now);
        let mut t = now;
        for _ in 0..20 {
            t += Duration::from_secs(2);
            m.receive(b"echo:busy: processing\n", t);
            m.tick(t);
            assert!(drain(&mut m, t).is_empty());
        }
    }

    #[test]
    fn temperatures_host_actions_and_filament_changes_are_events() {
        let now = Instant::now();
        let mut m = connected(now);
        drain(&mut m, now);
        m.receive(
            b"ok\n T:210.05 /210.00 B:60.00 /60.00 @:64 B@:0\n//action:pause\n",
            now,
        );
        m.enqueue("M600", Origin::Host);
        drain(&mut m, now);
        let events: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
        assert!(events.contains(&Event::HostAction("pause".into())));
        assert!(events.contains(&Event::FilamentChange));
        let temps = events
            .iter()
            .find_map(|e| match e {
                Event::Temperatures(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(temps.tools[0].actual, 210.05);
        assert_eq!(temps.bed.unwrap().target, Some(60.0));
        let t = parse_temperatures("T:21.30/ 0.00 B:21.30/ 60.00 @:0").unwrap();
        assert_eq!(
            (t.tools[0].actual, t.bed.unwrap().target),
            (21.3, Some(60.0))
        );
    }

    #[test]
    fn a_resend_loop_fails_the_job() {
        let now = Instant::now();
        let cfg = MarlinConfig {
            ok_after_resend: Some(false),
            ..MarlinConfig::default()
        };
        let mut m = Marlin::new(cfg, now);
        m.receive(b"start\n", now);
        drain(&mut m, now);
        m.receive(b"ok\n", now);
        drain(&mut m, now);
        m.receive(b"ok\n", now);
        m.enqueue("G1 X1", Origin::Host);
        drain(&mut m, now);
        for _ in 0..11 {
            m.receive(b"Resend: 2\n", now);
            drain(&mut m, now);
        }
        assert!(m.is_stopped());
    }

    fn fatal(m: &mut Marlin) -> Option<FailReason> {
        std::iter::from_fn(|| m.poll_event()).find_map(|e| match e {
            Event::Fatal(r) => Some(r),
            _ => None,
        })
    }

    #[test]
    fn a_resend_for_a_line_never_sent_is_an_error_not_an_acknowledgement() {
        let now = Instant::now();
        let mut m = line_in_flight(now);
        // Line 3 is in flight; the printer asks for line 2945.
        m.receive(
            b"Error:Line Number is not Last Line Number+1, Last Line: 2944\nResend: 2945\nok\n",
            now,
        );
        assert_eq!(
            fatal(&mut m),
            Some(FailReason::LineOutOfStep {
                asked: 2945,
                last_sent: 3
            })
        );
        assert!(m.is_stopped());
        // OctoPrint's `resend_ratio` asks for the line after the one just sent: also an error.
        let mut m = line_in_flight(now);
        m.receive(b"Error: Checksum mismatch\nResend:4\nok\n", now);
        assert!(matches!(
            fatal(&mut m),
            Some(FailReason::LineOutOfStep { asked: 4, .. })
        ));
    }

    #[test]
    fn a_hello_refused_because_of_stale_bytes_is_sent_again_before_anything_else() {
        let now = Instant::now();
        let mut m = Marlin::new(MarlinConfig::default(), now);
        m.receive(b"start\n", now);
        assert_eq!(drain(&mut m, now), vec!["N0 M110 N0*125\n"]);
        // A Ctrl-X byte in front of it: Marlin sees no line number and asks for its own next.
        m.receive(
            b"Error:No Line Number with checksum, Last Line: 2944\nResend: 2945\nok\n",
            now,
        );
        assert_eq!(drain(&mut m, now), vec!["N0 M110 N0*125\n"]);
        assert!(!m.is_stopped());
        m.receive(b"ok\n", now);
        assert_eq!(
            drain(&mut m, now),
            vec![String::from_utf8(numbered(1, "M115")).unwrap()]
        );
        m.receive(b"FIRMWARE_NAME:Marlin 2.1.2\nok\n", now);
        assert!(m.is_ready());
    }

    #[test]
    fn auto_reports_do_not_hold_back_the_nudge_for_a_lost_ok() {
        let now = Instant::now();
        let mut m = line_in_flight(now);
        // The `ok` for G1 is lost; temperatures keep coming every 2 s.
        let mut t = now;
        let mut nudged_at = None;
        for _ in 0..20 {
            t += Duration::from_secs(2);
            m.receive(b" T:210.0 /210.0 B:60.0 /60.0 @:0 B@:0\n", t);
            m.tick(t);
            if drain(&mut m, t).contains(&"M105\n".to_string()) {
                nudged_at = Some(t - now);
                break;
            }
        }
        let nudged_at = nudged_at.expect("never nudged");
        assert!(
            nudged_at <= Duration::from_secs(6),
            "nudged after {nudged_at:?}"
        );
    }

    #[test]
    fn wait_from_the_printer_nudges_at_once_and_is_never_an_ok() {
        let now = Instant::now();
        let mut m = line_in_flight(now);
        m.receive(b"wait\n", now);
        assert_eq!(drain(&mut m, now), vec!["M105\n"]);
        assert!(!m.is_idle(), "`wait` acknowledged a line");
        // Nothing in flight: `wait` is only the firmware idling.
        let mut idle = connected(now);
        drain(&mut idle, now);
        idle.receive(b"ok\n", now);
        idle.receive(b"wait\n", now);
        assert!(drain(&mut idle, now).is_empty());
    }

    #[test]
    fn a_line_acknowledged_by_a_nudge_is_not_proven_until_a_numbered_line_is() {
        let now = Instant::now();
        let mut m = line_in_flight(now);
        assert!(m.last_ack_proven());
        let t = now + Duration::from_secs(31);
        m.tick(t);
        assert_eq!(drain(&mut m, t), vec!["M105\n"]);
        m.receive(b"ok T:20.0 /0.0 B:20.0 /0.0 @:0 B@:0\n", t);
        assert!(m.is_idle());
        assert!(!m.last_ack_proven());
        m.enqueue("M400", Origin::Host);
        drain(&mut m, t);
        m.receive(b"ok\n", t);
        assert!(m.is_idle() && m.last_ack_proven());
    }

    #[test]
    fn emergency_stop_sends_m112_at_once() {
        let now = Instant::now();
        let mut m = connected(now);
        m.enqueue("G1 X1", Origin::Host);
        m.emergency_stop();
        assert_eq!(drain(&mut m, now), vec!["M112\n"]);
    }
}
