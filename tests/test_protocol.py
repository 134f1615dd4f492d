"""The implementation protocol (docs/protocol.md): its layouts, its errors and its statuses.

The implementations here are small wrappers written for the tests: one channels-first model
that does its own NCHW/OIHW work with explicit transposes (an oracle for
compare/sides/layout.py, which it never uses), and channels-last wrappers of scratch with a
method left out, a wrong return, a bug or an exception planted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import scratch
from compare import ModelSpec, check_parity
from compare.cli import main
from compare.errors import ImplementationError, ProtocolError
from compare.sides import scratch_side
from compare.sides.implementation import load_factory
from compare.sides.layout import LayoutAdapter, flat_order
from compare.sides.protocol import LayerSpec

pytestmark = pytest.mark.keras

ROOT = Path(__file__).resolve().parents[1]


# -- a channels-first implementation, written independently of compare/sides/layout.py --------
def _hwio(oihw: np.ndarray) -> np.ndarray:
    return oihw.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)


def _oihw(hwio: np.ndarray) -> np.ndarray:
    return hwio.transpose(3, 2, 0, 1)


class ChannelsFirst:
    """scratch's model behind NCHW / OIHW / a (C, H, W) Flatten, with its own names."""

    layout = "channels_first"

    def __init__(self, spec: ModelSpec) -> None:
        self.weight_names = {"conv1/kernel": "W1", "fc1/kernel": "W3"}
        self.inner = scratch_side.ScratchImplementation(spec)
        flatten = spec.layer("flatten")
        self.hwc = flatten.input_shape  # (H, W, C) before the flatten

    def _rows_to_hwc(self, w: np.ndarray) -> np.ndarray:
        h, w_, c = self.hwc
        return w.reshape(c, h, w_, -1).transpose(1, 2, 0, 3).reshape(h * w_ * c, -1)

    def _rows_to_chw(self, w: np.ndarray) -> np.ndarray:
        h, w_, c = self.hwc
        return w.reshape(h, w_, c, -1).transpose(2, 0, 1, 3).reshape(h * w_ * c, -1)

    def _to_keras(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = {"W1": "conv1/kernel", "W3": "fc1/kernel"}
        out = {}
        for key, w in weights.items():
            key = names.get(key, key)
            if w.ndim == 4:
                w = _hwio(w)
            elif key == "fc1/kernel":
                w = self._rows_to_hwc(w)
            out[key] = np.ascontiguousarray(w)
        return out

    def _from_keras(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = {"conv1/kernel": "W1", "fc1/kernel": "W3"}
        out = {}
        for key, w in weights.items():
            if w.ndim == 4:
                w = _oihw(w)
            elif key == "fc1/kernel":
                w = self._rows_to_chw(w)
            out[names.get(key, key)] = w
        return out

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self.inner.set_weights(self._to_keras(weights))

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.inner.layer_outputs(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
        result = {}
        for name, y in outputs.items():
            if y.ndim == 4:
                y = y.transpose(0, 3, 1, 2)  # NHWC -> NCHW
            elif name == "flatten":
                h, w, c = self.hwc
                y = y.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(y), -1)
            result[name] = y
        return result

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[Any, dict[str, np.ndarray], np.ndarray]:
        loss, grads, dx = self.inner.loss_and_gradients(
            np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y
        )
        return loss, self._from_keras(grads), dx.transpose(0, 3, 1, 2)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.inner.train_step(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y)

    def get_weights(self) -> dict[str, np.ndarray]:
        return self._from_keras(self.inner.get_weights())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_channels_first_implementation_with_its_own_names_passes(dtype: str) -> None:
    verdict = check_parity("keras-docs", dtype, implementation=ChannelsFirst)
    assert verdict.passed, [(c.kind, c.name, c.problem) for c in verdict.checks if c.failed]
    assert verdict.counts().get("pass", 0) == len(verdict.checks)
    assert verdict.config.implementation.endswith(":ChannelsFirst")


# -- the layout conversions, against the oracle above -------------------------------------------
def _spec() -> ModelSpec:
    layers = (
        LayerSpec(
            "conv",
            "Conv2D",
            {"activation": "relu"},
            (6, 5, 2),
            (4, 3, 3),
            {"kernel": (3, 3, 2, 3), "bias": (3,)},
        ),
        LayerSpec("flatten", "Flatten", {}, (4, 3, 3), (36,)),
        LayerSpec(
            "dense",
            "Dense",
            {"activation": "softmax"},
            (36,),
            (7,),
            {"kernel": (36, 7), "bias": (7,)},
        ),
    )
    return ModelSpec("tiny", "float64", 0.1, 0.0, False, "logits", 0, 2, (6, 5, 2), layers, 7)


def test_every_conversion_round_trips_and_matches_the_oracle() -> None:
    rng = np.random.default_rng(0)
    adapter = LayoutAdapter(_spec(), "channels_first")
    x = rng.normal(size=(2, 6, 5, 2))
    assert np.array_equal(adapter.input_to(x), x.transpose(0, 3, 1, 2))
    assert np.array_equal(adapter.input_from(adapter.input_to(x)).array, x)
    kernel = rng.normal(size=(3, 3, 2, 3))
    assert np.array_equal(adapter.weight_to("conv/kernel", kernel), _oihw(kernel))
    assert np.array_equal(adapter.weight_from("conv/kernel", _oihw(kernel)).array, kernel)
    flat = rng.normal(size=(2, 36))  # Keras's (H, W, C) order of a (4, 3, 3) map
    chw = flat.reshape(2, 4, 3, 3).transpose(0, 3, 1, 2).reshape(2, 36)
    assert np.array_equal(adapter.output_to("flatten", flat), chw)
    assert np.array_equal(adapter.output_from("flatten", chw).array, flat)
    dense = rng.normal(size=(36, 7))
    rows = dense.reshape(4, 3, 3, 7).transpose(2, 0, 1, 3).reshape(36, 7)
    assert np.array_equal(adapter.weight_to("dense/kernel", dense), rows)
    assert np.array_equal(adapter.weight_from("dense/kernel", rows).array, dense)
    # the same flat vector times the permuted rows gives the same output
    assert np.allclose(chw @ rows, flat @ dense)
    assert np.array_equal(flat_order((4, 3, 3))[:4], [0, 3, 6, 9])


def test_a_shape_the_layout_does_not_imply_comes_back_unconverted() -> None:
    adapter = LayoutAdapter(_spec(), "channels_first")
    nhwc = np.zeros((2, 4, 3, 3))  # channels-last, from a channels-first implementation
    back = adapter.output_from("conv", nhwc)
    assert not back.converted and back.array is nhwc
    assert adapter.weight_from("conv/kernel", np.zeros((3, 3, 2, 3))).converted is False


def test_channels_last_converts_nothing() -> None:
    adapter = LayoutAdapter(_spec(), "channels_last")
    x = np.ones((2, 6, 5, 2))
    assert adapter.input_to(x) is x
    assert adapter.weight_from("dense/kernel", np.ones((36, 7))).converted


# -- statuses ---------------------------------------------------------------------------------
class InferenceOnly:
    """A port with only the two required methods, leaving out two layers."""

    def __init__(self, spec: ModelSpec) -> None:
        self.inner = scratch_side.ScratchImplementation(spec)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self.inner.set_weights(weights)

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.inner.layer_outputs(x)
        del outputs["pool1"], outputs["flatten"]
        return outputs


def test_an_inference_port_gets_forward_checks_and_the_rest_skipped() -> None:
    verdict = check_parity("keras-docs", "float32", implementation=InferenceOnly)
    status = {(c.kind, c.name): c.status for c in verdict.checks}
    assert status["forward", "pool1"] == status["forward", "flatten"] == "not provided"
    assert status["forward", "conv2"] == status["forward", "output"] == "pass"
    assert status["gradient", "fc1/kernel"] == "skipped"
    assert status["training", "step loss"] == "skipped"
    assert verdict.passed and verdict.first_failure is None
    record = verdict.as_dict()
    assert record["schema_version"] == 3
    assert record["counts"]["not provided"] == 2 and "fail" not in record["counts"]
    skipped = next(c for c in record["checks"] if c["status"] == "skipped")
    assert skipped["passed"] is False and "loss_and_gradients" in skipped["problem"]


class NoLastLayer(InferenceOnly):
    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.inner.layer_outputs(x)
        del outputs["output"]
        return outputs


def test_a_missing_last_layer_output_fails() -> None:
    verdict = check_parity("keras-docs", "float32", epochs=0, implementation=NoLastLayer)
    first = verdict.first_failure
    assert (
        not verdict.passed
        and first is not None
        and (first.kind, first.name) == ("forward", "output")
    )


class Planted(scratch_side.ScratchImplementation):
    """scratch with one planted bug, chosen by ``BUG``."""

    BUG = ""

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs = super().layer_outputs(x)
        if self.BUG == "fc2-float64":
            outputs["fc2"] = outputs["fc2"].astype(np.float64)
        if self.BUG == "conv2-nchw":
            outputs["conv2"] = outputs["conv2"].transpose(0, 3, 1, 2)
        return outputs

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> Any:
        loss, grads, dx = super().loss_and_gradients(x, y)
        if self.BUG == "no-fc1-bias-grad":
            del grads["fc1/bias"]
        if self.BUG == "two-tuple":
            return loss, grads
        return loss, grads, dx


@pytest.mark.parametrize(
    ("bug", "kind", "name", "problem"),
    [
        ("fc2-float64", "forward", "fc2", "dtype float64 != expected float32"),
        ("conv2-nchw", "forward", "conv2", "shape (256, 16, 8, 8) != expected (256, 8, 8, 16)"),
        ("no-fc1-bias-grad", "gradient", "fc1/bias", "not returned by loss_and_gradients()"),
    ],
)
def test_wrong_shapes_dtypes_and_missing_gradients_are_failed_checks(
    bug: str, kind: str, name: str, problem: str
) -> None:
    planted = type("Bug", (Planted,), {"BUG": bug})
    verdict = check_parity("keras-docs", "float32", epochs=0, implementation=planted)
    first = verdict.first_failure
    assert first is not None and (first.kind, first.name, first.problem) == (kind, name, problem)


def test_a_two_tuple_leaves_dloss_dinput_not_provided() -> None:
    planted = type("Bug", (Planted,), {"BUG": "two-tuple"})
    verdict = check_parity("keras-docs", "float32", epochs=0, implementation=planted)
    status = {(c.kind, c.name): c.status for c in verdict.checks}
    assert status["gradient", "input"] == status["finite-difference", "input"] == "not provided"
    assert verdict.passed


# -- breaches (exit 2) and the user's own exceptions (exit 3) --------------------------------------
class NoSetWeights:
    def __init__(self, spec: ModelSpec) -> None: ...

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {}


class ReturnsAList(InferenceOnly):
    def layer_outputs(self, x: np.ndarray) -> list[np.ndarray]:  # type: ignore[override]
        return list(self.inner.layer_outputs(x).values())


class ReturnsStrings(InferenceOnly):
    def layer_outputs(self, x: np.ndarray) -> dict[str, Any]:
        return {"conv1": "not an array"}


class BadLoss(Planted):
    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> Any:
        return {"loss": 1.0}


class BadLayout(InferenceOnly):
    layout = "NCHW"


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (NoSetWeights, "lacks the required method set_weights()"),
        (ReturnsAList, "layer_outputs() returned list; expected a mapping"),
        (ReturnsStrings, "layer_outputs() returned str for conv1; expected a NumPy array"),
        (BadLoss, "loss_and_gradients() returned dict; expected a tuple"),
        (BadLayout, "layout must be one of channels_last, channels_first"),
    ],
)
def test_protocol_breaches_are_one_line_naming_the_method(factory: Any, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        check_parity("keras-docs", "float32", epochs=0, implementation=factory)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_exception_in_the_users_code_keeps_its_traceback() -> None:
    class Raises(InferenceOnly):
        def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
            raise ZeroDivisionError("my bug")

    with pytest.raises(
        ImplementationError, match=r"ZeroDivisionError in layer_outputs\(\)"
    ) as info:
        check_parity("keras-docs", "float32", epochs=0, implementation=Raises)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_the_cli_exits_2_on_a_breach_and_3_on_an_exception(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        """
        class Mine:
            def __init__(self, spec):
                self.spec = spec
            def set_weights(self, weights):
                pass
            def layer_outputs(self, x):
                return 1 / 0

        def build(spec):
            return Mine(spec)

        def broken(spec):
            return object()
        """,
    )
    assert main(["check", "--epochs", "0", "--implementation", f"{path}:broken"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks the required method set_weights()" in err
    assert main(["check", "--epochs", "0", "--implementation", f"{path}:build"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "return 1 / 0" in err
    assert err.strip().splitlines()[-1].startswith("lenet-parity: error: the implementation raised")
    for bad, message in (
        (f"{path}:nothing", "has no 'nothing'"),
        (f"{tmp_path / 'absent.py'}:build", "does not exist"),
        ("no_such_module_here:build", "cannot import the implementation module"),
        ("nocolon", "takes MODULE:FACTORY"),
    ):
        assert main(["check", "--epochs", "0", "--implementation", bad]) == 2, bad
        assert message in capsys.readouterr().err


def test_a_module_is_found_in_the_current_folder_without_touching_sys_path(tmp_path: Path) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "mypkg" / "model.py").write_text(
        "from compare.sides.scratch_side import build\n", encoding="utf-8"
    )
    code = (
        "import sys; before = list(sys.path); "
        "from compare.sides.implementation import load_factory; "
        "f = load_factory('mypkg.model:build'); "
        "assert sys.path == before; print(f.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "build"


def test_load_factory_takes_an_importable_module() -> None:
    assert load_factory("compare.sides.scratch_side:build") is scratch_side.build


def test_dry_run_and_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--dry-run", "--implementation", "compare.sides.scratch_side:build"]) == 0
    out = capsys.readouterr().out
    assert "no protocol breach" in out and "loss_and_gradients(): ok, 10 gradients" in out
    path = _write(
        tmp_path,
        """
        class Mine:
            def __init__(self, spec):
                pass
            def set_weights(self, weights):
                pass
            def layer_outputs(self, x):
                return [x]

        def build(spec):
            return Mine(spec)
        """,
    )
    assert main(["check", "--dry-run", "--implementation", f"{path}:build"]) == 2
    assert "layer_outputs() returned list" in capsys.readouterr().out
    assert main(["spec", "--json", str(tmp_path / "spec.json")]) == 0
    out = capsys.readouterr().out
    assert "conv1/kernel (weights in, grads out)" in out and "(5, 5, 1, 6)" in out
    assert "(6, 1, 5, 5)" in out  # the same kernel, channels-first


def test_scratch_is_reached_through_the_same_protocol() -> None:
    assert scratch_side.ScratchImplementation.layout == "channels_last"
    model = scratch_side.mirror(
        ModelSpec(
            "one",
            "float32",
            0.1,
            0.0,
            False,
            "logits",
            0,
            1,
            (4,),
            (
                LayerSpec(
                    "d",
                    "Dense",
                    {"units": 3, "activation": "softmax"},
                    (4,),
                    (3,),
                    {"kernel": (4, 3), "bias": (3,)},
                ),
            ),
            3,
        )
    )
    assert isinstance(model, scratch.Sequential) and model.get_layer("d").units == 3


def test_the_spec_has_keras_own_config_values() -> None:
    """The spec reads each layer's settings off the layer (get_config() would import
    TensorFlow on every backend); they are the values get_config() gives."""
    import reference
    from compare.sides.keras_side import layer_config

    model = reference.build_lenet5("classic", "float32")
    for layer in model.layers:
        ours, theirs = layer_config(layer), layer.get_config()
        plain = {k: json.loads(json.dumps(v)) for k, v in theirs.items() if k in ours}
        assert ours == plain, layer.name
    assert layer_config(model.layers[0])["activation"] == "tanh"
    assert layer_config(model.layers[0])["padding"] == "same"
