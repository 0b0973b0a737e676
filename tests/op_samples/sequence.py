"""Samples for the sequence-model ops: rmsnorm, embedding, attention, moe."""

from . import Sample

SAMPLES = {
    "rmsnorm": [
        Sample("rmsnorm(x)"),
        Sample("rmsnorm(x, eps=1e-3, affine=false)", ("x: f32[B, T, 8]",)),
        Sample("rmsnorm(x, 1e-5)", ("x: f32[B, T, 2, 6]",), train=True),
    ],
    "embedding": [
        Sample("embedding(ids, 10, 8)", ("ids: i64[B, T]",), int_high={"ids": 10}),
        Sample("embedding(ids, vocab=7, dim=3)", ("ids: i64[B]",), int_high={"ids": 7}),
        Sample("embedding(ids, 5, 4) + x", ("ids: i64[B, T]", "x: f32[B, T, 4]"), int_high={"ids": 5}),
    ],
    "attention": [
        Sample("attention(x, 2)", ("x: f32[B, T, 8]",)),
        Sample("attention(x, heads=4, causal=true)", ("x: f32[B, T, 8]",)),
        Sample("attention(x, 1, causal=true, bias=false)", ("x: f32[B, T, 6]",)),
        Sample("attention(x, 3)", ("x: f32[2, 7, 12]",), train=True),
    ],
    "moe": [
        Sample("moe(x, 4, 2, 16)"),
        Sample("moe(x, experts=3, top_k=1, hidden=5)", ("x: f32[B, T, 6]",)),
        Sample("moe(x, 2, 2, 8)", ("x: f32[B, T, 2, 4]",), train=True),
        Sample("moe(x, 4, top_k=3, hidden=4)", ("x: f32[8]",)),
        Sample("moe(x, 4, 2, 6, expert=\"swiglu\")", ("x: f32[B, T, 8]",)),
        Sample("moe(x, experts=5, top_k=1, hidden=3, expert=\"swiglu\")", ("x: f32[B, 2, 3, 6]",), train=True),
        Sample("moe(x, 3, 2, 4, expert=\"swiglu\", logits=l)", ("x: f32[B, T, 6]", "l: f32[B, T, 3]")),
        Sample("moe(x, 3, 1, 5, logits=l)", ("x: f32[B, 6]", "l: f32[B, 3]")),
    ],
}
