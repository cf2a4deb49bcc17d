//! A booking of a machine slot, or a block (maintenance, a group workshop) set by a manager.

use super::{MachineId, UserId, text_enum};
use jiff::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct BookingId(pub i64);

text_enum! {
    BookingKind { Booking = "booking", Block = "block" }
}

text_enum! {
    /// Where a booking stands: the API's `status` and the pages' `booking_status.*` word.
    BookingStatus {
        Booked = "booked",
        CheckedIn = "checked_in",
        Cancelled = "cancelled",
        NoShow = "no_show",
    }
}

/// How long before its start a booking's holder may check in.
pub const CHECK_IN_EARLY_S: i64 = 15 * 60;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Booking {
    pub id: BookingId,
    pub machine: MachineId,
    pub machine_name: String,
    /// The member; `None` for a block.
    pub user: Option<UserId>,
    pub user_name: Option<String>,
    pub kind: BookingKind,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub supervised: bool,
    pub note: String,
    pub cancelled_at: Option<Timestamp>,
    pub checked_in_at: Option<Timestamp>,
    pub no_show_at: Option<Timestamp>,
}

impl Booking {
    /// Whether the booking still holds its slot.
    pub fn is_live(&self) -> bool {
        self.cancelled_at.is_none() && self.no_show_at.is_none()
    }

    pub fn status(&self) -> BookingStatus {
        if self.cancelled_at.is_some() {
            BookingStatus::Cancelled
        } else if self.no_show_at.is_some() {
            BookingStatus::NoShow
        } else if self.checked_in_at.is_some() {
            BookingStatus::CheckedIn
        } else {
            BookingStatus::Booked
        }
    }

    /// Whether its holder may check in at `now`: from [`CHECK_IN_EARLY_S`] before the start
    /// to the end, once.
    pub fn check_in_open(&self, now: i64) -> bool {
        self.is_live()
            && self.kind == BookingKind::Booking
            && self.checked_in_at.is_none()
            && now >= self.starts_at.as_second() - CHECK_IN_EARLY_S
            && now < self.ends_at.as_second()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking(start: i64, end: i64) -> Booking {
        Booking {
            id: BookingId(1),
            machine: MachineId(1),
            machine_name: "Prusa".into(),
            user: Some(UserId(1)),
            user_name: Some("amina".into()),
            kind: BookingKind::Booking,
            starts_at: Timestamp::from_second(start).unwrap(),
            ends_at: Timestamp::from_second(end).unwrap(),
            supervised: false,
            note: String::new(),
            cancelled_at: None,
            checked_in_at: None,
            no_show_at: None,
        }
    }

    #[test]
    fn check_in_opens_a_quarter_of_an_hour_before_and_closes_at_the_end() {
        let b = booking(10_000, 13_600);
        assert!(!b.check_in_open(10_000 - CHECK_IN_EARLY_S - 1));
        assert!(b.check_in_open(10_000 - CHECK_IN_EARLY_S));
        assert!(b.check_in_open(13_599));
        assert!(!b.check_in_open(13_600));
        let done = Booking {
            checked_in_at: Some(Timestamp::from_second(10_100).unwrap()),
            ..b.clone()
        };
        assert!(!done.check_in_open(10_200), "once");
        assert_eq!(done.status(), BookingStatus::CheckedIn);
        let block = Booking {
            kind: BookingKind::Block,
            ..b.clone()
        };
        assert!(
            !block.check_in_open(10_200),
            "a block has nobody to check in"
        );
    }

    #[test]
    fn a_cancelled_or_missed_booking_says_so_before_anything_else() {
        let at = Some(Timestamp::from_second(1).unwrap());
        let b = booking(10_000, 13_600);
        assert_eq!(b.status(), BookingStatus::Booked);
        let cancelled = Booking {
            cancelled_at: at,
            checked_in_at: at,
            ..b.clone()
        };
        assert_eq!(cancelled.status(), BookingStatus::Cancelled);
        assert!(!cancelled.check_in_open(10_100));
        let missed = Booking {
            no_show_at: at,
            ..b
        };
        assert_eq!(missed.status(), BookingStatus::NoShow);
    }
}
