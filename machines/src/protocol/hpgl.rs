//! Sending HP-GL to a vinyl cutter, without I/O: bytes of the file in, chunks for the wire
//! out, the cutter's bytes in, events out, `now` passed in.
//!
//! A cutter says almost nothing: HP-GL flows one way. What it does say is flow control.
//! With XON/XOFF (software handshake) it sends XOFF (0x13) when its buffer is nearly full
//! and XON (0x11) once it has room again; [`Sender`] then holds its next chunk. With RTS/CTS
//! (hardware handshake) the serial port itself holds writes and the cutter sends nothing;
//! both work with the same sender. Chunks are small (64 bytes by default) so that an XOFF
//! stops the flow within one chunk of where the cutter asked.
//!
//! An XOFF read by the program cannot call back what the operating system already holds in
//! its output buffer (kilobytes, all sent after the XOFF whatever we do). So with XON/XOFF
//! the sender also paces its writes at the line's rate ([`Config::pace_baud`]): a chunk
//! goes out only once the previous one has had time to cross the wire, and what is in
//! flight when the cutter says XOFF stays within a chunk or two, inside the slack cutters
//! keep past their XOFF mark. With RTS/CTS the port stops by itself and pacing can be off.
//!
//! The end: once the last byte is written, the sender asks for the actual position (`OA;`,
//! which Roland CAMM-GL and Graphtec's HP-GL mode answer as `x,y,pen` and a carriage
//! return). The cutter answers only when it reaches that instruction, so the answer means
//! every cut before it has been read. A cutter wired one way (no receive line) cannot
//! answer: [`Config::end_query`] off, the job ends when its last byte is written.
//!
//! A cancel drops what is queued and sends `ESC . K` (the HP-GL device-control "abort
//! graphic instruction", which discards what the cutter holds but has not cut) and `PU;`
//! (blade up), whatever the flow control says: leaving the blade down matters more than a
//! byte the cutter may miss.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// XON: the cutter has room again.
pub const XON: u8 = 0x11;
/// XOFF: the cutter's buffer is nearly full.
pub const XOFF: u8 = 0x13;
/// What a cancel sends: abort the buffered graphics, then blade up.
pub const SAFE_STOP: &[u8] = b"\x1b.KPU;";
/// The end-of-job question: output the actual position.
pub const END_QUERY: &[u8] = b"OA;";

/// How to talk to the cutter.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Largest write.
    pub chunk_bytes: usize,
    /// The line's rate, to pace writes at (10 bits a byte, 8N1); `None`: write as fast as
    /// the port takes (hardware flow control).
    pub pace_baud: Option<u32>,
    /// Longest the cutter may hold the flow (XOFF) before the job fails.
    pub silence: Duration,
    /// Ask for the position at the end and wait for the answer (see the module's docs).
    pub end_query: bool,
    /// Longest to wait for that answer: the cutter answers once it has read everything
    /// before it, which may take as long as its buffer takes to cut.
    pub end_timeout: Duration,
    /// Unexpected bytes tolerated before the link counts as garbled (wrong baud rate,
    /// wrong cable).
    pub max_garbage: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chunk_bytes: 64,
            pace_baud: Some(9600),
            silence: Duration::from_secs(30),
            end_query: true,
            end_timeout: Duration::from_secs(120),
            max_garbage: 256,
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// XOFF and no XON within [`Config::silence`].
    NeverResumed,
    /// No answer to the end question within [`Config::end_timeout`].
    Silent,
    /// More unexpected bytes than [`Config::max_garbage`].
    Garbled,
}

/// Languages of the messages.
pub use crate::protocol::grbl::Lang;

impl FailReason {
    /// What happened and what to do, in `lang`.
    pub fn message(self, lang: Lang) -> String {
        match (self, lang) {
            (FailReason::NeverResumed, Lang::Fr) => "Le plotter de découpe a suspendu l'envoi (XOFF) et ne l'a jamais repris. Vérifiez qu'il n'est pas en pause ou à court de média, puis relancez la découpe.".into(),
            (FailReason::NeverResumed, Lang::En) => "The cutter held the flow (XOFF) and never resumed it. Check it is not paused or out of media, then start the cut again.".into(),
            (FailReason::Silent, Lang::Fr) => "Le plotter de découpe ne répond plus. Vérifiez qu'il est allumé, en ligne (« online ») et le câble, puis relancez la découpe.".into(),
            (FailReason::Silent, Lang::En) => "The cutter no longer answers. Check it is on, online and the cable, then start the cut again.".into(),
            (FailReason::Garbled, Lang::Fr) => "Le plotter de découpe envoie des octets incompréhensibles. Vérifiez la vitesse de la liaison (bauds) et le câble.".into(),
            (FailReason::Garbled, Lang::En) => "The cutter sends bytes that make no sense. Check the link's speed (baud) and the cable.".into(),
        }
    }
}

/// What the sender is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Sending,
    /// Everything written, waiting for the answer to the end question.
    Ending,
    Done,
    Failed(FailReason),
    Cancelled,
}

/// What happened, for the driver's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The cutter sent XOFF.
    Held,
    /// The cutter sent XON.
    Resumed,
    /// Bytes that were neither flow control nor an answer.
    Garbage(usize),
    /// The cutter answered the end question: its position, plotter units.
    Finished {
        x: i64,
        y: i64,
    },
    Failed(FailReason),
}

/// One job's bytes on their way to the cutter.
#[derive(Debug)]
pub struct Sender {
    config: Config,
    queue: VecDeque<u8>,
    input_done: bool,
    /// Since when the cutter holds the flow (XOFF).
    held_since: Option<Instant>,
    /// The person paused the job (nothing is sent; the cutter finishes its buffer).
    paused: bool,
    ending_since: Option<Instant>,
    /// Paced writes: not before this.
    next_write: Option<Instant>,
    state: State,
    written: u64,
    garbage: usize,
    answer: Vec<u8>,
    events: Vec<Event>,
}

impl Sender {
    pub fn new(config: Config) -> Self {
        Sender {
            config,
            queue: VecDeque::new(),
            input_done: false,
            held_since: None,
            paused: false,
            ending_since: None,
            next_write: None,
            state: State::Sending,
            written: 0,
            garbage: 0,
            answer: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the cutter holds the flow (XOFF).
    pub fn is_held(&self) -> bool {
        self.held_since.is_some()
    }

    /// Bytes of the file written so far (the end question and a cancel not counted).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// How many more bytes of the file the sender takes now (a few chunks ahead).
    pub fn wants(&self) -> usize {
        if self.input_done || self.state != State::Sending {
            return 0;
        }
        (self.config.chunk_bytes.max(1) * 4).saturating_sub(self.queue.len())
    }

    /// Bytes of the file, in order.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.state == State::Sending && !self.input_done {
            self.queue.extend(bytes);
        }
    }

    /// The file has no more bytes.
    pub fn end_of_input(&mut self) {
        self.input_done = true;
    }

    /// The person holds (`true`) or releases the job.
    pub fn pause(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// The next bytes to write, if any may go now. The caller writes them all (a short
    /// write's rest is its business) and calls [`Sender::wrote`] with what went out.
    pub fn next_chunk(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.state != State::Sending || self.held_since.is_some() || self.paused {
            return None;
        }
        if self.next_write.is_some_and(|t| now < t) {
            return None;
        }
        if self.queue.is_empty() {
            if !self.input_done {
                return None;
            }
            if self.config.end_query {
                self.state = State::Ending;
                self.ending_since = Some(now);
                return Some(END_QUERY.to_vec());
            }
            self.finish(0, 0);
            return None;
        }
        let n = self.config.chunk_bytes.max(1).min(self.queue.len());
        Some(self.queue.drain(..n).collect())
    }

    /// `n` bytes of the last chunk went out at `now` (the end question's are not counted).
    pub fn wrote(&mut self, n: usize, now: Instant) {
        if self.state == State::Sending {
            self.written += n as u64;
        }
        if let Some(baud) = self.config.pace_baud {
            let wire = Duration::from_secs_f64(n as f64 * 10.0 / f64::from(baud.max(1)));
            let from = self.next_write.map_or(now, |t| t.max(now));
            self.next_write = Some(from + wire);
        }
    }

    /// Bytes from the cutter.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        let mut junk = 0;
        for &b in bytes {
            match b {
                XOFF => {
                    if self.held_since.is_none() {
                        self.held_since = Some(now);
                        self.events.push(Event::Held);
                    }
                }
                XON => {
                    if self.held_since.take().is_some() {
                        self.events.push(Event::Resumed);
                    }
                }
                b'\r' | b'\n' if self.state == State::Ending => {
                    let answer = std::mem::take(&mut self.answer);
                    match position(&answer) {
                        Some((x, y)) => self.finish(x, y),
                        None => junk += answer.len(),
                    }
                }
                b'\r' | b'\n' if self.answer.is_empty() => {}
                // An answer is digits, signs, commas and blanks; noise around it is noise.
                b'0'..=b'9' | b'-' | b'+' | b',' | b' '
                    if self.state == State::Ending && self.answer.len() < 64 =>
                {
                    self.answer.push(b);
                }
                _ => junk += 1,
            }
        }
        if junk > 0 {
            self.garbage += junk;
            self.events.push(Event::Garbage(junk));
            if self.garbage > self.config.max_garbage && self.is_running() {
                self.fail(FailReason::Garbled);
            }
        }
    }

    /// Time passes: a hold or a wait for the end that lasts too long fails the job.
    pub fn tick(&mut self, now: Instant) {
        if !self.is_running() {
            return;
        }
        if let Some(t) = self.held_since
            && now.saturating_duration_since(t) >= self.config.silence
        {
            self.fail(FailReason::NeverResumed);
        } else if let Some(t) = self.ending_since
            && self.state == State::Ending
            && now.saturating_duration_since(t) >= self.config.end_timeout
        {
            self.fail(FailReason::Silent);
        }
    }

    /// When [`Sender::tick`] next has something to decide, or the next paced write may go.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.is_running() {
            return None;
        }
        let paced = self
            .next_write
            .filter(|_| self.state == State::Sending && self.held_since.is_none());
        let held = self.held_since.map(|t| t + self.config.silence).or(paced);
        let ending = self
            .ending_since
            .filter(|_| self.state == State::Ending)
            .map(|t| t + self.config.end_timeout);
        match (held, ending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stops the job: what to write at once to leave the cutter safe.
    pub fn cancel(&mut self) -> &'static [u8] {
        self.queue.clear();
        if self.is_running() {
            self.state = State::Cancelled;
        }
        SAFE_STOP
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn is_running(&self) -> bool {
        matches!(self.state, State::Sending | State::Ending)
    }

    fn finish(&mut self, x: i64, y: i64) {
        self.state = State::Done;
        self.events.push(Event::Finished { x, y });
    }

    fn fail(&mut self, reason: FailReason) {
        self.state = State::Failed(reason);
        self.queue.clear();
        self.events.push(Event::Failed(reason));
    }
}

/// `x,y,pen` (what `OA` answers), blanks allowed.
fn position(answer: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(answer).ok()?;
    let mut parts = text.split(',').map(|p| p.trim().parse::<i64>());
    let (x, y, pen) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    pen.ok()?;
    Some((x.ok()?, y.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &mut Sender, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = s.next_chunk(now) {
            s.wrote(c.len(), now);
            out.extend(c);
        }
        out
    }

    #[test]
    fn a_job_goes_out_in_chunks_then_asks_where_the_blade_is() {
        let t = Instant::now();
        let mut s = Sender::new(Config {
            chunk_bytes: 4,
            pace_baud: None,
            ..Config::default()
        });
        assert_eq!(s.wants(), 16);
        s.feed(b"IN;PU0,0;PD10,10;");
        s.end_of_input();
        let c = s.next_chunk(t).unwrap();
        assert_eq!(c, b"IN;P");
        s.wrote(4, t);
        let rest = all(&mut s, t);
        assert!(rest.ends_with(b"OA;"));
        assert_eq!(s.state(), State::Ending);
        s.receive(b"10,", t);
        s.receive(b"10,1\r\n", t);
        assert_eq!(s.state(), State::Done);
        assert_eq!(s.take_events(), vec![Event::Finished { x: 10, y: 10 }]);
        assert_eq!(s.written(), 17);
    }

    #[test]
    fn xoff_holds_the_next_chunk_until_xon() {
        let t = Instant::now();
        let mut s = Sender::new(Config::default());
        s.feed(b"PD1,1;");
        s.receive(&[XOFF], t);
        assert!(s.next_chunk(t).is_none());
        s.receive(&[XON], t);
        assert_eq!(s.next_chunk(t).unwrap(), b"PD1,1;");
        assert_eq!(s.take_events(), vec![Event::Held, Event::Resumed]);
    }

    #[test]
    fn a_hold_past_the_silence_fails_and_so_does_no_answer_at_the_end() {
        let t = Instant::now();
        let mut s = Sender::new(Config::default());
        s.receive(&[XOFF], t);
        assert_eq!(s.deadline(), Some(t + Duration::from_secs(30)));
        s.tick(t + Duration::from_secs(29));
        assert_eq!(s.state(), State::Sending);
        s.tick(t + Duration::from_secs(30));
        assert_eq!(s.state(), State::Failed(FailReason::NeverResumed));

        let mut s = Sender::new(Config::default());
        s.end_of_input();
        assert_eq!(s.next_chunk(t).unwrap(), END_QUERY);
        s.tick(t + Duration::from_secs(121));
        assert_eq!(s.state(), State::Failed(FailReason::Silent));
    }

    #[test]
    fn writes_are_paced_at_the_lines_rate() {
        let t = Instant::now();
        let mut s = Sender::new(Config {
            chunk_bytes: 96,
            pace_baud: Some(9600),
            ..Config::default()
        });
        s.feed(&[b'P'; 200]);
        let c = s.next_chunk(t).unwrap();
        s.wrote(c.len(), t);
        // 96 bytes at 960 bytes/s: 100 ms on the wire.
        assert!(s.next_chunk(t + Duration::from_millis(99)).is_none());
        assert_eq!(s.deadline(), Some(t + Duration::from_millis(100)));
        assert!(s.next_chunk(t + Duration::from_millis(100)).is_some());
    }

    #[test]
    fn garbage_is_tolerated_up_to_a_point() {
        let t = Instant::now();
        let mut s = Sender::new(Config::default());
        s.receive(b"\xfe\xfe", t);
        assert_eq!(s.take_events(), vec![Event::Garbage(2)]);
        assert_eq!(s.state(), State::Sending);
        s.receive(&[0xaa; 300], t);
        assert_eq!(s.state(), State::Failed(FailReason::Garbled));
    }

    #[test]
    fn without_the_end_question_the_job_ends_with_its_last_byte() {
        let t = Instant::now();
        let mut s = Sender::new(Config {
            end_query: false,
            pace_baud: None,
            ..Config::default()
        });
        s.feed(b"PU;");
        s.end_of_input();
        assert_eq!(all(&mut s, t), b"PU;");
        assert_eq!(s.state(), State::Done);
    }

    #[test]
    fn a_cancel_drops_the_queue_and_lifts_the_blade() {
        let t = Instant::now();
        let mut s = Sender::new(Config::default());
        s.feed(b"PD100,100,200,200;");
        s.receive(&[XOFF], t);
        assert_eq!(s.cancel(), b"\x1b.KPU;");
        assert_eq!(s.state(), State::Cancelled);
        s.receive(&[XON], t);
        assert!(s.next_chunk(t).is_none());
    }
}
