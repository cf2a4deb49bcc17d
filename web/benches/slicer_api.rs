//! Requests per second of the calls a slicer makes, `GET /api/version`,
//! `POST /api/files/local` and the monitor's `GET /api/job` (asked after the uploads, so the
//! maker has jobs to look through), on Fabrique and on a real OctoPrint (`pip install
//! octoprint`) started on the same machine, with the same requests from the same client: 8
//! connections for 5 s per call. Prints figures; asserts nothing on time.
//!
//! `cargo bench -p fabrique-web --bench slicer_api`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fabrique_controller::domain::{CredentialKind, Lang, NewUser, Role, Secret};
use fabrique_controller::lab::now;
use fabrique_controller::{Lab, Store};
use fabrique_machines::sim::octoprint::{API_KEY, OctoPrintServer};
use fabrique_web::config::{Config, Layer};

const CONNECTIONS: usize = 8;
const RUN: Duration = Duration::from_secs(5);

/// A small sliced file (the first 400 lines of the keychain), the same for both servers.
fn gcode() -> Vec<u8> {
    let text = include_str!("../tests/data/mk3_keychain.gcode");
    let mut out = String::new();
    for line in text.lines().take(400) {
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// Runs `CONNECTIONS` clients for `RUN` and returns (requests per second, failures).
async fn load(base: &str, key: &str, path: &str, upload: Option<&[u8]>) -> (f64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS {
        let (ok, failed) = (ok.clone(), failed.clone());
        let (url, key, upload) = (
            format!("{base}{path}"),
            key.to_string(),
            upload.map(<[u8]>::to_vec),
        );
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0u64;
            while started.elapsed() < RUN {
                n += 1;
                let request = match &upload {
                    None => client.get(&url),
                    Some(bytes) => {
                        let part = reqwest::multipart::Part::bytes(bytes.clone())
                            .file_name(format!("bench-{worker}-{n}.gcode"))
                            .mime_str("application/octet-stream")
                            .unwrap();
                        let form = reqwest::multipart::Form::new()
                            .text("print", "false")
                            .text("path", "")
                            .part("file", part);
                        client.post(&url).multipart(form)
                    }
                };
                match request.header("X-Api-Key", &key).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / seconds,
        failed.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    // Fabrique on SQLite, as a lab runs it, with a maker's API key.
    let url = format!("sqlite://{}", dir.path().join("fabrique.db").display());
    let lab = Lab::new(Store::open(&url).await.unwrap()).unwrap();
    let maker = NewUser::parse(
        "amina",
        "",
        "",
        Role::Member,
        Lang::Fr,
        CredentialKind::Password,
        Secret::new("a long password"),
    )
    .unwrap();
    let maker = lab.create_user_unchecked(&maker, now()).await.unwrap();
    let key = lab.create_api_key(&maker, "bench", now()).await.unwrap();
    let config = Config::build(&[(
        "bench",
        Layer {
            data_dir: Some(dir.path().to_path_buf()),
            log: Some("error".into()),
            ..Layer::default()
        },
    )])
    .unwrap();
    let state = fabrique_web::state(lab, config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fabrique = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(fabrique_web::serve(
        listener,
        state,
        std::future::pending::<()>(),
    ));

    let file = gcode();

    println!(
        "{CONNECTIONS} connections, {} s per call, upload of {} bytes",
        RUN.as_secs(),
        file.len()
    );
    let calls = [
        ("GET /api/version", "/api/version", None),
        (
            "POST /api/files/local",
            "/api/files/local",
            Some(file.as_slice()),
        ),
        ("GET /api/job", "/api/job", None),
    ];
    // Fabrique first, OctoPrint not yet started, so that neither pays for the other's
    // background work (OctoPrint's virtual printer and file analysis keep a core busy).
    let mut ours = Vec::new();
    for (name, path, upload) in calls {
        let (rate, failures) = load(&fabrique, &key, path, upload).await;
        println!("Fabrique {name}: {rate:.0} r/s");
        ours.push((rate, failures));
    }
    let octoprint_dir = tempfile::tempdir().unwrap();
    let octoprint = match OctoPrintServer::start(octoprint_dir.path()).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let octoprint_url = octoprint.url().trim_end_matches('/').to_string();
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "call", "Fabrique", "OctoPrint", "ratio"
    );
    for ((name, path, upload), (ours, our_failures)) in calls.into_iter().zip(ours) {
        let (theirs, their_failures) = load(&octoprint_url, API_KEY, path, upload).await;
        println!(
            "{name:<28} {ours:>8.0} r/s {theirs:>8.0} r/s {:>7.1}x",
            ours / theirs.max(f64::MIN_POSITIVE)
        );
        if our_failures + their_failures > 0 {
            println!("  failures: Fabrique {our_failures}, OctoPrint {their_failures}");
        }
    }
}
