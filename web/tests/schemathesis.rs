//! Schemathesis (the PyPI package, an independent client) against the real `fabrique serve
//! --demo`, from the OpenAPI document alone, bounded in time: any server error, or any
//! status the document does not list for an operation, fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{Server, command};
use fabrique_controller::testing::fresh_database_url;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long schemathesis may generate requests, and the most it may take in all.
const BUDGET_S: u64 = 90;
const HARD_LIMIT: Duration = Duration::from_secs(300);

/// `fabrique ARGS`, logging only warnings.
fn fabrique(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = command(dir, url, args);
    command.env("FABRIQUE_LOG", "warn");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_status() {
    let version = Command::new("schemathesis").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "schemathesis is needed: python3 -m pip install 'schemathesis>=4.3,<5' (or -r .ci/requirements.txt)"
    );
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let _server = Server(
        fabrique(dir.path(), &url, &["--listen", &listen, "serve", "--demo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fabrique serve --demo did not answer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The demo's manager reaches the most operations.
    let out = fabrique(
        dir.path(),
        &url,
        &["user", "api-key", "manager", "--label", "schemathesis"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let mut run = Command::new("schemathesis");
    run.args(["run", &format!("{base}/api/v1/openapi.json")])
        .args(["--header", &format!("X-Api-Key: {key}")])
        .args(["--checks", "not_a_server_error,status_code_conformance"])
        .args(["--max-examples", "10", "--max-time", &BUDGET_S.to_string()])
        .args(["--seed", "15", "--workers", "2", "--no-color"])
        .args(["--request-timeout", "20"])
        // Revoking keys would revoke the one the run uses, and leave every later request
        // at 401: those operations are tested by the HTTP tests.
        .args(["--exclude-path-regex", "api-keys/\\{key_id\\}$"])
        // Its cache of failing cases goes in the test's folder, not in the sources.
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = run.spawn().unwrap();
    let pid = child.id();
    let waited = tokio::time::timeout(
        HARD_LIMIT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(output) = waited else {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        panic!("schemathesis ran past {HARD_LIMIT:?}");
    };
    let output = output.unwrap().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let tail: String = text
        .lines()
        .rev()
        .take(200)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{tail}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
