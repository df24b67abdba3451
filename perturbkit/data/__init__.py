"""Files that ship with perturbkit.

``drug_encoder_gat.pt``: the pretrained GAT drug encoder, built by ``scripts/pretrain_drug_encoder.py``.
"""
