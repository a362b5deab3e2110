"""Interoperability with PyTorch: state dicts in the reference DLRM's layout, and eager twins.

reference_dlrm  export and import of facebookresearch/dlrm `DLRM_Net` state dicts (NumPy only)
torch_dlrm      the DLRM's eager PyTorch twin (one nn.EmbeddingBag per feature; needs torch)
torch_ncf, torch_wide_deep, torch_multitask_wide_deep
                the zoo families' eager twins (need torch); twin_weights, what they share (NumPy)
torch_twins     each family's twin by family name, imported lazily; torch thread settings
torchrec_dlrm_dcn  export and import of TorchRec `DLRM_DCN` (MLPerf DLRM-v2) state dicts (NumPy)
torch_deepfm, torch_dcnv2  the DeepFM and DCN-V2 twins (torch_bags: what they share; needs torch)
tables          a model's tables one by one, out of and into its stacked buffers
"""
