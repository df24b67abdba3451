"""cycleCDR drug encoders: own GAT layer, fingerprints, one-hot, errors, caching, save/load rebuild."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perturbkit._schema import PerturbkitInputError, UnknownCategoryError
from perturbkit.models.cyclecdr._drug_encoders import (
    N_ATOM_FEATURES,
    DoseEncoder,
    GATEncoder,
    GraphAttentionLayer,
    batch_graphs,
    make_drug_encoder,
    mol_graph,
    segment_softmax,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DRUGS = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
}
SMALL = {"hidden": 8, "heads": 10}


def _gat(dim=6, drugs=DRUGS, seed=0):
    torch.manual_seed(seed)
    return make_drug_encoder("gat", dim=dim, drugs=drugs, **SMALL).eval()


def test_gat_output_shape_and_attention_sums_to_one():
    enc = _gat()
    batch = enc.featurize(list(DRUGS))
    assert batch.x.shape[1] == N_ATOM_FEATURES
    out, (att1, att2) = enc(batch, return_attention=True)
    assert out.shape == (3, 6)
    assert att1.shape == (batch.edge_index.shape[1], 10) and att2.shape[1] == 1
    dst = batch.edge_index[1]
    for att in (att1, att2):
        per_node = torch.zeros(batch.x.shape[0], att.shape[1]).index_add_(0, dst, att)
        torch.testing.assert_close(per_node, torch.ones_like(per_node))


def test_segment_softmax_is_stable_for_large_scores():
    scores = torch.tensor([[1000.0], [1001.0], [-5.0]])
    alpha = segment_softmax(scores, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(alpha[:, 0], torch.tensor([1 / (1 + np.e), np.e / (1 + np.e), 1.0]))


def test_gat_is_invariant_to_atom_order():
    from rdkit import Chem

    enc = _gat()
    mol = Chem.MolFromSmiles(DRUGS["ibuprofen"])
    order = np.random.default_rng(0).permutation(mol.GetNumAtoms()).tolist()
    shuffled = Chem.MolToSmiles(Chem.RenumberAtoms(mol, order), canonical=False)
    assert shuffled != DRUGS["ibuprofen"]
    with torch.no_grad():
        a = enc.embed(["ibuprofen"])
        b = enc.embed(["ibuprofen_shuffled"], {"ibuprofen_shuffled": shuffled})
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_layer_equivariance_under_node_permutation():
    torch.manual_seed(0)
    layer = GraphAttentionLayer(N_ATOM_FEATURES, 4, heads=3)
    g = batch_graphs([mol_graph("aspirin", DRUGS["aspirin"])])
    perm = torch.randperm(g.x.shape[0])
    inv = torch.argsort(perm)  # new index of old node i is inv[i]
    out = layer(g.x, g.edge_index)
    out_p = layer(g.x[perm], inv[g.edge_index])
    torch.testing.assert_close(out_p, out[perm], atol=1e-5, rtol=1e-5)


def test_different_molecules_differ_and_disconnected_smiles_work():
    drugs = dict(DRUGS, sodium_acetate="CC(=O)[O-].[Na+]")
    enc = _gat(drugs=drugs)
    with torch.no_grad():
        emb = enc.embed(list(drugs))
    assert torch.isfinite(emb).all()
    assert torch.cdist(emb, emb)[~torch.eye(4, dtype=bool)].min() > 1e-4
    g = mol_graph("salt", drugs["sodium_acetate"])
    assert g.x.shape[0] == 5  # the sodium atom has no bonds, only its self loop in the batch


def test_fingerprint_bits_are_deterministic_and_encoder_works():
    a = make_drug_encoder("fingerprint", dim=5, drugs=DRUGS, hidden=16)
    b = make_drug_encoder("fingerprint", dim=5, drugs=DRUGS, hidden=16)
    fa, fb = a.featurize(list(DRUGS)), b.featurize(list(DRUGS))
    assert fa.shape == (3, 2048)
    assert torch.equal(fa, fb) and set(fa.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(fa[0], fa[1])
    assert a.embed(list(DRUGS)).shape == (3, 5)


def test_onehot_refuses_unseen_drug():
    enc = make_drug_encoder("onehot", dim=4, drugs={"a": None, "b": None})
    assert enc.embed(["b", "a"]).shape == (2, 4)
    with pytest.raises(UnknownCategoryError, match=r"(?s)'newdrug'.*drug_encoder='gat'.*fingerprint.*SMILES"):
        enc.embed(["a", "newdrug"], {"newdrug": "CCO"})


def test_invalid_smiles_names_the_drug():
    with pytest.raises(PerturbkitInputError, match=r"badmol.*C1CC\(\(\("):
        make_drug_encoder("gat", dim=4, drugs={"ok": "CCO", "badmol": "C1CC((("}, **SMALL)
    enc = make_drug_encoder("fingerprint", dim=4, drugs={"ok": "CCO"}, hidden=8)
    with pytest.raises(PerturbkitInputError, match=r"'newbad'.*'xyz'"):
        enc.embed(["newbad"], {"newbad": "xyz"})
    with pytest.raises(UnknownCategoryError, match="nosmiles"):
        enc.embed(["nosmiles"])
    with pytest.raises(PerturbkitInputError, match="'nan_drug' has no SMILES"):
        enc.embed(["nan_drug"], {"nan_drug": float("nan")})
    # a missing SMILES in the lookup falls back to the training vocabulary
    assert enc.embed(["ok"], {"ok": None}).shape == (1, 4)
    with pytest.raises(PerturbkitInputError, match=r"(?s)needs a SMILES for every training drug.*'b'"):
        make_drug_encoder("gat", dim=4, drugs={"a": "CCO", "b": float("nan")}, **SMALL)


def test_gradients_flow_to_every_parameter():
    for kind, options in [("gat", SMALL), ("fingerprint", {"hidden": 8}), ("onehot", {})]:
        enc = make_drug_encoder(kind, dim=4, drugs=DRUGS, **options)
        dose = DoseEncoder(4, hidden=4)
        h = enc.embed_samples(["aspirin", "caffeine", "aspirin"]) * dose([0.1, 1.0, 10.0])
        h.pow(2).sum().backward()
        for name, p in list(enc.named_parameters()) + list(dose.named_parameters()):
            assert p.grad is not None and torch.isfinite(p.grad).all(), (kind, name)
        assert any(p.grad.abs().sum() > 0 for p in enc.parameters())


def test_embeddings_computed_once_per_unique_drug():
    enc = _gat()
    assert enc.n_featurized == 3  # training drugs featurised once at construction
    sizes = []
    original = GATEncoder.forward

    def spy(self, batch, **kw):
        sizes.append(batch.n_graphs)
        return original(self, batch, **kw)

    GATEncoder.forward = spy
    try:
        out = enc.embed_samples(["caffeine", "aspirin"] * 50 + ["new"], {"new": "CCN"})
    finally:
        GATEncoder.forward = original
    assert out.shape == (101, 6) and sizes == [3]
    torch.testing.assert_close(out[0], out[2])
    torch.testing.assert_close(out[1], out[99])
    assert enc.n_featurized == 4
    enc.embed(["new"], {"new": "CCN"})
    assert enc.n_featurized == 4  # cached


def test_rebuild_from_config_gives_same_embeddings():
    for kind, options in [("gat", SMALL), ("fingerprint", {"hidden": 8}), ("onehot", {})]:
        enc = make_drug_encoder(kind, dim=4, drugs=DRUGS, **options).eval()
        config = enc.config()
        assert config["kind"] == kind and config["drugs"] == DRUGS
        clone = make_drug_encoder(**config).eval()
        clone.load_state_dict(enc.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(enc.embed(list(DRUGS)), clone.embed(list(DRUGS)))


def test_unknown_kind_and_bad_dose():
    with pytest.raises(PerturbkitInputError, match="unknown drug_encoder"):
        make_drug_encoder("transformer", dim=4, drugs=DRUGS)
    with pytest.raises(PerturbkitInputError, match="non-negative"):
        DoseEncoder(4)([-1.0])


def test_atom_environments_sum_to_rdkits_folded_morgan_count_fingerprint():
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    from perturbkit.models.cyclecdr._drug_encoders import ENVIRONMENT_BUCKETS, ENVIRONMENT_RADII, atom_environments

    generator = rdFingerprintGenerator.GetMorganGenerator(
        radius=2, fpSize=ENVIRONMENT_BUCKETS, includeRedundantEnvironments=True
    )
    for smiles in [*DRUGS.values(), "[Na+].[Cl-]"]:  # the salt: isolated ions have a radius-0 environment only
        mol = Chem.MolFromSmiles(smiles)
        env = atom_environments(mol)
        assert env.shape == (mol.GetNumAtoms(), len(ENVIRONMENT_RADII) * ENVIRONMENT_BUCKETS)
        per_radius = env.reshape(mol.GetNumAtoms(), len(ENVIRONMENT_RADII), ENVIRONMENT_BUCKETS)
        assert (per_radius.sum(axis=2) <= 1).all() and (per_radius[:, 0].sum(axis=1) == 1).all()
        np.testing.assert_array_equal(per_radius.sum(axis=(0, 1)), generator.GetCountFingerprintAsNumPy(mol))


def test_gat_pools_by_mean_or_max_and_refuses_others():
    mean, maximum = (make_drug_encoder("gat", dim=4, drugs=DRUGS, pooling=p, **SMALL).eval() for p in ("mean", "max"))
    maximum.load_state_dict(mean.state_dict())
    batch = mean.featurize(list(DRUGS))
    h = mean.node_embeddings(batch)
    first = batch.batch == 0
    fingerprint = batch.fingerprints[0]
    torch.testing.assert_close(mean(batch)[0], mean.out(torch.cat([h[first].mean(0), fingerprint])))
    torch.testing.assert_close(maximum(batch)[0], maximum.out(torch.cat([h[first].max(0).values, fingerprint])))
    with pytest.raises(PerturbkitInputError, match="pooling='sum'"):
        make_drug_encoder("gat", dim=4, drugs=DRUGS, pooling="sum", **SMALL)


def test_the_hybrid_readout_sees_the_graph_and_the_fingerprint_encoders_fingerprint():
    hybrid = make_drug_encoder("gat", dim=4, drugs=DRUGS, **SMALL)
    batch = hybrid.featurize(list(DRUGS))
    fingerprints = make_drug_encoder("fingerprint", dim=4, drugs=DRUGS).featurize(list(DRUGS))
    torch.testing.assert_close(batch.fingerprints, fingerprints, rtol=0, atol=0)
    assert hybrid.config()["readout"] == "hybrid"
    # the graph branch's dropout acts in training only: with the graph embedding dropped, the fingerprint decides
    hybrid.train()
    h = hybrid.node_embeddings(batch)  # (the GAT layers have no dropout here: the graph dropout is the only draw)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        trained = hybrid(batch)
        torch.manual_seed(0)
        mask = torch.nn.functional.dropout(torch.ones(len(DRUGS), SMALL["hidden"]), 0.5, training=True)
    assert (mask == 0).any()
    pooled = torch.stack([h[batch.batch == i].mean(0) for i in range(len(DRUGS))])
    torch.testing.assert_close(trained, hybrid.out(torch.cat([pooled * mask, fingerprints], 1)))
    hybrid.eval()
    torch.testing.assert_close(hybrid(batch), hybrid.out(torch.cat([pooled, fingerprints], 1)))
    # the paper's readout: a linear layer on the pooled graph alone, and no fingerprint computed
    graph = make_drug_encoder("gat", dim=4, drugs=DRUGS, readout="graph", **SMALL).eval()
    graph_batch = graph.featurize(list(DRUGS))
    assert graph_batch.fingerprints is None and isinstance(graph.out, torch.nn.Linear)
    with pytest.raises(PerturbkitInputError, match="readout='mlp' is not known"):
        make_drug_encoder("gat", dim=4, drugs=DRUGS, readout="mlp", **SMALL)
    with pytest.raises(PerturbkitInputError, match="graph_dropout must be in"):
        make_drug_encoder("gat", dim=4, drugs=DRUGS, graph_dropout=1.0, **SMALL)
    # a model saved with the graph-only readout is refused by the hybrid one, with the fix
    with pytest.raises(PerturbkitInputError, match="graph-only readout.*Retrain"):
        hybrid.load_state_dict(graph.state_dict())
    with pytest.raises(PerturbkitInputError, match="hybrid readout needs the molecules' fingerprints"):
        hybrid(graph_batch)


def test_a_gat_saved_for_the_old_atom_features_is_refused_with_the_fix():
    enc = _gat()
    state = enc.state_dict()
    state["gat1.lin.weight"] = torch.zeros(state["gat1.lin.weight"].shape[0], 40)  # layout version 1: 40 features
    with pytest.raises(PerturbkitInputError, match="saved for 40 atom features.*Retrain"):
        enc.load_state_dict(state)
