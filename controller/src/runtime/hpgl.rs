//! Vinyl cutters (HP-GL over serial), started by a person who loaded the media.

use super::*;

impl MachineTask {
    /// A vinyl cutter (HP-GL over serial), started by a person who loaded the media: the file
    /// is streamed as the cutter's flow control allows; pause stops sending, cancel drops
    /// what the cutter holds and lifts the blade; the job ends when the cutter answered
    /// the last question, so "done" means it read everything.
    pub(super) async fn stream_hpgl(
        &self,
        job: Job,
        port: String,
        baud: u32,
        hardware_flow: bool,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        use fabrique_machines::driver::hpgl::{self, Control as CutControl, Lang, Progress};
        use fabrique_machines::transport::{FlowControl, SerialOptions};
        let path = self.runtime.jobs_dir.join(&job.stored_name);
        let options = SerialOptions {
            port,
            baud,
            flow: if hardware_flow {
                FlowControl::Hardware
            } else {
                FlowControl::Software
            },
        };
        // Without RTS/CTS the writes go at the line's pace: the system's buffers would
        // otherwise hold more than the cutter can take after its XOFF.
        let config = hpgl::Config {
            pace_baud: (!hardware_flow).then_some(baud),
            // A cutter wired one way cannot say it read everything: "done" is then the
            // last byte sent, as the profile says.
            end_query: !self.machine.profile.one_way,
            ..hpgl::Config::default()
        };
        let cancel = self.runtime.shutdown.child_token();
        let (controls_tx, mut controls_rx) = mpsc::channel(8);
        let (progress_tx, mut progress_rx) = watch::channel(None::<Progress>);
        let mut on_progress = move |p: &Progress| {
            let _ = progress_tx.send(Some(*p));
        };
        let stream = hpgl::stream_file_to_port(
            &options,
            &path,
            &config,
            Some(&mut controls_rx),
            &mut on_progress,
            &cancel,
        );
        tokio::pin!(stream);
        let mut closed = false;
        let result = loop {
            tokio::select! {
                result = &mut stream => break result,
                command = commands.recv(), if !closed => {
                    closed = command.is_none();
                    let control = match command {
                        Some(Command::Pause) => CutControl::Pause,
                        Some(Command::Resume) => CutControl::Resume,
                        Some(Command::Cancel | Command::EmergencyStop) | None => CutControl::Cancel,
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
                    let _ = controls_tx.send(control).await;
                }
                changed = progress_rx.changed() => {
                    if changed.is_ok()
                        && let Some(p) = *progress_rx.borrow_and_update()
                    {
                        let share = p.written as f64 / p.total.max(1) as f64;
                        self.publish(|l| l.progress = share.min(1.0));
                    }
                }
            }
        };
        match result {
            Ok(report) => {
                let bytes = i64::try_from(report.bytes).unwrap_or(i64::MAX);
                self.save_progress(job.id, 0, bytes).await;
                self.finish(&job, JobState::Done, "", MachineState::ToCheck)
                    .await;
            }
            Err(e) => {
                let (state, machine) = match &e {
                    hpgl::HpglError::Cancelled => (JobState::Cancelled, MachineState::ToCheck),
                    hpgl::HpglError::Io(_) => (JobState::Failed, MachineState::Offline),
                    _ => (JobState::Failed, MachineState::Error),
                };
                self.finish(&job, state, &e.message(Lang::Fr), machine)
                    .await;
            }
        }
    }
}
