"""engine.fit, the one training loop: schedule, non-finite loss, checkpoint/resume (also from a damaged
checkpoint), stateful epoch-end callbacks, the step budget."""
import math
import re

import pytest
import torch

from memlab.engine.checkpoints import Snapshots
from memlab.engine.loop import Cosine, amp_step, check_finite, fit, grad_scaler, order_batches, plan_steps
from memlab.engine.train import TrainConfig, train


class Interrupt(Exception):
    pass


def _toy(seed=0):
    """A linear regression on 24 fixed points: model, optimiser, scaler, step and batches hooks."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = grad_scaler(torch.device("cpu"), True)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 4, generator=g), torch.randn(24, 1, generator=g)
    lrs = []

    def step(b, epoch, i):
        lrs.append(opt.param_groups[0]["lr"])
        return amp_step(lambda: ((model(x[b]) - y[b]) ** 2).mean(), opt, scaler, "cpu", True)

    bs, spe, total, warmup = plan_steps(24, 8, 4, 1.0)
    return dict(model=model, opt=opt, scaler=scaler, step=step, lrs=lrs,
                batches=order_batches(torch.arange(24), seed, bs, spe), total=total, warmup=warmup)


def _fit(t, epochs=4, **kw):
    return fit(t["step"], t["batches"], epochs=epochs, optimizer=t["opt"], modules=(t["model"],),
               state={"model": t["model"], "optimizer": t["opt"], "scaler": t["scaler"]},
               schedule=Cosine(0.1, t["total"], t["warmup"]), progress=False, **kw)


def _same_weights(a, b):
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


class Collect:
    """A stateful epoch-end callback: the running sum of the epoch losses and the epochs it saw."""

    def __init__(self, stop_at=None):
        self.total, self.seen, self.stop_at = 0.0, [], stop_at

    def __call__(self, epoch, rec, step):
        self.total += rec["loss"]
        self.seen.append(epoch)
        rec["running"] = self.total
        return epoch == self.stop_at

    def state_dict(self):
        return {"total": self.total, "seen": list(self.seen)}

    def load_state_dict(self, state):
        self.total, self.seen = state["total"], list(state["seen"])


def test_schedule_is_linear_warmup_then_cosine_to_zero():
    s = Cosine(1.0, total=100, warmup=10)
    assert [s(0), s(4), s(9)] == pytest.approx([0.1, 0.5, 1.0])
    assert s(10) == pytest.approx(1.0)        # cosine starts at the base lr
    assert s(55) == pytest.approx(0.5)        # half-way through the decay
    assert s(100) == pytest.approx(0.0) and s(250) == pytest.approx(0.0)
    c = Cosine(0.2, total=4)                  # no warm-up
    assert [c(0), c(1), c(2), c(3)] == pytest.approx([0.2, 0.1 * (1 + math.cos(math.pi / 4)), 0.1,
                                                      0.1 * (1 + math.cos(3 * math.pi / 4))])


def test_fit_sets_the_scheduled_lr_before_every_step():
    t = _toy()
    out = _fit(t)
    assert t["total"] == 12 and t["warmup"] == 3     # 24 points, batches of 8, 4 epochs, 1 warm-up epoch
    assert t["lrs"] == pytest.approx([Cosine(0.1, 12, 3)(i) for i in range(12)])
    assert t["lrs"][:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])
    assert [h["epoch"] for h in out.history] == [1, 2, 3, 4] and out.steps == 12 and not out.stopped
    assert [h["lr"] for h in out.history] == pytest.approx([t["lrs"][i] for i in (2, 5, 8, 11)])
    assert not t["model"].training                   # modules are left in eval mode


def test_non_finite_loss_raises_naming_the_epoch():
    t = _toy()

    def step(b, epoch, i):
        loss = t["step"](b, epoch, i)
        return loss * float("nan") if epoch == 1 else loss

    with pytest.raises(FloatingPointError, match=r"diverged at epoch 2 .*learning rate"):
        fit(step, t["batches"], epochs=4, optimizer=t["opt"], state={}, progress=False)
    with pytest.raises(FloatingPointError, match="seed 7 diverged at epoch 3"):   # per-network losses
        check_finite([0.5, math.inf], 3, ["seed 3", "seed 7"], 0.1)
    check_finite([0.5, 0.25], 3, ["seed 3", "seed 7"], 0.1)


def test_interrupted_and_resumed_equals_uninterrupted_and_callback_state_survives(tmp_path):
    full_t, full_cb = _toy(), Collect()
    full = _fit(full_t, callbacks=(full_cb,))

    def stop_after_2(epoch):
        if epoch == 2:
            raise Interrupt

    t = _toy()
    with pytest.raises(Interrupt):
        _fit(t, callbacks=(Collect(),), ckpt_dir=tmp_path, after_epoch=stop_after_2)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2
    t, cb = _toy(), Collect()                        # a fresh process: new model, new callback
    resumed = _fit(t, callbacks=(cb,), ckpt_dir=tmp_path)
    assert _same_weights(full_t["model"], t["model"])
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert cb.seen == [1, 2, 3, 4] and cb.total == full_cb.total      # restored, then continued
    assert [h["running"] for h in resumed.history] == [h["running"] for h in full.history]
    assert resumed.steps == full.steps == 12
    assert len(t["lrs"]) == 6                        # only epochs 3 and 4 were trained again


def test_snapshots_are_written_once_to_their_own_files_and_survive_a_resume(tmp_path):
    """The per-epoch checkpoint holds the training state and the list of snapshot epochs, not the snapshots:
    each snapshot is one file, written once; a resumed run ends with the snapshots of an uninterrupted one."""
    full_t = _toy()
    full_snaps = Snapshots(full_t["model"], [1, 3, 4])
    _fit(full_t, callbacks=(full_snaps,))
    assert sorted(full_snaps.saved) == [1, 3, 4] and not list(tmp_path.iterdir())  # no folder: in memory

    def stop_after_3(epoch):
        if epoch == 3:
            raise Interrupt

    t = _toy()
    writes = []
    import memlab.engine.checkpoints as checkpoints   # writes last.pt and the snapshot files
    real = checkpoints.atomic_save
    checkpoints.atomic_save = lambda obj, path: (writes.append(path.name), real(obj, path))[1]
    try:
        with pytest.raises(Interrupt):
            _fit(t, callbacks=(Snapshots(t["model"], [1, 3, 4], folder=tmp_path),), ckpt_dir=tmp_path,
                 after_epoch=stop_after_3)
        ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
        assert ckpt["callbacks"] == [{"written": [1, 3]}]           # the epochs, not the weights
        assert sorted(p.name for p in tmp_path.glob("snapshot-*.pt")) == ["snapshot-1.pt", "snapshot-3.pt"]
        t = _toy()
        snaps = Snapshots(t["model"], [1, 3, 4], folder=tmp_path)
        _fit(t, callbacks=(snaps,), ckpt_dir=tmp_path)
    finally:
        checkpoints.atomic_save = real
    assert [w for w in writes if w.startswith("snapshot")] == ["snapshot-1.pt", "snapshot-3.pt", "snapshot-4.pt"]
    assert writes.count("last.pt") == 4                                 # epochs 1-3, then 4 after the resume
    assert sorted(snaps.saved) == [1, 3, 4]
    for e in (1, 3, 4):
        assert all(torch.equal(v, full_snaps.saved[e][k]) for k, v in snaps.saved[e].items())
    # a checkpoint written before snapshot files (snapshots inside it) resumes, and its snapshots move to files
    legacy = Snapshots(t["model"], [1, 3, 4], folder=tmp_path / "legacy")
    legacy.load_state_dict({1: full_snaps.saved[1]})
    assert legacy.state_dict() == {"written": [1]} and (tmp_path / "legacy" / "snapshot-1.pt").is_file()
    assert all(torch.equal(v, full_snaps.saved[1][k]) for k, v in legacy.saved[1].items())
    # a checkpoint whose snapshot files are gone is damaged: a warning, and a restart from scratch
    (tmp_path / "snapshot-3.pt").unlink()
    t = _toy()
    with pytest.warns(RuntimeWarning, match="snapshot files missing"):
        _fit(t, callbacks=(Snapshots(t["model"], [1, 3, 4], folder=tmp_path),), ckpt_dir=tmp_path)
    assert len(t["lrs"]) == 12


def test_a_callback_stop_and_the_step_budget_end_training_and_survive_resume(tmp_path):
    t = _toy()
    out = _fit(t, callbacks=(Collect(stop_at=2),), ckpt_dir=tmp_path)
    assert out.stopped and out.epochs == 2 and len(t["lrs"]) == 6
    t2 = _toy()
    again = _fit(t2, callbacks=(Collect(stop_at=2),), ckpt_dir=tmp_path)   # resumes a finished, stopped run
    assert again.stopped and again.epochs == 2 and t2["lrs"] == [] and _same_weights(t["model"], t2["model"])
    t3 = _toy()
    budget = _fit(t3, max_steps=5)                   # stops inside epoch 2
    assert budget.steps == 5 and len(t3["lrs"]) == 5 and [h["epoch"] for h in budget.history] == [1, 2]


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "missing_keys", "partly_loadable"])
def test_damaged_checkpoint_is_reported_deleted_and_training_restarts(tmp_path, damage):
    ref_t, ref_cb = _toy(), Collect()
    ref = _fit(ref_t, callbacks=(ref_cb,))
    _fit(_toy(), epochs=2, callbacks=(Collect(),), ckpt_dir=tmp_path)      # "interrupted" after 2 of 4 epochs
    last = tmp_path / "last.pt"
    data = last.read_bytes()
    if damage == "truncate":
        last.write_bytes(data[:len(data) // 2])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "garbage":
        last.write_bytes(b"not a checkpoint at all" * 10)
    elif damage == "missing_keys":
        torch.save({"epoch": 2, "history": []}, last)
    else:  # the model state loads, the optimiser's is missing: the loaded weights must be undone
        st = torch.load(last, weights_only=True)
        del st["state"]["optimizer"]
        torch.save(st, last)
    t, cb = _toy(), Collect()
    with pytest.warns(RuntimeWarning, match=re.escape(str(last)) + ".*restarts from scratch"):
        out = _fit(t, callbacks=(cb,), ckpt_dir=tmp_path)
    assert _same_weights(ref_t["model"], t["model"]) and cb.seen == [1, 2, 3, 4] and cb.total == ref_cb.total
    assert [h["loss"] for h in out.history] == [h["loss"] for h in ref.history]
    assert torch.load(last, weights_only=True)["epoch"] == 4   # a new, valid checkpoint replaced the damaged one


@pytest.mark.parametrize("keep", [10, 1000, 5000, 20000, "half", "all but 100"])  # 5000 and 20000: OSError(EINVAL)
def test_train_recovers_from_a_truncated_checkpoint(tmp_path, keep):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 16, 16), generator=g, dtype=torch.uint8)
    cfg = TrainConfig(model="cnn", model_kw={"channels": [4, 8]}, objective="simclr", epochs=2, batch_size=16,
                      lr=0.05, warmup_epochs=1, snapshot_epochs=(1,))
    fresh = train(cfg, x, None, device="cpu", progress=False)
    train(cfg, x, None, device="cpu", progress=False, ckpt_dir=tmp_path)
    last = tmp_path / "last.pt"
    size = last.stat().st_size
    last.write_bytes(last.read_bytes()[:{"half": size // 2, "all but 100": size - 100}.get(keep, keep)])
    with pytest.warns(RuntimeWarning, match=re.escape(str(last)) + ".*restarts from scratch"):
        again = train(cfg, x, None, device="cpu", progress=False, ckpt_dir=tmp_path)
    for a, b in ((fresh["encoder"], again["encoder"]), (fresh["objective"], again["objective"])):
        assert _same_weights(a, b)
    assert [h["loss"] for h in fresh["history"]] == [h["loss"] for h in again["history"]]
    assert all(torch.equal(v, again["snapshots"][1][k]) for k, v in fresh["snapshots"][1].items())


def test_weights_blown_up_by_the_last_step_raise_although_its_loss_was_finite():
    t = _toy()

    def step(b, epoch, i):
        loss = t["step"](b, epoch, i)   # measured before the update: finite
        if i == 8:                      # the last of epoch 3's three steps
            with torch.no_grad():
                t["model"][0].weight[0, 0] = float("inf")
        return loss

    with pytest.raises(FloatingPointError, match=r"toy diverged at epoch 3: 1 parameter tensor\(s\) .*0.weight"):
        fit(step, t["batches"], epochs=3, optimizer=t["opt"], modules=(t["model"],), state={}, progress=False,
            label="toy")


@pytest.mark.parametrize("capability, dtype", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                               ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_amp_uses_bf16_only_where_the_card_computes_it_natively(monkeypatch, capability, dtype):
    """V100 (7.0) and T4 (7.5) report bf16 as supported but emulate it: they get fp16 and a GradScaler."""
    from memlab.engine import loop as engine
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert engine.amp_dtype(torch.device("cuda")) is dtype
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else _nothing():
        assert engine.autocast(torch.device("cuda"), True)[1] is dtype
    assert engine.autocast(torch.device("cpu"), True)[1] is None


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
