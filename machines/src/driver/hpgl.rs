//! Streams an HP-GL file to a vinyl cutter over any byte stream (a serial port, a
//! pseudo-terminal, an in-memory pipe), running the [`Sender`] protocol core.
//!
//! The file is read a few chunks ahead of the wire, never whole. One `select!` waits for
//! whichever comes first: a cancel, a control request, the cutter's bytes (XON/XOFF, the
//! end answer), the next write, or the next deadline of the protocol (a hold or the end
//! answer taking too long) or of the write itself (a port held by RTS/CTS that never lets
//! go). Every bad end sends the safe stop (`ESC.K`, `PU;`) before returning.
//!
//! # Layout
//!
//! - [`stream_file`]: a whole job.
//! - [`Control`], [`Progress`], [`JobReport`].
//! - [`HpglError`]: what can go wrong, each with a message in French and English.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::protocol::hpgl::{Config, Event, FailReason, Lang, State};
use crate::protocol::hpgl::{SAFE_STOP, Sender};

/// A request while a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop sending; the cutter finishes what it holds.
    Pause,
    Resume,
    /// Stop the job: the cutter drops what it holds and lifts the blade.
    Cancel,
}

/// How far a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the file written.
    pub written: u64,
    /// Bytes in the file.
    pub total: u64,
    /// Whether the cutter holds the flow (XOFF).
    pub held: bool,
}

/// How a job went.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    /// Bytes of the file written.
    pub bytes: u64,
    pub elapsed: Duration,
    /// Times the cutter held the flow (XOFF).
    pub holds: u32,
    /// Unexpected bytes the cutter sent (tolerated).
    pub garbage: usize,
    /// Where the blade ended, plotter units, when the cutter answered the end question.
    pub end_position: Option<(i64, i64)>,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum HpglError {
    /// Reading the file or the link failed.
    #[error("the link to the cutter failed: {0}")]
    Io(#[from] std::io::Error),
    /// The cutter closed the link.
    #[error("the link to the cutter closed")]
    LinkClosed,
    /// A write did not go through in time (hardware flow control held, or a dead port).
    #[error("the cutter takes no more bytes")]
    WriteStalled,
    /// The protocol gave up.
    #[error("the job failed: {0:?}")]
    JobFailed(FailReason),
    /// Cancelled by a person or by shutdown; the safe stop was sent.
    #[error("the job was cancelled")]
    Cancelled,
}

impl HpglError {
    /// What happened and what to do, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (HpglError::JobFailed(r), _) => r.message(lang),
            (HpglError::Io(_) | HpglError::LinkClosed, Lang::Fr) => "La liaison avec le plotter de découpe est coupée. Vérifiez le câble USB ou série, puis relancez la découpe.".into(),
            (HpglError::Io(_) | HpglError::LinkClosed, Lang::En) => "The link to the cutter is cut. Check the USB or serial cable, then start the cut again.".into(),
            (HpglError::WriteStalled, Lang::Fr) => "Le plotter de découpe n'accepte plus de données. Vérifiez qu'il est en ligne (« online »), que le contrôle de flux réglé correspond au sien, et le câble.".into(),
            (HpglError::WriteStalled, Lang::En) => "The cutter takes no more data. Check it is online, that the flow control set here matches its own, and the cable.".into(),
            (HpglError::Cancelled, Lang::Fr) => "Découpe annulée : la lame a été relevée.".into(),
            (HpglError::Cancelled, Lang::En) => "Cut cancelled: the blade was lifted.".into(),
        }
    }
}

/// Longest the safe stop may take to write.
const SAFE_STOP_TIMEOUT: Duration = Duration::from_secs(2);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn next_control(controls: &mut Option<&mut mpsc::Receiver<Control>>) -> Control {
    match controls {
        Some(rx) => match rx.recv().await {
            Some(c) => c,
            // The sender is gone: no more requests, ever.
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Sends the HP-GL read from `file` (`total` bytes, for progress) to the cutter on `io`,
/// and waits for the end (see [`crate::protocol::hpgl`]). `cancel` and
/// [`Control::Cancel`] stop it with the blade up.
pub async fn stream_file<S, F>(
    io: S,
    mut file: F,
    total: u64,
    config: &Config,
    mut controls: Option<&mut mpsc::Receiver<Control>>,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
    cancel: &CancellationToken,
) -> Result<JobReport, HpglError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: AsyncRead + Unpin,
{
    let started = now();
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut sender = Sender::new(config.clone());
    let mut file_buf = vec![0u8; config.chunk_bytes.max(1) * 4];
    let mut read_buf = [0u8; 256];
    let mut eof = false;
    // The chunk being written, how much of it went out, and since when the write waits.
    let mut pending: Vec<u8> = Vec::new();
    let mut off = 0;
    let mut waiting_since = started;
    let mut report = JobReport {
        bytes: 0,
        elapsed: Duration::ZERO,
        holds: 0,
        garbage: 0,
        end_position: None,
    };

    loop {
        while !eof && sender.wants() > 0 {
            let want = sender.wants().min(file_buf.len());
            let n = file.read(&mut file_buf[..want]).await?;
            if n == 0 {
                eof = true;
                sender.end_of_input();
            } else {
                sender.feed(&file_buf[..n]);
            }
        }
        if pending.is_empty()
            && let Some(chunk) = sender.next_chunk(now())
        {
            pending = chunk;
            off = 0;
            waiting_since = now();
        }
        for e in sender.take_events() {
            match e {
                Event::Held => report.holds += 1,
                Event::Garbage(n) => report.garbage += n,
                Event::Finished { x, y } => report.end_position = Some((x, y)),
                Event::Resumed | Event::Failed(_) => {}
            }
        }
        match sender.state() {
            State::Done if pending.is_empty() => {
                wr.flush().await?;
                report.bytes = sender.written();
                report.elapsed = now().saturating_duration_since(started);
                return Ok(report);
            }
            State::Failed(reason) => {
                safe_stop(&mut wr).await;
                return Err(HpglError::JobFailed(reason));
            }
            _ => {}
        }

        let can_write = !pending.is_empty() && !sender.is_held();
        let mut deadline = sender.deadline();
        if can_write {
            let stall = waiting_since + config.silence;
            deadline = Some(deadline.map_or(stall, |d| d.min(stall)));
        }
        let sleep_to = deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        tokio::select! {
            // Reads first: an XOFF already waiting must stop the next write.
            biased;
            // Shutdown or a job cancelled from outside: the blade up, then out.
            () = cancel.cancelled() => {
                sender.cancel();
                safe_stop(&mut wr).await;
                return Err(HpglError::Cancelled);
            }
            // The cutter's bytes: flow control, the end answer, or noise.
            r = rd.read(&mut read_buf) => match r {
                Ok(0) => return Err(HpglError::LinkClosed),
                Ok(n) => sender.receive(&read_buf[..n], now()),
                Err(e) => return Err(HpglError::Io(e)),
            },
            // A person's request.
            c = next_control(&mut controls) => match c {
                Control::Pause => sender.pause(true),
                Control::Resume => sender.pause(false),
                Control::Cancel => {
                    sender.cancel();
                    safe_stop(&mut wr).await;
                    return Err(HpglError::Cancelled);
                }
            },
            // The next bytes; `write` is cancel-safe, so a read winning the race loses
            // nothing: what was written is counted, the rest waits.
            w = wr.write(&pending[off..]), if can_write => match w {
                Ok(0) => return Err(HpglError::LinkClosed),
                Ok(n) => {
                    off += n;
                    waiting_since = now();
                    sender.wrote(n, now());
                    if off >= pending.len() {
                        pending.clear();
                        off = 0;
                    }
                    on_progress(&Progress {
                        written: sender.written(),
                        total,
                        held: sender.is_held(),
                    });
                }
                Err(e) => return Err(HpglError::Io(e)),
            },
            // A hold, the end answer or a write that takes too long.
            () = tokio::time::sleep_until(sleep_to) => {
                let t = now();
                sender.tick(t);
                if can_write && t.saturating_duration_since(waiting_since) >= config.silence {
                    sender.cancel();
                    safe_stop(&mut wr).await;
                    return Err(HpglError::WriteStalled);
                }
            }
        }
    }
}

/// Best effort: drop the cutter's buffer and lift the blade, within a short time.
async fn safe_stop<W: AsyncWrite + Unpin>(wr: &mut W) {
    let write = async {
        wr.write_all(SAFE_STOP).await?;
        wr.flush().await
    };
    match tokio::time::timeout(SAFE_STOP_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not send the safe stop to the cutter"),
        Err(_) => tracing::warn!("the safe stop to the cutter did not go out in time"),
    }
}

/// Opens a cutter's serial port with `options`, then streams `path` to it.
pub async fn stream_file_to_port(
    options: &crate::transport::SerialOptions,
    path: &std::path::Path,
    config: &Config,
    controls: Option<&mut mpsc::Receiver<Control>>,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
    cancel: &CancellationToken,
) -> Result<JobReport, HpglError> {
    let io = crate::transport::open_serial(options)?;
    let file = tokio::fs::File::open(path).await?;
    let total = file.metadata().await?.len();
    stream_file(io, file, total, config, controls, on_progress, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hpgl::{XOFF, XON};

    #[tokio::test(start_paused = true)]
    async fn a_job_over_a_pipe_ends_on_the_cutters_answer() {
        let (host, mut cutter) = tokio::io::duplex(4096);
        let job = b"IN;PU0,0;PD400,0;PU;".to_vec();
        let total = job.len() as u64;
        let cancel = CancellationToken::new();
        let cutter_side = async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"OA;") {
                let n = cutter.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if got.len() > 4 && got.len() < 10 {
                    // Hold the flow a moment.
                    cutter.write_all(&[XOFF]).await.unwrap();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    cutter.write_all(&[XON]).await.unwrap();
                }
            }
            cutter.write_all(b"400,0,0\r").await.unwrap();
            got
        };
        let config = Config {
            chunk_bytes: 8,
            pace_baud: Some(9600),
            ..Config::default()
        };
        let mut progress = Vec::new();
        let mut on_progress = |p: &Progress| progress.push(*p);
        let host_side = stream_file(
            host,
            &job[..],
            total,
            &config,
            None,
            &mut on_progress,
            &cancel,
        );
        let (report, got) = tokio::join!(host_side, cutter_side);
        let report = report.unwrap();
        assert_eq!(got, b"IN;PU0,0;PD400,0;PU;OA;");
        assert_eq!(report.bytes, total);
        assert_eq!(report.end_position, Some((400, 0)));
        assert_eq!(progress.last().unwrap().written, total);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cutter_that_never_answers_fails_with_a_message_and_the_blade_up() {
        let (host, mut cutter) = tokio::io::duplex(4096);
        let cancel = CancellationToken::new();
        let config = Config {
            end_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        let e = stream_file(host, &b"PD1,1;"[..], 6, &config, None, &mut |_| {}, &cancel)
            .await
            .unwrap_err();
        assert!(matches!(e, HpglError::JobFailed(FailReason::Silent)));
        assert!(e.message(Lang::Fr).contains("ne répond plus"));
        let mut got = vec![0u8; 64];
        let n = cutter.read(&mut got).await.unwrap();
        assert!(got[..n].ends_with(b"\x1b.KPU;"));
    }
}
