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

/// Analyses a received file and records its job. The file and its pictures are removed
/// when the job cannot be recorded, so nothing is left half done.
pub async fn accept(
    state: &AppState,
    user: &User,
    received: Received,
    machine: Option<&str>,
) -> AppResult<Job> {
    let dir = state.config.jobs_dir();
    let job = async {
        let machine = match machine.map(str::trim).filter(|m| !m.is_empty()) {
            Some(raw) => {
                let id = raw
                    .parse()
                    .map_err(|_| Invalid::new("machine_id", "choice"))?;
                Some(state.lab.machine(MachineId(id)).await?)
            }
            None => None,
        };
        let new = NewJob {
            owner: user.id,
            file_name: received.file_name.clone(),
            stored_name: received.stored_name.clone(),
            size_bytes: received.size_bytes,
            sha256: received.sha256.clone(),
            target_machine: machine.as_ref().map(|m| m.id),
            target_kind: None,
        };
        submit(&state.lab, &dir, user, &new, machine.as_ref()).await
    }
    .await;
    if job.is_err() {
        for path in [
            received.path,
            crate::analysis::preview_path(&dir, &received.stored_name),
            crate::analysis::thumbnail_path(&dir, &received.stored_name),
        ] {
            let _ = tokio::fs::remove_file(path).await;
        }
    }
    let job = job?;
    state.runtime.wake();
    Ok(job)
}

/// Analyses the file of a new job in a blocking task (checked against `machine` when the
/// job targets one), keeps its preview and thumbnail beside it, and records the job with
/// what was found.
pub async fn submit(
    lab: &Lab,
    jobs_dir: &Path,
    user: &User,
    new: &NewJob,
    machine: Option<&Machine>,
) -> AppResult<Job> {
    let limits = machine.map(crate::analysis::limits);
    let dir = jobs_dir.to_path_buf();
    let (stored, name) = (new.stored_name.clone(), new.file_name.clone());
    let analysis = tokio::task::spawn_blocking(move || {
        let analysed = crate::analysis::analyse(&dir.join(&stored), &name, limits.as_ref(), &name);
        if let Ok(a) = &analysed {
            crate::analysis::keep_pictures(&dir, &stored, a);
        }
        crate::analysis::outcome(&analysed)
    })
    .await
    .map_err(|e| AppError::internal("analysis", &e))?;
    Ok(lab.submit_job(user, new, &analysis, now()).await?)
}
