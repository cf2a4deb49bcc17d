//! The part of OctoPrint's REST API that slicers and apps call (PrusaSlicer's and
//! OrcaSlicer's "send to OctoPrint", Cura's OctoPrint Connection plugin, OctoRest,
//! `octoprint client`), answered from the lab. Authenticated by the maker's personal API key
//! in `X-Api-Key`.
//!
//! The same routes answer at the root, for any compatible printer of the lab, and under
//! `/octoprint/{printer}/` for one printer (`3-prusa-mk3s`: the machine's number and its name
//! in plain letters; the number decides, so a renamed machine keeps its address). A file sent
//! there is a job for that printer.
//!
//! A file is one of the member's jobs, named `{job}-{file name}` so that two sendings of
//! `visiere.gcode` stay two files. What a member may not do on a shared printer (send
//! G-code, start, pause or cancel the print, connect the serial port) answers 403 in
//! OctoPrint's error shape, `{"error": "..."}`, with plain words; so do all errors here.

use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Multipart, Path, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use fabrique_controller::LabError;
use fabrique_controller::domain::job::{Job, JobId, JobState};
use fabrique_controller::domain::machine::{Machine, MachineKind, MachineState};
use fabrique_controller::domain::{Role, User};
use fabrique_controller::lab::now;
use fabrique_controller::runtime::Live;
use fabrique_machines::files::FileSummary;
use serde_json::{Value, json};

/// The OctoPrint version Fabrique answers as: the API of 1.10, which the clients know.
pub const OCTOPRINT_VERSION: &str = "1.10.3";
/// OctoPrint's API version.
pub const API_VERSION: &str = "0.1";

pub fn router(max_upload: usize) -> Router<AppState> {
    let api = Router::new()
        .route("/api/version", get(version))
        .route("/api/server", get(server))
        .route("/api/login", post(login))
        .route("/api/currentuser", get(current_user))
        .route("/api/settings", get(settings))
        .route("/api/printerprofiles", get(printer_profiles))
        .route("/api/connection", get(connection).post(not_for_members))
        .route("/api/files", get(files))
        .route(
            "/api/files/local",
            get(files)
                .post(upload)
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .route(
            "/api/files/local/{*name}",
            get(file).post(file_command).delete(delete_file),
        )
        .route("/api/job", get(job).post(not_for_members))
        .route("/api/printer", get(printer))
        .route("/api/printer/{*what}", any(not_for_members));
    Router::new()
        .nest("/octoprint/{printer}", api.clone())
        .merge(api)
}

/// Whether a path is one of OctoPrint's, whose errors take OctoPrint's shape.
pub fn is_octoprint_path(path: &str) -> bool {
    path.starts_with("/octoprint/") || (path.starts_with("/api/") && !path.starts_with("/api/v1"))
}

/// A printer's part of the address: its number, then its name in plain letters.
pub fn printer_key(machine: &Machine) -> String {
    let mut key = machine.id.0.to_string();
    let mut dash = true;
    for c in machine.name.chars().flat_map(plain_letters) {
        if c.is_ascii_alphanumeric() {
            if dash {
                key.push('-');
                dash = false;
            }
            key.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    key
}

/// A French letter without its accent (`é` → `e`, `œ` → `oe`); others unchanged.
fn plain_letters(c: char) -> Vec<char> {
    let plain = match c {
        'à' | 'â' | 'ä' | 'À' | 'Â' | 'Ä' => 'a',
        'ç' | 'Ç' => 'c',
        'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
        'î' | 'ï' | 'Î' | 'Ï' => 'i',
        'ô' | 'ö' | 'Ô' | 'Ö' => 'o',
        'ù' | 'û' | 'ü' | 'Ù' | 'Û' | 'Ü' => 'u',
        'ÿ' | 'Ÿ' => 'y',
        'œ' | 'Œ' => return vec!['o', 'e'],
        'æ' | 'Æ' => return vec!['a', 'e'],
        other => other,
    };
    vec![plain]
}

/// Only 3D printers answer as OctoPrint: a laser or a mill is not a slicer's target.
fn is_printer(machine: &Machine) -> bool {
    machine.kind == MachineKind::FdmPrinter
}

/// The printer a key names: by its number (what [`printer_key`] starts with), or else by
/// its whole key or its name in plain letters alone.
fn find_printer(machines: &[Machine], key: &str) -> Option<Machine> {
    let printers = || machines.iter().filter(|m| is_printer(m));
    let number = key.split('-').next().and_then(|n| n.parse::<i64>().ok());
    if let Some(number) = number {
        return printers().find(|m| m.id.0 == number).cloned();
    }
    printers()
        .find(|m| {
            let full = printer_key(m);
            full.split_once('-').is_some_and(|(_, name)| name == key)
        })
        .cloned()
}

/// Which printer a request is for: one, under `/octoprint/{printer}/`, or any (the root).
pub struct Scope {
    machine: Option<Machine>,
    /// The path the printer's API lives under: empty at the root.
    prefix: String,
}

impl FromRequestParts<AppState> for Scope {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let key = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "printer")
                    .map(|(_, value)| value.to_string())
            });
        let Some(key) = key else {
            return Ok(Scope {
                machine: None,
                prefix: String::new(),
            });
        };
        let machines = state.lab.machines().await?;
        let machine = find_printer(&machines, &key).ok_or_else(AppError::not_found)?;
        Ok(Scope {
            prefix: format!("/octoprint/{}", printer_key(&machine)),
            machine: Some(machine),
        })
    }
}

/// The addresses a file's links start with: the site's, and the API's (the printer's
/// under `/octoprint/…`).
struct Links {
    site: String,
    api: String,
}

impl Scope {
    fn links(&self, state: &AppState) -> Links {
        let site = crate::pages::base_url(state);
        Links {
            api: format!("{site}{}", self.prefix),
            site,
        }
    }

    /// Whether a job belongs here: any job at the root; under a printer, a job for it or
    /// run on it.
    fn holds(&self, job: &Job) -> bool {
        self.machine.as_ref().is_none_or(|m| {
            job.machine == Some(m.id) || (job.machine.is_none() && job.target_machine == Some(m.id))
        })
    }
}

/// A job's name as OctoPrint's file: unique, and readable.
fn file_name(job: &Job) -> String {
    format!("{}-{}", job.id.0, job.file_name)
}

/// The member's own job here that a file name names, or 404: someone else's job, or one
/// for another printer, is not there.
async fn own_job(state: &AppState, user: &User, scope: &Scope, name: &str) -> AppResult<Job> {
    let (number, rest) = name.split_once('-').ok_or_else(AppError::not_found)?;
    let id = number.parse().map_err(|_| AppError::not_found())?;
    let job = match state.lab.job(user, JobId(id)).await {
        Ok(job) => job,
        Err(LabError::Forbidden | LabError::NotFound) => return Err(AppError::not_found()),
        Err(e) => return Err(e.into()),
    };
    if job.owner != user.id
        || job.file_name != rest
        || job.state == JobState::Cancelled
        || !scope.holds(&job)
    {
        return Err(AppError::not_found());
    }
    Ok(job)
}

/// PrusaSlicer checks that `text` starts with "OctoPrint" and that `api` is present.
async fn version(ctx: Ctx, _scope: Scope) -> AppResult<Json<Value>> {
    ctx.user()?;
    Ok(Json(json!({
        "api": API_VERSION,
        "server": OCTOPRINT_VERSION,
        "text": format!("OctoPrint {OCTOPRINT_VERSION} (Fabrique {})", env!("CARGO_PKG_VERSION")),
    })))
}

async fn server(ctx: Ctx, _scope: Scope) -> AppResult<Json<Value>> {
    ctx.user()?;
    Ok(Json(
        json!({ "version": OCTOPRINT_VERSION, "safemode": null }),
    ))
}

/// OctoPrint's groups and permissions of an account: what Fabrique lets it do here.
fn groups(user: &User) -> Vec<&'static str> {
    if user.role.at_least(Role::Manager) {
        vec!["admins", "users"]
    } else {
        vec!["users"]
    }
}

const PERMISSIONS: [&str; 5] = [
    "STATUS",
    "FILES_LIST",
    "FILES_UPLOAD",
    "FILES_DOWNLOAD",
    "FILES_DELETE",
];

/// The passive login (a client with an API key asks who it is): the account of the key.
/// A login by name and password is the lab's login page, not this.
///
/// The body (`{"passive": true}`) is read though not needed: a request answered before its
/// body is read makes the server close the connection, and a client reusing it for its next
/// request (OctoRest, Cura) sees "connection closed without response".
async fn login(ctx: Ctx, _scope: Scope, _body: axum::body::Bytes) -> AppResult<Json<Value>> {
    let user = ctx.user()?;
    Ok(Json(json!({
        "name": user.username.as_str(),
        "active": true,
        "user": true,
        "admin": user.role.at_least(Role::Manager),
        "apikey": null,
        "settings": {},
        "groups": groups(user),
        "permissions": PERMISSIONS,
        "needs": { "group": groups(user), "role": [] },
        "roles": ["user"],
        "_is_external_client": false,
        "_login_mechanism": "apikey",
    })))
}

async fn current_user(ctx: Ctx, _scope: Scope) -> AppResult<Json<Value>> {
    let user = ctx.user()?;
    Ok(Json(json!({
        "name": user.username.as_str(),
        "groups": groups(user),
        "permissions": PERMISSIONS,
    })))
}

/// The settings clients read to know what the server can do: no SD card, no webcam (the
/// lab has none to show; Cura adds one only when `webcam` is there), files analysed on
/// arrival, and `.ufp` packages taken as Cura's UltimakerFormatPackage plugin takes them.
async fn settings(State(state): State<AppState>, ctx: Ctx, scope: Scope) -> AppResult<Json<Value>> {
    ctx.user()?;
    let name = scope
        .machine
        .as_ref()
        .map_or(state.config.lab_name.clone(), |m| m.name.clone());
    Ok(Json(json!({
        "api": { "allowCrossOrigin": false },
        "appearance": { "name": name, "color": "default" },
        "feature": { "sdSupport": false, "temperatureGraph": false },
        "gcodeAnalysis": { "runAt": "never" },
        "plugins": {
            "UltimakerFormatPackage": {
                "installed": true,
                "installed_version": "1.0.0",
                "inline_thumbnail": false,
                "state_panel_thumbnail": true,
            }
        },
    })))
}

/// A printer profile as OctoPrint gives it: Cura reads the name, the model and each
/// axis's speed.
fn profile(id: &str, name: &str, current: bool, machine: Option<&Machine>) -> Value {
    let speed = machine
        .map(|m| m.profile.max_speed_mm_s * 60.0)
        .filter(|s| *s > 0.0)
        .unwrap_or(6000.0);
    let axis = |speed: f64| json!({ "speed": speed, "inverted": false });
    let mut profile = json!({
        "id": id,
        "name": name,
        "model": name,
        "color": "default",
        "default": current,
        "current": current,
        "heatedBed": machine.is_none_or(|m| m.profile.max_bed_c > 0.0),
        "heatedChamber": false,
        "extruder": { "count": 1, "offsets": [[0.0, 0.0]], "sharedNozzle": false },
        "axes": { "x": axis(speed), "y": axis(speed), "z": axis(720.0), "e": axis(300.0) },
    });
    if let Some([width, depth, height]) = machine.map(|m| m.profile.work_area_mm) {
        profile["volume"] = json!({
            "width": width, "depth": depth, "height": height,
            "formFactor": "rectangular", "origin": "lowerleft", "custom_box": false,
        });
    }
    profile
}

/// Under a printer, its profile, current; at the root, every printer's, and a current
/// "any printer" one (the lab plans where the file goes).
async fn printer_profiles(
    State(state): State<AppState>,
    ctx: Ctx,
    scope: Scope,
) -> AppResult<Json<Value>> {
    ctx.user()?;
    let mut profiles = serde_json::Map::new();
    match &scope.machine {
        Some(m) => {
            let id = printer_key(m);
            profiles.insert(id.clone(), profile(&id, &m.name, true, Some(m)));
        }
        None => {
            for m in state.lab.machines().await?.iter().filter(|m| is_printer(m)) {
                let id = printer_key(m);
                profiles.insert(id.clone(), profile(&id, &m.name, false, Some(m)));
            }
            let any = ctx
                .tr
                .f("octoprint.any_printer", &[("lab", &state.config.lab_name)]);
            profiles.insert("_default".into(), profile("_default", &any, true, None));
        }
    }
    Ok(Json(json!({ "profiles": profiles })))
}

/// OctoPrint's state words for a machine, as its `/api/printer` and `/api/job` say them.
fn state_text(state: MachineState) -> &'static str {
    match state {
        MachineState::Idle | MachineState::ToCheck => "Operational",
        MachineState::Busy => "Printing",
        MachineState::Paused => "Paused",
        MachineState::Error => "Error",
        MachineState::Offline | MachineState::Maintenance | MachineState::Disabled => "Offline",
    }
}

/// The serial link is the lab's: the answer says which state it is in, with no port to
/// choose.
async fn connection(
    State(state): State<AppState>,
    ctx: Ctx,
    scope: Scope,
) -> AppResult<Json<Value>> {
    ctx.user()?;
    let (text, profile, name) = match &scope.machine {
        Some(m) => (state_text(m.state), printer_key(m), m.name.clone()),
        None => (
            "Operational",
            "_default".into(),
            state.config.lab_name.clone(),
        ),
    };
    Ok(Json(json!({
        "current": { "state": text, "port": null, "baudrate": null, "printerProfile": profile },
        "options": { "ports": [], "baudrates": [], "printerProfiles": [{ "id": profile, "name": name }],
                     "portPreference": null, "baudratePreference": null, "printerProfilePreference": profile,
                     "autoconnect": true },
    })))
}

/// A job as OctoPrint's file entry: its name, size, date, links, the analysis (time,
/// filament), how its print went, and Fabrique's own words on where it is.
fn file_entry(links: &Links, job: &Job, waiting: Option<String>) -> Value {
    let name = file_name(job);
    let resource = format!(
        "{}/api/files/local/{}",
        links.api,
        crate::app::percent_encoded(&name, b"-._~")
    );
    let extension = job
        .file_name
        .rsplit_once('.')
        .map_or("gcode", |(_, e)| e)
        .to_ascii_lowercase();
    let gcode = matches!(extension.as_str(), "gcode" | "gco" | "g" | "nc" | "ngc");
    let mut entry = json!({
        "name": name,
        "display": job.file_name,
        "path": name,
        "origin": "local",
        "type": "machinecode",
        "typePath": ["machinecode", if gcode { "gcode".to_string() } else { extension }],
        "size": job.size_bytes,
        "date": job.created_at.as_second(),
        "hash": job.sha256,
        "refs": { "resource": resource, "download": format!("{}/jobs/{}/file", links.site, job.id.0) },
        "fabrique": {
            "job": job.id.0,
            "state": job.state.as_str(),
            "reason": waiting.unwrap_or_else(|| job.state_reason.clone()),
        },
    });
    if let Some(FileSummary::Gcode(summary)) = &job.analysis {
        entry["gcodeAnalysis"] = json!({
            "estimatedPrintTime": job.estimate_s.unwrap_or(summary.estimate_s),
            "filament": { "tool0": { "length": summary.filament_mm, "volume": summary.filament_cm3 } },
        });
    }
    if let Some(finished) = job.finished_at {
        let success = job.state == JobState::Done;
        entry["prints"] = json!({
            "success": u8::from(success),
            "failure": u8::from(!success),
            "last": { "date": finished.as_second(), "success": success },
        });
    }
    entry
}

/// The member's own jobs here (not the cancelled ones: a deleted file is gone), newest first.
async fn own_jobs(state: &AppState, user: &User, scope: &Scope) -> AppResult<Vec<Job>> {
    Ok(state
        .lab
        .own_jobs(user)
        .await?
        .into_iter()
        .filter(|j| j.state != JobState::Cancelled && scope.holds(j))
        .collect())
}

async fn files(State(state): State<AppState>, ctx: Ctx, scope: Scope) -> AppResult<Json<Value>> {
    let user = ctx.user()?;
    let jobs = own_jobs(&state, user, &scope).await?;
    let waiting = state.lab.jobs_waiting(&jobs, now()).await?;
    let links = scope.links(&state);
    let entries: Vec<Value> = jobs
        .iter()
        .zip(&waiting)
        .map(|(job, w)| file_entry(&links, job, w.as_ref().map(|w| ctx.tr.waiting(w))))
        .collect();
    Ok(Json(json!({ "files": entries })))
}

async fn file(
    State(state): State<AppState>,
    ctx: Ctx,
    scope: Scope,
    Path(params): Path<Vec<(String, String)>>,
) -> AppResult<Json<Value>> {
    let user = ctx.user()?;
    let job = own_job(&state, user, &scope, &path_name(&params)).await?;
    let waiting = state.lab.job_waiting(&job, now()).await?;
    Ok(Json(file_entry(
        &scope.links(&state),
        &job,
        waiting.map(|w| ctx.tr.waiting(&w)),
    )))
}

fn path_name(params: &[(String, String)]) -> String {
    params
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct FileCommand {
    command: String,
}

/// `select` (with or without `print`) of a job still waiting: nothing to do, the lab's plan
/// starts it when a printer is free and the rule allows (204, as OctoPrint answers). Of a
/// job already started or ended: 409. Other commands (slice, copy, move): 400.
async fn file_command(
    State(state): State<AppState>,
    ctx: Ctx,
    scope: Scope,
    Path(params): Path<Vec<(String, String)>>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let job = own_job(&state, user, &scope, &path_name(&params)).await?;
    let command: FileCommand = serde_json::from_slice(&body)
        .or_else(|_| serde_urlencoded::from_bytes(&body))
        .map_err(|_| {
            AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "octoprint.bad_command",
            )
        })?;
    match command.command.as_str() {
        "select" | "analyse" => {
            if not_started(job.state) {
                Ok(StatusCode::NO_CONTENT.into_response())
            } else {
                Err(AppError::new(
                    StatusCode::CONFLICT,
                    "job_started",
                    "octoprint.job_started",
                ))
            }
        }
        _ => Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "octoprint.bad_command",
        )),
    }
}

/// Deleting a file withdraws a job that has not started (it is cancelled, and leaves the
/// list); a job started or ended stays in the lab's history: 409.
async fn delete_file(
    State(state): State<AppState>,
    ctx: Ctx,
    scope: Scope,
    Path(params): Path<Vec<(String, String)>>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let job = own_job(&state, user, &scope, &path_name(&params)).await?;
    if !not_started(job.state) {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "job_started",
            "octoprint.job_started",
        ));
    }
    state.lab.cancel_job(user, job.id, now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A job still waiting: submitted, waiting for approval, or queued.
fn not_started(state: JobState) -> bool {
    matches!(
        state,
        JobState::Submitted | JobState::NeedsApproval | JobState::Queued
    )
}

/// OctoPrint's upload: form fields `file`, and optionally `path`, `select`, `print`. The
/// file joins the maker's queue whatever `print` says: the lab's plan decides when it runs.
/// Under a printer, the job is for that printer. A Cura `.ufp` package arrives as its
/// G-code, its picture kept.
async fn upload(
    State(state): State<AppState>,
    ctx: Ctx,
    scope: Scope,
    multipart: Multipart,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let received = crate::upload::receive(
        multipart,
        &state.config.jobs_dir(),
        state.config.max_upload_mb * 1_048_576,
    )
    .await?;
    let machine = scope.machine.as_ref().map(|m| m.id.0.to_string());
    let job = crate::jobs::accept(&state, user, received, machine.as_deref()).await?;
    let entry = file_entry(&scope.links(&state), &job, None);
    let location = entry["refs"]["resource"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let body = json!({
        "done": true,
        "files": { "local": {
            "name": entry["name"],
            "display": entry["display"],
            "path": entry["path"],
            "origin": "local",
            "refs": entry["refs"],
        }},
        "effectiveSelect": false,
        "effectivePrint": false,
    });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

fn live_of(state: &AppState, machine: i64) -> Option<Live> {
    state
        .runtime
        .live()
        .into_iter()
        .find(|l| l.machine == machine)
}

/// The member's current or last job, with its progress and time left. `state` is the
/// job's as OctoPrint would say it: printing or paused only when it is this job that runs.
async fn job(State(state): State<AppState>, ctx: Ctx, scope: Scope) -> AppResult<Json<Value>> {
    let user = ctx.user()?;
    let machine = scope.machine.as_ref().map(|m| m.id);
    let current = state.lab.current_own_job(user, machine).await?;
    let idle = scope
        .machine
        .as_ref()
        .map_or("Operational", |m| match state_text(m.state) {
            "Printing" | "Paused" => "Operational",
            other => other,
        });
    let Some(job) = &current else {
        return Ok(Json(json!({
            "job": { "file": { "name": null, "display": null, "path": null, "origin": null, "size": null, "date": null },
                     "estimatedPrintTime": null, "filament": null, "user": null },
            "progress": { "completion": null, "filepos": null, "printTime": null, "printTimeLeft": null, "printTimeLeftOrigin": null },
            "state": idle,
        })));
    };
    let live = job
        .machine
        .and_then(|m| live_of(&state, m.0))
        .filter(|l| l.job == Some(job.id.0));
    let text = match job.state {
        JobState::Running => "Printing",
        JobState::Paused => "Paused",
        _ => idle,
    };
    let completion = match job.state {
        JobState::Done => Some(100.0),
        JobState::Running | JobState::Paused | JobState::Failed | JobState::Interrupted => Some(
            live.as_ref()
                .map(|l| l.progress * 100.0)
                .unwrap_or_else(|| progress_percent(job)),
        ),
        _ => None,
    };
    let print_time = job.started_at.map(|start| {
        let end = job.finished_at.map_or(now(), |t| t.as_second());
        (end - start.as_second()).max(0)
    });
    let time_left = live.as_ref().and_then(|l| l.remaining_s);
    let waiting = state.lab.job_waiting(job, now()).await?;
    let filament = match &job.analysis {
        Some(FileSummary::Gcode(s)) => {
            json!({ "tool0": { "length": s.filament_mm, "volume": s.filament_cm3 } })
        }
        _ => Value::Null,
    };
    let mut answer = json!({
        "job": {
            "file": { "name": file_name(job), "display": job.file_name, "path": file_name(job), "origin": "local",
                      "size": job.size_bytes, "date": job.created_at.as_second() },
            "estimatedPrintTime": job.estimate_s,
            "filament": filament,
            "user": user.username.as_str(),
        },
        "progress": {
            "completion": completion,
            "filepos": job.started_at.map(|_| job.bytes_acked),
            "printTime": print_time,
            "printTimeLeft": time_left,
            "printTimeLeftOrigin": time_left.map(|_| "estimate"),
        },
        "state": text,
        "fabrique": {
            "job": job.id.0,
            "state": job.state.as_str(),
            "reason": waiting.map_or_else(|| job.state_reason.clone(), |w| ctx.tr.waiting(&w)),
        },
    });
    if matches!(job.state, JobState::Failed | JobState::Interrupted) {
        answer["error"] = json!(job.state_reason);
    }
    Ok(Json(answer))
}

fn progress_percent(job: &Job) -> f64 {
    if job.size_bytes > 0 {
        (job.bytes_acked as f64 * 100.0 / job.size_bytes as f64).min(100.0)
    } else {
        0.0
    }
}

/// A printer's temperatures and state flags. Under a printer, that one; at the root, the
/// printer running (or last given) the member's job, else the lab as a whole: operational
/// when one of its printers is. A printer the lab cannot reach answers 409, as OctoPrint
/// does for a printer not connected.
async fn printer(State(state): State<AppState>, ctx: Ctx, scope: Scope) -> AppResult<Json<Value>> {
    let user = ctx.user()?;
    let machine = match scope.machine {
        Some(m) => Some(m),
        None => {
            let current = state.lab.current_own_job(user, None).await?;
            match current.and_then(|j| j.machine.or(j.target_machine)) {
                Some(id) => Some(state.lab.machine(id).await?),
                None => None,
            }
        }
    };
    let Some(machine) = machine else {
        let up = state
            .lab
            .machines()
            .await?
            .iter()
            .any(|m| is_printer(m) && state_text(m.state) != "Offline");
        let text = if up { "Operational" } else { "Offline" };
        return Ok(Json(
            json!({ "temperature": {}, "sd": { "ready": false }, "state": state_json(text) }),
        ));
    };
    let text = state_text(machine.state);
    if text == "Offline" {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "printer_offline",
            "octoprint.printer_offline",
        )
        .arg("printer", &machine.name));
    }
    let mut temperature = serde_json::Map::new();
    if let Some(live) = live_of(&state, machine.id.0) {
        for (name, reading) in [("tool0", live.hotend), ("bed", live.bed)] {
            if let Some((actual, target)) = reading {
                temperature.insert(
                    name.into(),
                    json!({ "actual": actual, "target": target.unwrap_or(0.0), "offset": 0 }),
                );
            }
        }
    }
    Ok(Json(
        json!({ "temperature": temperature, "sd": { "ready": false }, "state": state_json(text) }),
    ))
}

fn state_json(text: &str) -> Value {
    let is = |t: &str| text == t;
    json!({
        "text": text,
        "flags": {
            "operational": !is("Offline") && !is("Error"),
            "printing": is("Printing"),
            "paused": is("Paused"),
            "pausing": false,
            "cancelling": false,
            "resuming": false,
            "finishing": false,
            "sdReady": false,
            "error": is("Error"),
            "ready": is("Operational"),
            "closedOrError": is("Offline") || is("Error"),
        }
    })
}

/// Sending G-code, moving the head, heating, starting, pausing or cancelling the shared
/// printer, connecting its port: done by a person at the machine, from the workshop board.
/// The body is read first, for the connection to stay usable (see [`login`]).
async fn not_for_members(ctx: Ctx, _scope: Scope, _body: axum::body::Bytes) -> AppResult<Response> {
    ctx.user()?;
    Err(AppError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "octoprint.not_here",
    ))
}
