//! Managers create, edit and disable members, including PIN accounts for people without
//! e-mail.

use super::account::{KeyRow, date};
use super::calendar::when;
use super::{Page, base_url, done, message, options, render, render_with_status};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fabrique_controller::domain::account::{parse_email, parse_text};
use fabrique_controller::domain::training::{EnrolmentStatus, SessionId};
use fabrique_controller::domain::{
    CredentialKind, Invalid, Lang, MachineId, NewUser, Role, Secret, User, UserId, UserPatch,
};
use fabrique_controller::lab::now;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/members", get(list).post(create))
        .route("/members/new", get(new_form).post(create))
        .route("/members/{id}", get(edit_form).post(update))
        .route("/members/{id}/book", get(book_for))
        .route("/members/{id}/enrol", post(enrol_member))
        .route("/members/{id}/card", get(card))
        .route("/members/{id}/api-keys/{key}/delete", post(revoke_key))
}

/// One line of an account's history.
pub struct EventRow {
    pub when: String,
    pub what: String,
    pub who: String,
}

/// The keys and the history of the account `id`, as its edit page shows them.
async fn keys_and_events(
    state: &AppState,
    ctx: &Ctx,
    actor: &User,
    id: UserId,
) -> AppResult<(Vec<KeyRow>, Vec<EventRow>)> {
    let keys = state
        .lab
        .api_keys_of(actor, id)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            id: k.id,
            label: k.label,
            prefix: k.prefix,
            last_used: k
                .last_used_at
                .map_or_else(|| ctx.tr.t("account.key_never").to_string(), date),
        })
        .collect();
    let events = state
        .lab
        .account_events(actor, id)
        .await?
        .into_iter()
        .map(|e| {
            let key = format!("account_event.{}", e.kind.as_str());
            let count = e
                .detail
                .strip_prefix("api_keys_revoked=")
                .unwrap_or("0")
                .to_string();
            EventRow {
                when: date(e.at),
                what: ctx.tr.f(&key, &[("count", &count), ("key", &e.detail)]),
                who: e
                    .actor_name
                    .unwrap_or_else(|| ctx.tr.t("member.by_cli").to_string()),
            }
        })
        .collect();
    Ok((keys, events))
}

/// A manager revokes one of a member's API keys (recorded in the account's history).
async fn revoke_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, key)): Path<(i64, i64)>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    state
        .lab
        .revoke_api_key(actor, UserId(id), key, now())
        .await?;
    Ok(Redirect::to(&format!("/members/{id}")).into_response())
}

pub struct MemberRow {
    pub id: i64,
    pub display_name: String,
    pub username: String,
    pub role: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    p: Page,
    members: Vec<MemberRow>,
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let members = state
        .lab
        .list_users(user)
        .await?
        .into_iter()
        .map(|u| MemberRow {
            id: u.id.0,
            role: ctx.tr.word("role", u.role.as_str()),
            status: ctx
                .tr
                .t(if u.disabled {
                    "member.status_disabled"
                } else {
                    "member.status_active"
                })
                .to_string(),
            display_name: u.display_name,
            username: u.username.to_string(),
        })
        .collect();
    let p = Page::new(&ctx, "members.title", "members", "/members");
    Ok(render(&MembersPage { p, members })?.into_response())
}

/// The member form as typed.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct MemberFields {
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub role: String,
    pub lang: String,
    pub credential_kind: String,
    pub secret: String,
    pub disabled: Option<String>,
    /// On the new-account form: print the password or PIN on the login card.
    pub print_secret: Option<String>,
}

impl MemberFields {
    fn from_user(u: &User) -> Self {
        Self {
            username: u.username.to_string(),
            display_name: u.display_name.clone(),
            email: u.email.clone().unwrap_or_default(),
            role: u.role.as_str().into(),
            lang: u.lang.as_str().into(),
            credential_kind: u.credential_kind.as_str().into(),
            secret: String::new(),
            disabled: u.disabled.then(|| "1".into()),
            print_secret: None,
        }
    }

    fn role(&self) -> Result<Role, Invalid> {
        self.role
            .parse()
            .map_err(|()| Invalid::new("role", "choice"))
    }

    fn lang(&self) -> Result<Lang, Invalid> {
        self.lang
            .parse()
            .map_err(|()| Invalid::new("lang", "choice"))
    }

    fn credential_kind(&self) -> Result<CredentialKind, Invalid> {
        self.credential_kind
            .parse()
            .map_err(|()| Invalid::new("credential_kind", "choice"))
    }

    fn new_user(&self) -> Result<NewUser, Invalid> {
        NewUser::parse(
            &self.username,
            &self.display_name,
            &self.email,
            self.role()?,
            self.lang()?,
            self.credential_kind()?,
            Secret::new(self.secret.clone()),
        )
    }

    fn patch(&self) -> Result<UserPatch, Invalid> {
        let credential = if self.secret.is_empty() {
            None
        } else {
            Some((self.credential_kind()?, Secret::new(self.secret.clone())))
        };
        Ok(UserPatch {
            display_name: Some(parse_text("display_name", &self.display_name, 80)?),
            email: Some(parse_email(&self.email)?),
            role: Some(self.role()?),
            lang: Some(self.lang()?),
            disabled: Some(self.disabled.is_some()),
            credential,
        })
    }
}

#[derive(Template)]
#[template(path = "member_form.html")]
struct MemberForm {
    p: Page,
    error: Option<String>,
    action: String,
    is_new: bool,
    f: MemberFields,
    roles: Vec<(String, String)>,
    /// The account's API keys and history (empty on the new-member form).
    keys: Vec<KeyRow>,
    events: Vec<EventRow>,
    user_id: i64,
    /// What the desk does for this member (absent on the new-member form).
    desk: Option<Desk>,
}

/// The reception desk's actions for one member: book, enrol, attendance, badge.
struct Desk {
    name: String,
    machines: Vec<(i64, String)>,
    bookings: Vec<DeskBooking>,
    sessions: Vec<(i64, String)>,
    enrolments: Vec<DeskEnrolment>,
}

/// A member's upcoming booking; the desk (a manager) may always cancel it.
struct DeskBooking {
    id: i64,
    machine: String,
    when: String,
    status: String,
}

struct DeskEnrolment {
    session: i64,
    label: String,
    status: String,
    enrolled: bool,
    attended: bool,
}

async fn desk(state: &AppState, ctx: &Ctx, actor: &User, member: &User) -> AppResult<Desk> {
    let settings = state.lab.calendar_settings().await?;
    let machines = state
        .lab
        .machines()
        .await?
        .into_iter()
        .map(|m| (m.id.0, m.name))
        .collect();
    let now_s = now();
    let bookings = state
        .lab
        .bookings_of_member(actor, member.id, now_s)
        .await?
        .into_iter()
        .filter(|b| b.is_live() && b.ends_at.as_second() > now_s)
        .map(|b| DeskBooking {
            id: b.id.0,
            when: when(&ctx.tr, &settings, b.starts_at, b.ends_at),
            status: ctx.tr.word("booking_status", b.status().as_str()),
            machine: b.machine_name,
        })
        .collect();
    let enrolled = state.lab.enrolments_of(actor, member.id, 30, now_s).await?;
    let sessions = state
        .lab
        .upcoming_sessions(now_s, None)
        .await?
        .into_iter()
        .filter(|s| s.starts_at.as_second() > now_s)
        .filter(|s| !enrolled.iter().any(|(e, _)| e.id == s.id))
        .map(|s| {
            let label = format!(
                "{} · {} · {}",
                s.training_name,
                when(&ctx.tr, &settings, s.starts_at, s.ends_at),
                super::calendar::places(&ctx.tr, &s)
            );
            (s.id.0, label)
        })
        .collect();
    let enrolments = enrolled
        .into_iter()
        .map(|(s, e)| DeskEnrolment {
            session: s.id.0,
            label: format!(
                "{} · {}",
                s.training_name,
                when(&ctx.tr, &settings, s.starts_at, s.ends_at)
            ),
            status: ctx.tr.word("enrolment", e.status.as_str()),
            enrolled: e.status == EnrolmentStatus::Enrolled,
            attended: e.attended,
        })
        .collect();
    Ok(Desk {
        name: member.display_name.clone(),
        machines,
        bookings,
        sessions,
        enrolments,
    })
}

#[derive(serde::Deserialize)]
struct BookForQuery {
    machine: i64,
}

/// The desk's "book for this member": the machine's week, acting for the member.
async fn book_for(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<BookForQuery>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let member = state.lab.user(actor, UserId(id)).await?;
    let machine = state.lab.machine(MachineId(q.machine)).await?;
    Ok(Redirect::to(&format!(
        "/machines/{}/week?member={}",
        machine.id.0, member.id.0
    ))
    .into_response())
}

#[derive(serde::Deserialize)]
struct EnrolMemberForm {
    session: i64,
}

/// The desk enrols the member in a session (or on its waiting list).
async fn enrol_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<EnrolMemberForm>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let member = state.lab.user(actor, UserId(id)).await?;
    let session = state.lab.session(SessionId(f.session)).await?;
    let status = state.lab.enrol(actor, session.id, member.id, now()).await?;
    let key = if status == EnrolmentStatus::Waiting {
        "notice.waiting_member"
    } else {
        "notice.enrolled_member"
    };
    Ok(done(
        &ctx,
        &format!("/members/{id}"),
        key,
        &[
            ("training", &session.training_name),
            ("member", &member.display_name),
        ],
    ))
}

#[derive(Template)]
#[template(path = "member_card.html")]
struct CardPage {
    p: Page,
    lab: String,
    name: String,
    username: String,
    login_url: String,
    pin: bool,
    /// The password or PIN, only when the manager asked for it on the new-account form.
    secret: Option<String>,
    member_id: i64,
}

fn card_page(state: &AppState, ctx: &Ctx, user: &User, secret: Option<String>) -> CardPage {
    let mut p = Page::new(
        ctx,
        "card.title",
        "members",
        &format!("/members/{}/card", user.id),
    );
    p.title = ctx.tr.f("card.title", &[("member", &user.display_name)]);
    CardPage {
        p,
        lab: state.config.lab_name.clone(),
        name: user.display_name.clone(),
        username: user.username.to_string(),
        login_url: format!("{}/login", base_url(state)),
        pin: user.credential_kind == CredentialKind::Pin,
        secret,
        member_id: user.id.0,
    }
}

/// A printable card with the member's username and how to log in; never the PIN, which is
/// stored hashed and only printed on the answer to the new-account form when asked.
async fn card(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let user = state.lab.user(actor, UserId(id)).await?;
    Ok(render(&card_page(&state, &ctx, &user, None))?.into_response())
}

fn member_form(
    ctx: &Ctx,
    actor: &User,
    is_new: bool,
    action: String,
    f: MemberFields,
    error: Option<String>,
) -> MemberForm {
    let title = if is_new {
        "members.new"
    } else {
        "members.edit"
    };
    let p = Page::new(ctx, title, "members", &action);
    let roles: Vec<Role> = Role::ALL
        .iter()
        .copied()
        .filter(|r| actor.role.can_manage(*r))
        .collect();
    MemberForm {
        error,
        action,
        is_new,
        f,
        roles: options(&ctx.tr, "role", &roles),
        p,
        keys: Vec::new(),
        events: Vec::new(),
        user_id: 0,
        desk: None,
    }
}

async fn new_form(ctx: Ctx) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let f = MemberFields {
        role: "member".into(),
        lang: "fr".into(),
        credential_kind: "pin".into(),
        ..Default::default()
    };
    Ok(render(&member_form(
        &ctx,
        actor,
        true,
        "/members/new".into(),
        f,
        None,
    ))?
    .into_response())
}

fn refused(
    ctx: &Ctx,
    actor: &User,
    is_new: bool,
    action: String,
    mut f: MemberFields,
    e: &AppError,
) -> Response {
    f.secret.clear();
    render_with_status(
        e.status,
        &member_form(ctx, actor, is_new, action, f, Some(message(&ctx.tr, e))),
    )
}

async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(f): Form<MemberFields>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let result = match f.new_user() {
        Ok(new) => state
            .lab
            .create_user(actor, &new, now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(user) if f.print_secret.is_some() => {
            // The card with the secret is this answer itself: never a link, never stored.
            let mut page = card_page(&state, &ctx, &user, Some(f.secret.clone()));
            page.p.notice = Some(ctx.tr.f(
                "notice.account_created",
                &[
                    ("member", &user.display_name),
                    ("username", user.username.as_str()),
                ],
            ));
            let mut response = render_with_status(StatusCode::CREATED, &page);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            Ok(response)
        }
        Ok(user) => Ok(done(
            &ctx,
            &format!("/members/{}", user.id),
            "notice.account_created",
            &[
                ("member", &user.display_name),
                ("username", user.username.as_str()),
            ],
        )),
        Err(e) if e.shown_on_the_form() => {
            Ok(refused(&ctx, actor, true, "/members/new".into(), f, &e))
        }
        Err(e) => Err(e),
    }
}

async fn edit_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let user = state.lab.user(actor, UserId(id)).await?;
    if !actor.role.can_manage(user.role) && actor.id != user.id {
        return Err(AppError::forbidden());
    }
    let mut form = member_form(
        &ctx,
        actor,
        false,
        format!("/members/{id}"),
        MemberFields::from_user(&user),
        None,
    );
    (form.keys, form.events) = keys_and_events(&state, &ctx, actor, user.id).await?;
    form.user_id = id;
    form.desk = Some(desk(&state, &ctx, actor, &user).await?);
    Ok(render(&form)?.into_response())
}

async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(mut f): Form<MemberFields>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Manager)?;
    let user = state.lab.user(actor, UserId(id)).await?;
    f.username = user.username.to_string();
    let result = match f.patch() {
        Ok(patch) => state
            .lab
            .update_user(actor, UserId(id), patch, now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(u) => Ok(done(
            &ctx,
            "/members",
            "notice.account_saved",
            &[("member", &u.display_name)],
        )),
        Err(e) if e.shown_on_the_form() => {
            Ok(refused(&ctx, actor, false, format!("/members/{id}"), f, &e))
        }
        Err(e) => Err(e),
    }
}
