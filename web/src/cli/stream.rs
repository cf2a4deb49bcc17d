//! `fabrique stream --port PATH [--baud 115200] FILE`: stream a G-code file to a Marlin
//! printer on a serial port.
//!
//! A progress bar (percent, lines/s, time left) when stderr is a terminal, plain progress
//! lines every few seconds otherwise. Ctrl-C cancels safely: feeding stops, then heaters,
//! fan and motors go off. The exit code is 0 only when every line was acknowledged.
//!
//! The logic lives in `fabrique_machines::driver::marlin::stream_file_to_port`; this file is
//! only the command-line glue.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fabrique_machines::driver::marlin::{self, Progress, StreamOptions};
use fabrique_machines::protocol::marlin::MarlinConfig;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serial port of the printer (e.g. /dev/ttyUSB0, or the --link of `fabrique sim marlin`).
    #[arg(long)]
    pub port: String,
    /// Baud rate of the port.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Lines in flight the printer's buffers allow; default 1, or what ADVANCED_OK reports.
    #[arg(long)]
    pub window: Option<usize>,
    /// The printer's receive buffer in bytes (never more unacknowledged bytes than this).
    #[arg(long, default_value_t = 128)]
    pub rx_buffer: usize,
    /// The G-code file to print.
    pub file: PathBuf,
}

/// Exit codes: 0 done, 1 the job did not complete (failed, cancelled, interrupted), 2 the
/// job could not start.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nCancelling: feeding stops, then heaters, fan and motors off...");
            on_ctrl_c.cancel();
        }
    });

    let opts = StreamOptions {
        protocol: MarlinConfig {
            window_lines: args.window,
            rx_buffer: args.rx_buffer,
            ..MarlinConfig::default()
        },
        ..StreamOptions::default()
    };
    let terminal = std::io::stderr().is_terminal();
    let mut last_line = Instant::now() - Duration::from_secs(60);
    let progress = |p: &Progress| {
        if terminal {
            eprint!("\r{}", bar(p));
            let _ = std::io::stderr().flush();
        } else if last_line.elapsed() >= Duration::from_secs(5) || p.fraction() >= 1.0 {
            last_line = Instant::now();
            eprintln!("{}", summary(p));
        }
    };

    let result = marlin::stream_file_to_port(
        &args.port, args.baud, &args.file, &opts, None, progress, &cancel,
    )
    .await;
    if terminal {
        eprintln!();
    }
    match result {
        Ok(outcome) => {
            if outcome.is_done() {
                println!("{outcome}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("fabrique stream: {outcome}");
                Ok(ExitCode::from(1))
            }
        }
        Err(e) => {
            eprintln!("fabrique stream: the job did not start: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn summary(p: &Progress) -> String {
    let eta = p.remaining.map(clock).unwrap_or_else(|| "--:--:--".into());
    let temps = p
        .temperatures
        .as_ref()
        .and_then(|t| {
            t.tools
                .first()
                .map(|r| format!("  hotend {:.0} °C", r.actual))
        })
        .unwrap_or_default();
    format!(
        "{:5.1} %  line {}  {:.0} lines/s  elapsed {}  left {}{}{}",
        100.0 * p.fraction(),
        p.stats.last_acked_line,
        p.lines_per_second,
        clock(p.stats.elapsed),
        eta,
        temps,
        if p.stats.resend_requests > 0 {
            format!("  resends {}", p.stats.resend_requests)
        } else {
            String::new()
        }
    )
}

fn bar(p: &Progress) -> String {
    const WIDTH: usize = 30;
    let filled = ((p.fraction() * WIDTH as f64) as usize).min(WIDTH);
    format!(
        "[{}{}] {}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        summary(p)
    )
}
