//! The lab's use cases for trainings, badges, calendar settings and bookings.

use crate::domain::booking::{Booking, BookingId, BookingKind, CHECK_IN_EARLY_S};
use crate::domain::calendar::{Booker, CalendarSettings, Refusal, check_booking, check_cancel};
use crate::domain::training::{
    Badge, BadgeId, Enrolment, EnrolmentStatus, SessionId, Training, TrainingId, TrainingInput,
    TrainingSession, add_months,
};
use crate::domain::{Invalid, MachineId, MachineState, Role, User, UserId};
use crate::ical;
use crate::lab::{Lab, LabError, LabResult};
use crate::secrets;
use crate::store::{NewBooking, StoreError};
use jiff::Timestamp;

const CALENDAR_KEY: &str = "calendar";

fn require(actor: &User, role: Role) -> LabResult<()> {
    if actor.role.at_least(role) {
        Ok(())
    } else {
        Err(LabError::Forbidden)
    }
}

fn at(now: i64) -> Timestamp {
    Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Lab {
    // --- Settings ---------------------------------------------------------------------------

    pub async fn calendar_settings(&self) -> LabResult<CalendarSettings> {
        match self.store().setting(CALENDAR_KEY).await? {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                LabError::Store(StoreError::Corrupt(format!("calendar settings: {e}")))
            }),
            None => Ok(CalendarSettings::default()),
        }
    }

    pub async fn set_calendar_settings(
        &self,
        actor: &User,
        settings: &CalendarSettings,
    ) -> LabResult<()> {
        require(actor, Role::Manager)?;
        settings.validate()?;
        let json = serde_json::to_string(settings)
            .map_err(|e| LabError::Store(StoreError::Corrupt(e.to_string())))?;
        Ok(self.store().put_setting(CALENDAR_KEY, &json).await?)
    }

    // --- Trainings and sessions -------------------------------------------------------------

    pub async fn trainings(&self) -> LabResult<Vec<Training>> {
        Ok(self.store().trainings().await?)
    }

    pub async fn training(&self, id: TrainingId) -> LabResult<Training> {
        Ok(self.store().training(id).await?)
    }

    pub async fn save_training(
        &self,
        actor: &User,
        id: Option<TrainingId>,
        input: &TrainingInput,
        now: i64,
    ) -> LabResult<Training> {
        require(actor, Role::Manager)?;
        for machine in &input.machines {
            self.store().machine(*machine).await?;
        }
        let id = self.store().save_training(id, input, now).await?;
        Ok(self.store().training(id).await?)
    }

    /// Trainers and managers plan sessions; a trainer leads their own.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_session(
        &self,
        actor: &User,
        training: TrainingId,
        starts_at: Timestamp,
        ends_at: Timestamp,
        trainer: Option<UserId>,
        capacity: u32,
        location: &str,
        now: i64,
    ) -> LabResult<TrainingSession> {
        require(actor, Role::Trainer)?;
        if ends_at <= starts_at {
            return Err(Invalid::new("ends_at", "invalid_range").into());
        }
        if !(1..=100).contains(&capacity) {
            return Err(Invalid::new("capacity", "number_range").into());
        }
        let trainer = match trainer {
            Some(id) if id != actor.id => {
                require(actor, Role::Manager)?;
                let user = self.store().user(id).await?;
                if !user.role.at_least(Role::Trainer) {
                    return Err(Invalid::new("trainer", "not_a_trainer").into());
                }
                id
            }
            _ => actor.id,
        };
        self.store().training(training).await?;
        let id = self
            .store()
            .insert_training_session(
                training, starts_at, ends_at, trainer, capacity, location, now,
            )
            .await?;
        Ok(self.store().session(id).await?)
    }

    pub async fn upcoming_sessions(
        &self,
        now: i64,
        training: Option<TrainingId>,
    ) -> LabResult<Vec<TrainingSession>> {
        Ok(self.store().sessions(at(now), training).await?)
    }

    pub async fn session(&self, id: SessionId) -> LabResult<TrainingSession> {
        Ok(self.store().session(id).await?)
    }

    /// The people of a session: for its trainer and managers; a member sees only themselves.
    pub async fn enrolments(&self, actor: &User, session: SessionId) -> LabResult<Vec<Enrolment>> {
        let all = self.store().enrolments(session).await?;
        if actor.role.at_least(Role::Trainer) {
            Ok(all)
        } else {
            Ok(all.into_iter().filter(|e| e.user == actor.id).collect())
        }
    }

    /// A member enrols themselves; a manager enrols anyone. A full session puts the member
    /// on the waiting list.
    pub async fn enrol(
        &self,
        actor: &User,
        session: SessionId,
        member: UserId,
        now: i64,
    ) -> LabResult<EnrolmentStatus> {
        if member != actor.id {
            require(actor, Role::Manager)?;
            // An unknown member is not found, not a database error.
            if self.store().user(member).await?.disabled {
                return Err(Invalid::new("member", "account_disabled").into());
            }
        }
        let s = self.store().session(session).await?;
        if s.starts_at.as_second() <= now {
            return Err(Invalid::new("session", "session_started").into());
        }
        Ok(self.store().enrol(session, member, now).await?)
    }

    /// The sessions a member is enrolled in or waiting for (not cancelled), of the last
    /// `days_back` days and to come, each with the member's place: for the member, a
    /// trainer or a manager.
    pub async fn enrolments_of(
        &self,
        actor: &User,
        member: UserId,
        days_back: i64,
        now: i64,
    ) -> LabResult<Vec<(TrainingSession, Enrolment)>> {
        if member != actor.id {
            require(actor, Role::Trainer)?;
        }
        let mut out = Vec::new();
        for session in self
            .store()
            .sessions(at(now - days_back * 86_400), None)
            .await?
        {
            let mine = self
                .store()
                .enrolments(session.id)
                .await?
                .into_iter()
                .find(|e| e.user == member && e.status != EnrolmentStatus::Cancelled);
            if let Some(enrolment) = mine {
                out.push((session, enrolment));
            }
        }
        Ok(out)
    }

    pub async fn cancel_enrolment(
        &self,
        actor: &User,
        session: SessionId,
        member: UserId,
    ) -> LabResult<Option<UserId>> {
        if member != actor.id {
            require(actor, Role::Manager)?;
        }
        Ok(self.store().cancel_enrolment(session, member).await?)
    }

    pub async fn set_attendance(
        &self,
        actor: &User,
        session: SessionId,
        member: UserId,
        attended: bool,
        now: i64,
    ) -> LabResult<()> {
        require(actor, Role::Trainer)?;
        Ok(self
            .store()
            .set_attendance(session, member, attended, now)
            .await?)
    }

    // --- Badges -----------------------------------------------------------------------------

    /// A trainer or a manager awards a badge; attendance alone never does; a trainer never
    /// to themselves (a manager may: they answer for the lab). The badge lasts the
    /// training's validity.
    pub async fn award_badge(
        &self,
        actor: &User,
        member: UserId,
        training: TrainingId,
        session: Option<SessionId>,
        now: i64,
    ) -> LabResult<Badge> {
        require(actor, Role::Trainer)?;
        if member == actor.id && !actor.role.at_least(Role::Manager) {
            return Err(LabError::SelfAward);
        }
        let training = self.store().training(training).await?;
        let holder = self.store().user(member).await?;
        if holder.disabled {
            return Err(Invalid::new("member", "account_disabled").into());
        }
        if let Some(session) = session {
            let s = self.store().session(session).await?;
            if s.training != training.id {
                return Err(Invalid::new("session", "choice").into());
            }
        }
        let awarded = at(now);
        let expires = add_months(awarded, training.validity_months);
        let token = secrets::random_token()?;
        let id = self
            .store()
            .insert_badge(
                member,
                training.id,
                session,
                actor.id,
                awarded,
                expires,
                &token,
            )
            .await?;
        Ok(self.store().badge(id).await?)
    }

    pub async fn revoke_badge(
        &self,
        actor: &User,
        badge: BadgeId,
        reason: &str,
        now: i64,
    ) -> LabResult<Badge> {
        require(actor, Role::Trainer)?;
        let reason = crate::domain::account::parse_text("reason", reason, 300)?;
        self.store()
            .revoke_badge(badge, actor.id, &reason, now)
            .await?;
        Ok(self.store().badge(badge).await?)
    }

    pub async fn badges_of(&self, actor: &User, member: UserId) -> LabResult<Vec<Badge>> {
        if member != actor.id {
            require(actor, Role::Trainer)?;
        }
        Ok(self.store().badges_of(member).await?)
    }

    /// The status indexes of the withdrawn badges: the bits set in the revocation list,
    /// which anyone may fetch.
    pub async fn revoked_status_indexes(&self) -> LabResult<Vec<u64>> {
        Ok(self.store().revoked_status_indexes().await?)
    }

    /// The badge at a place of the revocation list, for the verification page (which says
    /// why a badge of this lab was withdrawn).
    pub async fn badge_at_status_index(&self, index: u64) -> LabResult<Badge> {
        Ok(self.store().badge_by_status_index(index).await?)
    }

    /// A badge by its public token: anyone with the link may verify it.
    pub async fn public_badge(&self, token: &str) -> LabResult<Badge> {
        Ok(self.store().badge_by_token(token).await?)
    }

    /// `None` when `member` may use the machine: a valid badge of a training that unlocks
    /// it, or no training unlocks it. Otherwise the name of a training that would.
    pub async fn missing_training(
        &self,
        member: UserId,
        machine: MachineId,
        now: i64,
    ) -> LabResult<Option<String>> {
        let trainings = self.store().trainings_for_machine(machine).await?;
        if trainings.is_empty() {
            return Ok(None);
        }
        let badges = self.store().badges_of(member).await?;
        let ok = badges
            .iter()
            .any(|b| trainings.iter().any(|t| t.id == b.training) && b.is_valid(at(now)));
        Ok(if ok {
            None
        } else {
            trainings.first().map(|t| t.name.clone())
        })
    }

    // --- Bookings ---------------------------------------------------------------------------

    /// Books `[start, end)` of a machine for `member` (a member for themselves, a manager for
    /// anyone), checking every rule; the database refuses an overlap.
    #[allow(clippy::too_many_arguments)]
    pub async fn book(
        &self,
        actor: &User,
        machine: MachineId,
        member: UserId,
        start: Timestamp,
        end: Timestamp,
        supervised: bool,
        note: &str,
        now: i64,
    ) -> LabResult<Booking> {
        let is_manager = actor.role.at_least(Role::Manager);
        if member != actor.id && !is_manager {
            return Err(LabError::Forbidden);
        }
        if member != actor.id {
            // A booking for someone unknown is not found, not a database error.
            self.store().user(member).await?;
        }
        let settings = self.calendar_settings().await?;
        self.store()
            .release_no_shows(now, i64::from(settings.no_show_grace_minutes) * 60)
            .await?;
        let m = self.store().machine(machine).await?;
        let available = !matches!(m.state, MachineState::Disabled | MachineState::Maintenance);
        let booker = Booker {
            is_manager,
            missing_training: self.missing_training(member, machine, now).await?,
            future_bookings: self.store().count_future_bookings(member, at(now)).await?,
        };
        check_booking(
            &settings,
            &booker,
            available,
            start,
            end,
            supervised,
            at(now),
        )?;
        let note = if note.trim().is_empty() {
            String::new()
        } else {
            crate::domain::account::parse_text("note", note, 200)?
        };
        let new = NewBooking {
            machine,
            user: Some(member),
            kind: BookingKind::Booking,
            starts_at: start,
            ends_at: end,
            supervised: supervised && booker.missing_training.is_some(),
            note,
            created_by: actor.id,
        };
        let id = match self.store().insert_booking(&new, now).await {
            Ok(id) => id,
            Err(e) => {
                let refusal = slot_refusal(e);
                if !matches!(refusal, LabError::Refused(Refusal::SlotTaken)) {
                    return Err(refusal);
                }
                // Say so when the slot runs into the member's own booking: "taken" would
                // send them looking for who took it.
                let own = self
                    .store()
                    .bookings_between(Some(machine), start, end)
                    .await?
                    .into_iter()
                    .find(|b| b.is_live() && b.user == Some(member));
                return Err(match own {
                    Some(b) => Refusal::OwnBooking {
                        from: settings.clock(b.starts_at),
                        until: settings.clock(b.ends_at),
                    }
                    .into(),
                    None => refusal,
                });
            }
        };
        Ok(self.store().booking(id).await?)
    }

    /// Each machine's next free slot within the booking horizon (`None` for a machine in
    /// maintenance or disabled, or booked throughout): for the machines' cards.
    pub async fn next_free_slots(
        &self,
        now: i64,
    ) -> LabResult<Vec<(MachineId, Option<Timestamp>)>> {
        let settings = self.calendar_settings().await?;
        let from = at(now);
        let until = at(now + (i64::from(settings.horizon_days) + 1) * 86_400);
        let bookings = self.bookings_between(None, from, until, now).await?;
        let machines = self.machines().await?;
        Ok(machines
            .iter()
            .map(|m| {
                let available =
                    !matches!(m.state, MachineState::Disabled | MachineState::Maintenance);
                let taken: Vec<(Timestamp, Timestamp)> = bookings
                    .iter()
                    .filter(|b| b.machine == m.id && b.is_live())
                    .map(|b| (b.starts_at, b.ends_at))
                    .collect();
                (
                    m.id,
                    available
                        .then(|| settings.next_free(from, &taken))
                        .flatten(),
                )
            })
            .collect())
    }

    /// The lengths in minutes a booking of `machine` starting at `start` may have
    /// ([`CalendarSettings::durations`]): what the booking page offers.
    pub async fn booking_durations(
        &self,
        machine: MachineId,
        start: Timestamp,
        now: i64,
    ) -> LabResult<Vec<u32>> {
        let settings = self.calendar_settings().await?;
        let until = start
            .checked_add(jiff::SignedDuration::from_mins(i64::from(
                settings.max_booking_minutes,
            )))
            .unwrap_or(start);
        let taken: Vec<(Timestamp, Timestamp)> = self
            .bookings_between(Some(machine), start, until, now)
            .await?
            .iter()
            .filter(|b| b.is_live())
            .map(|b| (b.starts_at, b.ends_at))
            .collect();
        Ok(settings.durations(start, &taken))
    }

    /// A manager blocks slots of a machine (maintenance, a group workshop).
    pub async fn block(
        &self,
        actor: &User,
        machine: MachineId,
        start: Timestamp,
        end: Timestamp,
        note: &str,
        now: i64,
    ) -> LabResult<Booking> {
        require(actor, Role::Manager)?;
        if end <= start {
            return Err(Refusal::InvalidRange.into());
        }
        self.store().machine(machine).await?;
        let note = crate::domain::account::parse_text("note", note, 200)?;
        let new = NewBooking {
            machine,
            user: None,
            kind: BookingKind::Block,
            starts_at: start,
            ends_at: end,
            supervised: false,
            note,
            created_by: actor.id,
        };
        let id = self
            .store()
            .insert_booking(&new, now)
            .await
            .map_err(slot_refusal)?;
        Ok(self.store().booking(id).await?)
    }

    pub async fn cancel_booking(
        &self,
        actor: &User,
        id: BookingId,
        now: i64,
    ) -> LabResult<Booking> {
        let booking = self.store().booking(id).await?;
        let is_manager = actor.role.at_least(Role::Manager);
        if booking.user != Some(actor.id) && !is_manager {
            return Err(LabError::Forbidden);
        }
        if !booking.is_live() {
            return Err(LabError::NotFound);
        }
        check_cancel(
            &self.calendar_settings().await?,
            is_manager,
            booking.starts_at,
            at(now),
        )?;
        self.store().cancel_booking(id, now).await?;
        Ok(self.store().booking(id).await?)
    }

    /// The member arrives: from 15 minutes before the start until the end. Using the machine
    /// renews the badges that unlock it.
    pub async fn check_in(&self, actor: &User, id: BookingId, now: i64) -> LabResult<Booking> {
        let booking = self.store().booking(id).await?;
        if booking.user != Some(actor.id) && !actor.role.at_least(Role::Manager) {
            return Err(LabError::Forbidden);
        }
        let window = booking.starts_at.as_second() - CHECK_IN_EARLY_S..booking.ends_at.as_second();
        if !window.contains(&now) {
            return Err(Invalid::new("booking", "check_in_time").into());
        }
        self.store().check_in(id, now).await?;
        if let Some(member) = booking.user {
            self.store()
                .touch_badges(member, booking.machine, now)
                .await?;
        }
        Ok(self.store().booking(id).await?)
    }

    /// Bookings of a machine, or of all machines, over `[from, to)`, after releasing the
    /// no-shows. Names are for the caller to hide.
    pub async fn bookings_between(
        &self,
        machine: Option<MachineId>,
        from: Timestamp,
        to: Timestamp,
        now: i64,
    ) -> LabResult<Vec<Booking>> {
        let settings = self.calendar_settings().await?;
        self.store()
            .release_no_shows(now, i64::from(settings.no_show_grace_minutes) * 60)
            .await?;
        Ok(self.store().bookings_between(machine, from, to).await?)
    }

    pub async fn my_bookings(&self, actor: &User, now: i64) -> LabResult<Vec<Booking>> {
        Ok(self.store().bookings_of(actor.id, at(now - 86_400)).await?)
    }

    /// A member's bookings of the last day and to come, for the member or a manager (at
    /// the desk, on the member's page).
    pub async fn bookings_of_member(
        &self,
        actor: &User,
        member: UserId,
        now: i64,
    ) -> LabResult<Vec<Booking>> {
        if member != actor.id {
            require(actor, Role::Manager)?;
        }
        Ok(self.store().bookings_of(member, at(now - 86_400)).await?)
    }

    // --- Calendar feeds -----------------------------------------------------------------------

    /// A new secret address for the member's calendar feed (the old one stops working).
    pub async fn new_calendar_token(&self, actor: &User) -> LabResult<String> {
        let token = secrets::random_token()?;
        self.store()
            .set_calendar_token(actor.id, &secrets::token_hash(&token))
            .await?;
        Ok(token)
    }

    /// The member's bookings as iCalendar, found by the feed's secret token.
    pub async fn member_feed(&self, token: &str, now: i64) -> LabResult<String> {
        let user = self
            .store()
            .user_by_calendar_token(&secrets::token_hash(token))
            .await?;
        let bookings = self
            .store()
            .bookings_of(user, at(now - 30 * 86_400))
            .await?;
        let events: Vec<ical::Event> = bookings
            .iter()
            .filter(|b| b.is_live())
            .map(|b| ical::Event {
                uid: format!("booking-{}@fabrique", b.id.0),
                start: b.starts_at,
                end: b.ends_at,
                summary: b.machine_name.clone(),
                description: b.note.clone(),
                location: String::new(),
            })
            .collect();
        Ok(ical::calendar("Fabrique", &events, at(now)))
    }

    /// A machine's bookings as iCalendar, with no member names.
    pub async fn machine_feed(&self, machine: MachineId, now: i64) -> LabResult<String> {
        let m = self.store().machine(machine).await?;
        let bookings = self
            .bookings_between(
                Some(machine),
                at(now - 30 * 86_400),
                at(now + 366 * 86_400),
                now,
            )
            .await?;
        let events: Vec<ical::Event> = bookings
            .iter()
            .filter(|b| b.is_live())
            .map(|b| ical::Event {
                uid: format!("booking-{}@fabrique", b.id.0),
                start: b.starts_at,
                end: b.ends_at,
                summary: match b.kind {
                    BookingKind::Booking => format!("{} : réservé", m.name),
                    BookingKind::Block => format!("{} : indisponible", m.name),
                },
                description: String::new(),
                location: m.location.clone(),
            })
            .collect();
        Ok(ical::calendar(&m.name, &events, at(now)))
    }
}

fn slot_refusal(e: StoreError) -> LabError {
    match e {
        StoreError::Conflict { what: "slot" } => LabError::Refused(Refusal::SlotTaken),
        other => other.into(),
    }
}
