//! Chart layout into a `Scene`: line charts over rounds (one line per run × metric, legend on the right) and the
//! safety/utility scatter (Pareto) plot. Axes carry labels and "nice" ticks; rates are drawn on a fixed [0, 1].

use super::raster::Fonts;
use super::scene::{Anchor, Rgb, Scene, Shape, Stroke};

/// Colour-blind-friendly qualitative palette (Tableau 10).
pub const PALETTE: [Rgb; 10] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(127, 127, 127),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
];
const DASHES: [Option<(f64, f64)>; 4] =
    [None, Some((9.0, 5.0)), Some((2.5, 4.0)), Some((12.0, 4.0))];
const INK: Rgb = Rgb(30, 30, 30);
const GRID: Rgb = Rgb(225, 225, 225);
const MUTED: Rgb = Rgb(90, 90, 90);

/// Marker shapes, cycled per metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
}
const MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
];

/// How the y axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YRange {
    /// A fixed range (rates: [0, 1]).
    Fixed(f64, f64),
    /// From the data, optionally stretched to include 0.
    Auto { include_zero: bool },
}

/// One line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    /// Index into the palette (cycled).
    pub color: usize,
    /// Index into the dash/marker styles (cycled).
    pub style: usize,
    /// (round, value), sorted by round.
    pub pts: Vec<(f64, f64)>,
}

/// A line chart over rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub y: YRange,
    pub series: Vec<Series>,
}

/// A point of the Pareto plot.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoPoint {
    /// Index of the run (colour).
    pub run: usize,
    /// Short text drawn beside the point (e.g. `r6`).
    pub tag: String,
    /// True: the run's final training round; false: an evaluation round.
    pub is_final: bool,
    pub x: f64,
    pub y: f64,
}

/// The safety/utility scatter plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Pareto {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub runs: Vec<String>,
    pub points: Vec<ParetoPoint>,
}

/// Plot geometry: the data rectangle and the legend column.
struct Frame {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Frame {
    fn w(&self) -> f64 {
        self.right - self.left
    }
    fn h(&self) -> f64 {
        self.bottom - self.top
    }
}

/// Ticks for [lo, hi]: about `n` "nice" values (1, 2, 2.5, 5 × 10^k steps) inside the range.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, f64) {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater)
        || !lo.is_finite()
        || !hi.is_finite()
    {
        return (vec![lo], 1.0);
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * mag);
    let first = (lo / step - 1e-9).ceil() * step;
    let mut t = Vec::new();
    let mut v = first;
    while v <= hi + step * 1e-9 && t.len() < 50 {
        t.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    (t, step)
}

/// A tick label with as many decimals as the step needs.
pub fn tick_label(v: f64, step: f64) -> String {
    let dec = (0..=6usize).find(|d| {
        let m = step * 10f64.powi(*d as i32);
        (m - m.round()).abs() < 1e-6 * m.abs().max(1.0)
    });
    let s = format!("{:.*}", dec.unwrap_or(6), v);
    if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_string()
    } else {
        s
    }
}

fn y_bounds(y: YRange, vals: impl Iterator<Item = f64>) -> (f64, f64) {
    match y {
        YRange::Fixed(a, b) => (a, b),
        YRange::Auto { include_zero } => {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for v in vals.filter(|v| v.is_finite()) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if !lo.is_finite() {
                return (0.0, 1.0);
            }
            if include_zero {
                lo = lo.min(0.0);
                hi = hi.max(0.0);
            }
            if hi - lo < 1e-12 {
                let pad = if lo.abs() > 1e-12 {
                    lo.abs() * 0.1
                } else {
                    1.0
                };
                return (lo - pad, hi + pad);
            }
            let pad = (hi - lo) * 0.06;
            let lo2 = if include_zero && lo == 0.0 {
                0.0
            } else {
                lo - pad
            };
            let hi2 = if include_zero && hi == 0.0 {
                0.0
            } else {
                hi + pad
            };
            (lo2, hi2)
        }
    }
}

fn marker_shape(
    m: Marker,
    c: (f64, f64),
    r: f64,
    fill: Option<Rgb>,
    stroke: Option<Stroke>,
) -> Shape {
    let (x, y) = c;
    match m {
        Marker::Circle => Shape::Circle { c, r, fill, stroke },
        Marker::Square => {
            let h = r * 0.9;
            Shape::Polygon {
                pts: vec![
                    (x - h, y - h),
                    (x + h, y - h),
                    (x + h, y + h),
                    (x - h, y + h),
                ],
                fill,
                stroke,
            }
        }
        Marker::Triangle => {
            let h = r * 1.2;
            Shape::Polygon {
                pts: vec![
                    (x, y - h),
                    (x + h * 0.95, y + h * 0.7),
                    (x - h * 0.95, y + h * 0.7),
                ],
                fill,
                stroke,
            }
        }
        Marker::Diamond => {
            let h = r * 1.25;
            Shape::Polygon {
                pts: vec![(x, y - h), (x + h, y), (x, y + h), (x - h, y)],
                fill,
                stroke,
            }
        }
    }
}

/// Title, subtitle, frame, grid, ticks and axis labels; returns the data→pixel mappers' frame.
#[allow(clippy::too_many_arguments)]
fn axes(
    sc: &mut Scene,
    fonts: &Fonts,
    f: &Frame,
    title: &str,
    subtitle: &str,
    x_label: &str,
    y_label: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    x_integer: bool,
) {
    let max_title = f64::from(sc.w) - 40.0;
    sc.push(Shape::Text {
        pos: (20.0, 32.0),
        text: fonts.fit(title, 20.0, true, max_title),
        size: 20.0,
        color: INK,
        anchor: Anchor::Start,
        vertical: false,
        bold: true,
    });
    if !subtitle.is_empty() {
        sc.text(
            (20.0, 54.0),
            fonts.fit(subtitle, 13.0, false, max_title),
            13.0,
            MUTED,
            Anchor::Start,
        );
    }
    let mx = |v: f64| f.left + (v - x0) / (x1 - x0) * f.w();
    let my = |v: f64| f.bottom - (v - y0) / (y1 - y0) * f.h();
    let (yt, ystep) = nice_ticks(y0, y1, 6);
    for v in &yt {
        let y = my(*v);
        sc.line((f.left, y), (f.right, y), Stroke::solid(GRID, 1.0));
        sc.line((f.left - 5.0, y), (f.left, y), Stroke::solid(INK, 1.2));
        sc.text(
            (f.left - 9.0, y + 4.5),
            tick_label(*v, ystep),
            13.0,
            INK,
            Anchor::End,
        );
    }
    let (mut xt, mut xstep) = nice_ticks(x0, x1, 8);
    if x_integer && xstep < 1.0 {
        xstep = 1.0;
        xt = (x0.ceil() as i64..=x1.floor() as i64)
            .map(|v| v as f64)
            .collect();
    }
    for v in &xt {
        let x = mx(*v);
        sc.line((x, f.top), (x, f.bottom), Stroke::solid(GRID, 1.0));
        sc.line((x, f.bottom), (x, f.bottom + 5.0), Stroke::solid(INK, 1.2));
        sc.text(
            (x, f.bottom + 21.0),
            tick_label(*v, xstep),
            13.0,
            INK,
            Anchor::Middle,
        );
    }
    sc.push(Shape::Rect {
        x: f.left,
        y: f.top,
        w: f.w(),
        h: f.h(),
        fill: None,
        stroke: Some(Stroke::solid(INK, 1.2)),
    });
    sc.text(
        ((f.left + f.right) / 2.0, f.bottom + 46.0),
        x_label,
        15.0,
        INK,
        Anchor::Middle,
    );
    sc.push(Shape::Text {
        pos: (24.0, (f.top + f.bottom) / 2.0),
        text: fonts.fit(y_label, 15.0, false, f.h()),
        size: 15.0,
        color: INK,
        anchor: Anchor::Middle,
        vertical: true,
        bold: false,
    });
}

/// Lay out a line chart (1000×600).
pub fn line_chart(c: &LineChart, fonts: &Fonts) -> Scene {
    let (w, h) = (1000u32, 600u32);
    let mut sc = Scene::new(w, h);
    let legend_w = 270.0;
    let f = Frame {
        left: 86.0,
        top: 72.0,
        right: f64::from(w) - legend_w - 20.0,
        bottom: f64::from(h) - 70.0,
    };
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in &c.series {
        for (x, _) in &s.pts {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
        }
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1.0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let (y0, y1) = y_bounds(c.y, c.series.iter().flat_map(|s| s.pts.iter().map(|p| p.1)));
    axes(
        &mut sc,
        fonts,
        &f,
        &c.title,
        &c.subtitle,
        &c.x_label,
        &c.y_label,
        (x0, x1),
        (y0, y1),
        true,
    );
    let mx = |v: f64| f.left + (v - x0) / (x1 - x0) * f.w();
    let my = |v: f64| f.bottom - (v - y0) / (y1 - y0) * f.h();
    let max_pts = c.series.iter().map(|s| s.pts.len()).max().unwrap_or(0);
    for s in &c.series {
        let color = PALETTE[s.color % PALETTE.len()];
        let pts: Vec<(f64, f64)> = s
            .pts
            .iter()
            .map(|(x, y)| (mx(*x), my(y.clamp(y0, y1))))
            .collect();
        if pts.len() >= 2 {
            sc.push(Shape::Polyline {
                pts: pts.clone(),
                stroke: Stroke {
                    color,
                    width: 2.2,
                    dash: DASHES[s.style % 4],
                },
            });
        }
        // Markers where points are few enough to tell apart, and always for sparse (e.g. eval-only) series.
        if max_pts <= 40 || s.pts.len() * 4 <= max_pts || pts.len() == 1 {
            for p in &pts {
                sc.push(marker_shape(
                    MARKERS[s.style % 4],
                    *p,
                    3.6,
                    Some(color),
                    Some(Stroke::solid(Rgb::WHITE, 0.8)),
                ));
            }
        }
    }
    // Legend.
    let lx = f.right + 22.0;
    let mut ly = f.top + 6.0;
    let max_rows = ((f.bottom - f.top) / 22.0) as usize;
    for (i, s) in c.series.iter().enumerate() {
        if i + 1 == max_rows && c.series.len() > max_rows {
            sc.text(
                (lx, ly + 5.0),
                format!("… and {} more (see the CSV)", c.series.len() - i),
                12.5,
                MUTED,
                Anchor::Start,
            );
            break;
        }
        let color = PALETTE[s.color % PALETTE.len()];
        sc.push(Shape::Polyline {
            pts: vec![(lx, ly), (lx + 34.0, ly)],
            stroke: Stroke {
                color,
                width: 2.2,
                dash: DASHES[s.style % 4],
            },
        });
        sc.push(marker_shape(
            MARKERS[s.style % 4],
            (lx + 17.0, ly),
            3.6,
            Some(color),
            Some(Stroke::solid(Rgb::WHITE, 0.8)),
        ));
        let text = fonts.fit(&s.label, 12.5, false, legend_w - 50.0);
        sc.text((lx + 42.0, ly + 4.5), text, 12.5, INK, Anchor::Start);
        ly += 22.0;
    }
    if c.series.is_empty() {
        sc.text(
            ((f.left + f.right) / 2.0, (f.top + f.bottom) / 2.0),
            "no data",
            16.0,
            MUTED,
            Anchor::Middle,
        );
    }
    sc
}

/// The non-dominated points (maximize both x and y), sorted by x.
pub fn frontier(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut f: Vec<(f64, f64)> = pts
        .iter()
        .filter(|p| {
            !pts.iter()
                .any(|q| q.0 >= p.0 && q.1 >= p.1 && (q.0 > p.0 || q.1 > p.1))
        })
        .copied()
        .collect();
    f.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    f.dedup();
    f
}

/// Lay out the Pareto plot (1000×760): both axes on [0, 1], better is up and to the right.
pub fn pareto_chart(p: &Pareto, fonts: &Fonts) -> Scene {
    let (w, h) = (1000u32, 760u32);
    let mut sc = Scene::new(w, h);
    let legend_w = 270.0;
    let side = (f64::from(h) - 72.0 - 70.0).min(f64::from(w) - legend_w - 20.0 - 86.0);
    let f = Frame {
        left: 86.0,
        top: 72.0,
        right: 86.0 + side,
        bottom: 72.0 + side,
    };
    axes(
        &mut sc,
        fonts,
        &f,
        &p.title,
        &p.subtitle,
        &p.x_label,
        &p.y_label,
        (0.0, 1.0),
        (0.0, 1.0),
        false,
    );
    let mx = |v: f64| f.left + v.clamp(0.0, 1.0) * f.w();
    let my = |v: f64| f.bottom - v.clamp(0.0, 1.0) * f.h();
    sc.text(
        (f.right - 10.0, f.top + 22.0),
        "better ↗",
        13.0,
        MUTED,
        Anchor::End,
    );
    // Frontier over the final points.
    let finals: Vec<(f64, f64)> = p
        .points
        .iter()
        .filter(|q| q.is_final)
        .map(|q| (q.x, q.y))
        .collect();
    let fr = frontier(&finals);
    if fr.len() >= 2 {
        let mut stair = Vec::new();
        for (i, q) in fr.iter().enumerate() {
            if i > 0 {
                stair.push((mx(q.0), my(fr[i - 1].1)));
            }
            stair.push((mx(q.0), my(q.1)));
        }
        sc.push(Shape::Polyline {
            pts: stair,
            stroke: Stroke {
                color: Rgb(150, 150, 150),
                width: 1.5,
                dash: Some((6.0, 4.0)),
            },
        });
    }
    // Eval trajectories per run, then points.
    for run in 0..p.runs.len() {
        let color = PALETTE[run % PALETTE.len()];
        let ev: Vec<(f64, f64)> = p
            .points
            .iter()
            .filter(|q| q.run == run && !q.is_final)
            .map(|q| (mx(q.x), my(q.y)))
            .collect();
        if ev.len() >= 2 {
            sc.push(Shape::Polyline {
                pts: ev,
                stroke: Stroke {
                    color,
                    width: 1.3,
                    dash: Some((3.0, 3.0)),
                },
            });
        }
    }
    for q in &p.points {
        let color = PALETTE[q.run % PALETTE.len()];
        let c = (mx(q.x), my(q.y));
        if q.is_final {
            sc.push(Shape::Circle {
                c,
                r: 7.0,
                fill: Some(color),
                stroke: Some(Stroke::solid(INK, 1.2)),
            });
        } else {
            sc.push(marker_shape(
                Marker::Diamond,
                c,
                5.0,
                Some(Rgb::WHITE),
                Some(Stroke::solid(color, 2.0)),
            ));
        }
        if !q.tag.is_empty() {
            sc.text(
                (c.0 + 9.0, c.1 - 8.0),
                q.tag.clone(),
                11.5,
                color,
                Anchor::Start,
            );
        }
    }
    // Legend: runs, then marker meanings.
    let lx = f.right + 30.0;
    let mut ly = f.top + 6.0;
    for (i, name) in p.runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        sc.push(Shape::Circle {
            c: (lx + 8.0, ly),
            r: 6.0,
            fill: Some(color),
            stroke: Some(Stroke::solid(INK, 1.0)),
        });
        sc.text(
            (lx + 22.0, ly + 4.5),
            fonts.fit(name, 12.5, false, f64::from(w) - lx - 32.0),
            12.5,
            INK,
            Anchor::Start,
        );
        ly += 22.0;
        if ly > f.bottom - 90.0 {
            break;
        }
    }
    ly += 14.0;
    sc.push(Shape::Circle {
        c: (lx + 8.0, ly),
        r: 6.0,
        fill: Some(MUTED),
        stroke: Some(Stroke::solid(INK, 1.0)),
    });
    sc.text(
        (lx + 22.0, ly + 4.5),
        "final training round",
        12.5,
        INK,
        Anchor::Start,
    );
    ly += 22.0;
    sc.push(marker_shape(
        Marker::Diamond,
        (lx + 8.0, ly),
        5.0,
        Some(Rgb::WHITE),
        Some(Stroke::solid(MUTED, 2.0)),
    ));
    sc.text(
        (lx + 22.0, ly + 4.5),
        "held-out eval (rN = round)",
        12.5,
        INK,
        Anchor::Start,
    );
    ly += 22.0;
    sc.push(Shape::Polyline {
        pts: vec![(lx, ly), (lx + 16.0, ly)],
        stroke: Stroke {
            color: Rgb(150, 150, 150),
            width: 1.5,
            dash: Some((6.0, 4.0)),
        },
    });
    sc.text(
        (lx + 22.0, ly + 4.5),
        "frontier of final points",
        12.5,
        INK,
        Anchor::Start,
    );
    if p.points.is_empty() {
        sc.text(
            ((f.left + f.right) / 2.0, (f.top + f.bottom) / 2.0),
            "no data",
            16.0,
            MUTED,
            Anchor::Middle,
        );
    }
    sc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_on_the_unit_interval() {
        let (t, step) = nice_ticks(0.0, 1.0, 6);
        assert_eq!(step, 0.2);
        let labels: Vec<String> = t.iter().map(|v| tick_label(*v, step)).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let (t, step) = nice_ticks(-0.37, 0.61, 6);
        assert_eq!(step, 0.2);
        assert_eq!(t.len(), 5);
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(1500.0, 500.0), "1500");
    }

    #[test]
    fn frontier_keeps_only_non_dominated_points() {
        let f = frontier(&[(0.2, 0.9), (0.5, 0.5), (0.4, 0.4), (0.9, 0.1), (0.5, 0.5)]);
        assert_eq!(f, vec![(0.2, 0.9), (0.5, 0.5), (0.9, 0.1)]);
    }
}

/// A matrix of rates in [0, 1] (cross-play: rows are attackers, columns defenders).
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    pub title: String,
    pub subtitle: String,
    pub row_label: String,
    pub col_label: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `cells[r][c]`; `None` is drawn hatched grey ("n/a").
    pub cells: Vec<Vec<Option<f64>>>,
}

/// White → dark red, linear in the value (a sequential scale: more red, more attack success).
pub fn heat_color(v: f64) -> Rgb {
    let t = v.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    Rgb(lerp(255.0, 165.0), lerp(255.0, 15.0), lerp(255.0, 21.0))
}

/// Heatmap with the value printed in every cell and a colour bar.
pub fn heatmap_chart(hm: &Heatmap, fonts: &Fonts) -> Scene {
    let (nr, nc) = (hm.rows.len().max(1), hm.cols.len().max(1));
    let cell = (560.0 / nc.max(nr) as f64).clamp(34.0, 90.0);
    let label_w = hm
        .rows
        .iter()
        .map(|r| fonts.width(r, 13.0, false))
        .fold(60.0, f64::max)
        + 50.0;
    let (left, top) = (label_w, 96.0);
    let (gw, gh) = (cell * nc as f64, cell * nr as f64);
    let w = (left + gw + 150.0)
        .max(fonts.width(&hm.title, 18.0, true) + 60.0)
        .ceil();
    let h = (top + gh + 80.0).ceil();
    let mut sc = Scene::new(w as u32, h as u32);
    sc.push(Shape::Text {
        pos: (20.0, 30.0),
        text: hm.title.clone(),
        size: 18.0,
        color: INK,
        anchor: Anchor::Start,
        vertical: false,
        bold: true,
    });
    sc.text(
        (20.0, 52.0),
        hm.subtitle.clone(),
        13.0,
        MUTED,
        Anchor::Start,
    );
    for (r, row) in hm.cells.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (x, y) = (left + c as f64 * cell, top + r as f64 * cell);
            let fill = v.map(heat_color).unwrap_or(Rgb(235, 235, 235));
            sc.push(Shape::Rect {
                x,
                y,
                w: cell,
                h: cell,
                fill: Some(fill),
                stroke: Some(Stroke::solid(Rgb(255, 255, 255), 1.0)),
            });
            let text = v
                .map(|v| format!("{:.2}", v))
                .unwrap_or_else(|| "n/a".into());
            let ink = if v.is_some_and(|v| v > 0.55) {
                Rgb(255, 255, 255)
            } else {
                INK
            };
            let size = (cell * 0.3).clamp(10.0, 15.0);
            sc.text(
                (x + cell / 2.0, y + cell / 2.0 + size * 0.35),
                text,
                size,
                ink,
                Anchor::Middle,
            );
        }
    }
    for (r, name) in hm.rows.iter().enumerate() {
        let y = top + (r as f64 + 0.5) * cell + 4.5;
        sc.text((left - 8.0, y), name.clone(), 13.0, INK, Anchor::End);
    }
    for (c, name) in hm.cols.iter().enumerate() {
        let x = left + (c as f64 + 0.5) * cell;
        sc.text((x, top - 8.0), name.clone(), 13.0, INK, Anchor::Middle);
    }
    sc.text(
        (left + gw / 2.0, top + gh + 30.0),
        hm.col_label.clone(),
        14.0,
        INK,
        Anchor::Middle,
    );
    sc.push(Shape::Text {
        pos: (18.0, top + gh / 2.0),
        text: hm.row_label.clone(),
        size: 14.0,
        color: INK,
        anchor: Anchor::Middle,
        vertical: true,
        bold: false,
    });
    // Colour bar, 0 at the bottom.
    let (bx, bh) = (left + gw + 30.0, gh.max(120.0));
    let steps = 40;
    for i in 0..steps {
        let v = (i as f64 + 0.5) / steps as f64;
        let y = top + bh - (i as f64 + 1.0) * bh / steps as f64;
        sc.push(Shape::Rect {
            x: bx,
            y,
            w: 18.0,
            h: bh / steps as f64 + 0.5,
            fill: Some(heat_color(v)),
            stroke: None,
        });
    }
    sc.push(Shape::Rect {
        x: bx,
        y: top,
        w: 18.0,
        h: bh,
        fill: None,
        stroke: Some(Stroke::solid(INK, 1.0)),
    });
    for v in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = top + bh - v * bh;
        sc.line((bx + 18.0, y), (bx + 23.0, y), Stroke::solid(INK, 1.0));
        sc.text(
            (bx + 27.0, y + 4.5),
            format!("{v:.2}"),
            12.0,
            INK,
            Anchor::Start,
        );
    }
    sc
}
