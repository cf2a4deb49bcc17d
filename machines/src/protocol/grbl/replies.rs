//! Replies from GRBL: banners, settings, status reports and the other lines it prints.

use super::*;

/// A firmware version from the start-up banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// 1 in `1.1h`.
    pub major: u8,
    /// 1 in `1.1h`.
    pub minor: u8,
    /// `h` in `1.1h`.
    pub letter: Option<char>,
}

impl Version {
    /// GRBL 0.9 and 1.x are understood; 1.1 is what a laser needs (laser mode `$32`).
    pub fn is_supported(&self) -> bool {
        (self.major == 0 && self.minor == 9) || self.major == 1
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(l) = self.letter {
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

/// Reads a start-up banner such as `Grbl 1.1h ['$' for help]` or `Grbl 0.9j ['$' for help]`.
/// GRBL prints it after power-up and after every soft reset (`grbl/main.c`).
pub fn parse_banner(line: &str) -> Option<Version> {
    let rest = line
        .strip_prefix("Grbl ")
        .or_else(|| line.strip_prefix("GrblHAL "))?;
    let token = rest.split_whitespace().next()?;
    let (major, rest) = token.split_once('.')?;
    let major = major.parse().ok()?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let minor = digits.parse().ok()?;
    let letter = rest[digits.len()..]
        .chars()
        .next()
        .filter(char::is_ascii_alphabetic);
    Some(Version {
        major,
        minor,
        letter,
    })
}

/// Reads the version from `$I`'s first line, `[VER:1.1h.20190825:]` (GRBL 1.1); GRBL 0.9
/// prints `[0.9j.20160726:]`.
pub fn parse_build_info(line: &str) -> Option<Version> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix("VER:").unwrap_or(inner);
    let token = inner.split(':').next()?;
    // `1.1h.20190825`: the version is what comes before the build date.
    let version = match token.rsplit_once('.') {
        Some((v, date)) if date.len() >= 6 && date.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => token,
    };
    parse_banner(&format!("Grbl {version}"))
}

/// Reads a `$$` line: `$30=1000` (1.1) or `$30=1000 (spindle max, rpm)` (0.9).
pub fn parse_setting(line: &str) -> Option<(u16, f64)> {
    let rest = line.strip_prefix('$')?;
    let (n, v) = rest.split_once('=')?;
    let n = n.parse().ok()?;
    let v = v.split_whitespace().next()?.parse().ok()?;
    Some((n, v))
}

/// GRBL's settings as read with `$$`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    values: BTreeMap<u16, f64>,
}

impl Settings {
    /// Setting `$n`, if read.
    pub fn get(&self, n: u16) -> Option<f64> {
        self.values.get(&n).copied()
    }

    /// Records `$n=v`.
    pub fn set(&mut self, n: u16, v: f64) {
        self.values.insert(n, v);
    }

    /// All settings, by number.
    pub fn iter(&self) -> impl Iterator<Item = (u16, f64)> + '_ {
        self.values.iter().map(|(k, v)| (*k, *v))
    }

    /// `$30`: the `S` value that means full power.
    pub fn max_power(&self) -> Option<f64> {
        self.get(30)
    }

    /// `$32`: laser mode (GRBL 1.1 only).
    pub fn laser_mode(&self) -> Option<bool> {
        self.get(32).map(|v| v != 0.0)
    }

    /// `$20`: soft limits.
    pub fn soft_limits(&self) -> Option<bool> {
        self.get(20).map(|v| v != 0.0)
    }

    /// `$110`-`$112`: maximum rate of X, Y, Z (0, 1, 2) in mm/min.
    pub fn max_rate(&self, axis: usize) -> Option<f64> {
        self.axis_setting(110, axis)
    }

    /// `$120`-`$122`: acceleration of X, Y, Z in mm/s².
    pub fn acceleration(&self, axis: usize) -> Option<f64> {
        self.axis_setting(120, axis)
    }

    /// `$130`-`$132`: maximum travel of X, Y, Z in mm.
    pub fn max_travel(&self, axis: usize) -> Option<f64> {
        self.axis_setting(130, axis)
    }

    /// `$22`: the homing cycle. Only with it do machine coordinates mean a place on the
    /// machine: without it they start wherever the head stood at power-up.
    pub fn homing(&self) -> Option<bool> {
        self.get(22).map(|v| v != 0.0)
    }

    /// Where machine coordinates of an axis can go once homed, mm: `-$13x..=0`. GRBL
    /// (0.9 and 1.1 as built by default) gives the homed corner the position 0, less the
    /// pull-off, whichever end `$23` homes to, so its machine space is negative
    /// (`system_check_travel_limits` in `grbl/system.c`); a machine homed to the positive
    /// end (`$23=0`, the default) has its work origin at a negative machine position.
    /// `None` without homing or without a travel for the axis.
    pub fn machine_space(&self, axis: usize) -> Option<(f64, f64)> {
        if self.homing() != Some(true) {
            return None;
        }
        self.max_travel(axis)
            .filter(|t| *t > 0.0)
            .map(|t| (-t, 0.0))
    }

    fn axis_setting(&self, base: u16, axis: usize) -> Option<f64> {
        u16::try_from(axis)
            .ok()
            .filter(|a| *a < 3)
            .and_then(|a| self.get(base + a))
    }
}

/// The machine state at the head of a status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// Ready, nothing moving.
    Idle,
    /// Running a job or a move.
    Run,
    /// Feed hold; sub-state 0 means stopped, 1 still slowing down.
    Hold(u8),
    /// Jogging.
    Jog,
    /// Locked by an alarm.
    Alarm,
    /// Safety door open; sub-state as GRBL reports it.
    Door(u8),
    /// Check mode (`$C`): lines are parsed, nothing moves.
    Check,
    /// Homing.
    Home,
    /// Sleeping.
    Sleep,
    /// A state this host does not know.
    Unknown,
}

impl MachineState {
    fn parse(s: &str) -> Self {
        let (name, sub) = match s.split_once(':') {
            Some((n, sub)) => (n, sub.parse().unwrap_or(0)),
            None => (s, 0),
        };
        match name.to_ascii_lowercase().as_str() {
            "idle" => MachineState::Idle,
            "run" => MachineState::Run,
            "hold" | "queue" => MachineState::Hold(sub),
            "jog" => MachineState::Jog,
            "alarm" => MachineState::Alarm,
            "door" => MachineState::Door(sub),
            "check" => MachineState::Check,
            "home" => MachineState::Home,
            "sleep" => MachineState::Sleep,
            _ => MachineState::Unknown,
        }
    }

    /// The state in words, for a sentence: "en alarme", "in alarm".
    pub fn words(self, lang: Lang) -> &'static str {
        use MachineState as S;
        match (self, lang) {
            (S::Idle, Lang::Fr) => "au repos",
            (S::Idle, Lang::En) => "idle",
            (S::Run, Lang::Fr) => "en mouvement",
            (S::Run, Lang::En) => "moving",
            (S::Hold(_), Lang::Fr) => "en pause",
            (S::Hold(_), Lang::En) => "on hold",
            (S::Jog, Lang::Fr) => "en déplacement manuel",
            (S::Jog, Lang::En) => "jogging",
            (S::Alarm, Lang::Fr) => "en alarme",
            (S::Alarm, Lang::En) => "in alarm",
            (S::Door(_), Lang::Fr) => "porte ouverte",
            (S::Door(_), Lang::En) => "with its door open",
            (S::Check, Lang::Fr) => "en mode vérification",
            (S::Check, Lang::En) => "in check mode",
            (S::Home, Lang::Fr) => "en prise d'origine",
            (S::Home, Lang::En) => "homing",
            (S::Sleep, Lang::Fr) => "en veille",
            (S::Sleep, Lang::En) => "asleep",
            (S::Unknown, Lang::Fr) => "dans un état inconnu",
            (S::Unknown, Lang::En) => "in an unknown state",
        }
    }

    /// Whether the machine is standing still and ready to be reset without losing its
    /// position (a reset during motion raises `ALARM:3`, `grbl/main.c`).
    pub fn is_still(self) -> bool {
        matches!(
            self,
            MachineState::Idle
                | MachineState::Hold(0)
                | MachineState::Alarm
                | MachineState::Check
                | MachineState::Door(_)
                | MachineState::Sleep
        )
    }
}

/// A status report, the reply to `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// The machine state.
    pub state: MachineState,
    /// Machine position (`MPos`).
    pub mpos: Option<[f64; 3]>,
    /// Work position (`WPos`).
    pub wpos: Option<[f64; 3]>,
    /// Work coordinate offset (`WCO`); work position = machine position - offset.
    pub wco: Option<[f64; 3]>,
    /// Current feed (`FS:feed,speed` or `F:feed`).
    pub feed: Option<f64>,
    /// Current spindle speed or laser power (`FS`).
    pub power: Option<f64>,
    /// `Bf:blocks,bytes` free in the planner and the receive buffer. Stale by the time it
    /// arrives: for display only, never to steer streaming (`interface.md`).
    pub buffer: Option<(u16, u16)>,
    /// `Ov:feed,rapid,spindle` overrides in percent.
    pub overrides: Option<[u16; 3]>,
    /// `Ln:` the line number being executed.
    pub line: Option<u32>,
}

fn coords(values: &[&str]) -> Option<[f64; 3]> {
    let mut out = [0.0; 3];
    if values.is_empty() {
        return None;
    }
    for (o, v) in out.iter_mut().zip(values) {
        *o = v.trim().parse().ok()?;
    }
    Some(out)
}

/// Reads a status report: GRBL 1.1 `<Idle|MPos:0.000,0.000,0.000|FS:0,0|Bf:15,128>` or
/// GRBL 0.9 `<Idle,MPos:0.000,0.000,0.000,WPos:0.000,0.000,0.000>`. Unknown fields are
/// skipped; a field that does not parse is left out rather than failing the report.
pub fn parse_status(line: &str) -> Option<StatusReport> {
    let inner = line.strip_prefix('<')?.strip_suffix('>')?;
    // Group into (name, values): 1.1 separates fields with `|`; 0.9 uses `,` for both
    // fields and values, and a field starts wherever a token holds a `:`.
    let mut fields: Vec<(&str, Vec<&str>)> = Vec::new();
    let state_text;
    if inner.contains('|') {
        let mut parts = inner.split('|');
        state_text = parts.next()?;
        for p in parts {
            let (name, values) = p.split_once(':').unwrap_or((p, ""));
            fields.push((name, values.split(',').collect()));
        }
    } else {
        let mut parts = inner.split(',');
        state_text = parts.next()?;
        for p in parts {
            match p.split_once(':') {
                Some((name, first)) => fields.push((name, vec![first])),
                None => {
                    if let Some(last) = fields.last_mut() {
                        last.1.push(p);
                    }
                }
            }
        }
    }
    let mut report = StatusReport {
        state: MachineState::parse(state_text),
        mpos: None,
        wpos: None,
        wco: None,
        feed: None,
        power: None,
        buffer: None,
        overrides: None,
        line: None,
    };
    let num = |v: Option<&&str>| v.and_then(|s| s.trim().parse::<f64>().ok());
    for (name, values) in &fields {
        match *name {
            "MPos" => report.mpos = coords(values),
            "WPos" => report.wpos = coords(values),
            "WCO" => report.wco = coords(values),
            "FS" => {
                report.feed = num(values.first());
                report.power = num(values.get(1));
            }
            "F" => report.feed = num(values.first()),
            "Bf" => {
                let b = values.first().and_then(|s| s.trim().parse().ok());
                let r = values.get(1).and_then(|s| s.trim().parse().ok());
                report.buffer = b.zip(r);
            }
            // 0.9 reports the receive buffer as `Buf:n,RX:n`.
            "Ln" => report.line = values.first().and_then(|s| s.trim().parse().ok()),
            "Ov" => {
                let o: Vec<u16> = values
                    .iter()
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
                if let [f, r, s] = o[..] {
                    report.overrides = Some([f, r, s]);
                }
            }
            _ => {}
        }
    }
    Some(report)
}

/// One line from GRBL.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// `ok`: the oldest unacknowledged line was taken.
    Ok,
    /// `error:N`: the oldest unacknowledged line was refused (0 when a 0.9 text is unknown).
    Error(u8),
    /// `ALARM:N`: the machine locked itself (0 when a 0.9 text is unknown).
    Alarm(u8),
    /// The start-up banner: GRBL has just (re)started.
    Banner(Version),
    /// A status report.
    Status(StatusReport),
    /// A `$$` line.
    Setting(u16, f64),
    /// `[MSG:...]`.
    Message(String),
    /// Any other `[...]` or `>...` feedback (`[GC:...]`, `[VER:...]`, start-up lines).
    Feedback(String),
    /// Anything else, kept for the log.
    Other(String),
}

fn code_after(rest: &str, kind: CodeKind) -> u8 {
    let rest = rest.trim();
    if let Ok(n) = rest.parse() {
        return n;
    }
    // GRBL 1.0 printed `error:Invalid gcode ID:24`.
    if let Some(n) = rest
        .rsplit_once(':')
        .and_then(|(_, n)| n.trim().parse().ok())
    {
        return n;
    }
    codes::code_from_text(kind, rest).unwrap_or(0)
}

/// Reads one line (without its line ending) sent by GRBL.
pub fn parse_response(line: &str) -> Response {
    let line = line.trim();
    if line == "ok" {
        return Response::Ok;
    }
    if let Some(rest) = line.strip_prefix("error:") {
        return Response::Error(code_after(rest, CodeKind::Error));
    }
    if let Some(rest) = line.strip_prefix("ALARM:") {
        return Response::Alarm(code_after(rest, CodeKind::Alarm));
    }
    if let Some(v) = parse_banner(line) {
        return Response::Banner(v);
    }
    if line.starts_with('<')
        && let Some(s) = parse_status(line)
    {
        return Response::Status(s);
    }
    if line.starts_with('$')
        && let Some((n, v)) = parse_setting(line)
    {
        return Response::Setting(n, v);
    }
    if let Some(m) = line.strip_prefix("[MSG:").and_then(|m| m.strip_suffix(']')) {
        return Response::Message(m.to_string());
    }
    if line.starts_with('[') || line.starts_with('>') {
        return Response::Feedback(line.to_string());
    }
    Response::Other(line.to_string())
}
