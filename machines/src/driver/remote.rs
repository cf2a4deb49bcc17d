//! Printers behind a print server (OctoPrint, Moonraker): the server streams the file to the
//! printer; Fabrique uploads it, starts it, follows it and passes pause, resume, cancel and
//! emergency stop on.
//!
//! The print belongs to the server, not to this process: when Fabrique stops, the print goes
//! on and is followed again at the next start ([`run_job`] with `reattach`). When the server
//! cannot be reached, the job is not lost: the machine is reported offline and the server is
//! asked again with a growing delay, until it answers and tells how the print went.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::driver::marlin::Control;

/// What a print server says of its printer.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStatus {
    pub state: RemoteState,
    /// The file the server is printing, or printed last.
    pub file: Option<String>,
    /// 0 to 1.
    pub progress: Option<f64>,
    pub elapsed_s: Option<u64>,
    pub remaining_s: Option<u64>,
    /// (actual, target) in °C.
    pub hotend: Option<(f64, Option<f64>)>,
    pub bed: Option<(f64, Option<f64>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RemoteState {
    /// The printer is connected and prints nothing.
    Ready,
    /// Starting, printing, finishing.
    Printing,
    Paused,
    /// Pausing or cancelling: the server is on its way to another state.
    Changing,
    /// The last print ended by itself (Moonraker's `complete`).
    Complete,
    /// The last print was cancelled (Moonraker's `cancelled`).
    Cancelled,
    /// The printer is in error, in the server's words.
    Error(String),
    /// The server answers but its printer is not connected.
    PrinterOffline(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No answer: the server is down, or the network.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server refused the request (a wrong API key, a printer not ready).
    #[error("server refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("job file: {0}")]
    File(#[from] std::io::Error),
}

/// A print server's API, as the follow loop needs it.
pub trait RemotePrinter {
    /// "OctoPrint", "Moonraker": for messages.
    fn name(&self) -> &'static str;
    fn status(&self) -> impl Future<Output = Result<RemoteStatus, RemoteError>> + Send;
    /// Sends the job file under `name`, read as it is sent (never whole).
    fn upload(
        &self,
        file: &Path,
        name: &str,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
    fn start(&self, name: &str) -> impl Future<Output = Result<(), RemoteError>> + Send;
    fn pause(&self) -> impl Future<Output = Result<(), RemoteError>> + Send;
    fn resume(&self) -> impl Future<Output = Result<(), RemoteError>> + Send;
    fn cancel(&self) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Stops the printer at once (heaters and motors off, by the firmware's kill).
    fn emergency_stop(&self) -> impl Future<Output = Result<(), RemoteError>> + Send;
}

/// The name a job's file gets on the server: one per job, so that a restarted Fabrique
/// knows its print again.
pub fn remote_file_name(job: i64) -> String {
    format!("fabrique-job-{job}.gcode")
}

#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// How often the server is asked how the print goes.
    pub poll: Duration,
    /// The longest delay between two tries while the server does not answer.
    pub max_backoff: Duration,
    /// Polls an idle server may answer after the start before the print is said not to
    /// have started.
    pub start_polls: u32,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            start_polls: 10,
        }
    }
}

/// What the board is told while a remote job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteEvent {
    Status(RemoteStatus),
    /// The server does not answer (the job is kept, the server asked again later).
    Unreachable(String),
    Paused,
    Resumed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RemoteOutcome {
    Done,
    /// Cancelled from Fabrique, or on the server itself.
    Cancelled {
        by_server: bool,
    },
    EmergencyStop,
    /// The printer reported an error, or the print could not start.
    Failed(String),
    /// The print stopped while nobody could see it (the server restarted, the printer was
    /// disconnected): nobody knows how far it went.
    Interrupted(String),
    /// Fabrique is stopping; the print goes on and is followed again at the next start.
    Detached,
    /// The server could not be reached to send the file: nothing was printed, the job can
    /// wait for the machine to come back.
    NotSent(String),
}

/// A job for a print server.
#[derive(Debug, Clone, Copy)]
pub struct RemoteJob<'a> {
    pub file: &'a Path,
    /// Its name on the server ([`remote_file_name`]).
    pub name: &'a str,
    /// Already on the server and started (by a Fabrique that has since restarted).
    pub reattach: bool,
}

/// Uploads and starts the job (unless it is re-attached), then follows it to its end.
pub async fn run_job<P: RemotePrinter>(
    printer: &P,
    job: RemoteJob<'_>,
    opts: &RemoteOptions,
    mut controls: Option<&mut mpsc::Receiver<Control>>,
    mut on_event: impl FnMut(&RemoteEvent),
    cancel: &CancellationToken,
) -> RemoteOutcome {
    let RemoteJob {
        file,
        name,
        reattach,
    } = job;
    if !reattach {
        // select!: a shutdown during the upload stops before anything prints.
        let uploaded = tokio::select! {
            () = cancel.cancelled() => return RemoteOutcome::Cancelled { by_server: false },
            uploaded = printer.upload(file, name) => uploaded,
        };
        match uploaded {
            Ok(()) => {}
            Err(RemoteError::Unreachable(e)) => {
                return RemoteOutcome::NotSent(format!("{} injoignable : {e}", printer.name()));
            }
            Err(RemoteError::File(e)) => {
                return RemoteOutcome::Failed(format!("fichier du travail illisible : {e}"));
            }
            Err(e) => {
                return RemoteOutcome::Failed(format!(
                    "{} a refusé le fichier : {e}",
                    printer.name()
                ));
            }
        }
        match printer.start(name).await {
            Ok(()) => {}
            // The start may have reached the server before the link went: the follow loop
            // finds out from the server, once it answers.
            Err(RemoteError::Unreachable(e)) => on_event(&RemoteEvent::Unreachable(e)),
            Err(e) => {
                return RemoteOutcome::Failed(format!(
                    "{} n'a pas pu lancer l'impression : {e}",
                    printer.name()
                ));
            }
        }
    }
    let mut seen_printing = reattach;
    let mut delay = opts.poll;
    let mut wanted: Option<Control> = None;
    let mut idle_polls = 0u32;
    loop {
        // select!: a shutdown detaches (the print goes on); a control is passed on at once;
        // otherwise ask the server again after the delay.
        let control = tokio::select! {
            () = cancel.cancelled() => return RemoteOutcome::Detached,
            control = next_control(&mut controls) => control,
            () = tokio::time::sleep(delay) => None,
        };
        if let Some(control) = control {
            let sent = match control {
                Control::Pause => printer.pause().await,
                Control::Resume => printer.resume().await,
                Control::Cancel => printer.cancel().await,
                Control::EmergencyStop => printer.emergency_stop().await,
            };
            match (control, sent) {
                (Control::EmergencyStop, _) => {
                    // Whether the server took it or not, the job is over; a cancel follows so
                    // that a server that queued M112 behind moves stops feeding too.
                    let _ = printer.cancel().await;
                    return RemoteOutcome::EmergencyStop;
                }
                (Control::Pause, Ok(())) => on_event(&RemoteEvent::Paused),
                (Control::Resume, Ok(())) => on_event(&RemoteEvent::Resumed),
                (Control::Cancel, Ok(())) => wanted = Some(Control::Cancel),
                (Control::Cancel, Err(e)) => {
                    return RemoteOutcome::Interrupted(format!(
                        "annulé alors que {} ne répondait pas ({e}) : vérifier l'imprimante",
                        printer.name()
                    ));
                }
                (_, Err(e)) => on_event(&RemoteEvent::Unreachable(e.to_string())),
            }
            continue;
        }
        let status = match printer.status().await {
            Ok(status) => status,
            Err(e) => {
                on_event(&RemoteEvent::Unreachable(e.to_string()));
                delay = (delay * 2).min(opts.max_backoff);
                continue;
            }
        };
        delay = opts.poll;
        let ours = status.file.as_deref() == Some(name);
        on_event(&RemoteEvent::Status(status.clone()));
        match &status.state {
            RemoteState::Printing | RemoteState::Paused if ours => seen_printing = true,
            RemoteState::Printing | RemoteState::Paused | RemoteState::Changing => {}
            RemoteState::Error(why) => {
                return RemoteOutcome::Failed(format!("{} : {why}", printer.name()));
            }
            RemoteState::PrinterOffline(why) if seen_printing => {
                return RemoteOutcome::Interrupted(format!(
                    "l'imprimante s'est déconnectée de {} ({why})",
                    printer.name()
                ));
            }
            RemoteState::PrinterOffline(_) => {}
            // The server is idle: how did our print end?
            RemoteState::Ready | RemoteState::Complete | RemoteState::Cancelled => {
                let at_end = ours
                    && (status.state == RemoteState::Complete
                        || (status.state == RemoteState::Ready
                            && status.progress.is_some_and(|p| p >= 0.999)));
                if wanted.is_some() {
                    return RemoteOutcome::Cancelled { by_server: false };
                } else if at_end {
                    return RemoteOutcome::Done;
                } else if seen_printing && ours {
                    return RemoteOutcome::Cancelled { by_server: true };
                } else if seen_printing {
                    return RemoteOutcome::Interrupted(format!(
                        "{} ne connaît plus ce travail (redémarré ?)",
                        printer.name()
                    ));
                }
                // Not started yet: the server may take a moment to report the new print.
                idle_polls += 1;
                if idle_polls > opts.start_polls {
                    return RemoteOutcome::Failed(format!(
                        "{} n'a pas démarré l'impression",
                        printer.name()
                    ));
                }
            }
        }
    }
}

async fn next_control(controls: &mut Option<&mut mpsc::Receiver<Control>>) -> Option<Control> {
    match controls {
        Some(rx) => match rx.recv().await {
            Some(c) => Some(c),
            None => {
                *controls = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
