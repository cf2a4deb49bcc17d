//! A booking of a machine slot, or a block (maintenance, a group workshop) set by a manager.

use super::{MachineId, UserId, text_enum};
use jiff::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct BookingId(pub i64);

text_enum! {
    BookingKind { Booking = "booking", Block = "block" }
}

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
}
