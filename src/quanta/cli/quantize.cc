// quanta quantize: a float Hugging Face folder to an msModelSlim-layout folder
// (quant/quantize_writer.h).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "quanta/cli/commands.h"
#include "quanta/quant/quantize_writer.h"

namespace quanta::cli {

namespace {

struct QuantizeCliOptions {
  std::string method;
  std::string in, out;
  std::vector<std::string> ignored;
};

int run_quantize(const QuantizeCliOptions& o) {
  quant::QuantizeReport r = quant::write_quantized_checkpoint(o.in, o.out, {o.method, o.ignored});
  std::printf("%s: %lld Linear weights as %s, %lld tensors FLOAT, %.2f MiB of tensors written to %s\n",
              o.method.c_str(), static_cast<long long>(r.n_quantized), r.scheme.c_str(),
              static_cast<long long>(r.n_float), static_cast<double>(r.bytes_out) / (1 << 20), o.out.c_str());
  return 0;
}

}  // namespace

Command add_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCliOptions>();
  CLI::App* sub = app.add_subcommand("quantize", "Quantize a float Hugging Face folder into an msModelSlim-layout folder.");
  sub->footer(
      "Round to nearest, one layer at a time. Decoder Linear layers (q/k/v/o, gate/up/down) become:\n"
      "  modelslim-w8a8-dynamic  W8A8_DYNAMIC  int8 weights per channel, per-token int8 activations\n"
      "  modelslim-w4a4-dynamic  W4A4_DYNAMIC  int4 weights per channel, per-token int4 activations\n"
      "  mxfp8                   W8A8_MXFP8    MXFP8 E4M3 weights and activations, E8M0 scale per 32\n"
      "  mxfp4                   W4A4_MXFP4    MXFP4 E2M1 weights and activations, E8M0 scale per 32\n"
      "Embeddings, lm_head and norms stay as stored (FLOAT). modelslim-w8a8 (static activation scales)\n"
      "needs calibration and is not available yet.");
  sub->add_option("--method", o->method, "Scheme to write")->required();
  sub->add_option("--ignore", o->ignored, "Keep Linear layers whose name contains this text in float (repeatable)");
  sub->add_option("IN", o->in, "Float Hugging Face folder")->required();
  sub->add_option("OUT", o->out, "Output folder (created)")->required();
  return [o] { return run_quantize(*o); };
}

}  // namespace quanta::cli
