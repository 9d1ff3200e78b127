"""A training run's folder: the checkpoint ``last.pt`` that ``loop.fit`` writes after every epoch and resumes
from, and the encoder ``Snapshots`` kept beside it (``snapshot-<epoch>.pt``).

A checkpoint holds the state of the models, optimiser, GradScaler and stateful callbacks, the loop counters and
the history. One that cannot be loaded (truncated, not a checkpoint, missing keys, mismatched states) is reported
with a ``RuntimeWarning``, deleted, and the training restarts from scratch: a damaged file costs a retraining,
never a wrong result.
"""
from __future__ import annotations

import copy
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Iterable

import torch

from memlab.io.cache import atomic_save

# what a damaged or foreign last.pt raises on load: truncated zip (RuntimeError "PytorchStreamReader failed ..."),
# empty file (EOFError), pickle errors, missing keys / mismatched state dicts (KeyError, ValueError, RuntimeError)
DAMAGED = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError, ValueError,
           TypeError, IndexError, AttributeError)  # torch.load of a cut file raises OSError(EINVAL) at some lengths


def write_checkpoint(path: Path, state: dict, stateful: list, *, epoch: int, step: int, seconds: float,
                     stopped: bool, history: list) -> None:
    """Write ``last.pt`` atomically: every ``state`` object's and every stateful callback's ``state_dict()``, with
    the loop counters (``epoch`` and ``step`` done, ``seconds`` of training, ``stopped``) and the ``history``."""
    atomic_save({"state": {name: obj.state_dict() for name, obj in state.items()},
                 "callbacks": [cb.state_dict() for cb in stateful], "epoch": epoch, "step": step,
                 "seconds": seconds, "stopped": stopped, "history": history}, path)


def resume(path: Path | None, state: dict, stateful: list) -> dict | None:
    """The loop counters of ``path`` after loading every state into place, or None (no file, or a damaged
    one: warned about, deleted, and every state put back as it was)."""
    if path is None or not path.is_file():
        return None
    fresh = {name: copy.deepcopy(obj.state_dict()) for name, obj in state.items()}
    fresh_cb = [copy.deepcopy(cb.state_dict()) for cb in stateful]
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
        for name, obj in state.items():
            obj.load_state_dict(st["state"][name])
        if len(st["callbacks"]) != len(stateful):
            raise ValueError(f"{len(st['callbacks'])} callback states for {len(stateful)} callbacks")
        for cb, s in zip(stateful, st["callbacks"]):
            cb.load_state_dict(s)
        return {k: st[k] for k in ("epoch", "step", "seconds", "stopped", "history")}
    except DAMAGED as e:
        for name, obj in state.items():
            obj.load_state_dict(fresh[name])
        for cb, s in zip(stateful, fresh_cb):
            cb.load_state_dict(s)
        warnings.warn(f"cannot resume from the checkpoint {path} ({type(e).__name__}: {str(e)[:200]}); deleting it, "
                      f"the training restarts from scratch", RuntimeWarning, stacklevel=3)
        path.unlink(missing_ok=True)
        return None


class Snapshots:
    """Epoch-end callback: CPU copies of ``module.state_dict()`` after the (1-based) ``epochs``; ``saved`` is
    {epoch: state dict}.

    With a ``folder`` (the run's checkpoint folder) each snapshot is written once, atomically, to its own file
    ``snapshot-<epoch>.pt`` there, and the per-epoch checkpoint holds only the list of epochs written: it stays
    the size of the training state however many snapshots accumulate (a paper-profile encoder with 16
    snapshots would otherwise rewrite them all every epoch). Without a folder they stay in memory and in the
    checkpoint. Resuming from a checkpoint whose snapshot files are gone raises ``FileNotFoundError``, which
    ``fit`` treats as a damaged checkpoint (a restart from scratch)."""

    def __init__(self, module: torch.nn.Module, epochs: Iterable[int], folder=None, write: bool = True):
        self.module, self.epochs, self.write = module, set(epochs), write  # write False: another process writes
        self.folder = None if folder is None else Path(folder)
        self._memory, self._written = {}, []

    def _file(self, epoch: int) -> Path:
        return self.folder / f"snapshot-{epoch}.pt"

    def __call__(self, epoch: int, rec: dict, step: int) -> None:
        if epoch in self.epochs:
            state = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
            if self.folder is None:
                self._memory[epoch] = state
            else:
                if self.write:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    atomic_save(state, self._file(epoch))
                self._written = sorted(set(self._written) | {epoch})

    @property
    def saved(self) -> dict:
        """{epoch: state dict} of every snapshot taken (read from its file where it was written to one)."""
        out = dict(self._memory)
        for e in self._written:
            out[e] = torch.load(self._file(e), map_location="cpu", weights_only=True)
        return out

    def state_dict(self) -> dict:
        return {"written": list(self._written)} if self.folder is not None else dict(self._memory)

    def load_state_dict(self, state: dict) -> None:
        if "written" in state:
            if self.folder is None:
                raise ValueError("a checkpoint with snapshot files cannot resume without its folder")
            missing = [str(self._file(e)) for e in state["written"] if not self._file(e).is_file()]
            if missing:
                raise FileNotFoundError(f"snapshot files missing: {missing}")
            self._memory, self._written = {}, list(state["written"])
        elif self.folder is None:  # snapshots kept in the checkpoint itself
            self._memory, self._written = dict(state), []
        else:  # a checkpoint written before snapshot files: move its snapshots to their files now
            self._memory, self._written = {}, []
            self.folder.mkdir(parents=True, exist_ok=True)
            for e, snap in sorted(state.items()):
                atomic_save(snap, self._file(int(e)))
                self._written.append(int(e))
