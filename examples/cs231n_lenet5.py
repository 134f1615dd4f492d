"""LeNet-5 in NumPy, written the way a cs231n student writes a ConvNet.

This is what a *user* of lenet-parity writes: it knows nothing about lenet-parity or its
implementation protocol, needs no Keras and imports nothing but NumPy. ``examples/adapter.py``
is the thin glue that plugs it into
``lenet-parity check --implementation examples/adapter.py:build``.

Conventions (PyTorch's and cs231n's, not Keras's):

- activations are NCHW, conv kernels OIHW ``(out, in, kh, kw)``, dense kernels ``(in, out)``;
- Flatten flattens in (C, H, W) order (``x.reshape(N, -1)`` of an NCHW array);
- the parameters live in one dict ``W1, b1, ..., W5, b5``: the weighted layers, numbered in
  order (two convolutions, then three affine layers for LeNet-5);
- the network is a list of layers ``(kind, param, activation)``, ``kind`` one of "conv",
  "pool" (average pooling), "flatten", "affine" (``lenet5_arch`` writes LeNet-5's by hand,
  ``arch_from_keras`` reads it off a Keras model's layer configs); the last layer ends in
  "softmax";
- every layer is a pair of pure functions: ``*_forward(...) -> (out, cache)`` and
  ``*_backward(dout, cache) -> (dx, dw, db)`` (or ``dx``). Nothing writes into its inputs,
  upstream gradients included;
- the convolution is im2col (``sliding_window_view``) and one matmul; its input gradient is
  col2im, whose only Python loop runs over the kh*kw kernel offsets (no loop over pixels or
  samples anywhere).

Everything is computed in the dtype of the inputs: float32 in, float32 out (constants are
Python scalars, which NumPy 2 casts to the array's dtype; the learning rate and momentum are
cast explicitly, so a NumPy float64 scalar cannot promote a float32 network).

The loss is categorical cross-entropy, the batch mean, along one of two paths:

- ``"logits"``: from the softmax's logits with a stable log-softmax, no clipping;
- ``"probabilities"``: from the probabilities renormalised by their sum and clipped to
  [1e-7, 1 - 1e-7] (zero gradient where clipped), then back through the softmax.

``sgd_step`` is SGD in Keras's form: ``w -= lr * g``; with momentum ``v = mu * v - lr * g;
w += v``; Nesterov ``w += mu * v - lr * g`` (PyTorch's form, ``v = mu * v + g;
w -= lr * v``, is the same only while the learning rate stays constant).

``python examples/cs231n_lenet5.py`` runs a finite-difference gradient check on random data.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

EPSILON = 1e-7  # the clip of the "probabilities" loss path
LOSS_PATHS = ("logits", "probabilities")


def lenet5_arch(activation="relu", conv1_padding="valid"):
    """LeNet-5's layers: conv 6@5x5 -> avgpool 2 -> conv 16@5x5 -> avgpool 2 -> flatten ->
    affine 120 -> affine 84 -> affine 10 softmax. ``"relu", "valid"`` is the Keras
    documentation's version; ``"tanh", "same"`` (a 28x28 conv1 output) the classic one."""
    pool = {"pool_height": 2, "pool_width": 2, "stride": 2}
    conv1_pad = same_pad(5, 5) if conv1_padding == "same" else 0
    return [
        ("conv", {"stride": 1, "pad": conv1_pad}, activation),
        ("pool", pool, "linear"),
        ("conv", {"stride": 1, "pad": 0}, activation),
        ("pool", pool, "linear"),
        ("flatten", {}, "linear"),
        ("affine", {}, activation),
        ("affine", {}, activation),
        ("affine", {}, "softmax"),
    ]


def init_lenet5(rng, dtype="float64", classic=False, num_classes=10):
    """Random LeNet-5 parameters for 1x28x28 inputs (weights ~ N(0, 1/fan_in), zero biases)."""
    flat = 16 * 5 * 5 if classic else 16 * 4 * 4
    shapes = [(6, 1, 5, 5), (16, 6, 5, 5), (flat, 120), (120, 84), (84, num_classes)]
    params = {}
    for i, shape in enumerate(shapes, 1):
        fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
        params[f"W{i}"] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(dtype)
        params[f"b{i}"] = np.zeros(shape[0] if len(shape) == 4 else shape[1], dtype)
    return params


def arch_from_keras(layers):
    """The same list built from a Keras model's layers, given as ``(class_name, config)`` pairs
    (``[(type(la).__name__, la.get_config()) for la in model.layers]``): Conv2D ("valid" or
    "same", stride 1), AveragePooling2D ("valid", non-overlapping), Flatten and Dense (with
    biases), each with its activation. Anything else raises ``NotImplementedError`` rather
    than compute something else."""
    arch = []
    for class_name, c in layers:
        activation = c.get("activation") or "linear"
        if not c.get("use_bias", True) or c.get("groups", 1) != 1:
            raise NotImplementedError(f"{class_name} without a bias or with groups: {dict(c)}")
        if class_name == "Conv2D" and c["padding"] in ("valid", "same"):
            pad = same_pad(*c["kernel_size"]) if c["padding"] == "same" else 0
            for key in ("strides", "dilation_rate"):
                if tuple(c.get(key, (1, 1))) != (1, 1):
                    raise NotImplementedError(f"Conv2D with {key}={c[key]}")
            arch.append(("conv", {"stride": 1, "pad": pad}, activation))
        elif class_name == "AveragePooling2D" and c.get("padding", "valid") == "valid":
            (ph, pw), stride = c["pool_size"], c.get("strides") or c["pool_size"]
            if tuple(stride) != (ph, pw):
                raise NotImplementedError(f"AveragePooling2D {ph}x{pw} with strides={stride}")
            arch.append(("pool", {"pool_height": ph, "pool_width": pw, "stride": ph}, "linear"))
        elif class_name in ("Flatten", "Dense"):
            kind = "flatten" if class_name == "Flatten" else "affine"
            arch.append((kind, {}, activation))
        else:
            raise NotImplementedError(f"layer {class_name} {dict(c)}")
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise NotImplementedError(f"activation {activation!r} of a {class_name} layer")
    return arch


def same_pad(kh, kw):
    """Zero-padding ``((top, bottom), (left, right))`` that keeps a stride-1 convolution's
    output the size of its input; an odd total puts the extra pixel bottom/right."""
    return ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)


def _pad_widths(pad):
    """``pad``: an int (every side) or ``((top, bottom), (left, right))``."""
    if isinstance(pad, int):
        return (pad, pad), (pad, pad)
    (top, bottom), (left, right) = pad
    return (top, bottom), (left, right)


def im2col(x, kh, kw):
    """(N, C, H, W) -> (C*kh*kw, N*Ho*Wo): one column per output pixel, stride 1, no padding
    (cs231n's layout: the copy moves runs of Wo numbers)."""
    n, c, h, w = x.shape
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))  # (N, C, Ho, Wo, kh, kw) view
    ho, wo = h - kh + 1, w - kw + 1
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * ho * wo)


# -- layers ----------------------------------------------------------------------------------
def conv_forward(x, w, b, conv_param):
    """Cross-correlation of x (N, C, H, W) with w (F, C, kh, kw), plus b (F,).
    ``conv_param``: ``stride`` (only 1 is implemented) and ``pad``."""
    if conv_param.get("stride", 1) != 1:
        raise NotImplementedError(f"conv_forward: stride {conv_param['stride']} (only 1)")
    (top, bottom), (left, right) = _pad_widths(conv_param.get("pad", 0))
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, _, hp, wp = xp.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    x_cols = im2col(xp, kh, kw)  # (C*kh*kw, N*Ho*Wo)
    out = w.reshape(f, -1) @ x_cols + b.reshape(-1, 1)  # (F, N*Ho*Wo)
    out = out.reshape(f, n, ho, wo).transpose(1, 0, 2, 3)
    return out, (x_cols, w, xp.shape, (top, bottom, left, right))


def conv_backward(dout, cache):
    """dx (the gradient of the padded input, cropped), dw, db."""
    x_cols, w, (n, c, hp, wp), (top, bottom, left, right) = cache
    f, _, kh, kw = w.shape
    _, _, ho, wo = dout.shape
    dout_reshaped = dout.transpose(1, 0, 2, 3).reshape(f, -1)  # (F, N*Ho*Wo)
    dw = (dout_reshaped @ x_cols.T).reshape(w.shape)
    db = dout_reshaped.sum(axis=1)
    # col2im: every column of dx_cols goes back onto the window it came from. The loop runs
    # over the kh*kw kernel offsets, each one add over all channels, samples and pixels.
    dx_cols = (w.reshape(f, -1).T @ dout_reshaped).reshape(c, kh, kw, n, ho, wo)
    dxp = np.zeros((c, n, hp, wp), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + ho, j : j + wo] += dx_cols[:, i, j]
    dx = dxp.transpose(1, 0, 2, 3)[:, :, top : hp - bottom, left : wp - right]
    return dx, dw, db


def avg_pool_forward(x, pool_param):
    """Average pooling with non-overlapping windows (``stride`` equal to the pool size); rows
    and columns left over at the bottom/right are dropped, as with "valid" padding."""
    ph, pw = pool_param["pool_height"], pool_param["pool_width"]
    stride = pool_param.get("stride", ph)
    if (stride, stride) != (ph, pw):
        raise NotImplementedError(f"avg_pool_forward: stride {stride} for a {ph}x{pw} pool")
    n, c, h, w = x.shape
    ho, wo = h // ph, w // pw
    blocks = x[:, :, : ho * ph, : wo * pw].reshape(n, c, ho, ph, wo, pw)
    out = blocks.sum(axis=(3, 5)) / (ph * pw)
    return out, (x.shape, ph, pw)


def avg_pool_backward(dout, cache):
    (n, c, h, w), ph, pw = cache
    _, _, ho, wo = dout.shape
    share = dout / (ph * pw)  # every cell of a window gets an equal share
    dx = np.zeros((n, c, h, w), dtype=dout.dtype)
    dx[:, :, : ho * ph, : wo * pw] = share.repeat(ph, axis=2).repeat(pw, axis=3)
    return dx


def flatten_forward(x):
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout, cache):
    return dout.reshape(cache)


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)  # zero gradient at 0, as TensorFlow's


def tanh_forward(x):
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    return dout * (1 - cache * cache)


def softmax_forward(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out = e / e.sum(axis=1, keepdims=True)
    return out, out


def softmax_backward(dout, cache):
    """Jacobian-vector product of the softmax: dx_i = p_i (dout_i - sum_j dout_j p_j)."""
    p = cache
    return p * (dout - (dout * p).sum(axis=1, keepdims=True))


def linear_forward(x):
    return x, None


def linear_backward(dout, cache):
    return dout


ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "tanh": (tanh_forward, tanh_backward),
    "softmax": (softmax_forward, softmax_backward),
    "linear": (linear_forward, linear_backward),
}


# -- losses ----------------------------------------------------------------------------------
def softmax_loss(logits, y):
    """Cross-entropy from the logits, y one-hot (N, K): loss and dloss/dlogits."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -(y * log_p).sum() / n
    # (softmax - y) / N; the factor sum(y) keeps it exact for targets that are not one-hot
    dlogits = (np.exp(log_p) * y.sum(axis=1, keepdims=True) - y) / n
    return loss, dlogits


def clipped_cross_entropy(probs, y, eps=EPSILON):
    """Cross-entropy from the probabilities, renormalised and clipped: loss and dloss/dprobs."""
    n = probs.shape[0]
    total = probs.sum(axis=1, keepdims=True)
    p = probs / total
    lo, hi = p.dtype.type(eps), p.dtype.type(1 - eps)
    clipped = np.clip(p, lo, hi)
    loss = -(y * np.log(clipped)).sum() / n
    dp = -y / clipped / n * ((p >= lo) & (p <= hi))  # the clip passes no gradient outside
    dprobs = (dp - (dp * p).sum(axis=1, keepdims=True)) / total  # through p = probs / total
    return loss, dprobs


# -- the network -----------------------------------------------------------------------------
def _layer_forward(x, kind, param, activation, params, i):
    """One layer and its activation; ``i`` is the number of the layer's W and b."""
    if kind == "conv":
        z, cache = conv_forward(x, params[f"W{i}"], params[f"b{i}"], param)
    elif kind == "affine":
        z, cache = affine_forward(x, params[f"W{i}"], params[f"b{i}"])
    elif kind == "pool":
        z, cache = avg_pool_forward(x, param)
    elif kind == "flatten":
        z, cache = flatten_forward(x)
    else:
        raise ValueError(f"unknown layer kind {kind!r}")
    out, act_cache = ACTIVATIONS[activation][0](z)
    return out, (z, cache, act_cache)


def forward(params, X, arch):
    """Every layer's output (after its activation) in order, and the caches for backward."""
    outputs, caches, i = [], [], 0
    for kind, param, activation in arch:
        i += kind in ("conv", "affine")
        X, cache = _layer_forward(X, kind, param, activation, params, i)
        outputs.append(X)
        caches.append(cache)
    return outputs, caches


def predict(params, X, arch):
    """Every layer's output, in order; the last is the class probabilities."""
    return forward(params, X, arch)[0]


def loss(params, X, y, arch, loss_path="logits"):
    """Loss (batch mean), the gradient of every parameter (keyed like ``params``) and dX.
    ``y`` is one-hot (N, K) in X's dtype."""
    if loss_path not in LOSS_PATHS:
        raise ValueError(f"loss_path must be one of {LOSS_PATHS}, not {loss_path!r}")
    if arch[-1][2] != "softmax":
        raise ValueError("the last layer must end in softmax")
    outputs, caches = forward(params, X, arch)
    if loss_path == "logits":
        data_loss, dz = softmax_loss(caches[-1][0], y)  # fused softmax + cross-entropy
    else:
        data_loss, dprobs = clipped_cross_entropy(outputs[-1], y)
        dz = softmax_backward(dprobs, caches[-1][2])
    grads, dout = {}, None
    i = sum(kind in ("conv", "affine") for kind, _, _ in arch)
    for layer, ((kind, _, activation), (_, cache, act_cache)) in enumerate(
        zip(arch[::-1], caches[::-1], strict=True)
    ):
        if layer > 0:  # the last layer's dz is already through its activation
            dz = ACTIVATIONS[activation][1](dout, act_cache)
        if kind == "conv":
            dout, grads[f"W{i}"], grads[f"b{i}"] = conv_backward(dz, cache)
            i -= 1
        elif kind == "affine":
            dout, grads[f"W{i}"], grads[f"b{i}"] = affine_backward(dz, cache)
            i -= 1
        elif kind == "pool":
            dout = avg_pool_backward(dz, cache)
        else:
            dout = flatten_backward(dz, cache)
    return data_loss, grads, dout


def sgd_step(params, grads, velocity, learning_rate, momentum=0.0, nesterov=False):
    """One SGD step in Keras's form. Returns new ``(params, velocity)``; nothing is updated in
    place. ``velocity`` is a dict (empty at the start)."""
    new_params, new_velocity = {}, {}
    for key, w in params.items():
        g = grads[key]
        lr = w.dtype.type(learning_rate)
        if momentum == 0:
            new_params[key] = w - g * lr
            continue
        mu = w.dtype.type(momentum)
        v = velocity.get(key, np.zeros_like(w)) * mu - g * lr
        new_velocity[key] = v
        new_params[key] = w + (v * mu - g * lr if nesterov else v)
    return new_params, new_velocity


# -- a gradient check ------------------------------------------------------------------------
def numerical_gradient(f, x, h=1e-5):
    """Central differences of the scalar ``f()`` with respect to every entry of ``x`` (which
    ``f`` reads; it is restored after each entry)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        plus = f()
        x[ix] = old - h
        minus = f()
        x[ix] = old
        grad[ix] = (plus - minus) / (2 * h)
    return grad


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    arch = lenet5_arch("tanh", "same")
    params = init_lenet5(rng, "float64", classic=True)
    X = rng.standard_normal((2, 1, 28, 28))
    y = np.eye(10)[[3, 7]]
    for path in LOSS_PATHS:
        _, grads, dX = loss(params, X, y, arch, path)
        for name in ["b5", "W4", "b2", "b1"]:
            num = numerical_gradient(lambda p=path: loss(params, X, y, arch, p)[0], params[name])
            print(f"{path:<14} {name}: relative error {relative_error(grads[name], num):.2e}")
