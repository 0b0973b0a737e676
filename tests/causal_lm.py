"""Checks shared by the causal language models of the zoo (GPT-2, LLaMA): greedy decoding against
transformers' generate(), and a few training steps."""

from __future__ import annotations

import torch


def tokens(vocab: int, batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def assert_greedy_decoding_matches_generate(reference, model, vocab: int, new_tokens: int = 20) -> None:
    """`new_tokens` tokens, re-running the whole sequence each step (the specs have no KV cache),
    against generate() with its cache: the same tokens."""
    prompt = tokens(vocab, 2, 5, seed=2)
    with torch.no_grad():
        expected = reference.generate(prompt, do_sample=False, max_new_tokens=new_tokens,
                                      attention_mask=torch.ones_like(prompt))
        ids = prompt
        for _ in range(new_tokens):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert expected.shape == (2, 5 + new_tokens)
    assert torch.equal(ids, expected), (ids, expected)


def assert_training_lowers_the_loss(model, vocab: int, steps: int = 4) -> None:
    """Next-token cross-entropy under SGD falls at every step."""
    model.train()
    ids = tokens(vocab, 4, 9, seed=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def assert_logits_match_on_every_target(graph, reference, model, vocab: int, tmp_path) -> None:
    """The generated torch module's logits equal the reference's (transformers' `.logits`) within 1e-5,
    and the triton and onnx targets agree, all on the reference's weights."""
    from targets import outputs_on_every_target

    ids = tokens(vocab, 2, 7, seed=1)
    with torch.no_grad():
        expected = reference(ids).logits
        got = model(ids)
    assert got.shape == (2, 7, vocab)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    others = outputs_on_every_target(graph, [ids], reference.state_dict(), tmp_path)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(others[target][0], expected, rtol=1e-5, atol=1e-5)
