"""Samples for the pointwise math functions, clamp, gelu's forms, and the math reductions."""

from . import Sample

SAMPLES = {
    "sin": [Sample("sin(x)"), Sample("sin(x * 3.0) + x", ("x: f32[B, T, 4]",))],
    "cos": [Sample("cos(x)"), Sample("cos(sin(x))", ("x: f32[B, T, 4]",))],
    "exp": [Sample("exp(x)"), Sample("exp(x) - exp(-x)", ("x: f32[B, T, 4]",))],
    "log": [Sample("log(abs(x) + 0.5)"), Sample("log(exp(x))", ("x: f32[B, T, 4]",))],
    "sqrt": [Sample("sqrt(abs(x))"), Sample("sqrt(x * x + 1.0)", ("x: f32[B, T, 4]",))],
    "rsqrt": [Sample("rsqrt(abs(x) + 0.25)"), Sample("x * rsqrt(mean(x * x, -1, keepdim=true) + 0.01)",
                                                    ("x: f32[B, T, 8]",))],
    "abs": [Sample("abs(x)"), Sample("abs(x - 0.5) * 2.0", ("x: f32[B, T, 4]",))],
    "clamp": [
        Sample("clamp(x, min=-0.5, max=0.5)"),
        Sample("clamp(x, min=0)", ("x: f32[B, T, 4]",)),
        Sample("clamp(x * 2.0, max=1)", ("x: f32[B, T, 4]",)),
        Sample("clamp(x, -1.0, 1.0)"),
    ],
    "gelu": [
        Sample("gelu(x, approximate=\"tanh\")"),
        Sample("gelu(x * 4.0, \"tanh\")", ("x: f32[B, T, 4]",)),
        Sample("gelu(x, approximate=\"none\")"),
    ],
}

SAMPLES.update({
    "max": [
        Sample("max(x, 1)"),
        Sample("max(x, [0, -1], keepdim=true)", ("x: f32[B, T, 8]",)),
        Sample("max(x, -1)", ("x: i64[B, 8]",), int_high={"x": 100}),
    ],
    "min": [
        Sample("min(x, 1, keepdim=true)"),
        Sample("min(x, [2, 0])", ("x: f32[B, 3, 8]",)),
        Sample("min(x, 0)", ("x: i64[B, 8]",), int_high={"x": 100}),
    ],
    "argmax": [
        Sample("argmax(x, 1)"),
        Sample("argmax(x, -1, keepdim=true)", ("x: f32[B, T, 8]",)),
        Sample("argmax(x, dim=0)", ("x: f32[B, 8]",)),
    ],
    "cumsum": [
        Sample("cumsum(x, 1)"),
        Sample("cumsum(x, -2)", ("x: f32[B, T, 8]",), atol=1e-4),
        Sample("cumsum(x, 1)", ("x: i64[B, 8]",), int_high={"x": 100}),
        Sample("cumsum(x, 1)", ("x: i32[B, 8]",), int_high={"x": 100}),  # the dtype is kept on every target
    ],
    "topk": [
        Sample("topk(x, 3)"),
        Sample("topk(x, 2, dim=1, largest=false)", ("x: f32[B, 5, 4]",)),
        Sample("topk(x, 8)", ("x: i64[B, 8]",), int_high={"x": 10_000}),
        Sample("topk(x, 3).indices"),  # the second result: the node computes both, once
        Sample("topk(x, 2, dim=1, largest=false).indices", ("x: f32[B, 5, 4]",)),
    ],
    "topk_indices": [
        Sample("topk_indices(x, 3)"),
        Sample("topk_indices(x, 2, dim=1, largest=false)", ("x: f32[B, 5, 4]",)),
        Sample("topk_indices(x, 1, dim=0)", ("x: f32[B, 8]",)),
    ],
})

SAMPLES["gather"] = [
    Sample("gather(x, 1, i)", ("x: f32[B, 8]", "i: i64[B, 5]"), int_high={"i": 8}),
    Sample("gather(x, -1, i)", ("x: f32[B, T, 8]", "i: i64[B, T, 1]"), int_high={"i": 8}),
    Sample("gather(x, dim=1, index=i)", ("x: f32[B, 6, 4]", "i: i64[B, 9, 3]"), int_high={"i": 6}),
]

SAMPLES["arange"] = [
    Sample("i + arange(8)", ("i: i64[B, 8]",)),
    Sample("i * arange(2, 11, 3)", ("i: i64[B, 3]",)),
    Sample("x * arange(8, 0, step=-1, dtype=\"f32\")"),
    Sample("arange(start=-3, end=4)", ("x: f32[B, 8]",)),
]

SAMPLES["expand"] = [
    Sample("expand(x, [B, 4, 8])", ("x: f32[B, 1, 8]",)),
    Sample("expand(x, [3, -1, 2, -1])", ("x: f32[B, 1, 8]",)),
    Sample("expand(x, sizes=[B, 6]) + z", ("x: f32[B, 1]", "z: f32[B, 6]")),
    Sample("expand(i, [2, -1, 5])", ("i: i64[B, 1]",)),
    # a size-1 dim grows to a symbolic size, read from the input that has it (ViT's class token)
    Sample("concat([expand(c, [B, -1, -1]), x], dim=1)", ("x: f32[B, 4, 8]", "c: f32[1, 1, 8]")),
    Sample("expand(c, [T, B, -1]) * 2.0", ("x: f32[B, T]", "c: f32[1, 8]")),
]
