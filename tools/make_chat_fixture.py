#!/usr/bin/env python3
"""Build the tiny chat model fixture for the server end-to-end tests: tests/e2e/fixtures/tiny-chat/.

A REAL (if random) chat model, made with the reference tools:

  (a) a byte-level BPE tokenizer trained with the `tokenizers` library on the small public-domain
      English text embedded below (Aesop's fables, retold), in the Qwen2 shape that quanta's
      tokenizer is tested on: NFC normalizer, the Qwen2 split regex then ByteLevel (no regex),
      ByteLevel decoder, no BOS. 509 trained tokens (256 byte symbols + 253 merges), then the
      special tokens <|endoftext|> (509), <|im_start|> (510), <|im_end|> (511): vocab 512;
  (b) wrapped as a transformers fast tokenizer and saved (tokenizer.json, tokenizer_config.json)
      with a small ChatML chat template of our own (in tokenizer_config.json, not a .jinja file),
      eos_token <|im_end|>, pad_token <|endoftext|>;
  (c) a tiny random Qwen3ForCausalLM (hidden 64, intermediate 128, 2 layers, 4 q / 2 kv heads,
      head_dim 16, vocab 512, untied lm_head, float32, "peaky" init: initializer_range 0.2 and norm
      weights 1 + N(0, 0.2) as in tools/make_hf_fixtures.py) with generation_config.json
      (eos = <|im_end|>, pad = <|endoftext|>, no sampling defaults);
  (d) reference.json: for a few plain-text completion prompts and a few chat message lists, the
      prompt ids (tokenizer(text) / apply_chat_template(..., add_generation_prompt=True,
      tokenize=True)) and the greedy continuation (32 tokens, EOS ignored, a loop of full forward
      passes with argmax, f32, no KV cache) as ids and as text (tokenizer.decode(ids), with and
      without skip_special_tokens), plus per-token pieces and a stop string that straddles a token
      boundary.

Two choices make the random model usable for text-level tests:
  - Its lm_head rows for "unprintable" tokens (raw bytes >= 0x80, ASCII control bytes except
    '\\n', <|endoftext|> and <|im_start|>) are scaled by 0.05, so greedy runs emit printable ASCII
    only (as a trained English model would): text comparisons are then free of UTF-8 repair.
    <|im_end|> keeps a normal row (scaled up a little), so some chat continuation stops at EOS.
  - Each prompt slot has a deterministic pool of candidate prompts drawn from the text; the first
    candidate whose greedy run has clear margins (top-1 minus top-2 >= MIN_REL_MARGIN of that step's
    logit range), enough distinct tokens, and only printable tokens is kept. The chat slot
    "chat_eos" additionally requires <|im_end|> among its 32 tokens (not first).

The reference is computed from the folder reloaded from disk (AutoTokenizer, AutoModelForCausalLM),
so it saw exactly the committed bytes.

Run:  /root/.cache/quanta/tools-venv/bin/python tools/make_chat_fixture.py [--moe]
Pins: tools/requirements-chat-fixture.txt. Idempotent: seeds are fixed, the folder is rebuilt
from scratch, and the computation runs single-threaded.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerFast, Qwen3Config  # noqa: E402
from transformers import Qwen3MoeConfig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "e2e" / "fixtures" / "tiny-chat"
# `--moe`: the same tokenizer and attention with Qwen3-MoE blocks (8 experts of ffn 32, top-2
# renormalised) in tests/e2e/fixtures/tiny-chat-moe/, for the server suite on a MoE model.
MOE = "--moe" in sys.argv[1:]
if MOE:
    OUT = OUT.with_name("tiny-chat-moe")

SEED = 4242
TRAINED_VOCAB = 509  # 256 byte symbols + 253 merges
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
N_GREEDY = 32
# top-1 minus top-2 must be at least this share of the step's logit range (max - min), about 0.025
# absolute here: over 1000 times the ~1e-5 by which an f32 engine differs from the reference.
MIN_REL_MARGIN = 2e-3
MIN_DISTINCT = 8
MAX_CANDIDATES = 3000
QUIET_ROW_SCALE = 0.05
EOS_ROW_SCALE = 1.3

QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# A small ChatML template written for this fixture: one <|im_start|>role\n...<|im_end|>\n block per
# message, then "<|im_start|>assistant\n" when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

# Public domain: fables of Aesop, retold in plain English for this fixture.
CORPUS = """\
The Fox and the Grapes. A hungry fox saw some fine bunches of grapes hanging from a vine that was
trained along a high wall. The grapes seemed ready to burst with juice, and the fox jumped for them
again and again, but they were just out of reach. At last he gave up, and walked away with his nose
in the air, saying: "I thought those grapes were ripe, but I see now they are quite sour."
It is easy to scorn what you cannot get.

The Tortoise and the Hare. A hare was making fun of the tortoise one day for being so slow. "Do you
ever get anywhere?" he asked with a mocking laugh. "Yes," replied the tortoise, "and I get there
sooner than you think. I will run you a race and prove it." The hare was much amused at the idea of
running a race with the tortoise, but for the fun of the thing he agreed. So the fox, who had
consented to act as judge, marked the distance and started the runners off. The hare was soon far
out of sight, and to make the tortoise feel very deeply how silly it was for him to try a race with
a hare, he lay down beside the course to take a nap until the tortoise should catch up. The tortoise
meanwhile kept going slowly but steadily, and, after a time, passed the place where the hare was
sleeping. The hare slept on very peacefully; and when at last he did wake up, the tortoise was near
the goal. The hare now ran his swiftest, but he could not overtake the tortoise in time.
Slow and steady wins the race.

The Lion and the Mouse. A lion lay asleep in the forest, his great head resting on his paws. A timid
little mouse came upon him unexpectedly, and in her fright and haste to get away, ran across the
lion's nose. Roused from his nap, the lion laid his huge paw angrily on the tiny creature to kill
her. "Spare me!" begged the poor mouse. "Please let me go and some day I will surely repay you."
The lion was much amused to think that a mouse could ever help him. But he was generous and finally
let the mouse go. Some days later, while stalking his prey in the forest, the lion was caught in the
toils of a hunter's net. Unable to free himself, he filled the forest with his angry roaring. The
mouse knew the voice and quickly found the lion struggling in the net. Running to one of the great
ropes that bound him, she gnawed it until it parted, and soon the lion was free.
"You laughed when I said I would repay you," said the mouse. "Now you see that even a mouse can
help a lion." A kindness is never wasted.

The Ant and the Grasshopper. In a field one summer's day a grasshopper was hopping about, chirping
and singing to its heart's content. An ant passed by, bearing along with great toil an ear of corn
he was taking to the nest. "Why not come and chat with me," said the grasshopper, "instead of
toiling and moiling in that way?" "I am helping to lay up food for the winter," said the ant, "and
recommend you to do the same." "Why bother about winter?" said the grasshopper; "we have got plenty
of food at present." But the ant went on its way and continued its toil. When the winter came the
grasshopper had no food and found itself dying of hunger, while it saw the ants distributing every
day corn and grain from the stores they had collected in the summer. Then the grasshopper knew:
it is best to prepare for the days of need.

The Boy Who Cried Wolf. A shepherd boy tended his master's sheep near a dark forest not far from the
village. Soon he found life in the pasture very dull. All he could do to amuse himself was to talk
to his dog or play on his shepherd's pipe. One day as he sat watching the sheep and the quiet forest,
and thinking what he would do should he see a wolf, he thought of a plan to amuse himself. He rushed
down toward the village calling out "Wolf! Wolf!" The villagers ran out to meet him, but there was no
wolf at all, and the boy laughed at them. A few days later he tried the same trick, and again the
villagers came running. Then one evening as the sun was setting, a wolf really did spring from the
underbrush and fall upon the sheep. In terror the boy ran toward the village shouting "Wolf! Wolf!"
But though the villagers heard the cry, they did not run to help him as they had before.
"He cannot fool us again," they said. A liar will not be believed, even when he speaks the truth.

The North Wind and the Sun. The north wind and the sun had a quarrel about which of them was the
stronger. While they were disputing with much heat and bluster, a traveler passed along the road
wrapped in a cloak. "Let us agree," said the sun, "that he is the stronger who can strip that
traveler of his cloak." "Very well," growled the north wind, and at once sent a cold, howling blast
against the traveler. With the first gust of wind the ends of the cloak whipped about his body. But
he immediately wrapped it closely around him, and the harder the wind blew, the tighter he held it.
Then the sun came out and shone with all his warmth. The traveler felt the genial warmth, and as the
sun shone brighter and brighter, he sat down, overcome with the heat, and cast his cloak on the
ground. Gentleness and kind persuasion win where force and bluster fail.

Questions and answers. What is the moral of the story? Who won the race, and why? How many sheep did
the boy keep? He kept 12 sheep, then 20, then 31. The race was 100 steps long and took 45 minutes.
Tell me a short story about a fox. Write one sentence about the sun. Please answer in a few words.
Thank you! You are welcome. Hello, how are you today? I am well, thank you for asking.
"""

# Prompt slots. Completion slots draw candidate prompts as spans of the corpus; chat slots build
# message lists from corpus sentences. `min_len` is in tokens (after the chat template for chats).
COMPLETION_SLOTS = [
    dict(name="short", words=(3, 6)),
    dict(name="medium", words=(10, 16)),
    dict(name="long", words=(40, 50), min_len=48),  # longer than 2 KV blocks of 16: prefix-cache tests
]
CHAT_SLOTS = [
    dict(name="chat_user", kind="user"),
    dict(name="chat_system", kind="system"),
    dict(name="chat_multiturn", kind="multiturn"),
    dict(name="chat_eos", kind="user", needs_eos=True),
]


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = None
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS.split("\n\n"), trainer=trainer)
    assert tok.get_vocab_size() == TRAINED_VOCAB, tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    assert tok.get_vocab_size() == TRAINED_VOCAB + len(SPECIALS)
    return tok


def corpus_words() -> list[str]:
    return CORPUS.split()


def corpus_sentences() -> list[str]:
    text = " ".join(CORPUS.split())
    out, cur = [], ""
    for ch in text:
        cur += ch
        if ch in ".?!" and len(cur.strip()) > 12:
            out.append(cur.strip())
            cur = ""
    return [s for s in out if 12 <= len(s) <= 120]


def completion_candidates(slot: dict, gen: torch.Generator):
    words = corpus_words()
    lo, hi = slot["words"]
    for _ in range(MAX_CANDIDATES):
        n = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        start = int(torch.randint(0, len(words) - n, (1,), generator=gen))
        yield " ".join(words[start : start + n])


def chat_candidates(slot: dict, gen: torch.Generator):
    sents = corpus_sentences()

    def pick() -> str:
        return sents[int(torch.randint(0, len(sents), (1,), generator=gen))]

    systems = ["You are a helpful assistant.", "You tell short fables.", "Answer in a few words."]
    for _ in range(MAX_CANDIDATES):
        if slot["kind"] == "user":
            yield [{"role": "user", "content": pick()}]
        elif slot["kind"] == "system":
            sysmsg = systems[int(torch.randint(0, len(systems), (1,), generator=gen))]
            yield [{"role": "system", "content": sysmsg}, {"role": "user", "content": pick()}]
        else:
            yield [
                {"role": "user", "content": pick()},
                {"role": "assistant", "content": pick()},
                {"role": "user", "content": pick()},
            ]


@torch.no_grad()
def greedy_search(model, prompt: list[int], n: int, ok_token) -> list[int] | None:
    """Fast screening with the KV cache: the n greedy tokens, or None as soon as a step has a small
    margin or a token that ok_token refuses. The kept candidate is re-run by greedy() below."""
    out = model(input_ids=torch.tensor([prompt], dtype=torch.int64), use_cache=True)
    toks = []
    for _ in range(n):
        last = out.logits[0, -1].float()
        top2 = torch.topk(last, 2).values
        if float(top2[0] - top2[1]) < MIN_REL_MARGIN * float(last.max() - last.min()):
            return None
        tok = int(torch.argmax(last))
        if not ok_token(tok):
            return None
        toks.append(tok)
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=out.past_key_values, use_cache=True)
    return toks


@torch.no_grad()
def greedy(model, prompt: list[int], n: int) -> tuple[list[int], float, float]:
    """n greedy tokens by full forward passes (no cache, EOS ignored); tokens, min abs and rel margin."""
    seq = torch.tensor(prompt, dtype=torch.int64)
    toks, min_abs, min_rel = [], math.inf, math.inf
    for _ in range(n):
        last = model(input_ids=seq[None, :], use_cache=False).logits[0, -1].float()
        top2 = torch.topk(last, 2).values
        margin = float(top2[0] - top2[1])
        min_abs = min(min_abs, margin)
        min_rel = min(min_rel, margin / float(last.max() - last.min()))
        tok = int(torch.argmax(last))
        toks.append(tok)
        seq = torch.cat([seq, torch.tensor([tok], dtype=torch.int64)])
    return toks, min_abs, min_rel


def quiet_ids(tok: Tokenizer) -> list[int]:
    """Tokens a trained English model would hardly emit: non-ASCII or control bytes, and specials but EOS."""
    out = []
    for i in range(tok.get_vocab_size()):
        piece = tok.id_to_token(i)
        if piece in SPECIALS:
            if piece != "<|im_end|>":
                out.append(i)
            continue
        raw = tok.decode([i]).encode("utf-8", errors="surrogatepass")
        if any(b >= 0x80 or (b < 0x20 and b != 0x0A) or b == 0x7F for b in raw) or "\ufffd" in tok.decode([i]):
            out.append(i)
    return out


def build() -> dict:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-chat.", dir=OUT.parent))
    try:
        # (a) + (b): tokenizer
        raw = train_tokenizer()
        fast = PreTrainedTokenizerFast(
            tokenizer_object=raw,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            bos_token=None,
            unk_token=None,
            model_max_length=1024,
            clean_up_tokenization_spaces=False,
        )
        fast.chat_template = CHAT_TEMPLATE
        fast.save_pretrained(tmp, save_jinja_files=False)
        eos_id = raw.token_to_id("<|im_end|>")
        pad_id = raw.token_to_id("<|endoftext|>")
        vocab = raw.get_vocab_size()

        # (c): model
        torch.manual_seed(SEED)
        moe = dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True) if MOE else {}
        config = (Qwen3MoeConfig if MOE else Qwen3Config)(
            **moe,
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=1024,
            initializer_range=0.2,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            bos_token_id=None,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
        quiet = quiet_ids(raw)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name and name.endswith(".weight"):
                    p.copy_(torch.randn_like(p) * 0.2 + 1.0)
            head = model.get_output_embeddings().weight
            head[quiet] *= QUIET_ROW_SCALE
            head[eos_id] *= EOS_ROW_SCALE
        model.eval().save_pretrained(tmp)
        GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id).save_pretrained(tmp)
        del model

        # (d): reference, from the folder as saved
        tk = AutoTokenizer.from_pretrained(tmp)
        ref = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
        assert len(tk) == vocab and tk.eos_token_id == eos_id
        quiet_set = set(quiet)

        def search(prompt: list[int], needs_eos: bool):
            """The reference greedy run of `prompt` if it passes every check, else None."""
            toks = greedy_search(ref, prompt, N_GREEDY, lambda t: t not in quiet_set)
            if toks is None or len(set(toks)) < MIN_DISTINCT:
                return None
            if needs_eos and not (eos_id in toks and toks.index(eos_id) >= 2):
                return None
            full, mabs, mrel = greedy(ref, prompt, N_GREEDY)  # the reference proper: full forwards
            assert full == toks, (full, toks)
            if mrel < MIN_REL_MARGIN:
                return None
            return full, mabs, mrel

        def record(name: str, kind: str, prompt_ids: list[int], toks: list[int], min_abs, min_rel, extra: dict):
            text = tk.decode(toks)
            text_skip = tk.decode(toks, skip_special_tokens=True)
            e = {
                "name": name,
                "kind": kind,
                **extra,
                "prompt_ids": prompt_ids,
                "greedy_ids": toks,
                "greedy_text": text,
                "greedy_text_skip_special": text_skip,
                "greedy_pieces": [tk.decode([t]) for t in toks],
                "min_margin": round(min_abs, 6),
                "min_rel_margin": round(min_rel, 6),
            }
            if eos_id in toks:
                k = toks.index(eos_id)
                e["eos_at"] = k
                e["until_eos_ids"] = toks[:k]
                e["until_eos_text"] = tk.decode(toks[:k])
            return e

        cases = []
        gen = torch.Generator().manual_seed(SEED)
        for slot in COMPLETION_SLOTS:
            for k, text in enumerate(completion_candidates(slot, gen)):
                ids = tk(text)["input_ids"]
                if len(ids) < slot.get("min_len", 0):
                    continue
                found = search(ids, False)
                if found:
                    toks, mabs, mrel = found
                    cases.append(record(slot["name"], "completion", ids, toks, mabs, mrel, {"prompt": text}))
                    break
            else:
                raise RuntimeError(f"no candidate passes for {slot['name']}")
        for slot in CHAT_SLOTS:
            for k, msgs in enumerate(chat_candidates(slot, gen)):
                ids = tk.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
                if not isinstance(ids, list) or (ids and not isinstance(ids[0], int)):
                    raise RuntimeError(f"unexpected apply_chat_template result {type(ids)}")
                found = search(ids, slot.get("needs_eos", False))
                if found:
                    toks, mabs, mrel = found
                    rendered = tk.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
                    assert tk(rendered)["input_ids"] == ids
                    cases.append(
                        record(slot["name"], "chat", ids, toks, mabs, mrel, {"messages": msgs, "rendered": rendered})
                    )
                    break
            else:
                raise RuntimeError(f"no candidate passes for {slot['name']}")

        # A stop string that straddles a token boundary, for the 'medium' completion: the last two
        # characters of one piece and the first two of the next (both non-blank), in the middle.
        stop_probe = None
        med = next(c for c in cases if c["name"] == "medium")
        pieces = med["greedy_pieces"]
        for i in range(8, len(pieces) - 4):
            a, b = pieces[i], pieces[i + 1]
            if len(a) >= 2 and len(b) >= 2:
                stop = a[-2:] + b[:2]
                if stop.strip() != stop or not stop.strip():
                    continue
                at = med["greedy_text"].find(stop)
                end_of_a = len("".join(pieces[: i + 1]))
                if at != end_of_a - 2:  # its first occurrence must be the straddling one
                    continue
                stop_probe = {"case": "medium", "stop": stop, "expected_text": med["greedy_text"][:at],
                              "token_index": i}
                break
        assert stop_probe is not None, "no straddling stop string found"

        reference = {
            "about": "Generated by tools/make_chat_fixture.py. Do not edit. Greedy = 32 tokens, EOS ignored, "
            "full forward passes + argmax in f32 (transformers, eager attention). Texts are "
            "tokenizer.decode(ids) (skip_special_tokens=False) and with skip_special_tokens=True.",
            "versions": {
                "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__,
                "torch": torch.__version__.split("+")[0],
            },
            "vocab_size": vocab,
            "special_ids": {s: raw.token_to_id(s) for s in SPECIALS},
            "eos_token_id": eos_id,
            "max_position_embeddings": config.max_position_embeddings,
            "n_greedy": N_GREEDY,
            "min_rel_margin_required": MIN_REL_MARGIN,
            "cases": cases,
            "stop_probe": stop_probe,
        }
        (tmp / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")

        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if OUT.exists():
            shutil.rmtree(OUT)
        os.replace(tmp, OUT)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return reference


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    ref = build()
    size = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"{OUT.relative_to(REPO)}: {size / 1024:.1f} KiB, files {sorted(f.name for f in OUT.iterdir())}")
    print(f"vocab {ref['vocab_size']}, specials {ref['special_ids']}")
    for c in ref["cases"]:
        eos = f", eos at {c['eos_at']}" if "eos_at" in c else ""
        print(
            f"  {c['name']:15s} prompt {len(c['prompt_ids']):3d} tok  min margin {c['min_margin']:.4f} "
            f"(rel {c['min_rel_margin']:.4f}), distinct {len(set(c['greedy_ids']))}{eos}: {c['greedy_text']!r}"
        )
    print(f"  stop probe: {ref['stop_probe']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
