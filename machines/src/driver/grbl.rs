//! Drives a GRBL laser over any byte stream (a serial port, a pseudo-terminal, an in-memory
//! pipe): the [`Session`] protocol core, fed from reads, timers and control requests.
//!
//! One task owns the driver and its stream (STYLE.md habit 7); control requests come on an
//! `mpsc` channel and events go to a callback, so the task never shares the port.
//!
//! A laser cut needs a [`PersonAtMachine`]: this driver has no other way to start one, and
//! nothing here builds that token. A dry run (`$C` check mode) fires nothing and needs none.
//!
//! # Layout
//!
//! - [`GrblDriver`]: connect, commands, [`GrblDriver::dry_run`], [`GrblDriver::cut`].
//! - [`Control`]: pause, resume, cancel, overrides while a job runs.
//! - [`stream_file`] and [`dry_run_file`]: whole jobs from G-code text, for the CLI.
//! - [`GrblError`]: what can go wrong, each with a message in French and English.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub use crate::protocol::grbl::{
    Config, ConnectFailure, Event, FailReason, JobKind, JobSummary, Lang, LineError, LineOutcome,
    MachineState, PersonAtMachine, Program, ProgramError, Realtime, Refusal, StreamMode, Tool,
    WorkArea,
};
use crate::protocol::grbl::{Output, Session};

/// A request while a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Feed hold (the laser is off while held in laser mode).
    Pause,
    /// Cycle start after a pause.
    Resume,
    /// Stop the job: hold, then soft reset.
    Cancel,
    /// A feed or power override byte.
    Override(Realtime),
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum GrblError {
    /// Reading or writing the link failed outside a job.
    #[error("the link to the machine failed: {0}")]
    Io(#[from] std::io::Error),
    /// Start-up failed.
    #[error("the machine did not start up: {0:?}")]
    Connect(ConnectFailure),
    /// The link closed.
    #[error("the link to the machine closed")]
    LinkClosed,
    /// The job was refused before anything was sent.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// The file cannot be streamed.
    #[error("the file cannot be sent: {0}")]
    Program(#[from] ProgramError),
    /// The job stopped early; the machine was held and reset (laser off).
    #[error("the job failed: {0:?}")]
    JobFailed(FailReason),
}

impl GrblError {
    /// What happened and what to do, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (GrblError::Refused(r), _) => r.message(lang),
            (GrblError::Program(p), _) => p.message(lang),
            (GrblError::JobFailed(f), _) => f.message(lang),
            (GrblError::Connect(ConnectFailure::Unsupported(v)), Lang::Fr) => format!(
                "La machine annonce GRBL {v}, que Fabrique ne sait pas piloter (0.9 ou 1.1 attendu)."
            ),
            (GrblError::Connect(ConnectFailure::Unsupported(v)), Lang::En) => format!(
                "The machine reports GRBL {v}, which Fabrique cannot drive (0.9 or 1.1 expected)."
            ),
            (GrblError::Connect(ConnectFailure::NoBanner), Lang::Fr) => "La machine ne répond pas. Vérifiez qu'elle est allumée, le câble USB et la vitesse (115200 bauds).".into(),
            (GrblError::Connect(ConnectFailure::NoBanner), Lang::En) => "The machine does not answer. Check it is on, the USB cable, and the speed (115200 baud).".into(),
            (GrblError::Connect(ConnectFailure::NoSettings), Lang::Fr) => "La machine a démarré mais ne donne pas ses réglages ($$). Éteignez-la et rallumez-la, puis reconnectez.".into(),
            (GrblError::Connect(ConnectFailure::NoSettings), Lang::En) => "The machine started but does not give its settings ($$). Power it off and on, then connect again.".into(),
            (GrblError::Io(_) | GrblError::LinkClosed, Lang::Fr) => "La liaison avec la machine est coupée. Vérifiez que le laser ou la broche est arrêté, puis le câble USB.".into(),
            (GrblError::Io(_) | GrblError::LinkClosed, Lang::En) => "The link to the machine is cut. Check the laser or the spindle is off, then the USB cable.".into(),
        }
    }
}

/// How a cut went.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    /// Lines and errors.
    pub summary: JobSummary,
    /// Bytes of G-code sent.
    pub bytes: usize,
    /// From start to the machine standing idle.
    pub elapsed: Duration,
}

/// Longest a write may block before the link counts as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A connected GRBL machine.
#[derive(Debug)]
pub struct GrblDriver<S> {
    io: S,
    session: Session,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> GrblDriver<S> {
    /// Soft-resets the machine, reads its banner and `$$`, and waits for its first status.
    pub async fn connect(
        io: S,
        config: Config,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Self, GrblError> {
        let mut session = Session::new(config);
        session.start(now());
        let mut driver = GrblDriver {
            io,
            session,
            buf: vec![0; 1024],
        };
        driver.wait_ready(on_event).await?;
        Ok(driver)
    }

    /// The protocol state: settings, version, latest status.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> S {
        self.io
    }

    /// Waits until the session is ready and a status report arrived since the last reset.
    pub async fn wait_ready(&mut self, on_event: &mut dyn FnMut(&Event)) -> Result<(), GrblError> {
        loop {
            let r = self
                .drive(None, &mut |e: &Event| {
                    on_event(e);
                    match e {
                        Event::ConnectFailed(f) => Some(Err(GrblError::Connect(*f))),
                        Event::Status(_) => Some(Ok(())),
                        _ => None,
                    }
                })
                .await?;
            r?;
            if self.session.is_ready() && self.session.has_fresh_status() {
                return Ok(());
            }
        }
    }

    /// Sends one command line (`$X`, `$H`, `$32=1`...) and waits for its reply.
    pub async fn command(
        &mut self,
        text: &str,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<LineOutcome, GrblError> {
        self.session.send_command(text, now())?;
        self.drive(None, &mut |e: &Event| {
            on_event(e);
            match e {
                Event::Command { outcome, .. } => Some(*outcome),
                _ => None,
            }
        })
        .await
    }

    /// Sends a real-time byte (a jog cancel, a feed hold, an override) outside a job; it
    /// goes out at the next call that drives the link ([`idle`](Self::idle),
    /// [`command`](Self::command)).
    pub fn realtime(&mut self, r: Realtime) {
        self.session.realtime(r, now());
    }

    /// Keeps the link alive (status polls, replies, alarms, all passed to `on_event`)
    /// until a request arrives on `requests`; `None` when nobody can send any more.
    pub async fn idle<R>(
        &mut self,
        requests: &mut mpsc::Receiver<R>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<R>, GrblError> {
        loop {
            self.flush(on_event).await;
            if self.session.is_closed() {
                return Err(GrblError::LinkClosed);
            }
            let sleep = self.until_deadline();
            tokio::select! {
                r = self.io.read(&mut self.buf) => match r {
                    Ok(0) | Err(_) => self.session.link_lost(now()),
                    Ok(n) => self.session.receive(&self.buf[..n], now()),
                },
                () = sleep => self.session.tick(now()),
                request = requests.recv() => return Ok(request),
            }
        }
    }

    /// Checks a program in `$C` check mode: nothing moves or fires; every line GRBL
    /// refuses is reported by its file line. GRBL resets when it leaves check mode; this
    /// returns once it is ready again.
    pub async fn dry_run(
        &mut self,
        program: Program,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobSummary, GrblError> {
        self.session.start_dry_run(program, now())?;
        let r = self.run_job(None, on_event).await;
        self.settle(on_event).await?;
        r
    }

    /// Cuts a program. Refused, with nothing sent, unless `person` confirmed recently,
    /// laser mode is on, every `S` is at most `$30` and every move stays inside `area` and
    /// `$130`/`$131`. Any error, alarm, unexpected reset, lost link or [`Control::Cancel`]
    /// holds then resets the machine (laser off) and returns [`GrblError::JobFailed`].
    pub async fn cut(
        &mut self,
        program: Program,
        area: WorkArea,
        person: PersonAtMachine,
        controls: Option<&mut mpsc::Receiver<Control>>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobReport, GrblError> {
        let bytes = program.bytes();
        let started = now();
        self.session.start_cut(program, area, person, started)?;
        let r = self.run_job(controls, on_event).await;
        if matches!(r, Err(GrblError::JobFailed(_))) {
            self.settle(on_event).await?;
        }
        let summary = r?;
        Ok(JobReport {
            summary,
            bytes,
            elapsed: now().saturating_duration_since(started),
        })
    }

    /// Checks `program` against the machine as it stands ([`Session::check`]: settings,
    /// work offset, tool) and in `$C` check mode; `Ok` only if both accept every line, with
    /// GRBL ready again.
    pub async fn check(
        &mut self,
        program: Program,
        area: WorkArea,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(), GrblError> {
        self.session.check(&program, area)?;
        let summary = self.dry_run(program, on_event).await?;
        if let Some(first) = summary.errors.first() {
            return Err(GrblError::JobFailed(FailReason::Error(*first)));
        }
        self.wait_ready(on_event).await
    }

    /// Checks `program` in check mode, and cuts it only if GRBL took every line: what
    /// [`stream_file`] does on a link already open.
    pub async fn check_then_cut(
        &mut self,
        program: Program,
        area: WorkArea,
        person: PersonAtMachine,
        controls: Option<&mut mpsc::Receiver<Control>>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobReport, GrblError> {
        self.check(program.clone(), area, on_event).await?;
        self.cut(program, area, person, controls, on_event).await
    }

    async fn run_job(
        &mut self,
        controls: Option<&mut mpsc::Receiver<Control>>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobSummary, GrblError> {
        self.drive(controls, &mut |e: &Event| {
            on_event(e);
            match e {
                Event::JobDone(s) => Some(Ok(s.clone())),
                Event::JobFailed(r) => Some(Err(GrblError::JobFailed(*r))),
                _ => None,
            }
        })
        .await?
    }

    /// After a reset: waits for the banner (or its time-out) so the caller returns with
    /// the machine stopped and the link quiet.
    async fn settle(&mut self, on_event: &mut dyn FnMut(&Event)) -> Result<(), GrblError> {
        while self.session.awaiting_reset() && !self.session.is_closed() {
            let _ = self
                .drive(None, &mut |e: &Event| {
                    on_event(e);
                    matches!(e, Event::Reset | Event::Feedback(_) | Event::LinkLost).then_some(())
                })
                .await;
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        let w = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        matches!(tokio::time::timeout(WRITE_TIMEOUT, w).await, Ok(Ok(())))
    }

    /// Performs the session's outputs in order: its writes, and its events passed to `event`.
    async fn flush(&mut self, event: &mut dyn FnMut(&Event)) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Write(bytes) => {
                    if !self.session.is_closed() && !self.write(&bytes).await {
                        self.session.link_lost(now());
                    }
                }
                Output::Event(e) => event(&e),
            }
        }
    }

    /// Sleeps until the session's next deadline (status poll, time-outs); forever without
    /// one.
    fn until_deadline(&self) -> impl std::future::Future<Output = ()> + use<S> {
        let deadline = self
            .session
            .next_deadline()
            .map(tokio::time::Instant::from_std);
        async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        }
    }

    /// Runs the session until `done` returns a value for one of its events.
    ///
    /// Each turn performs the session's outputs in order (writes, then events as they
    /// come), then waits for whichever comes first: bytes from the machine, the session's
    /// next deadline (status poll, hold time-out, lost reply), or a control request.
    async fn drive<T>(
        &mut self,
        mut controls: Option<&mut mpsc::Receiver<Control>>,
        done: &mut dyn FnMut(&Event) -> Option<T>,
    ) -> Result<T, GrblError> {
        loop {
            let mut result = None;
            self.flush(&mut |e: &Event| {
                if let Some(r) = done(e) {
                    result.get_or_insert(r);
                }
            })
            .await;
            if let Some(r) = result {
                return Ok(r);
            }
            if self.session.is_closed() {
                return Err(GrblError::LinkClosed);
            }
            let sleep = self.until_deadline();
            let control = async {
                match controls.as_deref_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Bytes from the machine: replies, status, banners. End of stream or an
                // error is a lost link. `read` is cancel-safe.
                r = self.io.read(&mut self.buf) => match r {
                    Ok(0) | Err(_) => self.session.link_lost(now()),
                    Ok(n) => self.session.receive(&self.buf[..n], now()),
                },
                // A timer of the session is due.
                () = sleep => self.session.tick(now()),
                // A person's request; a closed channel means nobody can ask any more.
                c = control => match c {
                    Some(Control::Pause) => self.session.pause(),
                    Some(Control::Resume) => self.session.resume(),
                    Some(Control::Cancel) => self.session.cancel(now()),
                    Some(Control::Override(r)) => self.session.realtime(r, now()),
                    None => controls = None,
                },
            }
        }
    }
}

/// Asks whatever is on `io` whether it is GRBL, in a way any other firmware takes as a
/// whole line it does not know: a blank line (ending whatever was left half-written), then
/// `$I`. GRBL answers with its build info (`[VER:1.1h...]`); a board reset by the port's
/// opening prints its banner instead. Marlin answers `echo:Unknown command` and `ok`, which
/// ends the probe at once, and is left with an empty receive buffer and its line count
/// untouched (a Ctrl-X byte would stay in front of the next host's first line).
/// `fabrique stream` uses it to pick the GRBL driver.
pub async fn probe<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    wait: Duration,
) -> std::io::Result<Option<crate::protocol::grbl::Version>> {
    io.write_all(b"\n$I\n").await?;
    io.flush().await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let read = tokio::time::timeout_at(deadline, io.read(&mut buf)).await;
        let n = match read {
            Err(_) | Ok(Ok(0)) => return Ok(None),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(n)) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                let text = String::from_utf8_lossy(&line).trim().to_string();
                line.clear();
                let version = crate::protocol::grbl::parse_banner(&text)
                    .or_else(|| crate::protocol::grbl::parse_build_info(&text));
                if version.is_some() {
                    return Ok(version);
                }
                if text.starts_with("echo:") || text == "start" {
                    // Marlin (and its look-alikes) speaking: not GRBL.
                    return Ok(None);
                }
            } else if line.len() < 256 {
                line.push(b);
            }
        }
    }
}

/// What [`stream_file`] does besides cutting.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Session tunables (buffer size, status rate, streaming mode).
    pub config: Config,
    /// The machine's work area from its profile.
    pub area: WorkArea,
    /// Run the file through check mode first and refuse to cut if GRBL refuses a line.
    pub dry_run_first: bool,
}

/// Connects, optionally dry-runs, then cuts `source`. `person` must come from an
/// interactive start (see [`PersonAtMachine`]). Events go to `on_event` as they happen.
pub async fn stream_file<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    source: &str,
    options: &StreamOptions,
    person: PersonAtMachine,
    controls: Option<&mut mpsc::Receiver<Control>>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<JobReport, GrblError> {
    let program = Program::parse(source, options.config.rx_buffer)?;
    let mut driver = GrblDriver::connect(io, options.config.clone(), on_event).await?;
    if options.dry_run_first {
        driver
            .check_then_cut(program, options.area, person, controls, on_event)
            .await
    } else {
        driver
            .cut(program, options.area, person, controls, on_event)
            .await
    }
}

/// Connects and checks `source` in check mode; returns every refused line.
pub async fn dry_run_file<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    source: &str,
    config: Config,
    on_event: &mut dyn FnMut(&Event),
) -> Result<JobSummary, GrblError> {
    let program = Program::parse(source, config.rx_buffer)?;
    let mut driver = GrblDriver::connect(io, config, on_event).await?;
    driver.dry_run(program, on_event).await
}
