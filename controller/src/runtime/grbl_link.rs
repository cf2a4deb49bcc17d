//! A GRBL machine's link, opened by its machine task and driven on a thread of its own
//! (the driver's futures are not `Send`). Jobs and the operator panel's actions go through
//! it in turn, so that the homing, the position and the work origin a person set at the
//! machine are still there when the job starts: opening the port again resets most
//! boards, and a machine with homing then wakes up in alarm.
//!
//! Between requests the link is kept alive (status polls, alarms); the panel's status is
//! published by `watch`. When the task drops the link, the thread ends and the port closes.
//! Nothing the panel sends turns the laser or the spindle on (see
//! [`crate::domain::panel`]); a job ends, well or badly, with GRBL's safe stop.

use crate::domain::panel::{Axis, JOG_PIECE_S, PanelAction};
use fabrique_machines::driver::grbl::{
    Config, Control, Event, GrblDriver, GrblError, JobReport, Lang, LineOutcome, MachineState,
    PersonAtMachine, Program, Realtime, WorkArea,
};
use fabrique_machines::protocol::grbl::{CodeKind, Tool, codes};
use std::cell::RefCell;
use tokio::sync::{mpsc, oneshot, watch};

/// What the panel shows of the machine, from its status reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PanelStatus {
    pub state: Option<MachineState>,
    /// Machine position (`MPos`, or the work position plus the offset), mm.
    pub machine: Option<[f64; 3]>,
    /// Work position, mm: where the head stands from the work origin.
    pub work: Option<[f64; 3]>,
    /// Feed, rapid and power overrides, percent.
    pub overrides: Option<[u16; 3]>,
    /// The last `ALARM:N` since the link opened.
    pub alarm: Option<u8>,
}

impl PanelStatus {
    fn update(
        &mut self,
        report: &fabrique_machines::protocol::grbl::StatusReport,
        offset: Option<[f64; 3]>,
    ) {
        self.state = Some(report.state);
        let shift = |p: [f64; 3], o: [f64; 3], sign: f64| [0, 1, 2].map(|a| p[a] + sign * o[a]);
        self.machine = report
            .mpos
            .or_else(|| report.wpos.zip(offset).map(|(w, o)| shift(w, o, 1.0)));
        self.work = report
            .wpos
            .or_else(|| report.mpos.zip(offset).map(|(m, o)| shift(m, o, -1.0)));
        if report.overrides.is_some() {
            self.overrides = report.overrides;
        }
    }
}

/// What a panel action sent and what came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The lines or bytes sent, as text ("$H", "0x85").
    pub sent: String,
    /// What the machine printed meanwhile (`$$` settings, `[G54:...]`, messages).
    pub lines: Vec<String>,
    /// `Err` with GRBL's reason in words when it refused a line.
    pub outcome: Result<(), String>,
}

impl Answer {
    /// For an action that sends nothing (taking or giving back the machine).
    pub fn nothing_sent() -> Self {
        Answer {
            sent: String::new(),
            lines: Vec::new(),
            outcome: Ok(()),
        }
    }

    /// For a pause, a resume or an override passed to the job that runs.
    pub fn sent_during_job(action: &PanelAction) -> Self {
        let byte = match action {
            PanelAction::Pause => Some(Realtime::FeedHold),
            PanelAction::Resume => Some(Realtime::CycleStart),
            PanelAction::Override(o) => Some(o.realtime()),
            _ => None,
        };
        Answer {
            sent: byte.map_or(String::new(), |r| format!("0x{:02X}", r.byte())),
            lines: Vec::new(),
            outcome: Ok(()),
        }
    }
}

enum Request {
    Panel {
        action: PanelAction,
        /// The drawing to frame, for [`PanelAction::Frame`].
        outline: Option<Program>,
        reply: oneshot::Sender<Result<Answer, GrblError>>,
    },
    Job {
        program: Program,
        /// Checked against the machine and in check mode before `program` is cut: the
        /// whole file, when `program` is its first part.
        check: Option<Program>,
        area: WorkArea,
        person: PersonAtMachine,
        controls: mpsc::Receiver<Control>,
        lines: watch::Sender<usize>,
        reply: oneshot::Sender<Result<JobReport, GrblError>>,
    },
}

/// An open link to a GRBL machine.
pub struct GrblLink {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<PanelStatus>,
    thread: tokio::task::JoinHandle<()>,
}

impl GrblLink {
    /// Opens the port and connects (soft reset, banner, `$$`); returns once GRBL is ready.
    /// `tool` is what the head carries: a laser, or a mill's spindle.
    pub async fn open(port: &str, baud: u32, tool: Tool) -> Result<Self, GrblError> {
        use tokio_serial::SerialPortBuilderExt;
        let io = tokio_serial::new(port, baud)
            .open_native_async()
            .map_err(|e| GrblError::Io(std::io::Error::other(e)))?;
        let (requests, requests_rx) = mpsc::channel(4);
        let (status_tx, status) = watch::channel(PanelStatus::default());
        let (ready_tx, ready) = oneshot::channel();
        let handle = tokio::runtime::Handle::current();
        // The thread's events carry the machine task's span.
        let span = tracing::Span::current();
        let thread = tokio::task::spawn_blocking(move || {
            let _in_span = span.enter();
            handle.block_on(serve(io, tool, ready_tx, requests_rx, status_tx));
        });
        match ready.await {
            Ok(Ok(())) => Ok(GrblLink {
                requests,
                status,
                thread,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(GrblError::LinkClosed),
        }
    }

    /// Where the machine's status is published, report by report.
    pub fn status_receiver(&self) -> watch::Receiver<PanelStatus> {
        self.status.clone()
    }

    /// Whether the link has ended (lost, or the machine stopped answering).
    pub fn is_closed(&self) -> bool {
        self.thread.is_finished() || self.requests.is_closed()
    }

    /// Performs one panel action; `outline` is the drawing for a framing.
    pub async fn panel(
        &self,
        action: PanelAction,
        outline: Option<Program>,
    ) -> Result<Answer, GrblError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Panel {
                action,
                outline,
                reply,
            })
            .await
            .map_err(|_| GrblError::LinkClosed)?;
        answer.await.map_err(|_| GrblError::LinkClosed)?
    }

    /// Hands a job, or a part of one, to the link: `check` (the whole file) checked against
    /// the machine and in check mode first, when given; then `program` cut. The answer
    /// comes when it ends; `lines` follows the file lines acknowledged.
    pub async fn job(
        &self,
        program: Program,
        check: Option<Program>,
        area: WorkArea,
        person: PersonAtMachine,
        controls: mpsc::Receiver<Control>,
        lines: watch::Sender<usize>,
    ) -> Result<oneshot::Receiver<Result<JobReport, GrblError>>, GrblError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Job {
                program,
                check,
                area,
                person,
                controls,
                lines,
                reply,
            })
            .await
            .map_err(|_| GrblError::LinkClosed)?;
        Ok(answer)
    }

    /// Closes the link and waits for the port to be released.
    pub async fn close(self) {
        drop(self.requests);
        let _ = self.thread.await;
    }
}

/// The link's thread: connect, then take requests in turn until the task lets go.
async fn serve(
    io: tokio_serial::SerialStream,
    tool: Tool,
    ready: oneshot::Sender<Result<(), GrblError>>,
    mut requests: mpsc::Receiver<Request>,
    status: watch::Sender<PanelStatus>,
) {
    // What the machine prints while a panel action runs; reports go to the status.
    let printed = RefCell::new(Vec::<String>::new());
    let offset = RefCell::new(None);
    let mut on_event = |e: &Event| match e {
        Event::Status(s) => {
            if let Some(wco) = s.wco {
                *offset.borrow_mut() = Some(wco);
            }
            status.send_modify(|p| p.update(s, *offset.borrow()));
        }
        Event::Alarm(n) => {
            status.send_modify(|p| p.alarm = Some(*n));
            printed.borrow_mut().push(format!("ALARM:{n}"));
        }
        Event::Feedback(f) => printed.borrow_mut().push(f.clone()),
        Event::Message(m) => printed.borrow_mut().push(format!("[MSG:{m}]")),
        _ => {}
    };
    let config = Config {
        tool,
        ..Config::default()
    };
    let mut driver = match GrblDriver::connect(io, config, &mut on_event).await {
        Ok(driver) => {
            let _ = ready.send(Ok(()));
            driver
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        let request = match driver.idle(&mut requests, &mut on_event).await {
            Ok(Some(request)) => request,
            // The task let go, or the link is gone: the port closes with the driver.
            Ok(None) | Err(_) => return,
        };
        match request {
            Request::Panel {
                action,
                outline,
                reply,
            } => {
                printed.borrow_mut().clear();
                let answer = perform(&mut driver, action, outline, &mut on_event, &printed).await;
                let answer = answer.map(|(sent, outcome)| Answer {
                    sent,
                    lines: printed.borrow_mut().drain(..).collect(),
                    outcome,
                });
                let _ = reply.send(answer);
            }
            Request::Job {
                program,
                check,
                area,
                person,
                mut controls,
                lines,
                reply,
            } => {
                let mut job_events = |e: &Event| {
                    on_event(e);
                    if let Event::Line { number, .. } = e {
                        let _ = lines.send(*number);
                    }
                };
                let checked = match check {
                    Some(whole) => driver.check(whole, area, &mut job_events).await,
                    None => Ok(()),
                };
                let result = match checked {
                    Ok(()) => {
                        driver
                            .cut(program, area, person, Some(&mut controls), &mut job_events)
                            .await
                    }
                    Err(e) => Err(e),
                };
                // A file may end with the laser or the spindle still on (no M5, no M2): a
                // jog after it would fire, a tool change would meet a turning tool. A job
                // that failed ended in a reset, which turns them off, coolant too.
                if result.is_ok() {
                    let _ = driver.command("M5", &mut on_event).await;
                    if tool != Tool::Laser {
                        let _ = driver.command("M9", &mut on_event).await;
                    }
                }
                let _ = reply.send(result);
            }
        }
    }
}

/// GRBL's reason for refusing a line, in French (the log's language, as the job notes).
fn refused(code: u8) -> String {
    format!(
        "error:{code} — {}",
        codes::message(CodeKind::Error, code, Lang::Fr)
    )
}

/// Sends `text` and waits for its reply.
async fn line(
    driver: &mut GrblDriver<tokio_serial::SerialStream>,
    text: &str,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Result<(), String>, GrblError> {
    Ok(match driver.command(text, on_event).await? {
        LineOutcome::Ok => Ok(()),
        LineOutcome::Error(code) => Err(refused(code)),
        LineOutcome::Unconfirmed => Err("sans réponse de la machine".into()),
    })
}

fn axis_letter(axis: Axis) -> char {
    match axis {
        Axis::X => 'X',
        Axis::Y => 'Y',
        Axis::Z => 'Z',
    }
}

/// Does one action; returns what was sent and GRBL's verdict.
async fn perform(
    driver: &mut GrblDriver<tokio_serial::SerialStream>,
    action: PanelAction,
    outline: Option<Program>,
    on_event: &mut dyn FnMut(&Event),
    printed: &RefCell<Vec<String>>,
) -> Result<(String, Result<(), String>), GrblError> {
    let byte = |driver: &mut GrblDriver<_>, r: Realtime| {
        driver.realtime(r);
        Ok((format!("0x{:02X}", r.byte()), Ok(())))
    };
    let lines = match action {
        PanelAction::Take | PanelAction::Release => return Ok((String::new(), Ok(()))),
        PanelAction::JogStop => return byte(driver, Realtime::JogCancel),
        PanelAction::Override(o) => return byte(driver, o.realtime()),
        PanelAction::Pause => return byte(driver, Realtime::FeedHold),
        PanelAction::Resume => return byte(driver, Realtime::CycleStart),
        PanelAction::Unlock => vec!["$X".to_string()],
        PanelAction::Home => vec!["$H".to_string()],
        PanelAction::Jog {
            axis,
            distance,
            feed,
        } => vec![format!(
            "$J=G91G21{}{distance:.3}F{feed:.0}",
            axis_letter(axis)
        )],
        PanelAction::JogHold {
            axis,
            positive,
            feed,
        } => {
            let distance = feed / 60.0 * JOG_PIECE_S * if positive { 1.0 } else { -1.0 };
            vec![format!(
                "$J=G91G21{}{distance:.3}F{feed:.0}",
                axis_letter(axis)
            )]
        }
        PanelAction::SetOrigin => vec!["G10L20P1X0Y0".to_string()],
        PanelAction::SetOriginZ => vec!["G10L20P1Z0".to_string()],
        PanelAction::GoToOrigin { feed } => vec![format!("$J=G90G21X0Y0F{feed:.0}")],
        PanelAction::Frame { feed, .. } => {
            let extent = outline.as_ref().map(Program::extent);
            let corners = extent.and_then(|e| {
                let (x0, _) = e.min[0]?;
                let (y0, _) = e.min[1]?;
                let (x1, _) = e.max[0]?;
                let (y1, _) = e.max[1]?;
                Some([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
            });
            let Some(corners) = corners else {
                return Ok((
                    String::new(),
                    Err("le fichier ne bouge pas : rien à cadrer".into()),
                ));
            };
            corners
                .iter()
                .map(|(x, y)| format!("$J=G90G21X{x:.3}Y{y:.3}F{feed:.0}"))
                .collect()
        }
        PanelAction::ProbeZ { depth, feed, plate } => {
            // In absolute coordinates, from where the head stands: a G91 on the probe's line
            // would stay GRBL's mode after a failed probe, which locks the machine.
            let session = driver.session();
            let work_z = session
                .status()
                .and_then(|s| s.mpos)
                .zip(session.work_offset())
                .map(|(m, o)| m[2] - o[2]);
            let Some(work_z) = work_z else {
                return Ok((
                    String::new(),
                    Err(
                        "position de la tête inconnue\u{a0}: attendez son état, puis recommencez"
                            .into(),
                    ),
                ));
            };
            let probe = format!("G38.2G90Z{:.3}F{feed:.0}", work_z - depth);
            let outcome = line(driver, &probe, on_event).await?;
            let touched = printed
                .borrow()
                .iter()
                .any(|l| l.starts_with("[PRB:") && l.ends_with(":1]"));
            if outcome.is_err() || !touched {
                let why = outcome.err().unwrap_or_else(|| {
                    format!("le palpeur n'a rien touché sur {depth:.1} mm\u{a0}: vérifiez la plaque et sa pince, puis déverrouillez")
                });
                return Ok((probe, Err(why)));
            }
            let mut sent = vec![probe];
            for text in [
                format!("G10L20P1Z{plate:.3}"),
                "$J=G91G21Z5F500".to_string(),
            ] {
                sent.push(text.clone());
                let outcome = line(driver, &text, on_event).await?;
                if outcome.is_err() {
                    return Ok((sent.join("\n"), outcome));
                }
            }
            return Ok((sent.join("\n"), Ok(())));
        }
        PanelAction::Console(text) => vec![text],
    };
    let mut sent = Vec::new();
    for text in &lines {
        sent.push(text.clone());
        let outcome = line(driver, text, on_event).await?;
        if outcome.is_err() {
            return Ok((sent.join("\n"), outcome));
        }
    }
    Ok((sent.join("\n"), Ok(())))
}
