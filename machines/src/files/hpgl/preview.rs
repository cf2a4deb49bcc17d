//! The cuts as a small SVG, seen from above with the plotter's Y up, built during the one
//! pass of the analysis in bounded memory.
//!
//! Cuts are kept as polylines, travels (blade up) as single segments drawn dashed. When the
//! kept cut points pass twice the budget, the tolerance under which a point is dropped
//! doubles and every polyline is thinned again; when the travels pass the budget, every
//! other one is dropped and only every second one is kept from then on. So a 500 MB file
//! costs no more than a small one, and draws coarser.

use std::fmt::Write as _;

/// How the preview is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewOptions {
    /// The longer side of the picture, in pixels.
    pub size_px: u32,
    /// Most cut points drawn.
    pub max_points: usize,
    /// Most travels drawn.
    pub max_travels: usize,
    /// The `<title>` (what a screen reader says).
    pub title: String,
}

impl Default for PreviewOptions {
    fn default() -> Self {
        PreviewOptions {
            size_px: 320,
            max_points: 8000,
            max_travels: 2000,
            title: "Aperçu de la découpe / Cut preview".into(),
        }
    }
}

pub(crate) struct PreviewBuilder {
    options: PreviewOptions,
    points: Vec<[f32; 2]>,
    /// Where each polyline starts in `points`.
    starts: Vec<usize>,
    travels: Vec<[f32; 4]>,
    travel_stride: u64,
    travel_seen: u64,
    tolerance_mm: f32,
}

impl PreviewBuilder {
    pub(crate) fn new(options: PreviewOptions) -> Self {
        PreviewBuilder {
            options,
            points: Vec::new(),
            starts: Vec::new(),
            travels: Vec::new(),
            travel_stride: 1,
            travel_seen: 0,
            tolerance_mm: 0.05,
        }
    }

    /// A move from `a` to `b` (mm), cut when `down`.
    pub(crate) fn segment(&mut self, a: [f64; 2], b: [f64; 2], down: bool) {
        let (a, b) = ([a[0] as f32, a[1] as f32], [b[0] as f32, b[1] as f32]);
        if !down {
            self.travel_seen += 1;
            if self.travel_seen.is_multiple_of(self.travel_stride) && !near(a, b, self.tolerance_mm)
            {
                self.travels.push([a[0], a[1], b[0], b[1]]);
                if self.travels.len() > self.options.max_travels.max(10) {
                    self.travel_stride *= 2;
                    let mut i = 0;
                    self.travels.retain(|_| {
                        i += 1;
                        i % 2 == 0
                    });
                }
            }
            return;
        }
        let joined = self
            .points
            .last()
            .is_some_and(|&last| near(last, a, 1e-4) && self.starts.last().is_some());
        if !joined {
            self.starts.push(self.points.len());
            self.points.push(a);
        }
        if self
            .points
            .last()
            .is_some_and(|&l| !near(l, b, self.tolerance_mm))
        {
            self.points.push(b);
        }
        if self.points.len() > self.options.max_points.max(100) * 2 {
            self.tolerance_mm *= 2.0;
            self.thin();
        }
    }

    /// Drops, in every polyline, the points closer than the tolerance to the last one kept
    /// (its last point always stays, so closed shapes stay closed).
    fn thin(&mut self) {
        let tol = self.tolerance_mm;
        let mut points = Vec::with_capacity(self.points.len() / 2);
        let mut starts = Vec::with_capacity(self.starts.len());
        for (k, &s) in self.starts.iter().enumerate() {
            let e = self.starts.get(k + 1).copied().unwrap_or(self.points.len());
            let line = &self.points[s..e];
            let Some((&first, rest)) = line.split_first() else {
                continue;
            };
            let start = points.len();
            points.push(first);
            for (j, &p) in rest.iter().enumerate() {
                let last_point = j + 1 == rest.len();
                if points.last().is_some_and(|&l| !near(l, p, tol)) || last_point {
                    points.push(p);
                }
            }
            // A polyline thinner than the tolerance is a dot: not worth drawing.
            if points.len() - start < 2 || span(&points[start..]) < tol {
                points.truncate(start);
            } else {
                starts.push(start);
            }
        }
        self.points = points;
        self.starts = starts;
    }

    /// The SVG, framed on what was kept (cuts and travels).
    pub(crate) fn finish(self) -> String {
        let mut lo = [f32::MAX; 2];
        let mut hi = [f32::MIN; 2];
        let mut grow = |p: [f32; 2]| {
            lo = [lo[0].min(p[0]), lo[1].min(p[1])];
            hi = [hi[0].max(p[0]), hi[1].max(p[1])];
        };
        self.points.iter().for_each(|&p| grow(p));
        for t in &self.travels {
            grow([t[0], t[1]]);
            grow([t[2], t[3]]);
        }
        if lo[0] > hi[0] {
            lo = [0.0; 2];
            hi = [10.0; 2];
        }
        let (w, h) = ((hi[0] - lo[0]).max(1.0), (hi[1] - lo[1]).max(1.0));
        let margin = w.max(h) * 0.03;
        let (vx, vy) = (lo[0] - margin, -hi[1] - margin);
        let (vw, vh) = (w + 2.0 * margin, h + 2.0 * margin);
        let size = self.options.size_px.max(16) as f32;
        let (pw, ph) = if vw >= vh {
            (size, (size * vh / vw).max(1.0))
        } else {
            ((size * vw / vh).max(1.0), size)
        };
        let stroke = vw.max(vh) / size * 1.2;
        let mut svg = String::with_capacity(512 + self.points.len() * 14);
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"{:.2} {:.2} {:.2} {:.2}\" \
             width=\"{:.0}\" height=\"{:.0}\" role=\"img\" aria-labelledby=\"title\">\
             <title id=\"title\">{}</title>\
             <rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"#f7f5f0\"/>",
            vx,
            vy,
            vw,
            vh,
            pw,
            ph,
            escape(&self.options.title),
            vx,
            vy,
            vw,
            vh,
        );
        if !self.travels.is_empty() {
            let _ = write!(
                svg,
                "<path class=\"travel\" fill=\"none\" stroke=\"#8a8f98\" stroke-width=\"{:.3}\" \
                 stroke-dasharray=\"{:.3} {:.3}\" d=\"",
                stroke * 0.6,
                stroke * 3.0,
                stroke * 2.0
            );
            for t in &self.travels {
                let _ = write!(svg, "M{:.2} {:.2}L{:.2} {:.2}", t[0], -t[1], t[2], -t[3]);
            }
            svg.push_str("\"/>");
        }
        if !self.starts.is_empty() {
            let _ = write!(
                svg,
                "<path class=\"cut\" fill=\"none\" stroke=\"#1d4ed8\" stroke-width=\"{stroke:.3}\" \
                 stroke-linecap=\"round\" stroke-linejoin=\"round\" d=\""
            );
            for (k, &s) in self.starts.iter().enumerate() {
                let e = self.starts.get(k + 1).copied().unwrap_or(self.points.len());
                for (j, p) in self.points[s..e].iter().enumerate() {
                    let c = if j == 0 { 'M' } else { 'L' };
                    let _ = write!(svg, "{c}{:.2} {:.2}", p[0], -p[1]);
                }
            }
            svg.push_str("\"/>");
        }
        svg.push_str("</svg>");
        svg
    }
}

fn near(a: [f32; 2], b: [f32; 2], tol: f32) -> bool {
    (a[0] - b[0]).abs() <= tol && (a[1] - b[1]).abs() <= tol
}

fn span(points: &[[f32; 2]]) -> f32 {
    let mut lo = [f32::MAX; 2];
    let mut hi = [f32::MIN; 2];
    for p in points {
        lo = [lo[0].min(p[0]), lo[1].min(p[1])];
        hi = [hi[0].max(p[0]), hi[1].max(p[1])];
    }
    (hi[0] - lo[0]).max(hi[1] - lo[1])
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
