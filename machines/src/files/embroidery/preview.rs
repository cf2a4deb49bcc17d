//! The SVG top view of a design, for the job list and the job page.
//!
//! One `<path>` per colour block in its thread colour; jumps and trims lift the pen (they are
//! not sewn), so a block is a polyline broken at each travel. The `viewBox` is in
//! millimetres (the design's extent and a 2 mm margin) and the drawing inside is in the
//! files' tenths of a millimetre, scaled: the path data are small integers, written
//! relative. A design of more than [`PREVIEW_MAX_POINTS`] points is thinned: points closer
//! than a tolerance to the last one kept are dropped, the tolerance doubling from 0.1 mm
//! until the design fits; tiny polylines go. A 100 000-stitch design stays around 40 kB.
//! No script, no external reference; a `<title>` names the picture for screen readers.

use std::fmt::Write;

use super::{Design, Kind};

/// The most points a preview draws.
pub const PREVIEW_MAX_POINTS: usize = 6000;

const MARGIN_MM: f64 = 2.0;

type Polyline = Vec<(i32, i32)>;

/// The sewn polylines of each colour block.
fn blocks(design: &Design) -> Vec<Vec<Polyline>> {
    let mut blocks = vec![Vec::new()];
    let mut line: Polyline = Vec::new();
    let end = |line: &mut Polyline, block: &mut Vec<Polyline>| {
        if line.len() >= 2 {
            block.push(std::mem::take(line));
        } else {
            line.clear();
        }
    };
    for c in &design.commands {
        match c.kind {
            Kind::Stitch => line.push((c.x, c.y)),
            Kind::Jump | Kind::Trim => {
                if let Some(block) = blocks.last_mut() {
                    end(&mut line, block);
                }
            }
            Kind::ColorChange => {
                if let Some(block) = blocks.last_mut() {
                    end(&mut line, block);
                }
                blocks.push(Vec::new());
            }
        }
    }
    if let Some(block) = blocks.last_mut() {
        end(&mut line, block);
    }
    blocks
}

fn far(a: (i32, i32), b: (i32, i32), tolerance: i64) -> bool {
    let dx = i64::from(a.0) - i64::from(b.0);
    let dy = i64::from(a.1) - i64::from(b.1);
    dx * dx + dy * dy >= tolerance * tolerance
}

/// Drops the points of `line` closer than `tolerance` units to the last point kept; keeps
/// the ends. `None` when the whole line is shorter than the tolerance.
fn thin(line: &Polyline, tolerance: i64) -> Option<Polyline> {
    let (&first, rest) = line.split_first()?;
    let &last = rest.last()?;
    let mut out = vec![first];
    for &p in &rest[..rest.len() - 1] {
        if out.last().is_some_and(|&q| far(p, q, tolerance)) {
            out.push(p);
        }
    }
    if !far(last, first, tolerance) && out.len() == 1 {
        return None;
    }
    out.push(last);
    Some(out)
}

fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            c if c.is_control() => s.push(' '),
            c => s.push(c),
        }
    }
    s
}

/// Appends `n` to path data, with a space before it unless a sign separates it already.
fn number(d: &mut String, n: i64, first: bool) {
    if !first && n >= 0 {
        d.push(' ');
    }
    let _ = write!(d, "{n}");
}

/// Units as millimetres, to the tenth: "12.3", "-2".
fn mm(units: f64) -> String {
    format!("{}", units.round() / 10.0)
}

/// The blocks thinned with the smallest tolerance (0.1 mm, doubling) that brings them
/// under [`PREVIEW_MAX_POINTS`].
fn thinned(blocks: &[Vec<Polyline>]) -> Vec<Vec<Polyline>> {
    let mut tolerance = 1i64;
    loop {
        let drawn: Vec<Vec<Polyline>> = blocks
            .iter()
            .map(|b| b.iter().filter_map(|l| thin(l, tolerance)).collect())
            .collect();
        let n: usize = drawn.iter().flatten().map(Vec::len).sum();
        // Past 1 << 24 units (1.6 km) every line is shorter than the tolerance.
        if n <= PREVIEW_MAX_POINTS || tolerance > 1 << 24 {
            return drawn;
        }
        tolerance *= 2;
    }
}

/// Draws `design` as an SVG document titled `title` (the caller's words, in the reader's
/// language, e.g. "Motif « rose » : 12 430 points, 4 couleurs, 92 × 80 mm").
pub fn preview_svg(design: &Design, title: &str) -> String {
    let threads = design.block_threads();
    let blocks = blocks(design);
    let total: usize = blocks.iter().flatten().map(Vec::len).sum();
    let drawn = if total > PREVIEW_MAX_POINTS {
        thinned(&blocks)
    } else {
        blocks
    };

    let (x0, y0, x1, y1) = match design.extent_units() {
        Some([x0, y0, x1, y1]) => (f64::from(x0), f64::from(y0), f64::from(x1), f64::from(y1)),
        None => (0.0, 0.0, 0.0, 0.0),
    };
    let margin = MARGIN_MM * 10.0;
    let (vx, vy) = (x0 - margin, y0 - margin);
    let (vw, vh) = (x1 - x0 + 2.0 * margin, y1 - y0 + 2.0 * margin);
    // A thread is about 0.4 mm wide; on a large design, thicker so a thumbnail still shows it.
    let stroke = (vw.max(vh) / 300.0).max(4.0).round();

    let mut svg = String::with_capacity(1024 + total.min(PREVIEW_MAX_POINTS) * 8);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"{} {} {} {}\" \
         width=\"{}mm\" height=\"{}mm\" role=\"img\" aria-labelledby=\"title\">\
         <title id=\"title\">{}</title>\
         <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#f7f5f0\"/>\
         <g transform=\"scale(0.1)\" fill=\"none\" stroke-width=\"{stroke}\" \
         stroke-linecap=\"round\" stroke-linejoin=\"round\">",
        mm(vx),
        mm(vy),
        mm(vw),
        mm(vh),
        mm(vw),
        mm(vh),
        escape(title),
        mm(vx),
        mm(vy),
        mm(vw),
        mm(vh),
    );
    for (block, thread) in drawn.iter().zip(&threads) {
        if block.is_empty() {
            continue;
        }
        let mut d = String::new();
        for line in block {
            let Some((&(fx, fy), rest)) = line.split_first() else {
                continue;
            };
            d.push('M');
            number(&mut d, i64::from(fx), true);
            number(&mut d, i64::from(fy), false);
            d.push('l');
            let mut prev = (fx, fy);
            for (k, &(x, y)) in rest.iter().enumerate() {
                number(&mut d, i64::from(x) - i64::from(prev.0), k == 0);
                number(&mut d, i64::from(y) - i64::from(prev.1), false);
                prev = (x, y);
            }
        }
        let _ = write!(svg, "<path stroke=\"{}\" d=\"{d}\"/>", thread.hex());
    }
    svg.push_str("</g></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zigzag(d: &mut Design, n: i32, at: (i32, i32)) {
        for i in 0..n {
            d.stitch(at.0 + (i % 2) * 30, at.1 + i / 2 * 4);
        }
    }

    #[test]
    fn each_colour_block_is_one_path_in_its_thread_colour_and_jumps_are_not_drawn() {
        let mut d = Design::new();
        zigzag(&mut d, 10, (0, 0));
        d.trim().jump(300, 0);
        zigzag(&mut d, 10, (300, 0));
        d.color_change();
        zigzag(&mut d, 10, (0, 200));
        let svg = preview_svg(&d, "Rose & réséda");
        assert_eq!(svg.matches("<path ").count(), 2);
        // Two polylines in the first block: the jump lifts the pen.
        let first = svg.split("<path ").nth(1).unwrap();
        assert_eq!(first.matches('M').count(), 2);
        assert!(svg.contains("<title id=\"title\">Rose &amp; réséda</title>"));
        assert!(svg.contains("viewBox=\"-2 -2 37 25.6\""), "{svg}");
        assert!(svg.contains("stroke=\"#1f4e9c\"") && svg.contains("stroke=\"#c0392b\""));
        assert!(!svg.contains("<script") && !svg.contains("href"));
    }

    #[test]
    fn a_hundred_thousand_stitches_make_a_preview_under_60_kb() {
        let mut d = Design::new();
        for block in 0..5 {
            for row in 0..200 {
                for i in 0..100 {
                    let x = if row % 2 == 0 { i * 10 } else { 1000 - i * 10 };
                    d.stitch(x + (i % 2) * 3, block * 900 + row * 4 + (i % 3));
                }
            }
            d.trim().jump(0, (block + 1) * 900).color_change();
        }
        assert_eq!(d.counts().stitches, 100_000);
        let svg = preview_svg(&d, "big");
        assert!(svg.len() < 60_000, "{} bytes", svg.len());
        let points = svg.matches(['M', ' ', '-']).count();
        assert!(points > 1000, "the preview still draws the design");
    }

    #[test]
    fn an_empty_design_is_a_small_valid_picture() {
        let svg = preview_svg(&Design::new(), "vide");
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<path"));
    }

    #[test]
    fn thinning_keeps_the_ends_and_drops_close_points() {
        let line = vec![(0, 0), (1, 0), (2, 0), (10, 0), (11, 0)];
        assert_eq!(thin(&line, 5), Some(vec![(0, 0), (10, 0), (11, 0)]));
        assert_eq!(thin(&vec![(0, 0), (1, 1)], 5), None);
    }
}
