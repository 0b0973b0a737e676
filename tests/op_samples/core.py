"""Samples for the foundation ops."""

from . import Sample

SAMPLES = {
    "linear": [Sample("linear(x, 4)"), Sample("linear(x, 3, bias=false)", ("x: f32[B, T, 8]",))],
    "matmul": [
        Sample("matmul(a, b)", ("a: f32[B, 4, 8]", "b: f32[8, 5]")),
        Sample("matmul(a, b)", ("a: f32[B, 8]", "b: f32[8]")),
        Sample("matmul(a, b)", ("a: f32[2, B, 3, 8]", "b: f32[B, 8, 4]")),
    ],
    "add": [Sample("add(x, w)", ("x: f32[B, 8]", "w: f32[8]")), Sample("x + 2.5")],
    "sub": [Sample("sub(x, w)", ("x: f32[B, 1]", "w: f32[B, 8]")), Sample("1 - x")],
    "mul": [Sample("mul(x, w)", ("x: f32[B, 8]", "w: f32[B, 8]")), Sample("x * -3")],
    "div": [Sample("div(x, w)", ("x: f32[B, 8]", "w: f32[8]"), atol=1e-4), Sample("x / 4")],
    "relu": [Sample("relu(x)")],
    "gelu": [Sample("gelu(x)", ("x: f32[B, T, 8]",))],
    "silu": [Sample("silu(x)")],
    "sigmoid": [Sample("sigmoid(x)")],
    "tanh": [Sample("tanh(x)")],
    "softmax": [Sample("softmax(x)"), Sample("softmax(x, dim=1)", ("x: f32[B, 6, 8]",))],
    "layernorm": [Sample("layernorm(x)"), Sample("layernorm(x, eps=1e-3, affine=false)", ("x: f32[B, T, 8]",))],
    "dropout": [Sample("dropout(x, p=0.3)")],
    "reshape": [Sample("reshape(x, [B, 2, -1])"), Sample("reshape(x, [4, -1])", ("x: f32[2, 8]",))],
    "flatten": [Sample("flatten(x)", ("x: f32[B, 2, 3, 4]",)), Sample("flatten(x, start=1, end=2)", ("x: f32[B, 2, 3, 4]",))],
}
