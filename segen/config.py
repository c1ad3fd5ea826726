"""The one reader of params.yaml: parses it into frozen dataclasses validated by pydantic.

Sections have no defaults (params.yaml is the single source of values): unknown or missing
keys and bad values fail with the file, the key path, the value and what was expected.
Types, ranges and choices are annotations; rules spanning keys are validators. Only the
standard library, yaml and pydantic are imported, so the CLI checks params.yaml fast.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AllowInfNan,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or holds a value out of range."""


# Strict scalars: an int key rejects true and 1.5 (and "3"), a bool rejects "yes" and 1,
# a string rejects 3. A float key accepts an int and stores it as a float; never nan or inf
# (YAML's .nan/.inf), which no setting means and which would only surface as a NaN loss.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), AllowInfNan(False)]
Bool = Annotated[bool, Strict()]
Name = Annotated[str, Strict(), Field(pattern=r"\S")]  # not empty nor only blanks
Seed = Annotated[Int, Field(ge=0)]  # numpy's default_rng rejects negative seeds
Count = Annotated[Int, Field(ge=1)]
Weight = Annotated[Float, Field(ge=0)]
Rate = Annotated[Float, Field(gt=0)]
Colour = Literal["rgb", "lab"]  # lab: CIE L*a*b*
Mode = Literal["global", "per_image"]

# Frozen standard dataclasses, validated by pydantic; unknown keys are errors.
_section = dataclass(frozen=True, config=ConfigDict(extra="forbid"))


def _fail(*problems: tuple[str, Any, str]) -> None:
    """Raise rule violations: (key relative to the section validated, value, expected)."""
    if problems:
        text = "; ".join(f"{k}: expected {e}, got {_show(v)}" for k, v, e in problems)
        raise PydanticCustomError("params_rule", "{text}", {"text": text, "problems": problems})


@_section
class DatasetParams:
    """The procedurally generated default dataset (used when data/ is absent)."""
    seed: Seed
    n_images: Annotated[Int, Field(ge=4)]
    image_size: Annotated[Int, Field(ge=16)]
    min_shapes: Count
    max_shapes: Count

    @model_validator(mode="after")
    def _shapes(self) -> DatasetParams:
        if self.min_shapes > self.max_shapes:
            _fail(("min_shapes", self.min_shapes, f"an int <= max_shapes = {self.max_shapes}"))
        return self


@_section
class DataParams:
    """Dataset versioning: where DVC pushes data versions."""
    remote: Name  # a directory outside the repository (~ expanded) or any DVC remote URL


@_section
class ValidateParams:
    """Dataset checks run before any training."""
    min_class_fraction: Annotated[Float, Field(ge=0, lt=1)]  # rarer classes: a warning
    # Larger images are refused by every reader of user files (import, data add, validate,
    # predict, generate --mask) before they are decoded: decompression bombs.
    max_image_pixels: Annotated[Int, Field(ge=1024)]


Size = Annotated[Int, Field(ge=16)]
HeightWidth = Annotated[list[Size], Field(min_length=2, max_length=2)]  # [height, width]


def height_width(size: int | list[int]) -> tuple[int, int]:
    """An int (square) or [height, width], as params.yaml writes sizes."""
    return (size, size) if isinstance(size, int) else (size[0], size[1])


@_section
class PreprocessParams:
    """Resize (to a fixed size, or keeping the aspect ratio), pad to the networks' multiple,
    ignored labels, class weights and the train/val/test split."""
    image_size: Size | HeightWidth | None  # every image resized to this; null: long_side
    long_side: Size | None  # resize so the longer side is this, keeping the aspect ratio
    pad_multiple: Count  # the canvas is rounded up to it; padding is an ignored label
    # median_frequency: SegNet (Badrinarayanan et al. 2017), after Eigen & Fergus 2015
    class_weights: Literal["none", "median_frequency", "inverse_frequency"]
    # Each below 0.5, so together below 1; Params checks that whole images are left to train.
    val_fraction: Annotated[Float, Field(gt=0, lt=0.5)]
    test_fraction: Annotated[Float, Field(gt=0, lt=0.5)]
    # the share of the train split whose labels the models may use (seeded); the rest is
    # left out of every split: a scarce-label study on the same val and test splits
    labelled_fraction: Annotated[Float, Field(gt=0, le=1)]
    seed: Seed

    @model_validator(mode="after")
    def _one_size(self) -> PreprocessParams:
        if (self.image_size is None) == (self.long_side is None):
            _fail(("image_size, long_side", (self.image_size, self.long_side),
                   "exactly one of them set (the other null)"))
        return self


@_section
class SegmenterTrainingParams:
    """How a supervised segmenter trains: the recipe the U-Net and the torchvision model
    share (one trainer, segen.engines.unet_trainer)."""
    epochs: Count
    batch_size: Count
    lr: Rate
    weight_decay: Weight
    dice_weight: Weight
    augment: Bool
    # std in pixels of the elastic deformation's coarse 3 x 3 displacements (Ronneberger et
    # al. 2015 use 10); 0: off
    elastic_px: Annotated[Float, Field(ge=0)]
    # random training crops: an int (square) or [height, width]; null: whole images
    crop_size: Size | HeightWidth | None
    # sliding-window inference (segen/serving/tiling.py): tiles of this size, written to the
    # model's config so evaluation, predict and the pyfunc tile alike; null: whole images
    tile_size: Size | HeightWidth | None
    tile_overlap: Annotated[Float, Field(ge=0, lt=1)]  # fraction of a tile its neighbour shares
    seed: Seed
    # training processes (torch elastic, one GPU each on GPUs); batch_size is the global batch
    processes: Count
    section: ClassVar[str]  # its section in params.yaml; subclasses also give an `arch`

    @model_validator(mode="after")
    def _split_batch(self) -> SegmenterTrainingParams:
        # Each process takes batch_size // processes images, so the global batch is the same.
        if self.batch_size % self.processes:
            _fail(("batch_size", self.batch_size,
                   f"a multiple of processes = {self.processes} (each process trains on "
                   "batch_size / processes images)"))
        return self


@_section
class UNetParams(SegmenterTrainingParams):
    """U-Net architecture and its training (Ronneberger et al. 2015)."""
    depth: Annotated[Int, Field(ge=1, le=6)]
    base_width: Count
    section: ClassVar[str] = "unet"
    arch: ClassVar[str] = "unet"  # models.segmentation's name for it

    @model_validator(mode="after")
    def _windows(self) -> UNetParams:
        # A training crop or an inference tile goes through the same depth 2x2 max-pools as a
        # whole image.
        multiple, problems = 2 ** self.depth, []
        for key in ("crop_size", "tile_size"):
            size = getattr(self, key)
            if size and any(side % multiple for side in height_width(size)):
                expected = f"null or sides that are multiples of 2**depth = {multiple}"
                problems.append((key, size, expected))
        _fail(*problems)
        return self


# models.segmentation.SEGMENTERS minus the U-Net (a test keeps the two lists equal; this
# module does not import torch)
TorchvisionArch = Literal["deeplabv3_resnet18", "deeplabv3_resnet50", "fcn_resnet50",
                          "lraspp_mobilenet_v3_large"]


@_section
class TorchvisionParams(SegmenterTrainingParams):
    """A torchvision segmentation network, untrained (weights=None, weights_backbone=None),
    trained by the U-Net's recipe: DeepLabV3 (Chen et al. 2017), FCN (Long et al. 2015) or
    LRASPP (Howard et al. 2019)."""
    enabled: Bool  # false: its stages are skipped and compare_segmenters goes without it
    arch: TorchvisionArch
    section: ClassVar[str] = "torchvision"


@_section
class EvaluateParams:
    """Evaluation on the test split."""
    batch_size: Count
    grid_images: Count  # rows in the image / truth / prediction grid


@_section
class RegisterParams:
    """Registration of the trained U-Net in the MLflow model registry."""
    model_name: Name
    champion_alias: Name
    section: ClassVar[str] = "register"  # its section in params.yaml


@_section
class KMeansParams:
    """K-means pixel segmenter, k-means++ seeding (Arthur & Vassilvitskii 2007)."""
    n_clusters: Annotated[Int, Field(ge=2, le=255)]  # labels are stored as uint8
    colour: Colour  # pixel colour features
    position_weight: Weight  # scale of the (y, x) features, each in [0, 1]; 0: colour only
    mode: Mode  # global: fit once on a train-split pixel sample | per_image: fit every image
    fit_pixels: Annotated[Int, Field(le=1_000_000)]  # sampled to fit: split-wide or per image
    n_init: Count
    max_iter: Count
    seed: Seed

    @model_validator(mode="after")
    def _sample(self) -> KMeansParams:  # k centres need at least k pixels
        if self.fit_pixels < self.n_clusters:
            expected = f"an int in [n_clusters = {self.n_clusters}, 1000000]"
            _fail(("fit_pixels", self.fit_pixels, expected))
        return self


@_section
class DBSCANParams:
    """DBSCAN pixel segmenter (Ester et al. 1996), fitted on a bounded pixel sample."""
    eps: Rate  # neighbourhood radius in feature units (colours scaled to about [0, 1])
    min_samples: Count  # neighbours (itself included) that make a core pixel
    colour: Colour
    position_weight: Weight
    mode: Mode
    fit_pixels: Annotated[Int, Field(ge=2, le=10_000, description="its neighbourhoods take "
                                     "up to ~16 bytes x fit_pixels^2")]
    seed: Seed


@_section
class ClusterEvaluateParams:
    """Evaluation of the clustering segmenters (and the comparison with the U-Net)."""
    silhouette_pixels: Annotated[Int, Field(ge=2, le=20_000)]  # sampled per test image
    silhouette_colour: Colour  # the one space every segmenter's silhouette is taken in
    seed: Seed
    grid_images: Count


@_section
class RegisterTorchvisionParams(RegisterParams):
    """Registration of the torchvision segmenter in the MLflow model registry."""
    section: ClassVar[str] = "register_torchvision"


@_section
class RegisterKMeansParams(RegisterParams):
    """Registration of the K-means segmenter in the MLflow model registry."""
    section: ClassVar[str] = "register_kmeans"


@_section
class RegisterDBSCANParams(RegisterParams):
    """Registration of the DBSCAN segmenter in the MLflow model registry."""
    section: ClassVar[str] = "register_dbscan"


@_section
class DivergenceParams:
    """When a generative training run counts as diverged (the stage then fails)."""
    max_loss: Rate  # |loss| above this (or NaN/inf) after an epoch
    collapse_std: Weight  # per-pixel std over a sample batch below this: a collapsed generator


GenSize = Annotated[Int, Field(ge=16, description="a power of two: 16, 32, 64, ...")]


@_section
class GenerativeParams:
    """Settings shared by every generative model (train and evaluate stages)."""
    # The generators' conv stacks halve/double S per stride-2 stage between S x S and 4 x 4
    # (pix2pix's U-Net down to 2 x 2), so S must be a power of two >= 16: the rule of
    # GenSpec.__post_init__ in models/generative/blocks.py, checked here before torch loads.
    image_size: GenSize
    latent_dim: Count
    batch_size: Annotated[Int, Field(ge=2, description="batch norm needs two")]
    seed: Seed
    sample_grid: Count  # images per sample grid
    eval_samples: Annotated[Int, Field(ge=4)]  # generated images per evaluation
    cyclegan_domain_column: Name  # manifest.csv column whose two values are the domains
    divergence: DivergenceParams
    # training processes of every generator (torch elastic, one GPU each on GPUs); each rank
    # trains on its slice of every batch of batch_size, so the global batch is one process's
    processes: Count

    @model_validator(mode="after")
    def _size(self) -> GenerativeParams:
        _check_gen_size("image_size", self.image_size)
        if self.batch_size < 2 * self.processes:
            _fail(("batch_size", self.batch_size, f">= 2 x processes = {2 * self.processes} "
                   "(each process's slice of a batch needs two images for batch norm)"))
        return self


def _check_gen_size(key: str, size: int | None) -> None:
    if size is not None and size & (size - 1):
        _fail((key, size, "a power of two >= 16 (the generators halve it down to 4x4)"))


@_section
class GeneratorParams:
    """One generative model's training: epochs, Adam learning rate, network width."""
    epochs: Count
    lr: Rate  # the generator's (or the VAE's) Adam learning rate
    width: Count  # base channel count of its networks
    # keys that are not the objective's: the trainer's, and the nets' (GenSpec's)
    _TRAINING: ClassVar[tuple[str, ...]] = ("epochs", "lr", "width", "d_lr", "ema",
                                            "image_size")
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("spectral_norm", "projection")

    def weights(self) -> dict[str, Any]:
        """What the objective reads (models/generative WEIGHTS): every key but the trainer's
        and the architecture's."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in self._TRAINING + self.ARCHITECTURE}

    def architecture(self) -> dict[str, Any]:
        """The GenSpec options this section sets (spectral_norm, projection)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k in self.ARCHITECTURE}


AugmentOp = Literal["color", "translation", "cutout"]  # models/generative/augment.py


@_section
class AdversarialTraining(GeneratorParams):
    """What every GAN's training shares: TTUR, EMA sampling, DiffAugment."""
    d_lr: Rate  # the discriminator's learning rate (TTUR, Heusel et al. 2017); = lr: one rate
    ema: Annotated[Float, Field(ge=0, lt=1)]  # per-step decay of the sampled generator's
    #                                           weight average (Karras et al. 2018); 0: off
    augment: tuple[AugmentOp, ...]  # DiffAugment policy (Zhao et al. 2020); []: off


@_section
class GanLossParams(AdversarialTraining):
    """A logistic or hinge GAN: its loss, R1, and spectral norm on D."""
    loss: Literal["bce", "hinge"]  # bce: Goodfellow et al.'s; hinge: SN-GAN's
    r1_weight: Weight  # gamma of the R1 penalty on reals (Mescheder et al. 2018); 0: off
    spectral_norm: Bool  # on D's layers (Miyato et al. 2018)


@_section
class GanParams(GanLossParams):
    """GAN, Goodfellow et al. 2014 (non-saturating generator loss)."""


@_section
class DCGanParams(GanLossParams):
    """DCGAN, Radford et al. 2016."""


@_section
class CGanParams(GanLossParams):
    """Class-conditional GAN (Mirza & Osindero 2014)."""
    projection: Bool  # the projection discriminator (Miyato & Koyama 2018), not label planes


@_section
class WGanGpParams(AdversarialTraining):
    """WGAN-GP, Gulrajani et al. 2017."""
    gp_weight: Weight  # lambda of the gradient penalty (10 in the paper)
    n_critic: Count  # critic steps per generator step (5 in the paper)


@_section
class VaeParams(GeneratorParams):
    """VAE, Kingma & Welling 2014; beta weighs the KL term (Higgins et al. 2017)."""
    beta: Weight
    # the decoder's Gaussian: fixed variance, or calibrated to the error (Rybkin et al. 2021)
    likelihood: Literal["fixed", "calibrated"]


@_section
class CVaeParams(VaeParams):
    """Conditional VAE (Sohn et al. 2015)."""


@_section
class Pix2PixParams(GeneratorParams):
    """Mask-to-image, Isola et al. 2017: adversarial + l1_weight * L1 (100 in the paper)."""
    l1_weight: Weight
    # Its own working size (null: generative.image_size): the U-Net scores its images and
    # trains on its synthetic pairs, so drawing them smaller than the U-Net sees caps both.
    image_size: GenSize | None

    @model_validator(mode="after")
    def _size(self) -> Pix2PixParams:
        _check_gen_size("image_size", self.image_size)
        return self


@_section
class CycleGanParams(GeneratorParams):
    """CycleGAN, Zhu et al. 2017: cycle-consistency and identity loss weights."""
    cycle_weight: Weight
    identity_weight: Weight


SECTION_OF: dict[type, str] = {
    GanParams: "gan", DCGanParams: "dcgan", WGanGpParams: "wgan_gp", VaeParams: "vae",
    CGanParams: "cgan", CVaeParams: "cvae", Pix2PixParams: "pix2pix", CycleGanParams: "cyclegan"}


@_section
class FeatureExtractorParams:
    """The pinned classifier whose features FID, KID and precision/recall are measured in."""
    width: Count
    feature_dim: Annotated[Int, Field(ge=2)]
    epochs: Count
    batch_size: Annotated[Int, Field(ge=2)]
    lr: Rate
    seed: Seed


@_section
class GenerativeEvaluateParams:
    """The evaluation protocol of the generative models (and of the references)."""
    kid_subset_size: Annotated[Int, Field(ge=2)]
    k: Count  # neighbours for improved precision/recall (Kynkaanniemi et al. 2019)
    seed: Seed


@_section
class RegisterGenerativeParams:
    """Registration of every generative model: names are model_prefix + kind."""
    model_prefix: Name
    champion_alias: Name


@_section
class GateParams:
    """The promotion gate of one model family: which metric, and by how much it must win."""
    metric: Literal["mean_iou", "mean_dice", "ari", "silhouette", "fid"]
    margin: Weight  # the confidence interval must clear this, in the metric's units


# One gate per family, each limited to the metrics that family reports.
@_section
class SegmentationGateParams(GateParams):
    metric: Literal["mean_iou", "mean_dice"]


@_section
class ClusteringGateParams(GateParams):
    metric: Literal["ari", "silhouette"]


@_section
class GenerationGateParams(GateParams):
    metric: Literal["fid"]


@_section
class PromoteParams:
    """segen promote: a paired bootstrap over test images must clear each family's margin."""
    confidence: Annotated[Float, Field(ge=0.5, lt=1)]  # of the percentile interval
    bootstrap_samples: Annotated[Int, Field(ge=100)]
    seed: Seed
    lock_timeout_s: Rate  # wait at most this long for another promotion of the same model
    segmentation: SegmentationGateParams
    clustering: ClusteringGateParams
    generation: GenerationGateParams


@_section
class SyntheticParams:
    """Synthetic (image, mask) pairs from the mask-to-image generator for U-Net training
    (the synthesize_pairs, train_unet_synthetic and evaluate_unet_synthetic stages)."""
    enabled: Bool  # false: those stages are skipped
    n_pairs: Count  # pairs generated from re-laid-out train-split masks
    seed: Seed


@_section
class MlflowParams:
    """Where runs and models are tracked (MLFLOW_TRACKING_URI overrides tracking_uri)."""
    tracking_uri: Name | None  # None: embedded SQLite store under .segen/
    experiment: Name


@_section
class RunParams:
    """How `segen run` shares the machine among the stages that can run side by side."""
    max_parallel_stages: Count  # stages running at once (1: one after another)
    threads_per_stage: Count | None  # CPU threads each; null: the cores / max_parallel_stages
    stages_per_gpu: Count  # torch stages that may share one GPU at once


@_section
class Params:
    run: RunParams
    dataset: DatasetParams
    data: DataParams
    validate: ValidateParams
    preprocess: PreprocessParams
    unet: UNetParams
    evaluate: EvaluateParams
    register: RegisterParams
    torchvision: TorchvisionParams
    register_torchvision: RegisterTorchvisionParams
    mlflow: MlflowParams
    kmeans: KMeansParams
    dbscan: DBSCANParams
    cluster_evaluate: ClusterEvaluateParams
    register_kmeans: RegisterKMeansParams
    register_dbscan: RegisterDBSCANParams
    promote: PromoteParams
    generative: GenerativeParams
    feature_extractor: FeatureExtractorParams
    generative_evaluate: GenerativeEvaluateParams
    gan: GanParams
    dcgan: DCGanParams
    wgan_gp: WGanGpParams
    vae: VaeParams
    cgan: CGanParams
    cvae: CVaeParams
    pix2pix: Pix2PixParams
    cyclegan: CycleGanParams
    register_generative: RegisterGenerativeParams
    synthetic: SyntheticParams

    @model_validator(mode="after")
    def _across_sections(self) -> Params:
        problems = []
        pre, depth = self.preprocess, self.unet.depth
        # The U-Net pools depth times, and each upsampling must restore the skip's exact size
        # (models/unet.py required_multiple): the canvas is a multiple of pad_multiple.
        if pre.pad_multiple % 2 ** depth:
            expected = f"a multiple of 2**unet.depth = {2 ** depth}"
            problems.append(("preprocess.pad_multiple", pre.pad_multiple, expected))
        for section in (self.unet, self.torchvision):
            crop = section.crop_size
            if crop and pre.image_size is not None:  # crops are cut from the preprocessed images
                size = height_width(pre.image_size)
                if any(c > s for c, s in zip(height_width(crop), size)):
                    expected = f"null or sides <= preprocess.image_size = {list(size)}"
                    problems.append((f"{section.section}.crop_size", crop, expected))
        # The default dataset's split, as tasks/preprocess.py split_indices takes it (val and
        # test get at least one image each), must leave images to train on.
        n, fractions = self.dataset.n_images, self.preprocess
        val, test = (max(1, round(n * f)) for f in (fractions.val_fraction,
                                                     fractions.test_fraction))
        if n - val - test < 1:
            expected = (f"fractions that leave some of the dataset.n_images = {n} images to "
                        f"train on (they take {val} val + {test} test)")
            problems.append(("preprocess.val_fraction, test_fraction",
                             (fractions.val_fraction, fractions.test_fraction), expected))
        _fail(*problems)
        return self


def load_params(path: Path) -> Params:
    """Read and validate params.yaml (the only place that reads it)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found. Pass --params PATH or run from the "
                          "project root, where params.yaml lives.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err}). Fix the syntax.") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections (dataset:, unet:, ...) at "
                          f"the top level, got {_show(raw)}.")
    try:
        return TypeAdapter(Params).validate_python(raw)
    except ValidationError as err:
        lines = [f"{path}: {line}" for e in err.errors() for line in _explain(e, path.name)]
        raise ParamsError("\n".join(dict.fromkeys(lines))) from None


def as_dict(section: Any) -> dict[str, Any]:
    """Plain-dict view of a params section (for hashing and MLflow)."""
    return dataclasses.asdict(section)


def _explain(error: dict[str, Any], name: str) -> list[str]:
    """One pydantic error as lines of 'key: problem; fix'."""
    loc = _key_path([str(part) for part in error["loc"]])
    key = ".".join(loc)
    fix = f"(fix the value in {name})"
    if error["type"] == "params_rule":  # from a validator above: keys relative to loc
        return [f"{'.'.join([*loc, k])}: expected {e}, got {_show(v)} {fix}"
                for k, v, e in error["ctx"]["problems"]]
    owner, field = _field_at(loc)
    if field is None:  # the last part of loc is not a field of its section
        names = [f.name for f in dataclasses.fields(owner)]
        close = difflib.get_close_matches(loc[-1], names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        fix = f"rename or remove it in {name}"
        return [f"{key}: unknown key; {hint}expected one of {', '.join(names)} ({fix})"]
    expected = _describe(field.annotation, field.metadata)
    if field.description:
        expected += f" ({field.description})"
    if error["type"] == "missing":
        what = "section" if dataclasses.is_dataclass(field.annotation) else "key"
        return [f"{key}: missing {what}; add it to {name} (expected {expected})"]
    if error["type"] == "finite_number":  # .nan, .inf or a number too large for a float
        expected = f"a finite number, {expected}"
    return [f"{key}: expected {expected}, got {_show(error['input'])} {fix}"]


def _key_path(loc: list[str]) -> list[str]:
    """loc up to its params key: pydantic appends a union member's name and a list index
    (unet.crop_size.list[constrained-int].0), which are not keys of params.yaml."""
    owner: Any = Params
    for i, part in enumerate(loc):
        field = owner.__pydantic_fields__.get(part)
        if field is None or not dataclasses.is_dataclass(field.annotation):
            return loc[:i + 1]
        owner = field.annotation
    return loc


def _field_at(loc: list[str]) -> tuple[type, FieldInfo | None]:
    """The section that holds loc's last key, and that key's field (None: no such key)."""
    owner: Any = Params
    for part in loc[:-1]:
        owner = owner.__pydantic_fields__[part].annotation
    return owner, owner.__pydantic_fields__.get(loc[-1])


def _describe(tp: Any, metadata: list[Any]) -> str:
    """What a field expects, in words: 'an int in [2, 255]', "one of 'rgb', 'lab'"."""
    if typing.get_origin(tp) is Annotated:
        return _describe(tp.__origin__, [*tp.__metadata__, *metadata])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | Y | None
        args = typing.get_args(tp)
        words = [_describe(a, metadata) for a in args if a is not type(None)]
        return " or ".join(["null"] * (type(None) in args) + words)
    if typing.get_origin(tp) is list:  # only [height, width] pairs so far
        (inner,) = typing.get_args(tp)
        return f"[height, width], each {_describe(inner, [])}"
    if typing.get_origin(tp) is Literal:
        return f"one of {', '.join(repr(a) for a in typing.get_args(tp))}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}"
    bounds: dict[str, Any] = {}
    for item in metadata:
        for part in item.metadata if isinstance(item, FieldInfo) else [item]:
            bounds.update({k: getattr(part, k) for k in ("ge", "gt", "le", "lt", "pattern")
                           if getattr(part, k, None) is not None})
    if "pattern" in bounds:
        return "a non-empty string"
    noun = {int: "an int", float: "a float", bool: "true or false", str: "a string"}[tp]
    low = [(k, bounds[k]) for k in ("ge", "gt") if k in bounds]
    high = [(k, bounds[k]) for k in ("le", "lt") if k in bounds]
    if low and high:
        (lo, a), (hi, b) = low[0], high[0]
        return f"{noun} in {'[' if lo == 'ge' else '('}{a}, {b}{']' if hi == 'le' else ')'}"
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " ".join([noun, *(f"{ops[k]} {v}" for k, v in low + high)])


def _show(value: Any) -> str:
    """A value as params.yaml spells it."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, dict):
        return f"a mapping ({', '.join(map(str, value))})"
    return repr(value)
