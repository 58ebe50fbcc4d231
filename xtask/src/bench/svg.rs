//! A small hand-written SVG line plot: axes with ticks and labels, one polyline per series, a legend.
//!
//! Enough for the latency-against-throughput plot of the etcd comparison, without a
//! plotting dependency. The y axis turns logarithmic when its values span more than
//! a factor of 20 (latencies from 1 to 1000 clients do).

use std::fmt::Write as _;

/// One point: x, y and a label written beside it (the client count).
#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) label: String,
}

/// One line of the plot.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) color: &'static str,
    pub(crate) points: Vec<Point>,
}

/// What the plot says about itself.
#[derive(Debug, Clone)]
pub(crate) struct Labels {
    pub(crate) title: String,
    pub(crate) subtitle: String,
    pub(crate) x: String,
    pub(crate) y: String,
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 60.0;

/// An axis: a value range mapped onto a pixel range, linear or logarithmic.
#[derive(Debug, Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    /// An axis from zero (linear) or from the decade below the smallest value (logarithmic).
    fn fit(values: &[f64], allow_log: bool) -> Axis {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite() && *v > 0.0).collect();
        let max = finite.iter().copied().fold(0.0, f64::max);
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        if max <= 0.0 {
            return Axis { lo: 0.0, hi: 1.0, log: false };
        }
        if allow_log && max / min > 20.0 {
            let lo = 10f64.powf(min.log10().floor());
            let hi = 10f64.powf(max.log10().ceil());
            return Axis { lo, hi, log: true };
        }
        // A little headroom so that the highest point does not sit on the frame.
        let step = nice_step(max * 1.05 / 5.0);
        Axis { lo: 0.0, hi: (max * 1.05 / step).ceil() * step, log: false }
    }

    /// Where `v` falls, from 0 (low end) to 1 (high end).
    fn frac(&self, v: f64) -> f64 {
        if !v.is_finite() {
            return 0.0;
        }
        let f = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        f.clamp(0.0, 1.0)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut ticks = Vec::new();
            let mut decade = self.lo;
            while decade <= self.hi * 1.0001 {
                for m in [1.0, 2.0, 5.0] {
                    let t = decade * m;
                    if t <= self.hi * 1.0001 {
                        ticks.push(t);
                    }
                }
                decade *= 10.0;
            }
            ticks
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let n = ((self.hi - self.lo) / step).round() as usize;
            (0..=n).map(|i| self.lo + step * i as f64).collect()
        }
    }
}

/// The smallest of 1, 2, 5 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * pow).find(|s| *s >= raw * 0.9999).unwrap_or(10.0 * pow)
}

/// A tick label: `12k` for thousands, no trailing zeros otherwise.
fn tick_label(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Escapes text for XML character data and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders `series` as an SVG document.
pub(crate) fn plot(labels: &Labels, series: &[Series]) -> String {
    render(labels, series, true)
}

/// As [`plot`], with a linear y axis whatever the values span (a quantity over time).
pub(crate) fn plot_linear(labels: &Labels, series: &[Series]) -> String {
    render(labels, series, false)
}

/// Stacks whole plots (from [`plot`] or [`plot_linear`]) one above the other in one document.
pub(crate) fn stack(plots: &[String]) -> String {
    let mut s = String::new();
    let total = HEIGHT * plots.len() as f64;
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total}" viewBox="0 0 {WIDTH} {total}">"#
    );
    for (i, p) in plots.iter().enumerate() {
        let body = p.find("<svg ").map_or(p.as_str(), |at| &p[at..]);
        let inner = body.replacen("<svg ", &format!("<svg y=\"{}\" ", HEIGHT * i as f64), 1);
        s.push_str(&inner);
    }
    s.push_str("</svg>\n");
    s
}

fn render(labels: &Labels, series: &[Series], allow_log: bool) -> String {
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.x)).collect();
    let ys: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.y)).collect();
    let (xa, ya) = (Axis::fit(&xs, false), Axis::fit(&ys, allow_log));
    let labelled = series.iter().any(|s| s.points.iter().any(|p| !p.label.is_empty()));
    let radius = if labelled { 4.0 } else { 2.0 };
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let px = |v: f64| LEFT + xa.frac(v) * pw;
    let py = |v: f64| TOP + ph - ya.frac(v) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>
<text x="{LEFT}" y="26" font-size="16" font-weight="bold">{}</text>
<text x="{LEFT}" y="46" fill="#555">{}</text>"##,
        esc(&labels.title),
        esc(&labels.subtitle)
    );
    // Grid and ticks.
    for t in xa.ticks() {
        let x = px(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4"/><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 19.0,
            tick_label(t)
        );
    }
    for t in ya.ticks() {
        let y = py(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="black"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 5.0,
            LEFT - 8.0,
            y + 4.0,
            tick_label(t)
        );
    }
    // Axes and their labels.
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="black"/>
<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">{}{}</text>"#,
        TOP + ph,
        TOP + ph,
        LEFT + pw,
        TOP + ph,
        LEFT + pw / 2.0,
        HEIGHT - 16.0,
        esc(&labels.x),
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(&labels.y),
        if ya.log { " (log scale)" } else { "" }
    );
    // The series, each point labelled.
    for (i, ser) in series.iter().enumerate() {
        let pts: Vec<String> = ser.points.iter().map(|p| format!("{:.1},{:.1}", px(p.x), py(p.y))).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            ser.color,
            pts.join(" ")
        );
        // The second series labels its points below them, so that close points stay readable.
        let dy = if i % 2 == 0 { -6.0 } else { 15.0 };
        for p in &ser.points {
            if p.label.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="{radius}" fill="{}"/>"#,
                    px(p.x),
                    py(p.y),
                    ser.color
                );
                continue;
            }
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="{radius}" fill="{}"/><text x="{:.1}" y="{:.1}" fill="{}" font-size="11">{}</text>"#,
                px(p.x),
                py(p.y),
                ser.color,
                px(p.x) + 6.0,
                py(p.y) + dy,
                ser.color,
                esc(&p.label)
            );
        }
        let ly = TOP + 10.0 + 22.0 * i as f64;
        let lx = LEFT + pw + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"/><circle cx="{:.1}" cy="{ly:.1}" r="4" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 28.0,
            ser.color,
            lx + 14.0,
            ser.color,
            lx + 36.0,
            ly + 4.0,
            esc(&ser.name)
        );
    }
    let note_y = TOP + 10.0 + 22.0 * series.len() as f64 + 8.0;
    if labelled {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{note_y:.1}" fill="#555" font-size="11">point labels: clients</text>"##,
            LEFT + pw + 20.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal well-formedness check: tags nest and close, one root, entities are known.
    fn check_well_formed(doc: &str) -> Result<String, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut root = None;
        let mut rest = doc;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if top != name.trim() {
                    return Err(format!("</{name}> closes <{top}>"));
                }
                continue;
            }
            let name = tag.split_whitespace().next().ok_or("empty tag")?.trim_end_matches('/').to_owned();
            if attribute_quotes(tag) % 2 != 0 {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            if stack.is_empty() {
                if root.is_some() {
                    return Err(format!("second root <{name}>"));
                }
                root = Some(name.clone());
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        check_text(rest)?;
        if let Some(open) = stack.pop() {
            return Err(format!("<{open}> is never closed"));
        }
        root.ok_or_else(|| "no root element".to_owned())
    }

    fn attribute_quotes(tag: &str) -> usize {
        tag.matches('"').count()
    }

    fn check_text(text: &str) -> Result<(), String> {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
            if !["&amp;", "&lt;", "&gt;", "&quot;"].contains(&entity) {
                return Err(format!("unknown entity {entity:?}"));
            }
        }
        Ok(())
    }

    fn series(name: &str, color: &'static str, pts: &[(f64, f64)]) -> Series {
        Series {
            name: name.to_owned(),
            color,
            points: pts
                .iter()
                .zip([1, 16, 100, 1000])
                .map(|(&(x, y), c)| Point { x, y, label: c.to_string() })
                .collect(),
        }
    }

    fn labels() -> Labels {
        Labels {
            title: "synod & etcd <3 replicas>".to_owned(),
            subtitle: "100% puts".to_owned(),
            x: "throughput (ops/s)".to_owned(),
            y: "p99 latency (ms)".to_owned(),
        }
    }

    #[test]
    fn the_plot_is_well_formed_svg_with_both_series() {
        let doc = plot(
            &labels(),
            &[
                series("synod", "#1f77b4", &[(900.0, 1.4), (9000.0, 2.9), (20000.0, 9.0), (31000.0, 70.0)]),
                series("etcd", "#d62728", &[(500.0, 2.5), (5000.0, 5.0), (12000.0, 15.0), (16000.0, 120.0)]),
            ],
        );
        assert_eq!(check_well_formed(&doc), Ok("svg".to_owned()), "{doc}");
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains(">synod</text>") && doc.contains(">etcd</text>"), "legend has both: {doc}");
        assert!(doc.contains("synod &amp; etcd &lt;3 replicas&gt;"), "the title is escaped");
        assert!(doc.contains("(log scale)"), "latencies spanning 1.4-120 ms go on a log axis");
        assert!(doc.contains(">10k</text>"), "throughput ticks in thousands: {doc}");
    }

    #[test]
    fn the_checker_catches_broken_documents() {
        assert!(check_well_formed("<svg><g></svg>").is_err());
        assert!(check_well_formed("<svg>a & b</svg>").is_err());
        assert!(check_well_formed("<svg/><svg/>").is_err());
        assert_eq!(check_well_formed("<svg><g/></svg>"), Ok("svg".to_owned()));
    }

    #[test]
    fn degenerate_input_still_renders() {
        for pts in [&[][..], &[(0.0, 0.0)][..], &[(5.0, 5.0)][..], &[(f64::NAN, 1.0)][..]] {
            let doc = plot(&labels(), &[series("synod", "#1f77b4", pts)]);
            assert_eq!(check_well_formed(&doc), Ok("svg".to_owned()));
            assert!(!doc.contains("NaN") && !doc.contains("inf"), "{doc}");
        }
    }

    #[test]
    fn stacked_plots_are_one_document() {
        let time = |name: &str| Series {
            name: name.to_owned(),
            color: "#1f77b4",
            points: (0..4)
                .map(|i| Point { x: i as f64, y: 1.0 + 100.0 * i as f64, label: String::new() })
                .collect(),
        };
        let one = plot_linear(&labels(), &[time("a")]);
        assert!(!one.contains("(log scale)"), "a linear plot stays linear: {one}");
        assert!(!one.contains("point labels"), "no note without point labels");
        assert!(!one.contains("font-size=\"11\"></text>"), "no empty point labels: {one}");
        let doc = stack(&[one, plot_linear(&labels(), &[time("b"), time("c")])]);
        assert_eq!(check_well_formed(&doc), Ok("svg".to_owned()), "{doc}");
        assert_eq!(doc.matches("<?xml").count(), 1);
        assert_eq!(doc.matches("<polyline").count(), 3);
        assert!(doc.contains(&format!("<svg y=\"{HEIGHT}\" ")), "the second plot sits below the first");
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(1800.0), 2000.0);
        assert_eq!(nice_step(3.1), 5.0);
        assert_eq!(tick_label(15000.0), "15k");
        assert_eq!(tick_label(2500.0), "2.5k");
        assert_eq!(tick_label(0.5), "0.5");
        let log = Axis { lo: 1.0, hi: 100.0, log: true };
        assert_eq!(log.ticks(), vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
    }
}
