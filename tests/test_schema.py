"""pk.pp.validate and the schema helpers: each failure has its own error, message and fix; input never changes."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import perturbkit as pk
from perturbkit._schema import (
    ColumnTypeError,
    EmptyGroupError,
    MissingColumnError,
    NonFiniteError,
    PerturbkitInputError,
    split_moa,
)
from perturbkit._stats import pearson_rows


def make_adata():
    obs = pd.DataFrame(
        {
            "cell_line": ["MCF7", "MCF7", "PC3", "PC3"],
            "drug": ["DMSO", "a", "DMSO", "a"],
            "dose": [0.0, 10.0, 0.0, 10.0],
            "time": [24.0] * 4,
            "moa": ["DMSO", "x|y", "DMSO", "x|y"],
            "control": [True, False, True, False],
            "smiles": ["CS(C)=O", "CCO", "CS(C)=O", "CCO"],
        },
        index=[f"s{i}" for i in range(4)],
    )
    return ad.AnnData(np.arange(12, dtype=np.float32).reshape(4, 3), obs=obs)


def assert_unchanged(before, after):
    np.testing.assert_array_equal(before.X, after.X)
    pd.testing.assert_frame_equal(before.obs, after.obs)


def test_valid_data_passes():
    adata = make_adata()
    pk.pp.validate(adata, moa_key="moa", smiles_key="smiles")


@pytest.mark.parametrize(
    "break_it, error, message",
    [
        (lambda a: a.obs.drop(columns="drug", inplace=True), MissingColumnError, r"no column 'drug'.*drug_key="),
        (lambda a: a.X.__setitem__((1, 1), np.nan), NonFiniteError, r"1 NaN and 0 infinite.*drop_missing"),
        (lambda a: a.X.__setitem__((2, 0), np.inf), NonFiniteError, r"0 NaN and 1 infinite"),
        (lambda a: a.obs.__setitem__("control", False), EmptyGroupError, r"No control rows.*Mark the vehicle"),
        (
            lambda a: a.obs.__setitem__("dose", ["0", "10 uM", "0", "10"]),
            ColumnTypeError,
            r"obs\['dose'\] must be numeric.*10 uM",
        ),
        (lambda a: a.obs.__setitem__("control", ["yes", "no", "yes", "no"]), ColumnTypeError, r"must be boolean"),
    ],
    ids=["missing-column", "nan", "inf", "no-controls", "non-numeric-dose", "non-bool-control"],
)
def test_each_failure_has_its_own_error(break_it, error, message):
    adata = make_adata()
    break_it(adata)
    before = adata.copy()
    with pytest.raises(error, match=message):
        pk.pp.validate(adata)
    assert issubclass(error, PerturbkitInputError)
    assert_unchanged(before, adata)


def test_keys_are_configurable_and_none_skips():
    adata = make_adata()
    adata.obs = adata.obs.rename(columns={"cell_line": "cell_type"})
    with pytest.raises(MissingColumnError, match="cell_line"):
        pk.pp.validate(adata)
    pk.pp.validate(adata, cell_key="cell_type")
    pk.pp.validate(adata, cell_key=None)


def test_numeric_strings_are_accepted_as_dose():
    adata = make_adata()
    adata.obs["dose"] = ["0", "10", "0", "10.5"]
    pk.pp.validate(adata)


def test_split_moa_and_pearson_rows():
    assert split_moa("a|b") == ["a", "b"] and split_moa(np.nan) == [] and split_moa("x") == ["x"]
    a = np.array([[1, 2, 3], [1, 2, 3]])
    b = np.array([[2, 4, 6], [3, 2, 1]])
    np.testing.assert_allclose(pearson_rows(a, b), [1.0, -1.0])
