// quanta serve: the HTTP server, with the command line of SGLang's launch_server.
#include <sys/sysinfo.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "quanta/cli/commands.h"
#include "quanta/cli/quant_options.h"
#include "quanta/dist/comm.h"
#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/core/thread_pool.h"
#include "quanta/engine/loader.h"
#include "quanta/engine/scheduler.h"
#include "quanta/kernels/kernels.h"
#include "quanta/server/server.h"
#include "quanta/tokenizer/builtin_templates.h"
#include "quanta/tokenizer/chat_template.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::cli {

namespace {

struct ServeOptions {
  std::string model_path, tokenizer_path, host = "127.0.0.1", served_model_name, api_key, chat_template,
      device = "cpu", log_level = "info", reasoning_parser, tool_call_parser;
  engine::LoadOptions load;
  int port = 30000;
  double mem_fraction_static = 0.0;
  int64_t context_length = 0, max_total_tokens = 0, chunked_prefill_size = 512;
  int max_running_requests = 64;
  int max_concurrent_requests = 256;
  int threads = 0;
  double shutdown_grace = 30;
  double timeout = 0;
};

// SIGTERM/SIGINT only raise a flag (a handler may do little else); a watcher thread drains.
// A second signal while draining exits at once.
std::atomic<int> g_signals{0};
void on_signal(int) {
  if (g_signals.fetch_add(1) > 0) std::_Exit(1);
}

int run_serve(const ServeOptions& o) {
  if (o.device != "cpu")
    throw Error("quanta runs on the CPU; device '" + o.device + "' is not available here", {.field = "--device"});
  if (o.mem_fraction_static < 0 || o.mem_fraction_static >= 1)
    throw Error("must be in (0, 1)", {.field = "--mem-fraction-static"});
  // SGLang's levels; per-request lines are info.
  const std::vector<std::string> levels = {"debug", "info", "warning", "error", "critical"};
  if (std::find(levels.begin(), levels.end(), o.log_level) == levels.end())
    throw Error("'" + o.log_level + "' is not a log level (debug, info, warning, error, critical)", {.field = "--log-level"});
  // Parser names checked before the model loads (they throw naming the flag).
  if (!o.tool_call_parser.empty()) server::tool_call_format(o.tool_call_parser);
  server::reasoning_format(o.reasoning_parser);
  if (o.max_concurrent_requests < 1) throw Error("must be at least 1", {.field = "--max-concurrent-requests"});
  kernels::active_isa();
  ThreadPool pool(o.threads > 0 ? o.threads : dist::default_threads());

  engine::relaunch_for_tp(o.model_path, o.load);  // --tp-size: refused, or restarted under mpirun, before any output
  if (!engine::is_follower()) std::fprintf(stderr, "quanta: loading %s\n", o.model_path.c_str());
  engine::LoadedModel lm = engine::load_model(o.model_path, {}, o.load);
  if (engine::is_follower()) {
    // Tensor parallelism: rank 0 serves. mpirun passes SIGTERM to every rank; the others
    // leave when rank 0, done draining, destroys its model.
    std::signal(SIGTERM, SIG_IGN);
    std::signal(SIGINT, SIG_IGN);
    lm.model->follow(pool);
    return 0;
  }
  const std::string tok_path = o.tokenizer_path.empty() ? o.model_path : o.tokenizer_path;
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tok_path);
  if (tok.vocab_size() > lm.config.vocab_size)
    throw Error("the tokenizer has " + std::to_string(tok.vocab_size()) + " tokens but the model only " +
                    std::to_string(lm.config.vocab_size), {.file = tok_path});

  // The chat template: --chat-template NAME|FILE, else the model's own, else a built-in for its family.
  const tokenizer::ChosenChatTemplate chosen =
      tokenizer::choose_chat_template(o.chat_template, tok_path, tok, lm.config.architecture);
  auto tmpl = std::make_shared<tokenizer::ChatTemplate>(chosen.source, o.chat_template.empty() ? "chat_template" : o.chat_template);
  std::fprintf(stderr, "quanta: chat template: %s\n", chosen.origin.c_str());
  const bool folder = std::filesystem::is_directory(tok_path);
  server::ChatRenderer chat;
  // bos_token/eos_token as the template sees them: tokenizer_config.json's, or a GGUF's special pieces.
  nlohmann::ordered_json specials = folder ? tokenizer::read_special_tokens(tok_path) : nlohmann::ordered_json::object();
  if (!folder) {
    if (tok.special_ids().bos >= 0) specials["bos_token"] = tok.token_to_piece(tok.special_ids().bos);
    if (tok.special_ids().eos >= 0) specials["eos_token"] = tok.token_to_piece(tok.special_ids().eos);
  }
  chat = [tmpl, specials](const nlohmann::json& messages, const nlohmann::json& tools, bool add_generation_prompt,
                          const nlohmann::json& extra) {
    // As ordered JSON (the template sees keys in request order). The server refused bodies nesting
    // deeper than kMaxJsonDepth, which bounds dump()'s recursion; parse_json checks again.
    using nlohmann::ordered_json;
    tokenizer::ChatInputs in;
    in.messages = parse_json<ordered_json>(messages.dump(), {.field = "messages"});
    if (!tools.is_null()) in.tools = parse_json<ordered_json>(tools.dump(), {.field = "tools"});
    in.add_generation_prompt = add_generation_prompt;
    in.variables = specials;
    const ordered_json extra_vars = parse_json<ordered_json>(extra.dump(), {.field = "chat_template_kwargs"});
    if (extra_vars.is_object()) assign_keys(in.variables, extra_vars);
    return tmpl->render(tokenizer::make_chat_context(in));
  };

  // KV pool: --max-total-tokens, else the share of RAM --mem-fraction-static leaves after the weights.
  const auto& c = lm.config;
  const int64_t block_size = model::DecoderModel::kDefaultBlockSize;
  const int64_t context = o.context_length > 0 ? o.context_length : c.max_position_embeddings;
  const int64_t bytes_per_token = 2 * c.n_layers * c.n_kv_heads * c.d_head * static_cast<int64_t>(sizeof(float));
  int64_t total_tokens = o.max_total_tokens;
  if (total_tokens <= 0) {
    struct sysinfo si {};
    sysinfo(&si);
    const double ram = static_cast<double>(si.totalram) * si.mem_unit;
    const double fraction = o.mem_fraction_static > 0 ? o.mem_fraction_static : 0.8;
    const double kv_bytes = ram * fraction - static_cast<double>(lm.model->weight_bytes());
    if (kv_bytes < static_cast<double>(bytes_per_token * context))
      throw Error("--mem-fraction-static " + std::to_string(fraction) + " leaves no room for one full context (" +
                      std::to_string(context) + " tokens) after the weights", {.field = "--mem-fraction-static"});
    // Enough for every running request at full context, and no more than RAM allows.
    total_tokens = std::min<int64_t>(static_cast<int64_t>(kv_bytes / static_cast<double>(bytes_per_token)),
                                     context * o.max_running_requests);
  }
  if (total_tokens < context)
    throw Error("holds fewer tokens (" + std::to_string(total_tokens) + ") than the context length (" +
                    std::to_string(context) + ")", {.field = "--max-total-tokens"});

  engine::SchedulerOptions so;
  so.block_size = block_size;
  so.kv_blocks = (total_tokens + block_size - 1) / block_size;
  so.max_running_requests = o.max_running_requests;
  so.chunked_prefill_size = o.chunked_prefill_size > 0 ? o.chunked_prefill_size : context;
  so.context_length = context;
  for (int64_t e : lm.generation.eos_token_ids.empty() ? c.eos_token_ids : lm.generation.eos_token_ids)
    so.eos_token_ids.push_back(static_cast<int32_t>(e));
  for (int32_t e : tok.stop_ids())
    if (std::find(so.eos_token_ids.begin(), so.eos_token_ids.end(), e) == so.eos_token_ids.end()) so.eos_token_ids.push_back(e);
  so.sample_vocab = tok.vocab_size();
  engine::Scheduler scheduler(*lm.model, pool, so);
  std::fprintf(stderr, "quanta: KV pool of %lld tokens (%.1f MB), context %lld, %d threads, %s\n",
               static_cast<long long>(so.kv_blocks * block_size),
               static_cast<double>(so.kv_blocks * block_size * bytes_per_token) / 1e6, static_cast<long long>(context),
               pool.size(), kernels::isa_name(kernels::active_isa()));

  server::ServerOptions sopt;
  sopt.host = o.host;
  sopt.port = o.port;
  sopt.model_path = o.model_path;
  sopt.tokenizer_path = tok_path;
  sopt.chat_template = chosen.origin;
  sopt.served_model_name = o.served_model_name.empty() ? o.model_path : o.served_model_name;
  sopt.api_key = o.api_key;
  sopt.max_connections = o.max_concurrent_requests;
  sopt.log_requests = o.log_level == "debug" || o.log_level == "info";
  sopt.server_args = {{"model_path", o.model_path}, {"tokenizer_path", tok_path}, {"host", o.host}, {"port", o.port},
                      {"served_model_name", sopt.served_model_name}, {"context_length", context},
                      {"max_total_tokens", so.kv_blocks * block_size}, {"max_running_requests", o.max_running_requests},
                      {"max_concurrent_requests", o.max_concurrent_requests}, {"log_level", o.log_level},
                      {"chunked_prefill_size", so.chunked_prefill_size}, {"tp_size", o.load.tp_size}, {"device", "cpu"},
                      {"threads", pool.size()}, {"isa", kernels::isa_name(kernels::active_isa())}, {"timeout", o.timeout}};
  sopt.shutdown_grace_sec = o.shutdown_grace;
  sopt.request_timeout_sec = o.timeout;
  // Tool calls in the syntax the chat template teaches, unless --tool-call-parser names one.
  sopt.tool_call_parser = o.tool_call_parser.empty() ? server::detect_tool_call_format(chosen.source)
                                                     : server::tool_call_format(o.tool_call_parser);
  sopt.reasoning_parser = server::reasoning_format(o.reasoning_parser);
  // A harmony template's answers carry their reasoning in the analysis channel.
  if (o.reasoning_parser.empty() && sopt.tool_call_parser == server::ToolCallFormat::kGptOss)
    sopt.reasoning_parser = server::ReasoningFormat::kGptOss;
  sopt.server_args["tool_call_parser"] = server::format_name(sopt.tool_call_parser);
  sopt.server_args["reasoning_parser"] = server::format_name(sopt.reasoning_parser);
  std::fprintf(stderr, "quanta: tool-call parser: %s, reasoning parser: %s\n", server::format_name(sopt.tool_call_parser),
               server::format_name(sopt.reasoning_parser));
  server::Server srv(scheduler, tok, chat, lm.generation, sopt);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  std::atomic<bool> finished{false};
  std::thread watcher([&] {
    while (!finished && g_signals == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (finished) return;
    std::fprintf(stderr, "quanta: shutting down: finishing the requests in flight (up to %g s)\n", o.shutdown_grace);
    srv.drain();
    // A signal that came before run() started listening found nothing to stop: stop it now.
    while (!finished) {
      srv.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  bool ok = srv.run();
  finished = true;
  watcher.join();
  if (ok) std::fprintf(stderr, "quanta: stopped\n");
  return ok ? 0 : 1;
}

// SGLang flags that have no meaning on a CPU: refused with the reason.
struct NotApplicable {
  const char* flag;
  const char* why;
};
constexpr NotApplicable kNotApplicable[] = {
    {"--attention-backend", "quanta has one CPU attention kernel; GPU/NPU attention backends do not apply"},
    {"--sampling-backend", "sampling runs on the CPU"},
    {"--cuda-graph-max-bs", "there are no CUDA graphs on the CPU"},
    {"--disable-cuda-graph", "there are no CUDA graphs on the CPU"},
    {"--enable-torch-compile", "quanta does not use torch"},
    {"--base-gpu-id", "no GPU is used"},
    {"--nccl-port", "no NCCL: tensor parallelism will use MPI"},
    {"--kv-cache-dtype", "the KV cache is f32 for now"},
    {"--trust-remote-code", "quanta runs no model code from checkpoints"},
    {"--dtype", "weights run in their stored dtype; activations are f32"},
};

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

Command add_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* sub = app.add_subcommand("serve", "Serve a model over HTTP (OpenAI and SGLang APIs).");
  sub->footer(
      "Endpoints: /v1/models, /v1/completions, /v1/chat/completions, /generate, /health, /health_generate,\n"
      "/get_model_info, /get_server_info, /flush_cache, /tokenize, /detokenize, /metrics.\n"
      "The model loads before the port opens. KV pool: --max-total-tokens, else what --mem-fraction-static of RAM\n"
      "leaves after the weights (capped at --max-running-requests full contexts).");
  sub->add_option("--model-path", o->model_path, "Model folder")->required();
  sub->add_option("--tokenizer-path", o->tokenizer_path, "Tokenizer folder or GGUF (default: the model path)");
  sub->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  sub->add_option("--port", o->port, "Port to listen on")->capture_default_str();
  sub->add_option("--served-model-name", o->served_model_name, "Model name in the API (default: the model path)");
  sub->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on every endpoint but /health");
  sub->add_option("--chat-template", o->chat_template,
                  "Jinja chat template file, or a built-in: chatml, gemma, llama3, mistral (default: the model's own, else the built-in for its family)");
  sub->add_option("--tool-call-parser", o->tool_call_parser,
                  "Tool-call syntax: qwen25 (hermes), llama3, mistral, none (default: from the chat template)");
  sub->add_option("--reasoning-parser", o->reasoning_parser,
                  "Split <think>...</think> into reasoning_content: qwen3, qwen3-thinking, deepseek-r1 (default: none)");
  sub->add_option("--context-length", o->context_length, "Context length (default: the model's max_position_embeddings)");
  sub->add_option("--max-running-requests", o->max_running_requests, "Requests in the running batch at most")->capture_default_str();
  sub->add_option("--max-total-tokens", o->max_total_tokens, "Tokens the KV pool holds (overrides --mem-fraction-static)");
  sub->add_option("--mem-fraction-static", o->mem_fraction_static, "Share of RAM for weights plus the KV pool (default 0.8)");
  sub->add_option("--chunked-prefill-size", o->chunked_prefill_size, "Prompt tokens per step at most (<= 0: whole prompts)")->capture_default_str();
  add_quantization_options(sub, o->load);
  sub->add_option("--device", o->device, "Device (cpu)")->capture_default_str();
  sub->add_option("--log-level", o->log_level, "Log level (debug, info, warning, error, critical); info logs each request")
      ->capture_default_str();
  sub->add_option("--max-concurrent-requests", o->max_concurrent_requests,
                  "Generation requests in flight (running or queued) at most; more are answered 503")
      ->capture_default_str();
  sub->add_option("--threads", o->threads, "Threads (default: the number of physical cores)");
  sub->add_option("--timeout", o->timeout,
                  "Seconds a generation may run; then it ends with finish_reason abort and what it wrote (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e7));
  sub->add_option("--shutdown-grace", o->shutdown_grace,
                  "On SIGTERM/SIGINT: seconds requests in flight may run on before they end with an error")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  // Unknown flags are collected and answered with the nearest valid one.
  sub->allow_extras();
  return [o, sub] {
    for (const std::string& extra : sub->remaining()) {
      if (extra.rfind("--", 0) != 0) throw Error("unexpected argument '" + extra + "'", {.field = "serve"});
      std::string flag = extra.substr(0, extra.find('='));
      for (const auto& na : kNotApplicable)
        if (flag == na.flag) throw Error(std::string("not supported: ") + na.why, {.field = flag});
      std::string best;
      size_t best_d = SIZE_MAX;
      for (const CLI::Option* opt : sub->get_options()) {
        for (const std::string& name : opt->get_lnames()) {
          size_t d = edit_distance(flag, "--" + name);
          if (d < best_d) best_d = d, best = "--" + name;
        }
      }
      throw Error("unknown option; did you mean '" + best + "'?", {.field = flag});
    }
    return run_serve(*o);
  };
}

}  // namespace quanta::cli
