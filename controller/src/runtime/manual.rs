//! Machines without a data link: a person at the machine says when the job ended.

use super::*;

impl MachineTask {
    /// A machine without a data link: the operator started it and says when it ended.
    pub(super) async fn manual(&self, job: Job, commands: &mut mpsc::Receiver<Command>) {
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
}
