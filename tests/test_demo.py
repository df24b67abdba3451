"""The README's quickstart: `python -m perturbkit demo` trains DeepCellState and prints model vs baseline."""

import re
import subprocess
import sys


def test_demo_prints_model_beating_baseline():
    out = subprocess.run(
        [sys.executable, "-m", "perturbkit", "demo", "--quiet", "--n-drugs", "200"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    pcc = {
        name: float(v) for name, v in re.findall(r"(DeepCellState|ridge map|naive baseline)\s+mean PCC ([\d.-]+)", out)
    }
    assert set(pcc) == {"DeepCellState", "ridge map", "naive baseline"}, out
    assert pcc["DeepCellState"] > 1.5 * pcc["naive baseline"], out
    assert "fold increase" in out


def test_saved_model_loads_in_a_fresh_session(tmp_path):
    """The README's `pk.models.deepcellstate.DeepCellState.load(path)` works before anything imported the model."""
    import perturbkit as pk

    adata = pk.datasets.simulate_bulk(n_drugs=30, n_moas=4, n_genes=12, seed=0)
    model = pk.tl.train_deepcellstate(adata, latent_dim=4, hidden=(8,), max_epochs=1, max_rounds=1, device="cpu")
    model.save(tmp_path / "dcs.pt")
    expected = model.predict(adata, target="MCF7").X
    code = (
        "import sys, numpy as np, anndata as ad, perturbkit as pk; "
        "m = pk.models.deepcellstate.DeepCellState.load(sys.argv[1]); "
        "np.save(sys.argv[3], m.predict(ad.read_h5ad(sys.argv[2]), target='MCF7').X)"
    )
    adata.write_h5ad(tmp_path / "data.h5ad")
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "dcs.pt"), str(tmp_path / "data.h5ad"), str(tmp_path / "out.npy")],
        check=True,
        timeout=300,
    )
    import numpy as np

    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
