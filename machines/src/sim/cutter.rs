//! A virtual vinyl cutter speaking HP-GL, for tests and demos without a machine.
//!
//! It behaves as a roll cutter does where a host can tell: a small receive buffer that sends
//! XOFF when it is nearly full and XON once drained, bytes past a full buffer lost,
//! instructions taken from the buffer at a set pace (the time the blade takes), `OA`
//! answered with the position and the pen as `x,y,pen` and a carriage return, and the
//! device-control `ESC . K` obeyed on arrival (the buffer dropped). Every instruction it
//! took is recorded, in order, so a test can check what it cut.
//!
//! Simplifications: an instruction ends at `;` or a newline (what Fabrique and most
//! drivers write), only `IN`, `PU`, `PD`, `PA`, `PR` and `OA` change or report its
//! state, and a byte takes the same time whatever it draws.
//!
//! # Layout
//!
//! - [`SimConfig`] and [`Faults`]: what to simulate.
//! - [`VirtualCutter`]: the cutter without I/O (bytes in, bytes out, time passed in).
//! - [`serve`]: runs it over any byte stream, such as the master side of a
//!   [`crate::sim::grbl::PtyLink`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::protocol::hpgl::{XOFF, XON};

/// Faults to inject.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// After this many bytes received, take nothing more and answer nothing (a cutter
    /// switched offline, or frozen).
    pub silent_after_bytes: Option<usize>,
    /// Send XOFF as usual but never XON.
    pub never_xon: bool,
    /// Lose every n-th byte received (a noisy line).
    pub drop_every: Option<usize>,
    /// After every n bytes taken, send these bytes (noise, a wrong baud rate).
    pub garbage_every: Option<(usize, Vec<u8>)>,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Receive buffer, bytes.
    pub buffer: usize,
    /// XOFF once the buffer holds this many bytes.
    pub xoff_at: usize,
    /// XON once it is back down to this many.
    pub xon_at: usize,
    /// Time to take one byte from the buffer (the blade's work, spread).
    pub byte_time: Duration,
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            buffer: 1024,
            xoff_at: 768,
            xon_at: 256,
            byte_time: Duration::from_micros(50),
            faults: Faults::default(),
        }
    }
}

/// Something the cutter did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An instruction taken, without its terminator (`PD100,100`).
    Instruction(String),
    /// `ESC . x` obeyed (`x` is the letter).
    DeviceControl(char),
    Xoff,
    Xon,
    /// Bytes lost to a full buffer.
    Overflow(usize),
}

/// The cutter without I/O.
#[derive(Debug)]
pub struct VirtualCutter {
    config: SimConfig,
    buffer: VecDeque<u8>,
    current: Vec<u8>,
    output: Vec<u8>,
    records: Vec<Record>,
    received: usize,
    taken: usize,
    held: bool,
    /// Bytes that arrived while the cutter held the flow.
    arrived_while_held: usize,
    /// When the flow was held, and what arrived since: (time after the XOFF, bytes).
    held_since: Option<Instant>,
    arrivals_while_held: Vec<(Duration, usize)>,
    escape: Option<Vec<u8>>,
    pos: (i64, i64),
    down: bool,
    relative: bool,
    next_take: Option<Instant>,
}

impl VirtualCutter {
    pub fn new(config: SimConfig) -> Self {
        VirtualCutter {
            config,
            buffer: VecDeque::new(),
            current: Vec::new(),
            output: Vec::new(),
            records: Vec::new(),
            received: 0,
            taken: 0,
            held: false,
            arrived_while_held: 0,
            held_since: None,
            arrivals_while_held: Vec::new(),
            escape: None,
            pos: (0, 0),
            down: false,
            relative: false,
            next_take: None,
        }
    }

    /// Everything it did, in order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The instructions it took, in order.
    pub fn instructions(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Instruction(i) => Some(i.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether the blade is down.
    pub fn blade_down(&self) -> bool {
        self.down
    }

    /// Where the blade is, plotter units.
    pub fn position(&self) -> (i64, i64) {
        self.pos
    }

    /// Bytes that arrived while it held the flow (XOFF sent, XON not yet).
    pub fn arrived_while_held(&self) -> usize {
        self.arrived_while_held
    }

    /// What arrived while it held the flow, each batch with how long after its XOFF (the
    /// first 1000 batches).
    pub fn arrivals_while_held(&self) -> &[(Duration, usize)] {
        &self.arrivals_while_held
    }

    /// Bytes received from the host.
    pub fn received(&self) -> usize {
        self.received
    }

    fn silent(&self) -> bool {
        self.config
            .faults
            .silent_after_bytes
            .is_some_and(|n| self.received >= n)
    }

    /// Bytes from the host.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if let Some(t) = self.held_since
            && self.arrivals_while_held.len() < 1000
            && !self.silent()
        {
            self.arrivals_while_held
                .push((now.saturating_duration_since(t), bytes.len()));
        }
        let mut lost = 0;
        for &b in bytes {
            if self.silent() {
                return;
            }
            self.received += 1;
            if self
                .config
                .faults
                .drop_every
                .is_some_and(|n| n > 0 && self.received.is_multiple_of(n))
            {
                continue;
            }
            if self.held {
                self.arrived_while_held += 1;
            }
            // Device control is obeyed as it arrives, never buffered.
            if let Some(esc) = &mut self.escape {
                esc.push(b);
                if esc.len() == 2 {
                    let letter = char::from(b);
                    self.escape = None;
                    self.records.push(Record::DeviceControl(letter));
                    if letter == 'K' {
                        self.buffer.clear();
                        self.current.clear();
                    }
                }
                continue;
            }
            if b == 0x1b {
                self.escape = Some(Vec::new());
                continue;
            }
            if self.buffer.len() >= self.config.buffer {
                lost += 1;
                continue;
            }
            self.buffer.push_back(b);
        }
        if lost > 0 {
            self.records.push(Record::Overflow(lost));
        }
        if !self.held && self.buffer.len() >= self.config.xoff_at {
            self.held = true;
            self.held_since = Some(now);
            self.output.push(XOFF);
            self.records.push(Record::Xoff);
        }
        if self.next_take.is_none() && !self.buffer.is_empty() {
            self.next_take = Some(now + self.config.byte_time);
        }
    }

    /// Time passes: bytes are taken from the buffer at the configured pace.
    pub fn tick(&mut self, now: Instant) {
        if self.silent() {
            return;
        }
        while let Some(t) = self.next_take.filter(|t| *t <= now) {
            let Some(b) = self.buffer.pop_front() else {
                self.next_take = None;
                break;
            };
            self.take(b);
            self.next_take = (!self.buffer.is_empty()).then(|| t + self.config.byte_time);
        }
        if self.held && self.buffer.len() <= self.config.xon_at && !self.config.faults.never_xon {
            self.held = false;
            self.held_since = None;
            self.output.push(XON);
            self.records.push(Record::Xon);
        }
    }

    /// When [`VirtualCutter::tick`] next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.silent() { None } else { self.next_take }
    }

    /// Bytes for the host.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    fn take(&mut self, b: u8) {
        self.taken += 1;
        if let Some((n, junk)) = &self.config.faults.garbage_every
            && *n > 0
            && self.taken.is_multiple_of(*n)
        {
            self.output.extend_from_slice(junk);
        }
        if b == b';' || b == b'\n' {
            let text = String::from_utf8_lossy(&self.current).trim().to_string();
            self.current.clear();
            if !text.is_empty() {
                self.run(&text);
                self.records.push(Record::Instruction(text));
            }
        } else if self.current.len() < 1 << 16 {
            self.current.push(b);
        }
    }

    fn run(&mut self, text: &str) {
        let upper = text.to_ascii_uppercase();
        let (name, params) = upper.split_at(upper.len().min(2));
        let numbers: Vec<i64> = params
            .split([',', ' '])
            .filter_map(|p| p.trim().parse::<f64>().ok())
            .map(|v| v as i64)
            .collect();
        let moves = |me: &mut Self| {
            for pair in numbers.chunks_exact(2) {
                me.pos = if me.relative {
                    (
                        me.pos.0.saturating_add(pair[0]),
                        me.pos.1.saturating_add(pair[1]),
                    )
                } else {
                    (pair[0], pair[1])
                };
            }
        };
        match name {
            "IN" => {
                self.down = false;
                self.relative = false;
            }
            "PU" => {
                self.down = false;
                moves(self);
            }
            "PD" => {
                self.down = true;
                moves(self);
            }
            "PA" => {
                self.relative = false;
                moves(self);
            }
            "PR" => {
                self.relative = true;
                moves(self);
            }
            "OA" => {
                let answer = format!("{},{},{}\r", self.pos.0, self.pos.1, u8::from(self.down));
                self.output.extend_from_slice(answer.as_bytes());
            }
            _ => {}
        }
    }
}

fn std_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs `cutter` over `io` until `stop` is cancelled or the host closes the link; returns
/// it for inspection. Timing uses tokio's clock.
pub async fn serve<S>(io: S, mut cutter: VirtualCutter, stop: CancellationToken) -> VirtualCutter
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    // Read as a UART's FIFO or a USB packet delivers: a few bytes at a time, so that an
    // XOFF goes out as soon as the buffer crosses its mark, not after a whole pipe's worth.
    let mut buf = vec![0u8; 64];
    loop {
        let now = std_now();
        cutter.tick(now);
        let out = cutter.take_output();
        if !out.is_empty() && (wr.write_all(&out).await.is_err() || wr.flush().await.is_err()) {
            return cutter;
        }
        let sleep_to = cutter.next_deadline().map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        tokio::select! {
            // Stop when asked.
            () = stop.cancelled() => return cutter,
            // The next byte to take from the buffer.
            () = tokio::time::sleep_until(sleep_to) => {}
            // Bytes from the host fill the buffer (and may raise XOFF).
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return cutter,
                Ok(n) => cutter.receive(&buf[..n], std_now()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nearly_full_buffer_sends_xoff_and_a_drained_one_xon() {
        let mut c = VirtualCutter::new(SimConfig {
            buffer: 32,
            xoff_at: 24,
            xon_at: 8,
            byte_time: Duration::from_millis(1),
            ..SimConfig::default()
        });
        let t = Instant::now();
        c.receive(b"PU0,0;PD100,100;PD200,200;PU300,300;", t);
        assert_eq!(c.take_output(), vec![XOFF]);
        assert!(c.records().contains(&Record::Overflow(4)));
        c.tick(t + Duration::from_millis(30));
        assert_eq!(c.take_output(), vec![XON]);
        assert_eq!(c.instructions(), ["PU0,0", "PD100,100", "PD200,200"]);
        assert_eq!(c.position(), (200, 200));
        assert!(c.blade_down());
    }

    #[test]
    fn escape_k_drops_the_buffer_and_oa_answers_the_position() {
        let mut c = VirtualCutter::new(SimConfig::default());
        let t = Instant::now();
        c.receive(b"PD40,40;PD500,500;", t);
        c.receive(b"\x1b.KPU;OA;", t);
        c.tick(t + Duration::from_secs(1));
        assert_eq!(c.instructions(), ["PU", "OA"]);
        assert_eq!(c.take_output(), b"0,0,0\r");
        assert!(!c.blade_down());
    }
}
