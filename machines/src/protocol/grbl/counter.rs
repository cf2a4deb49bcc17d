//! Character counting: the receive-buffer accounting.

use super::*;

/// How lines are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// Keep the receive buffer full: the GRBL-recommended mode for jobs.
    CharCounting,
    /// One line at a time, each waiting for its reply: slow, kept for comparison and for
    /// firmware with unknown buffers.
    SendResponse,
}

/// Receive-buffer accounting: which lines are in GRBL's buffer, and whether another fits.
///
/// Each entry holds a line's byte count, newline included. A reply frees the oldest entry:
/// GRBL answers strictly in order. A line that writes EEPROM ([`is_eeprom_write`]) is sent
/// only into an empty buffer and nothing follows it until its reply.
#[derive(Debug, Clone)]
pub struct CharCounter<T> {
    capacity: usize,
    mode: StreamMode,
    in_flight: VecDeque<(T, usize, bool)>,
    bytes: usize,
}

impl<T> CharCounter<T> {
    /// A counter for a buffer of `capacity` bytes.
    pub fn new(capacity: usize, mode: StreamMode) -> Self {
        CharCounter {
            capacity,
            mode,
            in_flight: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Whether a line of `len` bytes (newline included) may be sent now.
    pub fn can_send(&self, len: usize, sync: bool) -> bool {
        if self.in_flight.back().is_some_and(|(_, _, s)| *s) {
            return false;
        }
        if sync || self.mode == StreamMode::SendResponse {
            return self.in_flight.is_empty();
        }
        self.bytes + len <= self.capacity
    }

    /// Records a line of `len` bytes as sent.
    pub fn sent(&mut self, tag: T, len: usize, sync: bool) {
        self.bytes += len;
        self.in_flight.push_back((tag, len, sync));
    }

    /// Frees the oldest line on a reply and returns its tag; `None` when nothing was in
    /// flight (a reply nobody asked for).
    pub fn acked(&mut self) -> Option<T> {
        let (tag, len, _) = self.in_flight.pop_front()?;
        self.bytes -= len;
        Some(tag)
    }

    /// Forgets every line (GRBL cleared its buffer in a reset), oldest first.
    pub fn clear(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.in_flight.drain(..).map(|(t, _, _)| t).collect()
    }

    /// Bytes in GRBL's buffer by this count.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lines awaiting a reply.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether nothing awaits a reply.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}
