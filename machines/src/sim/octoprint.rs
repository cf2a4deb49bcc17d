//! A real OctoPrint for tests and trying things out: `octoprint serve` (PyPI `octoprint`)
//! on 127.0.0.1 with a generated configuration in a folder of its own: its virtual printer
//! connected, no first-run wizard, no online checks, and one user whose API key is known.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::driver::remote::{RemotePrinter, RemoteState};
use crate::transport::octoprint::OctoPrint;

/// The API key of the generated user.
pub const API_KEY: &str = "FabriqueTestKey0123456789abcdef0";

const CONFIG: &str = "\
server:
  firstRun: false
  onlineCheck:
    enabled: false
  pluginBlacklist:
    enabled: false
  seenWizards:
    corewizard: 4
accessControl:
  enabled: true
serial:
  port: VIRTUAL
  baudrate: 0
  autoconnect: true
plugins:
  tracking:
    enabled: false
  virtual_printer:
    enabled: true
";

/// A running `octoprint serve`, stopped when dropped.
pub struct OctoPrintServer {
    child: tokio::process::Child,
    pub port: u16,
}

impl OctoPrintServer {
    /// Starts OctoPrint with its files in `basedir` and waits (at most a minute) until its
    /// virtual printer is connected. The error says what to install when OctoPrint is not.
    pub async fn start(basedir: &Path) -> Result<Self, String> {
        let installed = tokio::process::Command::new("python3")
            .args(["-c", "import octoprint"])
            .status()
            .await;
        if !installed.is_ok_and(|s| s.success()) {
            return Err(String::from(
                "OctoPrint is needed: python3 -m pip install octoprint (or -r .ci/requirements.txt)",
            ));
        }
        let write = |name: &str, text: &str| {
            std::fs::write(basedir.join(name), text).map_err(|e| format!("{name}: {e}"))
        };
        write("config.yaml", CONFIG)?;
        write(
            "users.yaml",
            &format!(
                "_version: 2\nfabrique:\n  active: true\n  apikey: {API_KEY}\n  groups: [admins, users]\n  password: not-a-password-hash\n  permissions: []\n  settings: {{}}\n"
            ),
        )?;
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        };
        // OctoPrint refuses to run as root without --iknowwhatimdoing; CI runs as root.
        let child = tokio::process::Command::new("python3")
            .args([
                "-m",
                "octoprint",
                "serve",
                "--iknowwhatimdoing",
                "--host",
                "127.0.0.1",
            ])
            .arg("--port")
            .arg(port.to_string())
            .arg("--basedir")
            .arg(basedir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("python3 -m octoprint serve: {e}"))?;
        let server = Self { child, port };
        let client = server.client(port).map_err(|e| e.to_string())?;
        for _ in 0..240 {
            match client.status().await {
                Ok(s) if s.state == RemoteState::Ready => return Ok(server),
                Ok(s) if matches!(s.state, RemoteState::PrinterOffline(_)) => {
                    let _ = client.connect_printer().await;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(String::from(
            "OctoPrint did not start with its virtual printer within 60 s",
        ))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// OctoPrint's own view of the current job (`GET /api/job`), as it answers it.
    pub async fn job(&self) -> Result<serde_json::Value, reqwest::Error> {
        reqwest::Client::new()
            .get(format!("{}api/job", self.url()))
            .header("X-Api-Key", API_KEY)
            .send()
            .await?
            .json()
            .await
    }

    /// A client of this server reached through `port` (its own, or a proxy's).
    pub fn client(&self, port: u16) -> Result<OctoPrint, crate::driver::remote::RemoteError> {
        OctoPrint::new(&format!("http://127.0.0.1:{port}/"), API_KEY)
    }
}

impl Drop for OctoPrintServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
