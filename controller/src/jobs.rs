//! The lab's use cases for jobs: submission, analysis results, approval, cancellation,
//! queueing again, priorities. Running jobs are stopped through the machine runtime.

use crate::domain::job::{Analysis, Job, JobEvent, JobId, JobState};
use crate::domain::{Invalid, Role, User};
use crate::lab::{Lab, LabError, LabResult};
use crate::store::{NewJob, StoreError};

fn state_conflict(e: StoreError) -> LabError {
    match e {
        StoreError::Conflict { what: "job_state" } => {
            Invalid::new("state", "job_transition").into()
        }
        other => other.into(),
    }
}

impl Lab {
    /// Records a job sent by `actor` with what the analysis of its file found: a job with
    /// safety findings waits for a manager's approval, an unreadable file fails with the
    /// reason, any other goes to the queue.
    pub async fn submit_job(
        &self,
        actor: &User,
        job: &NewJob,
        analysis: &Analysis,
        now: i64,
    ) -> LabResult<Job> {
        if job.owner != actor.id {
            return Err(LabError::Forbidden);
        }
        if let Some(machine) = job.target_machine {
            self.store().machine(machine).await?;
        }
        let id = match analysis {
            Ok((json, estimate, findings)) => {
                let (to, note) = if *findings > 0 {
                    (
                        JobState::NeedsApproval,
                        format!("{findings} point(s) à vérifier"),
                    )
                } else {
                    (JobState::Queued, String::new())
                };
                self.store()
                    .insert_job(job, Some((json, *estimate)), to, &note, now)
                    .await?
            }
            Err(reason) => {
                self.store()
                    .insert_job(job, None, JobState::Failed, reason, now)
                    .await?
            }
        };
        Ok(self.store().job(id).await?)
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

    pub async fn approve_job(&self, actor: &User, id: JobId, now: i64) -> LabResult<Job> {
        if !actor.role.at_least(Role::Manager) {
            return Err(LabError::Forbidden);
        }
        let job = self.store().job(id).await?;
        job.state.change_to(JobState::Queued)?;
        if job.state != JobState::NeedsApproval {
            return Err(Invalid::new("state", "job_transition").into());
        }
        self.store()
            .change_job_state(
                id,
                job.state,
                JobState::Queued,
                Some(actor.id),
                "approuvé",
                now,
            )
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

    /// Queues a failed, cancelled or interrupted job again, if its file is still kept.
    pub async fn requeue_job(&self, actor: &User, id: JobId, now: i64) -> LabResult<Job> {
        let job = self.store().job(id).await?;
        if job.owner != actor.id && !actor.role.at_least(Role::Manager) {
            return Err(LabError::Forbidden);
        }
        if job.file_deleted {
            return Err(Invalid::new("file", "file_deleted").into());
        }
        job.state.change_to(JobState::Queued)?;
        self.store()
            .change_job_state(id, job.state, JobState::Queued, Some(actor.id), "", now)
            .await
            .map_err(state_conflict)?;
        self.store().set_job_progress(id, 0, 0, now).await?;
        Ok(self.store().job(id).await?)
    }

    /// Removes the files of finished jobs older than `retention_days` (the job and its
    /// history stay). Returns how many were removed.
    pub async fn clean_job_files(
        &self,
        jobs_dir: &std::path::Path,
        retention_days: u32,
        now: i64,
    ) -> LabResult<usize> {
        let before = now - i64::from(retention_days) * 86_400;
        let mut removed = 0;
        for (id, stored) in self.store().job_files_to_delete(before).await? {
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
