//! RoPE frequency scaling: the inverse frequencies every forward path uses ([`RopeScaling::inv_freq`]), read
//! from a Hugging Face `config.json` in both of its forms (`rope_theta` / `rope_scaling` at the top level, as
//! checkpoints on the Hub have it, or `rope_parameters`, as transformers ≥ 5 writes it) and written back, and
//! llama.cpp's per-pair frequency divisors (`rope_freqs.weight`, its form of Llama 3.1 scaling).
//!
//! Supported: `default`, `linear` (inverse frequencies divided by `factor`: positions divided by it) and `llama3`
//! (transformers' `_compute_llama3_parameters`: wavelengths shorter than `original / high_freq_factor` kept,
//! longer than `original / low_freq_factor` divided by `factor`, a smooth interpolation between). Any other
//! `rope_type` (`dynamic`, `yarn`, `longrope`, ...) is an error naming the key, never ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::LlamaError;

/// How the RoPE inverse frequencies `theta^(-2i/d)` are rescaled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RopeScaling {
    /// None (`rope_type = "default"`).
    #[default]
    None,
    /// `rope_type = "linear"`: every inverse frequency divided by `factor`.
    Linear { factor: f64 },
    /// `rope_type = "llama3"` (Llama 3.1 and later).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// Inverse frequency `i` divided by `divisors[i]` (GGUF `rope_freqs.weight`, `head_dim / 2` values).
    Divisors(Vec<f32>),
}

/// `theta^(-2i/d)` for `i < d/2`, in f64.
pub fn base_inv_freq(theta: f64, head_dim: usize) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
        .collect()
}

fn bad(msg: String) -> LlamaError {
    LlamaError::BadConfig(msg)
}

impl RopeScaling {
    /// The scaled inverse frequencies, `head_dim / 2` of them: what the Burn model and the host path use.
    pub fn inv_freq(&self, theta: f64, head_dim: usize) -> Vec<f32> {
        let base = base_inv_freq(theta, head_dim);
        match self {
            RopeScaling::None => base.iter().map(|&f| f as f32).collect(),
            RopeScaling::Linear { factor } => base.iter().map(|&f| (f / factor) as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: lo,
                high_freq_factor: hi,
                original_max_position_embeddings: orig,
            } => {
                let orig = *orig as f64;
                let (low_wavelen, high_wavelen) = (orig / lo, orig / hi);
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let g = if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (orig / wavelen - lo) / (hi - lo);
                            (1.0 - smooth) * f / factor + smooth * f
                        };
                        g as f32
                    })
                    .collect()
            }
            RopeScaling::Divisors(d) => base
                .iter()
                .zip(d)
                .map(|(&f, &d)| (f / d as f64) as f32)
                .collect(),
        }
    }

    /// llama.cpp's per-pair divisors of this scaling (`rope_freqs.weight`): base / scaled inverse frequency.
    pub fn divisors(&self, theta: f64, head_dim: usize) -> Vec<f32> {
        let base = base_inv_freq(theta, head_dim);
        match self {
            RopeScaling::Divisors(d) => d.clone(),
            other => base
                .iter()
                .zip(other.inv_freq(theta, head_dim))
                .map(|(&f, g)| (f / g as f64) as f32)
                .collect(),
        }
    }

    /// Checks the values against `head_dim` (positive finite factors, a non-empty llama3 band, one positive
    /// divisor per pair).
    pub fn validate(&self, head_dim: usize) -> Result<(), LlamaError> {
        let pos = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(format!("rope scaling: {name} = {v} must be positive")))
            }
        };
        match self {
            RopeScaling::None => Ok(()),
            RopeScaling::Linear { factor } => pos("factor", *factor),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                pos("factor", *factor)?;
                pos("low_freq_factor", *low_freq_factor)?;
                pos("high_freq_factor", *high_freq_factor)?;
                pos(
                    "original_max_position_embeddings",
                    *original_max_position_embeddings as f64,
                )?;
                if low_freq_factor >= high_freq_factor {
                    return Err(bad(format!(
                        "rope scaling: low_freq_factor {low_freq_factor} must be below high_freq_factor {high_freq_factor}"
                    )));
                }
                Ok(())
            }
            RopeScaling::Divisors(d) => {
                if d.len() != head_dim / 2 {
                    return Err(bad(format!(
                        "rope_freqs.weight has {} values, expected head_dim / 2 = {}",
                        d.len(),
                        head_dim / 2
                    )));
                }
                match d.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                    Some(i) => Err(bad(format!(
                        "rope_freqs.weight[{i}] = {} must be positive",
                        d[i]
                    ))),
                    None => Ok(()),
                }
            }
        }
    }

    /// Reads `rope_theta` and the scaling from a `config.json`: `rope_parameters` (transformers ≥ 5) or the
    /// top-level `rope_theta` / `rope_scaling` (with `type` accepted for `rope_type`, as transformers does).
    /// Both forms may be present only if they agree. Errors name the key path.
    pub fn from_hf_config(json: &Value) -> Result<(f64, RopeScaling), LlamaError> {
        let top_theta = num(json, "rope_theta", "rope_theta")?;
        let top = match json.get("rope_scaling") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_scaling(v, "rope_scaling")?),
        };
        let params = match json.get("rope_parameters") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let theta = num(v, "rope_theta", "rope_parameters.rope_theta")?;
                Some((theta, parse_scaling(v, "rope_parameters")?))
            }
        };
        let (theta, scaling) = match (params, top_theta, top) {
            (Some((pt, ps)), tt, ts) => {
                if let (Some(a), Some(b)) = (pt, tt)
                    && a != b
                {
                    return Err(bad(format!(
                        "`rope_parameters.rope_theta` = {a} and `rope_theta` = {b} disagree"
                    )));
                }
                if let Some(ts) = ts
                    && ts != ps
                {
                    return Err(bad(format!(
                        "`rope_parameters` ({ps:?}) and `rope_scaling` ({ts:?}) disagree"
                    )));
                }
                (pt.or(tt), ps)
            }
            (None, tt, ts) => (tt, ts.unwrap_or_default()),
        };
        let theta = theta.unwrap_or(10_000.0);
        if !(theta.is_finite() && theta > 0.0) {
            return Err(bad(format!("`rope_theta` = {theta} must be positive")));
        }
        Ok((theta, scaling))
    }

    /// The `rope_scaling` object of a `config.json` (`None` for no scaling). Per-pair divisors are written as
    /// the llama3 parameters that reproduce them (`original_context` helps when few pairs fall in the smooth
    /// band); an error when none do.
    pub fn to_hf_json(
        &self,
        theta: f64,
        head_dim: usize,
        original_context: Option<usize>,
    ) -> Result<Option<Value>, LlamaError> {
        Ok(match self {
            RopeScaling::None => None,
            RopeScaling::Linear { factor } => {
                Some(serde_json::json!({"rope_type": "linear", "factor": factor}))
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => Some(serde_json::json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            })),
            RopeScaling::Divisors(d) => {
                let fit = fit_llama3(d, theta, head_dim, original_context)?;
                return fit.to_hf_json(theta, head_dim, None);
            }
        })
    }
}

/// An optional number at `obj[key]`; `path` names it in errors.
fn num(obj: &Value, key: &str, path: &str) -> Result<Option<f64>, LlamaError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(format!("`{path}` is not a number"))),
    }
}

/// A `rope_scaling` / `rope_parameters` object at key path `path`.
fn parse_scaling(v: &Value, path: &str) -> Result<RopeScaling, LlamaError> {
    if !v.is_object() {
        return Err(bad(format!("`{path}` is not an object")));
    }
    let (key, ty) = match (v.get("rope_type"), v.get("type")) {
        (Some(t), _) => ("rope_type", t),
        (None, Some(t)) => ("type", t),
        (None, None) => {
            return Err(bad(format!(
                "`{path}.rope_type` is missing (transformers ≥ 5 nests per-layer-type parameters, which are not supported)"
            )));
        }
    };
    let ty = ty
        .as_str()
        .ok_or_else(|| bad(format!("`{path}.{key}` is not a string")))?;
    let req = |k: &str| -> Result<f64, LlamaError> {
        num(v, k, &format!("{path}.{k}"))?
            .ok_or_else(|| bad(format!("`{path}.{k}` is missing (rope_type `{ty}`)")))
    };
    if let Some(p) = num(
        v,
        "partial_rotary_factor",
        &format!("{path}.partial_rotary_factor"),
    )? && p != 1.0
    {
        return Err(bad(format!(
            "`{path}.partial_rotary_factor` = {p} is not supported (RoPE on the whole head only)"
        )));
    }
    let s = match ty {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: req("factor")?,
        },
        "llama3" => {
            let orig = req("original_max_position_embeddings")?;
            if orig.fract() != 0.0 || orig < 1.0 {
                return Err(bad(format!(
                    "`{path}.original_max_position_embeddings` = {orig} is not a positive integer"
                )));
            }
            RopeScaling::Llama3 {
                factor: req("factor")?,
                low_freq_factor: req("low_freq_factor")?,
                high_freq_factor: req("high_freq_factor")?,
                original_max_position_embeddings: orig as usize,
            }
        }
        other => {
            return Err(bad(format!(
                "`{path}.{key}` = \"{other}\" is not supported (default, linear, llama3)"
            )));
        }
    };
    if let Err(LlamaError::BadConfig(m)) = s.validate(0) {
        return Err(bad(format!("`{path}`: {m}")));
    }
    Ok(s)
}

/// The llama3 parameters whose divisors equal `d` (to 1e-5 relative), taking `low_freq_factor = 1` (as every
/// Llama 3.x does) unless the band says otherwise, `high_freq_factor = 4` when the band cannot tell.
fn fit_llama3(
    d: &[f32],
    theta: f64,
    head_dim: usize,
    orig: Option<usize>,
) -> Result<RopeScaling, LlamaError> {
    let cannot = |why: &str| {
        bad(format!(
            "rope_freqs.weight: per-pair RoPE divisors that are not llama3 scaling cannot be written to config.json ({why})"
        ))
    };
    let base = base_inv_freq(theta, head_dim);
    if d.len() != base.len() {
        return Err(cannot("wrong length"));
    }
    let factor = d.iter().fold(1.0f64, |m, &v| m.max(v as f64));
    if factor - 1.0 < 1e-6 {
        return Ok(RopeScaling::None);
    }
    let two_pi = 2.0 * std::f64::consts::PI;
    // Smooth-band pairs: s = (L f / 2π − lf) / (hf − lf), with 1/d = (1 − s) / F + s.
    let band: Vec<(f64, f64)> = base
        .iter()
        .zip(d)
        .filter(|(_, v)| (**v as f64) > 1.0 + 1e-6 && (**v as f64) < factor * (1.0 - 1e-6))
        .map(|(&f, &v)| (f, (1.0 / v as f64 - 1.0 / factor) / (1.0 - 1.0 / factor)))
        .collect();
    let (mut l, mut lf, mut hf) = (orig.map(|o| o as f64), 1.0f64, 4.0f64);
    if band.len() >= 2 {
        // Least squares s = a f + b.
        let n = band.len() as f64;
        let (sf, ss) = band
            .iter()
            .fold((0.0, 0.0), |(a, b), (f, s)| (a + f, b + s));
        let (mf, ms) = (sf / n, ss / n);
        let cov: f64 = band.iter().map(|(f, s)| (f - mf) * (s - ms)).sum();
        let var: f64 = band.iter().map(|(f, _)| (f - mf) * (f - mf)).sum();
        if var <= 0.0 {
            return Err(cannot("degenerate band"));
        }
        let a = cov / var;
        let b = ms - a * mf;
        match l {
            Some(lv) => {
                let span = lv / (two_pi * a);
                lf = -b * span;
                hf = lf + span;
            }
            None => {
                let span = -1.0 / b;
                hf = 1.0 + span;
                l = Some(two_pi * a * span);
            }
        }
    } else if let Some(&(f, s)) = band.first() {
        match l {
            Some(lv) => hf = 1.0 + (lv * f / two_pi - 1.0) / s,
            None => l = Some((s * (hf - lf) + lf) * two_pi / f),
        }
    } else if l.is_none() {
        // No pair in the band: put the band between the last unscaled and the first fully scaled wavelength.
        let wl = |f: f64| two_pi / f;
        let hi_max = base
            .iter()
            .zip(d)
            .filter(|(_, v)| (**v as f64) <= 1.0 + 1e-6)
            .map(|(&f, _)| wl(f))
            .fold(0.0, f64::max);
        let lo_min = base
            .iter()
            .zip(d)
            .filter(|(_, v)| (**v as f64) >= factor * (1.0 - 1e-6))
            .map(|(&f, _)| wl(f))
            .fold(f64::INFINITY, f64::min);
        let lo = hi_max * hf;
        l = Some(if lo_min.is_finite() {
            (lo + lo_min) / 2.0
        } else {
            lo * 2.0
        });
    }
    let snap = |x: f64, q: f64| {
        let r = (x * q).round() / q;
        if (r - x).abs() <= 1e-4 * x.abs().max(1.0) {
            r
        } else {
            x
        }
    };
    let l = l.ok_or_else(|| cannot("no original context"))?.round();
    let fit = RopeScaling::Llama3 {
        factor: snap(factor, 1000.0),
        low_freq_factor: snap(lf, 1000.0),
        high_freq_factor: snap(hf, 1000.0),
        original_max_position_embeddings: l.max(1.0) as usize,
    };
    if fit.validate(head_dim).is_err() {
        return Err(cannot("no consistent parameters"));
    }
    let again = fit.divisors(theta, head_dim);
    let ok = again
        .iter()
        .zip(d)
        .all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0));
    if !ok {
        return Err(cannot("no llama3 parameters reproduce them"));
    }
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama3(orig: usize) -> RopeScaling {
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: orig,
        }
    }

    /// The three bands of Llama 3.1 scaling on the tiny-llama3 fixture's geometry (head 16, theta 5e5,
    /// original context 64): pair 0 kept, pair 1 interpolated, pairs 2.. divided by 8.
    #[test]
    fn llama3_bands() {
        let base = base_inv_freq(500_000.0, 16);
        let got = llama3(64).inv_freq(500_000.0, 16);
        assert_eq!(got[0], base[0] as f32);
        let wl = 2.0 * std::f64::consts::PI / base[1];
        let s = (64.0 / wl - 1.0) / 3.0;
        let want = (1.0 - s) * base[1] / 8.0 + s * base[1];
        assert!((got[1] as f64 - want).abs() < 1e-7 * want, "{got:?}");
        for i in 2..8 {
            assert_eq!(got[i], (base[i] / 8.0) as f32);
        }
        let lin = RopeScaling::Linear { factor: 2.0 }.inv_freq(500_000.0, 16);
        assert_eq!(lin[3], (base[3] / 2.0) as f32);
    }

    /// Divisors (llama.cpp's form) give the same frequencies and are fitted back to the parameters.
    #[test]
    fn divisors_round_trip() {
        for (theta, hd, orig) in [(500_000.0, 16, 64), (500_000.0, 128, 8192)] {
            let s = llama3(orig);
            let d = s.divisors(theta, hd);
            let a = s.inv_freq(theta, hd);
            let b = RopeScaling::Divisors(d.clone()).inv_freq(theta, hd);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-6 * x.abs(), "{x} {y}");
            }
            for hint in [None, Some(orig)] {
                assert_eq!(fit_llama3(&d, theta, hd, hint).unwrap(), s, "{hd} {hint:?}");
            }
        }
        let mut d = llama3(64).divisors(500_000.0, 16);
        d[1] = 1.5;
        d[3] = 2.0;
        assert!(fit_llama3(&d, 500_000.0, 16, None).is_err());
    }

    #[test]
    fn both_config_forms_and_errors() {
        let top = serde_json::json!({"rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}});
        let nested = serde_json::json!({"rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3",
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}});
        let a = RopeScaling::from_hf_config(&top).unwrap();
        assert_eq!(a, (5e5, llama3(64)));
        assert_eq!(RopeScaling::from_hf_config(&nested).unwrap(), a);
        let legacy = serde_json::json!({"rope_scaling": {"type": "linear", "factor": 4.0}});
        assert_eq!(
            RopeScaling::from_hf_config(&legacy).unwrap(),
            (10_000.0, RopeScaling::Linear { factor: 4.0 })
        );
        for (j, needle) in [
            (
                serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
                "`rope_scaling.rope_type` = \"yarn\" is not supported",
            ),
            (
                serde_json::json!({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0}}),
                "`rope_parameters.rope_type` = \"dynamic\"",
            ),
            (
                serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}),
                "`rope_scaling.original_max_position_embeddings` is missing",
            ),
            (
                serde_json::json!({"rope_theta": 1.0, "rope_parameters": {"rope_type": "default", "rope_theta": 2.0}}),
                "disagree",
            ),
        ] {
            let e = RopeScaling::from_hf_config(&j).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
