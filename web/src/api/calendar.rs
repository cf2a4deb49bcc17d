//! Bookings, trainings, sessions, badges and calendar settings in the JSON API.

use super::ErrorBody;
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use fabrique_controller::domain::booking::{Booking, BookingId};
use fabrique_controller::domain::calendar::CalendarSettings;
use fabrique_controller::domain::training::{
    Badge, BadgeId, SessionId, Training, TrainingId, TrainingInput, TrainingSession,
};
use fabrique_controller::domain::{Invalid, MachineId, Role, User, UserId};
use fabrique_controller::lab::now;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bookings", get(my_bookings).post(create_booking))
        .route("/bookings/{id}", axum::routing::delete(cancel_booking))
        .route("/bookings/{id}/check-in", post(check_in))
        .route("/blocks", post(create_block))
        .route("/machines/{id}/bookings", get(machine_bookings))
        .route("/trainings", get(list_trainings).post(create_training))
        .route("/trainings/{id}/sessions", post(create_session))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}/enrolments", post(enrol))
        .route("/sessions/{id}/attendance/{member}", put(attendance))
        .route("/badges", get(my_badges).post(award_badge))
        .route("/badges/{id}/revoke", post(revoke_badge))
        .route("/calendar-settings", get(get_settings).put(put_settings))
}

/// Parses an RFC 3339 time (`2026-11-24T14:00:00+01:00`).
pub fn parse_time(field: &'static str, raw: &str) -> Result<Timestamp, Invalid> {
    raw.trim()
        .parse::<Timestamp>()
        .map_err(|_| Invalid::new(field, "datetime"))
}

#[derive(Serialize, ToSchema)]
pub struct BookingDto {
    pub id: i64,
    pub machine_id: i64,
    pub machine_name: String,
    /// `booking` or `block` (maintenance, group workshop).
    pub kind: String,
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    /// Only shown to managers and to the member who booked.
    pub member_id: Option<i64>,
    pub member_name: Option<String>,
    pub supervised: bool,
    pub note: String,
    /// `booked`, `checked_in`, `cancelled` or `no_show`.
    pub status: String,
}

impl BookingDto {
    pub fn new(b: &Booking, viewer: &User) -> Self {
        let show = viewer.role.at_least(Role::Manager) || b.user == Some(viewer.id);
        Self {
            id: b.id.0,
            machine_id: b.machine.0,
            machine_name: b.machine_name.clone(),
            kind: b.kind.as_str().into(),
            start: b.starts_at.to_string(),
            end: b.ends_at.to_string(),
            member_id: if show { b.user.map(|u| u.0) } else { None },
            member_name: if show { b.user_name.clone() } else { None },
            supervised: b.supervised,
            note: if show { b.note.clone() } else { String::new() },
            status: b.status().as_str().into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingBody {
    pub machine_id: i64,
    /// RFC 3339, e.g. `2026-11-24T14:00:00+01:00`.
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
    /// Book a slot supervised by a trainer, for a member without the badge (if the lab allows it).
    #[serde(default)]
    pub supervised: bool,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub note: String,
    /// Managers book for anyone; members only for themselves.
    pub member_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/bookings", request_body = BookingBody, tag = "bookings",
    responses((status = 201, body = BookingDto), (status = 403, body = ErrorBody, description = "badge_required"),
              (status = 409, body = ErrorBody, description = "slot_taken, own_booking (runs into the same member's booking), machine_unavailable"),
              (status = 422, body = ErrorBody, description = "outside_opening_hours, past_closing, beyond_horizon, too_long, ...")))]
pub async fn create_booking(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(b): Json<BookingBody>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let start = parse_time("start", &b.start)?;
    let end = parse_time("end", &b.end)?;
    let member = b.member_id.map_or(user.id, UserId);
    let booking = state
        .lab
        .book(
            user,
            MachineId(b.machine_id),
            member,
            start,
            end,
            b.supervised,
            &b.note,
            now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(BookingDto::new(&booking, user))).into_response())
}

#[utoipa::path(get, path = "/api/v1/bookings", tag = "bookings", responses((status = 200, body = Vec<BookingDto>)))]
pub async fn my_bookings(
    State(state): State<AppState>,
    ctx: Ctx,
) -> AppResult<Json<Vec<BookingDto>>> {
    let user = ctx.user()?;
    let bookings = state.lab.my_bookings(user, now()).await?;
    Ok(Json(
        bookings.iter().map(|b| BookingDto::new(b, user)).collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/bookings/{id}", tag = "bookings", params(("id" = i64, Path)),
    responses((status = 200, body = BookingDto), (status = 422, body = ErrorBody, description = "cancel_deadline_passed")))]
pub async fn cancel_booking(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<BookingDto>> {
    let user = ctx.user()?;
    Ok(Json(BookingDto::new(
        &state.lab.cancel_booking(user, BookingId(id), now()).await?,
        user,
    )))
}

#[utoipa::path(post, path = "/api/v1/bookings/{id}/check-in", tag = "bookings", params(("id" = i64, Path)),
    responses((status = 200, body = BookingDto)))]
pub async fn check_in(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<BookingDto>> {
    let user = ctx.user()?;
    Ok(Json(BookingDto::new(
        &state.lab.check_in(user, BookingId(id), now()).await?,
        user,
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    pub machine_id: i64,
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
    /// Why the machine is taken (a workshop, maintenance).
    #[schema(min_length = 1, max_length = 200)]
    pub note: String,
}

#[utoipa::path(post, path = "/api/v1/blocks", request_body = BlockBody, tag = "bookings",
    responses((status = 201, body = BookingDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_block(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(b): Json<BlockBody>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let start = parse_time("start", &b.start)?;
    let end = parse_time("end", &b.end)?;
    let block = state
        .lab
        .block(user, MachineId(b.machine_id), start, end, &b.note, now())
        .await?;
    Ok((StatusCode::CREATED, Json(BookingDto::new(&block, user))).into_response())
}

#[derive(Deserialize)]
pub struct RangeQuery {
    pub from: String,
    pub to: String,
}

#[utoipa::path(get, path = "/api/v1/machines/{id}/bookings", tag = "bookings",
    params(("id" = i64, Path), ("from" = String, Query), ("to" = String, Query)),
    responses((status = 200, body = Vec<BookingDto>, description = "Member names only for managers and for one's own bookings")))]
pub async fn machine_bookings(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<RangeQuery>,
) -> AppResult<Json<Vec<BookingDto>>> {
    let user = ctx.user()?;
    let (from, to) = (parse_time("from", &q.from)?, parse_time("to", &q.to)?);
    if to.as_second() - from.as_second() > 62 * 86_400 || to <= from {
        return Err(Invalid::new("to", "range_too_long").into());
    }
    state.lab.machine(MachineId(id)).await?;
    let bookings = state
        .lab
        .bookings_between(Some(MachineId(id)), from, to, now())
        .await?;
    Ok(Json(
        bookings
            .iter()
            .filter(|b| b.is_live())
            .map(|b| BookingDto::new(b, user))
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct TrainingDto {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub validity_months: u32,
    pub lapse_months: Option<u32>,
    pub machine_ids: Vec<i64>,
}

impl From<&Training> for TrainingDto {
    fn from(t: &Training) -> Self {
        Self {
            id: t.id.0,
            name: t.name.clone(),
            description: t.description.clone(),
            validity_months: t.validity_months,
            lapse_months: t.lapse_months,
            machine_ids: t.machines.iter().map(|m| m.0).collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingBody {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: String,
    #[schema(minimum = 1, maximum = 120)]
    pub validity_months: u32,
    #[schema(minimum = 1, maximum = 120)]
    pub lapse_months: Option<u32>,
    #[serde(default)]
    pub machine_ids: Vec<i64>,
}

#[utoipa::path(get, path = "/api/v1/trainings", tag = "trainings", responses((status = 200, body = Vec<TrainingDto>)))]
pub async fn list_trainings(
    State(state): State<AppState>,
    ctx: Ctx,
) -> AppResult<Json<Vec<TrainingDto>>> {
    ctx.user()?;
    Ok(Json(
        state
            .lab
            .trainings()
            .await?
            .iter()
            .map(TrainingDto::from)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/trainings", request_body = TrainingBody, tag = "trainings",
    responses((status = 201, body = TrainingDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_training(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(b): Json<TrainingBody>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let input = TrainingInput::parse(
        &b.name,
        &b.description,
        &b.validity_months.to_string(),
        &b.lapse_months.map(|m| m.to_string()).unwrap_or_default(),
        b.machine_ids.into_iter().map(MachineId).collect(),
    )?;
    let training = state.lab.save_training(user, None, &input, now()).await?;
    Ok((StatusCode::CREATED, Json(TrainingDto::from(&training))).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct SessionDto {
    pub id: i64,
    pub training_id: i64,
    pub training_name: String,
    pub start: String,
    pub end: String,
    pub trainer_name: String,
    pub capacity: u32,
    pub enrolled: u32,
    pub waiting: u32,
    pub location: String,
}

impl From<&TrainingSession> for SessionDto {
    fn from(s: &TrainingSession) -> Self {
        Self {
            id: s.id.0,
            training_id: s.training.0,
            training_name: s.training_name.clone(),
            start: s.starts_at.to_string(),
            end: s.ends_at.to_string(),
            trainer_name: s.trainer_name.clone(),
            capacity: s.capacity,
            enrolled: s.enrolled,
            waiting: s.waiting,
            location: s.location.clone(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionBody {
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
    #[schema(minimum = 1, maximum = 100)]
    pub capacity: u32,
    #[serde(default)]
    pub location: String,
    /// Managers may name another trainer; a trainer leads their own sessions.
    pub trainer_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/trainings/{id}/sessions", request_body = SessionBody, tag = "trainings", params(("id" = i64, Path)),
    responses((status = 201, body = SessionDto), (status = 403, body = ErrorBody)))]
pub async fn create_session(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(b): Json<SessionBody>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let start = parse_time("start", &b.start)?;
    let end = parse_time("end", &b.end)?;
    let session = state
        .lab
        .create_session(
            user,
            TrainingId(id),
            start,
            end,
            b.trainer_id.map(UserId),
            b.capacity,
            &b.location,
            now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(SessionDto::from(&session))).into_response())
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "trainings", responses((status = 200, body = Vec<SessionDto>)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    ctx: Ctx,
) -> AppResult<Json<Vec<SessionDto>>> {
    ctx.user()?;
    Ok(Json(
        state
            .lab
            .upcoming_sessions(now(), None)
            .await?
            .iter()
            .map(SessionDto::from)
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// Managers enrol anyone; members enrol themselves (leave it out).
    pub member_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct EnrolmentDto {
    /// `enrolled` or `waiting`.
    pub status: String,
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/enrolments", request_body = EnrolBody, tag = "trainings", params(("id" = i64, Path)),
    responses((status = 201, body = EnrolmentDto), (status = 409, body = ErrorBody)))]
pub async fn enrol(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(b): Json<EnrolBody>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let status = state
        .lab
        .enrol(
            user,
            SessionId(id),
            b.member_id.map_or(user.id, UserId),
            now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnrolmentDto {
            status: status.as_str().into(),
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttendanceBody {
    pub attended: bool,
}

#[utoipa::path(put, path = "/api/v1/sessions/{id}/attendance/{member}", request_body = AttendanceBody, tag = "trainings",
    params(("id" = i64, Path), ("member" = i64, Path)), responses((status = 204), (status = 403, body = ErrorBody)))]
pub async fn attendance(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, member)): Path<(i64, i64)>,
    Json(b): Json<AttendanceBody>,
) -> AppResult<StatusCode> {
    state
        .lab
        .set_attendance(
            ctx.user()?,
            SessionId(id),
            UserId(member),
            b.attended,
            now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct BadgeDto {
    pub id: i64,
    pub member_id: i64,
    pub training_id: i64,
    pub training_name: String,
    pub awarded_at: String,
    pub expires_at: String,
    /// The end of validity, counting lapses for lack of use.
    pub valid_until: String,
    /// `valid`, `expiring_soon`, `expired`, `lapsed` or `revoked`.
    pub status: String,
    pub revoke_reason: Option<String>,
    /// Public verification page; `credential_url` is the Open Badges 3.0 credential.
    pub url: String,
    pub credential_url: String,
    /// The credential signed by the lab (VC-JWT, `application/vc+jwt`), and a PNG of the
    /// badge with it baked in; both answer 410 once the badge is withdrawn.
    pub signed_credential_url: String,
    pub baked_png_url: String,
}

impl BadgeDto {
    pub fn new(b: &Badge, base: &str) -> Self {
        let url = format!("{base}/badges/{}", b.public_token);
        Self {
            id: b.id.0,
            member_id: b.user.0,
            training_id: b.training.0,
            training_name: b.training_name.clone(),
            awarded_at: b.awarded_at.to_string(),
            expires_at: b.expires_at.to_string(),
            valid_until: b.valid_until().to_string(),
            status: b.status(Timestamp::now()).as_str().into(),
            revoke_reason: b.revoke_reason.clone(),
            credential_url: format!("{url}/credential.json"),
            signed_credential_url: format!("{url}/credential.jwt"),
            baked_png_url: format!("{url}/badge.png"),
            url,
        }
    }
}

#[derive(Deserialize)]
pub struct BadgesQuery {
    pub member_id: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/badges", tag = "trainings", params(("member_id" = Option<i64>, Query)),
    responses((status = 200, body = Vec<BadgeDto>)))]
pub async fn my_badges(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<BadgesQuery>,
) -> AppResult<Json<Vec<BadgeDto>>> {
    let user = ctx.user()?;
    let base = crate::pages::base_url(&state);
    let badges = state
        .lab
        .badges_of(user, q.member_id.map_or(user.id, UserId))
        .await?;
    Ok(Json(
        badges.iter().map(|b| BadgeDto::new(b, &base)).collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AwardBody {
    pub member_id: i64,
    pub training_id: i64,
    pub session_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/badges", request_body = AwardBody, tag = "trainings",
    responses((status = 201, body = BadgeDto), (status = 403, body = ErrorBody)))]
pub async fn award_badge(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(b): Json<AwardBody>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let badge = state
        .lab
        .award_badge(
            user,
            UserId(b.member_id),
            TrainingId(b.training_id),
            b.session_id.map(SessionId),
            now(),
        )
        .await?;
    let base = crate::pages::base_url(&state);
    Ok((StatusCode::CREATED, Json(BadgeDto::new(&badge, &base))).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[schema(min_length = 1, max_length = 300)]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/badges/{id}/revoke", request_body = RevokeBody, tag = "trainings", params(("id" = i64, Path)),
    responses((status = 200, body = BadgeDto), (status = 403, body = ErrorBody)))]
pub async fn revoke_badge(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(b): Json<RevokeBody>,
) -> AppResult<Json<BadgeDto>> {
    let badge = state
        .lab
        .revoke_badge(ctx.user()?, BadgeId(id), &b.reason, now())
        .await?;
    Ok(Json(BadgeDto::new(&badge, &crate::pages::base_url(&state))))
}

#[utoipa::path(get, path = "/api/v1/calendar-settings", tag = "bookings", responses((status = 200, description = "The lab's calendar settings")))]
pub async fn get_settings(State(state): State<AppState>, ctx: Ctx) -> AppResult<Json<Value>> {
    ctx.user()?;
    settings_json(&state.lab.calendar_settings().await?)
}

fn settings_json(settings: &CalendarSettings) -> AppResult<Json<Value>> {
    serde_json::to_value(settings)
        .map(Json)
        .map_err(|e| AppError::internal("settings", &e))
}

#[utoipa::path(put, path = "/api/v1/calendar-settings", tag = "bookings", responses((status = 200), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_settings(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<Value>,
) -> AppResult<Json<Value>> {
    let user = ctx.require(Role::Manager)?;
    let settings: CalendarSettings = serde_json::from_value(body)
        .map_err(|_| AppError::from_status(StatusCode::UNPROCESSABLE_ENTITY))?;
    state.lab.set_calendar_settings(user, &settings).await?;
    settings_json(&state.lab.calendar_settings().await?)
}
