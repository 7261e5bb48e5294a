#!/usr/bin/env python3
"""Build the tiny GGUF golden fixtures in tests/golden/fixtures/gguf/.

For each tiny random model (llama, qwen2, qwen3, gemma3), this script:

  1. takes a Hugging Face folder: a committed fixture from tests/golden/fixtures/<name>/
     (make_hf_fixtures.py) or a new tiny model built the same way (random init + randomise_extras);
  2. gives it a tokenizer, because llama.cpp's converter refuses a model without one: a SentencePiece
     BPE model of exactly the model's vocabulary size, trained on tests/golden/data/persuasion-chapter-1.txt
     (all four converters take a `tokenizer.model` first, so no converter code is patched);
  3. converts it with llama.cpp's own convert_hf_to_gguf.py to F32 or BF16 and quantizes that with
     llama.cpp's llama-quantize to the listed types;
  4. loads each GGUF file with transformers (`from_pretrained(dir, gguf_file=..., dtype=float32)`: the
     weights are dequantized by gguf-py) and stores, in <file>.reference.safetensors, for two prompts
     i in {0, 1} (20 and 5 random ids in [3, vocab)):

       prompt_<i>  int64   [L]         the prompt
       logits_<i>  float32 [L, vocab]  logits of one forward pass over the prompt, f32 compute, eager attention
       greedy_<i>  int64   [32]        32 greedy tokens (a loop of full forward passes + argmax, no KV cache,
                                       EOS ignored)

     Prompts are re-drawn (next seed) until every greedy step has top-1 minus top-2 >= 5e-3 of that
     step's logit range and the 32 tokens hold >= 10 distinct ids, as for the Hugging Face fixtures.

Why the models look as they do (all of it is about what transformers' GGUF loader can express, since
transformers is the reference; quanta follows llama.cpp's reading of the same metadata):
  - transformers 5.23 reads no rope-scaling keys for llama/qwen2/qwen3/gemma3, no `rope.freq_base_swa`,
    no `final_logit_softcapping` and no Gemma `query_pre_attn_scalar` (its default 256 stays, while
    llama.cpp scales by 1/sqrt(head_dim)). So: default RoPE everywhere, Gemma with head_dim 256, local
    RoPE theta 1e4 / global 1e6 (the defaults), no softcaps. The committed qwen2-bias-yarn-f32 is
    converted with its YaRN scaling dropped from config.json (the converter would write it, transformers
    would ignore it).
  - llama.cpp's converter asserts Gemma3's attn_logit_softcapping is None, and llama.cpp (like transformers'
    GGUF loader) makes every 6th Gemma3 layer global whatever the HF layer_types said; the hidden-32 Gemma
    has 6 layers so that layer 5 is global (gemma3-k has one, local, layer).
  - transformers 5.23 maps no head_dim for qwen3 GGUF files, so Qwen3Config's default head_dim 128 must be
    the real one: the Qwen3 models here use head_dim 128 (as every released Qwen3 does).
  - K-quants need rows whose length is a multiple of 256. The hidden-64/32 models' Q4_K_M files therefore
    hold mostly the fallback types (Q5_0, Q8_0 ... as llama-quantize picks them); the "-k" models
    (hidden 256, intermediate 256) carry the real K-quant blocks.

Run:  /root/.cache/quanta/tools-venv/bin/python tools/make_gguf_model_fixtures.py [file-stem ...]
Pins: tools/requirements-gguf-models.txt. llama.cpp: the one vendored by llama-cpp-python 0.3.36
(override with QUANTA_LLAMA_CPP=<source dir> and QUANTA_LLAMA_QUANTIZE=<llama-quantize binary>).
Idempotent: fixed seeds, single-threaded torch, each output file rebuilt from scratch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported (it reads this at import)

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, Qwen2Config, Qwen3Config

REPO = Path(__file__).resolve().parent.parent
HF_FIXTURES = REPO / "tests" / "golden" / "fixtures"
OUT = HF_FIXTURES / "gguf"
TEXT = REPO / "tests" / "golden" / "data" / "persuasion-chapter-1.txt"
LLAMA_CPP = Path(
    os.environ.get("QUANTA_LLAMA_CPP", "/root/.cache/quanta/llamacpp-src/llama_cpp_python-0.3.36/vendor/llama.cpp")
)
QUANTIZE = Path(os.environ.get("QUANTA_LLAMA_QUANTIZE", "/root/.cache/quanta/llamacpp-src/build/bin/llama-quantize"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_hf_fixtures import randomise_extras  # noqa: E402  (the same randomisation as the HF fixtures)

N_GREEDY = 32
PROMPT_LENS = (20, 5)
SPECIAL_IDS = 3  # 0 unk, 1 bos, 2 eos in the SentencePiece vocabulary: prompts avoid them
MIN_REL_MARGIN = 5e-3
MIN_DISTINCT = 10
MAX_PROMPT_TRIES = 400
MAX_TOTAL_BYTES = 6 * 1000 * 1000


def models() -> list[dict]:
    """Every source model, how it is converted and which GGUF types are made from it."""
    k_common = dict(vocab_size=320, hidden_size=256, intermediate_size=256, max_position_embeddings=256)
    return [
        dict(
            name="llama-gqa",
            source="llama-gqa-f32",
            about="committed llama-gqa-f32 (GQA 4/2, untied, f32)",
            outtype="f32",
            types=["F32", "Q8_0", "Q4_0", "Q4_K_M"],
            seed=2001,
        ),
        dict(
            name="qwen2-bias",
            source="qwen2-bias-yarn-f32",
            drop_rope_scaling=True,
            about="committed qwen2-bias-yarn-f32 (q/k/v biases, tied, f32) with the YaRN scaling dropped "
            "(default RoPE, theta 1000)",
            outtype="f32",
            types=["Q8_0", "Q4_0"],
            seed=2002,
        ),
        dict(
            name="qwen3-qknorm",
            about="new Qwen3: hidden 64, intermediate 128, 2 layers, 2 q heads / 1 kv head of head_dim 128 "
            "(q width 256 != hidden), q/k norm, rope_theta 1e6, untied, bf16",
            config=Qwen3Config(
                vocab_size=320,
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=128,
                max_position_embeddings=256,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype=torch.bfloat16,
            outtype="bf16",
            types=["BF16", "Q8_0", "Q4_0"],
            seed=2003,
        ),
        dict(
            name="gemma3",
            about="new Gemma3: hidden 32, 6 layers (5 local + 1 global, as llama.cpp and transformers both "
            "derive from the GGUF), 1 q head / 1 kv head of head_dim 256, sliding_window 8, tied, bf16",
            config=Gemma3TextConfig(
                vocab_size=320,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=6,
                num_attention_heads=1,
                num_key_value_heads=1,
                head_dim=256,
                query_pre_attn_scalar=256,
                max_position_embeddings=256,
                sliding_window=8,
                layer_types=["sliding_attention"] * 5 + ["full_attention"],
                rope_parameters={
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                    "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                },
                attn_logit_softcapping=None,
                final_logit_softcapping=None,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
            ),
            dtype=torch.bfloat16,
            gemma_norms=True,
            embed_std=0.05,
            post_norm_offset=1.0,
            final_norm_offset=3.0,
            outtype="bf16",
            types=["BF16", "Q8_0", "Q4_0", "Q4_K_M"],
            seed=2004,
        ),
        dict(
            name="llama-k",
            about="new Llama for K-quants: hidden 256, intermediate 256, 1 layer, GQA 4/2 of head_dim 64, untied",
            config=LlamaConfig(
                **k_common,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=64,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype=torch.float32,
            outtype="f32",
            types=["Q4_K_M"],
            seed=2005,
        ),
        dict(
            name="qwen2-k",
            about="new Qwen2 for K-quants: hidden 256, intermediate 256, 1 layer, GQA 4/2 of head_dim 64, "
            "q/k/v biases, tied",
            config=Qwen2Config(
                **k_common,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=2,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype=torch.float32,
            outtype="f32",
            types=["Q5_K_M"],
            seed=2006,
        ),
        dict(
            name="qwen3-k",
            about="new Qwen3 for K-quants: hidden 256, intermediate 256, 1 layer, 2 q heads / 1 kv head "
            "of head_dim 128, q/k norm, tied",
            config=Qwen3Config(
                **k_common,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=128,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                bos_token_id=1,
                eos_token_id=2,
            ),
            dtype=torch.float32,
            outtype="f32",
            types=["Q6_K", "Q2_K"],
            seed=2007,
        ),
        dict(
            name="gemma3-k",
            about="new Gemma3 for K-quants: hidden 256, intermediate 256, 1 layer (local), 1 q / 1 kv head of "
            "head_dim 256, sliding_window 8, tied",
            config=Gemma3TextConfig(
                **k_common,
                num_hidden_layers=1,
                num_attention_heads=1,
                num_key_value_heads=1,
                head_dim=256,
                query_pre_attn_scalar=256,
                sliding_window=8,
                layer_types=["sliding_attention"],
                rope_parameters={
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                    "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                },
                attn_logit_softcapping=None,
                final_logit_softcapping=None,
                initializer_range=0.2,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
            ),
            dtype=torch.float32,
            gemma_norms=True,
            embed_std=0.01,
            post_norm_offset=3.0,
            final_norm_offset=3.0,
            outtype="f32",
            types=["Q4_K_M"],
            seed=2008,
        ),
    ]


def stem(model: dict, gguf_type: str) -> str:
    return f"{model['name']}-{gguf_type.lower()}"


def train_tokenizer(vocab: int, workdir: Path) -> Path:
    """A SentencePiece BPE model with exactly `vocab` pieces (0 unk, 1 bos, 2 eos) from the committed text."""
    import sentencepiece as spm

    prefix = workdir / f"sp{vocab}"
    if not prefix.with_suffix(".model").exists():
        spm.SentencePieceTrainer.train(
            input=str(TEXT),
            model_prefix=str(prefix),
            vocab_size=vocab,
            model_type="bpe",
            character_coverage=1.0,
            normalization_rule_name="identity",
            num_threads=1,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            minloglevel=2,
        )
    return prefix.with_suffix(".model")


def hf_folder(model: dict, workdir: Path) -> Path:
    """The Hugging Face folder to convert, with a tokenizer.model added."""
    src = workdir / "hf"
    src.mkdir()
    if "source" in model:
        for f in ("config.json", "model.safetensors"):
            shutil.copy(HF_FIXTURES / model["source"] / f, src / f)
        if model.get("drop_rope_scaling"):
            cfg = json.loads((src / "config.json").read_text())
            theta = cfg["rope_parameters"]["rope_theta"]
            cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
            (src / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    else:
        torch.manual_seed(model["seed"])
        m = AutoModelForCausalLM.from_config(model["config"], attn_implementation="eager", dtype=torch.float32)
        randomise_extras(m, model)
        m.to(model["dtype"]).save_pretrained(src)
    vocab = json.loads((src / "config.json").read_text())["vocab_size"]
    shutil.copy(train_tokenizer(vocab, workdir.parent), src / "tokenizer.model")
    return src


def run(cmd: list[str], **kw) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(cmd)}")


def convert(model: dict, src: Path, workdir: Path) -> Path:
    base = workdir / f"{model['name']}-{model['outtype']}.gguf"
    run(
        [
            sys.executable,
            str(LLAMA_CPP / "convert_hf_to_gguf.py"),
            str(src),
            "--outfile",
            str(base),
            "--outtype",
            model["outtype"],
            "--model-name",
            f"quanta-tiny-{model['name']}",
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return base


def quantize(base: Path, gguf_type: str, out: Path) -> None:
    run([str(QUANTIZE), str(base), str(out), gguf_type, "1"])


@torch.no_grad()
def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids[None, :], use_cache=False).logits[0].float()


@torch.no_grad()
def greedy(model, prompt: torch.Tensor, n: int) -> tuple[torch.Tensor, float, float]:
    seq = prompt.clone()
    toks, min_abs, min_rel = [], math.inf, math.inf
    for _ in range(n):
        last = logits_of(model, seq)[-1]
        top2 = torch.topk(last, 2).values
        margin = float(top2[0] - top2[1])
        min_abs = min(min_abs, margin)
        min_rel = min(min_rel, margin / float(last.max() - last.min()))
        tok = int(torch.argmax(last))
        toks.append(tok)
        seq = torch.cat([seq, torch.tensor([tok], dtype=torch.int64)])
    return torch.tensor(toks, dtype=torch.int64), min_abs, min_rel


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each ggml type the file holds (read with gguf-py, as transformers does)."""
    import gguf

    counts: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


def reference(model: dict, gguf_path: Path, gguf_type: str) -> tuple[dict, dict]:
    ref = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    vocab = ref.config.vocab_size
    tensors, prompts = {}, []
    for i, length in enumerate(PROMPT_LENS):
        for k in range(MAX_PROMPT_TRIES):
            pseed = model["seed"] * 1000 + i * 100 + k
            g = torch.Generator().manual_seed(pseed)
            prompt = torch.randint(SPECIAL_IDS, vocab, (length,), generator=g, dtype=torch.int64)
            toks, min_abs, min_rel = greedy(ref, prompt, N_GREEDY)
            if min_rel >= MIN_REL_MARGIN and len(set(toks.tolist())) >= MIN_DISTINCT:
                break
        else:
            raise RuntimeError(f"{gguf_path.name}: no prompt {i} passes the margin/distinct checks")
        logits = logits_of(ref, prompt)
        assert int(torch.argmax(logits[-1])) == int(toks[0])
        tensors[f"prompt_{i}"] = prompt.contiguous()
        tensors[f"logits_{i}"] = logits.contiguous()
        tensors[f"greedy_{i}"] = toks.contiguous()
        prompts.append(
            dict(
                prompt_seed=pseed,
                min_margin=round(min_abs, 6),
                min_rel_margin=round(min_rel, 6),
                distinct=len(set(toks.tolist())),
                logit_range=round(float(logits.max() - logits.min()), 4),
            )
        )
    info = dict(
        fixture=gguf_path.stem,
        model=model["name"],
        gguf_type=gguf_type,
        tensor_types=tensor_types(gguf_path),
        architecture=type(ref).__name__,
        transformers=transformers.__version__,
        torch=torch.__version__.split("+")[0],
        prompts=prompts,
    )
    return tensors, info


def build(model: dict, wanted: set[str], tmp_root: Path) -> list[dict]:
    todo = [t for t in model["types"] if not wanted or stem(model, t) in wanted]
    if not todo:
        return []
    workdir = tmp_root / model["name"]
    workdir.mkdir()
    src = hf_folder(model, workdir)
    base = convert(model, src, workdir)
    results = []
    for gguf_type in todo:
        name = stem(model, gguf_type)
        out_dir = workdir / name
        out_dir.mkdir()
        path = out_dir / f"{name}.gguf"
        if gguf_type.lower() == model["outtype"]:
            shutil.copy(base, path)
        else:
            quantize(base, gguf_type, path)
        tensors, info = reference(model, path, gguf_type)
        ref_path = out_dir / f"{name}.reference.safetensors"
        save_file(tensors, str(ref_path), metadata={"quanta_fixture": json.dumps(info, sort_keys=True)})
        for f in (path, ref_path):
            os.chmod(f, 0o644)
            os.replace(f, OUT / f.name)
        info["size"] = (OUT / path.name).stat().st_size + (OUT / ref_path.name).stat().st_size
        results.append(info)
    return results


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if not QUANTIZE.exists():
        print(f"llama-quantize not found at {QUANTIZE} (set QUANTA_LLAMA_QUANTIZE)", file=sys.stderr)
        return 2
    all_models = models()
    wanted = set(argv)
    unknown = wanted - {stem(m, t) for m in all_models for t in m["types"]}
    if unknown:
        print(f"unknown fixtures: {sorted(unknown)}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=".gguf-fixtures."))
    try:
        for model in all_models:
            for info in build(model, wanted, tmp_root):
                margins = ", ".join(
                    f"p{i}: min {p['min_margin']:.4f} (rel {p['min_rel_margin']:.4f}, seed {p['prompt_seed']}, "
                    f"distinct {p['distinct']}, range {p['logit_range']:.1f})"
                    for i, p in enumerate(info["prompts"])
                )
                print(f"{info['fixture']:22s} {info['size'] / 1024:7.1f} KiB  {info['tensor_types']}  {margins}")
    finally:
        shutil.rmtree(tmp_root)
    total = sum(f.stat().st_size for f in OUT.iterdir() if f.is_file())
    print(f"total {total / 1024:.1f} KiB in {OUT.relative_to(REPO)}")
    if total > MAX_TOTAL_BYTES:
        print(f"total exceeds {MAX_TOTAL_BYTES} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
