"""``lenet-parity bench``: the FLOP count, the argument checks, worker failures, and one tiny
real run. A benchmark, not a test of speed: nothing here asserts how long anything takes."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import scratch
from compare.cli import main
from compare.sides import backends as keras_backends
from compare.tools import bench


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the FLOP count ----------------------------------------------------------------------------
def test_lenet5_flops_per_layer() -> None:
    flops = bench.lenet5_flops("keras-docs")
    per_layer = {f.name: (f.kind, f.multiply_adds, f.forward, f.training) for f in flops.layers}
    assert per_layer == {
        # 24x24x6 outputs x 5x5x1 taps; the first layer: no input gradient (2 x forward)
        "conv1": ("Conv2D", 86_400, 172_800, 345_600),
        # 8x8x16 outputs x 5x5x6 taps
        "conv2": ("Conv2D", 153_600, 307_200, 921_600),
        "fc1": ("Dense", 256 * 120, 61_440, 184_320),
        "fc2": ("Dense", 120 * 84, 20_160, 60_480),
        "output": ("Dense", 84 * 10, 1_680, 5_040),
    }


def test_lenet5_flops_total_matches_the_notes() -> None:
    flops = bench.lenet5_flops("keras-docs")
    assert flops.forward == 563_280
    assert flops.forward == pytest.approx(0.563e6, rel=1e-3)
    # the notes' 1.69 MFLOP/image is 3 x forward; conv1's input gradient (never computed) is
    # the difference
    assert flops.three_times_forward == pytest.approx(1.69e6, rel=1e-3)
    assert flops.training == flops.three_times_forward - 172_800 == 1_517_040
    assert flops.as_dict()["training_per_image"] == 1_517_040


def test_count_flops_walks_any_built_model() -> None:
    model = scratch.Sequential(
        [scratch.Conv2D(2, 3, name="c"), scratch.AveragePooling2D(1, name="p"), scratch.Dense(4)],
        input_shape=(5, 5, 1),
    )
    flops = bench.count_flops(model)
    # conv: 3x3x2 outputs x 3x3x1 taps = 162; dense on the last axis: 3x3 positions x 2 x 4 = 72
    assert [(f.name, f.multiply_adds) for f in flops.layers] == [("c", 162), ("dense", 72)]
    assert (flops.forward, flops.training) == (2 * 234, 2 * 162 * 2 + 2 * 72 * 3)


# -- configuration -----------------------------------------------------------------------------
def test_config_round_trips_and_epochs_are_shared() -> None:
    config = bench.BenchConfig(backends=("tensorflow", "jax"), repeats=7, digits=512)
    assert bench.BenchConfig.from_json(config.to_json()) == config
    assert config.implementations == ("scratch", "tensorflow", "jax")
    order = bench.epoch_order(100, 0, 3)
    np.testing.assert_array_equal(order, bench.epoch_order(100, 0, 3))
    assert sorted(order) == list(range(100))
    assert not np.array_equal(order, bench.epoch_order(100, 0, 4))


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--repeats", "0"], "--repeats: expected an integer >= 1 and <= 1000, got '0'"),
        (["--epochs", "0"], "--epochs: expected an integer >= 1"),
        (
            ["--batch-size", "lots"],
            "--batch-size: expected an integer >= 1 and <= 65536, got 'lots'",
        ),
        (["--digits", "-5"], "--digits: expected an integer >= 1"),
        (["--backends", "theano"], "unknown Keras backend 'theano'"),
        (["--backends", "tensorflow,theano"], "unknown Keras backend 'theano'"),
        (["--json", "/no/such/folder/bench.json"], "folder /no/such/folder does not exist"),
        (["--plot", "/no/such/folder/bench.png"], "folder /no/such/folder does not exist"),
        (["--digits", "9000", "--backends", "tensorflow"], "--digits: the bundled data has 8,000"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], needle: str
) -> None:
    outputs = ["--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")]
    code, _, err = run(capsys, "bench", *outputs, *argv)
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("lenet-parity")
    assert needle in err
    assert not list(tmp_path.iterdir())


def test_an_uninstalled_backend_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "jax" else find_spec(name, *rest),
    )
    outputs = ["--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")]
    code, _, err = run(capsys, "bench", "--backends", "jax", *outputs)
    assert code == 2
    assert err == (
        "lenet-parity: error: the jax backend needs jax, which is not installed: "
        "pip install 'lenet-parity[jax]'\n"
    )


# -- failing workers ---------------------------------------------------------------------------
# A stand-in worker: records its pid, then fails as argv[2] says ("start": scratch dies before
# it is ready; "command": tensorflow dies on its first command; "garbage": it answers nonsense).
FAKE_WORKER = """
import json, os, sys
name, mode, folder = sys.argv[1:4]
with open(os.path.join(folder, name + ".pid"), "w") as f:
    f.write(str(os.getpid()))
if mode == "start" and name == "scratch":
    sys.exit("RuntimeError: scratch could not start")
print(json.dumps({"ready": True, "environment": {}, "rss_start_mb": 1.0}), flush=True)
for line in sys.stdin:
    if name == "tensorflow" and mode == "command":
        sys.stderr.write("Traceback (most recent call last):\\nValueError: fit blew up\\n")
        sys.exit(3)
    if name == "tensorflow" and mode == "garbage":
        print("hello", flush=True)
    elif json.loads(line)["op"] == "train":
        print(json.dumps({"seconds": [0.5], "losses": [1.0]}), flush=True)
    else:
        print(json.dumps({"seconds": 0.5, "max_rss_mb": 1.0}), flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("start", "the scratch worker failed (exit 1): RuntimeError: scratch could not start"),
        ("command", "the keras/tensorflow worker failed (exit 3): ValueError: fit blew up"),
        ("garbage", "the keras/tensorflow worker sent 'hello'"),
    ],
)
def test_a_failing_worker_is_one_line_and_every_worker_stops(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    message: str,
) -> None:
    monkeypatch.setattr(bench, "measure_sgemm", lambda: bench.Sgemm(8, (1.0,)))
    monkeypatch.setattr(
        bench,
        "_worker_command",
        lambda name, config: [sys.executable, "-c", FAKE_WORKER, name, mode, str(tmp_path)],
    )
    out_json = tmp_path / "b.json"
    outputs = ["--json", str(out_json), "--plot", str(tmp_path / "b.png")]
    code, _, err = run(capsys, "bench", "--backends", "tensorflow", "--repeats", "1", *outputs)
    assert (code, err) == (2, f"lenet-parity: error: {message}\n")
    assert not out_json.exists()
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2
    assert not any(_alive(pid) for pid in pids)


# -- one real run ------------------------------------------------------------------------------
@pytest.mark.skipif(
    not keras_backends.is_installed("tensorflow"), reason="needs Keras on TensorFlow"
)
def test_a_tiny_real_run_writes_the_json_and_the_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_json, out_plot = tmp_path / "bench.json", tmp_path / "bench.png"
    code, out, err = run(
        capsys,
        "bench",
        "--backends",
        "tensorflow",
        "--repeats",
        "2",
        "--digits",
        "512",
        "--json",
        str(out_json),
        "--plot",
        str(out_plot),
    )
    assert (code, err) == (0, "")
    assert "keras/tensorflow" in out
    assert "1.517 MFLOP/image training" in out
    assert out_plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    record = json.loads(out_json.read_text("utf-8"))
    assert record["command"] == "bench"
    assert (record["train_digits"], record["heldout_digits"]) == (512, 2000)
    assert record["config"] == {
        "backends": ["tensorflow"],
        "epochs": 1,
        "repeats": 2,
        "batch_size": 256,
        "digits": 512,
        "seed": 0,
    }
    assert {"cpu", "cpu_count", "numpy", "blas", "platform"} <= record["machine"].keys()
    assert record["flops"]["training_per_image"] == 1_517_040
    assert len(record["sgemm"]["seconds"]) == bench.SGEMM_REPEATS
    scratch_run, keras_run = record["implementations"]
    assert (scratch_run["name"], keras_run["name"]) == ("scratch", "tensorflow")
    assert keras_run["environment"]["backend"] == "tensorflow"
    for result in (scratch_run, keras_run):
        assert np.shape(result["epoch_seconds"]) == (2, 1)
        assert np.shape(result["predict_seconds"]) == (2,)
        assert result["max_rss_mb"] >= result["rss_start_mb"] > 0
        assert all(math.isfinite(v) for v in result["summary"].values() if not isinstance(v, list))
    assert scratch_run["summary"]["scratch_over_this"] == 1.0
    # the same weights and the same two batches per epoch: both see (nearly) the same loss
    np.testing.assert_allclose(scratch_run["epoch_losses"], keras_run["epoch_losses"], rtol=1e-3)
