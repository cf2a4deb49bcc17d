//! OctoPrint's REST API (docs.octoprint.org, "REST API"), the part a lab needs: upload a
//! file, start it, read the job and the printer, pause, resume, cancel, emergency stop.
//! Authenticated by an API key in `X-Api-Key`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::driver::remote::{RemoteError, RemotePrinter, RemoteState, RemoteStatus};

#[derive(Clone)]
pub struct OctoPrint {
    base: String,
    api_key: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for OctoPrint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key is a secret: never in logs.
        f.debug_struct("OctoPrint")
            .field("base", &self.base)
            .finish()
    }
}

impl OctoPrint {
    /// `url` such as `http://octopi.local` or `http://10.0.0.5:5000/`.
    pub fn new(url: &str, api_key: &str) -> Result<Self, RemoteError> {
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            http: super::http_client()?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_json(&self, path: &str, body: Value) -> Result<(), RemoteError> {
        let response = self
            .http
            .post(self.url(path))
            .header("X-Api-Key", &self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(super::unreachable)?;
        super::check(response).await.map(drop)
    }

    async fn get(&self, path: &str) -> Result<Option<Value>, RemoteError> {
        let response = self
            .http
            .get(self.url(path))
            .header("X-Api-Key", &self.api_key)
            .send()
            .await
            .map_err(super::unreachable)?;
        // `/api/printer` answers 409 while no printer is connected.
        if response.status() == reqwest::StatusCode::CONFLICT {
            return Ok(None);
        }
        let response = super::check(response).await?;
        response
            .json()
            .await
            .map(Some)
            .map_err(|e| RemoteError::Protocol(e.to_string()))
    }

    /// The server's version (`GET /api/version`): checks the address and the key.
    pub async fn version(&self) -> Result<String, RemoteError> {
        let v = self.get("/api/version").await?.unwrap_or_default();
        Ok(v["server"].as_str().unwrap_or("?").to_string())
    }

    /// Asks OctoPrint to open its printer's serial port (its default port and baud rate).
    pub async fn connect_printer(&self) -> Result<(), RemoteError> {
        self.post_json(
            "/api/connection",
            json!({"command": "connect", "autoconnect": true}),
        )
        .await
    }
}

/// OctoPrint's state text ("Operational", "Printing from SD", "Offline after error"...).
fn state_of(text: &str, error: Option<&str>) -> RemoteState {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("printing") || lower.starts_with("starting") || lower == "finishing" {
        RemoteState::Printing
    } else if lower == "paused" {
        RemoteState::Paused
    } else if lower == "pausing" || lower == "resuming" || lower == "cancelling" {
        RemoteState::Changing
    } else if lower == "operational" {
        RemoteState::Ready
    } else if lower.contains("error") {
        RemoteState::Error(error.filter(|e| !e.is_empty()).unwrap_or(text).to_string())
    } else {
        // "Offline", "Closed", "Opening serial connection", "Connecting", "Detecting baudrate".
        RemoteState::PrinterOffline(text.to_string())
    }
}

fn reading(v: &Value) -> Option<(f64, Option<f64>)> {
    Some((v["actual"].as_f64()?, v["target"].as_f64()))
}

impl RemotePrinter for OctoPrint {
    fn name(&self) -> &'static str {
        "OctoPrint"
    }

    async fn status(&self) -> Result<RemoteStatus, RemoteError> {
        let job = self
            .get("/api/job")
            .await?
            .ok_or_else(|| RemoteError::Protocol("/api/job answered 409".into()))?;
        let text = job["state"].as_str().unwrap_or("Offline");
        let state = state_of(text, job["error"].as_str());
        let printer = match state {
            RemoteState::PrinterOffline(_) => None,
            _ => self.get("/api/printer?exclude=sd,state").await?,
        };
        let temperature = printer.as_ref().map(|p| &p["temperature"]);
        let seconds = |v: &Value| v.as_f64().filter(|s| *s >= 0.0).map(|s| s as u64);
        Ok(RemoteStatus {
            state,
            file: job["job"]["file"]["name"].as_str().map(str::to_string),
            progress: job["progress"]["completion"]
                .as_f64()
                .map(|c| (c / 100.0).clamp(0.0, 1.0)),
            elapsed_s: seconds(&job["progress"]["printTime"]),
            remaining_s: seconds(&job["progress"]["printTimeLeft"]),
            hotend: temperature.and_then(|t| reading(&t["tool0"])),
            bed: temperature.and_then(|t| reading(&t["bed"])),
        })
    }

    async fn upload(&self, file: &Path, name: &str) -> Result<(), RemoteError> {
        let part = super::file_part(file, name).await?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let response = self
            .http
            .post(self.url("/api/files/local"))
            .header("X-Api-Key", &self.api_key)
            .timeout(Duration::from_secs(3600))
            .multipart(form)
            .send()
            .await
            .map_err(super::unreachable)?;
        super::check(response).await.map(drop)
    }

    async fn start(&self, name: &str) -> Result<(), RemoteError> {
        self.post_json(
            &format!("/api/files/local/{}", super::path_segment(name)),
            json!({"command": "select", "print": true}),
        )
        .await
    }

    async fn pause(&self) -> Result<(), RemoteError> {
        self.post_json("/api/job", json!({"command": "pause", "action": "pause"}))
            .await
    }

    async fn resume(&self) -> Result<(), RemoteError> {
        self.post_json("/api/job", json!({"command": "pause", "action": "resume"}))
            .await
    }

    async fn cancel(&self) -> Result<(), RemoteError> {
        self.post_json("/api/job", json!({"command": "cancel"}))
            .await
    }

    async fn emergency_stop(&self) -> Result<(), RemoteError> {
        // OctoPrint sends M112 ahead of its queue (its emergency handling of that command).
        self.post_json("/api/printer/command", json!({"commands": ["M112"]}))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octoprint_states_are_read_as_the_follow_loop_needs_them() {
        assert_eq!(state_of("Operational", None), RemoteState::Ready);
        assert_eq!(state_of("Printing from SD", None), RemoteState::Printing);
        assert_eq!(
            state_of("Starting print from SD", None),
            RemoteState::Printing
        );
        assert_eq!(state_of("Paused", None), RemoteState::Paused);
        assert_eq!(state_of("Cancelling", None), RemoteState::Changing);
        assert_eq!(
            state_of("Offline after error", Some("Thermal runaway")),
            RemoteState::Error("Thermal runaway".into())
        );
        assert_eq!(
            state_of("Offline", None),
            RemoteState::PrinterOffline("Offline".into())
        );
    }
}
