//! Jobs and their history.

use super::{Store, StoreError, StoreResult, parse_word};
use crate::domain::campaign::CampaignId;
use crate::domain::job::{Approval, Job, JobEvent, JobId, JobState, NewJob};
use crate::domain::{MachineId, MachineKind, UserId};
use fabrique_machines::files::FileSummary;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

const JOB_COLUMNS: &str = "j.id, j.owner_id, u.display_name AS owner_name, j.file_name, j.stored_name, j.size_bytes, \
     j.sha256, j.target_machine_id, j.target_kind, j.priority, j.state, j.state_reason, j.analysis, j.estimate_s, \
     j.machine_id, j.lines_acked, j.bytes_acked, j.started_at, j.finished_at, j.file_deleted_at, j.created_at, j.campaign_id, \
     j.approved_by, a.display_name AS approver_name, j.approved_at, j.approval_seen, j.approval_supervised \
     FROM jobs j JOIN users u ON u.id = j.owner_id LEFT JOIN users a ON a.id = j.approved_by";

fn ts(seconds: i64) -> StoreResult<Timestamp> {
    Timestamp::from_second(seconds).map_err(|e| StoreError::Corrupt(format!("time {seconds}: {e}")))
}

/// A stored analysis, read back as the type it was written from. One that no longer reads
/// (written by a version that is gone, or damaged) counts as unreadable: the job cannot run
/// until its file is sent again, and the defect is logged.
pub(crate) fn analysis_from_text(id: i64, text: Option<String>) -> Option<FileSummary> {
    let text = text?;
    match serde_json::from_str(&text) {
        Ok(summary) => Some(summary),
        Err(e) => {
            tracing::error!(record = id, error = %e, "a stored file analysis does not read back");
            None
        }
    }
}

fn job_from_row(row: &AnyRow) -> StoreResult<Job> {
    let id: i64 = row.try_get("id")?;
    let approval = match row.try_get::<Option<i64>, _>("approved_by")? {
        Some(by) => Some(Approval {
            by: UserId(by),
            by_name: row
                .try_get::<Option<String>, _>("approver_name")?
                .unwrap_or_default(),
            at: ts(row.try_get::<Option<i64>, _>("approved_at")?.unwrap_or(0))?,
            seen: row
                .try_get::<String, _>("approval_seen")?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            supervised: row.try_get::<i64, _>("approval_supervised")? != 0,
        }),
        None => None,
    };
    Ok(Job {
        id: JobId(id),
        owner: UserId(row.try_get("owner_id")?),
        owner_name: row.try_get("owner_name")?,
        file_name: row.try_get("file_name")?,
        stored_name: row.try_get("stored_name")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        target_machine: row
            .try_get::<Option<i64>, _>("target_machine_id")?
            .map(MachineId),
        target_kind: row
            .try_get::<Option<String>, _>("target_kind")?
            .map(|k| parse_word::<MachineKind>("target_kind", &k))
            .transpose()?,
        priority: i32::try_from(row.try_get::<i64, _>("priority")?).unwrap_or(0),
        state: parse_word("state", &row.try_get::<String, _>("state")?)?,
        state_reason: row.try_get("state_reason")?,
        analysis: analysis_from_text(id, row.try_get("analysis")?),
        estimate_s: row.try_get("estimate_s")?,
        machine: row.try_get::<Option<i64>, _>("machine_id")?.map(MachineId),
        lines_acked: row.try_get("lines_acked")?,
        bytes_acked: row.try_get("bytes_acked")?,
        started_at: row
            .try_get::<Option<i64>, _>("started_at")?
            .map(ts)
            .transpose()?,
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(ts)
            .transpose()?,
        file_deleted: row.try_get::<Option<i64>, _>("file_deleted_at")?.is_some(),
        created_at: ts(row.try_get("created_at")?)?,
        campaign: row
            .try_get::<Option<i64>, _>("campaign_id")?
            .map(CampaignId),
        approval,
    })
}

impl Store {
    /// Records a job with what the analysis of its file decided: its analysis (when the
    /// file could be read), the state `to` it goes to from `submitted`, and both steps in
    /// its history, in one transaction. An upload is then one write, and a job is never seen
    /// with an analysis and no decision, or the reverse.
    pub async fn insert_job(
        &self,
        job: &NewJob,
        analysis: Option<&FileSummary>,
        to: JobState,
        note: &str,
        now: i64,
    ) -> StoreResult<JobId> {
        let estimate_s = analysis.map(FileSummary::estimate_s);
        let analysis = analysis
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("job analysis: {e}")))?;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO jobs (owner_id, file_name, stored_name, size_bytes, sha256, target_machine_id, target_kind, \
             analysis, estimate_s, state, state_reason, created_at, updated_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, \
             CASE WHEN $10 IN ('done', 'failed', 'cancelled', 'interrupted') THEN $12 ELSE NULL END) RETURNING id",
        )
        .bind(job.owner.0)
        .bind(&job.file_name)
        .bind(&job.stored_name)
        .bind(job.size_bytes)
        .bind(&job.sha256)
        .bind(job.target_machine.map(|m| m.0))
        .bind(job.target_kind.map(|k| k.as_str()))
        .bind(analysis)
        .bind(estimate_s)
        .bind(to.as_str())
        .bind(note)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        // The step to `submitted` is the owner's; the decision after the analysis is Fabrique's.
        sqlx::query(
            "INSERT INTO job_events (job_id, at, actor_id, from_state, to_state, note) \
             VALUES ($1, $2, $3, NULL, 'submitted', ''), ($1, $2, NULL, 'submitted', $4, $5)",
        )
        .bind(id)
        .bind(now)
        .bind(job.owner.0)
        .bind(to.as_str())
        .bind(note)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(JobId(id))
    }

    pub async fn job(&self, id: JobId) -> StoreResult<Job> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} WHERE j.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        job_from_row(&row)
    }

    /// Jobs of one owner, or of everyone, newest first.
    pub async fn jobs(&self, owner: Option<UserId>, limit: i64) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} WHERE ($1 = 0 OR j.owner_id = $1) ORDER BY j.id DESC LIMIT $2"
        ))
        .bind(owner.map_or(0, |o| o.0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// The job of `owner` a slicer's monitor asks about (on `machine`, or anywhere): the one
    /// running or paused, else the one waiting longest, else the latest; cancelled ones
    /// left out. One row, whatever the owner's history.
    pub async fn current_job(
        &self,
        owner: UserId,
        machine: Option<MachineId>,
    ) -> StoreResult<Option<Job>> {
        // The choice reads the index only (`jobs_owner_current`), never the analyses of a
        // member's whole history; then the one job is read.
        let row = sqlx::query(
            "SELECT id FROM jobs WHERE owner_id = $1 AND state <> 'cancelled' \
             AND ($2 = 0 OR machine_id = $2 OR (machine_id IS NULL AND target_machine_id = $2)) \
             ORDER BY CASE WHEN state IN ('running', 'paused') THEN 0 \
                           WHEN state IN ('submitted', 'needs_approval', 'queued') THEN 1 ELSE 2 END, \
                      CASE WHEN state IN ('submitted', 'needs_approval', 'queued') THEN id ELSE -id END \
             LIMIT 1",
        )
        .bind(owner.0)
        .bind(machine.map_or(0, |m| m.0))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.job(JobId(row.try_get("id")?)).await?)),
            None => Ok(None),
        }
    }

    pub async fn jobs_in_state(&self, states: &[JobState]) -> StoreResult<Vec<Job>> {
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} WHERE j.state IN ({list}) ORDER BY j.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Moves a job from `from` to `to` and records who did it, in one transaction. Refused
    /// (`Conflict { job_state }`) when the job is no longer in `from`: two people acting at
    /// once cannot both succeed.
    pub async fn change_job_state(
        &self,
        id: JobId,
        from: JobState,
        to: JobState,
        actor: Option<UserId>,
        note: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, state_reason = $2, updated_at = $3, \
             started_at = CASE WHEN $1 = 'running' THEN COALESCE(started_at, $3) ELSE started_at END, \
             finished_at = CASE WHEN $1 IN ('done', 'failed', 'cancelled', 'interrupted') THEN $3 ELSE NULL END \
             WHERE id = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(note)
        .bind(now)
        .bind(id.0)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict { what: "job_state" });
        }
        insert_event(&mut tx, id, now, actor, from, to, note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a manager's approval and, from `needs_approval`, queues the job, in one
    /// transaction; refused (`Conflict { job_state }`) when the job is no longer in `from`.
    #[allow(clippy::too_many_arguments)]
    pub async fn approve_job(
        &self,
        id: JobId,
        from: JobState,
        by: UserId,
        seen: &[String],
        supervised: bool,
        note: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', state_reason = $1, updated_at = $2, approved_by = $3, approved_at = $2, \
             approval_seen = $4, approval_supervised = $5 WHERE id = $6 AND state = $7",
        )
        .bind(note)
        .bind(now)
        .bind(by.0)
        .bind(seen.join(","))
        .bind(i64::from(supervised))
        .bind(id.0)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict { what: "job_state" });
        }
        insert_event(&mut tx, id, now, Some(by), from, JobState::Queued, note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts a finished job back to `to` (queued, or waiting for approval): its progress and
    /// any earlier approval are cleared, so what was approved for one run is not taken for
    /// the next.
    pub async fn requeue_job(
        &self,
        id: JobId,
        from: JobState,
        to: JobState,
        actor: UserId,
        note: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, state_reason = $2, updated_at = $3, finished_at = NULL, machine_id = NULL, \
             lines_acked = 0, bytes_acked = 0, approved_by = NULL, approved_at = NULL, approval_seen = '', \
             approval_supervised = 0 WHERE id = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(note)
        .bind(now)
        .bind(id.0)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict { what: "job_state" });
        }
        insert_event(&mut tx, id, now, Some(actor), from, to, note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A queued job starts on `machine`: the machine is recorded with the state, in one
    /// transaction, and only if the job is still queued (two starts cannot both win).
    pub async fn start_job(
        &self,
        id: JobId,
        machine: MachineId,
        by: Option<UserId>,
        note: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'running', state_reason = '', machine_id = $1, updated_at = $2, \
             started_at = COALESCE(started_at, $2) WHERE id = $3 AND state = 'queued'",
        )
        .bind(machine.0)
        .bind(now)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict { what: "job_state" });
        }
        insert_event(
            &mut tx,
            id,
            now,
            by,
            JobState::Queued,
            JobState::Running,
            note,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_job_priority(&self, id: JobId, priority: i32) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET priority = $1 WHERE id = $2")
            .bind(i64::from(priority))
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_job_progress(
        &self,
        id: JobId,
        lines_acked: i64,
        bytes_acked: i64,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET lines_acked = $1, bytes_acked = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(lines_acked)
        .bind(bytes_acked)
        .bind(now)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn job_events(&self, id: JobId) -> StoreResult<Vec<JobEvent>> {
        let rows = sqlx::query(
            "SELECT e.at, u.display_name AS actor_name, e.from_state, e.to_state, e.note FROM job_events e \
             LEFT JOIN users u ON u.id = e.actor_id WHERE e.job_id = $1 ORDER BY e.at, e.id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobEvent {
                    at: ts(r.try_get("at")?)?,
                    actor_name: r.try_get("actor_name")?,
                    from: r
                        .try_get::<Option<String>, _>("from_state")?
                        .map(|s| parse_word("from_state", &s))
                        .transpose()?,
                    to: parse_word("to_state", &r.try_get::<String, _>("to_state")?)?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    /// Finished jobs whose file is older than `before` and still on disk: for the clean-up.
    /// Every file name a job or a campaign model refers to, for the sweep at start.
    pub async fn referenced_job_files(&self) -> StoreResult<std::collections::HashSet<String>> {
        let rows = sqlx::query(
            "SELECT stored_name FROM jobs UNION SELECT stored_name FROM campaign_files",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("stored_name")?))
            .collect()
    }

    pub async fn job_files_to_delete(&self, before: i64) -> StoreResult<Vec<(JobId, String)>> {
        let rows = sqlx::query(
            "SELECT id, stored_name FROM jobs WHERE file_deleted_at IS NULL AND created_at < $1 \
             AND state IN ('done', 'failed', 'cancelled', 'interrupted')",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((JobId(r.try_get("id")?), r.try_get("stored_name")?)))
            .collect()
    }

    pub async fn mark_job_file_deleted(&self, id: JobId, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET file_deleted_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One line of a job's history, inside the transaction that made the change.
async fn insert_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: JobId,
    now: i64,
    actor: Option<UserId>,
    from: JobState,
    to: JobState,
    note: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO job_events (job_id, at, actor_id, from_state, to_state, note) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.0)
    .bind(now)
    .bind(actor.map(|a| a.0))
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(note)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
