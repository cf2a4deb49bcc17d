//! Receiving a job file, whichever way it comes: store it, record the job, analyse it.

use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::upload::Received;
use fabrique_controller::Lab;
use fabrique_controller::domain::job::Job;
use fabrique_controller::domain::{Invalid, Machine, MachineId, User};
use fabrique_controller::lab::now;
use fabrique_controller::store::NewJob;
use std::path::Path;

/// Records the job of a received file and analyses it. The file is removed when the job
/// cannot be recorded, so nothing is left half done.
pub async fn accept(
    state: &AppState,
    user: &User,
    received: Received,
    machine: Option<&str>,
) -> AppResult<Job> {
    let target_machine = match machine.map(str::trim).filter(|m| !m.is_empty()) {
        Some(raw) => Some(MachineId(
            raw.parse()
                .map_err(|_| Invalid::new("machine_id", "choice"))?,
        )),
        None => None,
    };
    let new = NewJob {
        owner: user.id,
        file_name: received.file_name.clone(),
        stored_name: received.stored_name.clone(),
        size_bytes: received.size_bytes,
        sha256: received.sha256.clone(),
        target_machine,
        target_kind: None,
    };
    let job = match state.lab.submit_job(user, &new, now()).await {
        Ok(job) => job,
        Err(e) => {
            let _ = tokio::fs::remove_file(&received.path).await;
            return Err(e.into());
        }
    };
    let machine = match target_machine {
        Some(id) => Some(state.lab.machine(id).await?),
        None => None,
    };
    let job = analyse_job(&state.lab, &state.config.jobs_dir(), &job, machine.as_ref()).await?;
    state.runtime.wake();
    Ok(job)
}

/// Analyses a recorded job's file in a blocking task (checked against `machine` when the
/// job targets one), keeps its preview and thumbnail beside it, and records the analysis.
pub async fn analyse_job(
    lab: &Lab,
    jobs_dir: &Path,
    job: &Job,
    machine: Option<&Machine>,
) -> AppResult<Job> {
    let limits = machine.map(crate::analysis::limits);
    let dir = jobs_dir.to_path_buf();
    let (stored, name) = (job.stored_name.clone(), job.file_name.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        let analysed = crate::analysis::analyse(&dir.join(&stored), &name, limits.as_ref(), &name);
        if let Ok(a) = &analysed {
            crate::analysis::keep_pictures(&dir, &stored, a);
        }
        crate::analysis::outcome(&analysed)
    })
    .await
    .map_err(|e| AppError::internal("analysis", &e))?;
    Ok(lab.record_analysis(job.id, outcome, now()).await?)
}
