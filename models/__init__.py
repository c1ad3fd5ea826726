"""Pure model code: networks, losses, metrics (no I/O, no Prefect, no MLflow).

Import the submodules directly (models.unet, ...): this package imports nothing, so
hashing their sources for cache keys never pulls in torch.
"""
