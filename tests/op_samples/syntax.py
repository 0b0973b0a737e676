"""Samples for the ops the expression syntax lowers to: `-x`, `**`, comparisons, `where`, indexing."""

from . import Sample

_PAIR = ("a: f32[B, 8]", "b: f32[B, 8]")
_BROADCAST = ("a: f32[B, T, 8]", "b: f32[T, 1]")

SAMPLES = {
    "neg": [
        Sample("-x"),
        Sample("-x * 2.0 + 1.0", ("x: f32[B, T, 8]",)),  # fused with its neighbours in the triton target
        Sample("-x", ("x: i64[B, 4]",)),
    ],
    "pow": [
        Sample("x ** 2"),
        Sample("2.0 ** x"),
        Sample("(x * x + 1.0) ** -0.5", ("x: f32[B, T, 8]",)),
        Sample("(a * a + 0.5) ** b", _BROADCAST),
        Sample("-x ** 3"),
    ],
    "lt": [Sample("where(a < b, a, b)", _PAIR), Sample("where(0.5 < x, x, 0.0)")],
    "le": [Sample("where(a <= b, a, 0.0)", _BROADCAST), Sample("where(x <= 1, x, 2)", ("x: i64[B, 4]",))],
    "gt": [Sample("where(x > 0, x, -x)"), Sample("where(a > b, 1.0, b)", _BROADCAST)],
    "ge": [Sample("where(x >= 2, 1, x)", ("x: i64[B, 4]",)), Sample("where(a >= b, a, b)", _PAIR)],
    "eq": [Sample("where(x == 1, x, 0)", ("x: i64[B, 4]",)), Sample("where(a == a, a, b)", _PAIR)],
    "ne": [Sample("where(x != 2, x, 5)", ("x: i64[B, 4]",)), Sample("where(a != b, 0.25, b)", _BROADCAST)],
    "where": [
        Sample("where(a > b, a, b)", _BROADCAST),
        Sample("where(x > 0.0, x, 0.1 * x)"),
        Sample("where(c > 0, a, b)", ("c: f32[B, 1]", "a: f32[8]", "b: f32[T, 1, 8]")),
    ],
    "select": [
        Sample("x[:, 0]"),
        Sample("x[..., -1]", ("x: f32[B, T, 8]",)),
        Sample("x[0, 2:, 1]", ("x: f32[B, 5, 3]",)),
        Sample("x[:, -1]", ("x: i64[B, T, 4]",)),
    ],
    "slice": [
        Sample("x[:, 1:]"),
        Sample("x[..., :-1]", ("x: f32[B, T, 8]",)),
        Sample("x[:, 1:, ::2]", ("x: f32[B, T, 8]",)),
        Sample("x[1:3]", ("x: f32[4, B]",)),
        Sample("x[:, 1:7:3]"),
        Sample("x[:, -3:]", ("x: f32[B, 5]",)),
        Sample("x[:, 2:-1]", ("x: f32[B, T]",)),
    ],
}
