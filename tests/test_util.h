// Helpers shared by the test executables.
#pragma once

#include <string>
#include <vector>

namespace quanta::test {

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

}  // namespace quanta::test
