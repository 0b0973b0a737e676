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
SAMPLES["interpolate"] = [
    Sample("interpolate(x, scale_factor=2)", ("x: f32[B, 3, 4, 5]",)),
    Sample("interpolate(x, size=[7, 3])", ("x: f32[B, 2, 5, 6]",)),  # up in one dim, down in the other
    Sample("interpolate(x, size=[6, 4])", ("x: f32[B, 2, 4, 6]",)),
    Sample("interpolate(x, size=5)", ("x: f32[B, 3, 3]",)),
    # sizes where ONNX's floor-rounded asymmetric Resize reads other rows than torch
    Sample("interpolate(x, size=[2, 3])", ("x: f32[B, 2, 14, 21]",)),
    Sample("interpolate(x, scale_factor=[0.5, 3])", ("x: f32[B, 2, 20, 3]",)),
    Sample("interpolate(x, scale_factor=[1.5, 0.5], mode=\"bilinear\")", ("x: f32[B, 2, 4, 6]",)),
    Sample("interpolate(x, size=[7, 3], mode=\"bilinear\")", ("x: f32[B, 2, 5, 6]",)),
    Sample("interpolate(x, size=[9, 1], mode=\"bilinear\", align_corners=true)", ("x: f32[B, 2, 4, 6]",)),
    Sample("interpolate(x, size=1, mode=\"bilinear\")", ("x: f32[B, 2, 4, 6]",)),
    Sample("interpolate(x, scale_factor=3, mode=\"linear\")", ("x: f32[B, 3, 4]",)),
    Sample("interpolate(x, size=7, mode=\"linear\", align_corners=true)", ("x: f32[B, 3, 5]",)),
]
SAMPLES["pixel_shuffle"] = [
    Sample("pixel_shuffle(x, 2)", ("x: f32[B, 8, 3, 4]",)),
    Sample("pixel_shuffle(x, 3)", ("x: f32[B, 9, H, 2]",)),
]
