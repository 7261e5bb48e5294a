"""A long multilingual text for the tokenizer benchmark (deterministic).

Sentences drawn from the fixture generator's fragments (Latin scripts, CJK,
Arabic, Devanagari, Cyrillic, code, emoji, numbers), joined into paragraphs.
Usage: python make_text.py OUT_FILE [MEGABYTES]
"""
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import make_tokenizer_fixtures as fx  # noqa: E402

rng = random.Random(7)
target = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
words = []
for group in (fx.LATIN, fx.CJK, fx.OTHER_SCRIPTS, fx.CODE, fx.EMOJI, fx.DIGITS):
    for frag in group:
        words.extend(frag.split() if " " in frag else [frag])
parts, size = [], 0
while size < target * 1e6:
    sentence = " ".join(rng.choice(words) for _ in range(rng.randint(5, 25)))
    sentence += rng.choice([". ", "! ", "? ", ".\n", "\n\n", "; "])
    parts.append(sentence)
    size += len(sentence.encode())
Path(sys.argv[1]).write_text("".join(parts), encoding="utf-8")
