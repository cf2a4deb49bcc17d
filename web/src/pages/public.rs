//! The lab's public face at `/` for people without an account: opening hours and whether
//! the lab is open now, the machines with their state and the training each needs, the
//! next training sessions with free places, and the open campaigns with their request
//! form. No personal data: no member, trainer or requester name is on it.

use super::calendar::{day_label, places, when};
use super::{Page, render};
use crate::app::AppState;
use crate::ctx::Ctx;
use crate::error::AppResult;
use crate::i18n::Tr;
use askama::Template;
use axum::response::{IntoResponse, Response};
use fabrique_controller::domain::MachineState;
use fabrique_controller::domain::calendar::CalendarSettings;
use fabrique_controller::domain::campaign::CampaignState;
use fabrique_controller::lab::now;
use jiff::{Timestamp, ToSpan};

struct MachineRow {
    name: String,
    kind: String,
    state: &'static str,
    state_label: String,
    state_symbol: &'static str,
    training: String,
}

struct SessionRow {
    training: String,
    when: String,
    places: String,
}

struct CampaignRow {
    id: i64,
    title: String,
    delivered: String,
    value: i64,
    target: i64,
}

#[derive(Template)]
#[template(path = "public_home.html")]
struct PublicHome {
    p: Page,
    lab: String,
    open_now: String,
    hours: Vec<(String, String)>,
    machines: Vec<MachineRow>,
    sessions: Vec<SessionRow>,
    campaigns: Vec<CampaignRow>,
}

/// "10:00 – 12:30, 14:00 – 18:00".
fn windows_text(windows: &[(u16, u16)]) -> String {
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    windows
        .iter()
        .map(|(s, e)| format!("{} – {}", hm(*s), hm(*e)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "Ouvert en ce moment, jusqu'à 18:00." or "Fermé en ce moment. Prochaine ouverture :
/// mercredi 3 décembre à 10:00." (closures included), looking two weeks ahead.
pub(crate) fn open_now(tr: &Tr, settings: &CalendarSettings, at: Timestamp) -> String {
    let today = settings.local_date(at);
    for offset in 0..15 {
        let Ok(date) = today.checked_add(offset.days()) else {
            break;
        };
        for (open, close) in settings.windows(date) {
            if open <= at && at < close {
                return tr.f("public.open_until", &[("time", &settings.clock(close))]);
            }
            if open > at {
                return tr.f(
                    "public.closed_next",
                    &[
                        ("day", &day_label(tr, date)),
                        ("time", &settings.clock(open)),
                    ],
                );
            }
        }
    }
    tr.t("public.closed").to_string()
}

pub async fn home(state: &AppState, ctx: &Ctx) -> AppResult<Response> {
    let tr = &ctx.tr;
    let settings = state.lab.calendar_settings().await?;
    let at = Timestamp::now();
    let hours = (0..7)
        .map(|day| {
            let windows = &settings.opening_hours[day];
            let text = if windows.is_empty() {
                tr.t("public.closed_day").to_string()
            } else {
                windows_text(windows)
            };
            (tr.word("weekday", &day.to_string()), text)
        })
        .collect();
    let trainings = state.lab.trainings().await?;
    let machines = state
        .lab
        .machines()
        .await?
        .into_iter()
        .filter(|m| m.state != MachineState::Disabled)
        .map(|m| {
            let needed: Vec<&str> = trainings
                .iter()
                .filter(|t| t.machines.contains(&m.id))
                .map(|t| t.name.as_str())
                .collect();
            MachineRow {
                kind: tr.word("kind", m.kind.as_str()),
                state: m.state.as_str(),
                state_label: tr.word("state", m.state.as_str()),
                state_symbol: super::machines::state_symbol(m.state),
                training: if needed.is_empty() {
                    tr.t("public.no_training").to_string()
                } else {
                    tr.f("public.training", &[("training", &needed.join(", "))])
                },
                name: m.name,
            }
        })
        .collect();
    let sessions = state
        .lab
        .upcoming_sessions(now(), None)
        .await?
        .iter()
        .filter(|s| s.starts_at > at)
        .take(6)
        .map(|s| SessionRow {
            training: s.training_name.clone(),
            when: when(tr, &settings, s.starts_at, s.ends_at),
            places: places(tr, s),
        })
        .collect();
    let mut campaigns = Vec::new();
    for c in state.lab.campaigns(None).await? {
        if c.state != CampaignState::Open {
            continue;
        }
        let (counts, _) = state.lab.campaign_counts(None, c.id).await?;
        campaigns.push(CampaignRow {
            id: c.id.0,
            delivered: super::campaigns::delivered_text(tr, &c, counts.delivered),
            value: counts.delivered.min(c.target_quantity),
            target: c.target_quantity.max(1),
            title: c.title,
        });
    }
    let mut p = Page::new(ctx, "public.title", "public", "/");
    p.title = state.config.lab_name.clone();
    let page = PublicHome {
        p,
        lab: state.config.lab_name.clone(),
        open_now: open_now(tr, &settings, at),
        hours,
        machines,
        sessions,
        campaigns,
    };
    Ok(render(&page)?.into_response())
}
