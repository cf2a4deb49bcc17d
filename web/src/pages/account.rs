//! My account: profile, language, password or PIN, personal API keys.

use super::{Page, message, render, render_with_status};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fabrique_controller::domain::account::{parse_email, parse_text};
use fabrique_controller::domain::{Invalid, Lang, Secret, User, UserPatch};
use fabrique_controller::lab::now;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(show).post(save_profile))
        .route("/account/secret", post(change_secret))
        .route("/account/api-keys", post(create_key))
        .route("/account/api-keys/{id}/delete", post(revoke_key))
}

pub struct KeyRow {
    pub id: i64,
    pub label: String,
    pub prefix: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    p: Page,
    user: User,
    role_label: String,
    keys: Vec<KeyRow>,
    new_key: Option<String>,
    error: Option<String>,
}

pub fn date(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%d/%m/%Y").to_string())
        .unwrap_or_default()
}

async fn page(
    state: &AppState,
    ctx: &Ctx,
    user: &User,
    new_key: Option<String>,
    error: Option<String>,
) -> AppResult<AccountPage> {
    let keys = state
        .lab
        .list_api_keys(user)
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
    let mut p = Page::new(ctx, "account.title", "account", "/account");
    p.user = Some(user.clone());
    Ok(AccountPage {
        role_label: ctx.tr.word("role", user.role.as_str()),
        p,
        user: user.clone(),
        keys,
        new_key,
        error,
    })
}

async fn show(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let user = ctx.user()?;
    Ok(render(&page(&state, &ctx, user, None, None).await?)?.into_response())
}

#[derive(serde::Deserialize)]
struct ProfileForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    lang: String,
}

async fn save_profile(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<ProfileForm>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let patch = (|| -> Result<UserPatch, Invalid> {
        Ok(UserPatch {
            display_name: Some(parse_text("display_name", &form.display_name, 80)?),
            email: Some(parse_email(&form.email)?),
            lang: Some(
                form.lang
                    .parse::<Lang>()
                    .map_err(|()| Invalid::new("lang", "choice"))?,
            ),
            ..UserPatch::default()
        })
    })();
    let result = match patch {
        Ok(patch) => state
            .lab
            .update_user(user, user.id, patch, now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => {
            // Chosen here, the account's language applies on this browser too.
            let mut response = super::done(&ctx, "/account", "notice.saved", &[]);
            super::add_cookie(&mut response, &ctx.cookie(crate::ctx::LANG_COOKIE, "", 0));
            Ok(response)
        }
        Err(e) if e.status.is_client_error() => {
            let page = page(&state, &ctx, user, None, Some(message(&ctx.tr, &e))).await?;
            Ok(render_with_status(e.status, &page))
        }
        Err(e) => Err(e),
    }
}

#[derive(serde::Deserialize)]
struct SecretForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new_secret: String,
}

/// Changing one's password or PIN asks for the current one first (`Lab::change_own_secret`,
/// shared with `PATCH /api/v1/me`). A PIN account keeps a PIN; the store ends every session.
async fn change_secret(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<SecretForm>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let result = state
        .lab
        .change_own_secret(
            user,
            &Secret::new(form.current),
            user.credential_kind,
            Secret::new(form.new_secret),
            UserPatch::default(),
            now(),
        )
        .await
        .map_err(AppError::from);
    match result {
        // The store ended every session of the account: sign in again with the new secret.
        Ok(_) => Ok(Redirect::to("/login?next=/account").into_response()),
        Err(e) if e.status.is_client_error() => {
            let page = page(&state, &ctx, user, None, Some(message(&ctx.tr, &e))).await?;
            let mut response = render_with_status(e.status, &page);
            e.add_headers(&mut response);
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

#[derive(serde::Deserialize)]
struct KeyForm {
    #[serde(default)]
    label: String,
}

async fn create_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<KeyForm>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    match state.lab.create_api_key(user, &form.label, now()).await {
        Ok(key) => Ok(render(&page(&state, &ctx, user, Some(key), None).await?)?.into_response()),
        Err(e) => {
            let e = AppError::from(e);
            if !e.status.is_client_error() {
                return Err(e);
            }
            let page = page(&state, &ctx, user, None, Some(message(&ctx.tr, &e))).await?;
            Ok(render_with_status(e.status, &page))
        }
    }
}

async fn revoke_key(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    state.lab.revoke_api_key(user, user.id, id, now()).await?;
    Ok(Redirect::to("/account").into_response())
}
