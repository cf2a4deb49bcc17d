//! Booking pages (a week per machine, a confirmation, my bookings, the manager's day),
//! trainings and sessions, badges and their public pages, calendar feeds and settings.

use super::{Page, base_url, done, message, render, render_with_status};
use crate::app::AppState;
use crate::ctx::{Ctx, safe_next};
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fabrique_controller::domain::booking::{Booking, BookingId, BookingKind};
use fabrique_controller::domain::calendar::CalendarSettings;
use fabrique_controller::domain::training::{
    BadgeId, BadgeStatus, EnrolmentStatus, SessionId, TrainingId, TrainingInput,
};
use fabrique_controller::domain::{Invalid, MachineId, MachineState, Role, User, UserId};
use fabrique_controller::lab::now;
use jiff::civil::{Date, DateTime};
use jiff::{Timestamp, ToSpan};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/machines/{id}/week", get(week))
        .route("/bookings", get(my_bookings).post(create_booking))
        .route("/bookings/new", get(new_booking))
        .route("/bookings/{id}/cancel", post(cancel_booking))
        .route("/bookings/{id}/check-in", post(check_in))
        .route("/blocks", post(create_block))
        .route("/day", get(day))
        .route("/grid", get(grid))
        .route("/calendar/token", post(new_feed))
        .route("/calendar/member/{file}", get(member_feed))
        .route("/calendar/machines/{file}", get(machine_feed))
        .route("/badges", get(my_badges))
        .route("/badges/{token}", get(public_badge))
        .route("/badges/{token}/credential.json", get(credential))
        .route("/badges/{token}/revoke", post(revoke))
        .route(
            "/members/{id}/badges",
            get(member_badges).post(award_to_member),
        )
        .route("/trainings", get(trainings))
        .route("/trainings/{id}/sessions", post(create_session))
        .route(
            "/admin/trainings/new",
            get(new_training).post(save_new_training),
        )
        .route(
            "/admin/trainings/{id}",
            get(edit_training).post(save_training),
        )
        .route("/sessions/{id}", get(session))
        .route("/sessions/{id}/enrol", post(enrol))
        .route("/sessions/{id}/cancel", post(cancel_enrolment))
        .route("/sessions/{id}/attendance", post(attendance))
        .route("/sessions/{id}/award", post(award))
        .route("/admin/calendar", get(settings_page).post(save_settings))
}

/// "mardi 24 novembre" in the lab's time zone and the reader's language.
pub(crate) fn day_label(tr: &Tr, date: Date) -> String {
    let weekday = date.weekday().to_monday_zero_offset();
    // "mardi 1er décembre", "Tuesday 1 December".
    let day = if date.day() == 1 {
        tr.t("date.first_day").to_string()
    } else {
        date.day().to_string()
    };
    format!(
        "{} {day} {}",
        tr.word("weekday", &weekday.to_string()),
        tr.word("month", &date.month().to_string())
    )
}

fn clock(settings: &CalendarSettings, at: Timestamp) -> String {
    settings.clock(at)
}

/// "mardi 24 novembre, 14:00 – 15:30".
pub(crate) fn when(
    tr: &Tr,
    settings: &CalendarSettings,
    start: Timestamp,
    end: Timestamp,
) -> String {
    format!(
        "{}, {} – {}",
        day_label(tr, settings.local_date(start)),
        clock(settings, start),
        clock(settings, end)
    )
}

/// Reads "2026-12-01 14:00" (or with a T) as the lab's local time.
fn parse_local(
    settings: &CalendarSettings,
    field: &'static str,
    raw: &str,
) -> Result<Timestamp, Invalid> {
    let text = raw.trim().replace(' ', "T");
    let dt: DateTime = text.parse().map_err(|_| Invalid::new(field, "datetime"))?;
    dt.to_zoned(settings.tz())
        .map(|z| z.timestamp())
        .map_err(|_| Invalid::new(field, "datetime"))
}

fn today(settings: &CalendarSettings) -> Date {
    settings.local_date(Timestamp::now())
}

#[derive(serde::Deserialize)]
struct DateQuery {
    date: Option<String>,
}

fn date_or_today(settings: &CalendarSettings, raw: Option<&str>) -> Date {
    raw.and_then(|d| d.parse::<Date>().ok())
        .unwrap_or_else(|| today(settings))
}

// --- Week view -----------------------------------------------------------------------------

struct SlotView {
    start: String,
    time: String,
    free: bool,
    label: String,
}

struct DayView {
    label: String,
    slots: Vec<SlotView>,
}

#[derive(Template)]
#[template(path = "week.html")]
struct WeekPage {
    p: Page,
    machine_id: i64,
    /// The member a manager books for, at the desk.
    member: Option<i64>,
    days: Vec<DayView>,
    previous: Date,
    next: Date,
    missing_training: Option<String>,
}

#[derive(serde::Deserialize)]
struct WeekQuery {
    date: Option<String>,
    member: Option<i64>,
}

/// The member a manager acts for (`?member=` on the week and booking pages), or `None` when
/// people book for themselves. Anyone else's account needs a manager (403).
async fn for_member(
    state: &AppState,
    actor: &User,
    member: Option<i64>,
) -> AppResult<Option<User>> {
    match member {
        Some(id) if id != actor.id.0 => Ok(Some(state.lab.user(actor, UserId(id)).await?)),
        _ => Ok(None),
    }
}

async fn week(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<WeekQuery>,
) -> AppResult<Response> {
    let actor = ctx.user()?;
    let member = for_member(&state, actor, q.member).await?;
    let user = member.as_ref().unwrap_or(actor);
    let machine = state.lab.machine(MachineId(id)).await?;
    let settings = state.lab.calendar_settings().await?;
    let first = date_or_today(&settings, q.date.as_deref());
    let monday = first
        .checked_sub(i64::from(first.weekday().to_monday_zero_offset()).days())
        .unwrap_or(first);
    let from = settings
        .windows(monday)
        .first()
        .map_or(Timestamp::now(), |w| w.0)
        .min(Timestamp::now());
    let to = Timestamp::from_second(from.as_second() + 9 * 86_400).unwrap_or(from);
    let bookings = state
        .lab
        .bookings_between(
            Some(machine.id),
            Timestamp::from_second(from.as_second() - 86_400).unwrap_or(from),
            to,
            now(),
        )
        .await?;
    let live: Vec<&Booking> = bookings.iter().filter(|b| b.is_live()).collect();
    let now_ts = Timestamp::now();
    let mut days = Vec::new();
    for offset in 0..7 {
        let Ok(date) = monday.checked_add(offset.days()) else {
            continue;
        };
        let slots = settings
            .slots(date)
            .into_iter()
            .filter(|(_, end)| *end > now_ts)
            .map(|(start, end)| {
                let taken = live.iter().find(|b| b.starts_at < end && start < b.ends_at);
                let label = match taken {
                    Some(b) if b.user == Some(user.id) && member.is_some() => {
                        ctx.tr.t("week.theirs").to_string()
                    }
                    Some(b) if b.user == Some(user.id) => ctx.tr.t("week.yours").to_string(),
                    Some(b) if b.kind == BookingKind::Block => {
                        ctx.tr.t("week.unavailable").to_string()
                    }
                    Some(_) => ctx.tr.t("week.taken").to_string(),
                    None => String::new(),
                };
                SlotView {
                    start: start.to_string(),
                    time: clock(&settings, start),
                    free: taken.is_none() && start >= now_ts,
                    label,
                }
            })
            .collect();
        days.push(DayView {
            label: day_label(&ctx.tr, date),
            slots,
        });
    }
    let missing = state
        .lab
        .missing_training(user.id, machine.id, now())
        .await?;
    let missing_training = missing.map(|t| {
        let key = match &member {
            Some(_) => "week.missing_member",
            None if settings.supervised_without_badge => "week.missing_supervised",
            None => "week.missing",
        };
        ctx.tr
            .f(key, &[("training", &t), ("member", &user.display_name)])
    });
    let path = match &member {
        Some(m) => format!("/machines/{id}/week?member={}", m.id),
        None => format!("/machines/{id}/week"),
    };
    let mut p = Page::new(&ctx, "week.title", "home", &path);
    p.title = match &member {
        Some(m) => ctx.tr.f(
            "week.title_for",
            &[("machine", &machine.name), ("member", &m.display_name)],
        ),
        None => ctx.tr.f("week.title", &[("machine", &machine.name)]),
    };
    let previous = monday.checked_sub(7.days()).unwrap_or(monday);
    let next = monday.checked_add(7.days()).unwrap_or(monday);
    Ok(render(&WeekPage {
        p,
        machine_id: id,
        member: member.map(|m| m.id.0),
        days,
        previous,
        next,
        missing_training,
    })?
    .into_response())
}

// --- Grid of all machines -------------------------------------------------------------------

struct GridCell {
    text: String,
    href: Option<String>,
    /// `free`, `mine`, `taken`, `block`, `session`, `closed` or `past`: for the style only,
    /// the text says it too.
    class: &'static str,
}

struct GridRow {
    time: String,
    cells: Vec<GridCell>,
}

/// One machine's column of the day, for the phone's one-machine-at-a-time tables.
struct GridColumn {
    name: String,
    cells: Vec<(String, GridCell)>,
}

struct WeekGridRow {
    machine: String,
    cells: Vec<GridCell>,
}

#[derive(Template)]
#[template(path = "grid.html")]
struct GridPage {
    p: Page,
    week: bool,
    date: Date,
    previous: Date,
    next: Date,
    g: GridData,
}

/// What the grid shows, for `/grid` and the manager's day.
struct GridData {
    machines: Vec<String>,
    rows: Vec<GridRow>,
    columns: Vec<GridColumn>,
    days: Vec<String>,
    week_rows: Vec<WeekGridRow>,
    sessions: Vec<String>,
}

#[derive(serde::Deserialize)]
struct GridQuery {
    date: Option<String>,
    view: Option<String>,
}

/// The cells of the grid from `first`: one day (a row per slot) or, with `week`, seven
/// (a row per machine); and the period's training sessions.
async fn grid_data(state: &AppState, ctx: &Ctx, first: Date, week: bool) -> AppResult<GridData> {
    let user = ctx.user()?;
    let manager = user.role.at_least(Role::Manager);
    let tr = &ctx.tr;
    let settings = state.lab.calendar_settings().await?;
    let span = if week { 7 } else { 1 };
    let dates: Vec<Date> = (0..span)
        .filter_map(|d| first.checked_add(d.days()).ok())
        .collect();
    let tz = settings.tz();
    let start_of = |d: Date| d.to_zoned(tz.clone()).map(|z| z.timestamp()).ok();
    let from = start_of(first).ok_or_else(|| Invalid::new("date", "datetime"))?;
    let to = first
        .checked_add(span.days())
        .ok()
        .and_then(start_of)
        .unwrap_or(from);
    let machines = state.lab.machines().await?;
    let bookings: Vec<Booking> = state
        .lab
        .bookings_between(None, from, to, now())
        .await?
        .into_iter()
        .filter(Booking::is_live)
        .collect();
    let trainings = state.lab.trainings().await?;
    let sessions: Vec<_> = state
        .lab
        .upcoming_sessions(from.as_second(), None)
        .await?
        .into_iter()
        .filter(|s| s.starts_at < to)
        .collect();
    let now_ts = Timestamp::now();
    let cell = |m: &fabrique_controller::domain::Machine, start: Timestamp, end: Timestamp| {
        let available = !matches!(m.state, MachineState::Disabled | MachineState::Maintenance);
        let taken = bookings
            .iter()
            .find(|b| b.machine == m.id && b.starts_at < end && start < b.ends_at);
        let session = sessions.iter().find(|s| {
            s.starts_at < end
                && start < s.ends_at
                && trainings
                    .iter()
                    .any(|t| t.id == s.training && t.machines.contains(&m.id))
        });
        let (text, class, href) = match taken {
            Some(b) if b.kind == BookingKind::Block => {
                let mut text = tr.t("grid.blocked").to_string();
                if manager && !b.note.is_empty() {
                    text = format!("{text}{}{}", tr.t("punct.colon"), b.note);
                }
                (text, "block", None)
            }
            Some(b) if b.user == Some(user.id) => (tr.t("week.yours").to_string(), "mine", None),
            Some(b) => {
                let who = b.user_name.clone().filter(|_| manager);
                let text = who.unwrap_or_else(|| tr.t("week.taken").to_string());
                (text, "taken", None)
            }
            None if end <= now_ts => (tr.t("grid.past").to_string(), "past", None),
            None if !available => (tr.t("week.unavailable").to_string(), "closed", None),
            None => (
                tr.t("grid.free").to_string(),
                "free",
                (start >= now_ts)
                    .then(|| format!("/bookings/new?machine={}&start={start}", m.id.0)),
            ),
        };
        match session {
            Some(s) if taken.is_none() => GridCell {
                text: format!(
                    "{text} · {}",
                    tr.f("grid.session", &[("training", &s.training_name)])
                ),
                href,
                class: "session",
            },
            _ => GridCell { text, href, class },
        }
    };
    let mut rows = Vec::new();
    let mut columns: Vec<GridColumn> = machines
        .iter()
        .map(|m| GridColumn {
            name: m.name.clone(),
            cells: Vec::new(),
        })
        .collect();
    let mut week_rows = Vec::new();
    if week {
        for m in &machines {
            let cells = dates
                .iter()
                .map(|d| {
                    let slots = settings.slots(*d);
                    // What can be booked: a free slot still to come (a session's slot too,
                    // which does not hold the machine).
                    let free: Vec<Timestamp> = slots
                        .iter()
                        .filter(|(s, e)| cell(m, *s, *e).href.is_some())
                        .map(|(s, _)| *s)
                        .collect();
                    let href = Some(format!("/grid?date={d}"));
                    let over = slots.last().is_some_and(|(_, end)| *end <= now_ts);
                    let available =
                        !matches!(m.state, MachineState::Disabled | MachineState::Maintenance);
                    match (slots.is_empty(), free.first()) {
                        (true, _) => GridCell {
                            text: tr.t("week.closed").to_string(),
                            href: None,
                            class: "closed",
                        },
                        (false, None) if over => GridCell {
                            text: tr.t("grid.past").to_string(),
                            href: None,
                            class: "past",
                        },
                        (false, None) if !available => GridCell {
                            text: tr.t("week.unavailable").to_string(),
                            href: None,
                            class: "closed",
                        },
                        (false, Some(first)) => GridCell {
                            text: tr.n(
                                "grid.free_from",
                                i64::try_from(free.len()).unwrap_or(0),
                                &[("time", &clock(&settings, *first))],
                            ),
                            href,
                            class: "free",
                        },
                        (false, None) => GridCell {
                            text: tr.t("grid.none_free").to_string(),
                            href,
                            class: "taken",
                        },
                    }
                })
                .collect();
            week_rows.push(WeekGridRow {
                machine: m.name.clone(),
                cells,
            });
        }
    } else {
        for (start, end) in settings.slots(first) {
            let time = format!("{} – {}", clock(&settings, start), clock(&settings, end));
            let cells: Vec<GridCell> = machines.iter().map(|m| cell(m, start, end)).collect();
            for (column, c) in columns.iter_mut().zip(&cells) {
                column.cells.push((
                    time.clone(),
                    GridCell {
                        text: c.text.clone(),
                        href: c.href.clone(),
                        class: c.class,
                    },
                ));
            }
            rows.push(GridRow { time, cells });
        }
    }
    let sessions = sessions
        .iter()
        .map(|s| {
            format!(
                "{} · {} · {}",
                s.training_name,
                when(tr, &settings, s.starts_at, s.ends_at),
                places(tr, s)
            )
        })
        .collect();
    Ok(GridData {
        machines: machines.iter().map(|m| m.name.clone()).collect(),
        rows,
        columns,
        days: dates.iter().map(|d| day_label(tr, *d)).collect(),
        week_rows,
        sessions,
    })
}

/// When is it free: every machine over a day (a row per slot) or a week (a cell per day
/// with its free slots), with bookings, blocks and training sessions. A real table, usable
/// without JavaScript; on a phone the day shows one machine's table after another.
async fn grid(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<GridQuery>,
) -> AppResult<Response> {
    ctx.user()?;
    let tr = &ctx.tr;
    let settings = state.lab.calendar_settings().await?;
    let week = q.view.as_deref() == Some("week");
    let picked = date_or_today(&settings, q.date.as_deref());
    let first = if week {
        picked
            .checked_sub(i64::from(picked.weekday().to_monday_zero_offset()).days())
            .unwrap_or(picked)
    } else {
        picked
    };
    let g = grid_data(&state, &ctx, first, week).await?;
    let (previous, next) = if week {
        (
            first.checked_sub(7.days()).unwrap_or(first),
            first.checked_add(7.days()).unwrap_or(first),
        )
    } else {
        (
            first.yesterday().unwrap_or(first),
            first.tomorrow().unwrap_or(first),
        )
    };
    let path = if week {
        format!("/grid?view=week&date={first}")
    } else {
        format!("/grid?date={first}")
    };
    let mut p = Page::new(&ctx, "grid.title", "grid", &path);
    p.title = if week {
        tr.f("grid.week_title", &[("date", &day_label(tr, first))])
    } else {
        tr.f("grid.day_title", &[("date", &day_label(tr, first))])
    };
    Ok(render(&GridPage {
        p,
        week,
        date: first,
        previous,
        next,
        g,
    })?
    .into_response())
}

// --- Booking ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "booking_new.html")]
struct NewBookingPage {
    p: Page,
    error: Option<String>,
    machine_id: i64,
    member: Option<i64>,
    /// Why nothing can be booked from this start, when no length is left.
    nothing: Option<String>,
    machine_name: String,
    start: String,
    when: String,
    durations: Vec<(u32, String)>,
    offer_supervised: bool,
}

#[derive(serde::Deserialize)]
struct NewBookingQuery {
    machine: i64,
    start: String,
    member: Option<i64>,
}

async fn booking_page(
    state: &AppState,
    ctx: &Ctx,
    machine_id: i64,
    start_raw: &str,
    member: Option<i64>,
    error: Option<String>,
) -> AppResult<NewBookingPage> {
    let actor = ctx.user()?;
    let member = for_member(state, actor, member).await?;
    let user = member.as_ref().unwrap_or(actor);
    let machine = state.lab.machine(MachineId(machine_id)).await?;
    let settings = state.lab.calendar_settings().await?;
    let start = crate::api::parse_time("start", start_raw)?;
    // Only the lengths that can be booked: none past the close or into the next booking.
    let durations: Vec<(u32, String)> = state
        .lab
        .booking_durations(machine.id, start, now())
        .await?
        .into_iter()
        .map(|minutes| {
            let end = Timestamp::from_second(start.as_second() + i64::from(minutes) * 60)
                .unwrap_or(start);
            (
                minutes,
                format!(
                    "{} min ({} – {})",
                    minutes,
                    clock(&settings, start),
                    clock(&settings, end)
                ),
            )
        })
        .collect();
    let missing = state
        .lab
        .missing_training(user.id, machine.id, now())
        .await?;
    let nothing = durations.is_empty().then(|| {
        let on_grid = settings
            .slots(settings.local_date(start))
            .iter()
            .any(|(s, _)| *s == start);
        ctx.tr
            .t(if on_grid {
                "booking.none_taken"
            } else {
                "booking.none_closed"
            })
            .to_string()
    });
    let mut p = Page::new(ctx, "booking.title", "home", "/bookings/new");
    p.title = match &member {
        Some(m) => ctx.tr.f(
            "booking.title_for",
            &[("machine", &machine.name), ("member", &m.display_name)],
        ),
        None => ctx.tr.f("booking.title", &[("machine", &machine.name)]),
    };
    Ok(NewBookingPage {
        p,
        error,
        machine_id,
        member: member.as_ref().map(|m| m.id.0),
        nothing,
        machine_name: machine.name,
        start: start.to_string(),
        when: format!(
            "{}, {}",
            day_label(&ctx.tr, settings.local_date(start)),
            clock(&settings, start)
        ),
        durations,
        offer_supervised: missing.is_some()
            && settings.supervised_without_badge
            && member.is_none(),
    })
}

async fn new_booking(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<NewBookingQuery>,
) -> AppResult<Response> {
    Ok(
        render(&booking_page(&state, &ctx, q.machine, &q.start, q.member, None).await?)?
            .into_response(),
    )
}

#[derive(serde::Deserialize)]
struct BookingForm {
    machine: i64,
    start: String,
    minutes: u32,
    /// The member a manager books for; absent: for oneself.
    member: Option<i64>,
    supervised: Option<String>,
    #[serde(default)]
    note: String,
}

async fn create_booking(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(f): Form<BookingForm>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let start = crate::api::parse_time("start", &f.start)?;
    let end = Timestamp::from_second(start.as_second() + i64::from(f.minutes) * 60)
        .map_err(|_| Invalid::new("end", "datetime"))?;
    let member = f.member.map_or(user.id, UserId);
    let result = state
        .lab
        .book(
            user,
            MachineId(f.machine),
            member,
            start,
            end,
            f.supervised.is_some(),
            &f.note,
            now(),
        )
        .await;
    match result {
        Ok(b) => {
            let settings = state.lab.calendar_settings().await?;
            let when = when(&ctx.tr, &settings, b.starts_at, b.ends_at);
            Ok(if member == user.id {
                done(
                    &ctx,
                    "/bookings",
                    "notice.booked",
                    &[("machine", &b.machine_name), ("when", &when)],
                )
            } else {
                let name = b.user_name.unwrap_or_default();
                done(
                    &ctx,
                    &format!("/members/{}", member.0),
                    "notice.booked_for",
                    &[
                        ("machine", &b.machine_name),
                        ("when", &when),
                        ("member", &name),
                    ],
                )
            })
        }
        Err(e) => {
            let e = AppError::from(e);
            if !e.shown_on_the_form() {
                return Err(e);
            }
            let page = booking_page(
                &state,
                &ctx,
                f.machine,
                &f.start,
                f.member,
                Some(message(&ctx.tr, &e)),
            )
            .await?;
            Ok(render_with_status(e.status, &page))
        }
    }
}

struct BookingRow {
    id: i64,
    machine: String,
    when: String,
    status: String,
    supervised: bool,
    can_cancel: bool,
    can_check_in: bool,
    who: String,
    note: String,
}

fn booking_row(tr: &Tr, settings: &CalendarSettings, b: &Booking, viewer: &User) -> BookingRow {
    let now = Timestamp::now().as_second();
    let live = b.is_live();
    let manager = viewer.role.at_least(Role::Manager);
    BookingRow {
        id: b.id.0,
        machine: b.machine_name.clone(),
        when: when(tr, settings, b.starts_at, b.ends_at),
        status: tr.word(
            "booking_status",
            if b.kind == BookingKind::Block {
                "block"
            } else {
                b.status().as_str()
            },
        ),
        supervised: b.supervised,
        can_cancel: live && b.ends_at.as_second() > now,
        can_check_in: b.check_in_open(now) && (manager || b.user == Some(viewer.id)),
        who: match (&b.user_name, b.kind) {
            (_, BookingKind::Block) => tr.t("week.unavailable").to_string(),
            (Some(name), _) => name.clone(),
            (None, _) => String::new(),
        },
        note: b.note.clone(),
    }
}

#[derive(Template)]
#[template(path = "bookings.html")]
struct BookingsPage {
    p: Page,
    bookings: Vec<BookingRow>,
    feed_url: Option<String>,
}

async fn bookings_page(
    state: &AppState,
    ctx: &Ctx,
    feed_url: Option<String>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let settings = state.lab.calendar_settings().await?;
    let bookings = state.lab.my_bookings(user, now()).await?;
    let bookings = bookings
        .iter()
        .map(|b| booking_row(&ctx.tr, &settings, b, user))
        .collect();
    let p = Page::new(ctx, "bookings.title", "bookings", "/bookings");
    Ok(render(&BookingsPage {
        p,
        bookings,
        feed_url,
    })?
    .into_response())
}

async fn my_bookings(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    bookings_page(&state, &ctx, None).await
}

async fn new_feed(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let token = state.lab.new_calendar_token(ctx.user()?).await?;
    let url = format!("{}/calendar/member/{token}.ics", base_url(&state));
    bookings_page(&state, &ctx, Some(url)).await
}

/// Where to go back to after acting on a booking: the day view for managers.
fn back(ctx: &Ctx) -> &'static str {
    if ctx
        .user
        .as_ref()
        .is_some_and(|u| u.role.at_least(Role::Manager))
    {
        "/day"
    } else {
        "/bookings"
    }
}

/// Where a form sends people back to: its `next` field when it is a path of this site.
#[derive(Default, serde::Deserialize)]
struct NextForm {
    #[serde(default)]
    next: String,
}

fn back_to<'a>(ctx: &Ctx, next: &'a str) -> &'a str {
    if next.is_empty() {
        back(ctx)
    } else {
        safe_next(next)
    }
}

async fn cancel_booking(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<NextForm>,
) -> AppResult<Response> {
    let b = state
        .lab
        .cancel_booking(ctx.user()?, BookingId(id), now())
        .await?;
    let settings = state.lab.calendar_settings().await?;
    let when = when(&ctx.tr, &settings, b.starts_at, b.ends_at);
    Ok(done(
        &ctx,
        back_to(&ctx, &f.next),
        "notice.booking_cancelled",
        &[("machine", &b.machine_name), ("when", &when)],
    ))
}

async fn check_in(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<NextForm>,
) -> AppResult<Response> {
    let b = state
        .lab
        .check_in(ctx.user()?, BookingId(id), now())
        .await?;
    Ok(done(
        &ctx,
        back_to(&ctx, &f.next),
        "notice.checked_in",
        &[("machine", &b.machine_name)],
    ))
}

// --- Manager's day --------------------------------------------------------------------------

struct DayMachine {
    id: i64,
    name: String,
    bookings: Vec<BookingRow>,
}

#[derive(Template)]
#[template(path = "day.html")]
struct DayPage {
    p: Page,
    /// Every machine's slots of the day, as on `/grid`.
    g: GridData,
    machines: Vec<DayMachine>,
    date: Date,
    previous: Date,
    next: Date,
}

async fn day(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<DateQuery>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let settings = state.lab.calendar_settings().await?;
    let date = date_or_today(&settings, q.date.as_deref());
    let tz = settings.tz();
    let from = date
        .to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|_| Invalid::new("date", "datetime"))?;
    let to = date
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(tz).ok())
        .map_or(from, |z| z.timestamp());
    let bookings = state.lab.bookings_between(None, from, to, now()).await?;
    let machines = state
        .lab
        .machines()
        .await?
        .into_iter()
        .map(|m| DayMachine {
            id: m.id.0,
            bookings: bookings
                .iter()
                .filter(|b| b.machine == m.id)
                .map(|b| booking_row(&ctx.tr, &settings, b, user))
                .collect(),
            name: m.name,
        })
        .collect();
    let mut p = Page::new(&ctx, "day.title", "day", "/day");
    p.title = ctx
        .tr
        .f("day.title", &[("date", &day_label(&ctx.tr, date))]);
    let previous = date.yesterday().unwrap_or(date);
    let next = date.tomorrow().unwrap_or(date);
    let g = grid_data(&state, &ctx, date, false).await?;
    Ok(render(&DayPage {
        p,
        g,
        machines,
        date,
        previous,
        next,
    })?
    .into_response())
}

#[derive(serde::Deserialize)]
struct BlockForm {
    machine: i64,
    start: String,
    end: String,
    note: String,
}

async fn create_block(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(f): Form<BlockForm>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let settings = state.lab.calendar_settings().await?;
    let start = parse_local(&settings, "start", &f.start)?;
    let end = parse_local(&settings, "end", &f.end)?;
    let b = state
        .lab
        .block(user, MachineId(f.machine), start, end, &f.note, now())
        .await?;
    let date = settings.local_date(start);
    let when = when(&ctx.tr, &settings, b.starts_at, b.ends_at);
    Ok(done(
        &ctx,
        &format!("/day?date={date}"),
        "notice.blocked",
        &[("machine", &b.machine_name), ("when", &when)],
    ))
}

// --- Feeds -----------------------------------------------------------------------------------

fn ics(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn member_feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> AppResult<Response> {
    let token = file.strip_suffix(".ics").unwrap_or(&file);
    Ok(ics(state.lab.member_feed(token, now()).await?))
}

async fn machine_feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> AppResult<Response> {
    let id: i64 = file
        .strip_suffix(".ics")
        .unwrap_or(&file)
        .parse()
        .map_err(|_| AppError::not_found())?;
    Ok(ics(state.lab.machine_feed(MachineId(id), now()).await?))
}

// --- Badges ----------------------------------------------------------------------------------

struct BadgeRow {
    training: String,
    status: String,
    until: String,
    warning: bool,
    reason: Option<String>,
    url: String,
}

#[derive(Template)]
#[template(path = "badges.html")]
struct BadgesPage {
    p: Page,
    badges: Vec<BadgeRow>,
}

pub(crate) fn date_text(tr: &Tr, at: Timestamp) -> String {
    let date = at.to_zoned(jiff::tz::TimeZone::UTC).date();
    format!("{} {}", day_label(tr, date), date.year())
}

async fn my_badges(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let user = ctx.user()?;
    let now_ts = Timestamp::now();
    let badges = state
        .lab
        .badges_of(user, user.id)
        .await?
        .iter()
        .map(|b| {
            let status = b.status(now_ts);
            BadgeRow {
                training: b.training_name.clone(),
                status: ctx.tr.word("badge_status", status.as_str()),
                until: ctx.tr.f(
                    "badges.until",
                    &[("date", &date_text(&ctx.tr, b.valid_until()))],
                ),
                warning: status == BadgeStatus::ExpiringSoon,
                reason: b.revoke_reason.clone(),
                url: format!("/badges/{}", b.public_token),
            }
        })
        .collect();
    let p = Page::new(&ctx, "badges.title", "badges", "/badges");
    Ok(render(&BadgesPage { p, badges })?.into_response())
}

#[derive(Template)]
#[template(path = "badge_public.html")]
struct BadgePage {
    p: Page,
    holder: String,
    training: String,
    awarded: String,
    status: String,
    until: String,
    /// Set when the badge was withdrawn; the page then offers no file to download.
    revoke_reason: Option<String>,
    credential_url: String,
    jwt_url: String,
    png_url: String,
}

async fn public_badge(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let badge = state.lab.public_badge(&token).await?;
    let mut p = Page::new(&ctx, "badge.title", "", &format!("/badges/{token}"));
    p.title = ctx
        .tr
        .f("badge.title", &[("training", &badge.training_name)]);
    let page = BadgePage {
        p,
        holder: badge.holder_name.clone(),
        training: badge.training_name.clone(),
        awarded: ctx.tr.f(
            "badge.awarded_by",
            &[
                ("date", &date_text(&ctx.tr, badge.awarded_at)),
                ("by", &badge.awarded_by_name),
            ],
        ),
        status: ctx
            .tr
            .word("badge_status", badge.status(Timestamp::now()).as_str()),
        until: date_text(&ctx.tr, badge.valid_until()),
        revoke_reason: badge
            .revoked_at
            .map(|_| badge.revoke_reason.clone().unwrap_or_default()),
        credential_url: format!("/badges/{token}/credential.json"),
        jwt_url: format!("/badges/{token}/credential.jwt"),
        png_url: format!("/badges/{token}/badge.png"),
    };
    Ok(render(&page)?.into_response())
}

/// The Open Badges 3.0 credential. A revoked badge answers 410 Gone.
async fn credential(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let badge = state.lab.public_badge(&token).await?;
    if badge.revoked_at.is_some() {
        return Err(AppError::new(StatusCode::GONE, "revoked", "badge.revoked"));
    }
    let body = super::credentials::credential_of(&state, &badge);
    Ok((
        [(header::CONTENT_TYPE, "application/ld+json")],
        body.to_string(),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
struct RevokeForm {
    reason: String,
    #[serde(default)]
    next: String,
}

struct MemberBadgeRow {
    id: i64,
    training: String,
    status: String,
    until: String,
    reason: Option<String>,
    revocable: bool,
}

#[derive(Template)]
#[template(path = "member_badges.html")]
struct MemberBadgesPage {
    p: Page,
    error: Option<String>,
    no_shows: String,
    badges: Vec<MemberBadgeRow>,
    trainings: Vec<(i64, String)>,
}

/// A member's badges for trainers and managers: award, revoke with a reason, and how many
/// booked slots the member did not come to (counted, never fined).
async fn member_badges_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
) -> AppResult<MemberBadgesPage> {
    let actor = ctx.require(Role::Trainer)?;
    let member = state
        .lab
        .store()
        .user(UserId(id))
        .await
        .map_err(|_| AppError::not_found())?;
    let now_ts = Timestamp::now();
    let badges = state
        .lab
        .badges_of(actor, member.id)
        .await?
        .iter()
        .map(|b| MemberBadgeRow {
            id: b.id.0,
            training: b.training_name.clone(),
            status: ctx.tr.word("badge_status", b.status(now_ts).as_str()),
            until: ctx.tr.f(
                "badges.until",
                &[("date", &date_text(&ctx.tr, b.valid_until()))],
            ),
            reason: b.revoke_reason.clone(),
            revocable: b.revoked_at.is_none(),
        })
        .collect();
    let no_shows = state
        .lab
        .store()
        .count_no_shows(member.id)
        .await
        .map_err(|e| AppError::internal("no-shows", &e))?;
    let trainings = state
        .lab
        .trainings()
        .await?
        .into_iter()
        .map(|t| (t.id.0, t.name))
        .collect();
    let mut p = Page::new(
        ctx,
        "member_badges.title",
        "members",
        &format!("/members/{id}/badges"),
    );
    p.title = ctx
        .tr
        .f("member_badges.title", &[("member", &member.display_name)]);
    Ok(MemberBadgesPage {
        p,
        error,
        no_shows: ctx.tr.f(
            "member_badges.no_shows",
            &[("count", &no_shows.to_string())],
        ),
        badges,
        trainings,
    })
}

async fn member_badges(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(render(&member_badges_page(&state, &ctx, id, None).await?)?.into_response())
}

#[derive(serde::Deserialize)]
struct AwardForm {
    training: i64,
    #[serde(default)]
    next: String,
}

/// `next` when it is a path of this site, else `fallback`.
fn safe_after(next: &str, fallback: &str) -> String {
    if next.is_empty() {
        fallback.to_string()
    } else {
        safe_next(next).to_string()
    }
}

fn badge_awarded(
    ctx: &Ctx,
    to: &str,
    b: &fabrique_controller::domain::training::Badge,
) -> Response {
    done(
        ctx,
        to,
        "notice.badge_awarded",
        &[("training", &b.training_name), ("member", &b.holder_name)],
    )
}

async fn award_to_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<AwardForm>,
) -> AppResult<Response> {
    let actor = ctx.require(Role::Trainer)?;
    match state
        .lab
        .award_badge(actor, UserId(id), TrainingId(f.training), None, now())
        .await
    {
        Ok(b) => Ok(badge_awarded(
            &ctx,
            &safe_after(&f.next, &format!("/members/{id}/badges")),
            &b,
        )),
        Err(e) => {
            let e = AppError::from(e);
            if !e.shown_on_the_form() {
                return Err(e);
            }
            let page = member_badges_page(&state, &ctx, id, Some(message(&ctx.tr, &e))).await?;
            Ok(render_with_status(e.status, &page))
        }
    }
}

async fn revoke(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<RevokeForm>,
) -> AppResult<Response> {
    let b = state
        .lab
        .revoke_badge(ctx.user()?, BadgeId(id), &f.reason, now())
        .await?;
    Ok(done(
        &ctx,
        safe_next(&f.next),
        "notice.badge_revoked",
        &[("training", &b.training_name), ("member", &b.holder_name)],
    ))
}

// --- Trainings and sessions ---------------------------------------------------------------------

struct SessionRow {
    id: i64,
    when: String,
    trainer: String,
    places: String,
}

struct TrainingRow {
    id: i64,
    name: String,
    description: String,
    machines: String,
    validity: String,
    sessions: Vec<SessionRow>,
}

#[derive(Template)]
#[template(path = "trainings.html")]
struct TrainingsPage {
    p: Page,
    trainings: Vec<TrainingRow>,
    is_trainer: bool,
}

pub(crate) fn places(
    tr: &Tr,
    s: &fabrique_controller::domain::training::TrainingSession,
) -> String {
    let free = s.capacity.saturating_sub(s.enrolled);
    if free == 0 {
        tr.f("session.full", &[("waiting", &s.waiting.to_string())])
    } else {
        tr.f(
            "session.places",
            &[
                ("free", &free.to_string()),
                ("capacity", &s.capacity.to_string()),
            ],
        )
    }
}

async fn trainings(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let user = ctx.user()?;
    let settings = state.lab.calendar_settings().await?;
    let machines = state.lab.machines().await?;
    let sessions = state.lab.upcoming_sessions(now(), None).await?;
    let trainings = state
        .lab
        .trainings()
        .await?
        .into_iter()
        .map(|t| TrainingRow {
            id: t.id.0,
            machines: machines
                .iter()
                .filter(|m| t.machines.contains(&m.id))
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
            validity: ctx.tr.f(
                "trainings.validity",
                &[("months", &t.validity_months.to_string())],
            ),
            sessions: sessions
                .iter()
                .filter(|s| s.training == t.id)
                .map(|s| SessionRow {
                    id: s.id.0,
                    when: when(&ctx.tr, &settings, s.starts_at, s.ends_at),
                    trainer: s.trainer_name.clone(),
                    places: places(&ctx.tr, s),
                })
                .collect(),
            name: t.name,
            description: t.description,
        })
        .collect();
    let p = Page::new(&ctx, "trainings.title", "trainings", "/trainings");
    Ok(render(&TrainingsPage {
        p,
        trainings,
        is_trainer: user.role.at_least(Role::Trainer),
    })?
    .into_response())
}

#[derive(serde::Deserialize)]
struct SessionForm {
    start: String,
    minutes: String,
    capacity: String,
    #[serde(default)]
    location: String,
}

async fn create_session(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<SessionForm>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Trainer)?;
    let settings = state.lab.calendar_settings().await?;
    let start = parse_local(&settings, "start", &f.start)?;
    let minutes: i64 = f
        .minutes
        .trim()
        .parse()
        .map_err(|_| Invalid::new("ends_at", "number_range"))?;
    let end = Timestamp::from_second(start.as_second() + minutes * 60)
        .map_err(|_| Invalid::new("ends_at", "number_range"))?;
    let capacity: u32 = f
        .capacity
        .trim()
        .parse()
        .map_err(|_| Invalid::new("capacity", "number_range"))?;
    let session = state
        .lab
        .create_session(
            user,
            TrainingId(id),
            start,
            end,
            None,
            capacity,
            &f.location,
            now(),
        )
        .await?;
    Ok(Redirect::to(&format!("/sessions/{}", session.id.0)).into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
struct TrainingFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    validity_months: String,
    #[serde(default)]
    lapse_months: String,
}

#[derive(Template)]
#[template(path = "training_form.html")]
struct TrainingForm {
    p: Page,
    error: Option<String>,
    action: String,
    f: TrainingFields,
    machines: Vec<(i64, String, bool)>,
}

async fn training_form(
    state: &AppState,
    ctx: &Ctx,
    action: String,
    f: TrainingFields,
    checked: &[i64],
    error: Option<String>,
) -> AppResult<TrainingForm> {
    let machines = state
        .lab
        .machines()
        .await?
        .into_iter()
        .map(|m| (m.id.0, m.name, checked.contains(&m.id.0)))
        .collect();
    let title = if action.ends_with("new") {
        "trainings.new"
    } else {
        "trainings.edit"
    };
    Ok(TrainingForm {
        p: Page::new(ctx, title, "trainings", &action),
        error,
        action,
        f,
        machines,
    })
}

async fn new_training(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.require(Role::Manager)?;
    let f = TrainingFields {
        validity_months: "24".into(),
        ..Default::default()
    };
    Ok(
        render(&training_form(&state, &ctx, "/admin/trainings/new".into(), f, &[], None).await?)?
            .into_response(),
    )
}

async fn edit_training(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    ctx.require(Role::Manager)?;
    let t = state.lab.training(TrainingId(id)).await?;
    let f = TrainingFields {
        name: t.name,
        description: t.description,
        validity_months: t.validity_months.to_string(),
        lapse_months: t.lapse_months.map(|m| m.to_string()).unwrap_or_default(),
    };
    let checked: Vec<i64> = t.machines.iter().map(|m| m.0).collect();
    Ok(render(
        &training_form(
            &state,
            &ctx,
            format!("/admin/trainings/{id}"),
            f,
            &checked,
            None,
        )
        .await?,
    )?
    .into_response())
}

/// The training form's fields with its repeated `machine` checkboxes.
fn training_fields(body: &str) -> (TrainingFields, Vec<i64>) {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap_or_default();
    let mut f = TrainingFields::default();
    let mut machines = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => f.name = v,
            "description" => f.description = v,
            "validity_months" => f.validity_months = v,
            "lapse_months" => f.lapse_months = v,
            "machine" => machines.extend(v.parse::<i64>().ok()),
            _ => {}
        }
    }
    (f, machines)
}

async fn save(state: &AppState, ctx: &Ctx, id: Option<i64>, body: &str) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let (f, machines) = training_fields(body);
    let input = TrainingInput::parse(
        &f.name,
        &f.description,
        &f.validity_months,
        &f.lapse_months,
        machines.iter().copied().map(MachineId).collect(),
    );
    let result = match input {
        Ok(input) => state
            .lab
            .save_training(user, id.map(TrainingId), &input, now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => Ok(Redirect::to("/trainings").into_response()),
        Err(e) if e.shown_on_the_form() => {
            let action = id.map_or_else(
                || "/admin/trainings/new".to_string(),
                |id| format!("/admin/trainings/{id}"),
            );
            let form =
                training_form(state, ctx, action, f, &machines, Some(message(&ctx.tr, &e))).await?;
            Ok(render_with_status(e.status, &form))
        }
        Err(e) => Err(e),
    }
}

async fn save_new_training(
    State(state): State<AppState>,
    ctx: Ctx,
    body: String,
) -> AppResult<Response> {
    save(&state, &ctx, None, &body).await
}

async fn save_training(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: String,
) -> AppResult<Response> {
    save(&state, &ctx, Some(id), &body).await
}

struct PersonRow {
    user_id: i64,
    name: String,
    status: String,
    enrolled: bool,
    attended: bool,
}

#[derive(Template)]
#[template(path = "session.html")]
struct SessionPage {
    p: Page,
    error: Option<String>,
    id: i64,
    when: String,
    trainer: String,
    location: String,
    places: String,
    my_status: Option<String>,
    is_trainer: bool,
    people: Vec<PersonRow>,
    /// For a manager: the active accounts not in the session yet, to enrol at the desk.
    others: Vec<(i64, String)>,
}

async fn session_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    error: Option<String>,
) -> AppResult<SessionPage> {
    let user = ctx.user()?;
    let settings = state.lab.calendar_settings().await?;
    let s = state.lab.session(SessionId(id)).await?;
    let people = state.lab.enrolments(user, s.id).await?;
    let my_status = people
        .iter()
        .find(|e| e.user == user.id && e.status != EnrolmentStatus::Cancelled)
        .map(|e| ctx.tr.word("enrolment", e.status.as_str()));
    let is_trainer = user.role.at_least(Role::Trainer);
    let mut p = Page::new(
        ctx,
        "session.title",
        "trainings",
        &format!("/sessions/{id}"),
    );
    p.title = ctx.tr.f("session.title", &[("training", &s.training_name)]);
    let others = if user.role.at_least(Role::Manager) && s.starts_at > Timestamp::now() {
        let mut others: Vec<(i64, String)> = state
            .lab
            .list_users(user)
            .await?
            .into_iter()
            .filter(|u| {
                !u.disabled
                    && !people
                        .iter()
                        .any(|e| e.user == u.id && e.status != EnrolmentStatus::Cancelled)
            })
            .map(|u| (u.id.0, format!("{} ({})", u.display_name, u.username)))
            .collect();
        others.sort_by_key(|(_, name)| name.to_lowercase());
        others
    } else {
        Vec::new()
    };
    Ok(SessionPage {
        others,
        p,
        error,
        id,
        when: when(&ctx.tr, &settings, s.starts_at, s.ends_at),
        trainer: s.trainer_name.clone(),
        location: s.location.clone(),
        places: places(&ctx.tr, &s),
        my_status,
        is_trainer,
        people: people
            .iter()
            .filter(|e| e.status != EnrolmentStatus::Cancelled)
            .map(|e| PersonRow {
                user_id: e.user.0,
                name: e.display_name.clone(),
                status: ctx.tr.word("enrolment", e.status.as_str()),
                enrolled: e.status == EnrolmentStatus::Enrolled,
                attended: e.attended,
            })
            .collect(),
    })
}

async fn session(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    Ok(render(&session_page(&state, &ctx, id, None).await?)?.into_response())
}

/// Runs a session action, then shows the session again, with the refusal if there was one.
async fn after(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    result: Result<Response, AppError>,
) -> AppResult<Response> {
    match result {
        Ok(response) => Ok(response),
        Err(e) if e.shown_on_the_form() => {
            let page = session_page(state, ctx, id, Some(message(&ctx.tr, &e))).await?;
            Ok(render_with_status(e.status, &page))
        }
        Err(e) => Err(e),
    }
}

/// Who a session form is about: `member` when a manager or trainer acts for someone,
/// else the person signed in; and where to go back to.
#[derive(Default, serde::Deserialize)]
struct EnrolForm {
    member: Option<i64>,
    #[serde(default)]
    next: String,
}

async fn enrol(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<EnrolForm>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let member = for_member(&state, user, f.member).await?;
    let who = member.as_ref().unwrap_or(user);
    let to = safe_after(&f.next, &format!("/sessions/{id}"));
    let result = state
        .lab
        .enrol(user, SessionId(id), who.id, now())
        .await
        .map_err(AppError::from);
    let training = state.lab.session(SessionId(id)).await?.training_name;
    let result = result.map(|status| {
        let waiting = status == EnrolmentStatus::Waiting;
        let key = match (&member, waiting) {
            (None, false) => "notice.enrolled",
            (None, true) => "notice.waiting",
            (Some(_), false) => "notice.enrolled_member",
            (Some(_), true) => "notice.waiting_member",
        };
        done(
            &ctx,
            &to,
            key,
            &[("training", &training), ("member", &who.display_name)],
        )
    });
    after(&state, &ctx, id, result).await
}

async fn cancel_enrolment(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<EnrolForm>,
) -> AppResult<Response> {
    let user = ctx.user()?;
    let member = for_member(&state, user, f.member).await?;
    let who = member.as_ref().unwrap_or(user);
    let to = safe_after(&f.next, &format!("/sessions/{id}"));
    let training = state.lab.session(SessionId(id)).await?.training_name;
    let result = state
        .lab
        .cancel_enrolment(user, SessionId(id), who.id)
        .await
        .map(|_| {
            done(
                &ctx,
                &to,
                "notice.enrolment_cancelled",
                &[("training", &training), ("member", &who.display_name)],
            )
        })
        .map_err(AppError::from);
    after(&state, &ctx, id, result).await
}

#[derive(serde::Deserialize)]
struct MemberForm {
    member: i64,
    #[serde(default)]
    attended: String,
    #[serde(default)]
    next: String,
}

async fn attendance(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<MemberForm>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Trainer)?;
    let attended = f.attended == "1";
    let name = state
        .lab
        .enrolments(user, SessionId(id))
        .await?
        .into_iter()
        .find(|e| e.user.0 == f.member)
        .map(|e| e.display_name)
        .unwrap_or_default();
    let to = safe_after(&f.next, &format!("/sessions/{id}"));
    let result = state
        .lab
        .set_attendance(user, SessionId(id), UserId(f.member), attended, now())
        .await
        .map(|()| {
            let key = if attended {
                "notice.present"
            } else {
                "notice.absent"
            };
            done(&ctx, &to, key, &[("member", &name)])
        })
        .map_err(AppError::from);
    after(&state, &ctx, id, result).await
}

async fn award(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<MemberForm>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Trainer)?;
    let session = state.lab.session(SessionId(id)).await?;
    let to = safe_after(&f.next, &format!("/sessions/{id}"));
    let result = state
        .lab
        .award_badge(
            user,
            UserId(f.member),
            session.training,
            Some(session.id),
            now(),
        )
        .await
        .map(|b| badge_awarded(&ctx, &to, &b))
        .map_err(AppError::from);
    after(&state, &ctx, id, result).await
}

// --- Calendar settings -----------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
struct SettingsFields {
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    closures: String,
    #[serde(default)]
    slot_minutes: String,
    #[serde(default)]
    horizon_days: String,
    #[serde(default)]
    max_future_bookings: String,
    #[serde(default)]
    max_booking_minutes: String,
    #[serde(default)]
    cancel_deadline_hours: String,
    #[serde(default)]
    no_show_grace_minutes: String,
    supervised_without_badge: Option<String>,
    printers_unattended: Option<String>,
    #[serde(default)]
    day0: String,
    #[serde(default)]
    day1: String,
    #[serde(default)]
    day2: String,
    #[serde(default)]
    day3: String,
    #[serde(default)]
    day4: String,
    #[serde(default)]
    day5: String,
    #[serde(default)]
    day6: String,
}

fn hours_text(day: &[(u16, u16)]) -> String {
    day.iter()
        .map(|(s, e)| format!("{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_hours(raw: &str) -> Result<Vec<(u16, u16)>, Invalid> {
    let minutes = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    raw.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (a, b) = w
                .split_once('-')
                .ok_or(Invalid::new("opening_hours", "opening_hours"))?;
            Ok((
                minutes(a).ok_or(Invalid::new("opening_hours", "opening_hours"))?,
                minutes(b).ok_or(Invalid::new("opening_hours", "opening_hours"))?,
            ))
        })
        .collect()
}

impl SettingsFields {
    fn from_settings(s: &CalendarSettings) -> Self {
        let d = |i: usize| hours_text(&s.opening_hours[i]);
        Self {
            timezone: s.timezone.clone(),
            closures: s
                .closures
                .iter()
                .map(Date::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            slot_minutes: s.slot_minutes.to_string(),
            horizon_days: s.horizon_days.to_string(),
            max_future_bookings: s.max_future_bookings.to_string(),
            max_booking_minutes: s.max_booking_minutes.to_string(),
            cancel_deadline_hours: s.cancel_deadline_hours.to_string(),
            no_show_grace_minutes: s.no_show_grace_minutes.to_string(),
            supervised_without_badge: s.supervised_without_badge.then(|| "1".into()),
            printers_unattended: s.printers_unattended.then(|| "1".into()),
            day0: d(0),
            day1: d(1),
            day2: d(2),
            day3: d(3),
            day4: d(4),
            day5: d(5),
            day6: d(6),
        }
    }

    fn parse(&self) -> Result<CalendarSettings, Invalid> {
        let n = |field: &'static str, raw: &str| {
            raw.trim()
                .parse::<u32>()
                .map_err(|_| Invalid::new(field, "number_range"))
        };
        let mut closures = Vec::new();
        for d in self
            .closures
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            closures.push(
                d.parse::<Date>()
                    .map_err(|_| Invalid::new("closures", "datetime"))?,
            );
        }
        Ok(CalendarSettings {
            timezone: self.timezone.trim().to_string(),
            opening_hours: [
                parse_hours(&self.day0)?,
                parse_hours(&self.day1)?,
                parse_hours(&self.day2)?,
                parse_hours(&self.day3)?,
                parse_hours(&self.day4)?,
                parse_hours(&self.day5)?,
                parse_hours(&self.day6)?,
            ],
            closures,
            slot_minutes: n("slot_minutes", &self.slot_minutes)?,
            horizon_days: n("horizon_days", &self.horizon_days)?,
            max_future_bookings: n("max_future_bookings", &self.max_future_bookings)?,
            max_booking_minutes: n("max_booking_minutes", &self.max_booking_minutes)?,
            cancel_deadline_hours: n("cancel_deadline_hours", &self.cancel_deadline_hours)?,
            supervised_without_badge: self.supervised_without_badge.is_some(),
            no_show_grace_minutes: n("no_show_grace_minutes", &self.no_show_grace_minutes)?,
            printers_unattended: self.printers_unattended.is_some(),
        })
    }

    fn days(&self, tr: &Tr) -> Vec<(usize, String, String)> {
        [
            &self.day0, &self.day1, &self.day2, &self.day3, &self.day4, &self.day5, &self.day6,
        ]
        .iter()
        .enumerate()
        .map(|(i, v)| (i, tr.word("weekday", &i.to_string()), (*v).clone()))
        .collect()
    }
}

#[derive(Template)]
#[template(path = "calendar_settings.html")]
struct SettingsPage {
    p: Page,
    error: Option<String>,
    days: Vec<(usize, String, String)>,
    f: SettingsFields,
}

async fn settings_page(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.require(Role::Manager)?;
    let f = SettingsFields::from_settings(&state.lab.calendar_settings().await?);
    let p = Page::new(&ctx, "settings.title", "settings", "/admin/calendar");
    Ok(render(&SettingsPage {
        p,
        error: None,
        days: f.days(&ctx.tr),
        f,
    })?
    .into_response())
}

async fn save_settings(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(f): Form<SettingsFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = match f.parse() {
        Ok(settings) => state
            .lab
            .set_calendar_settings(user, &settings)
            .await
            .map_err(AppError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => Ok(done(&ctx, "/admin/calendar", "notice.saved", &[])),
        Err(e) if e.shown_on_the_form() => {
            let p = Page::new(&ctx, "settings.title", "settings", "/admin/calendar");
            let page = SettingsPage {
                p,
                error: Some(message(&ctx.tr, &e)),
                days: f.days(&ctx.tr),
                f,
            };
            Ok(render_with_status(e.status, &page))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::day_label;
    use crate::i18n::{Catalog, Tr};
    use fabrique_controller::domain::Lang;
    use jiff::civil::date;
    use std::sync::Arc;

    #[test]
    fn the_first_of_the_month_is_1er_in_french() {
        #[allow(clippy::unwrap_used)]
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let fr = Tr::new(Lang::Fr, catalog.clone());
        let en = Tr::new(Lang::En, catalog);
        assert_eq!(day_label(&fr, date(2026, 12, 1)), "mardi 1er décembre");
        assert_eq!(day_label(&fr, date(2026, 12, 2)), "mercredi 2 décembre");
        assert_eq!(day_label(&en, date(2026, 12, 1)), "Tuesday 1 December");
    }
}
