"""Model-registry promotion: a confidence gate per model family, gate reports attached to
model versions, an append-only alias history in the registry, rollback, one promotion of
a model at a time.

Nothing is imported here (registering a model needs only history.py, not the gate); import
from the modules:

    from segen.registry.promotion.moves import promote, rollback, alias_history
    result = promote(project, params, "segen-unet")          # the latest version
    result["decision"]   # promoted | rejected | forced | first | already_champion

Modules: moves (promote, rollback, alias_history), gate (families, test data, per-image
scores), generation (the FID gate), bootstrap (intervals), history (the alias history),
lock (PromotionBusy, one promotion of a model at a time), report (the gate report).
"""
