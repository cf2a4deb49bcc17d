//! The operator panel of a GRBL machine (a laser, a mill), for a trainer or a manager
//! standing at it: what may be asked of the machine outside a job, parsed and checked here.
//! The machine's task sends it over the link it holds ([`crate::runtime`]).
//!
//! Nothing here fires the laser or starts a spindle: the panel's lines are jogs (which keep
//! the spindle as it is, and the panel never turns it on), `$` commands, and console lines
//! without `M3`/`M4` or cutting moves.

use super::job::JobId;
use super::{Invalid, text_enum};
use fabrique_machines::protocol::grbl::{Realtime, Word, clean_line, parse_words};

text_enum! {
    /// An axis a jog moves.
    Axis { X = "x", Y = "y", Z = "z" }
}

text_enum! {
    /// A live override, as GRBL's real-time bytes offer them.
    Override {
        FeedPlus = "feed_plus",
        FeedMinus = "feed_minus",
        FeedReset = "feed_reset",
        RapidFull = "rapid_full",
        RapidHalf = "rapid_half",
        RapidQuarter = "rapid_quarter",
        PowerPlus = "power_plus",
        PowerMinus = "power_minus",
        PowerReset = "power_reset",
    }
}

impl Override {
    /// The real-time byte.
    pub fn realtime(self) -> Realtime {
        match self {
            Override::FeedPlus => Realtime::FeedPlus10,
            Override::FeedMinus => Realtime::FeedMinus10,
            Override::FeedReset => Realtime::FeedReset,
            Override::RapidFull => Realtime::RapidFull,
            Override::RapidHalf => Realtime::RapidHalf,
            Override::RapidQuarter => Realtime::RapidQuarter,
            Override::PowerPlus => Realtime::PowerPlus10,
            Override::PowerMinus => Realtime::PowerMinus10,
            Override::PowerReset => Realtime::PowerReset,
        }
    }
}

/// The longest console line: GRBL takes 80 characters with its line end.
pub const CONSOLE_MAX: usize = 70;

/// How long one piece of a continuous jog moves: the button sends the next piece while it
/// is held, so the head stops within this time if the browser goes silent, and at once
/// with the jog cancel byte when the button is let go.
pub const JOG_PIECE_S: f64 = 0.4;

/// One request to the panel.
#[derive(Debug, Clone, PartialEq)]
pub enum PanelAction {
    /// Take the machine: open its link and keep it, so that homing, jogs and the origin
    /// survive until the job (opening the port again resets most boards).
    Take,
    /// Give it back: the link closes.
    Release,
    /// `$X`: leave an alarm without homing.
    Unlock,
    /// `$H`: the homing cycle.
    Home,
    /// A step: `distance` mm along `axis` at `feed` mm/min.
    Jog {
        axis: Axis,
        distance: f64,
        feed: f64,
    },
    /// One piece of a continuous jog ([`JOG_PIECE_S`]), towards `positive` or not.
    JogHold {
        axis: Axis,
        positive: bool,
        feed: f64,
    },
    /// The jog cancel byte: the head stops.
    JogStop,
    /// `G10 L20 P1 X0 Y0`: the work origin is where the head stands.
    SetOrigin,
    /// `G10 L20 P1 Z0`: Z zero is where the tool's tip stands (a mill's touch-off on the
    /// material, by a sheet of paper, without the probe).
    SetOriginZ,
    /// Back to the work origin, by a jog.
    GoToOrigin {
        feed: f64,
    },
    /// Trace the outline of a job's drawing by jogs (the laser never fires).
    Frame {
        job: JobId,
        feed: f64,
    },
    /// A mill's Z zero: probe down at most `depth` mm at `feed` (`G38.2`) until the tool
    /// touches the plate, whose `plate` mm thickness make the work's top Z 0; then up 5 mm.
    ProbeZ {
        depth: f64,
        feed: f64,
        plate: f64,
    },
    Override(Override),
    /// Feed hold and cycle start.
    Pause,
    Resume,
    /// A console line, checked by [`console_line`].
    Console(String),
}

impl PanelAction {
    /// The word the log records.
    pub fn name(&self) -> &'static str {
        match self {
            PanelAction::Take => "take",
            PanelAction::Release => "release",
            PanelAction::Unlock => "unlock",
            PanelAction::Home => "home",
            PanelAction::Jog { .. } => "jog",
            PanelAction::JogHold { .. } => "jog_hold",
            PanelAction::JogStop => "jog_stop",
            PanelAction::SetOrigin => "set_origin",
            PanelAction::SetOriginZ => "set_origin_z",
            PanelAction::GoToOrigin { .. } => "go_to_origin",
            PanelAction::Frame { .. } => "frame",
            PanelAction::ProbeZ { .. } => "probe_z",
            PanelAction::Override(_) => "override",
            PanelAction::Pause => "pause",
            PanelAction::Resume => "resume",
            PanelAction::Console(_) => "console",
        }
    }

    /// Reads an action from a form or a JSON body: its name and its fields as text.
    /// `field` gives a field's value, empty when absent.
    pub fn parse(name: &str, field: impl Fn(&str) -> String) -> Result<Self, Invalid> {
        let feed = |default: f64| -> Result<f64, Invalid> {
            let raw = field("feed");
            if raw.trim().is_empty() {
                return Ok(default);
            }
            match raw.trim().replace(',', ".").parse::<f64>() {
                Ok(f) if f > 0.0 && f <= 20_000.0 => Ok(f),
                _ => Err(Invalid::new("feed", "number_range")),
            }
        };
        let axis = || {
            field("axis")
                .trim()
                .to_ascii_lowercase()
                .parse::<Axis>()
                .map_err(|()| Invalid::new("axis", "choice"))
        };
        Ok(match name {
            "take" => PanelAction::Take,
            "release" => PanelAction::Release,
            "unlock" => PanelAction::Unlock,
            "home" => PanelAction::Home,
            "jog" => {
                let distance = match field("distance").trim().replace(',', ".").parse::<f64>() {
                    Ok(d) if d != 0.0 && d.abs() <= 1000.0 => d,
                    _ => return Err(Invalid::new("distance", "number_range")),
                };
                PanelAction::Jog {
                    axis: axis()?,
                    distance,
                    feed: feed(1000.0)?,
                }
            }
            "jog_hold" => PanelAction::JogHold {
                axis: axis()?,
                positive: match field("direction").trim() {
                    "+" | "plus" => true,
                    "-" | "minus" => false,
                    _ => return Err(Invalid::new("direction", "choice")),
                },
                feed: feed(1000.0)?,
            },
            "jog_stop" => PanelAction::JogStop,
            "set_origin" => PanelAction::SetOrigin,
            "set_origin_z" => PanelAction::SetOriginZ,
            "go_to_origin" => PanelAction::GoToOrigin {
                feed: feed(3000.0)?,
            },
            "frame" => PanelAction::Frame {
                job: JobId(
                    field("job")
                        .trim()
                        .parse()
                        .map_err(|_| Invalid::new("job", "choice"))?,
                ),
                feed: feed(3000.0)?,
            },
            "probe_z" => {
                let mm = |name: &'static str, default: f64, max: f64| {
                    let raw = field(name).trim().replace(',', ".");
                    if raw.is_empty() {
                        return Ok(default);
                    }
                    match raw.parse::<f64>() {
                        Ok(v) if v > 0.0 && v <= max => Ok(v),
                        Ok(v) if v == 0.0 && name == "plate" => Ok(v),
                        _ => Err(Invalid::new(name, "number_range")),
                    }
                };
                PanelAction::ProbeZ {
                    depth: mm("depth", 20.0, 100.0)?,
                    feed: feed(50.0)?,
                    plate: mm("plate", 0.0, 50.0)?,
                }
            }
            "override" => PanelAction::Override(
                field("override")
                    .trim()
                    .parse()
                    .map_err(|()| Invalid::new("override", "choice"))?,
            ),
            "pause" => PanelAction::Pause,
            "resume" => PanelAction::Resume,
            "console" => PanelAction::Console(
                console_line(&field("command")).map_err(ConsoleRefusal::invalid)?,
            ),
            _ => return Err(Invalid::new("action", "choice")),
        })
    }
}

/// Why a console line is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleRefusal {
    Empty,
    TooLong,
    /// Not plain ASCII, or a control character.
    NotText,
    /// `M3`/`M4`: the laser or the spindle would start outside a job.
    StartsTool,
    /// `G1`/`G2`/`G3`/`G38`: a cutting or probing move, for a job, not the console.
    CuttingMove,
    /// `$C`: check mode belongs to the dry run before a job.
    CheckMode,
    /// Not G-code GRBL would read.
    NotGcode,
}

impl ConsoleRefusal {
    /// The refusal as the form's field error.
    pub fn invalid(self) -> Invalid {
        match self {
            ConsoleRefusal::Empty => Invalid::new("command", "required"),
            ConsoleRefusal::TooLong => Invalid::new("command", "too_long"),
            ConsoleRefusal::NotText => Invalid::new("command", "control_chars"),
            ConsoleRefusal::StartsTool => Invalid::new("command", "console_starts_tool"),
            ConsoleRefusal::CuttingMove => Invalid::new("command", "console_cutting_move"),
            ConsoleRefusal::CheckMode => Invalid::new("command", "console_check_mode"),
            ConsoleRefusal::NotGcode => Invalid::new("command", "console_not_gcode"),
        }
    }
}

/// A console line the panel sends as typed: a `$` command (`$$`, `$#`, `$G`, `$I`, a
/// setting such as `$30=1000`, `$H`, `$X`, `$J=`), or G-code that neither starts the
/// laser or spindle nor cuts (`G0`, `G10`, `G90`, `G92`, `M5`...).
pub fn console_line(raw: &str) -> Result<String, ConsoleRefusal> {
    let line = raw.trim();
    if line.is_empty() {
        return Err(ConsoleRefusal::Empty);
    }
    if line.chars().count() > CONSOLE_MAX {
        return Err(ConsoleRefusal::TooLong);
    }
    if !line.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return Err(ConsoleRefusal::NotText);
    }
    if let Some(command) = line.strip_prefix('$') {
        if command.trim().eq_ignore_ascii_case("c") {
            return Err(ConsoleRefusal::CheckMode);
        }
        return Ok(line.to_string());
    }
    // Read as GRBL reads it: spaces, comments and case do not count.
    let cleaned = clean_line(line);
    if cleaned.is_empty() {
        return Err(ConsoleRefusal::Empty);
    }
    let words = parse_words(&cleaned).map_err(|_| ConsoleRefusal::NotGcode)?;
    for Word { letter, value } in words {
        let code = (value * 10.0).round() as i64;
        match letter {
            'M' if matches!(code, 30 | 40) => return Err(ConsoleRefusal::StartsTool),
            'G' if matches!(code, 10 | 20 | 30) || (380..390).contains(&code) => {
                return Err(ConsoleRefusal::CuttingMove);
            }
            _ => {}
        }
    }
    Ok(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_takes_settings_and_reports_but_never_fires_or_cuts() {
        for ok in [
            "$$",
            "$#",
            "$G",
            "$I",
            "$30=1000",
            "$H",
            "$X",
            "$J=G91X10F500",
            "G0 X10 Y5",
            "G10 L20 P1 X0 Y0",
            "M5",
            "G92 X0",
        ] {
            assert_eq!(console_line(ok).as_deref(), Ok(ok), "{ok}");
        }
        assert_eq!(console_line("  $$  ").as_deref(), Ok("$$"));
        for (bad, why) in [
            ("", ConsoleRefusal::Empty),
            ("M3 S1000", ConsoleRefusal::StartsTool),
            ("m4s10", ConsoleRefusal::StartsTool),
            ("M03", ConsoleRefusal::StartsTool),
            ("G1 X10 F100", ConsoleRefusal::CuttingMove),
            ("G2 X1 Y1 I1", ConsoleRefusal::CuttingMove),
            ("G38.2 Z-10 F50", ConsoleRefusal::CuttingMove),
            ("$C", ConsoleRefusal::CheckMode),
            ("G0 X\u{7}", ConsoleRefusal::NotText),
            ("visière", ConsoleRefusal::NotText),
            ("hello", ConsoleRefusal::NotGcode),
            ("(focus) M3 S10", ConsoleRefusal::StartsTool),
            ("(only a comment)", ConsoleRefusal::Empty),
        ] {
            assert_eq!(console_line(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            console_line(&"G0X1".repeat(20)),
            Err(ConsoleRefusal::TooLong)
        );
    }

    #[test]
    fn actions_are_read_from_their_fields() {
        let fields = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or(String::new(), |(_, v)| v.to_string())
            }
        };
        assert_eq!(
            PanelAction::parse(
                "jog",
                fields(&[("axis", "X"), ("distance", "-10"), ("feed", "600")])
            ),
            Ok(PanelAction::Jog {
                axis: Axis::X,
                distance: -10.0,
                feed: 600.0
            })
        );
        assert_eq!(
            PanelAction::parse("jog", fields(&[("axis", "w"), ("distance", "1")])),
            Err(Invalid::new("axis", "choice"))
        );
        assert_eq!(
            PanelAction::parse("jog", fields(&[("axis", "x"), ("distance", "0")])),
            Err(Invalid::new("distance", "number_range"))
        );
        assert_eq!(
            PanelAction::parse("override", fields(&[("override", "power_minus")])),
            Ok(PanelAction::Override(Override::PowerMinus))
        );
        assert_eq!(
            PanelAction::parse("console", fields(&[("command", "M3 S1")])),
            Err(Invalid::new("command", "console_starts_tool"))
        );
        assert_eq!(
            PanelAction::parse("fire", fields(&[])),
            Err(Invalid::new("action", "choice"))
        );
    }
}
