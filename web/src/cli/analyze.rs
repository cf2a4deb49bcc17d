//! `fabrique analyze FILE [--machine NAME] [--json]`: what Fabrique reads in a job file, and
//! what it finds against a machine of the lab.

use fabrique_machines::files::embroidery::EmbroiderySummary;
use fabrique_machines::files::gcode::GcodeSummary;
use fabrique_machines::files::hpgl::HpglSummary;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The G-code file, or an embroidery design (DST, PES, EXP, JEF).
    pub file: PathBuf,
    /// A machine of the lab (its name) to check the file against.
    #[arg(long)]
    pub machine: Option<String>,
    /// Print the analysis as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the SVG top view (toolpath, or stitches in their thread colours) to this file.
    #[arg(long, value_name = "SVG")]
    pub preview: Option<PathBuf>,
    /// Language of the summary: `fr` or `en`.
    #[arg(long, default_value = "fr")]
    pub lang: String,
}

/// "45 s", "14 min", "1 h 43 min".
fn duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as i64;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", (secs + 30) / 60),
        _ => {
            let m = (secs + 30) / 60;
            format!("{} h {:02} min", m / 60, m % 60)
        }
    }
}

/// What a person reads of an embroidery design.
/// A cutting file in a few lines, in French or English.
pub fn hpgl_summary(s: &HpglSummary, en: bool) -> String {
    let t = |fr: &'static str, en_text: &'static str| if en { en_text } else { fr };
    let mut out = vec![
        format!(
            "{} {:.1} × {:.1} mm",
            t("Taille de la découpe :", "Cut size:"),
            s.width_mm,
            s.height_mm
        ),
        format!(
            "{} {:.2} m, {} {}, {:.2} m {}",
            t("Longueur découpée :", "Length cut:"),
            s.cut_mm / 1000.0,
            s.strokes,
            match (s.strokes, en) {
                (0 | 1, false) => "tracé",
                (_, false) => "tracés",
                (1, true) => "stroke",
                (_, true) => "strokes",
            },
            s.travel_mm / 1000.0,
            t("de déplacements lame levée", "of moves with the blade up"),
        ),
        format!(
            "{} {}",
            t("Durée estimée :", "Estimated time:"),
            duration(s.estimate_s)
        ),
    ];
    for f in &s.issues {
        let m = if en { &f.message.en } else { &f.message.fr };
        out.push(format!(
            "{} {}{} {m}",
            t("ligne", "line"),
            f.line,
            t("\u{a0}:", ":")
        ));
    }
    out.join("\n")
}

pub fn embroidery_summary(s: &EmbroiderySummary, en: bool) -> String {
    let t = |fr: &'static str, en_text: &'static str| if en { en_text } else { fr };
    let mut out = vec![
        format!(
            "{} {} {}, {} {}, {} {}, {} {}",
            t("Points\u{a0}:", "Stitches:"),
            s.stitches,
            t("points", "stitches"),
            s.jumps,
            t("sauts", "jumps"),
            s.trims,
            t("coupes", "trims"),
            s.color_changes,
            t("changements de couleur", "colour changes")
        ),
        format!(
            "{} {:.1} × {:.1} mm",
            t("Taille du motif\u{a0}:", "Design size:"),
            s.width_mm,
            s.height_mm
        ),
        format!(
            "{} {}",
            t("Durée estimée\u{a0}:", "Estimated time:"),
            duration(s.estimate_s)
        ),
    ];
    if !s.colors.is_empty() {
        let colors: Vec<String> = s
            .colors
            .iter()
            .map(|c| c.name.clone().unwrap_or_else(|| c.hex()))
            .collect();
        out.push(format!(
            "{} {}",
            t("Fils\u{a0}:", "Threads:"),
            colors.join(", ")
        ));
    }
    match &s.hoop_fit {
        Some(fit) => {
            if let Some(hoop) = &fit.smallest {
                out.push(format!(
                    "{} {:.0} × {:.0} mm",
                    t("Cadre à utiliser\u{a0}:", "Hoop to use:"),
                    hoop.width_mm,
                    hoop.height_mm
                ));
            }
            if let Some(m) = &fit.message {
                out.push(format!(
                    "{} {}",
                    t("À vérifier\u{a0}:", "To check:"),
                    if en { &m.en } else { &m.fr }
                ));
            } else {
                out.push(t("Rien à signaler.", "Nothing to report.").to_string());
            }
        }
        None => out.push(t("Rien à signaler.", "Nothing to report.").to_string()),
    }
    out.join("\n")
}

/// The summary a person reads.
pub fn summary(s: &GcodeSummary, en: bool) -> String {
    let mut out = Vec::new();
    let t = |fr: &str, en_text: &str| {
        if en {
            en_text.to_string()
        } else {
            fr.to_string()
        }
    };
    out.push(format!(
        "{} {} ({} {})",
        t("Lignes\u{a0}:", "Lines:"),
        s.lines,
        s.commands,
        t("commandes", "commands")
    ));
    let hm = duration;
    out.push(format!(
        "{} {}",
        t("Durée estimée\u{a0}:", "Estimated time:"),
        hm(s.time.total_s)
    ));
    let mut parts = vec![format!(
        "{} {}",
        t("mouvements", "motion"),
        hm(s.time.moves_s)
    )];
    if s.time.heating_s > 0.0 {
        parts.push(format!(
            "{} {}",
            t("chauffe", "heating"),
            hm(s.time.heating_s)
        ));
    }
    if s.time.dwell_s > 0.0 {
        parts.push(format!(
            "{} {}",
            t("pauses G4", "G4 dwells"),
            hm(s.time.dwell_s)
        ));
    }
    out.push(format!("  {}", parts.join(", ")));
    if s.pauses + s.filament_changes > 0 {
        out.push(format!(
            "  {} {}",
            s.pauses + s.filament_changes,
            t(
                "arrêt(s) où l'on attend une personne (M0, M600...), non compté(s)",
                "stop(s) waiting for a person (M0, M600...), not counted"
            )
        ));
    }
    if let Some(b) = &s.bbox {
        out.push(format!(
            "{} {:.1} × {:.1} × {:.1} mm",
            t("Taille de l'objet\u{a0}:", "Object size:"),
            b.max_x - b.min_x,
            b.max_y - b.min_y,
            b.max_z - b.min_z
        ));
    }
    if s.filament_mm > 0.0 {
        out.push(format!(
            "{} {:.2} m ({:.0} g), {} {}",
            t("Filament\u{a0}:", "Filament:"),
            s.filament_mm / 1000.0,
            s.filament_g,
            s.layers,
            t("couches", "layers")
        ));
    }
    if let Some(l) = &s.laser {
        out.push(format!(
            "{} {} ({:.1} m), {} {}",
            t("Laser allumé\u{a0}:", "Laser on:"),
            hm(l.on_time_s),
            l.path_mm / 1000.0,
            l.passes,
            t("passe(s)", "pass(es)")
        ));
    }
    if s.max_hotend_c > 0.0 || s.max_bed_c > 0.0 {
        out.push(format!(
            "{} {:.0} °C / {:.0} °C",
            t("Buse / plateau\u{a0}:", "Nozzle / bed:"),
            s.max_hotend_c,
            s.max_bed_c
        ));
    }
    if s.max_laser_power > 0.0 {
        out.push(format!(
            "{} S{:.0}",
            t("Puissance laser maximale\u{a0}:", "Highest laser power:"),
            s.max_laser_power
        ));
    }
    if let Some(slicer) = &s.slicer {
        let estimate = slicer.estimate_s.map(|e| {
            format!(
                ", {} {} h {:02} min",
                t("estimation du trancheur", "slicer's estimate"),
                e / 3600,
                (e % 3600) / 60
            )
        });
        out.push(format!(
            "{} {}{}",
            t("Trancheur\u{a0}:", "Slicer:"),
            slicer.name,
            estimate.unwrap_or_default()
        ));
    }
    if s.issues.is_empty() {
        out.push(t("Rien à signaler.", "Nothing to report."));
    } else {
        out.push(t("À vérifier\u{a0}:", "To check:"));
        for issue in &s.issues {
            out.push(format!(
                "  - {}",
                if en {
                    &issue.message.en
                } else {
                    &issue.message.fr
                }
            ));
        }
    }
    out.join("\n")
}

/// What the fit rule says of the file on the machine named: "fits", or each reason not.
pub fn fit_summary(machine: &str, misfits: &[(String, String)], en: bool) -> String {
    if misfits.is_empty() {
        return if en {
            format!("Fits {machine}.")
        } else {
            format!("Convient à {machine}.")
        };
    }
    let mut out = vec![if en {
        format!("Does not fit {machine}:")
    } else {
        format!("Ne convient pas à {machine}\u{a0}:")
    }];
    out.extend(misfits.iter().map(|(_, text)| format!("  - {text}")));
    out.join("\n")
}
