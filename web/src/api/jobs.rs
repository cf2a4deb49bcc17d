//! Jobs in the JSON API.

use super::ErrorBody;
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fabrique_controller::domain::fit::Waiting;
use fabrique_controller::domain::job::{Job, JobId};
use fabrique_controller::lab::now;
use serde::Serialize;
use utoipa::ToSchema;

/// Routes under `/api/v1`.
pub fn router(max_upload: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/jobs",
            get(list_jobs)
                .post(upload_job)
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/approve", post(approve_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/requeue", post(requeue_job))
        .route("/jobs/{id}/start", post(start_job))
}

#[derive(Serialize, ToSchema)]
pub struct JobDto {
    pub id: i64,
    pub file_name: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub owner_id: i64,
    /// `submitted`, `needs_approval`, `queued`, `running`, `paused`, `done`, `failed`,
    /// `cancelled` or `interrupted`.
    pub state: String,
    pub state_reason: String,
    pub target_machine_id: Option<i64>,
    pub machine_id: Option<i64>,
    pub priority: i32,
    pub estimate_s: Option<i64>,
    /// The file analysis (kind, estimate, material, size, findings, what it asks of a
    /// machine); absent when the file could not be read.
    pub analysis: Option<serde_json::Value>,
    /// Why no machine may run it yet (a queued job, or one waiting for approval), with the
    /// rule's stable code.
    pub waiting: Option<WaitingDto>,
    /// A manager's approval since the job was last queued.
    pub approval: Option<ApprovalDto>,
    pub lines_acked: i64,
    pub bytes_acked: i64,
    /// Acknowledged bytes over the file size, 0 to 100.
    pub progress_percent: f64,
    pub created_at: String,
    /// The solidarity campaign this job prints for (planned after members' jobs).
    pub campaign_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct WaitingDto {
    /// `hotend_too_hot`, `badge_required`, `approval_needed`, `no_machine_of_kind`, ...
    pub code: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApprovalDto {
    pub by_id: i64,
    pub by_name: String,
    pub at: String,
    /// The codes of what the manager saw.
    pub seen: Vec<String>,
    /// The owner has no badge: a trainer or manager starts it at the machine.
    pub supervised: bool,
}

impl JobDto {
    /// The job as the API shows it, with why it waits in `tr`'s language.
    pub fn new(j: &Job, waiting: Option<&Waiting>, tr: &Tr) -> Self {
        Self {
            waiting: waiting.map(|w| WaitingDto {
                code: w.code().into(),
                message: tr.waiting(w),
            }),
            ..Self::from(j)
        }
    }
}

impl From<&Job> for JobDto {
    fn from(j: &Job) -> Self {
        Self {
            waiting: None,
            approval: j.approval.as_ref().map(|a| ApprovalDto {
                by_id: a.by.0,
                by_name: a.by_name.clone(),
                at: a.at.to_string(),
                seen: a.seen.clone(),
                supervised: a.supervised,
            }),
            id: j.id.0,
            file_name: j.file_name.clone(),
            size_bytes: j.size_bytes,
            sha256: j.sha256.clone(),
            owner_id: j.owner.0,
            state: j.state.as_str().into(),
            state_reason: j.state_reason.clone(),
            target_machine_id: j.target_machine.map(|m| m.0),
            machine_id: j.machine.map(|m| m.0),
            priority: j.priority,
            estimate_s: j.estimate_s,
            analysis: j
                .analysis
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok()),
            lines_acked: j.lines_acked,
            bytes_acked: j.bytes_acked,
            progress_percent: if j.size_bytes > 0 {
                (j.bytes_acked as f64 * 100.0 / j.size_bytes as f64).min(100.0)
            } else {
                0.0
            },
            created_at: j.created_at.to_string(),
            campaign_id: j.campaign.map(|c| c.0),
        }
    }
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobUpload {
    /// The G-code or embroidery file.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    pub file: String,
    /// The machine to run it on; any compatible one when absent.
    pub machine_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body(content = JobUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = JobDto), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload_job(
    State(state): State<AppState>,
    ctx: Ctx,
    multipart: Multipart,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let received = crate::upload::receive(
        multipart,
        &state.config.jobs_dir(),
        state.config.max_upload_mb * 1_048_576,
    )
    .await?;
    let machine = received.fields.get("machine_id").cloned();
    let job = crate::jobs::accept(&state, user, received, machine.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(dto(&state, &ctx, &job).await?)).into_response())
}

/// A job as the API shows it, with why it waits.
async fn dto(state: &AppState, ctx: &Ctx, job: &Job) -> AppResult<JobDto> {
    let waiting = state.lab.job_waiting(job, now()).await?;
    let hidden = crate::pages::links_to_hide(state, ctx).await?;
    let mut dto = JobDto::new(job, waiting.as_ref(), &ctx.tr);
    dto.state_reason = crate::pages::without_any_links(&dto.state_reason, &hidden);
    Ok(dto)
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", responses((status = 200, body = Vec<JobDto>)))]
pub async fn list_jobs(State(state): State<AppState>, ctx: Ctx) -> AppResult<Json<Vec<JobDto>>> {
    let jobs = state.lab.jobs_for(ctx.user()?).await?;
    let waiting = state.lab.jobs_waiting(&jobs, now()).await?;
    let hidden = crate::pages::links_to_hide(&state, &ctx).await?;
    Ok(Json(
        jobs.iter()
            .zip(&waiting)
            .map(|(j, w)| {
                let mut dto = JobDto::new(j, w.as_ref(), &ctx.tr);
                dto.state_reason = crate::pages::without_any_links(&dto.state_reason, &hidden);
                dto
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<JobDto>> {
    let job = state.lab.job(ctx.user()?, JobId(id)).await?;
    Ok(Json(dto(&state, &ctx, &job).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/approve", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobDto), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn approve_job(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<JobDto>> {
    let job = state.lab.approve_job(ctx.user()?, JobId(id), now()).await?;
    state.runtime.wake();
    Ok(Json(dto(&state, &ctx, &job).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobDto), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<JobDto>> {
    let job = state.lab.cancel_job(ctx.user()?, JobId(id), now()).await?;
    Ok(Json(dto(&state, &ctx, &job).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/requeue", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobDto), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn requeue_job(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<JobDto>> {
    let job = state.lab.requeue_job(ctx.user()?, JobId(id), now()).await?;
    state.runtime.wake();
    Ok(Json(dto(&state, &ctx, &job).await?))
}

#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The machine the person is standing at.
    pub machine_id: i64,
}

/// A trainer or manager at a machine starts a queued job on it, as from the workshop
/// board: the fit rule decides, the answer says why not.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/start", request_body = StartBody, tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_job(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(body): Json<StartBody>,
) -> AppResult<Json<JobDto>> {
    let user = ctx.require(fabrique_controller::domain::Role::Trainer)?;
    let machine = fabrique_controller::domain::MachineId(body.machine_id);
    state.lab.machine(machine).await?;
    state
        .runtime
        .start_job(machine, JobId(id), user)
        .await
        .map_err(AppError::from)?;
    let job = state.lab.job(user, JobId(id)).await?;
    Ok(Json(dto(&state, &ctx, &job).await?))
}
