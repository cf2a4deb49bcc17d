//! `fabrique stream` for GRBL lasers: dry run in check mode, then a cut that starts only when
//! the person at the terminal confirms they stand at the machine.
//!
//! The logic lives in `fabrique_machines::driver::grbl`; this file only reads arguments,
//! opens the port, asks for the confirmation and prints progress.
//!
//! A laser cut counts as started by a person at the machine only when this command is
//! interactive and the person answers the prompt, or passes `--i-am-at-the-machine` (their
//! own statement, for terminals where no prompt can be answered). Nothing else here builds a
//! `PersonAtMachine`.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use fabrique_machines::driver::grbl::{
    Config, Control, Event, GrblDriver, GrblError, Lang, LineOutcome, PersonAtMachine, Program,
    StreamMode, WorkArea, probe,
};
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt as _;

/// Options of `fabrique stream` for a GRBL machine.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serial port of the machine (`/dev/ttyUSB0`, or the path given to
    /// `fabrique sim grbl --link`).
    #[arg(long)]
    pub port: String,
    /// Link speed.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// The G-code file.
    pub file: PathBuf,
    /// Work area of the machine, WIDTHxHEIGHT in mm, origin at the lower-left corner.
    #[arg(long, default_value = "400x300", value_parser = parse_area)]
    pub area: (f64, f64),
    /// Only check the file in check mode (`$C`); nothing moves or fires.
    #[arg(long)]
    pub dry_run: bool,
    /// Cut without the check-mode pass first.
    #[arg(long)]
    pub no_dry_run: bool,
    /// State that you stand at the machine, when no prompt can be answered.
    #[arg(long)]
    pub i_am_at_the_machine: bool,
    /// GRBL's receive buffer in bytes.
    #[arg(long, default_value_t = 128)]
    pub rx_buffer: usize,
    /// Send each line only after the previous reply (slow; for comparison).
    #[arg(long)]
    pub send_and_wait: bool,
    /// Language of messages: `fr` or `en`.
    #[arg(long, default_value = "fr", value_parser = parse_lang)]
    pub lang: Lang,
}

fn parse_area(s: &str) -> Result<(f64, f64), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, got {s}"))?;
    let w: f64 = w.trim().parse().map_err(|_| format!("bad width in {s}"))?;
    let h: f64 = h.trim().parse().map_err(|_| format!("bad height in {s}"))?;
    if w <= 0.0 || h <= 0.0 {
        return Err(format!("the area must be positive, got {s}"));
    }
    Ok((w, h))
}

fn parse_lang(s: &str) -> Result<Lang, String> {
    match s {
        "fr" => Ok(Lang::Fr),
        "en" => Ok(Lang::En),
        _ => Err(format!("unknown language {s}: fr or en")),
    }
}

fn say(lang: Lang, fr: &str, en: &str) {
    eprintln!("{}", if lang == Lang::Fr { fr } else { en });
}

fn open(port: &str, baud: u32) -> anyhow::Result<tokio_serial::SerialStream> {
    tokio_serial::new(port, baud)
        .open_native_async()
        .with_context(|| format!("cannot open {port}"))
}

/// Whether the machine on `port` answers a soft reset with a GRBL banner; `fabrique stream`
/// calls this to pick the GRBL path when `--grbl` is not given.
pub async fn detect(port: &str, baud: u32) -> anyhow::Result<bool> {
    let mut io = open(port, baud)?;
    Ok(probe(&mut io, Duration::from_secs(3)).await?.is_some())
}

/// Prints what a person needs: progress every 5 %, alarms, messages, the reason of a stop.
fn printer(lang: Lang, total: usize) -> impl FnMut(&Event) {
    let mut done = 0usize;
    let mut shown = 0usize;
    move |e: &Event| match e {
        Event::Connected(v) => say(
            lang,
            &format!("GRBL {v} connecté."),
            &format!("GRBL {v} connected."),
        ),
        Event::Line { outcome, .. } => {
            if *outcome != LineOutcome::Unconfirmed {
                done += 1;
            }
            let pct = done * 100 / total.max(1);
            if pct >= shown + 5 {
                shown = pct - pct % 5;
                eprint!("\r{pct:3} % ({done}/{total})");
                let _ = std::io::stderr().flush();
            }
        }
        Event::Alarm(n) => say(lang, &format!("\nAlarme {n}"), &format!("\nAlarm {n}")),
        Event::Message(m) => eprintln!("\n[{m}]"),
        Event::UnexpectedReset => say(
            lang,
            "\nLa machine a redémarré.",
            "\nThe machine restarted.",
        ),
        _ => {}
    }
}

// The interactive start path: the one place the CLI vouches for a person at the machine.
#[allow(clippy::disallowed_methods)]
async fn confirm(args: &Args) -> anyhow::Result<Option<PersonAtMachine>> {
    let now = || tokio::time::Instant::now().into_std();
    if args.i_am_at_the_machine {
        return Ok(Some(PersonAtMachine::confirmed_at_the_machine(
            "cli --i-am-at-the-machine",
            now(),
        )));
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        say(
            args.lang,
            "Un laser ne démarre que sur confirmation d'une personne devant la machine : lancez la commande dans un terminal, ou ajoutez --i-am-at-the-machine si vous y êtes.",
            "A laser only starts when a person at the machine confirms: run this in a terminal, or add --i-am-at-the-machine if you are there.",
        );
        return Ok(None);
    }
    say(
        args.lang,
        "Êtes-vous devant la machine, capot fermé, lunettes à portée, extraction en marche ? Tapez « oui » pour lancer la découpe :",
        "Are you at the machine, lid closed, goggles at hand, extraction running? Type \"yes\" to start cutting:",
    );
    let answer = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map(|_| s)
    })
    .await??;
    let answer = answer.trim().to_lowercase();
    if answer == "oui" || answer == "yes" {
        let who = std::env::var("USER").unwrap_or_else(|_| "cli".into());
        Ok(Some(PersonAtMachine::confirmed_at_the_machine(who, now())))
    } else {
        Ok(None)
    }
}

fn failed(lang: Lang, e: &GrblError) -> ExitCode {
    eprintln!();
    say(lang, "Arrêt :", "Stopped:");
    eprintln!("{}", e.message(lang));
    ExitCode::FAILURE
}

/// Runs `fabrique stream` against a GRBL machine.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let lang = args.lang;
    let source = tokio::fs::read_to_string(&args.file)
        .await
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let program = match Program::parse(&source, args.rx_buffer) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", e.message(lang));
            return Ok(ExitCode::FAILURE);
        }
    };
    let total = program.lines().len();
    let config = Config {
        rx_buffer: args.rx_buffer,
        mode: if args.send_and_wait {
            StreamMode::SendResponse
        } else {
            StreamMode::CharCounting
        },
        ..Config::default()
    };
    let io = open(&args.port, args.baud)?;
    let mut print = printer(lang, total);
    let mut driver = match GrblDriver::connect(io, config, &mut print).await {
        Ok(d) => d,
        Err(e) => return Ok(failed(lang, &e)),
    };
    if args.dry_run || !args.no_dry_run {
        say(
            lang,
            "Vérification du fichier en mode test ($C)…",
            "Checking the file in check mode ($C)…",
        );
        let mut print = printer(lang, total);
        let summary = match driver.dry_run(program.clone(), &mut print).await {
            Ok(s) => s,
            Err(e) => return Ok(failed(lang, &e)),
        };
        eprintln!();
        for e in &summary.errors {
            eprintln!("{}", e.message(lang));
        }
        if !summary.errors.is_empty() {
            say(
                lang,
                "Le fichier contient des erreurs : rien n'a été découpé.",
                "The file has errors: nothing was cut.",
            );
            return Ok(ExitCode::FAILURE);
        }
        say(
            lang,
            "Fichier vérifié : aucune erreur.",
            "File checked: no errors.",
        );
        if args.dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        if let Err(e) = driver.wait_ready(&mut |_| {}).await {
            return Ok(failed(lang, &e));
        }
    }
    let Some(person) = confirm(&args).await? else {
        say(lang, "Découpe non lancée.", "Cut not started.");
        return Ok(ExitCode::FAILURE);
    };
    // Ctrl-C cancels: hold, then soft reset, laser off.
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(Control::Cancel).await;
        }
    });
    let area = WorkArea {
        width: args.area.0,
        height: args.area.1,
    };
    let mut print = printer(lang, total);
    match driver
        .cut(program, area, person, Some(&mut rx), &mut print)
        .await
    {
        Ok(report) => {
            eprintln!();
            say(
                lang,
                &format!(
                    "Découpe terminée : {} lignes en {:.0} s.",
                    report.summary.lines,
                    report.elapsed.as_secs_f64()
                ),
                &format!(
                    "Cut finished: {} lines in {:.0} s.",
                    report.summary.lines,
                    report.elapsed.as_secs_f64()
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(failed(lang, &e)),
    }
}
