//! `sparring export RUN_DIR --role R [--round N] --out DIR`: a run's trained `chat-lm` player taken away as a
//! Hugging Face directory (adapters merged) or, with `--adapter`, its LoRA adapters alone in PEFT's layout. The
//! player is built and restored exactly as the run (and `sparring serve`) builds it; the directory is written
//! beside `DIR` and renamed into place, so a killed export leaves no half-written checkpoint.

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use sparring_actors::chatlm::export::{source_config, write_merged, write_peft_adapter};
use sparring_actors::chatlm::policy::Weights;
use sparring_actors::chatlm::{ChatPolicy, POLICY_KIND};
use sparring_engine::registry::Registry;
use sparring_engine::{Policy, Role, run, scenario};
use std::path::{Path, PathBuf};

/// Arguments of `sparring export`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
The merged directory loads in transformers (AutoModelForCausalLM.from_pretrained(DIR)) and in sparring \
(`model = \"DIR\"`). The adapter directory loads in PEFT over the base in HF form: for a GGUF base, \
`sparring convert BASE.gguf --out BASE_HF`, then PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(\
BASE_HF), DIR).")]
pub struct ExportArgs {
    /// The run directory (or a scenario file: its initial player).
    pub source: PathBuf,
    /// Which player.
    #[arg(long, value_parser = ["attacker", "defender"])]
    pub role: String,
    /// With a run directory: the player of this committed round (default: the last committed one; 0 = initial).
    #[arg(long)]
    pub round: Option<u32>,
    /// Output directory (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Write the LoRA adapters alone (PEFT: adapter_config.json, adapter_model.safetensors) instead of the merged
    /// model.
    #[arg(long)]
    pub adapter: bool,
    /// Which weights of a learning player: those it generates with (`generator`: the EMA copy under DPO/IPO, as
    /// it plays and as `sparring serve` serves it) or the online policy the optimizer updates (`policy`).
    #[arg(long, default_value = "generator", value_parser = ["generator", "policy"])]
    pub weights: String,
    /// Override a scenario value (as for `run`), e.g. --set defender.model=/path/to/model.gguf when the run's model
    /// file is elsewhere on this machine.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `sparring export` wrote (also `sparring_export.json` in the output directory).
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub out: PathBuf,
    /// `merged` or `adapter`.
    pub layout: &'static str,
    pub role: String,
    /// The run's id, when the source is a run directory.
    pub run_id: Option<String>,
    /// The committed round the player is taken at (`None`: a scenario's initial player).
    pub round: Option<u32>,
    pub weights: String,
    /// The model file the player was built on.
    pub base_model: PathBuf,
    /// Bytes written.
    pub bytes: u64,
}

impl Exported {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        let at = match self.round {
            Some(r) => format!(" at round {r}"),
            None => " (initial)".into(),
        };
        format!(
            "exported the {}{at} ({} weights, {}) to {} ({:.1} MB)",
            self.role,
            self.weights,
            if self.layout == "merged" {
                "LoRA merged, HF layout"
            } else {
                "PEFT LoRA adapter"
            },
            self.out.display(),
            self.bytes as f64 / 1e6
        )
    }
}

/// Runs `sparring export`.
pub fn cli(a: ExportArgs, registry: &Registry) -> Result<Exported> {
    let role = match a.role.as_str() {
        "attacker" => Role::Attacker,
        _ => Role::Defender,
    };
    let weights = match a.weights.as_str() {
        "policy" => Weights::Policy,
        _ => Weights::Generator,
    };
    check_out(&a.out)?;
    let (run_dir, file) = crate::eval::scenario_or_run(&a.source);
    let loaded = scenario::load(&file, &a.set, registry).map_err(|e| anyhow!("{e}"))?;
    let cfg = loaded.role(role);
    if cfg.kind != POLICY_KIND {
        bail!(
            "{}: the {role} is `{}`; `sparring export` writes a `{POLICY_KIND}` player's weights",
            file.display(),
            cfg.kind
        );
    }
    let ctx = loaded.context(role, run_dir.clone());
    let (round, state) = match &run_dir {
        Some(dir) => {
            let (r, s) = crate::eval::player_state(dir, role.as_str(), ctx.learns, a.round)?;
            (Some(r), s)
        }
        None if a.round.is_some() => bail!("--round needs a run directory"),
        None => (None, None),
    };
    let mut policy = ChatPolicy::build(&cfg.params, &ctx).map_err(|e| anyhow!("{role}: {e}"))?;
    if let Some(s) = &state {
        policy
            .load(s)
            .map_err(|e| anyhow!("{role}: restoring its state at round {round:?}: {e}"))?;
    }
    let base_model = policy.chat_model().path.clone();

    // Written beside the target, then renamed into place.
    let name = a
        .out
        .file_name()
        .ok_or_else(|| anyhow!("--out {}: not a directory name", a.out.display()))?
        .to_string_lossy()
        .into_owned();
    let partial = a
        .out
        .with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let written = write(&policy, weights, a.adapter, &base_model, &partial, role);
    let layout = match written {
        Ok(l) => l,
        Err(e) => {
            std::fs::remove_dir_all(&partial).ok();
            return Err(e);
        }
    };
    let mut done = Exported {
        out: a.out.clone(),
        layout,
        role: role.as_str().to_string(),
        run_id: run_dir.as_deref().and_then(run::recorded_run_id),
        round,
        weights: a.weights.clone(),
        base_model,
        bytes: 0,
    };
    let p = partial.join("sparring_export.json");
    std::fs::write(&p, serde_json::to_string_pretty(&done)? + "\n")
        .with_context(|| format!("writing {}", p.display()))?;
    done.bytes = dir_bytes(&partial)?;
    if a.out.exists() {
        std::fs::remove_dir(&a.out).with_context(|| format!("replacing {}", a.out.display()))?;
    }
    std::fs::rename(&partial, &a.out)
        .with_context(|| format!("moving {} to {}", partial.display(), a.out.display()))?;
    Ok(done)
}

/// Writes the merged model or the adapter into `dir`; returns the layout's name.
fn write(
    policy: &ChatPolicy,
    weights: Weights,
    adapter: bool,
    base_model: &Path,
    dir: &Path,
    role: Role,
) -> Result<&'static str> {
    if adapter {
        let lora = policy.lora(weights).ok_or_else(|| {
            anyhow!(
                "the {role} has no trained LoRA adapters (it trains every weight, or does not learn): \
                 export it without --adapter"
            )
        })?;
        write_peft_adapter(&lora, &base_model.display().to_string(), dir)
            .map_err(|e| anyhow!("{e}"))?;
        Ok("adapter")
    } else {
        let config = source_config(base_model).map_err(|e| anyhow!("{e}"))?;
        let model = policy.weights(weights);
        write_merged(&model, &config, &policy.chat_model().tokenizer, dir)
            .map_err(|e| anyhow!("{e}"))?;
        Ok("merged")
    }
}

/// The output must be new or an empty directory: an export never overwrites files.
fn check_out(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "--out {}: the directory is not empty (an export never overwrites files)",
                    out.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("--out {}: {e}", out.display())),
    }
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        n += e.metadata()?.len();
    }
    Ok(n)
}
