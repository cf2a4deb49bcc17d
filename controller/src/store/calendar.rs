//! Settings, trainings, sessions, badges and bookings.

use super::{Store, StoreError, StoreResult, conflict, parse_word};
use crate::domain::booking::{Booking, BookingId, BookingKind};
use crate::domain::training::{
    Badge, BadgeId, Enrolment, EnrolmentStatus, SessionId, Training, TrainingId, TrainingInput,
    TrainingSession,
};
use crate::domain::{MachineId, UserId};
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

fn ts(seconds: i64) -> StoreResult<Timestamp> {
    Timestamp::from_second(seconds).map_err(|e| StoreError::Corrupt(format!("time {seconds}: {e}")))
}

fn opt_ts(seconds: Option<i64>) -> StoreResult<Option<Timestamp>> {
    seconds.map(ts).transpose()
}

fn count(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// Maps the overlap constraint (PostgreSQL exclusion, SQLite trigger) to `Conflict { slot }`.
fn slot_conflict(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && (db.code().as_deref() == Some("23P01") || db.message().contains("slot_taken"))
    {
        return StoreError::Conflict { what: "slot" };
    }
    StoreError::Database(e)
}

const BADGE_COLUMNS: &str = "b.id, b.user_id, u.display_name AS holder_name, b.training_id, t.name AS training_name, \
     t.description AS training_description, a.display_name AS awarded_by_name, b.awarded_at, b.expires_at, \
     t.lapse_months, b.last_used_at, b.revoked_at, b.revoke_reason, b.public_token, b.status_index \
     FROM badges b JOIN users u ON u.id = b.user_id JOIN trainings t ON t.id = b.training_id \
     JOIN users a ON a.id = b.awarded_by";

fn badge_from_row(row: &AnyRow) -> StoreResult<Badge> {
    Ok(Badge {
        id: BadgeId(row.try_get("id")?),
        user: UserId(row.try_get("user_id")?),
        holder_name: row.try_get("holder_name")?,
        training: TrainingId(row.try_get("training_id")?),
        training_name: row.try_get("training_name")?,
        training_description: row.try_get("training_description")?,
        awarded_by_name: row.try_get("awarded_by_name")?,
        awarded_at: ts(row.try_get("awarded_at")?)?,
        expires_at: ts(row.try_get("expires_at")?)?,
        lapse_months: row.try_get::<Option<i64>, _>("lapse_months")?.map(count),
        last_used_at: opt_ts(row.try_get("last_used_at")?)?,
        revoked_at: opt_ts(row.try_get("revoked_at")?)?,
        revoke_reason: row.try_get("revoke_reason")?,
        public_token: row.try_get("public_token")?,
        status_index: u64::try_from(row.try_get::<i64, _>("status_index")?).unwrap_or(0),
    })
}

const BOOKING_COLUMNS: &str = "b.id, b.machine_id, m.name AS machine_name, b.user_id, u.display_name AS user_name, \
     b.kind, b.starts_at, b.ends_at, b.supervised, b.note, b.cancelled_at, b.checked_in_at, b.no_show_at \
     FROM bookings b JOIN machines m ON m.id = b.machine_id LEFT JOIN users u ON u.id = b.user_id";

fn booking_from_row(row: &AnyRow) -> StoreResult<Booking> {
    Ok(Booking {
        id: BookingId(row.try_get("id")?),
        machine: MachineId(row.try_get("machine_id")?),
        machine_name: row.try_get("machine_name")?,
        user: row.try_get::<Option<i64>, _>("user_id")?.map(UserId),
        user_name: row.try_get("user_name")?,
        kind: parse_word::<BookingKind>("kind", &row.try_get::<String, _>("kind")?)?,
        starts_at: ts(row.try_get("starts_at")?)?,
        ends_at: ts(row.try_get("ends_at")?)?,
        supervised: row.try_get::<i64, _>("supervised")? != 0,
        note: row.try_get("note")?,
        cancelled_at: opt_ts(row.try_get("cancelled_at")?)?,
        checked_in_at: opt_ts(row.try_get("checked_in_at")?)?,
        no_show_at: opt_ts(row.try_get("no_show_at")?)?,
    })
}

/// A new booking or block, as stored.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub machine: MachineId,
    pub user: Option<UserId>,
    pub kind: BookingKind,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub supervised: bool,
    pub note: String,
    pub created_by: UserId,
}

impl Store {
    pub async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM lab_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("value").map_err(StoreError::from))
            .transpose()
    }

    pub async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO lab_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // --- Trainings ---------------------------------------------------------------------

    /// Inserts or replaces a training and the machines it unlocks, in one transaction.
    pub async fn save_training(
        &self,
        id: Option<TrainingId>,
        input: &TrainingInput,
        now: i64,
    ) -> StoreResult<TrainingId> {
        let mut tx = self.begin_write().await?;
        let lapse = input.lapse_months.map(i64::from);
        let id = match id {
            Some(id) => {
                let done = sqlx::query(
                    "UPDATE trainings SET name = $1, description = $2, validity_months = $3, lapse_months = $4 WHERE id = $5",
                )
                .bind(&input.name)
                .bind(&input.description)
                .bind(i64::from(input.validity_months))
                .bind(lapse)
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(conflict("training_name"))?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                sqlx::query("DELETE FROM training_machines WHERE training_id = $1")
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                let row = sqlx::query(
                    "INSERT INTO trainings (name, description, validity_months, lapse_months, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(&input.name)
                .bind(&input.description)
                .bind(i64::from(input.validity_months))
                .bind(lapse)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(conflict("training_name"))?;
                TrainingId(row.try_get("id")?)
            }
        };
        for machine in &input.machines {
            sqlx::query("INSERT INTO training_machines (training_id, machine_id) VALUES ($1, $2)")
                .bind(id.0)
                .bind(machine.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    pub async fn trainings(&self) -> StoreResult<Vec<Training>> {
        let rows = sqlx::query("SELECT id, name, description, validity_months, lapse_months FROM trainings ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let links = sqlx::query(
            "SELECT training_id, machine_id FROM training_machines ORDER BY machine_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut trainings = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let mut machines = Vec::new();
            for link in &links {
                if link.try_get::<i64, _>("training_id")? == id {
                    machines.push(MachineId(link.try_get("machine_id")?));
                }
            }
            trainings.push(Training {
                id: TrainingId(id),
                name: row.try_get("name")?,
                description: row.try_get("description")?,
                validity_months: count(row.try_get("validity_months")?),
                lapse_months: row.try_get::<Option<i64>, _>("lapse_months")?.map(count),
                machines,
            });
        }
        Ok(trainings)
    }

    pub async fn training(&self, id: TrainingId) -> StoreResult<Training> {
        self.trainings()
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or(StoreError::NotFound)
    }

    // --- Sessions and enrolments -----------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_training_session(
        &self,
        training: TrainingId,
        starts_at: Timestamp,
        ends_at: Timestamp,
        trainer: UserId,
        capacity: u32,
        location: &str,
        now: i64,
    ) -> StoreResult<SessionId> {
        let row = sqlx::query(
            "INSERT INTO training_sessions (training_id, starts_at, ends_at, trainer_id, capacity, location, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(training.0)
        .bind(starts_at.as_second())
        .bind(ends_at.as_second())
        .bind(trainer.0)
        .bind(i64::from(capacity))
        .bind(location)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(SessionId(row.try_get("id")?))
    }

    /// Sessions ending after `from`, soonest first, with their head counts.
    pub async fn sessions(
        &self,
        from: Timestamp,
        training: Option<TrainingId>,
    ) -> StoreResult<Vec<TrainingSession>> {
        let rows = sqlx::query(
            "SELECT s.id, s.training_id, t.name AS training_name, s.starts_at, s.ends_at, s.trainer_id, \
             u.display_name AS trainer_name, s.capacity, s.location, \
             (SELECT COUNT(*) FROM enrolments e WHERE e.session_id = s.id AND e.status = 'enrolled') AS enrolled, \
             (SELECT COUNT(*) FROM enrolments e WHERE e.session_id = s.id AND e.status = 'waiting') AS waiting \
             FROM training_sessions s JOIN trainings t ON t.id = s.training_id JOIN users u ON u.id = s.trainer_id \
             WHERE s.ends_at > $1 AND ($2 = 0 OR s.training_id = $2) ORDER BY s.starts_at",
        )
        .bind(from.as_second())
        .bind(training.map_or(0, |t| t.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrainingSession {
                    id: SessionId(r.try_get("id")?),
                    training: TrainingId(r.try_get("training_id")?),
                    training_name: r.try_get("training_name")?,
                    starts_at: ts(r.try_get("starts_at")?)?,
                    ends_at: ts(r.try_get("ends_at")?)?,
                    trainer: UserId(r.try_get("trainer_id")?),
                    trainer_name: r.try_get("trainer_name")?,
                    capacity: count(r.try_get("capacity")?),
                    location: r.try_get("location")?,
                    enrolled: count(r.try_get("enrolled")?),
                    waiting: count(r.try_get("waiting")?),
                })
            })
            .collect()
    }

    pub async fn session(&self, id: SessionId) -> StoreResult<TrainingSession> {
        let all = self.sessions(Timestamp::MIN, None).await?;
        all.into_iter()
            .find(|s| s.id == id)
            .ok_or(StoreError::NotFound)
    }

    pub async fn enrolments(&self, session: SessionId) -> StoreResult<Vec<Enrolment>> {
        let rows = sqlx::query(
            "SELECT e.session_id, e.user_id, u.display_name, e.status, e.attended_at FROM enrolments e \
             JOIN users u ON u.id = e.user_id WHERE e.session_id = $1 ORDER BY e.status, e.created_at, e.id",
        )
        .bind(session.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Enrolment {
                    session: SessionId(r.try_get("session_id")?),
                    user: UserId(r.try_get("user_id")?),
                    display_name: r.try_get("display_name")?,
                    status: parse_word::<EnrolmentStatus>(
                        "status",
                        &r.try_get::<String, _>("status")?,
                    )?,
                    attended: r.try_get::<Option<i64>, _>("attended_at")?.is_some(),
                })
            })
            .collect()
    }

    /// Enrols a member, or puts them on the waiting list when the session is full. The
    /// place is decided inside the one statement that writes it.
    pub async fn enrol(
        &self,
        session: SessionId,
        user: UserId,
        now: i64,
    ) -> StoreResult<EnrolmentStatus> {
        let status_sql = "CASE WHEN (SELECT COUNT(*) FROM enrolments WHERE session_id = $1 AND status = 'enrolled') \
             < (SELECT capacity FROM training_sessions WHERE id = $1) THEN 'enrolled' ELSE 'waiting' END";
        let row = sqlx::query(&format!(
            "INSERT INTO enrolments (session_id, user_id, status, created_at) VALUES ($1, $2, {status_sql}, $3) \
             ON CONFLICT (session_id, user_id) DO UPDATE SET status = {status_sql}, created_at = $3 \
             WHERE enrolments.status = 'cancelled' RETURNING status"
        ))
        .bind(session.0)
        .bind(user.0)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => parse_word("status", &row.try_get::<String, _>("status")?),
            None => Err(StoreError::Conflict { what: "enrolment" }),
        }
    }

    /// Cancels a place; the first on the waiting list takes a freed seat. One transaction.
    pub async fn cancel_enrolment(
        &self,
        session: SessionId,
        user: UserId,
    ) -> StoreResult<Option<UserId>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE enrolments SET status = 'cancelled' WHERE session_id = $1 AND user_id = $2 AND status <> 'cancelled'",
        )
        .bind(session.0)
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let next = sqlx::query(
            "SELECT user_id FROM enrolments WHERE session_id = $1 AND status = 'waiting' \
             AND (SELECT COUNT(*) FROM enrolments WHERE session_id = $1 AND status = 'enrolled') \
                 < (SELECT capacity FROM training_sessions WHERE id = $1) \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(session.0)
        .fetch_optional(&mut *tx)
        .await?;
        let promoted = match next {
            Some(row) => {
                let promoted = UserId(row.try_get("user_id")?);
                sqlx::query("UPDATE enrolments SET status = 'enrolled' WHERE session_id = $1 AND user_id = $2")
                    .bind(session.0)
                    .bind(promoted.0)
                    .execute(&mut *tx)
                    .await?;
                Some(promoted)
            }
            None => None,
        };
        tx.commit().await?;
        Ok(promoted)
    }

    pub async fn set_attendance(
        &self,
        session: SessionId,
        user: UserId,
        attended: bool,
        now: i64,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE enrolments SET attended_at = CASE WHEN $1 = 1 THEN COALESCE(attended_at, $2) ELSE NULL END \
             WHERE session_id = $3 AND user_id = $4 AND status = 'enrolled'",
        )
        .bind(i64::from(attended))
        .bind(now)
        .bind(session.0)
        .bind(user.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    // --- Badges ----------------------------------------------------------------------------

    /// Inserts a badge with the next free status index. Two awards at the same instant on
    /// PostgreSQL may read the same largest index; the unique index refuses the second,
    /// which then takes the next one (SQLite has one writer at a time: no race there). Each
    /// round lets at least one award through, so a few tries serve any lab.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_badge(
        &self,
        user: UserId,
        training: TrainingId,
        session: Option<SessionId>,
        awarded_by: UserId,
        awarded_at: Timestamp,
        expires_at: Timestamp,
        public_token: &str,
    ) -> StoreResult<BadgeId> {
        let mut attempts = 0;
        loop {
            let inserted = sqlx::query(
                "INSERT INTO badges (user_id, training_id, session_id, awarded_by, awarded_at, expires_at, public_token, status_index) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT COALESCE(MAX(status_index), 0) + 1 FROM badges)) RETURNING id",
            )
            .bind(user.0)
            .bind(training.0)
            .bind(session.map(|s| s.0))
            .bind(awarded_by.0)
            .bind(awarded_at.as_second())
            .bind(expires_at.as_second())
            .bind(public_token)
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(row) => return Ok(BadgeId(row.try_get("id")?)),
                Err(sqlx::Error::Database(db))
                    if attempts < 16 && db.message().contains("status_index") =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn revoke_badge(
        &self,
        id: BadgeId,
        by: UserId,
        reason: &str,
        now: i64,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE badges SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 WHERE id = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(by.0)
        .bind(reason)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    /// The status indexes of the withdrawn badges, for the revocation list.
    pub async fn revoked_status_indexes(&self) -> StoreResult<Vec<u64>> {
        let rows = sqlx::query(
            "SELECT status_index FROM badges WHERE revoked_at IS NOT NULL AND status_index IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(u64::try_from(r.try_get::<i64, _>("status_index")?).unwrap_or(0)))
            .collect()
    }

    /// The badge at a place of the revocation list.
    pub async fn badge_by_status_index(&self, index: u64) -> StoreResult<Badge> {
        let index = i64::try_from(index).map_err(|_| StoreError::NotFound)?;
        let row = sqlx::query(&format!("SELECT {BADGE_COLUMNS} WHERE b.status_index = $1"))
            .bind(index)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        badge_from_row(&row)
    }

    pub async fn badges_of(&self, user: UserId) -> StoreResult<Vec<Badge>> {
        let rows = sqlx::query(&format!(
            "SELECT {BADGE_COLUMNS} WHERE b.user_id = $1 ORDER BY b.awarded_at DESC, b.id DESC"
        ))
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(badge_from_row).collect()
    }

    pub async fn badge(&self, id: BadgeId) -> StoreResult<Badge> {
        let row = sqlx::query(&format!("SELECT {BADGE_COLUMNS} WHERE b.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        badge_from_row(&row)
    }

    pub async fn badge_by_token(&self, token: &str) -> StoreResult<Badge> {
        let row = sqlx::query(&format!("SELECT {BADGE_COLUMNS} WHERE b.public_token = $1"))
            .bind(token)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        badge_from_row(&row)
    }

    /// The trainings that unlock a machine (any one suffices).
    pub async fn trainings_for_machine(&self, machine: MachineId) -> StoreResult<Vec<Training>> {
        Ok(self
            .trainings()
            .await?
            .into_iter()
            .filter(|t| t.machines.contains(&machine))
            .collect())
    }

    /// Notes a use of the machine on the member's badges that unlock it (renew on use).
    pub async fn touch_badges(
        &self,
        user: UserId,
        machine: MachineId,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE badges SET last_used_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND training_id IN \
             (SELECT training_id FROM training_machines WHERE machine_id = $3)",
        )
        .bind(now)
        .bind(user.0)
        .bind(machine.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // --- Bookings ---------------------------------------------------------------------------

    /// Writes a booking. Two live bookings of one machine cannot overlap: the database
    /// refuses the second (`Conflict { what: "slot" }`), whatever the concurrency.
    pub async fn insert_booking(&self, b: &NewBooking, now: i64) -> StoreResult<BookingId> {
        let row = sqlx::query(
            "INSERT INTO bookings (machine_id, user_id, kind, starts_at, ends_at, supervised, note, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(b.machine.0)
        .bind(b.user.map(|u| u.0))
        .bind(b.kind.as_str())
        .bind(b.starts_at.as_second())
        .bind(b.ends_at.as_second())
        .bind(i64::from(b.supervised))
        .bind(&b.note)
        .bind(b.created_by.0)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(slot_conflict)?;
        Ok(BookingId(row.try_get("id")?))
    }

    pub async fn booking(&self, id: BookingId) -> StoreResult<Booking> {
        let row = sqlx::query(&format!("SELECT {BOOKING_COLUMNS} WHERE b.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        booking_from_row(&row)
    }

    /// Live bookings overlapping `[from, to)`, of one machine or of all.
    pub async fn bookings_between(
        &self,
        machine: Option<MachineId>,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<Booking>> {
        let rows = sqlx::query(&format!(
            "SELECT {BOOKING_COLUMNS} WHERE ($1 = 0 OR b.machine_id = $1) AND b.starts_at < $3 AND b.ends_at > $2 \
             AND b.cancelled_at IS NULL ORDER BY b.starts_at, m.name"
        ))
        .bind(machine.map_or(0, |m| m.0))
        .bind(from.as_second())
        .bind(to.as_second())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(booking_from_row).collect()
    }

    /// A member's bookings ending after `from`, cancelled ones included.
    pub async fn bookings_of(&self, user: UserId, from: Timestamp) -> StoreResult<Vec<Booking>> {
        let rows = sqlx::query(&format!(
            "SELECT {BOOKING_COLUMNS} WHERE b.user_id = $1 AND b.ends_at > $2 ORDER BY b.starts_at"
        ))
        .bind(user.0)
        .bind(from.as_second())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(booking_from_row).collect()
    }

    pub async fn count_future_bookings(&self, user: UserId, now: Timestamp) -> StoreResult<u32> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM bookings WHERE user_id = $1 AND kind = 'booking' AND ends_at > $2 \
             AND cancelled_at IS NULL AND no_show_at IS NULL",
        )
        .bind(user.0)
        .bind(now.as_second())
        .fetch_one(&self.pool)
        .await?;
        Ok(count(row.try_get("n")?))
    }

    pub async fn cancel_booking(&self, id: BookingId, now: i64) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE bookings SET cancelled_at = $1 WHERE id = $2 AND cancelled_at IS NULL",
        )
        .bind(now)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    pub async fn check_in(&self, id: BookingId, now: i64) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE bookings SET checked_in_at = $1 WHERE id = $2 AND cancelled_at IS NULL AND no_show_at IS NULL \
             AND checked_in_at IS NULL",
        )
        .bind(now)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    /// Releases the slots of bookings nobody checked in for within `grace_s` of their start.
    /// Counted as no-shows, never fined.
    pub async fn release_no_shows(&self, now: i64, grace_s: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE bookings SET no_show_at = $1 WHERE kind = 'booking' AND checked_in_at IS NULL \
             AND cancelled_at IS NULL AND no_show_at IS NULL AND starts_at + $2 <= $1",
        )
        .bind(now)
        .bind(grace_s)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn count_no_shows(&self, user: UserId) -> StoreResult<u32> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM bookings WHERE user_id = $1 AND no_show_at IS NOT NULL",
        )
        .bind(user.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(count(row.try_get("n")?))
    }

    // --- Calendar feeds -----------------------------------------------------------------------

    pub async fn set_calendar_token(&self, user: UserId, token_hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET calendar_token = $1 WHERE id = $2")
            .bind(token_hash)
            .bind(user.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn user_by_calendar_token(&self, token_hash: &str) -> StoreResult<UserId> {
        let row =
            sqlx::query("SELECT id FROM users WHERE calendar_token = $1 AND disabled_at IS NULL")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound)?;
        Ok(UserId(row.try_get("id")?))
    }
}
