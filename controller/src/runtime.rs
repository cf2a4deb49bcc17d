//! The machine runtime: one tokio task per machine owns its link, takes commands by
//! channel, publishes its live state by `watch` and every change by `broadcast`, and writes
//! jobs' states and progress to the store. A planner pass runs after every event and every
//! half minute: it starts planned printer jobs on idle machines. Lasers and machines without
//! a data link never start by themselves: a person starts them from the workshop board.
//!
//! Safety: every way a job ends (done, failed, cancelled, emergency stop, dropped link,
//! shutdown) goes through the driver, which leaves the printer with heaters and motors off;
//! the job is marked with what happened, never silently dropped.

use crate::domain::fit::{self, Refusal, Start, Waiting};
use crate::domain::job::{Job, JobId, JobState};
use crate::domain::panel::PanelAction;
use crate::domain::{Connection, Machine, MachineId, MachineState, Role, User, UserId};
use crate::jobs::Clearances;
use crate::lab::{Lab, LabError, now};
use crate::scheduler::{self, Busy, PlanJob, PlanMachine, Policy};
use crate::store::{StoreError, StoreResult};
use fabrique_machines::driver::marlin::{
    self as marlin_driver, Control, JobFailure, JobOutcome, StreamOptions,
};
use fabrique_machines::driver::remote::{
    self, RemoteEvent, RemoteJob, RemoteOptions, RemoteOutcome, RemotePrinter, RemoteState,
};
use fabrique_machines::transport::{moonraker::Moonraker, octoprint::OctoPrint};
use jiff::Timestamp;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod grbl;
mod grbl_link;
mod hpgl;
mod manual;
mod marlin;
mod print_server;
use grbl_link::GrblLink;
pub use grbl_link::{Answer as PanelAnswer, PanelStatus};

/// What the workshop board shows of a machine, live.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Live {
    pub machine: i64,
    pub state: MachineState,
    pub job: Option<i64>,
    pub job_name: Option<String>,
    pub member: Option<String>,
    /// 0 to 1.
    pub progress: f64,
    pub remaining_s: Option<u64>,
    /// Hotend and bed: (actual, target) in °C.
    pub hotend: Option<(f64, Option<f64>)>,
    pub bed: Option<(f64, Option<f64>)>,
    /// The last error, in words.
    pub last_error: Option<String>,
    /// A mill's job waits here for a person to change the tool.
    pub tool_change: Option<ToolChangeView>,
}

/// Where a mill's job stopped for a tool change, and the tool it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ToolChangeView {
    /// The file line of the `M6`.
    pub line: usize,
    /// `T2`: 2; `None` when the file names none.
    pub tool: Option<u32>,
}

#[derive(Debug)]
pub enum Command {
    /// A person at the machine (or the planner, for printers) starts a job.
    Start {
        job: JobId,
        by: Option<UserId>,
        reply: oneshot::Sender<Result<(), LabError>>,
    },
    Pause,
    Resume,
    Cancel,
    EmergencyStop,
    /// Machines without a data link: the operator says the job ended (`ok`) or failed.
    Finished {
        ok: bool,
    },
    /// The machine's record changed in the store (state set by a manager): publish it.
    Refresh,
    /// An operator panel action by the person named `by` ([`Runtime::panel`]).
    Panel {
        by: String,
        action: PanelAction,
        outline: Option<fabrique_machines::protocol::grbl::Program>,
        reply: oneshot::Sender<Result<PanelAnswer, PanelError>>,
    },
}

/// Why a panel action was not done.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("the operator panel is for GRBL machines")]
    NotGrbl,
    /// Trainers and managers only.
    #[error("not allowed")]
    Forbidden,
    /// A job runs: only pause, resume and overrides reach it.
    #[error("a job is running")]
    Busy,
    /// Another person took the machine: take it first.
    #[error("the machine is held by {0}")]
    HeldBy(String),
    /// The job to frame does not exist, or is not for this machine.
    #[error("no such job for this machine")]
    NoJob,
    /// The link could not be opened, or was lost.
    #[error("link: {0}")]
    Link(fabrique_machines::driver::grbl::GrblError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl PanelError {
    /// The stable code the web layer renders.
    pub fn code(&self) -> &'static str {
        match self {
            PanelError::NotGrbl => "panel_not_grbl",
            PanelError::Forbidden => "forbidden",
            PanelError::Busy => "panel_busy",
            PanelError::HeldBy(_) => "panel_held",
            PanelError::NoJob => "panel_no_job",
            PanelError::Link(_) => "panel_link",
            PanelError::Runtime(_) => "panel_stopped",
        }
    }
}

/// Who holds a GRBL machine's link, and its live status.
#[derive(Debug, Clone)]
pub struct PanelView {
    /// The person who took the machine; `None` while a job has the link alone.
    pub held_by: Option<String>,
    pub status: watch::Receiver<PanelStatus>,
}

/// The GRBL link a machine task holds, and for whom.
struct HeldLink {
    link: GrblLink,
    held_by: Option<String>,
    last_used: std::time::Instant,
}

/// A machine taken with the panel and left untouched this long is given back.
const PANEL_IDLE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("unknown machine")]
    UnknownMachine,
    #[error("the machine's task has stopped")]
    Stopped,
    /// The start was refused (the fit rule, the machine's or the job's state) or could not
    /// be recorded.
    #[error(transparent)]
    Refused(LabError),
}

/// The answer to a start while a job already runs on the machine.
fn already_working() -> LabError {
    Refusal::MachineNotFree {
        state: MachineState::Busy,
    }
    .into()
}

struct Handle {
    commands: mpsc::Sender<Command>,
    live: watch::Receiver<Live>,
    panel: watch::Receiver<Option<PanelView>>,
}

/// The runtime of all machines. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    lab: Lab,
    jobs_dir: PathBuf,
    handles: Arc<Mutex<HashMap<MachineId, Handle>>>,
    events: broadcast::Sender<Live>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    wake: Arc<tokio::sync::Notify>,
}

/// A plan with what it was made from, and why each job left out waits.
pub struct Planned {
    pub plan: scheduler::Plan,
    pub machines: Vec<Machine>,
    pub jobs: Vec<Job>,
    pub now: Timestamp,
    pub waiting: HashMap<i64, Waiting>,
    pub clearances: Clearances,
}

/// Where a queued job stands in the plan, for its page.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePlace {
    /// 1 for the next job to start; queued jobs are counted in the order the plan starts
    /// them, those it cannot place yet last.
    pub place: usize,
    pub of: usize,
    /// The planned start and the machine's name, when the plan places the job.
    pub start: Option<(Timestamp, String)>,
    /// Whether a person must press "Démarrer" at the machine (a laser, a machine without a
    /// data link, a supervised run): the planner never starts it.
    pub needs_person: bool,
}

impl Planned {
    /// [`QueuePlace`] of `job`, or `None` when it is not queued.
    pub fn place_of(&self, job: JobId) -> Option<QueuePlace> {
        let mut order: Vec<&scheduler::Placement> = self.plan.placements.iter().collect();
        order.sort_by_key(|p| (p.start, p.job));
        let mut ids: Vec<i64> = order.iter().map(|p| p.job).collect();
        ids.extend(self.plan.unplaced.iter().map(|(id, _)| *id));
        let index = ids.iter().position(|id| *id == job.0)?;
        let placement = order.iter().find(|p| p.job == job.0);
        let machine = placement.and_then(|p| self.machines.iter().find(|m| m.id.0 == p.machine));
        let needs_person = match (self.jobs.iter().find(|j| j.id == job), machine) {
            (Some(j), Some(m)) => {
                let owner = self.clearances.owner(j.owner, m.id);
                fit::check(j, m, &owner, Start::Automatic).is_err()
            }
            _ => false,
        };
        Some(QueuePlace {
            place: index + 1,
            of: ids.len(),
            start: placement
                .zip(machine)
                .map(|(p, m)| (p.start, m.name.clone())),
            needs_person,
        })
    }
}

/// How often an idle machine's link is checked, and the longest delay while it is away.
const PROBE_EVERY: Duration = Duration::from_secs(30);
const PROBE_MAX: Duration = Duration::from_secs(300);

/// A print server's answer, as "is the printer there?" and why not.
async fn probe<P: RemotePrinter>(printer: &P) -> (bool, String) {
    match printer.status().await {
        Ok(s) => match s.state {
            // A printer in error (Klipper shut down) takes no job until it is ready again.
            RemoteState::PrinterOffline(why) | RemoteState::Error(why) => {
                (false, format!("{} : {why}", printer.name()))
            }
            _ => (true, String::new()),
        },
        // "injoignable", "pas prête" or "a refusé": what the server said, or that it did not.
        Err(e) => (
            false,
            e.message(printer.name(), fabrique_machines::protocol::grbl::Lang::Fr),
        ),
    }
}

/// The waits between tries of a job write that failed: about six seconds in all.
const WRITE_RETRIES: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(3),
];

/// Why a machine is in error when the store would not take a job's state.
const UNRECORDED: &str = "l'état du travail n'a pas pu être enregistré : machine arrêtée et mise en sécurité, vérifier le travail";

/// How long the planner waits after an event before its pass, to take bursts together.
const PLAN_DEBOUNCE: Duration = Duration::from_millis(250);

/// How far ahead the planner looks.
pub const HORIZON_S: i64 = 7 * 86_400;

impl Runtime {
    /// Marks jobs that were running when Fabrique stopped as interrupted (with their last
    /// acknowledged line), then starts one task per machine and the planner.
    pub async fn start(
        lab: Lab,
        jobs_dir: PathBuf,
        retention_days: u32,
    ) -> Result<Self, crate::LabError> {
        let at = now();
        let machines = lab.machines().await?;
        let mut reattach: HashMap<MachineId, Job> = HashMap::new();
        for job in lab
            .store()
            .jobs_in_state(&[JobState::Running, JobState::Paused])
            .await?
        {
            // A print server kept printing while Fabrique was stopped: follow it again.
            if let Some(machine) = job.machine
                && machines
                    .iter()
                    .any(|m| m.id == machine && m.connection.is_print_server())
            {
                reattach.insert(machine, job);
                continue;
            }
            let note = format!(
                "Fabrique s'est arrêté pendant le travail (dernière ligne confirmée : {})",
                job.lines_acked
            );
            lab.store()
                .change_job_state(job.id, job.state, JobState::Interrupted, None, &note, at)
                .await?;
            if let Some(machine) = job.machine {
                lab.store()
                    .set_machine_state(
                        machine,
                        MachineState::ToCheck,
                        "travail interrompu : vérifier la machine",
                        at,
                    )
                    .await?;
            }
        }
        let (events, _) = broadcast::channel(256);
        let runtime = Self {
            lab,
            jobs_dir,
            handles: Arc::new(Mutex::new(HashMap::new())),
            events,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        for machine in runtime.lab.machines().await? {
            let job = reattach.remove(&machine.id);
            runtime.spawn_machine(machine, job);
        }
        let planner = runtime.clone();
        runtime.tracker.spawn(tracing::Instrument::instrument(
            async move { planner.plan_loop().await },
            tracing::info_span!("planner"),
        ));
        let cleaner = runtime.clone();
        runtime.tracker.spawn(tracing::Instrument::instrument(
            async move { cleaner.clean_loop(retention_days).await },
            tracing::info_span!("cleaner"),
        ));
        Ok(runtime)
    }

    /// Starts a machine's task; `reattach` is a job its print server kept running.
    fn spawn_machine(&self, machine: Machine, reattach: Option<Job>) {
        let (commands, rx) = mpsc::channel(16);
        let initial = Live {
            machine: machine.id.0,
            state: machine.state,
            job: None,
            job_name: None,
            member: None,
            progress: 0.0,
            remaining_s: None,
            hotend: None,
            bed: None,
            last_error: None,
            tool_change: None,
        };
        let (live_tx, live) = watch::channel(initial);
        let (panel_tx, panel) = watch::channel(None);
        if let Ok(mut handles) = self.handles.lock() {
            handles.insert(
                machine.id,
                Handle {
                    commands,
                    live,
                    panel,
                },
            );
        }
        // Every event of the task (and of the drivers it runs) carries the machine.
        let span = tracing::info_span!("machine", id = machine.id.0, name = %machine.name);
        let task = MachineTask {
            runtime: self.clone(),
            machine,
            live: live_tx,
            started_by: None,
            grbl: None,
            panel: panel_tx,
        };
        self.tracker.spawn(tracing::Instrument::instrument(
            task.run(rx, reattach),
            span,
        ));
    }

    /// Asks for a planner pass now (a job was queued, approved or queued again).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Every machine's live state, for the board.
    pub fn live(&self) -> Vec<Live> {
        let handles = self.handles.lock().map(|h| {
            h.values()
                .map(|h| h.live.borrow().clone())
                .collect::<Vec<_>>()
        });
        let mut all = handles.unwrap_or_default();
        all.sort_by_key(|l| l.machine);
        all
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.events.subscribe()
    }

    async fn send(&self, machine: MachineId, command: Command) -> Result<(), RuntimeError> {
        let sender = self
            .handles
            .lock()
            .ok()
            .and_then(|h| h.get(&machine).map(|h| h.commands.clone()))
            .ok_or(RuntimeError::UnknownMachine)?;
        sender
            .send(command)
            .await
            .map_err(|_| RuntimeError::Stopped)
    }

    /// A person at the machine starts a job (the only way a laser ever starts).
    /// An operator panel action at a GRBL machine, by a trainer or a manager standing at
    /// it: the pages and the API ask it of a signed-in person pressing the button, as they
    /// ask the start of a cut. Every action is logged with who asked, what was sent and
    /// what the machine answered (or why nothing was sent).
    pub async fn panel(
        &self,
        machine: MachineId,
        by: &User,
        action: PanelAction,
    ) -> Result<PanelAnswer, PanelError> {
        if !by.role.at_least(Role::Trainer) {
            return Err(PanelError::Forbidden);
        }
        let name = action.name();
        let outline = match &action {
            PanelAction::Frame { job, .. } => Some(self.outline(machine, *job).await?),
            _ => None,
        };
        let (reply, answer) = oneshot::channel();
        self.send(
            machine,
            Command::Panel {
                by: by.display_name.clone(),
                action,
                outline,
                reply,
            },
        )
        .await?;
        let answer = answer.await.map_err(|_| RuntimeError::Stopped)?;
        let (sent, said) = match &answer {
            Ok(a) => {
                let mut said = a.lines.join("\n");
                let verdict = match &a.outcome {
                    Ok(()) if a.sent.is_empty() => String::new(),
                    Ok(()) => "ok".to_string(),
                    Err(why) => why.clone(),
                };
                if !verdict.is_empty() {
                    if !said.is_empty() {
                        said.push('\n');
                    }
                    said.push_str(&verdict);
                }
                (a.sent.clone(), said)
            }
            Err(e) => (String::new(), e.to_string()),
        };
        let entry = crate::store::PanelLogEntry {
            at: now(),
            who: by.display_name.clone(),
            action: name.to_string(),
            sent,
            answer: said,
        };
        if let Err(e) = self.lab.store().log_panel(machine, by, &entry).await {
            tracing::error!(machine = machine.0, error = %e, "could not log a panel action");
        }
        answer
    }

    /// The drawing of a job for this machine, to frame it.
    async fn outline(
        &self,
        machine: MachineId,
        job: JobId,
    ) -> Result<fabrique_machines::protocol::grbl::Program, PanelError> {
        let job = self
            .lab
            .store()
            .job(job)
            .await
            .map_err(|_| PanelError::NoJob)?;
        let for_here = job
            .machine
            .or(job.target_machine)
            .is_none_or(|m| m == machine);
        if !for_here || job.file_deleted {
            return Err(PanelError::NoJob);
        }
        let text = tokio::fs::read_to_string(self.jobs_dir.join(&job.stored_name))
            .await
            .map_err(|_| PanelError::NoJob)?;
        fabrique_machines::protocol::grbl::Program::parse(&text, usize::MAX)
            .map_err(|_| PanelError::NoJob)
    }

    /// Who holds a GRBL machine's link and its status, while it is open.
    pub fn panel_view(&self, machine: MachineId) -> Option<(Option<String>, PanelStatus)> {
        let handles = self.handles.lock().ok()?;
        let view = handles.get(&machine)?.panel.borrow().clone()?;
        let status = view.status.borrow().clone();
        Some((view.held_by, status))
    }

    pub async fn start_job(
        &self,
        machine: MachineId,
        job: JobId,
        by: &User,
    ) -> Result<(), RuntimeError> {
        let (reply, answer) = oneshot::channel();
        self.send(
            machine,
            Command::Start {
                job,
                by: Some(by.id),
                reply,
            },
        )
        .await?;
        answer
            .await
            .map_err(|_| RuntimeError::Stopped)?
            .map_err(RuntimeError::Refused)
    }

    /// Re-reads a machine after a manager created it or changed it (its connection, or its
    /// state by hand: checked, maintenance); a new machine gets its task.
    pub async fn refresh(&self, machine: MachineId) {
        let known = self
            .handles
            .lock()
            .map(|h| h.contains_key(&machine))
            .unwrap_or(true);
        if known {
            let _ = self.send(machine, Command::Refresh).await;
        } else if let Ok(m) = self.lab.machine(machine).await {
            self.spawn_machine(m, None);
        }
        self.wake();
    }

    pub async fn control(&self, machine: MachineId, command: Command) -> Result<(), RuntimeError> {
        self.send(machine, command).await
    }

    /// Stops every machine's task, cancelling running jobs so that each driver leaves its
    /// machine safe, and waits for them (at most `timeout`).
    pub async fn shutdown(&self, timeout: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(timeout, self.tracker.wait()).await;
    }

    /// One planner pass: the plan for the queued jobs, and the start of planned printer
    /// jobs on idle machines with a data link.
    /// The plan for the queued jobs, without acting on it: for the plan page.
    pub async fn plan(&self) -> Result<Planned, crate::LabError> {
        let at = now();
        let settings = self.lab.calendar_settings().await?;
        let machines = self.lab.machines().await?;
        let queued = self.lab.store().jobs_in_state(&[JobState::Queued]).await?;
        let now_ts = Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH);
        let policy = Policy {
            printers_unattended: settings.printers_unattended,
            horizon_s: HORIZON_S,
        };
        let horizon = Timestamp::from_second(at + HORIZON_S).unwrap_or(now_ts);
        let bookings = self.lab.bookings_between(None, now_ts, horizon, at).await?;
        let busy: Vec<Busy> = bookings
            .iter()
            .filter(|b| b.is_live())
            .map(|b| Busy {
                machine: b.machine.0,
                start: b.starts_at,
                end: b.ends_at,
            })
            .collect();
        let mut opening = Vec::new();
        let mut date = settings.local_date(now_ts);
        for _ in 0..=(HORIZON_S / 86_400) {
            opening.extend(settings.windows(date));
            date = date.tomorrow().unwrap_or(date);
        }
        let live = self.live();
        let plan_machines: Vec<PlanMachine> = machines
            .iter()
            .filter(|m| {
                matches!(
                    m.state,
                    MachineState::Idle | MachineState::Busy | MachineState::Paused
                )
            })
            .map(|m| {
                // A working machine is free when its job ends: the driver's estimate of the
                // time left, or an hour when it has none yet.
                let left = live
                    .iter()
                    .find(|l| l.machine == m.id.0)
                    .and_then(|l| l.remaining_s)
                    .map_or(3600, |s| i64::try_from(s).unwrap_or(3600));
                PlanMachine {
                    id: m.id.0,
                    kind: m.kind,
                    free_from: if m.state == MachineState::Idle {
                        now_ts
                    } else {
                        Timestamp::from_second(at + left).unwrap_or(horizon)
                    },
                }
            })
            .collect();
        // The rule decides where each job may go; the planner only chooses when.
        let owners: Vec<UserId> = queued.iter().map(|j| j.owner).collect();
        let clearances = self.lab.clearances(&owners, at).await?;
        let jobs: Vec<PlanJob> = queued
            .iter()
            .map(|job| PlanJob {
                id: job.id.0,
                owner: job.owner.0,
                machines: plan_machines
                    .iter()
                    .filter_map(|pm| machines.iter().find(|m| m.id.0 == pm.id))
                    .filter(|m| {
                        let owner = clearances.owner(job.owner, m.id);
                        fit::check(job, m, &owner, Start::Plan).is_ok()
                    })
                    .map(|m| m.id.0)
                    .collect(),
                attended: job.approval.as_ref().is_some_and(|a| a.supervised),
                estimate_s: job.estimate_s.unwrap_or(3600),
                priority: job.priority,
                campaign: job.campaign.is_some(),
                submitted_at: job.created_at,
            })
            .collect();
        let plan = scheduler::plan(&jobs, &plan_machines, &busy, &opening, &policy, now_ts);
        let waiting = plan
            .unplaced
            .iter()
            .filter_map(|(id, why)| {
                let job = queued.iter().find(|j| j.id.0 == *id)?;
                let reason = match why {
                    scheduler::Unplaced::NoRoom => Waiting::NoRoom,
                    scheduler::Unplaced::NoMachine => {
                        crate::jobs::waiting(job, &machines, &clearances)
                            .unwrap_or(Waiting::Unavailable)
                    }
                };
                Some((*id, reason))
            })
            .collect();
        Ok(Planned {
            plan,
            machines,
            jobs: queued,
            now: now_ts,
            waiting,
            clearances,
        })
    }

    /// One planner pass: the plan, and the start of the jobs planned now on idle machines
    /// that the rule lets start with nobody there (printers with a data link; never a laser,
    /// a machine without a link, or a supervised run).
    pub async fn plan_once(&self) -> Result<scheduler::Plan, crate::LabError> {
        let Planned {
            plan,
            machines,
            jobs,
            now: now_ts,
            clearances,
            ..
        } = self.plan().await?;
        for placement in plan.placements.iter().filter(|p| p.start <= now_ts) {
            let Some(machine) = machines.iter().find(|m| m.id.0 == placement.machine) else {
                continue;
            };
            let Some(job) = jobs.iter().find(|j| j.id.0 == placement.job) else {
                continue;
            };
            let owner = clearances.owner(job.owner, machine.id);
            if machine.state != MachineState::Idle
                || fit::check(job, machine, &owner, Start::Automatic).is_err()
            {
                continue;
            }
            // The task answers once the start is recorded; the planner does not wait for
            // it (a refusal there is logged by the task).
            let (reply, _) = oneshot::channel();
            let command = Command::Start {
                job: job.id,
                by: None,
                reply,
            };
            if let Err(e) = self.send(machine.id, command).await {
                tracing::warn!(machine = %machine.name, error = %e, "could not start a planned job");
            }
        }
        Ok(plan)
    }

    /// Removes old job files, ended login throttle windows and expired sessions, at start
    /// and every hour.
    async fn clean_loop(&self, retention_days: u32) {
        loop {
            match self
                .lab
                .clean_job_files(&self.jobs_dir, retention_days, now())
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "removed old job files"),
                Err(e) => tracing::error!(error = %e, "cleaning old job files failed"),
            }
            // Login throttle windows that ended, and sessions that expired.
            let store = self.lab.store();
            let window = crate::lab::THROTTLE_WINDOW_S;
            if let Err(e) = store.purge_login_throttle(now() - window).await {
                tracing::warn!(error = %e, "cleaning the login throttle failed");
            }
            if let Err(e) = store.delete_expired_sessions(now()).await {
                tracing::warn!(error = %e, "cleaning expired sessions failed");
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    }

    async fn plan_loop(&self) {
        let mut events = self.subscribe();
        loop {
            if let Err(e) = self.plan_once().await {
                tracing::error!(error = %e, "planner pass failed");
            }
            // select!: stop at shutdown; plan again when asked, after any machine event, or
            // every 30 s.
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                _ = events.recv() => {}
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            // A burst (a slicer sending files, a printer reporting progress) makes one pass,
            // not one per event: wait a moment, then take what piled up meanwhile.
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(PLAN_DEBOUNCE) => {}
            }
            while !matches!(
                events.try_recv(),
                Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
            ) {}
        }
    }
}

struct MachineTask {
    runtime: Runtime,
    machine: Machine,
    live: watch::Sender<Live>,
    /// The name of the person who started the current job at the machine, if a person did.
    started_by: Option<String>,
    /// A GRBL machine's link, while the panel holds it or a job runs.
    grbl: Option<HeldLink>,
    panel: watch::Sender<Option<PanelView>>,
}

impl MachineTask {
    fn publish(&self, change: impl FnOnce(&mut Live)) {
        self.live.send_modify(change);
        let _ = self.runtime.events.send(self.live.borrow().clone());
    }

    async fn set_machine(&self, state: MachineState, reason: &str) {
        if let Err(e) = self
            .runtime
            .lab
            .store()
            .set_machine_state(self.machine.id, state, reason, now())
            .await
        {
            tracing::error!(machine = %self.machine.name, error = %e, "could not record the machine state");
        }
        self.publish(|l| {
            l.state = state;
            l.last_error = (!reason.is_empty()
                && matches!(
                    state,
                    MachineState::Error | MachineState::Offline | MachineState::ToCheck
                ))
            .then(|| reason.to_string());
        });
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, reattach: Option<Job>) {
        if let Some(job) = reattach {
            self.reattach(job, &mut commands).await;
        }
        let mut check_in = PROBE_EVERY;
        loop {
            // select!: a shutdown ends the task (no job runs between commands); a command is
            // taken at once; between commands the link is checked now and then.
            let command = tokio::select! {
                () = self.runtime.shutdown.cancelled() => return,
                command = commands.recv() => command,
                () = tokio::time::sleep(check_in) => {
                    // A machine taken with the panel and forgotten is given back.
                    if self.grbl.as_ref().is_some_and(|h| h.last_used.elapsed() >= PANEL_IDLE || h.link.is_closed()) {
                        self.drop_grbl_link().await;
                    }
                    check_in = self.check_link(check_in).await;
                    continue;
                }
            };
            let Some(command) = command else { return };
            match command {
                Command::Start { job, by, reply } => match self.begin(job, by).await {
                    Ok(job) => {
                        // The person who asked may have gone; the job runs all the same.
                        let _answered = reply.send(Ok(()));
                        self.run_job(job, &mut commands).await;
                    }
                    Err(e) => {
                        tracing::info!(machine = %self.machine.name, job = job.0, error = %e, "start refused");
                        let _answered = reply.send(Err(e));
                    }
                },
                Command::Refresh => {
                    if let Ok(m) = self.runtime.lab.machine(self.machine.id).await {
                        self.publish(|l| {
                            l.state = m.state;
                            l.last_error = None;
                        });
                        // The link knows what the head carries: a new kind or profile
                        // opens it again.
                        if m.connection != self.machine.connection
                            || m.kind != self.machine.kind
                            || m.profile != self.machine.profile
                        {
                            self.drop_grbl_link().await;
                        }
                        self.machine = m;
                    }
                }
                Command::Panel {
                    by,
                    action,
                    outline,
                    reply,
                } => {
                    let answer = self.panel(by, action, outline).await;
                    let _answered = reply.send(answer);
                }
                // Nothing is running: controls have nothing to act on.
                Command::Pause
                | Command::Resume
                | Command::Cancel
                | Command::EmergencyStop
                | Command::Finished { .. } => {}
            }
        }
    }

    /// Between jobs: is the machine still there? An idle machine whose link is gone goes
    /// offline; an offline one that answers again is idle. Returns when to look next: the
    /// usual delay, or twice the last one (up to [`PROBE_MAX`]) while the machine is away.
    async fn check_link(&self, last: Duration) -> Duration {
        let reachable = match &self.machine.connection {
            // The panel holds the link open: the machine answers as long as it does.
            Connection::SerialGrbl { .. } if self.grbl.is_some() => Ok((
                self.grbl.as_ref().is_some_and(|h| !h.link.is_closed()),
                String::from("liaison perdue"),
            )),
            Connection::SerialMarlin { port, .. }
            | Connection::SerialGrbl { port, .. }
            | Connection::SerialHpgl { port, .. } => {
                // Opening the port would reset most boards: only its presence is checked.
                Ok(tokio::fs::try_exists(port).await.unwrap_or(false))
                    .map(|present| (present, String::from("port série absent (câble USB ?)")))
            }
            Connection::OctoPrint { url, api_key } => match OctoPrint::new(url, api_key.expose()) {
                Ok(p) => Ok(probe(&p).await),
                Err(e) => Err(e),
            },
            Connection::Moonraker { url } => match Moonraker::new(url) {
                Ok(p) => Ok(probe(&p).await),
                Err(e) => Err(e),
            },
            Connection::Manual => return PROBE_MAX,
        };
        let (present, why) = match reachable {
            Ok(answer) => answer,
            Err(e) => (false, e.to_string()),
        };
        let state = self.live.borrow().state;
        match (state, present) {
            (MachineState::Idle, false) => {
                self.set_machine(MachineState::Offline, &why).await;
            }
            (MachineState::Offline, true) => {
                self.set_machine(MachineState::Idle, "").await;
                self.runtime.wake();
            }
            _ => {}
        }
        if present {
            PROBE_EVERY
        } else {
            (last * 2).min(PROBE_MAX)
        }
    }

    /// Asks the rule once more, just before the first byte goes out, whether the job may
    /// start here, started by `by` (a person at the machine) or by the planner, and records
    /// the start.
    async fn begin(&mut self, id: JobId, by: Option<UserId>) -> Result<Job, LabError> {
        let lab = &self.runtime.lab;
        let person = match by {
            Some(user) => Some(lab.store().user(user).await?),
            None => None,
        };
        let start = person
            .as_ref()
            .map_or(Start::Automatic, |p| Start::Person(p.role));
        let job = lab.begin_job(self.machine.id, id, start, by, now()).await?;
        self.started_by = person.map(|p| p.display_name);
        self.set_machine(MachineState::Busy, "").await;
        self.publish(|l| {
            l.job = Some(job.id.0);
            l.job_name = Some(job.file_name.clone());
            l.member = Some(job.owner_name.clone());
            l.progress = 0.0;
            l.last_error = None;
        });
        Ok(job)
    }

    /// Runs a write of a job's state or progress, trying again when the database refuses it
    /// (busy, a dropped connection) for about six seconds. A conflict (the job moved on
    /// meanwhile) is not tried again.
    async fn write<T, F, Fut>(&self, what: &'static str, mut attempt: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        let mut delays = WRITE_RETRIES.iter();
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(e @ StoreError::Conflict { .. }) => return Err(e),
                Err(e) => match delays.next() {
                    Some(delay) => {
                        tracing::warn!(machine = %self.machine.name, what, error = %e, "a job write failed; trying again");
                        tokio::time::sleep(*delay).await;
                    }
                    None => {
                        tracing::error!(machine = %self.machine.name, what, error = %e, "a job write failed for good");
                        return Err(e);
                    }
                },
            }
        }
    }

    /// Records a job's progress; a write that fails for good is logged, and the next one
    /// (or the end of the job) carries the figures again.
    async fn save_progress(&self, job: JobId, lines: i64, bytes: i64) {
        let store = self.runtime.lab.store();
        let _logged = self
            .write("progress", || {
                store.set_job_progress(job, lines, bytes, now())
            })
            .await;
    }

    /// Records a pause or a resume seen on the machine. `false` when it could not be
    /// written: the caller stops the job, since Fabrique would no longer say what the
    /// machine does.
    async fn record_pause(&self, job: JobId, paused: bool) -> bool {
        self.record_pause_by(job, paused, None, "").await
    }

    /// [`record_pause`](Self::record_pause) with who asked and why.
    async fn record_pause_by(
        &self,
        job: JobId,
        paused: bool,
        actor: Option<UserId>,
        note: &str,
    ) -> bool {
        let (from, to) = if paused {
            (JobState::Running, JobState::Paused)
        } else {
            (JobState::Paused, JobState::Running)
        };
        let store = self.runtime.lab.store();
        let written = self
            .write("pause", || {
                store.change_job_state(job, from, to, actor, note, now())
            })
            .await;
        if written.is_ok() {
            self.set_machine(
                if paused {
                    MachineState::Paused
                } else {
                    MachineState::Busy
                },
                "",
            )
            .await;
        }
        written.is_ok()
    }

    /// Records how a job ended and leaves the machine in `machine_state`. A job whose end
    /// cannot be written stays `running` in the store, where the next start of Fabrique
    /// marks it interrupted; the machine is put in error meanwhile, so nobody takes the
    /// board's word for it.
    async fn finish(&self, job: &Job, to: JobState, reason: &str, machine_state: MachineState) {
        let store = self.runtime.lab.store();
        let recorded = self
            .write("end of the job", || async {
                let current = store.job(job.id).await?;
                if current.state.change_to(to).is_err() {
                    return Ok(());
                }
                store
                    .change_job_state(job.id, current.state, to, None, reason, now())
                    .await
            })
            .await;
        match recorded {
            Ok(()) => self.set_machine(machine_state, reason).await,
            Err(e) => {
                tracing::error!(job = job.id.0, error = %e, "could not record the end of the job");
                self.set_machine(MachineState::Error, UNRECORDED).await;
            }
        }
        self.publish(|l| {
            l.job = None;
            l.job_name = None;
            l.member = None;
            l.remaining_s = None;
        });
    }

    async fn run_job(&mut self, job: Job, commands: &mut mpsc::Receiver<Command>) {
        match self.machine.connection.clone() {
            Connection::SerialMarlin { port, baud } => {
                self.stream_marlin(job, port, baud, commands).await
            }
            Connection::SerialGrbl { port, baud } => {
                self.stream_grbl(job, port, baud, commands).await
            }
            Connection::SerialHpgl {
                port,
                baud,
                hardware_flow,
            } => {
                self.stream_hpgl(job, port, baud, hardware_flow, commands)
                    .await
            }
            Connection::Manual => self.manual(job, commands).await,
            Connection::OctoPrint { url, api_key } => {
                match OctoPrint::new(&url, api_key.expose()) {
                    Ok(printer) => self.follow_remote(&printer, job, false, commands).await,
                    Err(e) => self.cannot_reach(&job, &e.to_string()).await,
                }
            }
            Connection::Moonraker { url } => match Moonraker::new(&url) {
                Ok(printer) => self.follow_remote(&printer, job, false, commands).await,
                Err(e) => self.cannot_reach(&job, &e.to_string()).await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabrique_machines::driver::remote::{RemoteError, RemoteStatus};

    /// A print server that always gives the same answer to a status query.
    struct Answers(fn() -> Result<RemoteStatus, RemoteError>);

    impl RemotePrinter for Answers {
        fn name(&self) -> &'static str {
            "Moonraker"
        }
        async fn status(&self) -> Result<RemoteStatus, RemoteError> {
            (self.0)()
        }
        async fn upload(&self, _: &std::path::Path, _: &str) -> Result<(), RemoteError> {
            Ok(())
        }
        async fn start(&self, _: &str) -> Result<(), RemoteError> {
            Ok(())
        }
        async fn pause(&self) -> Result<(), RemoteError> {
            Ok(())
        }
        async fn resume(&self) -> Result<(), RemoteError> {
            Ok(())
        }
        async fn cancel(&self) -> Result<(), RemoteError> {
            Ok(())
        }
        async fn emergency_stop(&self) -> Result<(), RemoteError> {
            Ok(())
        }
    }

    fn idle(state: RemoteState) -> Result<RemoteStatus, RemoteError> {
        Ok(RemoteStatus {
            state,
            file: None,
            progress: None,
            elapsed_s: None,
            remaining_s: None,
            hotend: None,
            bed: None,
        })
    }

    #[tokio::test]
    async fn an_idle_printer_in_error_takes_no_job_and_a_refusal_is_not_called_silence() {
        let shut = Answers(|| {
            idle(RemoteState::Error(
                "Shutdown due to webhooks request".into(),
            ))
        });
        assert_eq!(
            probe(&shut).await,
            (false, "Moonraker : Shutdown due to webhooks request".into())
        );
        let ready = Answers(|| idle(RemoteState::Ready));
        assert_eq!(probe(&ready).await, (true, String::new()));
        let refused = Answers(|| {
            Err(RemoteError::Refused {
                status: 401,
                message: "Unauthorized".into(),
            })
        });
        assert_eq!(
            probe(&refused).await,
            (false, "Moonraker a refusé (401) : Unauthorized".into())
        );
        let silent = Answers(|| Err(RemoteError::Unreachable("connection refused".into())));
        assert_eq!(
            probe(&silent).await,
            (false, "Moonraker injoignable : connection refused".into())
        );
    }
}
