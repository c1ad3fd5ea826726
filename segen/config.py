"""The one reader of params.yaml: parses it into frozen, validated dataclasses.

Every section is a dataclass without defaults (params.yaml is the single source of
values); unknown or missing keys and out-of-range values fail loudly with the key
path and the fix.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or holds a value out of range."""


@dataclass(frozen=True)
class DatasetParams:
    """The procedurally generated default dataset (used when data/ is absent)."""
    seed: int
    n_images: int
    image_size: int
    min_shapes: int
    max_shapes: int

    def check(self) -> None:
        _require(self.n_images >= 4, "dataset.n_images", "an int >= 4", self.n_images)
        _require(self.image_size >= 16, "dataset.image_size", "an int >= 16", self.image_size)
        _require(1 <= self.min_shapes <= self.max_shapes, "dataset.min_shapes",
                 "1 <= min_shapes <= max_shapes", (self.min_shapes, self.max_shapes))


@dataclass(frozen=True)
class DataParams:
    """Dataset versioning: where DVC pushes data versions."""
    remote: str  # a directory outside the repository (~ expanded) or any DVC remote URL

    def check(self) -> None:
        _require(bool(self.remote.strip()), "data.remote", "a non-empty path or URL", self.remote)


@dataclass(frozen=True)
class ValidateParams:
    """Dataset checks run before any training."""
    min_class_fraction: float  # classes rarer than this (pixel fraction) give a warning

    def check(self) -> None:
        _require(0.0 <= self.min_class_fraction < 1.0, "validate.min_class_fraction",
                 "a float in [0, 1)", self.min_class_fraction)


@dataclass(frozen=True)
class PreprocessParams:
    """Resize and deterministic train/val/test split."""
    image_size: int
    val_fraction: float
    test_fraction: float
    seed: int

    def check(self) -> None:
        _require(self.image_size >= 16, "preprocess.image_size", "an int >= 16", self.image_size)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            _require(0.0 < value < 0.5, f"preprocess.{name}", "a float in (0, 0.5)", value)


@dataclass(frozen=True)
class UNetParams:
    """U-Net architecture and its training (Ronneberger et al. 2015)."""
    depth: int
    base_width: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    dice_weight: float
    augment: bool
    crop_size: int | None  # random square crops for training (None: whole images)
    seed: int

    def check(self) -> None:
        _require(1 <= self.depth <= 6, "unet.depth", "an int in [1, 6]", self.depth)
        _require(self.base_width >= 1, "unet.base_width", "an int >= 1", self.base_width)
        _require(self.epochs >= 1, "unet.epochs", "an int >= 1", self.epochs)
        _require(self.batch_size >= 1, "unet.batch_size", "an int >= 1", self.batch_size)
        _require(self.lr > 0, "unet.lr", "a float > 0", self.lr)
        _require(self.weight_decay >= 0, "unet.weight_decay", "a float >= 0", self.weight_decay)
        _require(self.dice_weight >= 0, "unet.dice_weight", "a float >= 0", self.dice_weight)
        multiple = 2 ** self.depth
        _require(self.crop_size is None or (self.crop_size > 0 and self.crop_size % multiple == 0),
                 "unet.crop_size", f"null or a positive multiple of 2**depth = {multiple}",
                 self.crop_size)


@dataclass(frozen=True)
class EvaluateParams:
    """Evaluation on the test split."""
    batch_size: int
    grid_images: int  # rows in the image / truth / prediction grid

    def check(self) -> None:
        _require(self.batch_size >= 1, "evaluate.batch_size", "an int >= 1", self.batch_size)
        _require(self.grid_images >= 1, "evaluate.grid_images", "an int >= 1", self.grid_images)


@dataclass(frozen=True)
class RegisterParams:
    """Registration of the trained U-Net in the MLflow model registry."""
    model_name: str
    champion_alias: str
    section: ClassVar[str] = "register"  # where errors point in params.yaml

    def check(self) -> None:
        _require(bool(self.model_name.strip()), f"{self.section}.model_name",
                 "a non-empty name", self.model_name)


@dataclass(frozen=True)
class KMeansParams:
    """K-means pixel segmenter, k-means++ seeding (Arthur & Vassilvitskii 2007)."""
    n_clusters: int
    colour: str  # pixel colour features: rgb | lab (CIE L*a*b*)
    position_weight: float  # scale of the (y, x) position features, each in [0, 1]; 0: colour only
    mode: str  # global: fit once on a train-split pixel sample | per_image: fit every image
    fit_pixels: int  # pixels sampled to fit: across the train split (global) or per image
    n_init: int
    max_iter: int
    seed: int

    def check(self) -> None:
        _require(2 <= self.n_clusters <= 255, "kmeans.n_clusters", "an int in [2, 255]",
                 self.n_clusters)
        _check_pixel_features("kmeans", self.colour, self.position_weight, self.mode)
        _require(self.n_clusters <= self.fit_pixels <= 1_000_000, "kmeans.fit_pixels",
                 "an int in [n_clusters, 1000000]", self.fit_pixels)
        _require(self.n_init >= 1, "kmeans.n_init", "an int >= 1", self.n_init)
        _require(self.max_iter >= 1, "kmeans.max_iter", "an int >= 1", self.max_iter)


@dataclass(frozen=True)
class DBSCANParams:
    """DBSCAN pixel segmenter (Ester et al. 1996), fitted on a bounded pixel sample."""
    eps: float  # neighbourhood radius in feature units (colours scaled to about [0, 1])
    min_samples: int  # neighbours (itself included) that make a core pixel
    colour: str
    position_weight: float
    mode: str
    fit_pixels: int  # memory grows as fit_pixels^2 at worst, hence the cap
    seed: int

    def check(self) -> None:
        _require(self.eps > 0, "dbscan.eps", "a float > 0", self.eps)
        _require(self.min_samples >= 1, "dbscan.min_samples", "an int >= 1", self.min_samples)
        _check_pixel_features("dbscan", self.colour, self.position_weight, self.mode)
        _require(2 <= self.fit_pixels <= 10_000, "dbscan.fit_pixels", "an int in [2, 10000] "
                 "(its neighbourhoods take up to ~16 bytes x fit_pixels^2)", self.fit_pixels)


@dataclass(frozen=True)
class ClusterEvaluateParams:
    """Evaluation of the clustering segmenters (and the comparison with the U-Net)."""
    silhouette_pixels: int  # pixels sampled per test image for the silhouette coefficient
    silhouette_colour: str  # rgb | lab: the one space every segmenter's silhouette is taken in
    seed: int
    grid_images: int  # rows in the image / truth / prediction grid

    def check(self) -> None:
        _require(2 <= self.silhouette_pixels <= 20_000, "cluster_evaluate.silhouette_pixels",
                 "an int in [2, 20000]", self.silhouette_pixels)
        _require(self.silhouette_colour in _COLOURS, "cluster_evaluate.silhouette_colour",
                 f"one of {_COLOURS}", self.silhouette_colour)
        _require(self.grid_images >= 1, "cluster_evaluate.grid_images", "an int >= 1",
                 self.grid_images)


@dataclass(frozen=True)
class RegisterKMeansParams(RegisterParams):
    """Registration of the K-means segmenter in the MLflow model registry."""
    section: ClassVar[str] = "register_kmeans"


@dataclass(frozen=True)
class RegisterDBSCANParams(RegisterParams):
    """Registration of the DBSCAN segmenter in the MLflow model registry."""
    section: ClassVar[str] = "register_dbscan"


@dataclass(frozen=True)
class DivergenceParams:
    """When a generative training run counts as diverged (the stage then fails)."""
    max_loss: float  # |loss| above this (or NaN/inf) after an epoch
    collapse_std: float  # per-pixel std over a sample batch below this: a collapsed generator

    def check(self) -> None:
        _require(self.max_loss > 0, "generative.divergence.max_loss", "a float > 0",
                 self.max_loss)
        _require(self.collapse_std >= 0, "generative.divergence.collapse_std", "a float >= 0",
                 self.collapse_std)


@dataclass(frozen=True)
class GenerativeParams:
    """Settings shared by every generative model (train and evaluate stages)."""
    image_size: int  # generators train at this size (resized from the preprocess arrays)
    latent_dim: int
    batch_size: int
    seed: int
    sample_grid: int  # images per sample grid
    eval_samples: int  # generated images per evaluation
    cyclegan_domain_column: str  # manifest column whose two values are CycleGAN's domains
    divergence: DivergenceParams

    def check(self) -> None:
        size = self.image_size
        _require(size >= 8 and size & (size - 1) == 0, "generative.image_size",
                 "a power of two >= 8", size)
        for name in ("latent_dim", "batch_size", "sample_grid"):
            _require(getattr(self, name) >= 1, f"generative.{name}", "an int >= 1",
                     getattr(self, name))
        _require(self.batch_size >= 2, "generative.batch_size", "an int >= 2 (batch norm)",
                 self.batch_size)
        _require(self.eval_samples >= 4, "generative.eval_samples", "an int >= 4",
                 self.eval_samples)
        _require(bool(self.cyclegan_domain_column.strip()), "generative.cyclegan_domain_column",
                 "a manifest.csv column name", self.cyclegan_domain_column)
        self.divergence.check()


@dataclass(frozen=True)
class GeneratorParams:
    """One generative model's training: epochs, Adam learning rate, network width."""
    epochs: int
    lr: float
    width: int  # base channel count of its networks

    def check(self) -> None:
        section = SECTION_OF[type(self)]
        _require(self.epochs >= 1, f"{section}.epochs", "an int >= 1", self.epochs)
        _require(self.lr > 0, f"{section}.lr", "a float > 0", self.lr)
        _require(self.width >= 1, f"{section}.width", "an int >= 1", self.width)
        for name, value in self.weights().items():
            _require(value >= (1 if name == "n_critic" else 0), f"{section}.{name}",
                     "an int >= 1" if name == "n_critic" else "a float >= 0", value)

    def weights(self) -> dict[str, float]:
        """The objective's weights (everything but epochs, lr and width)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("epochs", "lr", "width")}


@dataclass(frozen=True)
class GanParams(GeneratorParams):
    """GAN, Goodfellow et al. 2014 (non-saturating generator loss)."""


@dataclass(frozen=True)
class DCGanParams(GeneratorParams):
    """DCGAN, Radford et al. 2016."""


@dataclass(frozen=True)
class CGanParams(GeneratorParams):
    """Class-conditional GAN (Mirza & Osindero 2014)."""


@dataclass(frozen=True)
class WGanGpParams(GeneratorParams):
    """WGAN-GP, Gulrajani et al. 2017."""
    gp_weight: float  # lambda of the gradient penalty (10 in the paper)
    n_critic: int  # critic steps per generator step (5 in the paper)


@dataclass(frozen=True)
class VaeParams(GeneratorParams):
    """VAE, Kingma & Welling 2014; beta weighs the KL term (Higgins et al. 2017)."""
    beta: float


@dataclass(frozen=True)
class CVaeParams(VaeParams):
    """Conditional VAE (Sohn et al. 2015)."""


@dataclass(frozen=True)
class Pix2PixParams(GeneratorParams):
    """Mask-to-image, Isola et al. 2017: adversarial + l1_weight * L1 (100 in the paper)."""
    l1_weight: float


@dataclass(frozen=True)
class CycleGanParams(GeneratorParams):
    """CycleGAN, Zhu et al. 2017: cycle-consistency and identity loss weights."""
    cycle_weight: float
    identity_weight: float


SECTION_OF: dict[type, str] = {
    GanParams: "gan", DCGanParams: "dcgan", WGanGpParams: "wgan_gp", VaeParams: "vae",
    CGanParams: "cgan", CVaeParams: "cvae", Pix2PixParams: "pix2pix", CycleGanParams: "cyclegan"}


@dataclass(frozen=True)
class FeatureExtractorParams:
    """The pinned classifier whose features FID, KID and precision/recall are measured in."""
    width: int
    feature_dim: int
    epochs: int
    batch_size: int
    lr: float
    seed: int

    def check(self) -> None:
        for name in ("width", "epochs"):
            _require(getattr(self, name) >= 1, f"feature_extractor.{name}", "an int >= 1",
                     getattr(self, name))
        _require(self.feature_dim >= 2, "feature_extractor.feature_dim", "an int >= 2",
                 self.feature_dim)
        _require(self.batch_size >= 2, "feature_extractor.batch_size", "an int >= 2",
                 self.batch_size)
        _require(self.lr > 0, "feature_extractor.lr", "a float > 0", self.lr)


@dataclass(frozen=True)
class GenerativeEvaluateParams:
    """The evaluation protocol of the generative models (and of the references)."""
    kid_subset_size: int
    k: int  # neighbours for improved precision/recall (Kynkaanniemi et al. 2019)
    seed: int

    def check(self) -> None:
        _require(self.kid_subset_size >= 2, "generative_evaluate.kid_subset_size",
                 "an int >= 2", self.kid_subset_size)
        _require(self.k >= 1, "generative_evaluate.k", "an int >= 1", self.k)


@dataclass(frozen=True)
class RegisterGenerativeParams:
    """Registration of every generative model: names are model_prefix + kind."""
    model_prefix: str
    champion_alias: str

    def check(self) -> None:
        _require(bool(self.model_prefix.strip()), "register_generative.model_prefix",
                 "a non-empty prefix", self.model_prefix)
        _require(bool(self.champion_alias.strip()), "register_generative.champion_alias",
                 "a non-empty alias", self.champion_alias)


_COLOURS = ("rgb", "lab")
_MODES = ("global", "per_image")


def _check_pixel_features(section: str, colour: str, position_weight: float, mode: str) -> None:
    _require(colour in _COLOURS, f"{section}.colour", f"one of {_COLOURS}", colour)
    _require(position_weight >= 0.0, f"{section}.position_weight", "a float >= 0",
             position_weight)
    _require(mode in _MODES, f"{section}.mode", f"one of {_MODES}", mode)


@dataclass(frozen=True)
class GateParams:
    """The promotion gate of one model family: which metric, and by how much it must win."""
    metric: str  # segmentation: mean_iou | mean_dice; clustering: ari | silhouette; generation: fid
    margin: float  # the confidence interval must clear this, in the metric's units

    def check_as(self, key: str, metrics: tuple[str, ...]) -> None:
        _require(self.metric in metrics, f"{key}.metric", f"one of {metrics}", self.metric)
        _require(self.margin >= 0.0, f"{key}.margin", "a float >= 0", self.margin)


@dataclass(frozen=True)
class PromoteParams:
    """segen promote: a paired bootstrap over test images must clear each family's margin."""
    confidence: float  # of the percentile interval of the mean per-image difference
    bootstrap_samples: int
    seed: int
    lock_timeout_s: float  # wait at most this long for another promotion of the same model
    segmentation: GateParams
    clustering: GateParams
    generation: GateParams

    def check(self) -> None:
        _require(0.5 <= self.confidence < 1.0, "promote.confidence", "a float in [0.5, 1)",
                 self.confidence)
        _require(self.bootstrap_samples >= 100, "promote.bootstrap_samples", "an int >= 100",
                 self.bootstrap_samples)
        _require(self.lock_timeout_s > 0, "promote.lock_timeout_s", "a float > 0",
                 self.lock_timeout_s)
        self.segmentation.check_as("promote.segmentation", ("mean_iou", "mean_dice"))
        self.clustering.check_as("promote.clustering", ("ari", "silhouette"))
        self.generation.check_as("promote.generation", ("fid",))


@dataclass(frozen=True)
class SyntheticParams:
    """Synthetic (image, mask) pairs from the mask-to-image generator for U-Net training
    (the synthesize_pairs, train_unet_synthetic and evaluate_unet_synthetic stages)."""
    enabled: bool  # false: those stages are skipped
    n_pairs: int  # pairs generated from re-laid-out train-split masks
    seed: int

    def check(self) -> None:
        _require(self.n_pairs >= 1, "synthetic.n_pairs", "an int >= 1", self.n_pairs)


@dataclass(frozen=True)
class MlflowParams:
    """Where runs and models are tracked (MLFLOW_TRACKING_URI overrides tracking_uri)."""
    tracking_uri: str | None  # None: embedded SQLite store under .segen/
    experiment: str

    def check(self) -> None:
        _require(bool(self.experiment.strip()), "mlflow.experiment", "a non-empty name",
                 self.experiment)


@dataclass(frozen=True)
class Params:
    dataset: DatasetParams
    data: DataParams
    validate: ValidateParams
    preprocess: PreprocessParams
    unet: UNetParams
    evaluate: EvaluateParams
    register: RegisterParams
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
    params = _build(Params, raw, where=f"{path}:")
    for section in dataclasses.fields(params):
        getattr(params, section.name).check()
    return params


def as_dict(section: Any) -> dict[str, Any]:
    """Plain-dict view of a params section (for hashing and MLflow)."""
    return dataclasses.asdict(section)


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping for {cls.__name__}, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    missing = [n for n in names if n not in raw]
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; allowed: {names}. Remove or "
                          "rename them.")
    if missing:
        raise ParamsError(f"{where}: missing key(s) {missing}. Add them (see the README's "
                          "configuration section).")
    return cls(**{n: _coerce(hints[n], raw[n], _join(where, n)) for n in names})


def _join(where: str, name: str) -> str:
    return f"{where} {name}" if where.endswith(":") else f"{where}.{name}"


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if isinstance(hint, types.UnionType):  # `int | None`
        if value is None and type(None) in hint.__args__:
            return None
        (inner,) = [a for a in hint.__args__ if a is not type(None)]
        return _coerce(inner, value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ParamsError(f"{where}: expected {hint.__name__}, got {value!r} "
                          f"({type(value).__name__}). Fix it in params.yaml.")
    return value


def _require(ok: bool, key: str, expected: str, got: Any) -> None:
    if not ok:
        raise ParamsError(f"params.yaml: {key}: expected {expected}, got {got!r}. Fix it in params.yaml.")
