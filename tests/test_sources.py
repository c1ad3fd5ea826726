"""Cache keys derived from the code: real edits to files in a copy of the checkout, and
which stages' source digests they change (segen.pipeline.sources)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segen.pipeline.graph import GENERATIVE_KINDS, STAGES

REPO = Path(__file__).resolve().parent.parent
CODE = ("segen", "tasks", "flows", "models")
GENERATIVE = {f"{step}_{kind}" for kind in GENERATIVE_KINDS for step in ("train", "evaluate")}

# Prints {stage: source digest} and where segen was imported from, in the copy.
_DIGESTS = """
import json, segen
from tasks import stage_table
from segen.pipeline.sources import stage_sources
print(json.dumps({"segen": segen.__file__,
                  "digests": {n: stage_sources(*s.source)[0] for n, s in stage_table().items()}}))
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    copy = tmp_path / "checkout"
    for folder in CODE:
        shutil.copytree(REPO / folder, copy / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def digests(copy: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = subprocess.run([sys.executable, "-c", _DIGESTS], cwd=copy, env=env, text=True,
                         capture_output=True, check=True).stdout
    found = json.loads(out)
    assert Path(found["segen"]).is_relative_to(copy)  # the copy's code, not the checkout's
    return found["digests"]


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_a_helper_only_helpers_import_reruns_its_stages(checkout: Path) -> None:
    """segen/engines/gen_data.py is imported by the generative engines, never by a stage
    module: editing its code still changes the key of every generator's training and
    evaluation, and not the feature extractor's (it reads segen.data.arrays itself), the
    U-Net's, the clusterers' or the data stages'."""
    helper = checkout / "segen" / "engines" / "gen_data.py"
    assert "gen_data" not in (checkout / "tasks" / "generative.py").read_text()
    before = digests(checkout)
    helper.write_text(helper.read_text() + "\n\nEDITED = 1\n")
    touched = changed(before, digests(checkout))
    assert GENERATIVE <= touched
    assert not touched & {"train_feature_extractor", "version_data", "validate", "preprocess",
                          "train_unet", "evaluate_unet", "train_kmeans", "evaluate_kmeans",
                          "train_dbscan"}


def test_model_code_reruns_the_stages_that_use_it(checkout: Path) -> None:
    before = digests(checkout)
    edit(checkout / "models" / "unet.py", "class UNet(", "_EDITED = 1\n\n\nclass UNet(")
    touched = changed(before, digests(checkout))
    assert {"train_unet", "evaluate_unet", "train_unet_synthetic", "compare_segmenters",
            "evaluate_pix2pix"} <= touched
    assert not touched & {"version_data", "validate", "preprocess", "train_kmeans",
                          "train_dbscan", "train_dcgan"}


def test_a_module_no_stage_imports_reruns_nothing(checkout: Path) -> None:
    before = digests(checkout)
    unused = checkout / "segen" / "cli" / "lineage.py"  # the CLI: above every stage
    unused.write_text(unused.read_text() + "\n\nEDITED = 1\n")
    (checkout / "segen" / "data" / "brand_new.py").write_text("VALUE = 1\n")
    assert changed(before, digests(checkout)) == set()


def test_comments_docstrings_and_layout_rerun_nothing(checkout: Path) -> None:
    """The key hashes normalised source (the syntax tree without docstrings)."""
    before = digests(checkout)
    unet = checkout / "models" / "unet.py"
    text = unet.read_text()
    first_def = text.index("\ndef ") + 1
    unet.write_text(text[:first_def] + "# a comment\n\n\n" + text[first_def:].replace(
        '"""', '"""Reworded. ', 1) + "\n\n# trailing\n")
    assert changed(before, digests(checkout)) == set()


def test_editing_one_stage_body_leaves_its_siblings(checkout: Path) -> None:
    """Stages of one family share a module; a stage's key holds only its own body and what
    it refers to (an edit of the segmenters' register body retrains neither network)."""
    before = digests(checkout)
    edit(checkout / "tasks" / "segmenters.py", '"""Register a new version;',
         '"""Register a new version;"""\n    _edited = 1\n    """')
    assert changed(before, digests(checkout)) == {"register_unet", "register_torchvision"}


def test_every_stage_has_a_body() -> None:
    from tasks import stage_table

    assert list(stage_table()) == list(STAGES)
