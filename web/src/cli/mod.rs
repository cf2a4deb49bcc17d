//! The machine commands of `fabrique`: `stream` (Marlin printers and GRBL lasers) and `sim`
//! (virtual machines on a pseudo-terminal). The logic lives in `fabrique-machines`; these
//! files read arguments and print progress.

pub mod analyze;
pub mod grbl;
pub mod sim;
pub mod sim_grbl;
pub mod stream;

use std::process::ExitCode;

/// `fabrique stream`: GRBL's options (the GRBL path takes them all), plus the Marlin ones.
#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub common: grbl::Args,
    /// The machine runs GRBL (a laser or a mill). Without it, GRBL is recognised by its
    /// start-up banner, and anything else is driven as a Marlin printer.
    #[arg(long)]
    pub grbl: bool,
    /// Marlin: lines in flight the printer's buffers allow (default 1, or what ADVANCED_OK
    /// reports).
    #[arg(long)]
    pub window: Option<usize>,
}

pub async fn stream(args: StreamArgs) -> anyhow::Result<ExitCode> {
    let StreamArgs {
        common,
        grbl,
        window,
    } = args;
    if grbl
        || grbl::detect(&common.port, common.baud)
            .await
            .unwrap_or(false)
    {
        return grbl::run(common).await;
    }
    stream::run(stream::Args {
        port: common.port,
        baud: common.baud,
        window,
        rx_buffer: common.rx_buffer,
        file: common.file,
    })
    .await
}
