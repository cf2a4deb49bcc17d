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

mod grbl_link;
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

/// How a GRBL job ended early.
enum GrblEnd {
    /// The driver stopped it (error, alarm, cancel, lost link): the machine was reset.
    Failed(fabrique_machines::driver::grbl::GrblError),
    /// Between two parts of a mill's job, with the machine at rest.
    Stopped {
        state: JobState,
        reason: &'static str,
        machine: MachineState,
    },
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
        runtime
            .tracker
            .spawn(async move { planner.plan_loop().await });
        let cleaner = runtime.clone();
        runtime
            .tracker
            .spawn(async move { cleaner.clean_loop(retention_days).await });
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
        let task = MachineTask {
            runtime: self.clone(),
            machine,
            live: live_tx,
            started_by: None,
            grbl: None,
            panel: panel_tx,
        };
        self.tracker.spawn(task.run(rx, reattach));
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

    /// Follows again a print that a print server kept running while Fabrique was stopped.
    async fn reattach(&self, job: Job, commands: &mut mpsc::Receiver<Command>) {
        self.publish(|l| {
            l.job = Some(job.id.0);
            l.job_name = Some(job.file_name.clone());
            l.member = Some(job.owner_name.clone());
        });
        match self.machine.connection.clone() {
            Connection::OctoPrint { url, api_key } => {
                if let Ok(printer) = OctoPrint::new(&url, api_key.expose()) {
                    return self.follow_remote(&printer, job, true, commands).await;
                }
            }
            Connection::Moonraker { url } => {
                if let Ok(printer) = Moonraker::new(&url) {
                    return self.follow_remote(&printer, job, true, commands).await;
                }
            }
            _ => {}
        }
        self.finish(
            &job,
            JobState::Interrupted,
            "la connexion de la machine a changé pendant l'arrêt de Fabrique",
            MachineState::ToCheck,
        )
        .await;
    }

    async fn cannot_reach(&self, job: &Job, why: &str) {
        self.finish(
            job,
            JobState::Failed,
            &format!("machine injoignable : {why}"),
            MachineState::Offline,
        )
        .await;
    }

    /// A printer behind OctoPrint or Moonraker: the server streams the file; this task
    /// uploads it, starts it, and follows it. Fabrique stopping leaves the print running (it
    /// is followed again at the next start); the server going silent marks the machine
    /// offline and keeps the job until the server answers again.
    async fn follow_remote<P: RemotePrinter>(
        &self,
        printer: &P,
        job: Job,
        reattach: bool,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        let path = self.runtime.jobs_dir.join(&job.stored_name);
        let name = remote::remote_file_name(job.id.0);
        let cancel = self.runtime.shutdown.child_token();
        let (controls_tx, mut controls_rx) = mpsc::channel(8);
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let options = RemoteOptions::default();
        let follow = remote::run_job(
            printer,
            RemoteJob {
                file: &path,
                name: &name,
                reattach,
            },
            &options,
            Some(&mut controls_rx),
            |e: &RemoteEvent| {
                let _ = events_tx.send(e.clone());
            },
            &cancel,
        );
        tokio::pin!(follow);
        let mut last_saved = std::time::Instant::now();
        let mut closed = false;
        let mut paused = job.state == JobState::Paused;
        let mut offline = false;
        // A pause seen on the server that the store would not take: the print is stopped.
        let mut unrecorded = false;
        let outcome = loop {
            // select!: the follow loop ends the job; commands become controls; events from
            // the server move the tile, the job's state and, every few seconds, its progress.
            tokio::select! {
                outcome = &mut follow => break outcome,
                command = commands.recv(), if !closed => {
                    closed = command.is_none();
                    let control = match command {
                        Some(Command::Pause) => Control::Pause,
                        Some(Command::Resume) => Control::Resume,
                        Some(Command::Cancel) => Control::Cancel,
                        Some(Command::EmergencyStop) => Control::EmergencyStop,
                        Some(Command::Start { reply, .. }) => {
                            let _answered = reply.send(Err(already_working()));
                            continue;
                        }
                        Some(Command::Panel { reply, .. }) => {
                            let _answered = reply.send(Err(PanelError::NotGrbl));
                            continue;
                        }
                        // The runtime is going away: the print goes on, followed again later.
                        Some(Command::Finished { .. } | Command::Refresh) | None => continue,
                    };
                    let _ = controls_tx.send(control).await;
                }
                Some(event) = events_rx.recv() => match event {
                    RemoteEvent::Unreachable(why) => {
                        if !offline {
                            offline = true;
                            self.set_machine(MachineState::Offline, &why).await;
                        }
                    }
                    // A refused pause, resume or cancel: the print goes on; the tile says why.
                    RemoteEvent::Refused(why) => self.publish(|l| l.last_error = Some(why)),
                    RemoteEvent::Paused | RemoteEvent::Resumed => {}
                    RemoteEvent::Status(status) => {
                        let now_paused = status.state == RemoteState::Paused;
                        if offline || now_paused != paused {
                            offline = false;
                            if now_paused != paused {
                                paused = now_paused;
                                if !self.record_pause(job.id, paused).await && !unrecorded {
                                    // Fabrique could not say what the printer does: stop it.
                                    unrecorded = true;
                                    let _sent = controls_tx.send(Control::Cancel).await;
                                }
                            } else {
                                self.set_machine(if paused { MachineState::Paused } else { MachineState::Busy }, "").await;
                            }
                        }
                        self.publish(|l| {
                            if let Some(p) = status.progress { l.progress = p; }
                            l.remaining_s = status.remaining_s;
                            l.hotend = status.hotend;
                            l.bed = status.bed;
                        });
                        if let Some(p) = status.progress && last_saved.elapsed() >= Duration::from_secs(3) {
                            last_saved = std::time::Instant::now();
                            let bytes = (p * job.size_bytes as f64) as i64;
                            self.save_progress(job.id, job.lines_acked, bytes).await;
                        }
                    }
                },
            }
        };
        let server = printer.name();
        if unrecorded && !matches!(outcome, RemoteOutcome::Detached) {
            return self
                .finish(&job, JobState::Failed, UNRECORDED, MachineState::Error)
                .await;
        }
        match outcome {
            RemoteOutcome::Done => {
                self.save_progress(job.id, job.lines_acked, job.size_bytes)
                    .await;
                self.finish(&job, JobState::Done, "", MachineState::ToCheck)
                    .await;
            }
            RemoteOutcome::Cancelled { by_server } => {
                let reason = if by_server {
                    format!("annulé sur {server}")
                } else {
                    String::new()
                };
                self.finish(&job, JobState::Cancelled, &reason, MachineState::ToCheck)
                    .await;
            }
            RemoteOutcome::EmergencyStop => {
                self.finish(
                    &job,
                    JobState::Failed,
                    "arrêt d'urgence",
                    MachineState::Error,
                )
                .await;
            }
            RemoteOutcome::Failed(reason) => {
                self.finish(&job, JobState::Failed, &reason, MachineState::Error)
                    .await;
            }
            RemoteOutcome::Interrupted(reason) => {
                self.finish(&job, JobState::Interrupted, &reason, MachineState::ToCheck)
                    .await;
            }
            // Nothing printed: the job waits in the queue, the machine is offline until its
            // server answers again.
            RemoteOutcome::NotSent(reason) => {
                self.finish(&job, JobState::Interrupted, &reason, MachineState::Offline)
                    .await;
                let store = self.runtime.lab.store();
                let requeued = self
                    .write("queue again", || {
                        store.change_job_state(
                            job.id,
                            JobState::Interrupted,
                            JobState::Queued,
                            None,
                            "remis en file : rien n'a été imprimé",
                            now(),
                        )
                    })
                    .await;
                if let Err(e) = requeued {
                    tracing::error!(job = job.id.0, error = %e, "could not queue the job again");
                }
            }
            // Fabrique is stopping: the job stays running in the store and is followed
            // again at the next start.
            RemoteOutcome::Detached => {}
        }
    }

    /// A machine without a data link: the operator started it and says when it ended.
    async fn manual(&self, job: Job, commands: &mut mpsc::Receiver<Command>) {
        loop {
            let command = tokio::select! {
                () = self.runtime.shutdown.cancelled() => return,
                command = commands.recv() => command,
            };
            match command {
                Some(Command::Finished { ok: true }) => {
                    return self
                        .finish(&job, JobState::Done, "", MachineState::ToCheck)
                        .await;
                }
                Some(Command::Finished { ok: false }) => {
                    return self
                        .finish(
                            &job,
                            JobState::Failed,
                            "signalé par l'opérateur",
                            MachineState::ToCheck,
                        )
                        .await;
                }
                Some(Command::Cancel | Command::EmergencyStop) => {
                    return self
                        .finish(&job, JobState::Cancelled, "", MachineState::ToCheck)
                        .await;
                }
                Some(Command::Start { reply, .. }) => {
                    let _answered = reply.send(Err(already_working()));
                }
                Some(Command::Panel { reply, .. }) => {
                    let _answered = reply.send(Err(PanelError::NotGrbl));
                }
                Some(Command::Pause | Command::Resume | Command::Refresh) => {}
                None => return,
            }
        }
    }

    /// A laser (or a GRBL mill): started only by a person at the machine. The file is
    /// checked in GRBL's check mode first; any error, alarm, lost link or cancel holds then
    /// resets the machine (laser off) and the job fails with the reason. It goes through
    /// the link the operator panel holds, if a person took the machine (the homing and the
    /// work origin they set stay); otherwise a link is opened for the job and closed after.
    async fn stream_grbl(
        &mut self,
        job: Job,
        port: String,
        baud: u32,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        use fabrique_machines::driver::grbl as grbl_driver;
        use fabrique_machines::protocol::grbl::{FailReason, Lang, Program, Segment, Tool};
        let Some(mut person) = self.started_by.clone() else {
            return self
                .finish(
                    &job,
                    JobState::Failed,
                    "démarrage sans personne devant la machine refusé",
                    MachineState::Idle,
                )
                .await;
        };
        // Laser and mill files are small next to a print; read whole for the check mode.
        let path = self.runtime.jobs_dir.join(&job.stored_name);
        let program = match tokio::fs::read_to_string(&path).await {
            Ok(text) => Program::parse(&text, grbl_driver::Config::default().rx_buffer)
                .map_err(|e| grbl_driver::GrblError::from(e).message(Lang::Fr)),
            Err(e) => Err(format!("fichier illisible : {e}")),
        };
        let program = match program {
            Ok(program) => program,
            Err(why) => {
                return self
                    .finish(&job, JobState::Failed, &why, MachineState::Idle)
                    .await;
            }
        };
        // A mill's file stops at each tool change (`M6`); a laser's is one part.
        let parts = match self.grbl_tool() {
            Tool::Laser => vec![Segment {
                after: None,
                program,
            }],
            Tool::Spindle { .. } => program.split_at_tool_changes(),
        };
        let whole = Program::joined(&parts);
        let opened_for_job = match self.grbl_link(&port, baud, None).await {
            Ok(opened) => opened,
            Err(e) => {
                let machine = if matches!(e, grbl_driver::GrblError::Io(_)) {
                    MachineState::Offline
                } else {
                    MachineState::Error
                };
                let why = format!("machine injoignable : {}", e.message(Lang::Fr));
                return self.finish(&job, JobState::Failed, &why, machine).await;
            }
        };
        let total = whole.lines().last().map_or(1, |l| l.number).max(1) as f64;
        let mut lines = 0;
        let mut result = Ok(());
        for (index, part) in parts.into_iter().enumerate() {
            if let Some(change) = part.after {
                match self.await_tool_change(&job, change, commands).await {
                    Ok(name) => person = name,
                    Err(end) => {
                        result = Err(end);
                        break;
                    }
                }
            }
            let check = (index == 0).then(|| whole.clone());
            match self
                .cut_grbl_part(part.program, check, &person, total, commands)
                .await
            {
                Ok(report) => lines += report.summary.lines,
                Err(e) => {
                    result = Err(GrblEnd::Failed(e));
                    break;
                }
            }
        }
        let link_lost = matches!(
            result,
            Err(GrblEnd::Failed(
                grbl_driver::GrblError::LinkClosed
                    | grbl_driver::GrblError::Io(_)
                    | grbl_driver::GrblError::JobFailed(FailReason::Disconnected)
            ))
        );
        if opened_for_job || link_lost {
            self.drop_grbl_link().await;
        }
        self.publish(|l| l.tool_change = None);
        match result {
            Ok(()) => {
                let lines = i64::try_from(lines).unwrap_or(i64::MAX);
                self.save_progress(job.id, lines, job.size_bytes).await;
                self.finish(&job, JobState::Done, "", MachineState::ToCheck)
                    .await;
            }
            Err(GrblEnd::Stopped {
                state,
                reason,
                machine,
            }) => self.finish(&job, state, reason, machine).await,
            Err(GrblEnd::Failed(e)) => {
                let reason = e.message(Lang::Fr);
                let cancelled =
                    matches!(e, grbl_driver::GrblError::JobFailed(FailReason::Cancelled));
                let (state, machine) = if cancelled {
                    (JobState::Cancelled, MachineState::ToCheck)
                } else {
                    (JobState::Failed, MachineState::Error)
                };
                self.finish(&job, state, &reason, machine).await;
            }
        }
    }

    /// What a GRBL machine's head carries, from its kind and profile.
    fn grbl_tool(&self) -> fabrique_machines::protocol::grbl::Tool {
        use crate::domain::machine::{MachineKind, MillCoolant};
        use fabrique_machines::protocol::grbl::{Coolant, Tool};
        match self.machine.kind {
            MachineKind::CncMill => Tool::Spindle {
                coolant: match self.machine.profile.coolant {
                    MillCoolant::None => Coolant::None,
                    MillCoolant::Flood => Coolant::Flood,
                    MillCoolant::FloodAndMist => Coolant::FloodAndMist,
                },
            },
            _ => Tool::Laser,
        }
    }

    /// Cuts one part of a GRBL job through the held link, `check` (the whole file) checked
    /// first when given, started by `person` at the machine. Board commands become
    /// controls; line reports move the progress bar.
    async fn cut_grbl_part(
        &mut self,
        program: fabrique_machines::protocol::grbl::Program,
        check: Option<fabrique_machines::protocol::grbl::Program>,
        person: &str,
        total: f64,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<
        fabrique_machines::driver::grbl::JobReport,
        fabrique_machines::driver::grbl::GrblError,
    > {
        use fabrique_machines::driver::grbl::{Control as GrblControl, GrblError};
        use fabrique_machines::protocol::grbl::{PersonAtMachine, WorkArea};
        let [width, height, _] = self.machine.profile.work_area_mm;
        // The person pressed "Démarrer" (or "Outil changé") on the board, signed in at the
        // workshop PC: that is the explicit start at the machine that a cut requires.
        #[allow(clippy::disallowed_methods)]
        let person = PersonAtMachine::confirmed_at_the_machine(
            person.to_string(),
            std::time::Instant::now(),
        );
        let (controls_tx, controls_rx) = mpsc::channel(8);
        let (lines_tx, mut lines_rx) = watch::channel(0usize);
        let handed = match &self.grbl {
            Some(held) => {
                held.link
                    .job(
                        program,
                        check,
                        WorkArea { width, height },
                        person,
                        controls_rx,
                        lines_tx,
                    )
                    .await
            }
            None => Err(GrblError::LinkClosed),
        };
        let mut stream = match handed {
            Ok(answer) => answer,
            Err(e) => {
                self.drop_grbl_link().await;
                return Err(e);
            }
        };
        let mut stopping = false;
        let mut closed = false;
        loop {
            // select!: the cut ends the part; board commands become controls (an emergency
            // stop is a hold and reset, the safe stop); line reports move the bar.
            tokio::select! {
                result = &mut stream => return result.unwrap_or(Err(GrblError::LinkClosed)),
                () = self.runtime.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    let _ = controls_tx.try_send(GrblControl::Cancel);
                }
                command = commands.recv(), if !closed => {
                    closed = command.is_none();
                    let control = match command {
                        Some(Command::Pause) => GrblControl::Pause,
                        Some(Command::Resume) => GrblControl::Resume,
                        Some(Command::Cancel | Command::EmergencyStop) | None => GrblControl::Cancel,
                        Some(Command::Start { reply, .. }) => {
                            let _answered = reply.send(Err(already_working()));
                            continue;
                        }
                        // During a cut the panel may pause, resume and override, nothing else.
                        Some(Command::Panel { action, reply, .. }) => {
                            let control = match &action {
                                PanelAction::Pause => Some(GrblControl::Pause),
                                PanelAction::Resume => Some(GrblControl::Resume),
                                PanelAction::Override(o) => Some(GrblControl::Override(o.realtime())),
                                _ => None,
                            };
                            let answer = match control {
                                Some(control) => {
                                    let _ = controls_tx.send(control).await;
                                    Ok(PanelAnswer::sent_during_job(&action))
                                }
                                None => Err(PanelError::Busy),
                            };
                            let _answered = reply.send(answer);
                            continue;
                        }
                        Some(Command::Finished { .. } | Command::Refresh) => continue,
                    };
                    let _ = controls_tx.send(control).await;
                }
                changed = lines_rx.changed() => {
                    if changed.is_ok() {
                        let line = *lines_rx.borrow_and_update();
                        self.publish(|l| l.progress = (line as f64 / total).min(1.0));
                    }
                }
            }
        }
    }

    /// A mill's job stopped at a tool change, spindle and coolant off: the job is paused
    /// until a person allowed to start it says the tool is in (the board's "Outil changé",
    /// a start of the same job). Meanwhile the panel works (jog, Z probe, unlock, home).
    /// Returns who said so, or how the job ends: cancelled, or interrupted by a shutdown.
    async fn await_tool_change(
        &mut self,
        job: &Job,
        change: fabrique_machines::protocol::grbl::ToolChange,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<String, GrblEnd> {
        let tool = change.tool.map_or(String::new(), |t| format!(" T{t}"));
        let note = format!("changement d'outil{tool} (ligne {})", change.line);
        if !self.record_pause_by(job.id, true, None, &note).await {
            return Err(GrblEnd::Stopped {
                state: JobState::Failed,
                reason: UNRECORDED,
                machine: MachineState::Error,
            });
        }
        self.publish(|l| {
            l.tool_change = Some(ToolChangeView {
                line: change.line,
                tool: change.tool,
            })
        });
        let person = loop {
            let command = tokio::select! {
                () = self.runtime.shutdown.cancelled() => {
                    return Err(GrblEnd::Stopped {
                        state: JobState::Interrupted,
                        reason: "Fabrique s'est arrêté pendant le changement d'outil",
                        machine: MachineState::ToCheck,
                    });
                }
                command = commands.recv() => command,
            };
            match command {
                Some(Command::Start { job: id, by, reply }) if id == job.id => {
                    let Some(by) = by else {
                        let _answered = reply.send(Err(already_working()));
                        continue;
                    };
                    match self
                        .runtime
                        .lab
                        .check_resume(self.machine.id, job.id, by, now())
                        .await
                    {
                        Ok(person) => {
                            let _answered = reply.send(Ok(()));
                            break person;
                        }
                        Err(e) => {
                            let _answered = reply.send(Err(e));
                        }
                    }
                }
                Some(Command::Start { reply, .. }) => {
                    let _answered = reply.send(Err(already_working()));
                }
                Some(Command::Cancel | Command::EmergencyStop) | None => {
                    return Err(GrblEnd::Stopped {
                        state: JobState::Cancelled,
                        reason: "annulé pendant le changement d'outil",
                        machine: MachineState::ToCheck,
                    });
                }
                // The job holds the link: giving the machine back would close it.
                Some(Command::Panel {
                    action: PanelAction::Release,
                    reply,
                    ..
                }) => {
                    let _answered = reply.send(Ok(PanelAnswer::nothing_sent()));
                }
                Some(Command::Panel {
                    by,
                    action,
                    outline,
                    reply,
                }) => {
                    let answer = self.panel(by, action, outline).await;
                    let _answered = reply.send(answer);
                }
                Some(
                    Command::Pause | Command::Resume | Command::Finished { .. } | Command::Refresh,
                ) => {}
            }
        };
        self.publish(|l| l.tool_change = None);
        let note = format!("outil{tool} en place");
        if !self
            .record_pause_by(job.id, false, Some(person.id), &note)
            .await
        {
            return Err(GrblEnd::Stopped {
                state: JobState::Failed,
                reason: UNRECORDED,
                machine: MachineState::Error,
            });
        }
        Ok(person.display_name)
    }

    /// A vinyl cutter (HP-GL over serial), started by a person who loaded the media: the file
    /// is streamed as the cutter's flow control allows; pause stops sending, cancel drops
    /// what the cutter holds and lifts the blade; the job ends when the cutter answered
    /// the last question, so "done" means it read everything.
    async fn stream_hpgl(
        &self,
        job: Job,
        port: String,
        baud: u32,
        hardware_flow: bool,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        use fabrique_machines::driver::hpgl::{self, Control as CutControl, Lang, Progress};
        use fabrique_machines::transport::{FlowControl, SerialOptions};
        let path = self.runtime.jobs_dir.join(&job.stored_name);
        let options = SerialOptions {
            port,
            baud,
            flow: if hardware_flow {
                FlowControl::Hardware
            } else {
                FlowControl::Software
            },
        };
        // Without RTS/CTS the writes go at the line's pace: the system's buffers would
        // otherwise hold more than the cutter can take after its XOFF.
        let config = hpgl::Config {
            pace_baud: (!hardware_flow).then_some(baud),
            // A cutter wired one way cannot say it read everything: "done" is then the
            // last byte sent, as the profile says.
            end_query: !self.machine.profile.one_way,
            ..hpgl::Config::default()
        };
        let cancel = self.runtime.shutdown.child_token();
        let (controls_tx, mut controls_rx) = mpsc::channel(8);
        let (progress_tx, mut progress_rx) = watch::channel(None::<Progress>);
        let mut on_progress = move |p: &Progress| {
            let _ = progress_tx.send(Some(*p));
        };
        let stream = hpgl::stream_file_to_port(
            &options,
            &path,
            &config,
            Some(&mut controls_rx),
            &mut on_progress,
            &cancel,
        );
        tokio::pin!(stream);
        let mut closed = false;
        let result = loop {
            tokio::select! {
                result = &mut stream => break result,
                command = commands.recv(), if !closed => {
                    closed = command.is_none();
                    let control = match command {
                        Some(Command::Pause) => CutControl::Pause,
                        Some(Command::Resume) => CutControl::Resume,
                        Some(Command::Cancel | Command::EmergencyStop) | None => CutControl::Cancel,
                        Some(Command::Start { reply, .. }) => {
                            let _answered = reply.send(Err(already_working()));
                            continue;
                        }
                        Some(Command::Panel { reply, .. }) => {
                            let _answered = reply.send(Err(PanelError::NotGrbl));
                            continue;
                        }
                        Some(Command::Finished { .. } | Command::Refresh) => continue,
                    };
                    let _ = controls_tx.send(control).await;
                }
                changed = progress_rx.changed() => {
                    if changed.is_ok()
                        && let Some(p) = *progress_rx.borrow_and_update()
                    {
                        let share = p.written as f64 / p.total.max(1) as f64;
                        self.publish(|l| l.progress = share.min(1.0));
                    }
                }
            }
        };
        match result {
            Ok(report) => {
                let bytes = i64::try_from(report.bytes).unwrap_or(i64::MAX);
                self.save_progress(job.id, 0, bytes).await;
                self.finish(&job, JobState::Done, "", MachineState::ToCheck)
                    .await;
            }
            Err(e) => {
                let (state, machine) = match &e {
                    hpgl::HpglError::Cancelled => (JobState::Cancelled, MachineState::ToCheck),
                    hpgl::HpglError::Io(_) => (JobState::Failed, MachineState::Offline),
                    _ => (JobState::Failed, MachineState::Error),
                };
                self.finish(&job, state, &e.message(Lang::Fr), machine)
                    .await;
            }
        }
    }

    /// Makes sure the GRBL link is open: the one the panel holds, or a new one. Returns
    /// whether it was opened now. `holder` takes the machine (the panel); `None` opens it
    /// for a job.
    async fn grbl_link(
        &mut self,
        port: &str,
        baud: u32,
        holder: Option<&str>,
    ) -> Result<bool, fabrique_machines::driver::grbl::GrblError> {
        if self.grbl.as_ref().is_some_and(|h| h.link.is_closed()) {
            self.drop_grbl_link().await;
        }
        let opened = match &mut self.grbl {
            Some(held) => {
                if let Some(name) = holder {
                    held.held_by = Some(name.to_string());
                }
                false
            }
            None => {
                let link = GrblLink::open(port, baud, self.grbl_tool()).await?;
                self.grbl = Some(HeldLink {
                    link,
                    held_by: holder.map(str::to_string),
                    last_used: std::time::Instant::now(),
                });
                true
            }
        };
        if let Some(held) = &mut self.grbl {
            held.last_used = std::time::Instant::now();
        }
        self.show_panel();
        Ok(opened)
    }

    /// Closes the GRBL link, if one is open.
    async fn drop_grbl_link(&mut self) {
        if let Some(held) = self.grbl.take() {
            held.link.close().await;
        }
        self.show_panel();
    }

    /// Publishes who holds the machine and where its link's status comes from.
    fn show_panel(&self) {
        let view = self.grbl.as_ref().map(|h| PanelView {
            held_by: h.held_by.clone(),
            status: h.link.status_receiver(),
        });
        self.panel.send_replace(view);
    }

    /// An operator panel action, outside a job.
    async fn panel(
        &mut self,
        by: String,
        action: PanelAction,
        outline: Option<fabrique_machines::protocol::grbl::Program>,
    ) -> Result<PanelAnswer, PanelError> {
        let Connection::SerialGrbl { port, baud } = self.machine.connection.clone() else {
            return Err(PanelError::NotGrbl);
        };
        if let Some(Some(holder)) = self.grbl.as_ref().map(|h| &h.held_by)
            && *holder != by
            && action != PanelAction::Take
        {
            return Err(PanelError::HeldBy(holder.clone()));
        }
        if action == PanelAction::Release {
            self.drop_grbl_link().await;
            return Ok(PanelAnswer::nothing_sent());
        }
        let opened = self
            .grbl_link(&port, baud, Some(&by))
            .await
            .map_err(PanelError::Link)?;
        if opened && self.live.borrow().state == MachineState::Offline {
            self.set_machine(MachineState::Idle, "").await;
        }
        let Some(held) = &self.grbl else {
            return Err(PanelError::Link(
                fabrique_machines::driver::grbl::GrblError::LinkClosed,
            ));
        };
        match held.link.panel(action, outline).await {
            Ok(answer) => Ok(answer),
            Err(e) => {
                self.drop_grbl_link().await;
                Err(PanelError::Link(e))
            }
        }
    }

    async fn stream_marlin(
        &self,
        job: Job,
        port: String,
        baud: u32,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        let path = self.runtime.jobs_dir.join(&job.stored_name);
        let cancel = self.runtime.shutdown.child_token();
        let (controls_tx, mut controls_rx) = mpsc::channel(8);
        let (progress_tx, mut progress_rx) = watch::channel(None);
        let connect = || {
            let port = port.clone();
            async move {
                marlin_driver::open_serial(&port, baud)
                    .await
                    .map_err(std::io::Error::other)
            }
        };
        let options = StreamOptions::default();
        let stream = marlin_driver::stream_file(
            connect,
            &path,
            &options,
            Some(&mut controls_rx),
            |p: &marlin_driver::Progress| {
                let _ = progress_tx.send(Some(p.clone()));
            },
            &cancel,
        );
        tokio::pin!(stream);
        let mut last_saved = std::time::Instant::now();
        let mut closed = false;
        // A pause or resume the store would not take: the job was stopped for it.
        let mut unrecorded = false;
        // What the firmware said of its limits is kept once per job, for the manager.
        let mut limits_kept = false;
        let outcome = loop {
            // select!: the stream ends the job; commands become driver controls; progress
            // reports go to the board and, every few seconds, to the store.
            tokio::select! {
                outcome = &mut stream => break outcome,
                command = commands.recv(), if !closed => {
                    // A closed channel (the runtime is going away) cancels once.
                    closed = command.is_none();
                    let control = match command {
                        Some(Command::Pause) => Control::Pause,
                        Some(Command::Resume) => Control::Resume,
                        Some(Command::Cancel) | None => Control::Cancel,
                        Some(Command::EmergencyStop) => Control::EmergencyStop,
                        Some(Command::Start { reply, .. }) => {
                            let _answered = reply.send(Err(already_working()));
                            continue;
                        }
                        Some(Command::Panel { reply, .. }) => {
                            let _answered = reply.send(Err(PanelError::NotGrbl));
                            continue;
                        }
                        Some(Command::Finished { .. } | Command::Refresh) => continue,
                    };
                    let control = match control {
                        Control::Pause | Control::Resume if !self.record_pause(job.id, control == Control::Pause).await => {
                            // Fabrique could not say what the printer does: stop it safe.
                            unrecorded = true;
                            Control::Cancel
                        }
                        other => other,
                    };
                    let _sent = controls_tx.send(control).await;
                }
                changed = progress_rx.changed() => {
                    if changed.is_err() { continue; }
                    let Some(p) = progress_rx.borrow_and_update().clone() else { continue };
                    if let (false, Some(limits)) = (limits_kept, &p.reported_limits) {
                        limits_kept = true;
                        if let Err(e) = self.runtime.lab.note_reported_limits(self.machine.id, limits, now()).await {
                            tracing::warn!(error = %e, "could not keep the limits the firmware reported");
                        }
                    }
                    self.publish(|l| {
                        l.progress = p.fraction();
                        l.remaining_s = p.remaining.map(|r| r.as_secs());
                        if let Some(t) = &p.temperatures {
                            l.hotend = t.tools.first().map(|r| (r.actual, r.target));
                            l.bed = t.bed.as_ref().map(|r| (r.actual, r.target));
                        }
                    });
                    if last_saved.elapsed() >= Duration::from_secs(3) {
                        last_saved = std::time::Instant::now();
                        let (lines, bytes) = (i64::try_from(p.stats.lines_acked).unwrap_or(i64::MAX), i64::try_from(p.stats.bytes_acked).unwrap_or(i64::MAX));
                        self.save_progress(job.id, lines, bytes).await;
                    }
                }
            }
        };
        match outcome {
            Ok(outcome) => {
                let stats = outcome.stats();
                let (lines, bytes) = (
                    i64::try_from(stats.lines_acked).unwrap_or(i64::MAX),
                    i64::try_from(stats.bytes_acked).unwrap_or(i64::MAX),
                );
                self.save_progress(job.id, lines, bytes).await;
                if unrecorded {
                    return self
                        .finish(&job, JobState::Failed, UNRECORDED, MachineState::Error)
                        .await;
                }
                match &outcome {
                    JobOutcome::Done(_) => {
                        self.finish(&job, JobState::Done, "", MachineState::ToCheck)
                            .await
                    }
                    JobOutcome::Cancelled(_) => {
                        let reason = if self.runtime.shutdown.is_cancelled() {
                            "Fabrique s'arrête : travail annulé, machine mise en sécurité"
                        } else {
                            ""
                        };
                        self.finish(
                            &job,
                            if reason.is_empty() {
                                JobState::Cancelled
                            } else {
                                JobState::Interrupted
                            },
                            reason,
                            MachineState::ToCheck,
                        )
                        .await;
                    }
                    JobOutcome::Failed {
                        reason: JobFailure::EmergencyStop,
                        ..
                    } => {
                        self.finish(
                            &job,
                            JobState::Failed,
                            "arrêt d'urgence",
                            MachineState::Error,
                        )
                        .await;
                    }
                    JobOutcome::Failed { reason, .. } => {
                        self.finish(
                            &job,
                            JobState::Failed,
                            &reason.to_string(),
                            MachineState::Error,
                        )
                        .await
                    }
                    JobOutcome::Interrupted { reason, stats } => {
                        let note = format!(
                            "{reason} (dernière ligne confirmée : {})",
                            stats.last_acked_line
                        );
                        self.finish(&job, JobState::Interrupted, &note, MachineState::Offline)
                            .await;
                    }
                }
            }
            Err(e) => {
                self.finish(
                    &job,
                    JobState::Failed,
                    &format!("imprimante injoignable : {e}"),
                    MachineState::Offline,
                )
                .await
            }
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
