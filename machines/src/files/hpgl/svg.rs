//! An SVG drawing turned into HP-GL for a vinyl cutter.
//!
//! usvg resolves what makes SVG hard (styles, `use`, units, `viewBox`, nested transforms)
//! and gives plain paths with their absolute transforms. Each path is mapped to millimetres
//! (user units at 96 per inch, the CSS pixel usvg reduces every unit to), the Y axis flipped
//! (SVG's Y points down, the cutter's up) so the drawing's lower-left corner sits at the
//! origin, then flattened by kurbo into lines no farther than one plotter unit (0.025 mm)
//! from the curve, and rounded to plotter units.
//!
//! Every outline is cut, filled or stroked alike: a cutter follows edges. Text is not
//! converted (usvg is built without fonts); images are not cut. Both are reported.

use std::fmt::Write as _;

use kurbo::{Affine, BezPath, PathEl, Point};

use super::UNITS_PER_MM;
use crate::files::gcode::Message;

/// Millimetres per CSS pixel (usvg's user unit).
const MM_PER_PX: f64 = 25.4 / 96.0;
/// Flattening tolerance: one plotter unit.
const TOLERANCE_MM: f64 = 1.0 / UNITS_PER_MM;
/// Largest SVG accepted, bytes: a drawing for a cutter is rarely above a few MB.
pub const MAX_SVG_BYTES: usize = 32 * 1024 * 1024;

/// A drawing converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The HP-GL program: `IN;`, then per outline a `PU` to its start and a `PD` list, then
    /// `PU;` (blade up) at the end.
    pub hpgl: String,
    /// The drawing's size (its `width`/`height`, or its `viewBox`), mm.
    pub width_mm: f64,
    pub height_mm: f64,
    /// Outlines cut.
    pub outlines: usize,
    /// What was left out, for the person who brought the drawing.
    pub notes: Vec<Message>,
}

/// Why a drawing cannot be converted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SvgError {
    #[error("the SVG is larger than {} MB", MAX_SVG_BYTES / 1024 / 1024)]
    TooLarge,
    #[error("not a readable SVG: {0}")]
    Parse(String),
    #[error("the drawing has nothing to cut")]
    Empty,
}

impl SvgError {
    /// What a person reads: (French, English).
    pub fn message(&self) -> (String, String) {
        match self {
            SvgError::TooLarge => (
                format!(
                    "le dessin dépasse {} Mo : simplifiez-le avant de l'envoyer",
                    MAX_SVG_BYTES / 1024 / 1024
                ),
                format!(
                    "the drawing is over {} MB: simplify it before sending it",
                    MAX_SVG_BYTES / 1024 / 1024
                ),
            ),
            SvgError::Parse(e) => (
                format!("ce n'est pas un SVG lisible ({e})"),
                format!("this is not a readable SVG ({e})"),
            ),
            SvgError::Empty => (
                "le dessin ne contient aucun tracé à découper".into(),
                "the drawing holds no outline to cut".into(),
            ),
        }
    }
}

/// Converts the SVG document `data` into HP-GL at 40 units per mm.
pub fn svg_to_hpgl(data: &[u8]) -> Result<Converted, SvgError> {
    if data.len() > MAX_SVG_BYTES {
        return Err(SvgError::TooLarge);
    }
    let options = usvg::Options::default();
    let tree = usvg::Tree::from_data(data, &options).map_err(|e| SvgError::Parse(e.to_string()))?;
    let size = tree.size();
    let width_mm = f64::from(size.width()) * MM_PER_PX;
    let height_mm = f64::from(size.height()) * MM_PER_PX;
    // User units to mm, then Y flipped about the drawing's height.
    let to_plotter = Affine::new([MM_PER_PX, 0.0, 0.0, -MM_PER_PX, 0.0, height_mm]);

    let mut out = Converter {
        hpgl: String::from("IN;SP1;"),
        outlines: 0,
        images: 0,
        last: None,
    };
    out.group(tree.root(), to_plotter);
    let mut notes = Vec::new();
    // usvg without its `text` feature drops text; say so rather than cut a drawing short.
    if contains(data, b"<text") {
        notes.push(Message {
            fr: "le texte du dessin n'est pas découpé : convertissez-le en tracés (Inkscape : Chemin > Objet en chemin)".into(),
            en: "the drawing's text is not cut: convert it to paths (Inkscape: Path > Object to Path)".into(),
        });
    }
    if out.images > 0 {
        notes.push(Message {
            fr: "les images du dessin ne sont pas découpées : vectorisez-les".into(),
            en: "the drawing's images are not cut: trace them into paths".into(),
        });
    }
    if out.outlines == 0 {
        return Err(SvgError::Empty);
    }
    out.hpgl.push_str("PU;SP0;\n");
    Ok(Converted {
        hpgl: out.hpgl,
        width_mm,
        height_mm,
        outlines: out.outlines,
        notes,
    })
}

struct Converter {
    hpgl: String,
    outlines: usize,
    images: usize,
    /// The last point written, in plotter units.
    last: Option<(i64, i64)>,
}

impl Converter {
    fn group(&mut self, group: &usvg::Group, to_plotter: Affine) {
        for node in group.children() {
            match node {
                usvg::Node::Group(g) => self.group(g, to_plotter),
                usvg::Node::Path(p) => {
                    let t = p.abs_transform();
                    let affine = Affine::new([
                        f64::from(t.sx),
                        f64::from(t.ky),
                        f64::from(t.kx),
                        f64::from(t.sy),
                        f64::from(t.tx),
                        f64::from(t.ty),
                    ]);
                    self.path(p.data(), to_plotter * affine);
                }
                usvg::Node::Image(_) => self.images += 1,
                usvg::Node::Text(_) => {}
            }
        }
    }

    fn path(&mut self, data: &usvg::tiny_skia_path::Path, transform: Affine) {
        let mut bez = BezPath::new();
        for segment in data.segments() {
            use usvg::tiny_skia_path::PathSegment as S;
            let p = |p: usvg::tiny_skia_path::Point| Point::new(f64::from(p.x), f64::from(p.y));
            match segment {
                S::MoveTo(a) => bez.move_to(p(a)),
                S::LineTo(a) => bez.line_to(p(a)),
                S::QuadTo(a, b) => bez.quad_to(p(a), p(b)),
                S::CubicTo(a, b, c) => bez.curve_to(p(a), p(b), p(c)),
                S::Close => bez.close_path(),
            }
        }
        bez.apply_affine(transform);
        let mut start = None;
        let mut pd = false;
        kurbo::flatten(bez, TOLERANCE_MM, |el| match el {
            PathEl::MoveTo(a) => {
                if pd {
                    self.hpgl.push(';');
                }
                start = Some(a);
                pd = false;
                let u = units(a);
                let _ = write!(self.hpgl, "PU{},{};", u.0, u.1);
                self.last = Some(u);
            }
            PathEl::LineTo(a) => self.line(a, &mut pd),
            PathEl::ClosePath => {
                if let Some(s) = start {
                    self.line(s, &mut pd);
                }
            }
            // `flatten` hands over lines only.
            PathEl::QuadTo(..) | PathEl::CurveTo(..) => {}
        });
        if pd {
            self.hpgl.push_str(";\n");
        }
    }

    fn line(&mut self, a: Point, pd: &mut bool) {
        let u = units(a);
        if self.last == Some(u) {
            return;
        }
        if *pd {
            let _ = write!(self.hpgl, ",{},{}", u.0, u.1);
        } else {
            let _ = write!(self.hpgl, "PD{},{}", u.0, u.1);
            *pd = true;
            self.outlines += 1;
        }
        self.last = Some(u);
    }
}

fn units(p: Point) -> (i64, i64) {
    let clamp = |v: f64| {
        (v * UNITS_PER_MM)
            .round()
            .clamp(-super::scan::MAX_COORDINATE, super::scan::MAX_COORDINATE) as i64
    };
    (clamp(p.x), clamp(p.y))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
