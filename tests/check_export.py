"""`sparring export`'s directories read by code no one here wrote: the `safetensors` Python package (and numpy).

Usage:
  python3 tests/check_export.py MERGED_DIR ADAPTER_DIR
      (run by tests/chatlm_smollm2_game.rs) checks that the merged directory is a complete F32 llama checkpoint
      under transformers' names and shapes (from its own config.json), with the tokenizer files and a chat
      template, and that the adapter directory is a PEFT LoRA adapter: adapter_config.json, and lora_A [r, in] /
      lora_B [out, r] for each adapted module of each layer, some B non-zero (the run trained it).
  python3 tests/check_export.py MERGED_DIR ADAPTER_DIR BASE_HF_DIR LOGITS_JSON
      also loads the merged model with transformers and the base + adapter with PEFT, and compares their logits
      for LOGITS_JSON's token ids with sparring's logits written there (needs torch, transformers, peft; run by
      the ignored test `export_loads_in_transformers_and_peft`).
"""

import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

MODULES = {
    "q_proj": "self_attn",
    "k_proj": "self_attn",
    "v_proj": "self_attn",
    "o_proj": "self_attn",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "down_proj": "mlp",
}


def check_merged(d: str) -> dict:
    cfg = json.load(open(os.path.join(d, "config.json")))
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        assert os.path.isfile(os.path.join(d, f)), f
    tc = json.load(open(os.path.join(d, "tokenizer_config.json")))
    assert isinstance(tc.get("chat_template"), str) and tc["chat_template"], "no chat template"
    w = load_file(os.path.join(d, "model.safetensors"))
    h, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or h // heads
    kv = cfg.get("num_key_value_heads") or heads
    want = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not cfg["tie_word_embeddings"]:
        want["lm_head.weight"] = (v, h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        want[p + "input_layernorm.weight"] = (h,)
        want[p + "post_attention_layernorm.weight"] = (h,)
        want[p + "self_attn.q_proj.weight"] = (heads * hd, h)
        want[p + "self_attn.k_proj.weight"] = (kv * hd, h)
        want[p + "self_attn.v_proj.weight"] = (kv * hd, h)
        want[p + "self_attn.o_proj.weight"] = (h, heads * hd)
        want[p + "mlp.gate_proj.weight"] = (ff, h)
        want[p + "mlp.up_proj.weight"] = (ff, h)
        want[p + "mlp.down_proj.weight"] = (h, ff)
    assert set(w) == set(want), sorted(set(w) ^ set(want))
    for k, shape in want.items():
        assert w[k].shape == shape, (k, w[k].shape, shape)
        assert w[k].dtype == np.float32, (k, w[k].dtype)
        assert np.isfinite(w[k]).all(), k
    return cfg


def check_adapter(d: str, cfg: dict) -> None:
    ac = json.load(open(os.path.join(d, "adapter_config.json")))
    assert ac["peft_type"] == "LORA", ac
    r, targets = ac["r"], ac["target_modules"]
    assert r >= 1 and targets and all(t in MODULES for t in targets), ac
    w = load_file(os.path.join(d, "adapter_model.safetensors"))
    h, ff = cfg["hidden_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or h // heads
    kv = cfg.get("num_key_value_heads") or heads
    dims = {
        "q_proj": (h, heads * hd),
        "k_proj": (h, kv * hd),
        "v_proj": (h, kv * hd),
        "o_proj": (heads * hd, h),
        "gate_proj": (h, ff),
        "up_proj": (h, ff),
        "down_proj": (ff, h),
    }
    names = set()
    trained = 0.0
    for i in range(cfg["num_hidden_layers"]):
        for t in targets:
            p = f"base_model.model.model.layers.{i}.{MODULES[t]}.{t}"
            din, dout = dims[t]
            a, b = w[p + ".lora_A.weight"], w[p + ".lora_B.weight"]
            assert a.shape == (r, din), (p, a.shape)
            assert b.shape == (dout, r), (p, b.shape)
            trained = max(trained, float(np.abs(b).max()))
            names |= {p + ".lora_A.weight", p + ".lora_B.weight"}
    assert set(w) == names, sorted(set(w) ^ names)
    assert trained > 0, "every lora_B is zero: the exported adapter is untrained"
    print(f"adapter: {len(w)} tensors, r={r}, targets={targets}, max |B| = {trained:.3g}")


def check_transformers(merged: str, adapter: str, base: str, logits_json: str) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ref = json.load(open(logits_json))
    ids = torch.tensor([ref["ids"]])
    want = np.array(ref["logits"], dtype=np.float32)
    with torch.no_grad():
        m = AutoModelForCausalLM.from_pretrained(merged, torch_dtype=torch.float32)
        got = m(ids).logits[0, -1].numpy()
        d1 = float(np.abs(got - want).max())
        b = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
        p = PeftModel.from_pretrained(b, adapter)
        got2 = p(ids).logits[0, -1].numpy()
        d2 = float(np.abs(got2 - want).max())
    scale = float(np.abs(want).max())
    print(f"transformers(merged) vs sparring: max |diff| {d1:.2e}; PEFT(base + adapter): {d2:.2e} (max |logit| {scale:.1f})")
    assert d1 <= 1e-3 * max(scale, 1.0), d1
    assert d2 <= 1e-3 * max(scale, 1.0), d2


def main() -> None:
    merged, adapter = sys.argv[1], sys.argv[2]
    cfg = check_merged(merged)
    print(f"merged: {cfg['architectures']} {cfg['num_hidden_layers']} layers, F32, tied={cfg['tie_word_embeddings']}")
    check_adapter(adapter, cfg)
    if len(sys.argv) > 4:
        check_transformers(merged, adapter, sys.argv[3], sys.argv[4])
    print("ok")


if __name__ == "__main__":
    main()
