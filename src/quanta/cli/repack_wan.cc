// quanta repack-wan: an msModelSlim Wan2.x transformer (Wan key names) to Diffusers
// names (format/wan_repack.h).
#include <cstdio>
#include <memory>
#include <string>

#include "quanta/cli/commands.h"
#include "quanta/format/wan_repack.h"

namespace quanta::cli {

namespace {

struct RepackWanCliOptions {
  std::string in, out, diffusers_base;
};

int run_repack_wan(const RepackWanCliOptions& o) {
  const format::WanRepackReport r = format::repack_wan(o.in, o.out, {o.diffusers_base});
  for (const auto& t : r.transformers) {
    std::printf("%s -> %s: %lld tensors (%lld renamed) in %d file(s), %.2f MiB; %lld description entries renamed\n",
                t.in_dir.c_str(), t.out_dir.c_str(), static_cast<long long>(t.n_tensors),
                static_cast<long long>(t.n_renamed), t.n_files, static_cast<double>(t.bytes) / (1 << 20),
                static_cast<long long>(t.n_description_entries));
    if (!t.untouched.empty()) {
      std::printf("  %zu tensor(s) no rename rule matched, carried through unchanged:\n", t.untouched.size());
      for (const auto& name : t.untouched) std::printf("    %s\n", name.c_str());
    }
  }
  if (!o.diffusers_base.empty())
    std::printf("%lld file(s) copied from the Diffusers base %s\n", static_cast<long long>(r.n_base_files),
                o.diffusers_base.c_str());
  return 0;
}

}  // namespace

Command add_repack_wan(CLI::App& app) {
  auto o = std::make_shared<RepackWanCliOptions>();
  CLI::App* sub = app.add_subcommand(
      "repack-wan", "Rename an msModelSlim Wan2.x transformer's keys to Diffusers names (SGLang's wan_repack.py).");
  sub->footer(
      "IN is an msModelSlim output: high_noise_model/ + low_noise_model/ (Wan2.2-A14B, written to\n"
      "OUT/transformer and OUT/transformer_2), or one transformer folder (Wan2.2-TI2V-5B, OUT/transformer).\n"
      "Tensors and quant_model_description.json entries are renamed by wan_repack.py's ordered table;\n"
      "bytes, dtypes, shapes and shards are unchanged. Tensors no rule matches are kept and listed.\n"
      "--diffusers-base copies the rest of a Diffusers pipeline folder (all but transformer/,\n"
      "transformer_2/) and its transformer config.json files, so OUT is a whole pipeline.");
  sub->add_option("IN", o->in, "msModelSlim output folder")->required();
  sub->add_option("OUT", o->out, "Output folder (must not exist)")->required();
  sub->add_option("--diffusers-base", o->diffusers_base, "Diffusers pipeline folder to take the other components from");
  return [o] { return run_repack_wan(*o); };
}

}  // namespace quanta::cli
