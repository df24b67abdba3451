"""Downloaders for the public data sets, through pooch: known URLs and hashes, a cache folder, a progress bar.

Every file is cached in ``pk.settings.datadir`` (env ``PERTURBKIT_DATADIR``, default ``~/.cache/perturbkit``)
under its original name. A cached file whose hash matches is returned without touching the network; a cached file
whose hash does not match is not used (pooch downloads it again, and without a network you get a
:class:`DownloadError` saying so). Without a network, a missing file raises :class:`DownloadError` naming the URL
and the exact path where you can place a copy by hand.

Where the hashes come from
--------------------------
- LINCS L1000 phase 2 (GEO GSE70138): SHA-512 from the series' own checksum list ``GSE70138_SHA512SUMS.txt.gz``
  (in the same GEO folder), as transcribed in public projects that verified their downloads against it (the GCTX
  digest ``9d0789...975c9f`` appears in two independent ones; file sizes agree with GEO's listing).
- Kang et al. 2018 PBMC (``kang_2018.h5ad`` as distributed by pertpy/scverse): SHA-256 ``e6a5ad...c39830``,
  pinned independently by several public projects that download this exact file (24,673 cells × 15,706 genes,
  38,356,412 bytes); the scverse host and the original figshare file (id 34464122) serve the same bytes.
- LINCS Cell Painting (github.com/broadinstitute/lincs-cell-painting): the files are stored with Git LFS, whose
  pointer files publish each file's SHA-256 (``oid sha256:...``). URLs are pinned to the commit whose pointer
  was read, on GitHub's LFS media host, so the content matches the hash.
- Per-plate Cell Painting profiles other than the one plate listed have no hash in this registry (136 plates;
  ``known_hash=None``): pooch downloads them without verification. Pass ``known_hash=`` to check one yourself.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anndata as ad
import pandas as pd

from .._schema import DownloadError, PerturbkitInputError
from .._settings import settings


@dataclass(frozen=True)
class RegistryEntry:
    """One downloadable file: cache name, URLs (first is primary, the rest mirrors), hash, size and provenance."""

    fname: str
    urls: tuple[str, ...]
    known_hash: str | None
    size: int | None
    source: str
    decompress_to: str | None = None  # name of the decompressed file for .gz archives that must be unpacked


_GEO = "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE70nnn/GSE70138/suppl/"
_GEO_HASHES = "GEO GSE70138_SHA512SUMS.txt.gz (the series' checksum list)"
_LFS = "https://media.githubusercontent.com/media/broadinstitute/lincs-cell-painting/{commit}/{path}"
_LFS_SOURCE = "Git LFS pointer (oid sha256) in broadinstitute/lincs-cell-painting at commit {commit}"

LINCS_L1000_FILES = {
    "signatures": "GSE70138_Broad_LINCS_Level5_COMPZ_n118050x12328_2017-03-06.gctx.gz",
    "sig_info": "GSE70138_Broad_LINCS_sig_info_2017-03-06.txt.gz",
    "gene_info": "GSE70138_Broad_LINCS_gene_info_2017-03-06.txt.gz",
}

#: Cell Painting consensus (level 5) profiles: (consensus, batch) -> (repository path, commit, sha256, size).
_CELL_PAINTING_CONSENSUS = {
    ("modz_feature_select", "2016_04_01_a549_48hr_batch1"): (
        "consensus/2016_04_01_a549_48hr_batch1/2016_04_01_a549_48hr_batch1_consensus_modz_feature_select.csv.gz",
        "60d85f6d33c512d257b0d2d6db1961d9063d3393",
        "aa7c3f36874afceba2ef2d684dbd3ce653574bae9971e32639f74320e008bd90",
        17889995,
    ),
    ("median_feature_select", "2016_04_01_a549_48hr_batch1"): (
        "consensus/2016_04_01_a549_48hr_batch1/2016_04_01_a549_48hr_batch1_consensus_median_feature_select.csv.gz",
        "60d85f6d33c512d257b0d2d6db1961d9063d3393",
        "4c28e5113ac296d0bbd95fde22af9d4e3a12555d3adee18026c5a072ae2f5129",
        17414382,
    ),
    ("modz", "2016_04_01_a549_48hr_batch1"): (
        "consensus/2016_04_01_a549_48hr_batch1/2016_04_01_a549_48hr_batch1_consensus_modz.csv.gz",
        "10d0fb44a8e87c076881a9c228fffb375c92d9d4",
        "bbbea278c3507bba380f896282e27399f41d467301c250efbbaabfae873db0e1",
        65264064,
    ),
    ("spherized_modz", "2016_04_01_a549_48hr_batch1"): (
        "spherized_profiles/consensus/2016_04_01_a549_48hr_batch1_dmso_spherized_profiles_with_input_normalized_by_dmso_consensus_modz.csv.gz",
        "cdcffb04d1a9d8b2b531ab38259e83c82cf7e538",
        "1e04d0be306996057fff2e61aa10a0c986cc28bc32e002ad7a9c385247e4ba56",
        42308746,
    ),
    ("spherized_median", "2016_04_01_a549_48hr_batch1"): (
        "spherized_profiles/consensus/2016_04_01_a549_48hr_batch1_dmso_spherized_profiles_with_input_normalized_by_dmso_consensus_median.csv.gz",
        "cdcffb04d1a9d8b2b531ab38259e83c82cf7e538",
        "b63a8aff24e30e17e639e713b4cea3e71574c9ac68c29ab36f25bf2cb2f4ee7b",
        42260762,
    ),
    ("modz_feature_select", "2017_12_05_Batch2"): (
        "consensus/2017_12_05_Batch2/2017_12_05_Batch2_consensus_modz_feature_select.csv.gz",
        "60d85f6d33c512d257b0d2d6db1961d9063d3393",
        "54d84a9bfbff9e620e5ccc9a7f66acb7d1f870c9e7e2249ac7dc6d2a880be95a",
        29887775,
    ),
    ("spherized_modz", "2017_12_05_Batch2"): (
        "spherized_profiles/consensus/2017_12_05_Batch2_dmso_spherized_profiles_with_input_normalized_by_dmso_consensus_modz.csv.gz",
        "cdcffb04d1a9d8b2b531ab38259e83c82cf7e538",
        "69a465f78ca348e459d3f54ae7fd9f47027851469ed9c7659724fce89b521df2",
        28795994,
    ),
}
#: Per-plate (level 4) profiles: the commit they are fetched from, and the plates whose hash is known.
_PLATE_COMMIT = "6b03638d73845b54c78bc45b70128591e8e5fe75"
_PLATE_HASHES = {
    ("2016_04_01_a549_48hr_batch1", "SQ00015054"): (
        "09f824d1c29a0dc4aab00d33e16cbf6b2a1b468dea1802edf0c95f661e689f74",
        582443,
    ),
}


def _build_registry() -> dict[str, RegistryEntry]:
    reg: dict[str, RegistryEntry] = {}
    geo = {
        LINCS_L1000_FILES["signatures"]: (
            "sha512:9d078903d3d028f37b0bae584c1afe48f5bab0082e61f6e542de471674c78946"
            "cff710132b8e95beb997a39dc2dd6442fdda0fbb1cc9b2399ef21cf636975c9f",
            5365179698,
        ),
        LINCS_L1000_FILES["sig_info"]: (
            "sha512:8d16dfc3a8fdfba572797f2519f9bc96b687c3666c78d386b53fc997164dd2a8"
            "ab5953c0b323795ec7f62de5de4ddbd0285e79f8be48487156479dc8ee0128c9",
            1943865,
        ),
        LINCS_L1000_FILES["gene_info"]: (
            "sha512:b2df105ebf7a69799b23130d03b7da769bfd6ab83fd69cbb419c91c78ae069ae"
            "3e5d474e09d36e3ac4271f3b7fc56b24caaf1ac5ece9554ea7738b15535dfefd",
            216692,
        ),
    }
    for fname, (digest, size) in geo.items():
        unpack = fname[: -len(".gz")] if fname.endswith(".gctx.gz") else None
        reg[fname] = RegistryEntry(fname, (_GEO + fname,), digest, size, _GEO_HASHES, decompress_to=unpack)
    reg["kang_2018.h5ad"] = RegistryEntry(
        "kang_2018.h5ad",
        ("https://exampledata.scverse.org/pertpy/kang_2018.h5ad", "https://ndownloader.figshare.com/files/34464122"),
        "sha256:e6a5adac64dcdeb36eaba27db49b63e0c64bb0ed4a64c6705971506b41c39830",
        38356412,
        "pertpy's kang_2018 file (scverse example data; figshare 34464122), SHA-256 pinned by public projects",
    )
    for (_, _), (path, commit, digest, size) in _CELL_PAINTING_CONSENSUS.items():
        fname = path.rsplit("/", 1)[1]
        reg[fname] = RegistryEntry(
            fname, (_LFS.format(commit=commit, path=path),), f"sha256:{digest}", size, _LFS_SOURCE.format(commit=commit)
        )
    for (batch, plate), (digest, size) in _PLATE_HASHES.items():
        reg[_plate_fname(plate)] = _plate_entry(batch, plate, f"sha256:{digest}", size)
    return reg


def _plate_fname(plate: str) -> str:
    return f"{plate}_normalized_feature_select.csv.gz"


def _plate_entry(batch: str, plate: str, known_hash, size=None) -> RegistryEntry:
    path = f"profiles/{batch}/{plate}/{_plate_fname(plate)}"
    source = _LFS_SOURCE.format(commit=_PLATE_COMMIT) if known_hash else "no published hash in the registry"
    return RegistryEntry(_plate_fname(plate), (_LFS.format(commit=_PLATE_COMMIT, path=path),), known_hash, size, source)


REGISTRY: dict[str, RegistryEntry] = _build_registry()


def registry() -> pd.DataFrame:
    """Every file the downloaders know, with its URL(s), hash, size and the hash's source.

    Returns
    -------
    One row per file (index ``file``): ``url``, ``mirrors``, ``known_hash`` (``None`` where unknown), ``size`` in
    bytes and ``hash_source``.

    Examples
    --------
    >>> pk.datasets.registry().loc["kang_2018.h5ad", "url"]
    """
    return pd.DataFrame(
        [
            {
                "file": e.fname,
                "url": e.urls[0],
                "mirrors": list(e.urls[1:]),
                "known_hash": e.known_hash,
                "size": e.size,
                "hash_source": e.source,
            }
            for e in REGISTRY.values()
        ]
    ).set_index("file")


def _downloader(progressbar: bool):
    """The pooch downloader used for every URL (tests replace this to keep the network out)."""
    import pooch

    return pooch.HTTPDownloader(progressbar=bool(progressbar), timeout=60)


@contextmanager
def _pooch_log():
    """Pooch's "Downloading ..." messages only at ``pk.settings.verbosity`` ≥ 1 (its warnings always)."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    if settings.verbosity < 1:
        logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


def _hash_matches(path: Path, known_hash: str | None) -> bool:
    import pooch

    if known_hash is None:
        return True
    alg, _, digest = known_hash.rpartition(":")
    return pooch.file_hash(str(path), alg=alg or "sha256").lower() == digest.lower()


def fetch(name: str, *, progressbar: bool | None = None, entry: RegistryEntry | None = None) -> Path:
    """Return the local path of registry file ``name``, downloading it into ``pk.settings.datadir`` if needed.

    Parameters
    ----------
    name
        A file name of :func:`registry`.
    progressbar
        Show a download progress bar (default ``pk.settings.progress_bar``, off at ``pk.settings.verbosity`` 0).
    entry
        A registry entry to use instead of looking ``name`` up (for files outside the registry, such as
        per-plate Cell Painting profiles).

    Returns
    -------
    The local path; for ``.gctx.gz`` archives, the decompressed file's.

    Raises
    ------
    DownloadError
        The file is not cached (or its cached copy fails the hash check) and no URL can deliver it.

    Examples
    --------
    >>> path = pk.datasets.fetch("kang_2018.h5ad")
    """
    import pooch

    if entry is None:
        if name not in REGISTRY:
            raise PerturbkitInputError(f"{name!r} is not in the download registry; known files: {sorted(REGISTRY)}.")
        entry = REGISTRY[name]
    folder = Path(settings.datadir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / entry.fname
    if entry.decompress_to is not None and not target.exists() and (folder / entry.decompress_to).exists():
        warnings.warn(
            f"Using the already decompressed {folder / entry.decompress_to}: its hash cannot be checked against "
            f"the archive's ({entry.fname}). Keep the archive in the cache folder to have it verified.",
            stacklevel=3,
        )
        return folder / entry.decompress_to
    progressbar = settings.progress_bar if progressbar is None else progressbar
    processor = pooch.Decompress(method="gzip", name=entry.decompress_to) if entry.decompress_to else None
    failures = []
    for url in entry.urls:
        try:
            with _pooch_log():
                path = pooch.retrieve(
                    url,
                    known_hash=entry.known_hash,
                    fname=entry.fname,
                    path=folder,
                    processor=processor,
                    downloader=_downloader(progressbar),
                )
        except Exception as err:  # network errors, HTTP errors, hash mismatch of the downloaded file
            failures.append(f"  {url}: {type(err).__name__}: {err}")
            continue
        return Path(path)
    corrupted = target.exists() and not _hash_matches(target, entry.known_hash)
    state = (
        f"A cached copy exists at {target} but its hash does not match the known {entry.known_hash}, so it was "
        f"rejected (it is corrupted or a different version); delete or replace it."
        if corrupted
        else f"It is not in the cache folder {folder}."
    )
    size = f" ({entry.size:,} bytes)" if entry.size else ""
    raise DownloadError(
        f"Could not download {entry.fname}{size}. {state}\nTried:\n" + "\n".join(failures) + "\n"
        f"If this machine has no internet access, download the file elsewhere from\n  {entry.urls[0]}\n"
        f"and place it, under exactly this name, at\n  {target}\n"
        f"(the cache folder is pk.settings.datadir, or the PERTURBKIT_DATADIR environment variable). "
        + (
            f"It is checked against {entry.known_hash}."
            if entry.known_hash
            else "Its hash is not known, so it is not checked."
        )
    )


def lincs_l1000_level5(
    *,
    what: Literal["signatures", "sig_info", "gene_info"] = "signatures",
    load: bool = False,
    landmark_only: bool = True,
    progressbar: bool | None = None,
) -> Path | pd.DataFrame | ad.AnnData:
    """LINCS L1000 phase 2 level 5 signatures (GEO GSE70138), or their signature / gene tables.

    Parameters
    ----------
    what
        ``"signatures"``: the GCTX of moderated z-score signatures (118,050 signatures × 12,328 genes; a 5.4 GB
        ``.gctx.gz`` download, decompressed to 5.8 GB next to it); ``"sig_info"``: the signature table (cell
        line, drug, dose, time per ``sig_id``); ``"gene_info"``: the gene table (symbols, landmark flag).
    load
        ``False`` (default) returns the local path. ``True`` returns a DataFrame for the tables, and for
        ``"signatures"`` an AnnData read by :func:`perturbkit.io.read_gct` with ``sig_info`` and ``gene_info``
        joined (all three files are fetched).
    landmark_only
        With ``load=True`` and ``what="signatures"``: keep the 978 landmark genes only (as DeepCellState does).
    progressbar
        Show a download progress bar (default ``pk.settings.progress_bar``).

    Returns
    -------
    The local path (``load=False``), a DataFrame (``sig_info``, ``gene_info``) or an AnnData (``signatures``).

    Notes
    -----
    Files come from https://ftp.ncbi.nlm.nih.gov/geo/series/GSE70nnn/GSE70138/suppl/ and are checked against the
    SHA-512 sums GEO publishes for the series.

    Examples
    --------
    >>> sig_info = pk.datasets.lincs_l1000_level5(what="sig_info", load=True)
    """
    if what not in LINCS_L1000_FILES:
        raise PerturbkitInputError(f"what={what!r} is not known; use one of {list(LINCS_L1000_FILES)}.")
    path = fetch(LINCS_L1000_FILES[what], progressbar=progressbar)
    if not load:
        return path
    if what != "signatures":
        return pd.read_csv(path, sep="\t", low_memory=False)
    from ..io import read_gct

    sig_info = fetch(LINCS_L1000_FILES["sig_info"], progressbar=progressbar)
    gene_info = fetch(LINCS_L1000_FILES["gene_info"], progressbar=progressbar)
    return read_gct(path, sig_info=sig_info, gene_info=gene_info, landmark_only=landmark_only)


def kang_pbmc(*, load: bool = False, progressbar: bool | None = None) -> Path | ad.AnnData:
    """Kang et al. 2018 PBMCs, control vs interferon-β stimulated (24,673 cells × 15,706 genes, raw counts).

    The ``kang_2018.h5ad`` file distributed by pertpy (obs ``label`` ctrl/stim, ``cell_type``, ``replicate``),
    from https://exampledata.scverse.org/pertpy/kang_2018.h5ad (mirror: figshare file 34464122), SHA-256 checked.

    Parameters
    ----------
    load
        ``False`` returns the local path; ``True`` the AnnData.
    progressbar
        Show a download progress bar (default ``pk.settings.progress_bar``).

    Returns
    -------
    The local path, or with ``load=True`` an AnnData read by :func:`perturbkit.io.read_h5ad` with the boolean
    ``control`` column (``label == "ctrl"``) added.

    Examples
    --------
    >>> pbmc = pk.tl.preprocess_pbmc(pk.datasets.kang_pbmc(load=True))
    """
    path = fetch("kang_2018.h5ad", progressbar=progressbar)
    if not load:
        return path
    from ..io import read_h5ad

    return read_h5ad(path, condition_key="label", control_value="ctrl")


def lincs_cell_painting(
    *,
    consensus: Literal[
        "modz_feature_select", "median_feature_select", "modz", "spherized_modz", "spherized_median"
    ] = "modz_feature_select",
    plate: str | None = None,
    batch: Literal["2016_04_01_a549_48hr_batch1", "2017_12_05_Batch2"] = "2016_04_01_a549_48hr_batch1",
    known_hash: str | None = None,
    load: bool = False,
    progressbar: bool | None = None,
) -> Path | ad.AnnData:
    """LINCS Cell Painting profiles of A549 cells (Broad Institute, github.com/broadinstitute/lincs-cell-painting).

    Parameters
    ----------
    consensus
        Which consensus (level 5: one profile per compound-dose, DMSO per well) file of ``batch``:
        ``"modz_feature_select"`` (default; MODZ consensus of normalized, feature-selected profiles),
        ``"median_feature_select"``, ``"modz"`` (all features), ``"spherized_modz"`` / ``"spherized_median"``
        (batch-corrected by spherizing to DMSO). Ignored when ``plate`` is given.
    plate
        A plate barcode (e.g. ``"SQ00015054"``) to get that plate's well-level (level 4) normalized,
        feature-selected profiles instead. Only the listed plate has a known hash; for others the file is
        downloaded unverified unless you pass ``known_hash``.
    batch
        ``"2016_04_01_a549_48hr_batch1"`` (default) or ``"2017_12_05_Batch2"``.
    load
        ``True`` returns an AnnData read by :func:`perturbkit.io.read_cell_painting`; ``False`` the local path.
    known_hash
        ``"sha256:<digest>"`` to check a per-plate file against.
    progressbar
        Show a download progress bar (default ``pk.settings.progress_bar``).

    Returns
    -------
    The local path, or with ``load=True`` the AnnData.

    Examples
    --------
    >>> consensus = pk.datasets.lincs_cell_painting(load=True)
    """
    if plate is not None:
        fname = _plate_fname(plate)
        entry = REGISTRY.get(fname)
        if entry is None or known_hash is not None:
            entry = _plate_entry(batch, plate, known_hash)
        path = fetch(fname, progressbar=progressbar, entry=entry)
    else:
        key = (consensus, batch)
        if key not in _CELL_PAINTING_CONSENSUS:
            options = sorted(f"consensus={c!r}, batch={b!r}" for c, b in _CELL_PAINTING_CONSENSUS)
            raise PerturbkitInputError(
                f"No consensus file for consensus={consensus!r}, batch={batch!r}; known: {options}."
            )
        path = fetch(_CELL_PAINTING_CONSENSUS[key][0].rsplit("/", 1)[1], progressbar=progressbar)
    if not load:
        return path
    from ..io import read_cell_painting

    return read_cell_painting(path)
