//! GRBL 1.1 (and 0.9) over a serial link, without I/O: bytes in, writes and events out, with
//! the time passed in.
//!
//! GRBL acknowledges every line it takes from its 128-byte receive buffer with `ok` or
//! `error:N`, in order (gnea/grbl `doc/markdown/interface.md`). A host that waits for each
//! reply before the next line ("send-response") starves the planner on the short segments of
//! a laser engraving; the "character counting" mode keeps the receive buffer full instead:
//! the host sums the bytes of the lines not yet acknowledged, newline included, never lets
//! the sum pass the buffer size, and frees the oldest line's count on each reply. That is
//! what [`CharCounter`] does. Real-time bytes (`?`, `!`, `~`, Ctrl-X, overrides) are picked
//! off by GRBL as they arrive and never enter the buffer, so they are never counted.
//!
//! Laser safety lives here too, where it can be tested without a machine: a cut starts only
//! with a [`PersonAtMachine`], with laser mode on (`$32=1`), every `S` at most `$30` and
//! every position inside the work area and `$130`/`$131`; any error, alarm, unexpected reset,
//! lost link or cancel stops the job with a feed hold and then a soft reset, which turns the
//! laser off.
//!
//! # Layout
//!
//! One file per part, everything re-exported here:
//!
//! - [`codes`]: every `error:N` and `ALARM:N` explained in French and English.
//! - `realtime.rs`: [`Realtime`], the bytes GRBL acts on as they arrive.
//! - `program.rs`: [`clean_line`] and [`parse_words`] (one line of G-code), [`Program`] (a job
//!   file made ready to stream), [`Extent`] (where it goes, how hard it fires, the coolant
//!   it asks for), and a mill's file split at its tool changes ([`Segment`]).
//! - `replies.rs`: [`parse_response`] (one line from GRBL), [`parse_status`],
//!   [`parse_banner`], [`parse_setting`], [`Settings`].
//! - `counter.rs`: [`CharCounter`], the receive-buffer accounting.
//! - `safety.rs`: [`PersonAtMachine`], [`Refusal`] and the checks before a cut
//!   ([`check_job`]: a laser's or a mill's).
//! - `session.rs`: [`Session`]: start-up, settings, status polling, jobs, dry runs, pause,
//!   cancel.
//! - `tests.rs`: the unit tests of all of them.

pub mod codes;

pub use codes::{CodeInfo, CodeKind, Lang};

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// GRBL's serial receive buffer (`RX_BUFFER_SIZE` in `grbl/serial.h`).
pub const DEFAULT_RX_BUFFER: usize = 128;
/// GRBL's line buffer (`LINE_BUFFER_SIZE` in `grbl/protocol.h`): longer lines are refused
/// with `error:11`, so a file line must fit in 79 characters.
pub const MAX_LINE_CHARS: usize = 79;

mod counter;
mod program;
mod realtime;
mod replies;
mod safety;
mod session;

pub use counter::*;
pub use program::*;
pub use realtime::*;
pub use replies::*;
pub use safety::*;
pub use session::*;

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests stand in for the person at the machine
mod tests;
