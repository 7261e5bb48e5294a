// The pictures' pieces: where each tensor name lands on the quantization map (GGUF and Hugging
// Face spellings of dense, MoE and shared-expert layers), expert scheme spreads drawn as stripes,
// and what the SVG writer escapes.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>

#include "quanta/report/plot.h"
#include "quanta/report/quant_map.h"
#include "quanta/report/svg.h"

namespace quanta::report {
namespace {

TEST(Report, MapPlacesEveryProjectionSpelling) {
  struct Case {
    const char* name;
    int64_t layer;
    const char* column;
  };
  const Case cases[] = {
      {"token_embd.weight", -1, "embedding"},
      {"model.embed_tokens.weight", -1, "embedding"},
      {"output.weight", -1, "lm_head"},
      {"lm_head.weight", -1, "lm_head"},
      {"output_norm.weight", -1, ""},
      {"model.norm.weight", -1, ""},
      {"blk.0.attn_q.weight", 0, "q"},
      {"blk.11.attn_k.weight", 11, "k"},
      {"blk.2.attn_v.weight", 2, "v"},
      {"blk.2.attn_qkv.weight", 2, "qkv"},
      {"blk.2.attn_output.weight", 2, "o"},
      {"blk.2.attn_q_norm.weight", 2, ""},
      {"blk.2.attn_q.bias", 2, ""},
      {"blk.3.ffn_gate.weight", 3, "gate"},
      {"blk.3.ffn_up.weight", 3, "up"},
      {"blk.3.ffn_down.weight", 3, "down"},
      {"blk.3.ffn_gate_exps.weight", 3, "experts w13"},
      {"blk.3.ffn_up_exps.weight", 3, "experts w13"},
      {"blk.3.ffn_gate_up_exps.weight", 3, "experts w13"},
      {"blk.3.ffn_down_exps.weight", 3, "experts w2"},
      {"blk.3.ffn_gate_inp.weight", 3, "router"},
      {"blk.3.ffn_gate_inp_shexp.weight", 3, "router"},
      {"blk.3.ffn_gate_shexp.weight", 3, "shared w13"},
      {"blk.3.ffn_down_shexp.weight", 3, "shared w2"},
      {"model.layers.7.self_attn.q_proj.weight", 7, "q"},
      {"model.layers.7.self_attn.o_proj.weight", 7, "o"},
      {"model.layers.7.mlp.gate_up_proj.weight", 7, "gate_up"},
      {"model.layers.7.mlp.down_proj.weight", 7, "down"},
      {"model.layers.7.mlp.gate.weight", 7, "router"},
      {"model.layers.7.mlp.experts.*.gate_proj.weight", 7, "experts w13"},
      {"model.layers.7.mlp.experts.*.down_proj.weight", 7, "experts w2"},
      {"model.layers.7.mlp.experts.gate_up_proj", 7, "experts w13"},
      {"model.layers.7.mlp.experts.down_proj", 7, "experts w2"},
      {"model.layers.7.block_sparse_moe.experts.0.w1.weight", 7, "experts w13"},
      {"model.layers.7.block_sparse_moe.experts.0.w2.weight", 7, "experts w2"},
      {"model.layers.7.block_sparse_moe.gate.weight", 7, "router"},
      {"model.layers.7.mlp.shared_expert.up_proj.weight", 7, "shared w13"},
      {"model.layers.7.mlp.shared_expert.down_proj.weight", 7, "shared w2"},
      {"model.layers.7.mlp.shared_expert_gate.weight", 7, "router"},
      {"model.layers.7.post_attention_layernorm.weight", 7, ""},
      {"model.language_model.layers.12.self_attn.v_proj.weight", 12, "v"},
  };
  for (const Case& c : cases) {
    const MapPlace p = map_place(c.name);
    EXPECT_EQ(p.layer, c.layer) << c.name;
    EXPECT_EQ(p.column, c.column) << c.name;
  }
}

int count(const std::string& s, const std::string& re) {
  const std::regex r(re);
  return static_cast<int>(std::distance(std::sregex_iterator(s.begin(), s.end(), r), std::sregex_iterator()));
}

TEST(Report, ExpertSpreadsAreStripesByShareOfParameters) {
  // Experts whose schemes differ: one row per projection, "A xN + B xM" as inspect reports it.
  const std::vector<MapTensor> t = {
      {"model.layers.0.mlp.experts.*.gate_proj.weight", "W4A16 x6 + W8A16 x2", 8000, 2000 * 6 / 8 * 4 + 2000 * 2},
      {"model.layers.0.mlp.experts.*.down_proj.weight", "W8A16", 8000, 8000},
  };
  const std::string svg = quant_map_svg("t", t);
  EXPECT_EQ(count(svg, "class=\"cell\""), 2);
  // The w13 cell: a stripe per scheme, W4A16 first (75% of the parameters).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("data-column=\"experts w13\" data-scheme=\"([^\"]*)\"")));
  EXPECT_EQ(m[1].str(), "W4A16 75% + W8A16 25%");
  EXPECT_EQ(count(svg, "<rect [^>]*data-scheme=\"W4A16\""), 1);
  EXPECT_EQ(count(svg, "<rect [^>]*data-scheme=\"W8A16\""), 2);  // a stripe of w13 and the whole w2 cell
  // The legend splits the tensor's bytes and parameters by the spread.
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("class=\"legend\" data-scheme=\"W4A16\" data-bytes=\"([0-9]+)\"")));
  EXPECT_EQ(m[1].str(), std::to_string((2000 * 6 / 8 * 4 + 2000 * 2) * 6 / 8));
}

TEST(Report, WriterEscapesTextAndAttributes) {
  EXPECT_EQ(xml_escape("a<b>&\"c'\x01"), "a&lt;b&gt;&amp;&quot;c&#39; ");
  Svg svg(10, 10);
  svg.text(1, 2, "<script>alert(1)</script>", 10, "start", {{"data-x", "\"><script>"}});
  const std::string s = svg.str();
  EXPECT_EQ(s.find("<script"), std::string::npos);
  EXPECT_NE(s.find("&lt;script&gt;"), std::string::npos);
  EXPECT_EQ(num(2.50), "2.5");
  EXPECT_EQ(num(-0.0001), "0");
  EXPECT_EQ(num(1234.5678, 3), "1234.568");
  EXPECT_EQ(num(std::nan("")), "0");
}

TEST(Report, LogScaleOnlyForWidePositiveRanges) {
  EXPECT_TRUE(wants_log({35.0, 9274.0}));
  EXPECT_FALSE(wants_log({35.0, 37.0}));
  EXPECT_FALSE(wants_log({0.0, 5.8}));
  EXPECT_FALSE(wants_log({}));
}

}  // namespace
}  // namespace quanta::report
