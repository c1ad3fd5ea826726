"""Model-registry promotion: a confidence gate per model family, gate reports attached to
model versions, an append-only alias history in the registry, rollback, one promotion of
a model at a time.

    from segen.registry.promotion import promote, rollback, alias_history
    result = promote(project, params, "segen-unet")          # the latest version
    result["decision"]   # promoted | rejected | forced | first | already_champion
"""
from segen.registry.promotion.history import record_alias_move
from segen.registry.promotion.lock import PromotionBusy
from segen.registry.promotion.moves import alias_history, promote, rollback

__all__ = ["promote", "rollback", "alias_history", "record_alias_move", "PromotionBusy"]
