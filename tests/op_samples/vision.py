"""Samples for the ops a U-Net needs: transposed convolution, resizing, pixel shuffle, group norm."""

from . import Sample

SAMPLES = {
    "conv_transpose1d": [
        Sample("conv_transpose1d(x, 4, 3)", ("x: f32[B, 3, 7]",)),
        Sample("conv_transpose1d(x, 6, 4, stride=3, padding=2, output_padding=1, dilation=2, groups=3, bias=false)",
               ("x: f32[B, 3, 6]",)),
    ],
    "conv_transpose2d": [
        Sample("conv_transpose2d(x, 4, 2, stride=2)", ("x: f32[B, 6, 4, 5]",)),
        Sample("conv_transpose2d(x, 6, [3, 5], stride=[2, 3], padding=[1, 2], output_padding=[1, 2], "
               "dilation=[1, 2], groups=2)", ("x: f32[B, 4, 5, 4]",)),
        Sample("conv_transpose2d(x, 4, 3, padding=1, groups=4, bias=false)", ("x: f32[2, 4, 5, 6]",)),
    ],
}
SAMPLES["group_norm"] = [
    Sample("group_norm(x, 2)", ("x: f32[B, 6, 4, 5]",), train=True),
    Sample("group_norm(x, 3, eps=1e-3, affine=false)", ("x: f32[B, 3, 7]",)),
    Sample("group_norm(x, 1)", ("x: f32[B, 4, 3, 2, 2]",)),
    Sample("group_norm(x, 4)", ("x: f32[B, 8]",)),
]
