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
                    "le dessin dépasse {} Mo : simplifiez-le avant de l'envoyer",
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
            fr: "le texte du dessin n'est pas découpé : convertissez-le en tracés (Inkscape : Chemin > Objet en chemin)".into(),
            en: "the drawing's text is not cut: convert it to paths (Inkscape: Path > Object to Path)".into(),
        });
    }
    if out.images > 0 {
        notes.push(Message {
            fr: "les images du dessin ne sont pas découpées : vectorisez-les".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::hpgl::{CutterSettings, analyze};

    fn extent(hpgl: &str) -> (f64, f64, f64, f64) {
        let s = analyze(hpgl.as_bytes(), &CutterSettings::default(), None)
            .unwrap()
            .summary;
        assert!(s.issues.is_empty(), "{:?}", s.issues);
        let e = s.extent.unwrap();
        (e.min_x_mm, e.min_y_mm, e.max_x_mm, e.max_y_mm)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1.0 / UNITS_PER_MM + 1e-9
    }

    #[test]
    fn a_circle_in_mm_is_cut_at_its_size_with_y_up() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="100mm" height="50mm" viewBox="0 0 100 50">
            <circle cx="20" cy="15" r="10" fill="black"/></svg>"#;
        let c = svg_to_hpgl(svg).unwrap();
        assert!(close(c.width_mm, 100.0) && close(c.height_mm, 50.0));
        assert_eq!(c.outlines, 1);
        assert!(c.hpgl.starts_with("IN;") && c.hpgl.ends_with("PU;SP0;\n"));
        let (x0, y0, x1, y1) = extent(&c.hpgl);
        // SVG y 5..25 from the top of a 50 mm drawing is 25..45 from the bottom.
        assert!(close(x0, 10.0) && close(x1, 30.0), "{x0} {x1}");
        assert!(close(y0, 25.0) && close(y1, 45.0), "{y0} {y1}");
    }

    #[test]
    fn flattening_keeps_every_point_within_one_unit_of_the_curve() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="200mm" height="200mm" viewBox="0 0 200 200">
            <circle cx="100" cy="100" r="80" fill="none" stroke="black"/></svg>"#;
        let c = svg_to_hpgl(svg).unwrap();
        let numbers: Vec<f64> = c
            .hpgl
            .split(|ch: char| !(ch.is_ascii_digit() || ch == '-'))
            .filter(|t| !t.is_empty() && *t != "-")
            .map(|t| t.parse().unwrap())
            .collect();
        // Skip SP1 and the final SP0: the rest are coordinate pairs.
        let pairs = &numbers[1..numbers.len() - 1];
        assert!(pairs.len() > 100, "a circle of 80 mm needs many chords");
        for p in pairs.chunks(2) {
            let r = (p[0] / UNITS_PER_MM - 100.0).hypot(p[1] / UNITS_PER_MM - 100.0);
            assert!((r - 80.0).abs() <= 2.0 / UNITS_PER_MM, "{r}");
        }
    }

    #[test]
    fn nested_transforms_and_groups_are_applied() {
        // A 10 × 10 square, scaled by 2 and moved by (30, 40) in an inner group, the whole
        // drawing in px (96 per inch): 378 px is 100 mm.
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="378" height="378">
            <g transform="translate(30 40)"><g transform="scale(2)">
              <path d="M0 0 C 5 -3 5 -3 10 0 L10 10 L0 10 Z" fill="red"/>
            </g></g></svg>"#;
        let c = svg_to_hpgl(svg).unwrap();
        let px = 25.4 / 96.0;
        let (x0, y0, x1, y1) = extent(&c.hpgl);
        assert!(close(x0, 30.0 * px) && close(x1, 50.0 * px), "{x0} {x1}");
        let h = 378.0 * px;
        // The curve bulges 2.25 units above y=0 at its middle (3/4 of the control offset).
        assert!(close(y1, h - (40.0 - 2.0 * 2.25) * px), "{y1}");
        assert!(close(y0, h - 60.0 * px), "{y0}");
        assert!(close(c.width_mm, 100.0), "{}", c.width_mm);
    }

    #[test]
    fn text_and_empty_drawings_are_told_not_cut() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10mm" height="10mm">
            <rect x="1" y="1" width="5" height="5"/><text x="1" y="9">Hi</text></svg>"#;
        let c = svg_to_hpgl(svg).unwrap();
        assert_eq!(c.notes.len(), 1);
        assert!(c.notes[0].en.contains("text"));
        let empty = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10mm" height="10mm"/>"#;
        assert_eq!(svg_to_hpgl(empty), Err(SvgError::Empty));
        assert!(matches!(svg_to_hpgl(b"not svg"), Err(SvgError::Parse(_))));
    }
}
