"""Samples for values the module owns (parameters and buffers) and ops reading a shared table."""

from . import Sample

SAMPLES = {
    "parameter": [
        Sample("parameter([3, 4])", ("x: f32[B, 8]",)),  # alone: the output is the parameter itself
        Sample("x + parameter([8], init=\"uniform\", low=-2.0, high=2.0)"),
        Sample("x * parameter([1, 8], init=\"ones\", trainable=false)", ("x: f32[B, 8]",)),
        Sample("concat([parameter([2, 8], mean=1.0, std=0.5), x], dim=0) * parameter([], init=\"zeros\")",
               ("x: f32[B, 8]",)),
    ],
    "embedding": [
        Sample("embedding(ids, weight=parameter([10, 6]))", ("ids: i64[B, T]",), int_high={"ids": 10}),
        Sample("embedding(ids, 7, 8, weight=w)", ("ids: i64[B]", "w: f32[7, 8]"), int_high={"ids": 7}),
    ],
}
