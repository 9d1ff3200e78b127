import pytest
import torch

from memlab.engine.loop import lr_at
from memlab.engine.train import TrainConfig, TrainingViews, build, make_augmentation, train, train_encoder


def tiny_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 4


CFG = dict(model="cnn", model_kw={"channels": [4, 8]}, epochs=3, batch_size=16, lr=0.05, warmup_epochs=1)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("objective", ["simclr", "supervised"])
def test_same_seed_same_weights_and_loss_decreases(objective):
    x, y = tiny_data()
    cfg = TrainConfig(objective=objective, **{**CFG, "epochs": 6})
    a = train(cfg, x, y, device="cpu", progress=False)
    b = train(cfg, x, y, device="cpu", progress=False)
    assert states_equal(a["encoder"].state_dict(), b["encoder"].state_dict())
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert a["history"][-1]["loss"] < a["history"][0]["loss"]
    c = train(TrainConfig(objective=objective, **{**CFG, "epochs": 6, "seed": 1}), x, y, device="cpu", progress=False)
    assert not states_equal(a["encoder"].state_dict(), c["encoder"].state_dict())


class Interrupt(Exception):
    pass


def test_interrupted_and_resumed_training_equals_uninterrupted(tmp_path):
    x, y = tiny_data()
    cfg = TrainConfig(objective="simclr", snapshot_epochs=(1, 3), **CFG)
    full = train(cfg, x, y, device="cpu", progress=False)

    def stop_after_2(epoch):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, x, y, device="cpu", progress=False, ckpt_dir=tmp_path, epoch_callback=stop_after_2)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2
    resumed = train(cfg, x, y, device="cpu", progress=False, ckpt_dir=tmp_path)
    assert states_equal(full["encoder"].state_dict(), resumed["encoder"].state_dict())
    assert states_equal(full["objective"].state_dict(), resumed["objective"].state_dict())
    assert [h["loss"] for h in full["history"]] == [h["loss"] for h in resumed["history"]]
    assert sorted(resumed["snapshots"]) == [1, 3]
    assert states_equal(full["snapshots"][1], resumed["snapshots"][1])


def test_train_encoder_caches_and_resumes(cache):
    x, y = tiny_data()
    cfg = TrainConfig(objective="simclr", **CFG)
    with pytest.raises(Interrupt):
        train_encoder(cfg, x, cache=cache, device="cpu", progress=False,
                      epoch_callback=lambda e: (_ for _ in ()).throw(Interrupt) if e == 1 else None)
    calls = []
    t1 = train_encoder(cfg, x, cache=cache, device="cpu", progress=False, epoch_callback=calls.append)
    assert calls == [2, 3]  # resumed after the first epoch
    t2 = train_encoder(cfg, x, cache=cache, device="cpu", progress=False, epoch_callback=calls.append)
    assert calls == [2, 3] and t1.key == t2.key  # served from the cache
    assert states_equal(t1.encoder.state_dict(), t2.encoder.state_dict())
    t3 = train_encoder(cfg, x[:40], cache=cache, device="cpu", progress=False)  # other data -> other entry
    assert t3.key != t1.key


def test_schedule_warmup_then_cosine():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="snapshot"):
        TrainConfig(epochs=2, snapshot_epochs=(5,))
    with pytest.raises(ValueError, match="unknown model"):
        train(TrainConfig(model="resnet7", epochs=1), *tiny_data(), device="cpu", progress=False)
    with pytest.raises(ValueError, match="needs labels"):
        train(TrainConfig(objective="supervised", **CFG), tiny_data()[0], None, device="cpu", progress=False)


def test_divergence_is_reported_not_silently_continued():
    x, y = tiny_data()
    with pytest.raises(FloatingPointError, match="diverged"):
        train(TrainConfig(objective="supervised", **{**CFG, "lr": 1e12}), x, y, device="cpu", progress=False)


def test_history_records_probes_at_chosen_epochs():
    x, y = tiny_data()
    seen = []

    def probe(encoder, epoch):
        assert not encoder.training
        seen.append(epoch)
        return {"probe_acc": float(epoch) / 10}

    out = train(TrainConfig(objective="simclr", **CFG), x, y, device="cpu", progress=False, probe=probe,
                probe_epochs=(1, 3))
    assert seen == [1, 3]
    assert [h.get("probe_acc") for h in out["history"]] == [0.1, None, 0.3]
    assert all(h["time"] > 0 and h["lr"] >= 0 for h in out["history"])


def test_training_views_are_global_then_small_local_crops_and_reproducible():
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    idx = torch.arange(6).numpy()
    cfg = TrainConfig(model="cnn", model_kw={"channels": [4, 8]}, objective="dino",
                      objective_kw={"n_local": 2, "local_size": 16})
    _, obj = build(cfg)
    views = TrainingViews(cfg, obj)(x, idx, seed=0, epoch=3)
    assert [tuple(v.shape) for v in views] == [(6, 3, 32, 32)] * 2 + [(6, 3, 16, 16)] * 2
    again = TrainingViews(cfg, obj)(x, idx, seed=0, epoch=3)
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    assert not torch.equal(views[0], TrainingViews(cfg, obj)(x, idx, seed=0, epoch=4)[0])
    # without multi-crop, view v of epoch e is the training augmentation's draw e * n_views + v
    cfg2 = TrainConfig(model="cnn", model_kw={"channels": [4, 8]}, objective="simclr")
    _, obj2 = build(cfg2)
    aug = make_augmentation(cfg2, obj2)
    plain = TrainingViews(cfg2, obj2)(x, idx, seed=1, epoch=5)
    assert len(plain) == 2 and all(torch.equal(plain[v], aug(x, idx, 1, 5 * 2 + v)) for v in range(2))


def _one_step(cfg, x, y, micro_batch):
    from memlab.engine.loop import grad_scaler
    from memlab.engine.train import make_optimizer, optimizer_step
    encoder, objective = build(cfg, 4)
    opt = make_optimizer(cfg, list(encoder.parameters()) + list(objective.parameters()))
    views = TrainingViews(cfg, objective)(x, torch.arange(len(x)).numpy(), cfg.seed, 0)
    loss = optimizer_step(encoder, objective, views, y, opt, grad_scaler("cpu", False), torch.device("cpu"), False,
                          micro_batch)
    return loss, encoder.state_dict()


@pytest.mark.parametrize("micro_batch", [4, 5])  # 5: parts of 5, 5, 5, 1 images, weighted by their share
def test_micro_batches_accumulate_the_whole_batch_gradient(micro_batch):
    """Supervised on a GroupNorm ResNet-9 (no batch statistics): one step over micro-batches gives the loss and
    the weights of one step over the whole batch of 16, to float rounding."""
    x, y = tiny_data(16)
    x = torch.nn.functional.interpolate(x.float(), size=32).to(torch.uint8)
    cfg = TrainConfig(objective="supervised", model="resnet9", model_kw={"width": 0.125, "norm": "group"},
                      batch_size=16, lr=0.5, epochs=1, weight_decay=0.0)
    whole_loss, whole = _one_step(cfg, x, y, 0)
    part_loss, parts = _one_step(cfg, x, y, micro_batch)
    assert torch.allclose(part_loss, whole_loss, rtol=1e-5), (part_loss, whole_loss)
    moved = [k for k in whole if whole[k].is_floating_point() and not torch.equal(whole[k], build(cfg, 4)[0].state_dict()[k])]
    assert len(moved) > 10                      # the step changed the weights, so equal weights mean equal gradients
    for k in whole:
        assert torch.allclose(parts[k], whole[k], rtol=1e-4, atol=1e-6), k


def test_micro_batch_is_refused_for_batch_coupled_losses_and_kept_out_of_old_keys():
    from memlab.engine.train import config_key, training_cost
    with pytest.raises(ValueError, match=r"micro_batch = 8 with objective 'simclr'.*couples the images"):
        TrainConfig(objective="simclr", micro_batch=8, **CFG)
    with pytest.raises(ValueError, match="micro_batch must be >= 0"):
        TrainConfig(objective="supervised", micro_batch=-1, **CFG)
    TrainConfig(objective="simclr", micro_batch=16, **CFG)  # not smaller than the batch: nothing to split
    assert "micro_batch" not in config_key(TrainConfig(**CFG))              # keys from before micro_batch hold
    assert config_key(TrainConfig(objective="mae", model="vit_tiny", micro_batch=4))["micro_batch"] == 4
    full = training_cost(TrainConfig(objective="supervised", **CFG), 48, 16)
    half = training_cost(TrainConfig(objective="supervised", micro_batch=8, **CFG), 48, 16)
    assert half.activation_bytes * 2 == full.activation_bytes and half.image_steps == full.image_steps
