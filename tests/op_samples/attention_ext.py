"""Samples for attention's options beyond the original ones (the original samples are in sequence.py):
grouped-query heads, separate projections, rotary layouts, additive masks, cross-attention, scale.

Boolean masks are compared on every target in tests/test_attention_reference.py, with masks that leave
every query a key: the parity matrix's random 0/1 masks would mask whole rows, whose output is NaN."""

from . import Sample

SAMPLES = {
    "attention": [
        Sample("attention(x, 4, kv_heads=2, qkv=\"separate\", bias=false, causal=true, rotary=\"rotate_half\")",
               ("x: f32[B, T, 16]",)),
        Sample("attention(x, 4, kv_heads=1, rotary=\"interleaved\", rope_theta=500.0)", ("x: f32[B, T, 16]",)),
        Sample("attention(x, 2, mask=m, causal=true, scale=0.3)", ("x: f32[B, T, 8]", "m: f32[B, 1, T, T]")),
        Sample("attention(x, 2, qkv=\"separate\", context=c, mask=m)",
               ("x: f32[B, T, 8]", "c: f32[B, 7, 6]", "m: f32[B, 1, 1, 7]")),
        Sample("attention(x, 3, kv_heads=3, qkv=\"separate\", context=c, rotary=\"rotate_half\", causal=true)",
               ("x: f32[2, 5, 12]", "c: f32[2, 9, 4]")),
        Sample("attention(x, 2, kv_heads=1, dropout=0.5)", ("x: f32[B, T, 8]",)),
    ],
}
