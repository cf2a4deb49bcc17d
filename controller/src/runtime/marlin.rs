//! Marlin printers over serial: the file streamed line by line, never read whole.

use super::*;

impl MachineTask {
    pub(super) async fn stream_marlin(
        &self,
        job: Job,
        port: String,
        baud: u32,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        let path = self.runtime.jobs_dir.join(&job.stored_name);
        let cancel = self.runtime.shutdown.child_token();
        let (controls_tx, mut controls_rx) = mpsc::channel(8);
        let (progress_tx, mut progress_rx) = watch::channel(None);
        let connect = || {
            let port = port.clone();
            async move {
                marlin_driver::open_serial(&port, baud)
                    .await
                    .map_err(std::io::Error::other)
            }
        };
        let options = StreamOptions::default();
        let stream = marlin_driver::stream_file(
            connect,
            &path,
            &options,
            Some(&mut controls_rx),
            |p: &marlin_driver::Progress| {
                let _ = progress_tx.send(Some(p.clone()));
            },
            &cancel,
        );
        tokio::pin!(stream);
        let mut last_saved = std::time::Instant::now();
        let mut closed = false;
        // A pause or resume the store would not take: the job was stopped for it.
        let mut unrecorded = false;
        // What the firmware said of its limits is kept once per job, for the manager.
        let mut limits_kept = false;
        let outcome = loop {
            // select!: the stream ends the job; commands become driver controls; progress
            // reports go to the board and, every few seconds, to the store.
            tokio::select! {
                outcome = &mut stream => break outcome,
                command = commands.recv(), if !closed => {
                    // A closed channel (the runtime is going away) cancels once.
                    closed = command.is_none();
                    let control = match command {
                        Some(Command::Pause) => Control::Pause,
                        Some(Command::Resume) => Control::Resume,
                        Some(Command::Cancel) | None => Control::Cancel,
                        Some(Command::EmergencyStop) => Control::EmergencyStop,
                        Some(Command::Start { reply, .. }) => {
                            let _answered = reply.send(Err(already_working()));
                            continue;
                        }
                        Some(Command::Panel { reply, .. }) => {
                            let _answered = reply.send(Err(PanelError::NotGrbl));
                            continue;
                        }
                        Some(Command::Finished { .. } | Command::Refresh) => continue,
                    };
                    let control = match control {
                        Control::Pause | Control::Resume if !self.record_pause(job.id, control == Control::Pause).await => {
                            // Fabrique could not say what the printer does: stop it safe.
                            unrecorded = true;
                            Control::Cancel
                        }
                        other => other,
                    };
                    let _sent = controls_tx.send(control).await;
                }
                changed = progress_rx.changed() => {
                    if changed.is_err() { continue; }
                    let Some(p) = progress_rx.borrow_and_update().clone() else { continue };
                    if let (false, Some(limits)) = (limits_kept, &p.reported_limits) {
                        limits_kept = true;
                        if let Err(e) = self.runtime.lab.note_reported_limits(self.machine.id, limits, now()).await {
                            tracing::warn!(error = %e, "could not keep the limits the firmware reported");
                        }
                    }
                    self.publish(|l| {
                        l.progress = p.fraction();
                        l.remaining_s = p.remaining.map(|r| r.as_secs());
                        if let Some(t) = &p.temperatures {
                            l.hotend = t.tools.first().map(|r| (r.actual, r.target));
                            l.bed = t.bed.as_ref().map(|r| (r.actual, r.target));
                        }
                    });
                    if last_saved.elapsed() >= Duration::from_secs(3) {
                        last_saved = std::time::Instant::now();
                        let (lines, bytes) = (i64::try_from(p.stats.lines_acked).unwrap_or(i64::MAX), i64::try_from(p.stats.bytes_acked).unwrap_or(i64::MAX));
                        self.save_progress(job.id, lines, bytes).await;
                    }
                }
            }
        };
        match outcome {
            Ok(outcome) => {
                let stats = outcome.stats();
                let (lines, bytes) = (
                    i64::try_from(stats.lines_acked).unwrap_or(i64::MAX),
                    i64::try_from(stats.bytes_acked).unwrap_or(i64::MAX),
                );
                self.save_progress(job.id, lines, bytes).await;
                if unrecorded {
                    return self
                        .finish(&job, JobState::Failed, UNRECORDED, MachineState::Error)
                        .await;
                }
                match &outcome {
                    JobOutcome::Done(_) => {
                        self.finish(&job, JobState::Done, "", MachineState::ToCheck)
                            .await
                    }
                    JobOutcome::Cancelled(_) => {
                        let reason = if self.runtime.shutdown.is_cancelled() {
                            "Fabrique s'arrête : travail annulé, machine mise en sécurité"
                        } else {
                            ""
                        };
                        self.finish(
                            &job,
                            if reason.is_empty() {
                                JobState::Cancelled
                            } else {
                                JobState::Interrupted
                            },
                            reason,
                            MachineState::ToCheck,
                        )
                        .await;
                    }
                    JobOutcome::Failed {
                        reason: JobFailure::EmergencyStop,
                        ..
                    } => {
                        self.finish(
                            &job,
                            JobState::Failed,
                            "arrêt d'urgence",
                            MachineState::Error,
                        )
                        .await;
                    }
                    JobOutcome::Failed { reason, .. } => {
                        self.finish(
                            &job,
                            JobState::Failed,
                            &reason.to_string(),
                            MachineState::Error,
                        )
                        .await
                    }
                    JobOutcome::Interrupted { reason, stats } => {
                        let note = format!(
                            "{reason} (dernière ligne confirmée : {})",
                            stats.last_acked_line
                        );
                        self.finish(&job, JobState::Interrupted, &note, MachineState::Offline)
                            .await;
                    }
                }
            }
            Err(e) => {
                self.finish(
                    &job,
                    JobState::Failed,
                    &format!("imprimante injoignable : {e}"),
                    MachineState::Offline,
                )
                .await
            }
        }
    }
}
