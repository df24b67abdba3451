"""Real drug scaffolds and analog SMILES for the simulators.

Each mechanism-of-action (MOA) family below lists well-known approved or tool drugs of that mechanism, written as
SMILES templates (stereochemistry dropped) with two attachment points ``{R1}`` and ``{R2}``. Each placeholder sits
right after an atom that carries a hydrogen, so filling it with ``""`` (hydrogen) or ``"(X)"`` (a substituent
branch) always gives a valid molecule: filling both with hydrogen gives the real drug itself. The two positions of
a template are never related by the molecule's symmetry, so different substituent pairs give different molecules.

Analogs are built purely by string substitution (no RDKit needed at generation time); the test-suite checks with
RDKit that every template and every substituent gives a parsable, unique molecule.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

#: MOA family -> list of (parent drug, SMILES template with {R1} and {R2}).
SCAFFOLDS: dict[str, list[tuple[str, str]]] = {
    "EGFR inhibitor": [
        ("gefitinib", "COc1cc2ncnc(Nc3c{R1}cc(F)c(Cl)c3)c2cc1OCC{R2}CN1CCOCC1"),
        ("erlotinib", "COCCOc1cc2ncnc(Nc3c{R1}ccc(C#C)c3)c2cc1OCC{R2}OC"),
    ],
    "HDAC inhibitor": [
        ("vorinostat", "ONC(=O)CCCC{R2}CCC(=O)Nc1cc{R1}ccc1"),
        ("panobinostat", "ONC(=O)C=Cc1c{R2}cc(CNCCc2c[nH]c3cc{R1}ccc23)cc1"),
    ],
    "glucocorticoid receptor agonist": [
        ("dexamethasone", "CC1C{R2}C2C3CCC4=CC(=O)C=CC4(C)C3(F)C(O)CC2(C)C1(O)C(=O)C{R1}O"),
        ("prednisolone", "CC12CC(O)C3C(CCC4=CC(=O)C=CC34C)C1C{R2}CC2(O)C(=O)C{R1}O"),
    ],
    "HMGCR inhibitor": [
        ("atorvastatin", "CC(C)c1c(C(=O)Nc2cc{R1}ccc2)c(-c2c{R2}cccc2)c(-c2ccc(F)cc2)n1CCC(O)CC(O)CC(=O)O"),
        ("fluvastatin", "CC(C)n1c(C=CC(O)CC(O)CC(=O)O)c(-c2c{R2}cc(F)cc2)c2cc{R1}ccc21"),
    ],
    "tubulin polymerization inhibitor": [
        ("nocodazole", "COC(=O)Nc1nc2cc(C(=O)c3cc{R1}cs3)cc{R2}c2[nH]1"),
        ("mebendazole", "COC(=O)Nc1nc2cc(C(=O)c3cc{R1}ccc3)cc{R2}c2[nH]1"),
        ("albendazole", "CC{R1}CSc1c{R2}cc2nc(NC(=O)OC)[nH]c2c1"),
    ],
    "topoisomerase inhibitor": [
        ("camptothecin", "CC{R2}C1(O)C(=O)OCc2c1cc1-c3nc4cc{R1}ccc4cc3Cn1c2=O"),
        ("topotecan", "CC{R2}C1(O)C(=O)OCc2c1cc1-c3nc4c{R1}cc(O)c(CN(C)C)c4cc3Cn1c2=O"),
    ],
    "CDK inhibitor": [
        ("palbociclib", "CC(=O)c1c(C)c2cnc(Nc3ccc(N4CC{R2}NCC4)cn3)nc2n(C2CC{R1}CC2)c1=O"),
        ("seliciclib", "CCC(C{R2}O)Nc1nc(NCc2cc{R1}ccc2)c2ncn(C(C)C)c2n1"),
    ],
    "PI3K inhibitor": [
        ("LY294002", "c1c{R1}cccc1-c1cccc2c(=O)cc(N3CC{R2}OCC3)oc12"),
        ("pictilisib", "CS(=O)(=O)N1CCN(Cc2cc3nc(-c4cc{R1}cc5[nH]ncc45)nc(N4CC{R2}OCC4)c3s2)CC1"),
    ],
    "proteasome inhibitor": [
        ("bortezomib", "CC(C)CC(NC(=O)C(Cc1cc{R1}ccc1)NC(=O)c1cnc{R2}cn1)B(O)O"),
        ("MG-132", "CC(C)C{R2}C(C=O)NC(=O)C(CC(C)C)NC(=O)C(CC(C)C)NC(=O)OCc1cc{R1}ccc1"),
    ],
    "bromodomain inhibitor": [
        ("JQ1", "CC1=C(C)SC2=C1C(c1c{R1}cc(Cl)cc1)=NC(C{R2}C(=O)OC(C)(C)C)c1nnc(C)n12"),
        ("molibresib", "CCNC(=O)C{R2}C1N=C(c2c{R1}cc(Cl)cc2)c2cc(OC)ccc2-n2c(C)nnc21"),
    ],
    "estrogen receptor antagonist": [
        ("tamoxifen", "CCC(=C(c1cc{R1}ccc1)c1ccc(OCCN(C)C)cc1)c1cc{R2}ccc1"),
        ("raloxifene", "Oc1c{R2}cc(cc1)-c1sc2cc(O)ccc2c1C(=O)c1ccc(OCCN2CC{R1}CCC2)cc1"),
    ],
    "dopamine receptor antagonist": [
        ("haloperidol", "OC1(CCN(CCCC(=O)c2c{R1}cc(F)cc2)CC1)c1c{R2}cc(Cl)cc1"),
        ("chlorpromazine", "CN(C)CC{R2}CN1c2cc{R1}ccc2Sc2ccc(Cl)cc21"),
    ],
    "serotonin receptor antagonist": [
        ("ondansetron", "Cc1nc{R2}cn1CC1CCc2c(C1=O)c1cc{R1}ccc1n2C"),
        ("ketanserin", "c1cc(F)ccc1C(=O)C1CCN(CC{R2}n2c(=O)[nH]c3cc{R1}ccc3c2=O)CC1"),
    ],
    "adrenergic receptor antagonist": [
        ("propranolol", "CC(C)NC{R2}C(O)COc1cccc2cc{R1}ccc12"),
        ("atenolol", "CC(C)NC{R2}C(O)COc1c{R1}cc(CC(N)=O)cc1"),
        ("metoprolol", "COC{R2}Cc1c{R1}cc(OCC(O)CNC(C)C)cc1"),
    ],
    "cyclooxygenase inhibitor": [
        ("ibuprofen", "CC(C)C{R2}c1c{R1}cc(C(C)C(=O)O)cc1"),
        ("celecoxib", "Cc1c{R1}cc(-c2cc(C(F)(F)F)nn2-c2c{R2}cc(S(N)(=O)=O)cc2)cc1"),
        ("diclofenac", "OC(=O)Cc1cc{R1}ccc1Nc1c(Cl)c{R2}ccc1Cl"),
        ("indomethacin", "COc1c{R2}cc2c(c1)c(CC(=O)O)c(C)n2C(=O)c1c{R1}cc(Cl)cc1"),
    ],
    "BCR-ABL inhibitor": [
        ("imatinib", "Cc1ccc(NC(=O)c2c{R1}cc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cc{R2}cnc2)n1"),
        ("nilotinib", "Cc1cn(-c2cc(NC(=O)c3ccc(C)c(Nc4nccc(-c5cc{R1}cnc5)n4)c3)cc(C(F)(F)F)c2)c{R2}n1"),
    ],
    "DNA alkylating agent": [
        ("chlorambucil", "OC(=O)CC{R2}Cc1c{R1}cc(N(CCCl)CCCl)cc1"),
        ("melphalan", "NC(C{R2}c1c{R1}cc(N(CCCl)CCCl)cc1)C(=O)O"),
        ("bendamustine", "CN1c(CCC{R2}C(=O)O)nc2cc(N(CCCl)CCCl)c{R1}cc21"),
    ],
    "dihydrofolate reductase inhibitor": [
        ("methotrexate", "CN(Cc1cnc2nc(N)nc(N)c2n1)c1c{R1}cc(C(=O)NC(CC{R2}C(=O)O)C(=O)O)cc1"),
        ("pyrimethamine", "CC{R2}c1nc(N)nc(N)c1-c1c{R1}cc(Cl)cc1"),
        ("trimethoprim", "COc1c{R2}c(C{R1}c2cnc(N)nc2N)cc(OC)c1OC"),
    ],
    "PARP inhibitor": [
        ("olaparib", "c1cc{R1}cc2c1c(=O)[nH]nc2Cc1ccc(F)c(c1)C(=O)N1CCN(C(=O)C2C{R2}C2)CC1"),
        ("niraparib", "NC(=O)c1cccc2cn(-c3c{R2}cc(C4CC{R1}CNC4)cc3)nc12"),
    ],
    "MEK inhibitor": [
        ("selumetinib", "Cn1cnc2c(F)c(Nc3cc{R1}c(Br)cc3Cl)c(C(=O)NOCC{R2}O)cc21"),
        ("binimetinib", "Cn1cnc2c(F)c(Nc3cc{R1}c(Br)cc3F)c(C(=O)NOCC{R2}O)cc21"),
        ("PD-184352", "C1C{R2}C1CONC(=O)c1ccc(F)c(F)c1Nc1c{R1}cc(I)cc1Cl"),
    ],
    "RAF inhibitor": [
        ("vemurafenib", "CC{R2}CS(=O)(=O)Nc1ccc(F)c(C(=O)c2c[nH]c3ncc(-c4c{R1}cc(Cl)cc4)cc23)c1F"),
        ("sorafenib", "CNC(=O)c1cc(Oc2c{R1}cc(NC(=O)Nc3c{R2}cc(Cl)c(C(F)(F)F)c3)cc2)ccn1"),
        ("dabrafenib", "CC(C)(C)c1nc(-c2cccc(NS(=O)(=O)c3c(F)c{R2}ccc3F)c2F)c(-c2c{R1}cnc(N)n2)s1"),
    ],
    "calcium channel blocker": [
        ("nifedipine", "COC(=O)C1=C(C)NC(C)=C(C(=O)OC{R2})C1c1cc{R1}ccc1[N+](=O)[O-]"),
        ("verapamil", "COc1c{R1}cc(CCN(C)CC{R2}CC(C#N)(C(C)C)c2ccc(OC)c(OC)c2)cc1OC"),
        ("diltiazem", "COc1ccc(C2Sc3cc{R1}ccc3N(CC{R2}N(C)C)C(=O)C2OC(C)=O)cc1"),
        ("amlodipine", "CCOC(=O)C1=C(COC{R2}CN)NC(C)=C(C(=O)OC)C1c1cc{R1}ccc1Cl"),
    ],
    "histamine receptor antagonist": [
        ("diphenhydramine", "CN(C)C{R2}COC(c1cc{R1}ccc1)c1ccccc1"),
        ("loratadine", "CC{R2}OC(=O)N1CCC(=C2c3ccc(Cl)cc3CCc3c{R1}ccnc32)CC1"),
        ("cetirizine", "OC(=O)COCCN1C{R2}CN(C(c2cc{R1}ccc2)c2ccc(Cl)cc2)CC1"),
    ],
    "JAK inhibitor": [
        ("ruxolitinib", "C1CCC(C1)C(C{R2}C#N)n1cc(-c2ncnc3[nH]c{R1}cc23)cn1"),
        ("tofacitinib", "CC1CCN(C(=O)C{R2}C#N)CC1N(C)c1ncnc2[nH]c{R1}cc12"),
        ("baricitinib", "CC{R2}S(=O)(=O)N1CC(CC#N)(C1)n1cc(-c2ncnc3[nH]c{R1}cc23)cn1"),
    ],
    "Src inhibitor": [
        ("dasatinib", "Cc1nc(Nc2ncc(C(=O)Nc3c(C)c{R1}ccc3Cl)s2)cc(N2CCN(CC{R2}O)CC2)n1"),
        ("bosutinib", "COc1cc(Nc2c(C#N)cnc3cc(OCC{R2}CN4C{R1}CN(C)CC4)c(OC)cc23)c(Cl)cc1Cl"),
    ],
    "VEGFR inhibitor": [
        ("axitinib", "CNC(=O)c1cc{R2}ccc1Sc1ccc2c(C=Cc3cc{R1}ccn3)n[nH]c2c1"),
        ("pazopanib", "Cc1c{R1}cc(Nc2nc{R2}cc(N(C)c3ccc4c(C)n(C)nc4c3)n2)cc1S(N)(=O)=O"),
        ("sunitinib", "CCN(CC)CC{R2}NC(=O)c1c(C)[nH]c(C=C2C(=O)Nc3c{R1}cc(F)cc32)c1C"),
    ],
    "Aurora kinase inhibitor": [
        ("tozasertib", "Cc1cc(Nc2cc(N3CCN(C)CC3)nc(Sc3c{R1}cc(NC(=O)C4C{R2}C4)cc3)n2)n[nH]1"),
        ("alisertib", "COc1cc{R1}cc(F)c1C1=NCc2cnc(Nc3c{R2}cc(C(=O)O)c(OC)c3)nc2-c2ccc(Cl)cc21"),
    ],
    "retinoid receptor agonist": [
        ("tretinoin", "CC1=C(C(C)(C)C{R1}CC1)C=C{R2}C(C)=CC=CC(C)=CC(=O)O"),
        ("bexarotene", "CC1=CC2=C(C=C1C(=C)c1c{R1}cc(C(=O)O)cc1)C(C)(C)C{R2}CC2(C)C"),
        ("tamibarotene", "CC1(C)C{R2}CC(C)(C)c2cc(NC(=O)c3c{R1}cc(C(=O)O)cc3)ccc21"),
    ],
    "phosphodiesterase inhibitor": [
        ("sildenafil", "CC{R2}Cc1nn(C)c2c(=O)[nH]c(-c3cc(S(=O)(=O)N4C{R1}CN(C)CC4)ccc3OCC)nc12"),
        ("tadalafil", "CN1C{R2}C(=O)N2C(Cc3c([nH]c4cc{R1}ccc34)C2c2ccc3c(c2)OCO3)C1=O"),
        ("rolipram", "COc1c{R2}cc(C2CNC(=O)C2)cc1OC1CC{R1}CC1"),
    ],
    "sodium channel blocker": [
        ("lidocaine", "CC{R2}N(CC)CC(=O)Nc1c(C)c{R1}ccc1C"),
        ("carbamazepine", "NC(=O)N1c2cc{R1}ccc2C=C{R2}c2ccccc21"),
        ("phenytoin", "c1cc{R1}c(cc1)C1(c2ccc{R2}cc2)NC(=O)NC1=O"),
    ],
    "acetylcholine receptor antagonist": [
        ("atropine", "CN1C2CCC1CC(OC(=O)C(C{R2}O)c1cc{R1}ccc1)C2"),
        ("benztropine", "CN1C2CCC1CC(OC(c1cc{R1}ccc1)c1ccc{R2}cc1)C2"),
    ],
    "HSP inhibitor": [
        ("luminespib", "CC{R2}NC(=O)c1noc(-c2cc(C(C)C)c(O)cc2O)c1-c1ccc(CN2CC{R1}OCC2)cc1"),
        ("ganetespib", "CC(C)c1c{R2}c(-c2n[nH]c(=O)n2-c2ccc3c(c{R1}cn3C)c2)c(O)cc1O"),
    ],
    "androgen receptor antagonist": [
        ("bicalutamide", "CC(O)(CS(=O)(=O)c1c{R1}cc(F)cc1)C(=O)Nc1c{R2}cc(C#N)c(C(F)(F)F)c1"),
        ("flutamide", "CC{R2}(C)C(=O)Nc1c{R1}cc([N+](=O)[O-])c(C(F)(F)F)c1"),
        ("enzalutamide", "CNC(=O)c1c{R2}cc(N2C(=S)N(c3c{R1}cc(C#N)c(C(F)(F)F)c3)C(=O)C2(C)C)cc1F"),
    ],
}

MOA_FAMILIES: list[str] = list(SCAFFOLDS)

#: Substituents placed at {R1}/{R2}: (name, SMILES branch starting at the attached atom). "" is hydrogen.
#: Ring closures inside a substituent use %9x so they never clash with the scaffold's own ring digits.
SUBSTITUENTS: list[tuple[str, str]] = [
    ("H", ""),
    ("F", "F"),
    ("Cl", "Cl"),
    ("Br", "Br"),
    ("methyl", "C"),
    ("ethyl", "CC"),
    ("isopropyl", "C(C)C"),
    ("methoxy", "OC"),
    ("ethoxy", "OCC"),
    ("hydroxy", "O"),
    ("amino", "N"),
    ("dimethylamino", "N(C)C"),
    ("cyano", "C#N"),
    ("trifluoromethyl", "C(F)(F)F"),
    ("trifluoromethoxy", "OC(F)(F)F"),
    ("carboxamide", "C(N)=O"),
    ("carboxy", "C(=O)O"),
    ("methylsulfonyl", "S(C)(=O)=O"),
    ("morpholino", "N%91CCOCC%91"),
    ("cyclopropyl", "C%91CC%91"),
]

#: Linkers joining two scaffolds in a two-MOA (polypharmacology) compound: (name, SMILES chain).
LINKERS: list[tuple[str, str]] = [
    ("ethoxyethyl", "CCOCC"),
    ("propyloxy", "OCCCO"),
    ("ethylamide", "C(=O)NCC"),
    ("piperazinyl", "CN%92CCN(C%92)C"),
]

_BRANCH = "({})"


def fill_template(template: str, r1: str, r2: str) -> str:
    """Fill a scaffold template's {R1}/{R2} with substituent SMILES ("" for hydrogen)."""
    return template.replace("{R1}", _BRANCH.format(r1) if r1 else "").replace("{R2}", _BRANCH.format(r2) if r2 else "")


_RING_DIGIT = re.compile(r"%\d\d|\d")


def shift_ring_digits(smiles: str, offset: int = 50) -> str:
    """Renumber single-digit ring closures d -> %(offset + d), leaving digits inside [brackets] and %nn alone.

    Used to embed one filled scaffold inside a branch of another without ring-closure clashes.
    """
    out = []
    depth = 0
    i = 0
    while i < len(smiles):
        ch = smiles[i]
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if depth == 0 and ch == "%":
            out.append(smiles[i : i + 3])
            i += 3
            continue
        if depth == 0 and ch.isdigit():
            out.append(f"%{offset + int(ch)}")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def smiles_ngram_features(smiles: str, n_buckets: int = 256, n: int = 3) -> np.ndarray:
    """A structure-derived vector for any SMILES: hashed counts of its character n-grams (stable across runs).

    Used to make the drug-specific deviation of real compounds a deterministic function of their structure.
    """
    vec = np.zeros(n_buckets)
    padded = f"^{smiles}$"
    for k in range(len(padded) - n + 1):
        vec[zlib.crc32(padded[k : k + n].encode()) % n_buckets] += 1.0
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else vec
