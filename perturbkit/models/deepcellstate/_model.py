"""DeepCellState: staged training, prediction across cell lines, transfer learning."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..._schema import OBS_KEYS, PerturbkitInputError, check_positive_int
from ..._settings import settings
from ...train import EarlyStopping, Objective, fit, split_indices
from .._cross_cell import CrossCellModel
from .._profiles import CellDrugProfiles, scaled_profiles
from ._module import DeepCellStateNetwork, deepcellstate_loss


@dataclass(frozen=True)
class DeepCellStateDefaults:
    """DeepCellState's defaults, written once: every signature that takes these options takes its default here."""

    latent_dim: int = 128
    hidden: tuple[int, ...] = (512, 256)
    input_dropout: float = 0.5
    l1: float = 1e-7
    skip: bool = True
    skip_map: str = "ridge"
    decoder_dropout: float = 0.0
    validation_fraction: float = 0.05
    lr: float = 1e-3
    decoder_lr: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 5
    epochs_per_round: int = 1
    max_rounds: int = 50
    pretrain_steps: int | None = 240
    round_patience: int | None = 3


DEFAULTS = DeepCellStateDefaults()
SKIP_MAPS = ("full", "diagonal", "ridge")


def _skip_map(value) -> str:
    if value not in SKIP_MAPS:
        raise PerturbkitInputError(f"skip_map={value!r} is not known; choose one of {list(SKIP_MAPS)}.")
    return str(value)


def _pretrain_epochs(n_rows: int, batch_size: int, max_epochs: int, steps: int | None) -> int:
    """Pretraining epochs: the whole epochs that make ``steps`` minibatch steps (at least 1, at most ``max_epochs``).

    A budget in steps, not epochs, gives small data sets (few batches per epoch) as many updates as large ones.
    """
    if steps is None:
        return max_epochs
    check_positive_int(steps, "pretrain_steps", allow_none=True)
    per_epoch = max(1, math.ceil(n_rows / max(1, int(batch_size))))
    return max(1, min(int(max_epochs), math.ceil(int(steps) / per_epoch)))


def ridge_loo(x: np.ndarray, y: np.ndarray, *, alphas=None) -> tuple[np.ndarray, np.ndarray]:
    """Ridge map ``y ≈ x @ W + b`` with the penalty of least leave-one-out error: ``(W, b)``.

    The same fit as :class:`~perturbkit.models.baselines.RidgeMap` (its penalty grid, an unpenalised intercept,
    one penalty for all outputs, chosen by the mean squared leave-one-out residual), from one eigendecomposition of
    the centred Gram matrix in float64, shared by every penalty.
    """
    from ..baselines import RidgeMap

    alphas = RidgeMap().alphas if alphas is None else alphas
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    eigenvalues, vectors = torch.linalg.eigh(xc.T @ xc)
    eigenvalues = eigenvalues.clamp_min(0)
    projected = xc @ vectors  # U S of the SVD of xc
    projected_y = projected.T @ yc
    leverage_basis = projected**2
    best_error, best_weights = math.inf, 1.0 / (eigenvalues + float(max(alphas)))  # (if every error is inf or NaN)
    for alpha in alphas:
        weights = 1.0 / (eigenvalues + float(alpha))
        fitted = projected @ (weights[:, None] * projected_y)
        leverage = leverage_basis @ weights + 1.0 / len(x)  # the hat matrix's diagonal, intercept included
        error = float((((yc - fitted) / (1 - leverage)[:, None]) ** 2).mean())
        if error < best_error:
            best_error, best_weights = error, weights
    coef = vectors @ (best_weights[:, None] * projected_y)
    return coef.float().numpy(), (y_mean - x_mean @ coef).float().numpy()


class DeepCellState(CrossCellModel):
    """Predict a drug's profile in one cell line from its profile in others.

    One shared encoder maps any cell line's profile into a common latent space; one decoder per cell line maps it
    back out (see the DeepCellState methods page). Build it with :meth:`from_adata` and train it with
    :meth:`train`, or both at once with :func:`perturbkit.tl.train_deepcellstate`.

    Parameters
    ----------
    var_names
        Feature (gene) names, in order.
    cell_lines
        The cell lines that get a decoder, in order.
    latent_dim, hidden
        Latent size (paper 128) and encoder hidden sizes (paper 512, 256; decoders mirror them).
    input_dropout
        Denoising dropout on the input (paper 0.5; 0 switches it off).
    l1
        Weight of the L1 activity penalty on the latent code (Keras semantics: mean over the batch of the summed
        absolute activations; 0 switches it off).
    skip
        Feed the dropped-out input straight to each decoder's output layer.
    skip_map
        How the skip input reaches the output: ``"ridge"`` (default: a fixed linear map from the other cell lines,
        fitted in closed form by ridge regression before the cell-line rounds; the network learns what it misses),
        ``"full"`` (the paper's: a learned dense input → output map, concatenated to the last hidden layer) or
        ``"diagonal"`` (one weight per gene: each output gene sees its own input value, as in the reference code's
        per-gene output layer).
    decoder_dropout
        Dropout inside the decoders (reference code 0.8 as keep-rate is not the paper's default; 0 by default).
    **kwargs
        ``data_keys`` (the obs keys of :attr:`data_defaults`), ``layer``, ``device``, ``seed`` and ``scaler``,
        as in :class:`~perturbkit.train.BaseModel`.
    """

    _prediction_key = "deepcellstate_prediction"
    _add_cell_line_hint = ", or add it with model.fine_tune(adata) on data that contains it"

    def __init__(
        self,
        var_names,
        *,
        cell_lines,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        input_dropout: float = DEFAULTS.input_dropout,
        l1: float = DEFAULTS.l1,
        skip: bool = DEFAULTS.skip,
        skip_map: Literal["full", "diagonal", "ridge"] = DEFAULTS.skip_map,
        decoder_dropout: float = DEFAULTS.decoder_dropout,
        **kwargs,
    ):
        cell_lines = self._distinct_cell_lines([str(c) for c in cell_lines])
        super().__init__(
            var_names,
            cell_lines=cell_lines,
            latent_dim=int(latent_dim),
            hidden=tuple(hidden),
            input_dropout=float(input_dropout),
            l1=float(l1),
            skip=bool(skip),
            skip_map=_skip_map(skip_map),
            decoder_dropout=float(decoder_dropout),
            **kwargs,
        )

    @classmethod
    def from_adata(
        cls,
        adata,
        *,
        cell_key: str = OBS_KEYS.cell_key,
        drug_key: str = OBS_KEYS.drug_key,
        control_key: str | None = OBS_KEYS.control_key,
        moa_key: str | None = OBS_KEYS.moa_key,
        average: bool = True,
        cell_lines=None,
        latent_dim: int = DEFAULTS.latent_dim,
        hidden=DEFAULTS.hidden,
        input_dropout: float = DEFAULTS.input_dropout,
        l1: float = DEFAULTS.l1,
        skip: bool = DEFAULTS.skip,
        skip_map: Literal["full", "diagonal", "ridge"] = DEFAULTS.skip_map,
        decoder_dropout: float = DEFAULTS.decoder_dropout,
        layer: str | None = None,
        device: str | None = None,
        seed: int | None = 0,
    ) -> DeepCellState:
        """An untrained DeepCellState for ``adata``'s genes and cell lines (one decoder each).

        The obs keys and ``layer`` are recorded with the model and reused by :meth:`train` and :meth:`predict`;
        ``cell_lines`` restricts and orders the cell lines (default: every cell line with treated profiles).
        See :func:`perturbkit.tl.train_deepcellstate` for the other parameters.
        """
        return cls._from_adata(adata, locals())

    def _build_module(self):
        h = self.hparams
        return DeepCellStateNetwork(
            self.n_vars,
            len(h["cell_lines"]),
            latent_dim=h["latent_dim"],
            hidden=h["hidden"],
            input_dropout=h["input_dropout"],
            decoder_dropout=h["decoder_dropout"],
            skip=h["skip"],
            skip_map=h.get("skip_map", "full"),  # models saved before the option existed
        )

    # ----------------------------------------------------------------------------------------------- training
    def _loss(self, cell: int | None, *, frozen_encoder: bool = False):
        l1 = self.hparams["l1"]
        return lambda batch: deepcellstate_loss(self.module, *batch, cell=cell, l1=l1, frozen_encoder=frozen_encoder)

    def _uses_ridge_path(self) -> bool:
        return bool(self.hparams["skip"]) and self.hparams.get("skip_map") == "ridge"

    @torch.no_grad()
    def _with_linear(self, cell: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(x, y)``, plus decoder ``cell``'s fixed ridge path of ``x`` when it has one.

        Computed once per stage, not once per batch: the path does not change while the network trains.
        """
        if not self._uses_ridge_path() or len(x) == 0:
            return x, y
        decoder = self.module.decoders[cell]
        return x, y, decoder.linear_map(torch.from_numpy(x).to(self.device)).cpu().numpy()

    def _decoder_positions(self, profiles: CellDrugProfiles) -> list[int]:
        return [self.cell_index(c) for c in profiles.cell_lines]

    @torch.no_grad()
    def _validation_mse(self, scaled: CellDrugProfiles, decoders: list[int]) -> float:
        """Mean over cell lines of the MSE of predicting each drug's profile from each of its cell lines."""
        self.module.eval()
        errors = []
        for t, cell in enumerate(decoders):
            x, y, _ = scaled.pairs(t)
            if len(x):
                out, _ = self.module(torch.from_numpy(x).to(self.device), cell)
                errors.append(float(torch.mean((out - torch.from_numpy(y).to(self.device)) ** 2)))
        return float(np.mean(errors)) if errors else float("nan")

    def train(
        self,
        adata,
        *,
        validation_fraction: float = DEFAULTS.validation_fraction,
        lr: float = DEFAULTS.lr,
        decoder_lr: float = DEFAULTS.decoder_lr,
        batch_size: int = DEFAULTS.batch_size,
        max_epochs: int = DEFAULTS.max_epochs,
        patience: int = DEFAULTS.patience,
        epochs_per_round: int = DEFAULTS.epochs_per_round,
        max_rounds: int = DEFAULTS.max_rounds,
        decoder_epochs: int | None = None,
        pretrain_steps: int | None = DEFAULTS.pretrain_steps,
        round_patience: int | None = DEFAULTS.round_patience,
        pretrain: bool = True,
        tune_decoders=None,
        seed: int | None = 0,
        fit_scaler: bool = True,
        checkpoint_dir=None,
        checkpoint_every: int = 10,
        resume=None,
    ) -> DeepCellState:
        """Staged training on ``adata``'s treated profiles, read with the model's obs keys and layer.

        ``adata`` may also be the per-(drug, cell line) :class:`~perturbkit.models._profiles.CellDrugProfiles`
        (as the evaluations pass). Steps (see the DeepCellState methods page):

        1. pretrain one autoencoder on every profile, early-stopped with ``patience``, for at most the whole epochs
           that make ``pretrain_steps`` minibatch steps (at least one epoch; ``None``: ``max_epochs``); copy its
           decoder into each cell line's decoder;
        2. rounds: visit cell lines in shuffled order, training the shared encoder and that cell line's decoder for
           ``epochs_per_round`` epochs on (drug's profile in any cell line → its profile in this one), until the
           validation error stops improving for ``round_patience`` rounds (``None``: ``patience``);
        3. freeze the encoder and fine-tune each decoder alone at ``decoder_lr`` with early stopping, for at most
           ``decoder_epochs`` epochs (default ``max_epochs``; 0 skips this stage). ``tune_decoders`` (cell lines)
           limits this stage to their decoders (cross-validation tunes only the target's: the others are never
           used for its predictions, and a decoder's fine-tuning cannot change another's output).

        Validation drugs (``validation_fraction``) are held out of training in every cell line. With
        ``skip_map="ridge"`` (the default) each decoder's skip path is first set to a ridge map from the other cell
        lines (closed form) and the network learns the residual. The learning rates default to 10× the paper's
        (1e-4, then 1e-5 for the decoders): with the ridge skip they are as accurate on both simulated L1000-like
        generators and about twice as fast (benchmarks/deepcellstate_defaults.py). The schedule (at most 240
        pretraining steps, 1 epoch per cell line per round, round patience 3) is as accurate as the longer one
        before it and needs about half the epochs (benchmarks/deepcellstate_cv.py).

        Ctrl-C stops training with the best weights so far and returns the model. ``checkpoint_dir`` writes a
        checkpoint every ``checkpoint_every`` epochs (rounds in stage 2) and after each stage; ``resume`` (a
        checkpoint) continues an earlier run exactly.
        """
        if not isinstance(adata, CellDrugProfiles):
            cell_key = self.data_keys["cell_key"]
            present = set(adata.obs[cell_key].astype(str)) if cell_key in adata.obs else set()
            adata = self.profiles_from(adata, cell_lines=[c for c in self.cell_lines if c in present] or None)
        profiles = adata
        with self._training_run(
            seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume
        ) as run:
            self._train_stages(
                profiles,
                run,
                validation_fraction=validation_fraction,
                lr=lr,
                decoder_lr=decoder_lr,
                batch_size=batch_size,
                max_epochs=max_epochs,
                patience=patience,
                epochs_per_round=epochs_per_round,
                max_rounds=max_rounds,
                decoder_epochs=decoder_epochs,
                pretrain_steps=pretrain_steps,
                round_patience=round_patience,
                pretrain=pretrain,
                tune_decoders=tune_decoders,
                seed=seed,
                fit_scaler=fit_scaler,
            )
        self.module.eval()
        return self

    def _train_stages(
        self,
        profiles,
        run,
        *,
        validation_fraction,
        lr,
        decoder_lr,
        batch_size,
        max_epochs,
        patience,
        epochs_per_round,
        max_rounds,
        decoder_epochs,
        pretrain_steps,
        round_patience,
        pretrain,
        tune_decoders,
        seed,
        fit_scaler,
    ) -> None:
        rng = np.random.default_rng(seed)
        train, val, decoders = self._split_scaled(
            profiles, validation_fraction=validation_fraction, seed=seed, fit_scaler=fit_scaler
        )
        has_val = len(val.drugs) > 0
        common = dict(batch_size=batch_size, device=self.device, seed=None, history=self.history)
        net = self.module

        if pretrain and not run.passed("pretrain"):
            x = train.values[train.present]
            xv = val.values[val.present]
            fit(
                net,
                Objective(self._loss(None), [*net.encoder.parameters(), *net.pretrain_decoder.parameters()], lr=lr),
                (x, x),
                validation=(xv, xv) if has_val else None,
                max_epochs=_pretrain_epochs(len(x), batch_size, max_epochs, pretrain_steps),
                patience=patience,
                stage="pretrain",
                checkpoint=run,
                **common,
            )
            net.copy_pretrained_decoder(decoders)
            run.stage_done("pretrain")
        if self.hparams["skip"] and self.hparams.get("skip_map") == "ridge" and not run.passed("linear maps"):
            self._fit_linear_maps(train, decoders)
            run.stage_done("linear maps")

        train_pairs = [self._with_linear(cell, *train.pairs(t)[:2]) for t, cell in enumerate(decoders)]
        if not run.passed("rounds"):
            self._train_rounds(
                run,
                train_pairs,
                val if has_val else train,
                decoders,
                rng,
                lr=lr,
                patience=patience if round_patience is None else round_patience,
                epochs_per_round=epochs_per_round,
                max_rounds=max_rounds,
                common=common,
            )
            run.stage_done("rounds")

        decoder_epochs = max_epochs if decoder_epochs is None else decoder_epochs
        tuned = None if tune_decoders is None else {self.cell_index(str(c)) for c in tune_decoders}
        for t, cell in enumerate(decoders):
            x = train_pairs[t][0]
            if len(x) == 0 or decoder_epochs == 0 or (tuned is not None and cell not in tuned):
                continue
            validation = self._with_linear(cell, *val.pairs(t)[:2])
            self._fit_stage(
                run,
                f"decoder: {self.cell_lines[cell]}",
                Objective(self._loss(cell, frozen_encoder=True), net.decoders[cell].parameters(), lr=decoder_lr),
                train_pairs[t],
                validation=validation if len(validation[0]) else None,
                max_epochs=decoder_epochs,
                patience=patience,
                batch_size=batch_size,
                seed=None,
            )

    def _split_scaled(self, profiles, *, validation_fraction, seed, fit_scaler):
        """Fit the scaler (unless kept), scale, and split the drugs: ``(train, validation, decoder positions)``."""
        if fit_scaler or self.scaler is None:
            from ...pp import Scaler

            self.scaler = Scaler("maxabs", per_feature=False).fit(profiles.values[profiles.present])
        scaled = scaled_profiles(self, profiles)
        train_pos, val_pos = split_indices(
            len(scaled.drugs), validation_fraction=validation_fraction, seed=0 if seed is None else seed
        )
        return scaled.subset(drugs=train_pos), scaled.subset(drugs=val_pos), self._decoder_positions(scaled)

    def _fit_linear_maps(self, train: CellDrugProfiles, decoders: list[int]) -> None:
        """``skip_map="ridge"``: each decoder's fixed linear path, a ridge map from the other cell lines' profiles.

        One map per target cell line, fitted on the training drugs' (profile in another cell line → profile in this
        one) pairs in the model's scaled units, with the penalty chosen by leave-one-out cross-validation over
        :class:`~perturbkit.models.baselines.RidgeMap`'s grid (the same map, in half its time: :func:`ridge_loo`).
        The learned path starts at zero and fits the residual.
        """
        for t, cell in enumerate(decoders):
            others = [s for s in range(len(decoders)) if s != t]
            x, y, _ = train.pairs(t, sources=others)
            if len(x) < 2:
                continue
            self.module.decoders[cell].set_linear_map(*ridge_loo(x, y))

    def _train_rounds(
        self, run, train_pairs, monitored, decoders, rng, *, lr, patience, epochs_per_round, max_rounds, common
    ) -> None:
        """Stage 2: rounds over the cell lines in shuffled order, early-stopped on the validation error."""
        net = self.module
        stopper = EarlyStopping(net, patience=patience)
        saved = run.resume_state("rounds")
        if saved is None:
            stopper.step(self._validation_mse(monitored, decoders), -1)
            first_round = 0
        else:
            stopper.load_state_dict(saved["stopper"])
            rng.bit_generator.state = saved["permutations"]
            first_round = int(saved["round"]) + 1
        from tqdm.auto import tqdm

        rounds = tqdm(
            range(first_round, max_rounds), desc="cell-line rounds", disable=not settings.progress_bar, leave=False
        )
        try:
            for round_ in rounds:
                for t in rng.permutation(len(decoders)):
                    if len(train_pairs[t][0]) == 0:
                        continue
                    cell = decoders[t]
                    params = [*net.encoder.parameters(), *net.decoders[cell].parameters()]
                    fit(
                        net,
                        Objective(self._loss(cell), params, lr=lr),
                        train_pairs[t],
                        max_epochs=epochs_per_round,
                        patience=None,
                        stage=f"round {round_}: {self.cell_lines[cell]}",
                        **common,
                    )
                value = self._validation_mse(monitored, decoders)
                self.history.append({"stage": "rounds", "epoch": round_, "validation_loss": value})
                stop = stopper.step(value, round_)
                run.epoch_done(
                    "rounds",
                    round_,
                    lambda round_=round_: {
                        "round": round_,
                        "stopper": stopper.state_dict(),
                        "permutations": rng.bit_generator.state,
                    },
                )
                if stop:
                    break
        finally:  # also on Ctrl-C: keep the best rounds' weights
            rounds.close()
            stopper.restore_best()

    def fine_tune(
        self,
        adata,
        *,
        lr: float = 1e-5,
        max_rounds: int = 20,
        validation_fraction: float = 0.1,
        seed: int | None = 0,
        **train_kwargs,
    ) -> DeepCellState:
        """Transfer learning on a small external set: continue staged training (without pretraining).

        Cell lines in ``adata`` that the model does not know get a new decoder initialised from the pretrained one.
        The scaler and genes stay those of the original model.
        """
        profiles = self.profiles_from(adata)
        for cell in profiles.cell_lines:
            if cell not in self.cell_lines:
                self.module.add_decoder()
                self.hparams["cell_lines"] = [*self.cell_lines, cell]
        outside = np.abs(self.scaler.transform(profiles.values[profiles.present])).max()
        if outside > 1.5:
            warnings.warn(
                f"the fine-tuning data reaches {outside:.2f} on the model's [-1, 1] scale; the tanh output "
                f"cannot follow values beyond ±1.",
                stacklevel=2,
            )
        return self.train(
            profiles,
            lr=lr,
            max_rounds=max_rounds,
            validation_fraction=validation_fraction,
            pretrain=False,
            fit_scaler=False,
            seed=seed,
            **train_kwargs,
        )

    # ---------------------------------------------------------------------------------------------- prediction
    def predict_array(self, X: np.ndarray, *, target: str) -> np.ndarray:
        """Decode profiles ``X`` (rows, in the data's units) into cell line ``target``; returns the data's units."""
        cell = self.cell_index(target)
        return self.unscale_rows(self.run_in_chunks(lambda x: self.module(x, cell)[0], self.scale_rows(X)))

    def encode_array(self, X: np.ndarray) -> np.ndarray:
        """Latent codes of profiles ``X`` (rows, in the data's units)."""
        return self.run_in_chunks(lambda x: self.module.encode(x)[1], self.scale_rows(X))

    def decode_array(self, Z, *, decoder: str | None = None, inputs=None) -> np.ndarray:
        """Decode latent codes ``Z`` with cell line ``decoder``'s decoder (default: the first cell line).

        The skip connection feeds each decoder the input profile too: ``inputs`` (rows, the data's units) are the
        profiles the codes came from; ``None`` feeds zeros, i.e. the decoder's output from the latent code alone.
        """
        cell = self.cell_index(self.cell_lines[0] if decoder is None else decoder)
        Z = self.latent_codes(Z, latent_dim=self.hparams["latent_dim"])
        skip = (
            np.zeros((len(Z), self.n_vars), dtype=np.float32)
            if inputs is None
            else self.scale_rows(np.broadcast_to(np.asarray(inputs, dtype=np.float32), (len(Z), self.n_vars)))
        )
        out = self.run_in_chunks(lambda s, z: self.module.decode(s, z, cell), skip, Z)
        return self.unscale_rows(out)
