//! A tiny vector scene (polylines, polygons, circles, rectangles, text) that the charts draw into, and its SVG
//! serialization. The same scene is rasterized to PNG by `raster`, so both files show the same picture.

use std::fmt::Write as _;

/// An opaque RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub const WHITE: Rgb = Rgb(255, 255, 255);
    #[allow(dead_code)]
    pub const BLACK: Rgb = Rgb(0, 0, 0);

    fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Horizontal placement of a text relative to its anchor point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// A stroke: colour, width in pixels, optional dash pattern (on, off) in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stroke {
    pub color: Rgb,
    pub width: f64,
    pub dash: Option<(f64, f64)>,
}

impl Stroke {
    pub fn solid(color: Rgb, width: f64) -> Self {
        Stroke {
            color,
            width,
            dash: None,
        }
    }
}

/// One drawing primitive. Coordinates are pixels, origin top-left, y down.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Polyline {
        pts: Vec<(f64, f64)>,
        stroke: Stroke,
    },
    Polygon {
        pts: Vec<(f64, f64)>,
        fill: Option<Rgb>,
        stroke: Option<Stroke>,
    },
    Circle {
        c: (f64, f64),
        r: f64,
        fill: Option<Rgb>,
        stroke: Option<Stroke>,
    },
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Option<Rgb>,
        stroke: Option<Stroke>,
    },
    /// `pos` is the baseline anchor; `vertical` rotates the text 90° counter-clockwise about it (reads upwards).
    Text {
        pos: (f64, f64),
        text: String,
        size: f64,
        color: Rgb,
        anchor: Anchor,
        vertical: bool,
        bold: bool,
    },
}

/// A picture of `w`×`h` pixels on a white background.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub w: u32,
    pub h: u32,
    pub shapes: Vec<Shape>,
}

impl Scene {
    pub fn new(w: u32, h: u32) -> Self {
        Scene {
            w,
            h,
            shapes: Vec::new(),
        }
    }

    pub fn push(&mut self, s: Shape) {
        self.shapes.push(s);
    }

    /// Plain text (not bold, horizontal).
    pub fn text(
        &mut self,
        pos: (f64, f64),
        text: impl Into<String>,
        size: f64,
        color: Rgb,
        anchor: Anchor,
    ) {
        self.push(Shape::Text {
            pos,
            text: text.into(),
            size,
            color,
            anchor,
            vertical: false,
            bold: false,
        });
    }

    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), stroke: Stroke) {
        self.push(Shape::Polyline {
            pts: vec![a, b],
            stroke,
        });
    }

    /// The scene as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Verdana, Arial, sans-serif">"#,
            w = self.w,
            h = self.h
        );
        let _ = writeln!(
            s,
            r#"<rect x="0" y="0" width="{}" height="{}" fill="white"/>"#,
            self.w, self.h
        );
        for shape in &self.shapes {
            match shape {
                Shape::Polyline { pts, stroke } => {
                    let _ = writeln!(
                        s,
                        r#"<polyline points="{}" fill="none" {} stroke-linejoin="round" stroke-linecap="round"/>"#,
                        points(pts),
                        stroke_attrs(Some(stroke))
                    );
                }
                Shape::Polygon { pts, fill, stroke } => {
                    let _ = writeln!(
                        s,
                        r#"<polygon points="{}" fill="{}" {}/>"#,
                        points(pts),
                        fill_attr(*fill),
                        stroke_attrs(stroke.as_ref())
                    );
                }
                Shape::Circle { c, r, fill, stroke } => {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{}" cy="{}" r="{}" fill="{}" {}/>"#,
                        num(c.0),
                        num(c.1),
                        num(*r),
                        fill_attr(*fill),
                        stroke_attrs(stroke.as_ref())
                    );
                }
                Shape::Rect {
                    x,
                    y,
                    w,
                    h,
                    fill,
                    stroke,
                } => {
                    let _ = writeln!(
                        s,
                        r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}" {}/>"#,
                        num(*x),
                        num(*y),
                        num(*w),
                        num(*h),
                        fill_attr(*fill),
                        stroke_attrs(stroke.as_ref())
                    );
                }
                Shape::Text {
                    pos,
                    text,
                    size,
                    color,
                    anchor,
                    vertical,
                    bold,
                } => {
                    let anchor = match anchor {
                        Anchor::Start => "start",
                        Anchor::Middle => "middle",
                        Anchor::End => "end",
                    };
                    let rot = if *vertical {
                        format!(r#" transform="rotate(-90 {} {})""#, num(pos.0), num(pos.1))
                    } else {
                        String::new()
                    };
                    let weight = if *bold { r#" font-weight="bold""# } else { "" };
                    let _ = writeln!(
                        s,
                        r#"<text x="{}" y="{}" font-size="{}" fill="{}" text-anchor="{anchor}"{weight}{rot}>{}</text>"#,
                        num(pos.0),
                        num(pos.1),
                        num(*size),
                        color.hex(),
                        escape(text)
                    );
                }
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

fn num(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

fn points(pts: &[(f64, f64)]) -> String {
    pts.iter()
        .map(|(x, y)| format!("{},{}", num(*x), num(*y)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fill_attr(fill: Option<Rgb>) -> String {
    fill.map(|c| c.hex()).unwrap_or_else(|| "none".into())
}

fn stroke_attrs(stroke: Option<&Stroke>) -> String {
    match stroke {
        None => r#"stroke="none""#.into(),
        Some(st) => {
            let mut a = format!(
                r#"stroke="{}" stroke-width="{}""#,
                st.color.hex(),
                num(st.width)
            );
            if let Some((on, off)) = st.dash {
                let _ = write!(a, r#" stroke-dasharray="{},{}""#, num(on), num(off));
            }
            a
        }
    }
}

/// Escape text for XML/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_escapes_text_and_rotates_vertical_labels() {
        let mut sc = Scene::new(100, 50);
        sc.push(Shape::Text {
            pos: (10.0, 20.5),
            text: "a<b & \"c\"".into(),
            size: 12.0,
            color: Rgb::BLACK,
            anchor: Anchor::Middle,
            vertical: true,
            bold: false,
        });
        let svg = sc.to_svg();
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot;"), "{svg}");
        assert!(svg.contains(r#"transform="rotate(-90 10 20.5)""#), "{svg}");
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    }
}
