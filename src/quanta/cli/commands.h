// Subcommands of the `quanta` binary. Each registers its options on the CLI11
// app and returns the function that runs it (returning the exit code).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace quanta::cli {

using Command = std::function<int()>;

Command add_generate(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_detokenize(CLI::App& app);
Command add_chat_template(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_inspect(CLI::App& app);
Command add_perplexity(CLI::App& app);
Command add_quantize(CLI::App& app);
Command add_repack_wan(CLI::App& app);
Command add_report(CLI::App& app);

}  // namespace quanta::cli
