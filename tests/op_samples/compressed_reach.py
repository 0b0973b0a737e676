"""Samples for the compressed ops that composed stages and the wider reach of `quantize` and `tensor_train` produce."""

from . import Sample

SAMPLES = {
    "lowrank_quant_linear": [Sample("lowrank_quant_linear(x, 6, 3)"),
                             Sample("lowrank_quant_linear(x, 5, 4, bits=4, down_group=4, up_group=2, "
                                    "symmetric=false, bias=false)", ("x: f32[B, T, 9]",)),
                             Sample("lowrank_quant_linear(x, 7, 2, bits=4, onnx=\"standard\")", ("x: f32[B, 6]",))],
    "quant_attention": [Sample("quant_attention(x, 2, causal=true, bits=4, group=4)", ("x: f32[B, T, 8]",)),
                        Sample("quant_attention(x, 4, kv_heads=2, qkv=\"separate\", rotary=\"interleaved\", "
                               "bias=false, symmetric=false)", ("x: f32[B, T, 16]",)),
                        Sample("quant_attention(x, 2, qkv=\"separate\", context=c, bits=4, onnx=\"standard\")",
                               ("x: f32[B, T, 8]", "c: f32[B, 3, 6]"))],
    "quant_embedding": [Sample("quant_embedding(ids, 20, 6)", ("ids: i64[B, T]",), {"ids": 20}),
                        Sample("quant_embedding(ids, 9, 7, bits=4, group=3, symmetric=false)", ("ids: i64[5]",),
                               {"ids": 9})],
    "tt_embedding": [Sample("tt_embedding(ids, 20, 6, [5, 4], [3, 2], [2])", ("ids: i64[B, T]",), {"ids": 20}),
                     Sample("tt_embedding(ids, 19, 8, vocab_modes=[5, 2, 2], dim_modes=[2, 2, 2], ranks=[3, 2])",
                            ("ids: i32[7]",), {"ids": 19})],
    "tt_conv1d": [Sample("tt_conv1d(x, 4, 3, padding=1, out_modes=[2, 2], in_modes=[3, 3], ranks=[2])",
                          ("x: f32[B, 3, 10]",))],
    "tt_conv2d": [Sample("tt_conv2d(x, 6, [3, 1], groups=3, bias=false, out_modes=[3, 2], in_modes=[1, 3], ranks=[2])",
                          ("x: f32[B, 3, 5, 6]",)),
                  Sample("tt_conv2d(x, 4, 3, stride=2, out_modes=[2, 2], in_modes=[9, 3], ranks=[3])",
                         ("x: f32[B, 3, 7, 7]",))],
    "quant_conv1d": [Sample("quant_conv1d(x, 4, 3, padding=1, bits=4)", ("x: f32[B, 3, 10]",)),
                     Sample("quant_conv1d(x, 6, 2, groups=2, symmetric=false, bias=false)", ("x: f32[B, 4, 7]",))],
    "quant_conv2d": [Sample("quant_conv2d(x, 4, 3, stride=2)", ("x: f32[B, 3, 7, 7]",)),
                     Sample("quant_conv2d(x, 6, [3, 1], groups=3, bits=4, symmetric=false)",
                            ("x: f32[B, 3, 5, 6]",))],
}
