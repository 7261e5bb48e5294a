// quanta: inference and serving engine for quantized models on the CPU.
#include <cstdio>
#include <map>
#include <string>

#include "quanta/cli/commands.h"
#include "quanta/core/error.h"
#include "quanta/dist/comm.h"
#include "quanta/kernels/kernels.h"

namespace {

// The version, and the kernel tier this CPU gets with the features that decided it.
std::string version_text() {
  namespace k = quanta::kernels;
  std::string tier;
  try {
    tier = k::isa_name(k::active_isa());
  } catch (const quanta::Error& e) {
    tier = std::string("(") + e.what() + ")";
  }
  return std::string("quanta 0.1.0\nkernel tier: ") + tier + " (best on this CPU: " + k::isa_name(k::host_isa()) +
         ")\nCPU features: " + k::cpu_features_string();
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun (tensor parallelism), join the MPI world before anything else.
  try {
    quanta::dist::init(argc, argv);
  } catch (const quanta::Error& e) {
    std::fprintf(stderr, "quanta: error: %s\n", e.what());
    return 1;
  }
  CLI::App app{"quanta: runs already-quantized language models fast on the CPU."};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text);
  app.footer("Environment: QUANTA_ISA=scalar|avx2|avx512|amx forces a lower CPU code path than the best one the CPU runs.");

  std::map<CLI::App*, quanta::cli::Command> commands;
  auto add = [&](quanta::cli::Command (*adder)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    quanta::cli::Command cmd = adder(app);
    commands[app.get_subcommands({})[before]] = std::move(cmd);
  };
  add(quanta::cli::add_generate);
  add(quanta::cli::add_bench);
  add(quanta::cli::add_tokenize);
  add(quanta::cli::add_detokenize);
  add(quanta::cli::add_chat_template);
  add(quanta::cli::add_serve);
  add(quanta::cli::add_inspect);
  add(quanta::cli::add_perplexity);
  add(quanta::cli::add_quantize);
  add(quanta::cli::add_repack_wan);
  add(quanta::cli::add_report);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // Under tensor parallelism the other ranks say which they are.
  const std::string who = quanta::dist::world().rank() == 0 ? "quanta" : "quanta rank " + std::to_string(quanta::dist::world().rank());
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const quanta::Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", who.c_str(), e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of memory\n", who.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", who.c_str(), e.what());
  }
  // A failed rank takes the job down: the others may be waiting for it in a collective.
  if (quanta::dist::world().size() > 1) quanta::dist::abort_job(1);
  return 1;
}
