/*! A small SVG line chart for `bench paging --plot` (no dependency, no script, opens offline). */

use std::fmt::Write;

/// One line of a chart: a label and its points.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
const W: f64 = 720.0;
const H: f64 = 260.0;
const PAD: f64 = 56.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Panels stacked vertically, each `(title, y-axis label, series)`, sharing the x axis (turn).
pub fn svg(panels: &[(&str, &str, Vec<Series>)]) -> String {
    let mut s = String::new();
    let total_h = H * panels.len() as f64;
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{total_h}" fill="white"/>"#);
    for (i, (title, ylabel, series)) in panels.iter().enumerate() {
        let top = H * i as f64;
        let pts = series.iter().flat_map(|l| l.points.iter());
        let (xmax, ymax) = pts.fold((1.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
        let ymax = if ymax > 0.0 { ymax * 1.05 } else { 1.0 };
        let (x0, x1, y0, y1) = (PAD, W - 16.0, top + H - 36.0, top + 28.0);
        let px = |x: f64| x0 + (x1 - x0) * x / xmax;
        let py = |y: f64| y0 - (y0 - y1) * y / ymax;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
            x0,
            top + 18.0,
            escape(title)
        );
        let _ = write!(s, r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>"##);
        let _ = write!(s, r##"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>"##);
        for k in 0..=4 {
            let y = ymax * k as f64 / 4.0;
            let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, x0 - 4.0, py(y) + 4.0, fmt(y));
            let _ = write!(s, r##"<line x1="{x0}" y1="{0}" x2="{x1}" y2="{0}" stroke="#eee"/>"##, py(y));
            let x = xmax * k as f64 / 4.0;
            let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, px(x), y0 + 16.0, fmt(x));
        }
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">turn</text>"#, (x0 + x1) / 2.0, y0 + 30.0);
        let _ = write!(
            s,
            r#"<text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (y0 + y1) / 2.0,
            escape(ylabel)
        );
        for (j, l) in series.iter().enumerate() {
            let c = COLORS[j % COLORS.len()];
            let path: Vec<String> = l.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
            let _ = write!(s, r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#, path.join(" "));
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" fill="{c}">{}</text>"#,
                x1 - 90.0,
                y1 + 14.0 * j as f64,
                escape(l.label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn fmt(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_series_with_escaped_labels() {
        let a = Series { label: "a<b", points: vec![(0.0, 1.0), (1.0, 2.0)] };
        let b = Series { label: "c", points: vec![(0.0, 0.5)] };
        let out = svg(&[("cost", "seconds", vec![a, b])]);
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("a&lt;b") && !out.contains("a<b"));
    }
}
