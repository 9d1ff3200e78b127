"""The network of the benign-memorization paper (Anagnostidis et al., ICLR 2023, section 3; methods.md section 5):
f = g o h, an encoder h (``networks.build_model``; its pooled output is the embedding, 512-d for the paper's CIFAR
ResNet-18) and a projector g = Linear -> ReLU -> Linear with a ``hidden`` width, whose output has one unit per
random class.

Every layer can be read out flattened, from the encoder's stem to the projector output (``layer_names``): the
per-layer probes of Fig. 3 and the invariance of Fig. 6 need them.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from memlab.models.networks import build_model

HEAD_LAYERS = ("embedding", "P", "O")   # pooled encoder output, projector hidden (after ReLU), projector output


class BenignNet(nn.Module):
    """Encoder h + projector g (Linear(m, hidden) -> ReLU -> Linear(hidden, num_classes)); f(x) = g(h(x)).

    ``model``/``model_kw``: the encoder (``build_model``), kept in channels-last memory format (faster
    convolutions). Raises ValueError when ``hidden`` or ``num_classes`` is < 1, or for an unknown model."""

    def __init__(self, model: str, model_kw: dict, hidden: int, num_classes: int):
        super().__init__()
        if hidden < 1 or num_classes < 1:
            raise ValueError(f"hidden ({hidden}) and num_classes ({num_classes}) must be >= 1")
        self.encoder = build_model(model, **model_kw).to(memory_format=torch.channels_last)
        self.projector = nn.Sequential(nn.Linear(self.encoder.out_dim, hidden), nn.ReLU(),
                                       nn.Linear(hidden, num_classes))

    @property
    def layer_names(self) -> list:
        """Every probed layer, in network order: the encoder's, then embedding, P and O."""
        return list(self.encoder.layer_names) + list(HEAD_LAYERS)

    def forward(self, x):
        """Logits (B, num_classes) of normalised float images ``x`` (B, 3, H, W)."""
        return self.projector(self.encoder.embed(x))

    def layer_outputs(self, x, layers=None) -> dict:
        """``{layer: (B, D) flattened output}`` of ``layers`` (default all, ``layer_names``) from one pass, in
        network order. The encoder stops after the deepest requested encoder layer unless a head layer is asked
        for. Raises ValueError naming an unknown layer."""
        layers = self.layer_names if layers is None else list(layers)
        bad = [l for l in layers if l not in self.layer_names]
        if bad:
            raise ValueError(f"unknown layer(s) {bad}; valid: {self.layer_names}")
        enc = [l for l in self.encoder.layer_names if l in layers]
        head = [l for l in HEAD_LAYERS if l in layers]
        last = self.encoder.layer_names[-1]
        feats = self.encoder.forward_features(x, enc + ([last] if head and last not in enc else []))
        out = {l: feats[l].flatten(1) for l in enc}
        if head:
            z = self.encoder._pool_final(feats[last])
            p = self.projector[1](self.projector[0](z))
            vals = {"embedding": z, "P": p, "O": self.projector[2](p) if "O" in head else None}
            out.update({l: vals[l] for l in head})
        return {l: out[l] for l in self.layer_names if l in out}


@torch.no_grad()
def extract_layers(net: BenignNet, images: torch.Tensor, normalize, layers, *, batch_size: int = 256,
                   device=None) -> dict:
    """``{layer: (N, D) float32 CPU tensor}``: the flattened outputs of ``layers`` on un-augmented ``images``
    (uint8 (N, 3, H, W); ``normalize`` maps them to the network's input), in batches of ``batch_size`` on
    ``device`` (default: the network's). Leaves the network in eval mode."""
    device = device or next(net.parameters()).device
    net.eval()
    out = {l: [] for l in layers}
    for s in range(0, len(images), batch_size):
        f = net.layer_outputs(normalize(images[s:s + batch_size].to(device)), layers)
        for l in layers:
            out[l].append(f[l].float().cpu())
    return {l: torch.cat(v) for l, v in out.items()}
