// Helpers shared by the test executables.
#pragma once

#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace quanta::test {

// Wall-clock bounds of hang checks stretch under the sanitizer build (scripts/sanitize.sh), which
// runs several times slower; they bound hangs, not speed.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr double kTimeScale = 8.0;
#else
inline constexpr double kTimeScale = 1.0;
#endif

// Path of a file relative to the repository root.
std::string source_path(const std::string& relative);
// Path of the shared data folder (../shared/data next to the checkout), "" if absent.
std::string shared_data_path();

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the quanta binary with the given arguments (no shell), captures its output.
RunResult run_quanta(const std::vector<std::string>& args, const std::string& stdin_text = "",
                     const std::vector<std::string>& env = {});

// A fresh empty temporary directory, removed at process exit.
std::string temp_dir();

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);

// A safetensors file as its JSON header and its data bytes, to edit and write back.
struct Safetensors {
  nlohmann::json header;
  std::string data;
};
Safetensors read_st(const std::string& path);
// header_len_override: a wrong header length to write (0: the real one).
void write_st(const std::string& path, const Safetensors& st, uint64_t header_len_override = 0);
// Edits dir/model.safetensors in place.
void edit_st(const std::string& dir, const std::function<void(Safetensors&)>& edit);

// Runs fn and expects a quanta::Error whose text contains every needle.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> needles);

// Runs `quanta generate` on dir and checks: exit code 1 (not a signal), one
// "quanta: error:" line on stderr, containing every expected fragment.
void expect_one_error(const std::string& dir, const std::vector<std::string>& fragments);

}  // namespace quanta::test
