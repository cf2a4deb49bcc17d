//! The JSON API under `/api/v1`, for members, machines and the lab's own scripts.
//! Authenticated by the session cookie or a personal API key in `X-Api-Key`; errors are
//! `{"error": {"code", "message"}}`. The OpenAPI 3.1 document is generated from these
//! handlers and types and served at `/api/v1/openapi.json`.

use crate::app::AppState;
use crate::ctx::{Ctx, SESSION_COOKIE};
use crate::error::AppResult;
use crate::pages::MachineFields;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use fabrique_controller::domain::account::{parse_email, parse_text};
use fabrique_controller::domain::machine::{JunctionRule, MillCoolant};
use fabrique_controller::domain::{
    Connection, CredentialKind, Invalid, Lang, Machine, MachineId, MachineState, NewUser, Role,
    Secret, User, UserId, UserPatch,
};
use fabrique_controller::lab::now;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::{OpenApi, ToSchema};

mod calendar;
mod campaigns;
mod jobs;
pub mod octoprint;
mod panel;
pub use calendar::parse_time;

pub fn router(max_upload: usize) -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me).patch(update_me))
        .route("/me/api-keys", get(my_api_keys).post(create_api_key))
        .route("/me/api-keys/{key_id}", delete(revoke_my_api_key))
        .route("/members", get(list_members).post(create_member))
        .route("/members/{id}", get(get_member).patch(update_member))
        .route("/members/{id}/api-keys", get(member_api_keys))
        .route(
            "/members/{id}/api-keys/{key_id}",
            delete(revoke_member_api_key),
        )
        .route("/members/{id}/events", get(member_events))
        .route("/machines", get(list_machines).post(create_machine))
        .route("/machines/{id}", get(get_machine).put(update_machine))
        .route("/machines/{id}/state", post(set_machine_state))
        .merge(calendar::router())
        .merge(jobs::router(max_upload))
        .merge(panel::router())
        .merge(campaigns::router())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Fabrique API", version = "1", description = "Machines, members, jobs and solidarity campaigns of a community fablab."),
    paths(login, logout, me, update_me, create_api_key, my_api_keys, revoke_my_api_key,
          member_api_keys, revoke_member_api_key, member_events, list_members, create_member, get_member, update_member,
          list_machines, create_machine, get_machine, update_machine, set_machine_state,
          panel::get_panel, panel::panel_action,
          calendar::create_booking, calendar::my_bookings, calendar::cancel_booking, calendar::check_in,
          calendar::create_block, calendar::machine_bookings, calendar::list_trainings, calendar::create_training,
          calendar::create_session, calendar::list_sessions, calendar::enrol, calendar::attendance,
          calendar::my_badges, calendar::award_badge, calendar::revoke_badge, calendar::get_settings, calendar::put_settings,
          jobs::upload_job, jobs::list_jobs, jobs::get_job, jobs::approve_job, jobs::cancel_job, jobs::requeue_job, jobs::start_job,
          campaigns::list_campaigns, campaigns::get_campaign, campaigns::list_requests, campaigns::my_pledges,
          campaigns::create_pledge, campaigns::my_batches, campaigns::declare_batch, campaigns::drop_batch),
    components(schemas(ErrorBody, ErrorDetail, LoginBody, MemberDto, NewMemberBody, MemberPatchBody, ApiKeyBody,
                       ApiKeyCreated, ApiKeyDto, AccountEventDto, RoleWord, LangWord, CredentialWord,
                       MachineKindWord, ConnectionWord, JunctionRuleWord, MillCoolantWord, SettableStateWord,
                       panel::PanelActionWord, panel::PanelBody, panel::PanelAnswerDto, panel::PanelLogDto, panel::PanelDto, campaigns::PlaceWord, MachineDto, ConnectionDto, ProfileDto, MachineBody, ConnectionBody, StateBody,
                       calendar::BookingDto, calendar::BookingBody, calendar::BlockBody, calendar::TrainingDto,
                       calendar::TrainingBody, calendar::SessionDto, calendar::SessionBody, calendar::EnrolBody,
                       calendar::EnrolmentDto, calendar::AttendanceBody, calendar::BadgeDto, calendar::AwardBody,
                       calendar::RevokeBody, jobs::JobDto, jobs::WaitingDto, jobs::ApprovalDto, jobs::JobUpload, jobs::StartBody, campaigns::CountsDto, campaigns::LabCountsDto,
                       campaigns::CampaignDto, campaigns::ContactDto, campaigns::RequestDto, campaigns::PledgeDto,
                       campaigns::PledgeBody, campaigns::BatchDto, campaigns::BatchBody, campaigns::DropBody)),
    modifiers(&ApiKeyScheme, &CommonErrors),
    security(("api_key" = []), ("session" = [])),
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
    }
}

/// The errors any operation may answer besides its own, added where an operation does not
/// already say them, so that a generated client knows every status it can get:
/// - 400: a path or query parameter, or a body, that cannot be read at all;
/// - 401: no account, or an `X-Api-Key` that is not (or no longer) valid — on any path;
/// - 403: a role too low, or a session's request without its CSRF token (methods that
///   change something);
/// - 404: nothing at that identifier (of the path, or named in the body);
/// - 413, 415, 422: a body too large, of another type, or whose fields break a rule
///   (operations with a body; 422 also for parameters out of their range);
/// - 429 with `Retry-After`: too many tries (login, one's own secret), or every password
///   check taken.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_path_params = path.contains('{');
            let operations = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (operation, changes) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let has_body = operation.request_body.is_some();
                let has_query = operation.parameters.as_ref().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    })
                });
                let mut add = vec![
                    (
                        "400",
                        "The request cannot be read (a parameter or the body).",
                    ),
                    ("401", "No account, or the API key is not valid."),
                ];
                if changes {
                    add.push((
                        "403",
                        "Not allowed for this account, or the CSRF token is missing.",
                    ));
                }
                if has_path_params || has_body {
                    add.push((
                        "404",
                        "Nothing at this identifier (of the path or the body).",
                    ));
                }
                if has_body {
                    add.push(("413", "The body is too large."));
                    add.push(("415", "The body is not of the type this operation reads."));
                }
                if has_body || has_query || has_path_params {
                    add.push(("422", "A value breaks a rule; `error.code` says which."));
                }
                let login_like = path.ends_with("/login") || path.ends_with("/me");
                if login_like && changes {
                    add.push((
                        "429",
                        "Too many tries, or every password check is taken: see Retry-After.",
                    ));
                }
                for (status, description) in add {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Every error answer of the API.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code for programs, e.g. `bad_credentials`, `forbidden`, `invalid_input`.
    pub code: String,
    /// What happened and what to do, in the person's language.
    pub message: String,
}

// --- Closed sets of words, for the document ---------------------------------------------
// The bodies carry these as strings (a word outside the set is a 422 with `invalid_input`);
// these types only tell generated clients which words there are.

/// A role.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RoleWord {
    Member,
    Trainer,
    Manager,
    Admin,
}

/// A language of the pages and messages.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum LangWord {
    Fr,
    En,
}

/// `password` (10 characters or more) or `pin` (6 to 12 digits).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CredentialWord {
    Password,
    Pin,
}

/// A kind of machine.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum MachineKindWord {
    FdmPrinter,
    LaserCutter,
    Embroidery,
    CncMill,
    VinylCutter,
    Other,
}

/// The coolant a CNC mill has.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum MillCoolantWord {
    None,
    Flood,
    FloodAndMist,
}

/// Which of `M205 X/Y` and `M205 J` a Marlin firmware takes.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum JunctionRuleWord {
    ClassicJerk,
    JunctionDeviation,
}

/// How Fabrique reaches a machine.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ConnectionWord {
    SerialMarlin,
    SerialGrbl,
    SerialHpgl,
    SerialHpglRtsCts,
    Octoprint,
    Moonraker,
    Manual,
}

/// A state a manager may put a machine in.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SettableStateWord {
    Idle,
    ToCheck,
    Maintenance,
    Disabled,
}

// --- Members ----------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct MemberDto {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    /// `member`, `trainer`, `manager` or `admin`.
    pub role: String,
    /// `fr` or `en`.
    pub lang: String,
    /// `password` or `pin`.
    pub credential_kind: String,
    pub disabled: bool,
}

impl From<&User> for MemberDto {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.0,
            username: u.username.to_string(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            role: u.role.as_str().into(),
            lang: u.lang.as_str().into(),
            credential_kind: u.credential_kind.as_str().into(),
            disabled: u.disabled,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[schema(max_length = 64)]
    pub username: String,
    /// The password, or the PIN of an account without e-mail.
    #[schema(max_length = 1024)]
    pub password: String,
}

/// Opens a session (cookie) for scripts and pages that prefer JSON.
#[utoipa::path(post, path = "/api/v1/login", request_body = LoginBody, tag = "session",
    responses((status = 200, body = MemberDto), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ctx: Ctx,
    Json(body): Json<LoginBody>,
) -> AppResult<Response> {
    let session = state
        .lab
        .login(
            &body.username,
            &Secret::new(body.password),
            &peer.ip().to_string(),
            now(),
        )
        .await?;
    let mut response = Json(MemberDto::from(&session.user)).into_response();
    let cookie = ctx.cookie(SESSION_COOKIE, &session.token, session.expires_at - now());
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[utoipa::path(post, path = "/api/v1/logout", tag = "session", responses((status = 204)))]
async fn logout(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
) -> AppResult<Response> {
    if let Some(token) = crate::ctx::cookie(&headers, SESSION_COOKIE) {
        state.lab.logout(token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&ctx.cookie(SESSION_COOKIE, "", 0)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "members",
    responses((status = 200, body = MemberDto), (status = 401, body = ErrorBody)))]
async fn me(ctx: Ctx) -> AppResult<Json<MemberDto>> {
    Ok(Json(MemberDto::from(ctx.user()?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMemberBody {
    /// 3 to 32 lowercase letters, digits, `.`, `_` or `-`.
    #[schema(pattern = "^[a-z0-9._-]{3,32}$", min_length = 3, max_length = 32)]
    pub username: String,
    /// Empty: the username.
    #[serde(default)]
    #[schema(max_length = 80)]
    pub display_name: String,
    /// Empty for an account without e-mail (then a PIN is usual).
    #[serde(default)]
    #[schema(max_length = 254)]
    pub email: String,
    #[schema(value_type = RoleWord)]
    pub role: String,
    #[serde(default = "default_lang")]
    #[schema(value_type = LangWord)]
    pub lang: String,
    #[schema(value_type = CredentialWord)]
    pub credential_kind: String,
    /// A password of 10 characters or more, or a PIN of 6 to 12 digits.
    #[schema(min_length = 6, max_length = 1024)]
    pub secret: String,
}

fn default_lang() -> String {
    "fr".into()
}

fn word<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, Invalid> {
    value.parse().map_err(|_| Invalid::new(field, "choice"))
}

/// A change to an account; absent members stay as they are.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct MemberPatchBody {
    #[schema(min_length = 1, max_length = 80)]
    pub display_name: Option<String>,
    /// An empty string removes the e-mail address.
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// Only a manager, for the roles they manage; nobody changes their own.
    #[schema(value_type = Option<RoleWord>)]
    pub role: Option<String>,
    #[schema(value_type = Option<LangWord>)]
    pub lang: Option<String>,
    /// Only a manager; nobody disables themselves.
    pub disabled: Option<bool>,
    #[schema(value_type = Option<CredentialWord>)]
    pub credential_kind: Option<String>,
    /// The new password (10 characters or more) or PIN (6 to 12 digits).
    #[schema(min_length = 6, max_length = 1024)]
    pub secret: Option<String>,
    /// One's own current password or PIN: needed with `secret` on `/me`; a manager setting
    /// someone else's leaves it out (and that revokes the member's API keys).
    #[schema(max_length = 1024)]
    pub current_secret: Option<String>,
}

impl MemberPatchBody {
    fn parse(self, current: &User) -> Result<UserPatch, Invalid> {
        let credential = match self.secret {
            Some(secret) => {
                let kind = match &self.credential_kind {
                    Some(kind) => word::<CredentialKind>("credential_kind", kind)?,
                    None => current.credential_kind,
                };
                Some((kind, Secret::new(secret)))
            }
            None => None,
        };
        Ok(UserPatch {
            display_name: self
                .display_name
                .map(|n| parse_text("display_name", &n, 80))
                .transpose()?,
            email: self.email.map(|e| parse_email(&e)).transpose()?,
            role: self.role.map(|r| word::<Role>("role", &r)).transpose()?,
            lang: self.lang.map(|l| word::<Lang>("lang", &l)).transpose()?,
            disabled: self.disabled,
            credential,
        })
    }
}

#[utoipa::path(patch, path = "/api/v1/me", request_body = MemberPatchBody, tag = "members",
    responses((status = 200, body = MemberDto), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_me(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<MemberPatchBody>,
) -> AppResult<Json<MemberDto>> {
    let user = ctx.user()?;
    let current = body.current_secret.clone();
    let mut patch = body.parse(user)?;
    let updated = match patch.credential.take() {
        Some((kind, new)) => {
            let current = Secret::new(current.unwrap_or_default());
            state
                .lab
                .change_own_secret(user, &current, kind, new, patch, now())
                .await?
        }
        None => state.lab.update_user(user, user.id, patch, now()).await?,
    };
    Ok(Json(MemberDto::from(&updated)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyBody {
    /// What the key is for (`PrusaSlicer on the lab PC`); empty: `API`.
    #[serde(default)]
    #[schema(max_length = 60)]
    pub label: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreated {
    /// The key, shown this once: only its hash is kept.
    pub key: String,
}

#[utoipa::path(post, path = "/api/v1/me/api-keys", request_body = ApiKeyBody, tag = "members",
    responses((status = 201, body = ApiKeyCreated), (status = 401, body = ErrorBody)))]
async fn create_api_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<ApiKeyBody>,
) -> AppResult<Response> {
    let key = state
        .lab
        .create_api_key(ctx.user()?, &body.label, now())
        .await?;
    Ok((StatusCode::CREATED, Json(ApiKeyCreated { key })).into_response())
}

/// A personal API key as listed: never the key itself, only its first characters.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyDto {
    pub id: i64,
    /// The key's first 10 characters, to recognise it.
    pub prefix: String,
    pub label: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, to the minute; absent when never used.
    pub last_used_at: Option<i64>,
}

impl From<fabrique_controller::store::ApiKeyInfo> for ApiKeyDto {
    fn from(k: fabrique_controller::store::ApiKeyInfo) -> Self {
        Self {
            id: k.id,
            prefix: k.prefix,
            label: k.label,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// One line of an account's history.
#[derive(Serialize, ToSchema)]
pub struct AccountEventDto {
    /// `secret_changed` (by the owner), `secret_reset` (by someone else: the API keys were
    /// revoked), `api_key_created` or `api_key_revoked`.
    pub kind: String,
    /// The key's prefix and label, or `api_keys_revoked=N` for a reset.
    pub detail: String,
    /// Unix seconds.
    pub at: i64,
    /// The username of who did it; absent for the command line.
    pub by: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/me/api-keys", tag = "members",
    responses((status = 200, body = Vec<ApiKeyDto>), (status = 401, body = ErrorBody)))]
async fn my_api_keys(State(state): State<AppState>, ctx: Ctx) -> AppResult<Json<Vec<ApiKeyDto>>> {
    let user = ctx.user()?;
    let keys = state.lab.api_keys_of(user, user.id).await?;
    Ok(Json(keys.into_iter().map(ApiKeyDto::from).collect()))
}

#[utoipa::path(delete, path = "/api/v1/me/api-keys/{key_id}", tag = "members", params(("key_id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_my_api_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(key_id): Path<i64>,
) -> AppResult<StatusCode> {
    let user = ctx.user()?;
    state
        .lab
        .revoke_api_key(user, user.id, key_id, now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A member's API keys, for a manager (a lost phone, a slicer left on a shared PC).
#[utoipa::path(get, path = "/api/v1/members/{id}/api-keys", tag = "members", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<ApiKeyDto>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn member_api_keys(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<Vec<ApiKeyDto>>> {
    let keys = state.lab.api_keys_of(ctx.user()?, UserId(id)).await?;
    Ok(Json(keys.into_iter().map(ApiKeyDto::from).collect()))
}

/// A manager revokes a member's key; the account's history records who did.
#[utoipa::path(delete, path = "/api/v1/members/{id}/api-keys/{key_id}", tag = "members",
    params(("id" = i64, Path), ("key_id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_member_api_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, key_id)): Path<(i64, i64)>,
) -> AppResult<StatusCode> {
    state
        .lab
        .revoke_api_key(ctx.user()?, UserId(id), key_id, now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What was done to an account, newest first: for its owner and the managers.
#[utoipa::path(get, path = "/api/v1/members/{id}/events", tag = "members", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<AccountEventDto>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn member_events(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<Vec<AccountEventDto>>> {
    let events = state.lab.account_events(ctx.user()?, UserId(id)).await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| AccountEventDto {
                kind: e.kind.as_str().into(),
                detail: e.detail,
                at: e.at,
                by: e.actor_name,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/members", tag = "members",
    responses((status = 200, body = Vec<MemberDto>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_members(State(state): State<AppState>, ctx: Ctx) -> AppResult<Json<Vec<MemberDto>>> {
    let users = state.lab.list_users(ctx.user()?).await?;
    Ok(Json(users.iter().map(MemberDto::from).collect()))
}

#[utoipa::path(post, path = "/api/v1/members", request_body = NewMemberBody, tag = "members",
    responses((status = 201, body = MemberDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(b): Json<NewMemberBody>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let new = NewUser::parse(
        &b.username,
        &b.display_name,
        &b.email,
        word("role", &b.role)?,
        word("lang", &b.lang)?,
        word("credential_kind", &b.credential_kind)?,
        Secret::new(b.secret),
    )?;
    let user = state.lab.create_user(actor, &new, now()).await?;
    Ok((StatusCode::CREATED, Json(MemberDto::from(&user))).into_response())
}

#[utoipa::path(get, path = "/api/v1/members/{id}", tag = "members", params(("id" = i64, Path)),
    responses((status = 200, body = MemberDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<MemberDto>> {
    Ok(Json(MemberDto::from(
        &state.lab.user(ctx.user()?, UserId(id)).await?,
    )))
}

#[utoipa::path(patch, path = "/api/v1/members/{id}", request_body = MemberPatchBody, tag = "members", params(("id" = i64, Path)),
    responses((status = 200, body = MemberDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(body): Json<MemberPatchBody>,
) -> AppResult<Json<MemberDto>> {
    let actor = ctx.user()?;
    let current = state.lab.user(actor, UserId(id)).await?;
    if body.current_secret.is_some() {
        return Err(Invalid::new("current_secret", "not_here").into());
    }
    let patch = body.parse(&current)?;
    Ok(Json(MemberDto::from(
        &state
            .lab
            .update_user(actor, UserId(id), patch, now())
            .await?,
    )))
}

// --- Machines ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileDto {
    /// Build volume or work area in millimetres: X, Y, Z (0 when not applicable).
    #[serde(default)]
    pub work_area_mm: [f64; 3],
    #[serde(default)]
    pub max_hotend_c: f64,
    #[serde(default)]
    pub max_bed_c: f64,
    /// Maximum laser power as the firmware's `S` value.
    #[serde(default)]
    pub max_laser_power: f64,
    /// Embroidery hoops, width and height in millimetres.
    #[serde(default)]
    pub hoops_mm: Vec<[f64; 2]>,
    #[serde(default)]
    pub materials: Vec<String>,
    /// For time estimates when a file has no limits of its own: top speed on X and Y
    /// (mm/s) and printing acceleration (mm/s²); 0: the firmware's usual values.
    #[serde(default)]
    pub max_speed_mm_s: f64,
    #[serde(default)]
    pub max_accel_mm_s2: f64,
    /// An embroidery machine's sewing speed (0: 600 stitches per minute).
    #[serde(default)]
    pub stitches_per_minute: f64,
    /// Which of `M205 X/Y` and `M205 J` a Marlin firmware takes: `classic_jerk`,
    /// `junction_deviation`, or null when not known.
    #[serde(default)]
    #[schema(value_type = Option<JunctionRuleWord>)]
    pub junction_rule: Option<JunctionRule>,
    /// The printer runs in silent (stealth) mode: the slicer's silent-mode limits apply.
    #[serde(default)]
    pub silent_mode: bool,
    /// Klipper's `square_corner_velocity`, mm/s (0: Klipper's 5).
    #[serde(default)]
    pub square_corner_velocity_mm_s: f64,
    /// Klipper's `minimum_cruise_ratio`, 0 to 0.99 (null: Klipper's 0.5).
    #[serde(default)]
    pub minimum_cruise_ratio: Option<f64>,
    /// A CNC mill's coolant: a job that turns on one it lacks (`M8` flood, `M7` mist) is
    /// refused.
    #[serde(default)]
    #[schema(value_type = MillCoolantWord)]
    pub coolant: MillCoolant,
    /// A vinyl cutter wired one way, which cannot answer `OA;`: its jobs end with their
    /// last byte sent.
    #[serde(default)]
    pub one_way: bool,
}

/// How Fabrique reaches the machine. The OctoPrint API key is never sent back; the port,
/// speed and address only to managers (absent for everyone else).
#[derive(Serialize, ToSchema)]
pub struct ConnectionDto {
    /// `serial_marlin`, `serial_grbl`, `octoprint`, `moonraker` or `manual`.
    pub kind: String,
    pub serial_port: Option<String>,
    pub baud: Option<u32>,
    pub url: Option<String>,
    pub has_api_key: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MachineDto {
    pub id: i64,
    pub name: String,
    /// `fdm_printer`, `laser_cutter`, `embroidery`, `cnc_mill`, `vinyl_cutter` or `other`.
    pub kind: String,
    pub connection: ConnectionDto,
    pub profile: ProfileDto,
    pub location: String,
    pub required_training: String,
    /// `offline`, `idle`, `busy`, `paused`, `error`, `to_check`, `maintenance` or `disabled`.
    pub state: String,
    pub state_reason: String,
}

impl MachineDto {
    /// The machine as `viewer` may see it: below a manager, without its serial port or its
    /// print server's address (where the lab's network and machines are).
    fn for_viewer(m: &Machine, viewer: &User) -> Self {
        let mut dto = Self::from(m);
        if !viewer.role.at_least(Role::Manager) {
            dto.connection.serial_port = None;
            dto.connection.baud = None;
            dto.connection.url = None;
            dto.state_reason = crate::pages::without_links(&m.state_reason, &m.connection);
        }
        dto
    }
}

impl From<&Machine> for MachineDto {
    fn from(m: &Machine) -> Self {
        let (serial_port, baud, url, has_api_key) = match &m.connection {
            Connection::SerialMarlin { port, baud }
            | Connection::SerialGrbl { port, baud }
            | Connection::SerialHpgl { port, baud, .. } => {
                (Some(port.clone()), Some(*baud), None, false)
            }
            Connection::OctoPrint { url, .. } => (None, None, Some(url.clone()), true),
            Connection::Moonraker { url } => (None, None, Some(url.clone()), false),
            Connection::Manual => (None, None, None, false),
        };
        let p = &m.profile;
        Self {
            id: m.id.0,
            name: m.name.clone(),
            kind: m.kind.as_str().into(),
            connection: ConnectionDto {
                kind: m.connection.kind().as_str().into(),
                serial_port,
                baud,
                url,
                has_api_key,
            },
            profile: ProfileDto {
                work_area_mm: p.work_area_mm,
                max_hotend_c: p.max_hotend_c,
                max_bed_c: p.max_bed_c,
                max_laser_power: p.max_laser_power,
                hoops_mm: p.hoops_mm.clone(),
                materials: p.materials.clone(),
                max_speed_mm_s: p.max_speed_mm_s,
                max_accel_mm_s2: p.max_accel_mm_s2,
                stitches_per_minute: p.stitches_per_minute,
                junction_rule: p.junction_rule,
                silent_mode: p.silent_mode,
                square_corner_velocity_mm_s: p.square_corner_velocity_mm_s,
                minimum_cruise_ratio: p.minimum_cruise_ratio,
                coolant: p.coolant,
                one_way: p.one_way,
            },
            location: m.location.clone(),
            required_training: m.required_training.clone(),
            state: m.state.as_str().into(),
            state_reason: m.state_reason.clone(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    #[schema(value_type = ConnectionWord)]
    pub kind: String,
    #[serde(default)]
    pub serial_port: String,
    pub baud: Option<u32>,
    #[serde(default)]
    pub url: String,
    /// OctoPrint only; when updating, leave it out to keep the stored key.
    #[serde(default)]
    pub api_key: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineBody {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    #[schema(value_type = MachineKindWord)]
    pub kind: String,
    pub connection: ConnectionBody,
    #[serde(default)]
    pub profile: ProfileDto,
    #[serde(default)]
    #[schema(max_length = 120)]
    pub location: String,
    #[serde(default)]
    #[schema(max_length = 120)]
    pub required_training: String,
}

impl MachineBody {
    fn parse(
        self,
        kept: Option<&Connection>,
    ) -> AppResult<fabrique_controller::domain::MachineInput> {
        let num = |v: f64| {
            if v == 0.0 {
                String::new()
            } else {
                v.to_string()
            }
        };
        let p = &self.profile;
        if p.materials.iter().any(|m| m.contains(',')) {
            return Err(Invalid::new("materials", "materials_comma").into());
        }
        let fields = MachineFields {
            name: self.name,
            kind: self.kind,
            location: self.location,
            required_training: self.required_training,
            connection: self.connection.kind,
            serial_port: self.connection.serial_port,
            baud: self
                .connection
                .baud
                .map(|b| b.to_string())
                .unwrap_or_default(),
            url: self.connection.url,
            api_key: self.connection.api_key,
            work_x: num(p.work_area_mm[0]),
            work_y: num(p.work_area_mm[1]),
            work_z: num(p.work_area_mm[2]),
            max_hotend: num(p.max_hotend_c),
            max_bed: num(p.max_bed_c),
            max_laser_power: num(p.max_laser_power),
            hoops: p
                .hoops_mm
                .iter()
                .map(|[w, h]| format!("{w}x{h}"))
                .collect::<Vec<_>>()
                .join(","),
            materials: p.materials.join(","),
            max_speed: num(p.max_speed_mm_s),
            max_accel: num(p.max_accel_mm_s2),
            stitches_per_minute: num(p.stitches_per_minute),
            junction_rule: p
                .junction_rule
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
            silent_mode: p.silent_mode.then(|| "1".into()),
            square_corner_velocity: num(p.square_corner_velocity_mm_s),
            minimum_cruise_ratio: p.minimum_cruise_ratio.map(num).unwrap_or_default(),
            coolant: p.coolant.as_str().into(),
            one_way: p.one_way.then(|| "1".into()),
        };
        fields.parse(kept)
    }
}

#[utoipa::path(get, path = "/api/v1/machines", tag = "machines",
    responses((status = 200, body = Vec<MachineDto>), (status = 401, body = ErrorBody)))]
async fn list_machines(
    State(state): State<AppState>,
    ctx: Ctx,
) -> AppResult<Json<Vec<MachineDto>>> {
    let user = ctx.user()?;
    Ok(Json(
        state
            .lab
            .machines()
            .await?
            .iter()
            .map(|m| MachineDto::for_viewer(m, user))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/machines/{id}", tag = "machines", params(("id" = i64, Path)),
    responses((status = 200, body = MachineDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_machine(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<MachineDto>> {
    let user = ctx.user()?;
    Ok(Json(MachineDto::for_viewer(
        &state.lab.machine(MachineId(id)).await?,
        user,
    )))
}

#[utoipa::path(post, path = "/api/v1/machines", request_body = MachineBody, tag = "machines",
    responses((status = 201, body = MachineDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_machine(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<MachineBody>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let input = body.parse(None)?;
    let machine = state.lab.create_machine(actor, &input, now()).await?;
    state.runtime.refresh(machine.id).await;
    Ok((StatusCode::CREATED, Json(MachineDto::from(&machine))).into_response())
}

#[utoipa::path(put, path = "/api/v1/machines/{id}", request_body = MachineBody, tag = "machines", params(("id" = i64, Path)),
    responses((status = 200, body = MachineDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_machine(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(body): Json<MachineBody>,
) -> AppResult<Json<MachineDto>> {
    let actor = ctx.require(Role::Manager)?;
    let current = state.lab.machine(MachineId(id)).await?;
    let input = body.parse(Some(&current.connection))?;
    let machine = state
        .lab
        .update_machine(actor, MachineId(id), &input, now())
        .await?;
    state.runtime.refresh(machine.id).await;
    Ok(Json(MachineDto::from(&machine)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    #[schema(value_type = SettableStateWord)]
    pub state: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/machines/{id}/state", request_body = StateBody, tag = "machines", params(("id" = i64, Path)),
    responses((status = 200, body = MachineDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_machine_state(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(body): Json<StateBody>,
) -> AppResult<Json<MachineDto>> {
    let actor = ctx.require(Role::Manager)?;
    let next: MachineState = word("state", &body.state)?;
    let machine = state
        .lab
        .set_machine_state(actor, MachineId(id), next, &body.reason, now())
        .await?;
    state.runtime.refresh(machine.id).await;
    Ok(Json(MachineDto::from(&machine)))
}
