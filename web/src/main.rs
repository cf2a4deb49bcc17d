//! The `fabrique` command.

mod cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fabrique_controller::Lab;
use fabrique_controller::domain::fit;
use fabrique_controller::domain::{CredentialKind, Lang, NewUser, Role, Secret, Username};
use fabrique_controller::job_files;
use fabrique_controller::lab::now;
use fabrique_machines::files::FileSummary;
use fabrique_web::config::{Config, Layer};
use fabrique_web::i18n::{Catalog, Tr};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fabrique",
    version,
    about = "Fablab machine scheduler and maker-space controller"
)]
struct Cli {
    /// Settings file (default: ./fabrique.toml when it exists).
    #[arg(long, global = true, env = "FABRIQUE_CONFIG")]
    config: Option<PathBuf>,
    /// Folder for the SQLite database and job files (default ./fabrique-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Address and port to listen on (default 0.0.0.0:8080).
    #[arg(long, global = true)]
    listen: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the web server.
    Serve {
        /// Seeds a small demo lab and prints its accounts' passwords.
        #[arg(long)]
        demo: bool,
    },
    /// Brings the database schema up to date, then exits.
    Migrate,
    /// Makes a consistent copy of the lab (database, job files, keys) into a new folder,
    /// while the server runs. Without OUT, a dated folder in `backup_dir`.
    Backup { out: Option<PathBuf> },
    /// Puts a backup back: refuses one with a newer schema, and a database that holds data
    /// unless --force (the SQLite file replaced is kept aside).
    Restore {
        backup: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Manages accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// The keys that sign the lab's badges (keys/badge-signing.json in the data folder).
    #[command(subcommand)]
    BadgeKey(BadgeKeyCommand),
    /// Streams a G-code file to a Marlin printer or a GRBL laser on a serial port.
    Stream(cli::StreamArgs),
    /// Runs a virtual machine on a pseudo-terminal (`sim marlin`, `sim grbl`).
    Sim(cli::sim::Args),
    /// Reads a G-code file: size, filament, temperatures, slicer, and the checks against a
    /// machine of the lab (`--machine NAME`). Exits 1 when something needs checking.
    Analyze(cli::analyze::Args),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates an account; the password (or PIN with --pin) is read from standard input.
    Add {
        username: String,
        #[arg(long, default_value = "member")]
        role: String,
        #[arg(long)]
        password_stdin: bool,
        /// The secret read is a PIN of 6 digits or more (for members without e-mail).
        #[arg(long)]
        pin: bool,
        /// Name shown in the lab (default: the username).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Creates a personal API key for an account and prints it (shown only this once).
    ApiKey {
        username: String,
        #[arg(long, default_value = "CLI")]
        label: String,
    },
}

#[derive(Subcommand)]
enum BadgeKeyCommand {
    /// Lists the keys: the current one, which signs, and the retired ones, kept published
    /// so that the badges they signed keep verifying.
    List,
    /// Makes a new current key and retires the old one (its private half is erased). The
    /// running server signs with the new key from its next badge on.
    Rotate,
}

fn badge_key(command: BadgeKeyCommand, config: &Config) -> anyhow::Result<ExitCode> {
    use fabrique_controller::badge_keys::KeyRing;
    if let BadgeKeyCommand::Rotate = command {
        let kid = KeyRing::rotate(&config.data_dir, now())?;
        println!("Nouvelle clé / new key: {kid}");
    }
    let ring = KeyRing::load_or_create(&config.data_dir, now())?;
    for key in ring.keys() {
        let made = jiff::Timestamp::from_second(key.created_at).unwrap_or_default();
        match key.retired_at {
            None => println!("{}  faite le / made {made}  signe / signs", key.kid),
            Some(at) => println!(
                "{}  faite le / made {made}  retirée le / retired {}  vérifie seulement / verifies only",
                key.kid,
                jiff::Timestamp::from_second(at).unwrap_or_default()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let (path, explicit) = match &cli.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from("fabrique.toml"), false),
    };
    let file = Layer::from_file(&path, explicit)?;
    let env = Layer::from_env(std::env::vars())?;
    let flags = Layer {
        listen: cli.listen.clone(),
        data_dir: cli.data_dir.clone(),
        ..Layer::default()
    };
    let source = path.display().to_string();
    Ok(Config::build(&[
        (&source, file),
        ("FABRIQUE_* variables", env),
        ("command-line flags", flags),
    ])?)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fabrique: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command, config).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fabrique: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { demo } => serve(config, demo).await,
        Command::Stream(args) => cli::stream(args).await,
        Command::Sim(args) => cli::sim::run(args).await,
        Command::Analyze(args) => analyze(args, config).await,
        Command::BadgeKey(command) => badge_key(command, &config),
        Command::Migrate => {
            let store = fabrique_web::open_store(&config).await?;
            println!(
                "Base de données à jour / database up to date ({:?}).",
                store.backend()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { out } => {
            let store = fabrique_web::open_store(&config).await?;
            let out = out.unwrap_or_else(|| {
                let stamp = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S");
                config.backups_dir().join(format!("fabrique-{stamp}"))
            });
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let made = fabrique_controller::backup::make(
                &store,
                &config.database_url(),
                &config.data_dir,
                &out,
                now(),
            )
            .await;
            store.close().await;
            let manifest = made?;
            println!(
                "Sauvegarde faite / backup made: {} ({} fichiers / files, schéma / schema {})",
                out.display(),
                manifest.files,
                manifest.schema_version
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { backup, force } => {
            if config.database_url.is_none() {
                std::fs::create_dir_all(&config.data_dir)
                    .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
            }
            let manifest = fabrique_controller::backup::restore(
                &backup,
                &config.database_url(),
                &config.data_dir,
                force,
                now(),
            )
            .await?;
            println!(
                "Sauvegarde remise / backup restored: {} (faite le / made {})",
                backup.display(),
                jiff::Timestamp::from_second(manifest.made_at).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Add {
            username,
            role,
            password_stdin,
            pin,
            name,
        }) => {
            if !password_stdin {
                anyhow::bail!(
                    "give the password on standard input with --password-stdin (it never goes on the command line)"
                );
            }
            let role: Role = role.parse().map_err(|()| {
                anyhow::anyhow!("unknown role `{role}`: member, trainer, manager or admin")
            })?;
            let mut secret = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut secret)
                .context("reading the password from standard input")?;
            let secret = Secret::new(secret.trim_end_matches(['\r', '\n']));
            let kind = if pin {
                CredentialKind::Pin
            } else {
                CredentialKind::Password
            };
            let new = NewUser::parse(&username, &name, "", role, Lang::Fr, kind, secret)
                .map_err(|e| anyhow::anyhow!("{}: {}", e.field, explain(e.code)))?;
            let lab = Lab::new(fabrique_web::open_store(&config).await?)?;
            let user = lab
                .create_user_unchecked(&new, now())
                .await
                .map_err(|e| match e {
                    fabrique_controller::LabError::Conflict { .. } => {
                        anyhow::anyhow!("the username `{username}` is taken")
                    }
                    other => other.into(),
                })?;
            println!(
                "Compte créé / account created: {} ({})",
                user.username, user.role
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::ApiKey { username, label }) => {
            let lab = Lab::new(fabrique_web::open_store(&config).await?)?;
            let name =
                Username::parse(&username).map_err(|e| anyhow::anyhow!("{}", explain(e.code)))?;
            let user = lab
                .store()
                .user_by_username(&name)
                .await
                .map_err(|_| anyhow::anyhow!("no account `{username}`"))?;
            println!("{}", lab.create_api_key(&user, &label, now()).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn explain(code: &str) -> &'static str {
    match code {
        "username_length" => "a username has 3 to 32 characters",
        "username_chars" => "a username uses lowercase letters, digits, '.', '_' and '-'",
        "password_too_short" => "a password has at least 10 characters",
        "pin_length" => "a PIN has 6 to 12 digits",
        "pin_digits" => "a PIN has digits only",
        _ => "invalid value",
    }
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<ExitCode> {
    let store = fabrique_web::open_store(&config).await?;
    let lab = Lab::new(store)?.at_lab(&config.lab_name, now()).await?;
    let simulators = tokio_util::sync::CancellationToken::new();
    if demo {
        let accounts = fabrique_web::demo::seed(&lab).await?;
        fabrique_web::demo::start_machines(&lab, &config, simulators.clone()).await?;
        println!("Démo : comptes (mot de passe renouvelé à chaque démarrage) / demo accounts:");
        for (username, role, password) in accounts {
            println!("  {username:<8} {:<8} {password}", role.as_str());
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    println!("Fabrique écoute sur / listens on http://{address}");
    let state = fabrique_web::state(lab.clone(), config.clone()).await?;
    let runtime = state.runtime.clone();
    if demo {
        fabrique_web::demo::submit_sample_job(&lab, &config).await?;
        fabrique_web::demo::seed_campaign(&lab, &config).await?;
        runtime.wake();
    }
    let announcing = tokio_util::sync::CancellationToken::new();
    fabrique_web::announce::start(lab.clone(), &config, address.port(), announcing.clone());
    let backups = tokio_util::sync::CancellationToken::new();
    tokio::spawn(fabrique_web::backups::daily(
        lab.clone(),
        config.clone(),
        backups.clone(),
    ));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    fabrique_web::serve(listener, state, shutdown).await?;
    backups.cancel();
    announcing.cancel();
    // Every running job is cancelled through its driver, which leaves the machine safe.
    runtime.shutdown(std::time::Duration::from_secs(20)).await;
    simulators.cancel();
    lab.store().close().await;
    Ok(ExitCode::SUCCESS)
}

async fn analyze(args: cli::analyze::Args, config: Config) -> anyhow::Result<ExitCode> {
    let machine = match &args.machine {
        Some(name) => {
            let lab = Lab::new(fabrique_web::open_store(&config).await?)?;
            let machines = lab.machines().await?;
            let machine = machines
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(name))
                .cloned()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no machine named `{name}`; the lab has: {}",
                        machines
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            Some(machine)
        }
        None => None,
    };
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let en = args.lang == "en";
    let file = match job_files::read(&args.file, &name, machine.as_ref()) {
        Ok(file) => file,
        Err(why) => {
            let (fr, en_text) = why.message();
            eprintln!(
                "fabrique: {}: {}",
                args.file.display(),
                if en { en_text } else { fr }
            );
            return Ok(ExitCode::from(2));
        }
    };
    if let (Some(path), Some(svg)) = (&args.preview, &file.preview_svg) {
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // What the machine named would refuse, in the words of the fit rule.
    let tr = Tr::new(
        if en { Lang::En } else { Lang::Fr },
        std::sync::Arc::new(Catalog::embedded()?),
    );
    let misfits: Vec<(String, String)> = machine
        .iter()
        .flat_map(|m| fit::misfits(&file.summary, m))
        .map(|r| (r.code().to_string(), tr.refusal(&r)))
        .collect();
    let text = if args.json {
        let mut json = serde_json::to_value(&file.summary)?;
        if machine.is_some() {
            json["fit"] = misfits
                .iter()
                .map(|(code, message)| serde_json::json!({ "code": code, "message": message }))
                .collect();
        }
        serde_json::to_string_pretty(&json)? + "\n"
    } else {
        let mut text = match &file.summary {
            FileSummary::Gcode(s) => cli::analyze::summary(s, en),
            FileSummary::Embroidery(s) => cli::analyze::embroidery_summary(s, en),
            FileSummary::Hpgl(s) => cli::analyze::hpgl_summary(s, en),
        } + "\n";
        if let FileSummary::Gcode(s) = &file.summary {
            let colon = if en { ":" } else { "\u{a0}:" };
            text += &format!(
                "{}{colon} {}\n",
                tr.t("jobs.limits"),
                tr.limits_used(s.limits)
            );
        }
        if let Some(m) = &machine {
            text += &cli::analyze::fit_summary(&m.name, &misfits, en);
            text.push('\n');
        }
        text
    };
    // `fabrique analyze f.gcode | head` closes the pipe early: that is not an error.
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    Ok(if file.summary.issues().is_empty() && misfits.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
