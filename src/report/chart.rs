//! The report's plots, drawn with `plotters`: line charts over rounds (one line per run × metric, legend on the
//! right), the safety/utility (Pareto) scatter, the cross-play heatmap, and `sparring eval`'s grouped bar charts
//! (a rate per set or topic and mode). A `Plot` draws onto any plotters backend and is written as SVG and as PNG;
//! text uses the embedded DejaVu Sans (no system font, no C library).

use anyhow::{Result, anyhow};
use plotters::coord::{CoordTranslate, Shift};
use plotters::data::float::FloatPrettyPrinter;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::sync::OnceLock;

/// Colour-blind-friendly qualitative palette (Tableau 10).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Dash patterns (on, off) in pixels, cycled per metric; `None` is solid.
const DASHES: [Option<(u32, u32)>; 4] = [None, Some((9, 5)), Some((3, 4)), Some((12, 4))];
const INK: RGBColor = RGBColor(30, 30, 30);
const GRID: RGBColor = RGBColor(225, 225, 225);
const MUTED: RGBColor = RGBColor(90, 90, 90);
const FRONTIER: RGBColor = RGBColor(150, 150, 150);
const FONT: &str = "sans-serif";

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
    pub pts: Vec<(u32, f64)>,
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

/// A matrix of rates in [0, 1] (cross-play: rows are attackers, columns defenders).
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    pub title: String,
    pub subtitle: String,
    pub row_label: String,
    pub col_label: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `cells[r][c]`; `None` is drawn grey ("n/a").
    pub cells: Vec<Vec<Option<f64>>>,
}

/// One panel of a [`Bars`] chart: a group of horizontal bars per row (top to bottom), one bar per series.
#[derive(Debug, Clone, PartialEq)]
pub struct BarPanel {
    /// Drawn above the panel (e.g. `Attack success rate on harmful prompts`).
    pub title: String,
    /// The value axis' description (e.g. `ASR`).
    pub x_label: String,
    /// The groups' names (e.g. the sets, or `set: topic`).
    pub groups: Vec<String>,
    /// `values[group][series]`, rates in [0, 1]; `None`: no bar, `n/a` written instead.
    pub values: Vec<Vec<Option<f64>>>,
}

/// Grouped bar charts of rates in [0, 1] (`sparring eval`: per set or topic, a bar per mode), panels stacked
/// top to bottom, each bar's value written at its end, one legend for all panels.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    pub title: String,
    pub subtitle: String,
    /// The series (a bar of each group per series, in this order, coloured from the palette): the legend.
    pub series: Vec<String>,
    pub panels: Vec<BarPanel>,
}

/// One plot of the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Plot {
    Line(LineChart),
    Pareto(Pareto),
    Heatmap(Heatmap),
    Bars(Bars),
}

/// Registers the embedded DejaVu Sans (regular and bold) as plotters' "sans-serif", once.
fn fonts() -> Result<()> {
    static FONTS: OnceLock<bool> = OnceLock::new();
    let ok = FONTS.get_or_init(|| {
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| anyhow!("the embedded DejaVu Sans font does not load"))
}

/// The embedded font at `size` pixels.
fn font(size: f64, bold: bool) -> plotters::style::FontDesc<'static> {
    let style = if bold {
        FontStyle::Bold
    } else {
        FontStyle::Normal
    };
    (FONT, size, style).into_font()
}

/// Text style: `size` pixels, anchored at `(h, v)`.
fn text(size: f64, bold: bool, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    font(size, bold).color(&color).pos(Pos::new(h, v))
}

/// Width of `t` in pixels.
fn width(t: &str, size: f64, bold: bool) -> f64 {
    font(size, bold)
        .box_size(t)
        .map_or(0.0, |(w, _)| f64::from(w))
}

/// `t` cut to at most `max_w` pixels wide, with an ellipsis if cut.
fn fit(t: &str, size: f64, bold: bool, max_w: f64) -> String {
    let mut chars: Vec<char> = t.chars().collect();
    let mut s = t.to_string();
    while !chars.is_empty() && width(&s, size, bold) > max_w {
        chars.pop();
        s = chars.iter().collect::<String>() + "…";
    }
    s
}

/// A polyline, solid or dashed, in any coordinate system.
fn polyline<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    pts: Vec<CT::From>,
    style: ShapeStyle,
    dash: Option<(u32, u32)>,
) -> DrawResult<(), DB>
where
    CT::From: Clone,
{
    match dash {
        None => area.draw(&PathElement::new(pts, style)),
        Some((on, off)) => area.draw(&DashedPathElement::new(pts, on, off, style)),
    }
}

/// Marker outline (pixel offsets) of a series style: circle, square, triangle, diamond.
fn marker(style: usize, r: f64) -> Vec<(i32, i32)> {
    let (n, turn, scale) = match style % 4 {
        0 => (16, 0.0, 1.0),
        1 => (4, 0.125, 1.3),
        2 => (3, 0.0, 1.4),
        _ => (4, 0.0, 1.35),
    };
    (0..n)
        .map(|i| {
            let a = std::f64::consts::TAU * (f64::from(i) / f64::from(n) + turn);
            let (s, c) = a.sin_cos();
            (
                (r * scale * s).round() as i32,
                (-r * scale * c).round() as i32,
            )
        })
        .collect()
}

/// The title and subtitle at the top of a plot.
fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> DrawResult<(), DB> {
    let max_w = f64::from(root.dim_in_pixel().0) - 40.0;
    let top =
        |size: f64, bold: bool, color: RGBColor| text(size, bold, color, HPos::Left, VPos::Top);
    root.draw(&Text::new(
        fit(title, 22.0, true, max_w),
        (20, 14),
        top(22.0, true, INK),
    ))?;
    root.draw(&Text::new(
        fit(subtitle, 15.0, false, max_w),
        (20, 44),
        top(15.0, false, MUTED),
    ))
}

/// The data range of the y axis.
fn y_bounds(y: YRange, vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let include_zero = match y {
        YRange::Fixed(a, b) => return (a, b),
        YRange::Auto { include_zero } => include_zero,
    };
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
    let lo = if include_zero && lo == 0.0 {
        lo
    } else {
        lo - pad
    };
    let hi = if include_zero && hi == 0.0 {
        hi
    } else {
        hi + pad
    };
    (lo, hi)
}

/// Tick label of a value on an axis spanning `span`: no decimals on wide axes, at least one on narrow ones.
fn tick(v: f64, span: f64) -> String {
    FloatPrettyPrinter {
        allow_scientific: false,
        min_decimal: i32::from(span < 20.0),
        max_decimal: 4,
    }
    .print(v)
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

/// White → dark red, linear in the value (a sequential scale: more red, more attack success).
pub fn heat_color(v: f64) -> RGBColor {
    let t = v.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(255.0, 165.0), lerp(255.0, 15.0), lerp(255.0, 21.0))
}

impl Plot {
    /// Picture size in pixels.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Plot::Line(_) => (1000, 600),
            Plot::Pareto(_) => (1000, 760),
            Plot::Heatmap(hm) => heatmap_layout(hm).size,
            Plot::Bars(b) => bars_layout(b).size,
        }
    }

    /// The plot as a standalone SVG document.
    pub fn svg(&self) -> Result<String> {
        fonts()?;
        let mut s = String::new();
        {
            let root = SVGBackend::with_string(&mut s, self.size()).into_drawing_area();
            self.draw(&root)?;
            root.present()?;
        }
        Ok(s)
    }

    /// The plot as a PNG file (8-bit RGB).
    pub fn png(&self) -> Result<Vec<u8>> {
        fonts()?;
        let (w, h) = self.size();
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present()?;
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&rgb)?;
        writer.finish()?;
        Ok(out)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        root.fill(&WHITE)?;
        match self {
            Plot::Line(c) => line_chart(c, root),
            Plot::Pareto(p) => pareto_chart(p, root),
            Plot::Heatmap(hm) => heatmap_chart(hm, root),
            Plot::Bars(b) => bars_chart(b, root),
        }
    }
}

/// A line chart: axes on the left, the legend in a 270-pixel column on the right.
fn line_chart<DB: DrawingBackend>(
    c: &LineChart,
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<(), DB> {
    header(root, &c.title, &c.subtitle)?;
    let (plot, legend) = root.margin(72, 0, 0, 0).split_horizontally(730);
    let xs = || c.series.iter().flat_map(|s| s.pts.iter().map(|p| p.0));
    let (mut x0, mut x1) = (xs().min().unwrap_or(0), xs().max().unwrap_or(1));
    if x1 == x0 {
        (x0, x1) = (x0.saturating_sub(1), x1 + 1);
    }
    let (y0, y1) = y_bounds(c.y, c.series.iter().flat_map(|s| s.pts.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&plot)
        .margin_left(12)
        .margin_right(20)
        .margin_bottom(12)
        .x_label_area_size(58)
        .y_label_area_size(84)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let span = y1 - y0;
    chart
        .configure_mesh()
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .x_labels(10)
        .y_labels(7)
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(INK)
        .label_style((FONT, 15).into_font().color(&INK))
        .axis_desc_style((FONT, 17).into_font().color(&INK))
        .y_label_formatter(&|v| tick(*v, span))
        .draw()?;
    let area = chart.plotting_area();
    let max_pts = c.series.iter().map(|s| s.pts.len()).max().unwrap_or(0);
    for s in &c.series {
        let color = PALETTE[s.color % PALETTE.len()];
        let pts: Vec<(u32, f64)> = s.pts.iter().map(|&(x, y)| (x, y.clamp(y0, y1))).collect();
        polyline(
            area,
            pts.clone(),
            color.stroke_width(2),
            DASHES[s.style % 4],
        )?;
        // Markers where points are few enough to tell apart, and always for sparse (e.g. eval-only) series.
        if max_pts <= 40 || s.pts.len() * 4 <= max_pts || pts.len() == 1 {
            for p in pts {
                area.draw(
                    &(EmptyElement::at(p) + Polygon::new(marker(s.style, 4.0), color.filled())),
                )?;
            }
        }
    }
    if c.series.is_empty() {
        let mid = (x0 + (x1 - x0) / 2, (y0 + y1) / 2.0);
        area.draw(&Text::new(
            "no data",
            mid,
            text(18.0, false, MUTED, HPos::Center, VPos::Center),
        ))?;
    }
    // Legend: line sample, marker, label; the rows that do not fit are counted.
    let max_rows = (legend.dim_in_pixel().1 as usize).saturating_sub(80) / 24;
    for (i, s) in c.series.iter().enumerate() {
        let y = 12 + 24 * i as i32;
        let label = text(14.0, false, INK, HPos::Left, VPos::Center);
        if i + 1 == max_rows && c.series.len() > max_rows {
            let more = format!("… and {} more (see the CSV)", c.series.len() - i);
            legend.draw(&Text::new(more, (6, y), label.color(&MUTED)))?;
            break;
        }
        let color = PALETTE[s.color % PALETTE.len()];
        polyline(
            &legend,
            vec![(6, y), (42, y)],
            color.stroke_width(2),
            DASHES[s.style % 4],
        )?;
        legend.draw(
            &(EmptyElement::at((24, y)) + Polygon::new(marker(s.style, 4.0), color.filled())),
        )?;
        legend.draw(&Text::new(
            fit(&s.label, 14.0, false, 210.0),
            (50, y),
            label,
        ))?;
    }
    Ok(())
}

/// The Pareto plot: both axes on [0, 1], better is up and to the right.
fn pareto_chart<DB: DrawingBackend>(
    p: &Pareto,
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<(), DB> {
    header(root, &p.title, &p.subtitle)?;
    let (plot, legend) = root.margin(72, 0, 0, 0).split_horizontally(730);
    let mut chart = ChartBuilder::on(&plot)
        .margin_left(12)
        .margin_right(20)
        .margin_bottom(12)
        .x_label_area_size(58)
        .y_label_area_size(84)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(INK)
        .label_style((FONT, 15).into_font().color(&INK))
        .axis_desc_style((FONT, 17).into_font().color(&INK))
        .draw()?;
    let area = chart.plotting_area();
    let at = |q: &ParetoPoint| (q.x.clamp(0.0, 1.0), q.y.clamp(0.0, 1.0));
    area.draw(&Text::new(
        "better ↗",
        (0.97, 0.97),
        text(15.0, false, MUTED, HPos::Right, VPos::Top),
    ))?;
    // The frontier of the final points, as a staircase.
    let finals: Vec<(f64, f64)> = p.points.iter().filter(|q| q.is_final).map(at).collect();
    let fr = frontier(&finals);
    let mut stair = Vec::new();
    for (i, q) in fr.iter().enumerate() {
        if i > 0 {
            stair.push((q.0, fr[i - 1].1));
        }
        stair.push(*q);
    }
    if fr.len() >= 2 {
        polyline(area, stair, FRONTIER.stroke_width(2), Some((6, 4)))?;
    }
    // Each run's eval trajectory, then the points with their round tags.
    for run in 0..p.runs.len() {
        let color = PALETTE[run % PALETTE.len()];
        let ev: Vec<(f64, f64)> = p
            .points
            .iter()
            .filter(|q| q.run == run && !q.is_final)
            .map(at)
            .collect();
        if ev.len() >= 2 {
            polyline(area, ev, color.stroke_width(1), Some((3, 3)))?;
        }
    }
    let diamond = marker(3, 5.0);
    for q in &p.points {
        let color = PALETTE[q.run % PALETTE.len()];
        let tag = Text::new(
            q.tag.clone(),
            (9, -8),
            text(13.0, false, color, HPos::Left, VPos::Bottom),
        );
        if q.is_final {
            area.draw(
                &(EmptyElement::at(at(q))
                    + Circle::new((0, 0), 7, color.filled())
                    + Circle::new((0, 0), 7, INK.stroke_width(1))
                    + tag),
            )?;
        } else {
            let mut outline = diamond.clone();
            outline.push(diamond[0]);
            area.draw(
                &(EmptyElement::at(at(q))
                    + Polygon::new(diamond.clone(), WHITE.filled())
                    + PathElement::new(outline, color.stroke_width(2))
                    + tag),
            )?;
        }
    }
    if p.points.is_empty() {
        area.draw(&Text::new(
            "no data",
            (0.5, 0.5),
            text(18.0, false, MUTED, HPos::Center, VPos::Center),
        ))?;
    }
    // Legend: runs, then what the marks mean.
    let label = text(14.0, false, INK, HPos::Left, VPos::Center);
    let mut y = 12;
    for (i, name) in p.runs.iter().enumerate().take(20) {
        let color = PALETTE[i % PALETTE.len()];
        legend.draw(&Circle::new((14, y), 6, color.filled()))?;
        legend.draw(&Text::new(
            fit(name, 14.0, false, 220.0),
            (28, y),
            label.clone(),
        ))?;
        y += 24;
    }
    y += 14;
    legend.draw(&Circle::new((14, y), 6, MUTED.filled()))?;
    legend.draw(&Text::new("final training round", (28, y), label.clone()))?;
    y += 24;
    let mut outline: Vec<(i32, i32)> = diamond.iter().map(|(dx, dy)| (14 + dx, y + dy)).collect();
    outline.push(outline[0]);
    legend.draw(&PathElement::new(outline, MUTED.stroke_width(2)))?;
    legend.draw(&Text::new(
        "held-out eval (rN = round)",
        (28, y),
        label.clone(),
    ))?;
    y += 24;
    polyline(
        &legend,
        vec![(4, y), (22, y)],
        FRONTIER.stroke_width(2),
        Some((6, 4)),
    )?;
    legend.draw(&Text::new("frontier of final points", (28, y), label))?;
    Ok(())
}

/// Heatmap geometry: the picture size, the grid's top-left corner and the cell side.
struct HeatmapLayout {
    size: (u32, u32),
    left: i32,
    top: i32,
    cell: i32,
}

fn heatmap_layout(hm: &Heatmap) -> HeatmapLayout {
    let (nr, nc) = (hm.rows.len().max(1), hm.cols.len().max(1));
    // Wide enough for the column labels (a cross-play's `r4` or an evaluation's `attacker`).
    let col_w = hm
        .cols
        .iter()
        .map(|c| width(c, 15.0, false))
        .fold(0.0, f64::max);
    let cell = (560 / nc.max(nr) as i32)
        .clamp(34, 90)
        .max(col_w.ceil() as i32 + 12);
    let label_w = hm
        .rows
        .iter()
        .map(|r| width(r, 15.0, false))
        .fold(60.0, f64::max)
        + 50.0;
    let (left, top) = (label_w.ceil() as i32, 100);
    let w =
        (left + cell * nc as i32 + 160).max((width(&hm.title, 22.0, true) + 60.0).ceil() as i32);
    let h = top + (cell * nr as i32).max(120) + 80;
    HeatmapLayout {
        size: (w as u32, h as u32),
        left,
        top,
        cell,
    }
}

/// Heatmap with the value printed in every cell and a colour bar (0 at the bottom).
fn heatmap_chart<DB: DrawingBackend>(
    hm: &Heatmap,
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<(), DB> {
    header(root, &hm.title, &hm.subtitle)?;
    let HeatmapLayout {
        left, top, cell, ..
    } = heatmap_layout(hm);
    let (gw, gh) = (cell * hm.cols.len() as i32, cell * hm.rows.len() as i32);
    let size = (f64::from(cell) * 0.3).clamp(12.0, 17.0);
    for (r, row) in hm.cells.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (x, y) = (left + c as i32 * cell, top + r as i32 * cell);
            let fill = v.map_or(RGBColor(235, 235, 235), heat_color);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell - 1, y + cell - 1)],
                fill.filled(),
            ))?;
            let ink = if v.is_some_and(|v| v > 0.55) {
                WHITE
            } else {
                INK
            };
            let value = v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"));
            let at = (x + cell / 2, y + cell / 2);
            root.draw(&Text::new(
                value,
                at,
                text(size, false, ink, HPos::Center, VPos::Center),
            ))?;
        }
    }
    let label = |h, v| text(15.0, false, INK, h, v);
    for (r, name) in hm.rows.iter().enumerate() {
        let y = top + r as i32 * cell + cell / 2;
        root.draw(&Text::new(
            name.as_str(),
            (left - 8, y),
            label(HPos::Right, VPos::Center),
        ))?;
    }
    for (c, name) in hm.cols.iter().enumerate() {
        let x = left + c as i32 * cell + cell / 2;
        root.draw(&Text::new(
            name.as_str(),
            (x, top - 6),
            label(HPos::Center, VPos::Bottom),
        ))?;
    }
    root.draw(&Text::new(
        hm.col_label.as_str(),
        (left + gw / 2, top + gh + 14),
        label(HPos::Center, VPos::Top),
    ))?;
    let vertical = label(HPos::Center, VPos::Top).transform(FontTransform::Rotate270);
    root.draw(&Text::new(
        hm.row_label.as_str(),
        (12, top + gh / 2),
        vertical,
    ))?;
    // Colour bar.
    let (bx, bh) = (left + gw + 30, gh.max(120));
    let steps = 40;
    for i in 0..steps {
        let y = |i: i32| top + bh - i * bh / steps;
        let fill = heat_color((f64::from(i) + 0.5) / f64::from(steps));
        root.draw(&Rectangle::new(
            [(bx, y(i + 1)), (bx + 18, y(i))],
            fill.filled(),
        ))?;
    }
    root.draw(&Rectangle::new(
        [(bx, top), (bx + 18, top + bh)],
        INK.stroke_width(1),
    ))?;
    for v in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = top + bh - (v * f64::from(bh)).round() as i32;
        root.draw(&PathElement::new(
            vec![(bx + 18, y), (bx + 23, y)],
            INK.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            format!("{v:.2}"),
            (bx + 27, y),
            text(14.0, false, INK, HPos::Left, VPos::Center),
        ))?;
    }
    Ok(())
}

/// Bar chart geometry: the picture size, the left edge of the value axis (group labels to its left), the top of
/// the first panel, and per panel its top and its height (title, bars and axis).
struct BarsLayout {
    size: (u32, u32),
    left: i32,
    panels: Vec<(i32, i32)>,
    group_h: i32,
    bar_h: i32,
}

/// Width of the bar charts; the value axis ends `BARS_RIGHT` pixels before the right edge (room for the values).
const BARS_W: i32 = 1000;
const BARS_RIGHT: i32 = 80;
/// A panel's title row and its value axis (ticks and description) below the bars.
const PANEL_TITLE: i32 = 30;
const PANEL_AXIS: i32 = 52;

fn bars_layout(b: &Bars) -> BarsLayout {
    let bar_h = if b.series.len() > 4 { 14 } else { 20 };
    let group_h = bar_h * b.series.len().max(1) as i32 + 14;
    let label_w = b
        .panels
        .iter()
        .flat_map(|p| &p.groups)
        .map(|g| width(g, 15.0, false))
        .fold(80.0, f64::max)
        .min(380.0);
    let left = (label_w + 36.0).ceil() as i32;
    // Header (title, subtitle), then the legend row, then the panels.
    let mut y = 108;
    let mut panels = Vec::new();
    for p in &b.panels {
        let h = PANEL_TITLE + group_h * p.groups.len().max(1) as i32 + PANEL_AXIS;
        panels.push((y, h));
        y += h + 18;
    }
    BarsLayout {
        size: (BARS_W as u32, (y + 8).max(240) as u32),
        left,
        panels,
        group_h,
        bar_h,
    }
}

/// Horizontal grouped bars: per panel, a band per group with a bar per series, its value at its end (`n/a` where
/// there is none); the series' legend under the header.
fn bars_chart<DB: DrawingBackend>(b: &Bars, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
    header(root, &b.title, &b.subtitle)?;
    let BarsLayout {
        left,
        panels,
        group_h,
        bar_h,
        ..
    } = bars_layout(b);
    // Legend: a swatch and the series' name, in a row.
    let mut x = 20;
    for (i, name) in b.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        root.draw(&Rectangle::new([(x, 74), (x + 14, 88)], color.filled()))?;
        let name = fit(name, 15.0, false, 220.0);
        let w = width(&name, 15.0, false).ceil() as i32;
        root.draw(&Text::new(
            name,
            (x + 20, 81),
            text(15.0, false, INK, HPos::Left, VPos::Center),
        ))?;
        x += w + 44;
    }
    let label_max = f64::from(left - 36);
    for (p, &(top, h)) in b.panels.iter().zip(&panels) {
        root.draw(&Text::new(
            fit(&p.title, 17.0, true, f64::from(BARS_W - 40)),
            (20, top + 4),
            text(17.0, true, INK, HPos::Left, VPos::Top),
        ))?;
        let n = p.groups.len().max(1);
        let area = root.clone().shrink(
            (left, top + PANEL_TITLE),
            (BARS_W - BARS_RIGHT - left, h - PANEL_TITLE),
        );
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(PANEL_AXIS)
            .build_cartesian_2d(0.0..1.0, 0.0..n as f64)?;
        chart
            .configure_mesh()
            .x_desc(p.x_label.as_str())
            .x_labels(6)
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .label_style((FONT, 14).into_font().color(&INK))
            .axis_desc_style((FONT, 15).into_font().color(&INK))
            .x_label_formatter(&|v| tick(*v, 1.0))
            .draw()?;
        // Data units per pixel of height: a group is `group_h` pixels, one unit.
        let unit = 1.0 / f64::from(group_h);
        let value_style = text(13.0, false, INK, HPos::Left, VPos::Center);
        for (g, name) in p.groups.iter().enumerate() {
            let band_top = (n - g) as f64;
            let (lx, ly) = chart.backend_coord(&(0.0, band_top - 0.5));
            root.draw(&Text::new(
                fit(name, 15.0, false, label_max),
                (lx - 10, ly),
                text(15.0, false, INK, HPos::Right, VPos::Center),
            ))?;
            let row = p.values.get(g).map(Vec::as_slice).unwrap_or_default();
            for s in 0..b.series.len() {
                let y1 = band_top - f64::from(7 + bar_h * s as i32) * unit;
                let y0 = y1 - f64::from(bar_h - 3) * unit;
                let mid = (y0 + y1) / 2.0;
                let v = row.get(s).copied().flatten().filter(|v| v.is_finite());
                let color = PALETTE[s % PALETTE.len()];
                let (label, at, style) = match v {
                    Some(v) => {
                        let v = v.clamp(0.0, 1.0);
                        chart
                            .plotting_area()
                            .draw(&Rectangle::new([(0.0, y0), (v, y1)], color.filled()))?;
                        (format!("{v:.2}"), v, value_style.clone())
                    }
                    None => ("n/a".into(), 0.0, value_style.color(&MUTED)),
                };
                let (px, py) = chart.backend_coord(&(at, mid));
                root.draw(&Text::new(label, (px + 5, py), style))?;
            }
        }
        // The bars' baseline.
        let (x0, y0) = chart.backend_coord(&(0.0, 0.0));
        let (_, y1) = chart.backend_coord(&(0.0, n as f64));
        root.draw(&PathElement::new(
            vec![(x0, y0), (x0, y1)],
            INK.stroke_width(1),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn frontier_keeps_only_non_dominated_points() {
        let f = frontier(&[(0.2, 0.9), (0.5, 0.5), (0.4, 0.4), (0.9, 0.1), (0.5, 0.5)]);
        assert_eq!(f, vec![(0.2, 0.9), (0.5, 0.5), (0.9, 0.1)]);
    }

    #[test]
    fn rates_keep_a_decimal_and_wide_axes_drop_it() {
        assert_eq!(tick(0.0, 1.0), "0.0");
        assert_eq!(tick(0.25, 1.0), "0.25");
        assert_eq!(tick(1500.0, 2000.0), "1500");
    }

    #[test]
    fn a_line_chart_renders_to_svg_and_png() {
        let c = Plot::Line(LineChart {
            title: "T <&>".into(),
            subtitle: String::new(),
            x_label: "round".into(),
            y_label: "ASR".into(),
            y: YRange::Fixed(0.0, 1.0),
            series: vec![Series {
                label: "a".into(),
                color: 0,
                style: 1,
                pts: vec![(1, 0.5), (2, 0.25), (3, 0.75)],
            }],
        });
        let svg = c.svg().unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("T &lt;&amp;&gt;"),
            "{svg}"
        );
        let png = c.png().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    /// The texts of an SVG document (plotters writes each on its own line inside `<text …>`).
    pub(crate) fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                Some(
                    t.split_once('>')?
                        .1
                        .split_once("</text>")?
                        .0
                        .trim()
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn grouped_bars_show_their_groups_series_and_values() {
        let b = Plot::Bars(Bars {
            title: "Rates per set and mode".into(),
            subtitle: "sub".into(),
            series: vec!["plain".into(), "attacker".into()],
            panels: vec![
                BarPanel {
                    title: "ASR".into(),
                    x_label: "ASR".into(),
                    groups: vec!["harmbench".into(), "xstest".into()],
                    values: vec![vec![Some(0.7), Some(0.25)], vec![Some(1.0), None]],
                },
                BarPanel {
                    title: "Over-refusal".into(),
                    x_label: "over-refusal".into(),
                    groups: vec!["xstest: homonyms".into()],
                    values: vec![vec![Some(0.4), Some(0.0)]],
                },
            ],
        });
        let texts = svg_texts(&b.svg().unwrap());
        for t in [
            "harmbench",
            "xstest: homonyms",
            "attacker",
            "0.70",
            "0.25",
            "1.00",
            "0.40",
            "0.00",
            "n/a",
        ] {
            assert!(texts.iter().any(|x| x == t), "{t} missing: {texts:?}");
        }
        let png = b.png().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(b.size().0, 1000);
    }
}
