// libFuzzer target for the chat answer parsers (reasoning and tool calls; server/chat_output).
//
// Byte 0 picks the reasoning format, byte 1 the tool-call format, bytes 2-3 where the text is cut;
// the rest is the generated text. It is parsed whole and in two pieces at the cut, and again in
// pieces of 1..4 bytes: the parts must agree (a stream must give what the whole text gives), and
// nothing may crash, read out of bounds or throw.
//
// Build and run: tests/fuzz/run.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "quanta/server/chat_output.h"

namespace {

using quanta::server::ChatOutputParser;
using quanta::server::ChatParts;
using quanta::server::ReasoningFormat;
using quanta::server::ToolCallFormat;

struct Whole {
  std::string reasoning, content, calls;
  bool operator==(const Whole&) const = default;
};

Whole run(ChatOutputParser p, const std::vector<std::string_view>& pieces) {
  Whole w;
  auto add = [&](const ChatParts& d) {
    w.reasoning += d.reasoning;
    w.content += d.content;
    for (const auto& c : d.calls) w.calls += c.name + '\0' + c.arguments + '\0';
  };
  for (auto piece : pieces) add(p.feed(piece));
  add(p.finish());
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const auto reasoning = static_cast<ReasoningFormat>(data[0] % 4);
  const auto tools = static_cast<ToolCallFormat>(data[1] % 5);
  const std::string_view text(reinterpret_cast<const char*>(data) + 4, size - 4);
  const size_t cut = (static_cast<size_t>(data[2]) | static_cast<size_t>(data[3]) << 8) % (text.size() + 1);
  const ChatOutputParser fresh(reasoning, tools);
  const Whole whole = run(fresh, {text});
  if (!(run(fresh, {text.substr(0, cut), text.substr(cut)}) == whole)) __builtin_trap();
  std::vector<std::string_view> small;
  for (size_t i = 0, k = 0; i < text.size(); i += 1 + (k++ % 4)) small.push_back(text.substr(i, 1 + (k % 4)));
  if (!(run(fresh, small) == whole)) __builtin_trap();
  return 0;
}
