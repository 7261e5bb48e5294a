// The HTTP server: OpenAI-compatible and SGLang-native endpoints over the scheduler.
//
// Layers: HTTP (cpp-httplib: routing, SSE, limits, auth) -> request schema
// (requests.h: body -> Plan, validation with OpenAI-style errors; here: Plan ->
// GenerateRequest, responses as JSON) -> Generation (text, stop strings) -> Scheduler.
// No JSON below this file's layer.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "quanta/engine/scheduler.h"
#include "quanta/format/hf_config.h"
#include "quanta/server/chat_output.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 30000;
  std::string served_model_name;
  std::string model_path;
  std::string tokenizer_path;
  std::string chat_template;       // where the chat template came from (/get_model_info)
  std::string api_key;             // empty: no authentication
  int max_n = 16;                  // largest `n` accepted
  size_t max_body_bytes = 8 << 20;
  int max_connections = 256;       // generation requests in flight beyond this get 503
  bool log_requests = true;        // one JSON line per generation request on stderr (request_log.h)
  // Connections. httplib serves each on a worker thread; these bound how long one can hold it.
  int listen_backlog = 1024;       // httplib's 5 reset connections under a burst of 300
  int read_timeout_sec = 5;        // per receive, while reading a request
  int write_timeout_sec = 10;      // per send; a client that stops reading a stream is dropped
  int keep_alive_timeout_sec = 5;  // idle time between requests on one connection
  int keep_alive_max = 100;        // requests per connection
  double shutdown_grace_sec = 30;  // drain(): how long requests in flight may run on
  double request_timeout_sec = 0;  // a generation running longer is aborted (0: no limit)
  ToolCallFormat tool_call_parser = ToolCallFormat::kNone;    // how chat answers write tool calls
  ReasoningFormat reasoning_parser = ReasoningFormat::kNone;  // how they write reasoning
  nlohmann::json server_args;      // echoed by /get_server_info
};

// Renders chat messages into a prompt: (messages, tools, add_generation_prompt,
// extra template variables) -> text. Throws quanta::Error for templates it cannot render.
using ChatRenderer = std::function<std::string(const nlohmann::json& messages, const nlohmann::json& tools,
                                               bool add_generation_prompt, const nlohmann::json& extra)>;

class Server {
 public:
  Server(engine::Scheduler& scheduler, const tokenizer::Tokenizer& tok, ChatRenderer chat,
         format::GenerationDefaults defaults, ServerOptions options);
  ~Server();

  // Binds and serves until stop(); returns false (with a message on stderr) if it cannot bind.
  bool run();
  // Stops at once: requests in flight are not waited for.
  void stop();
  // Graceful shutdown (SIGTERM, SIGINT): /health and new generation requests answer 503 at once;
  // requests in flight run on for up to options.shutdown_grace_sec, then end with an error (an
  // error event on a stream). Then the listener stops and run() returns. Blocks until then.
  void drain();
  // The port actually bound (useful with port 0).
  int port() const { return bound_port_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<int> bound_port_{0};
  int listen_fd_ = -1;
};

}  // namespace quanta::server
