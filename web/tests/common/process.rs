//! The real `fabrique` binary, for the tests of the process itself (the command line, a
//! kill, an independent client against `serve`).

use std::path::Path;
use std::process::{Child, Command};

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
