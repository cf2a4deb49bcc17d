//! Safety: the checks a job passes before anything is sent, and the proof that a person is
//! at the machine.

use super::*;

/// Proof that a person is at the machine and asked for this laser job to start.
///
/// A laser never starts by itself: the only way to start a cut is
/// [`Session::start_cut`], and it takes this token by value, so each start needs its own
/// confirmation. Construct it **only** in an interactive start path: the start button on
/// the machine's page pressed by a signed-in, trained person standing at the machine, or
/// the `fabrique stream` command when a person answers its terminal prompt or passes
/// `--i-am-at-the-machine`. Schedulers, queues and remote API calls must never build one.
/// The token is not `Clone`, `Default` or deserialisable, and it goes stale after
/// [`Config::confirmation_ttl`], so a confirmation cannot be stored and replayed later.
/// The workspace's `clippy.toml` can list [`PersonAtMachine::confirmed_at_the_machine`]
/// under `disallowed-methods`, so that every sanctioned call site carries an explicit
/// `#[allow(clippy::disallowed_methods)]` a reviewer can see.
#[derive(Debug)]
pub struct PersonAtMachine {
    who: String,
    pub(super) confirmed_at: Instant,
}

impl PersonAtMachine {
    /// `who` confirmed, at `at`, that they stand at the machine and start this job.
    pub fn confirmed_at_the_machine(who: impl Into<String>, at: Instant) -> Self {
        PersonAtMachine {
            who: who.into(),
            confirmed_at: at,
        }
    }

    /// Who confirmed.
    pub fn who(&self) -> &str {
        &self.who
    }
}

/// The work area of the machine's profile, with its origin at the lower-left corner, as
/// laser senders place jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkArea {
    /// Usable width along X, mm.
    pub width: f64,
    /// Usable depth along Y, mm.
    pub height: f64,
}

/// Why a job was not started. Nothing was sent to the machine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The link is not ready (start-up or settings not finished, or closed).
    #[error("the machine is not connected and ready")]
    NotReady,
    /// A job or command is still running.
    #[error("the machine is busy")]
    Busy,
    /// The machine is not idle (alarm, door, hold...).
    #[error("the machine is not idle ({0:?})")]
    NotIdle(Option<MachineState>),
    /// `$32` is 0, or missing (GRBL 0.9 has no laser mode).
    #[error("laser mode ($32) is off")]
    LaserModeOff,
    /// `$30` was not read.
    #[error("the maximum power ($30) is unknown")]
    MaxPowerUnknown,
    /// An `S` value above `$30`.
    #[error("line {line} asks for power S{power}, above the maximum $30={max}")]
    PowerTooHigh {
        /// File line.
        line: usize,
        /// The `S` asked.
        power: f64,
        /// `$30`.
        max: f64,
    },
    /// A position outside the work area or the travel.
    #[error("line {line} goes to {axis}={value:.1} mm, outside 0..{limit:.1} mm")]
    OutOfBounds {
        /// File line.
        line: usize,
        /// 'X' or 'Y'.
        axis: char,
        /// Where it goes.
        value: f64,
        /// The usable length of that axis.
        limit: f64,
    },
    /// A position that, with the machine's work offset, leaves its travel.
    #[error("line {line} goes to machine {axis}={value:.1} mm, outside {min:.1}..{max:.1} mm")]
    OutsideTravel {
        /// File line.
        line: usize,
        /// 'X' or 'Y'.
        axis: char,
        /// Where it goes, in machine coordinates.
        value: f64,
        /// The machine space of that axis.
        min: f64,
        max: f64,
    },
    /// `$32` is 1 on a mill: GRBL would stop the spindle on every rapid move and start
    /// cutting before it is back up to speed.
    #[error("laser mode ($32) is on, on a mill")]
    LaserModeOnMill,
    /// `$30` was not read, on a mill.
    #[error("the maximum spindle speed ($30) is unknown")]
    MaxSpeedUnknown,
    /// An `S` value above `$30`, on a mill.
    #[error("line {line} asks for S{speed} rpm, above the maximum $30={max}")]
    SpindleTooFast {
        /// File line.
        line: usize,
        /// The `S` asked.
        speed: f64,
        /// `$30`.
        max: f64,
    },
    /// `M7` or `M8` on a mill that has no such coolant.
    #[error("line {line} turns on coolant the machine does not have")]
    NoCoolant {
        /// File line.
        line: usize,
        /// `M7` rather than `M8`.
        mist: bool,
    },
    /// A mill's file goes deeper, from its highest to its lowest Z, than the Z travel.
    #[error("line {line} makes the Z span {span:.1} mm, more than the travel {travel:.1} mm")]
    DepthTooLarge {
        /// The file line of the lowest Z.
        line: usize,
        /// Highest Z − lowest Z.
        span: f64,
        /// `$132`, or the profile's height.
        travel: f64,
    },
    /// The file moves somewhere this check cannot know.
    #[error("line {0} changes coordinates (G92/G10/G28/G30/G53); bounds cannot be checked")]
    UnknowableBounds(usize),
    /// A `$` system command inside the job (it could turn laser mode off or change limits
    /// mid-job).
    #[error("line {0} is a `$` system command, not allowed in a job")]
    SystemCommand(usize),
    /// The confirmation is older than allowed.
    #[error("the confirmation that a person is at the machine is too old")]
    StaleConfirmation,
    /// The program has no lines.
    #[error("the file is empty")]
    Empty,
}

impl Refusal {
    /// What happened and what to do, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        use Refusal as R;
        match (self, lang) {
            (R::NotReady, Lang::Fr) => "La machine n'est pas connectée ou pas prête. Vérifiez le câble et l'alimentation, puis reconnectez.".into(),
            (R::NotReady, Lang::En) => "The machine is not connected or not ready. Check the cable and power, then connect again.".into(),
            (R::Busy, Lang::Fr) => "La machine est déjà occupée. Attendez la fin du travail en cours.".into(),
            (R::Busy, Lang::En) => "The machine is already busy. Wait for the current job to end.".into(),
            (R::NotIdle(Some(MachineState::Alarm)), Lang::Fr) => "La machine est en alarme (après sa mise sous tension, une fin de course ou un arrêt) : elle ne bouge plus tant qu'on ne fait pas sa prise d'origine ($H) ou qu'on ne la déverrouille pas ($X). Vérifiez la tête et la pièce, puis faites-le depuis la machine.".into(),
            (R::NotIdle(Some(MachineState::Alarm)), Lang::En) => "The machine is in alarm (after power-up, a limit switch or a stop): it will not move until it is homed ($H) or unlocked ($X). Check the head and the work piece, then do it at the machine.".into(),
            (R::NotIdle(Some(s)), Lang::Fr) => format!("La machine n'est pas au repos : elle est {}. Attendez qu'elle le soit, ou reprenez-la depuis la machine, avant de lancer.", s.words(Lang::Fr)),
            (R::NotIdle(Some(s)), Lang::En) => format!("The machine is not idle: it is {}. Wait until it is, or take it back at the machine, before starting.", s.words(Lang::En)),
            (R::NotIdle(None), Lang::Fr) => "La machine n'a pas encore donné son état. Attendez quelques secondes et relancez.".into(),
            (R::NotIdle(None), Lang::En) => "The machine has not reported its state yet. Wait a few seconds and start again.".into(),
            (R::LaserModeOff, Lang::Fr) => "Le mode laser ($32=1) n'est pas activé : le laser resterait allumé aux arrêts et brûlerait le matériau. Demandez au responsable de régler $32=1.".into(),
            (R::LaserModeOff, Lang::En) => "Laser mode ($32=1) is off: the laser would stay on at every stop and burn the material. Ask the fab manager to set $32=1.".into(),
            (R::MaxPowerUnknown, Lang::Fr) => "La puissance maximale ($30) de la machine est inconnue ; impossible de vérifier le fichier. Reconnectez la machine.".into(),
            (R::MaxPowerUnknown, Lang::En) => "The machine's maximum power ($30) is unknown, so the file cannot be checked. Connect the machine again.".into(),
            (R::PowerTooHigh { line, power, max }, Lang::Fr) => format!("La ligne {line} demande une puissance S{power}, plus que le maximum de la machine ($30={max}). Réglez la puissance dans le logiciel de découpe."),
            (R::PowerTooHigh { line, power, max }, Lang::En) => format!("Line {line} asks for power S{power}, more than the machine's maximum ($30={max}). Set the power in the cutting software."),
            (R::OutOfBounds { line, axis, value, limit }, Lang::Fr) => format!("Le dessin sort de la zone de travail : la ligne {line} va à {axis}={value:.1} mm, alors que la zone va de 0 à {limit:.1} mm. Replacez le dessin dans la zone."),
            (R::OutOfBounds { line, axis, value, limit }, Lang::En) => format!("The drawing leaves the work area: line {line} goes to {axis}={value:.1} mm, while the area spans 0 to {limit:.1} mm. Move the drawing into the area."),
            (R::OutsideTravel { line, axis, value, min, max }, Lang::Fr) => format!("Avec l'origine de travail réglée sur la machine, le dessin sort de sa course : la ligne {line} l'envoie à {axis}={value:.1} mm en coordonnées machine, alors qu'elle va de {min:.1} à {max:.1} mm. Placez l'origine ailleurs sur le matériau ou déplacez le dessin."),
            (R::OutsideTravel { line, axis, value, min, max }, Lang::En) => format!("With the work origin set on the machine, the drawing leaves its travel: line {line} sends it to {axis}={value:.1} mm in machine coordinates, while the machine spans {min:.1} to {max:.1} mm. Set the origin elsewhere on the material or move the drawing."),
            (R::LaserModeOnMill, Lang::Fr) => "Le mode laser ($32=1) est activé sur une fraiseuse : la broche s'arrêterait à chaque déplacement rapide et l'outil entrerait dans la matière avant d'avoir repris sa vitesse. Demandez au responsable de régler $32=0.".into(),
            (R::LaserModeOnMill, Lang::En) => "Laser mode ($32=1) is on, on a mill: the spindle would stop at every rapid move and the tool would enter the material before it is back up to speed. Ask the fab manager to set $32=0.".into(),
            (R::MaxSpeedUnknown, Lang::Fr) => "La vitesse maximale de la broche ($30) est inconnue ; impossible de vérifier le fichier. Reconnectez la machine.".into(),
            (R::MaxSpeedUnknown, Lang::En) => "The spindle's maximum speed ($30) is unknown, so the file cannot be checked. Connect the machine again.".into(),
            (R::SpindleTooFast { line, speed, max }, Lang::Fr) => format!("La ligne {line} demande une broche à S{speed} tr/min, plus que le maximum de la machine ($30={max}). Réglez la vitesse dans le logiciel de FAO."),
            (R::SpindleTooFast { line, speed, max }, Lang::En) => format!("Line {line} asks for the spindle at S{speed} rpm, more than the machine's maximum ($30={max}). Set the speed in the CAM software."),
            (R::NoCoolant { line, mist: true }, Lang::Fr) => format!("La ligne {line} demande l'arrosage par brouillard (M7), que cette machine n'a pas. Réexportez sans arrosage, ou demandez au responsable."),
            (R::NoCoolant { line, mist: true }, Lang::En) => format!("Line {line} asks for mist coolant (M7), which this machine does not have. Export again without coolant, or ask the fab manager."),
            (R::NoCoolant { line, mist: false }, Lang::Fr) => format!("La ligne {line} demande l'arrosage (M8), que cette machine n'a pas. Réexportez sans arrosage, ou demandez au responsable."),
            (R::NoCoolant { line, mist: false }, Lang::En) => format!("Line {line} asks for flood coolant (M8), which this machine does not have. Export again without coolant, or ask the fab manager."),
            (R::DepthTooLarge { line, span, travel }, Lang::Fr) => format!("Le fichier monte et descend de {span:.1} mm en Z (ligne {line}), plus que la course de la machine ({travel:.1} mm). Vérifiez la profondeur et la hauteur de dégagement dans le logiciel de FAO."),
            (R::DepthTooLarge { line, span, travel }, Lang::En) => format!("The file spans {span:.1} mm in Z (line {line}), more than the machine's travel ({travel:.1} mm). Check the depth and the clearance height in the CAM software."),
            (R::UnknowableBounds(line), Lang::Fr) => format!("La ligne {line} change le repère de la machine (G92, G10, G28, G30 ou G53) : Fabrique ne peut pas vérifier que le dessin reste dans la zone. Réexportez sans ces commandes."),
            (R::UnknowableBounds(line), Lang::En) => format!("Line {line} changes the machine's coordinates (G92, G10, G28, G30 or G53): Fabrique cannot check that the drawing stays in the area. Export again without them."),
            (R::SystemCommand(line), Lang::Fr) => format!("La ligne {line} est une commande de réglage « $ » : elle pourrait changer la machine pendant la découpe. Retirez-la du fichier."),
            (R::SystemCommand(line), Lang::En) => format!("Line {line} is a '$' settings command: it could change the machine during the cut. Remove it from the file."),
            (R::StaleConfirmation, Lang::Fr) => "La confirmation de présence devant la machine est trop ancienne. Appuyez de nouveau sur Démarrer, devant la machine.".into(),
            (R::StaleConfirmation, Lang::En) => "The confirmation that you are at the machine is too old. Press Start again, at the machine.".into(),
            (R::Empty, Lang::Fr) => "Le fichier ne contient aucune commande.".into(),
            (R::Empty, Lang::En) => "The file holds no commands.".into(),
        }
    }
}

/// What a GRBL machine's head carries: it decides how a job is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tool {
    /// A laser: `$32=1`, `S` is power.
    #[default]
    Laser,
    /// A mill's spindle: `$32=0`, `S` is speed in rpm; `M6` is a tool change.
    Spindle {
        /// The coolant the machine has.
        coolant: Coolant,
    },
}

/// The coolant a mill has, as its profile says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coolant {
    /// None: a file that asks for it is refused.
    #[default]
    None,
    /// Flood (`M8`).
    Flood,
    /// Flood and mist (`M8`, `M7`).
    FloodAndMist,
}

/// Checks a job for a machine carrying `tool`: [`check_laser_job`] or [`check_mill_job`].
pub fn check_job(
    program: &Program,
    settings: &Settings,
    area: WorkArea,
    work_offset: Option<[f64; 3]>,
    tool: Tool,
) -> Result<(), Refusal> {
    match tool {
        Tool::Laser => check_laser_job(program, settings, area, work_offset),
        Tool::Spindle { coolant } => check_mill_job(program, settings, area, work_offset, coolant),
    }
}

/// Checks a laser job against the machine's settings and work area: laser mode on, every
/// `S` at most `$30`, and every position inside the machine (see [`check_bounds`]).
pub fn check_laser_job(
    program: &Program,
    settings: &Settings,
    area: WorkArea,
    work_offset: Option<[f64; 3]>,
) -> Result<(), Refusal> {
    if program.lines().is_empty() {
        return Err(Refusal::Empty);
    }
    // Without laser mode GRBL stops and keeps the laser on at each change of S between moves
    // and fires at rest with M3 (`doc/markdown/laser_mode.md`).
    if settings.laser_mode() != Some(true) {
        return Err(Refusal::LaserModeOff);
    }
    if let Some(l) = program.lines().iter().find(|l| l.text.starts_with('$')) {
        return Err(Refusal::SystemCommand(l.number));
    }
    let max = settings.max_power().ok_or(Refusal::MaxPowerUnknown)?;
    let ext = program.extent();
    if let Some((power, line)) = ext.max_power
        && power > max
    {
        return Err(Refusal::PowerTooHigh { line, power, max });
    }
    check_bounds(&ext, settings, area, work_offset, false)
}

/// Checks a mill's job (all its parts, tool changes included): laser mode off, every `S`
/// at most `$30` rpm, coolant only if the machine has it, and every position inside the
/// machine, Z included (see [`check_bounds`]).
pub fn check_mill_job(
    program: &Program,
    settings: &Settings,
    area: WorkArea,
    work_offset: Option<[f64; 3]>,
    coolant: Coolant,
) -> Result<(), Refusal> {
    if program.lines().is_empty() {
        return Err(Refusal::Empty);
    }
    if settings.laser_mode() == Some(true) {
        return Err(Refusal::LaserModeOnMill);
    }
    if let Some(l) = program.lines().iter().find(|l| l.text.starts_with('$')) {
        return Err(Refusal::SystemCommand(l.number));
    }
    let max = settings.max_power().ok_or(Refusal::MaxSpeedUnknown)?;
    let ext = program.extent();
    if let Some((speed, line)) = ext.max_power
        && speed > max
    {
        return Err(Refusal::SpindleTooFast { line, speed, max });
    }
    let [mist, flood] = ext.coolant;
    if let Some(line) = mist.filter(|_| coolant != Coolant::FloodAndMist) {
        return Err(Refusal::NoCoolant { line, mist: true });
    }
    if let Some(line) = flood.filter(|_| coolant == Coolant::None) {
        return Err(Refusal::NoCoolant { line, mist: false });
    }
    check_bounds(&ext, settings, area, work_offset, true)
}

/// Every position inside the machine. With homing on and the work offset known (`WCO`,
/// GRBL's work position = machine position − offset), positions are checked where they
/// land in machine space ([`Settings::machine_space`]), wherever the work origin was set;
/// otherwise X and Y against the profile's work area and `$130`/`$131` from a work origin
/// at the lower-left corner, and (`with_z`, a mill) Z's span against `$132`: the origin is
/// on the material's top, wherever that is.
fn check_bounds(
    ext: &Extent,
    settings: &Settings,
    area: WorkArea,
    work_offset: Option<[f64; 3]>,
    with_z: bool,
) -> Result<(), Refusal> {
    if let Some(line) = ext.unknowable {
        return Err(Refusal::UnknowableBounds(line));
    }
    const EPS: f64 = 1e-6;
    let axes: &[(usize, char)] = if with_z {
        &[(0, 'X'), (1, 'Y'), (2, 'Z')]
    } else {
        &[(0, 'X'), (1, 'Y')]
    };
    let machine = |a: usize| Some((settings.machine_space(a)?, work_offset?[a]));
    if axes.iter().all(|(a, _)| machine(*a).is_some()) {
        for &(a, axis) in axes {
            let Some(((min, max), offset)) = machine(a) else {
                continue;
            };
            let outside = [ext.min[a], ext.max[a]]
                .into_iter()
                .flatten()
                .map(|(value, line)| (value + offset, line))
                .find(|(value, _)| *value < min - EPS || *value > max + EPS);
            if let Some((value, line)) = outside {
                return Err(Refusal::OutsideTravel {
                    line,
                    axis,
                    value,
                    min,
                    max,
                });
            }
        }
        return Ok(());
    }
    for (a, axis, area_len) in [(0, 'X', area.width), (1, 'Y', area.height)] {
        let limit = settings.max_travel(a).map_or(area_len, |t| t.min(area_len));
        if let Some((value, line)) = ext.min[a]
            && value < -EPS
        {
            return Err(Refusal::OutOfBounds {
                line,
                axis,
                value,
                limit,
            });
        }
        if let Some((value, line)) = ext.max[a]
            && value > limit + EPS
        {
            return Err(Refusal::OutOfBounds {
                line,
                axis,
                value,
                limit,
            });
        }
    }
    if with_z
        && let (Some((low, line)), Some((high, _)), Some(travel)) = (
            ext.min[2],
            ext.max[2],
            settings.max_travel(2).filter(|t| *t > 0.0),
        )
        && high - low > travel + EPS
    {
        return Err(Refusal::DepthTooLarge {
            line,
            span: high - low,
            travel,
        });
    }
    Ok(())
}
