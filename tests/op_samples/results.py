"""Samples for `result`, the node the compiler adds to pick one result of an op with several."""

from . import Sample

SAMPLES = {
    "result": [
        Sample("topk(x, 3).indices"),
        Sample("gru(x, 4, num_layers=2).h", ("x: f32[B, T, 3]",)),
    ],
}
