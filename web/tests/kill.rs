//! The real `fabrique serve`, killed with SIGKILL in the middle of an upload, then started
//! again on the same data folder: what the kill left in the jobs folder is gone, the jobs
//! that were recorded keep their files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{self, Server, command, free_port};
use fabrique_controller::testing::fresh_database_url;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `fabrique ARGS`, logging only warnings.
fn fabrique(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = command(dir, url, args);
    command.env("FABRIQUE_LOG", "warn");
    command
}

fn run(dir: &Path, url: &str, args: &[&str], stdin: &str) -> String {
    let mut child = fabrique(dir, url, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A server on a free port, answering `/healthz`.
async fn serve(dir: &Path, url: &str) -> (Server, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = process::serve(fabrique(dir, url, &["--listen", &listen, "serve"]), port).await;
    (server, format!("http://{listen}"))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_an_upload_leaves_nothing_after_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await.unwrap();
    run(dir.path(), &url, &["migrate"], "");
    run(
        dir.path(),
        &url,
        &["user", "add", "amina", "--password-stdin"],
        "a long password\n",
    );
    let key = run(dir.path(), &url, &["user", "api-key", "amina"], "");
    let key = key.trim().to_string();
    let jobs = dir.path().join("jobs");

    let (mut server, base) = serve(dir.path(), &url).await;
    let client = reqwest::Client::new();
    // A job that is recorded: its file and preview must stay.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"G28\nG1 X10 Y10 E1 F1200\n".to_vec())
            .file_name("cube.gcode"),
    );
    let kept: serde_json::Value = client
        .post(format!("{base}/api/v1/jobs"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(kept["id"].is_i64(), "{kept}");
    let before = names(&jobs);

    // A large upload, sent slowly; the server is killed once part of it is on disk.
    let chunks = futures_util::stream::unfold(0u32, |n| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let chunk = "G1 X100.000 Y100.000 E0.05000 F1800 ; a line of a big print\n".repeat(2000);
        (n < 100_000).then(|| (Ok::<_, std::io::Error>(chunk.into_bytes()), n + 1))
    });
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(chunks))
        .file_name("grand-vase.gcode");
    let upload = tokio::spawn({
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        async move {
            client
                .post(format!("{base}/api/v1/jobs"))
                .header("x-api-key", key)
                .multipart(reqwest::multipart::Form::new().part("file", part))
                .send()
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let growing = std::fs::read_dir(&jobs)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name().to_string_lossy().ends_with(".part")
                    && e.metadata().is_ok_and(|m| m.len() > 4 * 1024 * 1024)
            });
        if growing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upload never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill(); // SIGKILL: no clean-up of any kind
    assert!(
        upload.await.unwrap().is_err(),
        "the connection died with the server"
    );
    let left = names(&jobs);
    assert!(left.iter().any(|n| n.ends_with(".part")), "{left:?}");
    // A kill between the final rename and the job's row leaves a whole file no job
    // refers to, with its pictures: as it would have been named.
    for orphan in [
        "Qm9yZGVyMjAyNg.gcode",
        "Qm9yZGVyMjAyNg.gcode.preview.svg",
        "Qm9yZGVyMjAyNg.gcode.thumbnail.png",
    ] {
        std::fs::write(jobs.join(orphan), b"G1 X1\n").unwrap();
    }

    let (mut server, base) = serve(dir.path(), &url).await;
    assert_eq!(names(&jobs), before, "only the recorded job's files stay");
    let job = client
        .get(format!("{base}/api/v1/jobs/{}", kept["id"]))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), 200);
    server.kill();
}
