//! Jobs and their history.

use super::{Store, StoreError, StoreResult, parse_word};
use crate::domain::campaign::CampaignId;
use crate::domain::job::{Job, JobEvent, JobId, JobState};
use crate::domain::{MachineId, MachineKind, UserId};
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

const JOB_COLUMNS: &str = "j.id, j.owner_id, u.display_name AS owner_name, j.file_name, j.stored_name, j.size_bytes, \
     j.sha256, j.target_machine_id, j.target_kind, j.priority, j.state, j.state_reason, j.analysis, j.estimate_s, \
     j.machine_id, j.lines_acked, j.bytes_acked, j.started_at, j.finished_at, j.file_deleted_at, j.created_at, j.campaign_id \
     FROM jobs j JOIN users u ON u.id = j.owner_id";

fn ts(seconds: i64) -> StoreResult<Timestamp> {
    Timestamp::from_second(seconds).map_err(|e| StoreError::Corrupt(format!("time {seconds}: {e}")))
}

fn job_from_row(row: &AnyRow) -> StoreResult<Job> {
    let analysis: Option<String> = row.try_get("analysis")?;
    Ok(Job {
        id: JobId(row.try_get("id")?),
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
        analysis: analysis
            .map(|a| {
                serde_json::from_str(&a)
                    .map_err(|e| StoreError::Corrupt(format!("job analysis: {e}")))
            })
            .transpose()?,
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
    })
}

/// A new job's file, already on disk.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub owner: UserId,
    pub file_name: String,
    pub stored_name: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub target_machine: Option<MachineId>,
    pub target_kind: Option<MachineKind>,
}

impl Store {
    /// Records a job with what the analysis of its file decided: its analysis (when the
    /// file could be read), the state `to` it goes to from `submitted`, and both steps in
    /// its history, in one transaction. An upload is then one write, and a job is never seen
    /// with an analysis and no decision, or the reverse.
    pub async fn insert_job(
        &self,
        job: &NewJob,
        analysis: Option<(&serde_json::Value, Option<i64>)>,
        to: JobState,
        note: &str,
        now: i64,
    ) -> StoreResult<JobId> {
        let (analysis, estimate_s) =
            analysis.map_or((None, None), |(a, e)| (Some(a.to_string()), e));
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
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
        sqlx::query(
            "INSERT INTO job_events (job_id, at, actor_id, from_state, to_state, note) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.0)
        .bind(now)
        .bind(actor.map(|a| a.0))
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(note)
        .execute(&mut *tx)
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

    pub async fn set_job_machine(&self, id: JobId, machine: Option<MachineId>) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET machine_id = $1 WHERE id = $2")
            .bind(machine.map(|m| m.0))
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
