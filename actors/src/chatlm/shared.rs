//! Model files loaded once per process. Roles that load the same file on the same backend (the three SmolLM2
//! players of `smollm2-advgame`, or roles naming one `[models.NAME]`) share its weights — Burn tensors are
//! reference-counted, so each role's clone shares the buffers, and nothing changes them in place while another
//! holds them — and the host copy used for decoding on the CPU ([`ChatModel::base_host`]). A LoRA player keeps
//! only what its adapters change: its merged projections, and their host matrices. The file is released when the
//! last role holding it is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use super::model::ChatModel;
use crate::formats::TextTokenizer;
use crate::llama::{Device, HostLlama, LlamaModel};
use crate::lm::BackendKind;

/// A loaded model file.
pub struct Loaded {
    model: LlamaModel,
    tokenizer: TextTokenizer,
    host: OnceLock<Result<Arc<HostLlama>, String>>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").finish_non_exhaustive()
    }
}

impl Loaded {
    /// The host copy of the weights (f32), built once.
    pub fn host(&self) -> Result<Arc<HostLlama>, String> {
        self.host
            .get_or_init(|| {
                HostLlama::from_model(&self.model)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

type Key = (PathBuf, BackendKind);

static LOADED: LazyLock<Mutex<HashMap<Key, Weak<Loaded>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The chat model of `path` on `backend` (`device`), loaded once per process while some role holds it.
pub fn load(path: &Path, backend: BackendKind, device: &Device) -> Result<ChatModel, String> {
    let key = (
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        backend,
    );
    // Held while loading: a second role asking for the same file waits for the first load instead of repeating it.
    let mut map = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    let loaded = match map.get(&key).and_then(Weak::upgrade) {
        Some(l) => l,
        None => {
            let m = ChatModel::load(path, device)?;
            let l = Arc::new(Loaded {
                model: m.model,
                tokenizer: m.tokenizer,
                host: OnceLock::new(),
            });
            map.insert(key, Arc::downgrade(&l));
            l
        }
    };
    drop(map);
    let m = ChatModel::from_parts(loaded.model.clone(), loaded.tokenizer.clone(), path)?;
    Ok(m.shared_with(loaded))
}
