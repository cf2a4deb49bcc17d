//! Receiving a job file, whichever way it comes (the form, the API, a slicer): the file is
//! on disk, the controller reads it and records the job.

use crate::app::AppState;
use crate::error::AppResult;
use crate::upload::Received;
use fabrique_controller::domain::job::Job;
use fabrique_controller::domain::{Invalid, MachineId, User};
use fabrique_controller::job_files;
use fabrique_controller::lab::now;
use fabrique_controller::store::NewJob;

/// Records the job of a received file, for the machine named by the form field `machine`
/// (blank: any machine the rule allows). The file is removed when the job cannot be
/// recorded, so nothing is left half done.
pub async fn accept(
    state: &AppState,
    user: &User,
    received: Received,
    machine: Option<&str>,
) -> AppResult<Job> {
    let dir = state.config.jobs_dir();
    let target = match machine.map(str::trim).filter(|m| !m.is_empty()) {
        Some(raw) => match raw.parse() {
            Ok(id) => Some(MachineId(id)),
            Err(_) => {
                job_files::remove(&dir, &received.stored_name).await;
                return Err(Invalid::new("machine_id", "choice").into());
            }
        },
        None => None,
    };
    let new = NewJob {
        owner: user.id,
        file_name: received.file_name,
        stored_name: received.stored_name,
        size_bytes: received.size_bytes,
        sha256: received.sha256,
        target_machine: target,
        target_kind: None,
    };
    let job = state.lab.submit_job(user, &new, &dir, now()).await?;
    state.runtime.wake();
    Ok(job)
}
