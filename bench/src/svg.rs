//! Line charts as hand-written SVG: latency distributions (percentile against latency) and
//! cost against load (subscribers or documents against latency), with log axes.

use crate::report::Row;
use std::fmt::Write as _;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub y_log: bool,
    /// Tick positions (in data units) and their labels; `None` chooses them.
    pub x_ticks: Option<Vec<(f64, String)>>,
    pub series: Vec<Series>,
}

const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
const W: f64 = 1180.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 420.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Ticks of a log axis between `lo` and `hi` (log10 units): 1, 2, 5 times powers of ten
/// when the range is short, powers of ten otherwise.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let steps: &[f64] = if hi - lo < 2.5 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut ticks = Vec::new();
    for e in (lo.floor() as i32)..=(hi.ceil() as i32) {
        for s in steps {
            let t = (s * 10f64.powi(e)).log10();
            if t >= lo - 1e-9 && t <= hi + 1e-9 {
                ticks.push(t);
            }
        }
    }
    ticks
}

fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(magnitude * 10.0);
    let mut t = (lo / step).ceil() * step;
    let mut ticks = Vec::new();
    while t <= hi + 1e-9 {
        ticks.push(t);
        t += step;
    }
    ticks
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        let s = format!("{v:.0}");
        // Thousands separators.
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v.abs() >= 1.0 {
        format!("{}", (v * 100.0).round() / 100.0)
    } else {
        format!("{}", (v * 10_000.0).round() / 10_000.0)
    }
}

impl Chart {
    pub fn render(&self) -> String {
        let tx = |v: f64| if self.x_log { v.max(1e-12).log10() } else { v };
        let ty = |v: f64| if self.y_log { v.max(1e-6).log10() } else { v };
        let all: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|&(x, y)| (tx(x), ty(y))))
            .collect();
        let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
            (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
            |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
        );
        if all.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if let Some(ticks) = &self.x_ticks {
            for (t, _) in ticks {
                x0 = x0.min(tx(*t));
                x1 = x1.max(tx(*t));
            }
        }
        if self.y_log {
            y0 = y0.floor();
            y1 = y1.ceil().max(y0 + 1.0);
        } else {
            y0 = y0.min(0.0);
            y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.05 };
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let py = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="22" font-size="15" font-weight="bold">{}</text>"#,
            LEFT,
            escape(&self.title)
        );
        // Grid and ticks.
        let y_ticks = if self.y_log {
            log_ticks(y0, y1)
        } else {
            linear_ticks(y0, y1)
        };
        for t in y_ticks {
            let y = py(t);
            let value = if self.y_log { 10f64.powf(t) } else { t };
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                label(value)
            );
        }
        let x_ticks: Vec<(f64, String)> = match &self.x_ticks {
            Some(ticks) => ticks.iter().map(|(t, l)| (tx(*t), l.clone())).collect(),
            None if self.x_log => log_ticks(x0, x1)
                .into_iter()
                .map(|t| (t, label(10f64.powf(t))))
                .collect(),
            None => linear_ticks(x0, x1)
                .into_iter()
                .map(|t| (t, label(t)))
                .collect(),
        };
        for (t, text) in x_ticks {
            let x = px(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                escape(&text)
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 14.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        // Lines and the legend.
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let points: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(tx(x)), py(ty(y))))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                points.join(" ")
            );
            for p in &points {
                let (x, y) = p.split_once(',').unwrap();
                let _ = writeln!(svg, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"#);
            }
            let ly = TOP + 10.0 + i as f64 * 18.0;
            let lx = LEFT + pw + 14.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}" font-size="11">{}</text>"#,
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Percentile positions on a latency-distribution axis: `-log10(1 - q)`, so p50, p90, p99
/// and p99.9 are evenly spaced; the maximum is drawn a little past p99.9.
pub fn quantile_x(q: f64) -> f64 {
    if q >= 1.0 {
        3.4
    } else {
        -(1.0 - q).log10()
    }
}

/// A chart of the latency distributions of `rows` (those with samples).
pub fn latency_chart(title: &str, rows: &[&Row]) -> Chart {
    let series = rows
        .iter()
        .filter_map(|row| {
            let latency = row.latency.as_ref()?;
            Some(Series {
                name: row.label(),
                points: latency
                    .curve
                    .iter()
                    .map(|&(q, ms)| (quantile_x(q), ms))
                    .collect(),
                dashed: row.scenario == "baseline",
            })
        })
        .collect();
    Chart {
        title: title.into(),
        x_label: "percentile".into(),
        y_label: "latency, ms (log)".into(),
        x_log: false,
        y_log: true,
        x_ticks: Some(vec![
            (quantile_x(0.0), "p0".into()),
            (quantile_x(0.5), "p50".into()),
            (quantile_x(0.9), "p90".into()),
            (quantile_x(0.99), "p99".into()),
            (quantile_x(0.999), "p99.9".into()),
            (quantile_x(1.0), "max".into()),
        ]),
        series,
    }
}

/// A chart of cost against load: for each series of `rows` (by [`Row::series`]), p50 and
/// p99 (or the row's value, in the given unit) against the row's load.
pub fn load_chart(title: &str, x_label: &str, y_label: &str, rows: &[&Row]) -> Chart {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        if let Some(s) = &row.series {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
    }
    let mut series = Vec::new();
    for name in names {
        let mine: Vec<&&Row> = rows
            .iter()
            .filter(|r| r.series.as_ref() == Some(&name) && r.load.is_some())
            .collect();
        if mine.iter().all(|r| r.latency.is_some()) {
            for (which, dashed) in [("p50", false), ("p99", true)] {
                series.push(Series {
                    name: format!("{name} {which}"),
                    points: mine
                        .iter()
                        .map(|r| {
                            let l = r.latency.as_ref().unwrap();
                            (r.load.unwrap(), if dashed { l.p99_ms } else { l.p50_ms })
                        })
                        .collect(),
                    dashed,
                });
            }
        } else {
            series.push(Series {
                name: format!("{name} ({})", mine[0].unit.clone().unwrap_or_default()),
                points: mine
                    .iter()
                    .filter_map(|r| Some((r.load?, r.value?)))
                    .collect(),
                dashed: false,
            });
        }
    }
    Chart {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        x_log: true,
        y_log: true,
        x_ticks: None,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_every_series_and_escapes_names() {
        let chart = Chart {
            title: "a <b>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_log: true,
            y_log: true,
            x_ticks: None,
            series: vec![
                Series {
                    name: "one & two".into(),
                    points: vec![(100.0, 1.0), (1000.0, 3.0), (10_000.0, 40.0)],
                    dashed: false,
                },
                Series {
                    name: "flat".into(),
                    points: vec![(100.0, 2.0), (10_000.0, 2.0)],
                    dashed: true,
                },
            ],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("one &amp; two"));
        // Decades of the log x axis are labelled.
        assert!(svg.contains(">1,000<") && svg.contains(">10,000<"));
    }

    #[test]
    fn percentiles_are_spaced_by_nines() {
        assert!((quantile_x(0.9) - 1.0).abs() < 1e-9);
        assert!((quantile_x(0.99) - 2.0).abs() < 1e-9);
        assert!(quantile_x(1.0) > quantile_x(0.999));
    }
}
