//! The byte-level scanner: lines out of a reader in a fixed buffer, words out of a line.
//!
//! Nothing here allocates per line. A line is a slice of the read buffer; its words land
//! in one reused [`Words`] table (a value per letter, plus the G and M codes of the line).
//! Numbers are read by hand into `f64` (no exponent: in G-code `X1E5` is two words).

use std::io::{self, Read};

/// Longest line kept whole. G-code lines are short (thumbnail lines are 78 bytes); a longer
/// "line" is cut there and reported, and the rest of it is skipped without being stored.
pub(crate) const MAX_LINE: usize = 16 * 1024;
const BUFFER: usize = 256 * 1024;
/// The largest value a word may have. No measurement in G-code comes near it (a kilometre
/// is 10⁶ mm, a week of dwell 6·10⁸ ms), and beyond it a move's squared length overflows
/// to infinity (found by fuzzing: `X` and 155 digits made a laser path of `inf`, which is
/// `null` in the stored JSON and cannot be read back). Such a line is not readable G-code.
pub(crate) const MAX_VALUE: f64 = 1e12;

/// Lines out of any reader, in constant memory.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// A line longer than [`MAX_LINE`] was cut: skip up to its newline.
    skipping: bool,
    /// Bytes read so far (for figures).
    pub(crate) bytes: u64,
}

/// One line and whether it was cut because it was too long.
pub(crate) struct RawLine<'a> {
    pub(crate) text: &'a [u8],
    pub(crate) cut: bool,
}

impl<R: Read> LineReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            eof: false,
            skipping: false,
            bytes: 0,
        }
    }

    /// The next line without its `\n` (and `\r`), or `None` at the end.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<RawLine<'_>>> {
        loop {
            if let Some(i) = find_newline(&self.buf[self.start..self.end]) {
                let from = self.start;
                self.start += i + 1;
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                if i > MAX_LINE {
                    return Ok(Some(RawLine {
                        text: &self.buf[from..from + MAX_LINE],
                        cut: true,
                    }));
                }
                return Ok(Some(RawLine {
                    text: trim_cr(&self.buf[from..from + i]),
                    cut: false,
                }));
            }
            let pending = self.end - self.start;
            if self.skipping {
                self.start = self.end;
            } else if pending > MAX_LINE {
                // An overlong line: hand out its head once, drop the rest up to the newline.
                // More than MAX_LINE bytes with no newline, as above: a line of exactly
                // MAX_LINE is whole, whether or not its newline came with it (found by
                // fuzzing: it was cut when the reader's pieces ended right after it).
                let from = self.start;
                self.start = self.end;
                self.skipping = true;
                return Ok(Some(RawLine {
                    text: &self.buf[from..from + MAX_LINE],
                    cut: true,
                }));
            }
            if self.eof {
                if self.start < self.end && !self.skipping {
                    let from = self.start;
                    self.start = self.end;
                    return Ok(Some(RawLine {
                        text: trim_cr(&self.buf[from..self.end]),
                        cut: false,
                    }));
                }
                return Ok(None);
            }
            // Keep the partial line at the front and fill the rest of the buffer.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
            self.bytes += n as u64;
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    }
}

/// Position of the first `\n`, eight bytes at a time (the classic "has zero byte" trick on
/// `word ^ 0x0a0a...`), so that finding lines costs little beside reading them.
fn find_newline(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut chunks = hay.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NL;
        if (x.wrapping_sub(LO) & !x & HI) != 0 {
            return chunk.iter().position(|&b| b == b'\n').map(|i| offset + i);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| offset + i)
}

/// A G or M code as ten times its number: `G1` is 10, `G38.2` is 382, `M104` is 1040.
pub(crate) type Code = u32;

/// What a line holds once scanned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind<'a> {
    /// Nothing but blanks or a comment.
    Empty,
    /// Ordinary words (`G1 X10 E2`); see [`Words`].
    Words,
    /// A Klipper extended command (`PRINT_START BED=60`): its name and its arguments.
    Extended { name: &'a [u8], args: &'a [u8] },
    /// A GRBL system line (`$H`, `$32=0`, `$J=...`), without the `$`.
    System(&'a [u8]),
    /// A command whose arguments are free text (`M117 Hello`, `M23 file.gco`).
    Text(Code),
    /// Not G-code; the byte offset where reading gave up.
    Bad(usize),
}

/// The words of one line: a value per letter and the G/M codes, reused from line to line.
pub(crate) struct Words {
    present: u32,
    bare: u32,
    values: [f64; 26],
    pub(crate) g: [Code; 4],
    pub(crate) g_len: usize,
    pub(crate) m: [Code; 4],
    pub(crate) m_len: usize,
}

impl Words {
    pub(crate) fn new() -> Self {
        Self {
            present: 0,
            bare: 0,
            values: [0.0; 26],
            g: [0; 4],
            g_len: 0,
            m: [0; 4],
            m_len: 0,
        }
    }

    fn clear(&mut self) {
        self.present = 0;
        self.bare = 0;
        self.g_len = 0;
        self.m_len = 0;
    }

    /// The number after `letter` (upper case), if the letter is there with a number.
    #[inline]
    pub(crate) fn get(&self, letter: u8) -> Option<f64> {
        let bit = 1u32 << (letter - b'A');
        (self.present & bit != 0).then(|| self.values[usize::from(letter - b'A')])
    }

    /// Whether `letter` is on the line, with or without a number (`G28 X`).
    #[inline]
    pub(crate) fn has(&self, letter: u8) -> bool {
        let bit = 1u32 << (letter - b'A');
        (self.present | self.bare) & bit != 0
    }

    /// Whether any of the axis letters X Y Z (or E) carries a number.
    #[inline]
    pub(crate) fn has_any(&self, letters: &[u8]) -> bool {
        letters
            .iter()
            .any(|&l| self.present & (1u32 << (l - b'A')) != 0)
    }

    pub(crate) fn g_codes(&self) -> &[Code] {
        &self.g[..self.g_len]
    }

    pub(crate) fn m_codes(&self) -> &[Code] {
        &self.m[..self.m_len]
    }
}

/// M codes whose rest of line is free text, not words (Marlin: display messages, host
/// prompts and SD-card file names).
fn is_text_command(code: Code) -> bool {
    matches!(
        code,
        1170 | 1180 | 230 | 280 | 290 | 300 | 320 | 330 | 9280 | 8760
    )
}

/// Scans `line` into `words` and tells what kind of line it is, with the comment after `;`
/// (its text without the `;`) when there is one.
pub(crate) fn scan<'a>(line: &'a [u8], words: &mut Words) -> (Kind<'a>, Option<&'a [u8]>) {
    words.clear();
    let len = line.len();
    let mut i = skip_blanks(line, 0);
    if i >= len {
        return (Kind::Empty, None);
    }
    match line[i] {
        b';' => return (Kind::Empty, Some(&line[i + 1..])),
        b'$' => {
            let (body, comment) = split_comment(&line[i + 1..]);
            return (Kind::System(trim_end(body)), comment);
        }
        b'%' => return (Kind::Empty, None),
        _ => {}
    }
    // Prusa's MMU tool words `Tx`, `Tc` and `T?` (the firmware picks the tool).
    if (line[i] == b'T' || line[i] == b't')
        && matches!(line.get(i + 1), Some(b'x' | b'c' | b'?'))
        && line
            .get(i + 2)
            .is_none_or(|b| matches!(b, b' ' | b'\t' | b';'))
    {
        let (_, comment) = split_comment(&line[i..]);
        return (Kind::Text(0), comment);
    }
    // A Klipper-style extended command: an identifier of two or more letters.
    if line[i].is_ascii_alphabetic()
        && i + 1 < len
        && (line[i + 1].is_ascii_alphabetic() || line[i + 1] == b'_')
    {
        let from = i;
        let mut j = i;
        while j < len && (line[j].is_ascii_alphanumeric() || line[j] == b'_') {
            j += 1;
        }
        let name = &line[from..j];
        let (rest, comment) = split_comment(&line[j..]);
        let args = trim_end(rest);
        let has_underscore = name.contains(&b'_');
        let upper = name.iter().all(|b| !b.is_ascii_lowercase());
        let args_are_pairs = args
            .split(|b| *b == b' ' || *b == b'\t')
            .filter(|a| !a.is_empty())
            .all(|a| a.contains(&b'='));
        if has_underscore || (upper && name.len() >= 3 && args_are_pairs) {
            return (Kind::Extended { name, args }, comment);
        }
        return (Kind::Bad(from), comment);
    }
    let mut any = false;
    while i < len {
        let c = line[i];
        match c {
            b' ' | b'\t' => {
                i += 1;
                continue;
            }
            b';' => return (finish(any), Some(&line[i + 1..])),
            b'*' => return (finish(any), None),
            b'(' => {
                // RS274 comment: up to the closing parenthesis.
                match line[i..].iter().position(|&b| b == b')') {
                    Some(k) => i += k + 1,
                    None => return (finish(any), None),
                }
                continue;
            }
            _ => {}
        }
        if !c.is_ascii_alphabetic() {
            return (Kind::Bad(i), None);
        }
        let letter = c.to_ascii_uppercase();
        i = skip_blanks(line, i + 1);
        let starts_number = i < len && matches!(line[i], b'0'..=b'9' | b'-' | b'+' | b'.');
        if !starts_number {
            words.bare |= 1 << (letter - b'A');
            any = true;
            continue;
        }
        let Some((value, next)) = parse_number(line, i) else {
            return (Kind::Bad(i), None);
        };
        if value.is_nan() || value.abs() > MAX_VALUE {
            return (Kind::Bad(i), None);
        }
        // A number must end at a word boundary: `X1.2.3` or `X1,5` is not G-code.
        if next < len
            && !matches!(line[next], b' ' | b'\t' | b';' | b'(' | b'*')
            && !line[next].is_ascii_alphabetic()
        {
            return (Kind::Bad(next), None);
        }
        i = next;
        any = true;
        match letter {
            b'G' | b'M' => {
                let Some(code) = to_code(value) else {
                    return (Kind::Bad(i), None);
                };
                if letter == b'G' {
                    if words.g_len < words.g.len() {
                        words.g[words.g_len] = code;
                        words.g_len += 1;
                    }
                } else {
                    if words.m_len < words.m.len() {
                        words.m[words.m_len] = code;
                        words.m_len += 1;
                    }
                    if words.g_len == 0 && words.m_len == 1 && is_text_command(code) {
                        let (_, comment) = split_comment(&line[i..]);
                        return (Kind::Text(code), comment);
                    }
                }
            }
            _ => {
                let k = usize::from(letter - b'A');
                words.values[k] = value;
                words.present |= 1 << k;
            }
        }
    }
    (finish(any), None)
}

fn finish<'a>(any: bool) -> Kind<'a> {
    if any { Kind::Words } else { Kind::Empty }
}

fn to_code(value: f64) -> Option<Code> {
    if !(0.0..100_000.0).contains(&value) {
        return None;
    }
    // Ten times, rounded: G38.2 is 382. The cast is in range (checked above).
    Some((value * 10.0 + 0.5) as Code)
}

fn skip_blanks(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
        i += 1;
    }
    i
}

fn trim_end(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && matches!(s[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    &s[..end]
}

fn split_comment(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == b';') {
        Some(k) => (&s[..k], Some(&s[k + 1..])),
        None => (s, None),
    }
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Decimal digits from `from` into `mantissa`; the index after them.
#[inline(always)]
fn digits(line: &[u8], from: usize, mantissa: &mut u64) -> usize {
    let mut m = *mantissa;
    let rest = &line[from.min(line.len())..];
    let mut n = 0;
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        n += 1;
    }
    *mantissa = m;
    from + n
}

/// A decimal number at `line[i..]`: optional sign, digits, optional point and digits.
/// Returns the value and the index after it, or `None` if there is no digit.
///
/// Up to 18 digits are gathered in an integer and divided once by a power of ten, exact for
/// the powers used, so the result is correctly rounded whenever the digits fit in 53 bits
/// (all that slicers write but the last digit of 17-digit coordinates), and it is far
/// faster than going through `str::parse`, which longer numbers still take.
pub(crate) fn parse_number(line: &[u8], mut i: usize) -> Option<(f64, usize)> {
    let from = i;
    let len = line.len();
    let mut negative = false;
    if i < len && (line[i] == b'-' || line[i] == b'+') {
        negative = line[i] == b'-';
        i += 1;
    }
    let mut mantissa: u64 = 0;
    let int_start = i;
    i = digits(line, i, &mut mantissa);
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < len && line[i] == b'.' {
        i += 1;
        let frac_start = i;
        i = digits(line, i, &mut mantissa);
        frac_digits = i - frac_start;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    let value = if int_digits + frac_digits <= 18 && frac_digits < POW10.len() {
        // Below 10^18 < 2^63: no overflow, one rounding at most.
        mantissa as f64 / POW10[frac_digits]
    } else {
        std::str::from_utf8(&line[from..i])
            .ok()?
            .parse::<f64>()
            .ok()?
            .abs()
    };
    Some((if negative { -value } else { value }, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_of(line: &str) -> (Kind<'_>, Words) {
        let mut w = Words::new();
        let (k, _) = scan(line.as_bytes(), &mut w);
        (k, w)
    }

    #[test]
    fn numbers_are_read_like_the_standard_parser_reads_them() {
        for text in [
            "0",
            "1",
            "-1",
            "0.5",
            ".5",
            "-.5",
            "+3",
            "10.",
            "9.999999999999998",
            "175.00000000000003",
            "123456.789",
            "0.0001",
            "-0.000",
            "1234567890123456789012",
        ] {
            let (v, end) = parse_number(text.as_bytes(), 0).unwrap();
            let exact = text.parse::<f64>().unwrap();
            assert_eq!(end, text.len());
            assert!(
                (v - exact).abs() <= exact.abs() * 1e-15,
                "{text}: {v} != {exact}"
            );
        }
        assert!(parse_number(b"-", 0).is_none());
        assert!(parse_number(b".", 0).is_none());
    }

    #[test]
    fn a_value_past_10_to_the_12_makes_the_line_unreadable() {
        let (k, _) = words_of("G1 X1000000000000");
        assert_eq!(k, Kind::Words);
        for line in [
            "G1 X1000000000001",
            &format!("M4 S8 G1 X{}", "4".repeat(155)),
            &format!("G1 Y-{}", "9".repeat(400)),
        ] {
            let (k, _) = words_of(line);
            assert!(matches!(k, Kind::Bad(_)), "{line}");
        }
    }

    #[test]
    fn a_move_line_gives_its_code_and_axes() {
        let (k, w) = words_of("G1 X10.5 Y-3 E.25 F1800 ; perimeter");
        assert_eq!(k, Kind::Words);
        assert_eq!(w.g_codes(), &[10]);
        assert_eq!(w.get(b'X'), Some(10.5));
        assert_eq!(w.get(b'Y'), Some(-3.0));
        assert_eq!(w.get(b'E'), Some(0.25));
        assert_eq!(w.get(b'F'), Some(1800.0));
        assert_eq!(w.get(b'Z'), None);
    }

    #[test]
    fn words_may_be_glued_lower_case_or_numbered() {
        let (_, w) = words_of("N12 g1x1y2z3*71");
        assert_eq!(w.g_codes(), &[10]);
        assert_eq!(
            (w.get(b'X'), w.get(b'Y'), w.get(b'Z')),
            (Some(1.0), Some(2.0), Some(3.0))
        );
        let (_, w) = words_of("G38.2 Z-5");
        assert_eq!(w.g_codes(), &[382]);
    }

    #[test]
    fn letters_without_numbers_are_kept_bare() {
        let (k, w) = words_of("M84 X Y E");
        assert_eq!(k, Kind::Words);
        assert!(w.has(b'X') && w.has(b'E'));
        assert_eq!(w.get(b'X'), None);
    }

    #[test]
    fn klipper_macros_grbl_settings_and_messages_are_told_apart() {
        assert!(matches!(
            words_of("PRINT_START BED=60").0,
            Kind::Extended { .. }
        ));
        assert!(matches!(words_of("PAUSE").0, Kind::Extended { .. }));
        assert!(matches!(words_of("$32=0").0, Kind::System(b"32=0")));
        assert!(matches!(
            words_of("M117 Hello, world: 50%").0,
            Kind::Text(1170)
        ));
        assert!(matches!(words_of("hello world").0, Kind::Bad(0)));
        assert!(matches!(words_of("Tx").0, Kind::Text(0)));
        assert!(matches!(words_of("T?").0, Kind::Text(0)));
        assert!(matches!(words_of("G1 X10 Y10 E6 ?").0, Kind::Bad(_)));
        assert!(matches!(words_of("G1 X1,5").0, Kind::Bad(_)));
        assert_eq!(words_of("   ").0, Kind::Empty);
        assert_eq!(words_of("(a comment) G0 X1").1.get(b'X'), Some(1.0));
    }

    /// Hands out one byte per read.
    struct ByteByByte<'a>(&'a [u8]);

    impl Read for ByteByByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn a_line_of_exactly_the_longest_length_is_whole_however_it_is_read() {
        for len in [MAX_LINE - 1, MAX_LINE, MAX_LINE + 1] {
            let mut text = "X".repeat(len);
            text.push_str("\nG1 X1\n");
            let read = |r: &mut dyn FnMut() -> Option<(Vec<u8>, bool)>| {
                std::iter::from_fn(r).collect::<Vec<_>>()
            };
            let mut whole = LineReader::new(text.as_bytes());
            let mut pieces = LineReader::new(ByteByByte(text.as_bytes()));
            let a = read(&mut || whole.next_line().unwrap().map(|l| (l.text.to_vec(), l.cut)));
            let b = read(&mut || {
                pieces
                    .next_line()
                    .unwrap()
                    .map(|l| (l.text.to_vec(), l.cut))
            });
            assert_eq!(a, b, "a line of {len} bytes");
            assert_eq!(a.len(), 2);
            assert_eq!(a[0].1, len > MAX_LINE, "a line of {len} bytes");
        }
    }

    #[test]
    fn lines_come_out_whole_across_buffer_refills_and_overlong_lines_are_cut() {
        let mut text = String::new();
        for i in 0..50_000 {
            text.push_str(&format!("G1 X{i} Y{i}\r\n"));
        }
        text.push_str(&"A".repeat(MAX_LINE * 3));
        text.push('\n');
        text.push_str(&"B".repeat(BUFFER * 2));
        text.push_str("\nlast");
        let mut reader = LineReader::new(text.as_bytes());
        let mut n = 0;
        let mut cut = 0;
        let mut last = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            if line.cut {
                cut += 1;
            } else if n < 50_000 {
                assert_eq!(line.text, format!("G1 X{n} Y{n}").as_bytes());
            }
            last = line.text.to_vec();
            n += 1;
        }
        assert_eq!((n, cut), (50_003, 2));
        assert_eq!(last, b"last");
    }

    #[test]
    fn the_newline_search_finds_every_position() {
        for len in 0..40 {
            for at in 0..len {
                let mut v = vec![b'x'; len];
                v[at] = b'\n';
                assert_eq!(find_newline(&v), Some(at));
            }
            assert_eq!(find_newline(&vec![b'x'; len]), None);
        }
    }
}
