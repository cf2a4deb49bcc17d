//! Streaming a job to a Marlin printer: the [`Marlin`] protocol run over any
//! `AsyncRead + AsyncWrite`, with job control and a printer always left safe.
//!
//! # Layout
//!
//! - [`MarlinConnection`]: one open link; handshake, scripts, [`MarlinConnection::run_job`],
//!   [`MarlinConnection::make_safe`] and [`MarlinConnection::abort`].
//! - [`JobFile`]: a G-code file read line by line with bounded memory (a 500 MB file is never
//!   loaded whole).
//! - [`stream_file`]: connect (with back-off), stream, and after a dropped link reconnect to
//!   turn the heaters off. [`open_serial`] opens a real port with tokio-serial.
//! - [`Control`], [`Progress`], [`JobOutcome`], [`DriverError`].
//!
//! Every byte written and every line read is logged at TRACE level under the target
//! `fabrique::serial`: the full transcript of a print.

use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::files::gcode::ReportedLimits;
use crate::protocol::marlin::{
    Event, FailReason, FirmwareInfo, Marlin, MarlinConfig, Origin, Temperatures,
};

/// Heaters off, part fan off, motors off: what "safe" means for an FDM printer.
/// Numbered commands sent at the end of a job to confirm lines acknowledged only by a
/// nudge's answer, before the job fails as unconfirmed.
const MAX_CONFIRMATIONS: u32 = 3;

pub const SAFE_SCRIPT: [&str; 4] = ["M104 S0", "M140 S0", "M107", "M84"];

/// Errors that keep a job from starting, or a link from working.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot read the job file: {0}")]
    File(#[source] io::Error),
    #[error("cannot open the serial port {port}: {source}")]
    Open {
        port: String,
        #[source]
        source: io::Error,
    },
    #[error("serial link error: {0}")]
    Link(#[source] io::Error),
    #[error("the serial link was closed by the printer")]
    Closed,
    #[error("the printer did not complete the handshake: {0}")]
    Handshake(FailReason),
    #[error("no answer to the handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("stopped before the printer answered")]
    Cancelled,
}

/// What the operator (or the printer, with `//action:`) asks of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    /// Stop feeding, run the cancel script, leave the printer safe.
    Cancel,
    /// `M112` at once, then heaters off if the link still works.
    EmergencyStop,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    #[error("{0}")]
    Printer(FailReason),
    #[error("emergency stop")]
    EmergencyStop,
}

/// Counters of a job, at any time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStats {
    /// Job lines (commands, not comments) acknowledged.
    pub lines_acked: u64,
    /// File line number of the last acknowledged command (1-based; 0 = none).
    pub last_acked_line: u64,
    /// File bytes up to the end of the last acknowledged line.
    pub bytes_acked: u64,
    pub total_bytes: u64,
    pub elapsed: Duration,
    /// Lines sent again because the printer asked.
    pub resends: u64,
    /// `Resend:` requests from the printer.
    pub resend_requests: u64,
}

/// How a job ended. Never silently lost: every way out is one of these.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Every line was acknowledged.
    Done(JobStats),
    Failed {
        reason: JobFailure,
        stats: JobStats,
    },
    Cancelled(JobStats),
    /// The link went away mid-job; `stats.last_acked_line` says where.
    Interrupted {
        reason: String,
        stats: JobStats,
    },
}

impl JobOutcome {
    pub fn stats(&self) -> &JobStats {
        match self {
            Self::Done(s) | Self::Cancelled(s) => s,
            Self::Failed { stats, .. } | Self::Interrupted { stats, .. } => stats,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done(_))
    }
}

impl std::fmt::Display for JobOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.stats();
        match self {
            Self::Done(_) => write!(f, "done: {} lines acknowledged", s.lines_acked),
            Self::Failed { reason, .. } => write!(
                f,
                "failed: {reason} (last acknowledged line {})",
                s.last_acked_line
            ),
            Self::Cancelled(_) => write!(
                f,
                "cancelled after line {}; heaters, fan and motors off",
                s.last_acked_line
            ),
            Self::Interrupted { reason, .. } => write!(
                f,
                "interrupted: {reason}; last acknowledged line {}",
                s.last_acked_line
            ),
        }
    }
}

/// Whether the job is feeding or paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Paused,
}

/// A progress report, sent at most every [`JobOptions::progress_interval`] and at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub stats: JobStats,
    pub state: JobState,
    /// Remaining time, extrapolated from the bytes acknowledged so far.
    pub remaining: Option<Duration>,
    pub lines_per_second: f64,
    pub temperatures: Option<Temperatures>,
    /// The motion limits the firmware reported (`M503`) when the link opened.
    pub reported_limits: Option<ReportedLimits>,
}

impl Progress {
    pub fn fraction(&self) -> f64 {
        if self.stats.total_bytes == 0 {
            return 0.0;
        }
        self.stats.bytes_acked as f64 / self.stats.total_bytes as f64
    }
}

/// Scripts and limits of a job.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Run after feeding stops on pause (lift the nozzle); heaters are kept.
    pub pause_script: Vec<String>,
    /// Run before feeding resumes.
    pub resume_script: Vec<String>,
    /// Run on cancel: heaters, fan and motors off.
    pub cancel_script: Vec<String>,
    pub progress_interval: Duration,
    /// How long the cancel script and the safe-state commands may take.
    pub script_timeout: Duration,
}

impl Default for JobOptions {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|l| (*l).to_string()).collect();
        Self {
            // G91 resets E to absolute in Marlin 2 (set_relative_mode); the E mode of the
            // file is restored after the script (see `restore_e_mode`).
            pause_script: s(&["M400", "G91", "G1 Z5 F600", "G90"]),
            resume_script: s(&["G91", "G1 Z-5 F600", "G90"]),
            cancel_script: s(&SAFE_SCRIPT),
            progress_interval: Duration::from_millis(500),
            script_timeout: Duration::from_secs(30),
        }
    }
}

/// A G-code file read one line at a time. Lines longer than `MAX_LINE` bytes are cut (no
/// Marlin command is longer than `MAX_CMD_SIZE`, 96 bytes), so memory stays bounded whatever
/// the file holds.
pub struct JobFile<R> {
    reader: R,
    line_no: u64,
    offset: u64,
    pub total_bytes: u64,
}

const MAX_LINE: usize = 4096;

impl JobFile<tokio::io::BufReader<tokio::fs::File>> {
    pub async fn open(path: &Path) -> io::Result<Self> {
        let file = tokio::fs::File::open(path).await?;
        let total_bytes = file.metadata().await?.len();
        Ok(Self::new(
            tokio::io::BufReader::with_capacity(64 * 1024, file),
            total_bytes,
        ))
    }
}

impl<R: AsyncBufRead + Unpin> JobFile<R> {
    pub fn new(reader: R, total_bytes: u64) -> Self {
        Self {
            reader,
            line_no: 0,
            offset: 0,
            total_bytes,
        }
    }

    /// The next line, its 1-based number and the offset just after it; `None` at the end.
    pub async fn next_line(&mut self) -> io::Result<Option<(String, u64, u64)>> {
        let mut line = Vec::new();
        let mut any = false;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = MAX_LINE.saturating_sub(line.len());
            line.extend_from_slice(&buf[..take.min(room)]);
            self.reader.consume(take);
            self.offset += take as u64;
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line_no += 1;
        let text = String::from_utf8_lossy(&line).into_owned();
        Ok(Some((text, self.line_no, self.offset)))
    }
}

enum Wake {
    Read(usize),
    Control(Control),
    ControlsClosed,
    Cancelled,
    Timer,
}

/// One open link to a Marlin printer.
pub struct MarlinConnection<IO> {
    io: IO,
    proto: Marlin,
    buf: Vec<u8>,
    firmware: FirmwareInfo,
    temperatures: Option<Temperatures>,
    host_actions: Vec<String>,
    captured: Option<Vec<String>>,
    reported_limits: Option<ReportedLimits>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> MarlinConnection<IO> {
    /// Wait for the printer's greeting, say hello (`M110 N0`), read `M115`.
    pub async fn connect(
        io: IO,
        cfg: MarlinConfig,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Self, DriverError> {
        let mut conn = Self {
            io,
            proto: Marlin::new(cfg, Instant::now().into_std()),
            buf: vec![0; 4096],
            firmware: FirmwareInfo::default(),
            temperatures: None,
            host_actions: Vec::new(),
            captured: None,
            reported_limits: None,
        };
        let deadline = Instant::now() + timeout;
        loop {
            conn.flush().await?;
            while let Some(e) = conn.proto.poll_event() {
                match e {
                    Event::Connected(info) => {
                        tracing::info!(firmware = ?info.name, "Marlin printer connected");
                        conn.firmware = info;
                        return Ok(conn);
                    }
                    Event::Fatal(reason) => return Err(DriverError::Handshake(reason)),
                    other => conn.note(other),
                }
            }
            if Instant::now() >= deadline {
                return Err(DriverError::HandshakeTimeout(timeout));
            }
            match conn.wait(Some(deadline), None, cancel).await? {
                Wake::Cancelled => return Err(DriverError::Cancelled),
                Wake::Read(0) => return Err(DriverError::Closed),
                _ => {}
            }
        }
    }

    pub fn firmware(&self) -> &FirmwareInfo {
        &self.firmware
    }

    pub fn protocol(&self) -> &Marlin {
        &self.proto
    }

    /// `//action:` lines seen so far.
    pub fn host_actions(&self) -> &[String] {
        &self.host_actions
    }

    fn note(&mut self, event: Event) {
        match event {
            Event::Temperatures(t) => self.temperatures = Some(t),
            Event::HostAction(a) => {
                tracing::info!(action = %a, "host action from the printer");
                self.host_actions.push(a);
            }
            Event::Message(m) => {
                tracing::debug!(message = %m, "printer says");
                if let Some(captured) = self.captured.as_mut() {
                    captured.push(m);
                }
            }
            Event::Resend { line } => tracing::debug!(line, "printer asked for a resend"),
            _ => {}
        }
    }

    /// Write everything the protocol has to send.
    async fn flush(&mut self) -> Result<(), DriverError> {
        let now = Instant::now().into_std();
        let mut wrote = false;
        while let Some(bytes) = self.proto.poll_transmit(now) {
            tracing::trace!(target: "fabrique::serial", ">> {}", String::from_utf8_lossy(&bytes).trim_end());
            // A port that stops taking bytes is a dead link, not a reason to hang.
            tokio::time::timeout(Duration::from_secs(5), self.io.write_all(&bytes))
                .await
                .map_err(|_| DriverError::Link(io::Error::from(io::ErrorKind::TimedOut)))?
                .map_err(DriverError::Link)?;
            wrote = true;
        }
        if wrote {
            self.io.flush().await.map_err(DriverError::Link)?;
        }
        Ok(())
    }

    /// Wait for bytes, a control, cancellation, or the next protocol deadline.
    async fn wait(
        &mut self,
        until: Option<Instant>,
        controls: Option<&mut mpsc::Receiver<Control>>,
        cancel: &CancellationToken,
    ) -> Result<Wake, DriverError> {
        let proto_deadline = self.proto.next_deadline().map(Instant::from_std);
        let deadline = [proto_deadline, until]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let has_controls = controls.is_some();
        let controls_fut = async move {
            match controls {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            // Cancellation first: a stop request must never wait behind chatter.
            biased;
            _ = cancel.cancelled() => Wake::Cancelled,
            c = controls_fut, if has_controls => match c {
                Some(c) => Wake::Control(c),
                None => Wake::ControlsClosed,
            },
            r = self.io.read(&mut self.buf) => Wake::Read(r.map_err(DriverError::Link)?),
            _ = tokio::time::sleep_until(deadline) => Wake::Timer,
        };
        if let Wake::Read(n) = wake {
            self.proto
                .receive(&self.buf[..n], Instant::now().into_std());
        }
        self.proto.tick(Instant::now().into_std());
        Ok(wake)
    }

    /// Send commands and wait until each is acknowledged (or `timeout`).
    pub async fn run_script<S: AsRef<str>>(
        &mut self,
        script: &[S],
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<bool, DriverError> {
        if self.proto.is_stopped() {
            return Ok(false);
        }
        for line in script {
            self.proto.enqueue(line.as_ref(), Origin::Host);
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.flush().await?;
            while let Some(e) = self.proto.poll_event() {
                if let Event::Fatal(reason) = e {
                    tracing::warn!(%reason, "printer stopped during a script");
                    return Ok(false);
                }
                self.note(e);
            }
            if self.proto.is_idle() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            match self.wait(Some(deadline), None, cancel).await? {
                Wake::Read(0) => return Err(DriverError::Closed),
                Wake::Cancelled => return Ok(false),
                _ => {}
            }
        }
    }

    /// Run one command and return the lines the printer printed before its `ok` (e.g. the
    /// position for `M114`). `None` if it was not acknowledged in time.
    pub async fn query(
        &mut self,
        command: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<String>>, DriverError> {
        self.captured = Some(Vec::new());
        let done = self.run_script(&[command], timeout, cancel).await;
        let lines = self.captured.take().unwrap_or_default();
        Ok(done?.then_some(lines))
    }

    /// Asks the firmware for its settings (`M503`) and keeps the motion limits it reports,
    /// for the lab to offer the manager. A firmware without `M503`, or one slow to answer,
    /// just leaves them unknown.
    pub async fn read_limits(&mut self, cancel: &CancellationToken) -> Option<ReportedLimits> {
        match self.query("M503", Duration::from_secs(5), cancel).await {
            Ok(Some(lines)) => self.reported_limits = ReportedLimits::from_m503(&lines),
            Ok(None) => tracing::info!("the printer did not answer M503 in time"),
            Err(e) => tracing::info!(error = %e, "M503 not read"),
        }
        self.reported_limits
    }

    /// Heaters, fan and motors off. Through the protocol when it still works; otherwise
    /// written raw (Marlin accepts unnumbered lines at any time).
    pub async fn make_safe(&mut self, timeout: Duration) -> bool {
        let cancel = CancellationToken::new();
        if !self.proto.is_stopped() {
            self.proto.clear_queue();
            if let Ok(true) = self.run_script(&SAFE_SCRIPT, timeout, &cancel).await {
                return true;
            }
        }
        for line in SAFE_SCRIPT {
            self.proto.send_raw(line);
        }
        self.flush().await.is_ok()
    }

    /// Emergency stop: `M112` at once, then heaters off if the link still takes bytes.
    pub async fn abort(&mut self) -> bool {
        self.proto.emergency_stop();
        for line in SAFE_SCRIPT {
            self.proto.send_raw(line);
        }
        self.flush().await.is_ok()
    }

    /// Stream a job file. Returns how it ended; the printer is left safe on every way out
    /// but `Done`.
    pub async fn run_job<R, P>(
        &mut self,
        file: &mut JobFile<R>,
        opts: &JobOptions,
        mut controls: Option<&mut mpsc::Receiver<Control>>,
        mut progress: P,
        cancel: &CancellationToken,
    ) -> JobOutcome
    where
        R: AsyncBufRead + Unpin,
        P: FnMut(&Progress),
    {
        let started = Instant::now();
        let resends_before = self.proto.resends;
        let requests_before = self.proto.resend_requests;
        let mut stats = JobStats {
            total_bytes: file.total_bytes,
            ..JobStats::default()
        };
        let mut state = JobState::Running;
        let mut held: std::collections::VecDeque<(String, Origin)> = Default::default();
        let mut eof = false;
        let mut relative_e = false;
        let mut next_report = Instant::now();
        let mut cancel_requested = false;
        let mut read_error: Option<io::Error> = None;
        let mut confirmations = 0;

        let outcome = loop {
            // Feed: keep a few lines queued ahead of the window, never the whole file.
            while state == JobState::Running && self.proto.queued() < 16 {
                if let Some((text, origin)) = held.pop_front() {
                    self.proto.enqueue(&text, origin);
                    continue;
                }
                if eof {
                    break;
                }
                match file.next_line().await {
                    Ok(Some((text, line, end_offset))) => {
                        let word = text
                            .split([';', ' ', '\t', '\r', '\n'])
                            .next()
                            .unwrap_or("");
                        match word {
                            "M82" => relative_e = false,
                            "M83" => relative_e = true,
                            // M0/M1 wait for a button and hang the link: a host pause instead.
                            // Where it stands in the file: the lines before it run first.
                            "M0" | "M1" => {
                                state = JobState::Paused;
                                self.pause_script(opts, relative_e);
                                continue;
                            }
                            _ => {}
                        }
                        if !self.proto.enqueue(&text, Origin::Job { line, end_offset }) {
                            // A comment or blank line: counted as read, never sent.
                            if self.proto.is_idle() {
                                stats.bytes_acked = end_offset;
                            }
                        }
                    }
                    Ok(None) => eof = true,
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = read_error.take() {
                tracing::error!(error = %e, "job file read error");
                self.make_safe(opts.script_timeout).await;
                break JobOutcome::Interrupted {
                    reason: format!("the job file could not be read: {e}"),
                    stats: stats.clone(),
                };
            }
            if let Err(e) = self.flush().await {
                break JobOutcome::Interrupted {
                    reason: e.to_string(),
                    stats: stats.clone(),
                };
            }
            let mut fatal = None;
            while let Some(e) = self.proto.poll_event() {
                match e {
                    Event::Acked(Origin::Job { line, end_offset }) => {
                        stats.lines_acked += 1;
                        stats.last_acked_line = line;
                        stats.bytes_acked = end_offset;
                    }
                    Event::Fatal(reason) => fatal = Some(reason),
                    Event::HostAction(ref a) => {
                        let a = a.clone();
                        self.note(e);
                        // Marlin asks the host to pause/resume/cancel (`//action:`).
                        match a.split_whitespace().next().unwrap_or("") {
                            "pause" if state == JobState::Running => {
                                state = JobState::Paused;
                                self.pause(&mut held, opts, relative_e);
                            }
                            "resume" if state == JobState::Paused => {
                                state = JobState::Running;
                                self.resume(opts, relative_e);
                            }
                            "cancel" => cancel_requested = true,
                            _ => {}
                        }
                    }
                    other => self.note(other),
                }
            }
            stats.elapsed = started.elapsed();
            stats.resends = self.proto.resends - resends_before;
            stats.resend_requests = self.proto.resend_requests - requests_before;
            if let Some(reason) = fatal {
                self.make_safe(opts.script_timeout).await;
                break JobOutcome::Failed {
                    reason: JobFailure::Printer(reason),
                    stats: stats.clone(),
                };
            }
            if cancel_requested || cancel.is_cancelled() {
                self.proto.clear_queue();
                held.clear();
                // Stop feeding, let what is in flight finish, then the cancel script.
                let never = CancellationToken::new();
                let safe = matches!(
                    self.run_script(&opts.cancel_script, opts.script_timeout, &never)
                        .await,
                    Ok(true)
                );
                if !safe {
                    self.make_safe(opts.script_timeout).await;
                }
                break JobOutcome::Cancelled(stats.clone());
            }
            if eof && held.is_empty() && self.proto.is_idle() && state == JobState::Running {
                if !self.proto.last_ack_proven() {
                    // The last lines were acknowledged only by a nudge's answer, which a line
                    // lost on the wire also gets. A numbered command proves they arrived (or
                    // makes Marlin ask for them again); `M400` also waits for the last moves.
                    confirmations += 1;
                    if confirmations > MAX_CONFIRMATIONS {
                        self.make_safe(opts.script_timeout).await;
                        break JobOutcome::Failed {
                            reason: JobFailure::Printer(FailReason::Unconfirmed),
                            stats: stats.clone(),
                        };
                    }
                    self.proto.enqueue("M400", Origin::Host);
                    continue;
                }
                // Every byte was read, and every command in it acknowledged by its own `ok`.
                stats.bytes_acked = file.offset;
                stats.total_bytes = stats.total_bytes.max(file.offset);
                break JobOutcome::Done(stats.clone());
            }
            let now = Instant::now();
            if now >= next_report {
                next_report = now + opts.progress_interval;
                progress(&self.progress(&stats, state));
            }
            match self
                .wait(Some(next_report), controls.as_deref_mut(), cancel)
                .await
            {
                Err(e) => {
                    break JobOutcome::Interrupted {
                        reason: e.to_string(),
                        stats: stats.clone(),
                    };
                }
                Ok(Wake::Read(0)) => {
                    break JobOutcome::Interrupted {
                        reason: "the printer closed the serial link".into(),
                        stats: stats.clone(),
                    };
                }
                Ok(Wake::Control(Control::Pause)) if state == JobState::Running => {
                    state = JobState::Paused;
                    self.pause(&mut held, opts, relative_e);
                }
                Ok(Wake::Control(Control::Resume)) if state == JobState::Paused => {
                    state = JobState::Running;
                    self.resume(opts, relative_e);
                }
                Ok(Wake::Control(Control::Cancel)) => cancel_requested = true,
                Ok(Wake::Control(Control::EmergencyStop)) => {
                    self.abort().await;
                    break JobOutcome::Failed {
                        reason: JobFailure::EmergencyStop,
                        stats: stats.clone(),
                    };
                }
                Ok(Wake::ControlsClosed) => controls = None,
                Ok(_) => {}
            }
        };
        let mut last = self.progress(outcome.stats(), state);
        last.remaining = None;
        progress(&last);
        outcome
    }

    fn pause(
        &mut self,
        held: &mut std::collections::VecDeque<(String, Origin)>,
        opts: &JobOptions,
        relative_e: bool,
    ) {
        // Stop feeding: queued job lines go back in front of the file, in order.
        let mut taken = self.proto.clear_queue();
        taken.extend(held.drain(..));
        *held = taken.into();
        self.pause_script(opts, relative_e);
    }

    fn pause_script(&mut self, opts: &JobOptions, relative_e: bool) {
        for line in &opts.pause_script {
            self.proto.enqueue(line, Origin::Host);
        }
        self.restore_e_mode(relative_e);
        tracing::info!("job paused");
    }

    fn resume(&mut self, opts: &JobOptions, relative_e: bool) {
        for line in &opts.resume_script {
            self.proto.enqueue(line, Origin::Host);
        }
        self.restore_e_mode(relative_e);
        tracing::info!("job resumed");
    }

    fn restore_e_mode(&mut self, relative_e: bool) {
        self.proto
            .enqueue(if relative_e { "M83" } else { "M82" }, Origin::Host);
    }

    fn progress(&self, stats: &JobStats, state: JobState) -> Progress {
        let secs = stats.elapsed.as_secs_f64();
        let remaining = (stats.bytes_acked > 0 && secs > 0.0).then(|| {
            let left = stats.total_bytes.saturating_sub(stats.bytes_acked) as f64;
            Duration::from_secs_f64(secs * left / stats.bytes_acked as f64)
        });
        Progress {
            stats: stats.clone(),
            state,
            remaining,
            lines_per_second: if secs > 0.0 {
                stats.lines_acked as f64 / secs
            } else {
                0.0
            },
            temperatures: self.temperatures.clone(),
            reported_limits: self.reported_limits,
        }
    }
}

/// How to connect and stream.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub protocol: MarlinConfig,
    pub job: JobOptions,
    /// Total time allowed for the greeting and handshake.
    pub connect_timeout: Duration,
    /// Connection attempts (first connect, and after a dropped link to make the printer
    /// safe), with doubling back-off from `backoff`.
    pub attempts: u32,
    pub backoff: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            protocol: MarlinConfig::default(),
            job: JobOptions::default(),
            connect_timeout: Duration::from_secs(20),
            attempts: 4,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Connect with doubling back-off between attempts.
pub async fn connect_with_backoff<C, F, IO>(
    connect: &mut C,
    opts: &StreamOptions,
    cancel: &CancellationToken,
) -> Result<MarlinConnection<IO>, DriverError>
where
    C: FnMut() -> F,
    F: Future<Output = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut delay = opts.backoff;
    let mut last = DriverError::Cancelled;
    for attempt in 1..=opts.attempts.max(1) {
        let result = match connect().await {
            Ok(io) => {
                MarlinConnection::connect(io, opts.protocol.clone(), opts.connect_timeout, cancel)
                    .await
            }
            Err(e) => Err(DriverError::Link(e)),
        };
        match result {
            Ok(conn) => return Ok(conn),
            Err(DriverError::Cancelled) => return Err(DriverError::Cancelled),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "connection attempt failed");
                last = e;
            }
        }
        if attempt < opts.attempts {
            tokio::select! {
                _ = cancel.cancelled() => return Err(DriverError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
    Err(last)
}

/// Stream `path` to the printer reached through `connect`. Errors mean the job never
/// started; once it started, the outcome says how it ended. After a dropped link the printer
/// is reached again (with back-off) to turn its heaters off: a board that was not reset keeps
/// heating otherwise.
pub async fn stream_file<C, F, IO, P>(
    mut connect: C,
    path: &Path,
    opts: &StreamOptions,
    controls: Option<&mut mpsc::Receiver<Control>>,
    progress: P,
    cancel: &CancellationToken,
) -> Result<JobOutcome, DriverError>
where
    C: FnMut() -> F,
    F: Future<Output = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin,
    P: FnMut(&Progress),
{
    let mut file = JobFile::open(path).await.map_err(DriverError::File)?;
    let mut conn = connect_with_backoff(&mut connect, opts, cancel).await?;
    conn.read_limits(cancel).await;
    let outcome = conn
        .run_job(&mut file, &opts.job, controls, progress, cancel)
        .await;
    drop(conn);
    // A dropped link, or a printer that stopped answering: reach it again to turn its
    // heaters off (a board that was not reset by the reconnection keeps heating).
    let unreachable = matches!(
        outcome,
        JobOutcome::Interrupted { .. }
            | JobOutcome::Failed {
                reason: JobFailure::Printer(FailReason::NoAnswer { .. }),
                ..
            }
    );
    if unreachable {
        let never = CancellationToken::new();
        match connect_with_backoff(&mut connect, opts, &never).await {
            Ok(mut again) => {
                let safe = again.make_safe(opts.job.script_timeout).await;
                tracing::info!(
                    safe,
                    "reconnected after the dropped link to leave the printer safe"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "could not reach the printer again to turn its heaters off")
            }
        }
    }
    Ok(outcome)
}

/// Open a real serial port. Dropping DTR and raising it again resets boards that reset on
/// DTR (Arduino-style auto-reset), so the printer greets with `start`; a pty ignores it.
pub async fn open_serial(port: &str, baud: u32) -> Result<tokio_serial::SerialStream, DriverError> {
    use tokio_serial::{SerialPort, SerialPortBuilderExt};
    let open_err = |source: tokio_serial::Error| DriverError::Open {
        port: port.to_string(),
        source: io::Error::other(source),
    };
    let mut stream = tokio_serial::new(port, baud)
        .timeout(Duration::from_millis(100))
        .open_native_async()
        .map_err(open_err)?;
    if stream.write_data_terminal_ready(false).is_ok() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stream.write_data_terminal_ready(true);
    }
    Ok(stream)
}

/// [`stream_file`] on a real serial port.
pub async fn stream_file_to_port<P: FnMut(&Progress)>(
    port: &str,
    baud: u32,
    path: &Path,
    opts: &StreamOptions,
    controls: Option<&mut mpsc::Receiver<Control>>,
    progress: P,
    cancel: &CancellationToken,
) -> Result<JobOutcome, DriverError> {
    let port = port.to_string();
    let connect = move || {
        let port = port.clone();
        async move {
            open_serial(&port, baud).await.map_err(|e| match e {
                DriverError::Open { source, .. } => source,
                other => io::Error::other(other.to_string()),
            })
        }
    };
    stream_file(connect, path, opts, controls, progress, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn job_file_reads_lines_with_offsets_and_cuts_huge_lines() {
        let mut data = b"G28\n; c\n".to_vec();
        data.extend(std::iter::repeat_n(b'X', 10_000));
        data.extend_from_slice(b"\nG1 X1");
        let total = data.len() as u64;
        let mut f = JobFile::new(&data[..], total);
        assert_eq!(f.next_line().await.unwrap(), Some(("G28\n".into(), 1, 4)));
        assert_eq!(f.next_line().await.unwrap(), Some(("; c\n".into(), 2, 8)));
        let (long, n, _) = f.next_line().await.unwrap().unwrap();
        assert_eq!((long.len(), n), (MAX_LINE, 3));
        assert_eq!(
            f.next_line().await.unwrap(),
            Some(("G1 X1".into(), 4, total))
        );
        assert_eq!(f.next_line().await.unwrap(), None);
    }
}
