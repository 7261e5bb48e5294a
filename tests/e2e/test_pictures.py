"""End-to-end tests of quanta's pictures: `quanta inspect --svg/--html` (the quantization map) and
`quanta report` (size against quality and speed; serving curves).

The SVG is parsed as XML. The map is checked against each format's own description of the
checkpoint, not against quanta: gguf-py's reader for GGUF files (type and bytes of every tensor),
msModelSlim's quant_model_description.json and the safetensors headers for its folders. The HTML
pages are opened in headless Chromium (Debian's `chromium`), which takes a screenshot and dumps the
DOM after the page's script ran; script errors show up there and on its log.

Run by tests/e2e/run_server_tests.sh with QUANTA_E2E_TESTS=test_pictures.py (CTest: pictures_e2e).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from gguf import GGUFReader

REPO = Path(__file__).resolve().parent.parent.parent
BINARY = os.environ.get("QUANTA_BINARY", str(REPO / "build" / "quanta"))
FIXTURES = REPO / "tests" / "golden" / "fixtures"
DEFAULT_MODEL = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"
TEXT = REPO / "tests" / "golden" / "data" / "persuasion-chapter-1.txt"
SVG = "{http://www.w3.org/2000/svg}"


def quanta(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=300)


def cells(svg_path: Path) -> list[dict]:
    """Every map cell: its attributes, the schemes of its stripes, its title."""
    root = ET.parse(svg_path).getroot()
    out = []
    for g in root.iter(SVG + "g"):
        if g.get("class") != "cell":
            continue
        stripes = [r.get("data-scheme") for r in g.findall(SVG + "rect") if r.get("data-scheme")]
        titles = [t.text for t in g.iter(SVG + "title")]
        out.append({**g.attrib, "stripes": stripes, "titles": titles, "names": g.get("data-tensors").split(", ")})
    return out


def legend(svg_path: Path) -> tuple[dict, dict]:
    root = ET.parse(svg_path).getroot()
    schemes = {g.get("data-scheme"): g.attrib for g in root.iter(SVG + "g") if g.get("class") == "legend"}
    total = next(g.attrib for g in root.iter(SVG + "g") if g.get("class") == "total")
    return schemes, total


def layer_of(name: str) -> int:
    m = re.search(r"(?:^|\.)(?:blk|layers)\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


# The column of each projection, by the tensor's own name in GGUF and Hugging Face spelling.
COLUMNS = {"token_embd": "embedding", "embed_tokens": "embedding", "output": "lm_head", "lm_head": "lm_head",
           "attn_q": "q", "q_proj": "q", "attn_k": "k", "k_proj": "k", "attn_v": "v", "v_proj": "v",
           "attn_output": "o", "o_proj": "o", "ffn_gate": "gate", "gate_proj": "gate", "ffn_up": "up",
           "up_proj": "up", "ffn_down": "down", "down_proj": "down", "ffn_gate_exps": "experts w13",
           "ffn_up_exps": "experts w13", "ffn_down_exps": "experts w2", "ffn_gate_inp": "router",
           "ffn_gate_shexp": "shared w13", "ffn_up_shexp": "shared w13", "ffn_down_shexp": "shared w2"}


def column_of(name: str) -> str:
    return COLUMNS[name.split(".")[-2]]


def check_map(svg_path: Path, expected: dict[str, tuple[str, float]]):
    """expected: tensor -> (scheme, bits per weight). Each tensor is in exactly one cell, of its
    layer, among the cell's schemes; a cell of one tensor carries that tensor's bits."""
    cs = cells(svg_path)
    assert cs, "the map has no cells"
    for name, (scheme, bits) in expected.items():
        holders = [c for c in cs if name in c["names"]]
        assert len(holders) == 1, f"{name}: in {len(holders)} cells"
        c = holders[0]
        assert int(c["data-layer"]) == layer_of(name), (name, c["data-layer"])
        assert c["data-column"] == column_of(name), (name, c["data-column"])
        assert scheme in c["stripes"], (name, scheme, c["stripes"])
        if len(c["names"]) == 1:
            assert c["data-scheme"] == scheme, (name, c["data-scheme"])
            assert float(c["data-bits"]) == pytest.approx(bits, abs=1e-3), (name, c["data-bits"], bits)
            assert any(scheme in t for t in c["titles"]), c["titles"]


def gguf_expected(path: Path) -> tuple[dict, dict, int]:
    """From gguf-py: every tensor of 2+ dimensions (the projections, embedding, output, experts,
    router), all tensors' types with their bytes, and the file's total tensor bytes."""
    r = GGUFReader(path)
    expected, per_type, total = {}, {}, 0
    for t in r.tensors:
        nbytes = int(t.n_bytes)
        total += nbytes
        per_type[t.tensor_type.name] = per_type.get(t.tensor_type.name, 0) + nbytes
        if len(t.shape) >= 2:
            expected[t.name] = (t.tensor_type.name, 8.0 * nbytes / int(t.n_elements))
    return expected, per_type, total


@pytest.mark.parametrize("name", ["qwen3moe-k-q4_k_m-down_q8_0.gguf", "qwen2moe-q8_0.gguf", "gemma3-k-q4_k_m.gguf"])
def test_map_of_gguf_matches_gguf_py(tmp_path, name):
    path = FIXTURES / "gguf" / name
    out = tmp_path / "map.svg"
    r = quanta("inspect", str(path), "--svg", str(out))
    assert r.returncode == 0, r.stderr
    expected, per_type, total = gguf_expected(path)
    check_map(out, expected)
    schemes, tot = legend(out)
    assert set(schemes) == set(per_type)
    for t, nbytes in per_type.items():
        assert float(schemes[t]["data-bytes"]) == pytest.approx(nbytes, rel=1e-6), t
    assert float(tot["data-bytes"]) == pytest.approx(total, rel=1e-9)
    if "moe" in name:  # experts' w13 and w2 are their own columns
        cols = {c["data-column"] for c in cells(out)}
        assert {"experts w13", "experts w2", "router"} <= cols, cols


def test_map_of_the_default_model(tmp_path):
    out = tmp_path / "map.svg"
    r = quanta("inspect", str(DEFAULT_MODEL), "--svg", str(out))
    assert r.returncode == 0, r.stderr
    expected, _, _ = gguf_expected(DEFAULT_MODEL)
    check_map(out, expected)
    layers = {int(c["data-layer"]) for c in cells(out)}
    assert layers == set(range(-1, 18)), layers  # Gemma 3 270M: 18 layers, and the embedding


def safetensors_headers(folder: Path) -> dict:
    out = {}
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            out.update({k: v for k, v in json.loads(fh.read(n)).items() if k != "__metadata__"})
    return out


def test_map_of_mixed_modelslim_folder(tmp_path):
    folder = FIXTURES / "modelslim-int"
    desc = json.loads((folder / "quant_model_description.json").read_text())
    headers = safetensors_headers(folder)
    expected = {}
    for name, scheme in desc.items():
        if not name.endswith(".weight") or "norm" in name or name not in headers:
            continue
        module = name[: -len("weight")]
        # The module's bytes: its weight and the side tensors msModelSlim writes beside it.
        nbytes = sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in headers.items() if k.startswith(module))
        rows, cols = headers[name]["shape"]
        expected[name] = (scheme, 8.0 * nbytes / (rows * cols))
    assert len({s for s, _ in expected.values()}) >= 4, "the fixture should mix schemes"
    out = tmp_path / "map.svg"
    r = quanta("inspect", str(folder), "--svg", str(out))
    assert r.returncode == 0, r.stderr
    check_map(out, expected)


def chromium(page: Path, tmp_path: Path) -> tuple[str, str, Path]:
    """Opens the page headless: (DOM after scripts ran, the log, a screenshot)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is missing: scripts/install-deps.sh installs Debian's chromium"
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
              "--window-size=1100,1300"]
    dom = subprocess.run(common + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / (page.stem + ".png")
    r = subprocess.run(common + [f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return dom.stdout, dom.stderr + r.stderr, shot


def check_page(page: Path, tmp_path: Path, min_items: int):
    dom, log, shot = chromium(page, tmp_path)
    # The page's one script sets data-ready to the number of elements with details; a script
    # error would leave it unset and be logged as an uncaught error.
    m = re.search(r'<body[^>]*data-ready="(\d+)"', dom)
    assert m, "the page's script did not run: " + dom[:500]
    assert int(m.group(1)) >= min_items
    assert "Uncaught" not in log, log[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1100, 1300)
    assert len(png) > 20000, "the screenshot looks blank"


def test_map_html_opens_in_chromium(tmp_path):
    page = tmp_path / "map.html"
    r = quanta("inspect", str(FIXTURES / "gguf" / "qwen3moe-k-q4_k_m-down_q8_0.gguf"), "--html", str(page))
    assert r.returncode == 0, r.stderr
    check_page(page, tmp_path, min_items=10)


def run_json(*args: str):
    r = quanta(*args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_report_plots_bench_and_perplexity_results(tmp_path):
    models = [DEFAULT_MODEL, FIXTURES / "gguf" / "gemma3-q4_0.gguf"]
    files, truth = [], {}
    for i, m in enumerate(models):
        bench = run_json("bench", "-m", str(m), "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--json")
        ppl = run_json("perplexity", "-m", str(m), "-f", str(TEXT), "-c", "64", "--chunks", "2", "-t", "1", "--json")
        for kind, j in (("bench", bench), ("ppl", ppl)):
            f = tmp_path / f"{i}-{kind}.json"
            f.write_text(json.dumps(j))
            files.append(str(f))
        truth[str(m)] = (bench, ppl)
    svg, page = tmp_path / "report.svg", tmp_path / "report.html"
    r = quanta("report", *files, "--svg", str(svg), "--html", str(page), "--label", f"{DEFAULT_MODEL}=default")
    assert r.returncode == 0, r.stderr
    root = ET.parse(svg).getroot()
    points = [g.attrib for g in root.iter(SVG + "g") if g.get("class") == "point"]
    for m, (bench, ppl) in truth.items():
        label = "default" if m == str(DEFAULT_MODEL) else Path(m).stem
        mine = [p for p in points if p["data-label"] == label]
        size_mib = bench[0]["model_size"] / 2**20
        assert all(float(p["data-x"]) == pytest.approx(size_mib, rel=1e-5) for p in mine), mine
        quality = [p for p in mine if p["data-series"] == "perplexity"]
        assert len(quality) == 1 and float(quality[0]["data-y"]) == pytest.approx(ppl["ppl"], rel=1e-5)
        for row in bench:
            test = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
            speed = [p for p in mine if p["data-series"] == test]
            assert len(speed) == 1 and float(speed[0]["data-y"]) == pytest.approx(row["avg_ts"], rel=1e-5), test
    check_page(page, tmp_path, min_items=6)


def test_report_plots_serving_results(tmp_path):
    rows = [{"concurrency": c, "requests": 2 * c, "errors": 0, "wall_s": 1.0, "output_tokens_per_s": tps,
             "ttft_p50_s": 0.03 * c, "ttft_p99_s": 0.04 * c, "itl_p50_s": 0.01 * c, "itl_p99_s": None,
             "per_request_decode_tokens_per_s": tps / c} for c, tps in ((1, 80.0), (4, 150.0), (16, 230.0))]
    f = tmp_path / "serving.json"
    f.write_text(json.dumps(rows))
    svg = tmp_path / "serving.svg"
    r = quanta("report", str(f), "--svg", str(svg))
    assert r.returncode == 0, r.stderr
    root = ET.parse(svg).getroot()
    points = [g.attrib for g in root.iter(SVG + "g") if g.get("class") == "point"]
    tp = sorted((float(p["data-x"]), float(p["data-y"])) for p in points if p["data-series"] == "throughput")
    assert tp == [(1.0, 80.0), (4.0, 150.0), (16.0, 230.0)]
    series = {p["data-series"] for p in points}
    assert {"TTFT p50", "TTFT p99", "ITL p50"} <= series and "ITL p99" not in series  # null: not drawn


@pytest.mark.parametrize("content, where", [
    ("{", "invalid JSON"),
    ('{"unrelated": 1}', "is not the JSON of quanta bench"),
    ('[{"n_prompt": 16, "avg_ts": 1.0}]', "model_filename"),
    ('{"model": "m", "ppl": "high"}', "ppl"),
])
def test_report_refuses_bad_input_naming_it(tmp_path, content, where):
    f = tmp_path / "bad.json"
    f.write_text(content)
    r = quanta("report", str(f), "--svg", str(tmp_path / "x.svg"))
    assert r.returncode != 0
    assert str(f) in r.stderr and where in r.stderr, r.stderr
