"""Samples for the recurrent layers: layers, directions, both layouts, initial states, symbolic B and T."""

from . import Sample

SAMPLES = {
    "lstm": [
        Sample("lstm(x, 6)", ("x: f32[B, T, 4]",)),
        Sample("lstm(x, hidden_size=5, num_layers=2, dropout=0.3)", ("x: f32[B, T, 4]",)),
        Sample("lstm(x, hidden_size=3, num_layers=2, bidirectional=true, batch_first=false)", ("x: f32[T, B, 4]",)),
        Sample("lstm(x, 4, h0=h, c0=c, bidirectional=true)",
               ("x: f32[B, T, 3]", "h: f32[2, B, 4]", "c: f32[2, B, 4]")),
        Sample("lstm(x, h0=h, c0=c, hidden_size=4, num_layers=2, batch_first=false)",
               ("x: f32[T, B, 3]", "h: f32[2, B, 4]", "c: f32[2, B, 4]")),
        # the final states, results `h` and `c`: torch's [layers * directions, B, hidden]
        Sample("lstm(x, hidden_size=3, num_layers=2, bidirectional=true, batch_first=false).h", ("x: f32[T, B, 4]",)),
        Sample("lstm(x, 4, h0=h, c0=c, num_layers=2).c", ("x: f32[B, T, 3]", "h: f32[2, B, 4]", "c: f32[2, B, 4]")),
    ],
    "gru": [
        Sample("gru(x, 6)", ("x: f32[B, T, 4]",)),
        Sample("gru(x, hidden_size=5, num_layers=2, bias=false)", ("x: f32[B, T, 4]",)),
        Sample("gru(x, hidden_size=3, num_layers=2, bidirectional=true, batch_first=false)", ("x: f32[T, B, 4]",)),
        Sample("gru(x, 4, h0=h, num_layers=2, bidirectional=true)", ("x: f32[B, T, 3]", "h: f32[4, B, 4]")),
        Sample("gru(x, 4, h0=h, num_layers=2, bidirectional=true).h", ("x: f32[B, T, 3]", "h: f32[4, B, 4]")),
        Sample("gru(x, hidden_size=5, batch_first=false).h", ("x: f32[T, B, 4]",)),
    ],
}
