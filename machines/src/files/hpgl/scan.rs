//! The HP-GL tokenizer: bytes in, instructions out, in constant memory.
//!
//! An instruction is a two-letter mnemonic (either case) and its parameters, numbers
//! separated by commas or blanks. It ends at `;`, or where the next mnemonic starts: plotters
//! accept `PU0,0PD10,10` as well as `PU0,0;PD10,10;` or one instruction per line, so a
//! newline is only a blank. Parameters are handed over one by one as they are read, so a
//! `PD` with a million points costs no more memory than one with two.
//!
//! Two things are not instructions: a label (`LB`), whose text runs to the ETX byte (0x03),
//! and a device-control sequence (`ESC . x ... :`) that some drivers put in front of a job
//! to set the plotter's handshake. Both are skipped and reported.

use std::io::{self, BufRead};

/// Longest number text kept; a longer one is not a number a plotter reads.
const MAX_NUMBER: usize = 24;
/// Longest label or device-control sequence skipped before giving up on finding its end.
const MAX_SKIP: usize = 4096;

/// What the tokenizer hands over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Token {
    /// An instruction starts: its mnemonic in upper case, and the line it is on (1-based).
    Start([u8; 2], u64),
    /// A numeric parameter of the current instruction.
    Param(f64),
    /// A parameter that is not a usable number (too long, not a number, beyond the plotter's
    /// range).
    BadParam,
    /// The current instruction ended.
    End,
    /// A label's text was skipped (`LB...ETX`).
    Label(u64),
    /// A device-control escape sequence was skipped.
    DeviceControl(u64),
    /// A byte that starts nothing HP-GL knows.
    Junk(u8, u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Between,
    First(u8),
    Params,
    Label(usize),
    Escape(usize),
}

/// Reads HP-GL from `r` in blocks and calls `on` for every token. Returns the bytes read.
pub(crate) fn scan<R: BufRead>(mut r: R, on: &mut dyn FnMut(Token)) -> io::Result<u64> {
    let mut s = Scanner::new();
    let mut total = 0u64;
    loop {
        let block = r.fill_buf()?;
        if block.is_empty() {
            break;
        }
        for &b in block {
            s.byte(b, on);
        }
        let n = block.len();
        total += n as u64;
        r.consume(n);
    }
    s.finish(on);
    Ok(total)
}

struct Scanner {
    state: State,
    line: u64,
    number: [u8; MAX_NUMBER],
    len: usize,
    too_long: bool,
}

/// HP-GL/2 coordinates are 32-bit integers in the plotter's own units (±2³⁰ on most).
pub(crate) const MAX_COORDINATE: f64 = 1_073_741_823.0;

impl Scanner {
    fn new() -> Self {
        Scanner {
            state: State::Between,
            line: 1,
            number: [0; MAX_NUMBER],
            len: 0,
            too_long: false,
        }
    }

    fn flush_number(&mut self, on: &mut dyn FnMut(Token)) {
        if self.len == 0 && !self.too_long {
            return;
        }
        let text = std::str::from_utf8(&self.number[..self.len]).ok();
        let value = text.and_then(|t| t.parse::<f64>().ok());
        match value {
            Some(v) if !self.too_long && v.is_finite() && v.abs() <= MAX_COORDINATE => {
                on(Token::Param(v))
            }
            _ => on(Token::BadParam),
        }
        self.len = 0;
        self.too_long = false;
    }

    fn byte(&mut self, b: u8, on: &mut dyn FnMut(Token)) {
        if b == b'\n' {
            self.line += 1;
        }
        match self.state {
            State::Between => self.between(b, on),
            State::First(a) => {
                if b.is_ascii_alphabetic() {
                    let m = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
                    on(Token::Start(m, self.line));
                    self.state = if m == *b"LB" {
                        State::Label(0)
                    } else {
                        State::Params
                    };
                } else {
                    on(Token::Junk(a, self.line));
                    self.state = State::Between;
                    self.between(b, on);
                }
            }
            State::Params => match b {
                b'0'..=b'9' | b'.' => self.push(b),
                b'+' | b'-' => {
                    // A sign starts a new number: `PD10-5` is two parameters.
                    self.flush_number(on);
                    self.push(b);
                }
                b',' | b' ' | b'\t' | b'\r' | b'\n' => self.flush_number(on),
                b';' => {
                    self.flush_number(on);
                    on(Token::End);
                    self.state = State::Between;
                }
                _ => {
                    self.flush_number(on);
                    on(Token::End);
                    self.state = State::Between;
                    self.between(b, on);
                }
            },
            State::Label(n) => {
                if b == 0x03 || n >= MAX_SKIP {
                    on(Token::End);
                    on(Token::Label(self.line));
                    self.state = State::Between;
                } else {
                    self.state = State::Label(n + 1);
                }
            }
            State::Escape(n) => {
                if b == b':' || n >= 64 {
                    on(Token::DeviceControl(self.line));
                    self.state = State::Between;
                } else {
                    self.state = State::Escape(n + 1);
                }
            }
        }
    }

    fn between(&mut self, b: u8, on: &mut dyn FnMut(Token)) {
        match b {
            b if b.is_ascii_alphabetic() => self.state = State::First(b),
            b';' | b',' | b' ' | b'\t' | b'\r' | b'\n' | 0x03 => {}
            0x1b => self.state = State::Escape(0),
            _ => on(Token::Junk(b, self.line)),
        }
    }

    fn push(&mut self, b: u8) {
        if self.len < MAX_NUMBER {
            self.number[self.len] = b;
            self.len += 1;
        } else {
            self.too_long = true;
        }
    }

    fn finish(&mut self, on: &mut dyn FnMut(Token)) {
        match self.state {
            State::Params => {
                self.flush_number(on);
                on(Token::End);
            }
            State::First(a) => on(Token::Junk(a, self.line)),
            State::Label(_) => {
                on(Token::End);
                on(Token::Label(self.line));
            }
            State::Escape(_) => on(Token::DeviceControl(self.line)),
            State::Between => {}
        }
        self.state = State::Between;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &[u8]) -> Vec<Token> {
        let mut out = Vec::new();
        scan(text, &mut |t| out.push(t)).unwrap();
        out
    }

    #[test]
    fn semicolons_newlines_and_run_on_mnemonics_read_alike() {
        let a = tokens(b"IN;PU0,0;PD100,-50;");
        let b = tokens(b"in\npu 0 0\npd100-50\n");
        let c = tokens(b"INPU0,0PD100,-50");
        let strip = |v: Vec<Token>| {
            v.into_iter()
                .map(|t| match t {
                    Token::Start(m, _) => Token::Start(m, 0),
                    t => t,
                })
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (strip(a), strip(b), strip(c));
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(
            a,
            vec![
                Token::Start(*b"IN", 0),
                Token::End,
                Token::Start(*b"PU", 0),
                Token::Param(0.0),
                Token::Param(0.0),
                Token::End,
                Token::Start(*b"PD", 0),
                Token::Param(100.0),
                Token::Param(-50.0),
                Token::End,
            ]
        );
    }

    #[test]
    fn a_label_and_an_escape_sequence_are_skipped_whole() {
        let t = tokens(b"\x1b.@;0:LBHELLO;PD1\x03PU5,5;");
        assert_eq!(t[0], Token::DeviceControl(1));
        assert_eq!(t[1], Token::Start(*b"LB", 1));
        assert_eq!(t[3], Token::Label(1));
        assert_eq!(t[4], Token::Start(*b"PU", 1));
    }

    #[test]
    fn huge_and_malformed_numbers_are_bad_parameters() {
        let t = tokens(b"PD99999999999999999999999999,1.2.3,5000000000;");
        assert_eq!(
            &t[1..4],
            &[Token::BadParam, Token::BadParam, Token::BadParam]
        );
    }
}
