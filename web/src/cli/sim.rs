//! `fabrique sim marlin --link PATH [fault options]`: a virtual Marlin printer on a
//! pseudo-terminal reachable at PATH, for demos, `fabrique stream` and manual tests.
//!
//! The printer lives in `fabrique_machines::sim::marlin`; this file is only the glue.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fabrique_machines::sim::marlin::{Faults, Silence, SimConfig, VirtualPrinter};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub machine: Machine,
}

#[derive(Debug, clap::Subcommand)]
pub enum Machine {
    /// A virtual Marlin 3D printer.
    Marlin(MarlinArgs),
    /// A virtual GRBL laser.
    Grbl(super::sim_grbl::Args),
}

#[derive(Debug, clap::Args)]
pub struct MarlinArgs {
    /// Where the pseudo-terminal appears (a symlink), e.g. /tmp/printer.
    #[arg(long)]
    pub link: PathBuf,
    /// Real seconds per machine second: 1 real time, 0.01 a hundred times faster, 0 instant.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Command queue entries (Marlin BUFSIZE).
    #[arg(long, default_value_t = 4)]
    pub bufsize: usize,
    /// Receive buffer in bytes (Marlin RX_BUFFER_SIZE).
    #[arg(long, default_value_t = 128)]
    pub rx_buffer: usize,
    /// Answer `ok N.. P.. B..` (Marlin ADVANCED_OK).
    #[arg(long)]
    pub advanced_ok: bool,
    /// Do not print `ok` after `Resend:` (older Marlin).
    #[arg(long)]
    pub no_ok_after_resend: bool,
    /// Read at this baud rate (10 bits per byte) instead of as fast as possible.
    #[arg(long)]
    pub baud: Option<u32>,
    /// Reject every Nth numbered line with a checksum error.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub checksum_error_every: Option<u64>,
    /// Drop every Nth `ok`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub drop_ok_every: Option<u64>,
    /// Send every Nth `ok` twice.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub double_ok_every: Option<u64>,
    /// Print a line of garbage bytes before every Nth `ok`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub garbage_every: Option<u64>,
    /// Go silent for SECONDS when line LINE arrives: `--silence LINE:SECONDS`.
    #[arg(long, value_parser = parse_silence)]
    pub silence: Option<Silence>,
    /// Drop the connection when line N arrives (a fresh pty is then linked at --link).
    #[arg(long)]
    pub disconnect_at_line: Option<u32>,
    /// Reset the board (print `start`, forget everything) when line N arrives.
    #[arg(long)]
    pub reset_at_line: Option<u32>,
    /// Thermal runaway this many seconds after start.
    #[arg(long)]
    pub thermal_runaway_after: Option<f64>,
}

fn parse_silence(s: &str) -> Result<Silence, String> {
    let (line, secs) = s
        .split_once(':')
        .ok_or_else(|| "expected LINE:SECONDS, e.g. 120:45".to_string())?;
    let at_line = line
        .parse()
        .map_err(|_| format!("{line:?} is not a line number"))?;
    let secs: f64 = secs
        .parse()
        .map_err(|_| format!("{secs:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err("the silence must last between 0 and 86400 seconds".into());
    }
    Ok(Silence {
        at_line,
        duration: Duration::from_secs_f64(secs),
    })
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.machine {
        Machine::Marlin(a) => run_marlin(a).await,
        Machine::Grbl(a) => super::sim_grbl::run(a).await,
    }
}

async fn run_marlin(a: MarlinArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1000.0).contains(&a.time_scale) {
        anyhow::bail!("--time-scale must be between 0 and 1000");
    }
    let runaway = match a.thermal_runaway_after {
        Some(s) if !(0.0..=1e7).contains(&s) => {
            anyhow::bail!("--thermal-runaway-after must be positive")
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let cfg = SimConfig {
        bufsize: a.bufsize.max(1),
        rx_buffer: a.rx_buffer.max(8),
        time_scale: a.time_scale,
        advanced_ok: a.advanced_ok,
        ok_after_resend: !a.no_ok_after_resend,
        baud: a.baud,
        faults: Faults {
            checksum_error_every: a.checksum_error_every,
            drop_ok_every: a.drop_ok_every,
            double_ok_every: a.double_ok_every,
            garbage_every: a.garbage_every,
            silence: a.silence,
            disconnect_at_line: a.disconnect_at_line,
            reset_at_line: a.reset_at_line,
            thermal_runaway_at: runaway,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let printer = VirtualPrinter::new(cfg);
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    eprintln!(
        "Virtual Marlin at {} (Ctrl-C to stop). Try: fabrique stream --port {} FILE",
        a.link.display(),
        a.link.display()
    );
    printer.run_at_path(&a.link, cancel).await?;
    let state = printer.state();
    eprintln!(
        "Stopped after {} commands; position X{:.2} Y{:.2} Z{:.2}",
        printer.executed().len(),
        state.position[0],
        state.position[1],
        state.position[2]
    );
    Ok(ExitCode::SUCCESS)
}
