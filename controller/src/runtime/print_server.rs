//! Printers behind a print server (OctoPrint, Moonraker): the server streams the file; the
//! machine task uploads it, starts it, follows it, and follows it again after a restart.

use super::*;

impl MachineTask {
    /// Follows again a print that a print server kept running while Fabrique was stopped.
    pub(super) async fn reattach(&self, job: Job, commands: &mut mpsc::Receiver<Command>) {
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

    pub(super) async fn cannot_reach(&self, job: &Job, why: &str) {
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
    pub(super) async fn follow_remote<P: RemotePrinter>(
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
}
