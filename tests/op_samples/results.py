"""Samples for `result`, the node the compiler adds to pick one result of an op with several."""

from . import Sample

SAMPLES = {
    "result": [
        Sample("topk(x, 3).indices"),
        Sample("gru(x, 4, num_layers=2).h", ("x: f32[B, T, 3]",)),
        Sample("moe(x, 4, 2, 6, expert=\"swiglu\").router_logits", ("x: f32[B, T, 8]",)),
        Sample("moe(x, 4, 2, 6).router_logits + 0.0", ("x: f32[B, T, 8]",)),
        Sample("moe(x, 3, 2, 4, expert=\"swiglu\", logits=l).router_logits", ("x: f32[B, T, 6]", "l: f32[B, T, 3]")),
    ],
}
