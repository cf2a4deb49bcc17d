//! The session: start-up, settings, status polling, jobs, dry runs, pause, cancel.

use super::*;

/// After the last `ok` of a cut, how long before an `Idle` report means the end.
pub(super) const DRAIN_GUARD: Duration = Duration::from_millis(50);

/// Tunables of a [`Session`].
#[derive(Debug, Clone)]
pub struct Config {
    /// GRBL's receive buffer, 128 on an Uno.
    pub rx_buffer: usize,
    /// How job lines are paced.
    pub mode: StreamMode,
    /// How often `?` is sent. bCNC uses 125 ms, UGS 200 ms; GRBL advises at most 5-10 Hz.
    pub status_interval: Duration,
    /// How long to wait for the banner after a reset.
    pub banner_timeout: Duration,
    /// How long to wait, after a feed hold, for the machine to stand still before the
    /// soft reset (a reset while moving loses the position, `ALARM:3`).
    pub hold_settle: Duration,
    /// How long the machine may stay idle while lines still await their reply before the
    /// reply is declared lost (LaserGRBL uses 10 s).
    pub stuck_after: Duration,
    /// How long a job may go without progress (neither the position nor the acknowledged
    /// lines change) while the machine says `Run` or `Hold` nobody asked for, or says
    /// nothing, before it counts as stuck: held, reset, and the job failed.
    pub stall_after: Duration,
    /// How old a [`PersonAtMachine`] may be when the cut starts.
    pub confirmation_ttl: Duration,
    /// What the head carries, for the checks before a cut.
    pub tool: Tool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rx_buffer: DEFAULT_RX_BUFFER,
            mode: StreamMode::CharCounting,
            status_interval: Duration::from_millis(200),
            banner_timeout: Duration::from_secs(5),
            hold_settle: Duration::from_secs(1),
            stuck_after: Duration::from_secs(10),
            stall_after: Duration::from_secs(30),
            confirmation_ttl: Duration::from_secs(120),
            tool: Tool::Laser,
        }
    }
}

/// A cut or a check-mode dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The laser cuts.
    Cut,
    /// `$C` check mode: GRBL parses every line without moving or firing.
    DryRun,
}

/// How one job line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// `ok`.
    Ok,
    /// `error:N`.
    Error(u8),
    /// Sent, but the reply never came: the job stopped first (reset, lost link).
    Unconfirmed,
}

/// A line GRBL refused, by its place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineError {
    /// 1-based file line.
    pub line: usize,
    /// GRBL error code.
    pub code: u8,
}

impl LineError {
    /// `Line N: what to do`, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        let what = codes::message(CodeKind::Error, self.code, lang);
        match lang {
            Lang::Fr => format!("Ligne {} (erreur {}) : {what}", self.line, self.code),
            Lang::En => format!("Line {} (error {}): {what}", self.line, self.code),
        }
    }
}

/// A job that ran to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// Cut or dry run.
    pub kind: JobKind,
    /// Lines sent and acknowledged.
    pub lines: usize,
    /// Lines GRBL refused (a dry run goes on past them; a cut never has any here).
    pub errors: Vec<LineError>,
}

/// Why a job stopped before its end. The machine was held then reset: laser off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// GRBL refused a line.
    Error(LineError),
    /// GRBL raised `ALARM:N`.
    Alarm(u8),
    /// GRBL restarted by itself (its banner arrived mid-job).
    UnexpectedReset,
    /// The link closed or failed.
    Disconnected,
    /// A person cancelled.
    Cancelled,
    /// The machine sat idle while a line never got its reply.
    ReplyLost {
        /// File line of the oldest unacknowledged line.
        line: usize,
    },
    /// The machine made no progress for [`Config::stall_after`] while it said `Run` or
    /// `Hold` (or stopped reporting): no move, no line acknowledged.
    Stalled {
        /// The state it last reported; `None` when it stopped reporting.
        state: Option<MachineState>,
        /// File line of the oldest unacknowledged line, or the last line.
        line: usize,
    },
}

impl FailReason {
    /// What happened and what to do, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (FailReason::Error(e), _) => e.message(lang),
            (FailReason::Alarm(n), Lang::Fr) => format!(
                "Alarme {n} : {}",
                codes::message(CodeKind::Alarm, *n, lang)
            ),
            (FailReason::Alarm(n), Lang::En) => format!(
                "Alarm {n}: {}",
                codes::message(CodeKind::Alarm, *n, lang)
            ),
            (FailReason::UnexpectedReset, Lang::Fr) => "La machine a redémarré toute seule pendant le travail (coupure, câble, parasite). Le travail est arrêté ; vérifiez la pièce et le câble USB avant de relancer.".into(),
            (FailReason::UnexpectedReset, Lang::En) => "The machine restarted by itself during the job (power, cable, interference). The job is stopped; check the work piece and the USB cable before starting again.".into(),
            (FailReason::Disconnected, Lang::Fr) => "La liaison avec la machine est perdue. Vérifiez que le laser ou la broche est arrêté, puis le câble USB.".into(),
            (FailReason::Disconnected, Lang::En) => "The link to the machine was lost. Check the laser or the spindle is off, then the USB cable.".into(),
            (FailReason::Cancelled, Lang::Fr) => "Travail annulé ; la machine est arrêtée, laser ou broche éteint.".into(),
            (FailReason::Cancelled, Lang::En) => "Job cancelled; the machine is stopped, laser or spindle off.".into(),
            (FailReason::ReplyLost { line }, Lang::Fr) => format!("La machine n'a jamais confirmé la ligne {line} et reste immobile. Le travail est arrêté ; vérifiez le câble USB."),
            (FailReason::ReplyLost { line }, Lang::En) => format!("The machine never confirmed line {line} and stands still. The job is stopped; check the USB cable."),
            (FailReason::Stalled { state, line }, Lang::Fr) => format!("La machine n'avance plus depuis la ligne {line} ({}). Le travail est arrêté et la machine remise à zéro, laser ou broche éteint ; vérifiez la pièce et la machine avant de relancer.", stalled_state(*state, lang)),
            (FailReason::Stalled { state, line }, Lang::En) => format!("The machine has made no progress since line {line} ({}). The job is stopped and the machine reset, laser or spindle off; check the work piece and the machine before starting again.", stalled_state(*state, lang)),
        }
    }
}

fn stalled_state(state: Option<MachineState>, lang: Lang) -> &'static str {
    match (state, lang) {
        (Some(MachineState::Hold(_)), Lang::Fr) => "en pause sans que personne ne l'ait demandé",
        (Some(MachineState::Hold(_)), Lang::En) => "held without anyone asking",
        (None, Lang::Fr) => "elle ne donne plus son état",
        (None, Lang::En) => "it stopped reporting its state",
        (_, Lang::Fr) => "en marche sans bouger",
        (_, Lang::En) => "running without moving",
    }
}

/// Where a job last made progress: the position and acknowledged lines seen, and since when.
#[derive(Debug, Clone, Copy)]
struct LastProgress {
    /// `None` right after a resume: the clock restarts at the next tick.
    since: Option<Instant>,
    position: Option<[f64; 3]>,
    acked: usize,
}

/// Something the owner of a [`Session`] should know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The banner arrived after the first reset.
    Connected(Version),
    /// `$$` finished; the session is ready.
    Settings(Settings),
    /// A status report.
    Status(StatusReport),
    /// A job line ended.
    Line {
        /// Index in the program.
        index: usize,
        /// 1-based file line.
        number: usize,
        /// How.
        outcome: LineOutcome,
    },
    /// A command sent with [`Session::send_command`] ended.
    Command {
        /// The command.
        text: String,
        /// How.
        outcome: LineOutcome,
    },
    /// `ALARM:N`.
    Alarm(u8),
    /// `[MSG:...]`.
    Message(String),
    /// Other feedback, or a line the session did not understand.
    Feedback(String),
    /// A reply arrived when no line awaited one: logged, ignored.
    UnexpectedReply(String),
    /// The banner after a reset the session asked for.
    Reset,
    /// A banner nobody asked for.
    UnexpectedReset,
    /// A job ran to its end.
    JobDone(JobSummary),
    /// A job stopped early; the hold and the soft reset were written before this event.
    JobFailed(FailReason),
    /// Start-up failed: no banner, or a version this host does not speak.
    ConnectFailed(ConnectFailure),
    /// The link is gone; the session is closed.
    LinkLost,
}

/// Why start-up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No banner within [`Config::banner_timeout`].
    NoBanner,
    /// A banner of a version this host does not speak.
    Unsupported(Version),
    /// `$$` went unanswered, even after a second soft reset.
    NoSettings,
}

/// What the session wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Bytes to write to the machine, in this order.
    Write(Vec<u8>),
    /// Something to tell the owner.
    Event(Event),
}

#[derive(Debug, Clone, PartialEq)]
enum Tag {
    Job(usize),
    Command(String),
    ReadSettings,
    EnterCheck,
    LeaveCheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    AwaitBanner { deadline: Instant, first: bool },
    ReadingSettings,
    Ready,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Streaming,
    /// Every line acknowledged; waiting for the machine to finish moving.
    Draining {
        since: Instant,
    },
    /// Held; waiting to stand still before the reset.
    Stopping {
        reason: FailReason,
        deadline: Instant,
    },
    /// Dry run: `$C` sent again to leave check mode; GRBL resets after it.
    LeavingCheck,
}

#[derive(Debug)]
struct Job {
    kind: JobKind,
    lines: Vec<ProgramLine>,
    next: usize,
    acked: usize,
    errors: Vec<LineError>,
    stage: Stage,
}

/// One connection to a GRBL machine, without I/O.
///
/// Feed it what the machine sent with [`receive`](Self::receive), call
/// [`tick`](Self::tick) at [`next_deadline`](Self::next_deadline), and perform every
/// [`Output`] from [`poll_output`](Self::poll_output) in order.
#[derive(Debug)]
pub struct Session {
    config: Config,
    phase: Phase,
    counter: CharCounter<Tag>,
    queue: VecDeque<(Tag, String)>,
    job: Option<Job>,
    settings: Settings,
    version: Option<Version>,
    status: Option<StatusReport>,
    /// The work offset (`WCO`) last reported since the last reset: GRBL 1.1 sends it in the
    /// first report after a reset and every 10 to 30 reports; 0.9 reports both positions.
    work_offset: Option<[f64; 3]>,
    status_since_reset: bool,
    next_status: Option<Instant>,
    idle_since: Option<Instant>,
    progress: LastProgress,
    last_reply: Option<Instant>,
    settings_deadline: Option<Instant>,
    settings_retried: bool,
    paused: bool,
    partial: Vec<u8>,
    out: VecDeque<Output>,
}

impl Session {
    /// A session that has not started yet; call [`start`](Self::start).
    pub fn new(config: Config) -> Self {
        let counter = CharCounter::new(config.rx_buffer, config.mode);
        Session {
            config,
            phase: Phase::New,
            counter,
            queue: VecDeque::new(),
            job: None,
            settings: Settings::default(),
            version: None,
            status: None,
            work_offset: None,
            status_since_reset: false,
            next_status: None,
            idle_since: None,
            progress: LastProgress {
                since: None,
                position: None,
                acked: 0,
            },
            last_reply: None,
            settings_deadline: None,
            settings_retried: false,
            paused: false,
            partial: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Settings read with `$$`.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Firmware version from the banner.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The latest status report.
    pub fn status(&self) -> Option<&StatusReport> {
        self.status.as_ref()
    }

    /// The work offset last reported: work position = machine position − offset.
    pub fn work_offset(&self) -> Option<[f64; 3]> {
        self.work_offset
    }

    /// Whether start-up and `$$` are done and the link is open.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Whether the session is closed (link lost or start-up failed).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether a job (or its stop sequence) is under way.
    pub fn job_running(&self) -> bool {
        self.job.is_some()
    }

    /// Whether a soft reset was sent and its banner not yet received.
    pub fn awaiting_reset(&self) -> bool {
        matches!(self.phase, Phase::AwaitBanner { .. })
    }

    /// Whether a status report arrived since the last banner.
    pub fn has_fresh_status(&self) -> bool {
        self.status_since_reset
    }

    /// Whether commands sent with [`send_command`](Self::send_command) still await replies.
    pub fn commands_pending(&self) -> bool {
        !self.queue.is_empty() || !self.counter.is_empty()
    }

    /// Bytes in GRBL's receive buffer by the count.
    pub fn in_flight_bytes(&self) -> usize {
        self.counter.bytes()
    }

    /// The next thing the session must write or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn write(&mut self, bytes: Vec<u8>) {
        self.out.push_back(Output::Write(bytes));
    }

    fn write_realtime(&mut self, r: Realtime) {
        self.write(vec![r.byte()]);
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    /// Opens the session: a soft reset, so GRBL starts from a known state and prints its
    /// banner (`grbl/main.c`). Boards that reset when the port opens print a banner too;
    /// either is accepted.
    pub fn start(&mut self, now: Instant) {
        self.write_realtime(Realtime::SoftReset);
        self.phase = Phase::AwaitBanner {
            deadline: now + self.config.banner_timeout,
            first: true,
        };
    }

    /// When [`tick`](Self::tick) must next run.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut add = |t: Instant| d = Some(d.map_or(t, |d| d.min(t)));
        match self.phase {
            Phase::AwaitBanner { deadline, .. } => add(deadline),
            Phase::ReadingSettings | Phase::Ready => {
                if let Some(t) = self.next_status {
                    add(t);
                }
                if self.phase == Phase::ReadingSettings
                    && let Some(t) = self.settings_deadline
                {
                    add(t);
                }
            }
            Phase::New | Phase::Closed => {}
        }
        if let Some(job) = &self.job {
            if let Stage::Stopping { deadline, .. } = job.stage {
                add(deadline);
            }
            if let (Stage::Streaming, Some(idle)) = (job.stage, self.idle_since) {
                let from = self.last_reply.map_or(idle, |r| r.max(idle));
                add(from + self.config.stuck_after);
            }
            if self.stall_watched()
                && let Some(since) = self.progress.since
            {
                add(since + self.config.stall_after);
            }
        }
        d
    }

    /// Whether a lack of progress would now be a fault: a cut or dry run under way, not
    /// paused by a person, the machine saying `Run`, `Hold`, `Jog` or something unknown,
    /// or nothing at all. An idle machine waiting for a reply has its own guard
    /// ([`Config::stuck_after`]); an alarm fails the job by itself; an open door waits for
    /// the person at the machine.
    fn stall_watched(&self) -> bool {
        let Some(job) = &self.job else {
            return false;
        };
        if self.paused || !matches!(job.stage, Stage::Streaming | Stage::Draining { .. }) {
            return false;
        }
        match self.status.as_ref().map(|s| s.state) {
            None => true,
            Some(state) => matches!(
                state,
                MachineState::Run
                    | MachineState::Hold(_)
                    | MachineState::Jog
                    | MachineState::Unknown
            ),
        }
    }

    /// Records what the machine says of its progress; any change restarts the clock.
    fn note_progress(&mut self, position: Option<[f64; 3]>, now: Instant) {
        let acked = self.job.as_ref().map_or(0, |j| j.acked);
        let p = self.progress;
        let moved = position.is_some() && position != p.position;
        if moved || acked != p.acked || p.since.is_none() {
            self.progress = LastProgress {
                since: Some(now),
                position: position.or(p.position),
                acked,
            };
        }
    }

    /// Runs timers: status polling, reset and hold time-outs, lost replies.
    pub fn tick(&mut self, now: Instant) {
        if let Phase::AwaitBanner { deadline, first } = self.phase
            && now >= deadline
        {
            if first {
                self.phase = Phase::Closed;
                self.emit(Event::ConnectFailed(ConnectFailure::NoBanner));
            } else {
                // A reset we asked for went unanswered; keep talking, the next status
                // report says where the machine stands.
                self.emit(Event::Feedback("no banner after soft reset".into()));
                self.phase = Phase::Ready;
                self.next_status = Some(now);
                self.finish_dry_run();
            }
        }
        if self.phase == Phase::ReadingSettings && self.settings_deadline.is_some_and(|t| now >= t)
        {
            self.settings_unanswered(now);
        }
        if matches!(self.phase, Phase::ReadingSettings | Phase::Ready)
            && self.next_status.is_some_and(|t| now >= t)
        {
            self.write_realtime(Realtime::StatusQuery);
            self.next_status = Some(now + self.config.status_interval);
        }
        if self.job.is_some() && self.progress.since.is_none() {
            self.note_progress(None, now);
        }
        let mut stalled = None;
        if self.stall_watched()
            && let (Some(job), Some(since)) = (&self.job, self.progress.since)
            && now >= since + self.config.stall_after
        {
            let index = job.acked.min(job.lines.len().saturating_sub(1));
            stalled = Some(FailReason::Stalled {
                state: self.status.as_ref().map(|s| s.state),
                line: job.lines.get(index).map_or(0, |l| l.number),
            });
        }
        let mut stuck = None;
        let mut settle = false;
        if let Some(job) = &self.job {
            match job.stage {
                Stage::Stopping { deadline, .. } if now >= deadline => settle = true,
                Stage::Streaming => {
                    if let Some(idle) = self.idle_since {
                        let from = self.last_reply.map_or(idle, |r| r.max(idle));
                        if !self.paused
                            && !self.counter.is_empty()
                            && now >= from + self.config.stuck_after
                        {
                            stuck = job.lines.get(job.acked).map(|l| l.number);
                        }
                    }
                }
                _ => {}
            }
        }
        if settle {
            self.reset_after_hold(now);
        }
        if let Some(line) = stuck {
            self.fail(FailReason::ReplyLost { line }, now);
        }
        if let Some(reason) = stalled {
            self.fail(reason, now);
        }
        self.pump(now);
    }

    /// Feeds bytes read from the machine.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                if !self.partial.is_empty() {
                    let line = String::from_utf8_lossy(&self.partial).into_owned();
                    self.partial.clear();
                    self.handle_line(&line, now);
                }
            } else if self.partial.len() < 1024 {
                self.partial.push(b);
            }
            // Past 1 KiB without a line end the rest is noise; the line will not parse.
        }
        self.pump(now);
    }

    /// The link closed or failed. A running job fails; the hold and reset are still
    /// written in case the link half-works.
    pub fn link_lost(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.job.is_some() {
            self.fail(FailReason::Disconnected, now);
        }
        self.phase = Phase::Closed;
        self.emit(Event::LinkLost);
    }

    /// Feed hold: motion slows to a stop; in laser mode the laser is off while held.
    pub fn pause(&mut self) {
        self.paused = true;
        self.write_realtime(Realtime::FeedHold);
    }

    /// Cycle start: resumes after [`pause`](Self::pause).
    pub fn resume(&mut self) {
        self.paused = false;
        // Time held does not count towards a stall.
        self.progress.since = None;
        self.write_realtime(Realtime::CycleStart);
    }

    /// Sends an override or other real-time byte. A soft reset asked this way is handled
    /// as [`cancel`](Self::cancel) during a job.
    pub fn realtime(&mut self, r: Realtime, now: Instant) {
        match r {
            Realtime::SoftReset => {
                if self.job.is_some() {
                    self.cancel(now);
                } else {
                    self.soft_reset(now);
                }
            }
            Realtime::FeedHold => self.pause(),
            Realtime::CycleStart => self.resume(),
            r => self.write_realtime(r),
        }
    }

    /// Cancels the running job: hold, then soft reset (laser off).
    pub fn cancel(&mut self, now: Instant) {
        if self.job.is_some() {
            self.fail(FailReason::Cancelled, now);
        }
    }

    /// Soft reset outside a job (for example to leave an alarm screen).
    pub fn soft_reset(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.job.is_some() {
            self.cancel(now);
            return;
        }
        self.write_realtime(Realtime::SoftReset);
        self.forget_in_flight();
        self.queue.clear();
        self.phase = Phase::AwaitBanner {
            deadline: now + self.config.banner_timeout,
            first: false,
        };
    }

    /// Queues a command line (`$H`, `$X`, `$G`, `$$`, `$32=1`, a jog...) outside a job.
    /// EEPROM writes go alone, in send-response mode.
    pub fn send_command(&mut self, text: &str, now: Instant) -> Result<(), Refusal> {
        if self.phase != Phase::Ready {
            return Err(Refusal::NotReady);
        }
        if self.job.is_some() {
            return Err(Refusal::Busy);
        }
        let text = clean_line(text);
        self.queue.push_back((Tag::Command(text.clone()), text));
        self.pump(now);
        Ok(())
    }

    fn check_can_start(&self) -> Result<(), Refusal> {
        if self.phase != Phase::Ready {
            return Err(Refusal::NotReady);
        }
        if self.job.is_some() || self.commands_pending() {
            return Err(Refusal::Busy);
        }
        let state = self.status.as_ref().map(|s| s.state);
        if !self.status_since_reset || state != Some(MachineState::Idle) {
            return Err(Refusal::NotIdle(state));
        }
        Ok(())
    }

    /// Checks `program` against this machine as it stands now: its settings, its work
    /// offset and the tool it carries ([`check_job`]).
    pub fn check(&self, program: &Program, area: WorkArea) -> Result<(), Refusal> {
        check_job(
            program,
            &self.settings,
            area,
            self.work_offset,
            self.config.tool,
        )
    }

    /// Starts a cut. Refused, with nothing sent, unless the machine is ready and idle, the
    /// confirmation is fresh, and [`check_job`] passes.
    pub fn start_cut(
        &mut self,
        program: Program,
        area: WorkArea,
        person: PersonAtMachine,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.check_can_start()?;
        if now.saturating_duration_since(person.confirmed_at) > self.config.confirmation_ttl {
            return Err(Refusal::StaleConfirmation);
        }
        self.check(&program, area)?;
        self.begin(JobKind::Cut, program, now);
        Ok(())
    }

    /// Starts a dry run: `$C` check mode, every line, `$C` again. Nothing moves or fires,
    /// so no person needs to be present; errors are collected by line, and GRBL resets when
    /// it leaves check mode.
    pub fn start_dry_run(&mut self, program: Program, now: Instant) -> Result<(), Refusal> {
        self.check_can_start()?;
        if program.lines().is_empty() {
            return Err(Refusal::Empty);
        }
        self.queue.push_back((Tag::EnterCheck, "$C".into()));
        self.begin(JobKind::DryRun, program, now);
        Ok(())
    }

    fn begin(&mut self, kind: JobKind, program: Program, now: Instant) {
        self.paused = false;
        self.idle_since = None;
        self.progress = LastProgress {
            since: Some(now),
            position: self.status.as_ref().and_then(|s| s.mpos.or(s.wpos)),
            acked: 0,
        };
        self.last_reply = Some(now);
        self.job = Some(Job {
            kind,
            lines: program.lines,
            next: 0,
            acked: 0,
            errors: Vec::new(),
            stage: Stage::Streaming,
        });
        self.pump(now);
    }

    /// Sends whatever fits: queued commands first, then job lines.
    fn pump(&mut self, _now: Instant) {
        if !matches!(self.phase, Phase::ReadingSettings | Phase::Ready) {
            return;
        }
        loop {
            if let Some((_, text)) = self.queue.front() {
                let len = text.len() + 1;
                let sync = is_eeprom_write(text);
                if !self.counter.can_send(len, sync) {
                    return;
                }
                if let Some((tag, text)) = self.queue.pop_front() {
                    let mut bytes = text.into_bytes();
                    bytes.push(b'\n');
                    self.counter.sent(tag, len, sync);
                    self.write(bytes);
                }
                continue;
            }
            if self.phase != Phase::Ready {
                return;
            }
            let Some(job) = self.job.as_mut() else {
                return;
            };
            if job.stage != Stage::Streaming {
                return;
            }
            // A dry run waits for `$C` to be accepted before its lines go.
            if job.kind == JobKind::DryRun && !self.counter.is_empty() && job.next == 0 {
                return;
            }
            let Some(line) = job.lines.get(job.next) else {
                return;
            };
            let len = line.text.len() + 1;
            let sync = is_eeprom_write(&line.text);
            if !self.counter.can_send(len, sync) {
                return;
            }
            let mut bytes = Vec::with_capacity(len);
            bytes.extend_from_slice(line.text.as_bytes());
            bytes.push(b'\n');
            let index = job.next;
            job.next += 1;
            self.counter.sent(Tag::Job(index), len, sync);
            self.write(bytes);
        }
    }

    fn handle_line(&mut self, line: &str, now: Instant) {
        match parse_response(line) {
            Response::Ok => self.reply(None, line, now),
            Response::Error(code) => self.reply(Some(code), line, now),
            Response::Banner(v) => self.banner(v, now),
            Response::Alarm(code) => {
                self.emit(Event::Alarm(code));
                if self.job.is_some() {
                    self.fail(FailReason::Alarm(code), now);
                } else if self.phase == Phase::ReadingSettings {
                    // A critical alarm (hard or soft limit) drops GRBL's buffers and waits
                    // for a reset (`grbl/protocol.c`): `$$` will never be answered.
                    self.settings_unanswered(now);
                }
            }
            Response::Status(s) => self.status_report(s, now),
            Response::Setting(n, v) => {
                self.settings.set(n, v);
                // Outside start-up, a `$$` someone asked for: they want to read it.
                if self.phase == Phase::Ready {
                    self.emit(Event::Feedback(line.trim().to_string()));
                }
            }
            Response::Message(m) => self.emit(Event::Message(m)),
            Response::Feedback(f) | Response::Other(f) => self.emit(Event::Feedback(f)),
        }
    }

    fn status_report(&mut self, s: StatusReport, now: Instant) {
        if s.state == MachineState::Idle {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        let state = s.state;
        if self.job.is_some() {
            self.note_progress(s.mpos.or(s.wpos), now);
        }
        let reported = match (s.wco, s.mpos, s.wpos) {
            (Some(wco), _, _) => Some(wco),
            (None, Some(m), Some(w)) => Some([m[0] - w[0], m[1] - w[1], m[2] - w[2]]),
            _ => None,
        };
        if reported.is_some() {
            self.work_offset = reported;
        }
        self.status = Some(s.clone());
        self.status_since_reset = true;
        self.emit(Event::Status(s));
        let Some(job) = &self.job else {
            return;
        };
        match job.stage {
            Stage::Draining { since }
                if state == MachineState::Idle && now >= since + DRAIN_GUARD =>
            {
                let summary = JobSummary {
                    kind: job.kind,
                    lines: job.acked,
                    errors: job.errors.clone(),
                };
                self.job = None;
                self.emit(Event::JobDone(summary));
            }
            Stage::Stopping { .. } if state.is_still() => self.reset_after_hold(now),
            _ => {}
        }
    }

    fn reply(&mut self, error: Option<u8>, line: &str, now: Instant) {
        self.last_reply = Some(now);
        let outcome = error.map_or(LineOutcome::Ok, LineOutcome::Error);
        let Some(tag) = self.counter.acked() else {
            self.emit(Event::UnexpectedReply(line.to_string()));
            return;
        };
        match tag {
            Tag::Job(index) => self.job_reply(index, outcome, now),
            Tag::Command(text) => self.emit(Event::Command { text, outcome }),
            Tag::ReadSettings => {
                if self.phase == Phase::ReadingSettings {
                    self.phase = Phase::Ready;
                    self.next_status = Some(now);
                    self.emit(Event::Settings(self.settings.clone()));
                }
            }
            Tag::EnterCheck => {
                if let Some(code) = error {
                    // Check mode refused (e.g. `error:8`, not idle): nothing was sent yet.
                    self.job = None;
                    self.emit(Event::JobFailed(FailReason::Error(LineError {
                        line: 0,
                        code,
                    })));
                }
            }
            Tag::LeaveCheck => {
                // GRBL soft-resets on leaving check mode and prints its banner.
                self.forget_in_flight();
                self.phase = Phase::AwaitBanner {
                    deadline: now + self.config.banner_timeout,
                    first: false,
                };
            }
        }
    }

    fn job_reply(&mut self, index: usize, outcome: LineOutcome, now: Instant) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let number = job.lines.get(index).map_or(0, |l| l.number);
        job.acked = index + 1;
        self.note_progress(None, now);
        self.emit(Event::Line {
            index,
            number,
            outcome,
        });
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if let LineOutcome::Error(code) = outcome {
            let e = LineError { line: number, code };
            match job.kind {
                // GRBL keeps running what it already buffered after an error
                // (`interface.md`; gnea/grbl#1178): stop everything now.
                JobKind::Cut => {
                    self.fail(FailReason::Error(e), now);
                    return;
                }
                JobKind::DryRun => job.errors.push(e),
            }
        }
        if job.stage == Stage::Streaming && job.acked == job.lines.len() {
            match job.kind {
                JobKind::Cut => {
                    // All lines planned; done when the machine stands idle again. GRBL
                    // starts the cycle only once its receive buffer is empty
                    // (`protocol_auto_cycle_start` in `grbl/protocol.c`), so a report made
                    // just after the last `ok` may still say Idle with blocks queued: only
                    // a report asked for a little later counts.
                    job.stage = Stage::Draining { since: now };
                    self.idle_since = None;
                    self.next_status = Some(now + DRAIN_GUARD);
                }
                JobKind::DryRun => {
                    job.stage = Stage::LeavingCheck;
                    self.queue.push_back((Tag::LeaveCheck, "$C".into()));
                }
            }
        }
    }

    fn banner(&mut self, v: Version, now: Instant) {
        self.status_since_reset = false;
        // A reset clears G92 and reloads G54 from EEPROM: the next report says the offset.
        self.work_offset = None;
        self.idle_since = None;
        if !v.is_supported() {
            self.phase = Phase::Closed;
            self.emit(Event::ConnectFailed(ConnectFailure::Unsupported(v)));
            return;
        }
        self.version = Some(v);
        match self.phase {
            Phase::AwaitBanner { first: true, .. } | Phase::ReadingSettings => {
                // First banner, or a second one from a board that also reset on open:
                // (re)read the settings.
                self.forget_in_flight();
                self.queue.clear();
                if matches!(self.phase, Phase::AwaitBanner { .. }) {
                    self.emit(Event::Connected(v));
                }
                self.phase = Phase::ReadingSettings;
                self.settings_deadline = Some(now + self.config.banner_timeout);
                self.settings = Settings::default();
                self.queue.push_back((Tag::ReadSettings, "$$".into()));
                self.next_status = Some(now + self.config.status_interval);
            }
            Phase::AwaitBanner { first: false, .. } => {
                self.phase = Phase::Ready;
                self.next_status = Some(now);
                self.emit(Event::Reset);
                self.finish_dry_run();
            }
            Phase::Ready => {
                // GRBL restarted by itself: whatever was in its buffers is gone
                // (`grbl/main.c` clears them). Never continue blind.
                self.emit(Event::UnexpectedReset);
                if self.job.is_some() {
                    self.fail(FailReason::UnexpectedReset, now);
                } else {
                    self.forget_in_flight();
                    self.next_status = Some(now);
                }
            }
            Phase::New | Phase::Closed => {}
        }
    }

    /// `$$` will not be answered: soft-reset and read again once; then give up.
    fn settings_unanswered(&mut self, now: Instant) {
        if self.settings_retried {
            self.phase = Phase::Closed;
            self.emit(Event::ConnectFailed(ConnectFailure::NoSettings));
            return;
        }
        self.settings_retried = true;
        self.forget_in_flight();
        self.queue.clear();
        self.write_realtime(Realtime::SoftReset);
        self.phase = Phase::AwaitBanner {
            deadline: now + self.config.banner_timeout,
            first: true,
        };
    }

    /// Ends a dry run that has left check mode.
    fn finish_dry_run(&mut self) {
        if let Some(job) = &self.job
            && job.stage == Stage::LeavingCheck
        {
            let summary = JobSummary {
                kind: job.kind,
                lines: job.acked,
                errors: job.errors.clone(),
            };
            self.job = None;
            self.emit(Event::JobDone(summary));
        }
    }

    /// Reports every line still awaiting a reply as unconfirmed, oldest first.
    fn forget_in_flight(&mut self) {
        for tag in self.counter.clear() {
            match tag {
                Tag::Job(index) => {
                    let number = self
                        .job
                        .as_ref()
                        .and_then(|j| j.lines.get(index))
                        .map_or(0, |l| l.number);
                    self.emit(Event::Line {
                        index,
                        number,
                        outcome: LineOutcome::Unconfirmed,
                    });
                }
                Tag::Command(text) => self.emit(Event::Command {
                    text,
                    outcome: LineOutcome::Unconfirmed,
                }),
                Tag::ReadSettings | Tag::EnterCheck | Tag::LeaveCheck => {}
            }
        }
    }

    /// Stops the job: feed hold first (laser off in laser mode, position kept), then a soft
    /// reset once the machine stands still or [`Config::hold_settle`] passes. After an alarm,
    /// an unexpected reset or a lost link the machine is already stopped (or unreachable),
    /// so the reset follows at once.
    fn fail(&mut self, reason: FailReason, now: Instant) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if matches!(job.stage, Stage::Stopping { .. }) {
            return; // the first reason stands
        }
        job.stage = Stage::Stopping {
            reason,
            deadline: now + self.config.hold_settle,
        };
        self.queue.clear();
        self.write_realtime(Realtime::FeedHold);
        match reason {
            FailReason::Alarm(_) | FailReason::UnexpectedReset | FailReason::Disconnected => {
                self.reset_after_hold(now);
            }
            _ => self.write_realtime(Realtime::StatusQuery),
        }
    }

    fn reset_after_hold(&mut self, now: Instant) {
        let Some(job) = self.job.as_ref() else {
            return;
        };
        let Stage::Stopping { reason, .. } = job.stage else {
            return;
        };
        self.write_realtime(Realtime::SoftReset);
        self.forget_in_flight();
        self.job = None;
        self.paused = false;
        self.queue.clear();
        if self.phase != Phase::Closed {
            self.phase = Phase::AwaitBanner {
                deadline: now + self.config.banner_timeout,
                first: false,
            };
        }
        self.emit(Event::JobFailed(reason));
    }
}
