//! Real-time commands: the bytes GRBL picks off as they arrive.

/// A real-time command: one byte, no newline, acted on at once and never counted
/// (`doc/markdown/commands.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realtime {
    /// `?`: ask for a status report.
    StatusQuery,
    /// `!`: feed hold; in laser mode the laser is off while held.
    FeedHold,
    /// `~`: cycle start / resume.
    CycleStart,
    /// Ctrl-X (0x18): soft reset; stops everything, laser off, clears the buffers.
    SoftReset,
    /// 0x84: safety door.
    SafetyDoor,
    /// 0x85: cancel a jog.
    JogCancel,
    /// 0x90: feed override back to 100 %.
    FeedReset,
    /// 0x91: feed override +10 %.
    FeedPlus10,
    /// 0x92: feed override -10 %.
    FeedMinus10,
    /// 0x93: feed override +1 %.
    FeedPlus1,
    /// 0x94: feed override -1 %.
    FeedMinus1,
    /// 0x95: rapid override 100 %.
    RapidFull,
    /// 0x96: rapid override 50 %.
    RapidHalf,
    /// 0x97: rapid override 25 %.
    RapidQuarter,
    /// 0x99: spindle (laser power) override back to 100 %.
    PowerReset,
    /// 0x9A: power override +10 %.
    PowerPlus10,
    /// 0x9B: power override -10 %.
    PowerMinus10,
    /// 0x9C: power override +1 %.
    PowerPlus1,
    /// 0x9D: power override -1 %.
    PowerMinus1,
    /// 0x9E: spindle (laser) stop, only honoured in a hold.
    SpindleStop,
}

const REALTIME_BYTES: [(Realtime, u8); 20] = [
    (Realtime::StatusQuery, b'?'),
    (Realtime::FeedHold, b'!'),
    (Realtime::CycleStart, b'~'),
    (Realtime::SoftReset, 0x18),
    (Realtime::SafetyDoor, 0x84),
    (Realtime::JogCancel, 0x85),
    (Realtime::FeedReset, 0x90),
    (Realtime::FeedPlus10, 0x91),
    (Realtime::FeedMinus10, 0x92),
    (Realtime::FeedPlus1, 0x93),
    (Realtime::FeedMinus1, 0x94),
    (Realtime::RapidFull, 0x95),
    (Realtime::RapidHalf, 0x96),
    (Realtime::RapidQuarter, 0x97),
    (Realtime::PowerReset, 0x99),
    (Realtime::PowerPlus10, 0x9A),
    (Realtime::PowerMinus10, 0x9B),
    (Realtime::PowerPlus1, 0x9C),
    (Realtime::PowerMinus1, 0x9D),
    (Realtime::SpindleStop, 0x9E),
];

impl Realtime {
    /// The byte sent on the wire.
    pub fn byte(self) -> u8 {
        REALTIME_BYTES
            .iter()
            .find(|(r, _)| *r == self)
            .map_or(b'?', |(_, b)| *b)
    }

    /// The command a byte stands for, if it is a real-time byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        REALTIME_BYTES
            .iter()
            .find(|(_, b)| *b == byte)
            .map(|(r, _)| *r)
    }
}
