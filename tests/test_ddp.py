"""ddp: one encoder over 2 processes (gloo, CPU) equals one process on the whole batch, for the batch-coupled
losses SimCLR (NT-Xent) and VICReg: same loss, same parameter gradients, to float tolerance."""
import pytest
import torch
import torch.multiprocessing as mp

from memlab.train import TrainConfig, build

CONFIGS = {  # GroupNorm encoder and LayerNorm heads: PyTorch's SyncBatchNorm runs on GPUs only
    "simclr": TrainConfig(model="resnet9", model_kw={"width": 0.125, "norm": "group"}, objective="simclr",
                          objective_kw={"norm": "layer", "temperature": 0.5}),
    "vicreg": TrainConfig(model="resnet9", model_kw={"width": 0.125, "norm": "group"}, objective="vicreg",
                          objective_kw={"norm": "layer", "expander": 64}),
}
BATCH = 8


def _views():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(BATCH, 3, 32, 32, generator=g) for _ in range(2)]


def _worker(rank, world, init_file, name, out):
    from memlab import ddp
    torch.set_num_threads(1)
    ddp.setup(rank, world, init_file, backend="gloo")
    try:
        encoder, objective = build(CONFIGS[name])
        model = ddp.distribute(encoder, objective, "cpu")
        loss = model([ddp.shard(v) for v in _views()])
        loss.backward()
        if rank == 0:
            torch.save({"loss": loss.detach(), "grads": {k: p.grad.clone() for k, p in
                                                         model.module.named_parameters() if p.grad is not None}}, out)
    finally:
        ddp.teardown()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_two_processes_equal_one_process_on_the_whole_batch(name, tmp_path):
    torch.set_num_threads(1)
    encoder, objective = build(CONFIGS[name])
    from memlab.ddp import _Step
    single = _Step(encoder, objective)
    loss = single(_views())
    loss.backward()
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), name, str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    assert torch.allclose(got["loss"], loss.detach(), rtol=1e-5, atol=1e-6), (got["loss"], loss)
    grads = {k: p.grad for k, p in single.named_parameters() if p.grad is not None}
    assert got["grads"].keys() == grads.keys() and len(grads) > 10
    for k, g in grads.items():
        assert torch.allclose(got["grads"][k], g, rtol=1e-4, atol=1e-6), k


def test_a_batch_that_does_not_split_evenly_is_refused():
    from memlab import ddp
    assert torch.equal(ddp.shard(torch.arange(6)), torch.arange(6))  # one process: the whole batch
    ddp_world = ddp.world
    try:
        ddp.world = lambda: (1, 4)
        assert ddp.shard(torch.arange(8)).tolist() == [2, 3]
        with pytest.raises(ValueError, match="divisible by the number of GPUs"):
            ddp.shard(torch.arange(6))
    finally:
        ddp.world = ddp_world
