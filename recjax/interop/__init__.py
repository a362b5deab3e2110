"""Interoperability with PyTorch: the reference DLRM's state-dict layout and an eager baseline."""
