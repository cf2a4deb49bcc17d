//! What GRBL's numbered `error:N` and `ALARM:N` replies mean, and what a person should do.
//!
//! GRBL 1.1 prints only numbers (`error:22`, `ALARM:2`); GRBL 0.9 printed short texts
//! (`error: Undefined feed rate`, `ALARM: Soft limit`). The tables below give every code GRBL
//! 1.1 defines (errors 1-38, alarms 1-10) a short name, used to recognise 0.9 texts, and a
//! message in French and in English that says what to do, written for fablab members rather
//! than for firmware developers. Meanings follow gnea/grbl `doc/csv/error_codes_en_US.csv`
//! and `alarm_codes_en_US.csv`; the wording is ours.

/// A language a person reads the messages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Français (the default for the lab's pages).
    Fr,
    /// English.
    En,
}

/// Whether a code came from `error:N` or `ALARM:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// A line was refused (`error:N`); GRBL keeps running what it already had.
    Error,
    /// The machine locked itself (`ALARM:N`); motion stopped.
    Alarm,
}

/// One entry of the code tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The number GRBL prints.
    pub code: u8,
    /// A short name; also the text GRBL 0.9 printed instead of the number, where it had one.
    pub name: &'static str,
    /// What happened and what to do, in French.
    pub fr: &'static str,
    /// What happened and what to do, in English.
    pub en: &'static str,
}

impl CodeInfo {
    /// The message in `lang`.
    pub fn message(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::Fr => self.fr,
            Lang::En => self.en,
        }
    }
}

const fn info(code: u8, name: &'static str, fr: &'static str, en: &'static str) -> CodeInfo {
    CodeInfo { code, name, fr, en }
}

/// Every `error:N` of GRBL 1.1, indexed by `N - 1`. Codes 18 and 19 are unused by GRBL 1.1;
/// they are kept so that a variant firmware that sends them still gets a useful message.
pub const ERRORS: [CodeInfo; 38] = [
    info(
        1,
        "Expected command letter",
        "Une ligne du fichier contient un nombre sans lettre devant. Le fichier est abîmé : réexportez-le depuis le logiciel de découpe.",
        "A line of the file holds a number with no letter before it. The file is damaged: export it again from the cutting software.",
    ),
    info(
        2,
        "Bad number format",
        "Une valeur du fichier est absente ou mal écrite. Réexportez le fichier ; si l'erreur revient, montrez la ligne à un animateur.",
        "A value in the file is missing or badly written. Export the file again; if the error comes back, show the line to a staff member.",
    ),
    info(
        3,
        "Invalid statement",
        "La machine ne connaît pas cette commande « $ ». Vérifiez l'orthographe de la commande ; une commande de réglage n'a rien à faire dans un fichier de découpe.",
        "The machine does not know this '$' command. Check its spelling; a settings command does not belong in a cutting file.",
    ),
    info(
        4,
        "Value < 0",
        "Une valeur négative a été donnée là où la machine attend un nombre positif. Corrigez le réglage ou le fichier.",
        "A negative value was given where the machine expects a positive number. Correct the setting or the file.",
    ),
    info(
        5,
        "Setting disabled",
        "La prise d'origine ($H) n'est pas activée sur cette machine. Demandez au responsable de l'atelier d'activer $22 ou placez la tête à la main.",
        "Homing ($H) is not enabled on this machine. Ask the fab manager to enable $22, or position the head by hand.",
    ),
    info(
        6,
        "Value < 3 usec",
        "La durée d'impulsion des moteurs doit être d'au moins 3 microsecondes. Remettez $0 à 3 ou plus.",
        "The motor step pulse must last at least 3 microseconds. Set $0 back to 3 or more.",
    ),
    info(
        7,
        "EEPROM read fail. Using defaults",
        "La machine a perdu une partie de ses réglages et a repris les valeurs d'usine. Faites vérifier tous les réglages ($$) par le responsable avant de découper.",
        "The machine lost part of its settings and went back to factory values. Have the fab manager check every setting ($$) before cutting.",
    ),
    info(
        8,
        "Not idle",
        "Cette commande n'est possible que machine à l'arrêt. Attendez la fin du travail ou arrêtez-le, puis recommencez.",
        "This command only works when the machine is idle. Wait for the job to end or stop it, then try again.",
    ),
    info(
        9,
        "G-code lock",
        "La machine est verrouillée par une alarme : elle refuse les mouvements. Vérifiez la machine, puis faites la prise d'origine ($H) ou déverrouillez ($X).",
        "The machine is locked by an alarm and refuses moves. Check the machine, then home it ($H) or unlock it ($X).",
    ),
    info(
        10,
        "Homing not enabled",
        "Les limites logicielles demandent la prise d'origine. Activez d'abord $22=1, puis $20=1.",
        "Soft limits need homing. Enable $22=1 first, then $20=1.",
    ),
    info(
        11,
        "Line overflow",
        "Une ligne du fichier est trop longue pour la machine (80 caractères au plus) : elle n'a pas été exécutée. Réexportez avec moins de décimales.",
        "A line of the file is too long for the machine (80 characters at most) and was not run. Export again with fewer decimals.",
    ),
    info(
        12,
        "Step rate > 30kHz",
        "Ce réglage ferait tourner les moteurs trop vite pour la carte. Baissez la vitesse maximale ($110-$112) ou les pas par millimètre.",
        "This setting would drive the motors faster than the board can. Lower the maximum rate ($110-$112) or the steps per millimetre.",
    ),
    info(
        13,
        "Check Door",
        "Le capot de la machine est ouvert. Fermez-le, puis reprenez.",
        "The machine's lid is open. Close it, then resume.",
    ),
    info(
        14,
        "Line length exceeded",
        "La ligne de démarrage ou l'information enregistrée est trop longue et n'a pas été gardée. Raccourcissez-la.",
        "The start-up line or build information is too long and was not stored. Make it shorter.",
    ),
    info(
        15,
        "Travel exceeded",
        "Le déplacement manuel demandé sort de la zone de travail ; il a été ignoré. Déplacez la tête moins loin.",
        "The requested jog goes outside the work area and was ignored. Move the head a shorter distance.",
    ),
    info(
        16,
        "Invalid jog command",
        "La commande de déplacement manuel est mal formée. Utilisez les boutons de déplacement de Fabrique.",
        "The jog command is malformed. Use Fabrique's jog buttons.",
    ),
    info(
        17,
        "Laser mode requires PWM output",
        "Le mode laser demande une sortie de puissance réglable (PWM) que cette carte n'a pas. Faites vérifier le micrologiciel par le responsable.",
        "Laser mode needs an adjustable power (PWM) output that this board lacks. Have the fab manager check the firmware.",
    ),
    info(
        18,
        "Unused code 18",
        "Code d'erreur 18 inconnu de GRBL 1.1 : la machine a sans doute un micrologiciel dérivé. Notez le code et prévenez le responsable.",
        "Error code 18 is not used by GRBL 1.1: the machine probably runs a derived firmware. Write the code down and tell the fab manager.",
    ),
    info(
        19,
        "Unused code 19",
        "Code d'erreur 19 inconnu de GRBL 1.1 : la machine a sans doute un micrologiciel dérivé. Notez le code et prévenez le responsable.",
        "Error code 19 is not used by GRBL 1.1: the machine probably runs a derived firmware. Write the code down and tell the fab manager.",
    ),
    info(
        20,
        "Unsupported command",
        "Le fichier contient une commande que la machine ne connaît pas. Réexportez-le pour GRBL depuis le logiciel de découpe.",
        "The file holds a command the machine does not know. Export it again for GRBL from the cutting software.",
    ),
    info(
        21,
        "Modal group violation",
        "Une ligne demande deux choses contradictoires (par exemple deux modes de déplacement). Réexportez le fichier.",
        "A line asks for two contradicting things (for example two motion modes). Export the file again.",
    ),
    info(
        22,
        "Undefined feed rate",
        "Aucune vitesse (F) n'a été donnée avant un déplacement. Réglez la vitesse dans le logiciel de découpe et réexportez.",
        "No speed (F) was given before a move. Set the speed in the cutting software and export again.",
    ),
    info(
        23,
        "Integer value required",
        "Une commande attend un nombre entier. Réexportez le fichier.",
        "A command expects a whole number. Export the file again.",
    ),
    info(
        24,
        "Two axis commands in one block",
        "Deux commandes de déplacement se retrouvent sur une seule ligne. Souvent, un retour à la ligne a été perdu (câble ou liaison) : vérifiez le câble USB et relancez.",
        "Two move commands ended up on one line. Often a line break was lost on the link: check the USB cable and start again.",
    ),
    info(
        25,
        "Repeated word",
        "Une même lettre est répétée sur une ligne. Réexportez le fichier.",
        "The same letter appears twice on one line. Export the file again.",
    ),
    info(
        26,
        "No axis words",
        "Un déplacement n'indique aucune position. Réexportez le fichier.",
        "A move gives no position. Export the file again.",
    ),
    info(
        27,
        "Invalid line number",
        "Un numéro de ligne (N) est invalide. Retirez les numéros de ligne à l'export.",
        "A line number (N) is invalid. Turn off line numbers when exporting.",
    ),
    info(
        28,
        "Missing value word",
        "Une commande manque d'une valeur obligatoire. Réexportez le fichier.",
        "A command is missing a required value. Export the file again.",
    ),
    info(
        29,
        "G59.x not supported",
        "Les repères G59.1 à G59.3 ne sont pas gérés par GRBL. Utilisez G54 à G59.",
        "Work offsets G59.1 to G59.3 are not supported by GRBL. Use G54 to G59.",
    ),
    info(
        30,
        "G53 needs G0 or G1",
        "G53 ne s'utilise qu'avec G0 ou G1. Corrigez le fichier.",
        "G53 only works with G0 or G1. Correct the file.",
    ),
    info(
        31,
        "Unused axis words",
        "Une ligne donne une position sans commande qui l'utilise. Réexportez le fichier.",
        "A line gives a position that no command uses. Export the file again.",
    ),
    info(
        32,
        "Arc needs in-plane axis",
        "Un arc (G2/G3) n'a pas de point d'arrivée dans le plan choisi. Réexportez le fichier, ou exportez les courbes en segments.",
        "An arc (G2/G3) has no end point in the chosen plane. Export the file again, or export curves as segments.",
    ),
    info(
        33,
        "Invalid target",
        "La cible d'un déplacement est invalide (souvent un arc impossible). Réexportez les courbes en segments.",
        "A move's target is invalid (often an impossible arc). Export curves as segments.",
    ),
    info(
        34,
        "Invalid arc radius",
        "Le rayon d'un arc est impossible. Réexportez les courbes en segments.",
        "An arc's radius is impossible. Export curves as segments.",
    ),
    info(
        35,
        "Arc needs in-plane offset",
        "Un arc (G2/G3) n'a pas de centre dans le plan choisi. Réexportez les courbes en segments.",
        "An arc (G2/G3) has no centre in the chosen plane. Export curves as segments.",
    ),
    info(
        36,
        "Unused value words",
        "Une ligne contient des valeurs qu'aucune commande n'utilise. Réexportez le fichier.",
        "A line holds values that no command uses. Export the file again.",
    ),
    info(
        37,
        "G43.1 on wrong axis",
        "La correction d'outil G43.1 vise un axe non prévu. Retirez G43.1 du fichier.",
        "The G43.1 tool offset targets an axis not configured for it. Remove G43.1 from the file.",
    ),
    info(
        38,
        "Tool number too large",
        "Le numéro d'outil dépasse ce que la machine accepte. Retirez ou corrigez la commande T.",
        "The tool number is larger than the machine accepts. Remove or correct the T command.",
    ),
];

/// Every `ALARM:N` of GRBL 1.1, indexed by `N - 1`.
pub const ALARMS: [CodeInfo; 10] = [
    info(
        1,
        "Hard limit",
        "Un capteur de fin de course a été touché : la machine s'est arrêtée net et ne sait plus où elle est. Vérifiez que rien ne bloque la tête, puis refaites la prise d'origine ($H).",
        "A limit switch was hit: the machine stopped dead and no longer knows where it is. Check nothing blocks the head, then home again ($H).",
    ),
    info(
        2,
        "Soft limit",
        "Le fichier sort de la zone de travail : la machine s'est arrêtée avant, sans perdre sa position. Replacez le dessin dans la zone, puis déverrouillez ($X).",
        "The file goes outside the work area: the machine stopped before, keeping its position. Move the drawing back into the area, then unlock ($X).",
    ),
    info(
        3,
        "Abort during cycle",
        "La machine a été réinitialisée en plein mouvement : sa position est peut-être perdue. Refaites la prise d'origine ($H) avant de relancer.",
        "The machine was reset while moving: its position may be lost. Home again ($H) before starting another job.",
    ),
    info(
        4,
        "Probe fail",
        "Le palpeur était déjà déclenché avant la mesure. Vérifiez le palpeur et son câble, puis recommencez.",
        "The probe was already triggered before probing. Check the probe and its cable, then try again.",
    ),
    info(
        5,
        "Probe fail",
        "Le palpeur n'a rien touché sur la course prévue. Rapprochez la pièce ou allongez la course, puis recommencez.",
        "The probe touched nothing within its travel. Bring the work closer or lengthen the travel, then try again.",
    ),
    info(
        6,
        "Homing fail",
        "La prise d'origine a été interrompue. Relancez-la ($H) sans toucher à la machine.",
        "Homing was interrupted. Run it again ($H) without touching the machine.",
    ),
    info(
        7,
        "Homing fail",
        "Le capot a été ouvert pendant la prise d'origine. Fermez-le et relancez $H.",
        "The lid was opened during homing. Close it and run $H again.",
    ),
    info(
        8,
        "Homing fail",
        "Après la prise d'origine, la tête n'a pas pu quitter le capteur. Vérifiez le câblage des capteurs ou faites augmenter le dégagement ($27).",
        "After homing, the head could not move off the limit switch. Check the switch wiring or have the pull-off ($27) increased.",
    ),
    info(
        9,
        "Homing fail",
        "La tête n'a pas trouvé son capteur de fin de course. Vérifiez que la courroie et le capteur fonctionnent, puis relancez $H.",
        "The head did not find its limit switch. Check the belt and the switch, then run $H again.",
    ),
    info(
        10,
        "Homing fail",
        "Sur une machine à double moteur, le second capteur n'a pas été trouvé pendant la prise d'origine. Vérifiez les deux capteurs, puis relancez $H.",
        "On a dual-motor machine, the second limit switch was not found during homing. Check both switches, then run $H again.",
    ),
];

/// The table entry for `code`, if GRBL 1.1 defines it.
pub fn lookup(kind: CodeKind, code: u8) -> Option<&'static CodeInfo> {
    let table: &'static [CodeInfo] = match kind {
        CodeKind::Error => &ERRORS,
        CodeKind::Alarm => &ALARMS,
    };
    table.iter().find(|i| i.code == code)
}

/// What `error:N` or `ALARM:N` means and what to do, in `lang`. Unknown codes get a message
/// that still tells the person what to do.
pub fn message(kind: CodeKind, code: u8, lang: Lang) -> &'static str {
    match (lookup(kind, code), kind, lang) {
        (Some(i), _, _) => i.message(lang),
        (None, CodeKind::Error, Lang::Fr) => {
            "La machine a refusé une ligne avec un code inconnu. Notez le code et prévenez le responsable."
        }
        (None, CodeKind::Error, Lang::En) => {
            "The machine refused a line with an unknown code. Write the code down and tell the fab manager."
        }
        (None, CodeKind::Alarm, Lang::Fr) => {
            "La machine s'est mise en alarme avec un code inconnu. Ne relancez pas : prévenez le responsable."
        }
        (None, CodeKind::Alarm, Lang::En) => {
            "The machine raised an alarm with an unknown code. Do not restart: tell the fab manager."
        }
    }
}

/// The code a GRBL 0.9 text reply (`error: Bad number format`, `ALARM: Hard limit`) stands
/// for, matched on the short names; `None` when the text is not one GRBL 0.9 printed.
pub fn code_from_text(kind: CodeKind, text: &str) -> Option<u8> {
    let table: &'static [CodeInfo] = match kind {
        CodeKind::Error => &ERRORS,
        CodeKind::Alarm => &ALARMS,
    };
    let text = text.trim();
    table
        .iter()
        .find(|i| text.eq_ignore_ascii_case(i.name) || text.starts_with(i.name))
        .map(|i| i.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_and_alarm_code_has_a_message_in_both_languages() {
        for code in 1..=38u8 {
            let i = lookup(CodeKind::Error, code).map(|i| i.code);
            assert_eq!(i, Some(code));
            assert!(message(CodeKind::Error, code, Lang::Fr).len() > 20);
            assert!(message(CodeKind::Error, code, Lang::En).len() > 20);
            assert_ne!(
                message(CodeKind::Error, code, Lang::Fr),
                message(CodeKind::Error, code, Lang::En)
            );
        }
        for code in 1..=10u8 {
            assert_eq!(lookup(CodeKind::Alarm, code).map(|i| i.code), Some(code));
            assert!(message(CodeKind::Alarm, code, Lang::Fr).len() > 20);
            assert!(message(CodeKind::Alarm, code, Lang::En).len() > 20);
        }
    }

    #[test]
    fn unknown_codes_still_say_what_to_do() {
        assert!(message(CodeKind::Error, 99, Lang::En).contains("fab manager"));
        assert!(message(CodeKind::Alarm, 0, Lang::Fr).contains("responsable"));
    }

    #[test]
    fn grbl_0_9_texts_map_to_their_codes() {
        assert_eq!(
            code_from_text(CodeKind::Error, "Bad number format"),
            Some(2)
        );
        assert_eq!(code_from_text(CodeKind::Alarm, "Hard limit"), Some(1));
        assert_eq!(code_from_text(CodeKind::Alarm, "Soft limit"), Some(2));
        assert_eq!(code_from_text(CodeKind::Error, "nonsense"), None);
    }
}
