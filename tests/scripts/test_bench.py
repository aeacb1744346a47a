"""The benchmark scripts run end to end (CPU, tiny sizes); their figures are for GPUs and README."""
import argparse
import json
import multiprocessing
import os
import re
import time

import pytest
import torch

from tests.helpers import load_script


def test_bench_pretrain_smoke(tmp_path, capsys):
    out = tmp_path / "b.json"
    load_script("bench/bench_pretrain").main(["--device", "cpu", "--tiny", "--settings", "r18-32", "--workers", "0",
                                       "--batch-size", "8", "--steps", "1", "--warmup", "1", "--min-seconds", "0",
                                       "--repeats", "3", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["pipeline"] for r in rows] == ["model", "upstream", "ours", "augment"]
    for r in rows:  # the median of three measurements
        assert len(r["images_per_s_all"]) == 3 and all(x > 0 for x in r["images_per_s_all"])
        assert r["images_per_s"] == sorted(r["images_per_s_all"])[1]
    # each measurement is printed as it is taken, round-robin, against its round's model-only figure
    rounds = re.findall(r"^round (\d)/3 r18-32 0 workers: (\w+) (\d+) images/s(.*)$", capsys.readouterr().out, re.M)
    assert [(r, name) for r, name, _, _ in rounds] == [(str(i), n) for i in (1, 2, 3) for n in
                                                       ("model", "upstream", "ours", "augment")]
    model = {r: int(rate) for r, name, rate, _ in rounds if name == "model"}
    for r, name, rate, vs in rounds:
        if name == "model":
            assert vs == ""
        else:  # the printed rates are rounded to whole images/s
            ratio = float(re.fullmatch(r" \((\d+\.\d\d) of the model\)", vs).group(1))
            expect = int(rate) / model[r]  # each rate is rounded by up to 0.5, the ratio by up to 0.005
            assert abs(ratio - expect) <= 1.1 * expect * (0.5 / int(rate) + 0.5 / model[r]) + 0.0051
    assert sorted(float(rate) for r, name, rate, _ in rounds if name == "ours") == [
        pytest.approx(x, abs=0.5) for x in sorted(rows[2]["images_per_s_all"])]


def test_bench_pretrain_cut_off_keeps_what_it_measured(tmp_path, monkeypatch):
    """A run stopped by a time limit (here: interrupted in its third measurement) has written the
    first two to its JSON: GPU time is too scarce to lose a step's figures."""
    bench, out, calls = load_script("bench/bench_pretrain"), tmp_path / "b.json", []

    def timed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = bench.timed
    monkeypatch.setattr(bench, "timed", timed)
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--device", "cpu", "--tiny", "--settings", "r18-32", "--workers", "0", "--batch-size", "8",
                    "--steps", "1", "--warmup", "1", "--min-seconds", "0", "--pipelines", "model", "ours", "augment",
                    "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["pipeline"] for r in rows] == ["model", "ours"] and all(r["images_per_s"] > 0 for r in rows)


def test_bench_timed_runs_at_least_the_steps_and_the_seconds():
    bench, steps = load_script("bench/bench_pretrain"), []
    it = iter(int, 1)
    res = bench.timed(steps.append, it, 2, 3, 0.0, 10, torch.device("cpu"))
    assert len(steps) == 2 + 3 and res["images_per_s"] > 0
    steps.clear()
    bench.timed(lambda b: (steps.append(b), time.sleep(0.01)), it, 0, 1, 0.1, 10, torch.device("cpu"))
    assert 2 <= len(steps) <= 10  # until 0.1 s had passed: more than the 1 step asked, at most 0.1 s / 10 ms


def test_bench_peak_memory_spans_the_warm_up(monkeypatch):
    """A backbone replayed as CUDA graphs allocates only while it records, in the warm-up steps."""
    bench, events = load_script("bench/bench_pretrain"), []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: events.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**30)
    res = bench.timed(lambda b: events.append("step"), iter(int, 1), 2, 1, 0.0, 4, torch.device("cuda"))
    assert events[:3] == ["reset", "step", "step"] and res["peak_gib"] == 3.0


def _busy_then_idle(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    time.sleep(60)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads children's CPU time from /proc (Linux)")
def test_bench_settle_waits_for_busy_loader_processes():
    bench = load_script("bench/bench_pretrain")
    assert bench.settle(timeout=5) < 0.5  # nothing to wait for
    t = time.perf_counter()
    child = multiprocessing.get_context("fork").Process(target=_busy_then_idle, args=(1.0,), daemon=True)
    child.start()
    try:
        assert 0.3 <= bench.settle(timeout=0.3) < 0.6  # busy: the timeout ends the wait
        waited = bench.settle(timeout=10)
        assert 0.2 <= waited < 5 and time.perf_counter() - t >= 1.0  # until the child went idle
        assert bench.settle(timeout=5) < 0.5  # idle since
    finally:
        child.kill()
        child.join()


def test_bench_pretrain_jpeg_setting_measures_both_decode_paths(tmp_path):
    out = tmp_path / "b.json"
    load_script("bench/bench_pretrain").main(["--device", "cpu", "--tiny", "--settings", "r50-224", "--workers", "1",
                                       "--jpeg-decode", "device", "--batch-size", "4",
                                       "--steps", "1", "--warmup", "1", "--min-seconds", "0", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["pipeline"] for r in rows] == ["model", "upstream", "ours (device decode)", "ours (workers decode)",
                                             "augment"]
    assert [r["default"] for r in rows] == [False, False, True, False, False]
    assert all(r["images_per_s"] > 0 and r["setting"] == "r50-224" for r in rows)


def test_bench_augment_counts_ops_and_times_eager_and_compiled(tmp_path):
    out = tmp_path / "a.json"
    load_script("bench/bench_augment").main(["--device", "cpu", "--recipes", "cifar10", "--batch-size", "2", "--views", "2",
                                      "--warmup", "4", "--compile", "aot_eager", "--stage-times", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["graph"]) for r in rows] == [("eager", "stages"), ("aot_eager", "stages"),
                                                         ("aot_eager", "view")]
    assert 50 < rows[0]["ops_per_view"] < 1000 and rows[1]["ops_per_view"] is None
    assert all(r["views_per_s"] > 0 for r in rows)
    stages = {"crop", "params", "pre", "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue",
              "post", "descriptor"}  # every call a per-stage view makes, timed on the host
    for r in rows[:2]:
        assert set(r["stage_host_us"]) == stages and all(us > 0 for us in r["stage_host_us"].values())
    assert rows[2]["stage_host_us"] is None  # the whole view is one call: no stages to time


def test_bench_decode_measures_each_stage_for_both_jpeg_kinds(tmp_path):
    out = tmp_path / "d.json"
    load_script("bench/bench_decode").main(["--device", "cpu", "--n", "12", "--side", "64", "--size", "32", "--chunks", "6",
                                     "--threads", "2", "--repeats", "1", "--loader-workers", "0", "--loader-batch", "6",
                                     "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    seen = [(r["jpeg"], r["what"], r["threads"]) for r in rows]
    assert seen == [("baseline", "decode", 1), ("baseline", "decode", 2), ("baseline", "workers", 1),
                    ("baseline", "pil", 1), ("baseline", "crop-resize, float per image", 1),
                    ("baseline", "crop-resize, float per call", 1), ("baseline", "loader", 0),
                    ("baseline", "workers loader", 0), ("baseline", "pil loader", 0),
                    ("progressive", "decode", 1), ("progressive", "decode", 2), ("progressive", "workers", 1),
                    ("progressive", "pil", 1)]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert all(r["main_thread_ms_per_batch"] > 0 for r in rows[6:9])


def test_bench_linear_eval_smoke(tmp_path):
    out = tmp_path / "l.json"
    load_script("bench/bench_linear_eval").main(["--device", "cpu", "--n", "400", "--dim", "16", "--classes", "4",
                                          "--sklearn-points", "1", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["test_top1"] > 0.5 and res["sweep_seconds"] > 0 and len(res["sklearn_fit_seconds"]) == 1


def test_profile_step_times_each_region_of_the_step(tmp_path):
    out = tmp_path / "p.json"
    load_script("bench/profile_step").main(["--device", "cpu", "--tiny", "--workers", "0", "--batch-size", "8",
                                     "--steps", "2", "--warmup", "1", "--host-profile", "5", "--out", str(out)])
    res = json.loads(out.read_text())
    assert list(res["regions"]) == ["inputs", "forward", "backward", "optimizer"]
    host = [r["host_ms"] for r in res["regions"].values()]
    assert all(h > 0 for h in host)
    assert sum(host) <= res["wall_ms"] * 1.05  # the regions run one after another inside the step
    assert res["device_busy_ms"] is None  # no kernels on a CPU
    assert res["compile_augment"] is False  # pretrain_cond.py's default on a CPU (--compile-augment sets it)
    assert res["kernel_launches"] is None and len(res["top"]) == 12
    assert all(t["name"].startswith("aten::") and t["ms"] > 0 for t in res["top"])
    assert [t["ms"] for t in res["top"]] == sorted((t["ms"] for t in res["top"]), reverse=True)
    host = res["host"]  # the input side alone: its host time, and the Python functions that spend it
    assert 0 < host["inputs_ms"] < res["wall_ms"] and len(host["functions"]) == 5
    own = [f["self_ms"] for f in host["functions"]]
    assert own == sorted(own, reverse=True) and all(f["calls"] > 0 for f in host["functions"])
    assert any(f["name"].startswith(("pipeline.py", "crop.py", "functional.py")) for f in host["functions"])


def test_bench_pretrain_variants_run_in_the_same_process(tmp_path):
    """--variants adds "ours" with an input-side flag changed, measured beside the default."""
    out = tmp_path / "b.json"
    load_script("bench/bench_pretrain").main(["--device", "cpu", "--tiny", "--settings", "r50-224", "--workers", "1",
                                       "--jpeg-dir", str(tmp_path / "jpegs"), "--pipelines", "model", "ours", "augment",
                                       "--variants", "blur_impl=shift", "--batch-size", "4", "--steps", "1",
                                       "--warmup", "1", "--min-seconds", "0", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["pipeline"] for r in rows] == ["model", "ours (workers decode)", "augment", "ours [blur_impl=shift]",
                                             "augment [blur_impl=shift]"]
    assert [r["blur_impl"] for r in rows] == ["conv", "conv", "conv", "shift", "shift"]  # CPU default: eager, conv
    assert [r.get("variant") for r in rows] == [None, None, None, "blur_impl=shift", "blur_impl=shift"]
    assert all(r["images_per_s"] > 0 for r in rows)


def test_bench_pretrain_later_rounds_first_take_what_a_pipeline_made_ahead():
    """Round 1 warms up --warmup steps. In later rounds a pipeline first takes the steps its loader may
    have stocked while the others were measured (at least 2), then is timed."""
    bench = load_script("bench/bench_pretrain")
    calls = {"fed": 0, "model": 0}

    def pipeline(name):
        def step(_):
            calls[name] += 1
        return lambda: (step, lambda: iter(int, 1))

    a = argparse.Namespace(repeats=3, warmup=4, steps=1, min_seconds=0, batch_size=2)
    rounds = list(bench.measure({"fed": pipeline("fed"), "model": pipeline("model")}, a, torch.device("cpu"),
                                {"fed": 10, "model": 0}))
    assert [(rep, name) for rep, name, _ in rounds] == [(r, n) for r in range(3) for n in ("fed", "model")]
    assert calls == {"fed": (4 + 1) + 2 * (10 + 1), "model": (4 + 1) + 2 * (2 + 1)}


@pytest.fixture
def stl10_checks_restored(monkeypatch):
    """The bench's STL-10 writer makes torchvision accept its files in this process (no MD5 sums):
    the real lists come back after the test."""
    from torchvision.datasets import STL10
    for name in ("train_list", "test_list"):
        monkeypatch.setattr(STL10, name, getattr(STL10, name))


def test_bench_pretrain_variant_of_several_flags_makes_steps_ahead(tmp_path, monkeypatch, stl10_checks_restored):
    """"augment_graph=view,augment_ahead=2" changes both flags of one variant (the input side alone
    here), on the 96 px setting's STL-10 files, where the default makes one step at a time."""
    import utils.training.step
    monkeypatch.setattr(utils.training.step, "AUGMENT_COMPILE_BACKEND", "aot_eager")  # inductor's codegen is slow on CPU
    out = tmp_path / "b.json"
    load_script("bench/bench_pretrain").main(["--device", "cpu", "--tiny", "--settings", "r18-96", "--workers", "0",
                                       "--compile-augment", "--pipelines", "augment",
                                       "--variants", "augment_graph=view,augment_ahead=2", "--batch-size", "8",
                                       "--steps", "3", "--warmup", "1", "--min-seconds", "0", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    spec = "augment_graph=view,augment_ahead=2"
    assert [r["pipeline"] for r in rows] == ["augment", f"augment [{spec}]"]
    assert [(r["augment_graph"], r["augment_ahead"]) for r in rows] == [("stages", 1), ("view", 2)]
    assert all(r["images_per_s"] > 0 and r["setting"] == "r18-96" for r in rows)


def test_bench_stl10_files_are_read_by_torchvisions_loader(tmp_path, stl10_checks_restored):
    """The r18-96 setting's files are STL-10's binary format, read through pretrain_cond.py's loader
    (torchvision's STL10), with an epoch of 64 full steps: every --augment-ahead divides it."""
    from datasets.pretrain import build_pretrain_data
    root = load_script("bench/bench_data").setting_datadir("r18-96", str(tmp_path), batch_size=4, steps=1, tiny=True)
    data = build_pretrain_data("stl10", root)
    assert data.in_memory and tuple(data.train.images.shape) == (4 * 64, 3, 96, 96)
    assert data.train.labels.tolist() == [i % 10 for i in range(100)] + [-1] * (4 * 64 - 100)
    assert data.knn_train.labels.tolist() == data.knn_test.labels.tolist() == [i % 10 for i in range(100)]
    raw = (tmp_path / "stl10" / "stl10_binary" / "unlabeled_X.bin").read_bytes()[:3 * 96 * 96]
    first = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(3, 96, 96).transpose(1, 2)  # column-major
    assert torch.equal(data.train.images[100], first)


@pytest.mark.parametrize("spec, message", [
    ("blur_impl=fft", "--variants 'blur_impl=fft': expected flag=value pairs, each flag once, joined by ',' "
                      "(augment_graph=stages|view;"),
    ("jpeg_decode=device", "--variants 'jpeg_decode=device': expected flag=value pairs"),
    ("augment_ahead=3", "--variants 'augment_ahead=3': expected flag=value pairs"),
    ("overlap_augment=true", "--variants 'overlap_augment=true': expected flag=value pairs"),
    ("augment_ahead=2,augment_ahead=4", "--variants 'augment_ahead=2,augment_ahead=4': expected flag=value pairs"),
    ("augment_graph=view", "--variants augment_graph=view: --augment-graph view compiles the whole view"),
    ("augment_ahead=2", "--variants augment_ahead=2: --augment-graph view compiles the whole view: it needs "
                        "--compile-augment"),  # K steps at once picks the whole view, which compiles
    ("augment_graph=stages,augment_ahead=2", "--variants augment_graph=stages,augment_ahead=2: --augment-ahead 2 "
                                             "makes each view of 2 steps in one whole-view call: it needs "
                                             "--augment-graph view"),
])
def test_bench_pretrain_rejects_bad_variants_before_measuring(spec, message, capsys):
    with pytest.raises(SystemExit):
        load_script("bench/bench_pretrain").main(["--device", "cpu", "--tiny", "--settings", "r18-32", "--variants", spec])
    assert message in capsys.readouterr().err


def test_bench_model_eager_runs_the_compiled_backbone_eager(tmp_path, monkeypatch):
    """model-eager: the model-only step with the backbone that --compile compiled run eager (the
    eager ceiling), where "model" runs the compiled graph."""
    from torch._dynamo.backends.registry import lookup_backend

    import utils.training.run
    calls = []

    def counting_aot_eager(gm, example_inputs, **options):  # counts each run of a compiled graph
        compiled = lookup_backend("aot_eager")(gm, example_inputs)

        def run(*args):
            calls.append(1)
            return compiled(*args)
        return run
    monkeypatch.setattr(utils.training.run, "BACKBONE_COMPILE_BACKEND", counting_aot_eager)  # inductor is slow on CPU
    bench, runs = load_script("bench/bench_pretrain"), {}
    for pipeline in ("model-eager", "model"):
        calls.clear()
        bench.main(["--device", "cpu", "--tiny", "--settings", "r18-32", "--workers", "0", "--batch-size", "8",
                    "--steps", "2", "--warmup", "1", "--min-seconds", "0", "--compile", "--pipelines", pipeline,
                    "--out", str(tmp_path / f"{pipeline}.json")])
        runs[pipeline] = len(calls)
        row, = json.loads((tmp_path / f"{pipeline}.json").read_text())["rows"]
        assert row["pipeline"] == pipeline and row["compile"].startswith("backbone") and row["images_per_s"] > 0
    assert runs["model-eager"] == 0 and runs["model"] >= 3  # the warm-up step and 2 timed ones
