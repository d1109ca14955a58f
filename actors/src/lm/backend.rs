//! Backend selection: which Burn device a model actor runs on (`flex` CPU always, `wgpu`/`cuda`
//! behind cargo features of `sparring-actors`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use super::LmError;

/// The compute backend of one model actor, as written in a scenario (`backend = "flex"`).
///
/// Deserializing is strict: a backend whose cargo feature is not compiled in is rejected with a
/// message naming the feature, so scenario validation catches it before anything runs.
/// [`FromStr`] only parses; use [`BackendKind::require_compiled`] to check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[schemars(description = "Compute backend: flex (CPU), wgpu or cuda (cargo features).")]
pub enum BackendKind {
    /// burn-flex, pure-Rust CPU backend (default, always compiled).
    #[default]
    Flex,
    /// burn-wgpu (Vulkan/Metal/DX12; Mesa lavapipe on CPU-only machines). Feature `wgpu`.
    Wgpu,
    /// burn-cuda. Feature `cuda`.
    Cuda,
}

impl BackendKind {
    /// All kinds, in display order.
    pub const ALL: [BackendKind; 3] = [BackendKind::Flex, BackendKind::Wgpu, BackendKind::Cuda];

    /// The scenario spelling.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// The cargo feature that enables it (`None` for the always-present flex).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            BackendKind::Flex => None,
            BackendKind::Wgpu => Some("wgpu"),
            BackendKind::Cuda => Some("cuda"),
        }
    }

    /// Whether this build can create a device of this kind.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => true,
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// `Ok(self)` when compiled in, else an error naming the feature to enable.
    pub fn require_compiled(self) -> Result<Self, LmError> {
        match (self.is_compiled(), self.feature()) {
            (true, _) | (_, None) => Ok(self),
            (false, Some(feature)) => Err(LmError::BackendNotCompiled {
                kind: self.name(),
                feature,
            }),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = LmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(BackendKind::Flex),
            "wgpu" | "vulkan" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            _ => Err(LmError::UnknownBackend(s.to_string())),
        }
    }
}

impl<'de> serde::Deserialize<'de> for BackendKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<BackendKind>()
            .and_then(BackendKind::require_compiled)
            .map_err(serde::de::Error::custom)
    }
}

/// The (non-autodiff) device for `kind`; call `.autodiff()` on it to train.
pub fn device(kind: BackendKind) -> Result<Device, LmError> {
    let kind = kind.require_compiled()?;
    match kind {
        BackendKind::Flex => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Ok(Device::cuda(0usize)),
        #[allow(unreachable_patterns)]
        other => Err(LmError::BackendNotCompiled {
            kind: other.name(),
            feature: other.feature().unwrap_or("flex"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_feature_errors() {
        assert_eq!("flex".parse::<BackendKind>().unwrap(), BackendKind::Flex);
        assert_eq!("WGPU".parse::<BackendKind>().unwrap(), BackendKind::Wgpu);
        assert!(matches!(
            "tpu".parse::<BackendKind>(),
            Err(LmError::UnknownBackend(_))
        ));
        assert!(device(BackendKind::Flex).is_ok());
        if !cfg!(feature = "wgpu") {
            let err = device(BackendKind::Wgpu).unwrap_err().to_string();
            assert!(err.contains("--features wgpu"), "{err}");
        }
        if !cfg!(feature = "cuda") {
            let err = device(BackendKind::Cuda).unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }

    #[test]
    fn serde_is_strict() {
        #[derive(serde::Deserialize)]
        struct S {
            backend: BackendKind,
        }
        let s: S = serde_json::from_str(r#"{"backend":"flex"}"#).unwrap();
        assert_eq!(s.backend, BackendKind::Flex);
        assert!(serde_json::from_str::<S>(r#"{"backend":"nope"}"#).is_err());
        if !cfg!(feature = "wgpu") {
            let e = serde_json::from_str::<S>(r#"{"backend":"wgpu"}"#)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("--features wgpu"), "{e}");
        }
    }
}
