//! The operator panel of a GRBL machine (`/machines/{id}/panel`): a trainer or a manager
//! at the machine unlocks or homes it, jogs, sets the work origin, frames a job, changes
//! overrides and types console lines. Every button is a form (no JavaScript needed; a
//! small script adds hold-to-jog); every action is logged and listed below.

use super::{Page, render, render_with_status};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use fabrique_controller::LabError;
use fabrique_controller::domain::job::JobState;
use fabrique_controller::domain::machine::ConnectionKind;
use fabrique_controller::domain::panel::PanelAction;
use fabrique_controller::domain::{MachineId, Role};
use fabrique_controller::runtime::PanelStatus;
use fabrique_machines::protocol::grbl::{CodeKind, Lang as GrblLang, MachineState, codes};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new().route("/machines/{id}/panel", get(page).post(act))
}

/// The machine's state in words, and what to do about an alarm.
pub fn state_words(tr: &Tr, status: &PanelStatus) -> (String, Option<String>) {
    let lang = grbl_lang(tr);
    let state = status.state.map_or_else(
        || tr.t("panel.no_status").to_string(),
        |s| s.words(lang).to_string(),
    );
    let alarm = (status.state == Some(MachineState::Alarm)).then(|| match status.alarm {
        Some(n) => tr.f(
            "panel.alarm_code",
            &[
                ("code", &n.to_string()),
                ("what", codes::message(CodeKind::Alarm, n, lang)),
            ],
        ),
        None => tr.t("panel.alarm_locked").to_string(),
    });
    (state, alarm)
}

fn grbl_lang(tr: &Tr) -> GrblLang {
    match tr.lang {
        fabrique_controller::domain::Lang::Fr => GrblLang::Fr,
        fabrique_controller::domain::Lang::En => GrblLang::En,
    }
}

fn position(p: Option<[f64; 3]>) -> String {
    p.map_or_else(
        || "—".to_string(),
        |[x, y, z]| format!("X {x:.2} · Y {y:.2} · Z {z:.2}"),
    )
}

struct LogRow {
    at: String,
    who: String,
    action: String,
    sent: String,
    answer: String,
}

#[derive(Template)]
#[template(path = "panel.html")]
struct PanelPage {
    p: Page,
    id: i64,
    name: String,
    error: Option<String>,
    /// Whether a link is open, and who holds it.
    open: bool,
    held_by: Option<String>,
    mine: bool,
    /// A mill: the Z probe.
    mill: bool,
    state: String,
    alarm: Option<String>,
    machine_position: String,
    work_position: String,
    overrides: String,
    steps: Vec<&'static str>,
    moves: Vec<(&'static str, &'static str)>,
    override_groups: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
    jobs: Vec<(i64, String)>,
    log: Vec<LogRow>,
    command: String,
}

async fn build(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
    command: String,
) -> AppResult<PanelPage> {
    let user = ctx.require(Role::Trainer)?;
    let machine = state.lab.machine(MachineId(id)).await?;
    if machine.connection.kind() != ConnectionKind::SerialGrbl {
        return Err(AppError::from(
            fabrique_controller::runtime::PanelError::NotGrbl,
        ));
    }
    let tr = &ctx.tr;
    let view = state.runtime.panel_view(machine.id);
    let (held_by, status) = match &view {
        Some((held_by, status)) => (held_by.clone(), status.clone()),
        None => (None, PanelStatus::default()),
    };
    let (words, alarm) = state_words(tr, &status);
    let jobs = state
        .lab
        .store()
        .jobs_in_state(&[JobState::Queued])
        .await
        .map_err(LabError::from)?
        .into_iter()
        .filter(|j| j.target_machine.is_none_or(|m| m == machine.id))
        .filter(|j| j.target_kind.is_none_or(|k| k == machine.kind))
        .map(|j| (j.id.0, format!("{} — {}", j.file_name, j.owner_name)))
        .collect();
    let tz = state.lab.calendar_settings().await?.tz();
    let log = state
        .lab
        .store()
        .panel_log(machine.id, 20)
        .await
        .map_err(LabError::from)?
        .into_iter()
        .map(|e| LogRow {
            at: jiff::Timestamp::from_second(e.at)
                .map(|t| {
                    t.to_zoned(tz.clone())
                        .strftime("%d/%m/%Y %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default(),
            who: e.who,
            action: tr.word("panel_action", &e.action),
            sent: e.sent,
            answer: e.answer,
        })
        .collect();
    let mut p = Page::new(
        ctx,
        "panel.title",
        "board",
        &format!("/machines/{id}/panel"),
    );
    p.title = tr.f("panel.title", &[("machine", &machine.name)]);
    Ok(PanelPage {
        id,
        name: machine.name.clone(),
        error,
        open: view.is_some(),
        mine: held_by.as_deref() == Some(user.display_name.as_str()),
        mill: machine.kind == fabrique_controller::domain::MachineKind::CncMill,
        held_by,
        state: words,
        alarm,
        machine_position: position(status.machine),
        work_position: position(status.work),
        overrides: status.overrides.map_or_else(
            || "—".to_string(),
            |[f, r, s]| {
                tr.f(
                    "panel.overrides_now",
                    &[
                        ("feed", &f.to_string()),
                        ("rapid", &r.to_string()),
                        ("power", &s.to_string()),
                    ],
                )
            },
        ),
        steps: vec!["0.1", "1", "10", "50"],
        moves: vec![
            ("x-", "X −"),
            ("x+", "X +"),
            ("y-", "Y −"),
            ("y+", "Y +"),
            ("z-", "Z −"),
            ("z+", "Z +"),
        ],
        override_groups: vec![
            (
                "panel.override_feed",
                vec![
                    ("feed_minus", "−10 %"),
                    ("feed_reset", "100 %"),
                    ("feed_plus", "+10 %"),
                ],
            ),
            (
                "panel.override_rapid",
                vec![
                    ("rapid_quarter", "25 %"),
                    ("rapid_half", "50 %"),
                    ("rapid_full", "100 %"),
                ],
            ),
            (
                "panel.override_power",
                vec![
                    ("power_minus", "−10 %"),
                    ("power_reset", "100 %"),
                    ("power_plus", "+10 %"),
                ],
            ),
        ],
        jobs,
        log,
        command,
        p,
    })
}

async fn page(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let page = build(&state, &ctx, id, None, String::new()).await?;
    Ok(render(&page)?.into_response())
}

/// A button of the panel: the action's name and its fields. A jog button names its move
/// (`x+`, `y-`...) and takes the step chosen beside it.
async fn act(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Trainer)?.clone();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let parsed = PanelAction::parse(&field("action"), |name| match (name, field("move")) {
        ("axis", m) if !m.is_empty() => m.chars().take(1).collect(),
        ("distance", m) if m.ends_with('-') => format!("-{}", field("step")),
        ("distance", m) if m.ends_with('+') => field("step"),
        _ => field(name),
    });
    let command = field("command");
    let (st, cx, typed) = (&state, &ctx, &command);
    let again = |error: AppError| async move {
        let text = error.text(&cx.tr);
        let page = build(st, cx, id, Some(text), typed.clone()).await?;
        AppResult::Ok(render_with_status(error.status, &page))
    };
    let action = match parsed {
        Ok(action) => action,
        Err(invalid) => return again(invalid.into()).await,
    };
    let to = format!("/machines/{id}/panel");
    match state.runtime.panel(MachineId(id), &user, action).await {
        Ok(answer) => {
            let said = match &answer.outcome {
                Ok(()) => answer.lines.join(" · "),
                Err(why) => why.clone(),
            };
            let said: String = said.chars().take(250).collect();
            let key = match (&answer.outcome, answer.sent.is_empty()) {
                (Err(_), _) => "notice.panel_refused",
                (Ok(()), true) => "notice.panel_taken",
                (Ok(()), false) => "notice.panel_sent",
            };
            let sent: String = answer.sent.replace('\n', " · ").chars().take(250).collect();
            Ok(super::done(
                &ctx,
                &to,
                key,
                &[("sent", &sent), ("answer", &said)],
            ))
        }
        Err(e) => {
            let error = AppError::from(e);
            if error.status == StatusCode::FORBIDDEN {
                return Err(error);
            }
            again(error).await
        }
    }
}
