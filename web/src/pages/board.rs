//! The workshop board: one tile per machine with its state, job, member, progress,
//! temperatures, time left and last error, and the actions a person at the machine takes.
//! Live by server-sent events (`/board/events`); without JavaScript, a refresh link.

use super::jobs::duration;
use super::{Page, render, render_with_status};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fabrique_controller::domain::fit::{self, Start};
use fabrique_controller::domain::job::{JobId, JobState};
use fabrique_controller::domain::{Connection, MachineId, MachineState, Role, UserId};
use fabrique_controller::lab::now;
use fabrique_controller::runtime::{Command, RuntimeError};
use std::convert::Infallible;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/board", get(board))
        .route("/board/events", get(events))
        .route("/board/{id}/{action}", post(act))
        .route("/plan", get(plan))
}

struct Tile {
    id: i64,
    name: String,
    state: String,
    state_label: String,
    state_symbol: &'static str,
    job: Option<String>,
    member: Option<String>,
    percent: i64,
    remaining: Option<String>,
    temperatures: Option<String>,
    last_error: Option<String>,
    actions: Vec<(String, String)>,
    startable: Vec<(i64, String)>,
    /// A GRBL machine: a link to its operator panel, and who holds it.
    panel: Option<Option<String>>,
    /// A mill's job waiting for a tool change: what to do, and the job to go on with.
    tool_change: Option<(String, i64)>,
}

#[derive(Template)]
#[template(path = "board.html")]
struct BoardPage {
    p: Page,
    error: Option<String>,
    tiles: Vec<Tile>,
}

async fn board_page(state: &AppState, ctx: &Ctx, error: Option<String>) -> AppResult<BoardPage> {
    let viewer = ctx.require(Role::Trainer)?;
    let machines = state.lab.machines().await?;
    let live = state.runtime.live();
    let runtime = &state.runtime;
    let queued = state
        .lab
        .store()
        .jobs_in_state(&[JobState::Queued])
        .await
        .map_err(|e| AppError::internal("board", &e))?;
    let owners: Vec<UserId> = queued.iter().map(|j| j.owner).collect();
    let clearances = state.lab.clearances(&owners, now()).await?;
    let tr = &ctx.tr;
    let tiles = machines
        .iter()
        .map(|m| {
            let l = live.iter().find(|l| l.machine == m.id.0);
            let state = m.state;
            let running = matches!(state, MachineState::Busy | MachineState::Paused);
            let mut actions: Vec<(String, String)> = Vec::new();
            let tool_change = l
                .and_then(|l| Some((l.tool_change?, l.job?)))
                .map(|(t, job)| {
                    let line = t.line.to_string();
                    let text = match t.tool {
                        Some(tool) => tr.f(
                            "board.tool_change",
                            &[("line", &line), ("tool", &format!("T{tool}"))],
                        ),
                        None => tr.f("board.tool_change_unnamed", &[("line", &line)]),
                    };
                    (text, job)
                });
            match state {
                // A tool change: the job goes on only by a person's "tool in" (a start).
                MachineState::Paused if tool_change.is_some() => {
                    actions.push(("cancel".into(), tr.t("board.cancel").into()));
                }
                MachineState::Busy if matches!(m.connection, Connection::Manual) => {
                    actions.push(("finished".into(), tr.t("board.finished").into()));
                    actions.push(("cancel".into(), tr.t("board.cancel").into()));
                }
                MachineState::Busy => {
                    actions.push(("pause".into(), tr.t("board.pause").into()));
                    actions.push(("cancel".into(), tr.t("board.cancel").into()));
                }
                MachineState::Paused => {
                    actions.push(("resume".into(), tr.t("board.resume").into()));
                    actions.push(("cancel".into(), tr.t("board.cancel").into()));
                }
                // Not offline: a machine whose link is gone cannot be checked from here,
                // and it comes back by itself when the link does.
                MachineState::ToCheck | MachineState::Maintenance | MachineState::Error => {
                    actions.push(("checked".into(), tr.t("board.checked").into()));
                }
                _ => {}
            }
            if running && !matches!(m.connection, Connection::Manual) {
                actions.push(("emergency-stop".into(), tr.t("board.emergency_stop").into()));
            }
            if !running && state != MachineState::Maintenance && state != MachineState::Disabled {
                actions.push(("maintenance".into(), tr.t("board.maintenance").into()));
            }
            // A person at the machine starts queued jobs the rule lets this person start
            // here (the only way a laser or a machine without a data link starts).
            let startable = if state == MachineState::Idle {
                queued
                    .iter()
                    .filter(|j| {
                        let owner = clearances.owner(j.owner, m.id);
                        fit::check(j, m, &owner, Start::Person(viewer.role)).is_ok()
                    })
                    .take(10)
                    .map(|j| (j.id.0, format!("{} ({})", j.file_name, j.owner_name)))
                    .collect()
            } else {
                Vec::new()
            };
            Tile {
                id: m.id.0,
                name: m.name.clone(),
                state: state.as_str().into(),
                state_label: tr.word("state", state.as_str()),
                state_symbol: super::machines::state_symbol(state),
                job: l.and_then(|l| l.job_name.clone()),
                member: l.and_then(|l| l.member.clone()),
                percent: l.map_or(0, |l| (l.progress * 100.0).round() as i64),
                remaining: l
                    .and_then(|l| l.remaining_s)
                    .map(|s| duration(i64::try_from(s).unwrap_or(i64::MAX))),
                temperatures: temperatures(tr, l.and_then(|l| l.hotend), l.and_then(|l| l.bed)),
                last_error: l
                    .and_then(|l| l.last_error.clone())
                    .or_else(|| (!m.state_reason.is_empty()).then(|| m.state_reason.clone())),
                actions,
                panel: (m.connection.kind()
                    == fabrique_controller::domain::machine::ConnectionKind::SerialGrbl)
                    .then(|| runtime.panel_view(m.id).and_then(|(who, _)| who)),
                startable,
                tool_change,
            }
        })
        .collect();
    Ok(BoardPage {
        p: Page::new(ctx, "board.title", "board", "/board"),
        error,
        tiles,
    })
}

/// Below this a heater with no target is cold: its line goes from the tile.
const COLD_C: f64 = 40.0;

/// "Buse 205 °C (cible 210 °C) · Plateau 58 °C (cible 60 °C)": each heater with its
/// target; a heater that is off and cold is left out, and nothing at all when both are.
/// `board.js` writes the same from the live events.
fn temperatures(
    tr: &Tr,
    hotend: Option<(f64, Option<f64>)>,
    bed: Option<(f64, Option<f64>)>,
) -> Option<String> {
    let parts: Vec<String> = [("board.hotend", hotend), ("board.bed", bed)]
        .into_iter()
        .filter_map(|(label, reading)| {
            let (actual, target) = reading?;
            let target = target.filter(|t| *t > 0.0);
            if target.is_none() && actual < COLD_C {
                return None;
            }
            let heater = tr.t(label);
            let actual = format!("{actual:.0}");
            Some(match target {
                Some(t) => tr.f(
                    "board.temp_target",
                    &[
                        ("heater", heater),
                        ("actual", &actual),
                        ("target", &format!("{t:.0}")),
                    ],
                ),
                None => tr.f("board.temp", &[("heater", heater), ("actual", &actual)]),
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// What a person reads when the runtime refuses an action.
fn runtime_message(tr: &Tr, e: RuntimeError) -> String {
    match e {
        RuntimeError::UnknownMachine => tr.t("board.unknown_machine").to_string(),
        other => super::message(tr, &AppError::from(other)),
    }
}

async fn board(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    Ok(render(&board_page(&state, &ctx, None).await?)?.into_response())
}

async fn events(State(state): State<AppState>, ctx: Ctx) -> AppResult<impl IntoResponse> {
    ctx.require(Role::Trainer)?;
    let receiver = state.runtime.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(live) => {
                    let event = Event::default()
                        .event("machine")
                        .json_data(&live)
                        .unwrap_or_default();
                    return Some((Ok::<_, Infallible>(event), receiver));
                }
                // A slow reader missed some updates: the next one carries the whole state.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(serde::Deserialize)]
struct ActForm {
    job: Option<i64>,
}

async fn act(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<ActForm>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Trainer)?;
    let machine = MachineId(id);
    state.lab.machine(machine).await?;
    let result: Result<(), String> = match action.as_str() {
        "start" => match form.job {
            Some(job) => state
                .runtime
                .start_job(machine, JobId(job), user)
                .await
                .map_err(|e| runtime_message(&ctx.tr, e)),
            None => Err(ctx.tr.t("board.no_job").to_string()),
        },
        "pause" => state
            .runtime
            .control(machine, Command::Pause)
            .await
            .map_err(|e| runtime_message(&ctx.tr, e)),
        "resume" => state
            .runtime
            .control(machine, Command::Resume)
            .await
            .map_err(|e| runtime_message(&ctx.tr, e)),
        "cancel" => state
            .runtime
            .control(machine, Command::Cancel)
            .await
            .map_err(|e| runtime_message(&ctx.tr, e)),
        "emergency-stop" => state
            .runtime
            .control(machine, Command::EmergencyStop)
            .await
            .map_err(|e| runtime_message(&ctx.tr, e)),
        "finished" => state
            .runtime
            .control(machine, Command::Finished { ok: true })
            .await
            .map_err(|e| runtime_message(&ctx.tr, e)),
        "checked" | "maintenance" => {
            let next = if action == "checked" {
                MachineState::Idle
            } else {
                MachineState::Maintenance
            };
            let reason = if action == "checked" {
                ""
            } else {
                ctx.tr.t("board.maintenance")
            };
            match state
                .lab
                .set_machine_state(user, machine, next, reason, now())
                .await
            {
                Ok(_) => {
                    state.runtime.refresh(machine).await;
                    Ok(())
                }
                Err(e) => Err(super::message(&ctx.tr, &AppError::from(e))),
            }
        }
        _ => return Err(AppError::not_found()),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/board").into_response()),
        Err(reason) => {
            let page = board_page(&state, &ctx, Some(reason)).await?;
            Ok(render_with_status(StatusCode::CONFLICT, &page))
        }
    }
}

struct PlanMachineRow {
    id: i64,
    name: String,
    rows: Vec<String>,
}

#[derive(Template)]
#[template(path = "plan.html")]
struct PlanPage {
    p: Page,
    machines: Vec<PlanMachineRow>,
    waiting: Vec<String>,
}

/// Today's and tomorrow's timeline per machine: bookings, blocks and planned jobs.
async fn plan(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.require(Role::Trainer)?;
    let planned = state.runtime.plan().await?;
    let settings = state.lab.calendar_settings().await?;
    let tz = settings.tz();
    let today = settings.local_date(planned.now);
    let end = today
        .checked_add(jiff::ToSpan::days(2))
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map_or(planned.now, |z| z.timestamp());
    let bookings = state
        .lab
        .bookings_between(None, planned.now, end, now())
        .await?;
    let tr = &ctx.tr;
    let when = |start: jiff::Timestamp, stop: jiff::Timestamp| {
        let day = if settings.local_date(start) == today {
            tr.t("plan.today")
        } else {
            tr.t("plan.tomorrow")
        };
        let clock = |t: jiff::Timestamp| t.to_zoned(tz.clone()).strftime("%H:%M").to_string();
        format!("{day} {}–{}", clock(start), clock(stop))
    };
    let machines = planned
        .machines
        .iter()
        .map(|m| {
            let mut rows: Vec<(jiff::Timestamp, String)> = bookings
                .iter()
                .filter(|b| b.machine == m.id && b.is_live())
                .map(|b| {
                    let what = match (&b.user_name, b.kind) {
                        (_, fabrique_controller::domain::booking::BookingKind::Block) => {
                            format!("{} ({})", tr.t("week.unavailable"), b.note)
                        }
                        (Some(name), _) => tr.f("plan.booking", &[("member", name)]),
                        (None, _) => tr.t("week.taken").to_string(),
                    };
                    (
                        b.starts_at,
                        format!("{} · {what}", when(b.starts_at, b.ends_at)),
                    )
                })
                .collect();
            for x in planned
                .plan
                .placements
                .iter()
                .filter(|x| x.machine == m.id.0 && x.start < end)
            {
                if let Some(job) = planned.jobs.iter().find(|j| j.id.0 == x.job) {
                    rows.push((
                        x.start,
                        format!(
                            "{} · {} ({})",
                            when(x.start, x.end),
                            job.file_name,
                            job.owner_name
                        ),
                    ));
                }
            }
            rows.sort_by_key(|(at, _)| *at);
            PlanMachineRow {
                id: m.id.0,
                name: m.name.clone(),
                rows: rows.into_iter().map(|(_, r)| r).collect(),
            }
        })
        .collect();
    let waiting = planned
        .plan
        .unplaced
        .iter()
        .filter_map(|(id, _)| {
            let job = planned.jobs.iter().find(|j| j.id.0 == *id)?;
            let why = planned.waiting.get(id)?;
            Some(format!(
                "{} ({}) · {}",
                job.file_name,
                job.owner_name,
                tr.waiting(why)
            ))
        })
        .collect();
    Ok(render(&PlanPage {
        p: Page::new(&ctx, "plan.title", "plan", "/plan"),
        machines,
        waiting,
    })?
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::temperatures;
    use crate::i18n::{Catalog, Tr};
    use fabrique_controller::domain::Lang;
    use std::sync::Arc;

    #[test]
    fn temperatures_say_their_targets_and_go_when_the_printer_is_cold() {
        #[allow(clippy::unwrap_used)]
        let tr = Tr::new(Lang::Fr, Arc::new(Catalog::embedded().unwrap()));
        assert_eq!(
            temperatures(&tr, Some((204.6, Some(210.0))), Some((58.0, Some(60.0)))).as_deref(),
            Some("Buse 205 °C (cible 210 °C) · Plateau 58 °C (cible 60 °C)")
        );
        assert_eq!(
            temperatures(&tr, Some((120.0, Some(0.0))), Some((22.0, None))).as_deref(),
            Some("Buse 120 °C"),
            "cooling down: no target, still hot"
        );
        assert_eq!(
            temperatures(&tr, Some((24.0, Some(0.0))), Some((23.0, None))),
            None
        );
        assert_eq!(temperatures(&tr, None, None), None);
    }
}
