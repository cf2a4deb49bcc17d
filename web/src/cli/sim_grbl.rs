//! `fabrique sim grbl --link PATH [options]`: a virtual GRBL laser on a pseudo-terminal, for
//! demos and for trying `fabrique stream` without a machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fabrique_machines::sim::grbl::{Faults, LinkConfig, Record, SimConfig, VirtualGrbl, serve_at};
use tokio_util::sync::CancellationToken;

/// Options of the virtual GRBL.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create the link (a symbolic link to the pseudo-terminal), e.g. /tmp/grbl.
    #[arg(long)]
    pub link: PathBuf,
    /// Pace the link at this baud rate (bytes take 10 bits); 0 for unlimited.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Delay before replies reach the host, in ms (USB-serial adapter latency).
    #[arg(long, default_value_t = 1)]
    pub latency_ms: u64,
    /// Move durations are multiplied by this: 1 is real time, 0 instant.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Receive buffer in bytes.
    #[arg(long, default_value_t = 128)]
    pub rx_buffer: usize,
    /// Planner blocks.
    #[arg(long, default_value_t = 15)]
    pub planner_blocks: usize,
    /// Setting overrides, `N=V` (e.g. `--set 32=0 --set 30=255`); may repeat.
    #[arg(long = "set", value_parser = parse_setting)]
    pub settings: Vec<(u16, f64)>,
    /// Start locked in alarm, as a machine with homing enabled does.
    #[arg(long)]
    pub start_locked: bool,
    /// Behave as GRBL 0.9 (no laser mode, 0.9 status reports).
    #[arg(long)]
    pub grbl_0_9: bool,
    /// Answer `error:CODE` to the LINE-th line taken: `LINE:CODE`.
    #[arg(long, value_parser = parse_line_code)]
    pub error_on_line: Option<(u64, u8)>,
    /// Raise `ALARM:CODE` SECONDS after start: `SECONDS:CODE`.
    #[arg(long, value_parser = parse_alarm)]
    pub alarm_at: Option<(f64, u8)>,
    /// Close the link this many seconds after start.
    #[arg(long)]
    pub disconnect_at: Option<f64>,
    /// Close the link on taking this line.
    #[arg(long)]
    pub disconnect_on_line: Option<u64>,
    /// Restart by itself (as after a brown-out) on taking this line.
    #[arg(long)]
    pub reset_on_line: Option<u64>,
    /// Run this line but never answer it.
    #[arg(long)]
    pub drop_ok_on_line: Option<u64>,
    /// Freeze in Run on taking this line: nothing moves, nothing more is read.
    #[arg(long)]
    pub stall_on_line: Option<u64>,
    /// Go into Hold by itself on taking this line, as if its feed-hold button was pressed.
    #[arg(long)]
    pub hold_on_line: Option<u64>,
}

fn parse_setting(s: &str) -> Result<(u16, f64), String> {
    let s = s.trim_start_matches('$');
    let (n, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected N=V, got {s}"))?;
    Ok((
        n.parse()
            .map_err(|_| format!("bad setting number in {s}"))?,
        v.parse().map_err(|_| format!("bad value in {s}"))?,
    ))
}

fn parse_line_code(s: &str) -> Result<(u64, u8), String> {
    let (l, c) = s
        .split_once(':')
        .ok_or_else(|| format!("expected LINE:CODE, got {s}"))?;
    Ok((
        l.parse().map_err(|_| format!("bad line in {s}"))?,
        c.parse().map_err(|_| format!("bad code in {s}"))?,
    ))
}

fn parse_alarm(s: &str) -> Result<(f64, u8), String> {
    let (t, c) = s
        .split_once(':')
        .ok_or_else(|| format!("expected SECONDS:CODE, got {s}"))?;
    let t: f64 = t.parse().map_err(|_| format!("bad time in {s}"))?;
    if !(t >= 0.0 && t.is_finite()) {
        return Err(format!("bad time in {s}"));
    }
    Ok((t, c.parse().map_err(|_| format!("bad code in {s}"))?))
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

/// Builds the simulator's configuration from the options.
pub fn sim_config(args: &Args) -> (SimConfig, LinkConfig) {
    let faults = Faults {
        error_on_line: args.error_on_line,
        alarm_at: args.alarm_at.map(|(t, c)| (seconds(t), c)),
        disconnect_at: args.disconnect_at.map(seconds),
        disconnect_on_line: args.disconnect_on_line,
        reset_on_line: args.reset_on_line,
        drop_ok_on_line: args.drop_ok_on_line,
        stall_on_line: args.stall_on_line,
        hold_on_line: args.hold_on_line,
    };
    let banner = if args.grbl_0_9 {
        "Grbl 0.9j ['$' for help]"
    } else {
        "Grbl 1.1h ['$' for help]"
    };
    let sim = SimConfig {
        rx_buffer: args.rx_buffer.max(2),
        planner_blocks: args.planner_blocks.max(1),
        time_scale: args.time_scale.max(0.0),
        banner: banner.into(),
        settings: args.settings.clone(),
        start_locked: args.start_locked,
        faults,
        ..SimConfig::default()
    };
    let link = LinkConfig {
        baud: (args.baud > 0).then_some(args.baud),
        reply_latency: Duration::from_millis(args.latency_ms),
    };
    (sim, link)
}

/// Runs the virtual GRBL until Ctrl-C or a disconnect fault.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (sim, link) = sim_config(&args);
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
    }
    eprintln!(
        "virtual GRBL on {} ({} baud, time scale {}); Ctrl-C to stop",
        args.link.display(),
        args.baud,
        args.time_scale
    );
    let sim: VirtualGrbl = serve_at(&args.link, VirtualGrbl::new(sim), link, stop).await?;
    let lines = sim
        .records()
        .iter()
        .filter(|r| matches!(r, Record::Line(_)))
        .count();
    let alarms: Vec<_> = sim
        .records()
        .iter()
        .filter_map(|r| match r {
            Record::Alarm(n) => Some(*n),
            _ => None,
        })
        .collect();
    eprintln!(
        "stopped: {lines} lines taken, alarms {alarms:?}, laser {}",
        if sim.laser_on() { "ON" } else { "off" }
    );
    Ok(ExitCode::SUCCESS)
}
