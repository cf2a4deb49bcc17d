//! The top view of a toolpath as a small SVG, built during the single pass of the analysis
//! in bounded memory.
//!
//! Extrusions (or, for a laser, the moves with the beam on) are kept as polylines per layer,
//! dropping points closer than a tolerance. Memory stays bounded whatever the file: when the
//! kept points pass twice the budget, every other kept layer is dropped and only every
//! second layer is kept from then on (a top view needs few of the lower layers), and a single
//! layer that outgrows its share is thinned with a coarser tolerance. The top layer is always
//! drawn. At the end the layers are coloured along a gradient from the first to the last, in
//! at most [`BANDS`] colours (one `<path>` each), with the top layers kept first if the point
//! budget is still exceeded.

use std::fmt::Write as _;

/// Colour steps of the gradient from the first layer to the last.
pub const BANDS: usize = 12;
const FIRST: [f64; 3] = [0x1d as f64, 0x4e as f64, 0xd8 as f64];
const LAST: [f64; 3] = [0xea as f64, 0x58 as f64, 0x0c as f64];

/// How the preview is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewOptions {
    /// Width (and height) of the square the drawing fits, in pixels.
    pub size_px: u32,
    /// Points closer than this, in pixels at that size, are dropped.
    pub tolerance_px: f64,
    /// Most points drawn.
    pub max_points: usize,
    /// The `<title>` (what a screen reader says).
    pub title: String,
}

impl Default for PreviewOptions {
    fn default() -> Self {
        Self {
            size_px: 240,
            tolerance_px: 0.8,
            max_points: 5000,
            title: "Aperçu du parcours, vu de dessus / Toolpath, top view".into(),
        }
    }
}

struct Layer {
    index: u32,
    points: Vec<[f32; 2]>,
    /// Where each polyline starts in `points`.
    starts: Vec<u32>,
}

impl Layer {
    fn new(index: u32) -> Self {
        Self {
            index,
            points: Vec::new(),
            starts: Vec::new(),
        }
    }
}

pub(crate) struct PreviewBuilder {
    options: PreviewOptions,
    kept: Vec<Layer>,
    kept_points: usize,
    current: Layer,
    /// Last layer closed, kept aside so that the top layer is always drawn.
    last_closed: Option<Layer>,
    stride: u32,
    tolerance_mm: f32,
    layer_tolerance_mm: f32,
    min: [f64; 2],
    max: [f64; 2],
}

impl PreviewBuilder {
    pub(crate) fn new(options: PreviewOptions) -> Self {
        Self {
            options,
            kept: Vec::new(),
            kept_points: 0,
            current: Layer::new(0),
            last_closed: None,
            stride: 1,
            tolerance_mm: 0.25,
            layer_tolerance_mm: 0.25,
            min: [f64::MAX; 2],
            max: [f64::MIN; 2],
        }
    }

    fn budget(&self) -> usize {
        self.options.max_points.max(100) * 2
    }

    /// A drawn segment from `a` to `b` on `layer`.
    pub(crate) fn segment(&mut self, layer: u32, a: [f64; 2], b: [f64; 2]) {
        if !(a[0].is_finite() && a[1].is_finite() && b[0].is_finite() && b[1].is_finite()) {
            return;
        }
        if layer != self.current.index {
            self.close_layer(layer);
        }
        for p in [a, b] {
            self.min = [self.min[0].min(p[0]), self.min[1].min(p[1])];
            self.max = [self.max[0].max(p[0]), self.max[1].max(p[1])];
        }
        let (a, b) = ([a[0] as f32, a[1] as f32], [b[0] as f32, b[1] as f32]);
        let tol = self.layer_tolerance_mm;
        let layer = &mut self.current;
        let joined = layer.points.last().is_some_and(|last| near(*last, a, tol));
        if !joined {
            // A lone point left by the previous polyline is not worth keeping.
            if let Some(&start) = layer.starts.last()
                && layer.points.len() - start as usize == 1
            {
                layer.points.pop();
                layer.starts.pop();
            }
            layer.starts.push(layer.points.len() as u32);
            layer.points.push(a);
        }
        if let Some(last) = layer.points.last()
            && !near(*last, b, tol)
        {
            layer.points.push(b);
        }
        if layer.points.len() > self.budget() / 2 {
            self.layer_tolerance_mm *= 2.0;
            thin(&mut self.current, self.layer_tolerance_mm);
        }
    }

    fn close_layer(&mut self, next: u32) {
        let done = std::mem::replace(&mut self.current, Layer::new(next));
        self.layer_tolerance_mm = self.tolerance_mm;
        if done.points.is_empty() {
            return;
        }
        if let Some(previous) = self.last_closed.take()
            && previous.index % self.stride == 0
        {
            self.kept_points += previous.points.len();
            self.kept.push(previous);
        }
        self.last_closed = Some(done);
        while self.kept_points > self.budget() {
            self.stride *= 2;
            let stride = self.stride;
            self.kept.retain(|l| l.index % stride == 0);
            self.kept_points = self.kept.iter().map(|l| l.points.len()).sum();
            if self.stride > 1 << 20 {
                break;
            }
        }
    }

    /// The SVG, or `None` when nothing was drawn.
    pub(crate) fn finish(mut self) -> Option<String> {
        self.close_layer(u32::MAX);
        let mut layers = self.kept;
        if let Some(top) = self.last_closed.take() {
            layers.push(top);
        }
        if layers.is_empty() || self.min[0] > self.max[0] {
            return None;
        }
        let o = &self.options;
        let pad = 1.0;
        let (x0, y0) = (self.min[0] - pad, self.min[1] - pad);
        let w = (self.max[0] - self.min[0] + 2.0 * pad).max(1.0);
        let h = (self.max[1] - self.min[1] + 2.0 * pad).max(1.0);
        let mm_per_px = w.max(h) / f64::from(o.size_px.max(16));
        let tol = (o.tolerance_px * mm_per_px) as f32;
        let decimals = if mm_per_px < 0.05 { 2 } else { 1 };
        let first = layers.first().map_or(0, |l| l.index);
        let last = layers.last().map_or(0, |l| l.index);
        // Keep the top layers first when the budget is short.
        let mut budget = o.max_points;
        let mut drawn_from = layers.len();
        for (i, l) in layers.iter().enumerate().rev() {
            let n = simplified_len(l, tol);
            if n > budget && drawn_from < layers.len() {
                break;
            }
            budget = budget.saturating_sub(n);
            drawn_from = i;
        }
        let (px_w, px_h) = (
            (w / mm_per_px).round().max(1.0),
            (h / mm_per_px).round().max(1.0),
        );
        let stroke = (1.2 * mm_per_px).max(0.3);
        let mut svg = String::with_capacity(o.max_points * 9 + 512);
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"{} {} {} {}\" width=\"{px_w}\" height=\"{px_h}\" role=\"img\" aria-labelledby=\"preview-title\"><title id=\"preview-title\">{}</title><g fill=\"none\" stroke-width=\"{}\" stroke-linecap=\"round\" stroke-linejoin=\"round\" transform=\"scale(1,-1)\">",
            num(x0, 2),
            num(-(y0 + h), 2),
            num(w, 2),
            num(h, 2),
            escape(&o.title),
            num(stroke, 2),
        );
        let mut band_open: Option<usize> = None;
        let mut points_left = o.max_points;
        for l in &layers[drawn_from..] {
            let t = if last > first {
                f64::from(l.index - first) / f64::from(last - first)
            } else {
                1.0
            };
            let band = ((t * (BANDS - 1) as f64).round() as usize).min(BANDS - 1);
            if band_open != Some(band) {
                if band_open.is_some() {
                    svg.push_str("\"/>");
                }
                let c = colour(band as f64 / (BANDS - 1) as f64);
                let _ = write!(svg, "<path stroke=\"{c}\" d=\"");
                band_open = Some(band);
            }
            points_left = write_layer(&mut svg, l, tol, decimals, points_left);
            if points_left == 0 {
                break;
            }
        }
        if band_open.is_some() {
            svg.push_str("\"/>");
        }
        svg.push_str("</g></svg>");
        Some(svg)
    }
}

fn near(a: [f32; 2], b: [f32; 2], tol: f32) -> bool {
    (a[0] - b[0]).abs() <= tol && (a[1] - b[1]).abs() <= tol
}

/// Re-simplifies a layer with a coarser tolerance, in place.
fn thin(layer: &mut Layer, tol: f32) {
    let mut points = Vec::with_capacity(layer.points.len() / 2);
    let mut starts = Vec::with_capacity(layer.starts.len());
    for (k, &s) in layer.starts.iter().enumerate() {
        let end = layer
            .starts
            .get(k + 1)
            .map_or(layer.points.len(), |&e| e as usize);
        let poly = &layer.points[s as usize..end];
        let Some(&head) = poly.first() else { continue };
        let begin = points.len();
        points.push(head);
        for &p in &poly[1..] {
            if let Some(last) = points.last()
                && !near(*last, p, tol)
            {
                points.push(p);
            }
        }
        if points.len() - begin < 2 {
            points.truncate(begin);
        } else {
            starts.push(begin as u32);
        }
    }
    layer.points = points;
    layer.starts = starts;
}

fn polylines(l: &Layer) -> impl Iterator<Item = &[[f32; 2]]> {
    l.starts.iter().enumerate().map(move |(k, &s)| {
        let end = l.starts.get(k + 1).map_or(l.points.len(), |&e| e as usize);
        &l.points[s as usize..end]
    })
}

fn simplified_len(l: &Layer, tol: f32) -> usize {
    let mut n = 0;
    for poly in polylines(l) {
        let mut last: Option<[f32; 2]> = None;
        let mut k = 0;
        for &p in poly {
            if last.is_none_or(|q| !near(q, p, tol)) {
                k += 1;
                last = Some(p);
            }
        }
        if k >= 2 {
            n += k;
        }
    }
    n
}

/// Writes a layer's polylines as `M x y l dx dy …`, returning the points still allowed.
fn write_layer(svg: &mut String, l: &Layer, tol: f32, decimals: usize, mut left: usize) -> usize {
    let q = 10f64.powi(decimals as i32);
    for poly in polylines(l) {
        if left < 2 {
            return 0;
        }
        let mut kept: Vec<[f32; 2]> = Vec::with_capacity(poly.len());
        for &p in poly {
            if kept.last().is_none_or(|&q| !near(q, p, tol)) {
                kept.push(p);
            }
        }
        if kept.len() < 2 {
            continue;
        }
        kept.truncate(left);
        left -= kept.len();
        // Relative moves on the rounded grid, so that rounding errors never add up.
        let round = |v: f32| (f64::from(v) * q).round();
        let (mut px, mut py) = (round(kept[0][0]), round(kept[0][1]));
        let _ = write!(svg, "M{} {}", num(px / q, decimals), num(py / q, decimals));
        svg.push('l');
        for (k, p) in kept[1..].iter().enumerate() {
            let (x, y) = (round(p[0]), round(p[1]));
            push_pair(svg, (x - px) / q, (y - py) / q, decimals, k == 0);
            (px, py) = (x, y);
        }
    }
    left
}

/// Appends "dx dy" compactly: no space before a minus sign, no leading zero.
fn push_pair(svg: &mut String, dx: f64, dy: f64, decimals: usize, first: bool) {
    let a = short(dx, decimals);
    let b = short(dy, decimals);
    if !first && !a.starts_with('-') {
        svg.push(' ');
    }
    svg.push_str(&a);
    if !b.starts_with('-') {
        svg.push(' ');
    }
    svg.push_str(&b);
}

fn short(v: f64, decimals: usize) -> String {
    let s = num(v, decimals);
    if let Some(rest) = s.strip_prefix("0.") {
        format!(".{rest}")
    } else if let Some(rest) = s.strip_prefix("-0.") {
        format!("-.{rest}")
    } else {
        s
    }
}

/// A number with at most `decimals` decimals, without trailing zeros.
fn num(v: f64, decimals: usize) -> String {
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" { "0".into() } else { s }
}

fn colour(t: f64) -> String {
    let c: Vec<u8> = (0..3)
        .map(|i| {
            (FIRST[i] + (LAST[i] - FIRST[i]) * t)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_square_is_drawn_in_mm_with_a_title_and_no_script() {
        let mut b = PreviewBuilder::new(PreviewOptions::default());
        let pts = [
            [10.0, 10.0],
            [30.0, 10.0],
            [30.0, 30.0],
            [10.0, 30.0],
            [10.0, 10.0],
        ];
        for w in pts.windows(2) {
            b.segment(0, w[0], w[1]);
        }
        let svg = b.finish().unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"9 -31 22 22\""),
            "{svg}"
        );
        assert!(svg.contains("<title id=\"preview-title\">Aperçu"));
        assert!(svg.contains("d=\"M10 10l20 0 0 20-20 0 0-20\""), "{svg}");
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn many_layers_stay_within_the_point_budget_and_keep_the_top_one() {
        let options = PreviewOptions {
            max_points: 1000,
            ..PreviewOptions::default()
        };
        let mut b = PreviewBuilder::new(options);
        for layer in 0..500u32 {
            for i in 0..100 {
                let a = f64::from(i) * 0.0628 + f64::from(layer) * 0.01;
                let r = 40.0 + f64::from(layer) * 0.01;
                b.segment(
                    layer,
                    [100.0 + r * a.cos(), 100.0 + r * a.sin()],
                    [
                        100.0 + r * (a + 0.0628).cos(),
                        100.0 + r * (a + 0.0628).sin(),
                    ],
                );
            }
            assert!(b.kept_points <= b.budget() + 200);
        }
        let svg = b.finish().unwrap();
        assert!(svg.len() < 1000 * 12, "{} bytes", svg.len());
        assert!(
            svg.contains(&colour(1.0)),
            "the top layer has the last colour"
        );
    }
}
