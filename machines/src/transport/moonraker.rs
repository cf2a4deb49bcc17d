//! Moonraker's HTTP API (Arksine/moonraker, `docs/external_api`), the part a lab needs:
//! upload with a SHA-256 checksum, start, the `webhooks`, `print_stats` and
//! `virtual_sdcard` objects, pause, resume, cancel, emergency stop.
//!
//! How the real server answers, as read in its source and Klipper's (docs/print-servers.md):
//! a Klipper shutdown does not make queries fail: they answer 200, `webhooks.state` says
//! `shutdown` with Klipper's words in `state_message`, and `print_stats.state` may still
//! say `paused`. Only while Klipper is disconnected does `/printer/*` answer 503. Errors are
//! `{"error": {"code", "message", "traceback"}}` where `message` is the HTTP reason phrase:
//! Klipper's words for a refused command, but only "Unprocessable Entity" or "Forbidden"
//! for upload errors, or "Unknown" for words of several lines; the rest is in `traceback`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::driver::remote::{RemoteError, RemotePrinter, RemoteState, RemoteStatus};

/// The objects followed during a print; `webhooks` carries Klipper's own state.
const QUERY: &str =
    "/printer/objects/query?webhooks&print_stats&virtual_sdcard&extruder&heater_bed";

/// The most a print is said to be done before Klipper says `complete`: the file is read
/// (`virtual_sdcard.progress`) ahead of the moves, and the end G-code still runs after it.
const MOST_BEFORE_COMPLETE: f64 = 0.99;

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

    /// Sends the request; an answer other than 2xx becomes the error it says.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, RemoteError> {
        let response = request.send().await.map_err(super::unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(super::unreachable)?;
        if !status.is_success() {
            return Err(error_of(status.as_u16(), &body));
        }
        serde_json::from_str(&body).map_err(|e| RemoteError::Protocol(e.to_string()))
    }

    async fn get(&self, path: &str) -> Result<Value, RemoteError> {
        let body = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        Ok(body["result"].clone())
    }

    async fn post(&self, path: &str) -> Result<(), RemoteError> {
        self.send(self.http.post(format!("{}{path}", self.base)))
            .await
            .map(drop)
    }
}

/// Text on one line, its runs of spaces and line breaks made one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a failed request's answer says. Moonraker's `message` is the HTTP reason: when it is
/// only the bare phrase of the status ("Unprocessable Entity") or "Unknown" (Tornado's word
/// for a reason of several lines, such as a shutdown message), the words are taken from the
/// end of `traceback`, `HTTPError: HTTP 422: Unprocessable Entity (File checksum mismatch:
/// ...)`. 4xx: refused; 5xx: not ready (503 while Klipper is disconnected).
fn error_of(status: u16, body: &str) -> RemoteError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let message = error
        .and_then(|e| e["message"].as_str().or_else(|| e.as_str()))
        .map(one_line);
    let bare = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    let from_traceback = error
        .and_then(|e| e["traceback"].as_str())
        .and_then(|t| {
            let marker = format!("HTTP {status}: ");
            t.rfind(&marker).map(|at| one_line(&t[at + marker.len()..]))
        })
        .filter(|t| !t.is_empty());
    let words = match (message, from_traceback) {
        (Some(m), Some(t)) if m == "Unknown" || Some(m.as_str()) == bare => t,
        (Some(m), _) if !m.is_empty() => m,
        (_, Some(t)) => t,
        _ => one_line(&body.chars().take(200).collect::<String>()),
    };
    if status >= 500 {
        RemoteError::NotReady(format!("{status} {words}"))
    } else {
        RemoteError::Refused {
            status,
            message: words,
        }
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
            one_line(message)
        }),
        other => RemoteState::PrinterOffline(other.to_string()),
    }
}

fn reading(v: &Value) -> Option<(f64, Option<f64>)> {
    Some((v["temperature"].as_f64()?, v["target"].as_f64()))
}

/// The status out of a query's `status` object.
fn status_of(status: &Value) -> Result<RemoteStatus, RemoteError> {
    let webhooks = &status["webhooks"];
    let stats = &status["print_stats"];
    let klipper = webhooks["state"].as_str().unwrap_or("ready");
    let said = one_line(webhooks["state_message"].as_str().unwrap_or(""));
    let state = match klipper {
        "ready" => state_of(
            stats["state"].as_str().unwrap_or(""),
            stats["message"].as_str().unwrap_or(""),
        ),
        // Shut down (an emergency stop from any client, a thermal runaway, an MCU fault) or
        // failed to start: whatever print_stats still says, nothing prints any more.
        "shutdown" | "error" => RemoteState::Error(if said.is_empty() {
            format!("Klipper : {klipper}")
        } else {
            said
        }),
        // Starting (connecting to its MCU): not an answer yet.
        other => {
            return Err(RemoteError::NotReady(if said.is_empty() {
                format!("Klipper : {other}")
            } else {
                format!("Klipper : {other} ({said})")
            }));
        }
    };
    let sdcard = &status["virtual_sdcard"];
    // After a cancel the file is closed (`file_path: null`) and progress drops to 0: say
    // nothing rather than 0.
    let loaded = !sdcard["file_path"].is_null() || sdcard.get("file_path").is_none();
    let progress = match state {
        RemoteState::Complete => Some(1.0),
        _ if !loaded => None,
        _ => sdcard["progress"]
            .as_f64()
            .map(|p| p.clamp(0.0, MOST_BEFORE_COMPLETE)),
    };
    let elapsed = stats["print_duration"].as_f64().filter(|s| *s >= 0.0);
    // Moonraker gives no time left: extrapolated from the time printed so far.
    let remaining = match (&state, progress, elapsed) {
        (RemoteState::Printing | RemoteState::Paused, Some(p), Some(e)) if p > 0.01 => {
            Some((e * (1.0 - p) / p) as u64)
        }
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

impl RemotePrinter for Moonraker {
    fn name(&self) -> &'static str {
        "Moonraker"
    }

    fn reports_complete(&self) -> bool {
        true
    }

    async fn status(&self) -> Result<RemoteStatus, RemoteError> {
        let result = self.get(QUERY).await?;
        status_of(&result["status"])
    }

    async fn upload(&self, file: &Path, name: &str) -> Result<(), RemoteError> {
        // Moonraker checks the SHA-256 of what it received and answers 422 on a mismatch.
        let checksum = super::sha256_file(file).await?;
        let part = super::file_part(file, name).await?;
        let form = reqwest::multipart::Form::new()
            .text("root", "gcodes")
            .text("checksum", checksum)
            .part("file", part);
        let request = self
            .http
            .post(format!("{}/server/files/upload", self.base))
            .timeout(Duration::from_secs(3600))
            .multipart(form);
        // The answer is not wrapped in `result`: `{"item": {"path", "root", ...},
        // "action": "create_file", "print_started", "print_queued"}`.
        let answer = self.send(request).await?;
        match answer["item"]["path"].as_str() {
            Some(path) if path == name => Ok(()),
            Some(path) => Err(RemoteError::Protocol(format!(
                "fichier enregistré sous « {path} » au lieu de « {name} »"
            ))),
            None => Err(RemoteError::Protocol(format!(
                "réponse d'envoi sans fichier : {}",
                one_line(&answer.to_string().chars().take(200).collect::<String>())
            ))),
        }
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
    use serde_json::json;

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

    #[test]
    fn a_shutdown_is_an_error_in_klippers_words_even_while_print_stats_says_paused() {
        let status = status_of(&json!({
            "webhooks": {"state": "shutdown", "state_message": "Heater extruder not heating at expected rate\nSee the 'verify_heater' section\n"},
            "print_stats": {"state": "paused", "filename": "fabrique-job-3.gcode"},
            "virtual_sdcard": {"file_path": "/x/fabrique-job-3.gcode", "progress": 0.4},
        }))
        .unwrap();
        assert_eq!(
            status.state,
            RemoteState::Error(
                "Heater extruder not heating at expected rate See the 'verify_heater' section"
                    .into()
            )
        );
        let starting = status_of(&json!({
            "webhooks": {"state": "startup", "state_message": "Printer is not ready"},
            "print_stats": {"state": "standby"},
        }));
        assert!(
            matches!(&starting, Err(RemoteError::NotReady(m)) if m.contains("startup")),
            "{starting:?}"
        );
    }

    #[test]
    fn progress_is_never_whole_before_klipper_says_complete_and_nothing_after_a_cancel() {
        let printing = status_of(&json!({
            "webhooks": {"state": "ready"},
            "print_stats": {"state": "printing", "filename": "a.gcode", "print_duration": 90.0},
            "virtual_sdcard": {"file_path": "/x/a.gcode", "progress": 1.0},
            "heater_bed": {},
        }))
        .unwrap();
        assert_eq!(printing.progress, Some(MOST_BEFORE_COMPLETE));
        assert_eq!(printing.bed, None);
        let cancelled = status_of(&json!({
            "webhooks": {"state": "ready"},
            "print_stats": {"state": "cancelled", "filename": "a.gcode"},
            "virtual_sdcard": {"file_path": null, "progress": 0.0},
        }))
        .unwrap();
        assert_eq!(cancelled.progress, None);
        let complete = status_of(&json!({
            "webhooks": {"state": "ready"},
            "print_stats": {"state": "complete", "filename": "a.gcode"},
            "virtual_sdcard": {"file_path": null, "progress": 1.0},
        }))
        .unwrap();
        assert_eq!(complete.progress, Some(1.0));
    }

    #[test]
    fn an_error_says_the_servers_words_from_its_message_or_its_traceback() {
        let upload = json!({"error": {"code": 422, "message": "Unprocessable Entity",
            "traceback": "Traceback (most recent call last):\n  File \"web.py\"\ntornado.web.HTTPError: HTTP 422: Unprocessable Entity (File checksum mismatch: expected ab, calculated cd)\n"}});
        assert!(matches!(
            error_of(422, &upload.to_string()),
            RemoteError::Refused { status: 422, message }
                if message == "Unprocessable Entity (File checksum mismatch: expected ab, calculated cd)"
        ));
        let start = json!({"error": {"code": 400, "message": "SD busy", "traceback": "..."}});
        assert!(matches!(
            error_of(400, &start.to_string()),
            RemoteError::Refused { status: 400, message } if message == "SD busy"
        ));
        let shut = json!({"error": {"code": 400, "message": "Unknown",
            "traceback": "moonraker.utils.ServerError: Shutdown due to webhooks request\nOnce the underlying\n\ntornado.web.HTTPError: HTTP 400: Shutdown due to webhooks request\nOnce the underlying\n"}});
        assert!(matches!(
            error_of(400, &shut.to_string()),
            RemoteError::Refused { message, .. }
                if message == "Shutdown due to webhooks request Once the underlying"
        ));
        let down = json!({"error": {"code": 503, "message": "Klippy Host not connected"}});
        assert!(matches!(
            error_of(503, &down.to_string()),
            RemoteError::NotReady(m) if m == "503 Klippy Host not connected"
        ));
        assert!(matches!(
            error_of(502, "<html>Bad Gateway</html>"),
            RemoteError::NotReady(m) if m == "502 <html>Bad Gateway</html>"
        ));
    }
}
