"""Notebook 06, benign memorization (Anagnostidis et al., ICLR 2023; methods.md section 5): its parameters, its
data, the shared training recipe, the probes, and the plan of every run it trains.

``BenignStudy`` is the notebook's state: the parameters ``P``, the session ``S`` (device, cache, report), the data
and the plan's runs (``benign_runs``), read back by name (``run``). The tables and claims computed from the runs
are ``benign_tables``, their figures ``benign_figures``::

    study = BenignStudy(parameters(BenignParams, globals()))   # ParameterError before any compute
    study.load_data()                                          # DatasetNotFound before any compute
    study.train()                                              # the plan: every run is a cached job
    benign_tables.table2_knn_linear(study)                     # Table 2, written and shown
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from memlab.data.datasets import DATASETS, load_dataset
from memlab.data.splits import balanced_subset
from memlab.engine.benign import BenignConfig, BenignRun, build_net, load_benign, make_aug
from memlab.engine.benign_sets import make_labels
from memlab.engine.jobs import Plan
from memlab.experiments.benign_datasets import dataset_run, load_table2_data
from memlab.experiments.benign_runs import MAIN_RUNS, arch_run, declare_runs
from memlab.experiments.common import SessionParams, start
from memlab.io.params import ParameterError, choice
from memlab.metrics.benign import knn_noise
from memlab.metrics.probes import knn_accuracy, linear_probe
from memlab.models.benign_net import extract_layers
from memlab.models.networks import MODELS, stem_kw, width_kw
from memlab.streams import BenignSeed


@dataclass(frozen=True)
class BenignParams(SessionParams):
    """Notebook 06's parameters (names, types and defaults: its parameters cell; ranges: ``io.params.RANGES``;
    the session's, ``profile`` to ``slurm``: ``common.SessionParams``).

    Budgets: a run stops once its unaugmented training set is fitted to ``fit_target`` (checked every
    ``eval_every`` epochs; Definition 4.1 asks for 1.0) or its budget runs out (``epochs_noaug``, ``epochs_aug``,
    ``epochs_clean`` for Table 2; ``cap_steps``, ``iid_steps`` gradient steps for Fig. 5 and Table 4;
    ``sweep_epochs`` for the sweeps). ``threads`` sets torch's CPU threads of the notebook's process on any
    device (0: torch's default; 1 is faster on a busy shared machine); the other notebooks call it
    ``cpu_threads``."""
    threads: int                # torch CPU threads of this process (0: torch's default)
    dataset: str                # training dataset; "synthetic" works offline
    synthetic_n_train: int      # training-split size of the generated data
    synthetic_n_test: int       # test-split size of the generated data
    n_train: int                # class-balanced training images; with their clean labels, the K-NN memory bank
    n_test: int                 # test images of the probes
    data_seed: int              # seed of the class-balanced subsets (offsets: streams.BenignSeed)
    arch: str                   # encoder h (models.networks); the paper's is resnet18
    table2_archs: list          # Table 2's other encoders (the paper: VGG), each training the three runs again
    table2_datasets: list       # Table 2's other datasets (the paper: CIFAR-100, Tiny-ImageNet), the three runs with
                                # every encoder on each, random labels over its own classes (``benign_datasets``)
    table2_n_train: int         # class-balanced training images of each of ``table2_datasets`` (0: the whole split)
    table2_n_test: int          # test images of each of ``table2_datasets`` (0: the whole split)
    width: float                # width multiplier of ResNet encoders
    hidden: int                 # projector hidden width
    num_classes: int            # C, the random classes
    loss: str                   # "ce" or "mse" on one-hot targets
    mixup: float                # Beta(a, a) mixup of the runs with DA (0: off)
    optimizer: str              # "adam" or "sgd" (momentum 0.9)
    lr: float
    weight_decay: float
    batch_size: int
    micro_batch: int            # images per forward/backward pass (0: the whole batch); gradients accumulate
    seed: int                   # training seed: initialisation, order, augmentations, random labels
    fit_target: float
    eval_every: int
    epochs_noaug: int
    epochs_aug: int
    epochs_clean: int
    probe_every: int            # the DA run records its K-NN and per-layer invariance every ... epochs (Fig. 6)
    knn_k: int                  # K of the K-NN probes
    layer_probe_train: int      # Fig. 3: training images probed per layer
    layer_probe_test: int       # Fig. 3: test images probed per layer
    inv_images: int             # Fig. 6: images of I(x; q, T)
    inv_pairs: int              # Fig. 6: augmentation pairs per image
    cap_n: int                  # Fig. 5: images of the capacity runs
    cap_B: list                 # Fig. 5: fixed augmentations per image
    cap_steps: int
    iid_s: int                  # Table 4: anchor images
    iid_B: int                  # Table 4: same-class real examples per anchor, the anchor included
    iid_steps: int
    sweep_n: int                # images of the sweep runs
    sweep_epochs: int
    sweep_widths: list          # Fig. 7: projector hidden widths
    sweep_classes: list         # Fig. 8: numbers of random classes (ints >= 2 or "per_sample")
    sweep_noise: list           # Fig. 12: label-noise fractions
    sweep_magnitudes: list      # Fig. 11: RandAugment magnitudes (2 ops)
    transfer_datasets: list     # Fig. 9: the datasets the features transfer to (the paper: CIFAR-100, STL-10)
    second_n_train: int         # Fig. 9: training images (K-NN memory) of each transfer dataset
    second_n_test: int          # Fig. 9: test images (queries) of each transfer dataset
    toy_n: list                 # appendix E: training-set sizes
    toy_B: list                 # appendix E: augmentations per point
    toy_d: int
    toy_d1: int
    toy_classes: int
    toy_K: int
    toy_sigma: float
    toy_steps: int
    mse_images: int             # appendix B: images of the decomposition
    mse_views: int              # appendix B: views per image
    force: bool                 # retrain cached runs

    def __post_init__(self):
        choice("dataset", self.dataset, DATASETS)
        if not self.transfer_datasets or len(set(self.transfer_datasets)) != len(self.transfer_datasets):
            raise ParameterError(f"transfer_datasets must list distinct datasets (Fig. 9), got {self.transfer_datasets}")
        for name in self.transfer_datasets:
            choice("transfer_datasets", name, DATASETS)
        choice("arch", self.arch, MODELS)
        for a in self.table2_archs:
            choice("table2_archs", a, [m for m in MODELS if m != self.arch])
        if len(set(self.table2_datasets)) != len(self.table2_datasets):
            raise ParameterError(f"table2_datasets lists a dataset twice: {self.table2_datasets}. Fix: list each "
                                 f"once.")
        if self.dataset in self.table2_datasets:
            raise ParameterError(f"table2_datasets {self.table2_datasets} lists dataset {self.dataset!r}, Table 2's "
                                 f"first column already. Fix: drop it, or [] for Table 2 on {self.dataset!r} alone.")
        for name in self.table2_datasets:
            choice("table2_datasets", name, DATASETS)
        if self.table2_n_train < 0 or self.table2_n_test < 0:
            raise ParameterError(f"table2_n_train and table2_n_test must be >= 0 (0: the whole split), got "
                                 f"{self.table2_n_train} and {self.table2_n_test}")
        choice("loss", self.loss, ["ce", "mse"])
        choice("optimizer", self.optimizer, ["adam", "sgd"])
        for name in ("cap_B", "sweep_widths", "toy_n", "toy_B"):
            vals = getattr(self, name)
            if not vals or any(not isinstance(v, int) or v < 1 for v in vals):
                raise ParameterError(f"{name} must be a non-empty list of positive ints, got {vals!r}")
        if not self.sweep_noise or any(not 0 <= v <= 1 for v in self.sweep_noise):
            raise ParameterError(f"sweep_noise must list fractions in [0, 1], got {self.sweep_noise!r}")
        if not self.sweep_magnitudes or any(not isinstance(v, int) or not 0 <= v <= 30 for v in self.sweep_magnitudes):
            raise ParameterError(f"sweep_magnitudes must list ints in 0..30, got {self.sweep_magnitudes!r}")
        if not self.sweep_classes or any(c != "per_sample" and not (isinstance(c, int) and c >= 2)
                                         for c in self.sweep_classes):
            raise ParameterError(f"sweep_classes must list ints >= 2 or 'per_sample', got {self.sweep_classes!r}")
        if self.iid_B < 2 or self.fit_target > 1 or max(self.sweep_n, self.cap_n, self.iid_s,
                                                          self.layer_probe_train) > self.n_train:
            raise ParameterError("need iid_B >= 2, fit_target <= 1 and sweep_n, cap_n, iid_s, layer_probe_train "
                                 "<= n_train")
        if self.threads < 0:
            raise ParameterError(f"threads must be >= 0, got {self.threads}")


class BenignStudy:
    """Notebook 06's runs: the parameters ``P``, the session ``S``, the data, the shared recipe and the probes.

    Opening one sets torch's CPU threads (``P.threads``, on any device, before the device is chosen), then
    ``common.start`` checks the device and executor."""

    def __init__(self, P: BenignParams):
        if P.threads:
            torch.set_num_threads(P.threads)
        self.P = P
        self.S = start("06_benign_memorization", P)
        self.model_kw = width_kw(P.arch, P.width)
        self.jobs, self.sweep_points, self.status = {}, [], {}
        self.tables = {}   # the notebook's result tables by name, as its sections compute them
        print(f"device: {self.S.device} | CPU threads: {torch.get_num_threads()} | cache: {self.S.cache.root}")

    # ------------------------------------------------------------------------------------------------ data
    def load_data(self) -> None:
        """``n_train`` class-balanced training images (trained on; with their clean labels, the K-NN memory),
        ``n_test`` test images, and the random labels (one per image, drawn once from ``seed``)."""
        P = self.P
        synthetic = P.dataset == "synthetic"
        self.train_full = load_dataset(P.dataset, "train", **(dict(n=P.synthetic_n_train) if synthetic else {}))
        test_full = load_dataset(P.dataset, "test", **(dict(n=P.synthetic_n_test) if synthetic else {}))
        self.main_idx = balanced_subset(self.train_full.labels.numpy(), P.n_train, P.data_seed)
        self.trainset = self.train_full.subset(self.main_idx)
        self.testset = test_full.subset(balanced_subset(test_full.labels.numpy(), min(P.n_test, len(test_full)),
                                                        P.data_seed + BenignSeed.TEST))
        self.C_true = self.train_full.num_classes
        self.mean, self.std = self.trainset.stats()
        self.Xtr, self.Ytr = self.trainset.images, self.trainset.labels
        self.Xte, self.Yte = self.testset.images, self.testset.labels
        self.rand_labels = make_labels(self.Ytr, 1.0, P.num_classes, P.seed)
        self.norm = make_aug(self.recipe()).normalize
        print(f"{P.dataset}: {len(self.trainset)} training / {len(self.testset)} test images, {self.C_true} classes; "
              f"random labels over {P.num_classes} classes agree with the true ones on "
              f"{(self.rand_labels == self.Ytr).float().mean():.1%}")
        # Table 2's other datasets, here so that a missing one (Tiny-ImageNet cannot be downloaded) stops the
        # notebook before any training
        self.table2_data = load_table2_data(P)

    def recipe(self, aug: str = "simclr", epochs: int | None = None, steps: int = 0, **over) -> BenignConfig:
        """The shared recipe of every run (``epochs`` default ``epochs_aug``); ``aug="none"`` switches DA and
        mixup off; ``over`` replaces fields (e.g. ``hidden``)."""
        P = self.P
        base = dict(model=P.arch, model_kw=self.model_kw, hidden=P.hidden, loss=P.loss, aug=aug,
                    mixup=P.mixup if aug != "none" else 0.0, optimizer=P.optimizer, lr=P.lr,
                    weight_decay=P.weight_decay, batch_size=P.batch_size, micro_batch=P.micro_batch,
                    max_epochs=P.epochs_aug if epochs is None else epochs, max_steps=steps,
                    fit_target=P.fit_target, eval_every=P.eval_every, seed=P.seed, mean=self.mean, std=self.std)
        base.update(over)
        return BenignConfig(**base)

    def epochs_for(self, steps: int, n_items: int) -> int:
        """Epochs that hold ``steps`` optimizer steps on ``n_items`` items (for the step budgets)."""
        return -(-steps // max(1, n_items // min(self.P.batch_size, n_items)))

    # ------------------------------------------------------------------------------------------------ probes
    def embed(self, net, images, norm=None) -> torch.Tensor:
        """The embedding (N, D) float of un-augmented uint8 ``images``, normalised by ``norm`` (default the main
        dataset's)."""
        norm = self.norm if norm is None else norm
        return extract_layers(net, images, norm, ["embedding"], device=self.S.device)["embedding"]

    def knn(self, net, xtr=None, ytr=None, xte=None, yte=None, *, data=None) -> float:
        """K-NN test accuracy of the embedding (K = ``knn_k``); default data: the clean training and test sets;
        ``data``: those of a dataset of ``table2_datasets`` (a ``benign_datasets.Table2Data``), its normalisation
        included."""
        if data is not None:
            xtr, ytr, xte, yte = data.Xtr, data.Ytr, data.Xte, data.Yte
        xtr, ytr = (self.Xtr, self.Ytr) if xtr is None else (xtr, ytr)
        xte, yte = (self.Xte, self.Yte) if xte is None else (xte, yte)
        norm = None if data is None else data.norm
        return knn_accuracy(self.embed(net, xtr, norm), ytr, self.embed(net, xte, norm), yte, k=self.P.knn_k)

    def linear(self, net, data=None) -> float:
        """Linear-probe test accuracy of the embedding (appendix A), on the main dataset or on ``data`` (a
        ``Table2Data``)."""
        d = self if data is None else data
        norm = None if data is None else data.norm
        return linear_probe(self.embed(net, d.Xtr, norm), d.Ytr, self.embed(net, d.Xte, norm), d.Yte,
                            device=self.S.device)

    @cached_property
    def net0(self):
        """The common initialisation of every run (same seed), in eval mode."""
        return build_net(self.recipe(), self.P.num_classes).to(self.S.device).eval()

    @cached_property
    def knn_init(self) -> float:
        return self.knn(self.net0)

    def arch_kw(self, arch: str) -> dict:
        """The recipe fields of Table 2's other encoder ``arch`` (``table2_archs``): model and its width."""
        return {"model": arch, "model_kw": width_kw(arch, self.P.width)}

    def arch_init_knn(self, arch: str) -> float:
        """K-NN accuracy of encoder ``arch`` at its initialisation (the recipe's seed)."""
        return self.knn(build_net(self.recipe(**self.arch_kw(arch)), self.P.num_classes).to(self.S.device).eval())

    def data_kw(self, data, arch: str | None = None) -> dict:
        """The recipe fields of Table 2's runs on ``data`` (a ``Table2Data`` of ``table2_datasets``) with encoder
        ``arch`` (default ``P.arch``): the model, its width and its stem for the images' size (stride 2 at 64 px,
        appendix F: ``networks.stem_kw``), and the dataset's normalisation."""
        arch = arch or self.P.arch
        return {"model": arch, "model_kw": {**width_kw(arch, self.P.width), **stem_kw(arch, data.size)},
                "mean": data.mean, "std": data.std}

    def data_init(self, data, arch: str | None = None):
        """The initialisation (the recipe's seed, eval mode) of encoder ``arch`` (default ``P.arch``) with a
        projector onto ``data``'s C classes."""
        return build_net(self.recipe(**self.data_kw(data, arch)), data.C).to(self.S.device).eval()

    @cached_property
    def tol(self) -> float:
        """The noise level of a K-NN difference (``knn_noise``) at the initialisation's accuracy."""
        return knn_noise(self.knn_init, len(self.Yte))

    # ------------------------------------------------------------------------------------------------ the runs
    def train(self) -> None:
        """Declare every run of the notebook as a job of one plan (``benign_runs.declare_runs``), show the plan,
        and train what the cache lacks."""
        plan = Plan("06_benign_memorization", cache=self.S.cache, device=self.S.device)
        declare_runs(self, plan)
        self.status = self.S.run(plan)

    def run(self, name: str) -> BenignRun:
        """The run declared as ``name``, read from the cache, with its one-line summary (a run whose job is
        shared with an earlier name -- the same config and training set -- reads as cached)."""
        job = self.jobs[name]
        r = load_benign(job, self.S.cache, self.S.device,
                        from_cache=self.status[job.name] == "cached" or job.name != name)
        print(f"{name:<42s} {'cache' if r.from_cache else 'trained'}: {r.epochs} epochs / {r.steps} steps, "
              f"fit {r.fit:.3f} ({r.stopped}), {r.seconds:.0f} s")
        return r

    @cached_property
    def runs(self) -> dict:
        """The three runs of Table 2, by name."""
        return {name: self.run(name) for name in MAIN_RUNS}

    @cached_property
    def arch_runs(self) -> dict:
        """{encoder of ``table2_archs``: {Table 2 run name: its run with that encoder}}."""
        return {a: {name: self.run(arch_run(name, a)) for name in MAIN_RUNS} for a in self.P.table2_archs}

    @cached_property
    def data_runs(self) -> dict:
        """{dataset of ``table2_datasets``: {encoder (``arch``, then ``table2_archs``): {Table 2 run name: its run
        on that dataset with that encoder}}}."""
        P = self.P
        return {ds: {a: {name: self.run(dataset_run(name, ds, None if a == P.arch else a)) for name in MAIN_RUNS}
                     for a in (P.arch, *P.table2_archs)} for ds in P.table2_datasets}
