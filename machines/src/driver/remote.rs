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
use crate::protocol::grbl::Lang;

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
    /// No answer: the server is down, or the network, or it did not answer in time.
    #[error("no answer: {0}")]
    Unreachable(String),
    /// The server answered that it cannot serve now (a 5xx such as Moonraker's 503 while
    /// Klipper is disconnected, or Klipper starting): like no answer, it is asked again.
    #[error("not ready: {0}")]
    NotReady(String),
    /// The server answered and refused the request (a 4xx), in its words.
    #[error("refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("job file: {0}")]
    File(#[from] std::io::Error),
}

impl RemoteError {
    /// Whether the server gave no usable answer (down, silent, not ready yet), rather than
    /// an answer: such a request may be tried again later.
    pub fn no_answer(&self) -> bool {
        matches!(self, RemoteError::Unreachable(_) | RemoteError::NotReady(_))
    }

    /// What happened, for a person, with `server` ("Moonraker") as the subject.
    pub fn message(&self, server: &str, lang: Lang) -> String {
        match (self, lang) {
            (RemoteError::Unreachable(e), Lang::Fr) => format!("{server} injoignable : {e}"),
            (RemoteError::Unreachable(e), Lang::En) => format!("{server} unreachable: {e}"),
            (RemoteError::NotReady(e), Lang::Fr) => {
                format!("{server} répond, mais l'imprimante n'est pas prête : {e}")
            }
            (RemoteError::NotReady(e), Lang::En) => {
                format!("{server} answers, but the printer is not ready: {e}")
            }
            (RemoteError::Refused { status, message }, Lang::Fr) => {
                format!("{server} a refusé ({status}) : {message}")
            }
            (RemoteError::Refused { status, message }, Lang::En) => {
                format!("{server} refused ({status}): {message}")
            }
            (RemoteError::Protocol(e), Lang::Fr) => {
                format!("réponse inattendue de {server} : {e}")
            }
            (RemoteError::Protocol(e), Lang::En) => format!("unexpected answer from {server}: {e}"),
            (RemoteError::File(e), Lang::Fr) => format!("fichier du travail illisible : {e}"),
            (RemoteError::File(e), Lang::En) => format!("the job's file cannot be read: {e}"),
        }
    }
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
    /// Whether the server says [`RemoteState::Complete`] when a print ends by itself
    /// (Moonraker's `complete`): then nothing else is taken as done. Otherwise (OctoPrint,
    /// back to "Operational") a print is done when the server is idle with its file read
    /// to the end.
    fn reports_complete(&self) -> bool {
        false
    }
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
    /// The server does not answer, or answers that its printer is not ready (the job is
    /// kept, the server asked again later): what happened, in words.
    Unreachable(String),
    /// The server refused a pause, resume or cancel, in its words: the print goes on as the
    /// server says.
    Refused(String),
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

/// Polls a print may stay printing or paused after the server took its cancel: then the
/// cancel did not happen (at the default 2 s, a minute).
const CANCEL_POLLS: u32 = 30;

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
    let server = printer.name();
    // Notes are stored in French, like the runtime's (docs/architecture.md, i18n).
    let words = |e: &RemoteError| e.message(server, Lang::Fr);
    if !reattach {
        // select!: a shutdown during the upload stops before anything prints.
        let uploaded = tokio::select! {
            () = cancel.cancelled() => return RemoteOutcome::Cancelled { by_server: false },
            uploaded = printer.upload(file, name) => uploaded,
        };
        match uploaded {
            Ok(()) => {}
            Err(e) if e.no_answer() => return RemoteOutcome::NotSent(words(&e)),
            Err(e @ RemoteError::File(_)) => return RemoteOutcome::Failed(words(&e)),
            Err(RemoteError::Refused { status, message }) => {
                return RemoteOutcome::Failed(format!(
                    "{server} a refusé le fichier ({status}) : {message}"
                ));
            }
            Err(e) => return RemoteOutcome::Failed(words(&e)),
        }
        match printer.start(name).await {
            Ok(()) => {}
            // The start may have reached the server before the link went: the follow loop
            // finds out from the server, once it answers.
            Err(e @ RemoteError::Unreachable(_)) => on_event(&RemoteEvent::Unreachable(words(&e))),
            // The server answered that its printer is not ready: nothing was started.
            Err(e @ RemoteError::NotReady(_)) => return RemoteOutcome::NotSent(words(&e)),
            Err(RemoteError::Refused { status, message }) => {
                return RemoteOutcome::Failed(format!(
                    "{server} a refusé de lancer l'impression ({status}) : {message}"
                ));
            }
            Err(e) => {
                return RemoteOutcome::Failed(format!(
                    "{server} n'a pas pu lancer l'impression : {}",
                    words(&e)
                ));
            }
        }
    }
    let mut seen_printing = reattach;
    let mut delay = opts.poll;
    // Answered polls since the server took our cancel, while it still prints.
    let mut cancelling: Option<u32> = None;
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
                // Taken is not done: the cancel is confirmed by the state the server reports.
                (Control::Cancel, Ok(())) => cancelling = cancelling.or(Some(0)),
                (Control::Cancel, Err(e)) if e.no_answer() => {
                    return RemoteOutcome::Interrupted(format!(
                        "annulé alors que {server} ne répondait pas ({}) : vérifier l'imprimante",
                        words(&e)
                    ));
                }
                // An answer: the server refused, the print goes on as it says.
                (control, Err(RemoteError::Refused { status, message })) => {
                    let what = match control {
                        Control::Pause => "la pause",
                        Control::Resume => "la reprise",
                        _ => "l'annulation",
                    };
                    on_event(&RemoteEvent::Refused(format!(
                        "{server} a refusé {what} ({status}) : {message}"
                    )));
                }
                (_, Err(e)) => on_event(&RemoteEvent::Unreachable(words(&e))),
            }
            continue;
        }
        let status = match printer.status().await {
            Ok(status) => status,
            Err(e) => {
                on_event(&RemoteEvent::Unreachable(words(&e)));
                delay = (delay * 2).min(opts.max_backoff);
                continue;
            }
        };
        delay = opts.poll;
        let ours = status.file.as_deref() == Some(name);
        on_event(&RemoteEvent::Status(status.clone()));
        match &status.state {
            RemoteState::Printing | RemoteState::Paused | RemoteState::Changing => {
                if ours && status.state != RemoteState::Changing {
                    seen_printing = true;
                }
                if let Some(polls) = cancelling.as_mut() {
                    *polls += 1;
                    if *polls > CANCEL_POLLS {
                        return RemoteOutcome::Failed(format!(
                            "{server} a accepté l'annulation, mais l'imprimante imprime encore : vérifier l'imprimante"
                        ));
                    }
                }
            }
            RemoteState::Error(why) => {
                return RemoteOutcome::Failed(format!("{server} : {why}"));
            }
            RemoteState::PrinterOffline(why) if seen_printing => {
                return RemoteOutcome::Interrupted(format!(
                    "l'imprimante s'est déconnectée de {server} ({why})"
                ));
            }
            RemoteState::PrinterOffline(_) => {}
            // The server is idle: how did our print end?
            RemoteState::Ready | RemoteState::Complete | RemoteState::Cancelled => {
                let at_end = ours
                    && (status.state == RemoteState::Complete
                        || (!printer.reports_complete()
                            && status.state == RemoteState::Ready
                            && status.progress.is_some_and(|p| p >= 0.999)));
                if at_end {
                    // Even when a cancel was asked: the print ended first.
                    return RemoteOutcome::Done;
                } else if cancelling.is_some() {
                    return RemoteOutcome::Cancelled { by_server: false };
                } else if seen_printing && ours {
                    return RemoteOutcome::Cancelled { by_server: true };
                } else if seen_printing {
                    return RemoteOutcome::Interrupted(format!(
                        "{server} ne connaît plus ce travail (redémarré ?)"
                    ));
                }
                // Not started yet: the server may take a moment to report the new print.
                idle_polls += 1;
                if idle_polls > opts.start_polls {
                    return RemoteOutcome::Failed(format!("{server} n'a pas démarré l'impression"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_says_whether_the_server_answered_in_french_and_in_english() {
        let silent = RemoteError::Unreachable("connection refused".into());
        let starting = RemoteError::NotReady("503 Klippy Host not connected".into());
        let refused = RemoteError::Refused {
            status: 400,
            message: "SD busy".into(),
        };
        assert!(silent.no_answer() && starting.no_answer() && !refused.no_answer());
        assert_eq!(
            silent.message("Moonraker", Lang::Fr),
            "Moonraker injoignable : connection refused"
        );
        assert_eq!(
            silent.message("Moonraker", Lang::En),
            "Moonraker unreachable: connection refused"
        );
        assert_eq!(
            starting.message("Moonraker", Lang::En),
            "Moonraker answers, but the printer is not ready: 503 Klippy Host not connected"
        );
        assert_eq!(
            refused.message("Moonraker", Lang::Fr),
            "Moonraker a refusé (400) : SD busy"
        );
        assert_eq!(
            refused.message("Moonraker", Lang::En),
            "Moonraker refused (400): SD busy"
        );
    }
}
