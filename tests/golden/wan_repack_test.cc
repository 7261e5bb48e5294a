// quanta repack-wan on tests/golden/fixtures/wan-repack (tools/make_wan_repack_fixture.py): a tiny
// diffusers WanTransformer3DModel pair saved msModelSlim-style under Wan-original names, and the
// same tensors under diffusers' own names to compare with, byte for byte.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/format/safetensors.h"
#include "quanta/format/wan_repack.h"
#include "test_util.h"

namespace quanta {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& rel) { return test::source_path("tests/golden/fixtures/wan-repack/" + rel); }

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(test::read_file(path)); }

// Every tensor of OUT/<name> equals expected/<name>.safetensors (name, dtype, shape, bytes), and
// the description equals expected/<name>.description.json.
void expect_same_as_expected(const std::string& out_dir, const std::string& name) {
  const format::SafetensorsCheckpoint got(out_dir + "/" + name);
  const format::SafetensorsFile want(fixture("expected/" + name + ".safetensors"));
  std::set<std::string> got_names, want_names;
  for (const auto& n : got.names()) got_names.insert(n);
  for (const auto& t : want.tensors()) want_names.insert(t.name);
  EXPECT_EQ(got_names, want_names);
  for (const auto& t : want.tensors()) {
    if (!got.has(t.name)) continue;
    const Tensor a = got.get(t.name), b = want.tensor(t.name);
    EXPECT_EQ(a.dtype(), b.dtype()) << t.name;
    ASSERT_EQ(a.shape(), b.shape()) << t.name;
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), b.nbytes()), 0) << t.name;
  }
  EXPECT_EQ(read_json(out_dir + "/" + name + "/quant_model_description.json"),
            read_json(fixture("expected/" + name + ".description.json")));
}

// A writable copy of the low-noise expert (one file, description_w8a8_dynamic.json).
std::string copy_low_noise(const std::string& tmp) {
  const std::string dir = tmp + "/in";
  fs::copy(fixture("msmodelslim/low_noise_model"), dir, fs::copy_options::recursive);
  return dir;
}

TEST(WanRepack, BothExpertsMatchTheDiffusersNamedOriginal) {
  const std::string out = test::temp_dir() + "/out";
  const auto report = format::repack_wan(fixture("msmodelslim"), out);
  ASSERT_EQ(report.transformers.size(), 2u);
  expect_same_as_expected(out, "transformer");
  expect_same_as_expected(out, "transformer_2");
  for (const auto& t : report.transformers) {
    EXPECT_EQ(t.untouched, std::vector<std::string>{"blocks.0.extra_gate.weight"});
    EXPECT_EQ(t.n_tensors, 111);
    EXPECT_EQ(t.n_renamed, 108);  // all but extra_gate and patch_embedding.{weight,bias}
  }
  EXPECT_EQ(report.transformers[0].out_dir, out + "/transformer");
  EXPECT_EQ(report.n_base_files, 0);
  EXPECT_FALSE(fs::exists(out + "/model_index.json"));
}

TEST(WanRepack, DescriptionKeysRenamedAndGlobalKeysUntouched) {
  const std::string out = test::temp_dir() + "/out";
  format::repack_wan(fixture("msmodelslim"), out);
  const auto d = read_json(out + "/transformer/quant_model_description.json");
  EXPECT_EQ(d["blocks.0.attn1.to_q.weight_scale"], "W8A8_DYNAMIC");
  EXPECT_EQ(d["blocks.0.attn1.to_out.0.deq_scale"], "W8A8");
  EXPECT_EQ(d["blocks.1.ffn.net.0.proj.weight"], "W4A4_MXFP4");
  EXPECT_EQ(d["blocks.1.ffn.net.0.proj.mul_scale"], "FLOAT");
  EXPECT_EQ(d["blocks.0.attn2.add_k_proj.weight"], "W8A8_DYNAMIC");
  EXPECT_EQ(d["blocks.0.extra_gate.weight"], "FLOAT");
  EXPECT_EQ(d["model_quant_type"], "W4A4_MXFP4");
  EXPECT_EQ(d["version"], "1.0.0");
  EXPECT_EQ(d["group_size"], 0);
  EXPECT_EQ(d["metadata"], nlohmann::json::object());
  for (const auto& [key, value] : d.items()) {
    EXPECT_EQ(key.find("self_attn"), std::string::npos) << key;
    EXPECT_EQ(key.find(".linear."), std::string::npos) << key;
  }
}

TEST(WanRepack, ShardsAndIndexFollowTheInput) {
  const std::string out = test::temp_dir() + "/out";
  format::repack_wan(fixture("msmodelslim"), out);
  // high_noise_model has two shards and an index; low_noise_model one unindexed file.
  const std::string t = out + "/transformer/";
  ASSERT_TRUE(fs::exists(t + "diffusion_pytorch_model-00001-of-00002.safetensors"));
  ASSERT_TRUE(fs::exists(t + "diffusion_pytorch_model-00002-of-00002.safetensors"));
  EXPECT_FALSE(fs::exists(t + "diffusion_pytorch_model.safetensors"));
  const auto index = read_json(t + "diffusion_pytorch_model.safetensors.index.json");
  const format::SafetensorsFile shard2(t + "diffusion_pytorch_model-00002-of-00002.safetensors");
  uint64_t total = 0;
  for (const auto& [name, file] : index["weight_map"].items()) {
    const format::SafetensorsFile f(t + file.get<std::string>());
    ASSERT_TRUE(f.has(name)) << name << " in " << file;
    total += f.find(name)->nbytes;
    // The input's second shard held exactly the blocks.1 tensors.
    EXPECT_EQ(shard2.has(name), name.starts_with("blocks.1.")) << name;
  }
  EXPECT_EQ(index["weight_map"].size(), 111u);
  EXPECT_EQ(index["metadata"]["total_size"], total);
  EXPECT_TRUE(fs::exists(out + "/transformer_2/diffusion_pytorch_model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/transformer_2/diffusion_pytorch_model.safetensors.index.json"));
  EXPECT_EQ(format::SafetensorsFile(out + "/transformer_2/diffusion_pytorch_model.safetensors").metadata().at("format"), "pt");
}

TEST(WanRepack, DiffusersBaseMakesAWholePipelineFolder) {
  const std::string tmp = test::temp_dir();
  // The base plus a nested transformer folder: excluded at every depth, as shutil.ignore_patterns does.
  const std::string base = tmp + "/base";
  fs::copy(fixture("diffusers-base"), base, fs::copy_options::recursive);
  fs::create_directories(base + "/extra/transformer");
  test::write_file(base + "/extra/transformer/skipped.txt", "x");
  test::write_file(base + "/extra/kept.txt", "y");
  const std::string out = tmp + "/out";
  const auto report = format::repack_wan(fixture("msmodelslim"), out, {.diffusers_base = base});
  EXPECT_EQ(report.n_base_files, 3);  // model_index.json, scheduler_config.json, extra/kept.txt
  for (const char* f : {"model_index.json", "scheduler/scheduler_config.json", "extra/kept.txt",
                        "transformer/config.json", "transformer_2/config.json"})
    EXPECT_EQ(test::read_file(out + "/" + f), test::read_file(base + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(out + "/extra/transformer"));
  // The base's float weights are not copied next to the quantized ones.
  EXPECT_FALSE(fs::exists(out + "/transformer/diffusion_pytorch_model.safetensors"));
  expect_same_as_expected(out, "transformer");
  expect_same_as_expected(out, "transformer_2");
}

TEST(WanRepack, OneTransformerFolderBecomesTransformer) {
  // Wan2.2-TI2V-5B: the msModelSlim output is the transformer folder itself.
  const std::string out = test::temp_dir() + "/out";
  const auto report = format::repack_wan(fixture("msmodelslim/low_noise_model"), out);
  ASSERT_EQ(report.transformers.size(), 1u);
  EXPECT_FALSE(fs::exists(out + "/transformer_2"));
  // Compared with the low-noise expert's expected tensors, written to OUT/transformer.
  fs::rename(out + "/transformer", out + "/transformer_2");
  expect_same_as_expected(out, "transformer_2");
}

TEST(WanRepack, EntriesThatNameNoTensorPassThrough) {
  // As wan_repack.py, which renames only the description keys that are tensors: the per-attention
  // FA descriptor keeps its Wan name, like every global key.
  const std::string tmp = test::temp_dir();
  const std::string in = copy_low_noise(tmp);
  const std::string desc = in + "/quant_model_description_w8a8_dynamic.json";
  auto d = read_json(desc);
  d["blocks.0.self_attn.quant_type"] = "FAKQuant";
  d["kv_quant_type"] = "C8";
  d["optional"] = {{"quarot", {{"rotation_map", {{"global_rotation", "optional/quarot.safetensors"}}}}}};
  test::write_file(desc, d.dump());
  format::repack_wan(in, tmp + "/out");
  const auto got = read_json(tmp + "/out/transformer/quant_model_description.json");
  EXPECT_EQ(got["blocks.0.self_attn.quant_type"], "FAKQuant");
  EXPECT_EQ(got["kv_quant_type"], "C8");
  EXPECT_EQ(got["optional"], d["optional"]);
  EXPECT_EQ(got["blocks.0.attn1.to_q.weight"], "W8A8_DYNAMIC");
  EXPECT_EQ(got.size(), d.size());
}

TEST(WanRepackErrors, MissingInputOrOutputThatExists) {
  const std::string tmp = test::temp_dir();
  test::expect_error([&] { format::repack_wan(tmp + "/nothing", tmp + "/out"); }, {tmp + "/nothing", "not found"});
  fs::create_directories(tmp + "/out");
  test::write_file(tmp + "/out/keep.txt", "mine");
  test::expect_error([&] { format::repack_wan(fixture("msmodelslim"), tmp + "/out"); }, {tmp + "/out", "already exists"});
  EXPECT_EQ(test::read_file(tmp + "/out/keep.txt"), "mine");
  EXPECT_FALSE(fs::exists(tmp + "/out/transformer"));
}

TEST(WanRepackErrors, RenameCollision) {
  const std::string tmp = test::temp_dir();
  const std::string in = copy_low_noise(tmp);
  // A wrapped `.linear.weight` next to the plain weight: both become blocks.0.ffn.net.0.proj.weight.
  // (extra_gate's bytes renamed, in the safetensors and the description.)
  const std::string file = in + "/quant_model_weight_w8a8_dynamic.safetensors";
  test::Safetensors st = test::read_st(file);
  st.header["blocks.0.ffn.0.linear.weight"] = st.header["blocks.0.extra_gate.weight"];
  st.header.erase("blocks.0.extra_gate.weight");
  test::write_st(file, st);
  const std::string desc = in + "/quant_model_description_w8a8_dynamic.json";
  auto d = read_json(desc);
  d.erase("blocks.0.extra_gate.weight");
  d["blocks.0.ffn.0.linear.weight"] = "FLOAT";
  test::write_file(desc, d.dump());
  test::expect_error([&] { format::repack_wan(in, tmp + "/out"); },
                     {"blocks.0.ffn.net.0.proj.weight", "blocks.0.ffn.0.weight", "blocks.0.ffn.0.linear.weight"});
  EXPECT_FALSE(fs::exists(tmp + "/out"));
}

TEST(WanRepackErrors, DescriptionNamesAMissingTensor) {
  const std::string tmp = test::temp_dir();
  const std::string in = copy_low_noise(tmp);
  const std::string desc = in + "/quant_model_description_w8a8_dynamic.json";
  auto d = read_json(desc);
  d["blocks.5.self_attn.q.weight"] = "W8A8_DYNAMIC";
  test::write_file(desc, d.dump());
  test::expect_error([&] { format::repack_wan(in, tmp + "/out"); }, {"blocks.5.self_attn.q.weight", desc, "do not hold"});
  EXPECT_FALSE(fs::exists(tmp + "/out"));
}

TEST(WanRepackErrors, UnreadableSafetensorsOrNoDescription) {
  const std::string tmp = test::temp_dir();
  const std::string in = copy_low_noise(tmp);
  const std::string file = in + "/quant_model_weight_w8a8_dynamic.safetensors";
  const std::string bytes = test::read_file(file);
  test::write_file(file, bytes.substr(0, bytes.size() / 2));  // truncated
  test::expect_error([&] { format::repack_wan(in, tmp + "/out"); }, {file});
  test::write_file(file, bytes);
  fs::remove(in + "/quant_model_description_w8a8_dynamic.json");
  test::expect_error([&] { format::repack_wan(in, tmp + "/out"); }, {in, "quant_model_description"});
  EXPECT_FALSE(fs::exists(tmp + "/out"));
}

TEST(WanRepackErrors, HalfAnExpertPairOrABaseThatIsNoPipeline) {
  const std::string tmp = test::temp_dir();
  fs::create_directories(tmp + "/in");
  fs::copy(fixture("msmodelslim/high_noise_model"), tmp + "/in/high_noise_model", fs::copy_options::recursive);
  test::expect_error([&] { format::repack_wan(tmp + "/in", tmp + "/out"); }, {"low_noise_model/ is missing"});
  test::expect_error([&] { format::repack_wan(fixture("msmodelslim"), tmp + "/out", {.diffusers_base = tmp}); },
                     {"model_index.json", tmp});
  EXPECT_FALSE(fs::exists(tmp + "/out"));
}

}  // namespace
}  // namespace quanta
