//! The real `fabrique` binary, for the tests of the process itself (the command line, a
//! kill, an independent client against `serve`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `fabrique ARGS` on the data folder `dir` and the database `url` (SQLite in `dir`, or a
/// PostgreSQL database when `url` is one), whatever the test's own environment says.
pub fn command(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fabrique"));
    command
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .current_dir(dir)
        .env_remove("FABRIQUE_DATABASE_URL");
    if url.starts_with("postgres") {
        command.env("FABRIQUE_DATABASE_URL", url);
    }
    command
}

/// A running `fabrique serve`, killed (SIGKILL) and reaped when dropped, even by a failing
/// assertion.
pub struct Server(pub Child);

impl Server {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on this machine.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `command` (a `fabrique serve` listening on `port`), quiet, and waits until it
/// answers `/healthz` on 127.0.0.1.
pub async fn serve(mut command: Command, port: u16) -> Server {
    let server = Server(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status() == 200
        {
            return server;
        }
        assert!(Instant::now() < deadline, "fabrique serve did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
