"""The stage graph: one definition that the Prefect tasks, the cache keys and
dvc.yaml are all built from."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    name: str
    upstream: tuple[str, ...]  # stages whose results this one consumes
    params: tuple[str, ...]  # params.yaml sections it reads (and nothing else)
    needs_masks: bool = False  # skipped when the dataset has no masks (class folders)
    enabled_by: str | None = None  # params section whose `enabled` flag turns it on
    optional: tuple[str, ...] = ()  # upstream stages it runs without when they are switched off
    # The code in its cache key is not listed here: it is the import closure of the stage's
    # body (segen.pipeline.sources).

    @property
    def description(self) -> str:
        return STAGE_DESCRIPTIONS[self.name]


# The supervised segmenters (models.segmentation), one trainer for both: kind -> its
# training section and its register section in params.yaml.
SUPERVISED_KINDS = {"unet": ("unet", "register"),
                    "torchvision": ("torchvision", "register_torchvision")}
CLUSTERING_KINDS = ("kmeans", "dbscan")  # pixel-clustering segmenters (models/clustering.py)
# The generative models (models/generative); their stages come from one factory.
GENERATIVE_KINDS = ("gan", "dcgan", "wgan_gp", "vae", "cgan", "cvae", "pix2pix", "cyclegan")


# Segmenters switched on by their training section's `enabled` (off by default: see
# params.yaml); compare_segmenters runs without them.
SWITCHABLE_KINDS = ("torchvision",)


def _segmenter_stages(kind: str, train: str, evaluate: str, register: str
                      ) -> tuple[StageSpec, ...]:
    """train/evaluate/register of one segmenter, supervised or clustering; the arguments are
    the params sections each step reads."""
    switch = train if kind in SWITCHABLE_KINDS else None
    return (
        StageSpec(f"train_{kind}", ("preprocess",), (train,), needs_masks=True,
                  enabled_by=switch),
        StageSpec(f"evaluate_{kind}", ("preprocess", f"train_{kind}"), (evaluate,),
                  needs_masks=True, enabled_by=switch),
        StageSpec(f"register_{kind}",
                  ("version_data", "preprocess", f"train_{kind}", f"evaluate_{kind}"),
                  (register,), needs_masks=True, enabled_by=switch),
    )


def _generative_stages(kind: str) -> tuple[StageSpec, ...]:
    """train/evaluate/register of one generative model (kind: one of GENERATIVE_KINDS)."""
    masks = kind == "pix2pix"  # mask-to-image: needs masks, and the U-Net scores its images
    evaluate_upstream = ("preprocess", f"train_{kind}", "train_feature_extractor")
    return (
        StageSpec(f"train_{kind}", ("preprocess",), ("generative", kind), needs_masks=masks),
        StageSpec(f"evaluate_{kind}", evaluate_upstream + (("train_unet",) if masks else ()),
                  ("generative", "generative_evaluate"), needs_masks=masks),
        StageSpec(f"register_{kind}", ("version_data", "preprocess", f"train_{kind}",
                                       f"evaluate_{kind}", "train_feature_extractor"),
                  ("register_generative",), needs_masks=masks),
    )


STAGES: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec("version_data", (), ("data",)),
    StageSpec("validate", ("version_data",), ("validate",)),
    StageSpec("preprocess", ("version_data", "validate"), ("preprocess",)),
    *(spec for kind, (train, register) in SUPERVISED_KINDS.items()
      for spec in _segmenter_stages(kind, train, "evaluate", register)),
    StageSpec("train_feature_extractor", ("preprocess",),
              ("generative", "feature_extractor", "generative_evaluate")),
    *(stage_spec for kind in GENERATIVE_KINDS for stage_spec in _generative_stages(kind)),
    *(spec for kind in CLUSTERING_KINDS
      for spec in _segmenter_stages(kind, kind, "cluster_evaluate", f"register_{kind}")),
    StageSpec("compare_segmenters",
              ("version_data", "preprocess",
               *(f"{step}_{kind}" for kind in SUPERVISED_KINDS for step in ("train", "register")),
               *(f"{step}_{kind}" for kind in CLUSTERING_KINDS
                 for step in ("evaluate", "register"))),
              ("evaluate", "cluster_evaluate"), needs_masks=True,
              optional=tuple(f"{step}_{kind}" for kind in SWITCHABLE_KINDS
                             for step in ("train", "register"))),
    # synthetic pairs for the U-Net (off unless synthetic.enabled)
    StageSpec("synthesize_pairs", ("preprocess", "train_pix2pix", "register_pix2pix"),
              ("synthetic",), needs_masks=True, enabled_by="synthetic"),
    StageSpec("train_unet_synthetic", ("preprocess", "synthesize_pairs"), ("unet",),
              needs_masks=True, enabled_by="synthetic"),
    StageSpec("evaluate_unet_synthetic", ("preprocess", "train_unet_synthetic"), ("evaluate",),
              needs_masks=True, enabled_by="synthetic"),
)}


STAGE_DESCRIPTIONS = {
    "version_data": "make data.dvc record what is in data/ (dvc add), push it, return its md5",
    "validate": "check every image and mask; stop with a report naming each bad file",
    "preprocess": "resize, split train/val/test by seed, store uint8 arrays",
    "train_unet": "train the U-Net (AdamW, CE + Dice), checkpoint every epoch, resumable",
    "evaluate_unet": "per-class and mean IoU/Dice, pixel accuracy, prediction grid",
    "register_unet": "log run, model and lineage to MLflow; register a model version",
    "train_torchvision": "train the torchvision segmenter (torchvision.arch, untrained) by the "
                         "U-Net's recipe, checkpoint every epoch, resumable",
    "evaluate_torchvision": "per-class and mean IoU/Dice, pixel accuracy, prediction grid",
    "register_torchvision": "log run, model and lineage of the torchvision segmenter to MLflow",
    "train_kmeans": "fit K-means (k-means++) on pixel colour/position of the training split",
    "evaluate_kmeans": "silhouette, inertia, ARI and IoU after Hungarian matching; grid",
    "register_kmeans": "log run, pyfunc and lineage of the K-means segmenter to MLflow",
    "train_dbscan": "fit DBSCAN on a bounded pixel sample of the training split",
    "evaluate_dbscan": "silhouette, noise, ARI and IoU after Hungarian matching; grid",
    "register_dbscan": "log run, pyfunc and lineage of the DBSCAN segmenter to MLflow",
    "compare_segmenters": "U-Net, torchvision model, K-means and DBSCAN side by side on "
                          "the test split",
    "train_feature_extractor": "train and pin the classifier FID/KID are measured with; "
                               "floor and ceiling references",
    **{f"train_{kind}": f"train the {kind} generator, checkpoint every epoch, stop on divergence"
       for kind in GENERATIVE_KINDS},
    **{f"evaluate_{kind}": f"FID, KID, precision/recall of the {kind} generator; sample grid"
       for kind in GENERATIVE_KINDS},
    **{f"register_{kind}": f"log run, pyfunc and lineage of the {kind} generator to MLflow"
       for kind in GENERATIVE_KINDS},
    "synthesize_pairs": "render re-laid-out train masks into (image, mask) pairs with the "
                        "registered pix2pix generator",
    "train_unet_synthetic": "train the same U-Net recipe on the train split plus the "
                            "synthetic pairs",
    "evaluate_unet_synthetic": "score the U-Net trained with synthetic pairs on the same "
                               "test split",
}


def stages_for(targets: list[str]) -> list[str]:
    """targets and every stage they depend on, in the graph's order."""
    if unknown := [t for t in targets if t not in STAGES]:
        raise ValueError(f"unknown stage(s) {unknown}; expected names from {list(STAGES)}")
    needed, todo = set(), list(targets)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(STAGES[name].upstream)
    return [name for name in STAGES if name in needed]


def stage(name: str) -> StageSpec:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}") from None
