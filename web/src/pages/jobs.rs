//! Sending a file and following it: the upload form (multipart, works without JavaScript),
//! the list of jobs, and a job's page with its analysis, progress and history.

use super::{Page, done, message, render, render_with_status};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fabrique_controller::domain::job::{Job, JobId, JobState};
use fabrique_controller::domain::{Role, User};
use fabrique_controller::job_files;
use fabrique_controller::lab::now;
use fabrique_machines::files::FileSummary;

pub fn router(max_upload: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/jobs",
            get(list)
                .post(upload)
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .route("/jobs/{id}", get(show))
        .route("/jobs/{id}/events", get(events))
        .route("/jobs/{id}/preview.svg", get(preview))
        .route("/jobs/{id}/thumbnail.png", get(thumbnail))
        .route("/jobs/{id}/file", get(original))
        .route("/jobs/{id}/design.dst", get(as_dst))
        .route("/jobs/{id}/approve", post(approve))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/requeue", post(requeue))
        .route("/jobs/{id}/priority", post(priority))
}

/// "1 h 43 min", "14 min", "40 s".
pub fn duration(seconds: i64) -> String {
    match seconds {
        s if s >= 3600 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

struct JobRow {
    id: i64,
    file_name: String,
    owner: String,
    state: String,
    /// The state's code, for the page's live updates.
    state_code: &'static str,
    reason: String,
    estimate: String,
    size: String,
    percent: i64,
    can_approve: bool,
    can_cancel: bool,
    can_requeue: bool,
    can_prioritise: bool,
    priority: i32,
    has_preview: bool,
    has_thumbnail: bool,
    embroidery: bool,
    file_deleted: bool,
}

fn row(tr: &Tr, j: &Job, viewer: &User, jobs_dir: &std::path::Path) -> JobRow {
    let manager = viewer.role.at_least(Role::Manager);
    let mine = j.owner == viewer.id;
    JobRow {
        id: j.id.0,
        file_name: j.file_name.clone(),
        owner: j.owner_name.clone(),
        state: tr.word("job_state", j.state.as_str()),
        state_code: j.state.as_str(),
        reason: j.state_reason.clone(),
        estimate: j
            .estimate_s
            .map_or_else(|| tr.t("jobs.unknown").to_string(), duration),
        size: format!("{:.1} Mo", j.size_bytes as f64 / 1_048_576.0),
        percent: percent(j),
        can_approve: manager && j.state == JobState::NeedsApproval,
        can_cancel: (manager || mine)
            && j.state.change_to(JobState::Cancelled).is_ok()
            && !matches!(j.state, JobState::Running | JobState::Paused),
        can_prioritise: manager && matches!(j.state, JobState::Queued | JobState::NeedsApproval),
        priority: j.priority,
        can_requeue: (manager || mine)
            && j.state.change_to(JobState::Queued).is_ok()
            && j.state.is_finished()
            && !j.file_deleted,
        has_preview: job_files::preview_path(jobs_dir, &j.stored_name).exists(),
        has_thumbnail: job_files::thumbnail_path(jobs_dir, &j.stored_name).exists(),
        file_deleted: j.file_deleted,
        embroidery: matches!(j.analysis, Some(FileSummary::Embroidery(_))),
    }
}

/// How much of the file the machine acknowledged, in percent.
fn percent(j: &Job) -> i64 {
    if j.size_bytes > 0 {
        (j.bytes_acked * 100 / j.size_bytes).min(100)
    } else {
        0
    }
}

/// Where a queued job stands, in words: its place in the queue, its planned start, and why
/// it has not started yet when the rule lets it run.
struct QueueView {
    place: String,
    start: Option<String>,
    why: Option<String>,
}

fn queue_view(
    tr: &Tr,
    settings: &fabrique_controller::domain::calendar::CalendarSettings,
    q: &fabrique_controller::runtime::QueuePlace,
    at: jiff::Timestamp,
) -> QueueView {
    let place = tr.f(
        "jobs.queue_place",
        &[
            ("place", &q.place.to_string()),
            ("count", &q.of.to_string()),
        ],
    );
    let Some((start, machine)) = &q.start else {
        return QueueView {
            place,
            start: None,
            why: None,
        };
    };
    let soon = start.as_second() <= at.as_second() + 60;
    let open_now = settings
        .windows(settings.local_date(at))
        .iter()
        .any(|(open, close)| *open <= at && at < *close);
    let why = match (soon, q.needs_person) {
        (true, true) => "jobs.wait_person",
        (true, false) => "jobs.wait_starting",
        (false, _) if !open_now => "jobs.wait_closed",
        (false, _) => "jobs.wait_turn",
    };
    let when = format!(
        "{}, {}",
        super::calendar::day_label(tr, settings.local_date(*start)),
        settings.clock(*start)
    );
    QueueView {
        place,
        start: Some(tr.f(
            "jobs.planned_start",
            &[("when", &when), ("machine", machine)],
        )),
        why: Some(tr.t(why).to_string()),
    }
}

/// The job's page follows it live: an event each time its state or progress changes (after
/// any machine's event, or every 20 s for changes no machine reports, such as an approval).
async fn events(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<impl IntoResponse> {
    let user = ctx.user()?.clone();
    let job = state.lab.job(&user, JobId(id)).await?;
    let last = (job.state, percent(&job));
    let receiver = state.runtime.subscribe();
    let stream = futures_util::stream::unfold(
        (receiver, last, state, user),
        move |(mut receiver, mut last, state, user)| async move {
            loop {
                // A machine's event or 20 s of silence: look at the job again. A slow reader
                // that lagged looks again too; a closed channel (shutdown) ends the stream.
                let heard =
                    tokio::time::timeout(std::time::Duration::from_secs(20), receiver.recv()).await;
                if let Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) = heard {
                    return None;
                }
                let Ok(job) = state.lab.job(&user, JobId(id)).await else {
                    return None;
                };
                let now = (job.state, percent(&job));
                if now == last {
                    continue;
                }
                last = now;
                let event = Event::default()
                    .event("job")
                    .json_data(serde_json::json!({
                        "state": job.state.as_str(),
                        "percent": now.1,
                    }))
                    .unwrap_or_default();
                return Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (receiver, last, state, user),
                ));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What the analysis says of the file, in a few facts.
fn details(tr: &Tr, job: &Job) -> Vec<(String, String)> {
    let mut facts = Vec::new();
    match &job.analysis {
        None => {}
        Some(FileSummary::Embroidery(e)) => {
            facts.push((tr.t("jobs.stitches").to_string(), e.stitches.to_string()));
            facts.push((
                tr.t("jobs.design_size").to_string(),
                format!("{:.1} × {:.1} mm", e.width_mm, e.height_mm),
            ));
            let colors: Vec<String> = e
                .colors
                .iter()
                .map(|t| t.name.clone().unwrap_or_else(|| t.hex()))
                .collect();
            if !colors.is_empty() {
                facts.push((tr.t("jobs.colors").to_string(), colors.join(", ")));
            }
            if let Some(hoop) = e.hoop_fit.as_ref().and_then(|f| f.smallest) {
                facts.push((
                    tr.t("jobs.hoop").to_string(),
                    format!("{:.0} × {:.0} mm", hoop.width_mm, hoop.height_mm),
                ));
            }
        }
        Some(FileSummary::Hpgl(h)) => {
            facts.push((
                tr.t("jobs.cut_size").to_string(),
                format!("{:.1} × {:.1} mm", h.width_mm, h.height_mm),
            ));
            facts.push((
                tr.t("jobs.cut_length").to_string(),
                format!(
                    "{:.2} m, {}",
                    h.cut_mm / 1000.0,
                    tr.n("jobs.strokes", h.strokes as i64, &[])
                ),
            ));
        }
        Some(FileSummary::Gcode(g)) => {
            if g.filament_mm > 0.0 {
                // The filament types the slicer was set for, when it says: "PLA, 2.51 m (7 g)".
                let materials: String = job.materials().iter().map(|m| format!("{m}, ")).collect();
                facts.push((
                    tr.t("jobs.filament").to_string(),
                    format!(
                        "{materials}{:.2} m ({:.0} g), {} {}",
                        g.filament_mm / 1000.0,
                        g.filament_g,
                        g.layers,
                        tr.t("jobs.layers")
                    ),
                ));
            }
            if let Some(laser) = &g.laser {
                facts.push((
                    tr.t("jobs.laser_on").to_string(),
                    duration(laser.on_time_s.round() as i64),
                ));
            }
            // Where the estimate's time goes, and whose speed limits it used.
            let t = &g.time;
            let mut parts = vec![tr.f(
                "jobs.time_motion",
                &[("d", &duration(t.moves_s.round() as i64))],
            )];
            if t.heating_s > 0.0 {
                parts.push(tr.f(
                    "jobs.time_heating",
                    &[("d", &duration(t.heating_s.round() as i64))],
                ));
            }
            if t.dwell_s > 0.0 {
                parts.push(tr.f(
                    "jobs.time_dwell",
                    &[("d", &duration(t.dwell_s.round() as i64))],
                ));
            }
            if g.pauses + g.filament_changes > 0 {
                parts.push(tr.f(
                    "jobs.time_stops",
                    &[("n", &(g.pauses + g.filament_changes).to_string())],
                ));
            }
            facts.push((tr.t("jobs.time_parts").to_string(), parts.join(", ")));
            facts.push((tr.t("jobs.limits").to_string(), tr.limits_used(g.limits)));
            if let Some((slicer, estimate)) =
                g.slicer.as_ref().and_then(|s| s.estimate_s.map(|e| (s, e)))
            {
                facts.push((
                    tr.f("jobs.slicer_estimate", &[("slicer", &slicer.name)]),
                    duration(estimate),
                ));
            }
        }
    }
    facts
}

/// A job's picture (the preview drawn by Fabrique, or the slicer's thumbnail), to whoever
/// may see the job. The SVG is Fabrique's own drawing; it is still served so that no
/// script could run from it.
async fn picture(state: &AppState, ctx: &Ctx, id: i64, svg: bool) -> AppResult<Response> {
    let job = state.lab.job(ctx.user()?, JobId(id)).await?;
    let dir = state.config.jobs_dir();
    let (path, content_type) = if svg {
        (
            job_files::preview_path(&dir, &job.stored_name),
            "image/svg+xml",
        )
    } else {
        (
            job_files::thumbnail_path(&dir, &job.stored_name),
            "image/png",
        )
    };
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| AppError::not_found())?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

/// The job's file as it was sent, for a machine without a data link (a USB stick).
async fn original(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let job = state.lab.job(ctx.user()?, JobId(id)).await?;
    let file = tokio::fs::File::open(state.config.jobs_dir().join(&job.stored_name))
        .await
        .map_err(|_| AppError::not_found())?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                crate::app::attachment(&job.file_name),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

/// An embroidery job's design as Tajima DST, which every machine reads: the design itself
/// when it is a DST, else its copy, written once and kept (`Lab::dst_file`), streamed.
async fn as_dst(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let job = state.lab.job(user, JobId(id)).await?;
    let path = state
        .lab
        .dst_file(user, JobId(id), &state.config.jobs_dir())
        .await?
        .ok_or_else(AppError::not_found)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| AppError::not_found())?;
    let stem = job
        .file_name
        .rsplit_once('.')
        .map_or(job.file_name.as_str(), |(stem, _)| stem);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                crate::app::attachment(&format!("{stem}.dst")),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

async fn preview(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    picture(&state, &ctx, id, true).await
}

async fn thumbnail(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    picture(&state, &ctx, id, false).await
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    p: Page,
    error: Option<String>,
    jobs: Vec<JobRow>,
    machines: Vec<(i64, String)>,
}

async fn jobs_page(state: &AppState, ctx: &Ctx, error: Option<String>) -> AppResult<JobsPage> {
    let user = ctx.user()?;
    let jobs = state.lab.jobs_for(user).await?;
    let waiting = state.lab.jobs_waiting(&jobs, now()).await?;
    let hidden = super::links_to_hide(state, ctx).await?;
    let jobs = jobs
        .iter()
        .zip(&waiting)
        .map(|(j, w)| {
            let mut row = row(&ctx.tr, j, user, &state.config.jobs_dir());
            row.reason = super::without_any_links(&row.reason, &hidden);
            // A job that waits says why, in the rule's words.
            if let Some(w) = w {
                row.reason = ctx.tr.waiting(w);
            }
            row
        })
        .collect();
    let machines = state
        .lab
        .machines()
        .await?
        .into_iter()
        .map(|m| (m.id.0, m.name))
        .collect();
    Ok(JobsPage {
        p: Page::new(ctx, "jobs.title", "jobs", "/jobs"),
        error,
        jobs,
        machines,
    })
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    Ok(render(&jobs_page(&state, &ctx, None).await?)?.into_response())
}

async fn upload(
    State(state): State<AppState>,
    ctx: Ctx,
    multipart: Multipart,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let result = async {
        let received = crate::upload::receive(
            multipart,
            &state.config.jobs_dir(),
            state.config.max_upload_mb * 1_048_576,
        )
        .await?;
        let machine = received.fields.get("machine_id").cloned();
        crate::jobs::accept(&state, user, received, machine.as_deref()).await
    }
    .await;
    match result {
        Ok(job) => Ok(done(
            &ctx,
            &format!("/jobs/{}", job.id.0),
            "notice.job_sent",
            &[("file", &job.file_name)],
        )),
        Err(e) if e.shown_on_the_form() => {
            let page = jobs_page(&state, &ctx, Some(message(&ctx.tr, &e))).await?;
            Ok(render_with_status(e.status, &page))
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    p: Page,
    error: Option<String>,
    j: JobRow,
    /// Why no machine may run it yet, in the rule's words.
    waiting: Option<String>,
    /// Its place in the queue and planned start, when queued.
    queue: Option<QueueView>,
    /// Whether the page follows the job live (not finished yet).
    live: bool,
    /// Who approved it, when, what they saw.
    approval: Vec<String>,
    findings: Vec<String>,
    details: Vec<(String, String)>,
    history: Vec<String>,
    priorities: Vec<i32>,
}

/// The file's findings in the reader's language, each with its line.
fn findings(tr: &Tr, job: &Job) -> Vec<String> {
    let issues = job.analysis.as_ref().map_or(&[][..], FileSummary::issues);
    issues
        .iter()
        .map(|f| {
            let text = if tr.lang_code() == "en" {
                &f.message.en
            } else {
                &f.message.fr
            };
            tr.f(
                "jobs.finding_line",
                &[("line", &f.line.to_string()), ("text", text)],
            )
        })
        .collect()
}

async fn show(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let user = ctx.user()?;
    let job = state.lab.job(user, JobId(id)).await?;
    let events = state.lab.job_events(user, job.id).await?;
    let hidden = super::links_to_hide(&state, &ctx).await?;
    let settings = state.lab.calendar_settings().await?;
    let tz = settings.tz();
    let history = events
        .iter()
        .map(|e| {
            let when =
                e.at.to_zoned(tz.clone())
                    .strftime("%d/%m/%Y %H:%M")
                    .to_string();
            let who = e.actor_name.clone().unwrap_or_else(|| "Fabrique".into());
            let note = if e.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", super::without_any_links(&e.note, &hidden))
            };
            format!(
                "{when} · {} · {who}{note}",
                ctx.tr.word("job_state", e.to.as_str())
            )
        })
        .collect();
    let waiting = state.lab.job_waiting(&job, now()).await?;
    let tr = &ctx.tr;
    let queue = if job.state == JobState::Queued {
        let planned = state.runtime.plan().await?;
        planned
            .place_of(job.id)
            .map(|q| queue_view(tr, &settings, &q, planned.now))
    } else {
        None
    };
    let approval = job.approval.as_ref().map_or_else(Vec::new, |a| {
        let when =
            a.at.to_zoned(tz.clone())
                .strftime("%d/%m/%Y %H:%M")
                .to_string();
        let mut lines = vec![tr.f("jobs.approved", &[("name", &a.by_name), ("when", &when)])];
        if !a.seen.is_empty() {
            let seen: Vec<String> = a.seen.iter().map(|c| tr.word("finding", c)).collect();
            lines.push(tr.f("jobs.approved_seen", &[("codes", &seen.join(" ; "))]));
        }
        if a.supervised {
            lines.push(tr.t("jobs.approved_supervised").to_string());
        }
        lines
    });
    let mut j = row(tr, &job, user, &state.config.jobs_dir());
    j.reason = super::without_any_links(&j.reason, &hidden);
    // A queued job also waits for a manager when an approval is what it lacks.
    j.can_approve |= user.role.at_least(Role::Manager)
        && job.state == JobState::Queued
        && waiting.as_ref().is_some_and(|w| w.approvable());
    let mut p = Page::new(&ctx, "jobs.title", "jobs", &format!("/jobs/{id}"));
    p.title = job.file_name.clone();
    let page = JobPage {
        waiting: waiting.as_ref().map(|w| tr.waiting(w)),
        queue,
        live: !job.state.is_finished(),
        approval,
        p,
        error: None,
        findings: findings(tr, &job),
        details: details(tr, &job),
        j,
        history,
        priorities: (-10..=10).rev().collect(),
    };
    Ok(render(&page)?.into_response())
}

async fn approve(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let job = state.lab.approve_job(ctx.user()?, JobId(id), now()).await?;
    state.runtime.wake();
    Ok(job_done(&ctx, id, "notice.job_approved", &job))
}

/// Back to the job's page, saying what was done to it.
fn job_done(ctx: &Ctx, id: i64, key: &str, job: &Job) -> Response {
    done(
        ctx,
        &format!("/jobs/{id}"),
        key,
        &[("file", &job.file_name)],
    )
}

async fn cancel(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let job = state.lab.cancel_job(ctx.user()?, JobId(id), now()).await?;
    Ok(job_done(&ctx, id, "notice.job_cancelled", &job))
}

async fn requeue(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let job = state.lab.requeue_job(ctx.user()?, JobId(id), now()).await?;
    state.runtime.wake();
    Ok(job_done(&ctx, id, "notice.job_requeued", &job))
}

#[derive(serde::Deserialize)]
struct PriorityForm {
    priority: i32,
}

/// A manager moves a job up or down the queue (higher goes first).
async fn priority(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<PriorityForm>,
) -> AppResult<Response> {
    state
        .lab
        .set_job_priority(ctx.user()?, JobId(id), f.priority)
        .await?;
    state.runtime.wake();
    Ok(done(&ctx, &format!("/jobs/{id}"), "notice.saved", &[]))
}
