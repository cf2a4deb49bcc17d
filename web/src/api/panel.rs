//! The operator panel of a GRBL machine in the API: what the panel page does, for a trainer
//! or a manager at the machine with an app of their own. Same rule, same log.

use super::ErrorBody;
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::AppResult;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use fabrique_controller::LabError;
use fabrique_controller::domain::machine::ConnectionKind;
use fabrique_controller::domain::panel::PanelAction;
use fabrique_controller::domain::{MachineId, Role};
use fabrique_controller::runtime::PanelError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/machines/{id}/panel", get(get_panel).post(panel_action))
}

/// An action of the panel.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PanelActionWord {
    Take,
    Release,
    Unlock,
    Home,
    Jog,
    JogHold,
    JogStop,
    SetOrigin,
    SetOriginZ,
    GoToOrigin,
    Frame,
    ProbeZ,
    Override,
    Pause,
    Resume,
    Console,
}

/// One action. `jog`: `axis` (`x`, `y`, `z`), `distance` (mm, signed) and `feed` (mm/min);
/// `jog_hold`: `axis`, `direction` (`plus` or `minus`) and `feed`, about 0.4 s of motion,
/// sent again while the button is held and ended by `jog_stop`; `frame`: `job`, traced by
/// jogs with the laser off; `override`: `feed_plus`, `feed_minus`, `feed_reset`,
/// `rapid_full`, `rapid_half`, `rapid_quarter`, `power_plus`, `power_minus`, `power_reset`;
/// `console`: `command`, a `$` command or G-code that neither fires nor cuts; `probe_z`
/// (a mill): `depth`, `feed` and the `plate`'s thickness.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PanelBody {
    #[schema(value_type = PanelActionWord)]
    pub action: String,
    #[serde(default)]
    #[schema(max_length = 1)]
    pub axis: Option<String>,
    #[serde(default)]
    pub distance: Option<f64>,
    #[serde(default)]
    #[schema(max_length = 5)]
    pub direction: Option<String>,
    #[serde(default)]
    pub feed: Option<f64>,
    #[serde(default, rename = "override")]
    #[schema(max_length = 20)]
    pub override_: Option<String>,
    #[serde(default)]
    #[schema(max_length = 70)]
    pub command: Option<String>,
    #[serde(default)]
    pub job: Option<i64>,
    /// `probe_z`: how far down to probe at most, mm (default 20).
    #[serde(default)]
    pub depth: Option<f64>,
    /// `probe_z`: the thickness of the plate on the work piece, mm (default 0).
    #[serde(default)]
    pub plate: Option<f64>,
}

/// What was sent and what the machine answered.
#[derive(Serialize, ToSchema)]
pub struct PanelAnswerDto {
    /// The lines or bytes sent, one per line (`0x85` for a byte).
    pub sent: String,
    /// What the machine printed meanwhile (`$$` settings, `[G54:...]`, messages).
    pub lines: Vec<String>,
    /// Whether GRBL took every line.
    pub ok: bool,
    /// GRBL's reason for refusing a line, in words.
    pub refused: Option<String>,
}

/// One logged action.
#[derive(Serialize, ToSchema)]
pub struct PanelLogDto {
    /// Unix seconds.
    pub at: i64,
    pub who: String,
    pub action: String,
    pub sent: String,
    pub answer: String,
}

/// The machine as the panel sees it, and the latest actions.
#[derive(Serialize, ToSchema)]
pub struct PanelDto {
    /// Whether Fabrique holds the machine's link now.
    pub open: bool,
    /// Who took the machine; null when nobody did (or a job alone has the link).
    pub held_by: Option<String>,
    /// GRBL's state in words, in the reader's language.
    pub state: Option<String>,
    /// What an alarm means and what to do, when the machine is in alarm.
    pub alarm: Option<String>,
    /// Machine and work positions, mm (X, Y, Z).
    pub machine_position: Option<[f64; 3]>,
    pub work_position: Option<[f64; 3]>,
    /// Feed, rapid and power overrides, percent.
    pub overrides: Option<[u16; 3]>,
    /// The latest 20 actions, newest first.
    pub log: Vec<PanelLogDto>,
}

/// The panel of a GRBL machine: its state, positions and log. Trainers and managers.
#[utoipa::path(get, path = "/api/v1/machines/{id}/panel", tag = "machines", params(("id" = i64, Path)),
    responses((status = 200, body = PanelDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn get_panel(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Json<PanelDto>> {
    ctx.require(Role::Trainer)?;
    let machine = state.lab.machine(MachineId(id)).await?;
    if machine.connection.kind() != ConnectionKind::SerialGrbl {
        return Err(PanelError::NotGrbl.into());
    }
    let view = state.runtime.panel_view(machine.id);
    let status = view.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
    let (words, alarm) = crate::pages::panel_state_words(&ctx.tr, &status);
    let log = state
        .lab
        .store()
        .panel_log(machine.id, 20)
        .await
        .map_err(LabError::from)?
        .into_iter()
        .map(|e| PanelLogDto {
            at: e.at,
            who: e.who,
            action: e.action,
            sent: e.sent,
            answer: e.answer,
        })
        .collect();
    Ok(Json(PanelDto {
        open: view.is_some(),
        held_by: view.and_then(|(who, _)| who),
        state: status.state.map(|_| words),
        alarm,
        machine_position: status.machine,
        work_position: status.work,
        overrides: status.overrides,
        log,
    }))
}

/// One panel action at a GRBL machine, by a trainer or a manager standing at it (as the
/// start of a cut): the link is taken (kept open until `release`, or 15 minutes without an
/// action), the action sent, and the answer logged with the person's name. During a job
/// only `pause`, `resume` and `override` go through (409 otherwise).
#[utoipa::path(post, path = "/api/v1/machines/{id}/panel", request_body = PanelBody, tag = "machines", params(("id" = i64, Path)),
    responses((status = 200, body = PanelAnswerDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn panel_action(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Json(body): Json<PanelBody>,
) -> AppResult<Json<PanelAnswerDto>> {
    let user = ctx.require(Role::Trainer)?;
    let number = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let action = PanelAction::parse(&body.action, |name| match name {
        "axis" => body.axis.clone().unwrap_or_default(),
        "distance" => number(body.distance),
        "direction" => body.direction.clone().unwrap_or_default(),
        "feed" => number(body.feed),
        "override" => body.override_.clone().unwrap_or_default(),
        "command" => body.command.clone().unwrap_or_default(),
        "job" => body.job.map_or(String::new(), |j| j.to_string()),
        "depth" => number(body.depth),
        "plate" => number(body.plate),
        _ => String::new(),
    })?;
    state.lab.machine(MachineId(id)).await?;
    let answer = state.runtime.panel(MachineId(id), user, action).await?;
    Ok(Json(PanelAnswerDto {
        sent: answer.sent,
        lines: answer.lines,
        ok: answer.outcome.is_ok(),
        refused: answer.outcome.err(),
    }))
}
