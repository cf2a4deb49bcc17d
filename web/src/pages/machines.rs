//! The home page (machines and their state), a machine's page, and the machines admin.

use super::{Page, message, options, render, render_with_status};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fabrique_controller::domain::machine::{ConnectionKind, ReportedLimits};
use fabrique_controller::domain::{
    Connection, Machine, MachineId, MachineInput, MachineKind, MachineProfile, MachineState, Role,
};
use fabrique_controller::lab::now;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/machines/{id}", get(machine_page))
        .route("/machines/{id}/state", post(set_state))
        .route("/machines/{id}/adopt-limits", post(adopt_limits))
        .route("/admin/machines", get(admin_list).post(create))
        .route("/admin/machines/new", get(new_form).post(create))
        .route("/admin/machines/{id}", get(edit_form).post(update))
}

/// A machine as pages show it, every word translated.
pub struct MachineView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub location: String,
    pub connection: String,
    pub required_training: String,
    pub state: String,
    pub state_label: String,
    /// A symbol beside the state word, so the state never rests on colour alone.
    pub state_symbol: &'static str,
    pub reason: String,
    pub profile: Vec<(String, String)>,
}

/// `text` (a machine's state reason, which may quote a print server's error) without the
/// machine's serial port, print-server address or host, for readers who do not see them.
pub fn without_links(text: &str, connection: &Connection) -> String {
    let mut hidden: Vec<String> = Vec::new();
    match connection {
        Connection::SerialMarlin { port, .. }
        | Connection::SerialGrbl { port, .. }
        | Connection::SerialHpgl { port, .. } => {
            hidden.push(port.clone());
        }
        Connection::OctoPrint { url, .. } | Connection::Moonraker { url } => {
            hidden.push(url.clone());
            let authority = url
                .split_once("://")
                .map_or(url.as_str(), |(_, rest)| rest)
                .split(['/', '?', '#'])
                .next()
                .unwrap_or("");
            hidden.push(authority.to_string());
            let host = authority
                .rsplit_once(':')
                .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
                .map_or(authority, |(host, _)| host);
            hidden.push(host.to_string());
        }
        Connection::Manual => {}
    }
    hidden.sort_by_key(|h| std::cmp::Reverse(h.len()));
    hidden
        .iter()
        .filter(|h| !h.is_empty())
        .fold(text.to_string(), |text, h| text.replace(h.as_str(), "…"))
}

/// `text` (a job's note) without the links of any of `machines`. Empty `machines`: as it is.
pub fn without_any_links(text: &str, machines: &[Machine]) -> String {
    machines.iter().fold(text.to_string(), |text, m| {
        without_links(&text, &m.connection)
    })
}

/// The machines whose links must be taken out of what `ctx`'s reader sees: all of them for
/// a reader below a manager, none for a manager.
pub async fn links_to_hide(state: &AppState, ctx: &Ctx) -> AppResult<Vec<Machine>> {
    if sees_links(ctx) {
        Ok(Vec::new())
    } else {
        Ok(state.lab.machines().await?)
    }
}

/// Whether the reader sees serial ports and print-server addresses: a manager. They say
/// where the lab's network and machines are, which members have no need of.
pub fn sees_links(ctx: &Ctx) -> bool {
    ctx.user
        .as_ref()
        .is_some_and(|u| u.role.at_least(fabrique_controller::domain::Role::Manager))
}

pub fn state_symbol(state: MachineState) -> &'static str {
    match state {
        MachineState::Idle => "✓",
        MachineState::Busy => "▶",
        MachineState::Paused => "⏸",
        MachineState::Offline => "○",
        MachineState::Error => "✕",
        MachineState::ToCheck => "⚑",
        MachineState::Maintenance => "⚙",
        MachineState::Disabled => "⊘",
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

impl MachineView {
    /// `links`: whether the reader may see where the machine is reached (its serial port,
    /// its print server's address): managers only, as in the API.
    pub fn new(tr: &Tr, m: &Machine, links: bool) -> Self {
        let connection = match &m.connection {
            _ if !links => tr.word("connection", m.connection.kind().as_str()),
            Connection::SerialMarlin { port, baud }
            | Connection::SerialGrbl { port, baud }
            | Connection::SerialHpgl { port, baud, .. } => {
                format!(
                    "{} ({port}, {baud} bauds)",
                    tr.word("connection", m.connection.kind().as_str())
                )
            }
            Connection::OctoPrint { url, .. } | Connection::Moonraker { url } => {
                format!(
                    "{} ({url})",
                    tr.word("connection", m.connection.kind().as_str())
                )
            }
            Connection::Manual => tr.word("connection", "manual"),
        };
        let p = &m.profile;
        let mut profile = Vec::new();
        let [x, y, z] = p.work_area_mm;
        if x > 0.0 || y > 0.0 {
            let area = if z > 0.0 {
                format!("{} × {} × {} mm", number(x), number(y), number(z))
            } else {
                format!("{} × {} mm", number(x), number(y))
            };
            profile.push((tr.t("machine.work_area").to_string(), area));
        }
        for (key, value, unit) in [
            ("machine.max_hotend", p.max_hotend_c, " °C"),
            ("machine.max_bed", p.max_bed_c, " °C"),
            ("machine.max_laser_power", p.max_laser_power, ""),
            ("machine.max_speed", p.max_speed_mm_s, " mm/s"),
            ("machine.max_accel", p.max_accel_mm_s2, " mm/s²"),
            ("machine.stitches_per_minute", p.stitches_per_minute, ""),
        ] {
            if value > 0.0 {
                profile.push((tr.t(key).to_string(), format!("{}{unit}", number(value))));
            }
        }
        if !p.hoops_mm.is_empty() {
            profile.push((tr.t("machine.hoops").to_string(), p.hoops_text()));
        }
        if !p.materials.is_empty() {
            profile.push((
                tr.t("machine.materials").to_string(),
                p.materials.join(", "),
            ));
        }
        Self {
            id: m.id.0,
            name: m.name.clone(),
            kind: tr.word("kind", m.kind.as_str()),
            location: m.location.clone(),
            connection,
            required_training: m.required_training.clone(),
            state: m.state.as_str().to_string(),
            state_label: tr.word("state", m.state.as_str()),
            state_symbol: state_symbol(m.state),
            reason: if links {
                m.state_reason.clone()
            } else {
                without_links(&m.state_reason, &m.connection)
            },
            profile,
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    p: Page,
    /// Each machine with its next free slot, in words.
    machines: Vec<(MachineView, String)>,
}

/// The machines for people signed in; the lab's public face for everyone else.
pub async fn home(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    if ctx.user.is_none() {
        return super::public::home(&state, &ctx).await;
    }
    let machines = state.lab.machines().await?;
    let settings = state.lab.calendar_settings().await?;
    let free = state.lab.next_free_slots(now()).await?;
    let machines = machines
        .iter()
        .map(|m| {
            let next = free
                .iter()
                .find(|(id, _)| *id == m.id)
                .and_then(|(_, at)| *at);
            let next_free = match next {
                Some(at) => ctx.tr.f(
                    "home.next_free",
                    &[(
                        "when",
                        &format!(
                            "{}, {}",
                            super::calendar::day_label(&ctx.tr, settings.local_date(at)),
                            settings.clock(at)
                        ),
                    )],
                ),
                None => ctx.tr.t("home.no_free").to_string(),
            };
            (MachineView::new(&ctx.tr, m, sees_links(&ctx)), next_free)
        })
        .collect();
    let p = Page::new(&ctx, "home.title", "home", "/");
    Ok(render(&HomePage { p, machines })?.into_response())
}

#[derive(Template)]
#[template(path = "machine.html")]
struct MachinePage {
    p: Page,
    /// A GRBL machine, seen by a trainer or a manager: the operator panel's link.
    panel: bool,
    m: MachineView,
    states: Vec<(String, String)>,
    /// A printer's OctoPrint address, for a maker's slicer.
    slicer_address: Option<String>,
    /// What the firmware reported of its limits, for a manager to adopt.
    reported: Option<Reported>,
}

/// The limits a firmware reported (`M503`), in words, and whether the profile uses them.
struct Reported {
    date: String,
    rows: Vec<(String, String)>,
    adopted: bool,
}

impl Reported {
    fn new(tr: &Tr, limits: &ReportedLimits, at: i64, profile: &MachineProfile) -> Self {
        let axes = |values: [f64; 4], unit: &str| {
            let parts: Vec<String> = ["X", "Y", "Z", "E"]
                .iter()
                .zip(values)
                .map(|(axis, v)| format!("{axis} {}", number(v)))
                .collect();
            format!("{} {unit}", parts.join(" · "))
        };
        let corner = match (limits.junction_deviation_mm, limits.jerk_mm_s) {
            (Some(mm), _) => tr.f("machine.reported_deviation", &[("mm", &number(mm))]),
            (None, Some(jerk)) => tr.f("machine.reported_jerk", &[("values", &axes(jerk, "mm/s"))]),
            (None, None) => String::new(),
        };
        let moves = tr.f(
            "machine.reported_moves_value",
            &[
                ("print", &number(limits.print_acceleration_mm_s2)),
                ("retract", &number(limits.retract_acceleration_mm_s2)),
                ("travel", &number(limits.travel_acceleration_mm_s2)),
            ],
        );
        Self {
            date: super::account::date(at),
            rows: vec![
                (
                    tr.t("machine.reported_feed").into(),
                    axes(limits.max_feedrate_mm_s, "mm/s"),
                ),
                (
                    tr.t("machine.reported_accel").into(),
                    axes(limits.max_acceleration_mm_s2, "mm/s²"),
                ),
                (tr.t("machine.reported_moves").into(), moves),
                (tr.t("machine.reported_corner").into(), corner),
            ],
            adopted: profile.firmware_limits.as_ref() == Some(limits),
        }
    }
}

async fn machine_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    ctx.user()?;
    let machine = state.lab.machine(MachineId(id)).await?;
    let mut p = Page::new(&ctx, "machine.title", "home", &format!("/machines/{id}"));
    p.title = machine.name.clone();
    let settable: Vec<MachineState> = MachineState::ALL
        .iter()
        .copied()
        .filter(|s| s.settable_by_manager())
        .collect();
    let states = options(&ctx.tr, "state", &settable);
    let slicer_address = (machine.kind == MachineKind::FdmPrinter).then(|| {
        format!(
            "{}/octoprint/{}/",
            super::base_url(&state),
            crate::api::octoprint::printer_key(&machine)
        )
    });
    let reported = match ctx.user()?.role.at_least(Role::Manager) {
        true => state
            .lab
            .reported_limits(machine.id)
            .await?
            .map(|(limits, at)| Reported::new(&ctx.tr, &limits, at, &machine.profile)),
        false => None,
    };
    let panel = machine.connection.kind() == ConnectionKind::SerialGrbl
        && ctx.user()?.role.at_least(Role::Trainer);
    Ok(render(&MachinePage {
        p,
        panel,
        m: MachineView::new(&ctx.tr, &machine, sees_links(&ctx)),
        states,
        slicer_address,
        reported,
    })?
    .into_response())
}

#[derive(serde::Deserialize)]
struct StateForm {
    state: String,
    #[serde(default)]
    reason: String,
}

async fn set_state(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(form): Form<StateForm>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let next: MachineState = form.state.parse().map_err(|()| {
        AppError::from(fabrique_controller::domain::Invalid::new("state", "choice"))
    })?;
    state
        .lab
        .set_machine_state(user, MachineId(id), next, &form.reason, now())
        .await?;
    state.runtime.refresh(MachineId(id)).await;
    Ok(Redirect::to(&format!("/machines/{id}")).into_response())
}

/// A manager adopts the limits the printer reported into its profile.
async fn adopt_limits(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    state
        .lab
        .adopt_reported_limits(user, MachineId(id), now())
        .await?;
    Ok(Redirect::to(&format!("/machines/{id}#limites")).into_response())
}

#[derive(Template)]
#[template(path = "machines_admin.html")]
struct AdminList {
    p: Page,
    machines: Vec<MachineView>,
}

async fn admin_list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.require(Role::Manager)?;
    let machines = state.lab.machines().await?;
    let machines = machines
        .iter()
        .map(|m| MachineView::new(&ctx.tr, m, sees_links(&ctx)))
        .collect();
    let p = Page::new(
        &ctx,
        "machines_admin.title",
        "machines_admin",
        "/admin/machines",
    );
    Ok(render(&AdminList { p, machines })?.into_response())
}

/// The machine form's fields as typed, kept to show a refused form again.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct MachineFields {
    pub name: String,
    pub kind: String,
    pub location: String,
    pub required_training: String,
    pub connection: String,
    pub serial_port: String,
    pub baud: String,
    pub url: String,
    pub api_key: String,
    pub work_x: String,
    pub work_y: String,
    pub work_z: String,
    pub max_hotend: String,
    pub max_bed: String,
    pub max_laser_power: String,
    pub hoops: String,
    pub materials: String,
    #[serde(default)]
    pub max_speed: String,
    #[serde(default)]
    pub max_accel: String,
    #[serde(default)]
    pub stitches_per_minute: String,
    #[serde(default)]
    pub junction_rule: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    pub silent_mode: Option<String>,
    #[serde(default)]
    pub square_corner_velocity: String,
    #[serde(default)]
    pub minimum_cruise_ratio: String,
    #[serde(default)]
    pub coolant: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    pub one_way: Option<String>,
}

impl MachineFields {
    fn from_machine(m: &Machine) -> Self {
        let p = &m.profile;
        let blank_zero = |v: f64| if v == 0.0 { String::new() } else { number(v) };
        let (serial_port, baud, url) = match &m.connection {
            Connection::SerialMarlin { port, baud }
            | Connection::SerialGrbl { port, baud }
            | Connection::SerialHpgl { port, baud, .. } => {
                (port.clone(), baud.to_string(), String::new())
            }
            Connection::OctoPrint { url, .. } | Connection::Moonraker { url } => {
                (String::new(), String::new(), url.clone())
            }
            Connection::Manual => Default::default(),
        };
        Self {
            name: m.name.clone(),
            kind: m.kind.as_str().into(),
            location: m.location.clone(),
            required_training: m.required_training.clone(),
            connection: m.connection.kind().as_str().into(),
            serial_port,
            baud,
            url,
            api_key: String::new(),
            work_x: blank_zero(p.work_area_mm[0]),
            work_y: blank_zero(p.work_area_mm[1]),
            work_z: blank_zero(p.work_area_mm[2]),
            max_hotend: blank_zero(p.max_hotend_c),
            max_bed: blank_zero(p.max_bed_c),
            max_laser_power: blank_zero(p.max_laser_power),
            hoops: p.hoops_text(),
            materials: p.materials.join(", "),
            max_speed: blank_zero(p.max_speed_mm_s),
            max_accel: blank_zero(p.max_accel_mm_s2),
            stitches_per_minute: blank_zero(p.stitches_per_minute),
            junction_rule: p
                .junction_rule
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
            silent_mode: p.silent_mode.then(|| "1".into()),
            square_corner_velocity: blank_zero(p.square_corner_velocity_mm_s),
            minimum_cruise_ratio: p.minimum_cruise_ratio.map(number).unwrap_or_default(),
            coolant: p.coolant.as_str().into(),
            one_way: p.one_way.then(|| "1".into()),
        }
    }

    /// Validates the fields into a machine. `kept` is the stored connection, whose API key
    /// stays when the key field is left empty.
    pub fn parse(&self, kept: Option<&Connection>) -> Result<MachineInput, AppError> {
        use fabrique_controller::domain::Invalid;
        let kind: MachineKind = self
            .kind
            .parse()
            .map_err(|()| Invalid::new("kind", "choice"))?;
        let connection_kind: ConnectionKind = self
            .connection
            .parse()
            .map_err(|()| Invalid::new("connection", "choice"))?;
        let kept_key = match kept {
            Some(Connection::OctoPrint { api_key, .. }) => Some(api_key),
            _ => None,
        };
        let connection = Connection::parse(
            connection_kind,
            &self.serial_port,
            &self.baud,
            &self.url,
            &self.api_key,
            kept_key,
        )?;
        let profile = MachineProfile::parse(
            [&self.work_x, &self.work_y, &self.work_z],
            &self.max_hotend,
            &self.max_bed,
            &self.max_laser_power,
            &self.hoops,
            &self.materials,
        )?
        .with_speeds(&self.max_speed, &self.max_accel, &self.stitches_per_minute)?
        .with_motion(&self.junction_rule, self.silent_mode.is_some())?
        .with_klipper(&self.square_corner_velocity, &self.minimum_cruise_ratio)?
        .with_cutting(&self.coolant, self.one_way.is_some())?;
        Ok(MachineInput::new(
            &self.name,
            kind,
            connection,
            profile,
            &self.location,
            &self.required_training,
        )?)
    }
}

#[derive(Template)]
#[template(path = "machine_form.html")]
struct MachineForm {
    p: Page,
    error: Option<String>,
    action: String,
    f: MachineFields,
    has_api_key: bool,
    kinds: Vec<(String, String)>,
    connections: Vec<(String, String)>,
}

fn machine_form(
    ctx: &Ctx,
    title_key: &str,
    action: String,
    f: MachineFields,
    has_api_key: bool,
    error: Option<String>,
) -> MachineForm {
    let p = Page::new(ctx, title_key, "machines_admin", &action);
    MachineForm {
        error,
        action,
        f,
        has_api_key,
        kinds: options(&ctx.tr, "kind", MachineKind::ALL),
        connections: options(&ctx.tr, "connection", ConnectionKind::ALL),
        p,
    }
}

async fn new_form(ctx: Ctx) -> AppResult<Response> {
    ctx.require(Role::Manager)?;
    let f = MachineFields {
        kind: "fdm_printer".into(),
        connection: "manual".into(),
        ..Default::default()
    };
    Ok(render(&machine_form(
        &ctx,
        "machines_admin.new",
        "/admin/machines/new".into(),
        f,
        false,
        None,
    ))?
    .into_response())
}

async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(f): Form<MachineFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let result = match f.parse(None) {
        Ok(input) => state
            .lab
            .create_machine(user, &input, now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(machine) => {
            state.runtime.refresh(machine.id).await;
            Ok(Redirect::to(&format!("/machines/{}", machine.id)).into_response())
        }
        Err(e) if e.shown_on_the_form() => {
            let error = Some(message(&ctx.tr, &e));
            let form = machine_form(
                &ctx,
                "machines_admin.new",
                "/admin/machines/new".into(),
                f,
                false,
                error,
            );
            Ok(render_with_status(e.status, &form))
        }
        Err(e) => Err(e),
    }
}

async fn edit_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    ctx.require(Role::Manager)?;
    let machine = state.lab.machine(MachineId(id)).await?;
    let has_key = matches!(machine.connection, Connection::OctoPrint { .. });
    let form = machine_form(
        &ctx,
        "machines_admin.edit",
        format!("/admin/machines/{id}"),
        MachineFields::from_machine(&machine),
        has_key,
        None,
    );
    Ok(render(&form)?.into_response())
}

async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<MachineFields>,
) -> AppResult<Response> {
    let user = ctx.require(Role::Manager)?;
    let machine = state.lab.machine(MachineId(id)).await?;
    let result = match f.parse(Some(&machine.connection)) {
        Ok(input) => state
            .lab
            .update_machine(user, MachineId(id), &input, now())
            .await
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            state.runtime.refresh(MachineId(id)).await;
            Ok(Redirect::to(&format!("/machines/{id}")).into_response())
        }
        Err(e) if e.shown_on_the_form() => {
            let has_key = matches!(machine.connection, Connection::OctoPrint { .. });
            let error = Some(message(&ctx.tr, &e));
            let form = machine_form(
                &ctx,
                "machines_admin.edit",
                format!("/admin/machines/{id}"),
                f,
                has_key,
                error,
            );
            Ok(render_with_status(e.status, &form))
        }
        Err(e) => Err(e),
    }
}
