"""Every Keras backend as a reference: choosing one, the loss path that follows it, what Keras
computes differently on each, and the cross-backend matrix."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import on_backend
import pandas as pd
import pytest

import reference
import scratch
from compare.cli import main
from compare.errors import InputError, JudgeUnavailable
from compare.inputs.atomic import REPORT_MARKER
from compare.inputs.weights import initial_weights
from compare.judge.tolerances import Envelope, Tolerance, between_references
from compare.output.text import summary
from compare.parity.run import check_parity
from compare.sides import backends as keras_backends
from compare.tools import matrix as cross

pytestmark = pytest.mark.keras

OTHERS = [b for b in keras_backends.BACKENDS if b != on_backend.NAME]


# -- choosing a backend ------------------------------------------------------------------------
def test_the_running_backend_can_be_chosen_and_no_other() -> None:
    assert keras_backends.choose(on_backend.NAME) == on_backend.NAME
    for other in OTHERS:
        if keras_backends.is_installed(other):
            with pytest.raises(InputError, match=f"the {other} backend needs a new process"):
                keras_backends.choose(other)


def test_unknown_backends_are_refused() -> None:
    with pytest.raises(InputError, match="unknown Keras backend 'theano'"):
        keras_backends.require("theano")
    with pytest.raises(InputError, match="unknown Keras backend 'mxnet'"):
        keras_backends.parse_list([f"{on_backend.NAME},mxnet"])


def test_a_missing_backend_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = keras_backends.importlib.util.find_spec
    monkeypatch.setattr(
        keras_backends.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "jax" else real(name, *a),
    )
    for argv in (["check", "--backend", "jax"], ["matrix", "--backends", "jax"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "the jax backend needs jax, which is not installed" in err
        assert "pip install 'lenet-parity[jax]'" in err


def test_child_processes_get_the_backend_and_jax_its_64_bit_types() -> None:
    env = keras_backends.child_env("jax", {"PATH": "/bin", "KERAS_BACKEND": "torch"})
    assert env == {"PATH": "/bin", "KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"}
    assert keras_backends.child_env("torch", {})["KERAS_BACKEND"] == "torch"


@pytest.mark.parametrize("backend", OTHERS)
def test_check_runs_on_another_installed_backend_in_its_own_process(backend: str) -> None:
    if not keras_backends.is_installed(backend):
        pytest.skip(f"the {backend} backend is not installed here (tox -e keras-{backend})")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "compare.cli",
            "check",
            "--backend",
            backend,
            "--dtype",
            "float64",
            "--epochs",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # 31 checks, the two conv biases' finite differences one-sided (relu kinks)
    passed = "PASS: scratch matches Keras on all 31 compared checks (keras-docs, float64"
    assert passed in done.stdout
    assert f", {backend})" in done.stdout


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_check_on_jax_or_torch_does_not_import_tensorflow(backend: str) -> None:
    """keras.utils.set_random_seed imports TensorFlow whenever it is installed; the reference
    seeds without it (reference.model.seed_host), so TensorFlow's start-up stays out."""
    if not keras_backends.is_installed(backend):
        pytest.skip(f"the {backend} backend is not installed here (tox -e keras-{backend})")
    program = (
        "import sys; from compare.parity.run import check_parity; "
        "assert check_parity('keras-docs', 'float32', epochs=0).passed; "
        "print('tensorflow imported:', 'tensorflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=keras_backends.child_env(backend, dict(os.environ)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "tensorflow imported: False"


# -- what each backend computes ------------------------------------------------------------------
def _saturated(dtype: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Weights whose softmax saturates (output kernel ×300): probabilities far below 1e-7, so
    Keras's two cross-entropy paths part; a batch of random images with random labels."""
    weights = initial_weights("keras-docs", dtype, 0)
    weights["output/kernel"] = weights["output/kernel"] * 300
    rng = np.random.default_rng(0)
    x = rng.random((16, 28, 28, 1)).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 16)]
    return weights, x, y


def test_on_a_saturated_softmax_each_backend_matches_its_own_loss_path() -> None:
    weights, x, y = _saturated("float64")
    model = reference.build_lenet5("keras-docs", "float64")
    reference.set_weights(model, weights)
    probs = reference.layer_outputs(model, x)["output"]
    # saturated: some digits give their true class a probability below the clip's 1e-7
    assert (probs * y).sum(axis=1).min() < 1e-7
    keras_loss, keras_grads, _ = reference.backend().gradients(model, x, y)
    results = {}
    for path in ("logits", "probabilities"):
        ours = scratch.build_lenet5("keras-docs", dtype="float64", loss_path=path)  # type: ignore[arg-type]
        ours.set_weights(weights)
        loss, grads, _ = ours.loss_and_all_gradients(x, y)
        results[path] = (float(loss), grads["output/kernel"].copy())
    own = reference.backend().LOSS_PATH
    other = "probabilities" if own == "logits" else "logits"
    assert own == ("logits" if on_backend.NAME == "tensorflow" else "probabilities")
    # its own path: float noise (torch computes the Dense matmuls in float32, and the ×300
    # kernel amplifies it: 1e-5 relative to the loss and to the gradient's largest entry)
    theirs = keras_grads["output/kernel"]
    np.testing.assert_allclose(results[own][0], keras_loss, rtol=1e-5)
    np.testing.assert_allclose(results[own][1], theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())
    # the other path: a different loss altogether (the clip caps -log p at -log 1e-7 = 16.1)
    assert abs(results[other][0] - float(keras_loss)) > 0.1 * abs(float(keras_loss))
    assert np.abs(results[other][1] - keras_grads["output/kernel"]).max() > 1e-3


def test_the_keras_ops_that_compute_float64_in_float32_are_the_declared_ones() -> None:
    """Of the ops LeNet-5 uses, which ones Keras computes in float32 for float64 tensors on this
    backend: tanh on JAX, matmul on torch, none on TensorFlow (docs/backends.md). Their
    float32 rounding is why the float64 tolerances of JAX and torch are float32-sized."""
    a, image, kernel = np.ones((2, 2)), np.ones((1, 6, 6, 1)), np.ones((3, 3, 1, 2))
    ops = keras.ops
    results = {
        "matmul": ops.matmul(a, a),
        "add": ops.add(a, a),
        "relu": ops.relu(a),
        "tanh": ops.tanh(a),
        "softmax": ops.softmax(a),
        "conv": ops.conv(image, kernel),
        "average_pool": ops.average_pool(image, 2, 2),
    }
    in_float32 = {
        op for op, t in results.items() if keras.backend.standardize_dtype(t.dtype) == "float32"
    }
    assert in_float32 == set(reference.backend().FLOAT64_COMPUTED_IN_FLOAT32)
    assert on_backend.EXACT_FLOAT64 is ("matmul" not in in_float32)


# -- the matrix ----------------------------------------------------------------------------------
def test_two_references_are_judged_against_the_sum_of_their_tolerances() -> None:
    a = {
        ("forward", "conv1"): Tolerance(1e-6, 1e-5),
        ("training", "step loss"): Envelope((1, 10, 32), (1e-6, 2e-6, 3e-6), (0.1, 0.2, 0.3)),
    }
    b = {
        ("forward", "conv1"): Tolerance(2e-6, 1e-5),
        ("training", "step loss"): Envelope((1, 32, 160), (1e-5, 2e-5, 1.0), (0.1, 0.1, 0.9)),
    }
    both = between_references(a, b)
    assert both["forward", "conv1"] == Tolerance(3e-6, 2e-5)
    env = both["training", "step loss"]
    assert isinstance(env, Envelope)
    assert env.at == (1, 10, 32)  # up to the last step both reach
    assert env.atol == pytest.approx((1.1e-5, 2.2e-5, 2.3e-5))
    assert env.rtol == pytest.approx((0.2, 0.3, 0.4))


@pytest.fixture(scope="module")
def run_here() -> cross._Run:
    verdict = check_parity("keras-docs", "float64", epochs=1)
    assert verdict.passed, summary(verdict)
    return cross._Run(verdict.as_dict(), verdict.pairs)


def test_backend_vs_backend_names_the_check_where_they_part(
    run_here: cross._Run, tmp_path: Path
) -> None:
    run_here.save(tmp_path / "run")
    loaded = cross._Run.load(tmp_path / "run")  # through the files, without pickle
    # A second "backend" whose fc2 output is off by 1e-3 relative: a real disagreement, far
    # beyond the float32-sized float64 tolerances of JAX and torch (docs/backends.md).
    shifted = [
        dataclasses.replace(p, expected=p.expected * (1 + 1e-3))
        if (p.kind, p.name) == ("forward", "fc2")
        else p
        for p in loaded.pairs
    ]
    config = cross.MatrixConfig(backends=("tensorflow", "jax"), dtypes=("float64",))
    results = {
        "tensorflow": {("keras-docs", "float64"): loaded},
        "jax": {("keras-docs", "float64"): cross._Run(loaded.verdict, shifted)},
    }
    matrix = cross.build(config, results)
    labels = [c.label for c in matrix.cells]
    assert labels == ["scratch vs tensorflow", "scratch vs jax", "tensorflow vs jax"]
    between = matrix.cells[-1]
    assert [c.name for c in between.checks if c.failed] == ["fc2"]
    assert {c.kind for c in between.checks} == {"forward", "gradient", "training"}
    assert not matrix.passed and "tensorflow vs jax keras-docs float64" in matrix.summary()
    same = cross.build(config, {"tensorflow": results["tensorflow"], "jax": results["tensorflow"]})
    assert same.passed and same.cells[-1].largest("forward") == 0.0


def test_the_matrix_report_is_written(run_here: cross._Run, tmp_path: Path) -> None:
    config = cross.MatrixConfig(backends=(on_backend.NAME,), dtypes=("float64",))
    matrix = cross.build(config, {on_backend.NAME: {("keras-docs", "float64"): run_here}})
    out = cross.write_matrix(matrix, tmp_path / "matrix")
    assert {p.name for p in out.iterdir()} == {
        "matrix.json",
        "matrix.csv",
        "report.md",
        "index.html",
        "heatmap.png",
        REPORT_MARKER,
    }
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "matrix.json").read_text("utf-8"))
    assert record["passed"] is True and len(record["cells"]) == 1
    assert "scratch vs " + on_backend.NAME in (out / "report.md").read_text("utf-8")
    cross.write_matrix(matrix, tmp_path / "matrix")
    assert (tmp_path / "matrix-previous" / "matrix.json").is_file()  # the last one is kept


def test_matrix_rejects_bad_input_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "--backends", "theano"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["matrix", "--out", "/nonexistent/folder/matrix"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_failing_child_is_one_line_naming_the_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["matrix", "--backends", on_backend.NAME, "--data", str(tmp_path / "none.npz")]
    assert main([*argv, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the {on_backend.NAME} run failed (exit 2)" in err
    assert not (tmp_path / "m").exists()


BUILDER = """
import keras


def build():
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(3, 5, strides=2, name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.02), loss="categorical_crossentropy")
    return model
"""


def test_the_matrix_runs_any_model_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zoo model, a FILE.keras given relative to the current folder and a MODULE:BUILDER
    found in it: each reaches the child intact, is judged by the float64 judge, and is named
    in the report by its name (a file by its file name)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny_builder.py").write_text(BUILDER)
    namespace: dict[str, Any] = {}
    exec(BUILDER, namespace)
    (tmp_path / "models").mkdir()
    with warnings.catch_warnings():  # Keras 3.15's variables and NumPy 2's __array__(copy=)
        warnings.simplefilter("ignore", DeprecationWarning)
        namespace["build"]().save(tmp_path / "models" / "tiny.keras")
    argv = ["matrix", "--model", "models/tiny.keras", "--model", "tiny_builder:build"]
    argv += ["--model", "seed000-cnn", "--dtype", "float64", "--epochs", "0"]
    code = main([*argv, "--backends", on_backend.NAME, "--out", "m"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert (
        f"PASS: all 3 comparisons over {on_backend.NAME} (tiny.keras, tiny_builder:build, "
        "seed000-cnn; float64; 0 epochs of training) agree"
    ) in out
    record = json.loads((tmp_path / "m" / "matrix.json").read_text("utf-8"))
    models = [str(tmp_path / "models" / "tiny.keras"), "tiny_builder:build", "seed000-cnn"]
    assert record["config"]["models"] == models
    assert [(c["model"], c["judge"], c["passed"]) for c in record["cells"]] == [
        (m, "float64", True) for m in models
    ]
    md = (tmp_path / "m" / "report.md").read_text("utf-8")
    page = (tmp_path / "m" / "index.html").read_text("utf-8")
    for name in ("tiny.keras", "tiny_builder:build", "seed000-cnn"):
        assert f"| {name} " in md and f"<td>{name}</td>" in page
    assert "models/tiny.keras" not in md and "models/tiny.keras" not in page


def test_a_child_imports_a_builder_from_where_the_caller_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MODULE:BUILDER (or MODULE:FACTORY) the caller imports from a folder on its sys.path
    is found by the child through PYTHONPATH; the interpreter's own folders are not added."""
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "lib" / "pkg" / "__init__.py").write_text("raise RuntimeError('not imported')\n")
    (tmp_path / "impl").mkdir()
    (tmp_path / "impl" / "mine.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.syspath_prepend(str(tmp_path / "impl"))
    monkeypatch.setenv("PYTHONPATH", "/already/there")
    sources = ("pkg.models:build", "json:loads", "numpy:ones", "absent_module:build")
    config = cross.MatrixConfig(backends=(on_backend.NAME,), models=("seed000-cnn", *sources))
    assert cross.import_roots(config) == [str(tmp_path / "lib")]
    config = dataclasses.replace(config, implementation="mine:make")
    roots = [str(tmp_path / "lib"), str(tmp_path / "impl")]
    assert cross.import_roots(config) == roots
    env = cross._child_env(on_backend.NAME, config)
    assert env["PYTHONPATH"] == os.pathsep.join([*roots, "/already/there"])
    assert env["KERAS_BACKEND"] == on_backend.NAME


def test_model_files_reach_the_child_as_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = cross.MatrixConfig(
        backends=(on_backend.NAME,),
        models=("a.keras", "seed000-cnn", "./a.keras", "lib/b.py:build", "mod:build"),
    )
    assert config.models == (
        str(tmp_path / "a.keras"),
        "seed000-cnn",
        f"{tmp_path / 'lib' / 'b.py'}:build",
        "mod:build",
    )
    assert cross.MatrixConfig(**dataclasses.asdict(config)) == config  # as the child reads it
    with pytest.raises(InputError, match="the matrix needs at least one model"):
        cross.MatrixConfig(backends=(on_backend.NAME,), models=())


REFUSED = (
    "the float64 judge of keras-docs in float32 on torch runs on tensorflow, because Keras "
    "computes matmul (Dense) in float32 there even in a float64 model, and tensorflow is not "
    "installed: pip install 'lenet-parity[tensorflow]'"
)


def test_a_refused_check_is_n_a_and_the_matrix_goes_on(
    run_here: cross._Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A check the backend refuses (the float64 judge's refusal, raised here by a stand-in for
    the check, whether or not a real backend still refuses) is a comparison not made: n/a with
    its reason, and every comparison with that backend too; the matrix goes on and passes when
    everything it compared agrees. Any other error of a check stops the child (exit 2)."""

    def refuse(model: str, dtype: str, **options: Any) -> Any:
        raise JudgeUnavailable(REFUSED)

    monkeypatch.setattr(cross, "check_parity", refuse)
    config = cross.MatrixConfig(backends=(on_backend.NAME,), dtypes=("float32",))
    argv = [on_backend.NAME, json.dumps(dataclasses.asdict(config)), str(tmp_path / "child")]
    assert cross.child_main(argv) == 0
    assert capsys.readouterr().out == f"REFUSED: {REFUSED}\n"
    refused = cross._Run.load(
        tmp_path / "child" / cross._job_folder(config, "keras-docs", "float32")
    )
    assert refused.refused == REFUSED and refused.pairs == []
    assert refused.verdict["environment"]["backend"] == on_backend.NAME

    def fail(model: str, dtype: str, **options: Any) -> Any:
        raise InputError("no such data file")

    monkeypatch.setattr(cross, "check_parity", fail)
    assert cross.child_main([*argv[:2], str(tmp_path / "again")]) == 2
    assert capsys.readouterr().err == "lenet-parity: error: no such data file\n"

    config = cross.MatrixConfig(backends=("tensorflow", "jax"))
    results = {
        "tensorflow": {("keras-docs", "float32"): run_here, ("keras-docs", "float64"): run_here},
        "jax": {("keras-docs", "float32"): refused, ("keras-docs", "float64"): run_here},
    }
    matrix = cross.build(config, results)
    assert [(c.label, c.dtype, c.refused) for c in matrix.cells if c.refused] == [
        ("scratch vs jax", "float32", REFUSED),
        ("tensorflow vs jax", "float32", "the jax check was refused"),
    ]
    assert matrix.passed
    assert matrix.summary().startswith("PASS: the 4 made of 6 comparisons over tensorflow, jax")
    assert matrix.summary().endswith(
        "2 not made (n/a): scratch vs jax keras-docs float32; tensorflow vs jax keras-docs float32"
    )
    assert matrix.frame()["result"].tolist()[1] == f"n/a: {REFUSED}"
    out = cross.write_matrix(matrix, tmp_path / "matrix")
    assert f"n/a: {REFUSED}" in (out / "report.md").read_text("utf-8")
    assert (out / "index.html").read_text("utf-8").count('<tr class="none">') == 2
    csv = pd.read_csv(out / "matrix.csv", keep_default_na=False)
    assert csv[csv["status"] == "n/a"]["problem"].tolist()[:2] == [
        REFUSED,
        "the jax check was refused",
    ]

    # every check refused: a panel without a comparison; a model the float64 judge judges:
    # no tolerance between two backends
    results["tensorflow"]["keras-docs", "float32"] = refused
    by_judge = dict(run_here.verdict, config=dict(run_here.verdict["config"], judge="float64"))
    float64_run = cross._Run(by_judge, run_here.pairs)
    results["tensorflow"]["keras-docs", "float64"] = results["jax"]["keras-docs", "float64"] = (
        float64_run
    )
    matrix = cross.build(config, results)
    assert [c.judge for c in matrix.cells] == [None, None, None, "float64", "float64", None]
    assert matrix.cells[-1].refused == (
        "no tolerance between two backends: the calibrated table knows only the LeNet-5s"
    )
    assert matrix.passed
    cross.write_matrix(matrix, tmp_path / "matrix")  # the heatmap draws an empty panel


def test_float64_on_jax_without_x64_is_refused() -> None:
    """Without JAX_ENABLE_X64, JAX computes a float64 model in float32: refused, not guessed.
    (The command line sets it itself; this is the Python API in a fresh process.)"""
    if not keras_backends.is_installed("jax"):
        pytest.skip("the jax backend is not installed here (tox -e keras-jax)")
    code = (
        "from compare.errors import InputError\n"
        "from compare.parity.run import check_parity\n"
        "try:\n"
        "    check_parity(dtype='float64', epochs=0)\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
    )
    env = {**keras_backends.child_env("jax"), "JAX_ENABLE_X64": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "float64 on the jax backend needs JAX_ENABLE_X64=1" in done.stdout
