//! The booking calendar: the lab's settings and the rules a booking must follow. Pure: the
//! time, the member's badges and their other bookings are passed in. The one rule not here
//! is "no two bookings of a machine overlap": the database enforces it (see the
//! `bookings_no_overlap` constraint and trigger), because only it can under concurrency.

use super::Invalid;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Opening hours of one weekday: windows in minutes since midnight, local time.
pub type DayHours = Vec<(u16, u16)>;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalendarSettings {
    /// IANA time zone of the lab, e.g. `Europe/Paris`.
    pub timezone: String,
    /// Monday first.
    pub opening_hours: [DayHours; 7],
    /// Days the lab is closed (holidays), local dates.
    pub closures: Vec<Date>,
    pub slot_minutes: u32,
    pub horizon_days: u32,
    pub max_future_bookings: u32,
    pub max_booking_minutes: u32,
    pub cancel_deadline_hours: u32,
    /// Whether a member without the badge may book a slot supervised by a trainer.
    pub supervised_without_badge: bool,
    /// A booking nobody checked in for is released this long after its start.
    pub no_show_grace_minutes: u32,
    /// Whether printers may run jobs while the lab is closed (lasers never do).
    #[serde(default)]
    pub printers_unattended: bool,
}

impl Default for CalendarSettings {
    /// A social-centre fablab's week: closed Sunday and Monday, afternoons on Tuesday to
    /// Friday, Wednesday and Saturday from the morning.
    fn default() -> Self {
        let afternoon = vec![(14 * 60, 18 * 60)];
        let long_day = vec![(10 * 60, 12 * 60 + 30), (14 * 60, 18 * 60)];
        Self {
            timezone: String::from("Europe/Paris"),
            opening_hours: [
                vec![],
                afternoon.clone(),
                long_day.clone(),
                afternoon.clone(),
                afternoon,
                long_day,
                vec![],
            ],
            closures: Vec::new(),
            slot_minutes: 30,
            horizon_days: 14,
            max_future_bookings: 4,
            max_booking_minutes: 180,
            cancel_deadline_hours: 2,
            supervised_without_badge: true,
            no_show_grace_minutes: 15,
            printers_unattended: false,
        }
    }
}

impl CalendarSettings {
    pub fn tz(&self) -> TimeZone {
        TimeZone::get(&self.timezone).unwrap_or(TimeZone::UTC)
    }

    /// Checks the settings as a manager typed them.
    pub fn validate(&self) -> Result<(), Invalid> {
        if TimeZone::get(&self.timezone).is_err() {
            return Err(Invalid::new("timezone", "timezone"));
        }
        if ![10, 15, 20, 30, 60, 120].contains(&self.slot_minutes) {
            return Err(Invalid::new("slot_minutes", "slot_minutes"));
        }
        for day in &self.opening_hours {
            let mut last_end = 0;
            for &(start, end) in day {
                let fits_grid = u32::from(start) % self.slot_minutes == 0
                    && u32::from(end) % self.slot_minutes == 0;
                if start >= end || end > 24 * 60 || start < last_end || !fits_grid {
                    return Err(Invalid::new("opening_hours", "opening_hours"));
                }
                last_end = end;
            }
        }
        if self.horizon_days == 0 || self.horizon_days > 366 {
            return Err(Invalid::new("horizon_days", "number_range"));
        }
        if self.max_booking_minutes < self.slot_minutes || self.max_booking_minutes > 24 * 60 {
            return Err(Invalid::new("max_booking_minutes", "number_range"));
        }
        if self.max_future_bookings == 0 || self.max_future_bookings > 100 {
            return Err(Invalid::new("max_future_bookings", "number_range"));
        }
        if self.cancel_deadline_hours > 24 * 14 || self.no_show_grace_minutes > 24 * 60 {
            return Err(Invalid::new("cancel_deadline_hours", "number_range"));
        }
        Ok(())
    }

    /// The opening windows of a local date, as instants. Empty on closures.
    pub fn windows(&self, date: Date) -> Vec<(Timestamp, Timestamp)> {
        if self.closures.contains(&date) {
            return Vec::new();
        }
        let tz = self.tz();
        let day = usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        self.opening_hours[day]
            .iter()
            .filter_map(|&(start, end)| Some((local(date, start, &tz)?, local(date, end, &tz)?)))
            .collect()
    }

    /// The slots of a local date, in order.
    pub fn slots(&self, date: Date) -> Vec<(Timestamp, Timestamp)> {
        let step = i64::from(self.slot_minutes) * 60;
        self.windows(date)
            .into_iter()
            .flat_map(|(start, end)| {
                let count = (end.as_second() - start.as_second()) / step;
                (0..count).filter_map(move |i| {
                    let s = Timestamp::from_second(start.as_second() + i * step).ok()?;
                    let e = Timestamp::from_second(start.as_second() + (i + 1) * step).ok()?;
                    Some((s, e))
                })
            })
            .collect()
    }

    pub fn local_date(&self, at: Timestamp) -> Date {
        at.to_zoned(self.tz()).date()
    }

    /// "14:30": the lab's local time of `at`.
    pub fn clock(&self, at: Timestamp) -> String {
        at.to_zoned(self.tz()).strftime("%H:%M").to_string()
    }

    /// The start of the first slot at or after `from`, within the booking horizon, that
    /// none of `taken` (a machine's live bookings and blocks) overlaps.
    pub fn next_free(
        &self,
        from: Timestamp,
        taken: &[(Timestamp, Timestamp)],
    ) -> Option<Timestamp> {
        let first = self.local_date(from);
        (0..=i64::from(self.horizon_days))
            .filter_map(|d| first.checked_add(d.days()).ok())
            .flat_map(|date| self.slots(date))
            .find(|(start, end)| *start >= from && !taken.iter().any(|(s, e)| s < end && start < e))
            .map(|(start, _)| start)
    }

    /// The lengths in minutes a booking starting at `start` may have: whole slots, at most
    /// the longest booking, ending by the close of the opening window `start` lies in and
    /// before the first of `taken` (the machine's live bookings) that it would run into.
    /// Empty when `start` is not the start of a slot or the slot itself is taken.
    pub fn durations(&self, start: Timestamp, taken: &[(Timestamp, Timestamp)]) -> Vec<u32> {
        let date = self.local_date(start);
        let Some(close) = self
            .slots(date)
            .iter()
            .any(|(s, _)| *s == start)
            .then(|| {
                self.windows(date)
                    .into_iter()
                    .find(|(open, close)| *open <= start && start < *close)
                    .map(|(_, close)| close)
            })
            .flatten()
        else {
            return Vec::new();
        };
        let limit = taken
            .iter()
            .filter(|(_, end)| *end > start)
            .map(|(s, _)| *s)
            .fold(close, Timestamp::min);
        let step = self.slot_minutes.max(1);
        let room = u32::try_from((limit.as_second() - start.as_second()).max(0) / 60).unwrap_or(0);
        (1..=self.max_booking_minutes.min(room) / step)
            .map(|n| n * step)
            .collect()
    }
}

fn local(date: Date, minutes: u16, tz: &TimeZone) -> Option<Timestamp> {
    let time = Time::new(
        i8::try_from(minutes / 60).ok()?,
        i8::try_from(minutes % 60).ok()?,
        0,
        0,
    )
    .ok();
    let datetime = match time {
        Some(time) => date.to_datetime(time),
        // 24:00 is the end of the day.
        None => date.tomorrow().ok()?.to_datetime(Time::midnight()),
    };
    datetime.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

/// Why a booking (or a cancellation) is refused. Each has a stable code for the API and a
/// plain message in the catalogue (`refusal.<code>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("badge required: {training}")]
    BadgeRequired { training: String },
    #[error("slot taken")]
    SlotTaken,
    #[error("outside opening hours")]
    OutsideOpeningHours,
    #[error("the lab closes at {closes}")]
    PastClosing { closes: String },
    #[error("overlaps the member's own booking from {from} to {until}")]
    OwnBooking { from: String, until: String },
    #[error("lab closed")]
    LabClosed,
    #[error("beyond the booking horizon of {days} days")]
    BeyondHorizon { days: u32 },
    #[error("in the past")]
    InThePast,
    #[error("longer than {max_minutes} minutes")]
    TooLong { max_minutes: u32 },
    #[error("not on the {slot_minutes}-minute grid")]
    NotOnSlotGrid { slot_minutes: u32 },
    #[error("more than {max} future bookings")]
    TooManyBookings { max: u32 },
    #[error("machine unavailable")]
    MachineUnavailable,
    #[error("end before start")]
    InvalidRange,
    #[error("cancellation deadline of {hours} h passed")]
    CancelDeadlinePassed { hours: u32 },
    #[error("supervised booking not allowed")]
    SupervisionNotAllowed,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadgeRequired { .. } => "badge_required",
            Refusal::SlotTaken => "slot_taken",
            Refusal::OutsideOpeningHours => "outside_opening_hours",
            Refusal::PastClosing { .. } => "past_closing",
            Refusal::OwnBooking { .. } => "own_booking",
            Refusal::LabClosed => "lab_closed",
            Refusal::BeyondHorizon { .. } => "beyond_horizon",
            Refusal::InThePast => "in_the_past",
            Refusal::TooLong { .. } => "too_long",
            Refusal::NotOnSlotGrid { .. } => "not_on_slot_grid",
            Refusal::TooManyBookings { .. } => "too_many_bookings",
            Refusal::MachineUnavailable => "machine_unavailable",
            Refusal::InvalidRange => "invalid_range",
            Refusal::CancelDeadlinePassed { .. } => "cancel_deadline_passed",
            Refusal::SupervisionNotAllowed => "supervision_not_allowed",
        }
    }

    /// The message's placeholders: `{training}`, `{days}`, `{max}`...
    pub fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            Refusal::BadgeRequired { training } => vec![("training", training.clone())],
            Refusal::BeyondHorizon { days } => vec![("days", days.to_string())],
            Refusal::TooLong { max_minutes } => vec![("minutes", max_minutes.to_string())],
            Refusal::NotOnSlotGrid { slot_minutes } => vec![("minutes", slot_minutes.to_string())],
            Refusal::TooManyBookings { max } => vec![("max", max.to_string())],
            Refusal::CancelDeadlinePassed { hours } => vec![("hours", hours.to_string())],
            Refusal::PastClosing { closes } => vec![("closes", closes.clone())],
            Refusal::OwnBooking { from, until } => {
                vec![("from", from.clone()), ("until", until.clone())]
            }
            _ => Vec::new(),
        }
    }
}

/// What the rules need to know about the person booking.
#[derive(Debug, Clone)]
pub struct Booker {
    /// Managers book for anyone, at any time, and block slots: the member rules below do
    /// not apply to them (only the range and the machine's availability do).
    pub is_manager: bool,
    /// `None` when the member holds a valid badge for the machine (or it needs none);
    /// otherwise the name of a training that would unlock it.
    pub missing_training: Option<String>,
    /// The member's live bookings that end after now.
    pub future_bookings: u32,
}

/// Checks a booking of `[start, end)` on a machine that is `available` (not disabled and
/// not in maintenance). The overlap with other bookings is checked by the database.
pub fn check_booking(
    settings: &CalendarSettings,
    booker: &Booker,
    available: bool,
    start: Timestamp,
    end: Timestamp,
    supervised: bool,
    now: Timestamp,
) -> Result<(), Refusal> {
    if end <= start {
        return Err(Refusal::InvalidRange);
    }
    if !available {
        return Err(Refusal::MachineUnavailable);
    }
    if end <= now {
        return Err(Refusal::InThePast);
    }
    if booker.is_manager {
        return Ok(());
    }
    if start < now {
        return Err(Refusal::InThePast);
    }
    let step = i64::from(settings.slot_minutes) * 60;
    let minutes = (end.as_second() - start.as_second()) / 60;
    if minutes > i64::from(settings.max_booking_minutes) {
        return Err(Refusal::TooLong {
            max_minutes: settings.max_booking_minutes,
        });
    }
    let horizon = now
        .checked_add((i64::from(settings.horizon_days) * 24).hours())
        .unwrap_or(now);
    if start > horizon {
        return Err(Refusal::BeyondHorizon {
            days: settings.horizon_days,
        });
    }
    let date = settings.local_date(start);
    if settings.closures.contains(&date) {
        return Err(Refusal::LabClosed);
    }
    // The booking must lie inside one opening window, on the slot grid of that window.
    let window = settings
        .windows(date)
        .into_iter()
        .find(|(open, close)| *open <= start && end <= *close);
    let Some((open, _)) = window else {
        // Starting while open but ending after the close is a length to shorten.
        return Err(settings
            .windows(date)
            .into_iter()
            .find(|(open, close)| *open <= start && start < *close)
            .map_or(Refusal::OutsideOpeningHours, |(_, close)| {
                Refusal::PastClosing {
                    closes: settings.clock(close),
                }
            }));
    };
    if (start.as_second() - open.as_second()) % step != 0
        || (end.as_second() - open.as_second()) % step != 0
    {
        return Err(Refusal::NotOnSlotGrid {
            slot_minutes: settings.slot_minutes,
        });
    }
    if let Some(training) = &booker.missing_training {
        if !supervised {
            return Err(Refusal::BadgeRequired {
                training: training.clone(),
            });
        }
        if !settings.supervised_without_badge {
            return Err(Refusal::SupervisionNotAllowed);
        }
    }
    if booker.future_bookings >= settings.max_future_bookings {
        return Err(Refusal::TooManyBookings {
            max: settings.max_future_bookings,
        });
    }
    Ok(())
}

/// Checks that a member may still cancel a booking starting at `start`. Managers always may.
pub fn check_cancel(
    settings: &CalendarSettings,
    is_manager: bool,
    start: Timestamp,
    now: Timestamp,
) -> Result<(), Refusal> {
    let deadline = start
        .checked_sub((i64::from(settings.cancel_deadline_hours)).hours())
        .unwrap_or(start);
    if !is_manager && now > deadline {
        return Err(Refusal::CancelDeadlinePassed {
            hours: settings.cancel_deadline_hours,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris(y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
        Date::new(y, m, d)
            .unwrap()
            .at(h, min, 0, 0)
            .to_zoned(TimeZone::get("Europe/Paris").unwrap())
            .unwrap()
            .timestamp()
    }

    fn member() -> Booker {
        Booker {
            is_manager: false,
            missing_training: None,
            future_bookings: 0,
        }
    }

    // 2026-11-24 is a Tuesday: open 14:00-18:00.
    const NOW: (i16, i8, i8) = (2026, 11, 24);

    fn now() -> Timestamp {
        paris(NOW.0, NOW.1, NOW.2, 9, 0)
    }

    fn check(b: &Booker, start: Timestamp, end: Timestamp) -> Result<(), Refusal> {
        check_booking(
            &CalendarSettings::default(),
            b,
            true,
            start,
            end,
            false,
            now(),
        )
    }

    #[test]
    fn a_member_with_the_badge_books_an_open_slot() {
        assert_eq!(
            check(
                &member(),
                paris(2026, 11, 24, 14, 0),
                paris(2026, 11, 24, 15, 30)
            ),
            Ok(())
        );
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let s = |h, m| paris(2026, 11, 24, h, m);
        assert_eq!(
            check(&member(), s(15, 0), s(14, 0)),
            Err(Refusal::InvalidRange)
        );
        assert_eq!(
            check(&member(), s(10, 0), s(11, 0)),
            Err(Refusal::OutsideOpeningHours)
        );
        assert_eq!(
            check(&member(), s(17, 30), s(18, 30)),
            Err(Refusal::PastClosing {
                closes: "18:00".into()
            })
        );
        assert_eq!(
            check(&member(), s(14, 10), s(14, 40)),
            Err(Refusal::NotOnSlotGrid { slot_minutes: 30 })
        );
        assert_eq!(
            check(&member(), s(14, 0), s(17, 30)),
            Err(Refusal::TooLong { max_minutes: 180 })
        );
        assert_eq!(
            check(
                &member(),
                paris(2026, 12, 15, 14, 0),
                paris(2026, 12, 15, 15, 0)
            ),
            Err(Refusal::BeyondHorizon { days: 14 })
        );
        assert_eq!(
            check(
                &member(),
                paris(2026, 11, 23, 14, 0),
                paris(2026, 11, 23, 15, 0)
            ),
            Err(Refusal::InThePast)
        );
        let untrained = Booker {
            missing_training: Some("Découpe laser".into()),
            ..member()
        };
        assert_eq!(
            check(&untrained, s(14, 0), s(15, 0)),
            Err(Refusal::BadgeRequired {
                training: "Découpe laser".into()
            })
        );
        let busy = Booker {
            future_bookings: 4,
            ..member()
        };
        assert_eq!(
            check(&busy, s(14, 0), s(15, 0)),
            Err(Refusal::TooManyBookings { max: 4 })
        );
        let settings = CalendarSettings {
            closures: vec![Date::new(2026, 11, 24).unwrap()],
            ..Default::default()
        };
        assert_eq!(
            check_booking(&settings, &member(), true, s(14, 0), s(15, 0), false, now()),
            Err(Refusal::LabClosed)
        );
        assert_eq!(
            check_booking(
                &CalendarSettings::default(),
                &member(),
                false,
                s(14, 0),
                s(15, 0),
                false,
                now()
            ),
            Err(Refusal::MachineUnavailable)
        );
    }

    #[test]
    fn durations_end_by_the_close_and_before_the_next_booking() {
        let s = CalendarSettings::default();
        let at = |h, m| paris(2026, 11, 24, h, m);
        // Open 14:00-18:00, 30-minute slots, at most 180 minutes.
        assert_eq!(s.durations(at(14, 0), &[]), vec![30, 60, 90, 120, 150, 180]);
        assert_eq!(
            s.durations(at(16, 30), &[]),
            vec![30, 60, 90],
            "18:00 close"
        );
        assert_eq!(
            s.durations(at(14, 0), &[(at(15, 0), at(16, 0)), (at(13, 0), at(14, 0))]),
            vec![30, 60],
            "the 15:00 booking, not the one that ended at 14:00"
        );
        assert!(
            s.durations(at(14, 0), &[(at(13, 30), at(14, 30))])
                .is_empty()
        );
        assert!(s.durations(at(14, 10), &[]).is_empty(), "off the grid");
        assert!(
            s.durations(at(10, 0), &[]).is_empty(),
            "closed on Tuesday morning"
        );
        // Every offered length passes the rules.
        for minutes in s.durations(at(16, 30), &[]) {
            let end = at(16, 30)
                .checked_add(i64::from(minutes).minutes())
                .unwrap();
            assert_eq!(check(&member(), at(16, 30), end), Ok(()));
        }
    }

    #[test]
    fn the_next_free_slot_skips_bookings_closed_hours_and_the_past() {
        let s = CalendarSettings::default();
        let at = |d, h, m| paris(2026, 11, d, h, m);
        // Tuesday 24 at 15:10: the 15:00 slot has begun, 15:30 is the next one.
        assert_eq!(s.next_free(at(24, 15, 10), &[]), Some(at(24, 15, 30)));
        // Booked until the close: Wednesday 25 opens at 10:00.
        assert_eq!(
            s.next_free(at(24, 15, 10), &[(at(24, 15, 0), at(24, 18, 0))]),
            Some(at(25, 10, 0))
        );
        // Everything taken within the horizon: nothing.
        assert_eq!(
            s.next_free(at(24, 15, 10), &[(at(24, 0, 0), paris(2026, 12, 31, 0, 0))]),
            None
        );
    }

    #[test]
    fn a_supervised_slot_needs_no_badge_when_the_lab_allows_it() {
        let untrained = Booker {
            missing_training: Some("Laser".into()),
            ..member()
        };
        let (start, end) = (paris(2026, 11, 24, 14, 0), paris(2026, 11, 24, 15, 0));
        let allowed = CalendarSettings::default();
        assert_eq!(
            check_booking(&allowed, &untrained, true, start, end, true, now()),
            Ok(())
        );
        let strict = CalendarSettings {
            supervised_without_badge: false,
            ..Default::default()
        };
        assert_eq!(
            check_booking(&strict, &untrained, true, start, end, true, now()),
            Err(Refusal::SupervisionNotAllowed)
        );
    }

    #[test]
    fn managers_book_outside_the_member_rules() {
        let manager = Booker {
            is_manager: true,
            missing_training: Some("Laser".into()),
            future_bookings: 99,
        };
        assert_eq!(
            check(
                &manager,
                paris(2026, 11, 24, 19, 0),
                paris(2026, 11, 24, 22, 0)
            ),
            Ok(())
        );
    }

    #[test]
    fn cancelling_is_refused_after_the_deadline_except_for_managers() {
        let start = paris(2026, 11, 24, 10, 0);
        let s = CalendarSettings::default();
        assert_eq!(
            check_cancel(&s, false, start, now()),
            Err(Refusal::CancelDeadlinePassed { hours: 2 })
        );
        assert_eq!(check_cancel(&s, true, start, now()), Ok(()));
        assert_eq!(
            check_cancel(&s, false, paris(2026, 11, 24, 14, 0), now()),
            Ok(())
        );
    }

    #[test]
    fn slots_follow_local_time_across_daylight_saving() {
        let s = CalendarSettings::default();
        // Saturday 28 March 2026 (winter time) and Saturday 4 April 2026 (summer time).
        let winter = s.slots(Date::new(2026, 3, 28).unwrap());
        let summer = s.slots(Date::new(2026, 4, 4).unwrap());
        assert_eq!(winter.len(), 5 + 8);
        assert_eq!(winter[0].0.to_string(), "2026-03-28T09:00:00Z");
        assert_eq!(summer[0].0.to_string(), "2026-04-04T08:00:00Z");
        assert!(
            s.slots(Date::new(2026, 3, 29).unwrap()).is_empty(),
            "closed on Sunday"
        );
    }

    #[test]
    fn settings_are_validated() {
        assert!(CalendarSettings::default().validate().is_ok());
        let bad = CalendarSettings {
            timezone: "Mars/Olympus".into(),
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "timezone");
        let mut hours = CalendarSettings::default();
        hours.opening_hours[0] = vec![(14 * 60 + 10, 18 * 60)];
        assert_eq!(hours.validate().unwrap_err().field, "opening_hours");
    }
}
