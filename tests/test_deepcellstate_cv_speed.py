"""DeepCellState cross-validation speed-ups (issue 14): exactness of each lever, no leakage of test drugs, accuracy.

The speed-ups that change no number: the ridge path computed once per stage, the encoder run without autograd while a
decoder is fine-tuned alone, the pretraining decoder's all-zero ridge path skipped, and only the target's decoder
fine-tuned in cross-validation. The schedule change (round patience 3, 1 epoch per cell line per round, pretraining
at most 240 steps) is checked for accuracy on a held-out simulate_l1000 seed.
"""

import numpy as np
import pandas as pd
import pytest
import torch

import perturbkit as pk
from perturbkit.datasets._simulate_l1000 import simulate_l1000
from perturbkit.models._profiles import CellDrugProfiles
from perturbkit.models.baselines import RidgeMap
from perturbkit.models.deepcellstate import DeepCellState, DeepCellStateNetwork
from perturbkit.models.deepcellstate import _evaluation as evaluation
from perturbkit.models.deepcellstate._model import ridge_loo
from perturbkit.models.deepcellstate._module import deepcellstate_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"latent_dim": 8, "hidden": (32, 16), "max_epochs": 6, "max_rounds": 3, "batch_size": 32}


@pytest.fixture(scope="module")
def three_lines():
    adata = pk.datasets.simulate_bulk(n_drugs=80, n_genes=40, n_cell_lines=3, frac_missing=0.1, seed=4)
    return CellDrugProfiles.from_adata(adata, cell_key="cell_line", drug_key="drug", control_key="control")


def _network(seed=0, n=30):
    torch.manual_seed(seed)
    net = DeepCellStateNetwork(n, 2, latent_dim=8, hidden=(16, 12), skip_map="ridge")
    g = torch.Generator().manual_seed(seed)
    for decoder in net.decoders:
        decoder.set_linear_map(torch.randn(n, n, generator=g) * 0.1, torch.randn(n, generator=g) * 0.1)
        torch.nn.init.normal_(decoder.output.weight, std=0.1, generator=g)
    return net


@pytest.mark.parametrize(("n", "noise"), [(120, 1.0), (40, 3.0), (300, 0.2)])
def test_ridge_loo_is_the_ridge_map(n, noise):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 60)).astype(np.float32)
    y = (x @ rng.standard_normal((60, 50)) * 0.1 + noise * rng.standard_normal((n, 50))).astype(np.float32)
    reference = RidgeMap().fit(x, y).model_
    coef, intercept = ridge_loo(x, y)
    np.testing.assert_allclose(coef, reference.coef_.T, atol=1e-5)
    np.testing.assert_allclose(intercept, reference.intercept_, atol=1e-5)


def test_fast_dropout_has_dropouts_distribution():
    from perturbkit.models.deepcellstate._module import FastDropout

    dropout = FastDropout(0.3)
    x = torch.full((400, 500), 2.0)
    torch.manual_seed(0)
    y = dropout(x)
    assert float((y == 0).float().mean()) == pytest.approx(0.3, abs=0.005)
    assert torch.unique(y).tolist() == [0.0, pytest.approx(2.0 / 0.7)]
    assert float(y.mean()) == pytest.approx(2.0, abs=0.01)
    assert torch.equal(dropout.eval()(x), x)


def test_precomputed_ridge_path_matches_the_forward_pass():
    net = _network().eval()
    x = torch.rand(50, 30) * 2 - 1
    inside, _ = net(x, 1)
    linear = net.decoders[1].linear_map(x)
    outside, _ = net(x, 1, linear=linear)
    assert torch.allclose(inside, outside, atol=1e-6)
    assert float((inside - net(x, 0)[0]).abs().max().detach()) > 1e-3  # the two decoders differ: the path matters


def test_pretraining_decoder_skips_its_zero_ridge_path():
    net = _network()
    net.eval()
    x = torch.rand(20, 30) * 2 - 1
    skipped, _ = net(x, None)
    net.pretrain_decoder.uses_linear_map = True
    full, _ = net(x, None)  # adds x @ 0 + 0
    assert torch.equal(skipped, full)


def test_frozen_encoder_gives_the_same_decoder_gradients_and_none_to_the_encoder():
    x, y = torch.rand(40, 30) * 2 - 1, torch.rand(40, 30) * 2 - 1
    grads = []
    for frozen in (False, True):
        net = _network(1)
        torch.manual_seed(5)  # the same input-dropout mask both times
        deepcellstate_loss(net, x, y, cell=0, l1=1e-3, frozen_encoder=frozen)["loss"].backward()
        grads.append([p.grad.clone() for p in net.decoders[0].parameters()])
        encoder_grads = [p.grad for p in net.encoder.parameters()]
        assert all(g is None for g in encoder_grads) == frozen
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def _captured_models(monkeypatch):
    models = []
    train = DeepCellState.train

    def capture(self, *args, **kwargs):
        models.append(self)
        return train(self, *args, **kwargs)

    monkeypatch.setattr(DeepCellState, "train", capture)
    return models


def _test_positions(profiles, fold, *, source, target, n_folds=4, seed=0):
    candidates = evaluation._paired_candidates(profiles, source, target)
    fold_of = evaluation.assign_folds(profiles, candidates, n_folds=n_folds, split="drug", seed=seed)
    return candidates[fold_of == fold]


def test_test_drugs_never_reach_training(three_lines, monkeypatch):
    """Poison the test drugs' profiles in every cell line: every stage's weights must come out bit for bit the same.

    A test drug used by any stage (the scaler, the validation split, pretraining, the ridge maps, the rounds or the
    decoder fine-tuning) would change the weights: the poison is 1,000× the data's largest value.
    """
    source, target = "PC3", "MCF7"
    test = _test_positions(three_lines, 1, source=source, target=target)
    values = three_lines.values.copy()
    values[test] = 1000 * np.abs(values).max() * np.sign(values[test] + 0.5)
    poisoned = three_lines.with_values(values)
    models = _captured_models(monkeypatch)
    runs = [
        evaluation.cross_validate(p, source=source, target=target, n_folds=4, folds=[1], seed=0, **TINY)
        for p in (three_lines, poisoned)
    ]
    clean, dirty = (m.module.state_dict() for m in models)
    assert clean.keys() == dirty.keys()
    assert all(torch.equal(clean[k], dirty[k]) for k in clean)
    ones = np.ones((1, three_lines.values.shape[-1]), dtype=np.float32)
    assert np.array_equal(models[0].scaler.transform(ones), models[1].scaler.transform(ones))
    # the poison is real: it changes the scores (the test drugs' own profiles are what is predicted and scored)
    assert not np.allclose(runs[0].pcc, runs[1].pcc)
    assert len(runs[0]) == len(test)


def test_folds_in_processes_give_the_same_numbers(three_lines):
    kwargs = dict(source="PC3", target="MCF7", n_folds=4, folds=[0, 2], seed=1, **TINY)
    one = evaluation.cross_validate(three_lines, **kwargs)
    two = evaluation.cross_validate(three_lines, n_jobs=2, **kwargs)
    pd.testing.assert_frame_equal(one, two)
    with pytest.raises(pk.errors.PerturbkitInputError, match="n_jobs"):
        evaluation.cross_validate(three_lines, n_jobs=0, **kwargs)


def test_only_the_targets_decoder_is_fine_tuned_and_its_weights_are_unchanged(three_lines):
    train = three_lines.subset(drugs=np.arange(60))
    kw = dict(seed=3, **{k: v for k, v in TINY.items() if k not in ("latent_dim", "hidden")})
    models = []
    first, second = train.cell_lines[:2]  # the first is fine-tuned first: its stage draws the same random numbers
    for tune in (None, [first]):
        m = DeepCellState(train.var_names, cell_lines=train.cell_lines, latent_dim=8, hidden=(32, 16), seed=3)
        models.append(m.train(train, tune_decoders=tune, **kw))
    full, target_only = models
    stages = set(target_only.history_frame.stage)
    assert f"decoder: {first}" in stages and f"decoder: {second}" not in stages
    assert f"decoder: {second}" in set(full.history_frame.stage)
    a, b = full.module.decoders[0].state_dict(), target_only.module.decoders[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    encoders = zip(full.module.encoder.parameters(), target_only.module.encoder.parameters(), strict=True)
    assert all(torch.equal(x, y) for x, y in encoders)


def test_faster_schedule_is_as_accurate_on_held_out_simulate_l1000():
    # a generator and seed not used to choose the schedule (chosen on simulate_bulk seed 0, paper scale)
    adata = simulate_l1000(n_drugs=240, n_genes=120, seed=5)
    before = {"round_patience": 5, "pretrain_steps": None, "epochs_per_round": 2}
    scores = {}
    for name, options in (("before", before), ("now", None)):
        cv = pk.tl.cross_validate_deepcellstate(
            adata, source="PC3", target="MCF7", n_folds=5, folds=[0, 1], seed=5, train_options=options
        )
        scores[name] = cv.pcc.mean()
    assert scores["now"] >= scores["before"] - 0.01, scores
