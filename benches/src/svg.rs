//! Hand-built SVG charts (no plotting dependency): line charts over categorical x
//! values and horizontal bar charts. Output is self-contained markup that can be
//! written to a `.svg` file or inlined in HTML.

use std::fmt::Write;

/// Colour of series `i` (a qualitative palette).
pub fn color(i: usize) -> &'static str {
    const PALETTE: [&str; 8] = [
        "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f", "#17becf", "#8c564b",
    ];
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a line chart: a name, a colour index and one value per x label.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Index into [`color`].
    pub color: usize,
    /// One value per x label; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 50.0;

fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Formats an axis value compactly.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Formats nanoseconds with a unit: `100 ns`, `10 us`, `1 ms`, `1 s`.
pub fn fmt_ns(v: f64) -> String {
    if v >= 1e9 {
        format!("{} s", fmt_num(v / 1e9))
    } else if v >= 1e6 {
        format!("{} ms", fmt_num(v / 1e6))
    } else if v >= 1e3 {
        format!("{} us", fmt_num(v / 1e3))
    } else {
        format!("{} ns", fmt_num(v))
    }
}

/// A line chart with categorical x values; `log_y` uses a base-10 y axis. A y title
/// that starts with "latency" gets time units on its ticks.
pub fn line_chart(
    title: &str,
    x_title: &str,
    y_title: &str,
    x_labels: &[String],
    series: &[Series],
    log_y: bool,
) -> String {
    let vals: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .filter(|v| v.is_finite() && (!log_y || *v > 0.0))
        .collect();
    let (mut lo, mut hi) = vals
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    if vals.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    let mut ticks = Vec::new();
    let (y0, y1) = if log_y {
        let (a, b) = (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        );
        let mut e = a;
        while e <= b + 1e-9 {
            ticks.push(10f64.powf(e));
            e += 1.0;
        }
        (a, b)
    } else {
        lo = lo.min(0.0);
        if hi <= lo {
            hi = lo + 1.0;
        }
        let step = nice_step(hi - lo);
        let top = (hi / step).ceil() * step;
        let mut t = 0.0;
        while t <= top + step * 1e-9 {
            ticks.push(t);
            t += step;
        }
        (0.0, top)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let ymap = |v: f64| {
        let f = if log_y { v.log10() } else { v };
        TOP + ph - (f - y0) / (y1 - y0).max(1e-12) * ph
    };
    let n = x_labels.len().max(1);
    let xmap = |i: usize| {
        if n == 1 {
            LEFT + pw / 2.0
        } else {
            LEFT + pw * i as f64 / (n - 1) as f64
        }
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    for &t in &ticks {
        let y = ymap(t);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            if y_title.starts_with("latency") {
                fmt_ns(t)
            } else {
                fmt_num(t)
            }
        );
    }
    for (i, l) in x_labels.iter().enumerate() {
        let x = xmap(i);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            esc(l)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 10.0,
        esc(x_title)
    );
    let _ = write!(
        s,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        esc(y_title)
    );
    for (k, ser) in series.iter().enumerate() {
        let c = color(ser.color);
        let pts: Vec<(f64, f64)> = ser
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.filter(|v| v.is_finite() && (!log_y || *v > 0.0))
                    .map(|v| (xmap(i), ymap(v)))
            })
            .collect();
        if pts.len() > 1 {
            let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
                d.join(" ")
            );
        }
        for (x, y) in &pts {
            let _ = write!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{c}"/>"#);
        }
        let ly = TOP + 10.0 + 18.0 * k as f64;
        let lx = W - RIGHT + 12.0;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{}" width="14" height="4" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            ly - 4.0,
            lx + 20.0,
            ly + 2.0,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// A horizontal bar chart, one bar per `(label, colour index, value)`.
pub fn bar_chart(title: &str, unit: &str, bars: &[(String, usize, f64)]) -> String {
    let row = 26.0;
    let h = TOP + 20.0 + row * bars.len() as f64;
    let max = bars.iter().map(|b| b.2).fold(0.0, f64::max).max(1e-9);
    let label_w = 110.0;
    let pw = W - label_w - 90.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12"><rect width="{W}" height="{h}" fill="white"/>"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    for (i, (label, c, v)) in bars.iter().enumerate() {
        let y = TOP + row * i as f64;
        let w = (v / max * pw).max(1.0);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{}" fill="{}"/><text x="{}" y="{}">{} {}</text>"#,
            label_w - 6.0,
            y + 15.0,
            esc(label),
            row - 6.0,
            color(*c),
            label_w + w + 6.0,
            y + 15.0,
            fmt_num(*v),
            esc(unit)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(h: &str, n: &str) -> usize {
        h.matches(n).count()
    }

    #[test]
    fn line_chart_draws_each_series_and_gaps() {
        let x: Vec<String> = ["1", "2", "4"].iter().map(|s| s.to_string()).collect();
        let series = [
            Series {
                name: "a<b".into(),
                color: 0,
                values: vec![Some(1.0), Some(2.0), Some(3.5)],
            },
            Series {
                name: "b".into(),
                color: 1,
                values: vec![Some(5.0), None, None],
            },
        ];
        let svg = line_chart("T", "threads", "Mops/s", &x, &series, false);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(count(&svg, "<polyline"), 1, "a single point draws no line");
        assert_eq!(count(&svg, "<circle"), 4);
        assert!(svg.contains("a&lt;b"));
        let log = line_chart("T", "p", "ns", &x, &series, true);
        assert!(
            log.contains(">10<") && log.contains(">1<"),
            "decade ticks: {log}"
        );
    }

    #[test]
    fn bar_chart_scales_to_the_largest() {
        let svg = bar_chart("B", "B", &[("x".into(), 0, 50.0), ("y".into(), 1, 100.0)]);
        assert_eq!(count(&svg, "<rect"), 3);
        assert!(svg.contains(r#"width="440.0""#), "{svg}");
        assert!(svg.contains(r#"width="220.0""#));
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(3_000_000.0), "3M");
        assert_eq!(fmt_num(65_536.0), "66k");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(0.5), "0.50");
        assert_eq!(fmt_num(8.0), "8");
        assert_eq!(fmt_ns(100.0), "100 ns");
        assert_eq!(fmt_ns(10_000.0), "10 us");
        assert_eq!(fmt_ns(1e8), "100 ms");
        assert_eq!(fmt_ns(2e9), "2 s");
    }
}
