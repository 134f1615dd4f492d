"""The Keras reference in a worker process (compare/sides/remote.py): its messages, its
failures, and a worker on TensorFlow that computes what the reference computes here."""

from __future__ import annotations

import io

import numpy as np
import on_backend
import pytest

from compare.errors import InputError
from compare.sides import remote


def _round_trip(message: object) -> object:
    more, found = remote.read_message(io.BytesIO(remote.pack(message)))
    assert more
    return found


def test_a_message_carries_arrays_dicts_and_numbers_exactly() -> None:
    weights = {"conv1/kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "b": np.zeros(0)}
    message = {
        "op": "call",
        "args": [np.float64(0.1), None, True, "x"],
        "kwargs": {"dropout_masks": {"dropout": np.ones((2, 3), dtype=bool)}},
        "weights": weights,
    }
    found = _round_trip(message)
    assert isinstance(found, dict)
    assert found["op"] == "call" and found["args"] == [0.1, None, True, "x"]
    for key, value in weights.items():
        got = found["weights"][key]
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
    assert found["kwargs"]["dropout_masks"]["dropout"].dtype == np.bool_
    # a tuple comes back a list (JSON), keys keep their order
    assert _round_trip((1, 2)) == [1, 2]
    assert list(_round_trip({"b": 1, "a": 2})) == ["b", "a"]  # type: ignore[call-overload]


def test_a_stream_ends_cleanly_and_a_cut_message_is_an_error() -> None:
    assert remote.read_message(io.BytesIO(b"")) == (False, None)
    framed = remote.pack({"op": "close"})
    with pytest.raises(ValueError, match="cut off"):
        remote.read_message(io.BytesIO(framed[:-5]))
    with pytest.raises(ValueError, match="cut off in its length"):
        remote.read_message(io.BytesIO(framed[:3]))
    with pytest.raises(TypeError, match="cannot carry"):
        remote.pack({"f": object()})


def test_a_pickled_array_is_refused() -> None:
    """Messages are read with allow_pickle=False: an object array cannot come through."""
    buffer = io.BytesIO()
    header = np.frombuffer(b'{"__array__": 0}', dtype=np.uint8)
    np.savez(buffer, header=header, a0=np.array([{"x": 1}], dtype=object))
    payload = buffer.getvalue()
    stream = io.BytesIO(len(payload).to_bytes(8, "big") + payload)
    with pytest.raises(ValueError, match="pickle"):
        remote.read_message(stream)


def test_the_worker_serves_requests_and_answers_errors_in_one_line() -> None:
    """serve() with an unknown request and a call on a reference never opened: each gets one
    reply saying what was wrong, and the loop goes on to the end of its input."""
    requests = io.BytesIO(
        remote.pack({"op": "nonsense"})
        + remote.pack({"op": "call", "handle": 7, "method": "predict", "args": [], "kwargs": {}})
        + remote.pack({"op": "close", "handle": 7})
    )
    replies = io.BytesIO()
    remote.serve(requests, replies)
    replies.seek(0)
    answers = []
    while True:
        more, reply = remote.read_message(replies)
        if not more:
            break
        answers.append(reply)
    assert answers[0] == {"ok": False, "error": "ValueError: unknown request 'nonsense'"}
    assert answers[1]["ok"] is False and answers[1]["error"].startswith("KeyError")
    assert answers[2] == {"ok": True, "value": False}


@pytest.mark.keras
def test_a_worker_that_cannot_build_the_model_fails_in_one_line() -> None:
    with pytest.raises(InputError, match="a worker") as raised:
        remote.RemoteReference("no-such-model", "float64", "tensorflow", {}, seed=0)
    assert "\n" not in str(raised.value)


@pytest.mark.keras
def test_a_worker_on_tensorflow_computes_what_the_reference_computes() -> None:
    """The worker's float64 reference of seed000-cnn on TensorFlow: its outputs, loss and
    gradients equal a TensorFlow reference in this process bit for bit (on TensorFlow), and
    agree to float64 rounding elsewhere (float32's where the backend computes part of the
    model in float32); training steps and weights come back too."""
    from compare.parity.collect import dataset, shared_weights
    from compare.parity.run import configure, prepare, spec_for
    from compare.sides import keras_side
    from compare.sides.keras_side import KerasReference

    config = configure("seed000-cnn", "float64", seed=0, judge="float64", epochs=0)
    backend, _ = prepare(config)
    spec = spec_for(config, backend)
    weights = shared_weights(config, spec)
    data = dataset(config, spec)
    x, y = data.x_train[:16], data.y_train[:16]
    here = KerasReference(config.model, "float64", backend, weights)
    there = remote.RemoteReference(config.model, "float64", "tensorflow", weights, seed=0)
    assert there.backend_name == "tensorflow"
    ours, theirs = here.layer_outputs(x), there.layer_outputs(x)
    assert list(ours) == list(theirs)
    loss, grads, dx = here.loss_and_gradients(x, y)
    r_loss, r_grads, r_dx = there.loss_and_gradients(x, y)
    # bit for bit on TensorFlow; elsewhere to float64's rounding, or to float32's where this
    # backend computes part of the model in float32 even in float64 (torch's Dense matmul)
    inside = keras_side.float32_inside(backend, spec)
    rtol = 0.0 if on_backend.NAME == "tensorflow" else 1e-5 if inside else 1e-12

    def close(found: np.ndarray, expected: np.ndarray) -> None:  # relative to the tensor
        scale = float(np.max(np.abs(expected), initial=0.0))
        np.testing.assert_allclose(found, expected, rtol=0, atol=rtol * scale + 1e-15)

    for name in ours:
        close(theirs[name], ours[name])
    close(np.array(r_loss), np.array(loss))
    for key in grads:
        close(r_grads[key], grads[key])
    if on_backend.NAME == "tensorflow":  # elsewhere max pooling breaks its ties otherwise
        close(r_dx, dx)
    trained = remote.RemoteReference(
        config.model, "float64", "tensorflow", weights, seed=0, training=True, learning_rate=0.1
    )
    before = trained.get_weights()
    step_loss = trained.train_step(x, y)
    after = trained.get_weights()
    assert np.isfinite(step_loss) and set(after) == set(before)
    assert any(not np.array_equal(after[k], before[k]) for k in after)
    assert trained.predict(x).shape == y.shape
    trained.close()
    there.close()
