"""Samples for the convolution, pooling and batch-norm ops."""

from . import Sample

SAMPLES = {
    "conv1d": [
        Sample("conv1d(x, 4, 3)", ("x: f32[B, 3, 10]",)),
        Sample("conv1d(x, 6, 3, stride=2, padding=2, dilation=2, groups=3, bias=false)", ("x: f32[B, 3, 11]",)),
    ],
    "conv2d": [
        Sample("conv2d(x, 4, 3)", ("x: f32[B, 3, 8, 8]",)),
        Sample("conv2d(x, 6, [3, 2], stride=[2, 1], padding=[1, 0], dilation=[1, 2], groups=2)",
               ("x: f32[B, 4, 9, 7]",)),
        Sample("conv2d(x, 4, 3, padding=1, groups=4, bias=false)", ("x: f32[2, 4, 5, 6]",)),
    ],
    "maxpool1d": [
        Sample("maxpool1d(x, 2)", ("x: f32[B, 3, 9]",)),
        Sample("maxpool1d(x, 3, stride=2, padding=1)", ("x: f32[B, T, 10]",)),
    ],
    "maxpool2d": [
        Sample("maxpool2d(x, 2)", ("x: f32[B, 3, 8, 7]",)),
        Sample("maxpool2d(x, [3, 2], stride=[2, 1], padding=[1, 0])", ("x: f32[B, 2, 7, 6]",)),
    ],
    "avgpool1d": [
        Sample("avgpool1d(x, 3)", ("x: f32[B, 3, 9]",)),
        Sample("avgpool1d(x, 4, stride=3, padding=2)", ("x: f32[B, 2, 10]",)),
    ],
    "avgpool2d": [
        Sample("avgpool2d(x, 2)", ("x: f32[B, 3, 8, 8]",)),
        Sample("avgpool2d(x, [3, 2], stride=[2, 1], padding=1)", ("x: f32[B, 2, 7, 6]",)),
    ],
    "adaptive_avgpool1d": [
        Sample("adaptive_avgpool1d(x, 1)", ("x: f32[B, 3, 9]",)),
        Sample("adaptive_avgpool1d(x, 4)", ("x: f32[B, 3, 8]",)),
        Sample("adaptive_avgpool1d(x, 3)", ("x: f32[B, T, 8]",)),  # unequal bins
        Sample("adaptive_avgpool1d(x, 5)", ("x: f32[B, 2, 3]",)),  # more outputs than inputs
    ],
    "adaptive_avgpool2d": [
        Sample("adaptive_avgpool2d(x, 1)", ("x: f32[B, 3, 5, 7]",)),
        Sample("adaptive_avgpool2d(x, [2, 4])", ("x: f32[B, 3, 8, 8]",)),
        Sample("adaptive_avgpool2d(x, [3, 5])", ("x: f32[B, 2, 7, 8]",)),  # unequal bins
    ],
    "batchnorm": [
        Sample("batchnorm(x)", ("x: f32[B, 4]",), train=True),
        Sample("batchnorm(x, eps=1e-3, momentum=0.2)", ("x: f32[B, 4, T]",), train=True),
        Sample("batchnorm(x)", ("x: f32[B, 3, 4, 5]",), train=True),
    ],
}
