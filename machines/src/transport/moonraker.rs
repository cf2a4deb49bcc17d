//! Moonraker's HTTP API (Arksine/moonraker, `docs/external_api`), the part a lab needs:
//! upload with a SHA-256 checksum, start, the `print_stats` and `virtual_sdcard` objects,
//! pause, resume, cancel, emergency stop.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::driver::remote::{RemoteError, RemotePrinter, RemoteState, RemoteStatus};

#[derive(Debug, Clone)]
pub struct Moonraker {
    base: String,
    http: reqwest::Client,
}

impl Moonraker {
    /// `url` such as `http://voron.local` or `http://10.0.0.6:7125`.
    pub fn new(url: &str) -> Result<Self, RemoteError> {
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            http: super::http_client()?,
        })
    }

    async fn request(&self, post: bool, path: &str) -> Result<Value, RemoteError> {
        let url = format!("{}{path}", self.base);
        let request = if post {
            self.http.post(url)
        } else {
            self.http.get(url)
        };
        let response = request.send().await.map_err(super::unreachable)?;
        let response = super::check(response).await?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| RemoteError::Protocol(e.to_string()))?;
        Ok(body["result"].clone())
    }

    async fn post(&self, path: &str) -> Result<(), RemoteError> {
        self.request(true, path).await.map(drop)
    }
}

/// `print_stats.state` ("standby", "printing", "paused", "complete", "cancelled", "error").
fn state_of(state: &str, message: &str) -> RemoteState {
    match state {
        "standby" => RemoteState::Ready,
        "printing" => RemoteState::Printing,
        "paused" => RemoteState::Paused,
        "complete" => RemoteState::Complete,
        "cancelled" => RemoteState::Cancelled,
        "error" => RemoteState::Error(if message.is_empty() {
            "erreur de Klipper".to_string()
        } else {
            message.to_string()
        }),
        other => RemoteState::PrinterOffline(other.to_string()),
    }
}

fn reading(v: &Value) -> Option<(f64, Option<f64>)> {
    Some((v["temperature"].as_f64()?, v["target"].as_f64()))
}

impl RemotePrinter for Moonraker {
    fn name(&self) -> &'static str {
        "Moonraker"
    }

    async fn status(&self) -> Result<RemoteStatus, RemoteError> {
        let status = match self
            .request(
                false,
                "/printer/objects/query?print_stats&virtual_sdcard&extruder&heater_bed",
            )
            .await
        {
            Ok(result) => result["status"].clone(),
            // Klipper is not ready (shutdown, disconnected, starting): Moonraker still
            // answers, and says why.
            Err(RemoteError::Refused { .. }) => {
                let info = self.request(false, "/server/info").await?;
                let state = info["klippy_state"].as_str().unwrap_or("disconnected");
                return Ok(RemoteStatus {
                    state: if state == "error" || state == "shutdown" {
                        RemoteState::Error(format!("Klipper : {state}"))
                    } else {
                        RemoteState::PrinterOffline(format!("Klipper : {state}"))
                    },
                    file: None,
                    progress: None,
                    elapsed_s: None,
                    remaining_s: None,
                    hotend: None,
                    bed: None,
                });
            }
            Err(e) => return Err(e),
        };
        let stats = &status["print_stats"];
        let state = state_of(
            stats["state"].as_str().unwrap_or(""),
            stats["message"].as_str().unwrap_or(""),
        );
        let progress = status["virtual_sdcard"]["progress"]
            .as_f64()
            .map(|p| p.clamp(0.0, 1.0));
        let elapsed = stats["print_duration"].as_f64().filter(|s| *s >= 0.0);
        // Moonraker gives no time left: extrapolated from the time printed so far.
        let remaining = match (progress, elapsed) {
            (Some(p), Some(e)) if p > 0.01 => Some((e * (1.0 - p) / p) as u64),
            _ => None,
        };
        Ok(RemoteStatus {
            state,
            file: stats["filename"]
                .as_str()
                .filter(|f| !f.is_empty())
                .map(str::to_string),
            progress,
            elapsed_s: elapsed.map(|e| e as u64),
            remaining_s: remaining,
            hotend: reading(&status["extruder"]),
            bed: reading(&status["heater_bed"]),
        })
    }

    async fn upload(&self, file: &Path, name: &str) -> Result<(), RemoteError> {
        // Moonraker checks the SHA-256 of what it received and answers 422 on a mismatch.
        let checksum = super::sha256_file(file).await?;
        let part = super::file_part(file, name).await?;
        let form = reqwest::multipart::Form::new()
            .text("root", "gcodes")
            .text("checksum", checksum)
            .part("file", part);
        let response = self
            .http
            .post(format!("{}/server/files/upload", self.base))
            .timeout(Duration::from_secs(3600))
            .multipart(form)
            .send()
            .await
            .map_err(super::unreachable)?;
        super::check(response).await.map(drop)
    }

    async fn start(&self, name: &str) -> Result<(), RemoteError> {
        self.post(&format!(
            "/printer/print/start?filename={}",
            super::path_segment(name)
        ))
        .await
    }

    async fn pause(&self) -> Result<(), RemoteError> {
        self.post("/printer/print/pause").await
    }

    async fn resume(&self) -> Result<(), RemoteError> {
        self.post("/printer/print/resume").await
    }

    async fn cancel(&self) -> Result<(), RemoteError> {
        self.post("/printer/print/cancel").await
    }

    async fn emergency_stop(&self) -> Result<(), RemoteError> {
        // Not `/printer/gcode/script` with M112: that one is queued behind the moves.
        self.post("/printer/emergency_stop").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klipper_print_states_are_read_as_the_follow_loop_needs_them() {
        assert_eq!(state_of("standby", ""), RemoteState::Ready);
        assert_eq!(state_of("printing", ""), RemoteState::Printing);
        assert_eq!(state_of("complete", ""), RemoteState::Complete);
        assert_eq!(state_of("cancelled", ""), RemoteState::Cancelled);
        assert_eq!(
            state_of("error", "Heater extruder not heating at expected rate"),
            RemoteState::Error("Heater extruder not heating at expected rate".into())
        );
    }
}
