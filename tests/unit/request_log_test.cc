// The request log line's counts when a request ends before every choice reported.
#include "quanta/server/request_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "quanta/server/generation.h"

namespace quanta::server {
namespace {

TEST(RequestLog, PromptTokensComeFromAnyChoiceUntilTheFirstReports) {
  RequestLog log;
  log.set_choices(4);
  Delta d;
  d.prompt_tokens = 7;
  d.completion_tokens = 1;
  d.tokens = {42};
  log.on_delta(2, d);  // the client hangs up after choice 2's first event
  log.abort_unfinished("the client disconnected");
  const auto j = nlohmann::json::parse(log.line(RequestLog::Clock::now()));
  EXPECT_EQ(j["n"], 4);
  EXPECT_EQ(j["prompt_tokens"], 7);
  EXPECT_EQ(j["completion_tokens"], 1);
  EXPECT_EQ(j["finish_reason"], "abort");
  // Choice 0's counts win once it reports.
  d.prompt_tokens = 9;
  d.cached_tokens = 3;
  log.on_delta(0, d);
  EXPECT_EQ(nlohmann::json::parse(log.line(RequestLog::Clock::now()))["cached_tokens"], 3);
}

}  // namespace
}  // namespace quanta::server
