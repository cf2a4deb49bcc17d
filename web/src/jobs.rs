//! Receiving a job file, whichever way it comes: store it, record the job, analyse it.

use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::upload::Received;
use fabrique_controller::domain::job::Job;
use fabrique_controller::domain::{Invalid, MachineId, User};
use fabrique_controller::lab::now;
use fabrique_controller::store::NewJob;

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
    let limits = match target_machine {
        Some(machine) => Some(crate::analysis::limits(
            &state.lab.machine(machine).await?.profile,
        )),
        None => None,
    };
    let path = received.path.clone();
    let outcome =
        tokio::task::spawn_blocking(move || crate::analysis::analyse(&path, limits.as_ref()))
            .await
            .map_err(|e| AppError::internal("analysis", &e))?;
    let job = state.lab.record_analysis(job.id, outcome, now()).await?;
    state.runtime.wake();
    Ok(job)
}
