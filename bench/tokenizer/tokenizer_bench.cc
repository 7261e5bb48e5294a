// Encode throughput of quanta's tokenizer: MB/s of UTF-8 text, single thread.
// Usage: tokenizer_bench TOKENIZER TEXT_FILE [REPEATS] [whole|lines]
// ("lines" encodes each line on its own; default: the whole text in one call)
// Prints one line: "quanta <tokens> tokens <MB/s> MB/s" (best of REPEATS runs,
// after a warm-up run that fills the word cache, as the Python side does).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "quanta/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER TEXT_FILE [REPEATS]\n", argv[0]);
    return 2;
  }
  int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  auto tok = quanta::tokenizer::Tokenizer::load(argv[1]);
  std::vector<std::string_view> units;
  if (argc > 4 && std::string(argv[4]) == "lines") {
    for (size_t pos = 0; pos < text.size();) {
      size_t nl = text.find('\n', pos);
      size_t end = nl == std::string::npos ? text.size() : nl + 1;
      units.emplace_back(text.data() + pos, end - pos);
      pos = end;
    }
  } else {
    units.emplace_back(text);
  }
  auto run = [&] {
    size_t count = 0;
    for (std::string_view u : units) count += tok.encode(u, false).size();
    return count;
  };
  size_t n = run();  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    n = run();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s < best) best = s;
  }
  std::printf("quanta %zu tokens %.2f MB/s\n", n, text.size() / 1e6 / best);
  return 0;
}
