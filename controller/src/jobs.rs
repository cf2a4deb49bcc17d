//! The lab's use cases for jobs: submission (the file read, then the job recorded with what
//! the fit rule says of it), approval, cancellation, queueing again, priorities, and the
//! start on a machine. Running jobs are stopped through the machine runtime.
//!
//! A job goes to `needs_approval` when a manager must look at it first: its file has
//! findings (commands a member may not send, unreadable lines), or the machine it names
//! refuses it, or every machine that could take it needs an approval. It goes to `queued`
//! otherwise, and waits there, with the reason in words, while no machine may run it (its
//! owner has no badge yet, or no machine of the lab is big or hot enough). An approval holds
//! for one run: queueing the job again asks for it again.

use crate::domain::MachineState;
use crate::domain::fit::{self, Owner, Refusal, Start, Waiting};
use crate::domain::job::{Job, JobEvent, JobId, JobState};
use crate::domain::training::{Badge, Training};
use crate::domain::{Invalid, Machine, MachineId, Role, User, UserId};
use crate::job_files;
use crate::lab::{Lab, LabError, LabResult};
use crate::store::{NewJob, StoreError};
use fabrique_machines::files::FileSummary;
use jiff::Timestamp;
use std::collections::HashMap;
use std::path::Path;

fn state_conflict(e: StoreError) -> LabError {
    match e {
        StoreError::Conflict { what: "job_state" } => {
            Invalid::new("state", "job_transition").into()
        }
        other => other.into(),
    }
}

/// What the rule needs to know of job owners: their role and their badges, with the
/// trainings that unlock each machine. Loaded once for a planner pass or a page.
#[derive(Debug, Clone, Default)]
pub struct Clearances {
    trainings: Vec<Training>,
    owners: HashMap<UserId, (Role, Vec<Badge>)>,
    now: Timestamp,
}

impl Clearances {
    /// An owner's role (a member when not loaded).
    pub fn role(&self, user: UserId) -> Role {
        self.owners.get(&user).map_or(Role::Member, |(r, _)| *r)
    }

    /// The owner as the rule sees them on `machine`. An owner not loaded counts as a member
    /// without badges: the rule then refuses rather than lets through.
    pub fn owner(&self, user: UserId, machine: MachineId) -> Owner {
        let badges = self.owners.get(&user).map_or(&[][..], |(_, b)| &b[..]);
        let unlocking: Vec<&Training> = self
            .trainings
            .iter()
            .filter(|t| t.machines.contains(&machine))
            .collect();
        let held = unlocking.is_empty()
            || badges
                .iter()
                .any(|b| unlocking.iter().any(|t| t.id == b.training) && b.is_valid(self.now));
        Owner {
            role: self.role(user),
            missing_training: (!held).then(|| unlocking[0].name.clone()),
        }
    }
}

/// The machines a job may be considered for: every one not disabled.
fn in_service(machines: &[Machine]) -> impl Iterator<Item = &Machine> {
    machines
        .iter()
        .filter(|m| m.state != MachineState::Disabled)
}

/// Where a new or requeued job goes, and the note of that step: `needs_approval` when a
/// manager must look at it first (see the module's text), `queued` otherwise.
fn review(job: &Job, machines: &[Machine], clearances: &Clearances) -> (JobState, String) {
    let Some(file) = &job.analysis else {
        return (JobState::Failed, String::new());
    };
    let findings = file.issues().len();
    if findings > 0 {
        return (
            JobState::NeedsApproval,
            format!("{findings} point(s) à vérifier"),
        );
    }
    let verdict = |m: &Machine| fit::check(job, m, &clearances.owner(job.owner, m.id), Start::Plan);
    let queue = |r: &Result<(), Refusal>| matches!(r, Ok(()) | Err(Refusal::BadgeRequired { .. }));
    if let Some(target) = job.target_machine {
        return match machines.iter().find(|m| m.id == target).map(verdict) {
            Some(r) if queue(&r) => (JobState::Queued, String::new()),
            Some(_) | None => (
                JobState::NeedsApproval,
                String::from("ne convient pas à la machine choisie : à vérifier"),
            ),
        };
    }
    let verdicts: Vec<Result<(), Refusal>> = in_service(machines).map(verdict).collect();
    if !verdicts.iter().any(queue)
        && verdicts
            .iter()
            .any(|r| r.as_ref().is_err_and(Refusal::approvable))
    {
        return (
            JobState::NeedsApproval,
            String::from("point(s) à vérifier avant de lancer"),
        );
    }
    (JobState::Queued, String::new())
}

/// What [`Lab::sweep_job_files`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub files: usize,
    pub bytes: u64,
}

impl Lab {
    /// What the rule needs to know of `owners`, as of `now`.
    pub async fn clearances(&self, owners: &[UserId], now: i64) -> LabResult<Clearances> {
        let mut known = HashMap::new();
        for &owner in owners {
            if known.contains_key(&owner) {
                continue;
            }
            let role = self.store().user(owner).await?.role;
            known.insert(owner, (role, self.store().badges_of(owner).await?));
        }
        Ok(Clearances {
            trainings: self.store().trainings().await?,
            owners: known,
            now: Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH),
        })
    }

    /// Reads the file of a job `actor` sends (already on disk in `jobs_dir`) in a blocking
    /// task, for the machine it names if any, keeps its preview and thumbnail beside it, and
    /// records the job with where the rule sends it: `needs_approval`, `queued`, or `failed`
    /// with the reason when the file cannot be read. When the job cannot be recorded, the
    /// file and its pictures are removed, so nothing is left half done.
    pub async fn submit_job(
        &self,
        actor: &User,
        new: &NewJob,
        jobs_dir: &Path,
        now: i64,
    ) -> LabResult<Job> {
        let submitted = self.submit(actor, new, jobs_dir, now).await;
        if submitted.is_err() {
            job_files::remove(jobs_dir, &new.stored_name).await;
        }
        submitted
    }

    async fn submit(
        &self,
        actor: &User,
        new: &NewJob,
        jobs_dir: &Path,
        now: i64,
    ) -> LabResult<Job> {
        if new.owner != actor.id {
            return Err(LabError::Forbidden);
        }
        let target = match new.target_machine {
            Some(id) => Some(self.store().machine(id).await?),
            None => None,
        };
        let (dir, stored, name) = (
            jobs_dir.to_path_buf(),
            new.stored_name.clone(),
            new.file_name.clone(),
        );
        // An embroidery design is read whole: only a few at once. G-code is read in constant
        // memory and needs no bound.
        let (path, file_name) = (jobs_dir.join(&new.stored_name), new.file_name.clone());
        let is_design =
            tokio::task::spawn_blocking(move || job_files::embroidery_format(&path, &file_name))
                .await
                .ok()
                .flatten()
                .is_some();
        let _permit = if is_design {
            Some(self.design_slot().await?)
        } else {
            None
        };
        let read = tokio::task::spawn_blocking(move || {
            let read = job_files::read(&dir.join(&stored), &name, target.as_ref());
            if let Ok(file) = &read {
                job_files::keep_pictures(&dir, &stored, file);
            }
            read
        })
        .await
        .map_err(|e| LabError::Store(StoreError::Corrupt(format!("file analysis: {e}"))))?;
        let id = match read {
            Ok(file) => {
                let (to, note) = self.review_new(actor, new, &file.summary, now).await?;
                self.store()
                    .insert_job(new, Some(&file.summary), to, &note, now)
                    .await?
            }
            Err(unreadable) => {
                let (fr, _) = unreadable.message();
                self.store()
                    .insert_job(new, None, JobState::Failed, &fr, now)
                    .await?
            }
        };
        Ok(self.store().job(id).await?)
    }

    /// [`review`] of a job not recorded yet.
    pub(crate) async fn review_new(
        &self,
        owner: &User,
        new: &NewJob,
        file: &FileSummary,
        now: i64,
    ) -> LabResult<(JobState, String)> {
        let job = Job::provisional(new, &owner.display_name, file.clone(), now);
        let machines = self.machines().await?;
        let clearances = self.clearances(&[owner.id], now).await?;
        Ok(review(&job, &machines, &clearances))
    }

    /// The owner, trainers and managers see a job.
    pub async fn job(&self, actor: &User, id: JobId) -> LabResult<Job> {
        let job = self.store().job(id).await?;
        if job.owner != actor.id && !actor.role.at_least(Role::Trainer) {
            return Err(LabError::Forbidden);
        }
        Ok(job)
    }

    pub async fn job_events(&self, actor: &User, id: JobId) -> LabResult<Vec<JobEvent>> {
        self.job(actor, id).await?;
        Ok(self.store().job_events(id).await?)
    }

    /// A member's own jobs; everyone's for trainers and managers.
    pub async fn jobs_for(&self, actor: &User) -> LabResult<Vec<Job>> {
        let owner = if actor.role.at_least(Role::Trainer) {
            None
        } else {
            Some(actor.id)
        };
        Ok(self.store().jobs(owner, 200).await?)
    }

    /// The actor's own jobs, whatever their role (a manager's slicer lists the manager's
    /// files, not the lab's), newest first.
    pub async fn own_jobs(&self, actor: &User) -> LabResult<Vec<Job>> {
        Ok(self.store().jobs(Some(actor.id), 200).await?)
    }

    /// The actor's own job that a slicer's monitor shows, on `machine` or anywhere: running
    /// or paused, else waiting longest, else the latest.
    pub async fn current_own_job(
        &self,
        actor: &User,
        machine: Option<MachineId>,
    ) -> LabResult<Option<Job>> {
        Ok(self.store().current_job(actor.id, machine).await?)
    }

    /// Why a job waiting in the queue (or for approval) may not run on any machine yet, in
    /// the rule's words; `None` when some machine of the lab may run it.
    pub async fn job_waiting(&self, job: &Job, now: i64) -> LabResult<Option<Waiting>> {
        Ok(self
            .jobs_waiting(std::slice::from_ref(job), now)
            .await?
            .pop()
            .flatten())
    }

    /// [`Lab::job_waiting`] of each job, in order, loading the machines and owners once.
    pub async fn jobs_waiting(&self, jobs: &[Job], now: i64) -> LabResult<Vec<Option<Waiting>>> {
        let pending = |j: &Job| matches!(j.state, JobState::Queued | JobState::NeedsApproval);
        if !jobs.iter().any(pending) {
            return Ok(vec![None; jobs.len()]);
        }
        let machines = self.machines().await?;
        let owners: Vec<UserId> = jobs
            .iter()
            .filter(|j| pending(j))
            .map(|j| j.owner)
            .collect();
        let clearances = self.clearances(&owners, now).await?;
        Ok(jobs
            .iter()
            .map(|j| {
                pending(j)
                    .then(|| waiting(j, &machines, &clearances))
                    .flatten()
            })
            .collect())
    }

    /// A manager approves a job: one waiting for approval goes to the queue; one waiting in
    /// the queue for what an approval lifts (a finding of a machine, the owner's badge) stays
    /// there, approved. The approval records who, when, what they saw (the codes the rule
    /// names on the machines that could run the job) and, when the owner has no badge for
    /// them, that a trainer must start it: it is kept in the job's history and holds until
    /// the job is queued again.
    pub async fn approve_job(&self, actor: &User, id: JobId, now: i64) -> LabResult<Job> {
        if !actor.role.at_least(Role::Manager) {
            return Err(LabError::Forbidden);
        }
        let job = self.store().job(id).await?;
        let machines = self.machines().await?;
        let clearances = self.clearances(&[job.owner], now).await?;
        let approvable = match job.state {
            JobState::NeedsApproval => true,
            JobState::Queued => matches!(
                waiting(&job, &machines, &clearances),
                Some(w) if w.approvable()
            ),
            _ => false,
        };
        if !approvable {
            return Err(Invalid::new("state", "job_transition").into());
        }
        let Some(file) = &job.analysis else {
            return Err(Refusal::Unreadable.into());
        };
        // What the manager is shown: the concerns on the machines the file fits.
        let candidates: Vec<&Machine> = in_service(&machines)
            .filter(|m| job.target_machine.is_none_or(|t| t == m.id))
            .filter(|m| fit::misfits(file, m).iter().all(Refusal::approvable))
            .collect();
        let mut seen: Vec<String> = file.issues().iter().map(|f| f.code.clone()).collect();
        for m in &candidates {
            seen.extend(fit::concerns(file, m));
        }
        seen.sort();
        seen.dedup();
        let supervised = !clearances.role(job.owner).at_least(Role::Manager)
            && candidates
                .iter()
                .any(|m| clearances.owner(job.owner, m.id).missing_training.is_some());
        let mut note = format!("approuvé : {} point(s) vu(s)", seen.len());
        if supervised {
            note.push_str(", à lancer par un formateur (badge manquant)");
        }
        self.store()
            .approve_job(id, job.state, actor.id, &seen, supervised, &note, now)
            .await
            .map_err(state_conflict)?;
        Ok(self.store().job(id).await?)
    }

    /// Cancels a job that is not running (the owner or a manager). A running job is stopped
    /// from the workshop board, which leaves the machine safe first.
    pub async fn cancel_job(&self, actor: &User, id: JobId, now: i64) -> LabResult<Job> {
        let job = self.store().job(id).await?;
        if job.owner != actor.id && !actor.role.at_least(Role::Manager) {
            return Err(LabError::Forbidden);
        }
        if matches!(job.state, JobState::Running | JobState::Paused) {
            return Err(Invalid::new("state", "job_running").into());
        }
        job.state.change_to(JobState::Cancelled)?;
        self.store()
            .change_job_state(id, job.state, JobState::Cancelled, Some(actor.id), "", now)
            .await
            .map_err(state_conflict)?;
        Ok(self.store().job(id).await?)
    }

    /// Queues a failed, cancelled or interrupted job again, if its file is still kept and
    /// could be read. It goes where a new job would: back to `needs_approval` when a manager
    /// must look at it (an earlier approval does not carry over), otherwise to the queue.
    pub async fn requeue_job(&self, actor: &User, id: JobId, now: i64) -> LabResult<Job> {
        let job = self.store().job(id).await?;
        if job.owner != actor.id && !actor.role.at_least(Role::Manager) {
            return Err(LabError::Forbidden);
        }
        if job.file_deleted {
            return Err(Invalid::new("file", "file_deleted").into());
        }
        job.state.change_to(JobState::Queued)?;
        if !job.state.is_finished() {
            return Err(Invalid::new("state", "job_transition").into());
        }
        if job.analysis.is_none() {
            return Err(Refusal::Unreadable.into());
        }
        let machines = self.machines().await?;
        let clearances = self.clearances(&[job.owner], now).await?;
        let fresh = Job {
            approval: None,
            ..job.clone()
        };
        let (to, note) = review(&fresh, &machines, &clearances);
        self.store()
            .requeue_job(id, job.state, to, actor.id, &note, now)
            .await
            .map_err(state_conflict)?;
        Ok(self.store().job(id).await?)
    }

    /// Checks that a queued job may start on `machine` now, started as `start` (by `by` when
    /// a person starts it), and records the start: the rule of [`fit::check`], then the
    /// machine free and the job still queued, all in the store's one transaction.
    pub async fn begin_job(
        &self,
        machine: MachineId,
        id: JobId,
        start: Start,
        by: Option<UserId>,
        now: i64,
    ) -> LabResult<Job> {
        let machine = self.store().machine(machine).await?;
        if machine.state != MachineState::Idle {
            return Err(Refusal::MachineNotFree {
                state: machine.state,
            }
            .into());
        }
        let job = self.store().job(id).await?;
        if job.state != JobState::Queued {
            return Err(Refusal::NotQueued { state: job.state }.into());
        }
        let owner = self
            .clearances(&[job.owner], now)
            .await?
            .owner(job.owner, machine.id);
        fit::check(&job, &machine, &owner, start)?;
        self.store()
            .start_job(id, machine.id, by, &format!("sur {}", machine.name), now)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => Refusal::NotQueued { state: job.state }.into(),
                other => LabError::from(other),
            })?;
        Ok(self.store().job(id).await?)
    }

    /// Checks that the person `by` may go on with a running job on `machine` after it
    /// stopped for them (a mill's tool change): the rule of [`fit::check`] for a person's
    /// start, as when the job began. Returns who they are.
    pub async fn check_resume(
        &self,
        machine: MachineId,
        id: JobId,
        by: UserId,
        now: i64,
    ) -> LabResult<User> {
        let machine = self.store().machine(machine).await?;
        let job = self.store().job(id).await?;
        if job.machine != Some(machine.id) || job.state.is_finished() {
            return Err(Refusal::NotQueued { state: job.state }.into());
        }
        let person = self.store().user(by).await?;
        let owner = self
            .clearances(&[job.owner], now)
            .await?
            .owner(job.owner, machine.id);
        fit::check(&job, &machine, &owner, Start::Person(person.role))?;
        Ok(person)
    }

    /// Removes from `jobs_dir` what an interrupted write left there, before anything else
    /// runs (`fabrique serve` calls it before it listens): uploads cut short (`*.part`), and
    /// files no job and no campaign model refers to (a file renamed into place whose job was
    /// never recorded, because Fabrique was killed between the two), with what is kept
    /// beside them. Files of recorded jobs, and what is kept beside them, stay.
    pub async fn sweep_job_files(&self, jobs_dir: &Path) -> LabResult<Swept> {
        let referenced = self.store().referenced_job_files().await?;
        let mut swept = Swept::default();
        let mut entries = match tokio::fs::read_dir(jobs_dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(swept),
            Err(e) => {
                return Err(LabError::Store(StoreError::Corrupt(format!(
                    "{}: {e}",
                    jobs_dir.display()
                ))));
            }
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let owner = job_files::BESIDE_ENDINGS
                .iter()
                .find_map(|ending| name.strip_suffix(ending))
                .unwrap_or(&name);
            let keep = !name.ends_with(".part") && referenced.contains(owner);
            if keep {
                continue;
            }
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => {
                    swept.files += 1;
                    swept.bytes += meta.len();
                }
                Err(e) => {
                    tracing::warn!(file = name, error = %e, "could not remove a left-over job file")
                }
            }
        }
        Ok(swept)
    }

    /// One of the few slots for reading an embroidery design whole, waited for.
    async fn design_slot(&self) -> LabResult<tokio::sync::SemaphorePermit<'_>> {
        self.designs
            .acquire()
            .await
            .map_err(|e| LabError::Store(StoreError::Corrupt(format!("design bound: {e}"))))
    }

    /// The file to send for "download as DST" of an embroidery job `actor` may see: the
    /// design itself when it is a DST, else its DST copy, written at the first download and
    /// kept (within the bound on designs read at once). `None` when the job's file is not a
    /// readable design, or is gone.
    pub async fn dst_file(
        &self,
        actor: &User,
        id: JobId,
        jobs_dir: &Path,
    ) -> LabResult<Option<std::path::PathBuf>> {
        let job = self.job(actor, id).await?;
        if job.file_deleted {
            return Ok(None);
        }
        let _permit = self.design_slot().await?;
        let dir = jobs_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            job_files::dst_file(&dir, &job.stored_name, &job.file_name)
        })
        .await
        .map_err(|e| LabError::Store(StoreError::Corrupt(format!("DST copy: {e}"))))
    }

    /// Removes the files of finished jobs older than `retention_days` (the job and its
    /// history stay), with what is kept beside them. Returns how many were removed.
    pub async fn clean_job_files(
        &self,
        jobs_dir: &Path,
        retention_days: u32,
        now: i64,
    ) -> LabResult<usize> {
        let before = now - i64::from(retention_days) * 86_400;
        let mut removed = 0;
        for (id, stored) in self.store().job_files_to_delete(before).await? {
            for path in job_files::beside(jobs_dir, &stored) {
                let _ = tokio::fs::remove_file(path).await;
            }
            match tokio::fs::remove_file(jobs_dir.join(&stored)).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(job = id.0, error = %e, "could not remove an old job file");
                    continue;
                }
            }
            self.store().mark_job_file_deleted(id, now).await?;
        }
        Ok(removed)
    }

    pub async fn set_job_priority(&self, actor: &User, id: JobId, priority: i32) -> LabResult<Job> {
        if !actor.role.at_least(Role::Manager) {
            return Err(LabError::Forbidden);
        }
        if !(-10..=10).contains(&priority) {
            return Err(Invalid::new("priority", "number_range").into());
        }
        self.store().set_job_priority(id, priority).await?;
        Ok(self.store().job(id).await?)
    }
}

/// [`fit::waiting`] over the machines in service.
pub fn waiting(job: &Job, machines: &[Machine], clearances: &Clearances) -> Option<Waiting> {
    let considered: Vec<(&Machine, Owner)> = in_service(machines)
        .map(|m| (m, clearances.owner(job.owner, m.id)))
        .collect();
    fit::waiting(job, &considered)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::{CredentialKind, Lang, NewUser, Secret};

    /// An EXP design: pairs of signed bytes, in 0.1 mm.
    fn exp_design(stitches: usize) -> Vec<u8> {
        (0..stitches)
            .flat_map(|i| [if i % 2 == 0 { 20 } else { 236 }, 5])
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn designs_wait_for_the_bound_and_g_code_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::testing::fresh_database_url(dir.path())
            .await
            .unwrap();
        let lab = Lab::new(crate::Store::open(&url).await.unwrap()).unwrap();
        let new = NewUser::parse(
            "amina",
            "",
            "",
            Role::Member,
            Lang::Fr,
            CredentialKind::Password,
            Secret::new("long enough secret"),
        )
        .unwrap();
        let amina = lab.create_user_unchecked(&new, 1).await.unwrap();
        let jobs_dir = dir.path().join("jobs");
        std::fs::create_dir_all(&jobs_dir).unwrap();
        let job = |name: &str, bytes: &[u8]| {
            let stored = format!("s-{name}");
            std::fs::write(jobs_dir.join(&stored), bytes).unwrap();
            NewJob {
                owner: amina.id,
                file_name: name.into(),
                stored_name: stored,
                size_bytes: i64::try_from(bytes.len()).unwrap(),
                sha256: "0".repeat(64),
                target_machine: None,
                target_kind: None,
            }
        };
        // Every slot for designs taken: a design waits, G-code goes through.
        let held = lab
            .designs
            .acquire_many(u32::try_from(crate::lab::MAX_CONCURRENT_DESIGNS).unwrap())
            .await
            .unwrap();
        let gcode = job("cube.gcode", b"G28\nG1 X10 Y10\n");
        lab.submit_job(&amina, &gcode, &jobs_dir, 2).await.unwrap();
        let design = job("coeur.exp", &exp_design(200));
        let waiting = {
            let (lab, amina, dir) = (lab.clone(), amina.clone(), jobs_dir.clone());
            tokio::spawn(async move { lab.submit_job(&amina, &design, &dir, 3).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "the design waited for a slot");
        drop(held);
        let submitted = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(submitted.file_name, "coeur.exp");
    }
}
