"""Samples for the tensor-manipulation and reduction ops."""

from . import Sample

SAMPLES = {
    "concat": [
        Sample("concat([a, b])", ("a: f32[B, 8]", "b: f32[B, 3]")),
        Sample("concat([a, b, a], dim=1)", ("a: f32[B, T, 4]", "b: f32[B, 2, 4]")),
        Sample("concat([a, b], dim=0)", ("a: i64[B, 4]", "b: i64[2, 4]")),
        Sample("concat([a])", ("a: f32[B, 4]",)),
    ],
    "slice": [
        Sample("slice(x, 1, 2, 6)"),
        Sample("slice(x, -1, -5, 100, step=2)", ("x: f32[B, T, 8]",)),
        Sample("slice(x, 0, -2, 3)", ("x: f32[4, B]",)),
        Sample("slice(x, dim=1, start=0, end=5, step=3)", ("x: f32[B, 5, 2]",)),
    ],
    "transpose": [
        Sample("transpose(x, 0, 1)"),
        Sample("transpose(x, -1, 1)", ("x: f32[B, T, 2, 8]",)),
    ],
    "permute": [
        Sample("permute(x, [1, 0])"),
        Sample("permute(x, [0, 2, -1, 1])", ("x: f32[B, T, 2, 8]",)),
    ],
    "mean": [
        Sample("mean(x, 1)"),
        Sample("mean(x, [0, -1], keepdim=true)", ("x: f32[B, T, 8]",)),
        Sample("mean(x, [2, 0])", ("x: f32[B, 3, 8]",)),
        Sample("mean(x, [1, 0])", ("x: f32[B, 8]",)),  # to a 0-d tensor
    ],
    "sum": [
        Sample("sum(x, -1, keepdim=true)", ("x: f32[B, T, 8]",), atol=1e-4),
        Sample("sum(x, [1, 2])", ("x: f32[B, T, 8]",), atol=1e-4),
        Sample("sum(x, 0)", ("x: i64[B, 8]",), int_high={"x": 100}),
    ],
}
