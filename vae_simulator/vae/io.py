"""Saving and loading PK-VAE weights: safetensors plus a JSON manifest, nothing pickled.

A shipped model is two files in ``vae_simulator/weights/``: ``<drug>.safetensors`` (tensors)
and ``<drug>.json`` (the manifest: format version, package version, architecture config,
training data seed and size, validation metrics, SHA-256 of the tensor file). Loading
checks the manifest against the file and the architecture, and refuses anything missing,
corrupt, foreign or incompatible with a message that says which.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vae_simulator.vae.ct_model import CTPKVAE, CTConfig
from vae_simulator.vae.model import PKVAE, VAEConfig

MANIFEST_FORMAT = "pkdose-vae/1"
#: The continuous-time PK-VAE (:mod:`vae_simulator.vae.ct_model`), shipped in ``weights/ct/``.
CT_MANIFEST_FORMAT = "pkdose-ctvae/1"
#: format -> (model class, config from its dict)
ARCHITECTURES = {MANIFEST_FORMAT: (PKVAE, lambda d: VAEConfig(**d)),
                 CT_MANIFEST_FORMAT: (CTPKVAE, CTConfig.from_dict)}


def package_version() -> str:
    try:
        return version("pkdose")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def shipped_weights_dir() -> Path:
    return Path(str(resources.files("vae_simulator") / "weights"))


def ct_shipped_dir() -> Path:
    """Where the shipped continuous-time decoders live: ``vae_simulator/weights/ct/`` (release 1)."""
    return shipped_weights_dir() / "ct"


#: Latest release of each drug's shipped continuous-time decoder (1 where there is no other).
#: Release 2 of mycophenolate has the clock features (docs/pk_vae.md); releases stay in the
#: package so that environment versions pinned to one keep their patients.
CT_RELEASES = {"mycophenolate": 2}


def ct_release(drug: str, release: int | None = None) -> int:
    """``release`` of ``drug``'s shipped continuous-time decoder, checked; None: the latest."""
    latest = CT_RELEASES.get(drug, 1)
    release = latest if release is None else release
    if isinstance(release, bool) or not isinstance(release, int) or not 1 <= release <= latest:
        raise ValueError(f"{drug}: decoder release must be an integer in [1, {latest}], got {release!r}")
    return release


def ct_weights_path(drug: str, release: int | None = None) -> Path:
    """Manifest of ``drug``'s shipped continuous-time decoder, release ``release`` (None: the latest):
    release 1 in ``weights/ct/``, release k > 1 in ``weights/ct/release<k>/``."""
    release = ct_release(drug, release)
    folder = ct_shipped_dir() if release == 1 else ct_shipped_dir() / f"release{release}"
    return folder / f"{drug}.json"


def save_model(model: PKVAE | CTPKVAE, folder: Path, training: dict,
               metrics: dict | None = None, extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``<drug>.safetensors`` and ``<drug>.json`` into ``folder``; ``extra``: more manifest
    sections (e.g. ``data``, what a model learnt from a clinic table was trained on)."""
    fmt = CT_MANIFEST_FORMAT if isinstance(model, CTPKVAE) else MANIFEST_FORMAT
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{model.cfg.drug}.safetensors"
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format": fmt, "drug": model.cfg.drug})
    manifest = {
        "format": fmt,
        "package_version": package_version(),
        "config": model.cfg.to_dict(),
        "training": training,
        "metrics": metrics or {},
        "weights_file": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        **(extra or {}),
    }
    manifest_path = folder / f"{model.cfg.drug}.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return weights, manifest_path


def read_manifest(path: Path, expected_format: str = MANIFEST_FORMAT) -> dict:
    """Read and check a manifest file (not the weights it names)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PK-VAE manifest {path} does not exist")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a valid PK-VAE manifest (not JSON: {exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != expected_format:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path} is not a pkdose PK-VAE manifest: format {found!r}, expected {expected_format!r}")
    for key in ("config", "sha256", "weights_file"):
        if key not in manifest:
            raise ValueError(f"{path}: manifest lacks {key!r}")
    return manifest


def load_model(manifest_path: Path, expected_drug: str | None = None,
               expected_format: str = MANIFEST_FORMAT) -> tuple[PKVAE | CTPKVAE, dict]:
    """Load a PK-VAE from its manifest; returns ``(model in eval mode, manifest)``.

    ``expected_format`` picks the architecture: :data:`MANIFEST_FORMAT` (interval-grid PK-VAE)
    or :data:`CT_MANIFEST_FORMAT` (continuous-time PK-VAE).
    """
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path, expected_format)
    model_cls, make_config = ARCHITECTURES[expected_format]
    try:
        cfg = make_config(manifest["config"])
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{manifest_path}: architecture config is incompatible with this version: {exc}") from exc
    if expected_drug is not None and cfg.drug != expected_drug:
        raise ValueError(f"{manifest_path} holds the PK-VAE of {cfg.drug!r}, not of {expected_drug!r}")
    weights = manifest_path.parent / manifest["weights_file"]
    if not weights.is_file():
        raise FileNotFoundError(f"PK-VAE weights {weights} named by {manifest_path} do not exist")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != manifest["sha256"]:
        raise ValueError(f"{weights} is corrupt or was replaced: SHA-256 {digest[:12]}... does not match "
                         f"the manifest's {manifest['sha256'][:12]}...")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights} is not a readable safetensors file: {exc}") from exc
    model = model_cls(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{weights} does not fit the PK-VAE architecture of its manifest "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    model.load_state_dict(state)
    model.eval()
    return model, manifest


def record_metrics(manifest_path: Path, metrics: dict, expected_format: str = MANIFEST_FORMAT) -> None:
    """Write validation ``metrics`` into a manifest (the weights and their checksum are untouched)."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path, expected_format)
    manifest["metrics"] = metrics
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def load_pretrained(drug: str) -> tuple[PKVAE, dict]:
    """The PK-VAE shipped with the package for ``drug``."""
    from vae_simulator.groundtruth import DRUGS

    if drug not in DRUGS:
        raise ValueError(f"unknown drug {drug!r}; known drugs: {', '.join(DRUGS)}")
    path = shipped_weights_dir() / f"{drug}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped PK-VAE for {drug!r} ({path} missing); train one with "
                                f"`pkdose vae --drug {drug} --export`")
    return load_model(path, expected_drug=drug)


def torch_load_checkpoint(path: Path) -> dict:
    """Load a training checkpoint with ``weights_only=True`` (no arbitrary unpickling)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign/corrupt files
        raise ValueError(f"{path} is not a readable pkdose training checkpoint: {exc}") from exc
