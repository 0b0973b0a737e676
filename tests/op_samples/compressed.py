"""Samples for the ops that compression transforms produce (usable directly in specs too)."""

from . import Sample

SAMPLES = {
    "lowrank_linear": [Sample("lowrank_linear(x, 6, 3)"),
                       Sample("lowrank_linear(x, 5, rank=2, bias=false, ordered=true)", ("x: f32[B, T, 8]",)),
                       Sample("lowrank_linear(x, 40, 20)", ("x: f32[B, 37]",))],
    "quant_linear": [Sample("quant_linear(x, 6, 4, group=4)"),
                     Sample("quant_linear(x, 5)", ("x: f32[B, T, 9]",)),
                     Sample("quant_linear(x, 3, bits=4, group=4, symmetric=false, bias=false)", ("x: f32[B, 11]",)),
                     Sample("quant_linear(x, 35, 8, group=2, symmetric=false)", ("x: f32[B, T, 40]",)),
                     Sample("quant_linear(x, 7, 4)", ("x: f32[B, 5]",))],
    "codebook_linear": [Sample("codebook_linear(x, 6)"),
                        Sample("codebook_linear(x, 5, k=300, dim=2, bias=false)", ("x: f32[B, T, 8]",)),
                        Sample("codebook_linear(x, 3, 4, 4)")],
    "nm_linear": [Sample("nm_linear(x, 6)"),
                  Sample("nm_linear(x, 5, 1, 3, bias=false)", ("x: f32[B, T, 12]",)),
                  Sample("nm_linear(x, 4, n=3, m=8)", ("x: f32[B, 16]",))],
    "nm_mask_linear": [Sample("nm_mask_linear(x, 3)"),
                       Sample("nm_mask_linear(x, 4, 3, 6, tau=0.5, bias=false)", ("x: f32[B, T, 12]",))],
    "masked_linear": [Sample("masked_linear(x, 3)"),
                      Sample("masked_linear(x, 5, bias=false)", ("x: f32[B, T, 7]",))],
    "tt_linear": [Sample("tt_linear(x, 6, [2, 4], [2, 3], [2])"),
                  Sample("tt_linear(x, 8, in_modes=[2, 3, 2], out_modes=[2, 2, 2], ranks=[3, 2], bias=false)",
                         ("x: f32[B, T, 12]",)),
                  Sample("tt_linear(x, 4, [3, 1], [1, 4], [1])", ("x: f32[3]",))],
    "moe_merged": [Sample("moe_merged(x, 6, 2, 2, 16)"),
                   Sample("moe_merged(x, experts=4, groups=3, top_k=1, hidden=6, rank=3)", ("x: f32[B, T, 6]",)),
                   Sample("moe_merged(x, 5, 2, 3, 10, rank=2, nnz=7)", ("x: f32[B, T, 8]",))],
}
