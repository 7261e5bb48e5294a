#!/usr/bin/env bash
# Builds the chat-template fuzz target with libFuzzer, ASan and UBSan (clang 14) and runs it,
# seeded with the committed corpus and, when ../shared is there, the real chat templates.
#   tests/fuzz/run_chat_template_fuzz.sh [seconds (default 180)] [extra libFuzzer flags...]
# New inputs go to a scratch corpus. To refresh the committed corpus, fuzz from it alone (the
# shared templates are not to be copied in) and keep a small edge-covering set:
#   /tmp/quanta-fuzz/chat_template_fuzz -set_cover_merge=1 -use_counters=0 -max_len=2048 \
#     tests/fuzz/corpus/chat_template /tmp/quanta-fuzz/ct_corpus
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-180}"; shift || true
out=/tmp/quanta-fuzz
mkdir -p "$out/ct_corpus"
clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Isrc src/quanta/core/error.cc src/quanta/tokenizer/chat_template.cc src/quanta/tokenizer/jinja_*.cc \
  tests/fuzz/chat_template_fuzz.cc -lutf8proc -o "$out/chat_template_fuzz"
seeds=(tests/fuzz/corpus/chat_template)
[ -d ../shared/data/chat-templates ] && seeds+=(../shared/data/chat-templates)
"$out/chat_template_fuzz" -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 -timeout=10 \
  -dict=tests/fuzz/chat_template.dict -artifact_prefix="$out/" "$@" "$out/ct_corpus" "${seeds[@]}"
