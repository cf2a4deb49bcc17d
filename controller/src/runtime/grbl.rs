//! GRBL lasers and mills: jobs and the operator panel through the one held link
//! ([`super::grbl_link`]), a mill's file cut part by part with a tool change between.

use super::*;

/// How often a job waiting for a tool change looks whether the link is still there.
const LINK_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// How a GRBL job ended early.
enum GrblEnd {
    /// The driver stopped it (error, alarm, cancel, lost link): the machine was reset.
    Failed(fabrique_machines::driver::grbl::GrblError),
    /// Between two parts of a mill's job, with the machine at rest.
    Stopped {
        state: JobState,
        reason: &'static str,
        machine: MachineState,
    },
}

impl MachineTask {
    /// A laser (or a GRBL mill): started only by a person at the machine. The file is
    /// checked in GRBL's check mode first; any error, alarm, lost link or cancel holds then
    /// resets the machine (laser off) and the job fails with the reason. It goes through
    /// the link the operator panel holds, if a person took the machine (the homing and the
    /// work origin they set stay); otherwise a link is opened for the job and closed after.
    pub(super) async fn stream_grbl(
        &mut self,
        job: Job,
        port: String,
        baud: u32,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        use fabrique_machines::driver::grbl as grbl_driver;
        use fabrique_machines::protocol::grbl::{FailReason, Lang, Program, Segment, Tool};
        let Some(mut person) = self.started_by.clone() else {
            return self
                .finish(
                    &job,
                    JobState::Failed,
                    "démarrage sans personne devant la machine refusé",
                    MachineState::Idle,
                )
                .await;
        };
        // Laser and mill files are small next to a print; read whole for the check mode.
        let path = self.runtime.jobs_dir.join(&job.stored_name);
        let program = match tokio::fs::read_to_string(&path).await {
            Ok(text) => Program::parse(&text, grbl_driver::Config::default().rx_buffer)
                .map_err(|e| grbl_driver::GrblError::from(e).message(Lang::Fr)),
            Err(e) => Err(format!("fichier illisible : {e}")),
        };
        let program = match program {
            Ok(program) => program,
            Err(why) => {
                return self
                    .finish(&job, JobState::Failed, &why, MachineState::Idle)
                    .await;
            }
        };
        // A mill's file stops at each tool change (`M6`); a laser's is one part.
        let parts = match self.grbl_tool() {
            Tool::Laser => vec![Segment {
                after: None,
                program,
            }],
            Tool::Spindle { .. } => program.split_at_tool_changes(),
        };
        let whole = Program::joined(&parts);
        let opened_for_job = match self.grbl_link(&port, baud, None).await {
            Ok(opened) => opened,
            Err(e) => {
                let machine = if matches!(e, grbl_driver::GrblError::Io(_)) {
                    MachineState::Offline
                } else {
                    MachineState::Error
                };
                let why = format!("machine injoignable : {}", e.message(Lang::Fr));
                return self.finish(&job, JobState::Failed, &why, machine).await;
            }
        };
        let total = whole.lines().last().map_or(1, |l| l.number).max(1) as f64;
        let mut lines = 0;
        let mut result = Ok(());
        for (index, part) in parts.into_iter().enumerate() {
            if let Some(change) = part.after {
                match self.await_tool_change(&job, change, commands).await {
                    Ok(name) => person = name,
                    Err(end) => {
                        result = Err(end);
                        break;
                    }
                }
            }
            let check = (index == 0).then(|| whole.clone());
            match self
                .cut_grbl_part(part.program, check, &person, total, commands)
                .await
            {
                Ok(report) => lines += report.summary.lines,
                Err(e) => {
                    result = Err(GrblEnd::Failed(e));
                    break;
                }
            }
        }
        let link_lost = matches!(
            result,
            Err(GrblEnd::Failed(
                grbl_driver::GrblError::LinkClosed
                    | grbl_driver::GrblError::Io(_)
                    | grbl_driver::GrblError::JobFailed(FailReason::Disconnected)
            ))
        );
        let closed = self.grbl.as_ref().is_some_and(|h| h.link.is_closed());
        if opened_for_job || link_lost || closed {
            self.drop_grbl_link().await;
        }
        self.publish(|l| l.tool_change = None);
        match result {
            Ok(()) => {
                let lines = i64::try_from(lines).unwrap_or(i64::MAX);
                self.save_progress(job.id, lines, job.size_bytes).await;
                self.finish(&job, JobState::Done, "", MachineState::ToCheck)
                    .await;
            }
            Err(GrblEnd::Stopped {
                state,
                reason,
                machine,
            }) => self.finish(&job, state, reason, machine).await,
            Err(GrblEnd::Failed(e)) => {
                let reason = e.message(Lang::Fr);
                let cancelled =
                    matches!(e, grbl_driver::GrblError::JobFailed(FailReason::Cancelled));
                let (state, machine) = if cancelled {
                    (JobState::Cancelled, MachineState::ToCheck)
                } else {
                    (JobState::Failed, MachineState::Error)
                };
                self.finish(&job, state, &reason, machine).await;
            }
        }
    }

    /// What a GRBL machine's head carries, from its kind and profile.
    fn grbl_tool(&self) -> fabrique_machines::protocol::grbl::Tool {
        use crate::domain::machine::{MachineKind, MillCoolant};
        use fabrique_machines::protocol::grbl::{Coolant, Tool};
        match self.machine.kind {
            MachineKind::CncMill => Tool::Spindle {
                coolant: match self.machine.profile.coolant {
                    MillCoolant::None => Coolant::None,
                    MillCoolant::Flood => Coolant::Flood,
                    MillCoolant::FloodAndMist => Coolant::FloodAndMist,
                },
            },
            _ => Tool::Laser,
        }
    }

    /// Cuts one part of a GRBL job through the held link, `check` (the whole file) checked
    /// first when given, started by `person` at the machine. Board commands become
    /// controls; line reports move the progress bar.
    async fn cut_grbl_part(
        &mut self,
        program: fabrique_machines::protocol::grbl::Program,
        check: Option<fabrique_machines::protocol::grbl::Program>,
        person: &str,
        total: f64,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<
        fabrique_machines::driver::grbl::JobReport,
        fabrique_machines::driver::grbl::GrblError,
    > {
        use fabrique_machines::driver::grbl::{Control as GrblControl, GrblError};
        use fabrique_machines::protocol::grbl::{PersonAtMachine, WorkArea};
        let [width, height, _] = self.machine.profile.work_area_mm;
        // The person pressed "Démarrer" (or "Outil changé") on the board, signed in at the
        // workshop PC: that is the explicit start at the machine that a cut requires.
        #[allow(clippy::disallowed_methods)]
        let person = PersonAtMachine::confirmed_at_the_machine(
            person.to_string(),
            std::time::Instant::now(),
        );
        let (controls_tx, controls_rx) = mpsc::channel(8);
        let (lines_tx, mut lines_rx) = watch::channel(0usize);
        let handed = match &self.grbl {
            Some(held) => {
                held.link
                    .job(
                        program,
                        check,
                        WorkArea { width, height },
                        person,
                        controls_rx,
                        lines_tx,
                    )
                    .await
            }
            None => Err(GrblError::LinkClosed),
        };
        let mut stream = match handed {
            Ok(answer) => answer,
            Err(e) => {
                self.drop_grbl_link().await;
                return Err(e);
            }
        };
        let mut stopping = false;
        let mut closed = false;
        loop {
            // select!: the cut ends the part; board commands become controls (an emergency
            // stop is a hold and reset, the safe stop); line reports move the bar.
            tokio::select! {
                result = &mut stream => return result.unwrap_or(Err(GrblError::LinkClosed)),
                () = self.runtime.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    let _ = controls_tx.try_send(GrblControl::Cancel);
                }
                command = commands.recv(), if !closed => {
                    closed = command.is_none();
                    let control = match command {
                        Some(Command::Pause) => GrblControl::Pause,
                        Some(Command::Resume) => GrblControl::Resume,
                        Some(Command::Cancel | Command::EmergencyStop) | None => GrblControl::Cancel,
                        Some(Command::Start { reply, .. }) => {
                            let _answered = reply.send(Err(already_working()));
                            continue;
                        }
                        // During a cut the panel may pause, resume and override, nothing else.
                        Some(Command::Panel { action, reply, .. }) => {
                            let control = match &action {
                                PanelAction::Pause => Some(GrblControl::Pause),
                                PanelAction::Resume => Some(GrblControl::Resume),
                                PanelAction::Override(o) => Some(GrblControl::Override(o.realtime())),
                                _ => None,
                            };
                            let answer = match control {
                                Some(control) => {
                                    let _ = controls_tx.send(control).await;
                                    Ok(PanelAnswer::sent_during_job(&action))
                                }
                                None => Err(PanelError::Busy),
                            };
                            let _answered = reply.send(answer);
                            continue;
                        }
                        Some(Command::Finished { .. } | Command::Refresh) => continue,
                    };
                    let _ = controls_tx.send(control).await;
                }
                changed = lines_rx.changed() => {
                    if changed.is_ok() {
                        let line = *lines_rx.borrow_and_update();
                        self.publish(|l| l.progress = (line as f64 / total).min(1.0));
                    }
                }
            }
        }
    }

    /// A mill's job stopped at a tool change, spindle and coolant off: the job is paused
    /// until a person allowed to start it says the tool is in (the board's "Outil changé",
    /// a start of the same job). Meanwhile the panel works (jog, Z probe, unlock, home).
    /// Returns who said so, or how the job ends: cancelled, or interrupted by a shutdown.
    async fn await_tool_change(
        &mut self,
        job: &Job,
        change: fabrique_machines::protocol::grbl::ToolChange,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<String, GrblEnd> {
        let tool = change.tool.map_or(String::new(), |t| format!(" T{t}"));
        let note = format!("changement d'outil{tool} (ligne {})", change.line);
        if !self.record_pause_by(job.id, true, None, &note).await {
            return Err(GrblEnd::Stopped {
                state: JobState::Failed,
                reason: UNRECORDED,
                machine: MachineState::Error,
            });
        }
        self.publish(|l| {
            l.tool_change = Some(ToolChangeView {
                line: change.line,
                tool: change.tool,
            })
        });
        let person = loop {
            let command = tokio::select! {
                () = self.runtime.shutdown.cancelled() => {
                    return Err(GrblEnd::Stopped {
                        state: JobState::Interrupted,
                        reason: "Fabrique s'est arrêté pendant le changement d'outil",
                        machine: MachineState::ToCheck,
                    });
                }
                command = commands.recv() => command,
                // The machine unplugged or switched off while it waits: said at once, not
                // when the person comes back to press "Outil en place".
                () = tokio::time::sleep(LINK_CHECK) => {
                    if self.grbl.as_ref().is_none_or(|h| h.link.is_closed()) {
                        return Err(GrblEnd::Stopped {
                            state: JobState::Failed,
                            reason: "liaison perdue pendant le changement d'outil : vérifiez le câble USB et l'alimentation de la machine",
                            machine: MachineState::Offline,
                        });
                    }
                    continue;
                }
            };
            match command {
                Some(Command::Start { job: id, by, reply }) if id == job.id => {
                    let Some(by) = by else {
                        let _answered = reply.send(Err(already_working()));
                        continue;
                    };
                    match self
                        .runtime
                        .lab
                        .check_resume(self.machine.id, job.id, by, now())
                        .await
                    {
                        Ok(person) => {
                            let _answered = reply.send(Ok(()));
                            break person;
                        }
                        Err(e) => {
                            let _answered = reply.send(Err(e));
                        }
                    }
                }
                Some(Command::Start { reply, .. }) => {
                    let _answered = reply.send(Err(already_working()));
                }
                Some(Command::Cancel | Command::EmergencyStop) | None => {
                    return Err(GrblEnd::Stopped {
                        state: JobState::Cancelled,
                        reason: "annulé pendant le changement d'outil",
                        machine: MachineState::ToCheck,
                    });
                }
                // The job holds the link: giving the machine back would close it.
                Some(Command::Panel {
                    action: PanelAction::Release,
                    reply,
                    ..
                }) => {
                    let _answered = reply.send(Ok(PanelAnswer::nothing_sent()));
                }
                Some(Command::Panel {
                    by,
                    action,
                    outline,
                    reply,
                }) => {
                    let answer = self.panel(by, action, outline).await;
                    let _answered = reply.send(answer);
                }
                Some(
                    Command::Pause | Command::Resume | Command::Finished { .. } | Command::Refresh,
                ) => {}
            }
        };
        self.publish(|l| l.tool_change = None);
        let note = format!("outil{tool} en place");
        if !self
            .record_pause_by(job.id, false, Some(person.id), &note)
            .await
        {
            return Err(GrblEnd::Stopped {
                state: JobState::Failed,
                reason: UNRECORDED,
                machine: MachineState::Error,
            });
        }
        Ok(person.display_name)
    }

    /// Makes sure the GRBL link is open: the one the panel holds, or a new one. Returns
    /// whether it was opened now. `holder` takes the machine (the panel); `None` opens it
    /// for a job.
    async fn grbl_link(
        &mut self,
        port: &str,
        baud: u32,
        holder: Option<&str>,
    ) -> Result<bool, fabrique_machines::driver::grbl::GrblError> {
        if self.grbl.as_ref().is_some_and(|h| h.link.is_closed()) {
            self.drop_grbl_link().await;
        }
        let opened = match &mut self.grbl {
            Some(held) => {
                if let Some(name) = holder {
                    held.held_by = Some(name.to_string());
                }
                false
            }
            None => {
                let link = GrblLink::open(port, baud, self.grbl_tool()).await?;
                self.grbl = Some(HeldLink {
                    link,
                    held_by: holder.map(str::to_string),
                    last_used: std::time::Instant::now(),
                });
                true
            }
        };
        if let Some(held) = &mut self.grbl {
            held.last_used = std::time::Instant::now();
        }
        self.show_panel();
        Ok(opened)
    }

    /// Closes the GRBL link, if one is open.
    pub(super) async fn drop_grbl_link(&mut self) {
        if let Some(held) = self.grbl.take() {
            held.link.close().await;
        }
        self.show_panel();
    }

    /// Publishes who holds the machine and where its link's status comes from.
    fn show_panel(&self) {
        let view = self.grbl.as_ref().map(|h| PanelView {
            held_by: h.held_by.clone(),
            status: h.link.status_receiver(),
        });
        self.panel.send_replace(view);
    }

    /// An operator panel action, outside a job.
    pub(super) async fn panel(
        &mut self,
        by: String,
        action: PanelAction,
        outline: Option<fabrique_machines::protocol::grbl::Program>,
    ) -> Result<PanelAnswer, PanelError> {
        let Connection::SerialGrbl { port, baud } = self.machine.connection.clone() else {
            return Err(PanelError::NotGrbl);
        };
        if let Some(Some(holder)) = self.grbl.as_ref().map(|h| &h.held_by)
            && *holder != by
            && action != PanelAction::Take
        {
            return Err(PanelError::HeldBy(holder.clone()));
        }
        if action == PanelAction::Release {
            self.drop_grbl_link().await;
            return Ok(PanelAnswer::nothing_sent());
        }
        let opened = self
            .grbl_link(&port, baud, Some(&by))
            .await
            .map_err(PanelError::Link)?;
        if opened && self.live.borrow().state == MachineState::Offline {
            self.set_machine(MachineState::Idle, "").await;
        }
        let Some(held) = &self.grbl else {
            return Err(PanelError::Link(
                fabrique_machines::driver::grbl::GrblError::LinkClosed,
            ));
        };
        match held.link.panel(action, outline).await {
            Ok(answer) => Ok(answer),
            Err(e) => {
                self.drop_grbl_link().await;
                Err(PanelError::Link(e))
            }
        }
    }
}
