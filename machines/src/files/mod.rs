//! Job files: what Fabrique reads in them before a job is scheduled.
//!
//! - [`gcode`]: G-code for printers, lasers and mills, read in one pass in constant memory:
//!   our own time estimate from a motion model, material, size, layers, slicer metadata and
//!   thumbnails, an SVG preview, findings that hold whatever the machine, and what the file
//!   asks of a machine, with messages in French and English.
//! - [`embroidery`]: DST, PES/PEC, EXP and JEF designs: stitches, jumps, trims, colour
//!   changes and threads, size and hoop fit, sewing time, an SVG preview; DST writing.
//! - [`hpgl`]: HP-GL for vinyl cutters: extent, lengths cut and travelled, time, whether
//!   the cuts stay on the media, an SVG preview; SVG drawings converted to HP-GL.
//!
//! [`read_job_file`] tells them apart and returns a [`FileSummary`]: what a job keeps of
//! its file, stored as JSON and read back as the same type. Whether a file may run on a
//! machine is not decided here: the controller's fit rule compares a summary with a machine.

pub mod embroidery;
pub mod gcode;
pub mod hpgl;

use serde::{Deserialize, Serialize};
use std::io::{BufReader, Read};
use std::path::Path;

/// What was read in a job file. Stored as JSON with its `kind` (`gcode`, `embroidery` or
/// `hpgl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileSummary {
    Gcode(Box<gcode::GcodeSummary>),
    Embroidery(Box<embroidery::EmbroiderySummary>),
    Hpgl(Box<hpgl::HpglSummary>),
}

impl FileSummary {
    /// Our own estimate, seconds.
    pub fn estimate_s(&self) -> i64 {
        match self {
            FileSummary::Gcode(s) => s.estimate_s,
            FileSummary::Embroidery(s) => s.estimate_s.round() as i64,
            FileSummary::Hpgl(s) => s.estimate_s.round() as i64,
        }
    }

    /// Findings that hold whatever the machine (none for a design).
    pub fn issues(&self) -> &[gcode::Finding] {
        match self {
            FileSummary::Gcode(s) => &s.issues,
            FileSummary::Embroidery(_) => &[],
            FileSummary::Hpgl(s) => &s.issues,
        }
    }
}

/// A file read, and the pictures kept out of its summary.
#[derive(Debug)]
pub struct JobFile {
    pub summary: FileSummary,
    pub preview_svg: Option<String>,
    pub thumbnail_png: Option<Vec<u8>>,
}

/// Why a file cannot be used as a job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unreadable {
    #[error("the file could not be read: {0}")]
    Io(String),
    #[error("binary content, not G-code")]
    Binary,
    #[error("no G-code command")]
    NoCommands,
    #[error("{}", .0.en)]
    Embroidery(embroidery::Message),
    #[error("no HP-GL instruction")]
    NoHpgl,
}

impl Unreadable {
    /// What a person reads: (French, English).
    pub fn message(&self) -> (String, String) {
        match self {
            Unreadable::Io(e) => (
                format!("fichier illisible : {e}"),
                format!("unreadable file: {e}"),
            ),
            Unreadable::Binary => (
                "ce n'est pas un fichier G-code (contenu binaire)".into(),
                "this is not a G-code file (binary content)".into(),
            ),
            Unreadable::NoCommands => (
                "le fichier ne contient aucune commande G-code".into(),
                "the file holds no G-code command".into(),
            ),
            Unreadable::Embroidery(m) => (m.fr.clone(), m.en.clone()),
            Unreadable::NoHpgl => (
                "le fichier ne contient aucune instruction HP-GL".into(),
                "the file holds no HP-GL instruction".into(),
            ),
        }
    }
}

fn io(e: impl std::fmt::Display) -> Unreadable {
    Unreadable::Io(e.to_string())
}

/// Reads the job file at `path`, sent as `file_name`: an embroidery design (by its
/// signature, then its name), HP-GL for a cutter (`.plt`, `.hpgl`, or content that starts as
/// HP-GL does) or G-code, read incrementally (a 500 MB file is never loaded whole).
/// `gcode_limits`, `embroidery_machine` and `cutter` tune the estimates, the hoop advice and
/// the media check to a machine; `title` is the preview's accessible name.
pub fn read_job_file(
    path: &Path,
    file_name: &str,
    gcode_limits: Option<&gcode::Limits>,
    embroidery_machine: &embroidery::EmbroideryMachine,
    cutter: &hpgl::CutterSettings,
    title: &str,
) -> Result<JobFile, Unreadable> {
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut head = [0u8; 4096];
    let n = file.read(&mut head).map_err(io)?;
    if let Some(format) = embroidery::Format::detect(Some(file_name), &head[..n]) {
        let file = std::fs::File::open(path).map_err(io)?;
        let design =
            embroidery::read(file, format).map_err(|e| Unreadable::Embroidery(e.message()))?;
        return Ok(JobFile {
            summary: FileSummary::Embroidery(Box::new(embroidery::analyze(
                &design,
                embroidery_machine,
            ))),
            preview_svg: Some(embroidery::preview_svg(&design, title)),
            thumbnail_png: None,
        });
    }
    if is_hpgl(file_name, &head[..n]) {
        // A binary file renamed .plt is not worth reading to its end.
        if head[..n].contains(&0) {
            return Err(Unreadable::NoHpgl);
        }
        return read_hpgl(path, cutter, title);
    }
    // A binary file renamed .gcode: refuse it before reading it all.
    if head[..n].contains(&0) {
        return Err(Unreadable::Binary);
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let silent = gcode_limits.is_some_and(|l| l.silent_mode);
    let options = gcode::Options {
        slicer_limits: gcode::slicer_config::read(&mut file, silent).map_err(io)?,
        preview: Some(gcode::PreviewOptions {
            title: title.to_string(),
            ..gcode::PreviewOptions::default()
        }),
        thumbnail: true,
    };
    let analysis = gcode::analyze_with(
        BufReader::with_capacity(256 * 1024, file),
        gcode_limits,
        &options,
    )
    .map_err(io)?;
    if analysis.summary.commands == 0 {
        return Err(Unreadable::NoCommands);
    }
    Ok(JobFile {
        summary: FileSummary::Gcode(Box::new(analysis.summary)),
        preview_svg: analysis.preview_svg,
        thumbnail_png: analysis.thumbnail.map(|t| t.png),
    })
}

fn is_hpgl(file_name: &str, head: &[u8]) -> bool {
    let lower = file_name.to_ascii_lowercase();
    let named = [".plt", ".hpgl", ".hpg", ".hgl"]
        .iter()
        .any(|e| lower.ends_with(e));
    named || hpgl::looks_like_hpgl(head)
}

fn read_hpgl(
    path: &Path,
    cutter: &hpgl::CutterSettings,
    title: &str,
) -> Result<JobFile, Unreadable> {
    let file = std::fs::File::open(path).map_err(io)?;
    let preview = hpgl::PreviewOptions {
        title: title.to_string(),
        ..hpgl::PreviewOptions::default()
    };
    let analysis = hpgl::analyze(
        BufReader::with_capacity(256 * 1024, file),
        cutter,
        Some(&preview),
    )
    .map_err(io)?;
    if analysis.summary.commands == 0 {
        return Err(Unreadable::NoHpgl);
    }
    Ok(JobFile {
        summary: FileSummary::Hpgl(Box::new(analysis.summary)),
        preview_svg: analysis.preview_svg,
        thumbnail_png: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reads_back_as_the_same_type_with_its_kind() {
        let s = gcode::analyze(&b"M104 S215\nM83\nG1 X10 Y10 E1 F1200\nM500\n"[..], None).unwrap();
        let summary = FileSummary::Gcode(Box::new(s));
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["kind"], "gcode");
        assert_eq!(json["uses"]["printer"]["command"], "M104");
        let back: FileSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, summary);
        assert_eq!(back.issues()[0].code, "forbidden_command");
    }

    #[test]
    fn a_plt_file_or_hpgl_content_reads_as_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job");
        std::fs::write(&path, b"IN;SP1;PU0,0;PD400,0,400,400;PU;").unwrap();
        let machine = embroidery::EmbroideryMachine::default();
        for name in ["sticker.plt", "sticker.HPGL", "sticker.txt"] {
            let file =
                read_job_file(&path, name, None, &machine, &Default::default(), "t").unwrap();
            let FileSummary::Hpgl(s) = &file.summary else {
                panic!("{name}: {:?}", file.summary);
            };
            assert_eq!(s.cut_mm, 20.0);
            assert!(file.preview_svg.is_some());
            let json = serde_json::to_value(&file.summary).unwrap();
            assert_eq!(json["kind"], "hpgl");
            assert_eq!(
                serde_json::from_value::<FileSummary>(json).unwrap(),
                file.summary
            );
        }
        std::fs::write(&path, b"").unwrap();
        let e =
            read_job_file(&path, "junk.plt", None, &machine, &Default::default(), "t").unwrap_err();
        assert_eq!(e, Unreadable::NoHpgl);
        std::fs::write(
            &path,
            b"G28
G1 X1
",
        )
        .unwrap();
        let file = read_job_file(
            &path,
            "part.gcode",
            None,
            &machine,
            &Default::default(),
            "t",
        )
        .unwrap();
        assert!(matches!(file.summary, FileSummary::Gcode(_)));
    }

    #[test]
    fn a_design_reads_back_with_its_threads() {
        let mut design = embroidery::Design::new();
        design
            .stitch(0, 0)
            .stitch(100, 50)
            .color_change()
            .stitch(200, 80);
        design.threads = vec![embroidery::Thread {
            rgb: [0x12, 0xab, 0xef],
            name: Some("Bleu".into()),
            catalog: None,
        }];
        let summary = FileSummary::Embroidery(Box::new(embroidery::analyze(
            &design,
            &embroidery::EmbroideryMachine::default(),
        )));
        let json = serde_json::to_string(&summary).unwrap();
        assert!(json.starts_with(r#"{"kind":"embroidery""#), "{json}");
        let back: FileSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, summary);
        assert!(
            serde_json::from_str::<embroidery::Thread>(
                r##"{"hex":"#12ab","name":null,"catalog":null}"##
            )
            .is_err()
        );
    }
}
