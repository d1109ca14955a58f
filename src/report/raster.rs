//! Rasterizes a `Scene` to PNG: shapes are drawn with soft-edged coverage on a 3× supersampled canvas and box-filtered
//! down; text is rendered with the embedded DejaVu Sans font (ab_glyph). Also the PNG encoder (zlib via miniz_oxide).

use super::scene::{Anchor, Rgb, Scene, Shape, Stroke};
use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};

/// Supersampling factor per axis.
const SS: usize = 3;

/// The fonts used for text in rasterized plots and for measuring text when laying plots out.
pub struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

impl Fonts {
    /// The embedded DejaVu Sans (regular and bold).
    pub fn load() -> Result<Self, String> {
        let regular = FontRef::try_from_slice(dejavu::sans::regular())
            .map_err(|e| format!("embedded font DejaVuSans.ttf: {e}"))?;
        let bold = FontRef::try_from_slice(dejavu::sans::bold())
            .map_err(|e| format!("embedded font DejaVuSans-Bold.ttf: {e}"))?;
        Ok(Fonts { regular, bold })
    }

    fn font(&self, bold: bool) -> &FontRef<'static> {
        if bold { &self.bold } else { &self.regular }
    }

    /// Advance width of `text` at `size` pixels (with kerning).
    pub fn width(&self, text: &str, size: f64, bold: bool) -> f64 {
        let f = self.font(bold).as_scaled(PxScale::from(size as f32));
        let mut w = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                w += f.kern(p, id);
            }
            w += f.h_advance(id);
            prev = Some(id);
        }
        f64::from(w)
    }

    /// `text` cut to at most `max_w` pixels wide, with an ellipsis if cut.
    pub fn fit(&self, text: &str, size: f64, bold: bool, max_w: f64) -> String {
        if self.width(text, size, bold) <= max_w {
            return text.to_string();
        }
        let mut chars: Vec<char> = text.chars().collect();
        while !chars.is_empty() {
            chars.pop();
            let s: String = chars.iter().collect::<String>() + "…";
            if self.width(&s, size, bold) <= max_w {
                return s;
            }
        }
        String::new()
    }
}

/// Coverage (0..1) over a rectangle of the supersampled canvas.
struct Mask {
    x0: i64,
    y0: i64,
    w: i64,
    h: i64,
    a: Vec<f32>,
}

impl Mask {
    /// A mask over the canvas-clipped box [x0, x1) × [y0, y1) (supersampled pixels); `None` if empty.
    fn new(x0: f64, y0: f64, x1: f64, y1: f64, cw: usize, ch: usize) -> Option<Mask> {
        let cl = |v: f64, hi: usize| (v.floor() as i64).clamp(0, hi as i64);
        let (ax, ay) = (cl(x0, cw), cl(y0, ch));
        let (bx, by) = (cl(x1 + 1.0, cw), cl(y1 + 1.0, ch));
        if bx <= ax || by <= ay {
            return None;
        }
        let (w, h) = (bx - ax, by - ay);
        Some(Mask {
            x0: ax,
            y0: ay,
            w,
            h,
            a: vec![0.0; (w * h) as usize],
        })
    }

    fn max_at(&mut self, x: i64, y: i64, c: f32) {
        let (lx, ly) = (x - self.x0, y - self.y0);
        if lx >= 0 && ly >= 0 && lx < self.w && ly < self.h {
            let i = (ly * self.w + lx) as usize;
            if c > self.a[i] {
                self.a[i] = c.min(1.0);
            }
        }
    }

    /// Apply `f(pixel centre x, y) -> coverage` to every pixel of the mask (max with what is there).
    fn each(&mut self, mut f: impl FnMut(f64, f64) -> f32) {
        for ly in 0..self.h {
            let cy = (self.y0 + ly) as f64 + 0.5;
            for lx in 0..self.w {
                let cx = (self.x0 + lx) as f64 + 0.5;
                let c = f(cx, cy);
                let i = (ly * self.w + lx) as usize;
                if c > self.a[i] {
                    self.a[i] = c.min(1.0);
                }
            }
        }
    }
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[f32; 3]>,
}

impl Canvas {
    fn composite(&mut self, m: &Mask, c: Rgb) {
        let col = [f32::from(c.0), f32::from(c.1), f32::from(c.2)];
        for ly in 0..m.h {
            for lx in 0..m.w {
                let a = m.a[(ly * m.w + lx) as usize];
                if a <= 0.0 {
                    continue;
                }
                let i = ((m.y0 + ly) as usize) * self.w + (m.x0 + lx) as usize;
                let p = &mut self.px[i];
                for k in 0..3 {
                    p[k] += (col[k] - p[k]) * a;
                }
            }
        }
    }

    fn stroke_path(&mut self, pts: &[(f64, f64)], st: &Stroke) {
        if pts.is_empty() || st.width <= 0.0 {
            return;
        }
        let s = SS as f64;
        let hw = st.width * s / 2.0;
        let pts: Vec<(f64, f64)> = pts.iter().map(|(x, y)| (x * s, y * s)).collect();
        let segs = match st.dash {
            None => pts.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>(),
            Some((on, off)) => dashes(&pts, on * s, off * s),
        };
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in &pts {
            x0 = x0.min(*x);
            y0 = y0.min(*y);
            x1 = x1.max(*x);
            y1 = y1.max(*y);
        }
        let Some(mut m) = Mask::new(
            x0 - hw - 1.0,
            y0 - hw - 1.0,
            x1 + hw + 1.0,
            y1 + hw + 1.0,
            self.w,
            self.h,
        ) else {
            return;
        };
        let segs = if segs.is_empty() && pts.len() == 1 {
            vec![(pts[0], pts[0])]
        } else {
            segs
        };
        for (a, b) in segs {
            let (bx0, by0) = (a.0.min(b.0) - hw - 1.0, a.1.min(b.1) - hw - 1.0);
            let (bx1, by1) = (a.0.max(b.0) + hw + 1.0, a.1.max(b.1) + hw + 1.0);
            for y in (by0.floor() as i64)..=(by1.ceil() as i64) {
                for x in (bx0.floor() as i64)..=(bx1.ceil() as i64) {
                    let d = seg_dist((x as f64 + 0.5, y as f64 + 0.5), a, b);
                    let c = (hw + 0.5 - d).clamp(0.0, 1.0) as f32;
                    if c > 0.0 {
                        m.max_at(x, y, c);
                    }
                }
            }
        }
        self.composite(&m, st.color);
    }

    fn fill_polygon(&mut self, pts: &[(f64, f64)], c: Rgb) {
        if pts.len() < 3 {
            return;
        }
        let s = SS as f64;
        let pts: Vec<(f64, f64)> = pts.iter().map(|(x, y)| (x * s, y * s)).collect();
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in &pts {
            x0 = x0.min(*x);
            y0 = y0.min(*y);
            x1 = x1.max(*x);
            y1 = y1.max(*y);
        }
        let Some(mut m) = Mask::new(x0, y0, x1, y1, self.w, self.h) else {
            return;
        };
        m.each(|x, y| if inside(&pts, x, y) { 1.0 } else { 0.0 });
        self.composite(&m, c);
    }

    fn circle(&mut self, c: (f64, f64), r: f64, fill: Option<Rgb>, stroke: Option<&Stroke>) {
        let s = SS as f64;
        let (cx, cy, r) = (c.0 * s, c.1 * s, r * s);
        let hw = stroke.map(|st| st.width * s / 2.0).unwrap_or(0.0);
        let e = r + hw + 1.0;
        if let Some(f) = fill
            && let Some(mut m) = Mask::new(cx - e, cy - e, cx + e, cy + e, self.w, self.h)
        {
            m.each(|x, y| (r + 0.5 - ((x - cx).hypot(y - cy))).clamp(0.0, 1.0) as f32);
            self.composite(&m, f);
        }
        if let Some(st) = stroke
            && let Some(mut m) = Mask::new(cx - e, cy - e, cx + e, cy + e, self.w, self.h)
        {
            m.each(|x, y| (hw + 0.5 - ((x - cx).hypot(y - cy) - r).abs()).clamp(0.0, 1.0) as f32);
            self.composite(&m, st.color);
        }
    }

    fn fill_rect(&mut self, x: f64, y: f64, w: f64, h: f64, c: Rgb) {
        let s = SS as f64;
        let (x0, y0, x1, y1) = (x * s, y * s, (x + w) * s, (y + h) * s);
        let Some(mut m) = Mask::new(x0, y0, x1, y1, self.w, self.h) else {
            return;
        };
        let ov = |p: f64, lo: f64, hi: f64| ((p + 0.5).min(hi) - (p - 0.5).max(lo)).clamp(0.0, 1.0);
        m.each(|px, py| (ov(px, x0, x1) * ov(py, y0, y1)) as f32);
        self.composite(&m, c);
    }

    #[allow(clippy::too_many_arguments)]
    fn text(
        &mut self,
        fonts: &Fonts,
        pos: (f64, f64),
        text: &str,
        size: f64,
        color: Rgb,
        anchor: Anchor,
        vertical: bool,
        bold: bool,
    ) {
        let s = SS as f64;
        let font = fonts.font(bold);
        let scale = PxScale::from((size * s) as f32);
        let sf = font.as_scaled(scale);
        let w = fonts.width(text, size, bold) * s;
        let start = match anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => -w / 2.0,
            Anchor::End => -w,
        };
        let (ax, ay) = (pos.0 * s, pos.1 * s);
        let asc = f64::from(sf.ascent());
        let desc = f64::from(sf.descent());
        // Box of the whole text in canvas coordinates.
        let (bx0, by0, bx1, by1) = if vertical {
            (
                ax - asc - 2.0,
                ay - start - w - 2.0,
                ax - desc + 2.0,
                ay - start + 2.0,
            )
        } else {
            (
                ax + start - 2.0,
                ay - asc - 2.0,
                ax + start + w + 2.0,
                ay - desc + 2.0,
            )
        };
        let Some(mut m) = Mask::new(bx0, by0, bx1, by1, self.w, self.h) else {
            return;
        };
        let mut caret = start as f32;
        let mut prev = None;
        for ch in text.chars() {
            let id = sf.glyph_id(ch);
            if let Some(p) = prev {
                caret += sf.kern(p, id);
            }
            let g = id.with_scale_and_position(scale, point(caret, 0.0));
            caret += sf.h_advance(id);
            prev = Some(id);
            if let Some(og) = font.outline_glyph(g) {
                let b = og.px_bounds();
                og.draw(|gx, gy, c| {
                    let lx = f64::from(b.min.x) + f64::from(gx);
                    let ly = f64::from(b.min.y) + f64::from(gy);
                    let (x, y) = if vertical {
                        (ax + ly, ay - lx - 1.0)
                    } else {
                        (ax + lx, ay + ly)
                    };
                    m.max_at(x.floor() as i64, y.floor() as i64, c);
                });
            }
        }
        self.composite(&m, color);
    }
}

/// Distance from `p` to the segment `a`–`b`.
fn seg_dist(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let l2 = dx * dx + dy * dy;
    let t = if l2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / l2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (p.0 - (a.0 + t * dx)).hypot(p.1 - (a.1 + t * dy))
}

/// Even-odd point-in-polygon test.
fn inside(pts: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inn = false;
    let mut j = pts.len() - 1;
    for i in 0..pts.len() {
        let (xi, yi) = pts[i];
        let (xj, yj) = pts[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inn = !inn;
        }
        j = i;
    }
    inn
}

/// The "on" pieces of a dashed polyline.
fn dashes(pts: &[(f64, f64)], on: f64, off: f64) -> Vec<((f64, f64), (f64, f64))> {
    let mut out = Vec::new();
    if on <= 0.0 {
        return out;
    }
    let period = on + off.max(0.0);
    let mut phase = 0.0f64; // position within the period at the segment start
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = (b.0 - a.0).hypot(b.1 - a.1);
        if len <= 0.0 {
            continue;
        }
        let mut t = 0.0f64;
        while t < len {
            let in_on = phase < on;
            let left = if in_on { on - phase } else { period - phase };
            let step = left.min(len - t);
            if in_on {
                let p = |u: f64| (a.0 + (b.0 - a.0) * u / len, a.1 + (b.1 - a.1) * u / len);
                out.push((p(t), p(t + step)));
            }
            t += step;
            phase = (phase + step) % period;
        }
    }
    out
}

/// Rasterize a scene to RGB8 pixels (row-major, `w*h*3` bytes).
pub fn rasterize(scene: &Scene, fonts: &Fonts) -> Vec<u8> {
    let (w, h) = (scene.w as usize, scene.h as usize);
    let mut cv = Canvas {
        w: w * SS,
        h: h * SS,
        px: vec![[255.0; 3]; w * SS * h * SS],
    };
    for shape in &scene.shapes {
        match shape {
            Shape::Polyline { pts, stroke } => cv.stroke_path(pts, stroke),
            Shape::Polygon { pts, fill, stroke } => {
                if let Some(f) = fill {
                    cv.fill_polygon(pts, *f);
                }
                if let (Some(st), Some(first)) = (stroke, pts.first()) {
                    let mut closed = pts.clone();
                    closed.push(*first);
                    cv.stroke_path(&closed, st);
                }
            }
            Shape::Circle { c, r, fill, stroke } => cv.circle(*c, *r, *fill, stroke.as_ref()),
            Shape::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                if let Some(f) = fill {
                    cv.fill_rect(*x, *y, *w, *h, *f);
                }
                if let Some(st) = stroke {
                    let p = vec![(*x, *y), (x + w, *y), (x + w, y + h), (*x, y + h), (*x, *y)];
                    cv.stroke_path(&p, st);
                }
            }
            Shape::Text {
                pos,
                text,
                size,
                color,
                anchor,
                vertical,
                bold,
            } => cv.text(fonts, *pos, text, *size, *color, *anchor, *vertical, *bold),
        }
    }
    let mut out = vec![0u8; w * h * 3];
    let n = (SS * SS) as f32;
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for sy in 0..SS {
                let row = (y * SS + sy) * cv.w;
                for sx in 0..SS {
                    let p = cv.px[row + x * SS + sx];
                    for k in 0..3 {
                        acc[k] += p[k];
                    }
                }
            }
            for k in 0..3 {
                out[(y * w + x) * 3 + k] = (acc[k] / n).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Encode RGB8 pixels as a PNG file (8-bit truecolour, filter "Up" per row, zlib level 6).
pub fn encode_png(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let stride = w as usize * 3;
    let mut raw = Vec::with_capacity((stride + 1) * h as usize);
    for y in 0..h as usize {
        let row = &rgb[y * stride..(y + 1) * stride];
        if y == 0 {
            raw.push(0);
            raw.extend_from_slice(row);
        } else {
            let prev = &rgb[(y - 1) * stride..y * stride];
            raw.push(2);
            raw.extend(row.iter().zip(prev).map(|(a, b)| a.wrapping_sub(*b)));
        }
    }
    let z = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, ty: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(ty);
    out.extend_from_slice(data);
    let mut c = Crc::new();
    c.update(ty);
    c.update(data);
    out.extend_from_slice(&c.finish().to_be_bytes());
}

/// CRC-32 (ISO 3309, as PNG uses).
struct Crc(u32);

impl Crc {
    fn new() -> Self {
        Crc(0xffff_ffff)
    }
    fn update(&mut self, data: &[u8]) {
        for &b in data {
            let mut c = (self.0 ^ u32::from(b)) & 0xff;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            self.0 = (self.0 >> 8) ^ c;
        }
    }
    fn finish(&self) -> u32 {
        self.0 ^ 0xffff_ffff
    }
}

/// Rasterize and encode.
pub fn to_png(scene: &Scene, fonts: &Fonts) -> Vec<u8> {
    encode_png(scene.w, scene.h, &rasterize(scene, fonts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut c = Crc::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xcbf4_3926);
    }

    #[test]
    fn png_roundtrips_through_zlib() {
        let rgb: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let png = encode_png(4, 3, &rgb);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IDAT payload starts after signature (8) + IHDR chunk (25) + length/type (8).
        let len = u32::from_be_bytes([png[33], png[34], png[35], png[36]]) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&png[41..41 + len]).unwrap();
        // Undo the filters.
        let mut rows: Vec<Vec<u8>> = Vec::new();
        for y in 0..3 {
            let r = &raw[y * 13..(y + 1) * 13];
            let row: Vec<u8> = if r[0] == 0 {
                r[1..].to_vec()
            } else {
                r[1..]
                    .iter()
                    .zip(&rows[y - 1])
                    .map(|(a, b)| a.wrapping_add(*b))
                    .collect()
            };
            rows.push(row);
        }
        assert_eq!(rows.concat(), rgb);
    }

    #[test]
    fn a_line_darkens_the_pixels_it_crosses_and_not_others() {
        let fonts = Fonts::load().unwrap();
        let mut sc = Scene::new(20, 10);
        sc.line((2.0, 5.0), (18.0, 5.0), Stroke::solid(Rgb::BLACK, 2.0));
        let px = rasterize(&sc, &fonts);
        let at = |x: usize, y: usize| px[(y * 20 + x) * 3];
        assert!(
            at(10, 5) < 40 && at(10, 4) < 40,
            "{} {}",
            at(10, 5),
            at(10, 4)
        );
        assert_eq!(at(10, 1), 255);
        assert_eq!(at(0, 5), 255);
    }

    #[test]
    fn dashes_cover_half_of_a_line() {
        let d = dashes(&[(0.0, 0.0), (100.0, 0.0)], 5.0, 5.0);
        let on: f64 = d.iter().map(|(a, b)| b.0 - a.0).sum();
        assert!((on - 50.0).abs() < 1e-9, "{on}");
    }
}
