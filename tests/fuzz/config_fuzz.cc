// libFuzzer target for the JSON configs a model folder carries.
//
// The first input byte picks what the rest is:
//   0: config.json (parse_model_config);
//   1: generation_config.json (parse_generation_config);
//   2: msModelSlim's quant_model_description.json (parse_quant_description);
//   3: an AWQ / GPTQ / AutoRound / compressed-tensors `quantization_config` object, resolved for
//      a dense, an attention, an expert and an lm_head layer (regex `re:` targets and extra_config
//      patterns included: a hostile pattern must be refused, not blow the stack);
//   4: config.json in a folder, through decide_method and HfQuantConfig::load.
// Bad input must end in quanta::Error, never in a crash, a sanitizer report or another exception.
//
// Build and run: tests/fuzz/run.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/format/hf_config.h"
#include "quanta/quant/hf_quant_config.h"
#include "quanta/quant/resolver.h"

namespace {

const std::string& scratch() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/quanta-fuzz-cfg-XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (!d) std::abort();
    return std::string(d);
  }();
  return dir;
}

constexpr const char* kPrefixes[] = {"model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj",
                                     "model.layers.2.mlp.experts.7.gate_proj", "lm_head"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t sink = 0;
  try {
    switch (data[0] % 5) {
      case 0: {
        const auto c = quanta::format::parse_model_config(text, "config.json");
        sink += c.architecture.size() + static_cast<size_t>(c.n_layers);
        break;
      }
      case 1: sink += quanta::format::parse_generation_config(text, "generation_config.json").eos_token_ids.size(); break;
      case 2: sink += quanta::quant::parse_quant_description(text, "quant_model_description.json").entries.size(); break;
      case 3: {
        const auto qc = quanta::parse_json<nlohmann::ordered_json>(text, {.file = "config.json"});
        const quanta::quant::HfQuantConfig cfg(qc, "config.json");
        for (const char* p : kPrefixes) {
          try {
            sink += cfg.resolve(p).rule.size();
          } catch (const quanta::Error&) {
          }
        }
        break;
      }
      default: {
        const std::string dir = scratch();
        {
          std::ofstream f(dir + "/config.json", std::ios::trunc);
          f << text;
        }
        sink += quanta::quant::decide_method(dir).method.size();
        if (auto cfg = quanta::quant::HfQuantConfig::load(dir))
          for (const char* p : kPrefixes) {
            try {
              sink += cfg->resolve(p).rule.size();
            } catch (const quanta::Error&) {
            }
          }
        break;
      }
    }
  } catch (const quanta::Error&) {
    // Bad input, reported as it should be.
  }
  if (sink == 0xFFFFFFFF) return 1;
  return 0;
}
