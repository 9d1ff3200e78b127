"""ddp: one encoder over 2 processes (gloo, CPU) equals one process on the whole batch, for the batch-coupled
losses SimCLR (NT-Xent), VICReg and DINO: same loss, same parameter gradients, to float tolerance, and DINO's
centre is the global batch's."""
import pytest
import torch
import torch.multiprocessing as mp

from memlab.engine.train import TrainConfig, build

CONFIGS = {  # GroupNorm encoder and LayerNorm heads: PyTorch's SyncBatchNorm runs on GPUs only
    "simclr": TrainConfig(model="resnet9", model_kw={"width": 0.125, "norm": "group"}, objective="simclr",
                          objective_kw={"norm": "layer", "temperature": 0.5}),
    "vicreg": TrainConfig(model="resnet9", model_kw={"width": 0.125, "norm": "group"}, objective="vicreg",
                          objective_kw={"norm": "layer", "expander": 64}),
    "dino": TrainConfig(model="resnet9", model_kw={"width": 0.125, "norm": "group"}, objective="dino",
                        objective_kw={"head_norm": "layer", "out_dim": 64, "hidden": 32, "bottleneck": 16}),
}
BATCH = 8


def _views():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(BATCH, 3, 32, 32, generator=g) for _ in range(2)]


def _worker(rank, world, init_file, name, out):
    from memlab.engine import ddp
    torch.set_num_threads(1)
    ddp.setup(rank, world, init_file, backend="gloo")
    try:
        encoder, objective = build(CONFIGS[name])
        model = ddp.distribute(encoder, objective, "cpu")
        loss = model([ddp.shard(v) for v in _views()])
        loss.backward()
        loss = ddp.average(loss)  # DINO's loss is its shard's in each process; the mean is the global batch's
        if rank == 0:
            torch.save({"loss": loss.detach(), "buffers": dict(model.module.objective.named_buffers()), "grads": {k: p.grad.clone() for k, p in
                                                         model.module.named_parameters() if p.grad is not None}}, out)
    finally:
        ddp.teardown()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_two_processes_equal_one_process_on_the_whole_batch(name, tmp_path):
    torch.set_num_threads(1)
    encoder, objective = build(CONFIGS[name])
    from memlab.engine.ddp import _Step
    single = _Step(encoder, objective)
    loss = single(_views())
    loss.backward()
    out = tmp_path / "rank0.pt"
    try:
        mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), name, str(out)), nprocs=2, join=True)
    except mp.ProcessExitedException as e:
        # gloo on the CPU now and then aborts a process as it exits ("terminate called without an active
        # exception"), after the group's work is done; a process that died earlier leaves rank 0 without output
        if e.signal_name != "SIGABRT" or not out.is_file():
            raise
    got = torch.load(out, weights_only=True)
    assert torch.allclose(got["loss"], loss.detach(), rtol=1e-5, atol=1e-6), (got["loss"], loss)
    grads = {k: p.grad for k, p in single.named_parameters() if p.grad is not None}
    assert got["grads"].keys() == grads.keys() and len(grads) > 10
    for k, g in grads.items():
        assert torch.allclose(got["grads"][k], g, rtol=1e-4, atol=1e-6), k
    for k, b in objective.named_buffers():  # DINO's centre: the mean of the whole batch's teacher outputs
        assert b.abs().sum() > 0 and torch.allclose(got["buffers"][k], b, rtol=1e-5, atol=1e-7), k


def test_a_batch_that_does_not_split_evenly_is_refused():
    from memlab.engine import ddp
    assert torch.equal(ddp.shard(torch.arange(6)), torch.arange(6))  # one process: the whole batch
    ddp_world = ddp.world
    try:
        ddp.world = lambda: (1, 4)
        assert ddp.shard(torch.arange(8)).tolist() == [2, 3]
        with pytest.raises(ValueError, match="divisible by the number of GPUs"):
            ddp.shard(torch.arange(6))
    finally:
        ddp.world = ddp_world


def test_an_encoder_job_over_two_processes_equals_one_process(tmp_path, monkeypatch):
    """MEMLAB_DDP_PROCESSES=2: the encoder job trains over 2 gloo processes (each its shard of every batch) and
    gives the single-process weights, loss history and snapshot to float tolerance; rank 0 alone writes."""
    from memlab.io.cache import Cache
    from memlab.engine.jobs import run_job
    from memlab.engine.train import TrainConfig, encoder_job, load_encoder
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    cfg = TrainConfig(model="resnet9", model_kw={"width": 0.125, "norm": "group"}, objective="simclr",
                      objective_kw={"norm": "layer", "temperature": 0.5}, epochs=2, batch_size=8, lr=0.1,
                      snapshot_epochs=(1,))
    out = {}
    for world in (1, 2):
        monkeypatch.setenv("MEMLAB_DDP_PROCESSES", str(world))
        cache = Cache(tmp_path / f"cache{world}")
        job = encoder_job(cfg, x, cache=cache)
        assert run_job(job, cache.root, device="cpu") == "trained"
        out[world] = load_encoder(job, cache, "cpu")
        assert not list(cache.root.rglob(".ddp-*"))            # the rendezvous and result files are cleaned up
    one, two = out[1], out[2]
    assert [h["epoch"] for h in two.history] == [1, 2]
    for a, b in zip(one.history, two.history):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * abs(a["loss"]), (a, b)
    s1, s2 = one.encoder.state_dict(), two.encoder.state_dict()
    assert s1.keys() == s2.keys()
    changed = 0
    for k in s1:
        assert torch.allclose(s1[k], s2[k], rtol=1e-3, atol=1e-5), k
        changed += not torch.equal(s1[k], build(cfg)[0].state_dict()[k])
    assert changed > 10
    snap1, snap2 = one.at_epoch(1).encoder.state_dict(), two.at_epoch(1).encoder.state_dict()
    assert all(torch.allclose(snap1[k], snap2[k], rtol=1e-3, atol=1e-5) for k in snap1)


def test_a_process_count_that_does_not_divide_the_batch_is_refused_before_training(tmp_path, monkeypatch):
    from memlab.io.cache import Cache
    from memlab.engine.jobs import Plan
    from memlab.engine.train import TrainConfig, encoder_job
    cfg = TrainConfig(model="cnn", model_kw={"channels": [4, 8]}, epochs=1, batch_size=8)
    cache = Cache(tmp_path)
    plan = Plan("t", cache)
    plan.add(encoder_job(cfg, torch.zeros(16, 3, 16, 16, dtype=torch.uint8), cache=cache))
    monkeypatch.setenv("MEMLAB_DDP_PROCESSES", "3")
    with pytest.raises(ValueError, match="batch_size 8 does not split over MEMLAB_DDP_PROCESSES=3"):
        plan.run("inline", progress=False)
    monkeypatch.setenv("MEMLAB_DDP_PROCESSES", "two")
    with pytest.raises(ValueError, match="positive integer"):
        plan.run("inline", progress=False)
    assert not list(cache.root.rglob("model.pt"))
