// The Wan -> Diffusers rename table of SGLang's wan_repack.py (spec checkpoint-formats-1 §5.3),
// rule by rule and in the orders that matter.
#include <gtest/gtest.h>

#include "quanta/format/wan_repack.h"

namespace quanta {
namespace {

using format::wan_to_diffusers_name;

TEST(WanRename, TableIsTheToolsInItsOrder) {
  const auto& rules = format::wan_rename_rules();
  ASSERT_EQ(rules.size(), 35u);
  EXPECT_EQ(rules.front().first, "time_embedding.0");
  EXPECT_EQ(rules[10], (std::pair<std::string, std::string>{"norm2", "norm__placeholder"}));
  EXPECT_EQ(rules.back(), (std::pair<std::string, std::string>{".div.", "."}));
}

TEST(WanRename, SideTensorsTravelWithTheirLayer) {
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.self_attn.q.weight_scale"), "blocks.0.attn1.to_q.weight_scale");
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.ffn.0.weight_offset"), "blocks.0.ffn.net.0.proj.weight_offset");
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.cross_attn.o.input_scale"), "blocks.0.attn2.to_out.0.input_scale");
  EXPECT_EQ(wan_to_diffusers_name("blocks.7.self_attn.o.deq_scale"), "blocks.7.attn1.to_out.0.deq_scale");
  EXPECT_EQ(wan_to_diffusers_name("blocks.2.ffn.2.quant_bias"), "blocks.2.ffn.net.2.quant_bias");
}

TEST(WanRename, WrapperSubPathsAreStripped) {
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.ffn.0.linear.weight"), "blocks.0.ffn.net.0.proj.weight");
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.ffn.0.div.mul_scale"), "blocks.0.ffn.net.0.proj.mul_scale");
  // Rule 34 needs a dot after `linear`, so linear_1 / linear_2 survive.
  EXPECT_EQ(wan_to_diffusers_name("time_embedding.0.weight"), "condition_embedder.time_embedder.linear_1.weight");
  EXPECT_EQ(wan_to_diffusers_name("text_embedding.2.bias"), "condition_embedder.text_embedder.linear_2.bias");
}

TEST(WanRename, BlockNormsSwapButTheImageEmbedderNormDoesNot) {
  EXPECT_EQ(wan_to_diffusers_name("blocks.3.norm3.weight"), "blocks.3.norm2.weight");
  EXPECT_EQ(wan_to_diffusers_name("blocks.3.norm2.weight"), "blocks.3.norm3.weight");
  EXPECT_EQ(wan_to_diffusers_name("img_emb.proj.4.weight"), "condition_embedder.image_embedder.norm2.weight");
  EXPECT_EQ(wan_to_diffusers_name("img_emb.proj.0.bias"), "condition_embedder.image_embedder.norm1.bias");
}

TEST(WanRename, HeadAndModulation) {
  EXPECT_EQ(wan_to_diffusers_name("head.modulation"), "scale_shift_table");
  EXPECT_EQ(wan_to_diffusers_name("blocks.1.modulation"), "blocks.1.scale_shift_table");
  EXPECT_EQ(wan_to_diffusers_name("head.head.weight"), "proj_out.weight");
  EXPECT_EQ(wan_to_diffusers_name("time_projection.1.weight"), "condition_embedder.time_proj.weight");
}

TEST(WanRename, ImageKeysGoThroughTwoRules) {
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.cross_attn.k_img.weight"), "blocks.0.attn2.add_k_proj.weight");
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.cross_attn.v_img.weight_scale"), "blocks.0.attn2.add_v_proj.weight_scale");
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.cross_attn.norm_k_img.weight"), "blocks.0.attn2.norm_added_k.weight");
  EXPECT_EQ(wan_to_diffusers_name("blocks.0.self_attn.norm_q.weight"), "blocks.0.attn1.norm_q.weight");
  EXPECT_EQ(wan_to_diffusers_name("img_emb.emb_pos"), "condition_embedder.image_embedder.pos_embed");
}

TEST(WanRename, EveryOccurrenceAndUnknownNamesUnchanged) {
  EXPECT_EQ(wan_to_diffusers_name("x.ffn.0.y.ffn.0"), "x.ffn.net.0.proj.y.ffn.net.0.proj");
  EXPECT_EQ(wan_to_diffusers_name("patch_embedding.weight"), "patch_embedding.weight");
  EXPECT_EQ(wan_to_diffusers_name("quarot.global_rotation"), "quarot.global_rotation");
  EXPECT_EQ(wan_to_diffusers_name(""), "");
}

}  // namespace
}  // namespace quanta
