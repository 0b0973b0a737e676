"""The LSTM language model against pytorch/examples' word_language_model, and the recurrent layers'
weights against nn.LSTM / nn.GRU themselves."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from targets import ROOT, compile_graph, outputs_on_every_target, python_module

TINY = {"vocab_size": 50, "embedding_dim": 12, "hidden_size": 10, "num_layers": 2}


class RNNModel(nn.Module):
    """word_language_model's RNNModel (rnn_type="LSTM", untied), as in pytorch/examples."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, input: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = next(self.parameters())
        return weight.new_zeros(self.rnn.num_layers, bsz, self.rnn.hidden_size), \
            weight.new_zeros(self.rnn.num_layers, bsz, self.rnn.hidden_size)


@pytest.fixture(scope="module")
def lm():
    graph = compile_graph(ROOT / "specs" / "lstm_lm.nnspec", params=TINY)
    torch.manual_seed(0)
    reference = RNNModel(TINY["vocab_size"], TINY["embedding_dim"], TINY["hidden_size"], TINY["num_layers"]).eval()
    _, model = python_module(graph, "torch")
    tokens = torch.randint(0, TINY["vocab_size"], (7, 3), generator=torch.Generator().manual_seed(1))
    return graph, reference, model.eval(), tokens


def test_reference_weights_load_key_for_key_and_outputs_match(lm):
    graph, reference, model, tokens = lm
    # no key mapping: the spec names its layers encoder, rnn, decoder as the example does
    model.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    with torch.no_grad():
        expected, _ = reference(tokens, reference.init_hidden(tokens.shape[1]))
        got = F.log_softmax(model(tokens).reshape(-1, TINY["vocab_size"]), dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_targets_agree(lm, tmp_path):
    graph, reference, _, tokens = lm
    got = outputs_on_every_target(graph, [tokens], reference.state_dict(), tmp_path)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], got["torch"][0], rtol=1e-5, atol=1e-5)


def test_a_training_step_lowers_the_loss(lm):
    graph, _, _, tokens = lm
    torch.manual_seed(0)
    _, model = python_module(graph, "torch")
    model.train()
    inputs, targets = tokens[:-1], tokens[1:]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    losses = []
    for _ in range(3):
        torch.manual_seed(0)  # the same dropout masks each step, so only the weights change
        loss = F.cross_entropy(model(inputs).reshape(-1, TINY["vocab_size"]), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_torch_layer_state_dicts_load_and_match(kind, tmp_path):
    """An nn.LSTM / nn.GRU's own state dict loads into the generated layer (bidirectional, two layers,
    initial state) and gives the same output sequence."""
    states = "h0=h, c0=c" if kind == "lstm" else "h0=h"
    decls = "\n".join(f"    input {s}: f32[4, B, 5]" for s in ("h", "c")[:2 if kind == "lstm" else 1])
    spec = tmp_path / "r.nnspec"
    spec.write_text(f"model r() {{\n    input x: f32[B, T, 3]\n{decls}\n"
                    f"    output y = {kind}(x, 5, {states}, num_layers=2, bidirectional=true)\n}}\n")
    graph = compile_graph(spec)
    torch.manual_seed(0)
    reference = (nn.LSTM if kind == "lstm" else nn.GRU)(3, 5, 2, batch_first=True, bidirectional=True).eval()
    _, model = python_module(graph, "torch")
    model.y.load_state_dict(reference.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 3, generator=gen)
    h, c = torch.randn(4, 2, 5, generator=gen), torch.randn(4, 2, 5, generator=gen)
    with torch.no_grad():
        expected = reference(x, (h, c) if kind == "lstm" else h)[0]
        got = model.eval()(x, h, c) if kind == "lstm" else model.eval()(x, h)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
