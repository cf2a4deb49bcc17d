//! Managers create, edit and disable members, including PIN accounts for people without
//! e-mail.

use super::account::{KeyRow, date};
use super::{Page, message, options, render, render_with_status};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fabrique_controller::domain::account::{parse_email, parse_text};
use fabrique_controller::domain::{
    CredentialKind, Invalid, Lang, NewUser, Role, Secret, User, UserId, UserPatch,
};
use fabrique_controller::lab::now;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/members", get(list).post(create))
        .route("/members/new", get(new_form).post(create))
        .route("/members/{id}", get(edit_form).post(update))
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

fn shown_again(e: &AppError) -> bool {
    matches!(
        e.status,
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT
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
        Ok(user) => Ok(Redirect::to(&format!("/members/{}", user.id)).into_response()),
        Err(e) if shown_again(&e) => Ok(refused(&ctx, actor, true, "/members/new".into(), f, &e)),
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
        Ok(_) => Ok(Redirect::to("/members").into_response()),
        Err(e) if shown_again(&e) => {
            Ok(refused(&ctx, actor, false, format!("/members/{id}"), f, &e))
        }
        Err(e) => Err(e),
    }
}
